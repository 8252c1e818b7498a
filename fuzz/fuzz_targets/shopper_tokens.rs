//! `Authorization` values at a storefront, verified against a JWKS of one key of each accepted
//! algorithm (the mesh's own issuer's EdDSA key): the header parsed, the token's header and
//! claims decoded, the signature checked. Nothing may panic; nothing unsigned may verify.
#![no_main]

use std::sync::{Arc, LazyLock};

use http_api::identity::issuer::{self, DEMO_AUDIENCE, DEMO_ISSUER};
use http_api::identity::{IdentitySettings, Verifier};
use libfuzzer_sys::fuzz_target;

static VERIFIER: LazyLock<(tempfile::TempDir, Arc<Verifier>)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let jwks = issuer::init(dir.path()).expect("the issuer's key");
    let v = Verifier::new(&IdentitySettings::with_file(
        DEMO_ISSUER,
        DEMO_AUDIENCE,
        jwks,
    ))
    .expect("a verifier");
    (dir, v)
});

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let v = &VERIFIER.1;
    // Tokens the fuzzer makes are never signed by the key: none may verify.
    assert!(
        v.check(text).is_err(),
        "an unsigned token verified: {text:?}"
    );
    if let Ok(value) = http::HeaderValue::from_str(text) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        assert!(!matches!(v.shopper(&headers), Ok(Some(_))));
    }
});
