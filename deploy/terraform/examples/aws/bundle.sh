#!/usr/bin/env bash
# One host's secret, as modules/host-config fetches it at boot: a gzip tar, on standard
# output, of exactly the files that host's parts read (never the CA's key, never another
# region's keys, never the keeping keys an erasure destroys: the host makes its own).
#   bundle.sh CERTS_DIR IDENTITY_DIR core REGION     the core host of REGION (and its router)
#   bundle.sh CERTS_DIR IDENTITY_DIR edge EDGE       an edge's host
# CERTS_DIR as `tradewind certs init` and `tradewind keys` leave it, with each listener's
# certificate from `tradewind certs server` (terraform output https_names: a region's cache's
# as REGION-cdn, when the mesh has caches) and, for caches, the edges' purge token in a file
# `purge-token`; IDENTITY_DIR as `tradewind token shopper --dir` leaves it. For example:
#   bundle.sh certs identity core cn-shanghai | aws secretsmanager create-secret \
#       --region ap-east-1 --name tradewind/cn-shanghai --secret-binary fileb:///dev/stdin
set -euo pipefail
certs=${1:?usage: bundle.sh CERTS_DIR IDENTITY_DIR core|edge NAME} identity=${2:?} kind=${3:?} name=${4:?}
[[ "$name" =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] || { echo "bundle.sh: bad name $name" >&2; exit 2; }
files=(ca.pem deployment.secret "$name.pem" "$name.key" "$name.https.pem" "$name.https.key" keys/public.keys)
case "$kind" in
core)
    files+=(geo-router.https.pem geo-router.https.key "keys/$name.keys")
    # The region's cache, beside its core.
    if [ -f "$certs/$name-cdn.https.pem" ]; then files+=("$name-cdn.https.pem" "$name-cdn.https.key"); fi
    ;;
edge)
    # What it purges its region's cache with.
    if [ -f "$certs/purge-token" ]; then files+=(purge-token); fi
    ;;
*) echo "bundle.sh: core or edge, not $kind" >&2; exit 2 ;;
esac
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
umask 077
mkdir -p "$stage/keys"
for f in "${files[@]}"; do
    [ -f "$certs/$f" ] || { echo "bundle.sh: $certs/$f is missing" >&2; exit 1; }
    cp "$certs/$f" "$stage/$f"
done
if [ "$kind" = edge ]; then
    [ -f "$identity/shoppers.jwks.json" ] || { echo "bundle.sh: $identity/shoppers.jwks.json is missing" >&2; exit 1; }
    cp "$identity/shoppers.jwks.json" "$stage/"
fi
tar -C "$stage" --owner=0 --group=0 --numeric-owner -cz .
