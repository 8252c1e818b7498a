//! Certificates the deployment no longer trusts, though its CA signed them: `revoked.txt` in the
//! certificate directory, one entry per line: a node name (every certificate of that node: it
//! was decommissioned or taken over) or `sha256:<64 hex digits>` (one certificate, by the
//! SHA-256 of its DER: a leaked key, the node given a new certificate). `#` starts a comment.
//! The file is read again when it changes; a node refuses connections from a revoked peer,
//! closes those it has, and makes none to it (`transport`). A file that does not load is
//! logged and the list in use is kept; no file is an empty list.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use crate::certs::check_node_name;

/// Entries in the list, at most.
pub const ENTRIES_MAX: usize = 100_000;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct List {
    names: HashSet<String>,
    certs: HashSet<[u8; 32]>,
}

/// The list in use, and what the file was when it was read.
#[derive(Debug)]
pub struct Revoked {
    path: PathBuf,
    current: RwLock<(List, Option<(SystemTime, u64)>)>,
}

/// Why a list did not load.
#[derive(Debug, thiserror::Error)]
pub enum RevokedError {
    #[error("{path}: {why}")]
    Io { path: String, why: String },
    #[error("{path}:{line}: {why}")]
    Entry {
        path: String,
        line: usize,
        why: String,
    },
}

/// The SHA-256 of a certificate's DER, as entries name it.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let mut fp = [0u8; 32];
    fp.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, der).as_ref());
    fp
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn parse(path: &Path, text: &str) -> Result<List, RevokedError> {
    let mut list = List::default();
    for (i, raw) in text.lines().enumerate() {
        let entry = raw.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let bad = |why: String| RevokedError::Entry {
            path: path.display().to_string(),
            line: i + 1,
            why,
        };
        if list.names.len() + list.certs.len() >= ENTRIES_MAX {
            return Err(bad(format!("more than {ENTRIES_MAX} entries")));
        }
        match entry.strip_prefix("sha256:") {
            Some(hex) => {
                let bytes: Vec<u8> = (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                    })
                    .collect::<Option<_>>()
                    .filter(|b: &Vec<u8>| b.len() == 32)
                    .ok_or_else(|| bad("sha256: takes 64 hex digits".into()))?;
                let mut fp = [0u8; 32];
                fp.copy_from_slice(&bytes);
                list.certs.insert(fp);
            }
            None => {
                check_node_name(entry).map_err(|e| bad(e.to_string()))?;
                list.names.insert(entry.to_owned());
            }
        }
    }
    Ok(list)
}

fn read(path: &Path) -> Result<List, RevokedError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(List::default()),
        Err(e) => Err(RevokedError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        }),
    }
}

impl Revoked {
    /// The list of `dir` (its `revoked.txt`); an error here stops the node from starting.
    pub fn load(dir: &Path) -> Result<Self, RevokedError> {
        let path = dir.join("revoked.txt");
        let at = stamp(&path);
        let list = read(&path)?;
        Ok(Revoked {
            path,
            current: RwLock::new((list, at)),
        })
    }

    /// Reads the file again if it changed; whether a new list is in use.
    pub fn reload(&self) -> bool {
        let at = stamp(&self.path);
        if at == self.current.read().unwrap_or_else(|p| p.into_inner()).1 {
            return false;
        }
        match read(&self.path) {
            Ok(list) => {
                let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
                let changed = current.0 != list;
                *current = (list, at);
                if changed {
                    tracing::info!(path = %self.path.display(), "revoked certificates reloaded");
                }
                changed
            }
            Err(e) => {
                // Remembered, so a bad file is reported once, not every poll.
                self.current.write().unwrap_or_else(|p| p.into_inner()).1 = at;
                tracing::error!(error = %e, "revoked certificates not reloaded; the list in use is kept");
                false
            }
        }
    }

    /// Whether the node `name` presenting the certificate `leaf` (DER) is revoked.
    pub fn revokes(&self, name: &str, leaf: &[u8]) -> bool {
        self.revokes_fingerprint(name, &fingerprint(leaf))
    }

    /// `revokes`, for a certificate's fingerprint.
    pub fn revokes_fingerprint(&self, name: &str, fp: &[u8; 32]) -> bool {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        current.0.names.contains(name) || current.0.certs.contains(fp)
    }
}

/// The entry that revokes the certificate (PEM) at `path`: `sha256:` and its digest.
pub fn entry_of_cert(path: &Path) -> Result<String, RevokedError> {
    use rustls::pki_types::pem::PemObject;
    let der =
        rustls::pki_types::CertificateDer::from_pem_file(path).map_err(|e| RevokedError::Io {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
    let hex: String = fingerprint(&der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256:{hex}"))
}

/// Adds `entry` (a node name, or `sha256:` and a certificate's digest) to the list of `dir`,
/// replacing the file whole so that a node never reads half of it.
pub fn revoke(dir: &Path, entry: &str) -> Result<(), RevokedError> {
    let path = dir.join("revoked.txt");
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(RevokedError::Io {
                path: path.display().to_string(),
                why: e.to_string(),
            });
        }
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(entry.trim());
    text.push('\n');
    parse(&path, &text)?;
    util::files::replace(&path, text.as_bytes(), false).map_err(|e| RevokedError::Io {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_digests_are_read_and_bad_lines_refused() {
        let dir = tempfile::tempdir().unwrap();
        let r = Revoked::load(dir.path()).unwrap();
        assert!(!r.revokes("sg-edge-1", b"cert"));
        revoke(dir.path(), "sg-edge-1").unwrap();
        let digest: String = fingerprint(b"other cert")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        revoke(dir.path(), &format!("sha256:{digest}")).unwrap();
        // A certificate file names itself by its digest.
        crate::certs::init(dir.path(), &[("us-east".into(), crate::certs::Role::Core)]).unwrap();
        let entry = entry_of_cert(&dir.path().join("us-east.pem")).unwrap();
        assert!(
            entry.starts_with("sha256:") && entry.len() == 7 + 64,
            "{entry}"
        );
        assert!(r.reload());
        assert!(r.revokes("sg-edge-1", b"anything"));
        assert!(r.revokes("us-east", b"other cert"));
        assert!(!r.revokes("us-east", b"cert"));
        for bad in ["sha256:zz", "not a name", "sha256:00"] {
            assert!(revoke(dir.path(), bad).is_err(), "{bad}");
        }
        // A broken file keeps the list in use.
        std::fs::write(dir.path().join("revoked.txt"), "sg-edge-1\nbad name here\n").unwrap();
        assert!(!r.reload());
        assert!(r.revokes("us-east", b"other cert"));
    }
}
