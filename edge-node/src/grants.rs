//! The grant keeper: asks the core for units of a SKU this edge sells once it holds few of
//! them (the core sizes the grant from the edge's demand, under its policy, and gives none when
//! stock runs low), gives back the units of a SKU the core recalls (stock ran low), and every
//! unit on a graceful shutdown. Each request is made
//! durable with its key before it is sent, and sent again with the same key until answered: a
//! lost answer never grants twice, and a return never leaves units on both sides' books.

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
/// SKUs whose demand is tracked at once; the oldest are forgotten past this.
const TRACKED_MAX: usize = 100_000;

/// Units sold per SKU in the current window.
pub struct DemandBook {
    window: Duration,
    sold: Mutex<Sold>,
}

#[derive(Default)]
struct Sold {
    /// SKU → when its window started, and units asked for since.
    by_sku: HashMap<SkuId, (Instant, u64)>,
    /// SKUs in the order they were first seen, to forget the oldest.
    seen: VecDeque<SkuId>,
}

impl DemandBook {
    pub fn new(window: Duration) -> Self {
        DemandBook {
            window,
            sold: Mutex::default(),
        }
    }

    /// `units` of `sku` asked for here (sold, or wanted with no grant to sell them from).
    pub fn record(&self, sku: &SkuId, units: u64) {
        let mut g = self.sold.lock().unwrap_or_else(|p| p.into_inner());
        let Sold {
            by_sku: map,
            seen: order,
        } = &mut *g;
        let now = Instant::now();
        match map.get_mut(sku) {
            Some((start, n)) if now.duration_since(*start) < self.window => *n += units,
            Some(entry) => *entry = (now, units),
            None => {
                if order.len() >= TRACKED_MAX
                    && let Some(old) = order.pop_front()
                {
                    map.remove(&old);
                }
                order.push_back(sku.clone());
                map.insert(sku.clone(), (now, units));
            }
        }
    }

    pub fn demand(&self, sku: &SkuId) -> Demand {
        let g = self.sold.lock().unwrap_or_else(|p| p.into_inner());
        let units = g
            .by_sku
            .get(sku)
            .filter(|(start, _)| start.elapsed() < self.window)
            .map_or(0, |(_, n)| *n);
        Demand {
            units,
            window_ms: self.window.as_millis() as u64,
        }
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
        for sku in batch {
            let held = outbox.units(&sku);
            let d = demand.demand(&sku);
            let lead = d.units.saturating_mul(settings.lead_ms) / d.window_ms.max(1);
            let recalled = catalog.read().inventory(&sku).is_some_and(|i| i.recall);
            if held <= settings.refill_at_units.max(lead) && !recalled {
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
    for sku in recalled {
        let _ = outbox.begin_return(&sku).await;
    }
    finish_returns(outbox, cores, metrics).await;
}

/// Asks for a grant of `sku`; whether the core answered.
async fn request(outbox: &Outbox, cores: &Cores, demand: &DemandBook, sku: &SkuId) -> bool {
    let Ok(key) = outbox.grant_request_key(sku).await else {
        return false;
    };
    let write = EdgeWrite {
        key: Some(key),
        request: EdgeRequest::Grant {
            sku: sku.clone(),
            demand: demand.demand(sku),
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
            tracing::warn!(%sku, outcome = ?other, "unexpected answer to a grant request");
            return false;
        }
        Err(e) => {
            tracing::warn!(%sku, error = %e, "grant request not answered; sent again later");
            return false;
        }
    };
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
    let work = async {
        for (sku, _) in outbox.all_units() {
            let _ = outbox.begin_return(&sku).await;
        }
        finish_returns(outbox, cores, metrics).await;
    };
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
    for (key, sku, units) in open {
        let write = EdgeWrite {
            key: Some(key.clone()),
            request: EdgeRequest::Return {
                sku: sku.clone(),
                units,
            },
        };
        match cores.write(&write, PER_CORE).await {
            Ok(Outcome::Returned { .. } | Outcome::Rejected(_)) => {
                let _ = outbox.returned(&key).await;
                metrics.returned(units);
                tracing::info!(%sku, units, "grant returned");
            }
            Ok(other) => tracing::warn!(%sku, outcome = ?other, "unexpected answer to a return"),
            Err(e) => tracing::warn!(%sku, error = %e, "return not answered; sent again later"),
        }
    }
}
