//! Region keys: each core region has X25519 key pairs, named by key id (`<region>/<n>`, `n`
//! counting up from 1 with each rotation). Edges and other regions hold only public keys and seal
//! to the newest of the home region's; the region opens with whichever of its private keys the
//! sealed data names, so rotation keeps old data readable.
//!
//! Opening goes through a `KeyProvider`, which decapsulates an HPKE key share itself and hands
//! back only what the sealed data's one-time key is derived from: the private key never leaves
//! it, so a cloud KMS fits behind the same interface. `FileKeys` keeps them in files:
//!
//! - `<dir>/<region>.keys`, private (0600): one line per key pair, `<key id> <private key, hex>
//!   <made at, unix ms>`, oldest first; a key destroyed is `<key id> retired <when>`. A region's
//!   cores hold their region's file and no other. Lines from a build before keys had a time have
//!   none.
//! - `<dir>/public.keys`: one line per key, `<key id> <public key, hex>`, every region's; every
//!   node holds it. The newest line of a region is the key sealed to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hpke::kem::{Kem as _, X25519HkdfSha256};
use hpke::{Deserializable, Serializable};

type Kem = X25519HkdfSha256;
pub type PublicKey = <Kem as hpke::Kem>::PublicKey;
type PrivateKey = <Kem as hpke::Kem>::PrivateKey;

/// Bytes of a key, private or public (X25519).
pub const KEY_LEN: usize = 32;
/// The file of every region's public keys.
pub const PUBLIC_FILE: &str = "public.keys";

/// Why keys could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("bad region name {0:?}: lower-case letters, digits and '-'")]
    BadRegion(String),
    #[error("bad key id {0:?}: <region>/<n>")]
    BadId(String),
    #[error("no key for region {0}: `tradewind keys init` or `keys rotate` makes one")]
    NoRegion(String),
    #[error("key {0} is not held here: only its region's cores hold it")]
    NotHeld(KeyId),
    #[error("key {0} was destroyed (retired): what is sealed to it opens nowhere")]
    Retired(KeyId),
    #[error("key {0} is its region's newest: data is sealed to it, so it is not retired")]
    Newest(KeyId),
    #[error("{path}, line {line}: {why}")]
    BadFile {
        path: PathBuf,
        line: usize,
        why: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} already exists; refusing to overwrite a region's keys")]
    Exists(PathBuf),
    #[error("key {0} does not open this data")]
    Decapsulate(KeyId),
    #[error("key {0} is no usable X25519 public key")]
    Unusable(KeyId),
    #[error(
        "{0} has keys of region {1} that {1}.keys here lacks: rotate where the region's private keys are"
    )]
    Elsewhere(PathBuf, String),
}

/// A key's name: its region and its number there.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct KeyId {
    region: String,
    n: u32,
}

impl KeyId {
    pub fn new(region: &str, n: u32) -> Result<KeyId, KeyError> {
        check_region(region)?;
        if n == 0 {
            return Err(KeyError::BadId(format!("{region}/0")));
        }
        Ok(KeyId {
            region: region.to_owned(),
            n,
        })
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn n(&self) -> u32 {
        self.n
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.region, self.n)
    }
}

impl std::str::FromStr for KeyId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<KeyId, KeyError> {
        let bad = || KeyError::BadId(s.chars().take(80).collect());
        let (region, n) = s.split_once('/').ok_or_else(bad)?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        KeyId::new(region, n).map_err(|_| bad())
    }
}

impl TryFrom<String> for KeyId {
    type Error = KeyError;
    fn try_from(s: String) -> Result<KeyId, KeyError> {
        s.parse()
    }
}

impl From<KeyId> for String {
    fn from(id: KeyId) -> String {
        id.to_string()
    }
}

fn check_region(region: &str) -> Result<(), KeyError> {
    // `public` would name the public key file itself.
    let ok = !region.is_empty()
        && region != "public"
        && region.len() <= 63
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(KeyError::BadRegion(region.chars().take(80).collect()))
    }
}

/// What opens sealed data: given the key id the data names, the HPKE key share it carries and
/// HPKE's `info`, the receiver's side of HPKE's key schedule, from which each value's key is
/// exported. A provider that does not hold the key says `NotHeld`.
pub trait KeyProvider: Send + Sync {
    fn context(&self, id: &KeyId, enc: &[u8], info: &[u8]) -> Result<Box<dyn Exporter>, KeyError>;
}

/// A receiver's HPKE context: exports what `context` (RFC 9180 §5.3) derives, as `out`.
pub trait Exporter: Send + Sync {
    fn export(&self, context: &[u8], out: &mut [u8]) -> Result<(), KeyError>;
}

type ReceiverContext = hpke::aead::AeadCtxR<hpke::aead::ExportOnlyAead, hpke::kdf::HkdfSha256, Kem>;

/// An HPKE receiver's context opened from a key held here.
struct Received(ReceiverContext, KeyId);

impl Exporter for Received {
    fn export(&self, context: &[u8], out: &mut [u8]) -> Result<(), KeyError> {
        self.0
            .export(context, out)
            .map_err(|_| KeyError::Decapsulate(self.1.clone()))
    }
}

/// Every region's public keys: what edges and other regions seal with.
#[derive(Clone, Debug, Default)]
pub struct PublicKeys {
    keys: BTreeMap<KeyId, [u8; KEY_LEN]>,
}

impl PublicKeys {
    /// Reads `<dir>/public.keys`.
    pub fn load(dir: &Path) -> Result<PublicKeys, KeyError> {
        let keys = read_lines(&dir.join(PUBLIC_FILE))?.into_iter().collect();
        Ok(PublicKeys { keys })
    }

    /// The key to seal to for `region`: its newest, and its id.
    pub fn newest(&self, region: &str) -> Result<(KeyId, PublicKey), KeyError> {
        let (id, bytes) = self
            .keys
            .iter()
            .filter(|(id, _)| id.region == region)
            .max_by_key(|(id, _)| id.n)
            .ok_or_else(|| KeyError::NoRegion(region.chars().take(80).collect()))?;
        let key = PublicKey::from_bytes(bytes).map_err(|_| KeyError::Unusable(id.clone()))?;
        Ok((id.clone(), key))
    }
}

/// A region's private keys, from its key file: the provider of that region's cores.
pub struct FileKeys {
    keys: BTreeMap<KeyId, PrivateKey>,
    /// When each key held was made, where its line says.
    made: BTreeMap<KeyId, i64>,
    retired: BTreeMap<KeyId, i64>,
}

/// One line of a region's private key file.
#[derive(Clone)]
enum Private {
    Held {
        id: KeyId,
        key: [u8; KEY_LEN],
        made_ms: Option<i64>,
    },
    Retired {
        id: KeyId,
        at_ms: i64,
    },
}

impl Private {
    fn id(&self) -> &KeyId {
        match self {
            Private::Held { id, .. } | Private::Retired { id, .. } => id,
        }
    }
}

fn private_path(dir: &Path, region: &str) -> PathBuf {
    dir.join(format!("{region}.keys"))
}

fn read_private(path: &Path) -> Result<Vec<Private>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out: Vec<Private> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| KeyError::BadFile {
            path: path.to_path_buf(),
            line: i + 1,
            why: why.into(),
        };
        let shape = "not `<key id> <hex> [<made at>]` or `<key id> retired <when>`";
        let words: Vec<&str> = line.split(' ').collect();
        if !(2..=3).contains(&words.len()) {
            return Err(bad(shape));
        }
        let id: KeyId = words[0].parse().map_err(|_| bad("bad key id"))?;
        let time = |w: &str| w.parse::<i64>().map_err(|_| bad("bad time"));
        let entry = match words[1..] {
            ["retired", at] => Private::Retired {
                id,
                at_ms: time(at)?,
            },
            [hex] | [hex, _] => Private::Held {
                key: codec::unhex(hex)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| bad("not 64 hex digits"))?,
                made_ms: words.get(2).map(|w| time(w)).transpose()?,
                id,
            },
            _ => {
                return Err(bad(
                    "not `<key id> <hex> [<made at>]` or `<key id> retired <when>`",
                ));
            }
        };
        if out.iter().any(|seen| seen.id() == entry.id()) {
            return Err(bad("a key id given twice"));
        }
        out.push(entry);
    }
    Ok(out)
}

fn write_private(path: &Path, lines: &[Private]) -> Result<(), KeyError> {
    let text: String = lines
        .iter()
        .map(|l| match l {
            Private::Held {
                id,
                key,
                made_ms: Some(t),
            } => format!("{id} {} {t}\n", codec::hex(key)),
            Private::Held { id, key, .. } => format!("{id} {}\n", codec::hex(key)),
            Private::Retired { id, at_ms } => format!("{id} retired {at_ms}\n"),
        })
        .collect();
    util::files::replace(path, text.as_bytes(), true).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}

impl FileKeys {
    /// Reads `<dir>/<region>.keys`.
    pub fn load(dir: &Path, region: &str) -> Result<FileKeys, KeyError> {
        check_region(region)?;
        let path = private_path(dir, region);
        let mut keys = BTreeMap::new();
        let mut made = BTreeMap::new();
        let mut retired = BTreeMap::new();
        for (i, line) in read_private(&path)?.into_iter().enumerate() {
            if line.id().region != region {
                return Err(KeyError::BadFile {
                    path,
                    line: i + 1,
                    why: format!("key {} is not region {region}'s", line.id()),
                });
            }
            match line {
                Private::Held { id, key, made_ms } => {
                    let key = PrivateKey::from_bytes(&key).map_err(|_| KeyError::BadFile {
                        path: path.clone(),
                        line: i + 1,
                        why: "not an X25519 private key".into(),
                    })?;
                    if let Some(t) = made_ms {
                        made.insert(id.clone(), t);
                    }
                    keys.insert(id, key);
                }
                Private::Retired { id, at_ms } => {
                    retired.insert(id, at_ms);
                }
            }
        }
        if keys.is_empty() {
            return Err(KeyError::NoRegion(region.to_owned()));
        }
        Ok(FileKeys {
            keys,
            made,
            retired,
        })
    }

    /// The ids of the keys held, oldest first.
    pub fn ids(&self) -> Vec<&KeyId> {
        self.keys.keys().collect()
    }

    /// The ids of the keys destroyed, oldest first.
    pub fn retired(&self) -> Vec<&KeyId> {
        self.retired.keys().collect()
    }

    /// When a key held was made, if its line says.
    pub fn made_ms(&self, id: &KeyId) -> Option<i64> {
        self.made.get(id).copied()
    }
}

impl KeyProvider for FileKeys {
    fn context(&self, id: &KeyId, enc: &[u8], info: &[u8]) -> Result<Box<dyn Exporter>, KeyError> {
        let sk = self.keys.get(id).ok_or_else(|| {
            if self.retired.contains_key(id) {
                KeyError::Retired(id.clone())
            } else {
                KeyError::NotHeld(id.clone())
            }
        })?;
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(enc)
            .map_err(|_| KeyError::Decapsulate(id.clone()))?;
        let ctx = hpke::setup_receiver::<hpke::aead::ExportOnlyAead, hpke::kdf::HkdfSha256, Kem>(
            &hpke::OpModeR::Base,
            sk,
            &enc,
            info,
        )
        .map_err(|_| KeyError::Decapsulate(id.clone()))?;
        Ok(Box::new(Received(ctx, id.clone())))
    }
}

impl std::fmt::Debug for FileKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Ids only: a key is never printed.
        f.debug_struct("FileKeys")
            .field("ids", &self.ids())
            .field("retired", &self.retired())
            .finish()
    }
}

/// Makes the first key of each of `regions` in `dir` (none may have one yet) and writes every
/// region's public keys (`crate::init` makes their keeping keys too).
pub fn init(dir: &Path, regions: &[String]) -> Result<Vec<KeyId>, KeyError> {
    for r in regions {
        check_region(r)?;
        let path = private_path(dir, r);
        if path.exists() {
            return Err(KeyError::Exists(path));
        }
    }
    regions.iter().map(|r| rotate(dir, r)).collect()
}

/// Adds a new key to `region` (its first, when it has none), kept beside the old ones so that
/// data sealed to them still opens, and publishes its public key: from now on data is sealed to
/// it. Each file is replaced whole.
pub fn rotate(dir: &Path, region: &str) -> Result<KeyId, KeyError> {
    check_region(region)?;
    std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = private_path(dir, region);
    let mut private = if path.exists() {
        read_private(&path)?
    } else {
        Vec::new()
    };
    let public_path = dir.join(PUBLIC_FILE);
    let mut public = if public_path.exists() {
        read_lines(&public_path)?
    } else {
        Vec::new()
    };
    // Numbered after every key of the region, published, held or retired: a region's private
    // keys moved to its cores leave their public halves here, and a number given twice would
    // break every node's `public.keys`.
    if public
        .iter()
        .any(|(id, _)| id.region == region && !private.iter().any(|held| held.id() == id))
    {
        return Err(KeyError::Elsewhere(public_path, region.to_owned()));
    }
    let n = private.iter().map(|l| l.id().n).max().unwrap_or(0) + 1;
    let id = KeyId::new(region, n)?;
    let mut ikm = [0u8; KEY_LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut ikm).map_err(|_| {
        KeyError::Io {
            path: path.clone(),
            source: std::io::Error::other("no randomness"),
        }
    })?;
    let (sk, pk) = Kem::derive_keypair(&ikm);
    private.push(Private::Held {
        id: id.clone(),
        key: sk.to_bytes().into(),
        made_ms: Some(util::clock::now_ms()),
    });
    public.push((id.clone(), pk.to_bytes().into()));
    write_private(&path, &private)?;
    write_lines(&public_path, &public, false)?;
    Ok(id)
}

/// Destroys `ids`, keys of `region` that are not its newest: their lines become `retired`, so
/// that what was sealed to them opens nowhere, and says so. The file is replaced whole.
pub fn retire(dir: &Path, region: &str, ids: &[KeyId]) -> Result<(), KeyError> {
    check_region(region)?;
    let path = private_path(dir, region);
    let mut private = read_private(&path)?;
    let newest = private
        .iter()
        .filter(|l| matches!(l, Private::Held { .. }))
        .map(|l| l.id().clone())
        .max_by_key(|id| id.n);
    let now = util::clock::now_ms();
    for id in ids {
        if Some(id) == newest.as_ref() {
            return Err(KeyError::Newest(id.clone()));
        }
        let line = private
            .iter_mut()
            .find(|l| l.id() == id)
            .ok_or_else(|| KeyError::NotHeld(id.clone()))?;
        if let Private::Held { .. } = line {
            *line = Private::Retired {
                id: id.clone(),
                at_ms: now,
            };
        }
    }
    write_private(&path, &private)
}

fn read_lines(path: &Path) -> Result<Vec<(KeyId, [u8; KEY_LEN])>, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| KeyError::BadFile {
            path: path.to_path_buf(),
            line: i + 1,
            why: why.into(),
        };
        let (id, hex) = line
            .split_once(' ')
            .ok_or_else(|| bad("not `<key id> <hex>`"))?;
        let id: KeyId = id.parse().map_err(|_| bad("bad key id"))?;
        let bytes: [u8; KEY_LEN] = codec::unhex(hex.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("not 64 hex digits"))?;
        if out.iter().any(|(seen, _)| *seen == id) {
            return Err(bad("a key id given twice"));
        }
        out.push((id, bytes));
    }
    Ok(out)
}

fn write_lines(
    path: &Path,
    lines: &[(KeyId, [u8; KEY_LEN])],
    private: bool,
) -> Result<(), KeyError> {
    let text: String = lines
        .iter()
        .map(|(id, bytes)| format!("{id} {}\n", codec::hex(bytes)))
        .collect();
    util::files::replace(path, text.as_bytes(), private).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })
}
