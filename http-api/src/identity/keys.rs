//! The identity provider's public keys: a JWKS document read into the keys a token may be
//! verified with. A key is taken only for an asymmetric algorithm this storefront accepts, with
//! its size checked here (an Ed25519 key of the wrong length, an RSA modulus under 2048 bits,
//! a symmetric `oct` key: each is left out and logged), so a token can never pick the
//! algorithm its key is verified with.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A JWKS document larger than this is refused.
pub const JWKS_MAX_BYTES: usize = 256 * 1024;
/// Keys in a set, at most.
pub const KEYS_MAX: usize = 64;
/// The smallest RSA modulus taken, in bits.
const RSA_BITS_MIN: usize = 2048;

/// One key a token may be verified with.
pub struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// The keys of one JWKS document.
#[derive(Default)]
pub struct KeySet {
    pub keys: Vec<Key>,
}

/// Why a JWKS document was not taken (the keys in use are kept).
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("JWKS is {0} bytes, more than {JWKS_MAX_BYTES}")]
    TooLarge(usize),
    #[error("JWKS is not a JSON Web Key Set: {0}")]
    Malformed(String),
    #[error("JWKS has {0} keys, more than {KEYS_MAX}")]
    TooMany(usize),
    #[error("JWKS has no key usable with the accepted algorithms ({0} left out)")]
    NoUsableKey(usize),
}

impl KeySet {
    /// Reads a JWKS document, keeping the keys usable with one of `accepted`.
    pub fn parse(bytes: &[u8], accepted: &[Algorithm]) -> Result<KeySet, KeysError> {
        if bytes.len() > JWKS_MAX_BYTES {
            return Err(KeysError::TooLarge(bytes.len()));
        }
        // Keys of kinds this crate does not know are skipped one by one, not the whole set.
        let raw: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| KeysError::Malformed(e.to_string()))?;
        let list = raw
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| KeysError::Malformed("no \"keys\" array".into()))?;
        if list.len() > KEYS_MAX {
            return Err(KeysError::TooMany(list.len()));
        }
        let mut keys = Vec::new();
        let mut left_out = 0;
        for (i, value) in list.iter().enumerate() {
            let taken = serde_json::from_value::<Jwk>(value.clone())
                .map_err(|e| e.to_string())
                .and_then(|jwk| usable(&jwk, accepted));
            match taken {
                Ok(key) => keys.push(key),
                Err(why) => {
                    left_out += 1;
                    tracing::warn!(index = i, why = %why, "JWKS key left out");
                }
            }
        }
        if keys.is_empty() {
            return Err(KeysError::NoUsableKey(left_out));
        }
        Ok(KeySet { keys })
    }

    /// The key a token with this header is verified with: the one its `kid` names, or, for a
    /// token naming none, the only key of its algorithm.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None => {
                let mut of_alg = self.keys.iter().filter(|k| k.alg == alg);
                match (of_alg.next(), of_alg.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }
}

/// The key a JWK is, if it can verify tokens of an accepted algorithm.
fn usable(jwk: &Jwk, accepted: &[Algorithm]) -> Result<Key, String> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Err("not a signing key (\"use\" is not \"sig\")".into());
    }
    let b64 = |field: &str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|e| format!("{field} is not base64url: {e}"))
    };
    let alg = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) => {
            if p.curve != EllipticCurve::Ed25519 || b64("x", &p.x)?.len() != 32 {
                return Err("an OKP key must be an Ed25519 key of 32 bytes".into());
            }
            Algorithm::EdDSA
        }
        AlgorithmParameters::EllipticCurve(p) => {
            let (alg, len) = match p.curve {
                EllipticCurve::P256 => (Algorithm::ES256, 32),
                EllipticCurve::P384 => (Algorithm::ES384, 48),
                _ => return Err("an EC key must be on P-256 or P-384".into()),
            };
            if b64("x", &p.x)?.len() != len || b64("y", &p.y)?.len() != len {
                return Err("EC coordinates of the wrong length".into());
            }
            alg
        }
        AlgorithmParameters::RSA(p) => {
            let n = b64("n", &p.n)?;
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < RSA_BITS_MIN {
                return Err(format!("RSA modulus under {RSA_BITS_MIN} bits"));
            }
            Algorithm::RS256
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key: tokens are verified with public keys only".into());
        }
        _ => return Err("unknown key type".into()),
    };
    // The JWK's own `alg` decides (an RSA key may be for RS512 or PS256); it must fit the key.
    let alg = match jwk.common.key_algorithm {
        None => alg,
        Some(ka) => {
            let named = key_alg(ka).ok_or_else(|| format!("algorithm {ka:?} not supported"))?;
            if named.family() != alg.family() {
                return Err(format!("\"alg\" {ka:?} does not fit the key's type"));
            }
            named
        }
    };
    if !accepted.contains(&alg) {
        return Err(format!("algorithm {alg:?} not accepted here"));
    }
    let decoding = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        decoding,
    })
}

fn key_alg(ka: KeyAlgorithm) -> Option<Algorithm> {
    Some(match ka {
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Algorithm] = &[Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

    #[test]
    fn only_sound_asymmetric_keys_are_taken() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let short = URL_SAFE_NO_PAD.encode([7u8; 31]);
        let doc = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "ok"},
            {"kty": "OKP", "crv": "Ed25519", "x": short, "kid": "short"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "n": URL_SAFE_NO_PAD.encode([0xffu8; 128]), "e": "AQAB", "kid": "rsa1024"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "hs", "alg": "HS256"},
            {"kty": "weird", "kid": "unknown"},
        ]});
        let set = KeySet::parse(doc.to_string().as_bytes(), ALL).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, [Some("ok")]);
        assert!(set.find(Some("ok"), Algorithm::EdDSA).is_some());
        assert!(set.find(Some("hmac"), Algorithm::HS256).is_none());
        // No kid: the only key of the token's algorithm.
        assert!(set.find(None, Algorithm::EdDSA).is_some());
        assert!(set.find(None, Algorithm::RS256).is_none());
        // EdDSA not accepted here: nothing left.
        let err = KeySet::parse(doc.to_string().as_bytes(), &[Algorithm::RS256]);
        assert!(matches!(err, Err(KeysError::NoUsableKey(7))));
    }

    #[test]
    fn hostile_documents_are_refused_not_taken() {
        for doc in [
            &b"not json"[..],
            b"{}",
            b"{\"keys\": 3}",
            b"[]",
            &vec![b' '; JWKS_MAX_BYTES + 1],
        ] {
            assert!(KeySet::parse(doc, ALL).is_err());
        }
        let many: Vec<_> = (0..=KEYS_MAX).map(|_| serde_json::json!({})).collect();
        let doc = serde_json::json!({ "keys": many }).to_string();
        assert!(matches!(
            KeySet::parse(doc.as_bytes(), ALL),
            Err(KeysError::TooMany(_))
        ));
    }
}
