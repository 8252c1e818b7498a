//! The authoritative store of one core region: an ordered byte keyspace (layout in
//! `commerce::keys`) with atomic, durable batches.
//!
//! The state machine is the only writer. Every batch moves the store's applied index from one
//! value to the next *inside the same transaction* as the rows it writes, and a batch whose
//! starting index does not match the stored one is refused (`Fenced`): that is what makes a
//! replay after a crash, or a backend's "maybe committed" retry, apply nothing twice.
//!
//! Calls block (redb fsyncs, FoundationDB waits on the network): call them from a blocking
//! context such as `tokio::task::spawn_blocking`, never directly on an async worker.

pub mod redb;

#[cfg(feature = "foundationdb")]
pub mod fdb;

/// The layout of the store this build writes: the key layout of `commerce::keys`, each value
/// encoded in its own format (`commerce::format`). A store of another layout is refused at
/// open rather than misread; a record of an earlier format is read and migrated.
///
/// Layout 2 added the index of each customer's orders (`keys::customer_order`); a store of
/// layout 1 is opened, and the state machine writes the index and the new layout before it
/// applies anything (`StateMachine::open`).
pub const STORE_LAYOUT: u8 = 2;

/// The layouts this build opens: its own, and those it migrates from.
pub const LAYOUTS_READ: [u8; 2] = [1, STORE_LAYOUT];

/// Largest encoded record. FoundationDB refuses values over 100 kB; the same bound on every
/// backend keeps a store movable between them.
pub const VALUE_MAX_BYTES: usize = 90_000;

/// Keys `start <= key < end`.
pub type KeyRange = (Vec<u8>, Vec<u8>);

/// Every key of the store (every key begins with an ASCII tag).
pub fn all_keys() -> KeyRange {
    (Vec::new(), vec![0xff])
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

/// Rows to write atomically, moving the applied index from `from_applied` to `to_applied`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub from_applied: u64,
    pub to_applied: u64,
    pub ops: Vec<Op>,
}

/// What went wrong in the store. `Fenced` and `Format` are never retried: they mean another
/// writer or another build owns the data.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store io: {0}")]
    Io(String),
    #[error("store is at applied index {found}, batch expected {expected}: another writer?")]
    Fenced { expected: u64, found: u64 },
    #[error("store layout {found} is not the layout this build reads ({STORE_LAYOUT})")]
    Format { found: String },
    #[error("corrupt record at key {key:?}: {why}")]
    Corrupt { key: String, why: String },
}

/// Decodes the record stored under `key`; a record that does not decode is a corrupt store.
pub fn decode<T: codec::Versioned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    codec::decode(bytes).map_err(|e| StoreError::corrupt(key, e))
}

impl StoreError {
    pub fn corrupt(key: &[u8], why: impl ToString) -> Self {
        StoreError::Corrupt {
            key: String::from_utf8_lossy(key).into_owned(),
            why: why.to_string(),
        }
    }
}

/// A page of a scan: rows in key order.
pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// A callback that visits rows of a scan.
pub type RowVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), StoreError> + 'a;

/// The operations the state machine needs. Implementations must make `commit` atomic and
/// durable before it returns, and check `from_applied` against the stored applied index in the
/// same transaction.
pub trait Store: Send + Sync + 'static {
    /// The stored applied index (0 for a new store).
    fn applied(&self) -> Result<u64, StoreError>;

    /// Values of `keys`, in order, read from one consistent snapshot.
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;

    /// Up to `limit` rows with `start <= key < end`, in key order.
    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Rows, StoreError>;

    /// Applies `batch` atomically and durably, or not at all.
    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError>;

    /// The rows in `ranges` (ascending, not overlapping), read from one consistent snapshot:
    /// every row for a replication snapshot of the region, the mirrored ones for the feed.
    fn dump(&self, ranges: &[KeyRange]) -> Result<Rows, StoreError>;

    /// Replaces every row with `rows`, atomically and durably (installing a snapshot taken by
    /// `dump` on another region).
    fn replace_all(&self, rows: &Rows) -> Result<(), StoreError>;

    /// One value.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_many(&[key.to_vec()])?.pop().flatten())
    }

    /// Calls `f` on every row with `start <= key < end`, in pages of `page` rows.
    fn for_each(
        &self,
        start: &[u8],
        end: &[u8],
        page: usize,
        f: &mut RowVisitor<'_>,
    ) -> Result<(), StoreError> {
        let mut from = start.to_vec();
        loop {
            let rows = self.scan(&from, end, page)?;
            for (k, v) in &rows {
                f(k, v)?;
            }
            match rows.last() {
                Some((k, _)) if rows.len() == page => {
                    from = k.clone();
                    from.push(0); // the smallest key after `k`
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Decodes the big-endian applied index stored under `META_APPLIED`.
pub(crate) fn decode_applied(raw: Option<&[u8]>) -> Result<u64, StoreError> {
    match raw {
        None => Ok(0),
        Some(b) => b.try_into().map(u64::from_be_bytes).map_err(|_| {
            StoreError::corrupt(commerce::keys::META_APPLIED, "applied index is not 8 bytes")
        }),
    }
}

impl fault::Fault for StoreError {
    fn kind(&self) -> fault::Kind {
        match self {
            StoreError::Io(_) => fault::Kind::Unavailable,
            StoreError::Fenced { .. } | StoreError::Format { .. } | StoreError::Corrupt { .. } => {
                fault::Kind::Internal
            }
        }
    }
}
