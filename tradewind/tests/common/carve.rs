//! Sealed values searched for in raw files, as a thief with a disk would: every offset is tried
//! as the start of one, and each found is opened with a region's key files as a run left them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use commerce::personal::{Personal, SealedPersonal, ShipTo};
use sealing::sealed::Seal;

/// Every file under `dir`.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Every sealed value for `region` that decodes at some offset of `bytes`.
pub fn carve(bytes: &[u8], region: &str) -> Vec<Seal> {
    (0..bytes.len())
        .filter(|&i| matches!(bytes[i], 1..=3))
        .filter_map(|i| codec::decode_leading::<Seal>(&bytes[i..]))
        .map(|(seal, _)| seal)
        .filter(|seal| match seal {
            Seal::Intake(s) => s.key.region() == region && !s.ciphertext.is_empty(),
            Seal::Kept(k) => k.salt.len() == sealing::shred::SALT_LEN,
        })
        .collect()
}

/// Every sealed value for `region` found in the files under `dir` but the key files (in
/// `keys`), and the names of the files it was found in; no file may hold `texts` in the clear.
pub fn carve_files(
    dir: &Path,
    keys: &Path,
    region: &str,
    texts: &[&str],
) -> (Vec<Seal>, Vec<String>) {
    let mut values = Vec::new();
    let mut searched = Vec::new();
    for path in files(dir) {
        if path.starts_with(keys) {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for text in texts {
            assert!(
                !bytes.windows(text.len()).any(|w| w == text.as_bytes()),
                "{} holds {text:?} in the clear",
                path.display()
            );
        }
        let found = carve(&bytes, region);
        if !found.is_empty() {
            searched.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
        values.extend(found);
    }
    (values, searched)
}

/// What the values found open to, for `customer`, with the region's keys as they are.
#[derive(Default)]
pub struct Opened {
    pub opened: usize,
    pub retired: usize,
    pub erased: usize,
    /// Kept values of a period past retention.
    pub expired: usize,
    /// Kept values of a tree dropped after compaction.
    pub compacted: usize,
    /// The kept values that opened.
    pub kept: Vec<Vec<u8>>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} opened, {} under a retired region key, {} under an erased customer's key, {} under a period past retention, {} in a dropped tree",
            self.opened, self.retired, self.erased, self.expired, self.compacted
        )
    }
}

/// Opens each of `values` as `customer`'s, shipping to `country`, with `region`'s key files in
/// `keys` as they are.
pub fn open_all(
    keys: &Path,
    region: &str,
    country: &str,
    values: &[Seal],
    customer: &str,
) -> Opened {
    let shred = sealing::shred::ShredKeys::load(&sealing::shred::path(keys, region)).unwrap();
    let opener = sealing::PersonalOpener::load(keys, region, Some(Arc::new(shred) as _)).unwrap();
    let customer = commerce::CustomerId::new(customer).unwrap();
    let mut out = Opened::default();
    for v in values {
        let mut ship_to = ShipTo {
            country: commerce::Country::new(country).unwrap(),
            personal: Personal::Sealed(SealedPersonal {
                home: region.into(),
                digest: [0; 16],
                sealed: v.encode().unwrap(),
            }),
        };
        use sealing::personal::UnsealError as U;
        match opener.open(&customer, &mut ship_to) {
            Ok(()) => {
                out.opened += 1;
                if let Seal::Kept(k) = v {
                    out.kept.push(k.ciphertext.clone());
                }
            }
            Err(U::Open(sealing::OpenError::Key(sealing::KeyError::Retired(_)))) => {
                out.retired += 1
            }
            Err(U::Kept(sealing::shred::KeptError::Gone(sealing::shred::Gone::Erased))) => {
                out.erased += 1
            }
            Err(U::Kept(sealing::shred::KeptError::Gone(sealing::shred::Gone::Retired))) => {
                out.expired += 1
            }
            Err(U::Kept(sealing::shred::KeptError::Gone(sealing::shred::Gone::Compacted))) => {
                out.compacted += 1
            }
            // Another customer's, or bytes that only look like a sealed value.
            Err(_) => {}
        }
    }
    out
}
