#!/usr/bin/env bash
# The main job, for now: build the agent and use its Dubbo decoder on traffic captured from third-party
# Dubbo peers (sofa-rpc-node, dubbo2.js), then exchange live frames with the sofa-rpc-node provider.
# (The full mesh demo -- etcd, provider sims, agents under load -- arrives with the agent pair.)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet -p mesh-agent
bin=target/release/mesh-agent
for f in crates/mesh-dubbo/tests/vectors/frames/*.hex; do
  echo "== $(basename "$f" .hex)"
  "$bin" decode < "$f"
done
echo "== live interop with sofa-rpc-node (provider) and dubbo2.js (consumer)"
cargo test --release --quiet -p mesh-dubbo --test interop
