//! Shopper token verification: the time to verify one token with the JWKS cached, for each
//! algorithm the storefront accepts (EdDSA, ES256, RS256). `check` verifies the signature and
//! the claims every time; `verify` is what a request pays, the signature checked once per token
//! and the token remembered. Signatures are ring's (`identity::use_ring`); the baseline,
//! measured in the same run, is the JWT library's own RustCrypto backend checking the same
//! signature alone (no claims).
//!
//! Run: `cargo bench -p http-api --bench tokens`

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use http_api::identity::issuer::{DEMO_AUDIENCE, DEMO_ISSUER};
use http_api::identity::{IdentitySettings, Verifier};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

const RSA_PEM: &[u8] = include_bytes!("../tests/data/rsa-2048.pem");

fn keys() -> Vec<(Algorithm, EncodingKey, serde_json::Value)> {
    let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "EdDSA",
        "x": URL_SAFE_NO_PAD.encode(ed.public_key_raw())});
    let ec = EncodingKey::from_ec_der(
        &rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .unwrap()
            .serialize_der(),
    );
    let rsa = EncodingKey::from_rsa_pem(RSA_PEM).unwrap();
    let jwk = |k: &EncodingKey, alg: Algorithm| {
        let mut j = serde_json::to_value(Jwk::from_encoding_key(k, alg).unwrap()).unwrap();
        j["kid"] = format!("{alg:?}").into();
        j
    };
    let (ec_jwk, rsa_jwk) = (jwk(&ec, Algorithm::ES256), jwk(&rsa, Algorithm::RS256));
    vec![
        (
            Algorithm::EdDSA,
            EncodingKey::from_ed_der(&ed.serialize_der()),
            ed_jwk,
        ),
        (Algorithm::ES256, ec, ec_jwk),
        (Algorithm::RS256, rsa, rsa_jwk),
    ]
}

fn bench(c: &mut Criterion) {
    http_api::identity::use_ring();
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let jwks = dir.path().join("jwks.json");
    let set: Vec<_> = keys.iter().map(|(_, _, j)| j.clone()).collect();
    std::fs::write(&jwks, serde_json::json!({ "keys": set }).to_string()).unwrap();
    let verifier = Verifier::new(&IdentitySettings::with_file(
        DEMO_ISSUER,
        DEMO_AUDIENCE,
        jwks,
    ))
    .unwrap();
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({"iss": DEMO_ISSUER, "aud": DEMO_AUDIENCE, "sub": "c-42",
        "customer_group": "member", "iat": now, "exp": now + 3_600});
    let mut g = c.benchmark_group("token");
    for (alg, enc, jwk) in &keys {
        let mut header = Header::new(*alg);
        header.kid = Some(format!("{alg:?}"));
        let token = jsonwebtoken::encode(&header, &claims, enc).unwrap();
        let key = DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
        let (message, signature) = token.rsplit_once('.').unwrap();
        let signature = URL_SAFE_NO_PAD.decode(signature).unwrap();
        let rust_crypto = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
        g.bench_function(
            format!("{alg:?}/baseline: RustCrypto signature alone"),
            |b| {
                b.iter(|| {
                    (rust_crypto.verifier_factory)(alg, &key)
                        .unwrap()
                        .verify(black_box(message.as_bytes()), &signature)
                        .unwrap()
                })
            },
        );
        // The floor: ring checking the same ECDSA signature alone, nothing else.
        if let (Algorithm::ES256, jsonwebtoken::DecodingKeyKind::SecretOrDer(point)) =
            (alg, key.kind())
        {
            g.bench_function("ES256/floor: ring signature alone", |b| {
                b.iter(|| {
                    ring::signature::UnparsedPublicKey::new(
                        &ring::signature::ECDSA_P256_SHA256_FIXED,
                        point,
                    )
                    .verify(black_box(message.as_bytes()), &signature)
                    .unwrap()
                })
            });
        }
        g.bench_function(format!("{alg:?}/check"), |b| {
            b.iter(|| verifier.check(black_box(&token)).unwrap())
        });
        verifier.verify(&token).unwrap();
        g.bench_function(format!("{alg:?}/verify (remembered)"), |b| {
            b.iter(|| verifier.verify(black_box(&token)).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
