"""Measurements taken in alternating rounds a few seconds apart, so that a comparison
between two servers is made between neighbours in time: Portcullis against the bare
terminator in full handshakes (bench/peers/pairs.sh), and the keep-alive latency every server
adds (bench/peers/latency.sh)."""

import itertools
import os

from figures import LABELS, PEERS, SERVERS, added, fmt, load, median, table, verdict

def pairs_of(folder):
    """Portcullis / bare CPU per full handshake from bench/peers/pairs.sh, one entry per pair
    and load ("flat" or "rate"), or None when the folder holds no pairs."""
    if not folder or not os.path.isdir(folder):
        return None
    found = {"flat": [], "rate": []}
    for pair in itertools.count(1):
        reports = {kind: (load(folder, f"{pair}-portcullis-{kind}"),
                          load(folder, f"{pair}-bare-{kind}")) for kind in found}
        if not reports["flat"][0]:
            break
        for kind, (p, b) in reports.items():
            if not (p and b):
                continue
            found[kind].append({
                "portcullis": p["usage"]["server_cpu_per_op_us"],
                "portcullis_sys": p["usage"]["server_system_cpu_per_op_us"],
                "bare": b["usage"]["server_cpu_per_op_us"],
                "bare_sys": b["usage"]["server_system_cpu_per_op_us"],
                "rate": p.get("rate"),
                "steal": max(p["usage"]["machine_steal_percent"],
                             b["usage"]["machine_steal_percent"]),
            })
    return found if found["flat"] else None


def pairs_section(found):
    """Markdown for the paired handshake measurements of pairs.sh."""
    if not found:
        return []
    rate = next((x["rate"] for x in found["rate"] if x["rate"]), None)
    rows = []
    for kind, label in (("flat", "flat out, c=16"), ("rate", f"{fmt(rate)} handshakes/s")):
        for number, x in enumerate(found[kind], 1):
            rows.append([str(number), label,
                         f"{fmt(x['portcullis'])} ({fmt(x['portcullis_sys'])})",
                         f"{fmt(x['bare'])} ({fmt(x['bare_sys'])})",
                         f"{x['portcullis'] / x['bare']:.2f}×", f"{x['steal']:.1f}"])
    header = ["pair", "load", "Portcullis CPU µs (kernel)", "bare CPU µs (kernel)",
              "Portcullis / bare", "max steal %"]
    return [
        "## Full handshakes in alternating pairs (`bench/peers/pairs.sh`)",
        "",
        "Portcullis and the bare terminator measured one right after the other, a few "
        "seconds apart, so that the ratio of their CPU per full handshake is taken between "
        "neighbours in time; each twice, flat out as above and at a fixed rate neither "
        "saturates (both then spend the same share of their time idle and waking up).",
        "",
        table(rows, header),
        "",
    ]


def paired_ratio(found, kind):
    if not found or not found[kind]:
        return None
    return median(x["portcullis"] / x["bare"] for x in found[kind])


def latency_rounds_of(folder):
    """Per round of bench/peers/latency.sh, the latency each server added over the baseline
    taken right before it, at p50 and p99 in µs (None where that baseline was the slower),
    or None when the folder holds no rounds."""
    if not folder or not os.path.isdir(folder):
        return None
    rounds = []
    for number in itertools.count(1):
        found = {}
        for server in SERVERS:
            direct = load(folder, f"{number}-{server}-direct")
            through = load(folder, f"{number}-{server}-latency")
            if not (direct and through):
                continue
            found[server] = {
                key: added(through["latency_us"][key], direct["latency_us"][key])
                for key in ("p50", "p99")
            }
            found[server]["failed"] = through["failed"] + direct["failed"]
            found[server]["rate"] = through["rate"]
            found[server]["steal"] = max(report["usage"].get("machine_steal_percent") or 0
                                         for report in (direct, through))
        if not found:
            break
        rounds.append(found)
    return rounds or None


def latency_comparison(rounds, key):
    """For one percentile: Portcullis's median added latency, the peer with the lowest median,
    and the median of Portcullis minus that peer taken within each round."""
    def values(server):
        return [r[server][key] for r in rounds if r.get(server) and r[server][key] is not None]

    medians = {server: median(values(server)) for server in PEERS if values(server)}
    ours = median(values("portcullis"))
    if not medians or ours is None:
        return None
    best = min(medians, key=medians.get)
    differences = [r["portcullis"][key] - r[best][key] for r in rounds
                   if r.get("portcullis") and r.get(best)
                   and r["portcullis"][key] is not None and r[best][key] is not None]
    if not differences:
        return None
    return {"portcullis": ours, "best": best, "best_value": medians[best],
            "difference": median(differences), "low": min(differences),
            "high": max(differences), "rounds": len(differences)}


def latency_verdicts(rounds):
    """Target lines for the added latency, from the alternating rounds."""
    lines = []
    for key in ("p50", "p99"):
        found = rounds and latency_comparison(rounds, key)
        if not found:
            continue
        lines.append(
            f"{key}: Portcullis adds {fmt(found['portcullis'])} µs, the best peer "
            f"({LABELS[found['best']]}) {fmt(found['best_value'])} µs; Portcullis minus "
            f"{LABELS[found['best']]} within each round: median {signed(found['difference'])} "
            f"µs over {found['rounds']} round(s), range {signed(found['low'])} to "
            f"{signed(found['high'])} "
            f"({verdict(found['difference'] <= 0)} on that median difference)")
    return lines


def signed(value):
    return f"{int(round(value)):+,d}"


def latency_section(rounds):
    """Markdown for the alternating latency rounds of latency.sh."""
    if not rounds:
        return []
    servers = [s for s in SERVERS if any(s in r for r in rounds)]

    def cell(found):
        if not found:
            return "–"
        return f"{fmt(found['p50'])} / {fmt(found['p99'])}"

    rows = []
    for number, found in enumerate(rounds, 1):
        steal = max((x["steal"] for x in found.values()), default=None)
        rows.append([str(number)] + [cell(found.get(s)) for s in servers]
                    + [fmt(steal, 1), str(sum(x["failed"] for x in found.values()))])
    medians = {s: {key: median(r[s][key] for r in rounds if s in r) for key in ("p50", "p99")}
               for s in servers}
    rows.append(["median"] + [cell(medians[s]) for s in servers] + ["", ""])
    rate = next((x["rate"] for r in rounds for x in r.values() if x.get("rate")), None)
    header = (["round"] + [f"{LABELS[s]} added p50 / p99 µs" for s in servers]
              + ["max steal %", "failed"])
    return [
        "## Added latency in alternating rounds (`bench/peers/latency.sh`)",
        "",
        "Every server once per round, a few seconds apart, the order shifted by one server "
        f"each round; each figure is the server's keep-alive latency (open loop, "
        f"{fmt(rate)} requests/s over 4 connections) minus a plaintext baseline to the "
        f"upstream taken right before it. A baseline slower than the server shows as –.",
        "",
        table(rows, header),
        "",
        *(f"- {line}." for line in latency_verdicts(rounds)),
        "",
    ]


# How upstreams.sh reaches the upstream, in the order its tables show them.
UPSTREAM_WAYS = (("tcp", "TCP mode, TCP"), ("unix", "TCP mode, Unix socket"),
                 ("http", "HTTP mode, pooled TCP"))


def upstream_rounds_of(folder):
    """Portcullis's CPU per full and resumed handshake for each way of reaching the upstream,
    one entry per round of bench/peers/upstreams.sh, or None when there are none."""
    if not folder or not os.path.isdir(folder):
        return None
    found = []
    for number in itertools.count(1):
        reports = {(way, mode): load(folder, f"{number}-{way}-{mode}")
                   for way, _ in UPSTREAM_WAYS for mode in ("full", "resumed")}
        if not any(reports.values()):
            break
        if not all(reports.values()):
            continue
        found.append({key: (report["usage"]["server_cpu_per_handshake_us"],
                            report["usage"]["server_system_cpu_per_op_us"])
                      for key, report in reports.items()})
    return found or None


def upstreams_section(rounds):
    """Markdown for what each way of reaching the upstream costs, from upstreams.sh."""
    if not rounds:
        return []

    def cpu(figures):
        return f"{fmt(figures[0])} ({fmt(figures[1])})"

    rows = []
    for number, measured in enumerate(rounds, 1):
        for way, label in UPSTREAM_WAYS:
            full, resumed = measured[(way, "full")], measured[(way, "resumed")]
            rows.append([str(number), label, cpu(full), cpu(resumed),
                         f"{full[0] / resumed[0]:.2f}"])

    def middle(way, mode):
        return median(measured[(way, mode)][0] for measured in rounds)

    def ratio_of(way):
        return median(measured[(way, "full")][0] / measured[(way, "resumed")][0]
                      for measured in rounds)

    def saved(way, mode):
        return median(measured[("tcp", mode)][0] - measured[(way, mode)][0]
                      for measured in rounds)

    lines = []
    for way, label in UPSTREAM_WAYS:
        line = (f"{label}: full {fmt(middle(way, 'full'))} µs, resumed "
                f"{fmt(middle(way, 'resumed'))} µs, full/resumed {ratio_of(way):.2f}")
        if way != "tcp":
            line += (f"; against TCP mode over TCP in the same round it saves "
                     f"{fmt(saved(way, 'full'))} µs full and {fmt(saved(way, 'resumed'))} µs "
                     "resumed")
        lines.append(line)
    return [
        "## How Portcullis reaches its upstream (`bench/peers/upstreams.sh`)",
        "",
        "The same Portcullis and the same upstream program three ways, a few seconds apart in "
        "each round, the order shifting every round: TCP mode over loopback TCP (a new "
        "upstream connection for every client connection, as in the tables above), TCP mode "
        "over a Unix socket, and HTTP mode over loopback TCP, where upstream connections are "
        "pooled and outlive the client connections. TLS 1.3 handshakes with one request "
        "each, c=16, server CPU per handshake (kernel part in brackets). Only Portcullis is "
        "measured: every server in the tables above runs in TCP mode over TCP.",
        "",
        table(rows, ["round", "upstream", "full hs CPU µs", "resumed hs CPU µs",
                     "full/resumed"]),
        "",
        *(f"- {line} (medians over {len(rounds)} round(s))." for line in lines),
        "",
    ]
