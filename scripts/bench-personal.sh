#!/usr/bin/env bash
# What sealing shoppers' personal data costs an order across three regions (BENCHMARKS.md,
# "Personal data"), with wrk, the load generator, installed from Debian first.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y wrk
fi
# The baseline leaves addresses in the clear, which only a build with this feature can.
cargo bench -p tradewind --bench personal --features measure-plaintext
