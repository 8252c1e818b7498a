#!/usr/bin/env bash
# The edge benchmark (BENCHMARKS.md, "Edge"), with nginx from Debian installed first: the
# baseline of product reads is nginx serving the same bytes as a static file.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y nginx-light || $SUDO apt-get install -y nginx
fi
cargo bench -p tradewind --bench edge
