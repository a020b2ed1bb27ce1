"""The "Registry at scale (issue 11)" section of docs/benchmarks.md, from target/bench/registry.json
(benches/registry.py). Imported by benches/report.py."""

TARGET_P99_MS = 50.0
TARGET_CPU_US = 50.0
# Issue 13: application-level at most a tenth of interface-level's etcd keys and bytes at 10 x 500.
TARGET_SHARE = 0.1
TARGET_ESTATE = "10x500"


def _fmt(x, nd=1):
    if x is None:
        return "–"
    return f"{int(round(x)):,}" if nd == 0 else f"{x:,.{nd}f}"


def _met(ok):
    return "**met**" if ok else "**not met**"


def _issue11(r):
    """Issue 11's runs: interface-level, one interface per instance (rows from before issue 13 have no
    `instance_exports`)."""
    return (r.get("instance_exports", "one") == "one" and not str(r.get("model", "")).startswith("application")
            and "error" not in r)


def _variant(r):
    """` K=64, isolated`: the provider subset and the CPU isolation of a run, when not the defaults."""
    parts = []
    if r.get("provider_subset"):
        parts.append(f"K={r['provider_subset']}")
    if r.get("isolated"):
        parts.append("isolated")
    return (", " + ", ".join(parts)) if parts else ""


def _label(r):
    if "estate" in r:
        return f"{r['estate']} ({r['services']} x {r['instances'] // max(1, r['services']):,}{_variant(r)})"
    return f"{r['model']} ({r['services']} x {r['instances'] // max(1, r['services']):,}{_variant(r)})"


def _kinds(d, fmt=lambda x: _fmt(x, 1)):
    d = d or {}
    return " / ".join(fmt(d.get(k)) for k in ("registry", "shards", "other"))


def _split_rows(runs, label=""):
    """Where a run's CPU per change goes: per thread kind, and what the shards were given to do."""
    rows = []
    for r in runs:
        if r.get("cpu_us_per_change_by_thread") is None:
            continue
        tq = (r.get("thread_cpu_ms_per_s") or {}).get("quiet")
        tc = (r.get("thread_cpu_ms_per_s") or {}).get("churn")
        cs = r.get("context_switches_per_change_by_thread") or {}
        rows.append([
            f"{label}{_label(r)}",
            "isolated" + (f" (consumer on CPU {','.join(map(str, r.get('consumer_cpus') or []))})"
                          if r.get("consumer_cpus") else "") if r.get("isolated") else "shared",
            _fmt(r.get("cpu_us_per_change"), 1) + " (" + ", ".join(
                _fmt(x, 0) for x in r.get("cpu_us_per_change_by_round") or []) + ")",
            _kinds(r.get("cpu_us_per_change_by_thread")),
            (_fmt((tq or {}).get("registry"), 1) + " / " + _fmt((tc or {}).get("registry"), 1) + "; "
             + _fmt((tq or {}).get("shards"), 1) + " / " + _fmt((tc or {}).get("shards"), 1)) if tq else "–",
            (" / ".join(_fmt((cs.get(k) or {}).get("voluntary"), 2) + " + "
                        + _fmt((cs.get(k) or {}).get("involuntary"), 2) for k in ("registry", "shards"))
             if cs else "–"),
            _fmt(r.get("snapshots_per_change"), 3),
            _fmt(r.get("propagation_published_p50_ms"), 2) + " / " + _fmt(r.get("propagation_published_p99_ms"), 2),
        ])
    return rows


def _rows(runs, label=""):
    rows = []
    for r in runs:
        p99 = r.get("propagation_p99_ms")
        cpu = r.get("cpu_us_per_change")
        rows.append([
            f"{label}{_label(r)}",
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
    rows = _rows([r for r in rg["runs"] if _issue11(r)])
    for label, other, _ in others:
        if other and other.get("runs"):
            rows += _rows([r for r in other["runs"] if _issue11(r)], f"{label}: ")
    out.append(table(["model", "changes/s", "propagation p50 ms", "p99 ms", "max ms", "CPU µs/change",
                      "consumer CPU ms/s quiet / churn", "consumer RSS MiB", "etcd keys", "etcd key+value bytes",
                      "etcd db bytes", "requests", "failed", "request latency p50 / p99 µs"], rows))
    out.append("")
    notes = []
    for r in rg["runs"]:
        if not _issue11(r):
            continue
        lat = r.get("latency_us") or {}
        notes.append(
            f"{_label(r)}: {r.get('changes', 0):,} changes ({r.get('changes_failed', 0)} not acknowledged by "
            f"etcd), {r.get('propagation_measured', 0):,} measured, {_fmt(r.get('changes_never_applied'), 0)} never "
            f"seen by some shard; {r.get('consumer_shards')} consumer shards, snapshots taken per shard "
            f"{r.get('snapshots_applied_per_shard')}; request latency p50 {_fmt(lat.get('p50'), 0)} µs, p99 "
            f"{_fmt(lat.get('p99'), 0)} µs at {_fmt(r.get('qps'), 0)} requests/s; load average "
            f"{_fmt((r.get('load') or {}).get('loadavg_1m'), 2)} before the run.")
    out += ["* " + n for n in notes]
    split = _split_rows([r for r in rg["runs"] if _issue11(r)])
    for label, other, _ in others:
        if other and other.get("runs"):
            split += _split_rows([r for r in other["runs"] if _issue11(r)], f"{label}: ")
    if split:
        out += ["", "Where a change's CPU goes, per consumer thread kind (the same churn - quiet difference per "
                "change, from each thread's `schedstat`): **shared** runs put every process on every CPU (the "
                "method of the table above); **isolated** runs (`BENCH_REGISTRY_ISOLATE=1`) put the consumer alone "
                "on its CPU (one shard; its registry thread on the same CPU) and etcd, registry-churn, loadgen and "
                "the simulator on the others, so that the difference is the consumer's own work and not their "
                "interference with it. With a provider subset (K) a change outside the subset publishes nothing: "
                "`snapshots per change` is the share of changes the shards received a snapshot for, and the "
                "propagation of those changes is in the last column.", ""]
        out.append(table(["run", "CPUs", "CPU µs/change (rounds)", "registry / shards / other µs per change",
                          "registry; shards CPU ms/s quiet / churn",
                          "context switches per change, registry / shards (voluntary + involuntary)",
                          "snapshots per change", "propagation of published changes p50 / p99 ms"], split))
    for label, other, what in others:
        if other and other.get("runs"):
            om = other.get("machine", {})
            out += ["", f"`{label}:` rows: {what}; commit `{om.get('commit', '?')}`, {om.get('date_utc', '?')}."]
    if m:
        out += ["", f"Run {m.get('date_utc', '?')} on commit `{m.get('commit', '?')}`, {m.get('nproc', '?')} vCPUs. "
                f"Reproduce: `bash scripts/bench.sh registry` (knobs `BENCH_REGISTRY_*` in scripts/bench.sh)."]
    out += ["", discovery_section(rg, table)]
    return "\n".join(out).rstrip("\n") + "\n"


def _pairs(runs):
    """(estate, interface-level run of the same estate, application-level run) per application run: the
    interface run whose instances export every service (`instance_exports` all, or a single service)."""
    out = []
    runs = [r for r in runs if "error" not in r]
    for a in runs:
        if a.get("model") != "application":
            continue
        # "interface" or "interface (<layout>)" (BENCH_REGISTRY_LAYOUT=java-3.3)
        same = [r for r in runs if (r.get("model") or "").split(" ")[0] == "interface"
                and r.get("estate") == a.get("estate")
                and (r.get("instance_exports") == "all" or r.get("services") == 1)]
        out.append((a.get("estate"), same[0] if same else None, a))
    return out


def _share(a, i, field):
    if not a or not i or not a.get(field) or not i.get(field):
        return None
    return a[field] / i[field]


def discovery_section(rg, table):
    """Issue 13: the same estate under interface-level and application-level discovery."""
    out = ["## Application-level vs interface-level discovery (issue 13)", ""]
    pairs = _pairs(rg.get("runs") or [])
    failed = [r for r in rg.get("runs") or [] if "error" in r]
    if not pairs:
        out.append("No application-level run yet: `BENCH_REGISTRY_MODELS=10x500:interface,10x500:application "
                   "bash scripts/bench.sh registry`.")
        out += [f"* run `{r.get('run')}` failed: {r['error'][:300]}" for r in failed]
        return "\n".join(out) + "\n"
    s = rg.get("settings", {})
    layout = s.get("layout", "java-2.7")
    writer = {"java-3.3": "Java 3.3"}.get(layout, "Java 2.7")
    # Runs before the `app_mapping` setting always wrote dubbo-go's mapping keys.
    mapping = s.get("app_mapping", "dubbo-go")
    mapping_text = (", plus one mapping key per service (`/dubbo/mapping/<interface>`, dubbo-go's)"
                    if mapping == "dubbo-go" else
                    ", and no mapping key (Java's etcd metadata report writes none: the consumer is given "
                    "`provided_by`, as a Java consumer on etcd must be)")
    out += [
        "The same estate, S services on N provider instances, registered both ways in a fresh etcd and churned "
        f"the same way ({_fmt(s.get('churn_rate'), 0)} instance changes/s: one instance leaves, one joins, "
        "alternately), with the same consumer load as above. **interface-level**: every instance writes one key "
        f"per service, as {writer} does (S x N keys; a change puts or deletes an instance's S keys in one "
        "transaction). **application-level** (Dubbo 3): every instance writes one `/services/<app>/<ip>:<port>` "
        f"key ({s.get('app_shape', 'java-3')} JSON){mapping_text}; the consumer fetches each revision's MetadataInfo from an instance's MetadataService "
        "(provider-sim answers it on every instance); a joining instance has the revision the others have.",
        "",
        "* **time to first route**: consumer process started -> first right answer to `hash(\"hello\")` "
        "(polled every 5 ms);",
        "* **MetadataService calls per change**: `getMetadataInfo` calls the simulator answered during the "
        "churn phases, per change (those before, at the consumer's start, in the JSON: "
        "`metadata_calls_before_churn`);",
        "* the other columns as in the table above.",
        "",
    ]
    rows = []
    claims = []
    for estate, i, a in pairs:
        for r in (i, a):
            if r is None:
                continue
            keys_share = _share(a, i, "etcd_keys") if r is a else None
            bytes_share = _share(a, i, "etcd_bytes") if r is a else None
            p99 = r.get("propagation_p99_ms")
            rows.append([
                f"{estate} ({r['services']} x {r['instances']:,})", r["model"],
                _fmt(r.get("etcd_keys"), 0), _fmt(r.get("etcd_bytes"), 0),
                "–" if keys_share is None else f"{keys_share:.4f} / {bytes_share:.4f}"
                + (f" ({_met(keys_share <= TARGET_SHARE and bytes_share <= TARGET_SHARE)})"
                   if estate == TARGET_ESTATE and bytes_share is not None else ""),
                _fmt(r.get("time_to_first_route_ms"), 0),
                _fmt(r.get("propagation_p50_ms"), 2) + " / " + _fmt(p99, 2)
                + ("" if p99 is None else f" ({_met(p99 <= TARGET_P99_MS)})"),
                _fmt(r.get("cpu_us_per_change"), 1),
                _fmt(r.get("consumer_rss_mib"), 1),
                _fmt(r.get("metadata_calls_per_change"), 3) if r is a else "–",
                f"{_fmt(r.get('failed'), 0)} ({_met(r.get('failed') == 0)})",
            ])
        s_, n_ = a["services"], a["instances"]
        claim = (f"{estate}: the seed's claim is {s_ * n_:,} entries (services x instances) at interface level vs "
                 f"{n_:,} (instances) at application level, a share of {1 / s_:.2f}; measured ")
        if i:
            claim += (f"{_fmt(i.get('etcd_keys'), 0)} keys / {_fmt(i.get('etcd_bytes'), 0)} bytes vs "
                      f"{_fmt(a.get('etcd_keys'), 0)} keys / {_fmt(a.get('etcd_bytes'), 0)} bytes (interface-level "
                      f"counts Java's 2 persistent parent keys per service"
                      + (f", application-level the {s_} mapping keys" if mapping == "dubbo-go" else "")
                      + f"), a share of {_share(a, i, 'etcd_keys'):.4f} of the keys and "
                      f"{_share(a, i, 'etcd_bytes'):.4f} of the bytes")
            inst = ((a.get("etcd_by_root") or {}).get("/services") or {}).get("keys")
            if inst is not None and i.get("etcd_keys") is not None:
                entries = i["etcd_keys"] - 2 * s_
                claim += (f"; the instance entries alone: {entries:,} provider keys vs {inst:,} instance keys "
                          f"({inst / max(1, entries):.3f}).")
            else:
                claim += "."
        else:
            claim += f"{_fmt(a.get('etcd_keys'), 0)} keys / {_fmt(a.get('etcd_bytes'), 0)} bytes (no interface run of this estate)."
        claims.append(claim)
    out.append(table(["estate (S x N)", "model", "etcd keys", "etcd key+value bytes",
                      "application / interface keys / bytes", "time to first route ms", "propagation p50 / p99 ms",
                      "CPU µs/change", "consumer RSS MiB", "MetadataService calls/change", "failed"], rows))
    out.append("")
    out += ["* " + c for c in claims]
    out += [f"* run `{r.get('run')}` failed: {r['error'][:300]}" for r in failed]
    out += ["", f"Targets (issue 13): at {TARGET_ESTATE}, application-level uses at most {TARGET_SHARE:g} of "
            f"interface-level's etcd keys and bytes, with the same propagation target (p99 <= {TARGET_P99_MS:g} ms). "
            "Reported, not asserted."]
    return "\n".join(out) + "\n"
