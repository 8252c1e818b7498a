//! One tier of storage (memory, or the disk's index): items by cache key in a moka cache
//! weighed by bytes, and the index of surrogate keys that purges go through, kept true as
//! items come and go. The tiers differ only in their items (`Item`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a tier holds under one cache key.
pub trait Item: Send + Sync + 'static {
    /// Tells this item from one put under the same key after it.
    fn id(&self) -> u64;
    /// What it costs against the tier's bound, in bytes.
    fn weight(&self) -> u32;
    /// Its surrogate keys.
    fn tags(&self) -> HashSet<String>;
    /// Called once when it leaves the tier, whatever the cause (evicted, replaced, removed);
    /// not when the tier is dropped.
    fn left(&self) {}
}

/// Which cache keys each surrogate key tags, and the reverse, so that a key's entries are
/// found at once and nothing is left behind when an entry goes.
#[derive(Default)]
pub struct Index {
    by_surrogate: HashMap<String, HashSet<String>>,
    /// A key's item id and surrogate keys.
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

    /// Forgets `key`'s tags; only if they are item `id`'s, when given (a departure noticed
    /// late must not untag the item put after it).
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

    /// The cache keys `tag` tags.
    pub fn tagged(&self, tag: &str) -> Vec<String> {
        self.by_surrogate
            .get(tag)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty() && self.by_surrogate.is_empty()
    }

    #[cfg(test)]
    pub fn tagged_count(&self, tag: &str) -> usize {
        self.by_surrogate.get(tag).map_or(0, |k| k.len())
    }
}

/// An item that left: its key and id.
type Gone = (Arc<String>, u64);

pub struct Tier<V: Item> {
    entries: moka::sync::Cache<String, Arc<V>>,
    index: Mutex<Index>,
    /// Items that left (key and id), for the index to forget when it is next locked: the
    /// listener that sees them go may run inside a call that holds the index.
    gone: Arc<Mutex<Vec<Gone>>>,
    evictions: Arc<AtomicU64>,
}

impl<V: Item> Tier<V> {
    pub fn new(bytes_max: u64) -> Tier<V> {
        let gone = Arc::new(Mutex::new(Vec::new()));
        let evictions = Arc::new(AtomicU64::new(0));
        let (on_evict, evicted) = (Arc::clone(&gone), Arc::clone(&evictions));
        let entries = moka::sync::Cache::builder()
            .max_capacity(bytes_max)
            .weigher(|_k: &String, v: &Arc<V>| v.weight())
            .eviction_listener(move |key: Arc<String>, v: Arc<V>, cause| {
                v.left();
                if cause.was_evicted() {
                    evicted.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut gone) = on_evict.lock() {
                    gone.push((key, v.id()));
                }
            })
            .build();
        Tier {
            entries,
            index: Mutex::new(Index::default()),
            gone,
            evictions,
        }
    }

    /// The index, up to date with what has left. Inserts and purges take it, so that a
    /// purge either comes after an insert or is seen by it.
    pub fn lock(&self) -> Option<MutexGuard<'_, Index>> {
        let mut index = self.index.lock().ok()?;
        let gone = std::mem::take(&mut *self.gone.lock().ok()?);
        for (key, id) in gone {
            index.remove(&key, Some(id));
        }
        Some(index)
    }

    pub fn get(&self, key: &str) -> Option<Arc<V>> {
        self.entries.get(key)
    }

    /// Puts `item` under `key`, with `index` (from `lock`) held.
    pub fn insert(&self, index: &mut Index, key: &str, item: V) {
        index.set(key, item.id(), item.tags());
        self.entries.insert(key.to_owned(), Arc::new(item));
    }

    pub fn remove(&self, key: &str) -> Option<Arc<V>> {
        self.entries.remove(key)
    }

    /// Items and bytes held now.
    pub fn usage(&self) -> (u64, u64) {
        self.entries.run_pending_tasks();
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    /// Items evicted to keep within the bound, so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Runs what moka has pending (evictions, and so their `left`).
    pub fn settle(&self) {
        self.entries.run_pending_tasks();
    }
}
