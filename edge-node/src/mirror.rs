//! The edge's copy of its region's catalog, prices, promotions, markets and inventory: the
//! commerce `State` the change feed's rows make (loaded with `State::load_row`, as a core loads
//! its store), its version, and when a core was last heard from. Reads take a read lock for
//! the time of one response; the feed takes the write lock per version.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use commerce::ProductId;
use commerce::keys;
use commerce::record::RowError;
use commerce::state::State;
use replication::app::{AppError, Mirror};
use replication::protocol::Row;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the feed has made, shared by every request.
#[derive(Clone)]
pub struct Catalog {
    state: Arc<RwLock<State>>,
    /// The version applied; its changes wake whoever waits for one.
    version: Arc<watch::Sender<u64>>,
    /// When a core last said anything (a change, a snapshot or a heartbeat).
    heard: Arc<watch::Sender<Option<Instant>>>,
    /// The newest version a core said it has applied.
    latest: Arc<std::sync::atomic::AtomicU64>,
    /// Bumped whenever something every product's view may depend on changes (a market, a price
    /// list, a promotion, a snapshot), and per product when its own rows change: what rendered
    /// views are keyed by, so that a change makes them unreachable at once.
    generations: Arc<Generations>,
    /// What changed since the purger last took it, for the region's CDN caches (`purge`).
    changes: Arc<Changes>,
}

/// Products changed since last taken, or everything.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changed {
    pub all: bool,
    pub products: std::collections::BTreeSet<ProductId>,
}

/// Products changed before a change counts as everything: with the `products` key, a purge
/// names at most 10,000 keys, what a cache takes in one.
pub const CHANGED_PRODUCTS_MAX: usize = 9_999;

/// Changes noted and not yet taken, merged (the mirror's for the purger, and the purger's
/// for each cache).
#[derive(Default)]
pub(crate) struct Changes {
    pending: std::sync::Mutex<Changed>,
    /// Woken when something is pending.
    ready: tokio::sync::Notify,
}

impl Changes {
    pub(crate) fn note(&self, all: bool, products: impl IntoIterator<Item = ProductId>) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.all |= all;
        if !p.all {
            p.products.extend(products);
            if p.products.len() > CHANGED_PRODUCTS_MAX {
                p.all = true;
            }
        }
        if p.all {
            p.products.clear();
        }
        drop(p);
        self.ready.notify_one();
    }

    /// Waits until something is pending, and takes it. Given up while it waits, it loses
    /// nothing.
    pub(crate) async fn next(&self) -> Changed {
        loop {
            let ready = self.ready.notified();
            {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if p.all || !p.products.is_empty() {
                    return std::mem::take(&mut *p);
                }
            }
            ready.await;
        }
    }
}

#[derive(Default)]
struct Generations {
    all: std::sync::atomic::AtomicU64,
    product: std::sync::Mutex<std::collections::HashMap<ProductId, u64>>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            state: Arc::default(),
            version: Arc::new(watch::channel(0).0),
            heard: Arc::new(watch::channel(None).0),
            latest: Arc::default(),
            generations: Arc::default(),
            changes: Arc::default(),
        }
    }
}

impl Catalog {
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// The generation of `product`'s view: it changes whenever what the view shows may have.
    pub fn generation(&self, product: &ProductId) -> (u64, u64) {
        let g = &self.generations;
        let own = g
            .product
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(product)
            .copied()
            .unwrap_or(0);
        (g.all.load(std::sync::atomic::Ordering::Acquire), own)
    }

    /// Notes a change as the feed does (tests of what follows changes).
    #[cfg(test)]
    pub(crate) fn note_changed(&self, all: bool, products: impl IntoIterator<Item = ProductId>) {
        self.changes.note(all, products);
    }

    /// Waits until something has changed since the last call, and takes it.
    pub async fn next_changes(&self) -> Changed {
        self.changes.next().await
    }

    /// Moves the generations on for what `rows` changed in `state`.
    fn changed(&self, state: &State, rows: &[Row]) {
        let g = &self.generations;
        let (mut all, mut changed) = (false, Vec::new());
        let mut products = g.product.lock().unwrap_or_else(|p| p.into_inner());
        for (key, _) in rows {
            let owner = match key.first() {
                Some(&keys::PRODUCT) => {
                    keys::parse_single(keys::PRODUCT, key).and_then(|id| ProductId::new(id).ok())
                }
                Some(&keys::PRICE) => keys::parse_price(key).and_then(|(sku, _)| owner(state, sku)),
                Some(&keys::INVENTORY) => {
                    keys::parse_single(keys::INVENTORY, key).and_then(|sku| owner(state, sku))
                }
                _ => {
                    g.all.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                    all = true;
                    continue;
                }
            };
            if let Some(p) = owner {
                *products.entry(p.clone()).or_default() += 1;
                changed.push(p);
            }
        }
        drop(products);
        self.changes.note(all, changed);
    }

    /// Versions the core has applied that this mirror has not (its lag).
    pub fn lag(&self) -> u64 {
        self.latest
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(self.version())
    }

    /// How long since a core was last heard from; `None` if none ever was.
    pub fn silence(&self) -> Option<std::time::Duration> {
        self.heard.borrow().map(|t| t.elapsed())
    }

    /// Waits until `version` is applied, at most `timeout`; whether it was.
    pub async fn reached(&self, version: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.version.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= version))
            .await
            .is_ok()
    }

    fn load(state: &mut State, rows: Vec<Row>) -> Result<(), RowError> {
        for (k, v) in rows {
            state.load_row(&k, v.as_deref())?;
        }
        Ok(())
    }

    fn applied(&self, version: u64) {
        self.version.send_replace(version);
        self.heard(version);
    }

    fn heard(&self, version: u64) {
        self.latest
            .fetch_max(version, std::sync::atomic::Ordering::Relaxed);
        self.heard.send_replace(Some(Instant::now()));
    }
}

impl Mirror for Catalog {
    fn version(&self) -> u64 {
        Catalog::version(self)
    }

    fn install(&mut self, version: u64, rows: Vec<Row>) -> Result<(), AppError> {
        // Built aside, swapped in whole: readers see the old state or the new, never half.
        let mut state = State::new();
        Self::load(&mut state, rows)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        self.generations
            .all
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changes.note(true, []);
        self.applied(version);
        Ok(())
    }

    fn apply(&mut self, version: u64, rows: Vec<Row>) -> Result<(), AppError> {
        let keys: Vec<Row> = rows.iter().map(|(k, _)| (k.clone(), None)).collect();
        {
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            Self::load(&mut state, rows)?;
            self.changed(&state, &keys);
        }
        self.applied(version);
        Ok(())
    }

    fn heartbeat(&mut self, version: u64) {
        // Nothing mirrored changed up to it: a write that changed only other rows (an order,
        // a new leader's first entry) is seen here as applied, and waits for it end.
        if version > self.version() {
            self.applied(version);
        } else {
            self.heard(version);
        }
    }
}

/// The product a SKU belongs to, in `state`.
fn owner(state: &State, sku: &str) -> Option<ProductId> {
    let sku = commerce::SkuId::new(sku).ok()?;
    state.owner(&sku).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A heartbeat says every change up to its version was sent: a version that changed no
    /// mirrored row is reached from it, and whoever waits for it is woken; one behind what is
    /// applied changes nothing.
    #[test]
    fn a_heartbeat_is_a_version_applied_with_nothing_changed() {
        let mut c = Catalog::default();
        Mirror::install(&mut c, 3, Vec::new()).unwrap();
        Mirror::heartbeat(&mut c, 5);
        assert_eq!((c.version(), c.lag()), (5, 0));
        Mirror::heartbeat(&mut c, 4);
        assert_eq!(c.version(), 5);
    }
}
