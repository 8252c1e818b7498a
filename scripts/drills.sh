#!/usr/bin/env bash
# Every drill of DRILLS.md, on a fresh release demo: scripts/drills.sh [none|realistic] [runs] [drill...]
# (defaults: none, 3 runs, every drill). Prints each drill's summary; the reports, histories and
# timelines stay in the demo's state directory under drills/.
set -euo pipefail
cd "$(dirname "$0")/.."
wan="${1:-none}"
runs="${2:-3}"
shift $(( $# > 2 ? 2 : $# ))
drills=("$@")
if [ ${#drills[@]} -eq 0 ]; then
    drills=(region-outage partition leader-kill edge-crash slow-link flash-sale)
fi
cargo build --release -p tradewind
bin=target/release/tradewind
state="$(mktemp -d)/demo"
base=$(( 40000 + RANDOM % 200 * 100 ))
log="$state.log"
"$bin" demo --wan "$wan" --state-dir "$state" --base-port "$base" >"$log" 2>&1 &
demo=$!
trap 'kill -TERM $demo 2>/dev/null; wait $demo 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
    grep -q "tradewind demo ready" "$log" && break
    kill -0 $demo 2>/dev/null || { cat "$log"; exit 1; }
    sleep 1
done
grep -q "tradewind demo ready" "$log" || { cat "$log"; exit 1; }
echo "demo --wan $wan ready: $state (log $log)"
failed=0
for drill in "${drills[@]}"; do
    for run in $(seq 1 "$runs"); do
        echo "--- $drill, run $run of $runs"
        "$bin" chaos "$drill" --mesh "$state/mesh.json" | grep -v '^fault:\|^heal' || failed=1
    done
done
exit $failed
