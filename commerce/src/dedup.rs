//! At most once for keyed writes (I3 beyond orders): a command that changed state leaves a
//! record of its outcome under its command id (derived from the caller's route and
//! Idempotency-Key); a retry is answered with that outcome and changes nothing, and the key
//! used again for a different request is refused. The core keeps the records in its store and
//! prunes them (`core-region`'s `machine.rs`); which commands keep one, what a record answers
//! and how long it is kept are decided here.
//!
//! The promise, as Stripe's: a key is honoured for `KEY_TTL_MS` (24 hours) from when it says
//! it was made. Keys of the writes that keep records must say so (a UUIDv7 or a ULID), so that
//! a retry past that time is known for one and refused (`idempotency-key-expired`) instead of
//! applied again, with nothing remembered of it: its record is kept `RETAIN_MS`, longer than
//! any key it could answer is honoured. Times are the log's clock (the largest proposer's
//! clock applied so far), the same on every replica.
//!
//! Orders keep none: each is kept forever under the id its key names, which answers retries;
//! nor do an edge's numbered grants and returns. Refusals keep none either, so the same request
//! may be sent again once the state allows it.

use crate::command::{Command, Outcome};
use crate::refusal::{RejectKind, Rejection};

/// What a keyed command left behind, for its retries.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DedupRecord {
    /// The version the command was applied at.
    pub version: u64,
    /// The digest of what was asked (`Proposal::fingerprint`).
    pub fingerprint: [u8; 16],
    pub outcome: Outcome,
}

/// How long an Idempotency-Key of a write that keeps a dedup record is honoured, from the time
/// it says it was made.
pub const KEY_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// How far ahead of the log's clock a key may say it was made: callers' clocks differ.
pub const KEY_AHEAD_MS: u64 = 5 * 60 * 1000;
/// How long a dedup record is kept after its command was applied, by the log's clock: past
/// every key it could answer (one made `KEY_AHEAD_MS` ahead and honoured `KEY_TTL_MS`), with an
/// hour's margin for regions whose clocks disagree.
pub const RETAIN_MS: u64 = KEY_TTL_MS + KEY_AHEAD_MS + 60 * 60 * 1000;

/// What to do with a command whose id may have been seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    /// Not seen: decide it.
    New,
    /// A retry: the first outcome, and nothing changes.
    Replay(Outcome),
    /// Refused, and nothing changes: the key was used for a different request, or its time is
    /// past (a retry no record answers any more) or far ahead.
    Refused(Rejection),
}

/// What a command with `fingerprint` is, given the record kept under its id, when its key says
/// it was made at `key_ms` (if it says) and the log's clock is at `now_ms`.
pub fn seen(
    record: Option<DedupRecord>,
    fingerprint: &[u8; 16],
    key_ms: Option<u64>,
    now_ms: i64,
) -> Seen {
    let now = u64::try_from(now_ms).unwrap_or(0);
    match record {
        None => match key_ms {
            Some(k) if now.saturating_sub(k) > KEY_TTL_MS => Seen::Refused(Rejection::new(
                RejectKind::IdempotencyKeyExpired,
                format!(
                    "this Idempotency-Key was made {} h ago and is honoured for {} h: a retry this late may already be applied, so it is refused; send a new request under a new key",
                    now.saturating_sub(k) / 3_600_000,
                    KEY_TTL_MS / 3_600_000
                ),
            )),
            Some(k) if k.saturating_sub(now) > KEY_AHEAD_MS => {
                Seen::Refused(Rejection::invalid(format!(
                    "this Idempotency-Key says it was made {} s from now: check the caller's clock",
                    k.saturating_sub(now) / 1_000
                )))
            }
            _ => Seen::New,
        },
        Some(rec) if &rec.fingerprint == fingerprint => Seen::Replay(match rec.outcome {
            // A replayed order says so, as its first answer did not.
            Outcome::Order { order, .. } => Outcome::Order {
                order,
                duplicate: true,
            },
            o => o,
        }),
        Some(rec) => Seen::Refused(Rejection::new(
            RejectKind::IdempotencyKeyReused,
            format!(
                "this Idempotency-Key was used at version {} for a different request",
                rec.version
            ),
        )),
    }
}

/// Whether a dedup record applied at log time `applied_ms` may be forgotten at `now_ms`.
pub fn expired(applied_ms: i64, now_ms: i64) -> bool {
    now_ms.saturating_sub(applied_ms) > i64::try_from(RETAIN_MS).unwrap_or(i64::MAX)
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn record() -> DedupRecord {
        DedupRecord {
            version: 3,
            fingerprint: [1; 16],
            outcome: Outcome::Applied { version: 3 },
        }
    }

    #[test]
    fn a_retry_is_answered_within_the_window_and_refused_past_it() {
        let made = 1_000 * HOUR;
        let now = |h: u64| i64::try_from(made + h * HOUR).unwrap();
        // First seen an hour after it was made: decided; its retry answered from the record.
        assert_eq!(seen(None, &[1; 16], Some(made), now(1)), Seen::New);
        assert!(matches!(
            seen(Some(record()), &[1; 16], Some(made), now(23)),
            Seen::Replay(Outcome::Applied { version: 3 })
        ));
        // The same key for something else.
        assert!(matches!(
            seen(Some(record()), &[2; 16], Some(made), now(2)),
            Seen::Refused(r) if r.kind == RejectKind::IdempotencyKeyReused
        ));
        // Past the window no record answers, and the key's own time says it is a retry.
        assert!(matches!(
            seen(None, &[1; 16], Some(made), now(25)),
            Seen::Refused(r) if r.kind == RejectKind::IdempotencyKeyExpired
        ));
        // A key from the future is a caller's clock to fix.
        assert!(matches!(
            seen(None, &[1; 16], Some(made + HOUR), now(0)),
            Seen::Refused(r) if r.kind == RejectKind::Invalid
        ));
        // Records outlive every key they answer.
        let applied = now(0);
        assert!(!expired(
            applied,
            now(24) + i64::try_from(KEY_AHEAD_MS).unwrap()
        ));
        assert!(expired(
            applied,
            applied + i64::try_from(RETAIN_MS).unwrap() + 1
        ));
    }
}
