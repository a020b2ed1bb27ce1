#!/usr/bin/env python3
"""Drives the end-to-end benchmarks (python3 standard library only). Called by scripts/bench.sh.

    python3 benches/run.py challenge    -> target/bench/challenge.json
    python3 benches/run.py overhead     -> target/bench/overhead.json
    python3 benches/run.py generic      -> target/bench/generic.json (form vs JSON call vs the Dubbo port)
    python3 benches/run.py faults       -> target/bench/faults.json
    python3 benches/run.py registry     -> target/bench/registry.json (benches/registry.py)
    python3 benches/run.py drift        -> target/bench/drift.json (benches/drift.py)
    python3 benches/run.py memory       -> target/bench/memory.json (benches/memory.py)
    python3 benches/run.py wait-load    -> waits for a quiet box, prints the gate as JSON (for the codec bench)
    python3 benches/run.py machine      -> prints the machine/version JSON (for the codec bench)

Everything listens on 127.0.0.1 (free ports); every process started here is stopped on exit (also on
Ctrl-C / SIGTERM; children also get SIGTERM through PR_SET_PDEATHSIG if this process dies). One JSON line
per measured run goes to stdout as it finishes; progress goes to stderr. docs/benchmarks.md says what is
measured and how; the knobs are the BENCH_* environment variables below.
"""

import ctypes
import hashlib
import http.client
import json
import urllib.parse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(os.environ.get("BENCH_OUT") or ROOT / "target" / "bench").resolve()  # results (JSON)
RELEASE = ROOT / "target" / "release"
CLK = os.sysconf("SC_CLK_TCK")
NPROC = os.cpu_count() or 1

SERVICE = "com.alibaba.dubbo.performance.demo.provider.IHelloService"
HELLO_BODY = (
    "interface=" + SERVICE + "&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=hello"
)
HELLO_HASH = "99162322"  # java_string_hash("hello")


def env_float(name, default):
    v = os.environ.get(name, "").strip()
    if not v:
        return default
    return float(v[:-1]) if v.endswith("s") else float(v)


def env_int(name, default):
    return int(env_float(name, default))


def env_list(name, default):
    v = os.environ.get(name, "").strip()
    return [x.strip() for x in (v or default).split(",") if x.strip()]


DURATION = env_float("BENCH_DURATION", 15.0)  # measured seconds per run
WARMUP = env_float("BENCH_WARMUP", 3.0)  # warm-up seconds before each run
MAX_LOAD = env_float("BENCH_MAX_LOAD", 1.5)  # 1-minute load average above which a run waits
LOAD_WAIT = env_float("BENCH_LOAD_WAIT", 600.0)  # longest wait for the load average, seconds
LOAD_POLL = env_float("BENCH_LOAD_POLL", 30.0)  # polling period of that wait
KEEP = os.environ.get("BENCH_KEEP", "0") == "1"  # keep the work dir (logs, configs)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def emit(obj):
    print(json.dumps(obj, separators=(",", ":")), flush=True)


class Interrupted(Exception):
    pass


def _on_term(signum, frame):
    raise Interrupted(f"signal {signum}")


# ------------------------------------------------------------------------------------------------------
# /proc


def proc_stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    return s[s.rindex(")") + 2 :].split()


def proc_cpu(pid):
    """utime + stime of a process (all its threads), seconds; None when it is gone."""
    try:
        rest = proc_stat(pid)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return None
    return (int(rest[11]) + int(rest[12])) / CLK


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if int(proc_stat(d)[1]) == pid:
                    out.append(int(d))
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                pass
    return out


def tree_pids(pid):
    pids = [pid]
    for c in children_of(pid):
        pids.extend(tree_pids(c))
    return pids


def thread_cpu(pid):
    """CPU seconds per thread name (threads of the same name summed)."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except FileNotFoundError:
            continue
        comm = s[s.index("(") + 1 : s.rindex(")")]
        rest = s[s.rindex(")") + 2 :].split()
        out[comm] = out.get(comm, 0.0) + (int(rest[11]) + int(rest[12])) / CLK
    return out


def ctx_switches(pids):
    """Voluntary + involuntary context switches of every thread of `pids`."""
    n = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if "ctxt_switches" in line:  # voluntary_ and nonvoluntary_
                            n += int(line.split()[-1])
            except (FileNotFoundError, ValueError):
                continue
    return n


def cpu_by_pid():
    """{pid: (starttime, ppid, cpu seconds)} of every process on the box."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            rest = proc_stat(d)
            out[int(d)] = (int(rest[19]), int(rest[1]), (int(rest[11]) + int(rest[12])) / CLK)
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            pass
    return out


def foreign_cpu(before, after):
    """CPU seconds used between two cpu_by_pid() samples by processes that are not this runner's
    descendants: (user processes, kernel threads). Processes started in between count in full; processes
    that ended in between are missed."""
    def descendants(sample):
        kids = {}
        for pid, (_, ppid, _) in sample.items():
            kids.setdefault(ppid, []).append(pid)
        out, todo = set(), [os.getpid()]
        while todo:
            pid = todo.pop()
            out.add(pid)
            todo.extend(kids.get(pid, []))
        return out

    ours = descendants(before) | descendants(after)
    user = kernel = 0.0
    for pid, (start, ppid, cpu) in after.items():
        if pid in ours:
            continue
        b = before.get(pid)
        used = cpu - (b[2] if b and b[0] == start else 0.0)
        if pid == 2 or ppid == 2:
            kernel += used
        else:
            user += used
    return round(user, 2), round(kernel, 2)


def box_cpu():
    """(busy, total, irq + softirq, steal) CPU seconds of the whole machine since boot (all cores)."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts[:8]]
    user, nice, system, idle, iowait, irq, softirq, steal = v
    busy = user + nice + system + irq + softirq + steal
    return busy / CLK, (busy + idle + iowait) / CLK, (irq + softirq) / CLK, steal / CLK


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def wait_load(what):
    """The measurement gate: wait while the 1-minute load average is above MAX_LOAD (bounded)."""
    t0 = time.monotonic()
    la = loadavg()
    while la > MAX_LOAD and time.monotonic() - t0 < LOAD_WAIT:
        left = LOAD_WAIT - (time.monotonic() - t0)
        log(f"{what}: load average {la:.2f} > {MAX_LOAD}: waiting (polling every {LOAD_POLL:.0f} s, "
            f"{left:.0f} s left)")
        time.sleep(max(0.0, min(LOAD_POLL, left)))
        la = loadavg()
    waited = time.monotonic() - t0
    if la > MAX_LOAD:
        log(f"{what}: load average still {la:.2f} after {waited:.0f} s: measuring anyway (recorded)")
    return {"loadavg_1m": la, "waited_s": round(waited, 1), "quiet": la <= MAX_LOAD}


# ------------------------------------------------------------------------------------------------------
# machine and versions


def _cmd(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=20, cwd=ROOT)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return None


def machine_info(bins=None):
    model = None
    mhz = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and model is None:
                    model = line.split(":", 1)[1].strip()
                if line.startswith("cpu MHz") and mhz is None:
                    mhz = line.split(":", 1)[1].strip()
    except OSError:
        pass
    nginx = _cmd(["nginx", "-v"])
    wrk = _cmd(["wrk", "-v"])
    etcd = _cmd(["etcd", "--version"])
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True, cwd=ROOT).stdout
    diff = subprocess.run(["git", "diff", "HEAD", "--", "crates", "Cargo.toml", "Cargo.lock"],
                          capture_output=True, cwd=ROOT).stdout
    info = {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": NPROC,
        "cpu_model": model,
        "cpu_mhz": mhz,
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "rustc": _cmd(["rustc", "-V"]),
        "etcd": etcd.splitlines()[0] if etcd else None,
        "nginx": nginx.splitlines()[0] if nginx else None,
        "wrk": wrk.splitlines()[0] if wrk else None,
        "python": platform.python_version(),
        "commit": _cmd(["git", "rev-parse", "--short", "HEAD"]),
        "uncommitted_changes": [l[3:] for l in dirty.splitlines() if len(l) > 3],
        "uncommitted_diff_sha256": hashlib.sha256(diff).hexdigest()[:16] if diff else None,
    }
    build = OUT / "build.json"
    if build.exists():
        info["build"] = json.loads(build.read_text())
    if bins:
        info["binaries_sha256"] = {
            n: hashlib.sha256(Path(p).read_bytes()).hexdigest()[:16] for n, p in sorted(bins.items())
        }
    return info


# ------------------------------------------------------------------------------------------------------
# processes


def _pdeathsig():
    # Children get SIGTERM if this runner dies without cleaning up.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, seconds, proc=None):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}) before opening port {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {seconds} s")


class Procs:
    """Processes started by the runner, stopped in reverse order at the end."""

    def __init__(self, work):
        self.work = work
        self.live = []

    def start(self, name, argv):
        out = open(self.work / f"{name}.out", "ab")
        err = open(self.work / f"{name}.log", "ab")
        p = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             preexec_fn=_pdeathsig, cwd=self.work)
        out.close()
        err.close()
        p.bench_name = name
        self.live.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=10.0):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log(f"{p.bench_name} did not stop within {timeout} s: SIGKILL")
                p.kill()
                p.wait()
        if p in self.live:
            self.live.remove(p)
        return p.returncode

    def check(self):
        """Fails if a long-lived process has exited (its result would not mean anything)."""
        for p in self.live:
            if p.poll() is not None:
                raise RuntimeError(f"{p.bench_name} exited unexpectedly ({p.returncode}); "
                                   f"see {self.work / (p.bench_name + '.log')} (BENCH_KEEP=1 keeps it)")

    def stop_all(self):
        for p in reversed(list(self.live)):
            try:
                self.stop(p, timeout=5.0)
            except Exception as e:  # keep stopping the others
                log(f"stopping {p.bench_name}: {e}")


def wait_line(path, prefix, seconds, proc):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(prefix):
                    return line
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.bench_name} exited ({proc.returncode}) before printing {prefix!r}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.bench_name}: no {prefix!r} line within {seconds} s")


def run_tool(argv, work, name, timeout, sample_at=None, sampler=None):
    """Runs a load tool to completion; returns (stdout, cpu seconds of the tool, sample taken at
    `sample_at` seconds after the start (or None), wall seconds). The tool's CPU comes from wait4."""
    out_path = work / f"{name}.out"
    err_path = work / f"{name}.log"
    with open(out_path, "wb") as out, open(err_path, "ab") as err:
        p = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             preexec_fn=_pdeathsig, cwd=work)
    t0 = time.monotonic()
    sample = None
    try:
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                break
            el = time.monotonic() - t0
            if sample_at is not None and sample is None and el >= sample_at:
                sample = sampler()
                sample["tool"] = proc_cpu(p.pid) or 0.0
            if el > timeout:
                p.kill()
                pid, status, ru = os.wait4(p.pid, 0)
                p.returncode = os.waitstatus_to_exitcode(status)
                raise RuntimeError(f"{name}: no result within {timeout:.0f} s")
            time.sleep(0.005 if sample_at is not None and sample is None and sample_at - el < 0.1 else 0.02)
    except BaseException:
        if p.returncode is None:
            p.kill()
            os.wait4(p.pid, 0)
            p.returncode = -9
        raise
    wall = time.monotonic() - t0
    text = out_path.read_text()
    if p.returncode != 0:
        raise RuntimeError(f"{name} exited {p.returncode}: {err_path.read_text()[-2000:]}")
    return text, ru.ru_utime + ru.ru_stime, sample, wall


def post_hello(port, timeout=2.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", "/", body=HELLO_BODY, headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        return r.status, r.read().decode("utf-8", "replace")
    finally:
        c.close()


def wait_answer(port, expect, seconds):
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        try:
            last = post_hello(port)
            if last == (200, expect):
                return
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port} did not answer hash(\"hello\") = {expect} within {seconds} s "
                       f"(last: {last})")


def copy_bins(work):
    """Copies the binaries into the work dir, so a rebuild by someone else mid-run changes nothing."""
    d = work / "bin"
    d.mkdir()
    bins = {}
    for n in ("mesh-agent", "provider-sim", "loadgen"):
        src = RELEASE / n
        if not src.exists():
            raise RuntimeError(f"{src} missing: build first (cargo build --release -p mesh-agent "
                               f"-p mesh-testkit --bins)")
        shutil.copy2(src, d / n)
        bins[n] = d / n
    return bins


def print_config(bins, role, args):
    return _cmd([str(bins["mesh-agent"]), role, "--print-config", *args])


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def rnd(x, nd=1):
    return None if x is None else round(x, nd)


# ------------------------------------------------------------------------------------------------------
# the load tools


def loadgen_argv(bins, target, connections, duration, warmup, rate=None, max_len=None, seed=None):
    a = [bins["loadgen"], "--target", target, "--connections", connections, "--duration", f"{duration:g}s",
         "--warmup", f"{warmup:g}s", "--timeout-ms", 5000]
    if rate is not None:
        a += ["--rate", rate]
    if max_len is not None:
        a += ["--max-len", max_len]
    if seed is not None:
        a += ["--seed", seed]
    return a


def wrk_argv(port, connections, duration):
    threads = max(1, min(NPROC, connections))
    # wrk takes whole seconds only.
    return ["wrk", "-t", threads, "-c", connections, "-d", f"{max(1, round(duration))}s", "--timeout", "5s",
            "-s", ROOT / "benches" / "wrk" / "post.lua", f"http://127.0.0.1:{port}/"]


def parse_loadgen(text):
    lines = [l for l in text.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError(f"no loadgen summary in {text[-500:]!r}")
    s = json.loads(lines[-1])
    errors = sum(s["errors"].values())
    return {
        "requests": s["sent"],
        "ok": s["ok"],
        "duration_s": s["duration_s"],
        "qps": s["qps"],
        "errors": errors,
        "errors_by_kind": s["errors"],
        "latency_us": s["latency_us"],
        # Older loadgen binaries report neither (the latency from the intended time only).
        "sent_latency_us": s.get("sent_latency_us"),
        "pacing_late_us": s.get("pacing_late_us"),
        "pacing": s.get("pacing"),
        "answers_checked": True,
    }


def parse_wrk(text):
    lines = [l for l in text.splitlines() if l.startswith("WRKJSON ")]
    if not lines:
        raise RuntimeError(f"no WRKJSON line in wrk output {text[-500:]!r}")
    s = json.loads(lines[-1][len("WRKJSON ") :])
    e = s["errors"]
    dur = s["duration_us"] / 1e6
    non2xx = e["status"]
    socket_errors = e["connect"] + e["read"] + e["write"] + e["timeout"]
    ok = s["requests"] - non2xx
    return {
        "requests": s["requests"],
        "ok": ok,
        "duration_s": round(dur, 3),
        "qps": round(ok / dur, 1) if dur > 0 else 0.0,
        "qps_all_answers": round(s["requests"] / dur, 1) if dur > 0 else 0.0,
        "errors": non2xx + socket_errors,
        "errors_by_kind": {k: v for k, v in (("non_2xx_3xx", non2xx), ("connect", e["connect"]),
                                             ("read", e["read"]), ("write", e["write"]),
                                             ("timeout", e["timeout"])) if v},
        "latency_us": s["latency_us"],
        "answers_checked": False,
    }


# ------------------------------------------------------------------------------------------------------
# challenge

SIMS = (("small", 100, 100), ("medium", 200, 200), ("large", 300, 300))  # name, knee, agent weight
CAPACITY = 10_000
BALANCERS = ("weights", "adaptive")
ETCD_ROOT = "/dubbo"  # Dubbo's registry root: /dubbo/<interface>/providers/<URL-encoded URL>


class Topology:
    """The challenge topology: etcd; three simulators (50 ms, thread cap 200, knees 100/200/300); a provider
    agent in front of each (one shard, pinned round-robin, `--max-concurrency 200`), registered in etcd; one
    consumer agent discovering them through etcd. Agents are restarted with other settings by
    `set_balancer`; etcd and the simulators keep running."""

    def __init__(self, procs, work, bins, lease_ttl_s=None):
        self.procs, self.work, self.bins = procs, work, bins
        self.lease_ttl_s = lease_ttl_s
        self.sims = {}  # name -> {"proc", "port", "knee"}
        self.agents = {}  # "provider_small" .. "consumer" -> Popen
        self.agent_ports = {}
        self.provider_args = {}  # name -> argv after "provider"
        self.consumer_args = None
        self.balancer = None
        self.etcd = None
        self.etcd_argv = None

    # etcd
    def start_etcd(self):
        if self.etcd_argv is None:
            ec, ep = free_port(), free_port()
            self.etcd_port = ec
            self.etcd_url = f"http://127.0.0.1:{ec}"
            self.etcd_argv = [
                "etcd", "--name", "bench", "--data-dir", self.work / "etcd",
                "--listen-client-urls", self.etcd_url, "--advertise-client-urls", self.etcd_url,
                "--listen-peer-urls", f"http://127.0.0.1:{ep}", "--initial-advertise-peer-urls",
                f"http://127.0.0.1:{ep}", "--initial-cluster", f"bench=http://127.0.0.1:{ep}"]
        self.etcd = self.procs.start("etcd", self.etcd_argv)
        wait_port(self.etcd_port, 20, self.etcd)
        return self.etcd

    def registered(self):
        """The provider agents registered in etcd now ({address: value}), or None without etcdctl."""
        if not shutil.which("etcdctl"):
            return None
        p = subprocess.run(["etcdctl", "--endpoints", self.etcd_url, "get", "--prefix", ETCD_ROOT + "/",
                            "--keys-only"],
                           capture_output=True, text=True, timeout=10, env=dict(os.environ, ETCDCTL_API="3"))
        out = {}
        for k in p.stdout.split():
            parts = k[len(ETCD_ROOT) + 1:].split("/")
            if len(parts) != 3 or parts[1] != "providers":
                continue
            url = urllib.parse.unquote_plus(parts[2])
            rest = url.split("://", 1)[-1]
            addr, _, query = rest.partition("?")
            out[addr.split("/", 1)[0]] = dict(urllib.parse.parse_qsl(query))
        return out

    # simulators
    def start_sim(self, name, knee, port):
        # BENCH_SIM_TIMER=coarse reproduces the old simulator (tokio's millisecond timer, answers in batches).
        p = self.procs.start(f"sim-{name}", [self.bins["provider-sim"], "--port", port, "--latency-ms", 50,
                                             "--threads", 200, "--knee", knee, "--name", name, "--workers", 1,
                                             "--timer", os.environ.get("BENCH_SIM_TIMER", "precise")])
        line = wait_line(self.work / f"sim-{name}.out", "LISTENING", 10, p)
        # The .out file accumulates over restarts: the last LISTENING line is this one's port.
        return p, int(line.split()[1]) if port == 0 else port

    def start_sims(self):
        for name, knee, _ in SIMS:
            p, port = self.start_sim(name, knee, 0)
            self.sims[name] = {"proc": p, "port": port, "knee": knee}

    def stop_sim(self, name):
        s = self.sims[name]
        self.procs.stop(s["proc"])
        lines = [l for l in (self.work / f"sim-{name}.out").read_text().splitlines() if l.startswith("{")]
        return json.loads(lines[-1])

    def restart_sims(self):
        stats = {n: self.stop_sim(n) for n in self.sims}
        for n, s in self.sims.items():
            s["proc"], _ = self.start_sim(n, s["knee"], s["port"])
        return stats

    # agents
    def _config_file(self, name, text):
        path = self.work / f"{name}.toml"
        path.write_text(text)
        return path

    def start_provider(self, i, name, weighted=True):
        key = f"provider_{name}"
        if key not in self.agent_ports:
            self.agent_ports[key] = free_port()
        ap = self.agent_ports[key]
        weight = dict((n, w) for n, _, w in SIMS)[name]
        args = ["--listen", f"127.0.0.1:{ap}", "--dubbo", f"127.0.0.1:{self.sims[name]['port']}",
                "--etcd", self.etcd_url, "--max-concurrency", 200, "--cores", i % NPROC, "--shards", 1]
        if weighted:
            args += ["--weight", weight]
        if self.lease_ttl_s is not None:
            cfg = self._config_file(f"provider-{name}", f"[etcd]\nendpoints = [\"{self.etcd_url}\"]\n"
                                                        f"lease_ttl_s = {int(self.lease_ttl_s)}\n")
            args = ["--config", cfg, *args]
        self.provider_args[name] = [str(a) for a in args]
        p = self.procs.start(f"provider-{name}", [self.bins["mesh-agent"], "provider", *args])
        wait_port(ap, 10, p)
        self.agents[key] = p
        return p

    def start_consumer(self, balancer=None):
        key = "consumer"
        if key not in self.agent_ports:
            self.agent_ports[key] = free_port()
        cport = self.agent_ports[key]
        args = ["--listen", f"127.0.0.1:{cport}", "--etcd", self.etcd_url]
        if balancer is not None:
            cfg = self._config_file("consumer", f"[consumer]\nbalancer = \"{balancer}\"\n")
            args = ["--config", cfg, *args]
        self.consumer_args = [str(a) for a in args]
        p = self.procs.start("consumer", [self.bins["mesh-agent"], "consumer", *args])
        wait_port(cport, 10, p)
        self.agents[key] = p
        self.consumer_port = cport
        return p

    def stop_agents(self):
        for key in ["consumer"] + [f"provider_{n}" for n, _, _ in SIMS]:
            p = self.agents.pop(key, None)
            if p is not None:
                self.procs.stop(p, timeout=30.0)

    def set_balancer(self, variant):
        """`weights`: providers registered with weights 100/200/300, consumer.balancer = "round_robin"
        (smooth weighted); `adaptive`: providers registered without weights (all 100), consumer.balancer =
        "adaptive" (what the default, `auto`, picks when the weights are equal; explicit so that the variant
        stays what it says if the default changes). Restarts the agents when the variant changes."""
        if variant == self.balancer:
            return False
        if variant not in BALANCERS:
            raise RuntimeError(f"unknown balancer variant {variant!r} ({', '.join(BALANCERS)})")
        self.stop_agents()
        weighted = variant == "weights"
        for i, (name, knee, weight) in enumerate(SIMS):
            self.start_provider(i, name, weighted)
            log(f"  {name}: simulator :{self.sims[name]['port']} (knee {knee}) <- provider agent "
                f":{self.agent_ports['provider_' + name]}" + (f" (weight {weight})" if weighted else " (no weight)"))
        self.start_consumer("round_robin" if weighted else "adaptive")
        self.wait_ready()
        self.balancer = variant
        log(f"  consumer agent :{self.consumer_port} ({variant}) answers hash(\"hello\")")
        return True

    def wait_ready(self, seconds=20):
        wait_answer(self.consumer_port, HELLO_HASH, seconds)
        end = time.monotonic() + seconds
        want = {f"127.0.0.1:{self.agent_ports['provider_' + n]}" for n, _, _ in SIMS}
        while time.monotonic() < end:
            reg = self.registered()
            if reg is None or want <= set(reg):
                return
            time.sleep(0.1)
        raise RuntimeError(f"provider agents not all registered within {seconds} s: {self.registered()}")

    def configs(self):
        return {"consumer": print_config(self.bins, "consumer", self.consumer_args),
                "provider_large": print_config(self.bins, "provider", self.provider_args["large"])}


def challenge():
    conns_list = [int(c) for c in env_list("BENCH_CONNECTIONS", "128,256,512,1024")]
    tools = env_list("BENCH_TOOLS", "loadgen,wrk")
    variants = env_list("BENCH_BALANCERS", ",".join(BALANCERS))
    repeat = env_int("BENCH_CHALLENGE_REPEAT", 1)
    for t in tools:
        if t not in ("loadgen", "wrk"):
            raise RuntimeError(f"BENCH_TOOLS: unknown tool {t!r} (loadgen, wrk)")
    for v in variants:
        if v not in BALANCERS:
            raise RuntimeError(f"BENCH_BALANCERS: unknown variant {v!r} ({', '.join(BALANCERS)})")
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-challenge."))
    procs = Procs(work)
    runs = []
    try:
        bins = copy_bins(work)
        machine = machine_info(bins)
        log(f"challenge: work dir {work}; {len(conns_list)} connection counts x {variants} x {tools} x {repeat}, "
            f"{DURATION:g} s each after {WARMUP:g} s warm-up")
        topo = Topology(procs, work, bins)
        etcd = topo.start_etcd()
        topo.start_sims()
        sims = topo.sims
        agents = topo.agents
        configs = {}
        registered = {}
        idle = {}

        def snapshot():
            return {
                "agents": {n: proc_cpu(p.pid) for n, p in agents.items()},
                "sims": sum(proc_cpu(s["proc"].pid) or 0 for s in sims.values()),
                "etcd": proc_cpu(etcd.pid),
                "box": box_cpu(),
                "procs": cpu_by_pid(),
                "t": time.monotonic(),
            }

        def tool_argv(tool, conns, duration):
            if tool == "loadgen":
                return loadgen_argv(bins, f"http://127.0.0.1:{topo.consumer_port}/", conns, duration, 0)
            return wrk_argv(topo.consumer_port, conns, duration)

        for rep in range(repeat):
            for conns in conns_list:
                # Both variants at every connection count, interleaved (the order alternates), so that a
                # noisy period of the shared box spreads over both.
                order = variants if (rep + conns_list.index(conns)) % 2 == 0 else variants[::-1]
                for variant in order:
                    if topo.set_balancer(variant):
                        if variant not in configs:
                            configs[variant] = topo.configs()
                            registered[variant] = topo.registered()
                            # Idle cost of the agents (glommio executors may poll): 3 s with no traffic.
                            c0 = {n: proc_cpu(p.pid) for n, p in agents.items()}
                            time.sleep(3)
                            idle[variant] = {n: rnd((proc_cpu(p.pid) - c0[n]) / 3 * 100, 2)
                                             for n, p in agents.items()}
                            log(f"  agents' idle CPU (% of one core): {idle[variant]}")
                    for tool in tools:
                        label = (f"{tool} {conns} connections, {variant}"
                                 + (f" (rep {rep + 1}/{repeat})" if repeat > 1 else ""))
                        procs.check()
                        gate = wait_load(label)
                        log(f"{label}: warm-up {WARMUP:g} s")
                        run_tool(tool_argv(tool, conns, WARMUP), work, f"warmup-{tool}-{conns}-{variant}",
                                 WARMUP + 60)
                        time.sleep(1.0)  # calls cut off by the warm-up's end finish
                        topo.restart_sims()  # fresh counters: the shares below are this run's
                        time.sleep(0.5)
                        gate["loadavg_1m_at_start"] = loadavg()
                        log(f"{label}: measuring {DURATION:g} s")
                        before = snapshot()
                        text, tool_cpu, _, _ = run_tool(tool_argv(tool, conns, DURATION), work,
                                                       f"run-{tool}-{conns}-{variant}-{rep}", DURATION + 90)
                        after = snapshot()
                        time.sleep(1.0)  # let calls still in flight (wrk stops mid-call) reach the sims
                        stats = topo.restart_sims()
                        r = parse_loadgen(text) if tool == "loadgen" else parse_wrk(text)
                        rec = challenge_record(rep, tool, conns, r, stats, before, after, tool_cpu, gate)
                        rec["balancer"] = variant
                        runs.append(rec)
                        emit(rec)
        topo.stop_agents()

        # Reference: the same closed loop straight to a simulator with the same 50 ms but no cap and no knee
        # (loadgen -> sim over Dubbo, no agent), at the connection counts whose ceiling is per-connection
        # bound. Its QPS is what this simulator and load generator allow at all: the simulator's timer
        # overshoots 50 ms a little, and the ceiling does not know that.
        reference = []
        ref_conns = [c for c in conns_list if c / 0.05 <= CAPACITY / 2]
        if ref_conns and os.environ.get("BENCH_REFERENCE", "1") != "0":
            ref = procs.start("sim-reference", [bins["provider-sim"], "--port", 0, "--latency-ms", 50, "--threads", 0,
                                                "--knee", 0, "--name", "reference", "--workers", 1])
            ref_port = int(wait_line(work / "sim-reference.out", "LISTENING", 10, ref).split()[1])
            for conns in ref_conns:
                procs.check()
                gate = wait_load(f"reference {conns} connections")
                log(f"reference (loadgen -> simulator, no agents) {conns} connections: {DURATION:g} s")
                text, tool_cpu, _, _ = run_tool(
                    loadgen_argv(bins, f"dubbo://127.0.0.1:{ref_port}", conns, DURATION, WARMUP), work,
                    f"reference-{conns}", WARMUP + DURATION + 90)
                r = parse_loadgen(text)
                lat = r["latency_us"]
                ceiling = min(conns / 0.05, CAPACITY)
                rec = {"tool": "loadgen-direct", "connections": conns, "qps": r["qps"], "ceiling": ceiling,
                       "ratio": round(r["qps"] / ceiling, 4), "errors": r["errors"],
                       "p50_ms": rnd(lat["p50"] / 1000, 2), "p99_ms": rnd(lat["p99"] / 1000, 2),
                       "mean_ms": rnd(lat["mean"] / 1000, 3), "load_gate": gate}
                reference.append(rec)
                emit(rec)
            procs.stop(ref)

        result = {
            "scenario": "challenge",
            "machine": machine,
            "params": {
                "duration_s": DURATION, "warmup_s": WARMUP, "repeat": repeat, "connections": conns_list,
                "tools": tools, "balancers": variants, "capacity_qps": CAPACITY, "sim_latency_ms": 50,
                "sim_threads": 200,
                "sims": [{"name": n, "knee": k, "weight": w} for n, k, w in SIMS],
                "balancer_variants": {
                    "weights": "providers registered with weights 100/200/300; consumer.balancer = \"round_robin\" "
                               "(smooth weighted round robin)",
                    "adaptive": "providers registered without weights (all 100); consumer.balancer = \"adaptive\" "
                                "(power of two choices over in-flight x peak-EWMA latency; also what the default, "
                                "auto, picks when the weights are equal)"},
                "provider_max_concurrency": 200, "max_load": MAX_LOAD,
                "agents_idle_cpu_pct": idle, "agent_configs": configs, "registered": registered,
                "loadgen": "closed loop, one call at a time per connection, every answer checked",
                "wrk": f"{NPROC} threads, benches/wrk/post.lua; answers not checked, non-2xx counted",
            },
            "runs": runs,
            "summary": summarize_challenge(runs),
            "reference": reference,
        }
        write_json("challenge.json", result)
    finally:
        procs.stop_all()
        cleanup(work)


def challenge_record(rep, tool, conns, r, stats, before, after, tool_cpu, gate):
    ceiling = min(conns / 0.05, CAPACITY)
    served = {n: stats[n]["served"] for n in ("small", "medium", "large")}
    total_served = sum(served.values())
    cpu = {n: after["agents"][n] - before["agents"][n] for n in before["agents"]}
    cpu_total = sum(cpu.values())
    reqs = r["requests"]
    box_busy = after["box"][0] - before["box"][0]
    foreign = foreign_cpu(before["procs"], after["procs"])
    lat = r["latency_us"]
    rec = {
        "tool": tool,
        "rep": rep,
        "connections": conns,
        "qps": r["qps"],
        "ceiling": ceiling,
        "ratio": round(r["qps"] / ceiling, 4),
        "errors": r["errors"],
        "errors_by_kind": r["errors_by_kind"],
        "answers_checked": r["answers_checked"],
        "requests": reqs,
        "ok": r["ok"],
        "duration_s": r["duration_s"],
        "p50_ms": rnd(lat["p50"] / 1000, 2),
        "p90_ms": rnd(lat["p90"] / 1000, 2),
        "p99_ms": rnd(lat["p99"] / 1000, 2),
        "p999_ms": rnd(lat["p999"] / 1000, 2),
        "max_ms": rnd(lat["max"] / 1000, 2),
        "provider_share": {n: rnd(v / total_served, 4) if total_served else None for n, v in served.items()},
        "served": served,
        "sim_rejected": {n: stats[n]["rejected"] for n in served},
        "sim_max_inflight": {n: stats[n]["max_inflight"] for n in served},
        "cpu_s": {n: round(v, 2) for n, v in cpu.items()} | {"agents_total": round(cpu_total, 2)},
        "cpu_us_per_req": rnd(cpu_total / reqs * 1e6) if reqs else None,
        # Issue 14's name for the same figure: the two agents' CPU per request (each request crosses the
        # consumer agent and one provider agent; the sum is over the consumer and all provider agents).
        "agent_cpu_us_per_req": rnd(cpu_total / reqs * 1e6) if reqs else None,
        "cpu_us_per_req_by_agent": {n: rnd(v / reqs * 1e6) for n, v in cpu.items()} if reqs else None,
        "tool_cpu_s": round(tool_cpu, 2),
        "sims_cpu_s": round(after["sims"] - before["sims"], 2),
        "box_busy_cpu_s": round(box_busy, 2),
        "box_cpu_s": round(after["box"][1] - before["box"][1], 2),
        "box_irq_cpu_s": round(after["box"][2] - before["box"][2], 2),
        "box_steal_cpu_s": round(after["box"][3] - before["box"][3], 2),
        # CPU used during the run by processes that are not this benchmark's: other users of the box (the
        # contamination indicator), and kernel threads (ksoftirqd & co., partly our own network work).
        "other_cpu_s": foreign[0],
        "kernel_threads_cpu_s": foreign[1],
        "load_gate": gate,
    }
    return rec


def summarize_challenge(runs):
    out = []
    keys = sorted({(r["tool"], r["connections"], r.get("balancer", "weights")) for r in runs},
                  key=lambda k: (k[0] != "loadgen", k[0], k[1], BALANCERS.index(k[2]) if k[2] in BALANCERS else 9))
    for tool, conns, variant in keys:
        rs = [r for r in runs if r["tool"] == tool and r["connections"] == conns
              and r.get("balancer", "weights") == variant]
        out.append({
            "tool": tool,
            "connections": conns,
            "balancer": variant,
            "reps": len(rs),
            "qps": rnd(med([r["qps"] for r in rs])),
            "ceiling": rs[0]["ceiling"],
            "ratio": rnd(med([r["ratio"] for r in rs]), 4),
            "errors": med([r["errors"] for r in rs]),
            "p50_ms": med([r["p50_ms"] for r in rs]),
            "p99_ms": med([r["p99_ms"] for r in rs]),
            "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs]),
            "agent_cpu_us_per_req": med([r.get("agent_cpu_us_per_req") for r in rs]),
            "provider_share": {n: med([r["provider_share"][n] for r in rs]) for n in ("small", "medium", "large")},
        })
    return out


# ------------------------------------------------------------------------------------------------------
# faults

FAULT_TARGET_KILL_FAILED = 0.001  # < 0.1% of the kill phase's calls may fail
FAULT_KILL_GRACE_S = 1.0  # ... and none once this long has passed after the kill


def faults():
    conns = env_int("BENCH_FAULT_CONNECTIONS", 256)
    window_ms = env_int("BENCH_FAULT_TIMELINE_MS", 100)
    warm = env_float("BENCH_FAULT_WARMUP", 2.0)
    steady = env_float("BENCH_FAULT_STEADY", 10.0)
    kill_s = env_float("BENCH_FAULT_KILL", 15.0)
    etcd_down_s = env_float("BENCH_FAULT_ETCD_DOWN", 30.0)
    etcd_back_s = env_float("BENCH_FAULT_ETCD_BACK", 10.0)
    restart_s = env_float("BENCH_FAULT_RESTART", 15.0)
    # Bound on the planned restart's stop (deregister, 500 ms, drain, exit) kept inside loadgen's run.
    drain_allow = env_float("BENCH_FAULT_DRAIN_ALLOWANCE", 5.0)
    # The killed agent's key must expire within the kill phase: lease TTL at most the phase (etcd's minimum
    # for the agent is 2 s).
    ttl = env_int("BENCH_FAULT_LEASE_TTL", max(2, min(5, int(kill_s) - 2)))
    total = steady + kill_s + etcd_down_s + etcd_back_s + restart_s + drain_allow
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-faults."))
    procs = Procs(work)
    try:
        bins = copy_bins(work)
        machine = machine_info(bins)
        log(f"faults: work dir {work}; {conns} connections, phases steady {steady:g} s, kill {kill_s:g} s, etcd down "
            f"{etcd_down_s:g} s + {etcd_back_s:g} s, restart {restart_s:g} s (+ up to {drain_allow:g} s for the "
            f"stop); lease TTL {ttl} s; loadgen {total:g} s after {warm:g} s warm-up")
        topo = Topology(procs, work, bins, lease_ttl_s=ttl)
        topo.start_etcd()
        topo.start_sims()
        for i, (name, knee, weight) in enumerate(SIMS):
            topo.start_provider(i, name, weighted=True)
        topo.start_consumer()
        topo.wait_ready()
        registered_before = topo.registered()
        configs = topo.configs()
        log(f"  consumer agent :{topo.consumer_port}; registered: {sorted(registered_before or {})}")

        # CPU per process instance, charged to the phase during which it was used.
        cpu = {}  # phase -> {name: seconds}
        live = {}  # name -> (pid, cpu at the last mark)
        phase = ["warmup"]

        def track(name, p):
            live[name] = (p.pid, 0.0)  # a new process: its CPU since birth belongs to this phase

        def mark(name=None):
            for n in ([name] if name else list(live)):
                pid, last = live[n]
                now = proc_cpu(pid)
                if now is None:
                    continue
                cpu.setdefault(phase[0], {})
                cpu[phase[0]][n] = round(cpu[phase[0]].get(n, 0.0) + now - last, 3)
                live[n] = (pid, now)

        for n, p in topo.agents.items():
            live[n] = (p.pid, proc_cpu(p.pid) or 0.0)
        live["etcd"] = (topo.etcd.pid, proc_cpu(topo.etcd.pid) or 0.0)

        procs.check()
        gate = wait_load("faults")
        argv = loadgen_argv(bins, f"http://127.0.0.1:{topo.consumer_port}/", conns, total, warm) + [
            "--timeline-ms", window_ms]
        out_path, err_path = work / "faults-loadgen.out", work / "faults-loadgen.log"
        with open(out_path, "wb") as out, open(err_path, "ab") as err:
            lg = subprocess.Popen([str(a) for a in argv], stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                  preexec_fn=_pdeathsig, cwd=work)
        t0 = time.monotonic() + warm  # loadgen's measured start (its clock starts as it is spawned)
        events = []
        before = {"box": box_cpu(), "procs": cpu_by_pid()}

        def at(offset):
            """Sleeps until `offset` s after the measured start (fails if loadgen ended early)."""
            while True:
                left = t0 + offset - time.monotonic()
                if lg.poll() is not None:
                    raise RuntimeError(f"loadgen exited ({lg.returncode}) before the scenario ended: "
                                       f"{err_path.read_text()[-2000:]}")
                if left <= 0:
                    return
                time.sleep(min(left, 0.02))

        def event(name, **kw):
            e = {"event": name, "at_s": round(time.monotonic() - t0, 3), **kw}
            events.append(e)
            log(f"  t={e['at_s']:7.3f} s  {name}" + (f" {kw}" if kw else ""))
            return e["at_s"]

        def enter(name):
            mark()
            phase[0] = name
            return event(f"phase {name}")

        try:
            at(0)
            b_steady = enter("steady")
            at(steady)
            b_kill = enter("kill")
            mark("provider_medium")
            topo.procs.stop(topo.agents["provider_medium"], signal.SIGKILL)
            live.pop("provider_medium")
            event("SIGKILL provider agent medium (no deregistration)")
            # When the killed agent's key leaves etcd (its lease expires): polled through the phase.
            key_gone = None
            medium_addr = f"127.0.0.1:{topo.agent_ports['provider_medium']}"
            while time.monotonic() < t0 + steady + kill_s:
                reg = topo.registered()
                if reg is None:
                    break
                if medium_addr not in reg:
                    key_gone = event("medium's key gone from etcd (lease expired)")
                    break
                time.sleep(0.25)
            at(steady + kill_s)
            b_etcd = enter("etcd_down")
            mark("etcd")
            topo.procs.stop(topo.etcd, signal.SIGTERM, timeout=20.0)
            live.pop("etcd")
            event("etcd stopped (SIGTERM)")
            at(steady + kill_s + etcd_down_s)
            b_etcd_back = enter("etcd_back")
            track("etcd", topo.start_etcd())
            event("etcd started again (same ports and data dir)")
            at(steady + kill_s + etcd_down_s + etcd_back_s)
            b_restart = enter("restart")
            old = topo.agents["provider_large"]
            mark("provider_large")
            live.pop("provider_large")
            t_stop = time.monotonic()
            rc = topo.procs.stop(old, signal.SIGTERM, timeout=60.0)
            stop_s = round(time.monotonic() - t_stop, 3)
            event("provider agent large exited after SIGTERM", exit_code=rc, stop_s=stop_s)
            track("provider_large", topo.start_provider(2, "large", weighted=True))
            b_restarted = event("provider agent large started again (same flags)")
            # loadgen stops sending at `total`; wait for its summary (calls outstanding: at most its timeout).
            deadline = t0 + total + 30
            while lg.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            mark()
        finally:
            if lg.poll() is None:
                lg.kill()
                lg.wait()
        after = {"box": box_cpu(), "procs": cpu_by_pid()}
        if lg.returncode not in (0, None):
            raise RuntimeError(f"loadgen exited {lg.returncode}: {err_path.read_text()[-2000:]}")
        text = out_path.read_text()
        lines = [l for l in text.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"no loadgen summary: {err_path.read_text()[-2000:]}")
        s = json.loads(lines[-1])
        registered_after = topo.registered()
        procs.check()

        bounds = [("steady", b_steady), ("kill", b_kill), ("etcd_down", b_etcd), ("etcd_back", b_etcd_back),
                  ("restart", b_restart)]
        end_s = s["duration_s"]
        result = faults_result(s, bounds, end_s, b_kill, b_restarted, key_gone)
        foreign = foreign_cpu(before["procs"], after["procs"])
        agents_cpu = {}
        for per in cpu.values():
            for n, v in per.items():
                agents_cpu[n] = round(agents_cpu.get(n, 0.0) + v, 2)
        measured_cpu = {n: round(sum(cpu.get(ph, {}).get(n, 0.0) for ph, _ in bounds), 2) for n in agents_cpu}
        agent_total = sum(v for n, v in measured_cpu.items() if n != "etcd")
        result.update({
            "scenario": "faults",
            "machine": machine,
            "params": {
                "connections": conns, "timeline_ms": window_ms, "warmup_s": warm,
                "phases_s": {"steady": steady, "kill": kill_s, "etcd_down": etcd_down_s, "etcd_back": etcd_back_s,
                             "restart": restart_s, "restart_stop_allowance": drain_allow},
                "loadgen_duration_s": total, "lease_ttl_s": ttl, "sims": [{"name": n, "knee": k, "weight": w}
                                                                          for n, k, w in SIMS],
                "sim_latency_ms": 50, "sim_threads": 200, "provider_max_concurrency": 200,
                "consumer_balancer": consumer_balancer(configs.get("consumer")), "agent_configs": configs,
                "registered_before": registered_before, "registered_after": registered_after,
                "loadgen": "closed loop, one call at a time per connection, every answer checked, timeout 5 s",
                "phase_of_a_window": "the phase in which the window ends (a window during which an event "
                                     "happened belongs to the event's phase)",
            },
            "events": events,
            "cpu_s_by_phase": cpu,
            "cpu_s": measured_cpu,
            "agents_cpu_us_per_req": rnd(agent_total / s["sent"] * 1e6) if s["sent"] else None,
            "box_busy_cpu_s": round(after["box"][0] - before["box"][0], 2),
            "other_cpu_s": foreign[0],
            "kernel_threads_cpu_s": foreign[1],
            "load_gate": gate,
        })
        for t in result["targets"]:
            log(f"  target {t['target']}: {t['measured']} -> {'met' if t['met'] else 'NOT met'}")
        emit({k: result[k] for k in ("sent", "succeeded", "failed", "failed_by_kind", "longest_gap_ms")})
        write_json("faults.json", result)
    finally:
        procs.stop_all()
        cleanup(work)


def consumer_balancer(printed):
    """consumer.balancer from `mesh-agent consumer --print-config` output (the default when not set)."""
    m = re.search(r'^balancer\s*=\s*"([^"]+)"', printed or "", re.M)
    return f"`{m.group(1)}` (the default)" if m else "the default"


def faults_result(s, bounds, end_s, t_kill, t_restarted, key_gone):
    """faults.json's counts: overall, per phase (each timeline window goes to the phase it ends in), the
    longest gaps, and the targets."""
    tl = s["timeline"]
    w = tl["window_ms"] / 1000.0
    names = [n for n, _ in bounds]
    starts = [b for _, b in bounds]

    def phase_of(t):
        i = 0
        for k, b in enumerate(starts):
            if t > b:
                i = k
        return names[i]

    per = {n: {"completed": 0, "succeeded": 0, "failed": 0, "failed_by_kind": {}} for n in names}
    kill_late_failed = 0  # failures in windows starting >= kill + grace, within the kill phase
    last_kill_fail = None
    for i, (ok, failed, kinds) in enumerate(zip(tl["ok"], tl["failed"], tl["failed_kinds"])):
        wend = (i + 1) * w
        ph = phase_of(wend)
        d = per[ph]
        d["succeeded"] += ok
        d["failed"] += failed
        d["completed"] += ok + failed
        for k, v in kinds.items():
            d["failed_by_kind"][k] = d["failed_by_kind"].get(k, 0) + v
        if ph == "kill" and failed:
            last_kill_fail = round(wend - t_kill, 3)
            if i * w >= t_kill + FAULT_KILL_GRACE_S:
                kill_late_failed += failed
    ends = starts[1:] + [max(end_s, starts[-1])]
    gaps = tl.get("gaps") or []
    phases = []
    for n, a, b in zip(names, starts, ends):
        d = per[n]
        longest = None
        for g0, glen in gaps:
            lo, hi = max(a, g0 / 1000.0), min(b, (g0 + glen) / 1000.0)
            if hi > lo:
                longest = max(longest or 0.0, round((hi - lo) * 1000.0, 1))
        phases.append({"phase": n, "start_s": round(a, 3), "end_s": round(b, 3), **d,
                       "failed_pct": rnd(d["failed"] / d["completed"] * 100, 4) if d["completed"] else None,
                       "longest_gap_ms": longest, "gap_min_ms": tl.get("gap_min_ms")})
    P = {p["phase"]: p for p in phases}
    errors = s["errors"]
    failed = sum(errors.values())

    def frac(p):
        return (p["failed"] / p["completed"]) if p["completed"] else None

    etcd_failed = P["etcd_down"]["failed"] + P["etcd_back"]["failed"]
    kill_frac = frac(P["kill"])
    targets = [
        {"target": "kill -9 of a provider agent: < 0.1% of the kill phase's calls fail",
         "measured": (f"{P['kill']['failed']:,} of {P['kill']['completed']:,} failed "
                      f"({(kill_frac or 0) * 100:.3f}%)"),
         "met": kill_frac is not None and kill_frac < FAULT_TARGET_KILL_FAILED},
        {"target": f"kill -9: no failure once {FAULT_KILL_GRACE_S:g} s has passed after the kill",
         "measured": (f"{kill_late_failed:,} failed in windows starting ≥ {FAULT_KILL_GRACE_S:g} s after the kill"
                      + (f"; last failing window ends {last_kill_fail:.1f} s after the kill"
                         if last_kill_fail is not None else "")),
         "met": kill_late_failed == 0},
        {"target": "etcd stopped for the outage and started again: no failure (outage + observation after)",
         "measured": f"{etcd_failed:,} failed of {P['etcd_down']['completed'] + P['etcd_back']['completed']:,}",
         "met": etcd_failed == 0},
        {"target": "planned restart (SIGTERM, start again) of a provider agent: no failure",
         "measured": f"{P['restart']['failed']:,} failed of {P['restart']['completed']:,}",
         "met": P["restart"]["failed"] == 0},
    ]
    return {
        "sent": s["sent"],
        "succeeded": s["ok"],
        "failed": failed,
        "failed_by_kind": errors,
        "longest_gap_ms": s.get("longest_gap_ms"),
        "first_failure_ms": s.get("first_failure_ms"),
        "last_failure_ms": s.get("last_failure_ms"),
        "qps": s["qps"],
        "duration_s": s["duration_s"],
        "latency_us": s["latency_us"],
        "phases": phases,
        "kill_failed_after_grace": kill_late_failed,
        "kill_key_gone_s": round(key_gone - t_kill, 3) if key_gone is not None else None,
        "restart_observed_s": round(end_s - t_restarted, 3),
        "targets": targets,
        "timeline": tl,
    }


# ------------------------------------------------------------------------------------------------------
# overhead


def overhead():
    rates = [int(r) for r in env_list("BENCH_RATES", "1000,5000")]
    max_conns = env_int("BENCH_MAX_CONNECTIONS", 64)
    repeat = env_int("BENCH_OVERHEAD_REPEAT", 3)
    duration = env_float("BENCH_OVERHEAD_DURATION", DURATION)
    warm = env_float("BENCH_OVERHEAD_WARMUP", 2.0)
    profile_s = env_float("BENCH_PROFILE", 5.0)  # 0 = no perf profile
    # (label, rate, connections): fixed rates and max rate on max_conns connections; then one connection in
    # closed loop ("1conn"): no pacing timer at all, so its latencies are the plain round trips.
    loads = [(str(r), r, max_conns) for r in rates] + [("max", None, max_conns)]
    if os.environ.get("BENCH_ONE_CONNECTION", "1") != "0":
        loads.append(("1conn", None, 1))
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-overhead."))
    (work / "tmp").mkdir()
    procs = Procs(work)
    runs = []
    try:
        bins = copy_bins(work)
        machine = machine_info(bins)
        log(f"overhead: work dir {work}; loads {[l for l, _, _ in loads]}, {max_conns} connections, "
            f"{duration:g} s each after {warm:g} s warm-up, {repeat} repetitions")

        sim = procs.start("sim", [bins["provider-sim"], "--port", 0, "--latency-ms", 0, "--threads", 0,
                                  "--knee", 0, "--name", "direct", "--workers", 1])
        sim_port = int(wait_line(work / "sim.out", "LISTENING", 10, sim).split()[1])
        pport = free_port()
        pargs = ["--listen", f"127.0.0.1:{pport}", "--dubbo", f"127.0.0.1:{sim_port}", "--no-register"]
        cport = free_port()
        cargs = ["--listen", f"127.0.0.1:{cport}", "--provider", f"127.0.0.1:{pport}"]
        if os.environ.get("BENCH_METRICS", "on") == "off":  # issue 15: both agents without per-call metrics
            pargs.append("--no-metrics")
            cargs.append("--no-metrics")
        provider = procs.start("provider", [bins["mesh-agent"], "provider", *pargs])
        wait_port(pport, 10, provider)
        consumer = procs.start("consumer", [bins["mesh-agent"], "consumer", *cargs])
        wait_port(cport, 10, consumer)
        wait_answer(cport, HELLO_HASH, 20)

        rport, nport = free_port(), free_port()
        for name, tmpl, subs in (("responder", "responder.conf", {"@PORT@": rport}),
                                 ("proxy", "proxy.conf", {"@PORT@": nport, "@UPSTREAM_PORT@": rport,
                                                          "@WORKERS@": os.environ.get("BENCH_NGINX_WORKERS",
                                                                                      "auto")})):
            text = (ROOT / "benches" / "nginx" / tmpl).read_text().replace("@DIR@", str(work))
            for k, v in subs.items():
                text = text.replace(k, str(v))
            (work / tmpl).write_text(text)
        responder = procs.start("nginx-responder", ["nginx", "-p", work, "-c", work / "responder.conf",
                                                    "-g", "daemon off;"])
        wait_port(rport, 10, responder)
        proxy = procs.start("nginx-proxy", ["nginx", "-p", work, "-c", work / "proxy.conf", "-g", "daemon off;"])
        wait_port(nport, 10, proxy)
        wait_answer(nport, "0", 10)
        log(f"  sim :{sim_port} <- provider agent :{pport} <- consumer agent :{cport};  "
            f"nginx proxy :{nport} -> nginx responder :{rport}")
        configs = {"consumer": print_config(bins, "consumer", [str(a) for a in cargs]),
                   "provider": print_config(bins, "provider", [str(a) for a in pargs])}

        paths = {
            # name: (loadgen target, processes measured as the hop, backend processes)
            "direct": (f"dubbo://127.0.0.1:{sim_port}", [], [sim]),
            "mesh": (f"http://127.0.0.1:{cport}/", [consumer, provider], [sim]),
            "nginx": (f"http://127.0.0.1:{nport}/", [proxy], [responder]),
        }
        # Main comparison: all three paths with --max-len 0 (the parameter is always "", the answer is
        # always 0, so the trivial responder's fixed "0" is a correct answer that loadgen checks).
        # Extra: direct and mesh with the challenge's bodies (0..1024 chars).
        variants = [(0, "direct"), (0, "mesh"), (0, "nginx"), (1024, "direct"), (1024, "mesh")]

        def hop_cpu(ps):
            return sum(proc_cpu(pid) or 0 for p in ps for pid in tree_pids(p.pid))

        def snap():
            return {
                "consumer": proc_cpu(consumer.pid), "provider": proc_cpu(provider.pid),
                "nginx_proxy": hop_cpu([proxy]), "sim": proc_cpu(sim.pid), "responder": hop_cpu([responder]),
                "box": box_cpu(), "procs": cpu_by_pid(), "threads_consumer": thread_cpu(consumer.pid),
                "ctx_mesh": ctx_switches([consumer.pid, provider.pid]),
                "ctx_nginx_proxy": ctx_switches(tree_pids(proxy.pid)),
                "threads_provider": thread_cpu(provider.pid),
            }

        # Idle cost of the agents and of nginx: 3 s with no traffic.
        s0 = snap()
        time.sleep(3)
        s1 = snap()
        idle = {k: rnd((s1[k] - s0[k]) / 3 * 100, 2) for k in ("consumer", "provider", "nginx_proxy")}
        log(f"  idle CPU (% of one core): {idle}")

        for rep in range(repeat):
            order = variants[rep % 3:3] + variants[:rep % 3] + variants[3:]  # rotate the main three
            for load, rate, conns in loads:
                for max_len, path in order:
                    label = f"{path} {load} (max-len {max_len})" + (f" rep {rep + 1}/{repeat}" if repeat > 1 else "")
                    procs.check()
                    gate = wait_load(label)
                    target, hop, backend = paths[path]
                    argv = loadgen_argv(bins, target, conns, duration, warm, rate=rate, max_len=max_len)
                    log(f"{label}: {duration:g} s")
                    text, tool_cpu, before, _ = run_tool(argv, work, f"run-{path}-{load}-{max_len}-{rep}",
                                                        warm + duration + 90, sample_at=warm, sampler=snap)
                    after = snap()
                    r = parse_loadgen(text)
                    rec = overhead_record(rep, path, load, rate, max_len, conns, r, before, after, tool_cpu,
                                          gate)
                    runs.append(rec)
                    emit(rec)

        profile = None
        if profile_s > 0 and shutil.which("perf"):
            OUT.mkdir(parents=True, exist_ok=True)
            profile = {}
            for path, pids in (("mesh", [consumer.pid, provider.pid]), ("nginx", tree_pids(proxy.pid))):
                profile[path] = {}
                for rate in [*rates, None]:
                    wait_load(f"profile {path}")
                    r = perf_profile(work, bins, paths[path][0], max_conns, profile_s, pids, path, rate=rate,
                                     record=rate is None)
                    profile[path][r["load"]] = r
        result = {
            "scenario": "overhead",
            "machine": machine,
            "params": {
                "duration_s": duration, "warmup_s": warm, "repeat": repeat, "rates": rates,
                "max_rate_connections": max_conns, "connections": max_conns, "max_load": MAX_LOAD,
                "idle_cpu_pct": idle, "agent_configs": configs,
                "sim": "provider-sim --latency-ms 0 --threads 0 --knee 0 --workers 1",
                "nginx_proxy": "worker_processes " + os.environ.get("BENCH_NGINX_WORKERS", "auto")
                               + ", upstream keepalive 128, access_log off (benches/nginx/proxy.conf)",
                "nginx_responder": "separate nginx, worker_processes 1, return 200 \"0\" (benches/nginx/responder.conf)",
                "main_max_len": 0, "extra_max_len": 1024,
            },
            "runs": runs,
        }
        result.update(summarize_overhead(runs, loads))
        if profile is not None:
            result["profile"] = profile
        write_json("overhead.json", result)
    finally:
        procs.stop_all()
        cleanup(work)


def overhead_record(rep, path, load, rate, max_len, conns, r, before, after, tool_cpu, gate):
    d = {k: after[k] - before[k] for k in ("consumer", "provider", "nginx_proxy", "sim", "responder")}
    reqs = r["requests"]
    if path == "mesh":
        hop = {"consumer": d["consumer"], "provider": d["provider"]}
        backend = d["sim"]
    elif path == "nginx":
        hop = {"nginx_proxy": d["nginx_proxy"]}
        backend = d["responder"]
    else:
        hop = {}
        backend = d["sim"]
    hop_total = sum(hop.values())
    lat = r["latency_us"]
    box_busy = after["box"][0] - before["box"][0]
    tool_window = tool_cpu - before["tool"]  # the load generator's CPU after its warm-up
    foreign = foreign_cpu(before["procs"], after["procs"])
    rec = {
        "path": path,
        "load": load,
        "rate": rate,
        "max_len": max_len,
        "connections": conns,
        "rep": rep,
        "qps": r["qps"],
        "requests": reqs,
        "ok": r["ok"],
        "errors": r["errors"],
        "errors_by_kind": r["errors_by_kind"],
        "duration_s": r["duration_s"],
        "p50_us": lat["p50"],
        "p90_us": lat["p90"],
        "p99_us": lat["p99"],
        "p999_us": lat["p999"],
        "max_us": lat["max"],
        # From the actual send time (the server's and the network's part), and how late calls were sent.
        "sent_p50_us": (r.get("sent_latency_us") or {}).get("p50"),
        "sent_p99_us": (r.get("sent_latency_us") or {}).get("p99"),
        "late_p50_us": (r.get("pacing_late_us") or {}).get("p50"),
        "late_p99_us": (r.get("pacing_late_us") or {}).get("p99"),
        "pacing": r.get("pacing"),
        "cpu_s": {k: round(v, 3) for k, v in hop.items()},
        "cpu_us_per_req": rnd(hop_total / reqs * 1e6, 2) if reqs and path != "direct" else None,
        "context_switches_per_req": (rnd((after["ctx_" + ("mesh" if path == "mesh" else "nginx_proxy")]
                                          - before["ctx_" + ("mesh" if path == "mesh" else "nginx_proxy")]) / reqs, 3)
                                     if reqs and path != "direct" else None),
        "backend_cpu_us_per_req": rnd(backend / reqs * 1e6, 2) if reqs else None,
        "tool_cpu_s": round(tool_window, 2),
        "box_busy_cpu_s": round(box_busy, 2),
        "box_cpu_s": round(after["box"][1] - before["box"][1], 2),
        "box_irq_cpu_s": round(after["box"][2] - before["box"][2], 2),
        "box_steal_cpu_s": round(after["box"][3] - before["box"][3], 2),
        # CPU used during the run by processes that are not this benchmark's: other users of the box (the
        # contamination indicator), and kernel threads (ksoftirqd & co., partly our own network work).
        "other_cpu_s": foreign[0],
        "kernel_threads_cpu_s": foreign[1],
        "load_gate": gate,
    }
    if path == "mesh":
        rec["cpu_us_per_req_by_agent"] = {k: rnd(v / reqs * 1e6, 2) for k, v in hop.items()} if reqs else None
        th = {}
        for role in ("consumer", "provider"):
            b, a = before[f"threads_{role}"], after[f"threads_{role}"]
            th[role] = {k: round(a[k] - b.get(k, 0.0), 3) for k in a if a[k] - b.get(k, 0.0) >= 0.005}
        rec["cpu_s_by_thread"] = th
    return rec


def summarize_overhead(runs, loads):
    def pick(path, load, max_len, rep=None):
        return [r for r in runs if r["path"] == path and r["load"] == load and r["max_len"] == max_len
                and (rep is None or r["rep"] == rep)]

    paths = {}
    for path, max_len, key in (("direct", 0, "direct"), ("mesh", 0, "mesh"), ("nginx", 0, "nginx"),
                               ("direct", 1024, "direct_challenge_bodies"), ("mesh", 1024, "mesh_challenge_bodies")):
        per = {}
        for load, _, _ in loads:
            rs = pick(path, load, max_len)
            if not rs:
                continue
            per[load] = {
                "reps": len(rs),
                "qps": rnd(med([r["qps"] for r in rs])),
                "p50_us": med([r["p50_us"] for r in rs]),
                "p90_us": med([r["p90_us"] for r in rs]),
                "p99_us": med([r["p99_us"] for r in rs]),
                "p999_us": med([r["p999_us"] for r in rs]),
                "sent_p50_us": med([r.get("sent_p50_us") for r in rs]),
                "sent_p99_us": med([r.get("sent_p99_us") for r in rs]),
                "late_p50_us": med([r.get("late_p50_us") for r in rs]),
                "late_p99_us": med([r.get("late_p99_us") for r in rs]),
                "errors": med([r["errors"] for r in rs]),
                "cpu_us_per_req": med([r["cpu_us_per_req"] for r in rs]),
                "context_switches_per_req": med([r["context_switches_per_req"] for r in rs]),
                "backend_cpu_us_per_req": med([r["backend_cpu_us_per_req"] for r in rs]),
                "other_cpu_s": med([r["other_cpu_s"] for r in rs]),
            }
            if path == "mesh":
                per[load]["cpu_us_per_req_by_agent"] = {
                    a: med([r["cpu_us_per_req_by_agent"][a] for r in rs if r.get("cpu_us_per_req_by_agent")])
                    for a in ("consumer", "provider")}
        if per:
            paths[key] = per

    reps = sorted({r["rep"] for r in runs})
    ratio_by_load = {}
    ratio_by_load_reps = {}
    for load, _, _ in loads:
        if load == "1conn":
            continue  # each path runs at its own rate there: not the same offered load
        xs = []
        for rep in reps:
            m, n = pick("mesh", load, 0, rep), pick("nginx", load, 0, rep)
            if m and n and m[0]["cpu_us_per_req"] and n[0]["cpu_us_per_req"]:
                xs.append(round(m[0]["cpu_us_per_req"] / n[0]["cpu_us_per_req"], 3))
        if xs:
            ratio_by_load_reps[load] = xs
            ratio_by_load[load] = rnd(med(xs), 3)

    def added(load, other, key="p99_us"):
        xs = []
        for rep in reps:
            a, d = pick(other, load, 0, rep), pick("direct", load, 0, rep)
            if a and d and a[0].get(key) is not None and d[0].get(key) is not None:
                xs.append(a[0][key] - d[0][key])
        return xs

    first = loads[0][0]
    added_p99 = added(first, "mesh")
    return {
        "paths": paths,
        # Worst load: the target ("no more CPU per request than nginx") holds only if it holds at every load.
        "cpu_ratio": max(ratio_by_load.values()) if ratio_by_load else None,
        "cpu_ratio_by_load": ratio_by_load,
        "cpu_ratio_by_load_reps": ratio_by_load_reps,
        "added_p99_us": med(added_p99),
        "added_p99_us_reps": added_p99,
        "added_p99_us_at": first,
        "nginx_added_p99_us": med(added(first, "nginx")),
        # The same from the actual send time (pacing lateness left out).
        "added_p99_us_sent": med(added(first, "mesh", "sent_p99_us")),
        "added_p99_us_sent_reps": added(first, "mesh", "sent_p99_us"),
        "nginx_added_p99_us_sent": med(added(first, "nginx", "sent_p99_us")),
        # One connection, closed loop: the round trips without loadgen's pacing timer.
        "added_1conn_us": {k: med(added("1conn", "mesh", k)) for k in ("p50_us", "p99_us")},
        "nginx_added_1conn_us": {k: med(added("1conn", "nginx", k)) for k in ("p50_us", "p99_us")},
    }


# ------------------------------------------------------------------------------------------------------
# generic (issue 12 item 5): the form call, the JSON call and the consumer's Dubbo port, one run

# name: (target kind, --call, the direct variant its added latency is measured against)
GENERIC_VARIANTS = (
    ("direct", "sim", "hash", None),
    ("direct-user", "sim", "user", None),
    ("form", "http", "hash", "direct"),
    ("json", "http", "user", "direct-user"),
    ("dubbo-port", "dubbo-port", "hash", "direct"),
    ("dubbo-port-user", "dubbo-port", "user", "direct-user"),
)


def generic():
    rates = [int(r) for r in env_list("BENCH_RATES", "1000,5000")]
    conns = env_int("BENCH_MAX_CONNECTIONS", 64)
    repeat = env_int("BENCH_GENERIC_REPEAT", 2)
    duration = env_float("BENCH_GENERIC_DURATION", 10.0)
    warm = env_float("BENCH_GENERIC_WARMUP", 2.0)
    loads = [(str(r), r) for r in rates]
    if os.environ.get("BENCH_GENERIC_MAX", "1") != "0":
        loads.append(("max", None))
    only = set(env_list("BENCH_GENERIC_VARIANTS", ",".join(v[0] for v in GENERIC_VARIANTS)))
    variants = [v for v in GENERIC_VARIANTS if v[0] in only]
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-generic."))
    procs = Procs(work)
    runs = []
    try:
        bins = copy_bins(work)
        machine = machine_info(bins)
        log(f"generic: work dir {work}; loads {[l for l, _ in loads]}, {conns} connections, {duration:g} s each "
            f"after {warm:g} s warm-up, {repeat} repetitions, variants {[v[0] for v in variants]}")
        sim = procs.start("sim", [bins["provider-sim"], "--port", 0, "--latency-ms", 0, "--threads", 0,
                                  "--knee", 0, "--name", "direct", "--workers", 1])
        sim_port = int(wait_line(work / "sim.out", "LISTENING", 10, sim).split()[1])
        pport = free_port()
        pargs = ["--listen", f"127.0.0.1:{pport}", "--dubbo", f"127.0.0.1:{sim_port}", "--no-register"]
        provider = procs.start("provider", [bins["mesh-agent"], "provider", *pargs])
        wait_port(pport, 10, provider)
        cport, dport = free_port(), free_port()
        cargs = ["--listen", f"127.0.0.1:{cport}", "--provider", f"127.0.0.1:{pport}",
                 "--dubbo-listen", f"127.0.0.1:{dport}"]
        consumer = procs.start("consumer", [bins["mesh-agent"], "consumer", *cargs])
        wait_port(cport, 10, consumer)
        wait_port(dport, 10, consumer)
        wait_answer(cport, HELLO_HASH, 20)
        log(f"  sim :{sim_port} <- provider agent :{pport} <- consumer agent :{cport} (HTTP), :{dport} (Dubbo)")
        configs = {"consumer": print_config(bins, "consumer", [str(a) for a in cargs]),
                   "provider": print_config(bins, "provider", [str(a) for a in pargs])}
        targets = {"sim": f"dubbo://127.0.0.1:{sim_port}", "http": f"http://127.0.0.1:{cport}/",
                   "dubbo-port": f"dubbo://127.0.0.1:{dport}"}

        def snap():
            return {"consumer": proc_cpu(consumer.pid), "provider": proc_cpu(provider.pid),
                    "sim": proc_cpu(sim.pid), "box": box_cpu(), "procs": cpu_by_pid()}

        for rep in range(repeat):
            # Rotate the order per repetition, so no variant always runs first or last.
            order = variants[rep % len(variants):] + variants[:rep % len(variants)]
            for load, rate in loads:
                for name, kind, call, _ in order:
                    label = f"{name} {load}" + (f" rep {rep + 1}/{repeat}" if repeat > 1 else "")
                    procs.check()
                    gate = wait_load(label)
                    argv = loadgen_argv(bins, targets[kind], conns, duration, warm, rate=rate, max_len=0)
                    argv += ["--call", call]
                    log(f"{label}: {duration:g} s")
                    text, tool_cpu, before, _ = run_tool(argv, work, f"run-{name}-{load}-{rep}",
                                                        warm + duration + 90, sample_at=warm, sampler=snap)
                    after = snap()
                    r = parse_loadgen(text)
                    reqs = r["requests"]
                    d = {k: after[k] - before[k] for k in ("consumer", "provider", "sim")}
                    mesh = kind != "sim"
                    foreign = foreign_cpu(before["procs"], after["procs"])
                    rec = {
                        "variant": name, "call": call, "target": kind, "load": load, "rate": rate,
                        "connections": conns, "rep": rep, "qps": r["qps"], "requests": reqs, "ok": r["ok"],
                        "errors": r["errors"], "errors_by_kind": r["errors_by_kind"],
                        "duration_s": r["duration_s"],
                        "p50_us": r["latency_us"]["p50"], "p99_us": r["latency_us"]["p99"],
                        "p999_us": r["latency_us"]["p999"],
                        "sent_p50_us": (r.get("sent_latency_us") or {}).get("p50"),
                        "sent_p99_us": (r.get("sent_latency_us") or {}).get("p99"),
                        "cpu_us_per_req": (rnd((d["consumer"] + d["provider"]) / reqs * 1e6, 2)
                                           if reqs and mesh else None),
                        "cpu_us_per_req_by_agent": ({a: rnd(d[a] / reqs * 1e6, 2) for a in ("consumer", "provider")}
                                                    if reqs and mesh else None),
                        "sim_cpu_us_per_req": rnd(d["sim"] / reqs * 1e6, 2) if reqs else None,
                        "tool_cpu_s": round(tool_cpu - before["tool"], 2),
                        "box_busy_cpu_s": round(after["box"][0] - before["box"][0], 2),
                        "other_cpu_s": foreign[0],
                        "kernel_threads_cpu_s": foreign[1],
                        "load_gate": gate,
                    }
                    runs.append(rec)
                    emit(rec)
        result = {
            "scenario": "generic",
            "machine": machine,
            "params": {
                "duration_s": duration, "warmup_s": warm, "repeat": repeat, "rates": rates, "connections": conns,
                "max_load": MAX_LOAD, "agent_configs": configs,
                "sim": "provider-sim --latency-ms 0 --threads 0 --knee 0 --workers 1",
                "variants": {v[0]: {"target": v[1], "call": v[2], "baseline": v[3]} for v in variants},
                "hash_max_len": 0,
            },
            "runs": runs,
        }
        result.update(summarize_generic(runs, loads, variants))
        write_json(os.environ.get("BENCH_GENERIC_JSON", "generic.json"), result)
    finally:
        procs.stop_all()
        cleanup(work)


def summarize_generic(runs, loads, variants):
    def pick(name, load, rep=None):
        return [r for r in runs if r["variant"] == name and r["load"] == load and (rep is None or r["rep"] == rep)]

    reps = sorted({r["rep"] for r in runs})
    table = {}
    for name, _, _, base in variants:
        per = {}
        for load, _ in loads:
            rs = pick(name, load)
            if not rs:
                continue
            row = {k: med([r[k] for r in rs]) for k in ("qps", "p50_us", "p99_us", "sent_p50_us", "sent_p99_us",
                                                         "errors", "cpu_us_per_req", "sim_cpu_us_per_req",
                                                         "other_cpu_s")}
            row["reps"] = len(rs)
            if rs[0]["cpu_us_per_req_by_agent"]:
                row["cpu_us_per_req_by_agent"] = {
                    a: med([r["cpu_us_per_req_by_agent"][a] for r in rs]) for a in ("consumer", "provider")}
            if base:
                for key in ("p50_us", "p99_us"):
                    xs = []
                    for rep in reps:
                        a, b = pick(name, load, rep), pick(base, load, rep)
                        if a and b:
                            xs.append(a[0][key] - b[0][key])
                    row["added_" + key] = med(xs)
                    row["added_" + key + "_reps"] = xs
            per[load] = row
        table[name] = per
    # The JSON call's and the Dubbo port's extra CPU per request over the form call, per load (same repetition).
    extra = {}
    for name in ("json", "dubbo-port", "dubbo-port-user"):
        per = {}
        for load, _ in loads:
            xs = []
            for rep in reps:
                a, f = pick(name, load, rep), pick("form", load, rep)
                if a and f and a[0]["cpu_us_per_req"] is not None and f[0]["cpu_us_per_req"] is not None:
                    xs.append(round(a[0]["cpu_us_per_req"] - f[0]["cpu_us_per_req"], 2))
            if xs:
                per[load] = {"median": med(xs), "reps": xs}
        if per:
            extra[name] = per
    return {"variants": table, "cpu_us_per_req_over_form": extra}


# Rough buckets for a flat profile (symbol -> where the time goes). Kernel symbols by prefix.
PROFILE_BUCKETS = (
    ("kernel: io_uring", r"^(__)?io_|^io_uring|^__do_sys_io_uring|^__x64_sys_io_uring|^tctx_|^task_work"),
    ("kernel: epoll", r"^(__)?ep_|epoll"),
    ("kernel: TCP/IP + loopback", r"tcp|^(__)?ip_|^ipv4|inet|skb|^(__)?sk_|sock|^loopback|^(__)?net|^(__)?dev_|"
                                  r"napi|backlog|^bbr|^raw_local|softirq|^__local_bh|bh_enable|_copy_(to|from)_iter|"
                                  r"__check_object_size|^check_heap|^__sys_(send|recv)|^__x64_sys_(send|recv|read|write)|"
                                  r"^(__)?release_sock|^lock_sock|^validate_xmit|^dst_|^nf_|^fib|^rt_|^eth_|^qdisc|^sch_|"
                                  r"^__qdisc|^__virt_addr_valid|^__skb|^kmalloc_reserve|^simple_copy|^csum"),
    ("kernel: scheduler, wake-ups, IPIs", r"sched|task_switch|wake|^_raw_spin|^native_write_msr|smp_call|^enqueue|"
                                          r"^dequeue|^pick_|^put_prev|^set_next|^update_(curr|load|cfs|rq)|^ttwu|"
                                          r"^select_task|^psi_|^cpuacct|^read_tsc|^native_sched|^__switch_to|"
                                          r"^switch_mm|^hrtimer|^futex|^__futex|^do_futex|^finish_wait|^prepare_to_wait|"
                                          r"^try_to_block|^reweight|^place_entity|^available_idle|^idle_cpu|^cpus_share"),
    ("kernel: syscall entry/exit, fd lookup", r"syscall|^entry_|exit_to_user|irqentry|^(__)?fdget|^(__)?fget|"
                                              r"^fput|^__fput|^get_signal|^restore_fpregs|^fpregs|^switch_fpu|"
                                              r"^x64_sys_call|^__rcu_read|^rcu_"),
    ("kernel: memory", r"^kmem_cache|^kfree|^__kmalloc|^kmalloc|slab|^__slab|^___slab|^page_|^__page|^free_|"
                       r"^alloc_pages|^__alloc_pages|^get_page|^put_page|^folio|^xas_|^memcg|^__memcg|^mod_memcg|"
                       r"^refill_stock|^obj_cgroup|^consume_stock|^__mod_"),
)


def bucket_of(dso, sym, binary):
    if dso == "[kernel.kallsyms]":
        for name, rx in PROFILE_BUCKETS:
            if re.search(rx, sym):
                return name
        return "kernel: other"
    if dso.startswith("libc"):
        if re.search(r"malloc|free|realloc|calloc|memalign|^_int_|chunk|tcache|arena", sym):
            return "libc: malloc/free"
        if re.search(r"mem(cpy|move|set|cmp|chr)|str", sym):
            return "libc: memcpy & co"
        return "libc: syscall wrappers, other"
    if dso == "[vdso]":
        return "vdso (clock_gettime)"
    if dso == binary:
        if binary == "mesh-agent":
            if sym.startswith(("glommio", "<glommio", "_io_uring", "io_uring", "<futures_lite", "futures_lite",
                               "async_task", "<async_task")):
                return "user: glommio runtime"
            if re.search(r"mesh_(http|dubbo)|httparse|hessian|form", sym):
                return "user: HTTP + Dubbo codec"
            if re.search(r"mesh_", sym):
                return "user: mesh-shard/agent logic"
            return "user: std/alloc/other"
        return f"user: {binary}"
    return f"other: {dso}"


def perf_report_rows(data, sort, limit):
    p = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort,
                        "--percent-limit", str(limit), "--field-separator", "\t"],
                       capture_output=True, text=True, timeout=300)
    rows = []
    for line in p.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split("\t")]
        try:
            pct = float(cols[0].rstrip("%"))
        except ValueError:
            continue
        rows.append((pct, cols[1:]))
    return rows


def perf_syscalls(pids, seconds):
    """System calls of `pids` (all threads) over `seconds`, by name (perf trace -s), and their context
    switches (/proc)."""
    c0 = ctx_switches(pids)
    p = subprocess.run(["perf", "trace", "-s", "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
                       capture_output=True, text=True, timeout=seconds + 60)
    ctx = ctx_switches(pids) - c0
    by_name = {}
    for line in (p.stdout + p.stderr).splitlines():
        m = re.match(r"^\s+([a-z_0-9]+)\s+(\d+)\s+(\d+)\s+[\d.]+\s", line)
        if m:
            by_name[m.group(1)] = by_name.get(m.group(1), 0) + int(m.group(2))
    return by_name, ctx


def perf_uring_ops(work, pids, seconds, name):
    """io_uring submissions of `pids` over `seconds`, by opcode (tracepoint io_uring:io_uring_submit_req)."""
    data = work / f"perf-uring-{name}.data"
    subprocess.run(["perf", "record", "-q", "-e", "io_uring:io_uring_submit_req", "-o", data,
                    "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)], capture_output=True,
                   timeout=seconds + 60)
    p = subprocess.run(["perf", "script", "-i", data, "-F", "trace"], capture_output=True, text=True, timeout=300)
    ops = {}
    for m in re.finditer(r"opcode (\w+)", p.stdout):
        ops[m.group(1)] = ops.get(m.group(1), 0) + 1
    return ops


def perf_profile(work, bins, target, conns, seconds, pids, name, rate=None, record=True):
    """Runs loadgen against `target` (not a measured run) and, in its middle, counts the system calls of
    `pids` by name (perf trace -s: slows them down, so nothing here is a measurement of speed) and, with
    `record`, takes a flat CPU profile (perf record, cpu-clock, no call graphs). Returns per-request counts,
    profile buckets and top symbols."""
    label = "max" if rate is None else str(rate)
    log(f"profile {name} at {label}: perf on pids {','.join(map(str, pids))}, {seconds:g} s")
    argv = loadgen_argv(bins, target, conns, (2 if name == "mesh" else 1) * seconds + 2, 1, rate=rate, max_len=0)
    lg = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          preexec_fn=_pdeathsig, text=True)
    res = {"load": label, "seconds": seconds}
    data = work / f"perf-{name}-{label}.data"
    try:
        time.sleep(1.5)
        syscalls, ctx = perf_syscalls(pids, seconds) if rate is not None else ({}, 0)
        uring = perf_uring_ops(work, pids, seconds, f"{name}-{label}") if rate is not None and name == "mesh" else {}
        if record:
            subprocess.run(["perf", "record", "-q", "-F", "999", "-o", data, "-p", ",".join(map(str, pids)),
                            "--", "sleep", str(seconds)], capture_output=True, timeout=seconds + 60)
    finally:
        out, _ = lg.communicate(timeout=4 * seconds + 60)
    summary = parse_loadgen(out)
    # Open loop only (at max rate a traced process would slow down and the count of requests in the window
    # would be unknown): the requests in the window are rate x seconds.
    reqs = rate * seconds if rate is not None else None
    res["qps"] = summary["qps"]
    res["errors"] = summary["errors"]
    total = sum(syscalls.values())
    res["syscalls_per_req"] = rnd(total / reqs, 2) if total and reqs else None
    res["syscalls_per_req_by_name"] = {k: rnd(v / reqs, 2) for k, v in sorted(syscalls.items(), key=lambda kv: -kv[1])
                                       if reqs and v / reqs >= 0.01}
    res["context_switches_per_req"] = rnd(ctx / reqs, 2) if reqs else None
    if uring and reqs:
        res["io_uring_submissions_per_req"] = rnd(sum(uring.values()) / reqs, 2)
        res["io_uring_submissions_per_req_by_op"] = {k: rnd(v / reqs, 2) for k, v in
                                                     sorted(uring.items(), key=lambda kv: -kv[1]) if v / reqs >= 0.01}
    if rate is None:
        for k in ("syscalls_per_req", "syscalls_per_req_by_name", "context_switches_per_req"):
            del res[k]
    if not record:
        return res
    binary = "mesh-agent" if name == "mesh" else "nginx"
    rows = perf_report_rows(data, "dso,sym", 0)
    buckets = {}
    for pct, cols in rows:
        if len(cols) < 2:
            continue
        dso, sym = cols[0], re.sub(r"^\[[.k]\]\s*", "", cols[1])
        b = bucket_of(dso, sym, binary)
        buckets[b] = buckets.get(b, 0.0) + pct
    res["buckets"] = sorted(({"bucket": k, "pct": round(v, 1)} for k, v in buckets.items()),
                            key=lambda x: -x["pct"])
    res["top"] = [{"pct": pct, "dso": cols[0], "sym": re.sub(r"^\[[.k]\]\s*", "", cols[1])[:120]}
                  for pct, cols in rows[:25] if len(cols) >= 2]
    res["by_thread"] = [{"pct": pct, "thread": cols[0]} for pct, cols in perf_report_rows(data, "comm", 0.5)]
    text = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "comm,dso,sym",
                           "--percent-limit", "0.3"], capture_output=True, text=True, timeout=300).stdout
    (OUT / f"profile-{name}.txt").write_text(text)
    res["text"] = f"target/bench/profile-{name}.txt"
    m = re.search(r"# Samples:\s*(\S+)", text)
    res["samples"] = m.group(1) if m else None
    return res


# ------------------------------------------------------------------------------------------------------


def write_json(name, obj):
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)
    log(f"wrote {path}")


def cleanup(work):
    if KEEP:
        log(f"logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def main():
    signal.signal(signal.SIGTERM, _on_term)
    # Also when started in the background by a non-interactive shell (SIGINT ignored on entry): Ctrl-C stops us.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, _on_term)
    if len(sys.argv) != 2 or sys.argv[1] not in ("challenge", "overhead", "generic", "faults", "registry",
                                                   "drift", "memory", "wait-load",
                                                   "machine"):
        print(__doc__, file=sys.stderr)
        return 2
    what = sys.argv[1]
    try:
        if what == "challenge":
            challenge()
        elif what == "overhead":
            overhead()
        elif what == "generic":
            generic()
        elif what == "faults":
            faults()
        elif what == "registry":
            import registry  # benches/registry.py (it imports this file as `run`)

            registry.registry()
        elif what == "drift":
            import drift  # benches/drift.py (it imports this file as `run`)

            drift.drift()
        elif what == "memory":
            import memory  # benches/memory.py (it imports this file as `run`)

            memory.memory()
        elif what == "wait-load":
            emit(wait_load("codec"))
        else:
            emit(machine_info())
    except (KeyboardInterrupt, Interrupted) as e:
        log(f"interrupted ({str(e) or 'Ctrl-C'}): everything started was stopped")
        return 130
    except RuntimeError as e:
        log(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
