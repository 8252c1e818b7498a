//! Bearer tokens for the mesh's operator APIs (a core's admin API, the fault proxy's). The config holds only SHA-256 digests of the tokens, so a
//! leaked config file does not leak a usable token; a presented token is hashed and compared
//! with every digest in constant time, so timing says nothing about how close a guess was.
//! Tokens are long random strings (`tradewind token new`), so a fast hash is enough: there is
//! nothing to brute-force that a slow hash would protect.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The digest of the token the examples and README use (`tw_example_change_me`): known to
/// everyone, so a config holding it is taken only for a listener on loopback.
pub const EXAMPLE_TOKEN_SHA256: &str =
    "bf66fea1902142a38bbd8b051e659eb8f38873d6e8945a5a753826581fa74ceb";

/// Length of a generated token's random part, in bytes (256 bits).
const TOKEN_RANDOM_BYTES: usize = 32;

#[derive(Clone, Debug)]
pub struct TokenSet {
    digests: Vec<[u8; 32]>,
}

/// Why a configured digest is unusable.
#[derive(Debug, thiserror::Error)]
#[error("admin token digest {0:?} is not 64 hex digits (a SHA-256)")]
pub struct BadDigest(pub String);

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

impl TokenSet {
    pub fn from_hex(digests: &[String]) -> Result<Self, BadDigest> {
        let digests = digests
            .iter()
            .map(|d| unhex(d).ok_or_else(|| BadDigest(d.chars().take(80).collect())))
            .collect::<Result<_, _>>()?;
        Ok(TokenSet { digests })
    }

    /// Whether `token` is one of ours. Always compares against every digest.
    pub fn accepts(&self, token: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut ok = subtle::Choice::from(0);
        for d in &self.digests {
            ok |= d.ct_eq(&presented);
        }
        ok.into()
    }

    /// Checks an `Authorization` header value.
    pub fn accepts_header(&self, value: Option<&str>) -> bool {
        match value.and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) => self.accepts(token.trim()),
            None => false,
        }
    }
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
