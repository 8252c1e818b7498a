#!/usr/bin/env bash
# Cache hits of 1, 10 and 100 KiB objects: the mesh's cache beside nginx's proxy_cache and
# Varnish, in front of the same origin, in one run (BENCHMARKS.md, "CDN cache: hits"). Installs
# wrk, nginx and Varnish from Debian when missing, builds the release binary, then for each
# round, size and cache (taking turns) runs wrk with 64 connections and reports the medians.
# Then hits from the disk tier: 2,000 objects of 10 KiB asked at random of a cache whose
# memory holds a tenth of them, beside the same cache all in memory, nginx (whose proxy_cache
# is on disk) and Varnish; and the disk tier's start over those files.
#
#   scripts/bench-cdn.sh [rounds, default 3] [seconds per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-5}

source scripts/cdn-peers.sh
install_missing wrk:wrk nginx:nginx varnishd:varnish curl:curl
cargo build --release -p tradewind
BIN=$ROOT/target/release/tradewind

# The origin: nginx serving the objects, each with validators and a day's lifetime.
mkdir -p "$WORK/www"
for kib in 1 10 100; do head -c $((kib * 1024)) /dev/urandom >"$WORK/www/$kib.bin"; done
ORIGIN=$(free_port)
cat >"$WORK/origin.conf" <<CONF
worker_processes 1;
pid $WORK/origin.pid;
error_log $WORK/origin-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$ORIGIN;
        root $WORK/www;
        add_header Cache-Control "max-age=86400";
    }
}
CONF
nginx -p "$WORK" -c "$WORK/origin.conf"
wait_port "$ORIGIN" "the origin"

# nginx's proxy_cache, as its docs set it up, with a worker per core.
NGINX=$(free_port)
mkdir -p "$WORK/nginx-cache" && chmod 777 "$WORK/nginx-cache"
cat >"$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
    access_log off;
    proxy_cache_path $WORK/nginx-cache/store levels=1:2 keys_zone=bench:16m max_size=1g inactive=1d;
    proxy_temp_path $WORK/nginx-cache/tmp;
    server {
        listen 127.0.0.1:$NGINX;
        keepalive_requests 1000000;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN;
            proxy_cache bench;
            proxy_cache_revalidate on;
        }
    }
}
CONF
nginx -p "$WORK" -c "$WORK/nginx.conf"
wait_port "$NGINX" nginx

# Varnish, its defaults, 256 MiB of memory storage.
VARNISH=$(free_port)
cat >"$WORK/default.vcl" <<VCL
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$ORIGIN"; }
VCL
varnishd -j unix -a "127.0.0.1:$VARNISH" -n "$WORK/varnish" -P "$WORK/varnish.pid" \
    -f "$WORK/default.vcl" -s malloc,256M
wait_port "$VARNISH" varnish

start_cdn bench "$ORIGIN"
TRADEWIND=$CDN_PORT

declare -A PORT=([tradewind]=$TRADEWIND [nginx]=$NGINX [varnish]=$VARNISH)
CACHES=(tradewind nginx varnish)

# Warm: every object through every cache, and the second fetch must be a hit.
for c in "${CACHES[@]}"; do
    for kib in 1 10 100; do
        url="http://127.0.0.1:${PORT[$c]}/$kib.bin"
        curl -s -o /dev/null "$url"
        curl -s -o /dev/null "$url"
        hdr=$(curl -s -D - -o /dev/null "$url" | tr -d '\r' | grep -i '^age:\|^x-cache\|^cache-status\|^x-varnish' | tr '\n' ' ' || true)
        echo "warm $c $kib KiB: $hdr"
    done
done

ms() { # a wrk latency (812.00us, 1.20ms, 2.01s) in ms
    awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
# wrk with 64 connections for a run's time against URL $1 (more wrk arguments after it):
# "requests/s p99-ms errors".
load() {
    local out
    out=$(wrk -t2 -c64 -d"${SECONDS_PER_RUN}s" --latency "${@:2}" "$1")
    echo "$(echo "$out" | awk '/^Requests\/sec/ { print $2 }')" \
        "$(ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")" \
        "$(echo "$out" | awk '/Non-2xx|Socket errors/ { print }' | tr '\n' ' ')"
}
# The median of column $2 over the lines of file $1 that begin with the words $3.
median() {
    awk -v col="$2" -v m="$3 " 'index($0, m) == 1 { print $col }' "$1" | sort -n |
        awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'
}
RESULTS=$WORK/results.txt
: >"$RESULTS"
for round in $(seq 1 "$ROUNDS"); do
    for kib in 1 10 100; do
        # Taking turns, each cache first in a different round.
        order=("${CACHES[@]:$(((round - 1) % 3))}" "${CACHES[@]:0:$(((round - 1) % 3))}")
        for c in "${order[@]}"; do
            read -r rps p99 errs < <(load "http://127.0.0.1:${PORT[$c]}/$kib.bin")
            echo "$c $kib $rps $p99" >>"$RESULTS"
            echo "round $round: $c ${kib} KiB: $rps requests/s, p99 $p99 ms $errs"
        done
    done
done

rss() { awk '/^VmHWM|^VmRSS/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$1/status"; }
sum_rss() { # the memory of a process and its children (nginx's and Varnish's workers)
    local total=0
    for p in "$@"; do total=$((total + $(awk '/^VmRSS/ { print $2 }' "/proc/$p/status" 2>/dev/null || echo 0))); done
    echo "$((total / 1024)) MiB"
}
echo
echo "medians of $ROUNDS rounds of ${SECONDS_PER_RUN} s, wrk -t2 -c64, $(nproc) cores:"
for kib in 1 10 100; do
    line="  ${kib} KiB:"
    best_peer=0
    for c in "${CACHES[@]}"; do
        med=$(median "$RESULTS" 3 "$c $kib")
        p99=$(median "$RESULTS" 4 "$c $kib")
        line="$line $c $med/s (p99 $p99 ms);"
        if [ "$c" = tradewind ]; then ours=$med; elif awk -v a="$med" -v b="$best_peer" 'BEGIN { exit !(a > b) }'; then best_peer=$med; fi
    done
    ratio=$(awk -v a="$ours" -v b="$best_peer" 'BEGIN { printf "%.2f", a / b }')
    echo "$line ratio to the better peer $ratio"
done
echo "memory: tradewind $(rss "$CDN_PID"); nginx (master and workers) $(sum_rss "$(cat "$WORK/nginx.pid")" $(pgrep -P "$(cat "$WORK/nginx.pid")")); varnish (manager and child) $(sum_rss "$(cat "$WORK/varnish.pid")" $(pgrep -P "$(cat "$WORK/varnish.pid")"))"

# The disk tier: 2,000 objects of 10 KiB (20 MiB), asked at random. The disk cache's memory
# holds 2 MiB (a tenth); the rest is read from its files.
mkdir -p "$WORK/www/d"
for i in $(seq 0 1999); do head -c 10240 /dev/urandom >"$WORK/www/d/$i.bin"; done
DISK_TABLES="[memory]
bytes_max = 2097152
object_bytes_max = 524288
[disk]
dir = \"$WORK/cdn-disk\"
bytes_max = 1073741824"
start_cdn bench-disk "$ORIGIN" "$(printf '%b' "$DISK_TABLES")"
DISK=$CDN_PORT DISK_ADMIN=$CDN_ADMIN DISK_PID=$CDN_PID
PORT[tradewind-disk]=$DISK
DCACHES=(tradewind-disk tradewind nginx varnish)
for c in "${DCACHES[@]}"; do
    args=()
    for i in $(seq 0 1999); do args+=(-o /dev/null "http://127.0.0.1:${PORT[$c]}/d/$i.bin"); done
    curl -s "${args[@]}"
done
disk_metric() { curl -s "http://127.0.0.1:$DISK_ADMIN/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
# Each file is synced before it is named: give the writer up to a minute.
for _ in $(seq 1 600); do [ "$(disk_metric cdn_disk_objects)" = 2000 ] && break; sleep 0.1; done
echo "disk tier: $(disk_metric cdn_disk_objects) objects, $(disk_metric cdn_disk_bytes) bytes written"
cat >"$WORK/random.lua" <<'LUA'
math.randomseed(42)
request = function() return wrk.format(nil, "/d/" .. math.random(0, 1999) .. ".bin") end
LUA
: >"$WORK/disk-results.txt"
reads_before=$(disk_metric cdn_disk_reads_total)
for round in $(seq 1 "$ROUNDS"); do
    order=("${DCACHES[@]:$(((round - 1) % 4))}" "${DCACHES[@]:0:$(((round - 1) % 4))}")
    for c in "${order[@]}"; do
        read -r rps p99 errs < <(load "http://127.0.0.1:${PORT[$c]}" -s "$WORK/random.lua")
        echo "$c $rps $p99" >>"$WORK/disk-results.txt"
        echo "round $round: $c random 10 KiB of 2,000: $rps requests/s, p99 $p99 ms $errs"
    done
done
echo
echo "disk tier, medians of $ROUNDS rounds (2,000 objects of 10 KiB at random; the disk cache's memory holds 2 MiB):"
for c in "${DCACHES[@]}"; do
    med=$(median "$WORK/disk-results.txt" 2 "$c")
    p99=$(median "$WORK/disk-results.txt" 3 "$c")
    echo "  $c: $med/s (p99 $p99 ms)"
done
echo "  reads from disk during the runs: $(($(disk_metric cdn_disk_reads_total) - reads_before)); memory: tradewind-disk $(rss "$DISK_PID")"
# A restart: the files indexed again before the listener opens. (Keys are by host, and the
# restarted cache listens on another port: the same Host both times.)
H='Host: assets.bench'
curl -s -o /dev/null -H "$H" "http://127.0.0.1:$DISK/d/7.bin"
for _ in $(seq 1 600); do [ "$(disk_metric cdn_disk_objects)" = 2001 ] && break; sleep 0.1; done
kill "$DISK_PID"
wait "$DISK_PID" 2>/dev/null || true
RUST_LOG=info start_cdn bench-disk "$ORIGIN" "$(printf '%b' "$DISK_TABLES")"
echo "  restart: $(grep -o 'disk tier indexed.*' "$WORK/bench-disk.log" | sed 's/\x1b\[[0-9;]*m//g')"
hit=$(curl -s -D - -o /dev/null -H "$H" "http://127.0.0.1:$CDN_PORT/d/7.bin" | tr -d '\r' | grep -i '^cache-status')
echo "  after the restart: $hit"
