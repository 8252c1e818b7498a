//! What replication asks of the application it carries, which it knows only as opaque bytes:
//! its state machine (`App`) for the Raft group, its judge of writes and reads from non-members
//! (`Submissions`), its feed snapshots (`SnapshotSource`) and, at a subscriber, its mirror
//! (`Mirror`); and the one error they answer with (`AppError`).

use std::future::Future;
use std::pin::Pin;

use crate::protocol::{Payload, Row, WriteError};

/// An application's failure, as it made it (its store, its decoding): kept whole, with its
/// source, for the logs; replication only passes it on.
pub struct AppError(Box<dyn std::error::Error + Send + Sync>);

impl<E: std::error::Error + Send + Sync + 'static> From<E> for AppError {
    fn from(e: E) -> Self {
        AppError(Box::new(e))
    }
}

impl AppError {
    /// The error as it was made.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// One committed entry as the application sees it: its index (the mesh version) and its
/// command, if it carries one (leader no-ops and membership changes carry none).
#[derive(Clone, Debug)]
pub struct AppEntry {
    pub index: u64,
    pub payload: Option<Payload>,
}

/// The application a Raft group replicates. Calls block (they write the application's store):
/// the group makes them from blocking threads.
pub trait App: Send + Sync + 'static {
    /// Applies consecutive committed entries in one durable transaction that also stores
    /// `meta` (opaque to the application); returns one reply per entry.
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, AppError>;
    /// The `meta` stored with the last applied entries, if any.
    fn meta(&self) -> Result<Option<Vec<u8>>, AppError>;
    /// A consistent copy of the whole state, and the `meta` it is current to.
    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), AppError>;
    /// Replaces the whole state with a `snapshot` from another member, storing `meta`.
    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), AppError>;
}

/// What `Submissions::submit` returns.
pub type SubmitFuture = Pin<Box<dyn Future<Output = Result<Payload, WriteError>> + Send>>;

/// A member's judge of writes and reads from nodes that are not members.
pub trait Submissions: Send + Sync + 'static {
    /// Vets `payload` from `peer` (the node name its certificate proves), commits what it
    /// stands for, and answers with the application's encoding of the outcome. A refusal is
    /// `WriteError::Refused`.
    fn submit(&self, peer: String, payload: Payload) -> SubmitFuture;

    /// Vets the read `payload` from `peer` and answers it from this member's store, as of
    /// what it has applied. An application without reads refuses them.
    fn read(&self, peer: String, payload: Payload) -> SubmitFuture {
        let _ = payload;
        Box::pin(async move {
            Err(WriteError::refused(
                fault::Kind::BadRequest,
                format!("{peer}: this member answers no reads"),
            ))
        })
    }
}

/// A snapshot being read: the version read, and every mirrored row as of it.
pub type SnapshotRead<'a> =
    Pin<Box<dyn Future<Output = Result<(u64, Vec<Row>), AppError>> + Send + 'a>>;

/// Reads every mirrored row as of one version: the application's side of a snapshot.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The version read, and the rows (all from one consistent read of that version).
    fn feed_snapshot(&self) -> SnapshotRead<'_>;
}

/// What a subscriber does with the feed: the edge's mirror of the core's rows.
pub trait Mirror: Send {
    /// The last version applied.
    fn version(&self) -> u64;
    /// Replaces every row with `rows`, now at `version`.
    fn install(&mut self, version: u64, rows: Vec<Row>) -> Result<(), AppError>;
    /// Applies the rows changed at `version` (always newer than `version()`).
    fn apply(&mut self, version: u64, rows: Vec<Row>) -> Result<(), AppError>;
    /// The core has applied up to `version`, and every change up to it was sent before: a
    /// mirror is as of `version` (versions that changed no mirrored row are sent only so).
    fn heartbeat(&mut self, _version: u64) {}
}
