//! The core's state machine as the application of the region group's Raft log: committed
//! entries decode into proposals and apply in one store transaction together with Raft's own
//! record of what was applied; snapshots are dumps of the whole store.

use std::sync::Arc;

use commerce::command::{Outcome, Proposal};
use commerce::refusal::{RejectKind, Rejection};
use replication::app::{App, AppEntry, AppError};
use replication::protocol::Payload;
use tokio::sync::RwLock;

use crate::machine::{LogEntry, StateMachine};
use crate::store::Rows;
use replication::failpoint;

/// A snapshot of the region's state: every row of its store (`StateMachine::dump`).
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Snapshot(Rows);

impl codec::FirstVersion for Snapshot {
    const FORMAT: codec::Format = codec::Format {
        label: "snapshot",
        version: 1,
    };
}

/// A log entry this build cannot read because a newer one wrote it.
#[derive(Debug, thiserror::Error)]
#[error(
    "the command at version {index} is of proposal format {found}, newer than this build reads ({newest}): upgrade this region"
)]
pub struct NewerFormat {
    index: u64,
    found: u8,
    newest: u8,
}

pub struct CoreApp {
    machine: Arc<RwLock<StateMachine>>,
}

impl CoreApp {
    pub fn new(machine: Arc<RwLock<StateMachine>>) -> Self {
        CoreApp { machine }
    }
}

impl App for CoreApp {
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, AppError> {
        // A payload that does not decode is refused alike on every member of one build
        // (decoding is deterministic), and takes its index like any other entry. One of a
        // newer format than this build reads was proposed by a newer member: refusing it here
        // while they apply it would make the regions differ, so this member stops applying
        // (an error, retried by the log) until it runs that build.
        let newest = <Proposal as codec::Versioned>::FORMAT.version;
        let mut undecodable = Vec::new();
        let mut log = Vec::with_capacity(entries.len());
        for e in &entries {
            let proposal = match e.payload.as_ref().map(|p| codec::decode::<Proposal>(&p.0)) {
                None => None,
                Some(Ok(p)) => Some(p),
                Some(Err(codec::CodecError::UnknownVersion { found, .. })) if found > newest => {
                    return Err(AppError::from(NewerFormat {
                        index: e.index,
                        found,
                        newest,
                    }));
                }
                Some(Err(why)) => {
                    undecodable.push((e.index, why.to_string()));
                    None
                }
            };
            log.push(LogEntry {
                index: e.index,
                proposal,
            });
        }
        let items: usize = log
            .iter()
            .filter_map(|e| e.proposal.as_ref())
            .map(|p| p.command.items())
            .sum();
        let mut outcomes = self.machine.blocking_write().apply_with(&log, Some(meta))?;
        // A crash here: the entries are durable but no caller has heard of them.
        failpoint::hit("apply.after_commit", items);
        for (index, why) in undecodable {
            if let Some(i) = log.iter().position(|e| e.index == index) {
                outcomes[i] = Outcome::Rejected(Rejection::new(
                    RejectKind::Invalid,
                    format!("undecodable command at version {index}: {why}"),
                ));
            }
        }
        // Encoded once: the proposer passes these bytes on as they are (to an edge), or reads
        // them (the admin API).
        Ok(outcomes
            .iter()
            .map(|o| codec::encode(o).map(Payload))
            .collect::<Result<_, _>>()?)
    }

    fn meta(&self) -> Result<Option<Vec<u8>>, AppError> {
        Ok(self.machine.blocking_read().replication_meta()?)
    }

    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        // The read lock keeps applies out while the store is read, so the rows and the meta
        // describe the same moment.
        let m = self.machine.blocking_read();
        let rows = m.dump()?;
        let meta = m.replication_meta()?.unwrap_or_default();
        let data = codec::encode(&Snapshot(rows))?;
        Ok((data, meta))
    }

    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), AppError> {
        let Snapshot(rows) = codec::decode(snapshot)?;
        Ok(self.machine.blocking_write().install(rows, meta)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::redb::RedbStore;
    use commerce::command::Command;

    /// A snapshot's layout is pinned: a member installs what another encoded, perhaps a build
    /// apart.
    #[test]
    fn a_snapshot_encodes_as_its_golden_bytes() {
        let rows = vec![
            (b"Mapplied".to_vec(), 42u64.to_be_bytes().to_vec()),
            (b"P\x00P-1".to_vec(), vec![1, 2, 3]),
        ];
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/snapshot-v1.hex");
        codec::check_golden(&path, &Snapshot(rows)).unwrap();
    }

    /// A command written in a format newer than this build reads (a newer region proposed
    /// it) stops this member with an error, applying nothing; one that is garbage in a format
    /// it knows is refused and takes its index, as on every member.
    #[test]
    fn a_command_of_a_newer_format_stops_this_member_instead_of_being_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RedbStore::open(&dir.path().join("core.redb")).unwrap());
        let machine = Arc::new(RwLock::new(StateMachine::open(store).unwrap()));
        let app = CoreApp::new(Arc::clone(&machine));
        let proposal = Proposal {
            command_id: [1; 16],
            fingerprint: [1; 16],
            at_ms: 0,
            command: Command::StockBatch(Vec::new()),
            key_ms: None,
            actor: None,
        };
        let mut newer = codec::encode(&proposal).unwrap();
        newer[0] += 1;
        let entry = |index, bytes: &[u8]| AppEntry {
            index,
            payload: Some(Payload(bytes.to_vec())),
        };
        let err = app.apply(vec![entry(1, &newer)], Vec::new()).unwrap_err();
        assert!(err.to_string().contains("upgrade this region"), "{err}");
        assert_eq!(machine.blocking_read().applied(), 0);
        let garbage = [<Proposal as codec::Versioned>::FORMAT.version, 0xff, 0xff];
        let out = app.apply(vec![entry(1, &garbage)], Vec::new()).unwrap();
        let outcome: Outcome = codec::decode(&out[0].0).unwrap();
        assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
        assert_eq!(machine.blocking_read().applied(), 1);
    }
}
