#!/usr/bin/env bash
# The http-tests cache-tests suite (npm: http-cache-tests) against the mesh's cache, nginx's
# proxy_cache and Varnish, in one run, each in front of the suite's own origin, all on
# 127.0.0.1 (BENCHMARKS.md, "HTTP caching conformance"). Installs what a fresh machine lacks:
# Node.js, npm, nginx and Varnish from Debian, the suite from npm.
#
#   scripts/cache-tests.sh                # all three, the table and the required tests we fail
#   scripts/cache-tests.sh --floor 250    # and exit 1 under the floor, or behind either peer
#   PROFILE=dev scripts/cache-tests.sh    # the debug build (CI: the one its tests just built)
#
# The peers are configured as the suite's own Docker images configure them. Results (JSON, one
# per cache) are left in target/cache-tests/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
FLOOR=()
if [ "${1:-}" = "--floor" ]; then FLOOR=(--floor "$2"); fi

source scripts/cdn-peers.sh
install_missing node:nodejs npm:npm nginx:nginx varnishd:varnish
(cd scripts/cache-tests && npm install --no-audit --no-fund --loglevel=error)
if [ "${PROFILE:-release}" = "dev" ]; then
    cargo build -p tradewind
    BIN=$ROOT/target/debug/tradewind
else
    cargo build --release -p tradewind
    BIN=$ROOT/target/release/tradewind
fi
SUITE=$ROOT/scripts/cache-tests/node_modules/http-cache-tests
OUT=$ROOT/target/cache-tests
mkdir -p "$OUT"

ORIGIN=$(free_port)
(cd "$SUITE" && exec env npm_config_protocol=http npm_config_port="$ORIGIN" \
    npm_config_pidfile="$WORK/origin.pid" \
    node --import "$ROOT/scripts/cache-tests/loopback.mjs" server/server.mjs) >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_port "$ORIGIN" "the suite's origin"

run_suite() { # name port
    echo "--- cache-tests against $1 (127.0.0.1:$2)"
    (cd "$SUITE" && env npm_config_base="http://127.0.0.1:$2" npm_package_config_id="" \
        node --no-warnings cli.mjs) >"$OUT/$1.json"
}

start_cdn tradewind "$ORIGIN"
run_suite tradewind "$CDN_PORT"

NGINX=$(free_port)
mkdir -p "$WORK/nginx-cache" && chmod 777 "$WORK/nginx-cache"
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx-cache/body;
    proxy_temp_path $WORK/nginx-cache/tmp;
    proxy_cache_path $WORK/nginx-cache/store levels=1:2 keys_zone=my-cache:8m max_size=1000m inactive=600m;
    server {
        listen 127.0.0.1:$NGINX;
        location / {
            proxy_pass http://127.0.0.1:$ORIGIN;
            proxy_cache my-cache;
            proxy_cache_revalidate on;
        }
    }
}
CONF
nginx -p "$WORK" -c "$WORK/nginx.conf"
wait_port "$NGINX" nginx
run_suite nginx "$NGINX"

VARNISH=$(free_port)
cat >"$WORK/default.vcl" <<VCL
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$ORIGIN"; }
VCL
varnishd -j unix -a "127.0.0.1:$VARNISH" -n "$WORK/varnish" -P "$WORK/varnish.pid" \
    -f "$WORK/default.vcl" -p default_ttl=0 -p default_grace=0 -p default_keep=3600 -s malloc,64M
wait_port "$VARNISH" varnish
run_suite varnish "$VARNISH"

echo "--- results ($(nginx -v 2>&1 | sed 's/.*: //'), $(varnishd -V 2>&1 | head -1 | sed 's/ (.*revision.*)//'), http-cache-tests $(node -p 'require(process.argv[1]).version' "$SUITE/package.json"))"
(cd scripts/cache-tests && node tally.mjs tradewind="$OUT/tradewind.json" nginx="$OUT/nginx.json" varnish="$OUT/varnish.json" "${FLOOR[@]}")
