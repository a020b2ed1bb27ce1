"""The "Memory per connection (issue 14)" section of docs/benchmarks.md, from target/bench/memory.json
(benches/memory.py, via scripts/bench.sh memory). Imported by benches/report.py."""

# Issue 14's targets for the consumer agent's RSS.
TARGETS_MIB = {"1024_busy": 16.0, "10000_idle": 64.0}


def _fmt(x, nd=1):
    return "–" if x is None else f"{x:,.{nd}f}"


def memory_section(mem, table):
    head = "## Memory per connection (issue 14)\n\n"
    if not mem:
        return head + "Not measured yet: `bash scripts/bench.sh memory` writes `target/bench/memory.json`.\n"
    runs = mem.get("runs", [])
    idle = next((r for r in runs if r.get("state") == "idle"), None)
    base = idle["rss_mib"] if idle else None
    rows = []
    for r in runs:
        conns = r.get("connections", 0)
        per = None
        if base is not None and conns:
            per = (r["rss_mib"] - base) * 1024.0 / conns
        target = TARGETS_MIB.get(r["state"])
        verdict = "" if target is None else ("**met**" if r["rss_mib"] <= target else "**not met**") + f" (<= {target:g})"
        extra = ""
        if "qps" in r:
            extra = f"{_fmt(r['qps'], 0)} rps, {r['errors']} errors; median {_fmt(r.get('rss_mib_median'))} MiB"
        elif "open" in r:
            extra = f"{r['open']:,} open" + (f", failed {r['errors']}" if r.get("errors") else "")
        rows.append([r["state"].replace("_", " "), f"{conns:,}", _fmt(r["rss_mib"]), _fmt(per, 2),
                     _fmt(r.get("hwm_mib")), str(r.get("fds", "–")), extra, verdict])
    load = mem.get("load", {})
    machine = mem.get("machine", {})
    return (head
            + f"Consumer agent's VmRSS, started afresh for each state (run {machine.get('date_utc', '?')}, commit "
            f"{machine.get('commit', '?')}, load average {load.get('loadavg_1m', '?')} before / "
            f"{load.get('loadavg_1m_after', '?')} after). Idle connections sent one checked call each and then "
            "stayed open and silent; busy ones carry the challenge's closed-loop load (largest of the samples "
            "taken every 0.5 s over the measured period). KiB per connection = (RSS - RSS with none) / "
            "connections.\n\n"
            + table(["state", "connections", "RSS MiB", "KiB per connection", "peak (VmHWM) MiB", "descriptors",
                     "load", "target"], rows)
            + "\n")
