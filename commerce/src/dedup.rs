//! At most once for keyed writes (I3 beyond orders): a command that changed state leaves a
//! record of its outcome under its command id (derived from the caller's route and
//! Idempotency-Key); a retry is answered with that outcome and changes nothing, and the key
//! used again for a different request is refused. The core keeps the records in its store and
//! prunes them (`core-region`'s `machine.rs`); which commands keep one, and what a record
//! answers, is decided here.
//!
//! Orders keep none: each is kept forever under the id its key names, which answers retries.
//! Refusals keep none either, so the same request may be sent again once the state allows it.

use crate::command::{Command, Outcome, RejectKind, Rejection};

/// What a keyed command left behind, for its retries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupRecord {
    /// The version the command was applied at.
    pub version: u64,
    /// The digest of what was asked (`Proposal::fingerprint`).
    pub fingerprint: [u8; 16],
    pub outcome: Outcome,
}

/// What to do with a command whose id may have been seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not seen: decide it.
    New,
    /// A retry: the first outcome, and nothing changes.
    Replay(Outcome),
    /// The key was used for a different request: refused, nothing changes.
    Reused(Rejection),
}

/// What a command with `fingerprint` is, given the record kept under its id.
pub fn seen(record: Option<DedupRecord>, fingerprint: &[u8; 16]) -> Seen {
    match record {
        None => Seen::New,
        Some(rec) if &rec.fingerprint == fingerprint => Seen::Replay(match rec.outcome {
            // A replayed order says so, as its first answer did not.
            Outcome::Order { order, .. } => Outcome::Order {
                order,
                duplicate: true,
            },
            o => o,
        }),
        Some(rec) => Seen::Reused(Rejection::new(
            RejectKind::IdempotencyKeyReused,
            format!(
                "this Idempotency-Key was used at version {} for a different request",
                rec.version
            ),
        )),
    }
}

/// The record a command applied at `version` with `outcome` leaves, if any: only commands
/// that keep one (`Command::keeps_dedup_record`), and only when they changed state.
pub fn record(
    command: &Command,
    fingerprint: [u8; 16],
    version: u64,
    outcome: &Outcome,
) -> Option<DedupRecord> {
    (command.keeps_dedup_record() && !matches!(outcome, Outcome::Rejected(_))).then(|| {
        DedupRecord {
            version,
            fingerprint,
            outcome: outcome.clone(),
        }
    })
}
