//! Sealed data and how it is made and opened.
//!
//! A `Sealer` runs HPKE's sender side once (RFC 9180, base mode: DHKEM(X25519, HKDF-SHA256),
//! HKDF-SHA256, export only) to the home region's newest public key, and then seals many values
//! with it: each value's one-time key and nonce are exported from the HPKE context under its own
//! sequence number and associated data (what the value belongs to, such as an order id, so that
//! a sealed value cannot be moved to another record). A key exchange costs two X25519 scalar
//! multiplications, a value only an HKDF export and the cipher (BENCHMARKS.md), and no key or
//! nonce is ever used twice: the sequence number is the sealer's own counter. An `Opener`
//! decapsulates each key share once through the key provider and keeps the context (bounded) for
//! the values sealed under it. The key id and the suite are in HPKE's `info`: changing either in
//! the stored value makes it fail to open rather than open differently.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hpke::Serializable;
use hpke::kem::X25519HkdfSha256;

use crate::keys::{Exporter, KeyError, KeyId, KeyProvider, PublicKey};
use crate::suite::{NONCE_LEN, Suite, Unauthentic};

/// A value sealed to a region's key.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sealed {
    /// The region key it is sealed to, and so the region that can open it.
    pub key: KeyId,
    pub suite: Suite,
    /// HPKE's encapsulated key share (32 bytes): the same for every value of one sealer.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// Which of that sealer's values this is.
    pub seq: u64,
    /// The data, encrypted, with its tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

impl codec::FirstVersion for Sealed {
    const FORMAT: codec::Format = codec::Format {
        label: "sealed",
        version: 1,
    };
}

/// Sealed data, either way: to a region's key at intake (version 1, `Sealed`, as every node
/// writes it), or as the home region keeps it (version 3, `Kept`, which names its tree;
/// version 2 kept values are of tree 0).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Seal {
    Intake(Sealed),
    Kept(crate::shred::Kept),
}

impl codec::Versioned for Seal {
    const FORMAT: codec::Format = codec::Format {
        label: "sealed",
        version: 3,
    };
    type Previous = v2::Seal;
    fn migrate(previous: v2::Seal) -> Self {
        match previous {
            v2::Seal::Intake(s) => Seal::Intake(s),
            v2::Seal::Kept(k) => Seal::Kept(crate::shred::Kept {
                generation: 0,
                period: k.period,
                epoch: k.epoch,
                suite: k.suite,
                salt: k.salt,
                ciphertext: k.ciphertext,
            }),
        }
    }
}

impl Seal {
    /// Its bytes: a value sealed at intake as version 1, which every build reads, and a kept
    /// one as version 3.
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        match self {
            Seal::Intake(s) => codec::encode(s),
            Seal::Kept(_) => codec::encode(self),
        }
    }
}

/// Version 2 of sealed data, frozen: kept values before trees had generations.
pub mod v2 {
    use super::Sealed;
    use crate::suite::Suite;

    #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub enum Seal {
        Intake(Sealed),
        Kept(Kept),
    }

    #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    pub struct Kept {
        pub period: u64,
        pub epoch: i64,
        pub suite: Suite,
        #[serde(with = "serde_bytes")]
        pub salt: Vec<u8>,
        #[serde(with = "serde_bytes")]
        pub ciphertext: Vec<u8>,
    }

    impl codec::Versioned for Seal {
        const FORMAT: codec::Format = codec::Format {
            label: "sealed",
            version: 2,
        };
        type Previous = Sealed;
        fn migrate(previous: Sealed) -> Self {
            Seal::Intake(previous)
        }
    }
}

/// Why sealed data did not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("{0}")]
    Unauthentic(#[from] Unauthentic),
}

/// HPKE's `info`: what the context is for, bound to the key id and the suite.
fn info(key: &KeyId, suite: Suite) -> Vec<u8> {
    format!("tradewind personal data v1\0{key}\0{}", suite.name()).into_bytes()
}

/// The exporter context of value `seq` bound to `aad`.
fn export_context(seq: u64, aad: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(8 + aad.len());
    c.extend_from_slice(&seq.to_be_bytes());
    c.extend_from_slice(aad);
    c
}

/// The one-time key and nonce of one value, exported.
fn value_key(
    export: impl FnOnce(&[u8], &mut [u8]) -> Result<(), KeyError>,
    suite: Suite,
    seq: u64,
    aad: &[u8],
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), KeyError> {
    let mut out = vec![0u8; suite.key_len() + NONCE_LEN];
    export(&export_context(seq, aad), &mut out)?;
    let nonce = out.split_off(suite.key_len());
    Ok((out, nonce.try_into().expect("a nonce's length")))
}

type SenderContext =
    hpke::aead::AeadCtxS<hpke::aead::ExportOnlyAead, hpke::kdf::HkdfSha256, X25519HkdfSha256>;

/// Seals values to one region key, after one key exchange.
pub struct Sealer {
    key: KeyId,
    suite: Suite,
    enc: Vec<u8>,
    ctx: SenderContext,
    next: AtomicU64,
}

impl Sealer {
    /// A sealer to region key `key` (`id`) with `suite`: one HPKE encapsulation, refused for a
    /// key no shared secret can come of (a low-order point).
    pub fn new(id: &KeyId, key: &PublicKey, suite: Suite) -> Result<Sealer, KeyError> {
        let (enc, ctx) = hpke::setup_sender_with_rng::<
            hpke::aead::ExportOnlyAead,
            hpke::kdf::HkdfSha256,
            X25519HkdfSha256,
        >(
            &hpke::OpModeS::Base,
            key,
            &info(id, suite),
            &mut rand::rng(),
        )
        .map_err(|_| KeyError::Unusable(id.clone()))?;
        Ok(Sealer {
            key: id.clone(),
            suite,
            enc: enc.to_bytes().to_vec(),
            ctx,
            next: AtomicU64::new(0),
        })
    }

    /// The region key it seals to.
    pub fn key(&self) -> &KeyId {
        &self.key
    }

    /// How many values it has sealed.
    pub fn sealed(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// `plaintext` sealed, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Sealed {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let export = |c: &[u8], out: &mut [u8]| {
            self.ctx
                .export(c, out)
                .map_err(|_| KeyError::Decapsulate(self.key.clone()))
        };
        let (key, nonce) =
            value_key(export, self.suite, seq, aad).expect("an export well under HKDF's limit");
        Sealed {
            key: self.key.clone(),
            suite: self.suite,
            enc: self.enc.clone(),
            seq,
            ciphertext: self.suite.encrypt(&key, &nonce, aad, plaintext),
        }
    }
}

/// Key shares whose contexts an opener keeps, at most.
pub const OPENER_CONTEXTS_MAX: u64 = 4_096;

type ContextKey = (KeyId, Suite, Vec<u8>);

/// Opens sealed values through a key provider, each key share decapsulated once.
#[derive(Clone)]
pub struct Opener {
    keys: Arc<dyn KeyProvider>,
    contexts: moka::sync::Cache<ContextKey, Arc<dyn Exporter>>,
}

impl Opener {
    pub fn new(keys: Arc<dyn KeyProvider>) -> Opener {
        Opener {
            keys,
            contexts: moka::sync::Cache::new(OPENER_CONTEXTS_MAX),
        }
    }

    /// The plaintext of `sealed`, bound to `aad`.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Vec<u8>, OpenError> {
        let id = (sealed.key.clone(), sealed.suite, sealed.enc.clone());
        let ctx = self.contexts.try_get_with(id, || {
            self.keys
                .context(&sealed.key, &sealed.enc, &info(&sealed.key, sealed.suite))
                .map(Arc::from)
        });
        let ctx = ctx.map_err(|e| match Arc::try_unwrap(e) {
            Ok(e) => e,
            Err(shared) => match &*shared {
                KeyError::NotHeld(id) => KeyError::NotHeld(id.clone()),
                KeyError::Retired(id) => KeyError::Retired(id.clone()),
                _ => KeyError::Decapsulate(sealed.key.clone()),
            },
        })?;
        let (key, nonce) = value_key(|c, out| ctx.export(c, out), sealed.suite, sealed.seq, aad)?;
        Ok(sealed
            .suite
            .decrypt(&key, &nonce, aad, &sealed.ciphertext)?)
    }
}
