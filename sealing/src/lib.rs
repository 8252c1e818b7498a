//! Personal data sealed for its home region (I6): what identifies or locates a shopper is
//! encrypted before it is written or sent anywhere, so that only the cores of the region its
//! residency policy names can open it, and every other process stores and forwards ciphertext.
//!
//! - `suite`: the ciphers the data itself is encrypted with, AES-256-GCM by default and SM4-GCM
//!   where a region asks for it (the same GCM mode over either block cipher).
//! - `keys`: region key pairs (X25519) by key id, the key provider interface that opens (files
//!   here, shaped so that a cloud KMS fits behind it: the private key never leaves it), key
//!   files and their rotation.
//! - `sealed`: the sealed format (versioned, with its key id and suite), the `Sealer` and the
//!   `Opener`: HPKE (RFC 9180, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, export only) to the home
//!   region's public key gives a context from which each value's one-time key is exported, under
//!   which the suite encrypts it.
//! - `personal`: an order's personal data sealed for the home region its residency policy
//!   names, and opened there.
//! - `shred`: a home region's keeping keys, which an erasure or retention destroys a part of.

pub mod keys;
pub mod personal;
pub mod sealed;
pub mod shred;
pub mod suite;

pub use keys::{Exporter, FileKeys, KeyError, KeyId, KeyProvider, PublicKeys};

/// Makes each of `regions`' first key (`keys::init`) and its keeping keys (`shred`, periods of
/// a day) in `dir`, where none of them has either yet.
pub fn init(dir: &std::path::Path, regions: &[String]) -> Result<Vec<KeyId>, KeyError> {
    for r in regions {
        let path = shred::path(dir, r);
        if path.exists() {
            return Err(KeyError::Exists(path));
        }
    }
    let ids = keys::init(dir, regions)?;
    for r in regions {
        shred::ensure(
            dir,
            r,
            shred::DEFAULT_PERIOD_MS,
            shred::backfill_ms(shred::DEFAULT_PERIOD_MS),
        )?;
    }
    Ok(ids)
}
pub use personal::{PersonalData, PersonalOpener, PersonalSealer, Residency, ResidencySettings};
pub use sealed::{OpenError, Opener, Sealed, Sealer};
pub use suite::Suite;
