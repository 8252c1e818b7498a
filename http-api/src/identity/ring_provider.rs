//! Token signatures checked by ring, the crypto the mesh's TLS and QUIC already use, through
//! the JWT library's pluggable provider: ring verifies ES256 3.6 times and RS256 2.9 times
//! faster than the pure-Rust backend on this machine (BENCHMARKS.md, "Shopper tokens"), while
//! ed25519-dalek verifies EdDSA faster than ring, so EdDSA stays with it. Signing (only the
//! mesh's own small provider signs) and JWK key arithmetic stay with the library's RustCrypto
//! backend.

use std::sync::LazyLock;

use jsonwebtoken::crypto::{CryptoProvider, JwtVerifier};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};
use ring::signature as rs;

/// The provider: RustCrypto's signing and key utilities, ring's verification.
static PROVIDER: LazyLock<CryptoProvider> = LazyLock::new(|| {
    let base = &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER;
    CryptoProvider {
        signer_factory: base.signer_factory,
        verifier_factory: new_verifier,
        key_utils: base.key_utils.clone(),
    }
});

/// Makes ring the process's verifier of tokens (once; later calls do nothing). Before any
/// other use of the JWT library, which otherwise settles on its own default.
pub fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if CryptoProvider::install_default(&PROVIDER).is_err() {
            tracing::warn!("a JWT crypto provider was installed before; tokens verify with it");
        }
    });
}

/// A public key and the ring algorithm its tokens are verified with.
struct RingVerifier {
    alg: Algorithm,
    params: &'static dyn rs::VerificationAlgorithm,
    rsa: Option<&'static rs::RsaParameters>,
    key: DecodingKeyKind,
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let (params, rsa): (&'static dyn rs::VerificationAlgorithm, _) = match alg {
        Algorithm::EdDSA => {
            return (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(
                alg, key,
            );
        }
        Algorithm::ES256 => (&rs::ECDSA_P256_SHA256_FIXED, None),
        Algorithm::ES384 => (&rs::ECDSA_P384_SHA384_FIXED, None),
        Algorithm::RS256 => (
            &rs::RSA_PKCS1_2048_8192_SHA256,
            Some(&rs::RSA_PKCS1_2048_8192_SHA256),
        ),
        Algorithm::RS384 => (
            &rs::RSA_PKCS1_2048_8192_SHA384,
            Some(&rs::RSA_PKCS1_2048_8192_SHA384),
        ),
        Algorithm::RS512 => (
            &rs::RSA_PKCS1_2048_8192_SHA512,
            Some(&rs::RSA_PKCS1_2048_8192_SHA512),
        ),
        Algorithm::PS256 => (
            &rs::RSA_PSS_2048_8192_SHA256,
            Some(&rs::RSA_PSS_2048_8192_SHA256),
        ),
        Algorithm::PS384 => (
            &rs::RSA_PSS_2048_8192_SHA384,
            Some(&rs::RSA_PSS_2048_8192_SHA384),
        ),
        Algorithm::PS512 => (
            &rs::RSA_PSS_2048_8192_SHA512,
            Some(&rs::RSA_PSS_2048_8192_SHA512),
        ),
        // Shared secrets (HS*) are never accepted by a storefront; nor is what comes next.
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    if key.family() != alg.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    Ok(Box::new(RingVerifier {
        alg: *alg,
        params,
        rsa,
        key: key.kind().clone(),
    }))
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let checked = match (&self.key, self.rsa) {
            (DecodingKeyKind::RsaModulusExponent { n, e }, Some(rsa)) => {
                rs::RsaPublicKeyComponents { n, e }.verify(rsa, msg, sig)
            }
            (DecodingKeyKind::SecretOrDer(bytes), _) => {
                rs::UnparsedPublicKey::new(self.params, bytes).verify(msg, sig)
            }
            (DecodingKeyKind::RsaModulusExponent { .. }, None) => Err(ring::error::Unspecified),
        };
        checked.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}
