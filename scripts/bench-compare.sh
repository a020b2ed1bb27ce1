#!/usr/bin/env bash
# Before/after on one box: the same scenarios run on a base revision and on the working tree, interleaved
# (base, this, base, this, ...), so that the noise of a shared machine falls on both alike.
#
#   bash scripts/bench-compare.sh REV [ROUNDS]      # default 2 rounds of: overhead, challenge
#
# The base is checked out as a git worktree in target/bench-base (release build there); results go to
# target/bench/compare/{before,after}-N/{overhead,challenge}.json and their logs. Knobs as in bench.sh;
# the defaults here are the short ones used for the issue 10 comparison (docs/benchmarks.md).
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: bash scripts/bench-compare.sh REV [ROUNDS]}"
rounds="${2:-2}"
here=$(pwd)
base="$here/target/bench-base"
out="$here/target/bench/compare"
if [ -d "$base" ]; then
  git -C "$base" checkout -q --detach "$rev"
else
  git worktree add -q --detach "$base" "$rev"
fi
# The base's node peers are not needed: the overhead and challenge scenarios use the testkit only.
(cd "$base" && cargo build --release --workspace --bins --quiet)
cargo build --release --workspace --bins --quiet
export BENCH_NO_BUILD=1
export BENCH_MAX_LOAD="${BENCH_MAX_LOAD:-100}" BENCH_RATES="${BENCH_RATES:-1000,5000}" \
  BENCH_OVERHEAD_REPEAT="${BENCH_OVERHEAD_REPEAT:-1}" BENCH_OVERHEAD_DURATION="${BENCH_OVERHEAD_DURATION:-10}" \
  BENCH_OVERHEAD_WARMUP="${BENCH_OVERHEAD_WARMUP:-2}" BENCH_PROFILE="${BENCH_PROFILE:-0}" \
  BENCH_ONE_CONNECTION="${BENCH_ONE_CONNECTION:-0}" BENCH_DURATION="${BENCH_DURATION:-10}" \
  BENCH_WARMUP="${BENCH_WARMUP:-3}" BENCH_CONNECTIONS="${BENCH_CONNECTIONS:-256,1024}" \
  BENCH_TOOLS="${BENCH_TOOLS:-loadgen}" BENCH_BALANCERS="${BENCH_BALANCERS:-adaptive}" \
  BENCH_REFERENCE="${BENCH_REFERENCE:-0}"
for round in $(seq "$rounds"); do
  for side in before after; do
    dir="$here"
    [ "$side" = before ] && dir="$base"
    dest="$out/$side-$round"
    mkdir -p "$dest"
    for scenario in overhead challenge; do
      echo "[$(date +%T)] $side (round $round): $scenario"
      (cd "$dir" && BENCH_OUT="$dest" BENCH_DOC="$dest/report.md" bash scripts/bench.sh "$scenario" >"$dest/$scenario.log" 2>&1)
    done
  done
done
echo "results in $out"
