//! Restoring a core's store from a backup (`GET /admin/v1/backup`, taken at any core of the
//! group): into a new data directory only, as `replication::raft::backup` says how. A region
//! whose disk was lost is removed from the group, restored, started and added again; it then
//! holds the backup's state and is caught up from there.

use std::sync::Arc;

use replication::raft::LogStore;
use replication::raft::backup::{self, Backup};
use tokio::sync::RwLock;

use crate::config::CoreConfig;
use crate::machine::StateMachine;
use crate::replicated::CoreApp;
use crate::server::{StartError, open_store};

/// What a restore put in place.
#[derive(Debug)]
pub struct Restored {
    /// The index of the backup's last entry (0: the backup was of an empty group).
    pub index: u64,
    /// The member it was taken at, and when (Unix ms).
    pub node: u64,
    pub taken_at_ms: u64,
}

/// Restores `bytes` (a backup) into the store and raft log `config` names, which must both be
/// new. Blocking. A region of a group (a `[raft]` section) waits to be added again; a region
/// alone keeps the backup's membership and serves at once.
pub fn restore(config: &CoreConfig, bytes: &[u8]) -> Result<Restored, StartError> {
    let taken = Backup::read(bytes).map_err(|e| StartError::Other(e.to_string()))?;
    let (store, _backend) = open_store(&config.store)?;
    let machine = StateMachine::open(store)?;
    let app = CoreApp::new(Arc::new(RwLock::new(machine)));
    let log_path = config.raft_log_path()?;
    let log = LogStore::open(&log_path)
        .map_err(|e| StartError::Other(format!("{}: {e}", log_path.display())))?;
    backup::restore(&log, &app, &taken, config.raft.is_none())
        .map_err(|e| StartError::Other(e.to_string()))?;
    let c = &taken.contents;
    Ok(Restored {
        index: c.last_applied.map_or(0, |l| l.index),
        node: c.node,
        taken_at_ms: c.taken_at_ms,
    })
}
