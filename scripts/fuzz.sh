#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (the decoders of outside bytes: mesh frames and the Raft
# log, stored records, DNS queries, shopper tokens, config files) for SECONDS each (default
# 60), with cargo-fuzz on the nightly toolchain, from the committed corpus in fuzz/corpus.
# Installs cargo-fuzz and the nightly toolchain if missing.
#
#   scripts/fuzz.sh [SECONDS]
#
# New inputs that reach new code are written to fuzz/corpus/<target>/ (commit the useful ones;
# `cargo +nightly fuzz cmin <target>` trims a corpus). FUZZ_SCRATCH=1 writes them to a
# temporary directory instead (CI). FUZZ_SANITIZER picks the sanitizer (default address;
# `none` builds faster: the project's crates forbid unsafe code). A crash stops the run, with
# its input in fuzz/artifacts/<target>/ to replay: cargo +nightly fuzz run <target> <file>.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
sanitizer=${FUZZ_SANITIZER:-address}
if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
cargo +nightly fuzz build -O -s "$sanitizer"
scratch=""
if [ -n "${FUZZ_SCRATCH:-}" ]; then
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
fi
for target in $(cargo +nightly fuzz list); do
    dirs=("corpus/$target")
    if [ -n "$scratch" ]; then
        mkdir -p "$scratch/$target"
        dirs=("$scratch/$target" "corpus/$target")
    fi
    echo "fuzzing $target for ${secs}s"
    cargo +nightly fuzz run -O -s "$sanitizer" "$target" "${dirs[@]}" -- \
        -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -timeout=10 \
        -print_final_stats=1 2>&1 | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss_mb|==[0-9]+==|thread .* panicked|SUMMARY|Done )' || true
    if [ "${PIPESTATUS[0]}" -ne 0 ]; then
        echo "fuzz target $target failed: see fuzz/artifacts/$target/" >&2
        exit 1
    fi
done
echo "fuzzing done: every target ran ${secs}s without a crash"
