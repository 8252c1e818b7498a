//! The commerce state machine: applies log entries (`apply(entries)`, each at its index) to the
//! in-memory commerce state and to the store, atomically and exactly once.
//!
//! Exactly once, three ways:
//! - **by index**: the store records the applied index in the same transaction as the rows of a
//!   batch; entries at or below it are skipped, so replaying a log after a crash is harmless;
//! - **by command id**: every command that changed state leaves a dedup record (its outcome)
//!   under its command id, derived from the caller's Idempotency-Key, so a retry after a lost
//!   reply returns the first outcome instead of applying again (kept for
//!   `DEDUP_RETAIN_VERSIONS`). A refused command leaves none, so the same request may be sent
//!   again once the state allows it; edge commits leave none, being idempotent by order id;
//! - **by order id**: an order is stored under its id forever; committing it again finds it and
//!   changes nothing. An order placed under an Idempotency-Key must carry the id that key names
//!   (`order_id_for(customer, key)`), so one key is one id wherever it was retried.
//!
//! Apply is deterministic: it reads only the state, the entry and the proposer's clock in the
//! entry, so every replica of a log computes the same state. A command is validated whole
//! before anything changes; a refused command changes nothing and consumes only its index.
//!
//! Memory changes before the store commits (readers are kept out by the caller's lock for the
//! whole apply). If the commit fails, the in-memory state is thrown away and reloaded from the
//! store, which is the truth.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use commerce::command::{
    COMMIT_BATCH_MAX, Command, OrderResult, Outcome, PRICE_BATCH_MAX, Proposal, RejectKind,
    Rejection, STOCK_BATCH_MAX,
};
use commerce::escrow::{Demand, GrantPolicy, Inventory, STOCK_MAX, grant_size};
use commerce::keys;
use commerce::order::{
    Order, OrderRequest, OrderStatus, Origin, check_idempotency_key, order_id_for, price_order,
};
use commerce::pricing::{PriceEntry, PriceList, Promotion, PromotionTarget};
use commerce::state::{RowCodec, State};
use commerce::{
    Currency, CustomerGroup, EdgeId, Market, MarketId, OrderId, PriceListId, Product, PromotionId,
    SkuId,
};
use replication::feed::Feed;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{Op, RECORD_FORMAT, Store, StoreError, VALUE_MAX_BYTES, WriteBatch};

/// How many versions a command's dedup record is kept: a retry with the same Idempotency-Key
/// within this many later commands gets the first outcome back. Orders do not depend on it:
/// they are kept forever under their ids, which their keys name.
pub const DEDUP_RETAIN_VERSIONS: u64 = 1_000_000;

/// Rows read per page when loading the state at open.
const LOAD_PAGE_ROWS: usize = 4_096;

/// One log entry at its index (the version it is applied at): a proposal, or nothing (the log's
/// own entries, such as a new leader's first entry or a membership change, take an index too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
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

/// What a command left behind, for retries.
#[derive(Serialize, serde::Deserialize)]
struct DedupRecord {
    version: u64,
    fingerprint: [u8; 16],
    outcome: Outcome,
}

pub struct StateMachine {
    store: Arc<dyn Store>,
    state: State,
    applied: u64,
    poisoned: bool,
    dedup_retain_versions: u64,
    /// Where the mirrored rows each version changed are published, once committed.
    feed: Option<Arc<Feed>>,
}

/// Encodes a record for the store, refusing one over the size every backend accepts.
fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, Rejection> {
    let bytes = replication::codec::encode(RECORD_FORMAT, value)
        .map_err(|e| Rejection::new(RejectKind::Invalid, e.to_string()))?;
    if bytes.len() > VALUE_MAX_BYTES {
        return Err(Rejection::new(
            RejectKind::Invalid,
            format!(
                "record of {} bytes is over the limit of {VALUE_MAX_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

/// Decodes a stored record.
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    replication::codec::decode(RECORD_FORMAT, bytes).map_err(|e| StoreError::corrupt(key, e))
}

/// The store's record codec, for `State::load_row`.
pub struct Records;

impl RowCodec for Records {
    fn decode<T: DeserializeOwned>(&self, _key: &[u8], value: &[u8]) -> Result<T, String> {
        replication::codec::decode(RECORD_FORMAT, value).map_err(|e| e.to_string())
    }
}

/// Rows written by one `apply`, readable back before they commit (a later entry of the same
/// batch must see an order an earlier one stored).
struct Batch<'s> {
    store: &'s dyn Store,
    ops: Vec<Op>,
    /// Keys of kinds that are read back (orders, dedup records), as written in this batch.
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    /// Values read ahead in one snapshot, so a batch of orders costs one read transaction.
    prefetched: HashMap<Vec<u8>, Option<Vec<u8>>>,
}

fn read_back(key: &[u8]) -> bool {
    matches!(
        key.first(),
        Some(&keys::ORDER | &keys::DEDUP | &keys::DEDUP_BY_VERSION)
    )
}

impl Batch<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if read_back(&key) {
            self.overlay.insert(key.clone(), Some(value.clone()));
        }
        self.ops.push(Op::Put(key, value));
    }

    fn delete(&mut self, key: Vec<u8>) {
        if read_back(&key) {
            self.overlay.insert(key.clone(), None);
        }
        self.ops.push(Op::Delete(key));
    }

    fn read(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.overlay.get(key).or_else(|| self.prefetched.get(key)) {
            return Ok(v.clone());
        }
        self.store.get(key)
    }

    fn read_decoded<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.read(key)?.map(|v| decode(key, &v)).transpose()
    }
}

/// The rows and inventory changes of one command, all encoded before any of them reaches the
/// batch or memory: a command that cannot be stored whole leaves nothing behind.
#[derive(Default)]
struct Staged {
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    inventories: Vec<(SkuId, Inventory)>,
}

impl Staged {
    fn row<T: Serialize>(&mut self, key: Vec<u8>, value: &T) -> Result<(), Rejection> {
        self.rows.push((key, encode(value)?));
        Ok(())
    }

    /// Stages changed inventories, in SKU order so that every replica writes the same rows.
    fn inventories(&mut self, touched: HashMap<&SkuId, Inventory>) -> Result<(), Rejection> {
        let mut touched: Vec<(&SkuId, Inventory)> = touched.into_iter().collect();
        touched.sort_by(|a, b| a.0.cmp(b.0));
        for (sku, inv) in touched {
            debug_assert!(inv.holds_i2());
            self.row(keys::inventory(sku), &inv)?;
            self.inventories.push((sku.clone(), inv));
        }
        Ok(())
    }

    /// Stages an order under its id.
    fn order(&mut self, order: &Order) -> Result<(), Rejection> {
        self.row(keys::order(&order.order_id), order)
    }
}

fn reject<T>(kind: RejectKind, detail: impl Into<String>) -> Result<T, Rejection> {
    Err(Rejection::new(kind, detail))
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

/// The outcome of executing one command: `Err` is a deterministic refusal.
type Exec = Result<Outcome, Rejection>;

impl StateMachine {
    /// Opens the machine over `store`, loading the commerce state into memory.
    pub fn open(store: Arc<dyn Store>) -> Result<Self, MachineError> {
        let mut m = StateMachine {
            store,
            state: State::new(),
            applied: 0,
            poisoned: false,
            dedup_retain_versions: DEDUP_RETAIN_VERSIONS,
            feed: None,
        };
        m.reload()?;
        Ok(m)
    }

    /// Overrides `DEDUP_RETAIN_VERSIONS`. Every replica of a log must use the same value; only
    /// tests, which need to see pruning happen, change it.
    /// Publishes to `feed` the mirrored rows (`keys::MIRRORED`) each applied version changes,
    /// once they are committed, in version order. Published while the machine is held, so a
    /// snapshot read of the store is never newer than what the feed has published.
    pub fn set_feed(&mut self, feed: Arc<Feed>) {
        self.feed = Some(feed);
    }

    pub fn with_dedup_retain_versions(mut self, versions: u64) -> Self {
        self.dedup_retain_versions = versions.max(1);
        self
    }

    /// The version of the state: the last applied log index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn reload(&mut self) -> Result<(), MachineError> {
        self.poisoned = true;
        let store = Arc::clone(&self.store);
        let mut state = State::new();
        let applied = store.applied()?;
        for tag in keys::MIRRORED {
            let (lo, hi) = keys::tag_range(tag);
            store.for_each(&lo, &hi, LOAD_PAGE_ROWS, &mut |k, v| {
                state
                    .load_row(k, Some(v), &Records)
                    .map_err(|e| StoreError::corrupt(k, e))
            })?;
        }
        self.state = state;
        self.applied = applied;
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
        let prefetch = prefetch_keys(fresh, self.dedup_retain_versions);
        let values = store.get_many(&prefetch)?;
        let mut batch = Batch {
            store: &*store,
            ops: Vec::new(),
            overlay: HashMap::new(),
            prefetched: prefetch.into_iter().zip(values).collect(),
        };
        let mut outcomes = Vec::with_capacity(fresh.len());
        // Where each entry's rows end in `batch.ops`.
        let mut ends = Vec::with_capacity(fresh.len());
        for e in fresh {
            outcomes.push(match &e.proposal {
                Some(p) => self.apply_entry(&mut batch, e.index, p)?,
                None => Outcome::Applied { version: e.index },
            });
            self.prune_dedup(&mut batch, e.index)?;
            ends.push((e.index, batch.ops.len()));
        }
        if let Some(meta) = meta {
            batch.put(keys::META_REPLICATION.to_vec(), meta);
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
        let format = rows
            .iter()
            .find(|(k, _)| k.as_slice() == keys::META_FORMAT)
            .map(|(_, v)| v.clone());
        if format.as_deref() != Some(&[RECORD_FORMAT][..]) {
            return Err(StoreError::Format {
                found: format!("{format:?} in a snapshot"),
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

    fn apply_entry(
        &mut self,
        batch: &mut Batch<'_>,
        index: u64,
        p: &Proposal,
    ) -> Result<Outcome, StoreError> {
        let dkey = keys::dedup(&p.command_id);
        let outcome = match batch.read_decoded::<DedupRecord>(&dkey)? {
            Some(rec) if rec.fingerprint == p.fingerprint => match rec.outcome {
                // A replayed order says so, as its first answer did not.
                Outcome::Order { order, .. } => Outcome::Order {
                    order,
                    duplicate: true,
                },
                o => o,
            },
            Some(rec) => Outcome::Rejected(Rejection::new(
                RejectKind::IdempotencyKeyReused,
                format!(
                    "this Idempotency-Key was used at version {} for a different request",
                    rec.version
                ),
            )),
            None => {
                let outcome = self
                    .execute(batch, index, p)?
                    .unwrap_or_else(Outcome::Rejected);
                // Refusals change nothing and leave no record: the same request may be sent again
                // once the state allows it.
                let keep =
                    p.command.keeps_dedup_record() && !matches!(outcome, Outcome::Rejected(_));
                if keep {
                    let rec = DedupRecord {
                        version: index,
                        fingerprint: p.fingerprint,
                        outcome: outcome.clone(),
                    };
                    if let Ok(bytes) = encode(&rec) {
                        batch.put(dkey, bytes);
                        batch.put(keys::dedup_by_version(index), p.command_id.to_vec());
                    }
                }
                outcome
            }
        };
        Ok(outcome)
    }

    /// Forgets the dedup record of the command `DEDUP_RETAIN_VERSIONS` before `index`. Called
    /// for every entry, so the table stays bounded at that many records.
    fn prune_dedup(&self, batch: &mut Batch<'_>, index: u64) -> Result<(), StoreError> {
        if let Some(old) = index.checked_sub(self.dedup_retain_versions) {
            let vkey = keys::dedup_by_version(old);
            if let Some(id) = batch.read(&vkey)?
                && let Ok(id) = <[u8; 16]>::try_from(id.as_slice())
            {
                batch.delete(keys::dedup(&id));
                batch.delete(vkey);
            }
        }
        Ok(())
    }

    /// Executes one command at `version`. `Ok(Err(_))` is a refusal; `Err(_)` a store failure.
    fn execute(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        p: &Proposal,
    ) -> Result<Exec, StoreError> {
        Ok(match &p.command {
            Command::UpsertProduct(product) => self.upsert_product(batch, version, product),
            Command::UpsertMarket(m) => self.upsert_market(batch, version, m),
            Command::UpsertPriceList(l) => self.upsert_price_list(batch, version, l),
            Command::UpsertPromotion(promo) => self.upsert_promotion(batch, version, promo),
            Command::DeletePromotion(id) => self.delete_promotion(batch, version, id),
            Command::PriceBatch(changes) => self.price_batch(batch, version, changes),
            Command::StockBatch(changes) => self.stock_batch(batch, version, changes),
            Command::Grant {
                edge,
                sku,
                demand,
                policy,
            } => self.grant(batch, version, edge, sku, *demand, policy),
            Command::ReturnGrant { edge, sku, units } => {
                self.return_grant(batch, version, edge, sku, *units)
            }
            Command::CommitOrders { edge, orders } => {
                self.commit_orders(batch, version, edge, orders)?
            }
            Command::CentralOrder {
                order_id,
                idempotency_key,
                request,
                region,
                edge,
            } => {
                let origin = Origin {
                    region: region.clone(),
                    edge: edge.clone(),
                };
                self.central_order(
                    batch,
                    version,
                    p.at_ms,
                    order_id,
                    idempotency_key.as_deref(),
                    request,
                    origin,
                )?
            }
        })
    }

    fn known_sku(&self, sku: &SkuId) -> Result<(), Rejection> {
        match self.state.owner(sku) {
            Some(_) => Ok(()),
            None => reject(RejectKind::UnknownSku, format!("unknown sku {sku}")),
        }
    }

    fn known_market(&self, market: Option<&MarketId>) -> Result<(), Rejection> {
        match market {
            Some(m) if self.state.book.market(m).is_none() => {
                reject(RejectKind::UnknownMarket, format!("unknown market {m}"))
            }
            _ => Ok(()),
        }
    }

    fn upsert_product(&mut self, batch: &mut Batch<'_>, version: u64, product: &Product) -> Exec {
        product
            .validate()
            .map_err(|e| Rejection::new(RejectKind::Invalid, e.to_string()))?;
        for s in &product.skus {
            if let Some(owner) = self.state.owner(&s.sku)
                && owner != &product.id
            {
                return reject(
                    RejectKind::Conflict,
                    format!("sku {} already belongs to product {owner}", s.sku),
                );
            }
        }
        let bytes = encode(product)?;
        batch.put(keys::product(&product.id), bytes);
        self.state.upsert_product(product.clone());
        Ok(Outcome::Applied { version })
    }

    fn upsert_market(&mut self, batch: &mut Batch<'_>, version: u64, market: &Market) -> Exec {
        market
            .validate()
            .map_err(|e| Rejection::new(RejectKind::Invalid, e))?;
        batch.put(keys::market(&market.id), encode(market)?);
        self.state.book.upsert_market(market.clone());
        Ok(Outcome::Applied { version })
    }

    fn upsert_price_list(&mut self, batch: &mut Batch<'_>, version: u64, list: &PriceList) -> Exec {
        list.validate()
            .map_err(|e| Rejection::new(RejectKind::Invalid, e))?;
        self.known_market(list.market.as_ref())?;
        if let Some(old) = self.state.book.list(&list.id)
            && old.currency != list.currency
        {
            return reject(
                RejectKind::Conflict,
                format!(
                    "price list {} is in {}; a list never changes currency",
                    list.id, old.currency
                ),
            );
        }
        batch.put(keys::price_list(&list.id), encode(list)?);
        self.state.book.upsert_list(list.clone());
        Ok(Outcome::Applied { version })
    }

    fn upsert_promotion(&mut self, batch: &mut Batch<'_>, version: u64, promo: &Promotion) -> Exec {
        promo
            .validate()
            .map_err(|e| Rejection::new(RejectKind::Invalid, e))?;
        self.known_market(promo.market.as_ref())?;
        if let PromotionTarget::Sku(sku) = &promo.target {
            self.known_sku(sku)?;
        }
        let mut promo = promo.clone();
        promo.version = version;
        batch.put(keys::promotion(&promo.id), encode(&promo)?);
        self.state.book.upsert_promotion(promo);
        Ok(Outcome::Applied { version })
    }

    fn delete_promotion(&mut self, batch: &mut Batch<'_>, version: u64, id: &PromotionId) -> Exec {
        if self.state.book.remove_promotion(id).is_none() {
            return reject(
                RejectKind::UnknownPromotion,
                format!("unknown promotion {id}"),
            );
        }
        batch.delete(keys::promotion(id));
        Ok(Outcome::Applied { version })
    }

    fn price_batch(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        changes: &[commerce::command::PriceChange],
    ) -> Exec {
        if changes.is_empty() || changes.len() > PRICE_BATCH_MAX {
            return reject(
                RejectKind::Invalid,
                format!("a price batch has 1 to {PRICE_BATCH_MAX} changes"),
            );
        }
        // Validate and encode everything first: the batch is applied whole or not at all.
        let mut new_lists: BTreeMap<PriceListId, PriceList> = BTreeMap::new();
        // The implicit list of each (currency, group) met so far, resolved once per batch.
        let mut implicit_ids: HashMap<(Currency, Option<&CustomerGroup>), PriceListId> =
            HashMap::new();
        let mut seen: HashSet<(&SkuId, PriceListId)> = HashSet::with_capacity(changes.len());
        let mut rows = Vec::with_capacity(changes.len());
        let mut entries = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            let at = |detail: String| format!("changes[{i}] (sku {}): {detail}", c.sku);
            self.known_sku(&c.sku)?;
            let list = match &c.list {
                Some(id) => {
                    let list = self.state.book.list(id).ok_or_else(|| {
                        Rejection::new(
                            RejectKind::UnknownPriceList,
                            at(format!("unknown price list {id}")),
                        )
                    })?;
                    if list.currency != c.currency {
                        return reject(
                            RejectKind::Conflict,
                            at(format!(
                                "price list {id} is in {}, not {}",
                                list.currency, c.currency
                            )),
                        );
                    }
                    if c.customer_group.is_some() && c.customer_group != list.customer_group {
                        return reject(
                            RejectKind::Conflict,
                            at(format!("price list {id} is for another customer group")),
                        );
                    }
                    id.clone()
                }
                None => match implicit_ids.get(&(c.currency, c.customer_group.as_ref())) {
                    Some(id) => id.clone(),
                    None => {
                        let implicit = PriceList::implicit(c.currency, c.customer_group.as_ref());
                        match self.state.book.list(&implicit.id) {
                            Some(existing) if existing != &implicit => {
                                return reject(
                                    RejectKind::Conflict,
                                    at(format!(
                                        "price list {} exists with other settings; name it with \"list\"",
                                        implicit.id
                                    )),
                                );
                            }
                            Some(_) => {}
                            None => {
                                new_lists.insert(implicit.id.clone(), implicit.clone());
                            }
                        }
                        implicit_ids
                            .insert((c.currency, c.customer_group.as_ref()), implicit.id.clone());
                        implicit.id
                    }
                },
            };
            let entry = PriceEntry {
                list: list.clone(),
                amount_minor: c.amount_minor,
                tiers: c.tiers.clone(),
                version,
            };
            entry
                .validate()
                .map_err(|e| Rejection::new(RejectKind::Invalid, at(e)))?;
            rows.push((keys::price(&c.sku, &list), encode(&entry)?));
            if !seen.insert((&c.sku, list)) {
                return reject(
                    RejectKind::Invalid,
                    at(format!("sku {} appears twice for one list", c.sku)),
                );
            }
            entries.push((c.sku.clone(), entry));
        }
        for (id, list) in new_lists {
            batch.put(keys::price_list(&id), encode(&list)?);
            self.state.book.upsert_list(list);
        }
        for (k, v) in rows {
            batch.put(k, v);
        }
        for (sku, entry) in entries {
            self.state.book.set_price(sku, entry);
        }
        Ok(Outcome::Applied { version })
    }

    fn stock_batch(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        changes: &[commerce::command::StockChange],
    ) -> Exec {
        if changes.is_empty() || changes.len() > STOCK_BATCH_MAX {
            return reject(
                RejectKind::Invalid,
                format!("a stock batch has 1 to {STOCK_BATCH_MAX} changes"),
            );
        }
        let mut touched: HashMap<&SkuId, Inventory> = HashMap::new();
        for (i, c) in changes.iter().enumerate() {
            self.known_sku(&c.sku)?;
            let inv = touched
                .entry(&c.sku)
                .or_insert_with(|| self.state.inventory(&c.sku).cloned().unwrap_or_default());
            inv.apply_stock(c.op).map_err(|e| {
                let r = Rejection::from(e);
                Rejection::new(
                    r.kind,
                    format!("changes[{i}] (sku {}): {}", c.sku, r.detail),
                )
            })?;
        }
        self.write_inventories(batch, touched)?;
        Ok(Outcome::Applied { version })
    }

    /// Writes what a command staged into the batch and into memory.
    fn commit_staged(&mut self, batch: &mut Batch<'_>, staged: Staged) {
        for (k, v) in staged.rows {
            batch.put(k, v);
        }
        for (sku, inv) in staged.inventories {
            self.state.set_inventory(sku, inv);
        }
    }

    /// Stages and writes changed inventories (a command that changes nothing else).
    fn write_inventories(
        &mut self,
        batch: &mut Batch<'_>,
        touched: HashMap<&SkuId, Inventory>,
    ) -> Result<(), Rejection> {
        let mut staged = Staged::default();
        staged.inventories(touched)?;
        self.commit_staged(batch, staged);
        Ok(())
    }

    fn grant(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        edge: &EdgeId,
        sku: &SkuId,
        demand: Demand,
        policy: &GrantPolicy,
    ) -> Exec {
        self.known_sku(sku)?;
        if policy.max_share_bps > 10_000 || policy.max_units > STOCK_MAX || policy.horizon_ms == 0 {
            return reject(RejectKind::Invalid, "grant policy out of range");
        }
        let before = self.state.inventory(sku).cloned().unwrap_or_default();
        let mut inv = before.clone();
        let low_stock = inv.available() <= policy.low_stock_units;
        let size = grant_size(demand, inv.available(), policy);
        let units = inv.grant_or_recall(edge, size, low_stock);
        if inv != before {
            self.write_inventories(batch, HashMap::from([(sku, inv)]))?;
        }
        Ok(Outcome::Granted { version, units })
    }

    fn return_grant(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        edge: &EdgeId,
        sku: &SkuId,
        units: u64,
    ) -> Exec {
        let before = self.state.inventory(sku).cloned().unwrap_or_default();
        let mut inv = before.clone();
        let units = inv.return_grant(edge, units);
        if inv != before {
            self.write_inventories(batch, HashMap::from([(sku, inv)]))?;
        }
        Ok(Outcome::Returned { version, units })
    }

    /// The order already stored under `id`, if any.
    fn existing_order(&self, batch: &Batch<'_>, id: &OrderId) -> Result<Option<Order>, StoreError> {
        batch.read_decoded::<Order>(&keys::order(id))
    }

    fn commit_orders(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        edge: &EdgeId,
        orders: &[Order],
    ) -> Result<Exec, StoreError> {
        if orders.is_empty() || orders.len() > COMMIT_BATCH_MAX {
            return Ok(reject(
                RejectKind::Invalid,
                format!("a commit batch has 1 to {COMMIT_BATCH_MAX} orders"),
            ));
        }
        let mut staged = Staged::default();
        let mut touched: HashMap<&SkuId, Inventory> = HashMap::new();
        let mut results: Vec<OrderResult> = Vec::with_capacity(orders.len());
        // Orders decided by this command: a batch may repeat one.
        let mut here: HashMap<&OrderId, usize> = HashMap::new();
        let mut logged: Vec<OrderId> = Vec::with_capacity(orders.len());
        for o in orders {
            if let Some(&i) = here.get(&o.order_id) {
                let first = &results[i];
                results.push(OrderResult {
                    duplicate: true,
                    ..first.clone()
                });
                continue;
            }
            if let Some(prev) = self.existing_order(batch, &o.order_id)? {
                // Decided before: a forwarder retry, or the same key through another edge.
                results.push(OrderResult {
                    order_id: prev.order_id,
                    status: prev.status,
                    version: prev.commit_version.unwrap_or(version),
                    duplicate: true,
                    reject_reason: prev.reject_reason,
                });
                continue;
            }
            let decided = self.decide_edge_order(&touched, edge, o);
            let mut order = o.clone();
            order.commit_version = Some(version);
            order.reject_reason = None;
            let units = match decided {
                Ok(units) => {
                    order.status = OrderStatus::Committed;
                    match staged.order(&order) {
                        Ok(()) => Some(units),
                        Err(r) => {
                            order = o.rejected_stub(&r.detail, version);
                            None
                        }
                    }
                }
                Err(reason) => {
                    order = o.rejected_stub(&reason, version);
                    None
                }
            };
            match units {
                Some(units) => touched.extend(units),
                None => {
                    let reason = order.reject_reason.clone().unwrap_or_default();
                    tracing::warn!(order = %o.order_id, %edge, %reason, "edge order rejected at commit");
                    if let Err(r) = staged.order(&order) {
                        return Ok(Err(r));
                    }
                }
            }
            here.insert(&o.order_id, results.len());
            logged.push(order.order_id.clone());
            results.push(OrderResult {
                order_id: order.order_id,
                status: order.status,
                version,
                duplicate: false,
                reject_reason: order.reject_reason,
            });
        }
        if let Err(r) = staged.inventories(touched) {
            return Ok(Err(r));
        }
        if !logged.is_empty()
            && let Err(r) = staged.row(keys::commit_log(version), &logged)
        {
            return Ok(Err(r));
        }
        self.commit_staged(batch, staged);
        Ok(Ok(Outcome::Orders { version, results }))
    }

    /// Checks an edge order and works out its units from the edge's grants (on top of what
    /// this batch already took, in `touched`), all lines or none. Returns the changed
    /// inventories, or the reason the order is rejected.
    fn decide_edge_order<'o>(
        &self,
        touched: &HashMap<&'o SkuId, Inventory>,
        edge: &EdgeId,
        o: &'o Order,
    ) -> Result<Vec<(&'o SkuId, Inventory)>, String> {
        if o.origin.edge.as_ref() != Some(edge) {
            return Err(format!(
                "order names edge {:?}, batch came from {edge}",
                o.origin.edge
            ));
        }
        o.check_shape().map_err(|e| e.to_string())?;
        let mut staged: Vec<(&SkuId, Inventory)> = Vec::with_capacity(o.lines.len());
        for (sku, qty) in o.units() {
            let mut inv = touched
                .get(sku)
                .cloned()
                .or_else(|| self.state.inventory(sku).cloned())
                .unwrap_or_default();
            inv.commit_from_grant(edge, u64::from(qty))
                .map_err(|e| format!("sku {sku}: {e}"))?;
            staged.push((sku, inv));
        }
        Ok(staged)
    }

    #[allow(clippy::too_many_arguments)]
    fn central_order(
        &mut self,
        batch: &mut Batch<'_>,
        version: u64,
        at_ms: i64,
        order_id: &OrderId,
        key: Option<&str>,
        request: &OrderRequest,
        origin: Origin,
    ) -> Result<Exec, StoreError> {
        if let Some(k) = key {
            if let Err(e) = check_idempotency_key(k) {
                return Ok(reject(RejectKind::Invalid, e));
            }
            if &order_id_for(&request.customer_id, k) != order_id {
                return Ok(reject(
                    RejectKind::Invalid,
                    "the order id is not the one its Idempotency-Key names",
                ));
            }
        }
        if let Some(prev) = self.existing_order(batch, order_id)? {
            if !prev.is_retry_of(request) {
                return Ok(reject(
                    RejectKind::IdempotencyKeyReused,
                    format!(
                        "Idempotency-Key already used by order {} for a different request",
                        prev.order_id
                    ),
                ));
            }
            return Ok(Ok(Outcome::Order {
                order: Box::new(prev),
                duplicate: true,
            }));
        }
        let state = &self.state;
        let priced = match price_order(request, |s| state.sku_facts(s), &state.book, at_ms) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.into())),
        };
        let mut touched: HashMap<&SkuId, Inventory> = HashMap::new();
        for l in &request.lines {
            let mut inv = self.state.inventory(&l.sku).cloned().unwrap_or_default();
            if let Err(e) = inv.commit_central(u64::from(l.qty)) {
                let r = Rejection::from(e);
                return Ok(reject(r.kind, format!("sku {}: {}", l.sku, r.detail)));
            }
            touched.insert(&l.sku, inv);
        }
        let mut order = Order::accepted(
            order_id.clone(),
            key.map(str::to_owned),
            request.clone(),
            priced,
            origin,
            at_ms,
        );
        order.status = OrderStatus::Committed;
        order.commit_version = Some(version);
        let mut staged = Staged::default();
        let staging = staged
            .order(&order)
            .and_then(|()| staged.inventories(touched))
            .and_then(|()| staged.row(keys::commit_log(version), &std::slice::from_ref(order_id)));
        if let Err(r) = staging {
            return Ok(Err(r));
        }
        self.commit_staged(batch, staged);
        Ok(Ok(Outcome::Order {
            order: Box::new(order),
            duplicate: false,
        }))
    }
}

/// Keys a batch will read, fetched in one snapshot up front.
fn prefetch_keys(entries: &[LogEntry], retain: u64) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for e in entries {
        if let Some(old) = e.index.checked_sub(retain) {
            out.push(keys::dedup_by_version(old));
        }
        let Some(p) = &e.proposal else { continue };
        out.push(keys::dedup(&p.command_id));
        match &p.command {
            Command::CommitOrders { orders, .. } => {
                out.extend(
                    orders
                        .iter()
                        .take(COMMIT_BATCH_MAX)
                        .map(|o| keys::order(&o.order_id)),
                );
            }
            Command::CentralOrder { order_id, .. } => out.push(keys::order(order_id)),
            _ => {}
        }
    }
    out
}

/// Reads one order from the store.
pub fn read_order(store: &dyn Store, id: &OrderId) -> Result<Option<Order>, StoreError> {
    let key = keys::order(id);
    store.get(&key)?.map(|v| decode(&key, &v)).transpose()
}

/// A position in commit order: the version an order was decided at and its place there.
pub type CommitCursor = (u64, u32);

/// Commit-log rows read per page while listing orders.
const LOG_PAGE_ROWS: usize = 64;

/// Up to `limit` decided orders in commit order after `after`, with the cursor of the last one.
pub fn orders_after(
    store: &dyn Store,
    after: Option<CommitCursor>,
    limit: usize,
) -> Result<(Vec<Order>, Option<CommitCursor>), StoreError> {
    let mut from = keys::commit_log(after.map_or(0, |(v, _)| v));
    let end = [keys::COMMIT_LOG + 1];
    let mut picked: Vec<(CommitCursor, Vec<u8>)> = Vec::with_capacity(limit);
    'pages: loop {
        let rows = store.scan(&from, &end, LOG_PAGE_ROWS)?;
        for (k, v) in &rows {
            let version =
                keys::parse_commit_log(k).ok_or_else(|| StoreError::corrupt(k, "bad log key"))?;
            let ids: Vec<OrderId> = decode(k, v)?;
            for (seq, id) in ids.iter().enumerate() {
                let at = (version, seq as u32);
                if after.is_some_and(|a| at <= a) {
                    continue;
                }
                picked.push((at, keys::order(id)));
                if picked.len() == limit {
                    break 'pages;
                }
            }
        }
        match rows.last() {
            Some((k, _)) if rows.len() == LOG_PAGE_ROWS => {
                from = k.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    let order_keys: Vec<Vec<u8>> = picked.iter().map(|(_, k)| k.clone()).collect();
    let mut orders = Vec::with_capacity(picked.len());
    for (k, v) in order_keys.iter().zip(store.get_many(&order_keys)?) {
        let v = v.ok_or_else(|| StoreError::corrupt(k, "commit log names a missing order"))?;
        orders.push(decode(k, &v)?);
    }
    Ok((orders, picked.last().map(|(at, _)| *at)))
}
