//! What the cache holds: stored responses by their key (`Stored`, several variants a key when
//! the origin says `Vary`), in a memory tier bounded by bytes (moka, weighed by each object's
//! size), and the index of surrogate keys that purges go through.
//!
//! An entry is never changed in place: an update (a new variant, headers refreshed by a 304)
//! puts a new entry, so a reader holds a consistent one. Two updates of one key at once may
//! keep only one of them, which costs a later fetch, never a wrong answer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;

use crate::freshness::Freshness;

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

/// The variants of one key, newest first.
#[derive(Debug)]
pub struct Entry {
    /// Tells this entry from one put under the same key after it, in the index.
    id: u64,
    pub variants: Vec<Arc<Stored>>,
}

impl Entry {
    fn weight(&self) -> u32 {
        let w: usize = self.variants.iter().map(|v| v.weight()).sum();
        u32::try_from(w).unwrap_or(u32::MAX)
    }

    fn surrogate_keys(&self) -> HashSet<String> {
        self.variants
            .iter()
            .flat_map(|v| v.surrogate_keys.iter().cloned())
            .collect()
    }
}

/// Which cache keys each surrogate key tags, and the reverse, so that a key's entries are
/// found at once and nothing is left behind when an entry goes.
#[derive(Default)]
struct Index {
    by_surrogate: HashMap<String, HashSet<String>>,
    /// A key's entry id and surrogate keys.
    by_key: HashMap<String, (u64, HashSet<String>)>,
}

impl Index {
    fn set(&mut self, key: &str, id: u64, surrogates: HashSet<String>) {
        self.remove(key, None);
        for s in &surrogates {
            self.by_surrogate
                .entry(s.clone())
                .or_default()
                .insert(key.to_owned());
        }
        if !surrogates.is_empty() {
            self.by_key.insert(key.to_owned(), (id, surrogates));
        }
    }

    /// Forgets `key`'s tags; only if they are entry `id`'s, when given (an eviction noticed
    /// late must not untag the entry put after it).
    fn remove(&mut self, key: &str, id: Option<u64>) {
        if id.is_some_and(|id| self.by_key.get(key).is_some_and(|(has, _)| *has != id)) {
            return;
        }
        for s in self.by_key.remove(key).map(|(_, s)| s).unwrap_or_default() {
            if let Some(keys) = self.by_surrogate.get_mut(&s) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_surrogate.remove(&s);
                }
            }
        }
    }
}

/// An entry that left the memory tier: its key and id.
type Gone = (Arc<String>, u64);

/// How a purge leaves what it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PurgeMode {
    /// Gone: the next request fetches it.
    Hard,
    /// Kept, but stale: the next request validates it, and `stale-while-revalidate` or
    /// `stale-if-error` may still serve it meanwhile.
    Soft,
}

/// The memory tier: entries by cache key, weighed by bytes.
pub struct Memory {
    entries: moka::sync::Cache<String, Arc<Entry>>,
    index: Mutex<Index>,
    /// Entries that left (key and id), for the index to forget when it is next locked: the
    /// listener that sees them go may run inside a call that holds the index.
    gone: Arc<Mutex<Vec<Gone>>>,
    variants_max: usize,
    evictions: Arc<AtomicU64>,
    next_id: AtomicU64,
    /// Purges so far, and the latest of them by key and by surrogate key: a response fetched
    /// across a purge of its key or of one of its tags is not stored (it may be what the purge
    /// meant to remove).
    purges: AtomicU64,
    purged_keys: moka::sync::Cache<String, u64>,
    purged_tags: moka::sync::Cache<String, u64>,
}

/// Purges remembered by key and by tag at most, and for how long: a fetch that began longer
/// ago than this is not stored if any purge came since.
const PURGES_REMEMBERED: u64 = 100_000;
const PURGES_REMEMBERED_FOR: Duration = Duration::from_secs(600);

/// When a fetch began, as purges count it (`Memory::mark`).
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    purges: u64,
    at: std::time::Instant,
}

impl Memory {
    pub fn new(bytes_max: u64, variants_max: usize) -> Memory {
        let gone = Arc::new(Mutex::new(Vec::new()));
        let evictions = Arc::new(AtomicU64::new(0));
        let (on_evict, evicted) = (Arc::clone(&gone), Arc::clone(&evictions));
        let entries = moka::sync::Cache::builder()
            .max_capacity(bytes_max)
            .weigher(|_k: &String, e: &Arc<Entry>| e.weight())
            .eviction_listener(move |key: Arc<String>, e: Arc<Entry>, cause| {
                use moka::notification::RemovalCause;
                if cause == RemovalCause::Replaced {
                    return;
                }
                if cause.was_evicted() {
                    evicted.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut gone) = on_evict.lock() {
                    gone.push((key, e.id));
                }
            })
            .build();
        Memory {
            entries,
            index: Mutex::new(Index::default()),
            gone,
            variants_max,
            evictions,
            next_id: AtomicU64::new(1),
            purges: AtomicU64::new(0),
            purged_keys: remembered(),
            purged_tags: remembered(),
        }
    }

    /// The index, up to date with what has left.
    fn index(&self) -> Option<std::sync::MutexGuard<'_, Index>> {
        let mut index = self.index.lock().ok()?;
        let gone = std::mem::take(&mut *self.gone.lock().ok()?);
        for (key, id) in gone {
            index.remove(&key, Some(id));
        }
        Some(index)
    }

    /// Where purges stand now, to pass to `put` with what is fetched after it.
    pub fn mark(&self) -> Mark {
        Mark {
            purges: self.purges.load(Ordering::SeqCst),
            at: std::time::Instant::now(),
        }
    }

    /// Whether a purge since `mark` named `key` or one of `tags`.
    fn purged_since(&self, mark: Mark, key: &str, tags: &[String]) -> bool {
        if self.purges.load(Ordering::SeqCst) == mark.purges {
            return false;
        }
        if mark.at.elapsed() >= PURGES_REMEMBERED_FOR {
            return true;
        }
        let after = |seq: Option<u64>| seq.is_some_and(|s| s > mark.purges);
        after(self.purged_keys.get(key)) || tags.iter().any(|t| after(self.purged_tags.get(t)))
    }

    fn note_purge(&self, key: Option<&str>, tag: Option<&str>) {
        let seq = self.purges.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(k) = key {
            self.purged_keys.insert(k.to_owned(), seq);
        }
        if let Some(t) = tag {
            self.purged_tags.insert(t.to_owned(), seq);
        }
    }

    /// The stored variant that `headers` select under `key`.
    pub fn find(&self, key: &str, headers: &HeaderMap) -> Option<Arc<Stored>> {
        let entry = self.entries.get(key)?;
        entry.variants.iter().find(|v| v.matches(headers)).cloned()
    }

    /// Stores `stored` under `key`, in the place of the variant `headers` select (if any),
    /// unless a purge of its key or tags came since `mark` (taken before it was fetched);
    /// whether it was stored.
    pub fn put(&self, key: &str, headers: &HeaderMap, stored: Arc<Stored>, mark: Mark) -> bool {
        let mut variants = vec![Arc::clone(&stored)];
        if let Some(old) = self.entries.get(key) {
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
        let entry = Entry { id, variants };
        let surrogates = entry.surrogate_keys();
        let Some(mut index) = self.index() else {
            return false;
        };
        // Checked and inserted under the index's lock, which every purge takes first: a purge
        // either comes after this entry is in, or is seen here.
        if self.purged_since(mark, key, &stored.surrogate_keys) {
            return false;
        }
        index.set(key, id, surrogates);
        self.entries.insert(key.to_owned(), Arc::new(entry));
        true
    }

    /// Drops or marks stale every variant under `key`; whether there was any.
    pub fn purge_key(&self, key: &str, mode: PurgeMode, now: SystemTime) -> bool {
        let _index = self.index();
        self.note_purge(Some(key), None);
        self.purge_locked(key, mode, now)
    }

    fn purge_locked(&self, key: &str, mode: PurgeMode, now: SystemTime) -> bool {
        match mode {
            PurgeMode::Hard => self.entries.remove(key).is_some(),
            PurgeMode::Soft => match self.entries.get(key) {
                Some(e) => {
                    e.variants.iter().for_each(|v| v.mark_purged(now));
                    true
                }
                None => false,
            },
        }
    }

    /// Purges every entry tagged with surrogate key `tag`; how many there were.
    pub fn purge_tag(&self, tag: &str, mode: PurgeMode, now: SystemTime) -> usize {
        let Some(index) = self.index() else {
            return 0;
        };
        self.note_purge(None, Some(tag));
        let keys: Vec<String> = index
            .by_surrogate
            .get(tag)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default();
        drop(index);
        keys.iter()
            .filter(|k| self.purge_locked(k, mode, now))
            .count()
    }

    /// Objects and bytes held now.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

fn remembered() -> moka::sync::Cache<String, u64> {
    moka::sync::Cache::builder()
        .max_capacity(PURGES_REMEMBERED)
        .time_to_live(PURGES_REMEMBERED_FOR)
        .build()
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
        let m = Memory::new(1 << 20, 8);
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
        assert!(m.find("/p/1", &req(Some("en"))).is_some());
        assert!(m.find("/p/1", &req(Some("de"))).is_some());
        assert!(m.find("/p/1", &req(None)).is_some());
        assert!(m.find("/p/1", &req(Some("fr"))).is_none());
        let now = SystemTime::now();
        assert_eq!(m.purge_tag("c", PurgeMode::Soft, now), 2);
        assert!(m.find("/p/2", &req(None)).unwrap().purged_at().is_some());
        assert_eq!(m.purge_tag("p1", PurgeMode::Hard, now), 1);
        assert!(m.find("/p/1", &req(Some("en"))).is_none());
        assert_eq!(m.purge_tag("p1", PurgeMode::Hard, now), 0);
        assert_eq!(m.purge_tag("c", PurgeMode::Hard, now), 1);
        m.entries.run_pending_tasks();
        let index = m.index().unwrap();
        assert!(index.by_key.is_empty() && index.by_surrogate.is_empty());
    }

    #[test]
    fn bytes_are_bounded_and_evicted_entries_leave_the_index() {
        let m = Memory::new(100_000, 8);
        for i in 0..1_000 {
            m.put(
                &format!("/o/{i}"),
                &req(None),
                stored(vec![], &["all"], 1_000).into(),
                m.mark(),
            );
        }
        let (_, bytes) = m.usage();
        assert!(bytes <= 100_000, "{bytes}");
        assert!(m.evictions() > 0);
        let index = m.index().unwrap();
        let tagged = index.by_surrogate.get("all").map_or(0, |k| k.len());
        assert_eq!(
            tagged as u64,
            m.entries.entry_count(),
            "the index holds only what is stored"
        );
    }

    #[test]
    fn a_response_fetched_across_a_purge_of_its_url_or_tag_is_not_stored() {
        let m = Memory::new(1 << 20, 8);
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
