//! A member's backup, and its restore into a new member.
//!
//! A backup is the application's state (its snapshot, `App::snapshot`) and the Raft metadata
//! stored with it, read in one go: the group's state as this member had applied it, up to one
//! entry of the log. It carries its own SHA-256, so a damaged copy is refused, never restored.
//!
//! Restored (`restore`, into a new store and a new log), a member holds exactly that state:
//! the application installs it, and the log records the entries up to the backup's last as
//! applied and purged (`LogStore::mark_restored`), so that the leader, when the member is
//! added to the group again, sends it the entries after the backup instead of a snapshot of
//! everything. The backup's membership is left out (but for a group of one, which has no one
//! to add it again): a restored member takes no part in the group until the group adds it, as
//! one whose log was lost (`StartError::LogLost`), and it grants no vote until it holds an
//! entry of the group's (`LogStore::holds_nothing_of_its_own`), since it may have voted, as the
//! member it replaces, in terms it has no record of.

use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

use super::log_store::LogStore;
use super::state_machine::RaftMeta;
use crate::app::{App, AppError};
use crate::protocol::{Member, NodeId};
use codec::{FirstVersion, Format};

/// What a backup holds, and what its digest covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// When it was taken (Unix ms), and at which member.
    pub taken_at_ms: u64,
    pub node: NodeId,
    /// The last entry applied: the state is the group's as of it.
    pub last_applied: Option<LogId<NodeId>>,
    /// The membership as of it (restored only into a group of one).
    pub membership: StoredMembership<NodeId, Member>,
    /// The application's snapshot, in the application's own format.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

/// The file: the contents and the SHA-256 of their encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backup {
    pub contents: Contents,
    pub sha256: [u8; 32],
}

impl FirstVersion for Backup {
    const FORMAT: Format = Format {
        label: "backup",
        version: 1,
    };
}

/// The encoding the digest is taken over.
const CONTENTS: Format = Format {
    label: "backup contents",
    version: 1,
};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a backup this build reads: {0}")]
    Unreadable(String),
    #[error("the backup is damaged: its contents do not match its SHA-256")]
    Damaged,
    #[error("{0}")]
    NotNew(String),
    #[error("the application: {0}")]
    App(AppError),
    #[error("the log: {0}")]
    Log(String),
}

impl From<AppError> for BackupError {
    fn from(e: AppError) -> Self {
        BackupError::App(e)
    }
}

fn digest(contents: &Contents) -> Result<[u8; 32], BackupError> {
    let bytes =
        codec::encode_as(CONTENTS, contents).map_err(|e| BackupError::Unreadable(e.to_string()))?;
    let d = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    Ok(out)
}

impl Backup {
    /// Reads and checks a backup's bytes.
    pub fn read(bytes: &[u8]) -> Result<Backup, BackupError> {
        let backup: Backup =
            codec::decode(bytes).map_err(|e| BackupError::Unreadable(e.to_string()))?;
        if digest(&backup.contents)? != backup.sha256 {
            return Err(BackupError::Damaged);
        }
        Ok(backup)
    }

    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self).expect("a backup always encodes")
    }
}

/// Takes member `node`'s backup of `app` (blocking: the application reads its whole state).
pub fn take<A: App>(app: &A, node: NodeId, now_ms: u64) -> Result<Backup, BackupError> {
    let (state, meta) = app.snapshot()?;
    let meta = RaftMeta::decode(&meta).map_err(|e| BackupError::Unreadable(e.to_string()))?;
    let contents = Contents {
        taken_at_ms: now_ms,
        node,
        last_applied: meta.last_applied,
        membership: meta.membership,
        state,
    };
    let sha256 = digest(&contents)?;
    Ok(Backup { contents, sha256 })
}

/// Restores `backup` into a member whose application and log are both new; `alone` (a group
/// of one) keeps the backup's membership, otherwise the member waits to be added again.
/// Blocking. The application's state goes in first and the log's mark after: a restore cut
/// short leaves a store with data and an empty log, which the member refuses to start from
/// (`StartError::LogLost`), never a log that claims entries its store lacks.
pub fn restore<A: App>(
    log: &LogStore,
    app: &A,
    backup: &Backup,
    alone: bool,
) -> Result<(), BackupError> {
    if !log.is_new().map_err(|e| BackupError::Log(e.to_string()))? {
        return Err(BackupError::NotNew(
            "the raft log is not new: restore into an empty data directory".into(),
        ));
    }
    if app.meta()?.is_some() {
        return Err(BackupError::NotNew(
            "the store holds data: restore into an empty data directory".into(),
        ));
    }
    let c = &backup.contents;
    let meta = RaftMeta {
        last_applied: c.last_applied,
        membership: if alone {
            c.membership.clone()
        } else {
            StoredMembership::default()
        },
    };
    app.install(&c.state, meta.encode())?;
    if let Some(at) = c.last_applied {
        log.mark_restored(at)
            .map_err(|e| BackupError::Log(e.to_string()))?;
    }
    Ok(())
}
