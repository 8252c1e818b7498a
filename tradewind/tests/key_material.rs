//! The commands that make a deployment's key material, run as an operator runs them: `certs
//! init` (a CA, node certificates naming each node's role, the deployment's secret), `certs add
//! --role`, `certs secret`, `keys init` and `keys rotate`. Private files are 0600, nothing is
//! overwritten, and a refusal is a non-zero exit with the reason.

use std::path::Path;
use std::process::Output;

use replication::certs::Role;

fn run(args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tradewind"))
        .args(args)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str], why: &str) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(why),
        "{args:?}: {stderr}"
    );
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The role the certificate of `node` in `dir` names.
fn role_of(dir: &Path, node: &str) -> Option<Role> {
    replication::tls::role_of(dir, node).unwrap()
}

#[test]
fn certs_name_each_nodes_role_and_the_secret_is_made_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    let d = d.to_str().unwrap();
    let out = ok(&[
        "certs",
        "init",
        "--out",
        d,
        "--regions",
        "cn-shanghai",
        "--edges",
        "cn-shanghai-1",
    ]);
    assert!(
        out.contains("cn-shanghai (core)") && out.contains("cn-shanghai-1 (edge)"),
        "{out}"
    );
    let dir = Path::new(d);
    assert_eq!(role_of(dir, "cn-shanghai"), Some(Role::Core));
    assert_eq!(role_of(dir, "cn-shanghai-1"), Some(Role::Edge));
    ok(&[
        "certs", "add", "--dir", d, "--node", "geo-1", "--role", "router",
    ]);
    assert_eq!(role_of(dir, "geo-1"), Some(Role::Router));
    refused(
        &[
            "certs", "add", "--dir", d, "--node", "geo-2", "--role", "admin",
        ],
        "invalid value",
    );
    refused(
        &[
            "certs", "add", "--dir", d, "--node", "geo-1", "--role", "core",
        ],
        "already exists",
    );
    let secret = std::fs::read(dir.join("deployment.secret")).unwrap();
    #[cfg(unix)]
    assert_eq!(mode(&dir.join("deployment.secret")), 0o600);
    let out = ok(&["certs", "secret", "--dir", d]);
    assert!(out.contains("already there, kept"), "{out}");
    assert_eq!(
        std::fs::read(dir.join("deployment.secret")).unwrap(),
        secret
    );
}

#[test]
fn region_keys_are_made_rotated_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = ok(&[
        "keys",
        "init",
        "--dir",
        d,
        "--regions",
        "cn-shanghai,ap-singapore",
    ]);
    assert!(
        out.contains("cn-shanghai/1") && out.contains("ap-singapore/1"),
        "{out}"
    );
    let out = ok(&["keys", "rotate", "--dir", d, "--region", "cn-shanghai"]);
    assert!(out.contains("cn-shanghai/2"), "{out}");
    let public = sealing::PublicKeys::load(dir.path()).unwrap();
    assert_eq!(
        public.newest("cn-shanghai").unwrap().0.to_string(),
        "cn-shanghai/2"
    );
    assert_eq!(
        sealing::FileKeys::load(dir.path(), "cn-shanghai")
            .unwrap()
            .ids()
            .len(),
        2
    );
    #[cfg(unix)]
    for f in ["cn-shanghai.keys", "ap-singapore.keys"] {
        assert_eq!(mode(&dir.path().join(f)), 0o600, "{f}");
    }
    refused(
        &["keys", "init", "--dir", d, "--regions", "cn-shanghai"],
        "refusing to overwrite",
    );
    refused(
        &["keys", "rotate", "--dir", d, "--region", "Not_A_Region"],
        "bad region name",
    );
    // No key material on stdout or stderr.
    let private = std::fs::read_to_string(dir.path().join("cn-shanghai.keys")).unwrap();
    let hex = private.lines().next().unwrap().split(' ').nth(1).unwrap();
    assert!(!out.contains(&hex[..16]));
}
