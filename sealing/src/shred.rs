//! A home region's keeping keys: what the addresses it keeps are sealed with once they have
//! reached it, made so that the key of one customer (erasure) or of one period (retention) can
//! be destroyed while every other stays: crypto-shredding, without a key per customer to store.
//!
//! A value's key is derived from two secrets, and is lost when either is:
//! - **the period's key**, from a forward chain: `K(p + 1) = H(K(p))`. The file holds the key of
//!   the oldest period kept, from which every later one follows and no earlier one; retention
//!   moves it forward (`retire_before`), and the periods behind it are gone.
//! - **the customer's leaf** in a GGM tree (a puncturable pseudorandom function, Goldreich,
//!   Goldwasser and Micali 1986): a leaf is named by 128 bits hashed from the customer and their
//!   erasure epoch, and its value is derived from the root, one level per bit, each child
//!   derived from its parent and its side (`Prg`: AES-256 keyed by the parent in the trees
//!   this version makes, SHA-256 in those of files before it). Erasing a leaf (`puncture`)
//!   replaces the one node that covers it by the siblings of its path (128 at most), from
//!   which every other leaf still follows and it does not. An erasure moves the customer to a
//!   new epoch, and so a new leaf, for what they order after it.
//!
//! The tree grows by up to 128 nodes (some 13 KB of file) with each erased epoch, and never
//! shrinks: nodes never merge again. What bounds it is **compaction**: once the newest tree
//! holds more than a set number of nodes, a new tree (a generation) is begun, from a fresh
//! root; every value is kept again in it; and the old tree is dropped whole. An epoch that
//! ended before a tree was begun is never punctured in it: nothing is kept under an ended epoch
//! (a keep at it is refused from the erasure on), so a tree made after the erasure's version
//! holds nothing to destroy.
//!
//! The file (`<dir>/<region>.shred`, 0600, the region's cores' only) is replaced whole on each
//! change, so a destroyed key is not in the file that replaces it. What a filesystem or a disk
//! keeps of the replaced file's blocks is outside a process's reach: keep key files on an
//! encrypted volume, or behind a key service. `KeepingKeys` is what a key service would stand
//! behind: no key leaves it but each value's own.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::keys::KeyError;
use crate::suite::{NONCE_LEN, Suite, Unauthentic};

/// Bytes of a key, a node or a period's key.
const LEN: usize = 32;
/// The periods of a file `keys::init` makes: a day.
pub const DEFAULT_PERIOD_MS: u64 = 86_400_000;
/// Bits of a leaf's name: the tree's depth.
const DEPTH: u32 = 128;
/// The first line of a keeping key file, with its layout's version (1: one tree, of
/// generation 0, whose nodes follow the chain line).
const HEADER: &str = "tradewind keeping keys v2";
const HEADER_V1: &str = "tradewind keeping keys v1";
/// Periods past the current one that a key is derived for, at most: a later one is refused as
/// a time no order has (a clock or a value gone wrong), instead of hashing for minutes.
pub const PERIODS_AHEAD_MAX: u64 = 1_024;
/// Periods before now that a new file's chain starts at, at most (`backfill_ms`).
pub const BACKFILL_PERIODS_MAX: u64 = 100_000;
/// Period keys remembered once derived (each costs one hash per period after the oldest).
const PERIOD_CACHE_MAX: usize = 256;
/// Trees a file holds at most: the newest, and those whose values are being kept again in it.
const TREES_MAX: usize = 8;
/// The nodes of the newest tree past which the keeper begins a new one by default
/// (`keeping_tree_nodes_max`): about 7 MB of file, some 500 erased epochs.
pub const TREE_NODES_MAX: usize = 65_536;

/// A customer's key for one period could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gone {
    #[error("its period's key was destroyed (retention)")]
    Retired,
    #[error("its customer's key was destroyed (erasure)")]
    Erased,
    #[error("its tree was dropped after what it kept was kept again in a newer one")]
    Compacted,
    #[error("period {0} is further ahead of now than any order's time")]
    TooFar(u64),
    #[error("its tree ({0}) is newer than any this file holds")]
    NoTree(u32),
}

/// A value as its home region keeps it: sealed under the keeping key of its customer's epoch
/// and its order's period in one tree, with a salt of its own from which its key and nonce are
/// derived (so no key seals two values). Tree, period, epoch and suite are bound: changed, it
/// does not open.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Kept {
    /// The tree it is kept in (0 for values written before trees were compacted).
    pub generation: u32,
    pub period: u64,
    pub epoch: i64,
    pub suite: Suite,
    #[serde(with = "serde_bytes")]
    pub salt: Vec<u8>,
    /// The data, encrypted, with its tag.
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Bytes of a kept value's salt.
pub const SALT_LEN: usize = 16;

/// Why a kept value did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeptError {
    #[error("its key is gone: {0}")]
    Gone(#[from] Gone),
    #[error("{0}")]
    Unauthentic(#[from] Unauthentic),
}

/// Whose key, in which tree and period: what a kept value names of its key.
#[derive(Clone, Copy, Debug)]
pub struct KeptAt<'a> {
    pub generation: u32,
    pub period: u64,
    pub customer: &'a str,
    pub epoch: i64,
}

/// A customer's ended epoch, and the version its erasure applied at (0: not known, as if
/// before every tree).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    pub customer: String,
    pub epoch: i64,
    pub version: u64,
}

/// One tree, as `KeepingKeys::trees` tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TreeStatus {
    pub generation: u32,
    /// The version applied here when it was begun: epochs that ended by then hold nothing in it.
    pub since_version: u64,
    pub nodes: usize,
}

/// What keeps a home region's keeping keys, and destroys them: the file of this module
/// (`ShredKeys`) here. It is shaped so that a key service could stand behind it: the keys
/// themselves never leave it, only each value's own key, derived for the value's salt.
pub trait KeepingKeys: Send + Sync + std::fmt::Debug {
    /// The key and nonce of the one value kept at `at` with `suite` and `salt`.
    fn value_key(
        &self,
        at: &KeptAt<'_>,
        suite: Suite,
        salt: &[u8],
    ) -> Result<(Vec<u8>, [u8; NONCE_LEN]), Gone>;
    /// The period a time falls in.
    fn period_of(&self, at_ms: i64) -> u64;
    /// The length of a period.
    fn period_ms(&self) -> u64;
    /// The oldest period whose key is kept.
    fn first_period(&self) -> u64;
    /// The tree values are kept in now: the newest.
    fn generation(&self) -> u32;
    /// Every tree held, oldest first.
    fn trees(&self) -> Vec<TreeStatus>;
    /// Whether a tree that may hold something under `ended` still holds its key: it is due to
    /// be destroyed.
    fn due(&self, ended: &Ended) -> bool;
    /// Destroys the keys of `ended`, in every tree that may hold something under them, in one
    /// change; how many were there.
    fn puncture(&self, ended: &[Ended]) -> Result<usize, KeyError>;
    /// Destroys the keys of every period that ended by `before_ms`; how many were.
    fn retire_before(&self, before_ms: i64) -> Result<u64, KeyError>;
    /// Begins a new tree, with `since_version` the version applied here now; its generation.
    fn begin_tree(&self, since_version: u64) -> Result<u32, KeyError>;
    /// Drops every tree older than `generation`; how many there were.
    fn drop_before(&self, generation: u32) -> Result<usize, KeyError>;
}

impl dyn KeepingKeys {
    /// `plain`, bound to `aad`, kept for `customer` at `epoch` in `period`, in the newest tree,
    /// with `suite`.
    pub fn seal(
        &self,
        period: u64,
        customer: &str,
        epoch: i64,
        suite: Suite,
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Kept, KeptError> {
        let generation = self.generation();
        let at = KeptAt {
            generation,
            period,
            customer,
            epoch,
        };
        let mut salt = vec![0u8; SALT_LEN];
        rand::Rng::fill_bytes(&mut rand::rng(), &mut salt);
        let (k, nonce) = self.value_key(&at, suite, &salt)?;
        Ok(Kept {
            generation,
            period,
            epoch,
            suite,
            ciphertext: suite.encrypt(&k, &nonce, aad, plain),
            salt,
        })
    }

    /// The plaintext of `kept`, `customer`'s, bound to `aad`.
    pub fn open(&self, kept: &Kept, customer: &str, aad: &[u8]) -> Result<Vec<u8>, KeptError> {
        let at = KeptAt {
            generation: kept.generation,
            period: kept.period,
            customer,
            epoch: kept.epoch,
        };
        let (k, nonce) = self.value_key(&at, kept.suite, &kept.salt)?;
        Ok(kept.suite.decrypt(&k, &nonce, aad, &kept.ciphertext)?)
    }
}

/// One node of a tree: the leaves under `start` at `depth` (the first `depth` bits of
/// `start` name it, the rest are zero).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Node {
    depth: u32,
    value: [u8; LEN],
}

#[derive(Clone)]
struct Tree {
    since_version: u64,
    prg: Prg,
    /// Its nodes, by their first leaf: the leaves they cover are disjoint.
    nodes: BTreeMap<u128, Node>,
}

#[derive(Clone)]
struct Inner {
    period_ms: u64,
    /// The oldest period kept, and its key.
    first: u64,
    chain: [u8; LEN],
    /// Each tree, by generation: never empty.
    trees: BTreeMap<u32, Tree>,
    periods: HashMap<u64, [u8; LEN]>,
}

/// A region's keeping keys, in their file.
pub struct ShredKeys {
    path: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for ShredKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never a key: where the file is, and its shape.
        let inner = self.lock();
        f.debug_struct("ShredKeys")
            .field("path", &self.path)
            .field("period_ms", &inner.period_ms)
            .field("first_period", &inner.first)
            .field("trees", &inner.trees.len())
            .finish()
    }
}

fn sha(parts: &[&[u8]]) -> [u8; LEN] {
    let mut d = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        d.update(p);
    }
    d.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}

/// How a tree derives a node's children: named in the file, per tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Prg {
    /// SHA-256 of a label, the side and the parent (two compressions a level): the trees of
    /// files of version 1, and those whose line names none.
    Sha256,
    /// AES-256 keyed by the parent: child `b` is `E(2b) || E(2b + 1)`, GGM's own construction
    /// from a pseudorandom function. A customer's key is 128 levels down, and this takes a
    /// few microseconds where SHA-256 takes some twenty (BENCHMARKS.md).
    Aes256,
}

impl Prg {
    fn name(self) -> &'static str {
        match self {
            Prg::Sha256 => "sha256",
            Prg::Aes256 => "aes256",
        }
    }

    fn named(name: &str) -> Option<Prg> {
        [Prg::Sha256, Prg::Aes256]
            .into_iter()
            .find(|p| p.name() == name)
    }

    fn child(self, node: &[u8; LEN], bit: u8) -> [u8; LEN] {
        match self {
            Prg::Sha256 => sha(&[b"tradewind keeping tree v1\0", &[bit], node]),
            Prg::Aes256 => {
                use aes::cipher::{BlockCipherEncrypt, KeyInit};
                let cipher = aes::Aes256Enc::new(&(*node).into());
                // Labelled, so that no other use of a node as a key meets these blocks.
                let block = |i: u8| {
                    let mut b = *b"tradewind tree \0";
                    b[15] = i;
                    aes::Block::from(b)
                };
                let mut blocks = [block(2 * bit), block(2 * bit + 1)];
                cipher.encrypt_blocks(&mut blocks);
                let mut out = [0u8; LEN];
                out[..16].copy_from_slice(&blocks[0]);
                out[16..].copy_from_slice(&blocks[1]);
                out
            }
        }
    }
}

fn next_period(key: &[u8; LEN]) -> [u8; LEN] {
    sha(&[b"tradewind keeping period v1\0", key])
}

/// A kept value's own key and nonce: from its keeping key, its suite and its salt.
fn value_key(key: &[u8; LEN], suite: Suite, salt: &[u8]) -> (Vec<u8>, [u8; NONCE_LEN]) {
    let mac = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let derive = |what: &str| {
        let mut c = ring::hmac::Context::with_key(&mac);
        c.update(b"tradewind kept value v1\0");
        c.update(what.as_bytes());
        c.update(&[0]);
        c.update(suite.name().as_bytes());
        c.update(&[0]);
        c.update(salt);
        c.sign()
    };
    let k = derive("key").as_ref()[..suite.key_len()].to_vec();
    let nonce = derive("nonce").as_ref()[..NONCE_LEN]
        .try_into()
        .expect("a nonce's length");
    (k, nonce)
}

/// The leaf that names `customer` at `epoch`.
fn leaf(customer: &str, epoch: i64) -> u128 {
    let h = sha(&[
        b"tradewind keeping leaf v1\0",
        customer.as_bytes(),
        &[0],
        &epoch.to_be_bytes(),
    ]);
    u128::from_be_bytes(h[..16].try_into().expect("16 bytes"))
}

/// The bit of `leaf` at `level` (0 is the root's choice).
fn bit(leaf: u128, level: u32) -> u8 {
    ((leaf >> (DEPTH - 1 - level)) & 1) as u8
}

/// Whether the node at `start`, `depth` covers `leaf`.
fn covers(start: u128, depth: u32, leaf: u128) -> bool {
    depth == 0 || (start >> (DEPTH - depth)) == (leaf >> (DEPTH - depth))
}

fn random() -> Result<[u8; LEN], KeyError> {
    let mut out = [0u8; LEN];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut out).map_err(|_| {
        KeyError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other("no randomness"),
        }
    })?;
    Ok(out)
}

impl Tree {
    /// A tree of one root, fresh.
    fn new(since_version: u64) -> Result<Tree, KeyError> {
        Ok(Tree {
            since_version,
            prg: Prg::Aes256,
            nodes: [(
                0,
                Node {
                    depth: 0,
                    value: random()?,
                },
            )]
            .into(),
        })
    }

    /// The node covering `leaf`, if it is not punctured.
    fn covering(&self, leaf: u128) -> Option<(u128, Node)> {
        let (&start, &node) = self.nodes.range(..=leaf).next_back()?;
        covers(start, node.depth, leaf).then_some((start, node))
    }

    fn leaf_value(&self, leaf: u128) -> Option<[u8; LEN]> {
        let (_, node) = self.covering(leaf)?;
        let mut v = node.value;
        for level in node.depth..DEPTH {
            v = self.prg.child(&v, bit(leaf, level));
        }
        Some(v)
    }

    /// Whether it may hold something under `ended`: it was begun before the epoch ended.
    fn may_hold(&self, ended: &Ended) -> bool {
        ended.version == 0 || self.since_version < ended.version
    }

    /// Takes `leaf` out: the node covering it replaced by the siblings of its path.
    fn puncture(&mut self, leaf: u128) -> bool {
        let Some((start, node)) = self.covering(leaf) else {
            return false;
        };
        self.nodes.remove(&start);
        let mut v = node.value;
        for level in node.depth..DEPTH {
            let b = bit(leaf, level);
            let shift = DEPTH - 1 - level;
            let sibling_start = ((leaf >> shift) ^ 1) << shift;
            self.nodes.insert(
                sibling_start,
                Node {
                    depth: level + 1,
                    value: self.prg.child(&v, b ^ 1),
                },
            );
            v = self.prg.child(&v, b);
        }
        true
    }
}

impl Inner {
    fn period_key(&mut self, period: u64) -> Result<[u8; LEN], Gone> {
        if period < self.first {
            return Err(Gone::Retired);
        }
        let now = util::clock::now_ms().max(0) as u64 / self.period_ms;
        if period > now.saturating_add(PERIODS_AHEAD_MAX) {
            return Err(Gone::TooFar(period));
        }
        if let Some(k) = self.periods.get(&period) {
            return Ok(*k);
        }
        // From the nearest one derived before it.
        let (mut p, mut k) = self
            .periods
            .iter()
            .filter(|(p, _)| **p < period)
            .max_by_key(|(p, _)| **p)
            .map_or((self.first, self.chain), |(p, k)| (*p, *k));
        while p < period {
            k = next_period(&k);
            p += 1;
        }
        if self.periods.len() >= PERIOD_CACHE_MAX {
            // The oldest go first: keys are asked for mostly around now.
            let oldest = *self.periods.keys().min().expect("not empty");
            self.periods.remove(&oldest);
        }
        self.periods.insert(period, k);
        Ok(k)
    }

    fn newest(&self) -> u32 {
        *self.trees.keys().next_back().expect("a file holds a tree")
    }

    fn text(&self) -> String {
        let mut out = format!(
            "{HEADER}\nperiod_ms {}\nchain {} {}\n",
            self.period_ms,
            self.first,
            codec::hex(&self.chain)
        );
        for (generation, tree) in &self.trees {
            out.push_str(&format!(
                "tree {generation} {} {}\n",
                tree.since_version,
                tree.prg.name()
            ));
            for (start, node) in &tree.nodes {
                out.push_str(&format!(
                    "node {} {:032x} {}\n",
                    node.depth,
                    start,
                    codec::hex(&node.value)
                ));
            }
        }
        out
    }

    fn parse(path: &Path, text: &str) -> Result<Inner, KeyError> {
        let bad = |line: usize, why: &str| KeyError::BadFile {
            path: path.to_path_buf(),
            line,
            why: why.into(),
        };
        let key = |line: usize, hex: &str| -> Result<[u8; LEN], KeyError> {
            codec::unhex(hex)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad(line, "not 64 hex digits"))
        };
        let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim()));
        let mut trees: BTreeMap<u32, Tree> = BTreeMap::new();
        // Version 1 held one tree, whose nodes follow the chain line.
        let mut tree: Option<u32> = match lines.next() {
            Some((_, HEADER)) => None,
            Some((_, HEADER_V1)) => {
                trees.insert(
                    0,
                    Tree {
                        since_version: 0,
                        prg: Prg::Sha256,
                        nodes: BTreeMap::new(),
                    },
                );
                Some(0)
            }
            _ => return Err(bad(1, &format!("not `{HEADER}`"))),
        };
        let v1 = tree.is_some();
        let mut period_ms = None;
        let mut chain = None;
        for (n, line) in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                [] | [""] => {}
                ["period_ms", ms] => {
                    let ms: u64 = ms.parse().map_err(|_| bad(n, "bad period"))?;
                    if ms == 0 {
                        return Err(bad(n, "a period of 0 ms"));
                    }
                    period_ms = Some(ms);
                }
                ["chain", first, hex] => {
                    let first: u64 = first.parse().map_err(|_| bad(n, "bad period number"))?;
                    chain = Some((first, key(n, hex)?));
                }
                ["tree", generation, since, prg @ ..] if !v1 && prg.len() <= 1 => {
                    let prg = match prg.first() {
                        None => Prg::Sha256,
                        Some(name) => {
                            Prg::named(name).ok_or_else(|| bad(n, "no such tree kind"))?
                        }
                    };
                    let generation: u32 = generation
                        .parse()
                        .ok()
                        .filter(|g| trees.keys().next_back().is_none_or(|last| g > last))
                        .ok_or_else(|| bad(n, "bad or repeated tree generation"))?;
                    let since_version = since.parse().map_err(|_| bad(n, "bad version"))?;
                    if trees.len() >= TREES_MAX {
                        return Err(bad(n, "too many trees"));
                    }
                    trees.insert(
                        generation,
                        Tree {
                            since_version,
                            prg,
                            nodes: BTreeMap::new(),
                        },
                    );
                    tree = Some(generation);
                }
                ["node", depth, start, hex] => {
                    let nodes = &mut trees
                        .get_mut(&tree.ok_or_else(|| bad(n, "a node before any tree"))?)
                        .expect("the tree just named")
                        .nodes;
                    let depth: u32 = depth
                        .parse()
                        .ok()
                        .filter(|d| *d <= DEPTH)
                        .ok_or_else(|| bad(n, "bad depth"))?;
                    // Its first `depth` bits name it, and the rest are zero.
                    let start = u128::from_str_radix(start, 16)
                        .ok()
                        .filter(|s| start.len() == 32 && (depth == DEPTH || s << depth == 0))
                        .ok_or_else(|| bad(n, "bad node start"))?;
                    let node = Node {
                        depth,
                        value: key(n, hex)?,
                    };
                    // Nodes are disjoint: one overlapping the one before would make a leaf's
                    // key depend on which is read.
                    let before = nodes
                        .range(..=start)
                        .next_back()
                        .is_some_and(|(&s, prev): (&u128, &Node)| covers(s, prev.depth, start));
                    let after = nodes
                        .range(start..)
                        .next()
                        .is_some_and(|(&s, _)| covers(start, depth, s));
                    if before || after {
                        return Err(bad(n, "nodes that overlap"));
                    }
                    nodes.insert(start, node);
                }
                _ => return Err(bad(n, "not `period_ms`, `chain`, `tree` or `node`")),
            }
        }
        let period_ms = period_ms.ok_or_else(|| bad(0, "no period_ms line"))?;
        let (first, chain) = chain.ok_or_else(|| bad(0, "no chain line"))?;
        if trees.is_empty() {
            return Err(bad(0, "no tree"));
        }
        Ok(Inner {
            period_ms,
            first,
            chain,
            trees,
            periods: HashMap::new(),
        })
    }
}

/// The file of `region`'s keeping keys in `dir`.
pub fn path(dir: &Path, region: &str) -> PathBuf {
    dir.join(format!("{region}.shred"))
}

/// Where a new file's chain starts by default: ten years back, or `BACKFILL_PERIODS_MAX`
/// periods if fewer, so that orders accepted before the file was made (a region whose store
/// came before keeping keys) are kept too, and a first key costs at most that many hashes.
pub fn backfill_ms(period_ms: u64) -> i64 {
    const TEN_YEARS_MS: u64 = 3_650 * 86_400_000;
    let back = TEN_YEARS_MS.min(period_ms.saturating_mul(BACKFILL_PERIODS_MAX));
    util::clock::now_ms() - i64::try_from(back).unwrap_or(i64::MAX)
}

/// Makes `region`'s keeping key file in `dir` with periods of `period_ms`, its chain starting
/// at the period of `since_ms`, unless it has one; whether it made it.
pub fn ensure(dir: &Path, region: &str, period_ms: u64, since_ms: i64) -> Result<bool, KeyError> {
    match ShredKeys::create(&path(dir, region), period_ms, since_ms) {
        Ok(_) => Ok(true),
        Err(KeyError::Exists(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

impl ShredKeys {
    /// Makes a new file at `path` (refused if one is there) with periods of `period_ms`,
    /// starting at the period of `since_ms`: an order accepted before it is not kept.
    pub fn create(path: &Path, period_ms: u64, since_ms: i64) -> Result<ShredKeys, KeyError> {
        if period_ms == 0 {
            return Err(KeyError::BadFile {
                path: path.to_path_buf(),
                line: 0,
                why: "a period of 0 ms".into(),
            });
        }
        let inner = Inner {
            period_ms,
            first: since_ms.max(0) as u64 / period_ms,
            chain: random()?,
            trees: [(0, Tree::new(0)?)].into(),
            periods: HashMap::new(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        util::files::write_new(path, inner.text().as_bytes(), true).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_path_buf())
            } else {
                KeyError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
        Ok(ShredKeys {
            path: path.to_path_buf(),
            inner: Mutex::new(inner),
        })
    }

    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<ShredKeys, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(ShredKeys {
            inner: Mutex::new(Inner::parse(path, &text)?),
            path: path.to_path_buf(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The keeping key at `at`.
    fn key(&self, at: &KeptAt<'_>) -> Result<[u8; LEN], Gone> {
        let leaf = leaf(at.customer, at.epoch);
        let mut inner = self.lock();
        let period_key = inner.period_key(at.period)?;
        let tree = inner
            .trees
            .get(&at.generation)
            .ok_or(if at.generation < inner.newest() {
                Gone::Compacted
            } else {
                Gone::NoTree(at.generation)
            })?;
        let leaf = tree.leaf_value(leaf).ok_or(Gone::Erased)?;
        Ok(sha(&[b"tradewind keeping key v1\0", &period_key, &leaf]))
    }

    /// Puts `next` in place of the keys, in the file first: the file replaced, or nothing
    /// changed.
    fn replace(&self, inner: &mut Inner, next: Inner) -> Result<(), KeyError> {
        util::files::replace(&self.path, next.text().as_bytes(), true).map_err(|source| {
            KeyError::Io {
                path: self.path.clone(),
                source,
            }
        })?;
        *inner = next;
        Ok(())
    }
}

impl KeepingKeys for ShredKeys {
    fn value_key(
        &self,
        at: &KeptAt<'_>,
        suite: Suite,
        salt: &[u8],
    ) -> Result<(Vec<u8>, [u8; NONCE_LEN]), Gone> {
        Ok(value_key(&self.key(at)?, suite, salt))
    }

    fn period_of(&self, at_ms: i64) -> u64 {
        at_ms.max(0) as u64 / self.lock().period_ms
    }

    fn period_ms(&self) -> u64 {
        self.lock().period_ms
    }

    fn first_period(&self) -> u64 {
        self.lock().first
    }

    fn generation(&self) -> u32 {
        self.lock().newest()
    }

    fn trees(&self) -> Vec<TreeStatus> {
        self.lock()
            .trees
            .iter()
            .map(|(g, t)| TreeStatus {
                generation: *g,
                since_version: t.since_version,
                nodes: t.nodes.len(),
            })
            .collect()
    }

    fn due(&self, ended: &Ended) -> bool {
        let leaf = leaf(&ended.customer, ended.epoch);
        self.lock()
            .trees
            .values()
            .any(|t| t.may_hold(ended) && t.covering(leaf).is_some())
    }

    fn puncture(&self, ended: &[Ended]) -> Result<usize, KeyError> {
        let mut inner = self.lock();
        let mut next = inner.clone();
        let mut punctured = 0;
        for e in ended {
            let leaf = leaf(&e.customer, e.epoch);
            let mut any = false;
            for tree in next.trees.values_mut().filter(|t| t.may_hold(e)) {
                any |= tree.puncture(leaf);
            }
            punctured += usize::from(any);
        }
        if punctured > 0 {
            self.replace(&mut inner, next)?;
        }
        Ok(punctured)
    }

    fn retire_before(&self, before_ms: i64) -> Result<u64, KeyError> {
        let mut inner = self.lock();
        let first = before_ms.max(0) as u64 / inner.period_ms;
        if first <= inner.first {
            return Ok(0);
        }
        let retired = first - inner.first;
        let chain = match inner.period_key(first) {
            Ok(k) => k,
            // So far ahead that no order is kept under any period before it.
            Err(_) => random()?,
        };
        let mut next = inner.clone();
        next.first = first;
        next.chain = chain;
        next.periods.retain(|p, _| *p >= first);
        self.replace(&mut inner, next)?;
        Ok(retired)
    }

    fn begin_tree(&self, since_version: u64) -> Result<u32, KeyError> {
        let mut inner = self.lock();
        if inner.trees.len() >= TREES_MAX {
            return Err(KeyError::BadFile {
                path: self.path.clone(),
                line: 0,
                why: format!("{TREES_MAX} trees already: drop the older ones first"),
            });
        }
        let generation = inner.newest().checked_add(1).ok_or(KeyError::BadFile {
            path: self.path.clone(),
            line: 0,
            why: "no generation after the last".into(),
        })?;
        let mut next = inner.clone();
        next.trees.insert(generation, Tree::new(since_version)?);
        self.replace(&mut inner, next)?;
        Ok(generation)
    }

    fn drop_before(&self, generation: u32) -> Result<usize, KeyError> {
        let mut inner = self.lock();
        let generation = generation.min(inner.newest());
        let mut next = inner.clone();
        next.trees.retain(|g, _| *g >= generation);
        let dropped = inner.trees.len() - next.trees.len();
        if dropped > 0 {
            self.replace(&mut inner, next)?;
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: u64 = 86_400_000;

    fn keys() -> (tempfile::TempDir, ShredKeys) {
        let dir = tempfile::tempdir().unwrap();
        let k = ShredKeys::create(&path(dir.path(), "cn-east"), DAY, 10 * DAY as i64).unwrap();
        (dir, k)
    }

    /// `customer`'s keeping key at `epoch` for `period`, in the newest tree.
    fn key(k: &ShredKeys, period: u64, customer: &str, epoch: i64) -> Result<[u8; LEN], Gone> {
        in_tree(k, k.generation(), period, customer, epoch)
    }

    fn in_tree(
        k: &ShredKeys,
        generation: u32,
        period: u64,
        customer: &str,
        epoch: i64,
    ) -> Result<[u8; LEN], Gone> {
        k.key(&KeptAt {
            generation,
            period,
            customer,
            epoch,
        })
    }

    /// `customer`'s `epoch`, ended at an unknown version (in every tree).
    fn ended(customer: &str, epoch: i64) -> Ended {
        ended_at(customer, epoch, 0)
    }

    fn ended_at(customer: &str, epoch: i64, version: u64) -> Ended {
        Ended {
            customer: customer.into(),
            epoch,
            version,
        }
    }

    fn nodes(k: &ShredKeys) -> usize {
        std::fs::read_to_string(k.path())
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("node "))
            .count()
    }

    #[test]
    fn an_erased_customer_loses_every_period_and_no_one_else_loses_anything() {
        let (_dir, k) = keys();
        let before: Vec<_> = (10..13)
            .flat_map(|p| {
                [("c-1", 0), ("c-1", 7), ("c-2", 0)].map(|(c, e)| ((p, c, e), key(&k, p, c, e)))
            })
            .collect();
        assert!(k.due(&ended("c-1", 0)));
        assert_eq!(k.puncture(&[ended("c-1", 0)]).unwrap(), 1);
        assert_eq!(
            k.puncture(&[ended("c-1", 0)]).unwrap(),
            0,
            "a second erasure finds nothing"
        );
        assert!(!k.due(&ended("c-1", 0)));
        // Read again from its file, as after a restart.
        let again = ShredKeys::load(k.path()).unwrap();
        for ((p, c, e), was) in before {
            for keys in [&k, &again] {
                if (c, e) == ("c-1", 0) {
                    assert_eq!(key(keys, p, c, e), Err(Gone::Erased));
                } else {
                    assert_eq!(key(keys, p, c, e), was, "{c} at epoch {e}, period {p}");
                }
            }
        }
        // The file holds no node above the erased leaf: nothing it keeps derives it.
        assert_eq!(nodes(&k), 128);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(k.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn retention_destroys_the_periods_behind_it_and_keeps_the_rest() {
        let (_dir, k) = keys();
        let later = key(&k, 12, "c-1", 0).unwrap();
        assert_eq!(k.retire_before(11 * DAY as i64 + 5).unwrap(), 1);
        assert_eq!(k.retire_before(11 * DAY as i64).unwrap(), 0);
        assert_eq!(key(&k, 10, "c-1", 0), Err(Gone::Retired));
        assert_eq!(key(&k, 12, "c-1", 0).unwrap(), later);
        let again = ShredKeys::load(k.path()).unwrap();
        assert_eq!(again.first_period(), 11);
        assert_eq!(key(&again, 10, "c-1", 0), Err(Gone::Retired));
        assert_eq!(key(&again, 12, "c-1", 0).unwrap(), later);
        let now = util::clock::now_ms() as u64 / DAY;
        let far = now + PERIODS_AHEAD_MAX + 1;
        assert_eq!(key(&k, far, "c-1", 0), Err(Gone::TooFar(far)));
        assert!(key(&k, now + PERIODS_AHEAD_MAX, "c-1", 0).is_ok());
    }

    /// A new tree keeps what is kept from then on; the old one opens what it kept until it is
    /// dropped; an epoch that ended before a tree was begun is never punctured in it, so a
    /// compacted file is as small as a new one, however many erasures came before.
    #[test]
    fn compaction_begins_a_tree_that_holds_no_erasure_before_it() {
        let (_dir, k) = keys();
        let old = key(&k, 10, "c-1", 0).unwrap();
        let (gone_before, gone_after) = (ended_at("c-9", 0, 40), ended_at("c-8", 0, 60));
        k.puncture(std::slice::from_ref(&gone_before)).unwrap();
        assert_eq!(nodes(&k), 128);
        assert_eq!(k.begin_tree(50).unwrap(), 1);
        assert_eq!(k.generation(), 1);
        // Old values still open in their tree; new ones are kept in the new tree.
        assert_eq!(in_tree(&k, 0, 10, "c-1", 0).unwrap(), old);
        let new = key(&k, 10, "c-1", 0).unwrap();
        assert_ne!(new, old);
        // Ended before the tree: due nowhere (done in the old one, nothing in the new one).
        assert!(!k.due(&gone_before));
        assert_eq!(k.puncture(std::slice::from_ref(&gone_before)).unwrap(), 0);
        // Ended after: in both.
        assert!(k.due(&gone_after));
        assert_eq!(k.puncture(std::slice::from_ref(&gone_after)).unwrap(), 1);
        assert_eq!(in_tree(&k, 0, 10, "c-8", 0), Err(Gone::Erased));
        assert_eq!(in_tree(&k, 1, 10, "c-8", 0), Err(Gone::Erased));
        // Not known when it ended: in both, to be sure.
        assert!(k.due(&ended("c-7", 0)));
        assert_eq!(
            k.trees()
                .iter()
                .map(|t| (t.generation, t.since_version))
                .collect::<Vec<_>>(),
            [(0, 0), (1, 50)]
        );
        let again = ShredKeys::load(k.path()).unwrap();
        assert_eq!(in_tree(&again, 0, 10, "c-1", 0).unwrap(), old);
        assert_eq!(key(&again, 10, "c-1", 0).unwrap(), new);
        // The old tree dropped: what it kept no longer opens, and the file is small again.
        assert_eq!(k.drop_before(1).unwrap(), 1);
        assert_eq!(in_tree(&k, 0, 10, "c-1", 0), Err(Gone::Compacted));
        assert_eq!(in_tree(&k, 5, 10, "c-1", 0), Err(Gone::NoTree(5)));
        assert_eq!(key(&k, 10, "c-1", 0).unwrap(), new);
        assert_eq!(nodes(&k), 128, "only the erasure that came after the tree");
        assert_eq!(k.drop_before(7).unwrap(), 0, "never the newest");
        for g in 2..=TREES_MAX as u32 {
            k.begin_tree(100)
                .unwrap_or_else(|e| panic!("tree {g}: {e}"));
        }
        assert!(k.begin_tree(100).is_err(), "at most {TREES_MAX} trees");
    }

    #[test]
    fn a_file_that_is_not_one_is_refused_with_its_line() {
        let (dir, k) = keys();
        let good = std::fs::read_to_string(k.path()).unwrap();
        let node = good
            .lines()
            .find(|l| l.starts_with("node "))
            .unwrap()
            .to_owned();
        let p = dir.path().join("bad.shred");
        for (text, line) in [
            ("hello\n".to_owned(), 1),
            (good.replace("period_ms 86400000", "period_ms 0"), 2),
            (
                good.replace(&node, "node 0 00000000000000000000000000000000 abc"),
                5,
            ),
            (format!("{good}{}\n", node.replace("node 0", "node 1")), 6),
            (
                format!(
                    "{good}node 1 00000000000000000000000000000001 {}\n",
                    "00".repeat(32)
                ),
                6,
            ),
            (format!("{good}what\n"), 6),
            (format!("{good}tree 0 5\n"), 6),
            (good.replace("tree 0 0 aes256\n", ""), 4),
            (good.replace("tree 0 0 aes256", "tree 0 0 md5"), 4),
        ] {
            std::fs::write(&p, text).unwrap();
            match ShredKeys::load(&p) {
                Err(KeyError::BadFile { line: l, .. }) => assert_eq!(l, line),
                other => panic!("{other:?}"),
            }
        }
        let missing = ShredKeys::load(&dir.path().join("none.shred")).unwrap_err();
        assert!(matches!(missing, KeyError::Io { .. }), "{missing}");
        let twice = ShredKeys::create(k.path(), DAY, 0).unwrap_err();
        assert!(matches!(twice, KeyError::Exists(_)), "{twice}");
    }

    /// The file's layouts and the keys they derive, pinned: a file written by any version
    /// keeps opening what was kept under it, in every later build. Version 1 (one tree, of
    /// SHA-256) is read as generation 0 and written back as version 2; a tree line that names
    /// no kind is of SHA-256.
    #[test]
    fn the_file_format_and_its_keys_are_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pinned.shred");
        let chain = format!("period_ms 86400000\nchain 20000 {}\n", "11".repeat(32));
        let root = format!("node 0 {} {}\n", "0".repeat(32), "22".repeat(32));
        let v1 = format!("tradewind keeping keys v1\n{chain}{root}");
        let v2 = format!(
            "tradewind keeping keys v2\n{chain}tree 0 0 sha256\n{root}tree 3 77 aes256\nnode 0 {} {}\n",
            "0".repeat(32),
            "33".repeat(32)
        );
        std::fs::write(&p, &v1).unwrap();
        let k = ShredKeys::load(&p).unwrap();
        let hex = |k: &ShredKeys, g, period| codec::hex(&in_tree(k, g, period, "c-1", 7).unwrap());
        assert_eq!(hex(&k, 0, 20000), PINNED_20000);
        assert_eq!(hex(&k, 0, 20003), PINNED_20003);
        // Written back as version 2, the same keys.
        k.retire_before(0).unwrap();
        k.puncture(&[ended("c-2", 0)]).unwrap();
        let again = std::fs::read_to_string(&p).unwrap();
        assert!(again.starts_with(&format!(
            "tradewind keeping keys v2\n{chain}tree 0 0 sha256\n"
        )));
        assert_eq!(hex(&ShredKeys::load(&p).unwrap(), 0, 20003), PINNED_20003);
        std::fs::write(&p, &v2).unwrap();
        let k = ShredKeys::load(&p).unwrap();
        assert_eq!(hex(&k, 0, 20003), PINNED_20003);
        assert_eq!(hex(&k, 3, 20003), PINNED_AES_TREE);
        assert_eq!(k.generation(), 3);
        k.retire_before(0).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), v2);
        std::fs::write(&p, v2.replace(" sha256\n", "\n")).unwrap();
        assert_eq!(hex(&ShredKeys::load(&p).unwrap(), 0, 20003), PINNED_20003);
    }

    const PINNED_20000: &str = "451a839c8f4d48c9ad7ac45a74b815637b426dd76950bcdd479899fd0ae9a07d";
    const PINNED_20003: &str = "4d79fa43a53564d6922251a5f04debcfd89a8517685bedaf0ef3ac6ca175b820";
    const PINNED_AES_TREE: &str =
        "37fbcb7dfbce18a18ba56dcd56af48a6ba2bd7312a1b6cee8639b7f0aa991320";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Whatever is erased, in whatever order, every other leaf keeps its key and every
        /// erased one has none.
        #[test]
        fn punctures_take_exactly_their_leaves(
            erased in proptest::collection::vec((0u8..40, 0i64..3), 0..12),
            asked in proptest::collection::vec((0u8..40, 0i64..3), 1..20),
        ) {
            let (_dir, k) = keys();
            let name = |c: u8| format!("c-{c}");
            let was: Vec<_> = asked.iter().map(|(c, e)| key(&k, 10, &name(*c), *e)).collect();
            for (c, e) in &erased {
                k.puncture(&[ended(&name(*c), *e)]).unwrap();
            }
            let again = ShredKeys::load(k.path()).unwrap();
            for ((c, e), was) in asked.iter().zip(was) {
                let gone = erased.contains(&(*c, *e));
                for keys in [&k, &again] {
                    let now = key(keys, 10, &name(*c), *e);
                    if gone {
                        prop_assert_eq!(now, Err(Gone::Erased));
                    } else {
                        prop_assert_eq!(&now, &was);
                    }
                }
            }
        }
    }
}
