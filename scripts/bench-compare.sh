#!/usr/bin/env bash
# Before and after, in the same run: one benchmark of this tree and of an earlier commit, run
# alternately (base, this, base, this, ...), each run's output kept, with the peak resident
# memory of the largest process it ran (the benchmark or one of the parts it started, whichever
# was larger). The base is built in a worktree of its own with its own target directory.
#
#   scripts/bench-compare.sh BASE_COMMIT BENCH [ROUNDS]
#     BENCH: cluster, edge (wrk and nginx from scripts/bench-edge.sh) or apply
#     ROUNDS: runs of each side, 3 if left out
#   BASE_DIR, BASE_TARGET: an existing worktree of BASE_COMMIT and its target directory
#   Output: target/bench-compare/<bench>-<time>/{base,this}-N.txt and summary.txt
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
base=${1:?usage: scripts/bench-compare.sh BASE_COMMIT BENCH [ROUNDS]}
bench=${2:?usage: scripts/bench-compare.sh BASE_COMMIT BENCH [ROUNDS]}
rounds=${3:-3}
case "$bench" in
    cluster | edge) package=tradewind ;;
    apply) package=core-region ;;
    *) echo "unknown benchmark $bench (cluster, edge, apply)" >&2; exit 2 ;;
esac
base_dir=${BASE_DIR:-$root/target/bench-compare/base-$base}
base_target=${BASE_TARGET:-$root/target/bench-compare/base-$base-target}
if [ ! -d "$base_dir" ]; then
    git -C "$root" worktree add --detach "$base_dir" "$base"
fi

# The path of the benchmark's executable, built if it is not yet.
executable() {
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo bench -p "$package" --bench "$bench" --no-run \
        --message-format=json 2>/dev/null) | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == sys.argv[1] \
            and "bench" in m["target"]["kind"] and m.get("executable"):
        print(m["executable"])
' "$bench"
}
this_exe=$(executable "$root" "${CARGO_TARGET_DIR:-$root/target}")
base_exe=$(executable "$base_dir" "$base_target")
out=$root/target/bench-compare/$bench-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
echo "base $base: $base_exe"
echo "this $(git -C "$root" rev-parse --short HEAD): $this_exe"
echo "output: $out"

# Runs the benchmark from its package's directory, as cargo bench does; prints the peak RSS.
run() {
    local dir=$1 exe=$2 log=$3
    (cd "$dir/$( [ "$package" = tradewind ] && echo tradewind || echo core-region)" &&
        python3 -c '
import resource, subprocess, sys
with open(sys.argv[1], "w") as log:
    code = subprocess.run(sys.argv[2:], stdout=log).returncode
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(f"peak resident memory of the largest process: {peak_kib / 1024:.0f} MiB", file=open(sys.argv[1], "a"))
sys.exit(code)
' "$log" "$exe" --bench)
}

for r in $(seq 1 "$rounds"); do
    echo "round $r: base"
    run "$base_dir" "$base_exe" "$out/base-$r.txt"
    echo "round $r: this"
    run "$root" "$this_exe" "$out/this-$r.txt"
done
for f in "$out"/base-*.txt "$out"/this-*.txt; do
    echo "== $(basename "$f" .txt)"
    cat "$f"
done | tee "$out/summary.txt"
