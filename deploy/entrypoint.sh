#!/usr/bin/env bash
# Container entrypoint: picks the agent's role and its per-core config file.
#
#   entrypoint.sh consumer | provider-small | provider-medium | provider-large [extra mesh-agent flags]
#
# Environment:
#   MESH_CONFIG_DIR   where the TOML files are (default /etc/mesh-agent)
#   MESH_CORES_PROFILE  "2core" or "8core" consumer profile (default: 8core when nproc >= 8, else 2core)
#   MESH_ETCD, MESH_LISTEN, MESH_ADVERTISE, MESH_DUBBO, ...  override any config key (see `mesh-agent --help`)
#   MESH_WITH_SIM=1   also start the provider simulator for provider-* roles (latency/threads/knee from
#                     SIM_LATENCY_MS, SIM_THREADS, SIM_KNEE; the knee defaults to 100/200/300 by size)
set -euo pipefail

role="${1:-consumer}"
[ $# -gt 0 ] && shift
dir="${MESH_CONFIG_DIR:-/etc/mesh-agent}"
bin="${MESH_AGENT_BIN:-mesh-agent}"

# glommio locks io_uring memory per shard: raise the soft limit as far as the container allows.
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

profile="${MESH_CORES_PROFILE:-}"
if [ -z "$profile" ]; then
  if [ "$(nproc)" -ge 8 ]; then profile=8core; else profile=2core; fi
fi

sim_pid=""
cleanup() { [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null || true; }
trap cleanup EXIT

case "$role" in
  consumer)
    exec "$bin" consumer --config "$dir/consumer-$profile.toml" "$@"
    ;;
  provider-small|provider-medium|provider-large)
    size="${role#provider-}"
    if [ "${MESH_WITH_SIM:-0}" = "1" ]; then
      case "$size" in small) knee=100 ;; medium) knee=200 ;; large) knee=300 ;; esac
      port="${SIM_PORT:-20880}"
      provider-sim --port "$port" --latency-ms "${SIM_LATENCY_MS:-50}" --threads "${SIM_THREADS:-200}" \
        --knee "${SIM_KNEE:-$knee}" --name "$size" >/dev/null &
      sim_pid=$!
      export MESH_DUBBO="${MESH_DUBBO:-127.0.0.1:$port}"
    fi
    # Not exec: the trap must stop the simulator when the agent exits; forward TERM/INT to the agent
    # so it can deregister and drain.
    "$bin" provider --config "$dir/provider-$size.toml" "$@" &
    agent=$!
    trap 'kill -TERM "$agent" 2>/dev/null' TERM INT
    # `wait` returns early (status > 128) when a trapped signal arrives: wait again until the agent is gone.
    status=0
    while kill -0 "$agent" 2>/dev/null; do
      wait "$agent" && status=0 || status=$?
    done
    exit "$status"
    ;;
  *)
    echo "entrypoint: unknown role '$role' (consumer | provider-small | provider-medium | provider-large)" >&2
    exit 2
    ;;
esac
