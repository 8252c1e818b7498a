"""Writes each cloud host's files, as its cloud-init user data would, under OUT/HOST/ (for
scripts/terraform.sh to check), after checking the user data itself: YAML that cloud-init
takes as #cloud-config, whose write_files are exactly the module's files (same text, same
mode, written once the users exist), whose only user is the parts' unprivileged account (the
ops account's keys are written for the install script), and which runs the install script.

    python host-files.py HOSTS_JSON OUT     (HOSTS_JSON: terraform output -json hosts)
"""

import base64
import json
import os
import sys

import yaml


def check(host, h, out):
    data = h["user_data"]
    if not data.startswith("#cloud-config\n"):
        sys.exit(f"{host}: the user data does not start with #cloud-config")
    doc = yaml.safe_load(data)
    written = {}
    for f in doc["write_files"]:
        if f.get("encoding") != "b64" or f.get("defer") is not True:
            sys.exit(f"{host}: {f['path']} is not written base64, after the users")
        written[f["path"]] = {
            "content": base64.b64decode(f["content"]).decode(),
            "mode": f["permissions"],
        }
    if written != h["files"]:
        sys.exit(f"{host}: the user data does not write exactly the module's files")
    users = {u["name"]: u for u in doc["users"] if isinstance(u, dict)}
    if users.get("tradewind", {}).get("shell") != "/usr/sbin/nologin":
        sys.exit(f"{host}: no unprivileged tradewind account")
    # The ops account is made by the install script, once the metadata service is closed to
    # it: cloud-init makes no account anyone can log in to.
    if any(u.get("ssh_authorized_keys") for u in users.values()):
        sys.exit(f"{host}: cloud-init makes an account with ssh keys")
    if not h["files"].get("/etc/tradewind/ops.keys", {}).get("content", "").strip():
        sys.exit(f"{host}: no key for the account the drills ssh to")
    if doc["runcmd"] != [["/usr/local/sbin/tradewind-install"]]:
        sys.exit(f"{host}: the user data does not run the install script")
    for path, f in h["files"].items():
        dest = os.path.join(out, host, path.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w") as w:
            w.write(f["content"])
        os.chmod(dest, int(f["mode"], 8))


def main():
    hosts_json, out = sys.argv[1:3]
    with open(hosts_json) as f:
        hosts = json.load(f)
    if not hosts:
        sys.exit("no hosts")
    for host, h in sorted(hosts.items()):
        check(host, h, out)
    print(f"{len(hosts)} hosts' user data checked")


main()
