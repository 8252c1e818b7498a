//! Shopper tokens against a real JWKS (a file, and a URL served over real HTTP): the three
//! algorithms verify, and every token a forger or a careless client could send is refused with
//! its reason; the provider's key rotation is followed without a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http_api::identity::issuer::{self, Issuer};
use http_api::identity::{IdentitySettings, TokenError, Verifier};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

const ISS: &str = issuer::DEMO_ISSUER;
const AUD: &str = issuer::DEMO_AUDIENCE;
const RSA_PEM: &[u8] = include_bytes!("data/rsa-2048.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A signing key of `alg` and its public JWK under `kid`.
fn key_of(alg: Algorithm, kid: &str) -> (EncodingKey, serde_json::Value) {
    if alg == Algorithm::EdDSA {
        // (jsonwebtoken's JWK of an Ed25519 key does not read ring's PKCS#8 v2.)
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let x = URL_SAFE_NO_PAD.encode(pair.public_key_raw());
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid});
        return (EncodingKey::from_ed_der(&pair.serialize_der()), jwk);
    }
    let enc = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_der(
            &rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .unwrap()
                .serialize_der(),
        ),
        Algorithm::RS256 => EncodingKey::from_rsa_pem(RSA_PEM).unwrap(),
        other => panic!("no test key for {other:?}"),
    };
    let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&enc, alg).unwrap()).unwrap();
    jwk["kid"] = json!(kid);
    (enc, jwk)
}

fn sign(
    enc: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    claims: &serde_json::Value,
) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(String::from);
    jsonwebtoken::encode(&h, claims, enc).unwrap()
}

fn claims(sub: &str, group: Option<&str>) -> serde_json::Value {
    json!({"iss": ISS, "aud": AUD, "sub": sub, "customer_group": group, "iat": now(), "exp": now() + 600})
}

fn verifier_with(dir: &std::path::Path, keys: &[&serde_json::Value]) -> Arc<Verifier> {
    let path = dir.join("jwks.json");
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    Verifier::new(&IdentitySettings::with_file(ISS, AUD, path)).unwrap()
}

#[test]
fn eddsa_es256_and_rs256_tokens_verify_and_name_the_customer_and_group() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<_> = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256]
        .into_iter()
        .map(|alg| (alg, key_of(alg, &format!("{alg:?}"))))
        .collect();
    let jwks: Vec<_> = keys.iter().map(|(_, (_, j))| j).collect();
    let v = verifier_with(dir.path(), &jwks);
    for (alg, (enc, _)) in &keys {
        let t = sign(
            enc,
            *alg,
            Some(&format!("{alg:?}")),
            &claims("c-1", Some("wholesale")),
        );
        let got = v.verify(&t).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        assert_eq!(got.customer, "c-1");
        assert_eq!(got.group.as_deref(), Some("wholesale"));
        // The second time from memory, the same answer.
        assert_eq!(v.verify(&t).unwrap(), got);
    }
    // No group claim: a customer with public prices.
    let (enc, _) = &keys[0].1;
    let t = sign(enc, Algorithm::EdDSA, Some("EdDSA"), &claims("c-2", None));
    assert_eq!(v.verify(&t).unwrap().group, None);
}

#[test]
fn forged_expired_misdirected_and_algorithm_confused_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, jwk) = key_of(Algorithm::EdDSA, "k1");
    let (other, _) = key_of(Algorithm::EdDSA, "k1");
    let v = verifier_with(dir.path(), &[&jwk]);
    let ok = sign(&enc, Algorithm::EdDSA, Some("k1"), &claims("c-1", None));
    v.verify(&ok).unwrap();
    let with = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut c = claims("c-1", None);
        f(&mut c);
        sign(&enc, Algorithm::EdDSA, Some("k1"), &c)
    };
    // The public key as an HMAC secret: the classic confusion attack.
    let public = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    let hs256 = sign(
        &EncodingKey::from_secret(&public).unwrap(),
        Algorithm::HS256,
        Some("k1"),
        &claims("c-1", None),
    );
    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "k1"})),
        b64(claims("c-1", None))
    );
    // The payload changed after signing: a shopper who makes themselves wholesale.
    let mut parts: Vec<String> = ok.split('.').map(String::from).collect();
    parts[1] = b64(claims("c-1", Some("wholesale")));
    let tampered = parts.join(".");
    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "forged",
            sign(&other, Algorithm::EdDSA, Some("k1"), &claims("c-1", None)),
            TokenError::Signature,
        ),
        ("tampered", tampered, TokenError::Signature),
        (
            "expired",
            with(&|c| c["exp"] = json!(now() - 120)),
            TokenError::Expired,
        ),
        (
            "not yet valid",
            with(&|c| c["nbf"] = json!(now() + 600)),
            TokenError::NotYetValid,
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("another-shop")),
            TokenError::Audience,
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example/")),
            TokenError::Issuer,
        ),
        (
            "no expiry",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            TokenError::Claim("exp".into()),
        ),
        (
            "no customer",
            with(&|c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            TokenError::Claim("sub".into()),
        ),
        (
            "group not a string",
            with(&|c| c["customer_group"] = json!(["wholesale"])),
            TokenError::Claim("customer_group".into()),
        ),
        (
            "HS256 keyed with the public key",
            hs256,
            TokenError::Algorithm,
        ),
        ("alg none", none, TokenError::Malformed),
        (
            "unknown kid",
            sign(&enc, Algorithm::EdDSA, Some("k9"), &claims("c-1", None)),
            TokenError::UnknownKey,
        ),
        ("not a JWT", "hello.world".into(), TokenError::Malformed),
        (
            "oversized",
            format!("{ok}{}", "A".repeat(9_000)),
            TokenError::TooLarge(8_192),
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(v.verify(&token).unwrap_err(), want, "{what}");
    }
    // Within the allowed skew an expired token still passes; past it, not.
    assert!(v.verify(&with(&|c| c["exp"] = json!(now() - 5))).is_ok());
}

#[test]
fn the_authorization_header_is_bearer_or_absent() {
    use axum::http::{HeaderMap, HeaderValue, header};
    let mut h = HeaderMap::new();
    assert_eq!(http_api::identity::bearer(&h), Ok(None));
    for bad in ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "token"] {
        h.insert(header::AUTHORIZATION, HeaderValue::from_static(bad));
        assert_eq!(
            http_api::identity::bearer(&h),
            Err(TokenError::NotBearer),
            "{bad}"
        );
    }
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("bearer abc"),
    );
    assert_eq!(http_api::identity::bearer(&h), Ok(Some("abc")));
}

/// The mesh's own issuer, rotated: tokens of the old key stay valid (its public half stays
/// published), tokens of the new one are taken once the verifier has read the file again (it
/// watches it), and a key dropped from the set stops verifying even tokens it remembered.
#[tokio::test]
async fn key_rotation_in_a_jwks_file_is_followed_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let jwks = issuer::init(dir.path()).unwrap();
    let v = Verifier::new(&IdentitySettings::with_file(ISS, AUD, jwks.clone())).unwrap();
    v.watch();
    let first = Issuer::demo(dir.path()).unwrap();
    let old = first.sign("c-1", None, now(), 600).unwrap();
    v.verify(&old).unwrap();
    issuer::rotate(dir.path()).unwrap();
    let second = Issuer::demo(dir.path()).unwrap();
    assert_ne!(first.kid(), second.kid());
    let new = second.sign("c-1", Some("member"), now(), 600).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&new).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "new key never taken"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    v.verify(&old).unwrap();
    // The old key withdrawn: its tokens fail, though verified before.
    let mut set: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&jwks).unwrap()).unwrap();
    set["keys"]
        .as_array_mut()
        .unwrap()
        .retain(|k| k["kid"] == second.kid());
    std::fs::write(&jwks, set.to_string()).unwrap();
    assert!(v.refresh().await);
    assert_eq!(v.verify(&old).unwrap_err(), TokenError::UnknownKey);
    v.verify(&new).unwrap();
    // A broken file keeps the keys in use.
    std::fs::write(&jwks, "{\"keys\": [").unwrap();
    assert!(!v.refresh().await);
    v.verify(&new).unwrap();
}

/// A JWKS URL (real HTTP on loopback): fetched at start, and again when a token names a key
/// the set lacks, but no more often than `jwks_refetch_min_s` however many such tokens come.
#[tokio::test]
async fn a_jwks_url_is_refetched_for_an_unknown_kid_at_a_bounded_rate() {
    let (enc1, jwk1) = key_of(Algorithm::ES256, "a");
    let (enc2, jwk2) = key_of(Algorithm::ES256, "b");
    let published = Arc::new(std::sync::Mutex::new(json!({ "keys": [jwk1] })));
    let fetches = Arc::new(AtomicUsize::new(0));
    let app = {
        let (published, fetches) = (Arc::clone(&published), Arc::clone(&fetches));
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                fetches.fetch_add(1, Ordering::SeqCst);
                let body = published.lock().unwrap().to_string();
                async move { body }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut settings = IdentitySettings::with_file(ISS, AUD, "unused".into());
    settings.jwks_file = None;
    settings.jwks_url = Some(format!("http://{addr}/jwks"));
    settings.jwks_refetch_min_s = 1;
    let v = Verifier::new(&settings).unwrap();
    v.watch();
    let t1 = sign(&enc1, Algorithm::ES256, Some("a"), &claims("c-1", None));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&t1).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "first fetch never made"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = fetches.load(Ordering::SeqCst);
    // The provider rotates; a flood of tokens under the new kid.
    published.lock().unwrap()["keys"] = json!([jwk1, jwk2]);
    let t2 = sign(&enc2, Algorithm::ES256, Some("b"), &claims("c-1", None));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while v.verify(&t2).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotation never followed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Forged kids, hundreds a second for a second: one more fetch, two at most.
    let after_rotation = fetches.load(Ordering::SeqCst);
    for i in 0..200 {
        let t = sign(
            &enc2,
            Algorithm::ES256,
            Some(&format!("forged-{i}")),
            &claims("c-1", None),
        );
        assert_eq!(v.verify(&t).unwrap_err(), TokenError::UnknownKey);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let extra = fetches.load(Ordering::SeqCst) - after_rotation;
    assert!(
        after_rotation - before <= 2,
        "rotation took {} fetches",
        after_rotation - before
    );
    assert!(
        (1..=3).contains(&extra),
        "{extra} fetches for 200 unknown kids in ~1 s"
    );
}
