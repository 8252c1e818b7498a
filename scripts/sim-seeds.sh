#!/usr/bin/env bash
# Runs the replication simulator (replication/tests/sim) on fresh seeds for a given wall-clock
# time, one process per core, each on its own range of seeds, and adds the seeds that found a
# violation to replication/tests/sim/regressions.txt (every later run replays them).
#
#   scripts/sim-seeds.sh MINUTES [FIRST_SEED]
#
# Each seed simulates 60 s of a group (SIM_SECONDS changes that). Replay a seed with its
# history: SIM_SEED=n cargo test -p replication --test sim -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: scripts/sim-seeds.sh MINUTES [FIRST_SEED]}
first=${2:-1000}
jobs=$(nproc)
# One range of a million seeds per job: the ranges never meet within any run's time.
span=1000000
cargo test --release -p replication --test sim --no-run
out=$(mktemp -d)
for j in $(seq 0 $((jobs - 1))); do
    SIM_FIRST_SEED=$((first + j * span)) SIM_SEEDS=$span SIM_FOR_SECS=$((minutes * 60)) \
        SIM_FAILED_FILE="$out/failed.$j" \
        cargo test -q --release -p replication --test sim -- --nocapture seeded \
        >"$out/run.$j" 2>&1 &
done
status=0
for pid in $(jobs -p); do wait "$pid" || status=$?; done
runs=$(cat "$out"/run.* | grep -c '^seed [0-9]*: ' || true)
simulated=$(cat "$out"/run.* | awk '/^[0-9]+ seeds, [0-9]+ simulated seconds/ { s += $3 } END { print s + 0 }')
echo "$runs seeds, ${simulated:-0} simulated seconds, in $minutes minutes on $jobs cores"
failed=$(cat "$out"/failed.* 2>/dev/null | sort -n | uniq)
if [ -n "$failed" ]; then
    echo "seeds that found a violation (added to replication/tests/sim/regressions.txt):"
    for s in $failed; do
        echo "  $s"
        echo "$s # found by scripts/sim-seeds.sh on $(date -u +%F)" >>replication/tests/sim/regressions.txt
    done
    grep -h -A3 'FAILED:' "$out"/run.* | head -40
    exit 1
fi
[ "$status" -eq 0 ] || { tail -20 "$out"/run.*; exit "$status"; }
