//! openraft's state machine interface on top of an application (`App`): committed entries go
//! to `App::apply` in batches, together with the Raft metadata (last applied log id,
//! membership) that the application stores in the same transaction, so the two never disagree
//! after a crash. Snapshots are the application's own dump of its state.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::app::{App, AppEntry};
use crate::protocol::{Entry, Member, Mesh, NodeId, Payload};
use codec::{FirstVersion, Format};

/// What the application stores next to its state on every apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftMeta {
    pub last_applied: Option<LogId<NodeId>>,
    pub membership: StoredMembership<NodeId, Member>,
}

impl FirstVersion for RaftMeta {
    const FORMAT: Format = Format {
        label: "raft meta",
        version: 1,
    };
}

impl RaftMeta {
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self).expect("raft metadata always encodes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, codec::CodecError> {
        codec::decode(bytes)
    }
}

fn sm_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snapshot_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

/// The last snapshot built or installed, kept to serve members that need it.
type CurrentSnapshot = Arc<Mutex<Option<(SnapshotMeta<NodeId, Member>, Vec<u8>)>>>;

/// The adapter; clones share the application, the metadata it holds and the current snapshot.
pub struct StateMachine<A: App> {
    app: Arc<A>,
    /// The metadata stored with the application's state, read once and then kept current.
    meta: Arc<Mutex<Option<RaftMeta>>>,
    current: CurrentSnapshot,
}

impl<A: App> Clone for StateMachine<A> {
    fn clone(&self) -> Self {
        StateMachine {
            app: Arc::clone(&self.app),
            meta: Arc::clone(&self.meta),
            current: Arc::clone(&self.current),
        }
    }
}

impl<A: App> StateMachine<A> {
    pub fn new(app: Arc<A>) -> Self {
        StateMachine {
            app,
            meta: Arc::new(Mutex::new(None)),
            current: Arc::new(Mutex::new(None)),
        }
    }

    async fn meta(&self) -> Result<RaftMeta, StorageError<NodeId>> {
        let mut cached = self.meta.lock().await;
        if let Some(m) = cached.as_ref() {
            return Ok(m.clone());
        }
        let app = Arc::clone(&self.app);
        let raw = crate::sim::blocking(move || app.meta())
            .await
            .map_err(sm_err)?
            .map_err(sm_err)?;
        let meta = match raw {
            Some(b) => RaftMeta::decode(&b).map_err(sm_err)?,
            None => RaftMeta::default(),
        };
        *cached = Some(meta.clone());
        Ok(meta)
    }
}

impl<A: App> RaftSnapshotBuilder<Mesh> for StateMachine<A> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Mesh>, StorageError<NodeId>> {
        let app = Arc::clone(&self.app);
        let (data, meta_bytes) = crate::sim::blocking(move || app.snapshot())
            .await
            .map_err(snapshot_err)?
            .map_err(snapshot_err)?;
        let meta = RaftMeta::decode(&meta_bytes).map_err(snapshot_err)?;
        let snapshot_id = match meta.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, data.len()),
            None => format!("empty-{}", data.len()),
        };
        let sm = SnapshotMeta {
            last_log_id: meta.last_applied,
            last_membership: meta.membership,
            snapshot_id,
        };
        *self.current.lock().await = Some((sm.clone(), data.clone()));
        Ok(Snapshot {
            meta: sm,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<A: App> RaftStateMachine<Mesh> for StateMachine<A> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let meta = self.meta().await?;
        Ok((meta.last_applied, meta.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Payload>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut meta = self.meta().await?;
        let mut batch = Vec::new();
        for e in entries {
            meta.last_applied = Some(e.log_id);
            let payload = match e.payload {
                EntryPayload::Blank => None,
                EntryPayload::Normal(p) => Some(p),
                EntryPayload::Membership(m) => {
                    meta.membership = StoredMembership::new(Some(e.log_id), m);
                    None
                }
            };
            batch.push(AppEntry {
                index: e.log_id.index,
                payload,
            });
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let app = Arc::clone(&self.app);
        let meta_bytes = meta.encode();
        let result = crate::sim::blocking(move || app.apply(batch, meta_bytes))
            .await
            .map_err(sm_err)
            .and_then(|r| r.map_err(sm_err));
        // On failure the stored metadata is the truth again: read it afresh next time.
        *self.meta.lock().await = result.is_ok().then_some(meta);
        result
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let raft_meta = RaftMeta {
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        }
        .encode();
        let app = Arc::clone(&self.app);
        let install = data.clone();
        let installed = crate::sim::blocking(move || app.install(&install, raft_meta))
            .await
            .map_err(sm_err)
            .and_then(|r| r.map_err(sm_err));
        *self.meta.lock().await = None;
        installed?;
        *self.current.lock().await = Some((meta.clone(), data));
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<Mesh>>, StorageError<NodeId>> {
        Ok(self
            .current
            .lock()
            .await
            .as_ref()
            .map(|(meta, data)| Snapshot {
                meta: meta.clone(),
                snapshot: Box::new(Cursor::new(data.clone())),
            }))
    }
}
