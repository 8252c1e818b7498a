#!/usr/bin/env bash
# tradewind-link (as check/main.tf renders it: interface tw-a, cn-shanghai's hosts 10.99.0.1
# and 10.99.1.1, us-east's 10.99.0.2 and 10.99.0.3) run for real between two network
# namespaces joined by a veth pair, as a cn-shanghai host would run it: cut drops what goes to us-east and nothing else, slow delays it, heal gives
# the link back exactly as it was, twice in a row, and bad arguments are refused.
#   check/link-check.sh RENDERED_tradewind-link     (as root: it makes namespaces)
set -euo pipefail
link=${1:?usage: link-check.sh TRADEWIND_LINK}
a=tw-link-a-$$ b=tw-link-b-$$
cleanup() { ip netns del "$a" 2>/dev/null || true; ip netns del "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add tw-a netns "$a" type veth peer name tw-b netns "$b"
ip -n "$a" addr add 10.99.0.1/24 dev tw-a
ip -n "$b" addr add 10.99.0.2/24 dev tw-b
ip -n "$b" addr add 10.99.0.3/24 dev tw-b
ip -n "$b" addr add 10.99.0.9/24 dev tw-b
for ns in "$a" "$b"; do ip -n "$ns" link set lo up; done
ip -n "$a" link set tw-a up
ip -n "$b" link set tw-b up
in_a() { ip netns exec "$a" "$@"; }
# The round trip to $1 in whole milliseconds, or nothing if it does not answer within 1 s.
rtt() { in_a ping -n -c1 -W1 "$1" 2>/dev/null | sed -n 's/.*time=\([0-9]*\).*/\1/p'; }
fail() { echo "link-check: $*" >&2; exit 1; }
qdisc() { in_a tc qdisc show dev tw-a; }
# Whether round trip $1 was measured and is at least $2 ms and under $3.
between() { [ -n "$1" ] && [ "$1" -ge "$2" ] && [ "$1" -lt "$3" ]; }

before=$(qdisc)
for addr in 10.99.0.2 10.99.0.3 10.99.0.9; do [ -n "$(rtt $addr)" ] || fail "$addr does not answer at the start"; done

in_a "$link" cut us-east
for addr in 10.99.0.2 10.99.0.3; do [ -z "$(rtt $addr)" ] || fail "$addr answers while us-east is cut"; done
[ -n "$(rtt 10.99.0.9)" ] || fail "an address of no region is cut too"
in_a "$link" heal us-east
for addr in 10.99.0.2 10.99.0.3; do [ -n "$(rtt $addr)" ] || fail "$addr does not answer once healed"; done

# netem, which slow needs, is a module some kernels leave out (this one's may): then slow must
# fail, and heal must still leave nothing behind.
if in_a tc qdisc add dev lo root netem delay 1ms 2>/dev/null; then
    in_a tc qdisc del dev lo root
    in_a "$link" slow us-east 150
    for addr in 10.99.0.2 10.99.0.3; do
        t=$(rtt $addr)
        between "$t" 150 1000 || fail "$addr answers in ${t:-no} ms while slowed by 150 ms"
    done
    t=$(rtt 10.99.0.9)
    between "$t" 0 100 || fail "an address of no region is slowed too (${t:-no} ms)"
    in_a "$link" slow us-east 60
    t=$(rtt 10.99.0.2)
    between "$t" 60 150 || fail "slowed again to 60 ms, 10.99.0.2 answers in ${t:-no} ms"
    slowed="slow, "
else
    if in_a "$link" slow us-east 150 2>/dev/null; then fail "slow was taken without netem"; fi
    echo "link-check: this kernel has no netem (sch_netem): slow is refused here, not measured"
    slowed=""
fi
in_a "$link" cut us-east
in_a "$link" heal us-east
in_a "$link" heal us-east
for addr in 10.99.0.2 10.99.0.3; do
    t=$(rtt $addr)
    between "$t" 0 100 || fail "$addr answers in ${t:-no} ms once healed"
done
[ "$(qdisc)" = "$before" ] || fail "heal left the device's qdiscs changed: $(qdisc)"

for bad in "cut nowhere" "slow us-east" "slow us-east 1e3" "drop us-east" ""; do
    # shellcheck disable=SC2086
    if in_a "$link" $bad 2>/dev/null; then fail "tradewind-link $bad was taken"; fi
done
echo "link-check: cut, ${slowed}heal, bad arguments between namespaces: ok"
