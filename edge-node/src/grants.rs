//! The grant keeper: asks the core for units of a SKU this edge sells once it holds few of
//! them (the core sizes the grant from the edge's demand, under its policy, and gives none when
//! stock runs low), gives back the units of a SKU the core recalls (stock ran low), and every
//! unit on a graceful shutdown.
//!
//! Each request and return is numbered and made durable before it is sent, and sent again
//! with its number until answered: the core applies each once by its number, so a lost answer
//! never grants twice and a return never leaves units on both sides' books. A SKU whose last
//! request was granted nothing is not asked for again for `COOL_DOWN`, so that a sold-out SKU
//! does not turn every order into a write at the core.
//!
//! Demand and cool-downs are kept with the time passed in, so that what they decide is a
//! function of what happened and when.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use commerce::SkuId;
use commerce::command::{EdgeRequest, EdgeWrite, Outcome};
use commerce::escrow::Demand;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::GrantSettings;
use crate::cores::Cores;
use crate::metrics::Metrics;
use crate::mirror::Catalog;
use crate::outbox::Outbox;

const PER_CORE: Duration = Duration::from_secs(5);
/// How often the units held are checked against the core's recalls.
const RECALL_CHECK: Duration = Duration::from_millis(500);
/// Grant requests in flight at once.
const ASKING_MAX: usize = 8;
/// SKUs waiting to be looked at; a full queue drops the newest (it is looked at next time).
pub const QUEUE: usize = 4_096;
/// SKUs whose demand, or cool-down, is tracked at once; the oldest are forgotten past this.
const TRACKED_MAX: usize = 100_000;
/// After a request granted nothing (stock is low, or gone), the SKU is not asked for again for
/// this long: its orders go to the core meanwhile, or are answered out of stock here.
pub const COOL_DOWN: Duration = Duration::from_secs(2);

/// Per-SKU values, the oldest forgotten past `TRACKED_MAX`.
struct Tracked<V> {
    by_sku: HashMap<SkuId, V>,
    /// SKUs in the order they were first seen, to forget the oldest.
    seen: VecDeque<SkuId>,
}

impl<V> Default for Tracked<V> {
    fn default() -> Self {
        Tracked {
            by_sku: HashMap::new(),
            seen: VecDeque::new(),
        }
    }
}

impl<V> Tracked<V> {
    fn entry(&mut self, sku: &SkuId, new: impl FnOnce() -> V) -> &mut V {
        if !self.by_sku.contains_key(sku) {
            if self.seen.len() >= TRACKED_MAX
                && let Some(old) = self.seen.pop_front()
            {
                self.by_sku.remove(&old);
            }
            self.seen.push_back(sku.clone());
        }
        self.by_sku.entry(sku.clone()).or_insert_with(new)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Units asked for per SKU in the current window, and the SKUs cooling down.
pub struct DemandBook {
    window: Duration,
    /// SKU → when its window started, and units asked for since.
    sold: Mutex<Tracked<(Instant, u64)>>,
    /// SKU → until when it is not asked for.
    cooling: Mutex<Tracked<Instant>>,
}

impl DemandBook {
    pub fn new(window: Duration) -> Self {
        DemandBook {
            window,
            sold: Mutex::default(),
            cooling: Mutex::default(),
        }
    }

    /// `units` of `sku` asked for here at `now` (sold, or wanted with no grant to sell them
    /// from).
    pub fn record(&self, sku: &SkuId, units: u64, now: Instant) {
        let window = self.window;
        let mut sold = lock(&self.sold);
        let (start, n) = sold.entry(sku, || (now, 0));
        if now.duration_since(*start) < window {
            *n += units;
        } else {
            (*start, *n) = (now, units);
        }
    }

    /// The demand for `sku` at `now`.
    pub fn demand(&self, sku: &SkuId, now: Instant) -> Demand {
        let units = lock(&self.sold)
            .by_sku
            .get(sku)
            .filter(|(start, _)| now.duration_since(*start) < self.window)
            .map_or(0, |(_, n)| *n);
        Demand {
            units,
            window_ms: self.window.as_millis() as u64,
        }
    }

    /// A request for `sku` was granted nothing at `now`: not asked for again before
    /// `now + COOL_DOWN`.
    pub fn cool_down(&self, sku: &SkuId, now: Instant) {
        *lock(&self.cooling).entry(sku, || now) = now + COOL_DOWN;
    }

    /// Whether `sku` may be asked for at `now`.
    pub fn may_ask(&self, sku: &SkuId, now: Instant) -> bool {
        lock(&self.cooling)
            .by_sku
            .get(sku)
            .is_none_or(|until| now >= *until)
    }
}

/// Runs until the queue's senders are gone: first the requests and returns an earlier run
/// left open, then every SKU it is told of; and every `RECALL_CHECK` it gives back the units
/// of the SKUs the core recalls (stock ran low: the last units are sold centrally).
pub async fn run(
    outbox: Outbox,
    cores: Cores,
    catalog: Catalog,
    metrics: Arc<Metrics>,
    demand: Arc<DemandBook>,
    settings: GrantSettings,
    mut skus: mpsc::Receiver<SkuId>,
) {
    let ob = outbox.clone();
    if let Ok(Ok(open)) = tokio::task::spawn_blocking(move || ob.open_grant_requests()).await {
        for (sku, _) in open {
            request(&outbox, &cores, &demand, &sku).await;
        }
    }
    finish_returns(&outbox, &cores, &metrics).await;
    let mut recalls = tokio::time::interval(RECALL_CHECK);
    recalls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            sku = skus.recv() => match sku {
                Some(sku) => sku,
                None => return,
            },
            _ = recalls.tick() => {
                give_back_recalled(&outbox, &cores, &catalog, &metrics).await;
                continue;
            }
        };
        // Every order names its SKUs: look at each once however often it was named since.
        let mut batch = std::collections::BTreeSet::from([first]);
        while let Ok(sku) = skus.try_recv() {
            batch.insert(sku);
        }
        // Requests go out side by side (each waits a commit at the core), a few at a time.
        let mut asking = tokio::task::JoinSet::new();
        let now = Instant::now();
        for sku in batch {
            let held = outbox.units(&sku);
            let d = demand.demand(&sku, now);
            let lead = d.units.saturating_mul(settings.lead_ms) / d.window_ms.max(1);
            let recalled = catalog.read().inventory(&sku).is_some_and(|i| i.recall);
            if held <= settings.refill_at_units.max(lead) && !recalled && demand.may_ask(&sku, now)
            {
                if asking.len() >= ASKING_MAX {
                    asking.join_next().await;
                }
                let (outbox, cores, demand) = (outbox.clone(), cores.clone(), Arc::clone(&demand));
                asking.spawn(async move { request(&outbox, &cores, &demand, &sku).await });
            }
        }
        asking.join_all().await;
    }
}

/// Gives back every unit held of the SKUs the core recalls.
async fn give_back_recalled(outbox: &Outbox, cores: &Cores, catalog: &Catalog, metrics: &Metrics) {
    let recalled: Vec<SkuId> = {
        let state = catalog.read();
        outbox
            .all_units()
            .into_iter()
            .filter(|(sku, _)| state.inventory(sku).is_some_and(|i| i.recall))
            .map(|(sku, _)| sku)
            .collect()
    };
    if recalled.is_empty() {
        return;
    }
    give_back(outbox, cores, metrics, recalled).await;
}

/// Returns open from before first (one return of a SKU at a time), then every unit of `skus`.
async fn give_back(outbox: &Outbox, cores: &Cores, metrics: &Metrics, skus: Vec<SkuId>) {
    finish_returns(outbox, cores, metrics).await;
    let now = util::clock::now_ms();
    for sku in skus {
        let _ = outbox.begin_return(&sku, now).await;
    }
    finish_returns(outbox, cores, metrics).await;
}

/// Asks for a grant of `sku`; whether the core answered.
async fn request(outbox: &Outbox, cores: &Cores, demand: &DemandBook, sku: &SkuId) -> bool {
    let Ok(number) = outbox.grant_request(sku, util::clock::now_ms()).await else {
        return false;
    };
    let write = EdgeWrite {
        request: EdgeRequest::Grant {
            sku: sku.clone(),
            demand: demand.demand(sku, Instant::now()),
            request: number,
        },
    };
    let units = match cores.write(&write, PER_CORE).await {
        Ok(Outcome::Granted { units, .. }) => units,
        Ok(Outcome::Rejected(r)) => {
            // Nothing was granted (an unknown SKU, say); the request is closed.
            tracing::info!(%sku, reason = %r.detail, "grant refused");
            0
        }
        Ok(other) => {
            tracing::warn!(%sku, outcome = other.kind(), "unexpected answer to a grant request");
            return false;
        }
        Err(e) => {
            tracing::warn!(%sku, error = %e, "grant request not answered; sent again later");
            return false;
        }
    };
    if units == 0 {
        demand.cool_down(sku, Instant::now());
    }
    match outbox.granted(sku, units).await {
        Ok(()) => {
            tracing::debug!(%sku, units, "granted");
            true
        }
        Err(_) => false,
    }
}

/// Gives every unit this edge holds back to the core (graceful shutdown), within `deadline`.
pub async fn return_all(outbox: &Outbox, cores: &Cores, metrics: &Metrics, deadline: Duration) {
    let skus = outbox.all_units().into_iter().map(|(sku, _)| sku).collect();
    let work = give_back(outbox, cores, metrics, skus);
    if tokio::time::timeout(deadline, work).await.is_err() {
        tracing::warn!("returns not all answered in time; sent again at the next start");
    }
}

/// Sends every return taken off the books and not yet known returned.
async fn finish_returns(outbox: &Outbox, cores: &Cores, metrics: &Metrics) {
    let ob = outbox.clone();
    let Ok(Ok(open)) = tokio::task::spawn_blocking(move || ob.open_returns()).await else {
        return;
    };
    for (number, sku, units) in open {
        let write = EdgeWrite {
            request: EdgeRequest::Return {
                sku: sku.clone(),
                units,
                request: number,
            },
        };
        match cores.write(&write, PER_CORE).await {
            Ok(Outcome::Returned { .. } | Outcome::Rejected(_)) => {
                let _ = outbox.returned(number).await;
                metrics.returned(units);
                tracing::info!(%sku, units, "grant returned");
            }
            Ok(other) => {
                tracing::warn!(%sku, outcome = other.kind(), "unexpected answer to a return")
            }
            Err(e) => tracing::warn!(%sku, error = %e, "return not answered; sent again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_is_counted_per_window_and_a_sku_granted_nothing_cools_down() {
        let book = DemandBook::new(Duration::from_secs(10));
        let sku = SkuId::new("S").unwrap();
        let t0 = Instant::now();
        book.record(&sku, 3, t0);
        book.record(&sku, 2, t0 + Duration::from_secs(5));
        assert_eq!(book.demand(&sku, t0 + Duration::from_secs(6)).units, 5);
        assert_eq!(book.demand(&sku, t0 + Duration::from_secs(11)).units, 0);
        book.record(&sku, 1, t0 + Duration::from_secs(12));
        assert_eq!(book.demand(&sku, t0 + Duration::from_secs(12)).units, 1);
        assert!(book.may_ask(&sku, t0));
        book.cool_down(&sku, t0);
        assert!(!book.may_ask(&sku, t0 + COOL_DOWN / 2));
        assert!(book.may_ask(&sku, t0 + COOL_DOWN));
    }
}
