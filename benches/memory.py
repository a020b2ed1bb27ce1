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
"runs": [per state: connections, open, errors, rss_mib, hwm_mib, fds, breakdown_kib (where the RSS is: see
smaps_breakdown; busy: read once in the middle of the measured period), (busy: qps, errors, samples,
consumer_cpu_us_per_req), malloc (only with BENCH_MEMORY_MALLOC_STATS=1: glibc's own account, see
malloc_stats; gdb stops the agent for about a second, so a busy run read that way loses throughput and may
time calls out)], "machine", "load"}. `BENCH_AGENT_BIN=path` measures another mesh-agent binary (an A/B of two builds with the
same load tools). `BENCH_MEMORY_TEXT=1`: each reading carries `binary_pages` (the resident pages of the
agent's executable, see binary_resident_pages; `python3 benches/text_residency.py BINARY memory.json` sums
them by section and crate). `BENCH_MEMORY_COLD_BINARY=1`: the copied agent binary is dropped from the page
cache before the agents start, so that its pages come in by the processes' own faults (with the default, the
page cache holds it as the copy wrote it: on kernels that map a whole large folio per fault, which pages are
resident depends on how the file came into the cache). The open-file limit of the runner (inherited by the agents and the load generator) is raised
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
MALLOC_STATS = os.environ.get("BENCH_MEMORY_MALLOC_STATS", "0") == "1"
# BENCH_MEMORY_TEXT=1: each reading also lists which pages of the agent's executable file are resident (see
# binary_resident_pages; benches/text_residency.py maps them to sections and crates).
TEXT_PAGES = os.environ.get("BENCH_MEMORY_TEXT", "0") == "1"


def proc_status(pid):
    """VmRSS and VmHWM of a process, MiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024.0
    return out.get("VmRSS"), out.get("VmHWM")


# Arenas of glibc malloc other than the main one are mmap'd regions of at most HEAP_MAX_SIZE (64 MiB on 64-bit)
# aligned to their size: the part in use readable and writable, the rest PROT_NONE.
ARENA_ALIGN = 64 << 20


def smaps_breakdown(pid):
    """The process's resident memory (KiB) by kind of mapping, from /proc/PID/smaps:

    `binary` (pages of the agent's executable file: text, read-only data), `libraries` (other files),
    `io_uring` (the rings' SQ/CQ/SQE arrays the kernel maps into the process: 3 rings per glommio executor),
    `heap_main` (the main arena, [heap]), `malloc_arenas` (glibc's other arenas: anonymous rw mappings aligned
    to 64 MiB and followed by their PROT_NONE reserve), `thread_stacks` (anonymous rw mappings right above a
    PROT_NONE guard, plus the main [stack]), `anon_other` (all other anonymous memory: mostly blocks malloc
    served by their own mmap, i.e. large allocations), `other` ([vdso], [vvar], ...)."""
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split(None, 5)
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = {"lo": lo, "hi": hi, "perms": head[1], "name": head[5].strip() if len(head) > 5 else "",
                       "rss": 0}
                maps.append(cur)
            elif head[0] == "Rss:" and cur is not None:
                cur["rss"] = int(head[1])
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    out = {k: 0 for k in ("binary", "libraries", "io_uring", "heap_main", "malloc_arenas", "thread_stacks",
                          "anon_other", "other")}
    for i, m in enumerate(maps):
        name = m["name"]
        if name == exe:
            kind = "binary"
        elif name.startswith("/"):
            kind = "libraries"
        elif name == "anon_inode:[io_uring]":
            kind = "io_uring"
        elif name == "[heap]":
            kind = "heap_main"
        elif name == "[stack]":
            kind = "thread_stacks"
        elif name:
            kind = "other"
        else:
            prev = maps[i - 1] if i else None
            nxt = maps[i + 1] if i + 1 < len(maps) else None
            if (m["lo"] % ARENA_ALIGN == 0 and nxt is not None and nxt["lo"] == m["hi"]
                    and nxt["perms"].startswith("---")):
                kind = "malloc_arenas"
            elif prev is not None and prev["hi"] == m["lo"] and prev["perms"].startswith("---") and not prev["name"]:
                kind = "thread_stacks"
            else:
                kind = "anon_other"
        out[kind] += m["rss"]
    out["total"] = sum(out.values())
    return out


def binary_resident_pages(pid):
    """The pages of the agent's executable file that are resident in the process (mapped in its page table:
    what VmRSS counts), as [first, last] ranges of file page numbers (4 KiB), from /proc/PID/maps and
    /proc/PID/pagemap (bit 63: present; needs root or CAP_SYS_ADMIN for the page frame, not for that bit).
    A page written by the process (relocations) is counted too: it stays in the file's mapping."""
    exe = os.readlink(f"/proc/{pid}/exe")
    pages = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        for line in maps:
            parts = line.split(None, 5)
            if len(parts) < 6 or parts[5].strip() != exe:
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            first = int(parts[2], 16) // 4096
            n = (hi - lo) // 4096
            pagemap.seek(lo // 4096 * 8)
            data = pagemap.read(n * 8)
            for i in range(len(data) // 8):
                if data[i * 8 + 7] & 0x80:
                    pages.append(first + i)
    ranges = []
    for pg in sorted(set(pages)):
        if ranges and ranges[-1][1] == pg - 1:
            ranges[-1][1] = pg
        else:
            ranges.append([pg, pg])
    return ranges


def malloc_stats(pid, log_path):
    """glibc's own account of its heap: gdb calls `malloc_stats()` in the process (it writes to the process's
    stderr, the agent's log), then the numbers are read back from the log. {"arenas": n, "system_kib": bytes
    malloc holds from the system incl. its own mmaps, "in_use_kib": bytes in allocated blocks incl. those,
    "arenas_system_kib" / "arenas_in_use_kib": the same over the arenas only, "mmapped_kib": blocks served by
    their own mmap}; arenas' system - in use = free memory malloc keeps (fragmentation, untrimmed tops). None when gdb is missing or fails. Stops the process for the
    time gdb is attached (about a second): only with BENCH_MEMORY_MALLOC_STATS=1."""
    if not shutil.which("gdb"):
        return None
    start = log_path.stat().st_size if log_path.exists() else 0
    try:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void)malloc_stats()"],
                       capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    time.sleep(0.2)
    with open(log_path, "rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    arenas, arena_system, arena_in_use, system, in_use = 0, 0, 0, None, None
    total = False
    for line in text.splitlines():
        k, _, v = line.partition("=")
        k = k.strip()
        if line.startswith("Arena "):
            arenas += 1
        elif line.startswith("Total (incl. mmap)"):
            total = True
        elif k == "system bytes":
            if total:
                system = int(v)
            else:
                arena_system += int(v)
        elif k == "in use bytes":
            if total:
                in_use = int(v)
            else:
                arena_in_use += int(v)
    if system is None or in_use is None:
        return None
    return {"arenas": arenas, "system_kib": system // 1024, "in_use_kib": in_use // 1024,
            "arenas_system_kib": arena_system // 1024, "arenas_in_use_kib": arena_in_use // 1024,
            "mmapped_kib": (system - arena_system) // 1024}


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


def reading(consumer, work, **kw):
    rss, hwm = proc_status(consumer.pid)
    r = {"rss_mib": round(rss, 2), "hwm_mib": round(hwm, 2), "fds": fds(consumer.pid)}
    r.update(kw)
    r.update(inspect(consumer, work))
    return r


def inspect(consumer, work):
    """Where the consumer's memory is (see smaps_breakdown and malloc_stats)."""
    r = {"breakdown_kib": smaps_breakdown(consumer.pid)}
    if TEXT_PAGES:
        r["binary_pages"] = binary_resident_pages(consumer.pid)
    if MALLOC_STATS:
        r["malloc"] = malloc_stats(consumer.pid, work / "consumer.log")
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
        r = reading(consumer, work, state=f"{conns}_idle", connections=conns, open=opened["open"],
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
    seen = {}  # the breakdown, taken once in the middle of the measured period

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
                if not seen and el >= bench.WARMUP + BUSY_DURATION / 2:
                    seen.update(inspect(consumer, work))
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
            "latency_us": res["latency_us"], "consumer_cpu_us_per_req": cpu_us, **seen}


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
    if os.environ.get("BENCH_MEMORY_COLD_BINARY", "0") == "1":
        fd = os.open(bins["mesh-agent"], os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
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
        runs.append(reading(consumer, work, state="idle", connections=0))
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
