//! The disk tier: stored responses kept in files under one directory, so that a restarted
//! cache serves what it had without asking the origins again.
//!
//! - **Written through, off the request path.** What the memory tier stores is queued (a
//!   bounded queue; when it is full a write is dropped and counted) for one writer thread,
//!   which writes each key's variants to a new file (`tmp/`, then renamed into `objects/`)
//!   and only then indexes it, under the index's lock and only if no purge of its key or tags
//!   came since it was fetched. Every file has its own name (a sequence number), so a file
//!   is deleted exactly when its index item leaves (evicted, replaced, purged).
//! - **Bounded** by the sum of its files' sizes (moka, weighed by size), and read on a memory
//!   miss; what is read goes back into memory.
//! - **Failures fall back**: a write that fails (a full or unwritable disk) is counted and
//!   warned about, and the cache goes on serving from memory and the origins; a file that is
//!   missing or does not read back whole is dropped and counted as a miss. A directory that
//!   cannot be made, read or written at start is an error.
//! - **Restart**: the directory is scanned at start, reading each file's head only; a file
//!   whose lengths do not add up (a write cut short) is deleted, and of two files for one
//!   key the newer is kept.
//!
//! A file is `[head length: u32 LE][head: codec Head v1][each variant's body, in order]`.

use std::collections::HashSet;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use bytes::Bytes;

use super::tier::{Index, Item, Tier};
use super::{Mark, Purges, Stored, Usage};
use crate::freshness::Freshness;

/// Writes waiting for the writer thread at most, and their bodies' bytes (what the queue
/// holds on to beyond the memory tier's bound).
const QUEUE_MAX: usize = 4_096;
const QUEUE_BYTES_MAX: u64 = 64 << 20;
/// Largest head a file may have (headers of every variant, keys, tags).
const HEAD_BYTES_MAX: u32 = 4 << 20;
/// At most one warning about failing writes this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Where the disk tier keeps its files and how much.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dir: PathBuf,
    pub bytes_max: u64,
    /// Larger files are not written.
    pub object_bytes_max: u64,
    /// For the freshness of what is read back (`Freshness::of`).
    pub heuristic_max: Duration,
}

/// The head of one file: the key and, for each variant, all but its body.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Head {
    pub key: String,
    pub variants: Vec<VariantHead>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VariantHead {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub request_time_ms: u64,
    pub response_time_ms: u64,
    pub vary: Vec<(String, Option<String>)>,
    pub surrogate_keys: Vec<String>,
    pub body_bytes: u64,
}

impl codec::FirstVersion for Head {
    const FORMAT: codec::Format = codec::Format {
        label: "cache object",
        version: 1,
    };
}

impl Head {
    fn of(key: &str, variants: &[Arc<Stored>]) -> Head {
        Head {
            key: key.to_owned(),
            variants: variants
                .iter()
                .map(|v| VariantHead {
                    status: v.status.as_u16(),
                    headers: v
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                        .collect(),
                    request_time_ms: millis(v.freshness.request_time),
                    response_time_ms: millis(v.freshness.response_time),
                    vary: v.vary.clone(),
                    surrogate_keys: v.surrogate_keys.clone(),
                    body_bytes: v.body.len() as u64,
                })
                .collect(),
        }
    }

    fn tags(&self) -> HashSet<String> {
        self.variants
            .iter()
            .flat_map(|v| v.surrogate_keys.iter().cloned())
            .collect()
    }

    /// The file's whole length that this head says.
    fn file_bytes(&self, head_bytes: u32) -> u64 {
        // Saturating: a damaged head must not overflow, only fail to match the file.
        self.variants
            .iter()
            .fold(4 + u64::from(head_bytes), |n, v| {
                n.saturating_add(v.body_bytes)
            })
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn time(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// A file the index holds.
struct OnDisk {
    seq: u64,
    path: PathBuf,
    bytes: u32,
    tags: HashSet<String>,
}

impl Item for OnDisk {
    fn id(&self) -> u64 {
        self.seq
    }

    fn weight(&self) -> u32 {
        self.bytes
    }

    fn tags(&self) -> HashSet<String> {
        self.tags.clone()
    }

    fn left(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One key's variants, to be written.
struct Write {
    key: String,
    variants: Vec<Arc<Stored>>,
    mark: Mark,
    /// Their bodies' bytes.
    bytes: u64,
}

/// What the disk tier has done, for `/metrics`.
#[derive(Default)]
struct Counts {
    reads: AtomicU64,
    read_errors: AtomicU64,
    writes: AtomicU64,
    write_errors: AtomicU64,
    writes_dropped: AtomicU64,
}

/// The disk tier's counts and what it holds.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskUsage {
    pub held: Usage,
    pub reads: u64,
    pub read_errors: u64,
    pub writes: u64,
    pub write_errors: u64,
    pub writes_dropped: u64,
}

pub struct Disk {
    dir: PathBuf,
    tier: Tier<OnDisk>,
    purges: Arc<Purges>,
    queue: SyncSender<Write>,
    next_seq: AtomicU64,
    object_max: u64,
    heuristic_max: Duration,
    counts: Counts,
    /// Bytes of the bodies waiting in the queue.
    queued_bytes: AtomicU64,
    /// When a failing write was last warned about (ms since the epoch).
    warned_ms: AtomicU64,
}

impl Disk {
    /// Opens (making it if need be) and indexes the directory, and starts the writer.
    pub(super) fn open(s: Settings, purges: Arc<Purges>) -> anyhow::Result<Arc<Disk>> {
        let dir = s.dir.clone();
        check_dir(&dir)?;
        // Writes a stop cut short.
        let tmp = dir.join("tmp");
        for f in std::fs::read_dir(&tmp).with_context(|| format!("reading {}", tmp.display()))? {
            let _ = std::fs::remove_file(f?.path());
        }
        let started = Instant::now();
        let (queue, writes) = std::sync::mpsc::sync_channel(QUEUE_MAX);
        let object_max = s
            .object_bytes_max
            .min(s.bytes_max / 4)
            .min(u64::from(u32::MAX));
        let disk = Arc::new(Disk {
            dir: dir.clone(),
            tier: Tier::new(s.bytes_max),
            purges,
            queue,
            next_seq: AtomicU64::new(1),
            object_max,
            heuristic_max: s.heuristic_max,
            counts: Counts::default(),
            queued_bytes: AtomicU64::new(0),
            warned_ms: AtomicU64::new(0),
        });
        let found = disk
            .scan()
            .with_context(|| format!("reading {}", dir.display()))?;
        let usage = disk.usage();
        tracing::info!(
            dir = %dir.display(),
            objects = usage.held.objects,
            bytes = usage.held.bytes,
            dropped = found.dropped,
            ms = started.elapsed().as_millis() as u64,
            "disk tier indexed"
        );
        let weak = Arc::downgrade(&disk);
        std::thread::Builder::new()
            .name("cdn-disk".into())
            .spawn(move || writer(weak, writes))
            .context("starting the disk tier's writer")?;
        Ok(disk)
    }

    fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }

    fn path(&self, seq: u64) -> PathBuf {
        self.objects()
            .join(format!("{:02x}", seq & 0xff))
            .join(format!("{seq:016x}"))
    }

    /// Indexes the files there are, newest last, so that of two for one key the older goes.
    fn scan(&self) -> anyhow::Result<Found> {
        let mut found = Found::default();
        let mut files = Vec::new();
        for shard in std::fs::read_dir(self.objects())? {
            let shard = shard?.path();
            if !shard.is_dir() {
                let _ = std::fs::remove_file(&shard);
                continue;
            }
            for file in std::fs::read_dir(&shard)? {
                let path = file?.path();
                let seq = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .filter(|n| n.len() == 16)
                    .and_then(|n| u64::from_str_radix(n, 16).ok());
                match seq.and_then(|seq| read_head(&path).ok().map(|h| (seq, h))) {
                    Some((seq, (head, bytes))) => files.push((seq, path, head, bytes)),
                    None => {
                        found.dropped += 1;
                        let _ = std::fs::remove_file(&path);
                    }
                }
            }
        }
        files.sort_by_key(|f| f.0);
        let mut index = self
            .tier
            .lock()
            .ok_or_else(|| anyhow::anyhow!("the disk index is poisoned"))?;
        for (seq, path, head, bytes) in files {
            self.next_seq
                .fetch_max(seq.saturating_add(1), Ordering::Relaxed);
            let tags = head.tags();
            let item = OnDisk {
                seq,
                path,
                bytes,
                tags,
            };
            self.tier.insert(&mut index, &head.key, item);
        }
        drop(index);
        self.tier.settle();
        Ok(found)
    }

    /// Whether the index holds `key`.
    #[cfg(test)]
    pub(super) fn holds(&self, key: &str) -> bool {
        self.bytes_of(key).is_some()
    }

    /// The size of `key`'s file, if the index holds one.
    pub(super) fn bytes_of(&self, key: &str) -> Option<u32> {
        self.tier.get(key).map(|i| i.bytes)
    }

    pub(super) fn lock(&self) -> Option<MutexGuard<'_, Index>> {
        self.tier.lock()
    }

    /// Drops `key`'s file; whether there was one.
    pub(super) fn remove(&self, key: &str) -> bool {
        self.tier.remove(key).is_some()
    }

    /// Queues `variants` to be written under `key`, unless they are larger than a file may
    /// be, or the queue is full (in writes or in bytes).
    pub(super) fn write(&self, key: &str, variants: Vec<Arc<Stored>>, mark: Mark) {
        let bytes: u64 = variants.iter().map(|v| v.body.len() as u64).sum();
        if bytes > self.object_max {
            return;
        }
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let w = Write {
            key: key.to_owned(),
            variants,
            mark,
            bytes,
        };
        if queued + bytes > QUEUE_BYTES_MAX || self.queue.try_send(w).is_err() {
            self.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
            self.counts.writes_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// `key`'s variants read back, or `None` (and the file dropped) if it does not read whole.
    pub(super) fn read(&self, key: &str) -> Option<Vec<Arc<Stored>>> {
        let item = self.tier.get(key)?;
        match self.read_file(&item.path, key) {
            Ok(variants) => {
                self.counts.reads.fetch_add(1, Ordering::Relaxed);
                Some(variants)
            }
            // Evicted or replaced while this read: not the file's fault.
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::NotFound) =>
            {
                None
            }
            Err(e) => {
                self.counts.read_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(key, path = %item.path.display(), error = %e, "a cached file did not read back; dropped");
                // Only this file: the writer may have put a newer one in its place meanwhile.
                if self.tier.get(key).is_some_and(|now| now.seq == item.seq) {
                    self.tier.remove(key);
                }
                None
            }
        }
    }

    fn read_file(&self, path: &Path, key: &str) -> anyhow::Result<Vec<Arc<Stored>>> {
        let (found, variants) = decode_file(Bytes::from(std::fs::read(path)?), self.heuristic_max)?;
        anyhow::ensure!(found == key, "the file holds another key");
        Ok(variants)
    }

    /// Writes one key's file and indexes it (on the writer thread).
    fn store(&self, w: Write) {
        self.queued_bytes.fetch_sub(w.bytes, Ordering::Relaxed);
        let head = Head::of(&w.key, &w.variants);
        let encoded = match codec::encode(&head) {
            Ok(e) if e.len() <= HEAD_BYTES_MAX as usize => e,
            _ => return,
        };
        let head_bytes = encoded.len() as u32;
        let bytes = head.file_bytes(head_bytes);
        if bytes > self.object_max {
            return;
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let path = self.path(seq);
        let tmp = self.dir.join("tmp").join(format!("{seq:016x}"));
        let written = (|| -> std::io::Result<()> {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            f.write_all(&head_bytes.to_le_bytes())?;
            f.write_all(&encoded)?;
            for v in &w.variants {
                f.write_all(&v.body)?;
            }
            // On the disk before it has a name in `objects/`: after a power loss a file found
            // there is whole, never one of the right length with blocks that were not written.
            f.into_inner().map_err(|e| e.into_error())?.sync_data()?;
            if let Some(shard) = path.parent() {
                std::fs::create_dir_all(shard)?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            self.failed(&e);
            return;
        }
        let tags = head.tags();
        let Some(mut index) = self.tier.lock() else {
            let _ = std::fs::remove_file(&tmp);
            return;
        };
        // A purge of its key or tags since it was fetched: it may be what the purge removed.
        // Checked, named and indexed under the lock every purge takes, so that no file a purge
        // should have removed is found in `objects/` after a crash either.
        if self.purges.since(w.mark, &w.key, &tags) {
            drop(index);
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            drop(index);
            let _ = std::fs::remove_file(&tmp);
            self.failed(&e);
            return;
        }
        let item = OnDisk {
            seq,
            path,
            bytes: bytes as u32,
            tags,
        };
        self.tier.insert(&mut index, &w.key, item);
        self.counts.writes.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, e: &std::io::Error) {
        self.counts.write_errors.fetch_add(1, Ordering::Relaxed);
        let now = millis(SystemTime::now());
        let last = self.warned_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY.as_millis() as u64
            && self
                .warned_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dir = %self.dir.display(), error = %e, "the disk tier cannot write; serving from memory and the origins");
        }
    }

    /// What it holds and has done.
    pub fn usage(&self) -> DiskUsage {
        let (objects, bytes) = self.tier.usage();
        let c = &self.counts;
        DiskUsage {
            held: Usage {
                objects,
                bytes,
                evictions: self.tier.evictions(),
            },
            reads: c.reads.load(Ordering::Relaxed),
            read_errors: c.read_errors.load(Ordering::Relaxed),
            writes: c.writes.load(Ordering::Relaxed),
            write_errors: c.write_errors.load(Ordering::Relaxed),
            writes_dropped: c.writes_dropped.load(Ordering::Relaxed),
        }
    }
}

#[derive(Default)]
struct Found {
    dropped: u64,
}

/// Writes queued, written one at a time until the disk tier is dropped.
fn writer(disk: Weak<Disk>, writes: Receiver<Write>) {
    while let Ok(w) = writes.recv() {
        let Some(disk) = disk.upgrade() else {
            return;
        };
        disk.store(w);
    }
}

/// Makes `dir` (with `objects/` and `tmp/`) and checks that a file can be written there.
pub fn check_dir(dir: &Path) -> anyhow::Result<()> {
    let tmp = dir.join("tmp");
    for d in [dir.join("objects"), tmp.clone()] {
        std::fs::create_dir_all(&d).with_context(|| format!("making {}", d.display()))?;
    }
    let probe = tmp.join(format!("probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .with_context(|| format!("{} cannot be written", dir.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))?;
    Ok(())
}

/// A whole file's key and variants; an error, never a panic, for bytes that are not one.
pub fn decode_file(
    bytes: Bytes,
    heuristic_max: Duration,
) -> anyhow::Result<(String, Vec<Arc<Stored>>)> {
    let (head, head_bytes) = parse_head(&bytes)?;
    anyhow::ensure!(
        head.file_bytes(head_bytes) == bytes.len() as u64,
        "{} bytes where the head says {}",
        bytes.len(),
        head.file_bytes(head_bytes)
    );
    let mut at = 4 + head_bytes as usize;
    let mut out = Vec::with_capacity(head.variants.len());
    for v in head.variants {
        let status = StatusCode::from_u16(v.status)?;
        let mut headers = HeaderMap::with_capacity(v.headers.len());
        for (name, value) in &v.headers {
            headers.append(
                HeaderName::from_bytes(name.as_bytes())?,
                HeaderValue::from_bytes(value)?,
            );
        }
        let request_time = time(v.request_time_ms);
        let response_time = time(v.response_time_ms);
        let freshness = Freshness::of(status, &headers, request_time, response_time, heuristic_max);
        let end = at + v.body_bytes as usize;
        let body = bytes.slice(at..end);
        at = end;
        out.push(Arc::new(Stored::new(
            status,
            headers,
            body,
            freshness,
            v.vary,
            v.surrogate_keys,
        )));
    }
    Ok((head.key, out))
}

/// The head at the start of `bytes`, and its length.
fn parse_head(bytes: &[u8]) -> anyhow::Result<(Head, u32)> {
    let len: [u8; 4] = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| anyhow::anyhow!("shorter than a head"))?;
    let n = u32::from_le_bytes(len);
    anyhow::ensure!(n <= HEAD_BYTES_MAX, "a head of {n} bytes");
    let head = bytes
        .get(4..4 + n as usize)
        .ok_or_else(|| anyhow::anyhow!("cut inside its head"))?;
    Ok((codec::decode(head)?, n))
}

/// A file's head, read without its bodies, and the file's length (checked against it).
fn read_head(path: &Path) -> anyhow::Result<(Head, u32)> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut n = [0u8; 4];
    f.read_exact(&mut n)?;
    let head_bytes = u32::from_le_bytes(n);
    anyhow::ensure!(head_bytes <= HEAD_BYTES_MAX, "a head of {head_bytes} bytes");
    let mut buf = vec![0u8; 4 + head_bytes as usize];
    buf[..4].copy_from_slice(&n);
    f.read_exact(&mut buf[4..])?;
    let (head, _) = parse_head(&buf)?;
    anyhow::ensure!(
        head.file_bytes(head_bytes) == len && len <= u64::from(u32::MAX),
        "{len} bytes where the head says {}",
        head.file_bytes(head_bytes)
    );
    Ok((head, len as u32))
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn stored(tag: &str, body: usize, fill: u8) -> Arc<Stored> {
        let now = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert("cache-control", HeaderValue::from_static("max-age=600"));
        Arc::new(Stored::new(
            StatusCode::OK,
            headers.clone(),
            Bytes::from(vec![fill; body]),
            Freshness::of(StatusCode::OK, &headers, now, now, Duration::ZERO),
            vec![],
            vec![tag.to_owned()],
        ))
    }

    fn store(dir: &Path, bytes_max: u64) -> Store {
        let settings = Settings {
            dir: dir.to_owned(),
            bytes_max,
            object_bytes_max: bytes_max / 4,
            heuristic_max: Duration::ZERO,
        };
        Store::new(1 << 20, 4, Some(settings)).unwrap()
    }

    fn files(dir: &Path) -> usize {
        walk(&dir.join("objects"))
    }

    fn walk(p: &Path) -> usize {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| if p.is_dir() { walk(&p) } else { 1 })
            .sum()
    }

    /// Waits until the writer has taken `n` writes (written, failed or dropped ones).
    fn written(s: &Store, n: u64) -> DiskUsage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let u = s.disk().unwrap().usage();
            if u.writes + u.write_errors + u.writes_dropped >= n {
                return u;
            }
            assert!(Instant::now() < deadline, "{u:?}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn its_files_stay_within_the_bound_and_leave_with_their_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 64 << 10);
        let h = HeaderMap::new();
        for i in 0..100 {
            s.put(&format!("/o/{i}"), &h, stored("all", 4_000, 1), s.mark());
        }
        written(&s, 100);
        let u = s.disk().unwrap().usage();
        assert!(u.held.bytes <= 64 << 10, "{u:?}");
        assert!(u.held.evictions > 0);
        assert_eq!(
            files(dir.path()) as u64,
            u.held.objects,
            "evicted files are deleted"
        );
        assert_eq!(u.writes_dropped, 0);
        let n = s.purge_tag("all", super::super::PurgeMode::Hard, SystemTime::now());
        assert!(n as u64 >= u.held.objects);
        s.disk().unwrap().tier.settle();
        assert_eq!(files(dir.path()), 0);
    }

    #[test]
    fn a_restart_keeps_whole_files_only_and_the_newest_of_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let h = HeaderMap::new();
        {
            let s = store(dir.path(), 1 << 20);
            s.put("/a", &h, stored("a", 100, 1), s.mark());
            s.put("/b", &h, stored("b", 100, 2), s.mark());
            s.put("/c", &h, stored("c", 100, 3), s.mark());
            written(&s, 3);
        }
        // A newer file for /a (as if a crash came between writing it and deleting the old
        // one), /b cut short, and a stray write in tmp/.
        let d = Disk::open(
            Settings {
                dir: dir.path().to_owned(),
                bytes_max: 1 << 20,
                object_bytes_max: 1 << 18,
                heuristic_max: Duration::ZERO,
            },
            Arc::new(Purges::new()),
        )
        .unwrap();
        let old_a = d.tier.get("/a").unwrap().path.clone();
        let b = d.tier.get("/b").unwrap().path.clone();
        drop(d);
        let newer = old_a.parent().unwrap().join(format!("{:016x}", 0xffff_u64));
        let mut bytes = std::fs::read(&old_a).unwrap();
        let last = bytes.len() - 1;
        bytes[last] = 9;
        std::fs::write(&newer, &bytes).unwrap();
        let whole = std::fs::read(&b).unwrap();
        std::fs::write(&b, &whole[..whole.len() - 10]).unwrap();
        std::fs::write(dir.path().join("tmp").join("0000000000000042"), b"half").unwrap();

        let s = store(dir.path(), 1 << 20);
        let d = s.disk().unwrap();
        assert!(!d.holds("/b") && !b.exists(), "a cut file is dropped");
        assert!(!old_a.exists(), "the older file of a key is dropped");
        let a = d.read("/a").unwrap();
        assert_eq!(a[0].body.last(), Some(&9), "the newer is kept");
        assert_eq!(a[0].surrogate_keys, ["a"]);
        assert_eq!(d.read("/c").unwrap()[0].body, Bytes::from(vec![3u8; 100]));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        // New files are numbered after every one found.
        s.put("/d", &h, stored("d", 10, 4), s.mark());
        written(&s, 1);
        assert!(d.tier.get("/d").unwrap().seq > 0xffff);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn damaged_files_read_as_an_error_never_a_panic(
            edits in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..6),
            cut in proptest::prelude::any::<usize>(),
            grow in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..16),
        ) {
            let v = stored("tag", 50, 7);
            let head = Head::of("/k", &[Arc::clone(&v), v]);
            let encoded = codec::encode(&head).unwrap();
            let mut file = (encoded.len() as u32).to_le_bytes().to_vec();
            file.extend_from_slice(&encoded);
            file.extend_from_slice(&[7u8; 100]);
            assert!(decode_file(Bytes::from(file.clone()), Duration::ZERO).is_ok());
            let damaged = codec::damaged(&file, &edits, cut, &grow);
            let _ = decode_file(Bytes::from(damaged), Duration::ZERO);
        }
    }

    /// A variant a soft purge made stale stays in memory (stale) when another variant of its
    /// URL is stored, but is not written to disk with it: after a restart it is gone, not
    /// fresh again.
    #[tokio::test]
    async fn a_soft_purged_variant_never_reaches_the_disk_again() {
        let dir = tempfile::tempdir().unwrap();
        let lang = |l: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("accept-language", HeaderValue::from_static(l));
            h
        };
        let variant = |l: &str| {
            let mut v = Arc::try_unwrap(stored("t", 10, 1)).unwrap();
            v.vary = vec![("accept-language".into(), Some(l.into()))];
            Arc::new(v)
        };
        {
            let s = store(dir.path(), 1 << 20);
            s.put("/v", &lang("en"), variant("en"), s.mark());
            written(&s, 1);
            s.purge_key("/v", super::super::PurgeMode::Soft, SystemTime::now());
            s.put("/v", &lang("de"), variant("de"), s.mark());
            written(&s, 2);
            let stale = s.find_in_memory("/v", &lang("en")).unwrap();
            assert!(stale.purged_at().is_some(), "kept in memory, stale");
        }
        let s = store(dir.path(), 1 << 20);
        assert!(s.find("/v", &lang("de")).await.is_some());
        assert!(s.find("/v", &lang("en")).await.is_none());
    }

    #[test]
    fn a_file_damaged_after_indexing_is_dropped_when_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path(), 1 << 20);
        s.put("/a", &HeaderMap::new(), stored("a", 100, 1), s.mark());
        written(&s, 1);
        let d = s.disk().unwrap();
        let path = d.tier.get("/a").unwrap().path.clone();
        std::fs::write(&path, b"\x05\x00\x00\x00garbage").unwrap();
        assert!(d.read("/a").is_none());
        assert_eq!(d.usage().read_errors, 1);
        d.tier.settle();
        assert!(!d.holds("/a") && !path.exists());
    }
}
