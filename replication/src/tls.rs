//! TLS for the mesh: TLS 1.3 only, the ring provider, mutual authentication against the
//! deployment CA. A peer's identity is the one DNS name of its CA-signed certificate, and its
//! role the one SPIFFE id beside it (`certs::Role`).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::certs::{CertError, Role, check_node_name};

/// The ALPN protocol of the mesh: a peer speaking anything else is refused in the handshake.
pub const ALPN: &[u8] = b"tradewind-mesh/1";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{path}: {why}")]
    Pem { path: String, why: String },
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// One node's credentials: the CA it trusts, its certificate and key, and its name.
#[derive(Clone, Debug)]
pub struct NodeTls {
    pub node: String,
    /// The certificate directory: where the list of revoked certificates is (`revoked`).
    pub dir: std::path::PathBuf,
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: Arc<PrivateKeyDer<'static>>,
}

fn pem_err(path: &Path, e: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        path: path.display().to_string(),
        why: e.to_string(),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Loads `ca.pem`, `<node>.pem` and `<node>.key` from a certificate directory.
    pub fn load(dir: &Path, node: &str) -> Result<Self, TlsError> {
        check_node_name(node)?;
        let ca_path = dir.join("ca.pem");
        let cert_path = dir.join(format!("{node}.pem"));
        let key_path = dir.join(format!("{node}.key"));
        Ok(NodeTls {
            node: node.to_owned(),
            dir: dir.to_path_buf(),
            ca: CertificateDer::from_pem_file(&ca_path).map_err(|e| pem_err(&ca_path, e))?,
            cert: CertificateDer::from_pem_file(&cert_path).map_err(|e| pem_err(&cert_path, e))?,
            key: Arc::new(
                PrivateKeyDer::from_pem_file(&key_path).map_err(|e| pem_err(&key_path, e))?,
            ),
        })
    }

    /// A secret of this node's for `purpose`, derived from its private key: the same in every
    /// process that runs as this node, known to no other.
    fn derived_secret(&self, purpose: &[u8]) -> ring::hmac::Tag {
        let node_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, self.key.secret_der());
        ring::hmac::sign(&node_key, purpose)
    }

    /// The key this node's QUIC stateless resets are made with, and the key its connection ids
    /// are checked with. Both are the same in every process that runs as this node, so one
    /// restarted on the same address recognises the connections its previous process had and
    /// resets them: a peer still holding one learns at its next packet that it is gone, instead
    /// of calling into it until the idle timeout.
    pub fn restart_keys(&self) -> (ring::hmac::Key, u64) {
        let reset = self.derived_secret(b"tradewind quic stateless reset key");
        let cid = self.derived_secret(b"tradewind quic connection id key");
        let mut cid_key = [0u8; 8];
        cid_key.copy_from_slice(&cid.as_ref()[..8]);
        (
            ring::hmac::Key::new(ring::hmac::HMAC_SHA256, reset.as_ref()),
            u64::from_le_bytes(cid_key),
        )
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    /// The server side: demands a client certificate signed by the CA.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider())
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The client side: trusts only the CA and presents this node's certificate.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

/// The node name a verified peer certificate carries: its single DNS subject alternative name.
/// Called only on certificates the TLS handshake has already verified against the CA.
pub fn peer_name(chain: &[CertificateDer<'_>]) -> Option<String> {
    let leaf = chain.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    let mut names = cert.valid_dns_names();
    let name = names.next()?;
    if names.next().is_some() || check_node_name(name).is_err() {
        return None;
    }
    Some(name.to_owned())
}

/// Who a verified peer is: its node name, and the role its certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub name: std::sync::Arc<str>,
    /// `None` for a certificate issued before roles: its peer is served as one was then.
    pub role: Option<Role>,
}

impl Peer {
    /// The peer a verified certificate chain names, or `None` when it names no usable node, or
    /// a role that is not this node's (a URI that is not the node's SPIFFE id, or more than one).
    pub fn of(chain: &[CertificateDer<'_>]) -> Option<Peer> {
        let name = peer_name(chain)?;
        let role = match spiffe_ids(chain.first()?)?.as_slice() {
            [] => None,
            [uri] => Some(Role::of_spiffe_id(uri, &name)?),
            _ => return None,
        };
        Some(Peer {
            name: name.into(),
            role,
        })
    }
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// The role `<node>.pem` in `dir` names, or `None` for a certificate made before roles.
pub fn role_of(dir: &std::path::Path, node: &str) -> Result<Option<Role>, CertError> {
    let path = dir.join(format!("{node}.pem"));
    let cert = CertificateDer::from_pem_file(&path).map_err(|e| CertError::Io {
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    Peer::of(&[cert])
        .map(|p| p.role)
        .ok_or_else(|| CertError::BadName(format!("{}: no node certificate", path.display())))
}

/// The URI subject alternative names of a certificate, or `None` if it cannot be read.
fn spiffe_ids(leaf: &CertificateDer<'_>) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let Ok(san) = cert.subject_alternative_name() else {
        return None;
    };
    Some(
        san.map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default(),
    )
}
