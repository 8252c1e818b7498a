//! The state machine's shell: applies log entries (each at its index, the version) to the
//! store and to the in-memory state, atomically and exactly once. What a command does is
//! `commerce::decide`'s to say; this module reads what a decision needs, carries out its
//! effects, and keeps the three kinds of exactly once:
//! - **by index**: the store records the applied index in the same transaction as the rows of a
//!   batch; entries at or below it are skipped, so replaying a log after a crash is harmless;
//! - **by command id**: a keyed command that changed state leaves a dedup record
//!   (`commerce::dedup`) under its id, so a retry after a lost reply gets the first outcome
//!   instead of applying again; a record is forgotten `dedup::RETAIN_MS` after it was made, by
//!   the log's clock (the largest proposer's clock applied, kept with the applied index), when
//!   no key it answers is honoured any more;
//! - **by order id**: an order is stored under its id forever; `decide` answers an order
//!   decided before as it was.
//!
//! Apply is deterministic: it reads only the state, the stored orders a command names, the
//! entry and the proposer's clock in it, so every replica of a log computes the same state. A
//! command whose rows cannot all be stored (one over `VALUE_MAX_BYTES`) is refused whole.
//!
//! Memory changes before the store commits (readers are kept out by the caller's lock for the
//! whole apply). If the commit fails, the in-memory state is thrown away and reloaded from the
//! store, which is the truth.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use commerce::OrderId;
use commerce::command::{AuditRecord, Command, Outcome, Proposal};
use commerce::decide::{Effects, Input, decide};
use commerce::dedup::{self, DedupRecord, Seen};
use commerce::keys;
use commerce::order::Order;
use commerce::order_id::{IdFormat, format_of};
use commerce::record::{Record, Write};
use commerce::refusal::{RejectKind, Rejection};
use commerce::state::State;
use replication::feed::Feed;
use replication::protocol::Row;

use crate::store::{
    LAYOUTS_READ, Op, STORE_LAYOUT, Store, StoreError, VALUE_MAX_BYTES, WriteBatch, decode,
};

/// Rows read per page when loading the state at open.
const LOAD_PAGE_ROWS: usize = 4_096;
/// Dedup records forgotten per batch at most: the work of pruning stays bounded, and a backlog
/// (a region that was down for days) goes in a few batches.
const PRUNE_ROWS_MAX: usize = 256;

/// One log entry at its index (the version it is applied at): a proposal, or nothing (the log's
/// own entries, such as a new leader's first entry or a membership change, take an index too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub index: u64,
    pub proposal: Option<Proposal>,
}

impl LogEntry {
    /// `proposals` as consecutive entries from index `first`.
    pub fn numbered(first: u64, proposals: Vec<Proposal>) -> Vec<LogEntry> {
        proposals
            .into_iter()
            .zip(first..)
            .map(|(proposal, index)| LogEntry {
                index,
                proposal: Some(proposal),
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("log gap: applied up to {applied}, next entry is {next}")]
    Gap { applied: u64, next: u64 },
    #[error("the state machine failed earlier and could not reload its state; restart the process")]
    Poisoned,
}

pub struct StateMachine {
    store: Arc<dyn Store>,
    state: State,
    applied: u64,
    poisoned: bool,
    /// The log's clock: the largest proposer's clock (unix ms) of the entries applied.
    clock_ms: i64,
    /// When the oldest dedup record was made (log clock), if any is kept: pruning looks at the
    /// store only once that is past `dedup::RETAIN_MS`.
    oldest_dedup_ms: Option<i64>,
    /// Where the mirrored rows each version changed are published, once committed.
    feed: Option<Arc<Feed>>,
    /// Whether the store holds an order with a v1 id: only then can a v2 order's key have
    /// named one before (`order_id`), and only then are those ids looked up.
    v1_orders: bool,
    /// Changes since open that may have ended an epoch (`Record::EpochEnded` applied, or the
    /// state reloaded from a snapshot): what tells the keeper to look at ended epochs again.
    ended: u64,
}

/// Rows written by one `apply`, and what a later entry of the same batch must see of them.
struct Batch<'s> {
    store: &'s dyn Store,
    ops: Vec<Op>,
    /// Dedup records and their index, as written in this batch.
    written: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Orders decided in this batch that a later entry of it names.
    orders: HashMap<OrderId, Order>,
    /// Ids of the orders more than one entry of the batch names.
    named_again: HashSet<OrderId>,
    /// Values read ahead in one snapshot, so a batch of orders costs one read transaction.
    prefetched: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Orders under v2 ids decided in this batch, by customer and key, when a later entry of
    /// the batch has an order under a v1 id: its key's v2 order may be one of them, not yet in
    /// the store its lookback reads (`None`: no entry needs them).
    keyed_v2: Option<HashMap<(commerce::CustomerId, String), Order>>,
}

impl Batch<'_> {
    /// Whether this batch made a dedup record.
    fn written_index(&self) -> bool {
        self.written
            .keys()
            .any(|k| k.first() == Some(&keys::DEDUP_BY_VERSION))
    }

    fn put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        if matches!(key.first(), Some(&keys::DEDUP | &keys::DEDUP_BY_VERSION)) {
            self.written.insert(key.clone(), value.clone());
        }
        self.ops.push(match value {
            Some(v) => Op::Put(key, v),
            None => Op::Delete(key),
        });
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.written.get(key).or_else(|| self.prefetched.get(key)) {
            return Ok(v.clone());
        }
        self.store.get(key)
    }

    fn read_decoded<T: codec::Versioned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.read(key)?.map(|v| decode(key, &v)).transpose()
    }

    /// The orders decided before under the ids `command` names, and the v1 ids of its v2
    /// orders' keys when the store holds `v1` orders.
    fn decided(&self, command: &Command, v1: bool) -> Result<HashMap<OrderId, Order>, StoreError> {
        let mut found = HashMap::new();
        let v1_ids = if v1 {
            command.v1_ids_beside()
        } else {
            Vec::new()
        };
        for id in command.order_ids().into_iter().chain(&v1_ids) {
            let order = match self.orders.get(id) {
                Some(o) => Some(o.clone()),
                None => self.read_decoded::<Order>(&keys::order(id))?,
            };
            if let Some(o) = order {
                found.insert(id.clone(), o);
            }
        }
        for (id, customer, key) in command.v1_keyed() {
            if found.contains_key(id) {
                continue;
            }
            // Decided earlier in this batch: newer than anything the store holds.
            let here = self
                .keyed_v2
                .as_ref()
                .and_then(|m| m.get(&(customer.clone(), key.to_owned())));
            if let Some(o) = here {
                found.insert(id.clone(), o.clone());
                continue;
            }
            let newest = crate::reads::customer_orders(
                self.store,
                customer,
                None,
                commerce::order_id::V1_LOOKBACK_ORDERS,
            )?;
            if let Some(o) = commerce::order::v2_order_of(&newest, key) {
                found.insert(id.clone(), o.clone());
            }
        }
        Ok(found)
    }
}

/// Publishes the mirrored rows of each version; `ends` says where each version's ops end.
fn publish(feed: &Feed, ends: &[(u64, usize)], ops: Vec<Op>) {
    let mut ops = ops.into_iter().enumerate().peekable();
    for &(version, end) in ends {
        let mut rows = Vec::new();
        while let Some((_, op)) = ops.next_if(|(i, _)| *i < end) {
            match op {
                Op::Put(k, v) if keys::mirrored(&k) => rows.push((k, Some(v))),
                Op::Delete(k) if keys::mirrored(&k) => rows.push((k, None)),
                _ => {}
            }
        }
        feed.publish(version, rows);
    }
}

/// The rows of `writes`, each encoded in its format and within what every backend stores, and
/// the index rows that go with them (`Record::index_key`).
fn rows(writes: &[Write]) -> Result<Vec<Row>, Rejection> {
    let mut out = Vec::with_capacity(writes.len() + 1);
    for w in writes {
        let (key, value) = w
            .row()
            .map_err(|e| Rejection::new(RejectKind::Invalid, e.to_string()))?;
        if let Some(v) = &value
            && v.len() > VALUE_MAX_BYTES
        {
            return Err(Rejection::new(
                RejectKind::Invalid,
                format!(
                    "a {} record of {} bytes is over the limit of {VALUE_MAX_BYTES}",
                    keys::kind_name(key[0]),
                    v.len()
                ),
            ));
        }
        out.push((key, value));
        if let Write::Put(r) = w
            && let Some(index) = r.index_key()
        {
            out.push((index, Some(Vec::new())));
        }
    }
    Ok(out)
}

impl StateMachine {
    /// Opens the machine over `store`, loading the commerce state into memory.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, MachineError> {
        let mut m = StateMachine {
            store,
            state: State::new(),
            applied: 0,
            poisoned: false,
            clock_ms: 0,
            oldest_dedup_ms: None,
            feed: None,
            v1_orders: false,
            ended: 0,
        };
        m.reload()?;
        Ok(m)
    }

    /// Publishes to `feed` the mirrored rows (`keys::MIRRORED`) each applied version changes,
    /// once they are committed, in version order. Published while the machine is held, so a
    /// snapshot read of the store is never newer than what the feed has published.
    pub fn set_feed(&mut self, feed: Arc<Feed>) {
        self.feed = Some(feed);
    }

    /// The version of the state: the last applied log index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Changes since open that may have ended an epoch: equal twice, none came between.
    pub fn epochs_ended(&self) -> u64 {
        self.ended
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn reload(&mut self) -> Result<(), MachineError> {
        self.poisoned = true;
        self.ended += 1;
        let store = Arc::clone(&self.store);
        migrate_layout(&*store)?;
        let mut state = State::new();
        let applied = store.applied()?;
        for tag in keys::MIRRORED {
            let (lo, hi) = keys::tag_range(tag);
            store.for_each(&lo, &hi, LOAD_PAGE_ROWS, &mut |k, v| {
                state
                    .load_row(k, Some(v))
                    .map_err(|e| StoreError::corrupt(k, e))
            })?;
        }
        self.state = state;
        self.applied = applied;
        self.clock_ms = store
            .get(keys::META_CLOCK)?
            .map(|v| <[u8; 8]>::try_from(v.as_slice()).map(i64::from_be_bytes))
            .transpose()
            .map_err(|_| StoreError::corrupt(keys::META_CLOCK, "the log's clock is not 8 bytes"))?
            .unwrap_or(0);
        let (lo, hi) = keys::v1_order_range();
        self.v1_orders = !store.scan(&lo, &hi, 1)?.is_empty();
        let (lo, hi) = keys::tag_range(keys::DEDUP_BY_VERSION);
        self.oldest_dedup_ms = store
            .scan(&lo, &hi, 1)?
            .first()
            .map(|(_, v)| dedup_index(v).1);
        self.poisoned = false;
        Ok(())
    }

    /// Applies `entries` (consecutive indexes) in one store transaction and returns one outcome
    /// per entry. Entries at or below the applied index are not applied again.
    pub fn apply(&mut self, entries: &[LogEntry]) -> Result<Vec<Outcome>, MachineError> {
        self.apply_with(entries, None)
    }

    /// `apply`, also storing `meta` (the log's own record of what was applied, opaque here) in
    /// the same transaction, so that the two never disagree after a crash.
    pub fn apply_with(
        &mut self,
        entries: &[LogEntry],
        meta: Option<Vec<u8>>,
    ) -> Result<Vec<Outcome>, MachineError> {
        if self.poisoned {
            return Err(MachineError::Poisoned);
        }
        let fresh_from = entries
            .iter()
            .position(|e| e.index > self.applied)
            .unwrap_or(entries.len());
        let (old, fresh) = entries.split_at(fresh_from);
        let mut outcomes = Vec::with_capacity(entries.len());
        for e in old {
            outcomes.push(self.replayed(e)?);
        }
        for (i, e) in fresh.iter().enumerate() {
            if e.index != self.applied + 1 + i as u64 {
                return Err(MachineError::Gap {
                    applied: self.applied + i as u64,
                    next: e.index,
                });
            }
        }
        if fresh.is_empty() && meta.is_none() {
            return Ok(outcomes);
        }
        match self.apply_fresh(fresh, meta) {
            Ok(mut fresh_outcomes) => {
                outcomes.append(&mut fresh_outcomes);
                Ok(outcomes)
            }
            Err(e) => {
                // Memory may hold changes the store did not take: rebuild it from the store.
                tracing::error!(error = %e, "apply failed; reloading state from the store");
                self.reload()?;
                Err(e.into())
            }
        }
    }

    /// The outcome of an entry applied before, as far as the dedup table still knows it.
    fn replayed(&self, e: &LogEntry) -> Result<Outcome, MachineError> {
        let Some(p) = &e.proposal else {
            return Ok(Outcome::Applied { version: e.index });
        };
        let key = keys::dedup(&p.command_id);
        Ok(match self.store.get(&key)? {
            Some(v) => decode::<DedupRecord>(&key, &v)?.outcome,
            None => Outcome::Applied { version: e.index },
        })
    }

    fn apply_fresh(
        &mut self,
        fresh: &[LogEntry],
        meta: Option<Vec<u8>>,
    ) -> Result<Vec<Outcome>, StoreError> {
        let store = Arc::clone(&self.store);
        // v1 ids are looked up while the store holds v1 orders, or once this batch brings one.
        let v1 = self.v1_orders
            || fresh.iter().filter_map(|e| e.proposal.as_ref()).any(|p| {
                p.command
                    .order_ids()
                    .into_iter()
                    .any(|id| format_of(id) == Some(IdFormat::V1))
            });
        let prefetch = prefetch_keys(fresh, v1);
        let values = store.get_many(&prefetch)?;
        let mut batch = Batch {
            store: &*store,
            ops: Vec::new(),
            written: HashMap::new(),
            orders: HashMap::new(),
            named_again: named_again(fresh, v1),
            prefetched: prefetch.into_iter().zip(values).collect(),
            keyed_v2: fresh
                .iter()
                .filter_map(|e| e.proposal.as_ref())
                .any(|p| !p.command.v1_keyed().is_empty())
                .then(HashMap::new),
        };
        let mut outcomes = Vec::with_capacity(fresh.len());
        // Where each entry's rows end in `batch.ops`.
        let mut ends = Vec::with_capacity(fresh.len());
        for e in fresh {
            if let Some(p) = &e.proposal {
                self.clock_ms = self.clock_ms.max(p.at_ms);
            }
            outcomes.push(match &e.proposal {
                Some(p) => self.apply_entry(&mut batch, e.index, p)?,
                None => Outcome::Applied { version: e.index },
            });
            ends.push((e.index, batch.ops.len()));
        }
        self.prune_dedup(&mut batch)?;
        batch.put(
            keys::META_CLOCK.to_vec(),
            Some(self.clock_ms.to_be_bytes().to_vec()),
        );
        if let Some(meta) = meta {
            batch.put(keys::META_REPLICATION.to_vec(), Some(meta));
        }
        let last = fresh.last().map_or(self.applied, |e| e.index);
        let write = WriteBatch {
            from_applied: self.applied,
            to_applied: last,
            ops: batch.ops,
        };
        store.commit(&write)?;
        self.applied = last;
        if let Some(feed) = &self.feed {
            publish(feed, &ends, write.ops);
        }
        Ok(outcomes)
    }

    /// One proposal at `version`: answered from its dedup record, or decided and carried out.
    fn apply_entry(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        p: &Proposal,
    ) -> Result<Outcome, StoreError> {
        let dkey = keys::dedup(&p.command_id);
        let record = if p.command.keeps_dedup_record() {
            batch.read_decoded(&dkey)?
        } else {
            None
        };
        let outcome = match dedup::seen(record, &p.fingerprint, p.key_ms, self.clock_ms) {
            Seen::Replay(outcome) => {
                audit(batch, version, p, "replayed".into());
                return Ok(outcome);
            }
            Seen::Refused(refusal) => Outcome::Rejected(refusal),
            Seen::New => self.decide_and_carry_out(batch, version, p, dkey)?,
        };
        audit(
            batch,
            version,
            p,
            match &outcome {
                Outcome::Rejected(r) => format!("rejected: {}", r.kind.fault()),
                _ => "applied".into(),
            },
        );
        Ok(outcome)
    }

    /// A new proposal at `version`, decided and carried out, with its dedup record.
    fn decide_and_carry_out(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        p: &Proposal,
        dkey: Vec<u8>,
    ) -> Result<Outcome, StoreError> {
        let decided = batch.decided(&p.command, self.v1_orders)?;
        let input = Input {
            state: &self.state,
            decided: &decided,
            version,
            at_ms: p.at_ms,
        };
        let outcome = match decide(&input, &p.command).and_then(|e| Ok((rows(&e.writes)?, e))) {
            Ok((rows, effects)) => self.carry_out(batch, rows, effects),
            Err(refusal) => Outcome::Rejected(refusal),
        };
        if let Outcome::Orders { results, .. } = &outcome {
            for r in results
                .iter()
                .filter(|r| !r.duplicate && r.reject_reason.is_some())
            {
                tracing::warn!(order = %r.order_id, reason = ?r.reject_reason, "edge order rejected at commit");
            }
        }
        if let Some(rec) = dedup::record(&p.command, p.fingerprint, version, &outcome)
            && let Ok(bytes) = codec::encode(&rec)
        {
            batch.put(dkey, Some(bytes));
            let mut index = p.command_id.to_vec();
            index.extend_from_slice(&self.clock_ms.to_be_bytes());
            batch.put(keys::dedup_by_version(version), Some(index));
            self.oldest_dedup_ms.get_or_insert(self.clock_ms);
        }
        Ok(outcome)
    }

    /// Writes a decision's rows into the batch and its effects into memory.
    fn carry_out(&mut self, batch: &mut Batch<'_>, rows: Vec<Row>, effects: Effects) -> Outcome {
        for (key, value) in rows {
            batch.put(key, value);
        }
        for w in effects.writes {
            if let Write::Put(Record::Order(o)) = &w {
                match format_of(&o.order_id) {
                    Some(IdFormat::V1) => self.v1_orders = true,
                    Some(IdFormat::V2) => {
                        if let (Some(m), Some(key)) = (&mut batch.keyed_v2, &o.idempotency_key) {
                            m.insert((o.customer_id.clone(), key.clone()), (**o).clone());
                        }
                    }
                    None => {}
                }
            }
            if let Write::Put(Record::EpochEnded(..)) = &w {
                self.ended += 1;
            }
            match w {
                Write::Put(Record::Order(o)) if batch.named_again.contains(&o.order_id) => {
                    batch.orders.insert(o.order_id.clone(), *o);
                }
                w => self.state.apply(w),
            }
        }
        effects.outcome
    }

    /// Forgets the dedup records made `dedup::RETAIN_MS` or more before the log's clock, oldest
    /// first (their index is in version order, and the clock only moves on), at most
    /// `PRUNE_ROWS_MAX` per batch.
    fn prune_dedup(&mut self, batch: &mut Batch<'_>) -> Result<(), StoreError> {
        let now = self.clock_ms;
        if !self.oldest_dedup_ms.is_some_and(|t| dedup::expired(t, now)) {
            return Ok(());
        }
        let (lo, hi) = keys::tag_range(keys::DEDUP_BY_VERSION);
        let rows = batch.store.scan(&lo, &hi, PRUNE_ROWS_MAX)?;
        let mut oldest = None;
        for (vkey, value) in &rows {
            let (id, made) = dedup_index(value);
            if !dedup::expired(made, now) {
                oldest = Some(made);
                break;
            }
            if let Some(id) = id {
                batch.put(keys::dedup(&id), None);
            }
            batch.put(vkey.clone(), None);
        }
        // All that was read is gone: what is left is newer, or a page more for the next batch,
        // or (in this batch, not in the store yet) as new as the clock.
        self.oldest_dedup_ms = match oldest {
            Some(t) => Some(t),
            None if rows.len() == PRUNE_ROWS_MAX => rows.last().map(|(_, v)| dedup_index(v).1),
            None => batch.written_index().then_some(now),
        };
        Ok(())
    }

    /// The log's record stored with the last `apply_with`.
    pub fn replication_meta(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.store.get(keys::META_REPLICATION)
    }

    /// Every row of the region's store, from one consistent read: what another region needs to
    /// become this one.
    pub fn dump(&self) -> Result<crate::store::Rows, StoreError> {
        self.store.dump(&[crate::store::all_keys()])
    }

    /// Becomes the region `rows` were dumped from (`dump`), with the log's record `meta`, and
    /// reloads the in-memory state from them.
    pub fn install(
        &mut self,
        mut rows: crate::store::Rows,
        meta: Vec<u8>,
    ) -> Result<(), MachineError> {
        let layout = rows
            .iter()
            .find(|(k, _)| k.as_slice() == keys::META_FORMAT)
            .map(|(_, v)| v.clone());
        if !matches!(layout.as_deref(), Some([l]) if LAYOUTS_READ.contains(l)) {
            return Err(StoreError::Format {
                found: format!("{layout:?} in a snapshot"),
            }
            .into());
        }
        rows.retain(|(k, _)| k.as_slice() != keys::META_REPLICATION);
        rows.push((keys::META_REPLICATION.to_vec(), meta));
        rows.sort();
        let installed = self.store.replace_all(&rows);
        // Whether or not it took, the store is the truth: reload from it.
        self.reload()?;
        if let Some(feed) = &self.feed {
            // The feed's history describes the store that was replaced.
            feed.reset(self.applied);
        }
        installed.map_err(Into::into)
    }
}

/// Brings a store of an earlier layout (`LAYOUTS_READ`) to this build's: layout 1 lacks the
/// index of each customer's orders, written here from the orders, in batches that leave the
/// applied index where it is; the new layout is written last, so a crash half-way starts over.
fn migrate_layout(store: &dyn Store) -> Result<(), StoreError> {
    if store.get(keys::META_FORMAT)?.as_deref() != Some(&[1][..]) {
        return Ok(());
    }
    let applied = store.applied()?;
    let commit = |ops: Vec<Op>| {
        store.commit(&WriteBatch {
            from_applied: applied,
            to_applied: applied,
            ops,
        })
    };
    let (lo, hi) = keys::tag_range(keys::ORDER);
    let mut ops = Vec::new();
    let mut indexed = 0u64;
    store.for_each(&lo, &hi, LOAD_PAGE_ROWS, &mut |k, v| {
        let order: Order = decode(k, v)?;
        if let Some(index) = Record::Order(Box::new(order)).index_key() {
            ops.push(Op::Put(index, Vec::new()));
        }
        if ops.len() >= LOAD_PAGE_ROWS {
            indexed += ops.len() as u64;
            commit(std::mem::take(&mut ops))?;
        }
        Ok(())
    })?;
    indexed += ops.len() as u64;
    ops.push(Op::Put(keys::META_FORMAT.to_vec(), vec![STORE_LAYOUT]));
    commit(ops)?;
    tracing::info!(
        orders = indexed,
        "store migrated to layout {STORE_LAYOUT}: each customer's orders indexed"
    );
    Ok(())
}

/// Records an admin write (a proposal with an actor) in the audit log, under its version.
fn audit(batch: &mut Batch<'_>, version: u64, p: &Proposal, outcome: String) {
    let Some(actor) = &p.actor else { return };
    let record = AuditRecord {
        version,
        at_ms: p.at_ms,
        token: actor.token.clone(),
        route: actor.route.clone(),
        command_id: p.command_id,
        // A membership change is the note's words: which member, how, and what became of it.
        command: match &p.command {
            Command::NoteMembership { change } => format!("membership: {change}"),
            c => c.kind().into(),
        },
        outcome,
    };
    match codec::encode(&record) {
        Ok(bytes) => batch.put(keys::audit(version), Some(bytes)),
        Err(e) => tracing::error!(version, error = %e, "audit record not encoded"),
    }
}

/// A dedup index row: the command id, and the log's clock when its record was made (0 for a
/// row written before the clock was kept: forgotten first).
fn dedup_index(value: &[u8]) -> (Option<[u8; 16]>, i64) {
    let id = value.get(..16).and_then(|b| <[u8; 16]>::try_from(b).ok());
    let made = value
        .get(16..24)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, i64::from_be_bytes);
    (id, made)
}

/// Keys a batch will read, fetched in one snapshot up front (the v1 ids of v2 orders' keys
/// too, when the store holds `v1` orders).
fn prefetch_keys(entries: &[LogEntry], v1: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        let Some(p) = &e.proposal else { continue };
        if p.command.keeps_dedup_record() {
            out.push(keys::dedup(&p.command_id));
        }
        out.extend(p.command.order_ids().into_iter().map(keys::order));
        if v1 {
            out.extend(p.command.v1_ids_beside().iter().map(keys::order));
        }
    }
    out
}

/// The order ids more than one entry names: only those orders are kept in memory for the rest
/// of the batch (an entry's own repeats are `decide`'s).
fn named_again(entries: &[LogEntry], v1: bool) -> HashSet<OrderId> {
    let proposals: Vec<&Proposal> = entries.iter().filter_map(|e| e.proposal.as_ref()).collect();
    // The v1 ids beside v2 orders' keys (when they are looked up at all), made first so that
    // the ids below can borrow them.
    let v1: Vec<Vec<OrderId>> = proposals
        .iter()
        .map(|p| {
            if v1 {
                p.command.v1_ids_beside()
            } else {
                Vec::new()
            }
        })
        .collect();
    let mut once = HashSet::new();
    let mut again = HashSet::new();
    for (p, v1) in proposals.iter().zip(&v1) {
        let ids: HashSet<&OrderId> = p.command.order_ids().into_iter().chain(v1).collect();
        for id in ids {
            if !once.insert(id) {
                again.insert(id.clone());
            }
        }
    }
    again
}
