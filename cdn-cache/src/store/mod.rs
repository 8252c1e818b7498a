//! What the cache holds: stored responses by their key (`Stored`, several variants a key when
//! the origin says `Vary`), in a memory tier bounded by bytes and an optional disk tier that
//! survives a restart (`disk`), each with the index of surrogate keys that purges go through
//! (`tier`), and the purges that hold back what was fetched across them.
//!
//! An entry is never changed in place: an update (a new variant, headers refreshed by a 304)
//! puts a new entry, so a reader holds a consistent one. Two updates of one key at once may
//! keep only one of them, which costs a later fetch, never a wrong answer.

pub mod disk;
mod tier;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use crate::freshness::Freshness;
pub use disk::Disk;
use tier::{Item, Tier};

/// Surrogate keys one response may carry; more are ignored.
pub const SURROGATE_KEYS_MAX: usize = 64;
/// Longest surrogate key.
pub const SURROGATE_KEY_MAX_BYTES: usize = 256;
/// What an object costs beyond its body and headers (the entry, the index), in the weighing.
const OVERHEAD_BYTES: usize = 256;

/// One stored response.
#[derive(Debug)]
pub struct Stored {
    pub status: StatusCode,
    /// Its header, hop-by-hop fields and `Surrogate-Key` removed.
    pub headers: HeaderMap,
    pub body: Bytes,
    pub freshness: Freshness,
    /// The fields its `Vary` names, with the values the request that fetched it had.
    pub vary: Vec<(String, Option<String>)>,
    pub surrogate_keys: Vec<String>,
    /// When a soft purge marked it stale (ms since the epoch, 0 for never).
    purged_at_ms: AtomicU64,
}

impl Stored {
    pub fn new(
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        freshness: Freshness,
        vary: Vec<(String, Option<String>)>,
        surrogate_keys: Vec<String>,
    ) -> Stored {
        Stored {
            status,
            headers,
            body,
            freshness,
            vary,
            surrogate_keys,
            purged_at_ms: AtomicU64::new(0),
        }
    }

    /// The same body under new headers, freshness and (when the 304 sent some) surrogate
    /// keys.
    pub fn refreshed(
        &self,
        headers: HeaderMap,
        freshness: Freshness,
        surrogate_keys: Option<Vec<String>>,
    ) -> Stored {
        Stored::new(
            self.status,
            headers,
            self.body.clone(),
            freshness,
            self.vary.clone(),
            surrogate_keys.unwrap_or_else(|| self.surrogate_keys.clone()),
        )
    }

    /// When a soft purge made it stale, if one did.
    pub fn purged_at(&self) -> Option<SystemTime> {
        match self.purged_at_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    fn mark_purged(&self, now: SystemTime) {
        let ms = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64);
        let _ = self
            .purged_at_ms
            .compare_exchange(0, ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether the request's `headers` select this variant (RFC 9111 §4.1).
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| normalized(headers, name).as_deref() == value.as_deref())
    }

    fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        self.body.len() + headers + OVERHEAD_BYTES
    }
}

/// A request's value of a field named by `Vary`: every line, joined, with the whitespace
/// around each member trimmed (RFC 9111 §4.1 lets a cache normalize so).
pub fn normalized(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut lines = headers.get_all(name).iter().peekable();
    lines.peek()?;
    let members: Vec<String> = lines
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .flat_map(|line| {
            line.split(',')
                .map(|m| m.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    Some(members.join(","))
}

/// The variants of one key, newest first: what the memory tier holds under a key.
#[derive(Debug)]
pub struct Entry {
    /// Tells this entry from one put under the same key after it, in the index.
    id: u64,
    pub variants: Vec<Arc<Stored>>,
}

impl Item for Entry {
    fn id(&self) -> u64 {
        self.id
    }

    fn weight(&self) -> u32 {
        let w: usize = self.variants.iter().map(|v| v.weight()).sum();
        u32::try_from(w).unwrap_or(u32::MAX)
    }

    fn tags(&self) -> HashSet<String> {
        self.variants
            .iter()
            .flat_map(|v| v.surrogate_keys.iter().cloned())
            .collect()
    }
}

/// How a purge leaves what it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeMode {
    /// Gone: the next request fetches it.
    Hard,
    /// Kept in memory, but stale: the next request validates it, and
    /// `stale-while-revalidate` or `stale-if-error` may still serve it meanwhile. The disk's
    /// copy goes, as in a hard purge, so that a restart never brings back as fresh what a
    /// purge made stale.
    Soft,
}

/// Purges so far, and the latest of them by key and by surrogate key: a response fetched
/// across a purge of its key or of one of its tags is not stored, in either tier (it may be
/// what the purge meant to remove).
struct Purges {
    count: AtomicU64,
    keys: moka::sync::Cache<String, u64>,
    tags: moka::sync::Cache<String, u64>,
}

/// Purges remembered by key and by tag at most, and for how long: a fetch that began longer
/// ago than this is not stored if any purge came since.
const PURGES_REMEMBERED: u64 = 100_000;
const PURGES_REMEMBERED_FOR: Duration = Duration::from_secs(600);

/// When a fetch began, as purges count it (`Store::mark`).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    purges: u64,
    at: std::time::Instant,
}

impl Purges {
    fn new() -> Purges {
        let remembered = || {
            moka::sync::Cache::builder()
                .max_capacity(PURGES_REMEMBERED)
                .time_to_live(PURGES_REMEMBERED_FOR)
                .build()
        };
        Purges {
            count: AtomicU64::new(0),
            keys: remembered(),
            tags: remembered(),
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            purges: self.count.load(Ordering::SeqCst),
            at: std::time::Instant::now(),
        }
    }

    /// Whether a purge since `mark` named `key` or one of `tags`.
    fn since(&self, mark: Mark, key: &str, tags: &HashSet<String>) -> bool {
        if self.count.load(Ordering::SeqCst) == mark.purges {
            return false;
        }
        if mark.at.elapsed() >= PURGES_REMEMBERED_FOR {
            return true;
        }
        let after = |seq: Option<u64>| seq.is_some_and(|s| s > mark.purges);
        after(self.keys.get(key)) || tags.iter().any(|t| after(self.tags.get(t)))
    }

    fn note(&self, key: Option<&str>, tag: Option<&str>) {
        let seq = self.count.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(k) = key {
            self.keys.insert(k.to_owned(), seq);
        }
        if let Some(t) = tag {
            self.tags.insert(t.to_owned(), seq);
        }
    }
}

/// Files up to this size are read on the request's thread (`Store::find`).
const INLINE_READ_BYTES_MAX: u32 = 256 << 10;

/// What the tiers hold now.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub objects: u64,
    pub bytes: u64,
    pub evictions: u64,
}

/// Both tiers: the memory tier, bounded by bytes, and the optional disk tier behind it,
/// written through (everything stored in memory is queued for the disk) and read on a memory
/// miss, what it finds going back into memory.
pub struct Store {
    memory: Tier<Entry>,
    disk: Option<Arc<Disk>>,
    purges: Arc<Purges>,
    variants_max: usize,
    next_id: AtomicU64,
}

impl Store {
    /// A store with a memory tier of `memory_bytes_max` and, when `disk` says where, a disk
    /// tier: what it holds from before is indexed first (an error if its directory cannot be
    /// made, read or written).
    pub fn new(
        memory_bytes_max: u64,
        variants_max: usize,
        disk: Option<disk::Settings>,
    ) -> anyhow::Result<Store> {
        let purges = Arc::new(Purges::new());
        let disk = match disk {
            Some(s) => Some(Disk::open(s, Arc::clone(&purges))?),
            None => None,
        };
        Ok(Store {
            memory: Tier::new(memory_bytes_max),
            disk,
            purges,
            variants_max,
            next_id: AtomicU64::new(1),
        })
    }

    /// Where purges stand now, to pass to `put` with what is fetched after it.
    pub fn mark(&self) -> Mark {
        self.purges.mark()
    }

    /// The stored variant that `headers` select under `key`, from memory.
    pub fn find_in_memory(&self, key: &str, headers: &HeaderMap) -> Option<Arc<Stored>> {
        let entry = self.memory.get(key)?;
        entry.variants.iter().find(|v| v.matches(headers)).cloned()
    }

    /// The stored variant that `headers` select under `key`: from memory, else from the disk
    /// (kept in memory after). A small file is read on the request's own thread, as nginx
    /// reads its cache files (a few microseconds from the page cache; a hand-off to another
    /// thread costs more, and each blocking thread costs memory); a large one on a blocking
    /// thread.
    pub async fn find(&self, key: &str, headers: &HeaderMap) -> Option<Arc<Stored>> {
        if let Some(entry) = self.memory.get(key) {
            return entry.variants.iter().find(|v| v.matches(headers)).cloned();
        }
        let disk = self.disk.as_ref()?;
        // Taken before the disk is looked at: a purge that removes what is read here either
        // finished before (its removal made under the locks its note was, so the read finds
        // nothing, or finds what came after it), or is seen when it goes into memory.
        let mark = self.mark();
        let bytes = disk.bytes_of(key)?;
        let variants = if bytes <= INLINE_READ_BYTES_MAX {
            disk.read(key)?
        } else {
            let (d, k) = (Arc::clone(disk), key.to_owned());
            tokio::task::spawn_blocking(move || d.read(&k))
                .await
                .ok()??
        };
        let found = variants.iter().find(|v| v.matches(headers)).cloned();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry { id, variants };
        // Not served if a purge came while it was read: it may be what the purge removed.
        self.insert(key, entry, mark, false).then_some(found?)
    }

    /// Stores `stored` under `key`, in the place of the variant `headers` select (if any),
    /// unless a purge of its key or tags came since `mark` (taken before it was fetched);
    /// whether it was stored. The disk gets it later, from its own thread.
    pub fn put(&self, key: &str, headers: &HeaderMap, stored: Arc<Stored>, mark: Mark) -> bool {
        let mut variants = vec![Arc::clone(&stored)];
        if let Some(old) = self.memory.get(key) {
            variants.extend(
                old.variants
                    .iter()
                    // A variant of another Vary is dropped: the origin changed what it varies on.
                    .filter(|v| !v.matches(headers) && same_fields(&v.vary, &stored.vary))
                    .take(self.variants_max.saturating_sub(1))
                    .cloned(),
            );
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.insert(key, Entry { id, variants }, mark, true)
    }

    fn insert(&self, key: &str, entry: Entry, mark: Mark, to_disk: bool) -> bool {
        let Some(mut index) = self.memory.lock() else {
            return false;
        };
        // Checked and inserted under the index's lock, which every purge takes first: a purge
        // either comes after this entry is in, or is seen here.
        if self.purges.since(mark, key, &entry.tags()) {
            return false;
        }
        let disk = self.disk.as_ref().filter(|_| to_disk);
        // Variants a soft purge made stale go no further: the disk keeps no such mark, and
        // must not bring them back as fresh after a restart.
        let fresh: Vec<Arc<Stored>> = disk
            .map(|_| {
                entry
                    .variants
                    .iter()
                    .filter(|v| v.purged_at().is_none())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        self.memory.insert(&mut index, key, entry);
        drop(index);
        if let Some(disk) = disk
            && !fresh.is_empty()
        {
            disk.write(key, fresh, mark);
        }
        true
    }

    /// Drops or marks stale every variant under `key`; whether there was any. Noted and
    /// carried out under both tiers' locks, so that nothing put or read back meanwhile
    /// misses it.
    pub fn purge_key(&self, key: &str, mode: PurgeMode, now: SystemTime) -> bool {
        let _memory = self.memory.lock();
        let _disk = self.disk.as_ref().map(|d| d.lock());
        self.purges.note(Some(key), None);
        self.purge_one(key, mode, now)
    }

    fn purge_one(&self, key: &str, mode: PurgeMode, now: SystemTime) -> bool {
        let on_disk = self.disk.as_ref().is_some_and(|d| d.remove(key));
        let in_memory = match mode {
            PurgeMode::Hard => self.memory.remove(key).is_some(),
            PurgeMode::Soft => match self.memory.get(key) {
                Some(e) => {
                    e.variants.iter().for_each(|v| v.mark_purged(now));
                    true
                }
                None => false,
            },
        };
        in_memory || on_disk
    }

    /// Purges every entry tagged with surrogate key `tag`; how many there were.
    pub fn purge_tag(&self, tag: &str, mode: PurgeMode, now: SystemTime) -> usize {
        let mut keys: HashSet<String> = HashSet::new();
        let memory = self.memory.lock();
        let disk = self.disk.as_ref().and_then(|d| d.lock());
        self.purges.note(None, Some(tag));
        keys.extend(memory.iter().flat_map(|i| i.tagged(tag)));
        keys.extend(disk.iter().flat_map(|i| i.tagged(tag)));
        keys.iter().filter(|k| self.purge_one(k, mode, now)).count()
    }

    /// What the memory tier holds now.
    pub fn memory_usage(&self) -> Usage {
        let (objects, bytes) = self.memory.usage();
        Usage {
            objects,
            bytes,
            evictions: self.memory.evictions(),
        }
    }

    /// The disk tier, if there is one.
    pub fn disk(&self) -> Option<&Disk> {
        self.disk.as_deref()
    }
}

fn same_fields(a: &[(String, Option<String>)], b: &[(String, Option<String>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn stored(vary: Vec<(String, Option<String>)>, tags: &[&str], body: usize) -> Stored {
        let now = SystemTime::now();
        let headers = HeaderMap::new();
        Stored::new(
            StatusCode::OK,
            headers.clone(),
            Bytes::from(vec![0u8; body]),
            Freshness::of(StatusCode::OK, &headers, now, now, Duration::ZERO),
            vary,
            tags.iter().map(|t| t.to_string()).collect(),
        )
    }

    fn req(lang: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(l) = lang {
            h.insert("accept-language", HeaderValue::from_static(l));
        }
        h
    }

    #[test]
    fn variants_by_vary_and_purges_by_tag() {
        let m = Store::new(1 << 20, 8, None).unwrap();
        let vary = |v: Option<&str>| vec![("accept-language".to_owned(), v.map(str::to_owned))];
        m.put(
            "/p/1",
            &req(Some("en")),
            stored(vary(Some("en")), &["p1"], 10).into(),
            m.mark(),
        );
        m.put(
            "/p/1",
            &req(Some("de")),
            stored(vary(Some("de")), &["p1", "c"], 10).into(),
            m.mark(),
        );
        m.put(
            "/p/1",
            &req(None),
            stored(vary(None), &["p1"], 10).into(),
            m.mark(),
        );
        m.put(
            "/p/2",
            &req(None),
            stored(vec![], &["c"], 10).into(),
            m.mark(),
        );
        assert!(m.find_in_memory("/p/1", &req(Some("en"))).is_some());
        assert!(m.find_in_memory("/p/1", &req(Some("de"))).is_some());
        assert!(m.find_in_memory("/p/1", &req(None)).is_some());
        assert!(m.find_in_memory("/p/1", &req(Some("fr"))).is_none());
        let now = SystemTime::now();
        assert_eq!(m.purge_tag("c", PurgeMode::Soft, now), 2);
        assert!(
            m.find_in_memory("/p/2", &req(None))
                .unwrap()
                .purged_at()
                .is_some()
        );
        assert_eq!(m.purge_tag("p1", PurgeMode::Hard, now), 1);
        assert!(m.find_in_memory("/p/1", &req(Some("en"))).is_none());
        assert_eq!(m.purge_tag("p1", PurgeMode::Hard, now), 0);
        assert_eq!(m.purge_tag("c", PurgeMode::Hard, now), 1);
        m.memory.settle();
        assert!(m.memory.lock().unwrap().is_empty());
    }

    #[test]
    fn bytes_are_bounded_and_evicted_entries_leave_the_index() {
        let m = Store::new(100_000, 8, None).unwrap();
        for i in 0..1_000 {
            m.put(
                &format!("/o/{i}"),
                &req(None),
                stored(vec![], &["all"], 1_000).into(),
                m.mark(),
            );
        }
        let usage = m.memory_usage();
        assert!(usage.bytes <= 100_000, "{usage:?}");
        assert!(usage.evictions > 0);
        let tagged = m.memory.lock().unwrap().tagged_count("all");
        assert_eq!(
            tagged as u64, usage.objects,
            "the index holds only what is stored"
        );
    }

    #[test]
    fn a_response_fetched_across_a_purge_of_its_url_or_tag_is_not_stored() {
        let m = Store::new(1 << 20, 8, None).unwrap();
        let before = m.mark();
        m.purge_key("/a", PurgeMode::Hard, SystemTime::now());
        m.purge_tag("t", PurgeMode::Soft, SystemTime::now());
        assert!(!m.put("/a", &req(None), stored(vec![], &[], 1).into(), before));
        assert!(!m.put("/b", &req(None), stored(vec![], &["t"], 1).into(), before));
        // Others are: purges of other URLs and tags do not hold them back.
        assert!(m.put("/c", &req(None), stored(vec![], &["u"], 1).into(), before));
        assert!(m.put("/a", &req(None), stored(vec![], &["t"], 1).into(), m.mark()));
    }

    #[test]
    fn repeated_fields_are_one_value() {
        let mut h = HeaderMap::new();
        h.append("accept", HeaderValue::from_static("a ,b"));
        h.append("accept", HeaderValue::from_static(" c"));
        assert_eq!(normalized(&h, "accept").as_deref(), Some("a,b,c"));
        assert_eq!(normalized(&h, "x"), None);
    }
}
