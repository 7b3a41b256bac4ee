#!/usr/bin/env python3
"""Turns the JSON results of bench/peers/run.sh into bench/BENCHMARKS.md and a plot.

Usage: summarize.py RESULTS_DIR BENCHMARKS_MD PLOT_PNG [CRITERION_DIR]
       summarize.py --pairs PAIRS_DIR     (prints the paired handshake section of pairs.sh)
       summarize.py --latency LATENCY_DIR (prints the latency rounds of latency.sh)
       summarize.py --upstreams DIR       (prints the upstream rounds of upstreams.sh)

Every figure comes from the JSON reports of portcullis-load in RESULTS_DIR; nothing here is a
measurement. Qualitative explanations live in bench/peers/notes.md and are appended verbatim.
"""

import json
import os
import sys

from figures import LABELS, PEERS, SERVERS, added, fmt, load, median, ratio, table, verdict
from paired import latency_rounds_of, latency_section, latency_verdicts
from paired import paired_ratio, pairs_of, pairs_section
from paired import upstream_rounds_of, upstreams_section
from rotations import rotation_section


def metrics(results, server, direct=None):
    """The headline figures of one server in one round, None where a run is missing; added
    latency is against `direct` (that round's plaintext baseline)."""
    def get(test, *keys):
        report = load(results, f"{server}-{test}")
        for key in keys:
            if report is None:
                return None
            report = report.get(key)
        return report

    out = {
        "full_cpu": get("full", "usage", "server_cpu_per_handshake_us"),
        "full_sys": get("full", "usage", "server_system_cpu_per_op_us"),
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
    for direction in ("download", "upload"):
        cpu_s, moved = get(direction, "usage", "server_cpu_s"), get(direction, "bytes")
        sys_op, done = get(direction, "usage", "server_system_cpu_per_op_us"), get(
            direction, "successes")
        elapsed = get(direction, "elapsed_s")
        mib = moved / 2**20 if moved else None
        out[f"{direction}_cpu_mib"] = cpu_s * 1e6 / mib if cpu_s and mib else None
        out[f"{direction}_sys_mib"] = sys_op * done / mib if sys_op and done and mib else None
        out[f"{direction}_busy"] = cpu_s / elapsed * 100 if cpu_s and elapsed else None
        # What the load core carried per MiB: the load client, and the upstream behind a proxy.
        client_s = get(direction, "usage", "client_cpu_s")
        upstream_op = get(direction, "usage", "upstream_cpu_per_op_us")
        out[f"{direction}_client_mib"] = client_s * 1e6 / mib if client_s and mib else None
        out[f"{direction}_upstream_mib"] = (upstream_op * done / mib
                                            if upstream_op is not None and done and mib else None)
        for core, busy_percent in enumerate(get(direction, "usage", "core_busy_percent") or []):
            out[f"{direction}_core{core}_busy"] = busy_percent
    resumed = load(results, f"{server}-resumed")
    if resumed:
        total = resumed["handshakes_full"] + resumed["handshakes_resumed"]
        out["resumed_share"] = resumed["handshakes_resumed"] / total if total else None
    for test in TESTS:
        report = load(results, f"{server}-{test}")
        if report:
            out["failed"] += report["failed"]
    if out["full_cpu"] and out["resumed_cpu"]:
        out["full_over_resumed"] = out["full_cpu"] / out["resumed_cpu"]
    else:
        out["full_over_resumed"] = None
    d50, d99 = (direct["latency_us"]["p50"], direct["latency_us"]["p99"]) if direct else (None,
                                                                                         None)
    out["added50"] = added(out["lat_p50"], d50)
    out["added99"] = added(out["lat_p99"], d99)
    out["steal"] = max((report["usage"].get("machine_steal_percent") or 0
                        for report in (load(results, f"{server}-{test}") for test in TESTS)
                        if report), default=None)
    return out


TESTS = ["full", "resumed", "resumed12", "keepalive", "latency", "download", "upload", "idle"]


def rounds_of(results):
    """The round folders of a repeated run (round-1, round-2, ...), or the folder itself."""
    rounds = sorted((entry for entry in os.listdir(results) if entry.startswith("round-")),
                    key=lambda name: int(name.split("-")[1]))
    return [os.path.join(results, entry) for entry in rounds] or [results]


def combine(per_round):
    """Per server, the median of each figure over the rounds; failures are summed."""
    combined = {}
    for server in SERVERS:
        measured = [round_[server] for round_ in per_round if server in round_]
        if not measured:
            continue
        figures = {key: median(x[key] for x in measured) for key in measured[0]}
        figures["failed"] = sum(x["failed"] for x in measured)
        combined[server] = figures
    return combined


def targets(m, pairs=None, latency=None, criterion=None):
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
        flat, fixed = paired_ratio(pairs, "flat"), paired_ratio(pairs, "rate")
        if flat is not None:
            lines.append(
                f"  In alternating pairs (below), Portcullis / bare is {flat:.2f}× flat out "
                f"({verdict(flat <= 1.25)})"
                + (f" and {fixed:.2f}× at a fixed rate ({verdict(fixed <= 1.25)})"
                   if fixed is not None else "")
                + ": the round medians compare measurements minutes apart.")
        if vs_b > 1.25:
            lines.append(
                f"  Kernel time per handshake: Portcullis {fmt(p['full_sys'])} µs, bare "
                f"{fmt(b['full_sys'])} µs; the difference is the upstream connection each proxied "
                "handshake opens, writes to and closes (see \"What a proxy pays\" below).")
    if p["full_over_resumed"]:
        r = p["full_over_resumed"]
        lines.append(
            f"- Resumed ≥ 3× cheaper than full: full/resumed = {r:.2f} ({verdict(r >= 3)}); "
            f"TLS 1.2 session-ID resumption costs {fmt(p['resumed12_cpu'])} µs.")
        if r < 3:
            bare_ratio = b and b["full_over_resumed"]
            lines.append(
                f"  The bare terminator, with no upstream, reaches {fmt(bare_ratio, 2)}: a "
                "TLS 1.3 resumption with rustls still does an X25519 exchange, and every "
                "connection pays the same socket costs resumed or not (see \"Resumption "
                "against full handshakes\" below and the in-memory rows).")
            lines += resumption_in_memory(criterion or {}, b)
    peers = [m[s] for s in PEERS if m.get(s) and m[s]["added50"] is not None]
    if peers and p["added50"] is not None:
        best50 = min(x["added50"] for x in peers)
        best99 = min((x["added99"] for x in peers if x["added99"] is not None), default=None)
        a50, a99 = p["added50"], p["added99"]
        p99_known = a99 is not None and best99 is not None
        p99_met = p99_known and a99 <= best99
        p99_verdict = verdict(p99_met) if p99_known else "–"
        lines.append(
            f"- Keep-alive added latency no worse than the best peer: Portcullis adds "
            f"{fmt(a50)} µs at p50 and {fmt(a99)} µs at p99; the best peer adds {fmt(best50)} "
            f"µs and {fmt(best99)} µs ({verdict(a50 <= best50)} at p50, "
            f"{p99_verdict} at p99).")
        paired = latency_verdicts(latency)
        if paired:
            lines.append("  In alternating rounds a few seconds apart (below), " + "; "
                         .join(paired) + ".")
        if a50 > best50 or not p99_met:
            lines.append(
                "  Compare with the round-by-round table: differences of tens of µs move "
                "between rounds and are not a ranking (see \"Added latency\" below).")
    if b and b["download"] and p["download"]:
        down, up = p["download"] / b["download"], (p["upload"] or 0) / (b["upload"] or 1)
        lines.append(
            f"- Bulk ≥ 90 % of bare: download {down:.0%} ({verdict(down >= 0.9)}), "
            f"upload {up:.0%} ({verdict(up >= 0.9)}).")
        if down < 0.9 or up < 0.9:
            def per_mib(x):
                return (f"{fmt(x['download_cpu_mib'])} / {fmt(x['upload_cpu_mib'])} µs (kernel "
                        f"{fmt(x['download_sys_mib'])} / {fmt(x['upload_sys_mib'])})")

            def busy(x):
                return f"{fmt(x['download_busy'])} % / {fmt(x['upload_busy'])} %"

            lines.append(
                f"  Server CPU per MiB (download / upload): Portcullis {per_mib(p)}, bare "
                f"{per_mib(b)}; the server's core was busy {busy(p)} of each transfer (bare "
                f"{busy(b)}). A proxy writes every byte a second time, to the client or to "
                "the upstream, and on loopback the kernel bills the receiving socket's work "
                "to the sender; the upstream also shares CPU 1 with the load client (see "
                "\"Bulk and requests/s\" below).")
            lines += bulk_ceiling(m)
    if p["idle_kib"] is not None:
        lines.append(
            f"- ≤ 16 KiB per idle mTLS connection: {p['idle_kib']:.1f} KiB "
            f"({verdict(p['idle_kib'] <= 16)}).")
    return lines


def resumption_in_memory(criterion, bare):
    """What the TLS layer alone allows the resumption ratio, from the criterion figures, and
    what a socket adds to each side of it, from the bare terminator."""
    prefix = "server_cpu_{}_handshake/TLS13_AES_128_GCM_SHA256/X25519"
    full = criterion.get(prefix.format("full"))
    two = criterion.get(prefix.format("resumed") + ", 2 tickets")
    one = criterion.get(prefix.format("resumed") + ", 1 ticket")
    if not (full and two and one):
        return []
    full, two, one = full[0] / 1000, two[0] / 1000, one[0] / 1000
    line = (f"  The TLS layer alone, in memory (criterion, same suite and group): rustls' server "
            f"spends {fmt(full)} µs on a full handshake and {fmt(two)} µs on a resumed one "
            f"issuing two tickets (rustls' default, kept here), {full / two:.2f}×, or "
            f"{fmt(one)} µs issuing one, {full / one:.2f}×")
    if bare and bare["full_cpu"] and bare["resumed_cpu"]:
        line += (f". On a socket the bare terminator spends {fmt(bare['full_cpu'] - full)} µs "
                 f"more than that per full handshake and {fmt(bare['resumed_cpu'] - two)} µs "
                 "more per resumed one")
    line += (". Whatever a socket adds to both lowers the ratio, so with two tickets no rustls "
             "server on a socket reaches 3×")
    if full / one > 3:
        line += (f", and with one only if a connection's socket work cost under "
                 f"{fmt((full - 3 * one) / 2, 1)} µs")
    return [line + "."]


def bulk_ceiling(m):
    """The most any proxy could move in this harness, from what the load core must run."""
    b, p = m.get("bare"), m.get("portcullis")
    proxies = [m[s] for s in PEERS + ["portcullis"] if m.get(s)]
    parts = []
    for direction in ("download", "upload"):
        client = b and b[f"{direction}_client_mib"]
        upstream = min((x[f"{direction}_upstream_mib"] for x in proxies
                        if x[f"{direction}_upstream_mib"]), default=None)
        if not (client and upstream and b[direction]):
            return []
        ceiling = 1e6 / (client + upstream)
        parts.append((direction, client, upstream, ceiling, ceiling / b[direction]))
    figures = "; ".join(
        f"{d} {fmt(c)} + {fmt(u)} µs, at most {fmt(top)} MiB/s = {share:.0%} of bare"
        for d, c, u, top, share in parts)
    busy = " and ".join(
        f"{fmt(p.get(f'{d}_core0_busy'))} % / {fmt(p.get(f'{d}_core1_busy'))} % {d}ing"
        for d, *_ in parts)
    capped = [d for d, *_, share in parts if share < 0.9]
    verdict_line = (f"so in this harness no proxy can reach 90 % {' or '.join(capped)}: "
                    "that would take a second load core or an upstream that costs nothing"
                    if capped else "so the harness alone does not keep a proxy below 90 %")
    return [
        "  What CPU 1 allows a proxy that itself cost nothing: CPU 1 runs the load client, "
        "which needs at least its CPU per MiB against the bare terminator, and the upstream, "
        "which needs at least the least it took behind any proxy, and one core gives at most "
        f"1 s of CPU per second: {figures}; {verdict_line}. CPU 0 / CPU 1 were busy {busy} "
        "with Portcullis."] + load_core_bound(p)


def load_core_bound(p):
    """How close Portcullis came to what CPU 1 allowed, at what the client and the upstream
    actually spent behind it: the client pays more per MiB behind a proxy than from the bare
    terminator, since it shares CPU 1 with the upstream's sends and wake-ups."""
    parts = []
    for direction in ("download", "upload"):
        client, upstream = p[f"{direction}_client_mib"], p[f"{direction}_upstream_mib"]
        if not (client and upstream is not None and p[direction]):
            return []
        top = 1e6 / (client + upstream)
        parts.append(f"{direction}ing the client spent {fmt(client)} µs and the upstream "
                     f"{fmt(upstream)} µs per MiB, which allows {fmt(top)} MiB/s, and "
                     f"Portcullis moved {fmt(p[direction])} MiB/s ({p[direction] / top:.0%} "
                     "of that)")
    return ["  What CPU 1 allowed behind Portcullis, medians over the rounds: "
            + "; ".join(parts) + "."]


def rounds_section(per_round):
    """Portcullis's target ratios in each round, to show how much they move."""
    if len(per_round) < 2:
        return []
    rows = []
    for number, m in enumerate(per_round, start=1):
        p, h, b = m.get("portcullis"), m.get("haproxy"), m.get("bare")
        if not p:
            continue
        peers = [m[s] for s in PEERS if m.get(s) and m[s]["added50"] is not None]

        def over(value, base):
            return ratio(value, base) if base else "–"

        best50 = min((x["added50"] for x in peers), default=None)
        best99 = min((x["added99"] for x in peers if x["added99"] is not None), default=None)
        rows.append([
            str(number),
            over(p["full_cpu"], h and h["full_cpu"]), over(p["full_cpu"], b and b["full_cpu"]),
            fmt(p["full_over_resumed"], 2),
            f"{fmt(p['added50'])} / {fmt(p['added99'])}",
            f"{fmt(best50)} / {fmt(best99)}",
            over(p["download"], b and b["download"]), over(p["upload"], b and b["upload"]),
            fmt(p["idle_kib"], 1), fmt(max((x["steal"] or 0) for x in m.values()), 1),
        ])
    return [
        "## Round by round (Portcullis)",
        "",
        "The tables above show medians over the rounds; each round runs every server once, "
        "in turn. Steal is the largest share of CPU time the hypervisor took from this "
        "machine during any measurement of the round (`/proc/stat`).",
        "",
        table(rows, ["round", "full CPU vs haproxy", "full CPU vs bare", "full/resumed",
                     "added p50 / p99 µs", "best peer added p50 / p99 µs",
                     "download vs bare", "upload vs bare", "KiB/idle conn", "max steal %"]),
        "",
    ]


def criterion_means(criterion_dir):
    """{benchmark id: (mean, low, high) in ns} from the last `cargo bench`, or {}."""
    means = {}
    if not criterion_dir or not os.path.isdir(criterion_dir):
        return means
    for dirpath, _, files in os.walk(criterion_dir):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as handle:
            name = json.load(handle)["full_id"]
        with open(os.path.join(dirpath, "estimates.json")) as handle:
            mean = json.load(handle)["mean"]
        interval = mean["confidence_interval"]
        means[name] = (mean["point_estimate"], interval["lower_bound"], interval["upper_bound"])
    return means


def criterion_section(means):
    """In-memory figures from the last `cargo bench -p portcullis-bench`, when present."""
    rows = sorted((name, *figures) for name, figures in means.items())
    if not rows:
        return []

    def show(ns):
        return f"{ns / 1000:,.1f} µs" if ns >= 1000 else f"{ns:,.1f} ns"

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
    if sys.argv[1:2] == ["--pairs"]:
        print("\n".join(pairs_section(pairs_of(sys.argv[2]))))
        return
    if sys.argv[1:2] == ["--latency"]:
        print("\n".join(latency_section(latency_rounds_of(sys.argv[2]))))
        return
    if sys.argv[1:2] == ["--upstreams"]:
        print("\n".join(upstreams_section(upstream_rounds_of(sys.argv[2]))))
        return
    results, out_md, out_png = sys.argv[1:4]
    criterion = criterion_means(sys.argv[4] if len(sys.argv) > 4 else None)
    pairs = pairs_of(os.path.join(results, "pairs"))
    latency = latency_rounds_of(os.path.join(results, "latency"))
    rounds = rounds_of(results)
    per_round = []
    for folder in rounds:
        direct = load(folder, "direct-latency")
        # Each server's own baseline, taken right before its latency run, when present.
        per_round.append({s: metrics(folder, s, load(folder, f"{s}-direct-latency") or direct)
                          for s in SERVERS if load(folder, f"{s}-full")})
    m = combine(per_round)
    directs = [(load(r, "direct-latency"), load(r, "direct-keepalive")) for r in rounds]
    d50 = median(d["latency_us"]["p50"] for d, _ in directs if d)
    d99 = median(d["latency_us"]["p99"] for d, _ in directs if d)
    direct_rps = median(ka["ops_per_s"] for _, ka in directs if ka)
    with open(os.path.join(results, "machine.txt")) as handle:
        machine = handle.read().strip().splitlines()

    rows = []
    for s, x in m.items():
        added50, added99 = x["added50"], x["added99"]
        rows.append([
            LABELS[s], f"{fmt(x['full_cpu'])} ({fmt(x['full_sys'])})", fmt(x["resumed_cpu"]),
            fmt(x["resumed12_cpu"]),
            fmt(x["full_over_resumed"], 2),
            fmt(x["resumed_share"] * 100 if x["resumed_share"] is not None else None),
            fmt(x["ka_rps"]), fmt(x["ka_cpu"], 1),
            f"{fmt(x['lat_p50'])} / {fmt(x['lat_p99'])}", f"{fmt(added50)} / {fmt(added99)}",
            fmt(x["download"]), fmt(x["upload"]),
            f"{fmt(x['download_cpu_mib'])} / {fmt(x['upload_cpu_mib'])}",
            fmt(x["idle_kib"], 1), str(x["failed"]),
        ])
    header = ["server", "full hs CPU µs (kernel)", "resumed 1.3 CPU µs",
              "resumed 1.2 (ID) CPU µs", "full/resumed", "% resumed", "keep-alive req/s",
              "CPU µs/req", "latency p50 / p99 µs", "added p50 / p99 µs", "download MiB/s",
              "upload MiB/s", "bulk CPU µs/MiB down / up", "KiB/idle conn", "failures"]

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
    if direct_rps and d50 is not None:
        direct_line = (
            f"Direct to the upstream (plaintext, no proxy): {fmt(direct_rps)} req/s at c=32; "
            f"at 2000 req/s p50 {fmt(d50)} µs, p99 {fmt(d99)} µs. Added latency is each "
            f"server's figure minus the direct figure measured right before it.")

    parts = [
        "# Benchmarks: Portcullis side by side with haproxy, stunnel, hitch, nginx and bare "
        "rustls",
        "",
        "Written by `bench/peers/run.sh` from the JSON reports in `target/peers/results/` "
        f"(every figure below is from that run: {len(rounds)} round(s), each server once per "
        "round, tables show the median over the rounds; rerun to refresh). Each measurement "
        "is preceded by one second of the same load, unrecorded (`--warm-up`), and "
        "keep-alive connections are open before the clock starts. TLS 1.3, mutual TLS with "
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
        "## Targets (Portcullis, as ratios within this run)",
        "",
        *targets(m, pairs, latency, criterion),
        "",
    ]
    parts += rounds_section(per_round)
    parts += pairs_section(pairs)
    parts += latency_section(latency)
    parts += upstreams_section(upstream_rounds_of(os.path.join(results, "upstreams")))
    parts += rotation_section(rounds)
    parts += criterion_section(criterion)
    if notes:
        parts += [notes, ""]
    parts += [
        "## How to reproduce",
        "",
        "```sh",
        "bench/peers/run.sh                       # everything, 3 rounds, about 45 minutes",
        "REPEAT=1 DURATION=5s IDLE_CONNS=1000 SERVERS='haproxy portcullis bare' \\",
        "    bench/peers/run.sh",
        "bench/peers/pairs.sh                     # the handshake pairs alone, about 3 minutes",
        "bench/peers/latency.sh                   # the latency rounds alone, about 8 minutes",
        "bench/peers/upstreams.sh                 # three ways to the upstream, about 4 minutes",
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
        "-c 4` open loop for latency (each slot starts on a `timerfd`; an operation the "
        "client starts late is timed from when it was due, so queueing is not hidden), "
        "`bulk` 64 MiB transfers each way (c=1; the upstream sends with `sendfile` and "
        "drops uploads with `recv(MSG_TRUNC)`), `idle` (connections held, RSS before and "
        "with all held, from `/proc/PID/status`).",
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
