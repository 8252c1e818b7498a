//! Restoring a core's store from a backup (`GET /admin/v1/backup`, taken at any core of the
//! group): into a new data directory only, as `replication::raft::backup` says how. A region
//! whose disk was lost is removed from the group, restored with the vote of the group's
//! current leader, started and added again; it then holds the backup's state and is caught up from there. A
//! region that was its group's only voter is restored as it was.

use std::sync::Arc;

use replication::raft::LogStore;
use replication::raft::backup::{self, Backup, Restore};
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
    /// Whether the region must now be added to its group again.
    pub rejoins: bool,
}

/// The backup in `bytes`, read and checked.
pub fn read(bytes: &[u8]) -> Result<Backup, StartError> {
    Backup::read(bytes).map_err(|e| StartError::Other(e.to_string()))
}

/// Whether this region, restored from `taken`, must be added to its group again (it was not
/// the backup's only voter): it is then restored with the group's current leader's vote.
pub fn rejoins(config: &CoreConfig, taken: &Backup) -> bool {
    taken.contents.voters() != [config.members().0]
}

/// Restores `taken` into the store and raft log `config` names, which must both be new.
/// Blocking. `leader`: the group's current term and leader, read from the leader after this
/// region was removed from the group; needed when the region rejoins (`rejoins`).
pub fn restore(
    config: &CoreConfig,
    taken: &Backup,
    leader: Option<(u64, u64)>,
) -> Result<Restored, StartError> {
    let (id, _) = config.members();
    let rejoins = rejoins(config, taken);
    let how = match (rejoins, leader) {
        (false, _) => Restore::Alone,
        (true, _) if config.raft.is_none() => {
            return Err(StartError::Other(format!(
                "the backup is of a group whose voters are {:?}: a region alone (no [raft] section) cannot be restored from it",
                taken.contents.voters()
            )));
        }
        (true, Some((term, leader))) => Restore::Rejoin { term, leader },
        (true, None) => {
            return Err(StartError::Other(
                "a region of a group is restored once it is removed from the group, with the vote of the group's leader: give the group (--group, a member's admin API)".into(),
            ));
        }
    };
    let (store, _backend) = open_store(&config.store)?;
    let machine = StateMachine::open(store)?;
    let app = CoreApp::new(Arc::new(RwLock::new(machine)));
    let log_path = config.raft_log_path()?;
    let log = LogStore::open(&log_path)
        .map_err(|e| StartError::Other(format!("{}: {e}", log_path.display())))?;
    backup::restore(&log, &app, taken, id, how).map_err(|e| StartError::Other(e.to_string()))?;
    let c = &taken.contents;
    Ok(Restored {
        index: c.last_applied.map_or(0, |l| l.index),
        node: c.node,
        taken_at_ms: c.taken_at_ms,
        rejoins,
    })
}
