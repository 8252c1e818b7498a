//! Writes from edges over the mesh (`replication::raft::Submissions`). An edge speaks only for
//! itself: the edge a write names is the one its certificate proves. It may ask only what an
//! `EdgeRequest` holds, under this region's grant policy, and its writes go through the same
//! admission, size bound and idempotency as the admin API's.

use std::time::Duration;

use commerce::EdgeId;
use commerce::command::{EdgeWrite, Outcome};
use commerce::escrow::GrantPolicy;
use replication::raft::{Payload, Submissions, SubmitFuture, WriteError};

use crate::writes::{COMMAND_MAX_BYTES, ProposeError, Writes};

/// This region's judge of edge writes.
#[derive(Clone)]
pub struct EdgeWrites {
    pub writes: Writes,
    pub region: String,
    pub policy: GrantPolicy,
    /// How long a write may take to commit before the edge is told to retry.
    pub timeout: Duration,
}

impl EdgeWrites {
    async fn handle(&self, peer: String, payload: Payload) -> Result<Payload, WriteError> {
        let refuse = |why: String| {
            tracing::warn!(%peer, %why, "refused an edge write");
            WriteError::Refused(why)
        };
        if payload.0.len() > COMMAND_MAX_BYTES {
            return Err(refuse(format!(
                "{} bytes, over the limit of {COMMAND_MAX_BYTES}",
                payload.0.len()
            )));
        }
        let write: EdgeWrite =
            codec::decode(&payload.0).map_err(|e| refuse(format!("not an edge write: {e}")))?;
        write.check().map_err(refuse)?;
        let edge = EdgeId::new(peer.as_str())
            .map_err(|e| refuse(format!("the certificate's name is no edge id: {e}")))?;
        let (route, key, command) =
            write
                .request
                .into_command(edge, &self.region, self.policy, write.key);
        let outcome: Outcome = self
            .writes
            .submit(route, key.as_deref(), command, self.timeout)
            .await
            .map_err(|e| match e {
                ProposeError::TooLarge(why) => refuse(why),
                ProposeError::Overloaded => WriteError::Overloaded(e.to_string()),
                ProposeError::NoLeader(why) => WriteError::NoLeader(why),
                ProposeError::Timeout(why) => WriteError::Timeout(why),
                ProposeError::Unavailable(why) => WriteError::Unavailable(why),
            })?;
        codec::encode(&outcome)
            .map(Payload)
            .map_err(|e| WriteError::Unavailable(e.to_string()))
    }
}

impl Submissions for EdgeWrites {
    fn submit(&self, peer: String, payload: Payload) -> SubmitFuture {
        let this = self.clone();
        Box::pin(async move { this.handle(peer, payload).await })
    }
}
