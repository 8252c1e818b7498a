//! The edge's durable state, one redb file: every order it accepted or placed, in the order it
//! took them (an append-only table: a commit writes a page or two, not one random page per
//! order), which of them no core has acknowledged yet, the units of its grants it may still
//! sell, and the grant requests and returns in flight. Which sequence holds an order id is kept
//! in memory, rebuilt from the file at open.
//!
//! Intake is group commit: orders wait in a bounded queue for the writer thread, which takes
//! what has gathered, checks and takes each order's units from the grants, writes the orders,
//! and commits once (fsync) for all of them before any is answered. An order is acknowledged
//! only once it is on disk; a failed commit answers every order of it with an error and has
//! written none.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use commerce::command::OrderResult;
use commerce::order::{Order, OrderStatus};
use commerce::{OrderId, SkuId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{Notify, mpsc, oneshot};

/// Sequence → (order id, the order as this edge knows it, encoded), in the order taken.
const ORDERS: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("orders");
/// Sequences of the orders no core has acknowledged.
const PENDING: TableDefinition<u64, ()> = TableDefinition::new("pending");
/// SKU → units of this edge's grants it may still sell.
const UNITS: TableDefinition<&str, u64> = TableDefinition::new("units");
/// SKU → the key of a grant request sent and not yet answered (sent again with it).
const GRANT_REQUESTS: TableDefinition<&str, &str> = TableDefinition::new("grant_requests");
/// Return key → the SKU and units taken off this edge's books and not yet known returned.
const RETURNS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("returns");
/// Counters: the next key number for grant requests and returns.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The encoding of stored orders.
const FORMAT: u8 = 1;

/// Orders kept for retries and `GET /v1/orders/{id}` (about 1 KiB each on disk, 100 bytes in
/// memory); the oldest decided ones are forgotten past this. A retry of an order forgotten here
/// is priced and accepted again, and the core answers it as the duplicate it is; the units it
/// took here stay unsold, never oversold.
const KEPT: u64 = 200_000;

/// Orders one commit takes from the queue at most.
const GROUP_MAX: usize = 1_024;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is unavailable: {0}")]
    Store(String),
    #[error("too many orders waiting for the outbox; retry in a moment")]
    Overloaded,
}

fn store<E: std::fmt::Display>(e: E) -> OutboxError {
    OutboxError::Store(e.to_string())
}

/// How intake went for one order.
#[derive(Debug)]
pub enum Intake {
    /// Written, its units taken from the grants.
    Accepted(Order),
    /// This order id was taken before: the order as it is now.
    Existing(Order),
    /// The grants here do not hold its units: sell it centrally.
    NoGrant,
}

struct Request {
    order: Order,
    reply: oneshot::Sender<Result<Intake, OutboxError>>,
}

/// Order id → its sequence in `ORDERS`. Changed only after the commit that made it true.
type Index = Arc<Mutex<HashMap<OrderId, u64>>>;

/// SKU → the units in `UNITS`, read without a transaction. Changed only after the commit that
/// made it true.
type Units = Arc<Mutex<HashMap<SkuId, u64>>>;

fn set_units(units: &Units, changed: Vec<(SkuId, u64)>) {
    let mut u = units.lock().unwrap_or_else(|p| p.into_inner());
    for (sku, n) in changed {
        u.insert(sku, n);
    }
}

fn lock(index: &Index) -> std::sync::MutexGuard<'_, HashMap<OrderId, u64>> {
    index.lock().unwrap_or_else(|p| p.into_inner())
}

/// The thread that commits intake.
struct Writer {
    db: Arc<Database>,
    index: Index,
    units: Units,
    kept: u64,
    pending_added: Arc<Notify>,
    queued: Arc<AtomicU64>,
}

impl Writer {
    fn write_loop(self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(group.len() as u64, Ordering::Relaxed);
            match self.write_group(&group) {
                Ok(results) => {
                    let added = results.iter().any(|r| matches!(r, Intake::Accepted(_)));
                    for (req, result) in group.into_iter().zip(results) {
                        let _ = req.reply.send(Ok(result));
                    }
                    if added {
                        self.pending_added.notify_one();
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, orders = group.len(), "outbox commit failed; none of its orders was accepted");
                    for req in group {
                        let _ = req.reply.send(Err(OutboxError::Store(e.to_string())));
                    }
                }
            }
        }
    }

    /// One transaction for a group of orders; nothing of it is written unless all is.
    fn write_group(&self, group: &[Request]) -> Result<Vec<Intake>, OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let mut results = Vec::with_capacity(group.len());
        let mut added: Vec<(OrderId, u64)> = Vec::new();
        let mut changed: Vec<(SkuId, u64)> = Vec::new();
        {
            let mut orders = txn.open_table(ORDERS).map_err(store)?;
            let mut pending = txn.open_table(PENDING).map_err(store)?;
            let mut units = txn.open_table(UNITS).map_err(store)?;
            let mut seq = last_seq(&orders)?;
            for req in group {
                let o = &req.order;
                let known = lock(&self.index).get(&o.order_id).copied().or_else(|| {
                    // The same id twice in one group.
                    added
                        .iter()
                        .find(|(id, _)| id == &o.order_id)
                        .map(|(_, s)| *s)
                });
                if let Some(at) = known {
                    let prev = match orders.get(at).map_err(store)? {
                        Some(v) => decode(v.value().1)?,
                        // Accepted earlier in this group: that order.
                        None => o.clone(),
                    };
                    results.push(Intake::Existing(prev));
                    continue;
                }
                let mut held = Vec::with_capacity(o.lines.len());
                for (sku, qty) in o.units() {
                    let have = units
                        .get(sku.as_str())
                        .map_err(store)?
                        .map_or(0, |v| v.value());
                    held.push((sku, have, u64::from(qty)));
                }
                if held.iter().any(|(_, have, want)| have < want) {
                    results.push(Intake::NoGrant);
                    continue;
                }
                for (sku, have, want) in held {
                    units.insert(sku.as_str(), have - want).map_err(store)?;
                    changed.push((sku.clone(), have - want));
                }
                seq += 1;
                orders
                    .insert(seq, (o.order_id.as_str(), encode(o)?.as_slice()))
                    .map_err(store)?;
                pending.insert(seq, ()).map_err(store)?;
                added.push((o.order_id.clone(), seq));
                results.push(Intake::Accepted(o.clone()));
            }
        }
        let forgotten = forget_oldest(&txn, self.kept)?;
        txn.commit().map_err(store)?;
        let mut index = lock(&self.index);
        for id in forgotten {
            index.remove(&id);
        }
        index.extend(added);
        set_units(&self.units, changed);
        Ok(results)
    }
}

/// The last sequence used (0 when none).
fn last_seq(orders: &redb::Table<u64, (&str, &[u8])>) -> Result<u64, OutboxError> {
    Ok(orders.last().map_err(store)?.map_or(0, |(k, _)| k.value()))
}

/// Forgets the oldest orders past `kept`, as long as they are decided (a pending order is
/// never forgotten); returns their ids.
fn forget_oldest(txn: &redb::WriteTransaction, kept: u64) -> Result<Vec<OrderId>, OutboxError> {
    let mut orders = txn.open_table(ORDERS).map_err(store)?;
    let pending = txn.open_table(PENDING).map_err(store)?;
    let mut forgotten = Vec::new();
    while orders.len().map_err(store)? > kept {
        let Some(first) = orders.first().map_err(store)?.map(|(k, _)| k.value()) else {
            break;
        };
        if pending.get(first).map_err(store)?.is_some() {
            break;
        }
        if let Some((_, v)) = orders.pop_first().map_err(store)?
            && let Ok(id) = OrderId::new(v.value().0)
        {
            forgotten.push(id);
        }
    }
    Ok(forgotten)
}

/// The outbox, shared by the API, the forwarder and the grant keeper.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    index: Index,
    units: Units,
    kept: u64,
    queue: mpsc::Sender<Request>,
    /// Woken when orders are added to the pending list.
    pub pending_added: Arc<Notify>,
    /// Orders waiting in the queue (for /metrics).
    queued: Arc<AtomicU64>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` and starts its writer thread, which takes at
    /// most `queue` orders waiting.
    pub fn open(path: &Path, queue: usize) -> Result<Outbox, OutboxError> {
        Self::open_keeping(path, queue, KEPT)
    }

    fn open_keeping(path: &Path, queue: usize, kept: u64) -> Result<Outbox, OutboxError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(store)?;
        }
        let db = Database::create(path).map_err(|e| store(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(store)?;
        txn.open_table(ORDERS).map_err(store)?;
        txn.open_table(PENDING).map_err(store)?;
        txn.open_table(UNITS).map_err(store)?;
        txn.open_table(GRANT_REQUESTS).map_err(store)?;
        txn.open_table(RETURNS).map_err(store)?;
        txn.open_table(META).map_err(store)?;
        txn.commit().map_err(store)?;
        let (mut index, mut units) = (HashMap::new(), HashMap::new());
        {
            let txn = db.begin_read().map_err(store)?;
            let orders = txn.open_table(ORDERS).map_err(store)?;
            for item in orders.iter().map_err(store)? {
                let (k, v) = item.map_err(store)?;
                let id = OrderId::new(v.value().0).map_err(store)?;
                index.insert(id, k.value());
            }
            let t = txn.open_table(UNITS).map_err(store)?;
            for item in t.iter().map_err(store)? {
                let (k, v) = item.map_err(store)?;
                units.insert(SkuId::new(k.value()).map_err(store)?, v.value());
            }
        }
        let (tx, rx) = mpsc::channel(queue);
        let outbox = Outbox {
            db: Arc::new(db),
            index: Arc::new(Mutex::new(index)),
            units: Arc::new(Mutex::new(units)),
            kept,
            queue: tx,
            pending_added: Arc::new(Notify::new()),
            queued: Arc::new(AtomicU64::new(0)),
        };
        // The writer holds no sender: once every handle is dropped it ends, and closes the file.
        let writer = Writer {
            db: Arc::clone(&outbox.db),
            index: Arc::clone(&outbox.index),
            units: Arc::clone(&outbox.units),
            kept,
            pending_added: Arc::clone(&outbox.pending_added),
            queued: Arc::clone(&outbox.queued),
        };
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.write_loop(rx))
            .map_err(store)?;
        Ok(outbox)
    }

    /// Takes `order` in: durable, with its units taken from the grants, before this returns.
    pub async fn accept(&self, order: Order) -> Result<Intake, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .try_send(Request { order, reply })
            .map_err(|_| OutboxError::Overloaded)?;
        self.queued.fetch_add(1, Ordering::Relaxed);
        answer
            .await
            .map_err(|_| OutboxError::Store("the outbox writer stopped".into()))?
    }

    /// The order `id`, as this edge knows it.
    pub fn order(&self, id: &OrderId) -> Result<Option<Order>, OutboxError> {
        let Some(seq) = lock(&self.index).get(id).copied() else {
            return Ok(None);
        };
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(ORDERS).map_err(store)?;
        t.get(seq)
            .map_err(store)?
            .map(|v| decode(v.value().1))
            .transpose()
    }

    /// Records an order decided elsewhere (a central order the core placed for this edge).
    pub fn record(&self, order: &Order) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let seq = {
            let mut t = txn.open_table(ORDERS).map_err(store)?;
            let seq = match lock(&self.index).get(&order.order_id) {
                Some(s) => *s,
                None => last_seq(&t)? + 1,
            };
            t.insert(seq, (order.order_id.as_str(), encode(order)?.as_slice()))
                .map_err(store)?;
            seq
        };
        let forgotten = forget_oldest(&txn, self.kept)?;
        txn.commit().map_err(store)?;
        let mut index = lock(&self.index);
        for id in forgotten {
            index.remove(&id);
        }
        index.insert(order.order_id.clone(), seq);
        Ok(())
    }

    /// Up to `max` orders no core has acknowledged, oldest first.
    pub fn pending(&self, max: usize) -> Result<Vec<Order>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let pending = txn.open_table(PENDING).map_err(store)?;
        let orders = txn.open_table(ORDERS).map_err(store)?;
        let mut out = Vec::new();
        for item in pending.iter().map_err(store)?.take(max) {
            let (seq, _) = item.map_err(store)?;
            let o = orders.get(seq.value()).map_err(store)?.ok_or_else(|| {
                OutboxError::Store(format!("pending order {} missing", seq.value()))
            })?;
            out.push(decode(o.value().1)?);
        }
        Ok(out)
    }

    /// Orders no core has acknowledged.
    pub fn pending_count(&self) -> u64 {
        let Ok(txn) = self.db.begin_read() else {
            return 0;
        };
        txn.open_table(PENDING)
            .and_then(|t| t.len().map_err(Into::into))
            .unwrap_or(0)
    }

    /// Orders waiting for the next commit.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records what a core decided for orders it was sent: each leaves the pending list with
    /// its status and version. A rejected order's units go back to the grants: the core did
    /// not take them from this edge's grant.
    pub fn settle(&self, results: &[OrderResult]) -> Result<(), OutboxError> {
        let seqs: Vec<(u64, &OrderResult)> = {
            let index = lock(&self.index);
            results
                .iter()
                .filter_map(|r| index.get(&r.order_id).map(|s| (*s, r)))
                .collect()
        };
        let txn = self.db.begin_write().map_err(store)?;
        let mut changed: Vec<(SkuId, u64)> = Vec::new();
        {
            let mut orders = txn.open_table(ORDERS).map_err(store)?;
            let mut pending = txn.open_table(PENDING).map_err(store)?;
            let mut units = txn.open_table(UNITS).map_err(store)?;
            for (seq, r) in seqs {
                if pending.remove(seq).map_err(store)?.is_none() {
                    continue;
                }
                let Some(mut o) = orders
                    .get(seq)
                    .map_err(store)?
                    .map(|v| decode(v.value().1))
                    .transpose()?
                else {
                    continue;
                };
                o.status = r.status;
                o.commit_version = Some(r.version);
                o.reject_reason = r.reject_reason.clone();
                if r.status == OrderStatus::Rejected {
                    for (sku, qty) in o.units() {
                        let have = units
                            .get(sku.as_str())
                            .map_err(store)?
                            .map_or(0, |v| v.value());
                        units
                            .insert(sku.as_str(), have + u64::from(qty))
                            .map_err(store)?;
                        changed.push((sku.clone(), have + u64::from(qty)));
                    }
                }
                orders
                    .insert(seq, (o.order_id.as_str(), encode(&o)?.as_slice()))
                    .map_err(store)?;
            }
        }
        txn.commit().map_err(store)?;
        set_units(&self.units, changed);
        Ok(())
    }

    /// Units of `sku` this edge may still sell from its grants.
    pub fn units(&self, sku: &SkuId) -> u64 {
        let u = self.units.lock().unwrap_or_else(|p| p.into_inner());
        u.get(sku).copied().unwrap_or(0)
    }

    /// Every SKU with units held here, and how many.
    pub fn all_units(&self) -> Vec<(SkuId, u64)> {
        let u = self.units.lock().unwrap_or_else(|p| p.into_inner());
        u.iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (s.clone(), *n))
            .collect()
    }

    /// The key of the grant request for `sku` in flight, or a new one made durable first (so
    /// that a request whose answer was lost is sent again under the same key, and the core
    /// grants once).
    pub fn grant_request_key(&self, sku: &SkuId) -> Result<String, OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let key = {
            let mut reqs = txn.open_table(GRANT_REQUESTS).map_err(store)?;
            if let Some(k) = reqs.get(sku.as_str()).map_err(store)? {
                return Ok(k.value().to_owned());
            }
            let key = format!("grant-{}", next_number(&txn)?);
            reqs.insert(sku.as_str(), key.as_str()).map_err(store)?;
            key
        };
        txn.commit().map_err(store)?;
        Ok(key)
    }

    /// Grant requests sent and not yet answered: (SKU, key).
    pub fn open_grant_requests(&self) -> Result<Vec<(SkuId, String)>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(GRANT_REQUESTS).map_err(store)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store)? {
            let (k, v) = item.map_err(store)?;
            if let Ok(sku) = SkuId::new(k.value()) {
                out.push((sku, v.value().to_owned()));
            }
        }
        Ok(out)
    }

    /// `units` of `sku` granted by the answer to the request in flight: added, and the request
    /// closed, together.
    pub fn granted(&self, sku: &SkuId, units: u64) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let now = {
            let mut t = txn.open_table(UNITS).map_err(store)?;
            let have = t.get(sku.as_str()).map_err(store)?.map_or(0, |v| v.value());
            t.insert(sku.as_str(), have.saturating_add(units))
                .map_err(store)?;
            let mut reqs = txn.open_table(GRANT_REQUESTS).map_err(store)?;
            reqs.remove(sku.as_str()).map_err(store)?;
            have.saturating_add(units)
        };
        txn.commit().map_err(store)?;
        set_units(&self.units, vec![(sku.clone(), now)]);
        Ok(())
    }

    /// Takes every unit of `sku` off this edge's books to give back, under a new key, durably
    /// before anything is sent: units are never sold here once the core may have them back.
    /// `None` when there are none.
    pub fn begin_return(&self, sku: &SkuId) -> Result<Option<(String, u64)>, OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let out = {
            let mut t = txn.open_table(UNITS).map_err(store)?;
            let have = t.get(sku.as_str()).map_err(store)?.map_or(0, |v| v.value());
            if have == 0 {
                None
            } else {
                t.insert(sku.as_str(), 0).map_err(store)?;
                let key = format!("return-{}", next_number(&txn)?);
                let mut r = txn.open_table(RETURNS).map_err(store)?;
                r.insert(key.as_str(), (sku.as_str(), have))
                    .map_err(store)?;
                Some((key, have))
            }
        };
        txn.commit().map_err(store)?;
        set_units(&self.units, vec![(sku.clone(), 0)]);
        Ok(out)
    }

    /// Returns taken off the books and not yet known returned: (key, SKU, units).
    pub fn open_returns(&self) -> Result<Vec<(String, SkuId, u64)>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(RETURNS).map_err(store)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store)? {
            let (k, v) = item.map_err(store)?;
            let (sku, units) = v.value();
            if let Ok(sku) = SkuId::new(sku) {
                out.push((k.value().to_owned(), sku, units));
            }
        }
        Ok(out)
    }

    /// The core has the return `key`.
    pub fn returned(&self, key: &str) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        {
            let mut r = txn.open_table(RETURNS).map_err(store)?;
            r.remove(key).map_err(store)?;
        }
        txn.commit().map_err(store)
    }
}

fn next_number(txn: &redb::WriteTransaction) -> Result<u64, OutboxError> {
    let mut meta = txn.open_table(META).map_err(store)?;
    let n = meta.get("key").map_err(store)?.map_or(0, |v| v.value()) + 1;
    meta.insert("key", n).map_err(store)?;
    Ok(n)
}

fn encode(o: &Order) -> Result<Vec<u8>, OutboxError> {
    replication::codec::encode(FORMAT, o).map_err(store)
}

fn decode(bytes: &[u8]) -> Result<Order, OutboxError> {
    replication::codec::decode(FORMAT, bytes).map_err(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce::command::OrderResult;

    fn order(key: &str, qty: u32) -> Order {
        let customer = commerce::CustomerId::new("c").unwrap();
        let money = serde_json::json!({"amount_minor": 100, "currency": "USD"});
        serde_json::from_value(serde_json::json!({
            "order_id": commerce::order::order_id_for(&customer, key),
            "idempotency_key": key, "customer_id": "c", "customer_group": null, "currency": "USD",
            "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"},
            "lines": [{"sku": "S-1", "qty": qty, "unit_price": money, "total": money, "breakdown": []}],
            "subtotal": money, "discount": null, "total": money, "price_version": 1,
            "origin": {"region": "r", "edge": "e"}, "accepted_at_ms": 0, "status": "accepted",
            "commit_version": null, "reject_reason": null
        }))
        .unwrap()
    }

    fn result(o: &Order, status: OrderStatus) -> OrderResult {
        OrderResult {
            order_id: o.order_id.clone(),
            status,
            version: 7,
            duplicate: false,
            reject_reason: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn intake_takes_units_settles_and_forgets_the_oldest_decided() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        let ob = Outbox::open_keeping(&path, 16, 2).unwrap();
        let sku = SkuId::new("S-1").unwrap();
        assert!(matches!(
            ob.accept(order("a", 1)).await,
            Ok(Intake::NoGrant)
        ));
        let key = ob.grant_request_key(&sku).unwrap();
        assert_eq!(
            ob.grant_request_key(&sku).unwrap(),
            key,
            "one request in flight"
        );
        ob.granted(&sku, 3).unwrap();
        assert!(ob.open_grant_requests().unwrap().is_empty());
        // Concurrent orders share commits; the grant holds three units, no more.
        let tries = (0..5).map(|i| {
            let ob = ob.clone();
            async move { ob.accept(order(&format!("k{i}"), 1)).await }
        });
        let results = concurrently(tries).await;
        let accepted: Vec<Order> = results
            .into_iter()
            .filter_map(|r| match r {
                Ok(Intake::Accepted(o)) => Some(o),
                _ => None,
            })
            .collect();
        assert_eq!(accepted.len(), 3);
        assert_eq!(ob.units(&sku), 0);
        assert!(matches!(
            ob.accept(accepted[0].clone()).await,
            Ok(Intake::Existing(_))
        ));
        assert_eq!(ob.pending(10).unwrap().len(), 3);

        // A rejected order gives its unit back; the decided are kept two at most.
        let verdicts = vec![
            result(&accepted[0], OrderStatus::Committed),
            result(&accepted[1], OrderStatus::Rejected),
            result(&accepted[2], OrderStatus::Committed),
        ];
        ob.settle(&verdicts).unwrap();
        assert_eq!(ob.pending_count(), 0);
        assert_eq!(ob.units(&sku), 1);
        let kept: Vec<Order> = accepted
            .iter()
            .filter_map(|o| ob.order(&o.order_id).unwrap())
            .collect();
        assert_eq!(
            kept.len(),
            3,
            "forgotten only when the next order is written"
        );
        // The next write keeps two orders: the newest, and the last accepted.
        let central = order("central", 1);
        ob.record(&central).unwrap();
        assert!(ob.order(&central.order_id).unwrap().is_some());
        let kept: Vec<Order> = accepted
            .iter()
            .filter_map(|o| ob.order(&o.order_id).unwrap())
            .collect();
        assert_eq!(kept.len(), 1, "the oldest decided are forgotten");
        for k in &kept {
            let verdict = verdicts.iter().find(|v| v.order_id == k.order_id).unwrap();
            assert_eq!((k.status, k.commit_version), (verdict.status, Some(7)));
        }

        // A return is off the books before it is sent, and stays open until answered.
        let (rkey, units) = ob.begin_return(&sku).unwrap().unwrap();
        assert_eq!((units, ob.units(&sku)), (1, 0));
        drop(ob);
        // The writer thread lets go of the file once the last handle is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let ob = loop {
            match Outbox::open(&path, 16) {
                Ok(ob) => break ob,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        };
        assert_eq!(
            ob.open_returns().unwrap(),
            vec![(rkey.clone(), sku.clone(), 1)]
        );
        // Which order is where is read back from the file.
        assert_eq!(ob.order(&central.order_id).unwrap(), Some(central.clone()));
        assert_eq!(
            ob.order(&kept[0].order_id).unwrap().map(|o| o.status),
            Some(kept[0].status)
        );
        ob.returned(&rkey).unwrap();
        assert!(ob.open_returns().unwrap().is_empty());
    }

    /// Runs the futures concurrently and collects their outputs in order.
    async fn concurrently<F>(fs: impl Iterator<Item = F>) -> Vec<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = fs.map(tokio::spawn).collect();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
