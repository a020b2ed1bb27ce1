"""The registry scale benchmark (issues 11 and 13): `python3 benches/run.py registry` ->
target/bench/registry.json.

Runs (`BENCH_REGISTRY_MODELS`, comma-separated `<S>x<N>[:<model>]`):

* `1x5000`, `10x500` (issue 11): interface-level, S x N provider instances, each on its own address and
  exporting one of the S interfaces (one key each);
* `10x500:interface`: interface-level, N instances each exporting all S interfaces (S keys each; one join or
  leave puts or deletes the S keys in one transaction): the same estate as
* `10x500:application` (issue 13): Dubbo 3 application-level discovery, N instances of one application
  exporting S services: one `/services/<app>/<ip>:<port>` key each (Java 3's value, or dubbo-go's with
  `BENCH_REGISTRY_APP_SHAPE=dubbo-go`), the S mapping keys `/dubbo/mapping/<interface>`, and `provider-sim`
  serving the MetadataService (`getMetadataInfo(revision)`) on every instance; a joining instance announces
  the revision the others have (a restart of the same build).

Per run:

* etcd on loopback; one `provider-sim` answering on `instances + spare` loopback addresses 127.1.0.1,
  127.1.0.2, ... (one listener each, one port), so that every registered instance is a real call target and
  an instance that leaves still answers the calls already sent to it;
* `registry-churn` registers the instances as Java Dubbo 2.7 does (root `/dubbo`, URL-encoded full URLs as
  keys, lease id as value, one shared lease, transactions of 64 puts);
* the consumer agent (`mesh-agent consumer --etcd ...` + `BENCH_REGISTRY_APP_CONSUMER_ARGS` for application
  rows, `MESH_TRACE_SNAPSHOTS=1`: each shard prints a
  `snapshot-applied` line with the snapshot's etcd revision when it takes a snapshot) serves an open-loop
  load of `BENCH_REGISTRY_RATE` requests/s (loadgen) for the whole run, to `IHelloService` (interface 0);
* after a warm-up, `BENCH_REGISTRY_ROUNDS` rounds of: a quiet phase (no registry change) and a churn phase
  (`BENCH_REGISTRY_CHURN` changes/s: one instance joins, one leaves, ...), `BENCH_REGISTRY_PHASE` seconds
  each, the consumer's CPU time (utime + stime of the whole process) read at each phase's ends.

Reported per run: time to first route (consumer process started -> first answered `hash("hello")`, polled
every 5 ms), propagation (per change: the latest, over the consumer's shards, of the first
`snapshot-applied` time with a revision >= the change's revision, minus the time etcd acknowledged the change
to registry-churn), p50/p99; CPU per change ((CPU in churn phases - CPU in quiet phases) / changes; both at
the same request rate); the consumer's RSS (VmRSS at the end, and VmHWM); etcd keys and bytes under
`/dubbo` (and `/services` for application rows: count and sum of key + value lengths) and etcd's db size;
requests and failed requests (loadgen); application rows: MetadataService calls answered by the simulator
from the start of the first churn phase to the end of the last, per change, and those before it (the
consumer's start). Per thread kind (registry watcher thread, shards, other): the same churn - quiet
difference per change of CPU time (`/proc/<pid>/task/<tid>/schedstat`), context switches and minor faults.

`BENCH_REGISTRY_SUBSET=0,64` runs every model once per provider subset K (`consumer.provider_subset`).
`BENCH_REGISTRY_ISOLATE=1` (or `both`: each run shared, then isolated): the consumer alone on
`BENCH_REGISTRY_CONSUMER_CPUS` (default the first CPU the runner may use; `--cores` of the consumer, so one
shard per CPU, its registry and admin threads on the same CPUs) and etcd, registry-churn, loadgen, the
simulator and this runner on the other CPUs (affinity masks, as `taskset` sets them): on a machine whose
cores the churn's processes share with the consumer, the quiet-vs-churn difference otherwise also counts
their interference with the consumer's threads (wake-ups, preemption, caches), not only its own work.
Isolated runs carry `"isolated": true` and the CPU lists. On 2 CPUs the second one carries etcd, the churn
tool, loadgen (1,000 requests/s) and the simulator together: it needs an otherwise idle machine (a busy one
starves them, and the run shows stalls, not the consumer's cost). On a larger machine
`BENCH_REGISTRY_CONSUMER_CPUS=0,1` keeps the consumer's two shards of the shared runs.
"""

import base64
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import run as bench
from run import log, emit, env_float, env_int, env_list, free_port, proc_cpu, wait_line, wait_port

# Registry root per key layout of the interface rows: `java-2.7` and `java-3.3` are Dubbo's (the provider URLs
# each version writes); `mesh-v1` the agents' own layout before issue 11 (BENCH_REGISTRY_LAYOUT=mesh-v1
# measures an agent of that time, for a before/after comparison).
ROOTS = {"java-2.7": "/dubbo", "java-3.3": "/dubbo", "mesh-v1": "/dubbomesh/v1"}
# Layouts with application rows (application rows are always Java 3 or dubbo-go instances).
DUBBO_LAYOUTS = ("java-2.7", "java-3.3")
IP_BASE = "127.1.0.1"


def bench_interface(k):
    """Interface k of the estate (mesh_testkit::churn::bench_interface): IHelloService, IHelloService1, ..."""
    return bench.SERVICE if k == 0 else f"{bench.SERVICE}{k}"

ESTATES = {"1x5000": (1, 5000), "10x500": (10, 500), "1x500": (1, 500), "2x50": (2, 50), "10x50": (10, 50)}
MODEL_KINDS = ("", "interface", "application")
APPLICATION = "bench-provider"
# The default runs: issue 11's two, then issue 13's comparison at 10x500 (same estate, both models) and 1x5000.
DEFAULT_MODELS = "1x5000,10x500,10x500:interface,10x500:application,1x5000:application"


def parse_model(token):
    """`10x500` -> (10, 500, "interface", "one"); `10x500:interface` -> (.., "interface", "all");
    `10x500:application` -> (.., "application", "all")."""
    estate, _, kind = token.partition(":")
    if estate not in ESTATES or kind not in MODEL_KINDS:
        raise RuntimeError(f"BENCH_REGISTRY_MODELS: unknown run {token!r} (<estate>[:interface|:application], "
                           f"estates {', '.join(ESTATES)})")
    s, n = ESTATES[estate]
    if kind == "application":
        return s, n, "application", "all"
    return s, n, "interface", "all" if kind == "interface" else "one"


def metadata_calls(path):
    """The last `METADATA-CALLS <n>` provider-sim printed (None before the first)."""
    last = None
    try:
        for line in Path(path).read_text(errors="replace").splitlines():
            if line.startswith("METADATA-CALLS "):
                last = int(line.split()[1])
    except FileNotFoundError:
        pass
    return last


def wait_first_route(port, expect, seconds, proc):
    """Polls hash("hello") every 5 ms until it is answered right; returns the monotonic time it was."""
    end = time.monotonic() + seconds
    last = None
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"consumer exited ({proc.returncode}) before its first route")
        try:
            last = bench.post_hello(port, timeout=2.0)
            if last == (200, expect):
                return time.monotonic()
        except OSError as e:
            last = str(e)
        time.sleep(0.005)
    raise RuntimeError(f"127.0.0.1:{port} did not answer hash(\"hello\") = {expect} within {seconds} s "
                       f"(last: {last})")


def raise_nofile():
    """Raises RLIMIT_NOFILE to the hard limit (inherited by every process started here): the simulator holds
    one listener per instance plus the consumer's connections, the consumer one pool per instance."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def vm_kib(pid, field):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return None


def etcdctl(url, *args):
    p = subprocess.run(["etcdctl", "--endpoints", url, *args], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, ETCDCTL_API="3"))
    if p.returncode != 0:
        raise RuntimeError(f"etcdctl {' '.join(args)}: {p.stderr.strip()[-500:]}")
    return p.stdout


def etcd_usage(url, roots):
    """Keys and key + value bytes under the registry roots (each `root/` prefix; also per root), and etcd's db
    size (bytes, and in use)."""
    keys = size = revision = 0
    by_root = {}
    for root in roots:
        got = json.loads(etcdctl(url, "get", root.rstrip("/") + "/", "--prefix", "-w", "json"))
        kvs = got.get("kvs") or []
        n = sum(len(base64.b64decode(kv["key"])) + len(base64.b64decode(kv.get("value", ""))) for kv in kvs)
        by_root[root] = {"keys": len(kvs), "bytes": n}
        keys += len(kvs)
        size += n
        revision = max(revision, got["header"]["revision"])
    status = json.loads(etcdctl(url, "endpoint", "status", "-w", "json"))[0]["Status"]
    return {"etcd_keys": keys, "etcd_bytes": size, "etcd_by_root": by_root, "etcd_db_bytes": status.get("dbSize"),
            "etcd_db_in_use_bytes": status.get("dbSizeInUse"), "etcd_revision": revision}


def parse_applied(path):
    """{shard: [(revision, unix_ns), ...] in time order} from the consumer's `snapshot-applied` lines."""
    shards = {}
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith("snapshot-applied "):
            continue
        f = dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)
        # An agent without Snapshot.revision (before issue 11) prints none: no propagation then.
        shards.setdefault(f["shard"], []).append((int(f.get("revision", -1)), int(f["unix_ns"])))
    return shards


def propagation(records, applied):
    """Per change: max over shards of (first apply with revision >= the change's) - acked time, in ms;
    plus the changes some shard never applied."""
    out, missing = [], 0
    idx = {s: 0 for s in applied}
    # Records and each shard's applies are both in revision order: one merge pass per shard.
    for r in sorted(records, key=lambda r: r["revision"]):
        latest = None
        for s, lines in applied.items():
            i = idx[s]
            while i < len(lines) and lines[i][0] < r["revision"]:
                i += 1
            idx[s] = i
            if i == len(lines):
                latest = None
                break
            latest = lines[i][1] if latest is None else max(latest, lines[i][1])
        if latest is None:
            missing += 1
        else:
            out.append((latest - r["acked_unix_ns"]) / 1e6)
    return out, missing


def failures_by_phase(loadgen_text, phases):
    """Failed calls by the phase (warm-up, quiet, churn, after) of the window they completed in."""
    lines = [l for l in loadgen_text.splitlines() if l.startswith("{")]
    tl = json.loads(lines[-1]).get("timeline") if lines else None
    if not tl:
        return None
    out = {}
    for i, n in enumerate(tl["failed"]):
        if not n:
            continue
        at = i * tl["window_ms"] / 1e3
        name = [p for p, start in phases if start <= at][-1] if phases else "?"
        out[name] = out.get(name, 0) + n
    return out


def pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def thread_kind(comm):
    """The consumer's threads by what they do: the registry watcher thread (all its work is the registry's),
    the shards (`consumer-<n>-<id>`; their join threads only wait) and the rest (main, admin)."""
    if comm.startswith("mesh-registry"):
        return "registry"
    if comm.startswith("consumer") and not comm.startswith("consumer-join"):
        return "shards"
    return "other"


def thread_counters(pid):
    """Per thread kind: CPU seconds from `/proc/<pid>/task/<tid>/schedstat` (nanoseconds run, not the 10 ms
    clock ticks of `stat`), context switches (voluntary, involuntary) and minor page faults."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                st = f.read()
            with open(f"{base}/schedstat") as f:
                ran_ns = int(f.read().split()[0])
            with open(f"{base}/status") as f:
                status = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
        comm = st[st.index("(") + 1 : st.rindex(")")]
        rest = st[st.rindex(")") + 2 :].split()
        k = out.setdefault(thread_kind(comm), {"cpu_s": 0.0, "voluntary": 0, "involuntary": 0, "minflt": 0})
        k["cpu_s"] += ran_ns / 1e9
        k["voluntary"] += int(status.get("voluntary_ctxt_switches", "0").strip() or 0)
        k["involuntary"] += int(status.get("nonvoluntary_ctxt_switches", "0").strip() or 0)
        k["minflt"] += int(rest[7])
    return out


def counters_delta(into, before, after):
    """Adds after - before per thread kind and counter to `into` (threads born in between count from 0)."""
    for kind, c in after.items():
        b = before.get(kind, {})
        t = into.setdefault(kind, {})
        for name, v in c.items():
            t[name] = t.get(name, 0) + v - b.get(name, 0)


def allowed_cpus():
    return sorted(os.sched_getaffinity(0))


def isolation_cpus():
    """(CPUs of the consumer, CPUs of everything else) for BENCH_REGISTRY_ISOLATE: the consumer on
    BENCH_REGISTRY_CONSUMER_CPUS (default: the first CPU this runner may use), the rest of the runner's CPUs
    for etcd, registry-churn, loadgen, the simulator, perf and the runner itself."""
    allowed = allowed_cpus()
    mine = [int(c) for c in env_list("BENCH_REGISTRY_CONSUMER_CPUS", str(allowed[0]))]
    others = [c for c in allowed if c not in mine]
    if not others or any(c not in allowed for c in mine):
        raise RuntimeError(f"BENCH_REGISTRY_ISOLATE needs the consumer's CPUs {mine} inside this runner's "
                           f"{allowed} and at least one CPU left for the rest")
    return mine, others


def profile_churn(work, name, pid, churner, rate, seconds):
    """perf record (call graphs, 999 Hz) of the consumer during one more churn phase: the share of each thread
    and the top symbols (self time), and the whole report in target/bench/profile-registry-<model>.txt."""
    data = work / "perf-registry.data"
    perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "999", "-o", str(data), "-p", str(pid), "--",
                             "sleep", f"{seconds + 1:g}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    churner.churn(rate, seconds)
    perf.wait(timeout=seconds + 60)
    by_thread = [{"pct": pct, "thread": cols[0] if cols else "?"} for pct, cols in bench.perf_report_rows(data, "comm", 0.5)]
    top = [{"pct": pct, "thread": cols[0], "dso": cols[1], "sym": cols[2][:140]}
           for pct, cols in bench.perf_report_rows(data, "comm,dso,sym", 0.5)[:30] if len(cols) >= 3]
    text = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--children", "--sort", "comm,sym",
                           "--percent-limit", "1"], capture_output=True, text=True, timeout=300).stdout
    bench.OUT.mkdir(parents=True, exist_ok=True)
    out = bench.OUT / f"profile-registry-{name}.txt"
    out.write_text(text)
    return {"seconds": seconds, "by_thread": by_thread, "top_self": top, "text": str(out.relative_to(bench.ROOT))
            if out.is_relative_to(bench.ROOT) else str(out)}


def perf_samples(data, sort):
    """Samples per `sort` key (self time) in a perf.data file: {key: samples}."""
    p = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "--no-children", "-n", "--sort", sort,
                        "--field-separator", "\t"], capture_output=True, text=True, timeout=300)
    out = {}
    for line in p.stdout.splitlines():
        if not line or line.startswith("#"):
            continue
        cols = [c.strip() for c in line.split("\t")]
        try:
            n = int(cols[1])
        except (ValueError, IndexError):
            continue
        key = " ".join(cols[2:])[:160]
        out[key] = out.get(key, 0) + n
    return out


def profile_diff(work, name, pid, churner, rate, seconds, freq=1999):
    """Where a change's CPU goes: perf record (self time, `freq` Hz) of the consumer during a quiet phase and
    then a churn phase of the same length, at the same request rate; per symbol, (churn samples - quiet
    samples) / freq / changes = microseconds per change. Written to target/bench/profile-registry-<model>-diff.txt."""
    def record(tag, during):
        data = work / f"perf-{tag}.data"
        perf = subprocess.Popen(["perf", "record", "-q", "-F", str(freq), "-o", str(data), "-p", str(pid), "--",
                                 "sleep", f"{seconds:g}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        n = during()
        perf.wait(timeout=seconds + 60)
        return data, n

    quiet, _ = record("quiet", lambda: time.sleep(seconds))
    churn, (changes, _) = record("churn", lambda: churner.churn(rate, seconds - 0.5))
    rows = []
    for sort in ("comm", "comm,dso", "comm,sym"):
        q, c = perf_samples(quiet, sort), perf_samples(churn, sort)
        for key in set(q) | set(c):
            d = c.get(key, 0) - q.get(key, 0)
            rows.append((sort, key, d / freq / max(changes, 1) * 1e6, q.get(key, 0), c.get(key, 0)))
    lines = [f"# {name}: {changes} changes in {seconds:g} s; per key: us per change (churn - quiet samples at "
             f"{freq} Hz / changes), quiet samples, churn samples"]
    for sort in ("comm", "comm,dso", "comm,sym"):
        lines.append(f"## by {sort}")
        part = sorted((r for r in rows if r[0] == sort), key=lambda r: -r[2])
        for _, key, us, q, c in part[:60]:
            lines.append(f"{us:8.1f}  {q:7d} {c:7d}  {key}")
    bench.OUT.mkdir(parents=True, exist_ok=True)
    for data in (quiet, churn):  # kept for `perf report -i` (the work dir goes)
        shutil.copy2(data, bench.OUT / f"profile-registry-{name}-{data.stem}.data")
    out = bench.OUT / f"profile-registry-{name}-diff.txt"
    out.write_text("\n".join(lines) + "\n")
    return str(out)


class Churner:
    """registry-churn, driven over its stdin."""

    def __init__(self, procs, work, bins, etcd_url, port, interfaces, instances, spare, seed, layout,
                 model="interface", exports="one", shape="java-3", mapping="dubbo-go"):
        self.records = work / "churn-records.jsonl"
        argv = [bins["registry-churn"], "--etcd", etcd_url, "--root", ROOTS[layout],
                "--interfaces", interfaces,
                "--instances", instances, "--spare", spare, "--ip-base", IP_BASE, "--port", port,
                "--seed", seed, "--records", self.records, "--model", model, "--application", APPLICATION]
        if model == "application":
            argv += ["--shape", shape, "--mapping", mapping]
        else:
            argv += ["--layout", layout, "--instance-exports", exports]
        err = open(work / "registry-churn.log", "ab")
        self.p = subprocess.Popen([str(a) for a in argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=err, text=True, preexec_fn=bench._pdeathsig, cwd=work)
        err.close()
        self.p.bench_name = "registry-churn"
        procs.live.append(self.p)

    def expect(self, word):
        line = self.p.stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"registry-churn said {line!r} instead of {word} (exit {self.p.poll()}); "
                               f"see registry-churn.log")
        return line.split()[1:]

    def churn(self, rate, seconds):
        self.p.stdin.write(f"churn {rate:g} {seconds:g}\n")
        self.p.stdin.flush()
        changes, failed = self.expect("CHURNED")
        return int(changes), int(failed)

    def quit(self):
        if self.p.poll() is None:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
            self.p.wait(timeout=30)

    def read_records(self):
        if not self.records.exists():
            return []
        return [json.loads(l) for l in self.records.read_text().splitlines() if l.strip()]


def run_model(name, interfaces, per_interface, bins, work, procs, settings, model="interface", exports="one",
              subset=0, isolate=False):
    """One run. `isolate`: the consumer alone on its CPUs (BENCH_REGISTRY_CONSUMER_CPUS, one shard per CPU; its
    registry and admin threads inherit them), everything else (etcd, registry-churn, loadgen, the simulator,
    this runner) on the others, so that the consumer's CPU per change is its own work and not the interference
    of the churn's other processes with it."""
    if not isolate:
        return _run_model(name, interfaces, per_interface, bins, work, procs, settings, model, exports, subset,
                          None)
    mine, others = isolation_cpus()
    before = allowed_cpus()
    os.sched_setaffinity(0, others)  # inherited by every process started from here on but the consumer
    try:
        return _run_model(name, interfaces, per_interface, bins, work, procs, settings, model, exports, subset,
                          (mine, others))
    finally:
        os.sched_setaffinity(0, before)


def _run_model(name, interfaces, per_interface, bins, work, procs, settings, model, exports, subset, isolation):
    # Addresses registered at the start (one per instance): S x N with one interface each, else N.
    registered = interfaces * per_interface if exports == "one" else per_interface
    application = model == "application"
    spare = settings["spare"]
    tag = name.replace(":", "-").replace(" ", "-").replace("=", "")
    mwork = work / tag
    mwork.mkdir()
    procs.work = mwork
    etcd_port, peer_port = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd = procs.start("etcd", [
        "etcd", "--name", "bench", "--data-dir", mwork / "etcd", "--listen-client-urls", etcd_url,
        "--advertise-client-urls", etcd_url, "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
        "--initial-cluster", f"bench=http://127.0.0.1:{peer_port}"])
    wait_port(etcd_port, 20, etcd)

    port = free_port()
    sim_argv = [bins["provider-sim"], "--bind", IP_BASE, "--bind-count", registered + spare,
                "--port", port, "--latency-ms", settings["sim_latency_ms"], "--timer", "coarse",
                "--threads", 200, "--workers", 1, "--name", name]
    if application:
        # Every instance serves the MetadataService of the application's S services.
        sim_argv += ["--app", APPLICATION, "--services", interfaces, "--stats-interval-ms", 100]
    sim = procs.start("sim", sim_argv)
    wait_line(mwork / "sim.out", "LISTENING", 60, sim)

    t0 = time.monotonic()
    churner = Churner(procs, mwork, bins, etcd_url, port, interfaces, per_interface, spare, settings["seed"],
                      settings["layout"], model, exports, settings["app_shape"], settings["app_mapping"])
    count, revision = churner.expect("REGISTERED")
    log(f"{name}: {count} instances registered in {time.monotonic() - t0:.1f} s (revision {revision})")

    cport = free_port()
    env = dict(os.environ, MESH_TRACE_SNAPSHOTS="1")
    consumer_argv = [bins["mesh-agent"], "consumer", "--listen", f"127.0.0.1:{cport}", "--etcd", etcd_url,
                     *settings["consumer_args"], *(settings["app_consumer_args"] if application else []),
                     *(["--provider-subset", subset] if subset else []),
                     *(["--cores", ",".join(map(str, isolation[0]))] if isolation else [])]
    if application and settings["app_mapping"] == "none":
        # No mapping key in etcd (a Java 3 estate): the consumer names the application as a Java consumer
        # does, with `provided-by` (consumer.provided_by, a config-file table).
        config = mwork / "consumer.toml"
        config.write_text("[consumer.provided_by]\n" + "".join(
            f'"{bench_interface(k)}" = "{APPLICATION}"\n' for k in range(interfaces)))
        consumer_argv += ["--config", config]
    started = time.monotonic()
    out = open(mwork / "consumer.out", "ab")
    err = open(mwork / "consumer.log", "ab")
    def consumer_preexec():
        bench._pdeathsig()
        if isolation:
            os.sched_setaffinity(0, isolation[0])
    consumer = subprocess.Popen([str(a) for a in consumer_argv], stdout=out, stderr=err,
                                stdin=subprocess.DEVNULL, preexec_fn=consumer_preexec, cwd=mwork, env=env)
    out.close()
    err.close()
    consumer.bench_name = "consumer"
    procs.live.append(consumer)
    first_route = wait_first_route(cport, bench.HELLO_HASH, 60, consumer)
    time_to_first_route_ms = (first_route - started) * 1e3
    log(f"{name}: consumer's first route {time_to_first_route_ms:.0f} ms after its start")

    phase = settings["phase_s"]
    rounds = settings["rounds"]
    warm = settings["warmup_s"]
    prof_s = settings["profile_s"]
    diff = prof_s > 0 and os.environ.get("BENCH_REGISTRY_PROFILE_DIFF") == "1"
    total = warm + rounds * 2 * phase + (prof_s + 3 if prof_s > 0 else 0) + (2 * prof_s + 3 if diff else 0) + 5
    lg_argv = bench.loadgen_argv(bins, f"http://127.0.0.1:{cport}/", settings["connections"], total, 0,
                                 rate=settings["rate"]) + ["--timeline-ms", 500]
    lg_out = open(mwork / "loadgen.out", "wb")
    lg_err = open(mwork / "loadgen.log", "ab")
    lg = subprocess.Popen([str(a) for a in lg_argv], stdout=lg_out, stderr=lg_err, stdin=subprocess.DEVNULL,
                          preexec_fn=bench._pdeathsig, cwd=mwork)
    lg_out.close()
    lg_err.close()
    lg.bench_name = "loadgen"
    procs.live.append(lg)
    lg_start = time.monotonic()
    time.sleep(warm)

    quiet_cpu = churn_cpu = quiet_s = churn_s = 0.0
    changes = failed_changes = 0
    per_round = []
    phases = [("warm-up", 0.0)]  # (phase, seconds after loadgen started) in order
    # Per thread kind (the registry watcher thread, the shards, the rest): CPU seconds (schedstat), context
    # switches and minor faults, summed over the quiet phases and over the churn phases.
    threads = {"quiet": {}, "churn": {}}

    time.sleep(0.25)  # a fresh METADATA-CALLS line (every 100 ms)
    calls_at_start = metadata_calls(mwork / "sim.out") if application else None
    for rnd in range(rounds):
        procs.check()
        c0, t, th0 = proc_cpu(consumer.pid), time.monotonic(), thread_counters(consumer.pid)
        phases.append(("quiet", t - lg_start))
        time.sleep(phase)
        c1, t1, th1 = proc_cpu(consumer.pid), time.monotonic(), thread_counters(consumer.pid)
        quiet_cpu += c1 - c0
        quiet_s += t1 - t
        phases.append(("churn", t1 - lg_start))
        n, f = churner.churn(settings["churn_rate"], phase)
        c2, t2, th2 = proc_cpu(consumer.pid), time.monotonic(), thread_counters(consumer.pid)
        counters_delta(threads["quiet"], th0, th1)
        counters_delta(threads["churn"], th1, th2)
        churn_cpu += c2 - c1
        churn_s += t2 - t1
        changes += n
        failed_changes += f
        per_round.append(bench.rnd(((c2 - c1) - (c1 - c0) * (t2 - t1) / (t1 - t)) / n * 1e6, 1) if n else None)
        log(f"{name}: round {rnd + 1}/{rounds}: quiet {1e3 * (c1 - c0) / (t1 - t):.1f} ms CPU/s, churn "
            f"{1e3 * (c2 - c1) / (t2 - t1):.1f} ms CPU/s ({n} changes, {f} failed)")
    phases.append(("after", time.monotonic() - lg_start))
    time.sleep(0.25)
    calls_at_end = metadata_calls(mwork / "sim.out") if application else None
    rss_kib = vm_kib(consumer.pid, "VmRSS")
    hwm_kib = vm_kib(consumer.pid, "VmHWM")
    usage = etcd_usage(etcd_url, [ROOTS[settings["layout"]]] + (["/services"] if application else []))
    profile = None
    if prof_s > 0 and shutil.which("perf"):
        profile = profile_churn(mwork, tag, consumer.pid, churner, settings["churn_rate"], prof_s)
        if diff:
            profile["diff"] = profile_diff(mwork, tag, consumer.pid, churner, settings["churn_rate"], prof_s)
    left = total - (time.monotonic() - lg_start) + 30
    lg.wait(timeout=max(10, left))
    procs.live.remove(lg)
    summary = bench.parse_loadgen((mwork / "loadgen.out").read_text())
    failed_by_phase = failures_by_phase((mwork / "loadgen.out").read_text(), phases)

    # The profiled churn's changes are not measured.
    records = churner.read_records()[:changes]
    applied = parse_applied(mwork / "consumer.log")
    has_revision = all(rev >= 0 for lines in applied.values() for rev, _ in lines)
    props, missing = propagation(records, applied) if has_revision else ([], None)
    # The changes a snapshot was published for (its revision is one a shard applied): with a provider subset,
    # a change outside it publishes nothing, and its propagation above is the wait for the next one.
    applied_revisions = {rev for lines in applied.values() for rev, _ in lines}
    published = [r for r in records if r["revision"] in applied_revisions]
    props_published, _ = propagation(published, applied) if has_revision else ([], None)
    # CPU per change: the churn phases' CPU rate minus the quiet phases', over the churn phases' length.
    extra = churn_cpu - quiet_cpu * (churn_s / quiet_s) if quiet_s > 0 else None
    cpu_per_change = extra / changes * 1e6 if changes and extra is not None else None

    def per_change(kind, counter="cpu_s", scale=1e6, nd=1):
        """(churn - quiet at the churn phases' length) / changes of one counter of one thread kind."""
        q = threads["quiet"].get(kind, {}).get(counter, 0)
        c = threads["churn"].get(kind, {}).get(counter, 0)
        return bench.rnd((c - q * churn_s / quiet_s) / changes * scale, nd) if changes and quiet_s else None

    def per_s(phase, kind, seconds):
        return bench.rnd(1e3 * threads[phase].get(kind, {}).get("cpu_s", 0.0) / seconds, 2) if seconds else None
    kinds = ("registry", "shards", "other")
    metadata_calls_in_churn = (calls_at_end - calls_at_start
                               if calls_at_start is not None and calls_at_end is not None else None)
    run = {
        "model": model if application or settings["layout"] == "java-2.7" else f"{model} ({settings['layout']})",
        "estate": name.split(":")[0].split(" ")[0],
        "run": name,
        "services": interfaces,
        "instances": registered,
        # interface-level: `one` = each instance exports one interface (issue 11's estate), `all` = every
        # interface (the same estate as application-level); application-level is always `all`.
        "instance_exports": exports,
        "keys_per_change": 1 if exports == "one" or application else interfaces,
        "instance_shape": settings["app_shape"] if application else None,
        "mapping": settings["app_mapping"] if application else None,
        "time_to_first_route_ms": bench.rnd(time_to_first_route_ms, 1),
        "metadata_calls_per_change": bench.rnd(metadata_calls_in_churn / changes, 3)
        if metadata_calls_in_churn is not None and changes else None,
        "metadata_calls_in_churn": metadata_calls_in_churn,
        "metadata_calls_before_churn": calls_at_start,
        # Measured: the changes over the churn phases' length (the tool sends one at a time, when due).
        "changes_per_s": bench.rnd(changes / churn_s if churn_s else None, 1),
        "changes_per_s_target": settings["churn_rate"],
        "propagation_p50_ms": bench.rnd(pct(props, 0.50), 2),
        "propagation_p99_ms": bench.rnd(pct(props, 0.99), 2),
        "cpu_us_per_change": bench.rnd(cpu_per_change, 1),
        "provider_subset": subset,
        # BENCH_REGISTRY_ISOLATE: the consumer alone on `consumer_cpus` (one shard each), the rest elsewhere.
        "isolated": bool(isolation),
        "consumer_cpus": isolation[0] if isolation else None,
        "other_cpus": isolation[1] if isolation else None,
        "snapshots_per_change": bench.rnd(len(published) / len(records), 3) if records else None,
        "propagation_published_p50_ms": bench.rnd(pct(props_published, 0.50), 2),
        "propagation_published_p99_ms": bench.rnd(pct(props_published, 0.99), 2),
        # The same difference per round, and per thread kind (schedstat: nanoseconds).
        "cpu_us_per_change_by_round": per_round,
        "cpu_us_per_change_by_thread": {k: per_change(k) for k in kinds},
        # Per thread kind, the CPU rate in each phase, and per change the extra context switches (voluntary:
        # the thread waited for something; involuntary: preempted) and minor page faults.
        "thread_cpu_ms_per_s": {"quiet": {k: per_s("quiet", k, quiet_s) for k in kinds},
                                "churn": {k: per_s("churn", k, churn_s) for k in kinds}},
        "context_switches_per_change_by_thread": {
            k: {"voluntary": per_change(k, "voluntary", 1, 2), "involuntary": per_change(k, "involuntary", 1, 2)}
            for k in kinds},
        "minor_faults_per_change_by_thread": {k: per_change(k, "minflt", 1, 2) for k in kinds},
        "consumer_rss_mib": bench.rnd(rss_kib / 1024 if rss_kib else None, 1),
        "etcd_keys": usage["etcd_keys"],
        "etcd_bytes": usage["etcd_bytes"],
        "requests": summary["requests"],
        "failed": summary["errors"],
        # details
        "propagation_max_ms": bench.rnd(max(props) if props else None, 2),
        "propagation_measured": len(props),
        "changes_never_applied": missing,
        "changes": changes,
        "changes_failed": failed_changes,
        "consumer_shards": len(applied),
        "snapshots_applied_per_shard": {s: len(v) for s, v in sorted(applied.items())},
        "consumer_cpu_ms_per_s": {"quiet": bench.rnd(1e3 * quiet_cpu / quiet_s, 1) if quiet_s else None,
                                  "churn": bench.rnd(1e3 * churn_cpu / churn_s, 1) if churn_s else None},
        "phase_s": phase,
        "rounds": rounds,
        "consumer_hwm_mib": bench.rnd(hwm_kib / 1024 if hwm_kib else None, 1),
        "etcd_db_bytes": usage["etcd_db_bytes"],
        "etcd_db_in_use_bytes": usage["etcd_db_in_use_bytes"],
        "etcd_by_root": usage["etcd_by_root"],
        "request_rate": settings["rate"],
        "qps": summary["qps"],
        "errors_by_kind": summary["errors_by_kind"],
        # Failed requests by the phase in which they completed (loadgen's 500 ms timeline; a timeout
        # completes 5 s after it was sent).
        "failed_by_phase": failed_by_phase,
        "latency_us": summary["latency_us"],
        "profile": profile,
    }
    churner.quit()
    for p in reversed(list(procs.live)):
        procs.stop(p, timeout=15.0)
    return run


def registry():
    models = env_list("BENCH_REGISTRY_MODELS", DEFAULT_MODELS)
    for m in models:
        parse_model(m)
    settings = {
        "rate": env_int("BENCH_REGISTRY_RATE", 1000),
        "connections": env_int("BENCH_REGISTRY_CONNECTIONS", 64),
        "churn_rate": env_float("BENCH_REGISTRY_CHURN", 100.0),
        "phase_s": env_float("BENCH_REGISTRY_PHASE", 15.0),
        "rounds": env_int("BENCH_REGISTRY_ROUNDS", 3),
        "warmup_s": env_float("BENCH_REGISTRY_WARMUP", 5.0),
        "spare": env_int("BENCH_REGISTRY_SPARE", 50),
        "sim_latency_ms": env_int("BENCH_REGISTRY_SIM_LATENCY_MS", 1),
        "seed": env_int("BENCH_REGISTRY_SEED", 1),
        # After the measured rounds: one more churn phase under perf record (not measured), 0 = none.
        "profile_s": env_float("BENCH_REGISTRY_PROFILE", 10.0),
        "layout": os.environ.get("BENCH_REGISTRY_LAYOUT", "java-2.7"),
        # One connection per shard per provider: 5,050 instances x 2 shards = 10,100 connections, each end in
        # one process (the simulator also holds 5,050 listeners), under the RLIMIT_NOFILE hard limit of 20,000
        # here. With the default 2, a long run opened more than the simulator could accept (504s, timeouts).
        "consumer_args": os.environ.get("BENCH_REGISTRY_CONSUMER_ARGS", "--upstream-connections 1").split(),
        # Application rows: what makes the consumer discover by application (issue 13's consumer options).
        # FORCE_APPLICATION: application-level addresses only (the application comes from the mapping keys);
        # the interface rows keep the consumer's default (APPLICATION_FIRST, which finds no instance there).
        "app_consumer_args": os.environ.get("BENCH_REGISTRY_APP_CONSUMER_ARGS",
                                            "--migration-step FORCE_APPLICATION").split(),
        # Application rows: the instances' JSON, `java-3` (camelCase) or `dubbo-go` (PascalCase + ServiceMetadata).
        "app_shape": os.environ.get("BENCH_REGISTRY_APP_SHAPE", "java-3"),
        # Application rows: the interface-to-application mapping in etcd, `none` (what a Java 3 estate has:
        # Java's etcd metadata report writes no mapping; the consumer is given `provided_by`) or `dubbo-go`
        # (`/dubbo/mapping/<interface>`, as dubbo-go providers and the provider agent write it). Default: the
        # instance shape's own.
        "app_mapping": os.environ.get("BENCH_REGISTRY_APP_MAPPING", ""),
        # consumer.provider_subset (`--provider-subset K`): providers per service the consumer lists; 0 = all.
        # A comma-separated list runs every model once per K.
        "subsets": [int(k) for k in env_list("BENCH_REGISTRY_SUBSET", "0")],
        # `0` (default): every process shares the machine's CPUs (the method of the earlier rows); `1`: the
        # consumer alone on BENCH_REGISTRY_CONSUMER_CPUS (default the first CPU) and everything else on the
        # other CPUs; `both`: each run twice, shared then isolated.
        "isolate": os.environ.get("BENCH_REGISTRY_ISOLATE", "0"),
    }
    if settings["isolate"] not in ("0", "1", "both"):
        raise RuntimeError(f"BENCH_REGISTRY_ISOLATE: {settings['isolate']!r} (0, 1, both)")
    isolations = {"0": [False], "1": [True], "both": [False, True]}[settings["isolate"]]
    if True in isolations:
        settings["consumer_cpus"], settings["other_cpus"] = isolation_cpus()
    if not settings["app_mapping"]:
        settings["app_mapping"] = "dubbo-go" if settings["app_shape"] == "dubbo-go" else "none"
    if settings["app_mapping"] not in ("none", "dubbo-go"):
        raise RuntimeError(f"BENCH_REGISTRY_APP_MAPPING: {settings['app_mapping']!r} (none, dubbo-go)")
    if settings["app_shape"] not in ("java-3", "dubbo-go"):
        raise RuntimeError(f"BENCH_REGISTRY_APP_SHAPE: {settings['app_shape']!r} (java-3, dubbo-go)")
    if settings["layout"] not in ROOTS:
        raise RuntimeError(f"BENCH_REGISTRY_LAYOUT: {settings['layout']!r} ({', '.join(ROOTS)})")
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} not found")
    nofile = raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="mesh-bench-registry."))
    procs = bench.Procs(work)
    runs = []
    try:
        bins = bench.copy_bins(work)
        src = bench.RELEASE / "registry-churn"
        if not src.exists():
            raise RuntimeError(f"{src} missing: build first (cargo build --release -p mesh-testkit --bins)")
        shutil.copy2(src, work / "bin" / "registry-churn")
        bins["registry-churn"] = work / "bin" / "registry-churn"
        machine = bench.machine_info(bins)
        log(f"registry: work dir {work}; models {models}; {settings['rate']} requests/s; churn "
            f"{settings['churn_rate']:g}/s; {settings['rounds']} x ({settings['phase_s']:g} s quiet + "
            f"{settings['phase_s']:g} s churn); RLIMIT_NOFILE {nofile}")
        variants = [(m, k, iso) for m in models for k in settings["subsets"] for iso in isolations]
        for m, k, iso in variants:
            # The run's name: the model, then K and the isolation when they vary.
            name = m + (f" K={k}" if len(settings["subsets"]) > 1 or k else "") + (" isolated" if iso else "")
            gate = bench.wait_load(f"registry {name}")
            interfaces, per, model, exports = parse_model(m)
            if model == "application" and settings["layout"] not in DUBBO_LAYOUTS:
                log(f"registry: {m} skipped (BENCH_REGISTRY_LAYOUT={settings['layout']} is interface-level only)")
                continue
            try:
                r = run_model(name, interfaces, per, bins, work, procs, settings, model, exports, k, iso)
            except (RuntimeError, subprocess.SubprocessError, OSError) as e:
                # One failed run (e.g. a consumer that cannot discover this model) does not lose the others.
                log(f"registry: {m} failed: {e}")
                for p in reversed(list(procs.live)):
                    procs.stop(p, timeout=15.0)
                r = {"run": name, "provider_subset": k, "isolated": iso, "model": model, "estate": m.split(":")[0], "services": interfaces,
                     "instances": per if exports == "all" else interfaces * per, "instance_exports": exports,
                     "error": str(e)[:2000]}
            r["load"] = gate
            emit(r)
            runs.append(r)
        bench.write_json(os.environ.get("BENCH_REGISTRY_JSON", "registry.json"), {"runs": runs, "settings": settings, "machine": machine,
                                           "rlimit_nofile": nofile})
    finally:
        procs.stop_all()
        bench.cleanup(work)
