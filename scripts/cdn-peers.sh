# What the scripts that put the mesh's cache beside nginx and Varnish share (sourced by
# cache-tests.sh and bench-cdn.sh): installing the peers, a scratch directory and the cleanup
# of every process they start, ports on 127.0.0.1, and `tradewind cdn` started in front of
# one origin.

WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for f in "$WORK"/*.pid; do
        [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Installs from Debian what is missing, given as command:package pairs.
install_missing() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    if [ ${#need[@]} -gt 0 ]; then
        local sudo=""
        if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
        $sudo apt-get update
        $sudo apt-get install -y "${need[@]}"
    fi
}

# A port free on 127.0.0.1 now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
        node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# Waits until something listens on 127.0.0.1:$1 ($2 names it), 10 s at most.
wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on 127.0.0.1:$1 ($2)" >&2
    exit 1
}

# Starts `$BIN cdn` named $1 in front of http://127.0.0.1:$2, with its defaults but for the
# per-client rate (a load generator or a test suite is one client) and the TOML tables in $3;
# sets CDN_PORT, CDN_ADMIN and CDN_PID. Its files are $WORK/$1.{toml,out,log}.
start_cdn() {
    cat >"$WORK/$1.toml" <<TOML
name = "$1"
[http]
listen = "127.0.0.1:0"
listener = { plain_http = true, client_rate_per_s = 10000000, client_burst = 10000000 }
[admin]
listen = "127.0.0.1:0"
listener = { plain_http = true }
token_sha256 = ["bf66fea1902142a38bbd8b051e659eb8f38873d6e8945a5a753826581fa74ceb"]
[[origins]]
name = "origin"
url = "http://127.0.0.1:$2"
${3:-}
TOML
    RUST_LOG=${RUST_LOG:-warn} "$BIN" cdn --config "$WORK/$1.toml" >"$WORK/$1.out" 2>"$WORK/$1.log" &
    CDN_PID=$!
    PIDS+=("$CDN_PID")
    for _ in $(seq 1 200); do grep -q "ready" "$WORK/$1.out" 2>/dev/null && break; sleep 0.05; done
    CDN_PORT=$(sed -n 's/.* http=http:\/\/127.0.0.1:\([0-9]*\) .*/\1/p' "$WORK/$1.out")
    CDN_ADMIN=$(sed -n 's/.* admin=http:\/\/127.0.0.1:\([0-9]*\).*/\1/p' "$WORK/$1.out")
    [ -n "$CDN_PORT" ] || { cat "$WORK/$1.log" >&2; exit 1; }
}
