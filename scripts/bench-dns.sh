#!/usr/bin/env bash
# The geo-router's DNS against gdnsd 3 with the same geo configuration, side by side, on this
# machine in the same run (BENCHMARKS.md):
#   scripts/bench-dns.sh [rounds] [seconds]          (defaults: 5 rounds of 10 s each)
# A release demo (three regions, an edge each, the router on base+53) and gdnsd on base+63 answer
# `www.shop.tradewind.test A` for clients in 198.51.100.0/24 (EDNS Client Subnet), both checking
# the same edges' /healthz. Each round runs dnsperf against each server in turn (alternating which
# goes first): the saturated rate (100 queries in flight), then latency at a fixed 20,000 queries
# per second (p50 and p99 of every answer); then the saturated rate again with every query
# spelled anew (`-new`: nothing the router's answer cache holds). Prints each round, the CPU
# each server spent per answer, and the medians.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
seconds="${2:-10}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! command -v dnsperf >/dev/null || ! command -v gdnsd >/dev/null || ! command -v dig >/dev/null; then
    $SUDO apt-get update
    $SUDO apt-get install -y dnsperf gdnsd bind9-dnsutils
fi
cargo build --release -p tradewind
bin=target/release/tradewind
work="$(mktemp -d)"
base=$(( 40000 + RANDOM % 200 * 100 ))
router_port=$(( base + 53 ))
gdnsd_port=$(( base + 63 ))
edge_port=$(( base + 111 ))
zone=shop.tradewind.test
pids=()
trap 'for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true' EXIT

# Response-rate limiting off: dnsperf asks from one address, as no real resolver population
# does, and gdnsd has none.
"$bin" demo --state-dir "$work/demo" --base-port "$base" --sample-products 100 --dns-rrl-per-s 0 >"$work/demo.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 120); do
    grep -q "tradewind demo ready" "$work/demo.log" && break
    sleep 1
done
grep -q "tradewind demo ready" "$work/demo.log" || { cat "$work/demo.log"; exit 1; }

# gdnsd: the same zone, the same networks with the same fallback order (the router falls back
# to the nearest region), the same edges checked (gdnsd speaks no TLS to /healthz: it checks
# that each edge takes connections).
mkdir -p "$work/gdnsd/zones"
cat >"$work/gdnsd/config" <<EOF
options => {
  listen => [ 127.0.0.1:$gdnsd_port ]
  run_dir => $work/gdnsd/run
  state_dir => $work/gdnsd/state
  edns_client_subnet => true
}
service_types => {
  edge => { plugin => tcp_connect, port => $edge_port, interval => 2, timeout => 1, up_thresh => 2, ok_thresh => 2, down_thresh => 2 }
}
plugins => {
  geoip => {
    maps => {
      shop => {
        datacenters => [ cn-shanghai, ap-singapore, us-east ]
        nets => {
          192.0.2.0/24    => [ cn-shanghai, ap-singapore, us-east ]
          198.51.100.0/24 => [ ap-singapore, cn-shanghai, us-east ]
          203.0.113.0/24  => [ us-east, cn-shanghai, ap-singapore ]
        }
      }
    }
    resources => {
      storefront => {
        map => shop
        service_types => [ edge ]
        dcmap => { cn-shanghai => 127.0.1.1, ap-singapore => 127.0.2.1, us-east => 127.0.3.1 }
      }
    }
  }
}
EOF
cat >"$work/gdnsd/zones/$zone" <<EOF
\$TTL 10
@       SOA ns1.$zone. hostmaster.$zone. ( 1 3600 600 86400 10 )
@       NS   ns1.$zone.
ns1     A    127.0.0.1
@       10/10 DYNA geoip!storefront
www     10/10 DYNA geoip!storefront
EOF
gdnsd -c "$work/gdnsd" start >"$work/gdnsd.log" 2>&1 &
pids+=($!)

# Both answer the Singapore client with Singapore's edge before anything is measured.
for port in $router_port $gdnsd_port; do
    for _ in $(seq 1 60); do
        got=$(dig @127.0.0.1 -p "$port" "www.$zone" A +subnet=198.51.100.0/24 +short +time=1 +tries=1 2>/dev/null || true)
        [ "$got" = "127.0.2.1" ] && break
        sleep 0.5
    done
    [ "$got" = "127.0.2.1" ] || { echo "port $port answers '$got'"; cat "$work/gdnsd.log"; exit 1; }
done
sleep 5 # gdnsd's first health checks (every 2 s) settle

echo "www.$zone A" >"$work/queries"
# The same question in 200,000 spellings (DNS names are case-insensitive; resolvers randomize
# case too): the same geo answer, but bytes the router's answer cache has not seen, or has
# dropped again (it keeps some tens of thousands per thread), so every answer takes the whole
# path.
awk -v zone="www.$zone" 'BEGIN {
    srand(7)
    for (i = 0; i < 200000; i++) {
        name = ""
        for (j = 1; j <= length(zone); j++) {
            c = substr(zone, j, 1)
            name = name (rand() < 0.5 ? toupper(c) : c)
        }
        print name " A"
    }
}' >"$work/queries-new"
# EDNS Client Subnet (option 8): family 1, source /24, scope 0, 198.51.100.
ecs="8:00011800c63364"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in clock ticks
rate() { # port pid queries-file -> "queries/s cpu_us_per_query" at saturation
    local before after
    before=$(cpu_ticks "$2")
    dnsperf -s 127.0.0.1 -p "$1" -d "$3" -l "$seconds" -c 8 -q 100 -E "$ecs" >"$work/dnsperf.out" 2>&1
    after=$(cpu_ticks "$2")
    awk -v ticks=$(( after - before )) -v hz="$(getconf CLK_TCK)" '
        /Queries completed/ {n = $3}
        /Queries per second/ {q = int($4)}
        END {printf "%d %.2f\n", q, ticks / hz * 1e6 / n}' "$work/dnsperf.out"
}
latency() { # port -> "p50_us p99_us" at 20,000 queries per second
    dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l 5 -c 4 -Q 20000 -E "$ecs" -v 2>/dev/null |
        awk '$1 == ">" && $2 == "NOERROR" {print $NF * 1e6}' | sort -n |
        awk '{v[NR] = $1} END {if (NR == 0) {print "- -"; exit} printf "%d %d\n", v[int(NR * 0.5) + 1], v[int(NR * 0.99) + 1]}'
}
median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); dnsperf $(dnsperf -h 2>&1 | awk '/Version/ {print $2}'), gdnsd $(gdnsd -c "$work/gdnsd" checkconf 2>&1 | grep -o 'gdnsd version [0-9.]*' | head -1 | awk '{print $3}')"
router_pid=$(pgrep -f "tradewind router --config $work/demo/")
gdnsd_pid=$(pgrep -f "gdnsd -c $work/gdnsd")
printf "%-6s %-10s %12s %12s %10s %10s\n" round server "queries/s" "cpu us/query" "p50 us" "p99 us"
: >"$work/results"
for round in $(seq 1 "$rounds"); do
    if [ $(( round % 2 )) -eq 1 ]; then order="router gdnsd"; else order="gdnsd router"; fi
    for server in $order; do
        port=$router_port pid=$router_pid
        [ "$server" = gdnsd ] && port=$gdnsd_port pid=$gdnsd_pid
        read -r qps cpu < <(rate "$port" "$pid" "$work/queries")
        read -r p50 p99 < <(latency "$port")
        printf "%-6s %-10s %12s %12s %10s %10s\n" "$round" "$server" "$qps" "$cpu" "$p50" "$p99"
        echo "$server $qps $p50 $p99 $cpu" >>"$work/results"
    done
    # Every query new to the router's cache: the saturated rate only.
    for server in $order; do
        port=$router_port pid=$router_pid
        [ "$server" = gdnsd ] && port=$gdnsd_port pid=$gdnsd_pid
        read -r qps cpu < <(rate "$port" "$pid" "$work/queries-new")
        printf "%-6s %-10s %12s %12s %10s %10s\n" "$round" "$server-new" "$qps" "$cpu" - -
        echo "$server-new $qps - - $cpu" >>"$work/results"
    done
done
for server in router gdnsd router-new gdnsd-new; do
    qps=$(awk -v s=$server '$1 == s {print $2}' "$work/results" | median)
    p50=$(awk -v s=$server '$1 == s {print $3}' "$work/results" | median)
    p99=$(awk -v s=$server '$1 == s {print $4}' "$work/results" | median)
    cpu=$(awk -v s=$server '$1 == s {print $5}' "$work/results" | median)
    printf "median %-10s %12s %12s %10s %10s\n" "$server" "$qps" "$cpu" "$p50" "$p99"
    echo "$server $qps" >>"$work/medians"
done
awk '{q[$1] = $2} END {
    printf "router / gdnsd: %.2f\n", q["router"] / q["gdnsd"]
    printf "every query new: router / gdnsd: %.2f\n", q["router-new"] / q["gdnsd-new"]
}' "$work/medians"
