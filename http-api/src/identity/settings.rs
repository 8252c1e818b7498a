//! Where shopper tokens come from and what they must say: the `[shoppers]` table of a
//! storefront's config.

use std::path::{Path, PathBuf};

use jsonwebtoken::Algorithm;
use util::config::{Invalid, resolve};

/// The identity provider whose tokens the storefront believes.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// An `aud` every token must carry (this storefront's name at the provider).
    pub audience: String,
    /// The provider's public keys (a JWKS document), from a file (read again when it changes
    /// and on SIGHUP) ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<PathBuf>,
    /// ... or from a URL (fetched every `jwks_refresh_s`, and at most every
    /// `jwks_refetch_min_s` when a token names a key not in the set: the provider rotated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// CA certificates (PEM) to trust for `jwks_url`; the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_ca: Option<PathBuf>,
    #[serde(default = "default_refresh_s")]
    pub jwks_refresh_s: u64,
    #[serde(default = "default_refetch_min_s")]
    pub jwks_refetch_min_s: u64,
    /// Algorithms accepted (asymmetric only: a storefront holds no shared secret).
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed on `exp` and `nbf`, at most 300 s.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// The claim that names the customer (orders are theirs), and the one that names their
    /// customer group (group prices); a token without a group claim gets public prices.
    #[serde(default = "default_customer_claim")]
    pub customer_claim: String,
    #[serde(default = "default_group_claim")]
    pub group_claim: String,
    /// A longer `Authorization` header is refused before any parsing.
    #[serde(default = "default_token_max_bytes")]
    pub token_max_bytes: usize,
    /// Bytes of tokens remembered as verified (each until its expiry, at most a minute, and
    /// forgotten when the key set changes), so a shopper's next request costs a lookup.
    #[serde(default = "default_verified_cache_bytes")]
    pub verified_cache_bytes: u64,
}

fn default_refresh_s() -> u64 {
    300
}
fn default_refetch_min_s() -> u64 {
    10
}
fn default_algorithms() -> Vec<String> {
    ["EdDSA", "ES256", "RS256"].map(String::from).to_vec()
}
fn default_leeway_s() -> u64 {
    30
}
fn default_customer_claim() -> String {
    "sub".into()
}
fn default_group_claim() -> String {
    "customer_group".into()
}
fn default_token_max_bytes() -> usize {
    8 * 1024
}
fn default_verified_cache_bytes() -> u64 {
    16 * 1024 * 1024
}

/// The asymmetric algorithms a storefront can verify.
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

impl IdentitySettings {
    /// Settings for a JWKS file, with every other value its default.
    pub fn with_file(issuer: &str, audience: &str, jwks: PathBuf) -> Self {
        IdentitySettings {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_file: Some(jwks),
            jwks_url: None,
            jwks_ca: None,
            jwks_refresh_s: default_refresh_s(),
            jwks_refetch_min_s: default_refetch_min_s(),
            algorithms: default_algorithms(),
            leeway_s: default_leeway_s(),
            customer_claim: default_customer_claim(),
            group_claim: default_group_claim(),
            token_max_bytes: default_token_max_bytes(),
            verified_cache_bytes: default_verified_cache_bytes(),
        }
    }

    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.jwks_file, &mut self.jwks_ca]
            .into_iter()
            .flatten()
        {
            resolve(base, p);
        }
    }

    /// The accepted algorithms, parsed.
    pub fn accepted(&self) -> Result<Vec<Algorithm>, Invalid> {
        self.algorithms
            .iter()
            .map(|a| {
                a.parse::<Algorithm>()
                    .ok()
                    .filter(|alg| ASYMMETRIC.contains(alg))
                    .ok_or_else(|| {
                        Invalid::at(
                            "shoppers.algorithms",
                            format!("{a:?} is not an asymmetric JWS algorithm (EdDSA, ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512)"),
                        )
                    })
            })
            .collect()
    }

    /// What the types cannot say.
    pub fn check(&self) -> Result<(), Invalid> {
        let at = |field: &str, what: &str| Invalid::at(&format!("shoppers.{field}"), what);
        if self.issuer.is_empty() || self.audience.is_empty() {
            return Err(at("issuer", "issuer and audience must not be empty"));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (Some(_), None) => {}
            (None, Some(url)) => {
                let parsed = reqwest::Url::parse(url)
                    .map_err(|e| at("jwks_url", &format!("not a URL: {e}")))?;
                let loopback = parsed.host_str().is_some_and(|h| {
                    h == "localhost"
                        || h.parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback())
                });
                if parsed.scheme() != "https" && !loopback {
                    return Err(at(
                        "jwks_url",
                        "keys are fetched over https only (plain http on loopback only)",
                    ));
                }
            }
            _ => return Err(at("jwks_file", "set one of jwks_file and jwks_url")),
        }
        if self.accepted()?.is_empty() {
            return Err(at("algorithms", "at least one"));
        }
        if self.leeway_s > 300 {
            return Err(at("leeway_s", "at most 300"));
        }
        if !(10..=86_400).contains(&self.jwks_refresh_s) {
            return Err(at("jwks_refresh_s", "10 to 86400"));
        }
        if !(1..=3_600).contains(&self.jwks_refetch_min_s) {
            return Err(at("jwks_refetch_min_s", "1 to 3600"));
        }
        if self.customer_claim.is_empty() || self.group_claim.is_empty() {
            return Err(at("customer_claim", "claim names must not be empty"));
        }
        if !(256..=65_536).contains(&self.token_max_bytes) {
            return Err(at("token_max_bytes", "256 to 65536"));
        }
        if self.verified_cache_bytes > 1 << 30 {
            return Err(at("verified_cache_bytes", "at most 1 GiB"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_one_place_over_https_with_asymmetric_algorithms() {
        let file = IdentitySettings::with_file("iss", "aud", "jwks.json".into());
        file.check().unwrap();
        let mut both = file.clone();
        both.jwks_url = Some("https://id.example/jwks".into());
        assert!(both.check().unwrap_err().0.contains("shoppers.jwks_file"));
        let mut url = both.clone();
        url.jwks_file = None;
        url.check().unwrap();
        url.jwks_url = Some("http://id.example/jwks".into());
        assert!(url.check().unwrap_err().0.contains("https only"));
        url.jwks_url = Some("http://127.0.0.1:9/jwks".into());
        url.check().unwrap();
        for bad in ["HS256", "none", "ES999"] {
            let mut s = file.clone();
            s.algorithms = vec![bad.into()];
            let err = s.check().unwrap_err();
            assert!(err.0.contains("shoppers.algorithms"), "{bad}: {err}");
        }
        let mut skew = file;
        skew.leeway_s = 3_600;
        assert!(skew.check().unwrap_err().0.contains("leeway_s"));
    }
}
