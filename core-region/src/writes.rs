//! Where writes enter the log: bounded admission in front of the region group's Raft.
//!
//! A proposal is admitted while fewer than `inflight_max` proposals and `inflight_bytes_max`
//! encoded bytes are in flight; past that the caller is told at once to come back (503 with
//! Retry-After), never queued without bound. Admitted proposals go to the Raft leader (here, or
//! forwarded to another region) and return when committed and applied; Raft batches what is in
//! flight, so throughput is not one fsync per command.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use commerce::command::{Actor, Command, Outcome, Proposal};
use commerce::order_id::key_time_ms;
use replication::protocol::{Payload, WriteError};
use replication::raft::RaftNode;

/// Largest encoded command one request may propose, by default: well inside what one store
/// transaction takes on every backend (a full price batch of 10,000 changes is under 1 MiB).
/// Edges keep their commit batches to half of it.
pub const COMMAND_MAX_BYTES: usize = 2 * 1024 * 1024;

/// The encoding a command's fingerprint is taken in: fixed, so that a retry made across an
/// upgrade that moved the proposal's format on is still known as a retry.
const FINGERPRINT_FORMAT: codec::Format = codec::Format {
    label: "proposal",
    version: 2,
};

/// The first 16 bytes of SHA-256 over `parts`, each prefixed by its length (so that no two
/// different lists of parts run together into the same input).
fn digest16(parts: &[&[u8]]) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let full = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// Limits of admission.
#[derive(Clone, Copy, Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteLimits {
    pub inflight_max: usize,
    pub inflight_bytes_max: usize,
    /// Largest encoded command one request may propose (`COMMAND_MAX_BYTES` by default).
    pub command_max_bytes: usize,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            // A few seconds of admin traffic at full speed; beyond that callers should back off.
            inflight_max: 4_096,
            // 256 MiB of encoded commands: bounded memory whatever the callers send.
            inflight_bytes_max: 256 * 1024 * 1024,
            command_max_bytes: COMMAND_MAX_BYTES,
        }
    }
}

/// Why a proposal got no outcome.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    #[error("{0}")]
    TooLarge(String),
    #[error("too many writes in flight; retry after a moment")]
    Overloaded,
    #[error("no leader can be reached now (election under way, or this region is cut off): {0}")]
    NoLeader(String),
    #[error("the write did not commit in time and may still: {0}")]
    Timeout(String),
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    /// The leader refused it (`kind` says why); sent again as it is, it is refused again.
    #[error("refused: {reason}")]
    Refused { kind: fault::Kind, reason: String },
    /// It could not be encoded, or its outcome decoded: a bug here, not the caller's.
    #[error(transparent)]
    Codec(#[from] codec::CodecError),
}

impl fault::Fault for ProposeError {
    fn kind(&self) -> fault::Kind {
        use fault::Kind;
        match self {
            ProposeError::TooLarge(_) => Kind::BodyTooLarge,
            ProposeError::Overloaded => Kind::Overloaded,
            ProposeError::NoLeader(_) | ProposeError::Unavailable(_) => Kind::Unavailable,
            ProposeError::Timeout(_) => Kind::Timeout,
            ProposeError::Refused { kind, .. } => *kind,
            ProposeError::Codec(_) => Kind::Internal,
        }
    }
}

impl From<WriteError> for ProposeError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::NoLeader(why) => ProposeError::NoLeader(why),
            WriteError::Timeout(why) => ProposeError::Timeout(why),
            WriteError::Unavailable(why) => ProposeError::Unavailable(why),
            WriteError::Overloaded(_) => ProposeError::Overloaded,
            WriteError::Refused { kind, reason } => ProposeError::Refused { kind, reason },
        }
    }
}

impl From<ProposeError> for WriteError {
    fn from(e: ProposeError) -> Self {
        match e {
            ProposeError::NoLeader(why) => WriteError::NoLeader(why),
            ProposeError::Timeout(why) => WriteError::Timeout(why),
            ProposeError::Unavailable(why) => WriteError::Unavailable(why),
            ProposeError::Overloaded => WriteError::Overloaded(e.to_string()),
            ProposeError::Refused { kind, reason } => WriteError::Refused { kind, reason },
            e @ (ProposeError::TooLarge(_) | ProposeError::Codec(_)) => {
                let kind = fault::Fault::kind(&e);
                WriteError::refused(kind, e.to_string())
            }
        }
    }
}

/// The handle writers use.
#[derive(Clone)]
pub struct Writes {
    node: Arc<RaftNode>,
    count: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    limits: WriteLimits,
}

/// Gives back what an admitted proposal held, however the proposal ends.
struct Admitted<'a> {
    w: &'a Writes,
    bytes: usize,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        self.w.count.fetch_sub(1, Ordering::AcqRel);
        self.w.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Writes {
    pub fn new(node: Arc<RaftNode>, limits: WriteLimits) -> Self {
        Writes {
            node,
            count: Arc::new(AtomicUsize::new(0)),
            bytes: Arc::new(AtomicUsize::new(0)),
            limits,
        }
    }

    pub fn node(&self) -> &Arc<RaftNode> {
        &self.node
    }

    /// Proposals in flight.
    pub fn inflight(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Largest encoded command one request may propose.
    pub fn command_max_bytes(&self) -> usize {
        self.limits.command_max_bytes
    }

    /// Encoded bytes of the proposals in flight.
    pub fn inflight_bytes(&self) -> usize {
        self.bytes.load(Ordering::Acquire)
    }

    fn admit(&self, bytes: usize) -> Result<Admitted<'_>, ProposeError> {
        let count = self.count.fetch_add(1, Ordering::AcqRel);
        let held = self.bytes.fetch_add(bytes, Ordering::AcqRel);
        let admitted = Admitted { w: self, bytes };
        // One proposal is always let through, however large: the API bounds its size.
        if count >= self.limits.inflight_max
            || (held > 0 && held + bytes > self.limits.inflight_bytes_max)
        {
            return Err(ProposeError::Overloaded);
        }
        Ok(admitted)
    }

    /// Proposes `command` for `route` (what kind of write it is: "prices", "commits") and
    /// waits, at most `timeout`, for its outcome. With an idempotency `key` the command id is
    /// derived from (route, key), so a retry is recognised; without one it is random.
    pub async fn submit(
        &self,
        route: &str,
        key: Option<&str>,
        command: Command,
        actor: Option<Actor>,
        timeout: Duration,
    ) -> Result<Outcome, ProposeError> {
        let reply = self
            .submit_encoded(route, key, command, actor, timeout)
            .await?;
        Ok(codec::decode(&reply.0)?)
    }

    /// `submit`, answered with the outcome as the state machine encoded it (`Outcome`'s
    /// format), for a caller that passes it on unread (an edge's write).
    pub async fn submit_encoded(
        &self,
        route: &str,
        key: Option<&str>,
        command: Command,
        actor: Option<Actor>,
        timeout: Duration,
    ) -> Result<Payload, ProposeError> {
        let command_id = match key {
            Some(k) => digest16(&[route.as_bytes(), k.as_bytes()]),
            None => rand::random(),
        };
        // Where a dedup record answers retries: the fingerprint tells a retry from another
        // request under the same key, and the key must say when it was made, so that a retry
        // past the time keys are honoured is refused instead of applied again.
        let (fingerprint, key_ms) = if command.keeps_dedup_record() {
            let requested = codec::encode_as(FINGERPRINT_FORMAT, &command)?;
            let key_ms = match key {
                Some(k) => Some(key_time_ms(k).ok_or_else(|| ProposeError::Refused {
                    kind: fault::Kind::BadRequest,
                    reason: format!(
                        "the Idempotency-Key of a {} must be a UUIDv7 or a ULID: it says when it was made, so that a retry past {} h is refused instead of applied again",
                        command.kind(),
                        commerce::dedup::KEY_TTL_MS / 3_600_000
                    ),
                })?),
                None => None,
            };
            (digest16(&[route.as_bytes(), &requested]), key_ms)
        } else {
            ([0; 16], None)
        };
        let (kind, items) = (command.kind(), command.items());
        let proposal = Proposal {
            command_id,
            fingerprint,
            at_ms: util::clock::now_ms(),
            command,
            key_ms,
            actor,
        };
        // In the earliest version that carries it, so that members of older builds apply what
        // they can through a rolling upgrade; one that cannot read it stops until it is
        // upgraded (`replicated.rs`) rather than deciding otherwise.
        let payload = Payload(commerce::format::earliest(proposal)?);
        let limit = self.limits.command_max_bytes;
        if payload.0.len() > limit {
            return Err(ProposeError::TooLarge(format!(
                "this {kind} of {items} items is {} bytes encoded, over the limit of {limit}; split it",
                payload.0.len()
            )));
        }
        self.propose_payload(payload, timeout).await
    }

    /// Proposes and waits, at most `timeout`, until the proposal is committed and applied.
    pub async fn propose(
        &self,
        proposal: &Proposal,
        timeout: Duration,
    ) -> Result<Outcome, ProposeError> {
        let reply = self
            .propose_payload(Payload(codec::encode(proposal)?), timeout)
            .await?;
        Ok(codec::decode(&reply.0)?)
    }

    /// Proposes an encoded proposal and waits, at most `timeout`, for the encoded outcome.
    pub async fn propose_payload(
        &self,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Payload, ProposeError> {
        let _admitted = self.admit(payload.0.len())?;
        Ok(self.node.write(payload, timeout).await?)
    }
}
