#!/usr/bin/env bash
# The main job: a whole mesh on this machine, under load.
#
#   etcd  <-- 3 provider agents (weights 100/200/300 = small/medium/large) --> 3 provider simulators
#    ^                                                                       (50 ms, 200 threads,
#    |                                                                        knees 100/200/300)
#   consumer agent (HTTP :DEMO_PORT) <-- load generator: 256 connections, 20 s, every answer checked
#
# Everything runs on 127.0.0.1 (random free ports) and is stopped on exit, also on Ctrl-C.
# Knobs: DEMO_CONNECTIONS (256), DEMO_DURATION (20s), DEMO_PORT (20000), DEMO_DEBUG=1 (keep logs).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

bash scripts/setup.sh
echo "== building (release)"
cargo build --release --quiet -p mesh-agent -p mesh-testkit --bins
bin="$root/target/release"

work=$(mktemp -d /tmp/mesh-demo.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  if [ "${DEMO_DEBUG:-0}" = "1" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'echo; echo "interrupted"; exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # file prefix seconds
  for _ in $(seq $(( $3 * 10 ))); do
    grep -m1 "^$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; return 1
}
wait_port() { # port seconds
  for _ in $(seq $(( $2 * 10 ))); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "port $1 did not open" >&2; return 1
}

ncores=$(nproc)
core() { echo $(( $1 % ncores )); }

echo "== etcd"
ec=$(free_port); ep=$(free_port)
etcd --name demo --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$ec" --advertise-client-urls "http://127.0.0.1:$ec" \
  --listen-peer-urls "http://127.0.0.1:$ep" --initial-advertise-peer-urls "http://127.0.0.1:$ep" \
  --initial-cluster "demo=http://127.0.0.1:$ep" >"$work/etcd.log" 2>&1 &
pids+=($!)
wait_port "$ec" 20
etcd_url="http://127.0.0.1:$ec"

echo "== provider simulators and provider agents"
i=0
sim_pids=()
provider_admins=()
for spec in small:100:100 medium:200:200 large:300:300; do
  IFS=: read -r size knee weight <<<"$spec"
  "$bin/provider-sim" --port 0 --latency-ms 50 --threads 200 --knee "$knee" --name "$size" --workers 1 \
    >"$work/sim-$size.out" 2>"$work/sim-$size.log" &
  pids+=($!); sim_pids+=($!)
  sim_port=$(wait_line "$work/sim-$size.out" LISTENING 10 | cut -d' ' -f2)
  agent_port=$(free_port)
  admin_port=$(free_port)
  provider_admins+=("$size:$admin_port")
  "$bin/mesh-agent" provider --listen "127.0.0.1:$agent_port" --dubbo "127.0.0.1:$sim_port" \
    --etcd "$etcd_url" --weight "$weight" --max-concurrency 200 --cores "$(core $i)" --shards 1 \
    --admin-listen "127.0.0.1:$admin_port" >"$work/provider-$size.log" 2>&1 &
  pids+=($!)
  wait_port "$agent_port" 10
  echo "   $size: simulator :$sim_port (knee $knee) <- provider agent :$agent_port (weight $weight)"
  i=$((i + 1))
done

echo "== consumer agent"
cport="${DEMO_PORT:-20000}"
cadmin="${DEMO_ADMIN_PORT:-$(free_port)}"
"$bin/mesh-agent" consumer --listen "127.0.0.1:$cport" --etcd "$etcd_url" --admin-listen "127.0.0.1:$cadmin" \
  >"$work/consumer.log" 2>&1 &
pids+=($!)
wait_port "$cport" 10
# Wait until the consumer sees all three providers: a call succeeds once it has a snapshot.
body='interface=com.alibaba.dubbo.performance.demo.provider.IHelloService&method=hash&parameterTypesString=Ljava%2Flang%2FString%3B&parameter=hello'
for _ in $(seq 100); do
  out=$(curl -s -m 2 -d "$body" "http://127.0.0.1:$cport/" || true)
  [ "$out" = "99162322" ] && break
  sleep 0.1
done
echo "   consumer :$cport answers hash(\"hello\") = $out"

conns="${DEMO_CONNECTIONS:-256}"
dur="${DEMO_DURATION:-20s}"
echo "== load: $conns connections for $dur (random strings 0..1024 chars, every answer checked)"
"$bin/loadgen" --target "http://127.0.0.1:$cport/" --connections "$conns" --duration "$dur" --warmup 2s \
  --progress | tee "$work/summary.json"

# A few live figures from the consumer's /metrics (Prometheus text format): `sum NAME [LABEL-FILTER]`.
metric_sum() {
  curl -s -m 2 "http://127.0.0.1:$cadmin/metrics" |
    awk -v name="$1" -v filter="${2:-}" '$1 ~ "^"name"({|$)" && index($1, filter) { s += $2 } END { if (s == int(s)) printf "%d", s; else printf "%.2f", s }'
}
echo "== admin endpoints (Prometheus: scrape /metrics; Grafana: deploy/grafana-mesh-agent.json)"
echo "   consumer agent: http://127.0.0.1:$cadmin/{metrics,ready,live,registry,config}, POST /drain"
for pa in "${provider_admins[@]}"; do
  echo "   provider agent ${pa%%:*}: http://127.0.0.1:${pa##*:}/{metrics,ready,live,registry,config}"
done
echo "   /ready: consumer $(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$cadmin/ready")"
echo "== live figures from the consumer's /metrics"
echo "   calls counted (mesh_requests_total):           $(metric_sum mesh_requests_total)"
echo "   calls not OK (mesh_request_errors_total):      $(metric_sum mesh_request_errors_total)"
echo "   retries (mesh_upstream_retries_total):         $(metric_sum mesh_upstream_retries_total)"
echo "   ejections (mesh_upstream_ejections_total):     $(metric_sum mesh_upstream_ejections_total)"
echo "   registry snapshot version:                     $(metric_sum mesh_registry_snapshot_version)"
echo "   providers listed (mesh_registry_providers):    $(metric_sum mesh_registry_providers)"
echo "   resident memory (process_resident_memory_bytes): $(( $(metric_sum process_resident_memory_bytes) / 1048576 )) MiB"
echo "   CPU (process_cpu_seconds_total):               $(metric_sum process_cpu_seconds_total) s"

echo "== calls served per provider"
for p in "${sim_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
sleep 0.5
for size in small medium large; do
  tail -n1 "$work/sim-$size.out"
done
