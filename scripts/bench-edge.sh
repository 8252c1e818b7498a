#!/usr/bin/env bash
# The edge benchmark (BENCHMARKS.md, "Edge"), with its tools from Debian installed first: wrk,
# the load generator, and nginx, the baseline of product reads (the same bytes as a static file).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v wrk >/dev/null || missing+=(wrk)
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then missing+=(nginx-light); fi
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y "${missing[@]}"
fi
cargo bench -p tradewind --bench edge
