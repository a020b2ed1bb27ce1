"""The "Memory per connection (issue 14)" section of docs/benchmarks.md, from target/bench/memory.json
(benches/memory.py, via scripts/bench.sh memory). Imported by benches/report.py."""

# Issue 14's targets for the consumer agent's RSS.
TARGETS_MIB = {"1024_busy": 16.0, "10000_idle": 64.0}


def _fmt(x, nd=1):
    return "–" if x is None else f"{x:,.{nd}f}"


def memory_section(mem, table, plot=None):
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
            + "\n" + breakdown(runs, table)
            + (f"\n![consumer RSS per state]({plot})\n" if plot else ""))


def breakdown(runs, table):
    """Where the RSS is, per state (runs made since benches/memory.py records the breakdown)."""
    have = [r for r in runs if r.get("breakdown_kib")]
    if not have:
        return ""
    keys = [k for k, _, _ in PARTS if any(r["breakdown_kib"].get(k) for r in have)]
    names = {k: n for k, _, n in PARTS}
    rows = []
    for r in have:
        b = r["breakdown_kib"]
        m = r.get("malloc") or {}
        rows.append([r["state"].replace("_", " ")] + [_fmt(b.get(k, 0) / 1024.0, 2) for k in keys]
                    + [_fmt(b["total"] / 1024.0, 2)]
                    + ([_fmt(m["arenas_in_use_kib"] / 1024.0, 2), _fmt(m["arenas_system_kib"] / 1024.0, 2),
                        _fmt(m["mmapped_kib"] / 1024.0, 2), str(m["arenas"])] if m else ["–"] * 4))
    return ("\nWhere it is (MiB): each mapping of `/proc/<pid>/smaps` by kind (benches/memory.py "
            "`smaps_breakdown`: the agent's executable file, other files, the io_uring rings the kernel maps in, "
            "the main heap, glibc's thread arenas, thread stacks, other anonymous memory = blocks malloc served "
            "by their own mmap); busy: read once in the middle of the measured period. Arenas in use / held: "
            "glibc's `malloc_stats()` called in the agent by gdb (`BENCH_MEMORY_MALLOC_STATS=1`; it stops the "
            "agent for about a second, which times busy calls out): bytes in allocated blocks / bytes the "
            "arenas (main heap included) hold from the system (held - in use = free memory kept: fragmentation "
            "and untrimmed tops); mmapped: blocks served by their own mmap, virtual size (mostly glommio's "
            "submission queues, resident only where touched).\n\n"
            + table(["state"] + [names[k] for k in keys]
                    + ["total", "arenas in use", "arenas held", "mmapped (virtual)", "arenas"], rows)
            + "\n")

# The breakdown's parts (memory.py smaps_breakdown), bottom to top, with their colours and legend names.
PARTS = (("binary", "#7f7f7f", "agent binary (file)"), ("libraries", "#c7c7c7", "libraries (files)"),
         ("io_uring", "#9467bd", "io_uring rings"), ("thread_stacks", "#8c564b", "thread stacks"),
         ("heap_main", "#1f77b4", "malloc: main heap"), ("malloc_arenas", "#6baed6", "malloc: thread arenas"),
         ("anon_other", "#ff7f0e", "other anonymous (large blocks)"), ("other", "#e5e5e5", "other"))


def plot_memory(mem, path, Svg, nice_max):
    """docs/bench/memory_rss.svg: the consumer's RSS per state, stacked by kind of mapping when the run has the
    breakdown, next to issue 14's targets. False when there is nothing to draw."""
    runs = (mem or {}).get("runs") or []
    if not runs:
        return False
    W, H = 720, 380
    L, R, T, B = 60, 230, 45, 55
    svg = Svg(W, H)
    svg.text((W - R + L) / 2, 22, "Consumer agent RSS per state (MiB) and issue 14's targets", 14, "middle",
             weight="bold")
    ymax = nice_max(max([r["rss_mib"] for r in runs] + list(TARGETS_MIB.values())) * 1.1)

    def Y(v):
        return H - B - v / ymax * (H - T - B)

    svg.value_axis(L, R, T, B, ymax, Y, "RSS MiB")
    gw = (W - L - R) / len(runs)
    bw = gw * 0.55
    for i, r in enumerate(runs):
        x = L + i * gw + (gw - bw) / 2
        parts = r.get("breakdown_kib")
        if parts:
            # Scaled to the VmRSS reading (smaps is read a moment later; the two differ by a few pages).
            scale = r["rss_mib"] / (parts["total"] / 1024.0) if parts.get("total") else 1.0
            acc = 0.0
            for key, color, name in PARTS:
                v = parts.get(key, 0) / 1024.0 * scale
                if v <= 0:
                    continue
                svg.rect(x, Y(acc + v), bw, Y(acc) - Y(acc + v), color, f"{name}: {v:.1f} MiB")
                acc += v
        else:
            svg.rect(x, Y(r["rss_mib"]), bw, H - B - Y(r["rss_mib"]), "#1f77b4", f"{r['rss_mib']:.1f} MiB")
        svg.text(x + bw / 2, Y(r["rss_mib"]) - 4, f"{r['rss_mib']:.1f}", 10, "middle")
        label = r["state"].replace("_", " ")
        svg.text(x + bw / 2, H - B + 16, label, 11, "middle")
        target = TARGETS_MIB.get(r["state"])
        if target is not None:
            ok = r["rss_mib"] <= target
            color = "#2ca02c" if ok else "#d62728"
            svg.line(x - 6, Y(target), x + bw + 6, Y(target), color, 2, "5,3")
            svg.text(x + bw / 2, H - B + 30, f"target <= {target:g}: {'met' if ok else 'not met'}", 9, "middle",
                     color)
    legend = [p for p in PARTS if any((r.get("breakdown_kib") or {}).get(p[0]) for r in runs)]
    for k, (_, color, name) in enumerate(legend):
        svg.rect(W - R + 14, T + 4 + k * 20, 12, 12, color)
        svg.text(W - R + 32, T + 14 + k * 20, name, 10)
    y = T + 14 + len(legend) * 20 + 8
    svg.line(W - R + 14, y - 4, W - R + 26, y - 4, "#d62728", 2, "5,3")
    svg.text(W - R + 32, y, "target (green: met)", 10)
    svg.save(path)
    return True
