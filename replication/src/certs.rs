//! A deployment's certificates: one CA, and one certificate per node (a core region or an edge)
//! whose only subject alternative name is the node's name. Peers trust exactly that CA, and a
//! node's identity is the name its CA-signed certificate carries.
//!
//! A node certificate also names the node's role (`Role`: core, edge or router) in its one URI
//! subject alternative name, a SPIFFE id `spiffe://tradewind/<role>/<node>`: the CA says what a
//! node is, and each kind of mesh request checks it (`protocol::MeshRequest::allowed_for`).
//! Certificates issued before roles existed carry none; their peers are served as before
//! (members by their names), with a warning to reissue them.
//!
//! Files in a certificate directory: `ca.pem` (the CA certificate, given to every node),
//! `ca.key` (the CA key, kept by the operator to add nodes later), and `<node>.pem` with
//! `<node>.key` per node. The same CA signs the certificates HTTPS listeners serve
//! (`<name>.https.pem` with `<name>.https.key`): those name what clients dial (addresses and
//! storefront names) and allow server use only, so one can never stand for a node in the mesh,
//! whose peers must present client use.
//!
//! The directory also holds the deployment's secret (`deployment.secret`, private): 32 random
//! bytes, the same at every node, from which each node derives the same keyed values (order
//! ids, which no one without it can compute).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
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
    #[error("bad role {0:?}: core, edge or router")]
    BadRole(String),
    #[error("{0}: {1}")]
    BadSecret(PathBuf, String),
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What a node is in the mesh, as its certificate says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A core region: a member of the Raft group.
    Core,
    /// An edge node: follows a core's feed and sends it orders and reads.
    Edge,
    /// A geo-router: may ask a core how the group stands, nothing else.
    Router,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Core, Role::Edge, Role::Router];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Core => "core",
            Role::Edge => "edge",
            Role::Router => "router",
        }
    }

    /// The SPIFFE id a certificate of `node` in this role carries.
    pub fn spiffe_id(self, node: &str) -> String {
        format!("{SPIFFE_PREFIX}{}/{node}", self.as_str())
    }

    /// The role a SPIFFE id names for `node`, if it is one of this deployment's for that node.
    pub fn of_spiffe_id(uri: &str, node: &str) -> Option<Role> {
        let (role, named) = uri.strip_prefix(SPIFFE_PREFIX)?.split_once('/')?;
        (named == node).then_some(())?;
        role.parse().ok()
    }
}

/// The trust domain of every mesh SPIFFE id.
const SPIFFE_PREFIX: &str = "spiffe://tradewind/";

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| CertError::BadRole(s.chars().take(40).collect()))
    }
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
    util::files::write_new(path, contents.as_bytes(), private).map_err(|source| {
        match source.kind() {
            std::io::ErrorKind::AlreadyExists => CertError::Exists(path.to_path_buf()),
            _ => CertError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
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

/// The file of a deployment's secret, in its certificate directory.
pub const SECRET_FILE: &str = "deployment.secret";
/// Bytes of a deployment's secret.
pub const SECRET_LEN: usize = 32;

/// Writes a fresh secret to `path` (private, as hex) unless a file is there; says whether it
/// made one.
pub fn make_secret(path: &Path) -> Result<bool, CertError> {
    let mut secret = [0u8; SECRET_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| CertError::BadSecret(path.to_path_buf(), "no randomness".into()))?;
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    match write_new(path, &format!("{hex}\n"), true) {
        Ok(()) => Ok(true),
        Err(CertError::Exists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads the secret `make_secret` wrote.
pub fn read_secret(path: &Path) -> Result<[u8; SECRET_LEN], CertError> {
    let bad = |why: &str| CertError::BadSecret(path.to_path_buf(), why.into());
    let text = match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(bad(
                "missing: make one with `tradewind certs secret --dir DIR` and copy it to every node's certificate directory",
            ));
        }
        other => other.map_err(|source| CertError::Io {
            path: path.to_path_buf(),
            source,
        })?,
    };
    let hex = text.trim();
    if hex.len() != 2 * SECRET_LEN || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("not 64 hex digits"));
    }
    let mut secret = [0u8; SECRET_LEN];
    for (i, b) in secret.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad("not hex"))?;
    }
    Ok(secret)
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

/// Issues `<node>.pem` and `<node>.key` in `dir` for a node in `role`, signed by the CA found
/// there. Node certificates serve both ends of a connection, so they allow server and client
/// use.
pub fn issue_node(dir: &Path, node: &str, role: Role) -> Result<(), CertError> {
    issue(dir, node, Some(role))
}

/// Issues a node certificate as versions before roles did, naming no role: for tests of a
/// mesh that still runs such certificates.
pub fn issue_node_without_role(dir: &Path, node: &str) -> Result<(), CertError> {
    issue(dir, node, None)
}

fn issue(dir: &Path, node: &str, role: Option<Role>) -> Result<(), CertError> {
    check_node_name(node)?;
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    let mut params = CertificateParams::new(vec![node.to_owned()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, node);
    params.distinguished_name = dn;
    if let Some(role) = role {
        let uri = role.spiffe_id(node).try_into()?;
        params.subject_alt_names.push(SanType::URI(uri));
    }
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

/// Most names one HTTPS certificate may carry.
pub const SERVER_NAMES_MAX: usize = 100;

/// Issues `<name>.https.pem` and `<name>.https.key` in `dir`, signed by the CA found there,
/// for a listener that clients reach by `names` (DNS names, wildcards such as `*.shop.example`,
/// or IP addresses). Issuing again replaces the pair (each file by a rename, so a listener that
/// reads them meanwhile sees a whole file), which the listener picks up without a restart.
pub fn issue_server(
    dir: &Path,
    name: &str,
    names: &[String],
) -> Result<(PathBuf, PathBuf), CertError> {
    check_node_name(name)?;
    if names.is_empty() || names.len() > SERVER_NAMES_MAX {
        return Err(CertError::BadName(format!(
            "{name}: 1 to {SERVER_NAMES_MAX} names for clients to reach it by"
        )));
    }
    for n in names {
        if n.parse::<std::net::IpAddr>().is_err()
            && ServerName::try_from(n.trim_start_matches("*.")).is_err()
        {
            return Err(CertError::BadName(n.chars().take(80).collect()));
        }
    }
    let ca_key = KeyPair::from_pem(&read(&dir.join("ca.key"))?)?;
    let issuer = Issuer::new(ca_params(), ca_key);
    // rcgen makes an IP address SAN of a name that parses as one.
    let mut params = CertificateParams::new(names.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_path, key_path) = (
        dir.join(format!("{name}.https.pem")),
        dir.join(format!("{name}.https.key")),
    );
    replace(&key_path, &key.serialize_pem(), true)?;
    replace(&cert_path, &cert.pem(), false)?;
    Ok((cert_path, key_path))
}

/// Writes `path` whole: a new file beside it, renamed over it.
fn replace(path: &Path, contents: &str, private: bool) -> Result<(), CertError> {
    util::files::replace(path, contents.as_bytes(), private).map_err(|source| CertError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A CA, the deployment's secret and certificates for `nodes` (each with its role) in a new
/// directory.
pub fn init(dir: &Path, nodes: &[(String, Role)]) -> Result<(), CertError> {
    for (n, _) in nodes {
        check_node_name(n)?;
    }
    init_ca(dir)?;
    make_secret(&dir.join(SECRET_FILE))?;
    for (n, role) in nodes {
        issue_node(dir, n, *role)?;
    }
    Ok(())
}

/// `names`, each in `role`: the argument `init` takes.
pub fn all_as(role: Role, names: &[String]) -> Vec<(String, Role)> {
    names.iter().map(|n| (n.clone(), role)).collect()
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
    fn roles_are_spiffe_ids_of_their_own_node() {
        for role in Role::ALL {
            let id = role.spiffe_id("sg-edge-1");
            assert_eq!(Role::of_spiffe_id(&id, "sg-edge-1"), Some(role));
            assert_eq!(
                Role::of_spiffe_id(&id, "sg-edge-2"),
                None,
                "another node's id"
            );
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
        }
        for bad in [
            "spiffe://tradewind/admin/sg-edge-1",
            "spiffe://other/core/sg-edge-1",
            "spiffe://tradewind/core",
            "spiffe://tradewind/core/sg-edge-1/x",
            "",
        ] {
            assert_eq!(Role::of_spiffe_id(bad, "sg-edge-1"), None, "{bad}");
        }
        assert!("Core".parse::<Role>().is_err());
    }

    #[test]
    fn https_certificates_name_what_clients_dial_and_serve_servers_only() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &all_as(Role::Core, &["cn-shanghai".to_owned()])).unwrap();
        let names = vec![
            "127.0.1.1".to_owned(),
            "::1".to_owned(),
            "shop.example".to_owned(),
            "*.shop.example".to_owned(),
        ];
        let (cert, _) = issue_server(dir.path(), "cn-shanghai", &names).unwrap();
        let first = std::fs::read(&cert).unwrap();
        // Issued again, it is replaced (a renewal), not refused.
        issue_server(dir.path(), "cn-shanghai", &names).unwrap();
        assert_ne!(std::fs::read(&cert).unwrap(), first);
        let pem = std::fs::read_to_string(&cert).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
        let parsed = webpki::EndEntityCert::try_from(&der).unwrap();
        for (name, ok) in [
            ("127.0.1.1", true),
            ("::1", true),
            ("shop.example", true),
            ("www.shop.example", true),
            ("cn-shanghai", false),
            ("127.0.0.1", false),
        ] {
            let n = rustls::pki_types::ServerName::try_from(name).unwrap();
            assert_eq!(
                parsed.verify_is_valid_for_subject_name(&n).is_ok(),
                ok,
                "{name}"
            );
        }
        for bad in [vec![], vec!["a b".to_owned()]] {
            assert!(issue_server(dir.path(), "cn-shanghai", &bad).is_err());
        }
    }

    #[test]
    fn init_writes_a_ca_and_node_certificates_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = all_as(
            Role::Core,
            &["cn-shanghai".to_owned(), "us-east".to_owned()],
        );
        init(dir.path(), &nodes).unwrap();
        let secret = read_secret(&dir.path().join(SECRET_FILE)).unwrap();
        assert!(!make_secret(&dir.path().join(SECRET_FILE)).unwrap(), "kept");
        assert_eq!(read_secret(&dir.path().join(SECRET_FILE)).unwrap(), secret);
        assert!(make_secret(&dir.path().join("other.secret")).unwrap());
        assert_ne!(
            read_secret(&dir.path().join("other.secret")).unwrap(),
            secret
        );
        std::fs::write(dir.path().join("bad.secret"), "abc\n").unwrap();
        assert!(read_secret(&dir.path().join("bad.secret")).is_err());
        assert!(read_secret(&dir.path().join("none.secret")).is_err());
        for f in [
            "ca.pem",
            "ca.key",
            SECRET_FILE,
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
        issue_node(dir.path(), "ap-singapore", Role::Core).unwrap();
        assert!(matches!(
            issue_node(dir.path(), "ap-singapore", Role::Edge),
            Err(CertError::Exists(_))
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let (_, key) = issue_server(
                dir.path(),
                "cn-shanghai",
                &["127.0.1.1".into(), "shop.example".into()],
            )
            .unwrap();
            let mode = std::fs::metadata(key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
