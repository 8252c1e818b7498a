//! The core's state machine as the application of the region group's Raft log: committed
//! entries decode into proposals and apply in one store transaction together with Raft's own
//! record of what was applied; snapshots are dumps of the whole store.

use std::sync::Arc;

use commerce::command::{Outcome, Proposal, RejectKind, Rejection};
use replication::raft::{App, AppEntry, Payload};
use tokio::sync::RwLock;

use crate::machine::{LogEntry, StateMachine};
use crate::store::Rows;
use replication::failpoint;

/// A snapshot of the region's state: every row of its store (`StateMachine::dump`).
#[derive(serde::Serialize, serde::Deserialize)]
struct Snapshot(Rows);

impl codec::FirstVersion for Snapshot {
    const FORMAT: codec::Format = codec::Format {
        label: "snapshot",
        version: 1,
    };
}

pub struct CoreApp {
    machine: Arc<RwLock<StateMachine>>,
}

impl CoreApp {
    pub fn new(machine: Arc<RwLock<StateMachine>>) -> Self {
        CoreApp { machine }
    }
}

/// Encodes a proposal as a log payload.
pub fn payload(p: &Proposal) -> Result<Payload, String> {
    codec::encode(p).map(Payload).map_err(|e| e.to_string())
}

/// Decodes the reply to a proposal.
pub fn outcome(p: &Payload) -> Result<Outcome, String> {
    codec::decode(&p.0).map_err(|e| e.to_string())
}

impl App for CoreApp {
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, String> {
        // A payload that does not decode is refused alike on every member (decoding is
        // deterministic), and takes its index like any other entry.
        let mut undecodable = Vec::new();
        let log: Vec<LogEntry> = entries
            .iter()
            .map(|e| LogEntry {
                index: e.index,
                proposal: e
                    .payload
                    .as_ref()
                    .and_then(|p| match codec::decode::<Proposal>(&p.0) {
                        Ok(p) => Some(p),
                        Err(why) => {
                            undecodable.push((e.index, why.to_string()));
                            None
                        }
                    }),
            })
            .collect();
        let items: usize = log
            .iter()
            .filter_map(|e| e.proposal.as_ref())
            .map(|p| p.command.items())
            .sum();
        let mut outcomes = self
            .machine
            .blocking_write()
            .apply_with(&log, Some(meta))
            .map_err(|e| e.to_string())?;
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
        outcomes
            .iter()
            .map(|o| codec::encode(o).map(Payload).map_err(|e| e.to_string()))
            .collect()
    }

    fn meta(&self) -> Result<Option<Vec<u8>>, String> {
        self.machine
            .blocking_read()
            .replication_meta()
            .map_err(|e| e.to_string())
    }

    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), String> {
        // The read lock keeps applies out while the store is read, so the rows and the meta
        // describe the same moment.
        let m = self.machine.blocking_read();
        let rows = m.dump().map_err(|e| e.to_string())?;
        let meta = m
            .replication_meta()
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        let data = codec::encode(&Snapshot(rows)).map_err(|e| e.to_string())?;
        Ok((data, meta))
    }

    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), String> {
        let Snapshot(rows) = codec::decode(snapshot).map_err(|e| e.to_string())?;
        self.machine
            .blocking_write()
            .install(rows, meta)
            .map_err(|e| e.to_string())
    }
}
