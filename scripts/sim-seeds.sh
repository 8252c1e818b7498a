#!/usr/bin/env bash
# Runs the simulator (simulator/) on fresh seeds for a given wall-clock time, one process per
# core, each on its own range of seeds, and adds the seeds that found a violation to the
# workload's regressions.txt (simulator/tests/WORKLOAD/, which every later run replays).
#
#   scripts/sim-seeds.sh MINUTES [FIRST_SEED] [WORKLOAD...]
#
# WORKLOAD is `registers` (registers and a counter, checked linearizable) or `orders` (the
# core's commerce, checked against I1 to I3); by default both, the cores shared between them.
# Each seed simulates 60 s of a group (SIM_SECONDS changes that). Replay a seed with its
# history:
#   SIM_SEED=n cargo test -p simulator --test WORKLOAD -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:?usage: scripts/sim-seeds.sh MINUTES [FIRST_SEED] [WORKLOAD...]}
first=${2:-1000}
shift $(($# < 2 ? $# : 2))
workloads=("${@:-registers}")
[ $# -gt 0 ] || workloads=(registers orders)
jobs=$(nproc)
# One range of a million seeds per job: the ranges never meet within any run's time.
span=1000000
for w in "${workloads[@]}"; do
    cargo test --release -p simulator --test "$w" --no-run
done
out=$(mktemp -d)
for j in $(seq 0 $((jobs - 1))); do
    w=${workloads[$((j % ${#workloads[@]}))]}
    SIM_FIRST_SEED=$((first + j * span)) SIM_SEEDS=$span SIM_FOR_SECS=$((minutes * 60)) \
        SIM_FAILED_FILE="$out/failed.$w.$j" \
        cargo test -q --release -p simulator --test "$w" -- --nocapture seeded \
        >"$out/run.$w.$j" 2>&1 &
done
status=0
for pid in $(jobs -p); do wait "$pid" || status=$?; done
failing=0
for w in "${workloads[@]}"; do
    ls "$out"/run."$w".* >/dev/null 2>&1 || continue
    runs=$(cat "$out"/run."$w".* | grep -c '^seed [0-9]*: ' || true)
    simulated=$(cat "$out"/run."$w".* | awk '/^[0-9]+ seeds, [0-9]+ simulated seconds/ { s += $3 } END { print s + 0 }')
    echo "$w: $runs seeds, ${simulated:-0} simulated seconds, in $minutes minutes (of $jobs cores)"
    failed=$(cat "$out"/failed."$w".* 2>/dev/null | sort -n | uniq)
    if [ -n "$failed" ]; then
        failing=1
        echo "$w: seeds that found a violation (added to simulator/tests/$w/regressions.txt):"
        for s in $failed; do
            echo "  $s"
            echo "$s # found by scripts/sim-seeds.sh on $(date -u +%F)" >>"simulator/tests/$w/regressions.txt"
        done
        grep -h -A3 'FAILED:' "$out"/run."$w".* | head -40
    fi
done
[ "$failing" -eq 0 ] || exit 1
[ "$status" -eq 0 ] || { tail -20 "$out"/run.*; exit "$status"; }
