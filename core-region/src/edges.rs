//! Writes from edges over the mesh (`replication::app::Submissions`). An edge speaks only for
//! itself: the edge a write names is the one its certificate proves. It may ask only what an
//! `EdgeRequest` holds, under this region's grant policy, and its writes go through the same
//! admission, size bound and idempotency as the admin API's. The state machine's outcome goes
//! back to the edge as it was encoded, unread here.

use std::time::Duration;

use commerce::EdgeId;
use commerce::command::EdgeWrite;
use commerce::escrow::GrantPolicy;
use fault::{Fault, Kind};
use replication::app::{Submissions, SubmitFuture};
use replication::protocol::{Payload, WriteError};

use crate::writes::Writes;

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
        let refuse = |kind: Kind, why: String| {
            tracing::warn!(%peer, %why, "refused an edge write");
            WriteError::refused(kind, why)
        };
        let limit = self.writes.command_max_bytes();
        if payload.0.len() > limit {
            return Err(refuse(
                Kind::BodyTooLarge,
                format!("{} bytes, over the limit of {limit}", payload.0.len()),
            ));
        }
        let write: EdgeWrite = codec::decode(&payload.0)
            .map_err(|e| refuse(Kind::InvalidBody, format!("not an edge write: {e}")))?;
        write.check().map_err(|r| refuse(r.kind(), r.detail))?;
        let edge = EdgeId::new(peer.as_str()).map_err(|e| {
            refuse(
                Kind::Unauthorized,
                format!("the certificate's name is no edge id: {e}"),
            )
        })?;
        let (route, key, command) = write.request.into_command(edge, &self.region, self.policy);
        let reply = self
            .writes
            .submit_encoded(route, key.as_deref(), command, self.timeout)
            .await?;
        Ok(reply)
    }
}

impl Submissions for EdgeWrites {
    fn submit(&self, peer: String, payload: Payload) -> SubmitFuture {
        let this = self.clone();
        Box::pin(async move { this.handle(peer, payload).await })
    }
}
