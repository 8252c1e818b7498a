//! A small identity provider of the mesh's own, for the demo, the drills and tests: an Ed25519
//! signing key (`shoppers.key`, PKCS#8 PEM, 0600) and the JWKS that publishes its public half
//! with the keys used before it (`shoppers.jwks.json`, the newest four), so that rotating the
//! key (`rotate`) keeps tokens signed before valid until they expire, across up to three later
//! rotations. A seller's real provider (Auth0, Keycloak, Cognito, ...) takes its place in
//! production, verified the same way; its customer claim must then be a customer id (1 to 64
//! of `A-Z a-z 0-9 . _ : -`), or `shoppers.customer_claim` must name a claim that is.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};

/// The issuer and audience the demo's tokens and edges use.
pub const DEMO_ISSUER: &str = "https://id.tradewind.example/";
pub const DEMO_AUDIENCE: &str = "tradewind-storefront";

/// Public keys kept in the JWKS after rotations (the newest first).
const KEYS_KEPT: usize = 4;

/// Why the issuer could not do its work.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not an Ed25519 private key in PKCS#8 PEM")]
    BadKey(PathBuf),
    #[error("{0}: the key set is not one this issuer wrote")]
    BadKeySet(PathBuf),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// The signing key of a directory, and what tokens it signs say.
pub struct Issuer {
    key: EncodingKey,
    kid: String,
    issuer: String,
    audience: String,
}

/// Where the issuer keeps its files in `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("shoppers.key")
}
pub fn jwks_path(dir: &Path) -> PathBuf {
    dir.join("shoppers.jwks.json")
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IssuerError + '_ {
    move |source| IssuerError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A new key pair: its private half as PEM, and its public half as a JWK.
fn generate() -> Result<(String, serde_json::Value), IssuerError> {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map_err(|e| IssuerError::Sign(e.to_string()))?;
    let jwk = public_jwk(&pair);
    Ok((pair.serialize_pem(), jwk))
}

fn public_jwk(pair: &rcgen::KeyPair) -> serde_json::Value {
    let x = pair.public_key_raw();
    serde_json::json!({
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
        "kid": kid_of(x), "x": URL_SAFE_NO_PAD.encode(x),
    })
}

/// A key's id: the start of its public key's SHA-256, so the same key always has the same id.
fn kid_of(public: &[u8]) -> String {
    Sha256::digest(public)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates the signing key and its JWKS in `dir` unless they are there; the JWKS's path.
pub fn init(dir: &Path) -> Result<PathBuf, IssuerError> {
    let (key, jwks) = (key_path(dir), jwks_path(dir));
    if key.exists() && jwks.exists() {
        return Ok(jwks);
    }
    let (pem, jwk) = generate()?;
    let set = serde_json::json!({ "keys": [jwk] });
    util::files::write_new(&key, pem.as_bytes(), true).map_err(io(&key))?;
    util::files::replace(&jwks, set.to_string().as_bytes(), false).map_err(io(&jwks))?;
    Ok(jwks)
}

/// A new signing key in `dir`: its public half joins the JWKS first (so verifiers that read
/// the set before the first token signed with it know it), then it replaces the old key. The
/// newest `KEYS_KEPT` public keys stay published.
pub fn rotate(dir: &Path) -> Result<String, IssuerError> {
    let (key, jwks) = (key_path(dir), jwks_path(dir));
    let text = std::fs::read(&jwks).map_err(io(&jwks))?;
    let mut set: serde_json::Value =
        serde_json::from_slice(&text).map_err(|_| IssuerError::BadKeySet(jwks.clone()))?;
    let keys = set
        .get_mut("keys")
        .and_then(|k| k.as_array_mut())
        .ok_or_else(|| IssuerError::BadKeySet(jwks.clone()))?;
    let (pem, jwk) = generate()?;
    let kid = jwk["kid"].as_str().unwrap_or_default().to_owned();
    keys.insert(0, jwk);
    keys.truncate(KEYS_KEPT);
    util::files::replace(&jwks, set.to_string().as_bytes(), false).map_err(io(&jwks))?;
    util::files::replace(&key, pem.as_bytes(), true).map_err(io(&key))?;
    Ok(kid)
}

/// What a shopper token says.
#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    customer_group: Option<&'a str>,
    iat: u64,
    exp: u64,
}

impl std::fmt::Debug for Issuer {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// The issuer of `dir`'s key, signing for `issuer` and `audience`.
    pub fn load(dir: &Path, issuer: &str, audience: &str) -> Result<Self, IssuerError> {
        let path = key_path(dir);
        let pem = std::fs::read_to_string(&path).map_err(io(&path))?;
        let pair = rcgen::KeyPair::from_pem(&pem).map_err(|_| IssuerError::BadKey(path.clone()))?;
        if pair.algorithm() != &rcgen::PKCS_ED25519 {
            return Err(IssuerError::BadKey(path));
        }
        Ok(Issuer {
            key: EncodingKey::from_ed_der(&pair.serialize_der()),
            kid: kid_of(pair.public_key_raw()),
            issuer: issuer.into(),
            audience: audience.into(),
        })
    }

    /// The demo's issuer in `dir`.
    pub fn demo(dir: &Path) -> Result<Self, IssuerError> {
        Issuer::load(dir, DEMO_ISSUER, DEMO_AUDIENCE)
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// A token for `customer` (in `group`, if any), valid for `ttl_s` from `now_s` (unix
    /// seconds).
    pub fn sign(
        &self,
        customer: &str,
        group: Option<&str>,
        now_s: u64,
        ttl_s: u64,
    ) -> Result<String, IssuerError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: customer,
            customer_group: group,
            iat: now_s,
            exp: now_s.saturating_add(ttl_s),
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| IssuerError::Sign(e.to_string()))
    }
}
