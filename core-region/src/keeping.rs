//! Keeping (`sealing::shred`), at each core of a home region: what makes an erasure destroy a
//! key rather than only overwrite a row.
//!
//! - **Keep**: the addresses sealed for this region at intake (to its region keys, which open
//!   every customer's) are opened and sealed again under the keeping key of their customer's
//!   epoch and their order's period, and the copies proposed to the log
//!   (`Command::KeepAddresses`), in commit order, a batch at a time. Every region then stores
//!   the kept copy, in its store and its snapshots.
//! - **Destroy**: when an erasure ends a customer's epoch (an `X` row, `Record::EpochEnded`),
//!   their orders still kept under it (accepted after the erasure, kept before it applied) are
//!   kept again under the new epoch, and then the old epoch's key is punctured out of the
//!   keeping key file: every copy kept under it, in any region's store, log or snapshot, no
//!   longer opens anywhere.
//! - **Retire**: with a retention time, the keys of the periods past it are destroyed.
//! - **Compact**: once the newest tree of keeping keys holds more than `tree_nodes_max` nodes
//!   (erasures make it grow), a new tree is begun, every address kept in an older one is kept
//!   again in it (a sweep of the whole store, a few batches a tick), and once a sweep finds
//!   none left the older trees are dropped: the file is as small as the erasures since.
//! - **Rotate and retire region keys**: a region key replaced by a newer one is destroyed once
//!   the newer one is older than the grace, nothing sealed to it has been read for as long, the
//!   passes have kept everything they read, and a sweep of the whole store finds no order that
//!   is not erased still sealed to it at intake: what intake sealed to it (edge outboxes, every
//!   region's Raft log) then opens nowhere. With `intake_key_rotate_ms`, the core makes the new
//!   key itself. An order in an outbox longer than the grace loses its address.
//!
//! Nothing here is replicated but through the log: each home region keeps its own file, and
//! punctures the same leaves, from the same rows.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use commerce::command::{Command, ERASE_BATCH_MAX, Outcome};
use commerce::order::{Order, Personal};
use commerce::personal::{Erasure, KeptAddress};
use commerce::{CustomerId, OrderId};
use tokio::sync::RwLock;

use sealing::keys::{FileKeys, KeyId};
use sealing::shred::{Ended, KeepingKeys};

use crate::machine::StateMachine;
use crate::reads::{CommitCursor, customer_orders, ended_epochs, orders_after, read_order};
use crate::store::Store;
use crate::writes::Writes;

/// How often the keeper looks for work.
const EVERY: Duration = Duration::from_millis(500);
/// Batches one pass proposes at most, so that a backlog goes a few batches a tick.
const BATCHES_PER_PASS: usize = 10;
/// Orders passed over (their customer's epoch moved on between reading and applying), kept to
/// try again, at most.
const RETRY_MAX: usize = 10_000;

/// What a keeper needs: the region's writes, store, state and keys, and its settings.
#[derive(Clone)]
pub struct Keeper {
    pub writes: Writes,
    pub store: Arc<dyn Store>,
    pub machine: Arc<RwLock<StateMachine>>,
    pub personal: Arc<sealing::PersonalData>,
    pub retention: Option<Duration>,
    /// `intake_key_rotate_ms`.
    pub rotate: Option<Duration>,
    /// `intake_key_grace_ms`.
    pub grace: Duration,
    /// `keeping_tree_nodes_max`.
    pub tree_nodes_max: usize,
    pub timeout: Duration,
}

/// Where keeping stands.
#[derive(Default)]
struct Progress {
    cursor: Option<CommitCursor>,
    retry: BTreeSet<OrderId>,
    /// Whether the last pass kept everything read, up to the end of the commit order.
    caught_up: bool,
    /// When an order sealed at intake to each region key was last read (this process's clock).
    seen: HashMap<KeyId, i64>,
    /// When each region key was first found in the file, for lines that do not say when it
    /// was made.
    found: HashMap<KeyId, i64>,
    /// When the store was last swept for orders sealed to keys due to be retired.
    swept: Option<std::time::Instant>,
    /// Where the sweep that keeps again what older trees keep stands, while there are some.
    compaction: Option<Compaction>,
    /// The machine's `epochs_ended` when the ended epochs were last read and none was left
    /// due: until it changes, there is nothing to read them again for.
    ended_done: Option<u64>,
}

/// A sweep of the store for addresses kept in trees older than the newest.
#[derive(Default)]
struct Compaction {
    cursor: Option<CommitCursor>,
    /// Whether an order of this sweep was passed over (its customer's epoch moved on): the
    /// next sweep must find it kept.
    passed: bool,
}

impl Keeper {
    /// Runs the keeper on the current runtime, where this region has keeping keys and keeps
    /// (`[personal_data] keeping`).
    pub fn spawn(self, keeping: bool) {
        if self.personal.shred().is_none() {
            return;
        }
        if !keeping {
            tracing::warn!(
                "keeping is off ([personal_data] keeping = false): addresses stay sealed to the region keys, which are not retired, and an erasure destroys no key"
            );
            return;
        }
        tokio::spawn(async move {
            let mut progress = Progress::default();
            let mut tick = tokio::time::interval(EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.retire() {
                    tracing::warn!(error = %e, "keeping: periods past retention not retired; the next tick tries again");
                }
                if let Err(e) = self.destroy_ended(&mut progress).await {
                    tracing::warn!(error = %e, "keeping: an ended epoch's key not destroyed yet; the next tick goes on");
                }
                progress.caught_up = false;
                if let Err(e) = self.keep_pass(&mut progress).await {
                    tracing::warn!(error = %e, "keeping: a pass stopped; the next tick goes on");
                }
                if let Err(e) = self.region_keys(&mut progress).await {
                    tracing::warn!(error = %e, "keeping: region keys not rotated or retired; the next tick tries again");
                }
                if let Err(e) = self.compact(&mut progress).await {
                    tracing::warn!(error = %e, "keeping: compaction stopped; the next tick goes on");
                }
            }
        });
    }

    fn shred(&self) -> &dyn KeepingKeys {
        &**self
            .personal
            .shred()
            .expect("spawned only with keeping keys")
    }

    fn retire(&self) -> Result<(), String> {
        let Some(retention) = self.retention else {
            return Ok(());
        };
        let before = util::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(0);
        let retired = self
            .shred()
            .retire_before(before)
            .map_err(|e| e.to_string())?;
        if retired > 0 {
            tracing::info!(
                periods = retired,
                "keeping: keys of periods past retention destroyed"
            );
        }
        Ok(())
    }

    /// Each customer's epoch, as this region has applied it.
    async fn epochs<'a>(
        &self,
        customers: impl Iterator<Item = &'a CustomerId>,
    ) -> HashMap<CustomerId, i64> {
        let machine = self.machine.read().await;
        customers
            .map(|c| (c.clone(), Erasure::epoch(machine.state().erasure(c))))
            .collect()
    }

    /// The kept copies of `orders` that this region keeps and has not kept at their
    /// customer's epoch yet.
    async fn kept(&self, orders: Vec<Order>) -> Result<Vec<KeptAddress>, String> {
        let epochs = self.epochs(orders.iter().map(|o| &o.customer_id)).await;
        let personal = Arc::clone(&self.personal);
        tokio::task::spawn_blocking(move || {
            orders
                .iter()
                .filter_map(|o| {
                    let Personal::Sealed(s) = &o.ship_to.personal else {
                        return None;
                    };
                    let epoch = epochs[&o.customer_id];
                    match personal.keep(&o.customer_id, o.accepted_at_ms, epoch, s) {
                        Ok(kept) => kept.map(|personal| KeptAddress {
                            order_id: o.order_id.clone(),
                            epoch,
                            personal,
                        }),
                        Err(sealing::personal::UnsealError::Kept(
                            sealing::shred::KeptError::Gone(gone),
                        )) => {
                            // Past retention (erased by it), or erased: nothing to keep.
                            tracing::debug!(order = %o.order_id, %gone, "keeping: not kept");
                            None
                        }
                        Err(e) => {
                            tracing::warn!(order = %o.order_id, error = %e, "keeping: an address of this region did not open; left as it is");
                            None
                        }
                    }
                })
                .collect()
        })
        .await
        .map_err(|e| e.to_string())
    }

    /// Proposes `kept`, and gives back the ids of those the log passed over.
    async fn propose(&self, kept: Vec<KeptAddress>) -> Result<Vec<OrderId>, String> {
        if kept.is_empty() {
            return Ok(Vec::new());
        }
        let n = kept.len();
        let wanted: Vec<(OrderId, Vec<u8>)> = kept
            .iter()
            .map(|k| (k.order_id.clone(), k.personal.sealed.clone()))
            .collect();
        let command = Command::KeepAddresses { kept };
        let version = match self
            .writes
            .submit("keeping", None, command, None, self.timeout)
            .await
            .map_err(|e| e.to_string())?
        {
            Outcome::Applied { version } => version,
            other => return Err(format!("answered {}", other.kind())),
        };
        tracing::debug!(orders = n, version, "keeping: addresses kept");
        self.applied_here(version).await?;
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut passed = Vec::new();
            for (id, sealed) in wanted {
                let now = read_order(&*store, &id).map_err(|e| e.to_string())?;
                if let Some(Order {
                    ship_to:
                        commerce::order::ShipTo {
                            personal: Personal::Sealed(s),
                            ..
                        },
                    ..
                }) = now
                    && s.sealed != sealed
                {
                    passed.push(id);
                }
            }
            Ok(passed)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Waits until this region has applied `version`, at most the timeout.
    async fn applied_here(&self, version: u64) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        while self.machine.read().await.applied() < version {
            if tokio::time::Instant::now() >= deadline {
                return Err("this region has not applied its own keeping yet".into());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Keeps what was committed since the cursor, and what was passed over before.
    async fn keep_pass(&self, progress: &mut Progress) -> Result<(), String> {
        if !progress.retry.is_empty() {
            // Left in the set until they are tried: an error keeps them for the next pass.
            let ids: Vec<OrderId> = progress.retry.iter().cloned().collect();
            let store = Arc::clone(&self.store);
            let orders = tokio::task::spawn_blocking(move || {
                ids.iter()
                    .filter_map(|id| read_order(&*store, id).transpose())
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let kept = self.kept(orders).await?;
            let passed = self.propose(kept).await?;
            // Only those passed over again stay; one that cannot be kept (its key gone, or not
            // opening) is found again by the sweep before its region key is retired.
            progress.retry = passed.into_iter().collect();
        }
        for _ in 0..BATCHES_PER_PASS {
            let (store, after) = (Arc::clone(&self.store), progress.cursor);
            let (page, last) =
                tokio::task::spawn_blocking(move || orders_after(&*store, after, ERASE_BATCH_MAX))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            let full = page.len() == ERASE_BATCH_MAX;
            let now = util::clock::now_ms();
            for key in page.iter().filter_map(intake_key) {
                progress.seen.insert(key, now);
            }
            let kept = self.kept(page).await?;
            let passed = self.propose(kept).await?;
            let room = RETRY_MAX.saturating_sub(progress.retry.len());
            // Past the bound, the sweep before a region key is retired finds them again.
            progress.retry.extend(passed.into_iter().take(room));
            progress.cursor = last.or(progress.cursor);
            if !full {
                progress.caught_up = progress.retry.is_empty();
                break;
            }
        }
        Ok(())
    }

    /// Makes a new region key when the newest is older than `rotate`, and destroys each one
    /// replaced that no order read needs any more (the module's docs).
    async fn region_keys(&self, progress: &mut Progress) -> Result<(), String> {
        let (dir, region) = (self.personal.keys_dir(), self.personal.region());
        let keys = FileKeys::load(dir, region).map_err(|e| e.to_string())?;
        let now = util::clock::now_ms();
        let ids: Vec<KeyId> = keys.ids().into_iter().cloned().collect();
        for id in &ids {
            progress.found.entry(id.clone()).or_insert(now);
        }
        let made = |id: &KeyId| keys.made_ms(id).unwrap_or(progress.found[id]);
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        if let (Some(rotate), Some(newest)) = (self.rotate, ids.last())
            && now - made(newest) >= ms(rotate)
        {
            let id = sealing::keys::rotate(dir, region).map_err(|e| e.to_string())?;
            tracing::info!(key = %id, "keeping: a new region key made; data is sealed to it as nodes read public.keys");
        }
        if !progress.caught_up {
            return Ok(());
        }
        let grace = ms(self.grace);
        let mut retire: Vec<KeyId> = ids
            .windows(2)
            .filter(|w| now - made(&w[1]) >= grace)
            .filter(|w| progress.seen.get(&w[0]).is_none_or(|at| now - at >= grace))
            .map(|w| w[0].clone())
            .collect();
        let sweep_every = (self.grace / 2).min(Duration::from_secs(60));
        if retire.is_empty() || progress.swept.is_some_and(|t| t.elapsed() < sweep_every) {
            return Ok(());
        }
        // The store is the truth: a key any order still needs is not destroyed, whatever the
        // passes saw (an order passed over, or not kept), and the order is tried again.
        progress.swept = Some(std::time::Instant::now());
        let needed = self.sweep(retire.clone()).await?;
        if !needed.is_empty() {
            let keys: Vec<String> = needed.keys().map(ToString::to_string).collect();
            let orders: Vec<&OrderId> = needed.values().flatten().collect();
            tracing::warn!(
                ?keys,
                orders = orders.len(),
                "keeping: region keys not retired: orders still sealed to them at intake are not kept yet"
            );
            let room = RETRY_MAX.saturating_sub(progress.retry.len());
            progress
                .retry
                .extend(orders.into_iter().take(room).cloned());
            retire.retain(|k| !needed.contains_key(k));
        }
        if retire.is_empty() {
            return Ok(());
        }
        sealing::keys::retire(dir, region, &retire).map_err(|e| e.to_string())?;
        for id in &retire {
            progress.seen.remove(id);
        }
        // The opener is made again from the file, with no context of a retired key.
        self.personal.reload();
        tracing::info!(keys = ?retire.iter().map(ToString::to_string).collect::<Vec<_>>(), "keeping: region keys replaced long enough ago destroyed: what intake sealed to them opens nowhere");
        Ok(())
    }

    /// The orders of the whole store not erased and still sealed at intake to one of `keys`,
    /// by key (at most `RETRY_MAX` named each).
    async fn sweep(&self, keys: Vec<KeyId>) -> Result<HashMap<KeyId, Vec<OrderId>>, String> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut needed: HashMap<KeyId, Vec<OrderId>> = HashMap::new();
            let mut cursor = None;
            loop {
                let (page, last) =
                    orders_after(&*store, cursor, ERASE_BATCH_MAX).map_err(|e| e.to_string())?;
                for o in &page {
                    if let Some(key) = intake_key(o).filter(|k| keys.contains(k)) {
                        let ids = needed.entry(key).or_default();
                        if ids.len() < RETRY_MAX {
                            ids.push(o.order_id.clone());
                        }
                    }
                }
                if page.len() < ERASE_BATCH_MAX {
                    return Ok(needed);
                }
                cursor = last;
            }
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Destroys the key of every ended epoch this region still holds where something may be
    /// kept under it, once nothing of its customer that is not erased is kept under it: the
    /// epochs done, in one change of the file.
    async fn destroy_ended(&self, progress: &mut Progress) -> Result<(), String> {
        let changes = self.machine.read().await.epochs_ended();
        if progress.ended_done == Some(changes) {
            return Ok(());
        }
        let (store, personal) = (Arc::clone(&self.store), Arc::clone(&self.personal));
        let (due, _) = tokio::task::spawn_blocking(move || {
            ended(
                &*store,
                &**personal.shred().expect("spawned only with keeping keys"),
            )
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        let mut done = Vec::with_capacity(due.len());
        let mut failed = None;
        for ended in due {
            let customer = CustomerId::new(ended.customer.clone()).map_err(|e| e.to_string())?;
            match self.keep_away(&customer, ended.epoch).await {
                Ok(()) => done.push(ended),
                Err(e) => failed = Some(e),
            }
        }
        let destroyed = self.shred().puncture(&done).map_err(|e| e.to_string())?;
        if destroyed > 0 {
            tracing::info!(epochs = destroyed, "keeping: erased epochs' keys destroyed");
        }
        match failed {
            Some(e) => Err(e),
            None => {
                progress.ended_done = Some(changes);
                Ok(())
            }
        }
    }

    /// Keeps again under their new epoch `customer`'s orders kept under `epoch` and not
    /// erased, so that `epoch`'s key can be destroyed.
    async fn keep_away(&self, customer: &CustomerId, epoch: i64) -> Result<(), String> {
        let mut after = None;
        loop {
            let (store, c, a) = (Arc::clone(&self.store), customer.clone(), after.clone());
            let page = tokio::task::spawn_blocking(move || {
                customer_orders(&*store, &c, a.as_ref(), ERASE_BATCH_MAX)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let full = page.len() == ERASE_BATCH_MAX;
            after = page.last().map(|o| commerce::command::OrderCursor {
                accepted_at_ms: o.accepted_at_ms,
                order_id: o.order_id.clone(),
            });
            let under: Vec<Order> = page
                .into_iter()
                .filter(|o| kept_at(o).is_some_and(|k| k.epoch == epoch))
                .collect();
            if !under.is_empty() {
                let kept = self.kept(under).await?;
                let passed = self.propose(kept).await?;
                if !passed.is_empty() {
                    return Err(format!(
                        "{} orders of a customer still kept under an ended epoch; trying again",
                        passed.len()
                    ));
                }
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// Begins a new tree when the newest has grown past `tree_nodes_max`; while older ones
    /// are held, sweeps the store to keep again in the newest what they keep, and drops them
    /// once a whole sweep found nothing left to keep again.
    async fn compact(&self, progress: &mut Progress) -> Result<(), String> {
        let trees = self.shred().trees();
        let newest = *trees.last().expect("a file holds a tree");
        if trees.len() == 1 {
            if newest.nodes <= self.tree_nodes_max || !progress.caught_up {
                return Ok(());
            }
            // Every epoch that ended by this version is destroyed in the older tree, and
            // nothing is kept under it from now on: the new tree need never destroy it.
            let since = self.machine.read().await.applied();
            let generation = self.shred().begin_tree(since).map_err(|e| e.to_string())?;
            tracing::info!(
                generation,
                nodes = newest.nodes,
                "keeping: a new tree of keeping keys begun; what older ones keep is kept again in it"
            );
            progress.compaction = Some(Compaction::default());
            return Ok(());
        }
        let sweep = progress.compaction.get_or_insert_with(Compaction::default);
        for _ in 0..BATCHES_PER_PASS {
            let (store, after) = (Arc::clone(&self.store), sweep.cursor);
            let (page, last) =
                tokio::task::spawn_blocking(move || orders_after(&*store, after, ERASE_BATCH_MAX))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())?;
            let full = page.len() == ERASE_BATCH_MAX;
            let older: Vec<Order> = page
                .into_iter()
                .filter(|o| kept_at(o).is_some_and(|k| k.generation < newest.generation))
                .collect();
            let kept = self.kept(older).await?;
            let passed = self.propose(kept).await?;
            sweep.passed |= !passed.is_empty();
            sweep.cursor = last.or(sweep.cursor);
            if full {
                continue;
            }
            if sweep.passed {
                progress.compaction = Some(Compaction::default());
                return Ok(());
            }
            // Whatever is left in older trees does not open (erased, or past retention).
            let dropped = self
                .shred()
                .drop_before(newest.generation)
                .map_err(|e| e.to_string())?;
            tracing::info!(
                trees = dropped,
                "keeping: older trees of keeping keys dropped; all they kept is kept in the newest"
            );
            progress.compaction = None;
            return Ok(());
        }
        Ok(())
    }
}

/// The ended epochs whose keys `shred` is still due to destroy, and how many it has destroyed.
pub(crate) fn ended(
    store: &dyn Store,
    shred: &dyn KeepingKeys,
) -> Result<(Vec<Ended>, u64), crate::store::StoreError> {
    let (mut due, mut destroyed) = (Vec::new(), 0);
    ended_epochs(store, &mut |customer, epoch, end| {
        let ended = Ended {
            customer: customer.to_owned(),
            epoch,
            version: end.version,
        };
        if shred.due(&ended) {
            due.push(ended);
        } else {
            destroyed += 1;
        }
    })?;
    Ok((due, destroyed))
}

/// How an order's address is sealed, if it is.
fn seal_of(o: &Order) -> Option<sealing::sealed::Seal> {
    let Personal::Sealed(s) = &o.ship_to.personal else {
        return None;
    };
    codec::decode(&s.sealed).ok()
}

/// The region key an order's address was sealed to at intake, if it is sealed so still.
fn intake_key(o: &Order) -> Option<KeyId> {
    match seal_of(o)? {
        sealing::sealed::Seal::Intake(sealed) => Some(sealed.key),
        sealing::sealed::Seal::Kept(_) => None,
    }
}

/// How an order's address is kept, if it is.
fn kept_at(o: &Order) -> Option<sealing::shred::Kept> {
    match seal_of(o)? {
        sealing::sealed::Seal::Kept(k) => Some(k),
        sealing::sealed::Seal::Intake(_) => None,
    }
}
