#!/usr/bin/env python3
"""Turns the JSON results of bench/peers/run.sh into bench/BENCHMARKS.md and a plot.

Usage: summarize.py RESULTS_DIR BENCHMARKS_MD PLOT_PNG [CRITERION_DIR]

Every figure comes from the JSON reports of portcullis-load in RESULTS_DIR; nothing here is a
measurement. Qualitative explanations live in bench/peers/notes.md and are appended verbatim.
"""

import json
import os
import sys

SERVERS = ["haproxy", "stunnel", "hitch", "nginx", "portcullis", "bare"]
PEERS = ["haproxy", "stunnel", "hitch", "nginx"]
LABELS = {
    "haproxy": "haproxy",
    "stunnel": "stunnel4",
    "hitch": "hitch",
    "nginx": "nginx stream",
    "portcullis": "Portcullis",
    "bare": "bare rustls",
}


def load(results, name):
    path = os.path.join(results, name + ".json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def metrics(results, server):
    """The headline figures of one server, None where a run is missing."""
    def get(test, *keys):
        report = load(results, f"{server}-{test}")
        for key in keys:
            if report is None:
                return None
            report = report.get(key)
        return report

    out = {
        "full_cpu": get("full", "usage", "server_cpu_per_handshake_us"),
        "resumed_cpu": get("resumed", "usage", "server_cpu_per_handshake_us"),
        "resumed12_cpu": get("resumed12", "usage", "server_cpu_per_handshake_us"),
        "resumed_share": None,
        "ka_rps": get("keepalive", "ops_per_s"),
        "ka_cpu": get("keepalive", "usage", "server_cpu_per_op_us"),
        "lat_p50": get("latency", "latency_us", "p50"),
        "lat_p99": get("latency", "latency_us", "p99"),
        "lat_p999": get("latency", "latency_us", "p999"),
        "download": get("download", "mib_per_s"),
        "upload": get("upload", "mib_per_s"),
        "idle_kib": get("idle", "usage", "server_rss_per_connection_kib"),
        "idle_held": get("idle", "successes"),
        "full_rate": get("full", "ops_per_s"),
        "full_client_cpu": get("full", "usage", "client_cpu_per_op_us"),
        "failed": 0,
    }
    resumed = load(results, f"{server}-resumed")
    if resumed:
        total = resumed["handshakes_full"] + resumed["handshakes_resumed"]
        out["resumed_share"] = resumed["handshakes_resumed"] / total if total else None
    for test in ["full", "resumed", "resumed12", "keepalive", "latency", "download", "upload",
                 "idle"]:
        report = load(results, f"{server}-{test}")
        if report:
            out["failed"] += report["failed"]
    if out["full_cpu"] and out["resumed_cpu"]:
        out["full_over_resumed"] = out["full_cpu"] / out["resumed_cpu"]
    else:
        out["full_over_resumed"] = None
    return out


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def ratio(value, base):
    if value is None or base in (None, 0):
        return "–"
    return f"{value / base:.2f}×"


def table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok):
    return "met" if ok else "**missed**"


def targets(m, direct):
    """The issue's targets for Portcullis, each with its measured margin."""
    p, h, b = m.get("portcullis"), m.get("haproxy"), m.get("bare")
    lines = []
    if not p:
        return ["Portcullis was not measured in this run."]
    if p["full_cpu"] and h and h["full_cpu"] and b and b["full_cpu"]:
        vs_h, vs_b = p["full_cpu"] / h["full_cpu"], p["full_cpu"] / b["full_cpu"]
        lines.append(
            f"- Full TLS 1.3 mTLS handshake server CPU ≤ 1/3 of haproxy and ≤ 1.25× bare: "
            f"{fmt(p['full_cpu'])} µs = {vs_h:.2f}× haproxy ({verdict(vs_h <= 1 / 3)}), "
            f"{vs_b:.2f}× bare ({verdict(vs_b <= 1.25)}).")
    if p["full_over_resumed"]:
        r = p["full_over_resumed"]
        lines.append(
            f"- Resumed ≥ 3× cheaper than full: full/resumed = {r:.2f} ({verdict(r >= 3)}); "
            f"TLS 1.2 session-ID resumption costs {fmt(p['resumed12_cpu'])} µs.")
    peers = [m[s] for s in PEERS if m.get(s) and m[s]["lat_p50"] is not None]
    if direct and peers and p["lat_p50"] is not None:
        d50, d99 = direct["latency_us"]["p50"], direct["latency_us"]["p99"]
        best50 = min(x["lat_p50"] for x in peers) - d50
        best99 = min(x["lat_p99"] for x in peers) - d99
        a50, a99 = p["lat_p50"] - d50, p["lat_p99"] - d99
        lines.append(
            f"- Keep-alive added latency no worse than the best peer: Portcullis adds "
            f"{a50} µs at p50 and {a99} µs at p99; the best peer adds {best50} µs and "
            f"{best99} µs ({verdict(a50 <= best50)} at p50, {verdict(a99 <= best99)} at p99).")
    if b and b["download"] and p["download"]:
        down, up = p["download"] / b["download"], (p["upload"] or 0) / (b["upload"] or 1)
        lines.append(
            f"- Bulk ≥ 90 % of bare: download {down:.0%} ({verdict(down >= 0.9)}), "
            f"upload {up:.0%} ({verdict(up >= 0.9)}).")
    if p["idle_kib"] is not None:
        lines.append(
            f"- ≤ 16 KiB per idle mTLS connection: {p['idle_kib']:.1f} KiB "
            f"({verdict(p['idle_kib'] <= 16)}).")
    return lines


def rotation_section(results):
    """The long zero-downtime run of bench/peers/rotation.sh, when present."""
    keepalive = load(results, "rotation-keepalive")
    full = load(results, "rotation-full")
    if not keepalive or not full:
        return []
    events = keepalive["events"]
    rotations = [e for e in events if e["kind"] == "rotate"]
    failed_events = [e for e in events if not e["ok"]]
    lines = [
        "## Zero downtime under rotation (`bench/peers/rotation.sh`)",
        "",
        f"Portcullis (files source, permissive, then strict) for {keepalive['elapsed_s']:.0f} s "
        f"under two clients at once: keep-alive requests at {fmt(keepalive['rate'])}/s over "
        f"{keepalive['concurrency']} connections, and new full handshakes (each with a "
        f"request) at {fmt(full['rate'])}/s. After a steady period the certificate is "
        f"replaced every second ({len(rotations)} rotations, files copied into place then "
        f"`POST /rotate`), the trust bundle gains a second CA, and the mode switches to "
        f"strict. Injected events that failed: {len(failed_events)}.",
        "",
        table([
            ["keep-alive requests", f"{keepalive['successes']:,}", str(keepalive["failed"]),
             str(keepalive["distinct_serials"])],
            ["full handshakes", f"{full['successes']:,}", str(full["failed"]),
             str(full["distinct_serials"])],
        ], ["client", "succeeded", "failed", "distinct serials seen"]),
        "",
    ]
    impacts = []
    for name, report in [("keep-alive requests", keepalive), ("full handshakes", full)]:
        impact = report.get("rotation_impact")
        if impact:
            ok = impact["p99_ratio"] <= 1.10
            impacts.append([
                name, f"{impact['steady']['p50']} / {impact['steady']['p99']}",
                f"{impact['during_events']['p50']} / {impact['during_events']['p99']}",
                f"{impact['p99_ratio']:.2f} ({verdict(ok)})",
            ])
    if impacts:
        lines += [
            "Latency before the first rotation against latency from it on (target: p99 "
            "within 10 % of steady state):",
            "",
            table(impacts, ["client", "steady p50 / p99 µs", "during rotations p50 / p99 µs",
                            "p99 ratio"]),
            "",
        ]
    return lines


def criterion_section(criterion_dir):
    """In-memory figures from the last `cargo bench -p portcullis-bench`, when present."""
    if not criterion_dir or not os.path.isdir(criterion_dir):
        return []
    rows = []
    for dirpath, _, files in os.walk(criterion_dir):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as handle:
            name = json.load(handle)["full_id"]
        with open(os.path.join(dirpath, "estimates.json")) as handle:
            estimates = json.load(handle)
        mean = estimates["mean"]
        low, high = mean["confidence_interval"]["lower_bound"], \
            mean["confidence_interval"]["upper_bound"]
        rows.append((name, mean["point_estimate"], low, high))
    if not rows:
        return []

    def show(ns):
        return f"{ns / 1000:,.1f} µs" if ns >= 1000 else f"{ns:,.1f} ns"

    rows.sort()
    return [
        "## In memory (criterion, `cargo bench -p portcullis-bench`)",
        "",
        "rustls connections driven over buffers, no sockets; handshakes count only the time "
        "spent in the server's calls (mutual TLS, ECDSA P-256). From the last `cargo bench` "
        "on this machine (`target/criterion`).",
        "",
        table([[f"`{name}`", show(mean), f"{show(low)} – {show(high)}"]
               for name, mean, low, high in rows],
              ["benchmark", "mean", "95 % interval"]),
        "",
    ]


def plot(m, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    servers = [s for s in SERVERS if s in m]
    names = [LABELS[s] for s in servers]
    colors = ["#7f7f7f", "#bcbd22", "#17becf", "#9467bd", "#d62728", "#2ca02c"]
    colors = [colors[SERVERS.index(s)] for s in servers]
    panels = [
        ("Full handshake, server CPU (µs, lower is better)", ["full_cpu"], False),
        ("Resumed TLS 1.3 handshake, server CPU (µs)", ["resumed_cpu"], False),
        ("Keep-alive: server CPU per request (µs)", ["ka_cpu"], False),
        ("Keep-alive latency at 2000 req/s, p50 and p99 (µs, log)", ["lat_p50", "lat_p99"],
         True),
        ("Bulk MiB/s, download and upload", ["download", "upload"], False),
        ("RSS per idle mTLS connection (KiB)", ["idle_kib"], False),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8))
    for axis, (title, keys, log) in zip(axes.flat, panels):
        width = 0.8 / len(keys)
        for k, key in enumerate(keys):
            values = [m[s][key] or 0 for s in servers]
            offsets = [i + (k - (len(keys) - 1) / 2) * width for i in range(len(servers))]
            axis.bar(offsets, values, width=width, color=colors, alpha=1.0 - 0.45 * k)
            for x, value in zip(offsets, values):
                axis.annotate(f"{value:,.0f}", (x, value), ha="center", va="bottom",
                              fontsize=6)
        if log:
            axis.set_yscale("log")
        axis.set_xticks(range(len(servers)))
        axis.set_xticklabels(names, rotation=30, fontsize=8)
        axis.set_title(title, fontsize=10)
    fig.suptitle("TLS 1.3 mTLS, ECDSA P-256, X25519; server pinned to one core")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main():
    results, out_md, out_png = sys.argv[1:4]
    m = {s: metrics(results, s) for s in SERVERS if load(results, f"{s}-full")}
    direct = load(results, "direct-latency")
    direct_ka = load(results, "direct-keepalive")
    with open(os.path.join(results, "machine.txt")) as handle:
        machine = handle.read().strip().splitlines()

    d50 = direct["latency_us"]["p50"] if direct else None
    d99 = direct["latency_us"]["p99"] if direct else None
    rows = []
    for s, x in m.items():
        added50 = x["lat_p50"] - d50 if x["lat_p50"] is not None and d50 else None
        added99 = x["lat_p99"] - d99 if x["lat_p99"] is not None and d99 else None
        rows.append([
            LABELS[s], fmt(x["full_cpu"]), fmt(x["resumed_cpu"]), fmt(x["resumed12_cpu"]),
            fmt(x["full_over_resumed"], 2),
            fmt(x["resumed_share"] * 100 if x["resumed_share"] is not None else None),
            fmt(x["ka_rps"]), fmt(x["ka_cpu"], 1),
            f"{fmt(x['lat_p50'])} / {fmt(x['lat_p99'])}", f"{fmt(added50)} / {fmt(added99)}",
            fmt(x["download"]), fmt(x["upload"]), fmt(x["idle_kib"], 1), str(x["failed"]),
        ])
    header = ["server", "full hs CPU µs", "resumed 1.3 CPU µs", "resumed 1.2 (ID) CPU µs",
              "full/resumed", "% resumed", "keep-alive req/s", "CPU µs/req", "latency p50 / p99 µs",
              "added p50 / p99 µs", "download MiB/s", "upload MiB/s", "KiB/idle conn",
              "failures"]

    ratio_rows = []
    for s, x in m.items():
        h, b = m.get("haproxy"), m.get("bare")
        row = [LABELS[s]]
        for key in ["full_cpu", "resumed_cpu", "ka_cpu", "download", "idle_kib"]:
            row.append(f"{ratio(x[key], h[key] if h else None)} / "
                       f"{ratio(x[key], b[key] if b else None)}")
        ratio_rows.append(row)
    ratio_header = ["server", "full hs CPU", "resumed CPU", "CPU/req", "download",
                    "KiB/idle conn"]

    notes_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "notes.md")
    notes = open(notes_path).read().strip() if os.path.exists(notes_path) else ""
    direct_line = ""
    if direct and direct_ka:
        direct_line = (
            f"Direct to the upstream (plaintext, no proxy): {fmt(direct_ka['ops_per_s'])} "
            f"req/s at c=32; at 2000 req/s p50 {d50} µs, p99 {d99} µs.")

    parts = [
        "# Benchmarks: Portcullis side by side with haproxy, stunnel, hitch, nginx and bare "
        "rustls",
        "",
        "Written by `bench/peers/run.sh` from the JSON reports in `target/peers/results/` "
        "(every figure below is from that run; rerun to refresh). TLS 1.3, mutual TLS with "
        "a required client certificate, ECDSA P-256 certificates, key exchange pinned to "
        "X25519 (no HelloRetryRequest), one upstream (`bench-upstream`, plaintext HTTP/1.1 "
        "keep-alive). Server under test pinned to CPU 0 (`taskset -c 0`); load client and "
        "upstream on CPU 1. Server CPU is utime + stime from `/proc/PID/stat` over the "
        "run (master and workers summed), divided by completed operations. Each full or "
        "resumed handshake is followed by one request and its response, so a refusal "
        "counts as a failure and proxies include their upstream connection.",
        "",
        "The Debian peers use OpenSSL 3.0, known to be slow at handshakes; the comparison "
        "is with what a Debian 12 host gets, not with the best build of each.",
        "",
        "![benchmarks](benchmarks.png)",
        "",
        "## Figures",
        "",
        table(rows, header),
        "",
        direct_line,
        "",
        "## Ratios (vs haproxy / vs bare rustls; lower is better except download)",
        "",
        table(ratio_rows, ratio_header),
        "",
        "## Targets of issue 4 (Portcullis)",
        "",
        *targets(m, direct),
        "",
    ]
    parts += rotation_section(results)
    parts += criterion_section(sys.argv[4] if len(sys.argv) > 4 else None)
    if notes:
        parts += [notes, ""]
    parts += [
        "## How to reproduce",
        "",
        "```sh",
        "bench/peers/run.sh                       # everything, about 10 minutes",
        "DURATION=5s IDLE_CONNS=1000 SERVERS='haproxy portcullis bare' bench/peers/run.sh",
        "```",
        "",
        "Each measurement is one `portcullis-load` command (see `target/peers/results/*.txt`"
        " for the text reports), for example:",
        "",
        "```sh",
        "taskset -c 1 target/release/portcullis-load --target 127.0.0.1:19447 \\",
        "  --ca certs/ca.pem --cert certs/client.pem --key certs/client.key \\",
        "  --group X25519 --tls 1.3 --server-pid PID --mode full -c 16 -d 10s",
        "```",
        "",
        "Modes used: `full` and `resumed` (c=16), `resumed --tls 1.2 --tls12-resume "
        "session-id`, `keepalive` closed loop (c=32) for requests/s, `keepalive --rate 2000 "
        "-c 4` open loop for latency (an operation the client starts late is timed from "
        "when it was due, so queueing is not hidden), `bulk` 64 MiB transfers each way (c=1), `idle` "
        "(connections held, RSS before and with all held, from `/proc/PID/status`).",
        "",
        "## Machine",
        "",
        "```",
        *machine,
        "```",
        "",
    ]
    with open(out_md, "w") as handle:
        handle.write("\n".join(parts))
    plot(m, out_png)


if __name__ == "__main__":
    main()
