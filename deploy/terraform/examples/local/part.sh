#!/usr/bin/env bash
# The local target's hands: main.tf calls the first three from local-exec, and `tradewind
# chaos` the last two (the mesh description's `control`).
#   part.sh secrets          the deployment's secrets in $DIR, each made only where missing
#   part.sh start            writes $CONTENT as $NAME's config, checks it, starts the part, waits
#                            until it answers at $HEALTH
#   part.sh stop             stops the process in $PIDFILE (SIGTERM, SIGKILL after 20 s)
#   part.sh kill DIR NAME    SIGKILLs part NAME
#   part.sh again DIR NAME   starts part NAME again as `start` last did, and waits for it
set -euo pipefail

# Whether pid $1 is a running part of the mesh in $DIR: not a pid that ended and was given to
# another process since, nor one that ended and waits to be reaped (its command line is gone).
ours() {
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q -- "--config $DIR/config/"
}

# Starts part $NAME ($KIND, config in $DIR/config) with $TW and waits until it answers at
# $HEALTH at all (a core answers 503 until the group has a leader, which needs the other
# regions started too).
launch() {
    local config="$DIR/config/$NAME.toml" pidfile="$DIR/run/$NAME.pid"
    if [ -f "$pidfile" ] && ours "$(cat "$pidfile")"; then
        echo "$NAME is already running (pid $(cat "$pidfile"))" >&2
        exit 1
    fi
    # A session of its own: the part outlives this shell and Terraform.
    setsid "$TW" "$KIND" --config "$config" >>"$DIR/logs/$NAME.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 300); do
        if ! ours "$(cat "$pidfile")"; then
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

case "${1:?usage: part.sh secrets|start|stop|kill|again}" in
secrets)
    c="$DIR/certs"
    mkdir -p "$DIR"
    if [ ! -f "$c/ca.pem" ]; then
        "$TW" certs init --out "$c" --regions "$REGIONS" --edges "$EDGES"
    fi
    # Every listener's certificate, for the names clients reach it by (renewed at each apply).
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
    pid=$(cat "$PIDFILE")
    if ours "$pid" && kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 200); do
            ours "$pid" || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    ;;
kill)
    DIR=${2:?} NAME=${3:?}
    pid=$(cat "$DIR/run/$NAME.pid")
    ours "$pid" || { echo "$NAME is not running" >&2; exit 1; }
    kill -KILL "$pid"
    # Gone before this returns: a start right after must not find it still running.
    while ours "$pid"; do sleep 0.05; done
    ;;
again)
    DIR=${2:?} NAME=${3:?}
    # shellcheck source=/dev/null
    . "$DIR/run/$NAME.part"
    launch
    ;;
*)
    echo "part.sh: unknown command $1" >&2
    exit 2
    ;;
esac
