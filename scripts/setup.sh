#!/usr/bin/env bash
# Installs what building, testing and the demo need, on a fresh Debian 12 machine with a Rust toolchain.
# Idempotent: anything already present is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages:
#   nodejs, npm         run the third-party Dubbo peers (interop and end-to-end tests)
#   protobuf-compiler   protoc, needed to build etcd-client
#   etcd-server         the real etcd the registry and end-to-end tests start on loopback
#   etcd-client         etcdctl, used by tests to revoke leases behind the agent's back
#   python3             the independent Dubbo key decoder (mesh-testkit/scripts/dubbo_key_check.py) and the
#                       benchmark drivers
#   default-jdk-headless the JDK's own URLEncoder and String.hashCode, which the testkit's Java key writer is
#                       checked against (mesh-testkit/tests/java_url_encoding.rs)
#   prometheus          the real Prometheus server and promtool: the admin test scrapes the agents with it
#                       (mesh-agent/tests/prometheus.rs) and checks /metrics with `promtool check metrics`
pkgs=()
command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
command -v protoc >/dev/null 2>&1 || pkgs+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || pkgs+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || pkgs+=(etcd-client)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
command -v java >/dev/null 2>&1 || pkgs+=(default-jdk-headless)
command -v prometheus >/dev/null 2>&1 || pkgs+=(prometheus)
if [ "${#pkgs[@]}" -gt 0 ]; then
  echo "setup: installing ${pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

# Rust components used by scripts/test.sh.
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# npm peers, pinned by package-lock.json (sofa-rpc-node + dubbo-remoting provider, dubbo2.js consumer).
interop=crates/mesh-dubbo/tests/interop
if ! (cd "$interop" && npm ls --depth=0 >/dev/null 2>&1); then
  echo "setup: npm ci in $interop"
  (cd "$interop" && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: ok"
