//! The single-region log driver: orders proposals, gives each the next index, and applies them
//! in batches so that concurrent writers share one durable commit (group commit).
//!
//! This is where the Raft log of the replication layer plugs in: it will hand the state machine
//! committed entries through the same `StateMachine::apply(entries)` call, and proposals will
//! travel through consensus instead of this queue. Until then a core is a one-member group.
//!
//! Bounded: the queue holds `queue_max` proposals (a full queue answers `Overloaded` at once,
//! never blocks the caller), and a batch holds at most `batch_commands_max` commands and
//! `batch_items_max` items (prices, stock changes, orders), so one apply never builds an
//! unbounded transaction.

use std::sync::Arc;

use commerce::command::{Command, Outcome, Proposal};
use tokio::sync::{RwLock, mpsc, oneshot};

use crate::failpoint;
use crate::machine::{LogEntry, MachineError, StateMachine};

/// Limits of the log driver.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequencerLimits {
    pub queue_max: usize,
    pub batch_commands_max: usize,
    pub batch_items_max: usize,
}

impl Default for SequencerLimits {
    fn default() -> Self {
        SequencerLimits {
            // A few seconds of admin traffic at full speed; beyond that callers should back off.
            queue_max: 4_096,
            // Enough to amortise one fsync over many small commands.
            batch_commands_max: 1_024,
            // Two full price batches: keeps one transaction to a few MB and a few ms.
            batch_items_max: 20_000,
        }
    }
}

/// Why a proposal got no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("the write queue is full; retry after a moment")]
    Overloaded,
    #[error("the state machine is unavailable: {0}")]
    Unavailable(String),
}

struct Pending {
    proposal: Proposal,
    reply: oneshot::Sender<Result<Outcome, String>>,
}

/// The handle writers use.
#[derive(Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Pending>,
}

/// The number of items a command carries, for batch sizing.
fn weight(c: &Command) -> usize {
    match c {
        Command::PriceBatch(v) => v.len(),
        Command::StockBatch(v) => v.len(),
        Command::CommitOrders { orders, .. } => orders.len(),
        _ => 1,
    }
}

impl Sequencer {
    /// Starts the driver task over `machine`. It stops when every `Sequencer` handle is dropped.
    pub fn start(machine: Arc<RwLock<StateMachine>>, limits: SequencerLimits) -> Self {
        let (tx, rx) = mpsc::channel(limits.queue_max.max(1));
        tokio::spawn(run(machine, rx, limits));
        Sequencer { tx }
    }

    /// Proposes a command and waits until it is applied durably.
    pub async fn propose(&self, proposal: Proposal) -> Result<Outcome, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Pending { proposal, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    ProposeError::Unavailable("the log driver has stopped".into())
                }
            })?;
        rx.await
            .map_err(|_| ProposeError::Unavailable("the log driver has stopped".into()))?
            .map_err(ProposeError::Unavailable)
    }
}

async fn run(
    machine: Arc<RwLock<StateMachine>>,
    mut rx: mpsc::Receiver<Pending>,
    limits: SequencerLimits,
) {
    while let Some(first) = rx.recv().await {
        let mut items = weight(&first.proposal.command);
        let mut batch = vec![first];
        while batch.len() < limits.batch_commands_max && items < limits.batch_items_max {
            match rx.try_recv() {
                Ok(p) => {
                    items += weight(&p.proposal.command);
                    batch.push(p);
                }
                Err(_) => break,
            }
        }
        let (proposals, replies): (Vec<Proposal>, Vec<_>) =
            batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
        let m = Arc::clone(&machine);
        let applied = tokio::task::spawn_blocking(move || {
            let mut m = m.blocking_write();
            let first = m.applied() + 1;
            let entries: Vec<LogEntry> = proposals
                .into_iter()
                .enumerate()
                .map(|(i, proposal)| LogEntry {
                    index: first + i as u64,
                    proposal,
                })
                .collect();
            let out = m.apply(&entries);
            if out.is_ok() {
                // A crash here: the batch is durable but no caller has heard of it.
                failpoint::hit("sequencer.after_apply", items);
            }
            out
        })
        .await;
        let result: Result<Vec<Outcome>, String> = match applied {
            Ok(Ok(outcomes)) => Ok(outcomes),
            Ok(Err(e @ MachineError::Poisoned)) => {
                tracing::error!(error = %e, "state machine poisoned; refusing writes");
                Err(e.to_string())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(join) => Err(format!("apply task failed: {join}")),
        };
        match result {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
