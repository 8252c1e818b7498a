//! The FoundationDB backend (cargo feature `foundationdb`): each region's core keeps its rows
//! under a key prefix of an FDB cluster.
//!
//! `commit` runs in `Database::run`, FoundationDB's retry loop, so conflicts and transient
//! errors are retried with the client's backoff. The one hard case is a commit whose result was
//! lost (`commit_unknown_result`, "maybe committed"): the loop runs the closure again, and the
//! closure must not apply the batch twice. It doesn't, because every batch writes, in the same
//! transaction, the new applied index and a random token of its own: a retry that finds both
//! already there knows an earlier attempt of this very batch committed, and writes nothing. The
//! token (rather than the loop's `MaybeCommitted` flag, which only describes the latest failed
//! attempt) also covers a maybe-committed attempt followed by an ordinary retryable error.

use std::sync::Arc;

use foundationdb::options::{DatabaseOption, StreamingMode};
use foundationdb::{Database, FdbBindingError, KeySelector, RangeOption};
use futures::executor::block_on;

use super::{
    KeyRange, LAYOUTS_READ, Op, Rows, STORE_LAYOUT, Store, StoreError, WriteBatch, decode_applied,
};
use commerce::keys::{META_APPLIED, META_BATCH_TOKEN, META_FORMAT};

/// How long one FDB transaction may take, retries included, before `commit` fails. FDB itself
/// caps a transaction at 5 s; without a timeout an unreachable cluster would block forever.
const TRANSACTION_TIMEOUT_MS: i32 = 10_000;

/// The FDB client's network thread. Exactly one per process; it must be dropped before the
/// process exits, so the owner (the `core` command) holds it for its whole run.
pub struct FdbNetwork(#[allow(dead_code)] foundationdb::api::NetworkAutoStop);

impl FdbNetwork {
    pub fn start() -> Self {
        // SAFETY: `boot` is unsafe only because the returned guard must be dropped before the
        // process exits; the caller owns this value for the life of the process and drops it
        // on return from `main`.
        #[allow(unsafe_code)]
        let guard = unsafe { foundationdb::boot() };
        FdbNetwork(guard)
    }
}

pub struct FdbStore {
    db: Arc<Database>,
    prefix: Vec<u8>,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

/// The error a closure returns when the fence does not match; carried through the retry loop as
/// a custom (non-retryable) error.
#[derive(Debug, thiserror::Error)]
#[error("fenced: expected applied index {expected}, found {found}")]
struct Fenced {
    expected: u64,
    found: u64,
}

fn store_error(e: FdbBindingError) -> StoreError {
    if let FdbBindingError::CustomError(inner) = &e
        && let Some(f) = inner.downcast_ref::<Fenced>()
    {
        return StoreError::Fenced {
            expected: f.expected,
            found: f.found,
        };
    }
    io(e)
}

impl FdbStore {
    /// Connects to the cluster named by `cluster_file` and keeps every key under `prefix`.
    pub fn open(
        _network: &FdbNetwork,
        cluster_file: &str,
        prefix: &[u8],
    ) -> Result<Self, StoreError> {
        let db = Database::from_path(cluster_file).map_err(io)?;
        db.set_option(DatabaseOption::TransactionTimeout(TRANSACTION_TIMEOUT_MS))
            .map_err(io)?;
        let store = FdbStore {
            db: Arc::new(db),
            prefix: prefix.to_vec(),
        };
        let format_key = store.key(META_FORMAT);
        let found = block_on(store.db.run(|trx, _maybe_committed| {
            let format_key = format_key.clone();
            async move {
                let v = trx.get(&format_key, false).await?;
                match v.as_deref() {
                    None => {
                        trx.set(&format_key, &[STORE_LAYOUT]);
                        Ok(None)
                    }
                    Some(raw) => Ok(Some(raw.to_vec())),
                }
            }
        }))
        .map_err(store_error)?;
        match found.as_deref() {
            None => Ok(store),
            Some([f]) if LAYOUTS_READ.contains(f) => Ok(store),
            Some(other) => Err(StoreError::Format {
                found: format!("{other:?}"),
            }),
        }
    }

    /// Rows with full keys in `[begin, end)`, up to `limit`, in one transaction, with the
    /// prefix taken off their keys.
    fn scan_raw(&self, begin: Vec<u8>, end: Vec<u8>, limit: usize) -> Result<Rows, StoreError> {
        self.scan_ranges(&[(begin, end)], limit)
    }

    /// Up to `limit` rows of each of the raw `ranges`, all in one transaction (one snapshot).
    fn scan_ranges(&self, ranges: &[KeyRange], limit: usize) -> Result<Rows, StoreError> {
        let prefix_len = self.prefix.len();
        block_on(self.db.run(|trx, _| async move {
            let mut rows = Rows::new();
            for (begin, end) in ranges {
                let from = rows.len();
                let mut opt = RangeOption {
                    // FoundationDB takes its limit as a C int: "everything" is no limit.
                    limit: (limit < i32::MAX as usize).then_some(limit),
                    mode: StreamingMode::WantAll,
                    ..RangeOption::from((
                        KeySelector::first_greater_or_equal(begin.clone()),
                        KeySelector::first_greater_or_equal(end.clone()),
                    ))
                };
                let mut iteration = 1;
                loop {
                    let kvs = trx.get_range(&opt, iteration, false).await?;
                    for kv in kvs.iter() {
                        rows.push((kv.key()[prefix_len..].to_vec(), kv.value().to_vec()));
                    }
                    if rows.len() - from >= limit {
                        rows.truncate(from + limit);
                        break;
                    }
                    match opt.next_range(&kvs) {
                        Some(next) => opt = next,
                        None => break,
                    }
                    iteration += 1;
                }
            }
            Ok(rows)
        }))
        .map_err(store_error)
    }

    fn key(&self, k: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.prefix.len() + k.len());
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(k);
        out
    }
}

impl Store for FdbStore {
    fn applied(&self) -> Result<u64, StoreError> {
        let raw = self.get(META_APPLIED)?;
        decode_applied(raw.as_deref())
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let full: Vec<Vec<u8>> = keys.iter().map(|k| self.key(k)).collect();
        block_on(self.db.run(|trx, _| {
            let full = full.clone();
            async move {
                // Issue every read before awaiting any: FDB pipelines them.
                let reads: Vec<_> = full.iter().map(|k| trx.get(k, false)).collect();
                let mut out = Vec::with_capacity(reads.len());
                for r in reads {
                    out.push(r.await?.map(|v| v.to_vec()));
                }
                Ok(out)
            }
        }))
        .map_err(store_error)
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Rows, StoreError> {
        self.scan_raw(self.key(start), self.key(end), limit)
    }
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let applied_key = self.key(META_APPLIED);
        let token_key = self.key(META_BATCH_TOKEN);
        let token: [u8; 16] = rand::random();
        let ops: Vec<Op> = batch
            .ops
            .iter()
            .map(|op| match op {
                Op::Put(k, v) => Op::Put(self.key(k), v.clone()),
                Op::Delete(k) => Op::Delete(self.key(k)),
            })
            .collect();
        let (from, to) = (batch.from_applied, batch.to_applied);
        block_on(self.db.run(|trx, _maybe_committed| {
            let (applied_key, token_key) = (applied_key.clone(), token_key.clone());
            let ops = &ops;
            async move {
                let (applied, last_token) =
                    futures::try_join!(trx.get(&applied_key, false), trx.get(&token_key, false))?;
                let found = decode_applied(applied.as_deref())
                    .map_err(|e| FdbBindingError::CustomError(Box::new(e)))?;
                if found == to && last_token.as_deref() == Some(token.as_slice()) {
                    // An earlier attempt of this batch committed; its reply was lost.
                    return Ok(());
                }
                if found != from {
                    return Err(FdbBindingError::CustomError(Box::new(Fenced {
                        expected: from,
                        found,
                    })));
                }
                for op in ops {
                    match op {
                        Op::Put(k, v) => trx.set(k, v),
                        Op::Delete(k) => trx.clear(k),
                    }
                }
                trx.set(&applied_key, &to.to_be_bytes());
                trx.set(&token_key, &token);
                Ok(())
            }
        }))
        .map_err(store_error)
    }

    fn dump(&self, ranges: &[KeyRange]) -> Result<Rows, StoreError> {
        // One read transaction (FoundationDB bounds it to 5 s): a region whose state takes
        // longer to read needs its snapshots taken in pieces.
        let ranges: Vec<KeyRange> = ranges
            .iter()
            .map(|(start, end)| (self.key(start), self.key(end)))
            .collect();
        self.scan_ranges(&ranges, usize::MAX)
    }

    fn replace_all(&self, rows: &Rows) -> Result<(), StoreError> {
        // One transaction: FoundationDB takes at most 10 MB in one, which bounds the size of a
        // snapshot this backend can install atomically.
        let mut end = self.prefix.clone();
        end.push(0xff);
        let prefix = self.prefix.clone();
        let rows: Vec<(Vec<u8>, Vec<u8>)> =
            rows.iter().map(|(k, v)| (self.key(k), v.clone())).collect();
        block_on(self.db.run(|trx, _maybe_committed| {
            let (prefix, end, rows) = (&prefix, &end, &rows);
            async move {
                // Clearing and rewriting the same rows is idempotent, so a retry after a
                // maybe-committed attempt is harmless.
                trx.clear_range(prefix, end);
                for (k, v) in rows {
                    trx.set(k, v);
                }
                Ok(())
            }
        }))
        .map_err(store_error)
    }
}
