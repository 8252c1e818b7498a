//! The edge's durable state, one redb file: every order it accepted or placed, in the order it
//! took them (an append-only table: a commit writes a page or two, not one random page per
//! order), what the core decided for each, the units of its grants it may still sell, and the
//! grant requests and returns in flight. Memory keeps which sequence holds an order id, which
//! orders no core has decided yet (those without a verdict), and the units, rebuilt from the
//! file at open.
//!
//! Intake is group commit: orders wait in a bounded queue for the writer thread, which takes
//! what has gathered, checks and takes each order's units from the grants, writes the orders,
//! and commits once (fsync) for all of them before any is answered. An order is acknowledged
//! only once it is on disk; a failed commit answers every order of it with an error and has
//! written none. Every other write (the core's verdicts on forwarded orders, grant requests and
//! answers, returns, central orders) goes through the same queue and rides in the same commits:
//! one writer, one fsync for whatever has gathered. A verdict is a small row of its own, so an
//! order is written once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use commerce::command::OrderResult;
use commerce::escrow::sell_from_grants;
use commerce::order::{Order, OrderStatus};
use commerce::{CustomerId, OrderId, SkuId};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use tokio::sync::{Notify, mpsc, oneshot};

/// Sequence → (order id, the order as this edge knows it, encoded), in the order taken.
const ORDERS: TableDefinition<u64, (&str, &[u8])> = TableDefinition::new("orders");
/// Sequence → what the core decided for an order: (status, commit version, reject reason or
/// ""). It overrides what the stored order says; an order without one is pending.
const VERDICTS: TableDefinition<u64, (u8, Option<u64>, &str)> = TableDefinition::new("verdicts");
/// SKU → units of this edge's grants it may still sell.
const UNITS: TableDefinition<&str, u64> = TableDefinition::new("units");
/// SKU → the key of a grant request sent and not yet answered (sent again with it).
const GRANT_REQUESTS: TableDefinition<&str, &str> = TableDefinition::new("grant_requests");
/// Return key → the SKU and units taken off this edge's books and not yet known returned.
const RETURNS: TableDefinition<&str, (&str, u64)> = TableDefinition::new("returns");
/// Counters: the next key number for grant requests and returns.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Orders kept for retries and `GET /v1/orders/{id}` (about 1 KiB each on disk, 100 bytes in
/// memory); the oldest decided ones are forgotten past this. A retry of an order forgotten here
/// is priced and accepted again, and the core answers it as the duplicate it is; the units it
/// took here stay unsold, never oversold.
const KEPT: u64 = 200_000;

/// Orders one commit takes from the queue at most.
const GROUP_MAX: usize = 1_024;

#[derive(Debug, Clone, thiserror::Error)]
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

/// What memory keeps of the file, read without a transaction. Changed only after the commit
/// that made it true.
#[derive(Default)]
struct Known {
    /// Order id → its sequence in `ORDERS`.
    index: HashMap<OrderId, u64>,
    /// Sequences of the orders no core has decided yet, oldest first, with when each was
    /// accepted (unix ms, this edge's clock).
    pending: BTreeMap<u64, i64>,
    /// SKU → the units in `UNITS`.
    units: HashMap<SkuId, u64>,
}

type Shared = Arc<Mutex<Known>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn status_code(s: OrderStatus) -> u8 {
    match s {
        OrderStatus::Accepted => 0,
        OrderStatus::Committed => 1,
        OrderStatus::Rejected => 2,
    }
}

fn status_of(code: u8) -> Result<OrderStatus, OutboxError> {
    match code {
        0 => Ok(OrderStatus::Accepted),
        1 => Ok(OrderStatus::Committed),
        2 => Ok(OrderStatus::Rejected),
        _ => Err(OutboxError::Store(format!("unknown order status {code}"))),
    }
}

/// The tables, open for one group commit.
struct Tables<'t> {
    orders: redb::Table<'t, u64, (&'static str, &'static [u8])>,
    verdicts: redb::Table<'t, u64, (u8, Option<u64>, &'static str)>,
    units: redb::Table<'t, &'static str, u64>,
    grant_requests: redb::Table<'t, &'static str, &'static str>,
    returns: redb::Table<'t, &'static str, (&'static str, u64)>,
    meta: redb::Table<'t, &'static str, u64>,
}

impl<'t> Tables<'t> {
    fn open(txn: &'t redb::WriteTransaction) -> Result<Self, OutboxError> {
        Ok(Tables {
            orders: txn.open_table(ORDERS).map_err(store)?,
            verdicts: txn.open_table(VERDICTS).map_err(store)?,
            units: txn.open_table(UNITS).map_err(store)?,
            grant_requests: txn.open_table(GRANT_REQUESTS).map_err(store)?,
            returns: txn.open_table(RETURNS).map_err(store)?,
            meta: txn.open_table(META).map_err(store)?,
        })
    }

    fn units_of(&self, sku: &SkuId) -> Result<u64, OutboxError> {
        Ok(self
            .units
            .get(sku.as_str())
            .map_err(store)?
            .map_or(0, |v| v.value()))
    }

    fn set_units(&mut self, c: &mut Changes, sku: &SkuId, n: u64) -> Result<(), OutboxError> {
        self.units.insert(sku.as_str(), n).map_err(store)?;
        c.units.push((sku.clone(), n));
        Ok(())
    }

    /// A new number for a grant request or a return, larger than every earlier one: the core
    /// applies each once by it (`commerce::escrow::Inventory::requests`). At least the clock
    /// (unix ms), so that an edge whose outbox was lost and made anew never numbers below what
    /// the core has seen from it.
    fn next_number(&mut self, now_ms: i64) -> Result<u64, OutboxError> {
        let last = self
            .meta
            .get("key")
            .map_err(store)?
            .map_or(0, |v| v.value());
        let n = (last + 1).max(u64::try_from(now_ms).unwrap_or(0));
        self.meta.insert("key", n).map_err(store)?;
        Ok(n)
    }

    /// Forgets the oldest orders past `kept`, as long as they are decided (a pending order is
    /// never forgotten); returns their ids.
    fn forget_oldest(&mut self, c: &Changes, kept: u64) -> Result<Vec<OrderId>, OutboxError> {
        let excess = self.orders.len().map_err(store)?.saturating_sub(kept);
        let mut forgotten = Vec::new();
        for _ in 0..excess {
            let Some(first) = self.orders.first().map_err(store)?.map(|(k, _)| k.value()) else {
                break;
            };
            if c.is_pending(first) {
                break;
            }
            self.verdicts.remove(first).map_err(store)?;
            if let Some((_, v)) = self.orders.pop_first().map_err(store)?
                && let Ok(id) = OrderId::new(v.value().0)
            {
                forgotten.push(id);
            }
        }
        Ok(forgotten)
    }
}

/// What a commit changes that memory mirrors once it is durable.
struct Changes {
    known: Shared,
    /// The last sequence used in `ORDERS`.
    seq: u64,
    /// Order ids written, with their sequence.
    indexed: HashMap<OrderId, u64>,
    /// Orders added to the pending list (with when they were accepted), and taken off it.
    added: Vec<(u64, i64)>,
    decided: HashSet<u64>,
    /// New unit counts.
    units: Vec<(SkuId, u64)>,
}

impl Changes {
    /// The sequence of `id`, in the file or earlier in this commit.
    fn seq_of(&self, id: &OrderId) -> Option<u64> {
        match self.indexed.get(id) {
            Some(seq) => Some(*seq),
            None => lock(&self.known).index.get(id).copied(),
        }
    }

    /// Whether the order at `seq` waits for a verdict, as of this point in the commit.
    fn is_pending(&self, seq: u64) -> bool {
        !self.decided.contains(&seq)
            && (self.added.iter().any(|(s, _)| *s == seq)
                || lock(&self.known).pending.contains_key(&seq))
    }
}

/// Answers a write once its commit is known.
type Finish = Box<dyn FnOnce(Result<(), &OutboxError>) + Send>;

/// One write, run inside the writer's transaction. On error it has answered its caller, and
/// the whole commit fails.
type Step =
    Box<dyn for<'t> FnOnce(&mut Tables<'t>, &mut Changes) -> Result<Finish, OutboxError> + Send>;

/// Sent when the writer stopped, or dropped a write because another in its commit failed.
fn writer_gone<T>(_: T) -> OutboxError {
    OutboxError::Store("the outbox did not take the write; see the edge's log".into())
}

/// The thread that commits every write.
struct Writer {
    db: Arc<Database>,
    known: Shared,
    kept: u64,
    pending_added: Arc<Notify>,
}

impl Writer {
    fn write_loop(self, mut rx: mpsc::Receiver<Step>) {
        while let Some(first) = rx.blocking_recv() {
            let mut group = vec![first];
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            let n = group.len();
            let mut finishes = Vec::with_capacity(n);
            let outcome = self.write_group(group, &mut finishes);
            match &outcome {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(error = %e, writes = n, "outbox commit failed; none of its writes was made")
                }
            }
            for finish in finishes {
                finish(outcome.as_ref().map(|_| ()));
            }
        }
    }

    /// One transaction for a group of writes; nothing of it is written unless all is.
    fn write_group(&self, group: Vec<Step>, finishes: &mut Vec<Finish>) -> Result<(), OutboxError> {
        let txn = self.db.begin_write().map_err(store)?;
        let mut c = Changes {
            known: Arc::clone(&self.known),
            seq: 0,
            indexed: HashMap::new(),
            added: Vec::new(),
            decided: HashSet::new(),
            units: Vec::new(),
        };
        let forgotten = {
            let mut t = Tables::open(&txn)?;
            c.seq = t
                .orders
                .last()
                .map_err(store)?
                .map_or(0, |(k, _)| k.value());
            for step in group {
                finishes.push(step(&mut t, &mut c)?);
            }
            t.forget_oldest(&c, self.kept)?
        };
        txn.commit().map_err(store)?;
        let added = !c.added.is_empty();
        {
            let mut k = lock(&self.known);
            for id in forgotten {
                k.index.remove(&id);
            }
            k.index.extend(c.indexed);
            k.pending.extend(c.added);
            for seq in c.decided {
                k.pending.remove(&seq);
            }
            k.units.extend(c.units);
        }
        if added {
            self.pending_added.notify_one();
        }
        Ok(())
    }
}

/// The order at `seq`, with the core's verdict on it when there is one.
fn read_order(
    orders: &impl ReadableTable<u64, (&'static str, &'static [u8])>,
    verdicts: &impl ReadableTable<u64, (u8, Option<u64>, &'static str)>,
    seq: u64,
) -> Result<Option<Order>, OutboxError> {
    let Some(mut o) = orders
        .get(seq)
        .map_err(store)?
        .map(|v| decode(v.value().1))
        .transpose()?
    else {
        return Ok(None);
    };
    if let Some(v) = verdicts.get(seq).map_err(store)? {
        let (status, version, reason) = v.value();
        o.status = status_of(status)?;
        o.commit_version = version;
        o.reject_reason = (!reason.is_empty()).then(|| reason.to_owned());
    }
    Ok(Some(o))
}

/// The outbox, shared by the API, the forwarder and the grant keeper.
#[derive(Clone)]
pub struct Outbox {
    db: Arc<Database>,
    known: Shared,
    queue: mpsc::Sender<Step>,
    /// Woken when orders are added to the pending list.
    pub pending_added: Arc<Notify>,
    /// Orders waiting in the queue (for /metrics).
    queued: Arc<AtomicU64>,
}

impl Outbox {
    /// Opens (or creates) the outbox at `path` and starts its writer thread, which takes at
    /// most `queue` writes waiting.
    pub fn open(path: &Path, queue: usize) -> Result<Outbox, OutboxError> {
        Self::open_keeping(path, queue, KEPT)
    }

    fn open_keeping(path: &Path, queue: usize, kept: u64) -> Result<Outbox, OutboxError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(store)?;
        }
        // Orders with their shoppers' details: readable by this process's user alone.
        util::files::private(path).map_err(|e| store(format!("{}: {e}", path.display())))?;
        let db = Database::create(path).map_err(|e| store(format!("{}: {e}", path.display())))?;
        Self::open_db(db, queue, kept)
    }

    /// The outbox on a disk that loses what was not synced (tests of durability).
    #[cfg(test)]
    fn on_disk(disk: util::disk_faults::LosingDisk, queue: usize) -> Result<Outbox, OutboxError> {
        let db = redb::Builder::new()
            .create_with_backend(disk)
            .map_err(store)?;
        Self::open_db(db, queue, KEPT)
    }

    fn open_db(db: Database, queue: usize, kept: u64) -> Result<Outbox, OutboxError> {
        let txn = db.begin_write().map_err(store)?;
        Tables::open(&txn)?;
        txn.commit().map_err(store)?;
        let mut known = Known::default();
        {
            let txn = db.begin_read().map_err(store)?;
            let orders = txn.open_table(ORDERS).map_err(store)?;
            let verdicts = txn.open_table(VERDICTS).map_err(store)?;
            for item in orders.iter().map_err(store)? {
                let (k, v) = item.map_err(store)?;
                let (seq, (id, bytes)) = (k.value(), v.value());
                known.index.insert(OrderId::new(id).map_err(store)?, seq);
                if verdicts.get(seq).map_err(store)?.is_none() {
                    let o = decode(bytes)?;
                    if o.status == OrderStatus::Accepted {
                        known.pending.insert(seq, o.accepted_at_ms);
                    }
                }
            }
            let t = txn.open_table(UNITS).map_err(store)?;
            for item in t.iter().map_err(store)? {
                let (k, v) = item.map_err(store)?;
                known
                    .units
                    .insert(SkuId::new(k.value()).map_err(store)?, v.value());
            }
        }
        let (tx, rx) = mpsc::channel(queue);
        let outbox = Outbox {
            db: Arc::new(db),
            known: Arc::new(Mutex::new(known)),
            queue: tx,
            pending_added: Arc::new(Notify::new()),
            queued: Arc::new(AtomicU64::new(0)),
        };
        // The writer holds no sender: once every handle is dropped it ends, and closes the file.
        let writer = Writer {
            db: Arc::clone(&outbox.db),
            known: Arc::clone(&outbox.known),
            kept,
            pending_added: Arc::clone(&outbox.pending_added),
        };
        std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.write_loop(rx))
            .map_err(store)?;
        Ok(outbox)
    }

    /// `f` run in the writer's next commit; its result once that commit is durable.
    fn step<T, F>(f: F) -> (Step, oneshot::Receiver<Result<T, OutboxError>>)
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&mut Tables<'t>, &mut Changes) -> Result<T, OutboxError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let step: Step = Box::new(move |t, c| match f(t, c) {
            Ok(v) => Ok(Box::new(move |committed: Result<(), &OutboxError>| {
                let _ = reply.send(committed.map(|()| v).map_err(Clone::clone));
            })),
            Err(e) => {
                let _ = reply.send(Err(e.clone()));
                Err(e)
            }
        });
        (step, answer)
    }

    /// Runs `f` in the writer's next commit, waiting for room in the queue.
    async fn write<T, F>(&self, f: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: for<'t> FnOnce(&mut Tables<'t>, &mut Changes) -> Result<T, OutboxError> + Send + 'static,
    {
        let (step, answer) = Self::step(f);
        self.queue.send(step).await.map_err(writer_gone)?;
        answer.await.map_err(writer_gone)?
    }

    /// Takes `order` in: durable, with its units taken from the grants, before this returns.
    /// A full queue refuses it at once.
    pub async fn accept(&self, order: Order) -> Result<Intake, OutboxError> {
        // Counted while queued: the count goes down when the step runs, or is dropped unrun
        // (a full queue, a commit that failed before it).
        struct Queued(Arc<AtomicU64>);
        impl Drop for Queued {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let queued = Queued(Arc::clone(&self.queued));
        let (step, answer) = Self::step(move |t, c| {
            drop(queued);
            take_in(t, c, order)
        });
        match self.queue.try_send(step) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(OutboxError::Overloaded),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(OutboxError::Store("the outbox writer stopped".into()));
            }
        }
        answer.await.map_err(writer_gone)?
    }

    /// The order `id`, as this edge knows it.
    pub fn order(&self, id: &OrderId) -> Result<Option<Order>, OutboxError> {
        let Some(seq) = lock(&self.known).index.get(id).copied() else {
            return Ok(None);
        };
        let txn = self.db.begin_read().map_err(store)?;
        let orders = txn.open_table(ORDERS).map_err(store)?;
        let verdicts = txn.open_table(VERDICTS).map_err(store)?;
        read_order(&orders, &verdicts, seq)
    }

    /// Records an order decided elsewhere (a central order the core placed for this edge).
    pub async fn record(&self, order: Order) -> Result<(), OutboxError> {
        self.write(move |t, c| {
            let seq = match c.seq_of(&order.order_id) {
                Some(s) => s,
                None => {
                    c.seq += 1;
                    c.seq
                }
            };
            t.orders
                .insert(seq, (order.order_id.as_str(), encode(&order)?.as_slice()))
                .map_err(store)?;
            let reason = order.reject_reason.as_deref().unwrap_or("");
            t.verdicts
                .insert(
                    seq,
                    (status_code(order.status), order.commit_version, reason),
                )
                .map_err(store)?;
            c.decided.insert(seq);
            c.indexed.insert(order.order_id, seq);
            Ok(())
        })
        .await
    }

    /// Orders no core has decided, oldest first: up to `max` of them, and only as many as
    /// keep their encoded sizes within `max_bytes` (always the oldest, however large).
    pub fn pending(&self, max: usize, max_bytes: usize) -> Result<Vec<Order>, OutboxError> {
        let seqs: Vec<u64> = lock(&self.known)
            .pending
            .keys()
            .take(max)
            .copied()
            .collect();
        let txn = self.db.begin_read().map_err(store)?;
        let orders = txn.open_table(ORDERS).map_err(store)?;
        let mut out = Vec::with_capacity(seqs.len());
        let mut bytes = 0;
        for seq in seqs {
            let o = orders
                .get(seq)
                .map_err(store)?
                .ok_or_else(|| OutboxError::Store(format!("pending order {seq} missing")))?;
            let encoded = o.value().1;
            bytes += encoded.len();
            if bytes > max_bytes && !out.is_empty() {
                break;
            }
            out.push(decode(encoded)?);
        }
        Ok(out)
    }

    /// The orders of `customer` no core has decided, among the newest `look_max` of those: what
    /// a list of their orders shows before the core has them.
    pub fn pending_of(
        &self,
        customer: &CustomerId,
        look_max: usize,
    ) -> Result<Vec<Order>, OutboxError> {
        let seqs: Vec<u64> = lock(&self.known)
            .pending
            .keys()
            .rev()
            .take(look_max)
            .copied()
            .collect();
        let txn = self.db.begin_read().map_err(store)?;
        let orders = txn.open_table(ORDERS).map_err(store)?;
        let mut out = Vec::new();
        for seq in seqs {
            let Some(o) = orders.get(seq).map_err(store)? else {
                continue;
            };
            let order = decode(o.value().1)?;
            if &order.customer_id == customer {
                out.push(order);
            }
        }
        Ok(out)
    }

    /// Orders no core has decided.
    pub fn pending_count(&self) -> u64 {
        lock(&self.known).pending.len() as u64
    }

    /// How old the oldest order no core has decided is at `now_ms` (ms); `None` when there is
    /// none.
    pub fn oldest_pending_ms(&self, now_ms: i64) -> Option<u64> {
        let known = lock(&self.known);
        let oldest = known.pending.values().min()?;
        Some(u64::try_from(now_ms.saturating_sub(*oldest)).unwrap_or(0))
    }

    /// Orders waiting for the next commit.
    pub fn queued(&self) -> u64 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Records what a core decided for orders it was sent: each leaves the pending list with
    /// its status and version. A rejected order's units go back to the grants (the core did
    /// not take them from this edge's grant), as do those of an order whose id stands for one
    /// taken elsewhere, which replaces it here.
    pub async fn settle(&self, results: Vec<OrderResult>) -> Result<(), OutboxError> {
        self.write(move |t, c| {
            for r in results {
                let Some(seq) = c.seq_of(&r.order_id) else {
                    continue;
                };
                if !c.is_pending(seq) {
                    continue;
                }
                c.decided.insert(seq);
                // This edge's copy took nothing at the core when it was rejected, or when the
                // id stands for an order taken elsewhere: its units go back to the grants.
                let took_nothing = r.status == OrderStatus::Rejected || r.original.is_some();
                if took_nothing && let Some(o) = read_order(&t.orders, &t.verdicts, seq)? {
                    for (sku, qty) in o.units() {
                        let have = t.units_of(sku)?;
                        t.set_units(c, sku, have + u64::from(qty))?;
                    }
                }
                let reason = r.reject_reason.as_deref().unwrap_or("");
                t.verdicts
                    .insert(seq, (status_code(r.status), Some(r.version), reason))
                    .map_err(store)?;
                if let Some(original) = r.original {
                    // The order that stands is what this edge shows from now on under the id
                    // it gave the shopper (the row's id), also when the order that stands has
                    // another (a key first used under a v1 id).
                    t.orders
                        .insert(seq, (r.order_id.as_str(), encode(&original)?.as_slice()))
                        .map_err(store)?;
                }
            }
            Ok(())
        })
        .await
    }

    /// Units of `sku` this edge may still sell from its grants.
    pub fn units(&self, sku: &SkuId) -> u64 {
        lock(&self.known).units.get(sku).copied().unwrap_or(0)
    }

    /// Every SKU with units held here, and how many.
    pub fn all_units(&self) -> Vec<(SkuId, u64)> {
        lock(&self.known)
            .units
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(s, n)| (s.clone(), *n))
            .collect()
    }

    /// The number of the grant request for `sku` in flight, or a new one made durable first
    /// (so that a request whose answer was lost is sent again under the same number, and the
    /// core grants once).
    pub async fn grant_request(&self, sku: &SkuId, now_ms: i64) -> Result<u64, OutboxError> {
        let sku = sku.clone();
        self.write(move |t, _| {
            if let Some(n) = t
                .grant_requests
                .get(sku.as_str())
                .map_err(store)?
                .and_then(|k| number(k.value()))
            {
                return Ok(n);
            }
            let n = t.next_number(now_ms)?;
            t.grant_requests
                .insert(sku.as_str(), format!("grant-{n}").as_str())
                .map_err(store)?;
            Ok(n)
        })
        .await
    }

    /// Grant requests sent and not yet answered: (SKU, number).
    pub fn open_grant_requests(&self) -> Result<Vec<(SkuId, u64)>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(GRANT_REQUESTS).map_err(store)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store)? {
            let (k, v) = item.map_err(store)?;
            if let (Ok(sku), Some(n)) = (SkuId::new(k.value()), number(v.value())) {
                out.push((sku, n));
            }
        }
        Ok(out)
    }

    /// `units` of `sku` granted by the answer to the request in flight: added, and the request
    /// closed, together.
    pub async fn granted(&self, sku: &SkuId, units: u64) -> Result<(), OutboxError> {
        let sku = sku.clone();
        self.write(move |t, c| {
            let have = t.units_of(&sku)?;
            t.set_units(c, &sku, have.saturating_add(units))?;
            t.grant_requests.remove(sku.as_str()).map_err(store)?;
            Ok(())
        })
        .await
    }

    /// Takes every unit of `sku` off this edge's books to give back, under a new number,
    /// durably before anything is sent: units are never sold here once the core may have them
    /// back. `None` when there are none, or a return of `sku` is still open (one at a time, so
    /// that the core's last return number of the SKU tells every earlier one applied).
    pub async fn begin_return(
        &self,
        sku: &SkuId,
        now_ms: i64,
    ) -> Result<Option<(u64, u64)>, OutboxError> {
        let sku = sku.clone();
        self.write(move |t, c| {
            let have = t.units_of(&sku)?;
            if have == 0 {
                return Ok(None);
            }
            for item in t.returns.iter().map_err(store)? {
                let (_, v) = item.map_err(store)?;
                if v.value().0 == sku.as_str() {
                    return Ok(None);
                }
            }
            t.set_units(c, &sku, 0)?;
            let n = t.next_number(now_ms)?;
            t.returns
                .insert(format!("return-{n}").as_str(), (sku.as_str(), have))
                .map_err(store)?;
            Ok(Some((n, have)))
        })
        .await
    }

    /// Returns taken off the books and not yet known returned: (number, SKU, units).
    pub fn open_returns(&self) -> Result<Vec<(u64, SkuId, u64)>, OutboxError> {
        let txn = self.db.begin_read().map_err(store)?;
        let t = txn.open_table(RETURNS).map_err(store)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(store)? {
            let (k, v) = item.map_err(store)?;
            let (sku, units) = v.value();
            if let (Ok(sku), Some(n)) = (SkuId::new(sku), number(k.value())) {
                out.push((n, sku, units));
            }
        }
        Ok(out)
    }

    /// The core has return `number`.
    pub async fn returned(&self, number: u64) -> Result<(), OutboxError> {
        self.write(move |t, _| {
            t.returns
                .remove(format!("return-{number}").as_str())
                .map_err(store)?;
            Ok(())
        })
        .await
    }
}

/// The number of a grant request or return as the file keeps it (`grant-7`, `return-8`).
fn number(key: &str) -> Option<u64> {
    key.rsplit('-').next()?.parse().ok()
}

/// Intake of one order: the order as it was when its id was taken before, no grant, or
/// written with its units taken.
fn take_in(t: &mut Tables<'_>, c: &mut Changes, o: Order) -> Result<Intake, OutboxError> {
    // A key first used here before v2 order ids is that order, under its v1 id.
    let v1 = || {
        let key = o.idempotency_key.as_deref()?;
        c.seq_of(&commerce::order_id::v1_beside(
            &o.order_id,
            &o.customer_id,
            key,
        )?)
    };
    if let Some(at) = c.seq_of(&o.order_id).or_else(v1) {
        // Written earlier in this commit when the file does not have it yet: that order.
        let prev = read_order(&t.orders, &t.verdicts, at)?;
        return Ok(Intake::Existing(prev.unwrap_or(o)));
    }
    let mut held = HashMap::with_capacity(o.lines.len());
    for (sku, _) in o.units() {
        held.insert(sku, t.units_of(sku)?);
    }
    let Some(left) = sell_from_grants(o.units(), |s| held.get(s).copied().unwrap_or(0)) else {
        return Ok(Intake::NoGrant);
    };
    for (sku, units) in left {
        t.set_units(c, sku, units)?;
    }
    c.seq += 1;
    t.orders
        .insert(c.seq, (o.order_id.as_str(), encode(&o)?.as_slice()))
        .map_err(store)?;
    c.indexed.insert(o.order_id.clone(), c.seq);
    c.added.push((c.seq, o.accepted_at_ms));
    Ok(Intake::Accepted(o))
}

fn encode(o: &Order) -> Result<Vec<u8>, OutboxError> {
    codec::encode(o).map_err(store)
}

fn decode(bytes: &[u8]) -> Result<Order, OutboxError> {
    codec::decode(bytes).map_err(store)
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce::command::OrderResult;

    fn order(key: &str, qty: u32) -> Order {
        let customer = commerce::CustomerId::new("c").unwrap();
        let money = serde_json::json!({"amount_minor": 100, "currency": "USD"});
        serde_json::from_value(serde_json::json!({
            "order_id": commerce::order_id::OrderIdKey::new(&[7; 32]).order_id(&customer, key),
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
            original: None,
            key_reused: false,
        }
    }

    /// A shopper's retry taken here whose key's order was taken elsewhere first: its units go
    /// back, and the order that stands replaces it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_copy_superseded_by_an_order_taken_elsewhere_gives_its_units_back() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("outbox.redb"), 16).unwrap();
        let sku = SkuId::new("S-1").unwrap();
        ob.granted(&sku, 5).await.unwrap();
        let ours = order("k", 2);
        assert!(matches!(
            ob.accept(ours.clone()).await,
            Ok(Intake::Accepted(_))
        ));
        assert_eq!(ob.units(&sku), 3);
        let mut theirs = ours.clone();
        theirs.origin.edge = Some(commerce::EdgeId::new("other").unwrap());
        theirs.status = OrderStatus::Committed;
        theirs.commit_version = Some(4);
        let verdict = OrderResult {
            duplicate: true,
            version: 4,
            original: Some(Box::new(theirs.clone())),
            ..result(&ours, OrderStatus::Committed)
        };
        ob.settle(vec![verdict]).await.unwrap();
        assert_eq!(ob.units(&sku), 5);
        assert_eq!(ob.pending_count(), 0);
        assert_eq!(ob.order(&ours.order_id).unwrap(), Some(theirs));
    }

    /// Across the order ids' switch: a key taken here under its v1 id, retried here under v2,
    /// is the order taken; and a copy superseded by an order of another id is shown under the
    /// id this edge gave, also after a restart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_key_taken_under_a_v1_id_is_found_and_a_superseded_copy_keeps_its_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.redb");
        let ob = Outbox::open(&path, 16).unwrap();
        let sku = SkuId::new("S-1").unwrap();
        ob.granted(&sku, 5).await.unwrap();
        let mut first = order("k-1", 1);
        first.order_id = commerce::order_id::v1_id(&first.customer_id, "k-1");
        assert!(matches!(
            ob.accept(first.clone()).await,
            Ok(Intake::Accepted(_))
        ));
        match ob.accept(order("k-1", 1)).await {
            Ok(Intake::Existing(o)) => assert_eq!(o.order_id, first.order_id),
            other => panic!("{other:?}"),
        }
        assert_eq!(ob.units(&sku), 4, "one unit taken, once");
        // A copy under a v2 id superseded by the order that stands under its v1 id.
        let ours = order("k-2", 1);
        assert!(matches!(
            ob.accept(ours.clone()).await,
            Ok(Intake::Accepted(_))
        ));
        let mut theirs = ours.clone();
        theirs.order_id = commerce::order_id::v1_id(&ours.customer_id, "k-2");
        theirs.status = OrderStatus::Committed;
        let verdict = OrderResult {
            duplicate: true,
            original: Some(Box::new(theirs.clone())),
            ..result(&ours, OrderStatus::Committed)
        };
        ob.settle(vec![verdict]).await.unwrap();
        let shown = |ob: &Outbox| ob.order(&ours.order_id).unwrap().map(|o| o.order_id);
        assert_eq!(shown(&ob), Some(theirs.order_id.clone()));
        drop(ob);
        let ob = reopen(&path).await;
        assert_eq!(shown(&ob), Some(theirs.order_id));
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
        let n = ob.grant_request(&sku, 5).await.unwrap();
        assert_eq!(
            ob.grant_request(&sku, 6).await.unwrap(),
            n,
            "one request in flight"
        );
        assert_eq!(n, 5, "numbered from the clock at least");
        ob.granted(&sku, 3).await.unwrap();
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
        assert_eq!(ob.pending(10, usize::MAX).unwrap().len(), 3);

        // A rejected order gives its unit back; the decided are kept two at most.
        let verdicts = vec![
            result(&accepted[0], OrderStatus::Committed),
            result(&accepted[1], OrderStatus::Rejected),
            result(&accepted[2], OrderStatus::Committed),
        ];
        ob.settle(verdicts.clone()).await.unwrap();
        assert_eq!(ob.pending_count(), 0);
        assert_eq!(ob.units(&sku), 1);
        let kept: Vec<Order> = accepted
            .iter()
            .filter_map(|o| ob.order(&o.order_id).unwrap())
            .collect();
        assert_eq!(
            kept.len(),
            2,
            "the oldest decided past the bound are forgotten"
        );
        // The next write keeps two orders: the newest, and the last accepted.
        let central = order("central", 1);
        ob.record(central.clone()).await.unwrap();
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
        let (rkey, units) = ob.begin_return(&sku, 0).await.unwrap().unwrap();
        assert_eq!((units, ob.units(&sku)), (1, 0));
        assert!(rkey > n, "numbers only grow");
        drop(ob);
        let ob = reopen(&path).await;
        assert_eq!(ob.open_returns().unwrap(), vec![(rkey, sku.clone(), 1)]);
        // Which order is where is read back from the file.
        assert_eq!(ob.order(&central.order_id).unwrap(), Some(central.clone()));
        assert_eq!(
            ob.order(&kept[0].order_id).unwrap().map(|o| o.status),
            Some(kept[0].status)
        );
        ob.returned(rkey).await.unwrap();
        assert!(ob.open_returns().unwrap().is_empty());

        // What waits for a verdict is known again after a restart; a central order never does.
        assert_eq!(ob.pending_count(), 0);
        ob.granted(&sku, 1).await.unwrap();
        let late = order("late", 1);
        assert!(matches!(
            ob.accept(late.clone()).await,
            Ok(Intake::Accepted(_))
        ));
        drop(ob);
        let ob = reopen(&path).await;
        assert_eq!(ob.pending_count(), 1);
        assert_eq!(ob.pending(10, usize::MAX).unwrap(), vec![late]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pending_batches_are_bounded_in_orders_and_bytes_and_say_how_old_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let ob = Outbox::open(&dir.path().join("outbox.redb"), 16).unwrap();
        let sku = SkuId::new("S-1").unwrap();
        assert_eq!(ob.oldest_pending_ms(1_000), None);
        ob.granted(&sku, 10).await.unwrap();
        for i in 0..5 {
            let mut o = order(&format!("k{i}"), 1);
            o.accepted_at_ms = 100 + i;
            assert!(matches!(ob.accept(o).await, Ok(Intake::Accepted(_))));
        }
        let one = encode(&order("k0", 1)).unwrap().len();
        assert_eq!(ob.pending(3, usize::MAX).unwrap().len(), 3);
        assert_eq!(ob.pending(10, one * 2).unwrap().len(), 2);
        // The oldest always goes, however large.
        assert_eq!(ob.pending(10, 1).unwrap().len(), 1);
        assert_eq!(ob.oldest_pending_ms(1_100), Some(1_000));
    }

    /// An order is answered only once its write is synced: on a disk that loses what was not
    /// synced, an acknowledged order and the units it took are there after a power loss.
    /// (Committing the outbox's writes without a sync, `Durability::None`, fails this test;
    /// a SIGKILL, which keeps the page cache, would not show it.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_acknowledged_order_survives_a_power_loss() {
        let disk = util::disk_faults::LosingDisk::new();
        let ob = Outbox::on_disk(disk.clone(), 16).unwrap();
        let sku = SkuId::new("S-1").unwrap();
        ob.grant_request(&sku, 5).await.unwrap();
        ob.granted(&sku, 3).await.unwrap();
        let Ok(Intake::Accepted(o)) = ob.accept(order("k1", 1)).await else {
            panic!("not accepted");
        };
        // The power goes the moment the shopper has the answer.
        let after = disk.power_loss();
        drop(ob);
        let ob = Outbox::on_disk(after, 16).unwrap();
        assert_eq!(
            ob.order(&o.order_id).unwrap().map(|o| o.order_id),
            Some(o.order_id.clone())
        );
        assert_eq!(ob.pending(10, usize::MAX).unwrap().len(), 1);
        assert_eq!(ob.units(&sku), 2);
    }

    /// The power goes during the sync of an order's commit, tearing its writes: the outbox
    /// opens again with every order acknowledged before, and the torn one (never answered,
    /// its sync never returned) not at all, its unit back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_torn_by_a_power_loss_leaves_the_orders_acknowledged_before() {
        let disk = util::disk_faults::LosingDisk::new();
        let ob = Outbox::on_disk(disk.clone(), 16).unwrap();
        let sku = SkuId::new("S-1").unwrap();
        ob.grant_request(&sku, 5).await.unwrap();
        ob.granted(&sku, 3).await.unwrap();
        let Ok(Intake::Accepted(first)) = ob.accept(order("k1", 1)).await else {
            panic!("not accepted");
        };
        disk.tear_at_next_sync();
        let Ok(Intake::Accepted(torn)) = ob.accept(order("k2", 1)).await else {
            panic!("not accepted");
        };
        drop(ob);
        let ob = Outbox::on_disk(disk.torn().expect("the sync came"), 16).unwrap();
        assert!(ob.order(&first.order_id).unwrap().is_some());
        assert!(ob.order(&torn.order_id).unwrap().is_none());
        assert_eq!(ob.pending(10, usize::MAX).unwrap().len(), 1);
        assert_eq!(ob.units(&sku), 2);
    }

    /// The outbox at `path` opened again; the writer thread lets go of the file once the last
    /// handle is gone.
    async fn reopen(path: &Path) -> Outbox {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Outbox::open(path, 16) {
                Ok(ob) => return ob,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
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
