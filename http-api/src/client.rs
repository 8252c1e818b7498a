//! How the mesh's own tools (the CLI, the demo, the drills, the router's health checks) reach
//! its HTTPS APIs: a client that trusts the deployment's CA (`ca.pem` of `tradewind certs`).

use std::path::Path;

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("CA certificates {path}: {what}")]
    Ca { path: String, what: String },
}

/// A client builder that trusts the certificates in the PEM file at `ca` (and no other root).
pub fn trusting(ca: &Path) -> Result<reqwest::ClientBuilder, ClientError> {
    let fail = |what: String| ClientError::Ca {
        path: ca.display().to_string(),
        what,
    };
    let pem = std::fs::read(ca).map_err(|e| fail(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
    if roots.is_empty() {
        return Err(fail("no certificate in it".into()));
    }
    Ok(roots
        .into_iter()
        .fold(reqwest::Client::builder(), |b, c| b.add_root_certificate(c))
        .tls_built_in_root_certs(false))
}

/// A client builder that trusts `ca` when given, for URLs that may be `http` or `https`.
pub fn builder(ca: Option<&Path>) -> Result<reqwest::ClientBuilder, ClientError> {
    match ca {
        Some(ca) => trusting(ca),
        None => Ok(reqwest::Client::builder()),
    }
}
