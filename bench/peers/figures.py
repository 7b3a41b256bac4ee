"""The small helpers every part of the benchmark summary shares: reading a JSON report,
medians, number formatting and Markdown tables."""

import json
import os

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


def added(through_server, direct):
    """Latency a server adds over the direct baseline, or None when there is no baseline or
    the baseline was slower than the server (a disturbed baseline, not a negative cost)."""
    if through_server is None or not direct or through_server < direct:
        return None
    return through_server - direct


def median(values):
    values = sorted(value for value in values if value is not None)
    if not values:
        return None
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


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
