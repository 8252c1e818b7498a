//! A deployment's certificates: one CA, and one certificate per node (a core region or an edge)
//! whose only subject alternative name is the node's name. Peers trust exactly that CA, and a
//! node's identity is the name its CA-signed certificate carries.
//!
//! Files in a certificate directory: `ca.pem` (the CA certificate, given to every node),
//! `ca.key` (the CA key, kept by the operator to add nodes later), and `<node>.pem` with
//! `<node>.key` per node.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::ServerName;

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("bad node name {0:?}: use lower-case DNS labels, e.g. cn-shanghai or sg-edge-1")]
    BadName(String),
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite a deployment's keys")]
    Exists(PathBuf),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Checks a node name: it becomes a DNS name in the certificate, so the DNS rules apply.
pub fn check_node_name(name: &str) -> Result<(), CertError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && ServerName::try_from(name).is_ok();
    if ok {
        Ok(())
    } else {
        Err(CertError::BadName(name.chars().take(80).collect()))
    }
}

fn write_new(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => CertError::Exists(path.to_path_buf()),
        _ => CertError::Io {
            path: path.to_path_buf(),
            source,
        },
    })?;
    f.write_all(contents.as_bytes())
        .map_err(|source| CertError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn read(path: &Path) -> Result<String, CertError> {
    std::fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Tradewind deployment CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

/// Creates `ca.pem` and `ca.key` in `dir` (which must not hold them yet).
pub fn init_ca(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let cert = ca_params().self_signed(&key)?;
    write_new(&dir.join("ca.key"), &key.serialize_pem(), true)?;
    write_new(&dir.join("ca.pem"), &cert.pem(), false)
}

/// Issues `<node>.pem` and `<node>.key` in `dir`, signed by the CA found there. Node
/// certificates serve both ends of a connection, so they allow server and client use.
pub fn issue_node(dir: &Path, node: &str) -> Result<(), CertError> {
    check_node_name(node)?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(vec![node.to_owned()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_new(&dir.join(format!("{node}.key")), &key.serialize_pem(), true)?;
    write_new(&dir.join(format!("{node}.pem")), &cert.pem(), false)
}

/// A CA and certificates for `nodes` in a new directory.
pub fn init(dir: &Path, nodes: &[String]) -> Result<(), CertError> {
    for n in nodes {
        check_node_name(n)?;
    }
    init_ca(dir)?;
    for n in nodes {
        issue_node(dir, n)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_dns_labels() {
        for ok in ["cn-shanghai", "sg-edge-1", "a"] {
            assert!(check_node_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "CN", "a_b", "-a", "a-", "a.b", "x".repeat(64).as_str()] {
            assert!(check_node_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn init_writes_a_ca_and_node_certificates_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = vec!["cn-shanghai".to_owned(), "us-east".to_owned()];
        init(dir.path(), &nodes).unwrap();
        for f in [
            "ca.pem",
            "ca.key",
            "cn-shanghai.pem",
            "cn-shanghai.key",
            "us-east.pem",
        ] {
            assert!(dir.path().join(f).exists(), "{f}");
        }
        assert!(matches!(
            init(dir.path(), &nodes),
            Err(CertError::Exists(_))
        ));
        issue_node(dir.path(), "ap-singapore").unwrap();
        assert!(matches!(
            issue_node(dir.path(), "ap-singapore"),
            Err(CertError::Exists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
