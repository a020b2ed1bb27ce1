"""The drift benchmark (issue 14, item 4: the shape of the 2019 edition of the challenge): `python3 benches/run.py
drift` -> target/bench/drift.json.

Three providers whose capacity drifts: each `provider-sim` follows its own capacity schedule (`--schedule`: its
thread cap and latency change every `BENCH_DRIFT_STEP` seconds, differently per provider, the total staying
about 7,000 calls/s while it moves between them; see STEPS), all three with the same time 0
(`--schedule-start-unix-ms`). In front of each a provider agent, one consumer agent, etcd: the challenge
topology (benches/run.py `challenge`). The testkit loadgen drives 1,024 connections (closed loop, every answer
checked, `BENCH_DRIFT_CONNECTIONS`) through the consumer agent for the whole schedule, after a warm-up in the
first step. The same run is made through three balancers, each with fresh agents and simulators:

* `adaptive`: the provider agents register no weight and no cap (they do not know their simulator's capacity);
  the consumer's `adaptive` balancer (P2C over in-flight x peak-EWMA latency) with the concurrency limit it
  learns per provider from status-100 rejections (`mesh_balance::health::AdaptiveLimit`);
* `weights`: static configuration for the initial capacities: each provider agent registers `weight` = its
  initial calls/s and `--max-concurrency` = its initial thread cap (registered as `threads`, enforced by its
  agent with a queue); the consumer's smooth weighted round robin;
* `oracle`: a registry writer told every provider's capacity at every moment: `drift-oracle` (mesh-testkit)
  registers the provider agents itself (they run `--no-register`, with no cap) from the same schedules and the
  same time 0, and at each step rewrites each registration (old key deleted, new one put, one etcd
  transaction) with `weight` = the calls/s the provider can serve now (threads / latency) and `threads` = its
  thread cap now; the consumer's smooth weighted round robin with `cap_headroom_pct = 0` (its agent has no
  queue to absorb calls beyond the cap).

Reported per balancer: successful requests, errors (by kind), p50/p99 (loadgen, over the measured schedule),
successful requests per schedule step (loadgen's timeline), and what each simulator served and rejected with
status 100 (warm-up included). Knobs: BENCH_DRIFT_STEP=10 (seconds per step), BENCH_DRIFT_CONNECTIONS=1024,
BENCH_DRIFT_WARMUP=5, BENCH_DRIFT_BALANCERS=adaptive,weights,oracle, BENCH_DRIFT_REPEAT=1 (the balancers are
interleaved per repetition), BENCH_DRIFT_JSON=drift.json (file name under BENCH_OUT), BENCH_DRIFT_BINS (a directory
to take the binaries from instead of target/release).
"""

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import run as bench
from run import emit, env_float, env_int, env_list, free_port, log, wait_line, wait_port

PROVIDERS = ("alpha", "beta", "gamma")
# One row per step: (threads, latency ms) of alpha, beta, gamma. Total calls/s (threads / latency):
# 7000, 7000, 7000, 7250, 7125, 7000.
STEPS = (
    ((200, 50), (100, 50), (50, 50)),
    ((100, 50), (200, 50), (50, 50)),
    ((50, 50), (100, 50), (200, 50)),
    ((100, 80), (200, 40), (50, 50)),
    ((200, 50), (50, 80), (100, 40)),
    ((80, 40), (150, 50), (100, 50)),
)
BALANCERS = ("adaptive", "weights", "oracle")
SETUP_S = 15.0  # from starting the simulators to the schedules' time 0 (agents, oracle, warm-up)


def capacity(threads, latency_ms):
    return threads * 1000.0 / latency_ms


def schedule_spec(p, step_s):
    """The `--schedule` of provider `p` (index)."""
    return ";".join(f"{i * step_s:g}s:threads={row[p][0]},latency={row[p][1]}ms" for i, row in enumerate(STEPS))


def copy_bins(work):
    d = work / "bin"
    d.mkdir()
    bins = {}
    # BENCH_DRIFT_BINS: take the binaries from another directory (A/B runs of two builds).
    src_dir = Path(os.environ.get("BENCH_DRIFT_BINS") or bench.RELEASE)
    for n in ("mesh-agent", "provider-sim", "loadgen", "drift-oracle"):
        src = src_dir / n
        if not src.exists():
            raise RuntimeError(f"{src} missing: build first (cargo build --release -p mesh-agent -p mesh-testkit --bins)")
        shutil.copy2(src, d / n)
        bins[n] = d / n
    return bins


class DriftRun:
    """etcd (kept for all runs); per run: simulators on fixed ports, provider agents, consumer, maybe the oracle."""

    def __init__(self, procs, work, bins, step_s):
        self.procs, self.work, self.bins, self.step_s = procs, work, bins, step_s
        self.topo = bench.Topology(procs, work, bins)
        self.sim_ports = {n: free_port() for n in PROVIDERS}
        self.agent_ports = {n: free_port() for n in PROVIDERS}
        self.consumer_port = free_port()
        self.live = []

    def start(self, balancer, t0_ms):
        first = STEPS[0]
        for i, n in enumerate(PROVIDERS):
            threads, lat = first[i]
            p = self.procs.start(f"sim-{n}-{balancer}", [
                self.bins["provider-sim"], "--port", self.sim_ports[n], "--threads", threads, "--latency-ms", lat,
                "--knee", 0, "--name", n, "--workers", 1, "--schedule", schedule_spec(i, self.step_s),
                "--schedule-start-unix-ms", t0_ms])
            wait_line(self.work / f"sim-{n}-{balancer}.out", "LISTENING", 10, p)
            self.live.append(p)
        etcd = self.topo.etcd_url
        for i, n in enumerate(PROVIDERS):
            args = ["--listen", f"127.0.0.1:{self.agent_ports[n]}", "--dubbo", f"127.0.0.1:{self.sim_ports[n]}",
                    "--etcd", etcd, "--cores", i % bench.NPROC, "--shards", 1]
            if balancer == "weights":
                threads, lat = first[i]
                args += ["--weight", round(capacity(threads, lat)), "--max-concurrency", threads]
            elif balancer == "oracle":
                args += ["--no-register"]
            p = self.procs.start(f"provider-{n}-{balancer}", [self.bins["mesh-agent"], "provider", *args])
            wait_port(self.agent_ports[n], 10, p)
            self.live.append(p)
        if balancer == "oracle":
            argv = [self.bins["drift-oracle"], "--etcd", etcd, "--schedule-start-unix-ms", t0_ms,
                    "--base-threads", first[0][0], "--base-latency-ms", first[0][1]]
            for i, n in enumerate(PROVIDERS):
                argv += ["--provider", f"127.0.0.1:{self.agent_ports[n]}={schedule_spec(i, self.step_s)}"]
            p = self.procs.start(f"oracle-{balancer}", argv)
            wait_line(self.work / f"oracle-{balancer}.out", "READY", 20, p)
            self.live.append(p)
        consumer = {"adaptive": 'balancer = "adaptive"\n', "weights": 'balancer = "round_robin"\n',
                    "oracle": 'balancer = "round_robin"\ncap_headroom_pct = 0\n'}[balancer]
        cfg = self.topo._config_file(f"consumer-{balancer}", "[consumer]\n" + consumer)
        p = self.procs.start(f"consumer-{balancer}", [
            self.bins["mesh-agent"], "consumer", "--config", cfg, "--listen", f"127.0.0.1:{self.consumer_port}",
            "--etcd", etcd])
        wait_port(self.consumer_port, 10, p)
        self.live.append(p)
        bench.wait_answer(self.consumer_port, bench.HELLO_HASH, 20)
        want = {f"127.0.0.1:{self.agent_ports[n]}" for n in PROVIDERS}
        end = time.monotonic() + 20
        while True:
            reg = self.topo.registered()
            if reg is None or want <= set(reg):
                return reg
            if time.monotonic() > end:
                raise RuntimeError(f"providers not all registered within 20 s: {reg}")
            time.sleep(0.1)

    def stop(self, balancer):
        """Stops everything of the run (consumer first); returns the simulators' final counters."""
        sims = {}
        for p in reversed(self.live):
            self.procs.stop(p, timeout=30.0)
        for n in PROVIDERS:
            lines = [l for l in (self.work / f"sim-{n}-{balancer}.out").read_text().splitlines()
                     if l.startswith("{")]
            sims[n] = json.loads(lines[-1]) if lines else None
        self.live = []
        return sims


def per_step(timeline, step_s, steps):
    """Successful and failed calls per schedule step, from loadgen's timeline windows (measured from time 0)."""
    if not timeline:
        return None
    w = timeline["window_ms"] / 1000.0
    ok = [0] * steps
    failed = [0] * steps
    for i, (o, f) in enumerate(zip(timeline["ok"], timeline["failed"])):
        s = min(int(i * w // step_s), steps - 1)
        ok[s] += o
        failed[s] += f
    return {"ok": ok, "failed": failed}


def drift():
    step_s = env_float("BENCH_DRIFT_STEP", 10.0)
    conns = env_int("BENCH_DRIFT_CONNECTIONS", 1024)
    warmup = env_float("BENCH_DRIFT_WARMUP", 5.0)
    repeat = env_int("BENCH_DRIFT_REPEAT", 1)
    balancers = env_list("BENCH_DRIFT_BALANCERS", ",".join(BALANCERS))
    for b in balancers:
        if b not in BALANCERS:
            raise RuntimeError(f"BENCH_DRIFT_BALANCERS: unknown balancer {b!r} ({', '.join(BALANCERS)})")
    if warmup + 2 > SETUP_S:
        raise RuntimeError(f"BENCH_DRIFT_WARMUP must leave 2 s of the {SETUP_S:g} s set-up")
    duration = step_s * len(STEPS)
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-drift."))
    procs = bench.Procs(work)
    runs = []
    try:
        bins = copy_bins(work)
        machine = bench.machine_info(bins)
        log(f"drift: work dir {work}; {balancers} x {repeat}, {conns} connections, {len(STEPS)} steps of "
            f"{step_s:g} s after {warmup:g} s of warm-up")
        d = DriftRun(procs, work, bins, step_s)
        d.topo.start_etcd()
        for rep in range(repeat):
            order = balancers if rep % 2 == 0 else balancers[::-1]
            for balancer in order:
                label = f"drift {balancer}" + (f" (rep {rep + 1}/{repeat})" if repeat > 1 else "")
                gate = bench.wait_load(label)
                t0 = time.time() + SETUP_S
                t0_ms = int(t0 * 1000)
                registered = d.start(balancer, t0_ms)
                lead = t0 - time.time()
                if lead < warmup + 0.5:
                    raise RuntimeError(f"{label}: set-up took {SETUP_S - lead:.1f} s, more than the "
                                       f"{SETUP_S - warmup - 0.5:g} s it has")
                time.sleep(lead - warmup)
                gate["loadavg_1m_at_start"] = bench.loadavg()
                log(f"{label}: {warmup:g} s warm-up, then {duration:g} s of drift")
                started = time.time()
                argv = bench.loadgen_argv(bins, f"http://127.0.0.1:{d.consumer_port}/", conns, duration, warmup)
                argv += ["--timeline-ms", 1000]
                text, tool_cpu, _, _ = bench.run_tool(argv, work, f"loadgen-{balancer}-{rep}",
                                                      warmup + duration + 90)
                sims = d.stop(balancer)
                r = bench.parse_loadgen(text)
                summary = json.loads([l for l in text.splitlines() if l.startswith("{")][-1])
                lat = r["latency_us"]
                rec = {
                    "balancer": balancer,
                    "rep": rep,
                    "ok": r["ok"],
                    "errors": r["errors"],
                    "errors_by_kind": r["errors_by_kind"],
                    "requests": r["requests"],
                    "qps": r["qps"],
                    "duration_s": r["duration_s"],
                    "p50_ms": bench.rnd(lat["p50"] / 1000, 2),
                    "p99_ms": bench.rnd(lat["p99"] / 1000, 2),
                    "max_ms": bench.rnd(lat["max"] / 1000, 2),
                    "per_step": per_step(summary.get("timeline"), step_s, len(STEPS)),
                    "sims": sims,
                    "measure_offset_s": round(started + warmup - t0, 3),
                    "tool_cpu_s": round(tool_cpu, 2),
                    "registered": registered,
                    "load_gate": gate,
                }
                runs.append(rec)
                emit({k: v for k, v in rec.items() if k not in ("registered", "sims")})
        caps = [round(sum(capacity(*c) for c in row)) for row in STEPS]
        result = {
            "scenario": "drift",
            "machine": machine,
            "params": {
                "connections": conns, "step_s": step_s, "warmup_s": warmup, "duration_s": duration,
                "repeat": repeat, "balancers": balancers, "max_load": bench.MAX_LOAD,
                "providers": list(PROVIDERS),
                "steps": [{"at_s": i * step_s,
                           **{n: {"threads": row[j][0], "latency_ms": row[j][1],
                                  "calls_per_s": round(capacity(*row[j]))} for j, n in enumerate(PROVIDERS)},
                           "total_calls_per_s": caps[i]} for i, row in enumerate(STEPS)],
                "ceiling_calls": round(sum(c * step_s for c in caps)),
                "schedules": {n: schedule_spec(i, step_s) for i, n in enumerate(PROVIDERS)},
                "balancer_variants": {
                    "adaptive": "no weight, no cap registered; consumer.balancer = \"adaptive\" (P2C, learnt "
                                "concurrency limit per provider)",
                    "weights": "weight = initial calls/s and --max-concurrency = initial threads per provider "
                               "agent; consumer.balancer = \"round_robin\"",
                    "oracle": "drift-oracle registers each provider agent with weight = calls/s and threads = "
                              "thread cap of its current step, rewritten at every step; agents --no-register, "
                              "no cap; consumer.balancer = \"round_robin\", cap_headroom_pct = 0"},
                "loadgen": "closed loop, one call at a time per connection, every answer checked, timeout 5 s",
            },
            "runs": runs,
        }
        bench.write_json(os.environ.get("BENCH_DRIFT_JSON", "drift.json"), result)
    finally:
        procs.stop_all()
        bench.cleanup(work)


def drift_section(d, plot=None):
    """The "## Capacity drift" section of docs/benchmarks.md (benches/report.py); `plot`: the drift plot's
    path relative to the document, when drawn."""
    out = ["## Capacity drift (issue 14)", ""]
    if not d:
        return "\n".join(out + ["Not run yet: `bash scripts/bench.sh drift` writes `target/bench/drift.json`.", ""])
    p = d["params"]
    m = d.get("machine", {})
    out += [
        f"Run {m.get('date_utc', '?')} at {m.get('commit', '?')}: {p['connections']} connections (loadgen, closed "
        f"loop, every answer checked) through the consumer agent for {len(p['steps'])} steps of {p['step_s']:g} s "
        f"after {p['warmup_s']:g} s of warm-up; three providers whose thread cap and latency drift "
        f"(`provider-sim --schedule`), the total staying about {p['steps'][0]['total_calls_per_s']:,} calls/s "
        f"(ceiling over the run: {p['ceiling_calls']:,} calls). Target: adaptive >= 95% of the oracle's successful "
        "requests, zero errors.",
        "",
        "| step | " + " | ".join(f"{n} threads @ latency (calls/s)" for n in p["providers"]) + " | total calls/s |",
        "|---|" + "---:|" * (len(p["providers"]) + 1),
    ]
    for s in p["steps"]:
        out.append(f"| {s['at_s']:g} s | " + " | ".join(
            f"{s[n]['threads']} @ {s[n]['latency_ms']} ms ({s[n]['calls_per_s']:,})" for n in p["providers"])
            + f" | {s['total_calls_per_s']:,} |")
    out += ["", "| balancer | successful | of oracle | errors | p50 ms | p99 ms | successful per step | sims rejected (status 100) | load avg |",
            "|---|---:|---:|---:|---:|---:|---|---:|---:|"]
    oracle = [r["ok"] for r in d["runs"] if r["balancer"] == "oracle"]
    oracle_ok = sum(oracle) / len(oracle) if oracle else None
    for r in d["runs"]:
        steps = r.get("per_step") or {}
        rej = sum((s or {}).get("rejected", 0) for s in (r.get("sims") or {}).values())
        of = f"{r['ok'] / oracle_ok:.1%}" if oracle_ok else "–"
        out.append(f"| {r['balancer']} | {r['ok']:,} | {of} | {r['errors']:,} | {r['p50_ms']} | {r['p99_ms']} | "
                   f"{' / '.join(f'{x:,}' for x in steps.get('ok', []))} | {rej:,} | "
                   f"{r['load_gate'].get('loadavg_1m_at_start', '?')} |")
    out += ["", "Balancers: " + "; ".join(f"`{k}`: {v}" for k, v in p["balancer_variants"].items()) + ".", ""]
    if plot:
        out += [f"![drift: successful requests per step and per balancer]({plot})", ""]
    return "\n".join(out)


DRIFT_COLORS = {"adaptive": "#1f77b4", "weights": "#ff7f0e", "oracle": "#2ca02c"}


def plot_drift(d, path, Svg, nice_max):
    """docs/bench/drift.svg: per balancer, successful requests per schedule step next to the step's ceiling
    (left), and the run's totals: successful requests, errors and p99 (right). False when there is nothing to
    draw."""
    runs = (d or {}).get("runs") or []
    if not runs:
        return False
    p = d["params"]
    steps = p["steps"]
    W, H = 820, 380
    svg = Svg(W, H)
    svg.text(W / 2, 22, f"Capacity drift: {p['connections']:,} connections, {len(steps)} steps of {p['step_s']:g} s",
             14, "middle", weight="bold")
    # Left panel: successful requests per step.
    L, R, T, B = 70, 360, 45, 60
    ceil = [s["total_calls_per_s"] * p["step_s"] for s in steps]
    per = {r["balancer"]: (r.get("per_step") or {}).get("ok") or [] for r in runs}
    ymax = nice_max(max(ceil + [x for v in per.values() for x in v]) * 1.05)

    def Y(v):
        return H - B - v / ymax * (H - T - B)

    def X(i):
        return L + (i + 0.5) * (W - L - R) / len(steps)

    svg.value_axis(L, R, T, B, ymax, Y, "successful requests per step")
    for i, s in enumerate(steps):
        svg.text(X(i), H - B + 16, f"{s['at_s']:g} s", 10, "middle")
    svg.text(L + (W - L - R) / 2, H - B + 34, "schedule step (start)", 11, "middle")
    svg.polyline([(X(i), Y(c)) for i, c in enumerate(ceil)], "#555555", 1.5, "6,4")
    for r in runs:
        ys = per.get(r["balancer"]) or []
        color = DRIFT_COLORS.get(r["balancer"], "#7f7f7f")
        if ys:
            svg.polyline([(X(i), Y(v)) for i, v in enumerate(ys)], color, 2)
            for i, v in enumerate(ys):
                svg.marker(X(i), Y(v), color, "circle", f"{r['balancer']}: {v:,} in step {i + 1}")
    # Right panel: totals (bars: successful requests as % of the oracle's), errors and p99 written under each.
    L2, R2 = W - R + 60, 20
    oracle = [r["ok"] for r in runs if r["balancer"] == "oracle"]
    ref = sum(oracle) / len(oracle) if oracle else max(r["ok"] for r in runs)

    def Y2(v):
        return H - B - v / 110.0 * (H - T - B)

    for v in (0, 25, 50, 75, 100):
        svg.line(L2, Y2(v), W - R2, Y2(v), "#e5e5e5")
        svg.text(L2 - 6, Y2(v) + 4, f"{v}%", 10, "end")
    svg.line(L2, Y2(95), W - R2, Y2(95), "#d62728", 1.5, "5,3")
    svg.line(L2, H - B, W - R2, H - B, "#333")
    svg.line(L2, T, L2, H - B, "#333")
    svg.text(L2 - 42, T + (H - T - B) / 2, "successful, % of oracle", 11, "middle", rotate=-90)
    gw = (W - R2 - L2) / len(runs)
    bw = gw * 0.6
    for i, r in enumerate(runs):
        x = L2 + i * gw + (gw - bw) / 2
        v = r["ok"] / ref * 100 if ref else 0
        color = DRIFT_COLORS.get(r["balancer"], "#7f7f7f")
        svg.rect(x, Y2(v), bw, H - B - Y2(v), color, f"{r['balancer']}: {r['ok']:,} successful")
        svg.text(x + bw / 2, Y2(v) - 4, f"{v:.1f}%", 10, "middle")
        svg.text(x + bw / 2, H - B + 14, r["balancer"], 10, "middle")
        svg.text(x + bw / 2, H - B + 27, f"{r['errors']:,} err", 9, "middle", "#d62728" if r["errors"] else "#444")
        svg.text(x + bw / 2, H - B + 39, f"p99 {r['p99_ms']:,.0f} ms", 9, "middle", "#444")
    # Legend (left panel).
    y = H - 10
    x = L
    for name in [r["balancer"] for r in runs] + ["ceiling"]:
        color = DRIFT_COLORS.get(name, "#555555")
        svg.line(x, y - 4, x + 20, y - 4, color, 2, "6,4" if name == "ceiling" else None)
        svg.text(x + 25, y, name if name != "ceiling" else "ceiling (capacity x step)", 10)
        x += 80 if name != "ceiling" else 0
    svg.line(L2, y - 4, L2 + 20, y - 4, "#d62728", 1.5, "5,3")
    svg.text(L2 + 25, y, "target: adaptive >= 95% of the oracle", 10)
    svg.save(path)
    return True
