#!/usr/bin/env bash
# The project's test command (README, .ci/run): format, lints, then every test of the workspace,
# including the interop tests against the third-party Node.js Dubbo peers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
# The end-to-end tests start the testkit's binaries (provider-sim, loadgen) and the agent: build them first.
cargo build --workspace --bins --quiet
# --no-fail-fast: one failing test binary must not hide the results of the ones after it.
cargo test --workspace --no-fail-fast
