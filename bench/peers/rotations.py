"""The zero-downtime runs of bench/peers/rotation.sh, for BENCHMARKS.md: failures, served
serials seen, and p99 latency around rotations against steady state, beside the control runs
that inject nothing."""

from figures import fmt, load, median, table, verdict


def rotation_section(rounds):
    """The long zero-downtime runs of bench/peers/rotation.sh (one per round), when present."""
    runs = [(load(r, "rotation-keepalive"), load(r, "rotation-full")) for r in rounds]
    controls = [(load(r, "rotation-control-keepalive"), load(r, "rotation-control-full"))
                for r in rounds]
    kept = [(run, control) for run, control in zip(runs, controls) if all(run)]
    if not kept:
        return []
    runs = [run for run, _ in kept]
    controls = [control if all(control) else None for _, control in kept]
    keepalive, full = runs[0]
    rotations = [e for e in keepalive["events"] if e["kind"] == "rotate"]
    failed_events = sum(1 for ka, _ in runs for e in ka["events"] if not e["ok"])
    control_count = sum(1 for control in controls if control)
    lines = [
        "## Zero downtime under rotation (`bench/peers/rotation.sh`)",
        "",
        f"Portcullis (files source, permissive, then strict) for {keepalive['elapsed_s']:.0f} s "
        f"under two clients at once: keep-alive requests at {fmt(keepalive['rate'])}/s over "
        f"{keepalive['concurrency']} connections, and new full handshakes (each with a "
        f"request) at {fmt(full['rate'])}/s. After a steady period the certificate is "
        f"replaced every second ({len(rotations)} rotations, files copied into place then "
        f"`POST /rotate`), the trust bundle gains a second CA, and the mode switches to "
        f"strict. Run {len(runs)} time(s), once per round; injected events that failed, "
        f"all runs: {failed_events}. Control runs, each right after a rotating run: "
        f"{control_count} (the same clients on the same schedule against a freshly started "
        f"Portcullis, with nothing injected).",
        "",
    ]
    rows = []
    for number, (run, control) in enumerate(zip(runs, controls), start=1):
        clients = [("keep-alive requests", run[0]), ("full handshakes", run[1])]
        if control:
            clients += [("keep-alive, control", control[0]),
                        ("handshakes, control", control[1])]
        rows += [rotation_row(number, name, report) for name, report in clients]
    lines += [
        "Two comparisons of p99 latency. *Before / during*: the steady period before the "
        "first rotation against the whole rotating period after it; the two are different "
        "stretches of time, so anything else that changes on the machine between them shows "
        "as well. The control runs measure that alone: their \"during\" is the same "
        "stretch of their schedule with nothing happening. *Away / near*: within the "
        "rotating period, operations that finished in "
        "the 500 ms after a rotation (the 250 ms bucket holding it and the next) against "
        "those that finished in the other buckets of the same period. The handshake client "
        "injects nothing itself and places the rotations on the schedule the other client "
        "follows (every second from the end of the steady period), which its clock may "
        "miss by the few milliseconds between the two clients' starts. Steal is the share "
        "of the machine's CPU time the hypervisor took during the run: a few percent, "
        "unevenly spread, is enough to move a p99 taken over a whole period.",
        "",
        table(rows, ["run", "client", "succeeded", "failed", "distinct serials seen",
                     "p99 before / during µs", "ratio", "p99 away / near µs", "ratio",
                     "steal %"]),
        "",
    ]
    for name, index in [("keep-alive requests", 0), ("full handshakes", 1)]:
        for label, key in [("before / during", "p99_ratio"), ("away / near", "near_p99_ratio")]:
            ratios = impact_ratios(runs, index, key)
            if not ratios:
                continue
            middle = median(ratios)
            line = (f"- {name}, {label}: median p99 ratio {middle:.2f} over {len(ratios)} "
                    f"run(s), range {min(ratios):.2f}–{max(ratios):.2f} (target ≤ 1.10: "
                    f"{verdict(middle <= 1.10)} on the median)")
            calm = impact_ratios([control for control in controls if control], index, key)
            if calm:
                line += (f"; the control runs, with nothing injected: median "
                         f"{median(calm):.2f}, range {min(calm):.2f}–{max(calm):.2f}")
            lines.append(line + ".")
    lines.append("")
    return lines


def rotation_row(number, name, report):
    """One client's line in the rotation table."""
    impact = report.get("rotation_impact") or {}
    row = [str(number), name, f"{report['successes']:,}", str(report["failed"]),
           str(report["distinct_serials"])]
    for before, after, key in [("steady", "during_events", "p99_ratio"),
                               ("away_from_events", "near_events", "near_p99_ratio")]:
        if impact.get(before) and impact.get(after):
            row += [f"{impact[before]['p99']} / {impact[after]['p99']}", f"{impact[key]:.2f}"]
        else:
            row += ["–", "–"]
    steal = (report.get("usage") or {}).get("machine_steal_percent")
    row.append("–" if steal is None else f"{steal:.1f}")
    return row


def impact_ratios(runs, index, key):
    """One p99 ratio of the rotation impact, from each run's client at `index` that has it."""
    return [run[index]["rotation_impact"][key] for run in runs
            if (run[index].get("rotation_impact") or {}).get(key) is not None]
