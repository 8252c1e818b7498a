//! A member's backup, and its restore into a new member.
//!
//! A backup is the application's state (its snapshot, `App::snapshot`) and the Raft metadata
//! stored with it, read in one go: the group's state as this member had applied it, up to one
//! entry of the log. Its file carries the SHA-256 of the contents' exact bytes, so a damaged
//! copy is refused, never restored.
//!
//! Restored (`restore`, into a new store and a new log), a member holds exactly that state:
//! the application installs it, and the log records the entries up to the backup's last as
//! applied and purged (`LogStore::mark_restored`), so that the leader, when the member is
//! added to the group again, sends it the entries after the backup instead of a snapshot of
//! everything.
//!
//! A restored member lost what the member it replaces had promised: its votes and the terms it
//! had seen. So, unless it is the only voter of its group, it joins as a new member would:
//! - its backup's membership is left out: it takes no part in the group until the group adds
//!   it again, which the group can do only once it has removed the member it replaces;
//! - its vote is the group's current leader's, committed (`Restore::Rejoin`, as the caller read
//!   it from that leader after the removal): it follows that leader and any later one, and no
//!   leader or candidate of an earlier term, which the member it replaces may have promised
//!   otherwise (a vote of its own at that term would outrank the leader's, of a lower id, and
//!   make it step down);
//! - it grants no vote until it holds an entry of the group's beyond the backup
//!   (`LogStore::holds_nothing_of_its_own`).
//!
//! The only voter of its group (`Restore::Alone`) keeps the backup's membership, and a vote of
//! its own at the term of the backup's last entry: its first election is at a later term, so
//! what it appends sorts after what the backup holds.

use openraft::{LogId, StoredMembership, Vote};
use serde::{Deserialize, Serialize};

use super::log_store::LogStore;
use super::state_machine::RaftMeta;
use crate::app::{App, AppError};
use crate::protocol::{Member, NodeId};
use codec::{FirstVersion, Format};

/// What a backup holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    /// When it was taken (Unix ms), and at which member.
    pub taken_at_ms: u64,
    pub node: NodeId,
    /// The last entry applied: the state is the group's as of it.
    pub last_applied: Option<LogId<NodeId>>,
    /// The membership as of it (restored only into a member that is its only voter).
    pub membership: StoredMembership<NodeId, Member>,
    /// The application's snapshot, in the application's own format.
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
}

impl Contents {
    /// The group's voters as of the backup.
    pub fn voters(&self) -> Vec<NodeId> {
        self.membership.membership().voter_ids().collect()
    }
}

/// The contents' encoding, which the digest is taken over as it is in the file.
pub const CONTENTS: Format = Format {
    label: "backup contents",
    version: 1,
};

/// The file: the contents' bytes and their SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupFile {
    #[serde(with = "serde_bytes")]
    pub contents: Vec<u8>,
    pub sha256: [u8; 32],
}

impl FirstVersion for BackupFile {
    const FORMAT: Format = Format {
        label: "backup",
        version: 1,
    };
}

/// A backup, read and checked, or taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub contents: Contents,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("not a backup this build reads: {0}")]
    Unreadable(String),
    #[error("the backup is damaged: its contents do not match its SHA-256")]
    Damaged,
    #[error("{0}")]
    NotNew(String),
    #[error("{0}")]
    Refused(String),
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

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Backup {
    /// Reads and checks a backup's bytes: the digest over the contents' bytes as they are.
    pub fn read(bytes: &[u8]) -> Result<Backup, BackupError> {
        let file: BackupFile =
            codec::decode(bytes).map_err(|e| BackupError::Unreadable(e.to_string()))?;
        if sha256(&file.contents) != file.sha256 {
            return Err(BackupError::Damaged);
        }
        let contents = codec::decode_as(CONTENTS, &file.contents)
            .map_err(|e| BackupError::Unreadable(e.to_string()))?;
        Ok(Backup { contents })
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let contents =
            codec::encode_as(CONTENTS, &self.contents).expect("a backup's contents always encode");
        let sha256 = sha256(&contents);
        codec::encode(&BackupFile { contents, sha256 }).expect("a backup always encodes")
    }
}

/// Takes member `node`'s backup of `app` (blocking: the application reads its whole state).
pub fn take<A: App>(app: &A, node: NodeId, now_ms: u64) -> Result<Backup, BackupError> {
    let (state, meta) = app.snapshot()?;
    let meta = RaftMeta::decode(&meta).map_err(|e| BackupError::Unreadable(e.to_string()))?;
    Ok(Backup {
        contents: Contents {
            taken_at_ms: now_ms,
            node,
            last_applied: meta.last_applied,
            membership: meta.membership,
            state,
        },
    })
}

/// How a restored member joins its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restore {
    /// It is the backup's only voter (and its group has no learners): it keeps the backup's
    /// membership and leads at once.
    Alone,
    /// It is added to the group again, whose leader, read after the member it replaces was
    /// removed, is `leader` at `term`.
    Rejoin { term: u64, leader: NodeId },
}

/// Restores `backup` into member `id`, whose application and log are both new. Blocking. The
/// application's state goes in first and the log's mark after: a restore cut short leaves a
/// store with data and an empty log, which the member refuses to start from
/// (`StartError::LogLost`), never a log that claims entries its store lacks.
pub fn restore<A: App>(
    log: &LogStore,
    app: &A,
    backup: &Backup,
    id: NodeId,
    how: Restore,
) -> Result<(), BackupError> {
    let c = &backup.contents;
    let voters = c.voters();
    let learners = c.membership.membership().learner_ids().count();
    if how == Restore::Alone && (voters != [id] || learners > 0) {
        return Err(BackupError::Refused(format!(
            "the backup's group has voters {voters:?} and {learners} learners: restored alone, member {id} could not lead it as it was; restore it as a member of its group"
        )));
    }
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
    let (membership, vote) = match how {
        Restore::Alone => (
            c.membership.clone(),
            c.last_applied.map(|l| Vote::new(l.leader_id.term, id)),
        ),
        Restore::Rejoin { term, leader } => (
            StoredMembership::default(),
            Some(Vote::new_committed(term, leader)),
        ),
    };
    let meta = RaftMeta {
        last_applied: c.last_applied,
        membership,
    };
    app.install(&c.state, meta.encode())?;
    if let Some(at) = c.last_applied {
        log.mark_restored(at, vote)
            .map_err(|e| BackupError::Log(e.to_string()))?;
    }
    Ok(())
}
