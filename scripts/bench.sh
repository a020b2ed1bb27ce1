#!/usr/bin/env bash
# End-to-end benchmarks and the report (issue 4). Usage:
#
#   bash scripts/bench.sh challenge   # the 2018 challenge topology at 128/256/512/1024 connections, loadgen and wrk
#   bash scripts/bench.sh overhead    # direct Dubbo vs the two agents vs one nginx hop, same offered load
#   bash scripts/bench.sh generic     # issue 12: form call vs JSON call (POJO in, map out) vs the consumer's Dubbo
#                                     # port, through both agents, same rates; then the JSON work in process
#   bash scripts/bench.sh faults      # challenge topology at 256 connections: kill -9 a provider agent, etcd down, restart
#   bash scripts/bench.sh codec       # cargo bench -p mesh-dubbo --bench codec
#   bash scripts/bench.sh routing     # cargo bench -p mesh-balance --bench routing (route+pick, balancers)
#   bash scripts/bench.sh registry    # 5,000 Java-style provider instances in etcd (1x5000, 10x500) under churn;
#                                     # issue 13: the same estate interface- vs application-level (10x500, 1x5000)
#   bash scripts/bench.sh drift       # issue 14: 3 providers whose capacity drifts (provider-sim --schedule), 1,024
#                                     # connections through the adaptive balancer, static weights, an oracle
#   bash scripts/bench.sh memory      # issue 14: consumer RSS at 0, 1,024 and 10,000 idle keep-alive and 1,024 busy connections
#   bash scripts/bench.sh all         # challenge, overhead, faults, drift, codec, routing (not registry, not memory), then the report
#   bash scripts/bench.sh report      # only regenerate docs/benchmarks.md and docs/bench/*.svg
#
# Results: target/bench/{challenge,overhead,faults,drift,codec,routing,generic,generic_json,memory}.json; every scenario ends by regenerating
# docs/benchmarks.md and docs/bench/*.svg (benches/report.py) from whatever JSON is there.
# Everything runs on 127.0.0.1 (random free ports); every process started is stopped on exit (also Ctrl-C).
#
# Knobs (environment):
#   BENCH_DURATION=15          measured seconds per run (challenge and overhead)
#   BENCH_WARMUP=3             challenge: warm-up seconds before each run (same tool, same connections)
#   BENCH_CONNECTIONS=128,256,512,1024   BENCH_TOOLS=loadgen,wrk   BENCH_CHALLENGE_REPEAT=1
#   BENCH_BALANCERS=weights,adaptive   challenge: weights = providers weighted 100/200/300 + consumer round_robin;
#                              adaptive = no weights + the consumer's default (adaptive); interleaved per count
#   BENCH_RATES=1000,5000      BENCH_MAX_CONNECTIONS=64   BENCH_OVERHEAD_REPEAT=3   BENCH_OVERHEAD_WARMUP=2
#   generic: BENCH_RATES and BENCH_MAX_CONNECTIONS as overhead; BENCH_GENERIC_REPEAT=2 BENCH_GENERIC_DURATION=10
#     BENCH_GENERIC_WARMUP=2 BENCH_GENERIC_MAX=1 (0 = no max-rate runs) BENCH_GENERIC_VARIANTS=direct,direct-user,
#     form,json,dubbo-port,dubbo-port-user BENCH_GENERIC_JSON=generic.json (file name under BENCH_OUT)
#   BENCH_PROFILE=5            overhead: seconds of perf profile of the agents and of nginx at max rate (0 = none)
#   BENCH_NGINX_WORKERS=auto   worker_processes of the nginx proxy
#   BENCH_METRICS=on           overhead: off = both agents with --no-metrics (the on/off cost of issue 15)
#   faults (seconds): BENCH_FAULT_STEADY=10 BENCH_FAULT_KILL=15 BENCH_FAULT_ETCD_DOWN=30 BENCH_FAULT_ETCD_BACK=10
#     BENCH_FAULT_RESTART=15 BENCH_FAULT_DRAIN_ALLOWANCE=5 BENCH_FAULT_WARMUP=2; BENCH_FAULT_CONNECTIONS=256
#     BENCH_FAULT_TIMELINE_MS=100; BENCH_FAULT_LEASE_TTL (default min(5, kill - 2), at least 2)
#   registry: BENCH_REGISTRY_MODELS=1x5000,10x500,10x500:interface,10x500:application,1x5000:application
#     (<S>x<N> = issue 11's interface-level run, S x N addresses of one interface each; :interface = N addresses
#     exporting all S; :application = Dubbo 3 application-level, N instances of one application exporting S;
#     estates 1x5000 10x500 1x500 10x50 2x50) BENCH_REGISTRY_APP_CONSUMER_ARGS="--migration-step FORCE_APPLICATION" (consumer options of the
#     :application runs) BENCH_REGISTRY_APP_SHAPE=java-3 (or dubbo-go) BENCH_REGISTRY_RATE=1000 (requests/s) BENCH_REGISTRY_CONNECTIONS=64
#     BENCH_REGISTRY_CHURN=100 (changes/s) BENCH_REGISTRY_PHASE=15 BENCH_REGISTRY_ROUNDS=3 BENCH_REGISTRY_WARMUP=5
#     BENCH_REGISTRY_SPARE=50 BENCH_REGISTRY_SIM_LATENCY_MS=1 BENCH_REGISTRY_SEED=1 BENCH_REGISTRY_CONSUMER_ARGS="--upstream-connections 1"
#     BENCH_REGISTRY_PROFILE=10 (s of perf record in one more churn phase, 0 = none) BENCH_REGISTRY_LAYOUT=java-2.7
#     BENCH_REGISTRY_JSON=registry.json (file name under BENCH_OUT)
#     BENCH_REGISTRY_SUBSET=0 (consumer.provider_subset K; a list like 0,64 runs every model once per K)
#     BENCH_REGISTRY_ISOLATE=0 (1: the consumer alone on BENCH_REGISTRY_CONSUMER_CPUS, default the first CPU, one
#     shard, and etcd, registry-churn, loadgen, the simulator on the other CPUs; both: each run shared then isolated)
#   drift: BENCH_DRIFT_STEP=10 (s per schedule step, 6 steps) BENCH_DRIFT_CONNECTIONS=1024 BENCH_DRIFT_WARMUP=5
#     BENCH_DRIFT_BALANCERS=adaptive,weights,oracle BENCH_DRIFT_REPEAT=1 BENCH_DRIFT_JSON=drift.json (benches/drift.py)
#   BENCH_MAX_LOAD=1.5         before each measured run, wait while the 1-minute load average is above this
#   BENCH_LOAD_WAIT=600        ... at most this many seconds (polling every BENCH_LOAD_POLL=30), then run anyway
#   BENCH_KEEP=1               keep the work directories (logs, nginx configs, perf data)
#   BENCH_NO_BUILD=1           skip the cargo build (use target/release as it is)
#   BENCH_OUT=dir BENCH_DOC=file   results and report elsewhere (smoke runs that must not replace the real ones)
set -euo pipefail
cd "$(dirname "$0")/.."

scenario="${1:-}"
case "$scenario" in
  challenge | overhead | generic | faults | drift | codec | routing | registry | memory | all | report) ;;
  *)
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac

child=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
    kill -TERM "$child" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$child" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$child" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM

# Run a command in the background and wait for it, so that Ctrl-C / SIGTERM reach the trap at once
# (the runner stops its own processes; the trap only makes sure the runner itself is gone).
run() {
  "$@" &
  child=$!
  local rc=0
  wait "$child" || rc=$?
  child=""
  return "$rc"
}

need=()
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [ "$scenario" = challenge ] || [ "$scenario" = faults ] || [ "$scenario" = registry ] \
  || [ "$scenario" = drift ] || [ "$scenario" = memory ] || [ "$scenario" = all ]; then
  command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
  command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
fi
if [ "$scenario" = challenge ] || [ "$scenario" = all ]; then
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
fi
if [ "$scenario" = overhead ] || [ "$scenario" = all ]; then
  command -v nginx >/dev/null 2>&1 || need+=(nginx)
fi
if [ "${#need[@]}" -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "bench: installing ${need[*]} (Debian packages)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # The Debian nginx package starts a system nginx on port 80; the benchmark runs its own.
fi

# BENCH_OUT: where the JSON goes (default target/bench); BENCH_DOC: the report (default docs/benchmarks.md).
export BENCH_OUT="${BENCH_OUT:-$PWD/target/bench}"
mkdir -p "$BENCH_OUT"
if [ "$scenario" != report ] && [ "$scenario" != codec ] && [ "$scenario" != routing ] \
  && [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
  echo "bench: cargo build --release -p mesh-agent -p mesh-testkit --bins" >&2
  run cargo build --release -p mesh-agent -p mesh-testkit --bins
  # What the binaries were built from (HEAD may move while the scenarios run; a no-op build keeps older files).
  python3 - <<'EOF'
import json, subprocess, time
git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout
dirty = [l[3:] for l in git("status", "--porcelain", "--", "crates", "Cargo.toml", "Cargo.lock").splitlines() if len(l) > 3]
import os
built = os.path.getmtime("target/release/mesh-agent")
info = {"commit": git("rev-parse", "--short", "HEAD").strip(), "uncommitted_changes": dirty,
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "binaries_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(built))}
open(os.path.join(os.environ["BENCH_OUT"], "build.json"), "w").write(json.dumps(info, indent=1) + "\n")
EOF
fi

# A micro-benchmark under the same load gate as the runs: wait for a quiet box, run it, record the gate and
# the machine next to its JSON ($BENCH_OUT/NAME_meta.json).
micro() {
  local name=$1 crate=$2 bench=$3
  if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "bench: building the $name bench (fat LTO)" >&2
    run cargo bench -p "$crate" --bench "$bench" --no-run
  fi
  local gate
  gate=$(python3 benches/run.py wait-load)
  echo "bench: cargo bench -p $crate --bench $bench" >&2
  # The codec bench always writes target/bench/codec.json; the routing bench writes $MESH_BENCH_OUT.
  MESH_BENCH_OUT="$BENCH_OUT/$name.json" run cargo bench -p "$crate" --bench "$bench"
  if [ ! "$BENCH_OUT/$name.json" -ef "target/bench/$name.json" ] && [ "$name" = codec ]; then
    cp target/bench/codec.json "$BENCH_OUT/codec.json"
  fi
  python3 - "$gate" "$name" "cargo bench -p $crate --bench $bench" <<'EOF'
import json, subprocess, sys, time
gate = json.loads(sys.argv[1])
machine = json.loads(subprocess.run([sys.executable, "benches/run.py", "machine"], capture_output=True,
                                    text=True, check=True).stdout)
gate["loadavg_1m_after"] = float(open("/proc/loadavg").read().split()[0])
meta = {"command": sys.argv[3], "load": gate, "machine": machine}
import os
open(os.path.join(os.environ["BENCH_OUT"], f"{sys.argv[2]}_meta.json"), "w").write(json.dumps(meta, indent=1) + "\n")
EOF
}

codec() { micro codec mesh-dubbo codec; }
generic_json() { micro generic_json mesh-testkit generic_json; }
routing() { micro routing mesh-balance routing; }

case "$scenario" in
  challenge) run python3 benches/run.py challenge ;;
  overhead) run python3 benches/run.py overhead ;;
  generic)
    run python3 benches/run.py generic
    generic_json
    ;;
  faults) run python3 benches/run.py faults ;;
  drift) run python3 benches/run.py drift ;;
  registry)
    # One listener per provider instance in the simulator, one pool per instance in the consumer.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    run python3 benches/run.py registry
    ;;
  memory)
    # 10,000 connections: as many descriptors in the consumer agent and in loadgen (both inherit this).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    run python3 benches/run.py memory
    ;;
  codec) codec ;;
  routing) routing ;;
  all)
    run python3 benches/run.py challenge
    run python3 benches/run.py overhead
    run python3 benches/run.py faults
    run python3 benches/run.py drift
    codec
    routing
    ;;
  report) ;;
esac
run python3 benches/report.py
