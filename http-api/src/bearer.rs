//! Bearer tokens for the mesh's operator APIs (a core's admin API, the fault proxy's). The
//! config holds only SHA-256 digests of the tokens, so a leaked config file does not leak a
//! usable token; a presented token is hashed and compared with every digest in constant time,
//! so timing says nothing about how close a guess was. Tokens are long random strings
//! (`tradewind token new`, `tradewind token create`), so a fast hash is enough: there is
//! nothing to brute-force that a slow hash would protect.
//!
//! A token may be limited to some scopes (`Scope`) and to a time (`ScopedToken`), and has an
//! id that the audit log and refusals name it by.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The digest of the token the examples and README use (`tw_example_change_me`): known to
/// everyone, so a config holding it is taken only for a listener on loopback.
pub const EXAMPLE_TOKEN_SHA256: &str =
    "bf66fea1902142a38bbd8b051e659eb8f38873d6e8945a5a753826581fa74ceb";

/// Length of a generated token's random part, in bytes (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

/// What an admin token may do. Each admin route needs one scope (`core-region/src/api/mod.rs`
/// has the table); a token listed in `token_sha256` has them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Scope {
    /// Products, markets, price lists, promotions: reading and writing them.
    #[serde(rename = "catalog")]
    Catalog,
    /// Prices and quotes.
    #[serde(rename = "prices")]
    Prices,
    /// Stock, inventory and escrow grants.
    #[serde(rename = "stock")]
    Stock,
    /// Reading orders.
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Placing orders and committing an edge's (as an edge would).
    #[serde(rename = "orders")]
    Orders,
    /// Adding and removing regions of the group.
    #[serde(rename = "cluster")]
    Cluster,
    /// Reading the audit log.
    #[serde(rename = "audit")]
    Audit,
    /// Erasing a customer's personal data.
    #[serde(rename = "personal-data")]
    PersonalData,
    /// Purging what a region's cache holds.
    #[serde(rename = "purge")]
    Purge,
    /// Taking a backup of a core's whole store (personal data in it stays sealed).
    #[serde(rename = "backup")]
    Backup,
}

impl Scope {
    pub const ALL: [Scope; 10] = [
        Scope::Catalog,
        Scope::Prices,
        Scope::Stock,
        Scope::OrdersRead,
        Scope::Orders,
        Scope::Cluster,
        Scope::Audit,
        Scope::PersonalData,
        Scope::Purge,
        Scope::Backup,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Catalog => "catalog",
            Scope::Prices => "prices",
            Scope::Stock => "stock",
            Scope::OrdersRead => "orders:read",
            Scope::Orders => "orders",
            Scope::Cluster => "cluster",
            Scope::Audit => "audit",
            Scope::PersonalData => "personal-data",
            Scope::Purge => "purge",
            Scope::Backup => "backup",
        }
    }

    fn bit(self) -> u16 {
        1 << Scope::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }
}

impl std::str::FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scope::ALL.iter().map(|x| x.name()).collect();
                format!("{s:?} is not a scope ({})", names.join(", "))
            })
    }
}

/// A token with scopes and, if it has one, an expiry: `[[admin.tokens]]` in a core's config
/// (`tradewind token create` prints one).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopedToken {
    /// Names the token in the audit log and in refusals (never the token itself).
    pub id: String,
    /// The token's SHA-256 (hex).
    pub sha256: String,
    pub scopes: Vec<Scope>,
    /// Unix ms past which it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

#[derive(Clone, Debug)]
struct Known {
    digest: [u8; 32],
    id: String,
    scopes: u16,
    expires_at_ms: Option<i64>,
}

/// The tokens an API lets in.
#[derive(Clone, Debug)]
pub struct TokenSet {
    known: Vec<Known>,
}

/// Why a configured token is unusable.
#[derive(Debug, thiserror::Error)]
pub enum BadToken {
    #[error("admin token digest {0:?} is not 64 hex digits (a SHA-256)")]
    Digest(String),
    #[error(
        "admin token id {0:?}: 1 to 64 characters of letters, digits, '-', '_', '.', ':', once each"
    )]
    Id(String),
    #[error("admin token {0:?} has no scope")]
    NoScope(String),
    #[error("admin token digest {0} is listed twice: which scopes would it have?")]
    Twice(String),
}

/// Why a request's token does not let it in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("send Authorization: Bearer <admin token>")]
    Unknown,
    #[error("admin token {id} expired")]
    Expired { id: String },
    #[error("admin token {id} does not have the {needed} scope this route needs", needed = needed.name())]
    Scope { id: String, needed: Scope },
}

impl fault::Fault for Denied {
    fn kind(&self) -> fault::Kind {
        match self {
            Denied::Unknown | Denied::Expired { .. } => fault::Kind::Unauthorized,
            Denied::Scope { .. } => fault::Kind::InsufficientScope,
        }
    }
}

pub fn sha256_hex(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

impl TokenSet {
    /// Tokens of every scope, by digest, without expiry (`admin.token_sha256`, the fault
    /// proxy's `token_sha256`); each is named by the start of its digest.
    pub fn from_hex(digests: &[String]) -> Result<Self, BadToken> {
        TokenSet::new(digests, &[])
    }

    /// Full tokens by digest, and scoped ones.
    pub fn new(digests: &[String], scoped: &[ScopedToken]) -> Result<Self, BadToken> {
        let bad = |d: &str| BadToken::Digest(d.chars().take(80).collect());
        let mut known = Vec::with_capacity(digests.len() + scoped.len());
        for d in digests {
            known.push(Known {
                digest: unhex(d).ok_or_else(|| bad(d))?,
                id: format!("sha256:{}", &d[..8]),
                scopes: u16::MAX,
                expires_at_ms: None,
            });
        }
        let mut ids = std::collections::HashSet::new();
        for t in scoped {
            // `sha256:` names the full tokens: a scoped one may not pass for one in the audit log.
            if !valid_id(&t.id) || t.id.starts_with("sha256:") || !ids.insert(t.id.as_str()) {
                return Err(BadToken::Id(t.id.chars().take(80).collect()));
            }
            if t.scopes.is_empty() {
                return Err(BadToken::NoScope(t.id.clone()));
            }
            known.push(Known {
                digest: unhex(&t.sha256).ok_or_else(|| bad(&t.sha256))?,
                id: t.id.clone(),
                scopes: t.scopes.iter().fold(0, |b, s| b | s.bit()),
                expires_at_ms: t.expires_at_ms,
            });
        }
        let mut digests = std::collections::HashSet::new();
        if let Some(k) = known.iter().find(|k| !digests.insert(k.digest)) {
            return Err(BadToken::Twice(hex(&k.digest[..4])));
        }
        Ok(TokenSet { known })
    }

    /// The entry `token` is, comparing against every digest.
    fn find(&self, token: &str) -> Option<&Known> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for k in &self.known {
            // Every digest is compared, whatever matched before.
            if bool::from(k.digest.ct_eq(&presented)) {
                found = Some(k);
            }
        }
        found
    }

    /// Whether `token` is one of ours (of any scope, unexpired or not).
    pub fn accepts(&self, token: &str) -> bool {
        self.find(token).is_some()
    }

    /// Checks an `Authorization` header value.
    pub fn accepts_header(&self, value: Option<&str>) -> bool {
        match value.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) => self.accepts(token.trim()),
            None => false,
        }
    }

    /// The id of the token an `Authorization` header presents, if it may act in `needed` (any
    /// token, for `None`) at `now_ms`.
    pub fn authorize(
        &self,
        header: Option<&str>,
        needed: Option<Scope>,
        now_ms: i64,
    ) -> Result<&str, Denied> {
        let token = header
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(Denied::Unknown)?;
        let k = self.find(token.trim()).ok_or(Denied::Unknown)?;
        if k.expires_at_ms.is_some_and(|at| now_ms >= at) {
            return Err(Denied::Expired { id: k.id.clone() });
        }
        match needed {
            Some(scope) if k.scopes & scope.bit() == 0 => Err(Denied::Scope {
                id: k.id.clone(),
                needed: scope,
            }),
            _ => Ok(&k.id),
        }
    }
}

/// The tokens of an operator API's config (`token_sha256` and `tokens`), checked as every
/// such config checks them: at least one, each well formed, and the example token taken only
/// on a loopback address (`listen`).
pub fn admin_tokens(
    digests: &[String],
    scoped: &[ScopedToken],
    listen: std::net::SocketAddr,
) -> Result<TokenSet, String> {
    if digests.is_empty() && scoped.is_empty() {
        return Err("token_sha256 and tokens are empty: no one could use the API".into());
    }
    let set = TokenSet::new(digests, scoped).map_err(|e| e.to_string())?;
    let example = digests
        .iter()
        .chain(scoped.iter().map(|t| &t.sha256))
        .any(|d| d.eq_ignore_ascii_case(EXAMPLE_TOKEN_SHA256));
    if example && !listen.ip().is_loopback() {
        return Err(format!(
            "token_sha256: the example token is public and is taken on a loopback address only, and {listen} is not one: make a token of your own (`tradewind token new`)"
        ));
    }
    Ok(set)
}

/// A new random token (`tw_` and 64 hex digits) and its digest for the config.
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; TOKEN_RANDOM_BYTES];
    rand::fill(&mut raw);
    let token = format!("tw_{}", hex(&raw));
    let digest = sha256_hex(&token);
    (token, digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_digest_is_the_example_tokens() {
        assert_eq!(sha256_hex("tw_example_change_me"), EXAMPLE_TOKEN_SHA256);
    }

    #[test]
    fn scoped_tokens_act_only_in_their_scopes_and_until_they_expire() {
        let (full, full_digest) = new_token();
        let (prices, prices_digest) = new_token();
        let (old, old_digest) = new_token();
        let set = TokenSet::new(
            &[full_digest],
            &[
                ScopedToken {
                    id: "pricing-bot".into(),
                    sha256: prices_digest,
                    scopes: vec![Scope::Prices, Scope::OrdersRead],
                    expires_at_ms: None,
                },
                ScopedToken {
                    id: "old".into(),
                    sha256: old_digest,
                    scopes: vec![Scope::Catalog],
                    expires_at_ms: Some(1_000),
                },
            ],
        )
        .unwrap();
        let h = |t: &str| format!("Bearer {t}");
        for scope in Scope::ALL {
            assert!(set.authorize(Some(&h(&full)), Some(scope), 0).is_ok());
        }
        assert_eq!(
            set.authorize(Some(&h(&prices)), Some(Scope::Prices), 0),
            Ok("pricing-bot")
        );
        assert_eq!(
            set.authorize(Some(&h(&prices)), Some(Scope::Cluster), 0),
            Err(Denied::Scope {
                id: "pricing-bot".into(),
                needed: Scope::Cluster
            })
        );
        assert_eq!(
            set.authorize(Some(&h(&old)), Some(Scope::Catalog), 999),
            Ok("old")
        );
        assert_eq!(
            set.authorize(Some(&h(&old)), Some(Scope::Catalog), 1_000),
            Err(Denied::Expired { id: "old".into() })
        );
        assert_eq!(
            set.authorize(Some("Bearer nope"), None, 0),
            Err(Denied::Unknown)
        );
        assert_eq!(set.authorize(None, None, 0), Err(Denied::Unknown));
        // Ids are names, once each; a token has a scope.
        let scoped = |id: &str, scopes: Vec<Scope>| ScopedToken {
            id: id.into(),
            sha256: sha256_hex("x"),
            scopes,
            expires_at_ms: None,
        };
        assert!(TokenSet::new(&[], &[scoped("a b", vec![Scope::Audit])]).is_err());
        assert!(TokenSet::new(&[], &[scoped("sha256:89a7f7e2", vec![Scope::Audit])]).is_err());
        assert!(TokenSet::new(&[], &[scoped("a", vec![])]).is_err());
        assert!(
            TokenSet::new(
                &[],
                &[
                    scoped("a", vec![Scope::Audit]),
                    scoped("a", vec![Scope::Stock])
                ]
            )
            .is_err()
        );
        // One token, two entries: refused rather than guessed at.
        assert!(matches!(
            TokenSet::new(&[sha256_hex("x")], &[scoped("a", vec![Scope::Audit])]),
            Err(BadToken::Twice(_))
        ));
        assert_eq!("orders:read".parse::<Scope>(), Ok(Scope::OrdersRead));
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn accepts_only_configured_tokens() {
        let (token, digest) = new_token();
        let set = TokenSet::from_hex(&[digest, sha256_hex("other")]).unwrap();
        assert!(set.accepts(&token));
        assert!(set.accepts("other"));
        assert!(!set.accepts("wrong"));
        assert!(!set.accepts(""));
        assert!(set.accepts_header(Some(&format!("Bearer {token}"))));
        assert!(!set.accepts_header(Some(&token)));
        assert!(!set.accepts_header(Some("Basic abc")));
        assert!(!set.accepts_header(None));
        assert!(TokenSet::from_hex(&["zz".into()]).is_err());
        assert!(TokenSet::from_hex(&["g".repeat(64)]).is_err());
    }
}
