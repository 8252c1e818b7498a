//! The single-region log driver: orders proposals, gives each the next index, and applies them
//! in batches so that concurrent writers share one durable commit (group commit).
//!
//! This is where the Raft log of the replication layer plugs in: it will hand the state machine
//! committed entries through the same `StateMachine::apply(entries)` call, and proposals will
//! travel through consensus instead of this queue. Until then a core is a one-member group.
//!
//! Bounded: the queue holds at most `queue_max` proposals and `queue_bytes_max` bytes of them (a
//! full queue answers `Overloaded` at once, never blocks the caller), and a batch holds at most
//! `batch_commands_max` commands, `batch_items_max` items (prices, stock changes, orders) and
//! `batch_bytes_max` bytes, so one apply never builds a transaction a backend would refuse
//! (FoundationDB takes at most 10 MB).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use commerce::command::{Command, Outcome, Proposal};
use tokio::sync::{RwLock, mpsc, oneshot};

use crate::failpoint;
use crate::machine::{LogEntry, MachineError, StateMachine};

/// Limits of the log driver.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SequencerLimits {
    pub queue_max: usize,
    pub queue_bytes_max: usize,
    pub batch_commands_max: usize,
    pub batch_items_max: usize,
    pub batch_bytes_max: usize,
}

impl Default for SequencerLimits {
    fn default() -> Self {
        SequencerLimits {
            // A few seconds of admin traffic at full speed; beyond that callers should back off.
            queue_max: 4_096,
            // 256 MiB of encoded commands: bounded memory whatever the callers send.
            queue_bytes_max: 256 * 1024 * 1024,
            // Enough to amortise one fsync over many small commands.
            batch_commands_max: 1_024,
            // Two full price batches: keeps one transaction to a few ms.
            batch_items_max: 20_000,
            // Rows weigh about 1.5 times their command: 4 MiB stays under FoundationDB's 10 MB.
            batch_bytes_max: 4 * 1024 * 1024,
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
    /// Encoded size of the command, for the byte bounds.
    bytes: usize,
    reply: oneshot::Sender<Result<Outcome, String>>,
}

/// The handle writers use.
#[derive(Clone)]
pub struct Sequencer {
    tx: mpsc::Sender<Pending>,
    queued_bytes: Arc<AtomicUsize>,
    queue_bytes_max: usize,
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
        let queued_bytes = Arc::new(AtomicUsize::new(0));
        tokio::spawn(run(machine, rx, limits, Arc::clone(&queued_bytes)));
        Sequencer {
            tx,
            queued_bytes,
            queue_bytes_max: limits.queue_bytes_max,
        }
    }

    /// Proposals waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Encoded bytes of the proposals waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }

    /// Proposes a command of `bytes` encoded bytes and waits until it is applied durably.
    pub async fn propose(&self, proposal: Proposal, bytes: usize) -> Result<Outcome, ProposeError> {
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued + bytes > self.queue_bytes_max && queued > 0 {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(ProposeError::Overloaded);
        }
        let (reply, rx) = oneshot::channel();
        if let Err(e) = self.tx.try_send(Pending {
            proposal,
            bytes,
            reply,
        }) {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => {
                    ProposeError::Unavailable("the log driver has stopped".into())
                }
            });
        }
        rx.await
            .map_err(|_| ProposeError::Unavailable("the log driver has stopped".into()))?
            .map_err(ProposeError::Unavailable)
    }
}

async fn run(
    machine: Arc<RwLock<StateMachine>>,
    mut rx: mpsc::Receiver<Pending>,
    limits: SequencerLimits,
    queued_bytes: Arc<AtomicUsize>,
) {
    // A proposal taken off the queue that did not fit the batch before: it opens the next one.
    let mut carry: Option<Pending> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => break,
            },
        };
        let mut items = weight(&first.proposal.command);
        let mut bytes = first.bytes;
        let mut batch = vec![first];
        while batch.len() < limits.batch_commands_max && items < limits.batch_items_max {
            let Ok(p) = rx.try_recv() else { break };
            if bytes + p.bytes > limits.batch_bytes_max {
                carry = Some(p);
                break;
            }
            items += weight(&p.proposal.command);
            bytes += p.bytes;
            batch.push(p);
        }
        queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        let (proposals, replies): (Vec<Proposal>, Vec<_>) =
            batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
        let m = Arc::clone(&machine);
        let applied = tokio::task::spawn_blocking(move || {
            let mut m = m.blocking_write();
            let entries = LogEntry::numbered(m.applied() + 1, proposals);
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
