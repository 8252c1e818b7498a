//! TLS 1.3 for a listener: rustls with the ring provider, HTTP/2 and HTTP/1.1 offered by ALPN,
//! and a certificate that can be replaced while the listener runs. The pair of files is read
//! again when either file's size or modification time changes (checked every `POLL`), and on
//! SIGHUP; handshakes after that use the new pair, connections already open keep theirs. A pair
//! that fails to load (a half-copied file, a key of another certificate) is logged and the
//! pair in use is kept, so a botched rotation never takes a listener down.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the files are looked at.
const POLL: Duration = Duration::from_secs(2);
/// Largest certificate or key file read (a chain of a few certificates is a few KiB).
const FILE_MAX_BYTES: u64 = 1024 * 1024;

/// The ALPN protocols offered, preferred first.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a certificate and key did not load.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {what}")]
    File { path: PathBuf, what: String },
    #[error("{cert} and {key}: {what}")]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        what: String,
    },
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The (size, modification time) of each file: what tells that one changed.
type Stamp = [(u64, Option<SystemTime>); 2];

fn stamp(cert: &Path, key: &Path) -> Option<Stamp> {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    Some([one(cert)?, one(key)?])
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::io::Read;
    let fail = |what: String| TlsError::File {
        path: path.to_path_buf(),
        what,
    };
    let f = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    f.take(FILE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(e.to_string()))?;
    if bytes.len() as u64 > FILE_MAX_BYTES {
        return Err(fail(format!("larger than {FILE_MAX_BYTES} bytes")));
    }
    Ok(bytes)
}

/// Reads a PEM chain and its key, and checks that the key is the leaf's.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&read_bounded(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::File {
            path: cert.to_path_buf(),
            what: format!("not a PEM certificate chain: {e}"),
        })?;
    if chain.is_empty() {
        return Err(TlsError::File {
            path: cert.to_path_buf(),
            what: "no certificate in it".into(),
        });
    }
    let der = PrivateKeyDer::from_pem_slice(&read_bounded(key)?).map_err(|e| TlsError::File {
        path: key.to_path_buf(),
        what: format!("not a PEM private key: {e}"),
    })?;
    CertifiedKey::from_der(chain, der, &provider()).map_err(|e| TlsError::Pair {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        what: e.to_string(),
    })
}

/// The certificate in use, replaced when the files change.
#[derive(Debug)]
pub struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<CertifiedKey>, Option<Stamp>)>,
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|p| p.into_inner()).0,
        ))
    }
}

impl Reloading {
    /// Loads the pair; an error here stops the listener from starting.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Self>, TlsError> {
        let at = stamp(cert, key);
        let pair = load_pair(cert, key)?;
        Ok(Arc::new(Reloading {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((Arc::new(pair), at)),
        }))
    }

    /// Reads the files again if they changed since the last load (or always, when `force`);
    /// whether a new pair is now in use.
    pub fn reload(&self, force: bool) -> bool {
        let at = stamp(&self.cert, &self.key);
        if !force && at == self.current.read().unwrap_or_else(|p| p.into_inner()).1 {
            return false;
        }
        match load_pair(&self.cert, &self.key) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(pair), at);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                // Remember the stamp so a bad pair is reported once, not every poll.
                self.current.write().unwrap_or_else(|p| p.into_inner()).1 = at;
                tracing::error!(error = %e, "TLS certificate not reloaded; the one in use is kept");
                false
            }
        }
    }

    /// Watches the files and SIGHUP on the current runtime until `self` is dropped. The
    /// signal is taken before this returns, so a SIGHUP sent once the listener is up never
    /// meets the default action (which ends the process).
    pub fn watch(self: &Arc<Self>) {
        let me: Weak<Self> = Arc::downgrade(self);
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(
                |e| tracing::warn!(error = %e, "SIGHUP not watched; certificate files still are"),
            )
            .ok();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                #[cfg(unix)]
                let force = tokio::select! {
                    _ = tick.tick() => false,
                    Some(()) = async {
                        match hup.as_mut() {
                            Some(h) => h.recv().await,
                            None => std::future::pending().await,
                        }
                    } => true,
                };
                #[cfg(not(unix))]
                let force = {
                    tick.tick().await;
                    false
                };
                let Some(me) = me.upgrade() else { return };
                // Reading files blocks; they are small and this is rare.
                let _ = tokio::task::spawn_blocking(move || me.reload(force)).await;
            }
        });
    }
}

/// The server side of TLS: TLS 1.3 only, ALPN h2 and http/1.1, the certificate from `certs`.
pub fn server_config(certs: Arc<Reloading>) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    // Stateless resumption: a returning client skips the certificate and key exchange.
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}
