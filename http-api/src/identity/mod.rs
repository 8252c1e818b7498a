//! Who a shopper is: an `Authorization: Bearer` JWT issued by the seller's identity provider,
//! verified against the provider's public keys (a JWKS from a file or a URL, kept fresh and
//! re-read when a token names a key it does not hold: the provider rotated), with its issuer,
//! audience, expiry and bounded clock skew checked. The customer and their group come from the
//! token's claims (`settings`: which claims), never from a request's body or query.
//!
//! The signature is checked with the key the token's `kid` names, with that key's own
//! algorithm (`keys`): a token cannot choose `none`, nor HS256 keyed with a public key. A token
//! verified once is remembered (bytes-bounded, until its expiry and at most a minute, forgotten
//! when the keys change), so a shopper's next request costs a lookup, not a signature check.
//!
//! Signatures are checked by ring (`ring_provider`). `issuer` is the mesh's own small
//! provider, for the demo, the drills and tests.

pub mod issuer;
mod keys;
mod ring_provider;
pub use ring_provider::install as use_ring;
mod settings;

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};

pub use keys::{JWKS_MAX_BYTES, KeySet, KeysError};
pub use settings::IdentitySettings;

/// How often a JWKS file is looked at for changes.
const FILE_POLL: Duration = Duration::from_secs(2);
/// A verified token is trusted again without a signature check for at most this long.
const REMEMBERED_MAX: Duration = Duration::from_secs(60);
/// Fetching a JWKS URL may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A verified shopper: the claims the storefront acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The customer claim's value.
    pub customer: String,
    /// The group claim's value, when the token has one.
    pub group: Option<String>,
    /// `exp`, unix seconds.
    pub expires_at: u64,
}

/// Why a token was not believed. Every one is a 401 `invalid-token`; the reason is logged and
/// counted, and told to the client (it says nothing a forger could use).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the Authorization header is not `Bearer <token>`")]
    NotBearer,
    #[error("the token is longer than {0} bytes")]
    TooLarge(usize),
    #[error("the token is not a JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted, or not its key's")]
    Algorithm,
    #[error("the token names no key the identity provider publishes")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token's claim {0:?} is missing or not a short string")]
    Claim(String),
}

impl TokenError {
    /// A short stable name, for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::NotBearer => "not-bearer",
            TokenError::TooLarge(_) => "too-large",
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::UnknownKey => "unknown-key",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not-yet-valid",
            TokenError::Issuer => "issuer",
            TokenError::Audience => "audience",
            TokenError::Claim(_) => "claim",
        }
    }
}

impl fault::Fault for TokenError {
    fn kind(&self) -> fault::Kind {
        fault::Kind::InvalidToken
    }
}

/// Why the verifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("shoppers: {0}")]
    Settings(#[from] util::config::Invalid),
    #[error("shoppers.jwks_file {path}: {what}")]
    File { path: String, what: String },
    #[error("shoppers.jwks_ca: {0}")]
    Client(#[from] crate::client::ClientError),
}

/// Verifies shopper tokens; shared by every request of a storefront.
pub struct Verifier {
    settings: IdentitySettings,
    accepted: Vec<Algorithm>,
    /// One validation per accepted algorithm, built once.
    validations: Vec<(Algorithm, Validation)>,
    keys: RwLock<Arc<KeySet>>,
    /// Where the keys came from, to tell when they change.
    stamp: RwLock<Option<Vec<u8>>>,
    remembered: moka::sync::Cache<Box<str>, Arc<Verified>>,
    /// Moves on before every change of keys: a token checked against keys that changed while it
    /// was checked is not remembered.
    generation: std::sync::atomic::AtomicU64,
    /// Woken when a token names an unknown key: the URL is fetched again (rate-limited).
    unknown_kid: Arc<tokio::sync::Notify>,
    client: Option<reqwest::Client>,
}

/// Extracts the token of an `Authorization: Bearer` header; `None` without the header.
pub fn bearer(headers: &HeaderMap) -> Result<Option<&str>, TokenError> {
    let Some(v) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let v = v.to_str().map_err(|_| TokenError::NotBearer)?;
    let (scheme, token) = v.split_once(' ').ok_or(TokenError::NotBearer)?;
    // RFC 9110 §11.1: the scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(TokenError::NotBearer);
    }
    Ok(Some(token.trim()))
}

impl Verifier {
    /// A verifier with the keys of `settings`: a JWKS file must load now; a URL is fetched by
    /// `watch` (until it answers, every token is refused as naming an unknown key).
    pub fn new(settings: &IdentitySettings) -> Result<Arc<Self>, IdentityError> {
        ring_provider::install();
        settings.check()?;
        let accepted = settings.accepted()?;
        let validations = accepted
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.set_issuer(&[&settings.issuer]);
                v.set_audience(&[&settings.audience]);
                v.set_required_spec_claims(&["exp", "iss", "aud"]);
                v.leeway = settings.leeway_s;
                v.validate_nbf = true;
                (alg, v)
            })
            .collect();
        let client = match &settings.jwks_url {
            Some(_) => Some(
                crate::client::builder(settings.jwks_ca.as_deref())?
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| IdentityError::File {
                        path: "jwks_url".into(),
                        what: e.to_string(),
                    })?,
            ),
            None => None,
        };
        let remembered = moka::sync::Cache::builder()
            .max_capacity(settings.verified_cache_bytes)
            .weigher(weigh)
            .time_to_live(REMEMBERED_MAX)
            .build();
        let v = Verifier {
            settings: settings.clone(),
            accepted,
            validations,
            keys: RwLock::new(Arc::new(KeySet::default())),
            stamp: RwLock::new(None),
            remembered,
            generation: std::sync::atomic::AtomicU64::new(0),
            unknown_kid: Arc::new(tokio::sync::Notify::new()),
            client,
        };
        if let Some(path) = &settings.jwks_file {
            let bytes = read_bounded(path).map_err(|what| IdentityError::File {
                path: path.display().to_string(),
                what,
            })?;
            v.take(&bytes).map_err(|e| IdentityError::File {
                path: path.display().to_string(),
                what: e.to_string(),
            })?;
        }
        Ok(Arc::new(v))
    }

    pub fn settings(&self) -> &IdentitySettings {
        &self.settings
    }

    /// The shopper an `Authorization` header names: `None` without one (an anonymous shopper),
    /// an error when it is there and does not verify (never taken as anonymous).
    pub fn shopper(&self, headers: &HeaderMap) -> Result<Option<Arc<Verified>>, TokenError> {
        match bearer(headers)? {
            None => Ok(None),
            Some(token) => self.verify(token).map(Some),
        }
    }

    /// Verifies one token.
    pub fn verify(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        if token.len() > self.settings.token_max_bytes {
            return Err(TokenError::TooLarge(self.settings.token_max_bytes));
        }
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(v) = self.remembered.get(token) {
            if v.expires_at.saturating_add(self.settings.leeway_s) > now {
                return Ok(v);
            }
            self.remembered.invalidate(token);
            return Err(TokenError::Expired);
        }
        let before = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let verified = Arc::new(self.check(token)?);
        if self.generation.load(std::sync::atomic::Ordering::Acquire) == before {
            self.remembered.insert(token.into(), Arc::clone(&verified));
        }
        Ok(verified)
    }

    /// The signature and the claims, with no memory of tokens seen before.
    pub fn check(&self, token: &str) -> Result<Verified, TokenError> {
        let head = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !self.accepted.contains(&head.alg) {
            return Err(TokenError::Algorithm);
        }
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()));
        let Some(key) = keys.find(head.kid.as_deref(), head.alg) else {
            if head.kid.is_some() {
                self.unknown_kid.notify_one();
            }
            return Err(TokenError::UnknownKey);
        };
        if key.alg != head.alg {
            return Err(TokenError::Algorithm);
        }
        let validation = self
            .validations
            .iter()
            .find(|(alg, _)| *alg == key.alg)
            .map(|(_, v)| v)
            .ok_or(TokenError::Algorithm)?;
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            &key.decoding,
            validation,
        )
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => TokenError::Signature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::ImmatureSignature => TokenError::NotYetValid,
            ErrorKind::InvalidIssuer => TokenError::Issuer,
            ErrorKind::InvalidAudience => TokenError::Audience,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => TokenError::Algorithm,
            ErrorKind::MissingRequiredClaim(c) => TokenError::Claim(c.clone()),
            _ => TokenError::Malformed,
        })?;
        let claims = data.claims;
        let short = |name: &str| -> Result<Option<String>, TokenError> {
            match claims.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 256 => {
                    Ok(Some(s.clone()))
                }
                Some(_) => Err(TokenError::Claim(name.into())),
            }
        };
        let customer = short(&self.settings.customer_claim)?
            .ok_or_else(|| TokenError::Claim(self.settings.customer_claim.clone()))?;
        let group = short(&self.settings.group_claim)?;
        let expires_at = claims
            .get("exp")
            .and_then(|e| e.as_u64())
            .ok_or_else(|| TokenError::Claim("exp".into()))?;
        Ok(Verified {
            customer,
            group,
            expires_at,
        })
    }

    /// Takes a new JWKS document if it loads; the keys in use are kept otherwise. Tokens
    /// verified under the old keys are verified again.
    pub fn take(&self, bytes: &[u8]) -> Result<usize, KeysError> {
        let set = KeySet::parse(bytes, &self.accepted)?;
        let n = set.keys.len();
        // The generation first, the keys next, what was remembered last: a check that read
        // the old keys either sees the generation move and remembers nothing, or remembered
        // before the last step and is forgotten by it.
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
        *self.stamp.write().unwrap_or_else(|p| p.into_inner()) = Some(bytes.to_vec());
        self.remembered.invalidate_all();
        Ok(n)
    }

    /// Reads the JWKS again from where it comes from, if it changed; whether new keys are in
    /// use.
    pub async fn refresh(&self) -> bool {
        let fetched = match (
            &self.settings.jwks_file,
            &self.settings.jwks_url,
            &self.client,
        ) {
            (Some(path), _, _) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_bounded(&path))
                    .await
                    .unwrap_or_else(|e| Err(e.to_string()))
            }
            (None, Some(url), Some(client)) => fetch(client, url).await,
            _ => return false,
        };
        let bytes = match fetched {
            Ok(b) => b,
            Err(what) => {
                tracing::warn!(error = %what, "shopper keys (JWKS) not read; the keys in use are kept");
                return false;
            }
        };
        if self
            .stamp
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_deref()
            == Some(&bytes[..])
        {
            return false;
        }
        match self.take(&bytes) {
            Ok(n) => {
                tracing::info!(keys = n, "shopper keys (JWKS) loaded");
                true
            }
            Err(e) => {
                // Remember it, so a bad document is reported once, not every poll.
                *self.stamp.write().unwrap_or_else(|p| p.into_inner()) = Some(bytes);
                tracing::error!(error = %e, "shopper keys (JWKS) not taken; the keys in use are kept");
                false
            }
        }
    }

    /// Keeps the keys fresh on the current runtime until `self` is dropped (noticed at the next
    /// tick or wake-up): a file is looked at
    /// every 2 s and on SIGHUP; a URL is fetched now, every `jwks_refresh_s`, and when a token
    /// names an unknown key (at most every `jwks_refetch_min_s`).
    pub fn watch(self: &Arc<Self>) {
        let me: Weak<Self> = Arc::downgrade(self);
        let (every, min_gap) = match self.settings.jwks_file {
            Some(_) => (FILE_POLL, FILE_POLL),
            None => (
                Duration::from_secs(self.settings.jwks_refresh_s),
                Duration::from_secs(self.settings.jwks_refetch_min_s),
            ),
        };
        #[cfg(unix)]
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| tracing::warn!(error = %e, "SIGHUP not watched for shopper keys"))
            .ok();
        // The task holds the verifier only while it refreshes, so it ends at its next wake-up
        // once the verifier is dropped.
        let unknown_kid = Arc::clone(&self.unknown_kid);
        tokio::spawn(async move {
            let mut last: Option<Instant> = None;
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = unknown_kid.notified() => {
                        if let Some(at) = last {
                            tokio::time::sleep(min_gap.saturating_sub(at.elapsed())).await;
                        }
                    }
                    Some(()) = async {
                        #[cfg(unix)]
                        if let Some(h) = hup.as_mut() {
                            return h.recv().await;
                        }
                        std::future::pending().await
                    } => {}
                }
                let Some(v) = me.upgrade() else { return };
                last = Some(Instant::now());
                v.refresh().await;
            }
        });
    }
}

/// What a remembered token costs: its bytes, and about as much again for its claims.
#[allow(clippy::borrowed_box)] // moka's weigher takes the key as stored.
fn weigh(token: &Box<str>, _: &Arc<Verified>) -> u32 {
    u32::try_from(token.len() + 128).unwrap_or(u32::MAX)
}

/// A JWKS file, refused past `JWKS_MAX_BYTES` without reading it all.
fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    f.take(JWKS_MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() > JWKS_MAX_BYTES {
        return Err(format!("more than {JWKS_MAX_BYTES} bytes"));
    }
    Ok(bytes)
}

/// A JWKS URL's document, refused past `JWKS_MAX_BYTES` without reading it all.
async fn fetch(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let mut res = client
        .get(url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() + chunk.len() > JWKS_MAX_BYTES {
            return Err(format!("more than {JWKS_MAX_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}
