#!/usr/bin/env bash
# The local target's hands (main.tf calls it from local-exec; nothing else should):
#   part.sh secrets   the deployment's secrets in $DIR, each made only where missing
#   part.sh start     writes $CONTENT as $NAME's config, checks it, starts the part, waits for it
#   part.sh stop      stops the process in $PIDFILE (SIGTERM, SIGKILL after 20 s)
set -euo pipefail

case "${1:?usage: part.sh secrets|start|stop}" in
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
    config="$DIR/config/$NAME.toml"
    printf '%s' "$CONTENT" >"$config"
    "$TW" "$KIND" --check-config --config "$config"
    if [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "$NAME is already running (pid $(cat "$PIDFILE"))" >&2
        exit 1
    fi
    # A session of its own: the part outlives this shell and Terraform.
    setsid "$TW" "$KIND" --config "$config" >>"$DIR/logs/$NAME.log" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    # Up once its HTTPS listener answers at all (a core answers 503 until the group has a
    # leader, which needs the other regions started too).
    for _ in $(seq 1 300); do
        if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
            echo "$NAME stopped; the end of $DIR/logs/$NAME.log:" >&2
            tail -20 "$DIR/logs/$NAME.log" >&2
            exit 1
        fi
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 \
            --cacert "$DIR/certs/ca.pem" "$HEALTH" || true)
        [ "$code" != "000" ] && exit 0
        sleep 0.1
    done
    echo "$NAME did not answer at $HEALTH within 30 s" >&2
    exit 1
    ;;
stop)
    [ -f "$PIDFILE" ] || exit 0
    pid=$(cat "$PIDFILE")
    # Only the part it started: a pid that ended may have been given to another process.
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "--config $DIR/config/" &&
        kill -TERM "$pid" 2>/dev/null; then
        for _ in $(seq 1 200); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    ;;
*)
    echo "part.sh: unknown command $1" >&2
    exit 2
    ;;
esac
