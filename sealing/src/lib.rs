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

pub mod keys;
pub mod personal;
pub mod sealed;
pub mod shred;
pub mod suite;

pub use keys::{Exporter, FileKeys, KeyError, KeyId, KeyProvider, PublicKeys};
pub use personal::{PersonalData, PersonalOpener, PersonalSealer, Residency, ResidencySettings};
pub use sealed::{OpenError, Opener, Sealed, Sealer};
pub use suite::Suite;
