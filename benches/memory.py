"""The memory benchmark (issue 14): `python3 benches/run.py memory` -> target/bench/memory.json.

The consumer agent's resident memory (VmRSS of the process, /proc/PID/status) with its HTTP front holding:

* `idle`: no client connection (the agent started, routes to the three provider agents known, upstream
  connections dialled by the readiness calls, which are closed again);
* `N_idle` for each N in `BENCH_MEMORY_IDLE` (default 1024,10000): N keep-alive connections, each sent one
  checked `hash(s)` call and then left open and silent (`loadgen --idle-connections N`);
* `N_busy` for each N in `BENCH_MEMORY_BUSY` (default 1024): N connections under the challenge's closed-loop
  load (`loadgen --connections N`, one call at a time on each, 50 ms simulated providers); the RSS is sampled
  every 0.5 s over the measured `BENCH_MEMORY_DURATION` seconds (default 10, after `BENCH_WARMUP`), and the
  largest sample is reported (the median next to it).

Topology: the challenge's (etcd, three provider-sim behind three provider agents, one consumer agent; the
adaptive balancer). The consumer agent is started afresh for each state, so that one state's peak does not
carry over into the next; each state is read `BENCH_MEMORY_SETTLE` seconds (default 2) after its
connections are open. The number of descriptors the consumer holds is recorded next to each reading (a check
that the connections are really there).

`memory.json` = {"rss_mib_idle", "rss_mib_1024_idle", "rss_mib_1024_busy", "rss_mib_10000_idle", ...,
"runs": [per state: connections, open, errors, rss_mib, hwm_mib, fds, (busy: qps, errors, samples)],
"machine", "load"}. `BENCH_AGENT_BIN=path` measures another mesh-agent binary (an A/B of two builds with the
same load tools). The open-file limit of the runner (inherited by the agents and the load generator) is raised
to its hard limit; 10,000 connections need about 10,100 descriptors in each of the consumer and loadgen.
"""

import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import run as bench
from run import log, emit, env_float, env_list

SETTLE = env_float("BENCH_MEMORY_SETTLE", 2.0)
BUSY_DURATION = env_float("BENCH_MEMORY_DURATION", 10.0)
SAMPLE_EVERY = 0.5


def proc_status(pid):
    """VmRSS and VmHWM of a process, MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024.0
    return out.get("VmRSS"), out.get("VmHWM")


def fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    if soft != resource.RLIM_INFINITY and soft < need:
        raise RuntimeError(f"open-file limit {soft} < {need} needed (raise the hard limit: ulimit -Hn)")
    return soft


def reading(consumer, **kw):
    rss, hwm = proc_status(consumer.pid)
    r = {"rss_mib": round(rss, 2), "hwm_mib": round(hwm, 2), "fds": fds(consumer.pid)}
    r.update(kw)
    return r


def idle_state(topo, work, bins, conns):
    """Fresh consumer, `conns` idle keep-alive connections held by loadgen; the consumer's RSS."""
    consumer = restart_consumer(topo)
    target = f"http://127.0.0.1:{topo.consumer_port}/"
    out = work / f"idle-{conns}.out"
    out.write_text("")
    hold = 600
    lg = topo.procs.start(f"idle-{conns}", [bins["loadgen"], "--target", target, "--idle-connections", conns,
                                            "--duration", f"{hold}s", "--timeout-ms", 10000])
    try:
        line = bench.wait_line(out, "{", 300, lg)
        opened = json.loads(line)
        if opened["open"] < conns:
            log(f"  {conns} idle: only {opened['open']} open ({opened['errors']})")
        time.sleep(SETTLE)
        topo.procs.check()
        r = reading(consumer, state=f"{conns}_idle", connections=conns, open=opened["open"],
                    errors=opened["errors"], open_ms=opened["open_ms"])
    finally:
        topo.procs.stop(lg)
    return r


def busy_state(topo, work, bins, conns):
    """Fresh consumer under the closed-loop challenge load on `conns` connections; RSS sampled."""
    consumer = restart_consumer(topo)
    target = f"http://127.0.0.1:{topo.consumer_port}/"
    argv = bench.loadgen_argv(bins, target, conns, BUSY_DURATION, bench.WARMUP)
    samples = []
    fd_counts = []
    cpu = []  # (seconds since start, consumer CPU seconds) at the first and latest sample

    def sample(el):
        rss, _ = proc_status(consumer.pid)
        samples.append(rss)
        fd_counts.append(fds(consumer.pid))
        c = (el, bench.proc_cpu(consumer.pid))
        cpu[1:] = [c] if cpu else []
        if not cpu:
            cpu.append(c)

    name = f"busy-{conns}"
    out_path, err_path = work / f"{name}.out", work / f"{name}.log"
    with open(out_path, "wb") as out, open(err_path, "ab") as err:
        p = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             preexec_fn=bench._pdeathsig, cwd=work)
    t0 = time.monotonic()
    timeout = bench.WARMUP + BUSY_DURATION + 60
    try:
        while p.poll() is None:
            el = time.monotonic() - t0
            if bench.WARMUP <= el <= bench.WARMUP + BUSY_DURATION:
                sample(el)
            if el > timeout:
                raise RuntimeError(f"{name}: no result within {timeout:.0f} s")
            time.sleep(SAMPLE_EVERY)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    if p.returncode != 0:
        raise RuntimeError(f"{name} exited {p.returncode}: {err_path.read_text()[-2000:]}")
    res = bench.parse_loadgen(out_path.read_text())
    if not samples:
        raise RuntimeError(f"{name}: no RSS sample taken")
    _, hwm = proc_status(consumer.pid)
    # The consumer's CPU per answered call over the sampled part of the measured period (an indication next
    # to the RSS; `scripts/bench.sh overhead` is the CPU benchmark).
    cpu_us = None
    if len(cpu) == 2 and res["ok"] and cpu[1][0] > cpu[0][0]:
        rate = res["ok"] / res["duration_s"] if res["duration_s"] else None
        if rate:
            cpu_us = round((cpu[1][1] - cpu[0][1]) / ((cpu[1][0] - cpu[0][0]) * rate) * 1e6, 1)
    return {"state": f"{conns}_busy", "connections": conns, "rss_mib": round(max(samples), 2),
            "rss_mib_median": round(statistics.median(samples), 2), "hwm_mib": round(hwm, 2),
            "fds": max(f for f in fd_counts if f is not None), "samples": len(samples),
            "qps": res["qps"], "ok": res["ok"], "errors": res["errors"], "errors_by_kind": res["errors_by_kind"],
            "latency_us": res["latency_us"], "consumer_cpu_us_per_req": cpu_us}


def restart_consumer(topo):
    old = topo.agents.pop("consumer", None)
    if old is not None:
        topo.procs.stop(old, timeout=30.0)
    consumer = topo.start_consumer("adaptive")
    bench.wait_answer(topo.consumer_port, bench.HELLO_HASH, 20)
    time.sleep(SETTLE)
    return consumer


def copy_bins(work, agent):
    """The binaries (bench.copy_bins), mesh-agent from `agent` when given (target/release's is then not needed)."""
    if not agent:
        return bench.copy_bins(work)
    d = work / "bin"
    d.mkdir()
    bins = {"mesh-agent": d / "mesh-agent"}
    shutil.copy2(agent, bins["mesh-agent"])
    for n in ("provider-sim", "loadgen"):
        src = bench.RELEASE / n
        if not src.exists():
            raise RuntimeError(f"{src} missing: build first (cargo build --release -p mesh-testkit --bins)")
        shutil.copy2(src, d / n)
        bins[n] = d / n
    return bins


def memory():
    idle_counts = [int(c) for c in env_list("BENCH_MEMORY_IDLE", "1024,10000")]
    busy_counts = [int(c) for c in env_list("BENCH_MEMORY_BUSY", "1024")]
    limit = raise_nofile(max(idle_counts + busy_counts + [0]) + 1000)
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-memory."))
    procs = bench.Procs(work)
    runs = []
    try:
        agent = os.environ.get("BENCH_AGENT_BIN")
        bins = copy_bins(work, agent)
        machine = bench.machine_info(bins)
        log(f"memory: work dir {work}; idle {idle_counts}, busy {busy_counts}; open-file limit {limit}"
            + (f"; mesh-agent from {agent}" if agent else ""))
        gate = bench.wait_load("memory")
        topo = bench.Topology(procs, work, bins)
        topo.start_etcd()
        topo.start_sims()
        topo.set_balancer("adaptive")
        consumer = restart_consumer(topo)
        runs.append(reading(consumer, state="idle", connections=0))
        log(f"  idle: {runs[-1]['rss_mib']} MiB")
        emit(runs[-1])
        for conns in idle_counts:
            runs.append(idle_state(topo, work, bins, conns))
            log(f"  {conns} idle: {runs[-1]['rss_mib']} MiB ({runs[-1]['open']} open, {runs[-1]['fds']} fds)")
            emit(runs[-1])
        for conns in busy_counts:
            runs.append(busy_state(topo, work, bins, conns))
            r = runs[-1]
            log(f"  {conns} busy: {r['rss_mib']} MiB max, {r['rss_mib_median']} median ({r['qps']} qps, "
                f"{r['errors']} errors; consumer {r['consumer_cpu_us_per_req']} us CPU per call)")
            emit(r)
        gate["loadavg_1m_after"] = bench.loadavg()
        result = {f"rss_mib_{r['state']}": r["rss_mib"] for r in runs}
        result.update({"runs": runs, "settings": {"settle_s": SETTLE, "busy_duration_s": BUSY_DURATION,
                                                  "warmup_s": bench.WARMUP, "sample_every_s": SAMPLE_EVERY,
                                                  "agent_bin": agent, "nofile_limit": limit,
                                                  "consumer": topo.consumer_args},
                       "load": gate, "machine": machine})
        bench.write_json("memory.json", result)
    finally:
        procs.stop_all()
        bench.cleanup(work)
