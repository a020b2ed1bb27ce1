"""The "Registry at scale (issue 11)" section of docs/benchmarks.md, from target/bench/registry.json
(benches/registry.py). Imported by benches/report.py."""

TARGET_P99_MS = 50.0
TARGET_CPU_US = 50.0


def _fmt(x, nd=1):
    if x is None:
        return "–"
    return f"{int(round(x)):,}" if nd == 0 else f"{x:,.{nd}f}"


def _met(ok):
    return "**met**" if ok else "**not met**"


def _rows(runs, label=""):
    rows = []
    for r in runs:
        p99 = r.get("propagation_p99_ms")
        cpu = r.get("cpu_us_per_change")
        rows.append([
            f"{label}{r['model']} ({r['services']} x {r['instances'] // max(1, r['services']):,})",
            _fmt(r.get("changes_per_s"), 1),
            _fmt(r.get("propagation_p50_ms"), 2),
            _fmt(p99, 2) + ("" if p99 is None else f" ({_met(p99 <= TARGET_P99_MS)})"),
            _fmt(r.get("propagation_max_ms"), 1),
            _fmt(cpu, 1) + ("" if cpu is None else f" ({_met(cpu <= TARGET_CPU_US)})"),
            _fmt((r.get("consumer_cpu_ms_per_s") or {}).get("quiet"), 1) + " / "
            + _fmt((r.get("consumer_cpu_ms_per_s") or {}).get("churn"), 1),
            _fmt(r.get("consumer_rss_mib"), 1),
            _fmt(r.get("etcd_keys"), 0),
            _fmt(r.get("etcd_bytes"), 0),
            _fmt(r.get("etcd_db_bytes"), 0),
            _fmt(r.get("requests"), 0),
            f"{_fmt(r.get('failed'), 0)} ({_met(r.get('failed') == 0)})",
            f"{_fmt((r.get('latency_us') or {}).get('p50'), 0)} / {_fmt((r.get('latency_us') or {}).get('p99'), 0)}",
        ])
    return rows


def registry_section(rg, table, others=()):
    """`others`: (label, JSON, what it is) of comparison runs of the same benchmark (e.g. before issue 11)."""
    out = ["## Registry at scale (issue 11)", ""]
    if not rg or not rg.get("runs"):
        out.append("No results yet: run `bash scripts/bench.sh registry` (target/bench/registry.json).")
        return "\n".join(out) + "\n"
    s = rg.get("settings", {})
    m = rg.get("machine", {})
    out += [
        "Provider instances registered in etcd exactly as Java Dubbo 2.7 writes them (`/dubbo/<interface>/"
        "providers/<URL-encoded dubbo:// URL>`, the lease id as value, one shared lease, transactions of 64 "
        "puts; `registry-churn` of mesh-testkit), each a real call target (one `provider-sim` listening on "
        "127.1.0.1, 127.1.0.2, ..., one address per instance, same port). The consumer agent discovers them "
        f"from etcd and serves an open-loop load of {_fmt(s.get('rate'), 0)} requests/s (loadgen, "
        f"{s.get('connections')} connections, to `IHelloService`, interface 0) for the whole run; after a "
        f"{_fmt(s.get('warmup_s'), 0)} s warm-up, {s.get('rounds')} rounds of {_fmt(s.get('phase_s'), 0)} s "
        f"without any registry change then {_fmt(s.get('phase_s'), 0)} s of churn at "
        f"{_fmt(s.get('churn_rate'), 0)} changes/s (one absent instance joins with a fresh timestamp, one present "
        f"instance leaves, alternately; {s.get('spare')} spare instances).",
        "",
        "* **propagation**: per change, the latest over the consumer's shards of the first time the shard took "
        "a snapshot whose etcd revision is at least the change's (`MESH_TRACE_SNAPSHOTS=1`: a `snapshot-applied` "
        "line per snapshot a shard takes, between requests), minus the time etcd acknowledged the change to "
        "registry-churn; a shard takes a snapshot on its next request, so this includes the wait for one;",
        "* **CPU per change**: the consumer process's CPU time (utime + stime, all threads) in the churn phases "
        "minus, at the same rate, in the quiet phases, divided by the changes;",
        "* **RSS**: the consumer's VmRSS at the end of the last churn phase; **etcd keys / bytes**: keys under "
        "`/dubbo/` and the sum of their key and value lengths at the end (etcd's db file size in the JSON, "
        "`etcd_db_bytes`); **requests / failed**: loadgen's count over the whole run (every answer checked).",
        "",
        f"Targets (issue 11): propagation p99 <= {TARGET_P99_MS:g} ms at 5,000 instances under 100 changes/s, "
        f"<= {TARGET_CPU_US:g} µs consumer CPU per change, no failed request. Reported, not asserted.",
        "",
    ]
    rows = _rows(rg["runs"])
    for label, other, _ in others:
        if other and other.get("runs"):
            rows += _rows(other["runs"], f"{label}: ")
    out.append(table(["model", "changes/s", "propagation p50 ms", "p99 ms", "max ms", "CPU µs/change",
                      "consumer CPU ms/s quiet / churn", "consumer RSS MiB", "etcd keys", "etcd key+value bytes",
                      "etcd db bytes", "requests", "failed", "request latency p50 / p99 µs"], rows))
    out.append("")
    notes = []
    for r in rg["runs"]:
        lat = r.get("latency_us") or {}
        notes.append(
            f"{r['model']}: {r.get('changes', 0):,} changes ({r.get('changes_failed', 0)} not acknowledged by "
            f"etcd), {r.get('propagation_measured', 0):,} measured, {_fmt(r.get('changes_never_applied'), 0)} never "
            f"seen by some shard; {r.get('consumer_shards')} consumer shards, snapshots taken per shard "
            f"{r.get('snapshots_applied_per_shard')}; request latency p50 {_fmt(lat.get('p50'), 0)} µs, p99 "
            f"{_fmt(lat.get('p99'), 0)} µs at {_fmt(r.get('qps'), 0)} requests/s; load average "
            f"{_fmt((r.get('load') or {}).get('loadavg_1m'), 2)} before the run.")
    out += ["* " + n for n in notes]
    for label, other, what in others:
        if other and other.get("runs"):
            om = other.get("machine", {})
            out += ["", f"`{label}:` rows: {what}; commit `{om.get('commit', '?')}`, {om.get('date_utc', '?')}."]
    if m:
        out += ["", f"Run {m.get('date_utc', '?')} on commit `{m.get('commit', '?')}`, {m.get('nproc', '?')} vCPUs. "
                f"Reproduce: `bash scripts/bench.sh registry` (knobs `BENCH_REGISTRY_*` in scripts/bench.sh)."]
    return "\n".join(out) + "\n"
