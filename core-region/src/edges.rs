//! Writes and reads from edges over the mesh (`replication::app::Submissions`). An edge speaks
//! only for itself: the edge a write names is the one its certificate proves. It may ask only
//! what an `EdgeRequest` holds, under this region's grant policy, and its writes go through the
//! same admission, size bound and idempotency as the admin API's. The state machine's outcome
//! goes back to the edge as it was encoded, unread here. It may read a customer's orders (an
//! `EdgeRead`), from this region's store as of what it has applied.

use std::sync::Arc;
use std::time::Duration;

use commerce::EdgeId;
use commerce::command::{EdgeRead, EdgeRequest, EdgeWrite, ReadReply};
use commerce::escrow::GrantPolicy;
use fault::{Fault, Kind};
use replication::app::{Submissions, SubmitFuture};
use replication::protocol::{Payload, WriteError};

use crate::store::Store;
use crate::writes::Writes;

/// An edge's read, encoded, is at most this large (a customer id, a cursor).
const READ_MAX_BYTES: usize = 1024;
/// Edges' reads served at once by this region, at most; past it, `Overloaded` at once.
pub const READS_INFLIGHT_MAX: usize = 64;

/// This region's judge of edge writes and reads.
#[derive(Clone)]
pub struct EdgeWrites {
    pub writes: Writes,
    pub store: Arc<dyn Store>,
    /// Edges' reads in hand (`READS_INFLIGHT_MAX`).
    pub reads: Arc<tokio::sync::Semaphore>,
    pub region: String,
    pub policy: GrantPolicy,
    /// What central orders' ids are derived under (the deployment's secret).
    pub order_ids: Arc<commerce::order_id::OrderIdKey>,
    /// Seals what an edge of a build before sealing sends in the clear; opens, for an edge's
    /// read, the addresses this region is home to.
    pub personal: Arc<sealing::PersonalData>,
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
        if let Some(why) = foreign_order_id(&write.request, &self.order_ids) {
            // Committed all the same: the shopper has its 201, and an order held back for a
            // secret no one can change after the fact would never commit (I1 before I3).
            tracing::error!(%peer, %why, "an edge derives order ids under another deployment secret");
        }
        let (route, key, mut command) =
            write
                .request
                .into_command(edge, &self.region, self.policy, &self.order_ids);
        // Nothing goes into the log in the clear (I6).
        self.personal
            .seal_all(command.ship_tos_mut())
            .map_err(|e| refuse(Kind::InvalidBody, format!("an address not sealed: {e}")))?;
        let reply = self
            .writes
            .submit_encoded(route, key.as_deref(), command, None, self.timeout)
            .await?;
        Ok(reply)
    }
}

/// Why an edge's commit names an order under a v2 id this region would not give its key, if it
/// does: the edge derives ids under another deployment secret, and a retry of the key through
/// this region would be another order (I3). Checked here, where the secret is, and not by the
/// rules, which every member applies alike without it; said loudly, so that an operator gives
/// every node the same secret.
fn foreign_order_id(request: &EdgeRequest, ids: &commerce::order_id::OrderIdKey) -> Option<String> {
    let EdgeRequest::Commit(orders) = request else {
        return None;
    };
    orders.iter().find_map(|o| {
        let key = o.idempotency_key.as_deref()?;
        let v2 = commerce::order_id::format_of(&o.order_id) == Some(commerce::order_id::IdFormat::V2);
        (v2 && ids.order_id(&o.customer_id, key) != o.order_id).then(|| {
            format!(
                "order {} is named under another deployment secret than this region's: give every node the same deployment.secret",
                o.order_id
            )
        })
    })
}

impl EdgeWrites {
    async fn answer(&self, peer: String, payload: Payload) -> Result<Payload, WriteError> {
        let refuse = |kind: Kind, why: String| {
            tracing::warn!(%peer, %why, "refused an edge read");
            WriteError::refused(kind, why)
        };
        if payload.0.len() > READ_MAX_BYTES {
            return Err(refuse(
                Kind::BodyTooLarge,
                format!(
                    "{} bytes, over the limit of {READ_MAX_BYTES}",
                    payload.0.len()
                ),
            ));
        }
        EdgeId::new(peer.as_str()).map_err(|e| {
            refuse(
                Kind::Unauthorized,
                format!("the certificate's name is no edge id: {e}"),
            )
        })?;
        let read: EdgeRead = codec::decode(&payload.0)
            .map_err(|e| refuse(Kind::InvalidBody, format!("not an edge read: {e}")))?;
        read.check().map_err(|r| refuse(r.kind(), r.detail))?;
        let Ok(_slot) = Arc::clone(&self.reads).try_acquire_owned() else {
            return Err(WriteError::Overloaded(format!(
                "{READS_INFLIGHT_MAX} edge reads in hand here"
            )));
        };
        // Addresses this region is home to are opened for its own edges only: an edge of
        // another region reading here (its own core down) gets them sealed, as it would there.
        let ours = read.region() == self.region;
        let (store, personal) = (Arc::clone(&self.store), Arc::clone(&self.personal));
        let reply = tokio::task::spawn_blocking(move || match read {
            EdgeRead::CustomerOrders {
                customer,
                after,
                limit,
                ..
            } => crate::reads::customer_orders(&*store, &customer, after.as_ref(), limit as usize)
                .map(ReadReply::Orders),
            EdgeRead::Order { customer, id, .. } => crate::reads::read_order(&*store, &id)
                .map(|o| ReadReply::Order(o.filter(|o| o.customer_id == customer).map(Box::new))),
        })
        .await
        .map_err(|e| WriteError::Unavailable(e.to_string()))?
        .map_err(|e| WriteError::Unavailable(e.to_string()))?;
        let mut reply = reply;
        if ours {
            match &mut reply {
                ReadReply::Orders(v) => v.iter_mut().for_each(|o| personal.open_order(o)),
                ReadReply::Order(o) => o.iter_mut().for_each(|o| personal.open_order(o)),
            }
        }
        codec::encode(&reply)
            .map(Payload)
            .map_err(|e| WriteError::refused(Kind::Internal, e.to_string()))
    }
}

impl Submissions for EdgeWrites {
    fn submit(&self, peer: String, payload: Payload) -> SubmitFuture {
        let this = self.clone();
        Box::pin(async move { this.handle(peer, payload).await })
    }

    fn read(&self, peer: String, payload: Payload) -> SubmitFuture {
        let this = self.clone();
        Box::pin(async move { this.answer(peer, payload).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commerce::decide::MemoryMachine;
    use commerce::order_id::OrderIdKey;
    use commerce::testing::{catalog, edge, edge_order, request};

    /// An order under the id this region's secret gives its key passes, as does one under a
    /// v1 id (which no secret makes); one under another secret's id is named.
    #[test]
    fn an_order_under_another_secrets_id_is_named() {
        let mut m = MemoryMachine::new();
        for c in catalog() {
            m.apply(&c, 0);
        }
        let order = edge_order(&m.state, "k-1", &edge("e0"), request(&[("A", 1)]));
        let named = |id: commerce::OrderId| {
            let mut o = order.clone();
            o.order_id = id;
            EdgeRequest::Commit(vec![o])
        };
        let ours = OrderIdKey::new(&[1; 32]);
        let customer = &order.customer_id;
        assert_eq!(
            foreign_order_id(&named(ours.order_id(customer, "k-1")), &ours),
            None
        );
        let v1 = commerce::order_id::v1_id(customer, "k-1");
        assert_eq!(foreign_order_id(&named(v1), &ours), None);
        let theirs = OrderIdKey::new(&[2; 32]).order_id(customer, "k-1");
        let why = foreign_order_id(&named(theirs.clone()), &ours).unwrap();
        assert!(why.contains(theirs.as_str()), "{why}");
    }
}
