#!/usr/bin/env bash
# The local target's hands: main.tf calls the first three from local-exec, and `tradewind
# chaos` the rest (the mesh description's `control`).
#   part.sh secrets          the deployment's secrets in $DIR, each made only where missing
#   part.sh start            writes $CONTENT as $NAME's config, checks it, starts the part, waits
#                            until it answers at $HEALTH
#   part.sh stop             stops the process in $PIDFILE (SIGTERM, SIGKILL after 20 s)
#   part.sh kill DIR NAME    SIGKILLs part NAME, and returns once it is gone
#   part.sh term DIR NAME    stops part NAME as `stop` does
#   part.sh again DIR NAME   starts part NAME as `start` last did (nothing if it runs), and waits
#   part.sh link API TOKEN_FILE cut|slow MS|heal FROM TO
#                            shapes the link from region FROM to region TO at the fault proxy
#                            (API: its address): cut, a one-way delay of MS, or neither
set -euo pipefail
# Keys, stores, logs and configs for this user alone.
umask 077

# Whether process $1 has ended: no longer there, or a zombie whose every thread has exited (its
# sockets and file locks released).
gone() {
    [ ! -e "/proc/$1" ] || { grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null &&
        grep -q '^Threads:[[:space:]]*1$' "/proc/$1/status" 2>/dev/null; }
}

# Whether process $1 is part $NAME of the mesh in $DIR (not a pid that ended and was given to
# another process since).
ours() {
    ! gone "$1" && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null |
        grep -qF -- "--config $DIR/config/$NAME.toml"
}

# Waits until process $1 has ended, at most $2 tenths of a second; whether it has.
wait_gone() {
    for _ in $(seq 1 "$2"); do
        gone "$1" && return 0
        sleep 0.1
    done
    gone "$1"
}

# Starts part $NAME ($KIND, its config in $DIR/config) with $TW, unless it runs, and waits until
# it answers at $HEALTH at all (a core answers 503 until the group has a leader, which needs
# the other regions started too).
launch() {
    local pidfile="$DIR/run/$NAME.pid" pid
    if [ -f "$pidfile" ] && ours "$(cat "$pidfile")"; then
        return 0
    fi
    # A session of its own: the part outlives this shell and Terraform.
    setsid "$TW" "$KIND" --config "$DIR/config/$NAME.toml" \
        >>"$DIR/logs/$NAME.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$pidfile"
    for _ in $(seq 1 300); do
        # (Alive, not `ours`: until setsid has exec'd the part, its command line is the shell's.)
        if gone "$pid"; then
            echo "$NAME stopped; the end of $DIR/logs/$NAME.log:" >&2
            tail -20 "$DIR/logs/$NAME.log" >&2
            exit 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            --cacert "$DIR/certs/ca.pem" "$HEALTH" || true)
        [ "$code" != "000" ] && return 0
        sleep 0.1
    done
    echo "$NAME did not answer at $HEALTH within 30 s" >&2
    exit 1
}

# Stops part $NAME, process $1, as an upgrade does: SIGTERM, SIGKILL after 20 s; returns once
# it is gone.
terminate() {
    if ours "$1" && kill -TERM "$1" 2>/dev/null; then
        wait_gone "$1" 200 || { ours "$1" && kill -KILL "$1"; wait_gone "$1" 100; } || true
    fi
}

case "${1:?usage: part.sh secrets|start|stop|kill|term|again|link}" in
secrets)
    c="$DIR/certs"
    mkdir -p "$DIR"
    if [ ! -f "$c/ca.pem" ]; then
        "$TW" certs init --out "$c" --regions "$REGIONS" --edges "$EDGES"
    fi
    # A region or an edge added since: its node certificate, and a new region's keys.
    for r in ${REGIONS//,/ }; do
        [ -f "$c/$r.pem" ] || "$TW" certs add --dir "$c" --node "$r" --role core
        [ -f "$c/keys/$r.keys" ] || "$TW" keys rotate --dir "$c/keys" --region "$r"
        [ -f "$c/keys/$r.shred" ] || "$TW" keys keeping --dir "$c/keys" --region "$r"
    done
    for e in ${EDGES//,/ }; do
        [ -f "$c/$e.pem" ] || "$TW" certs add --dir "$c" --node "$e" --role edge
    done
    # Every listener's certificate, for the names clients reach it by (issued again whenever
    # this step runs: when the names change).
    while read -r name names; do
        [ -n "$name" ] && "$TW" certs server --dir "$c" --name "$name" --for "$names" >/dev/null
    done <<<"$HTTPS"
    # The identity provider's signing key and JWKS, made with its first token (not kept).
    "$TW" token shopper --dir "$DIR/identity" --customer setup >/dev/null
    ;;
start)
    mkdir -p "$DIR/config" "$DIR/run" "$DIR/logs"
    printf '%s' "$CONTENT" >"$DIR/config/$NAME.toml"
    "$TW" "$KIND" --check-config --config "$DIR/config/$NAME.toml"
    # What `again` needs to start it the same way.
    printf 'TW=%q\nKIND=%q\nHEALTH=%q\n' "$TW" "$KIND" "$HEALTH" >"$DIR/run/$NAME.part"
    launch
    ;;
stop)
    [ -f "$PIDFILE" ] || exit 0
    NAME=$(basename "$PIDFILE" .pid)
    terminate "$(cat "$PIDFILE")"
    rm -f "$PIDFILE"
    ;;
term)
    DIR=${2:?} NAME=${3:?}
    pid=$(cat "$DIR/run/$NAME.pid")
    ours "$pid" || { echo "$NAME is not running" >&2; exit 1; }
    terminate "$pid"
    ;;
kill)
    DIR=${2:?} NAME=${3:?}
    pid=$(cat "$DIR/run/$NAME.pid")
    ours "$pid" || { echo "$NAME is not running" >&2; exit 1; }
    kill -KILL "$pid"
    # Gone before this returns: a start right after must find its port and store free.
    wait_gone "$pid" 100
    ;;
again)
    DIR=${2:?} NAME=${3:?}
    # shellcheck source=/dev/null
    . "$DIR/run/$NAME.part"
    launch
    ;;
link)
    api=${2:?} token_file=${3:?} how=${4:?}
    case "$how" in
    cut) shape='{"cut":true}' ;;
    slow)
        [[ "${5:-}" =~ ^[0-9]{1,5}$ ]] || { echo "part.sh link slow: milliseconds, not ${5:-nothing}" >&2; exit 2; }
        shape="{\"latency_ms\":$5}"
        shift
        ;;
    heal) shape='{}' ;;
    *) echo "part.sh link: cut, slow or heal, not $how" >&2; exit 2 ;;
    esac
    from=${5:?} to=${6:?}
    # The token through curl's standard input, not its command line (which others may read).
    printf 'header = "Authorization: Bearer %s"\n' "$(cat "$token_file")" |
        curl -sS --fail-with-body --max-time 5 -K - -X PUT -H 'content-type: application/json' \
            --data "$shape" "http://$api/v1/links/$from-%3E$to" >/dev/null
    ;;
*)
    echo "part.sh: unknown command $1" >&2
    exit 2
    ;;
esac
