//! openraft's network over the mesh transport: Raft RPCs travel as `MeshRequest` frames over
//! QUIC with mutual TLS, one stream per RPC.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::{Member, Mesh, MeshRequest, MeshResponse, NodeId};
use crate::transport::{Transport, TransportError};

/// Makes one `Peer` per target node. A group of one member has no transport: it never calls
/// anyone.
#[derive(Clone)]
pub struct Network {
    pub transport: Option<Arc<Transport>>,
}

/// The connection to one member.
pub struct Peer {
    transport: Option<Arc<Transport>>,
    member: Member,
}

impl RaftNetworkFactory<Mesh> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: NodeId, node: &Member) -> Peer {
        Peer {
            transport: self.transport.clone(),
            member: node.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Remote(String);

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl Peer {
    async fn call<E: std::error::Error>(
        &self,
        request: MeshRequest,
        option: &RPCOption,
    ) -> Rpc<MeshResponse, E> {
        let addr = self
            .member
            .raft_addr
            .parse()
            .map_err(|e: std::net::AddrParseError| RPCError::Unreachable(Unreachable::new(&e)))?;
        let timeout = option.hard_ttl().max(Duration::from_millis(1));
        let Some(transport) = &self.transport else {
            return Err(RPCError::Unreachable(Unreachable::new(&Remote(
                "this member has no transport (a group of one)".into(),
            ))));
        };
        match transport
            .call::<_, MeshResponse>(&self.member.name, addr, &request, timeout)
            .await
        {
            Ok(MeshResponse::Refused(why)) => {
                Err(RPCError::Network(NetworkError::new(&Remote(why))))
            }
            Ok(r) => Ok(r),
            Err(e @ TransportError::Connect { .. }) => {
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn remote<T, E: std::error::Error>(&self, r: Result<T, String>) -> Rpc<T, E> {
        r.map_err(|why| {
            RPCError::Network(NetworkError::new(&Remote(format!(
                "{} answered: {why}",
                self.member.name
            ))))
        })
    }

    fn unexpected<T, E: std::error::Error>(&self) -> Rpc<T, E> {
        Err(RPCError::Network(NetworkError::new(&Remote(format!(
            "{} answered another kind of message",
            self.member.name
        )))))
    }
}

impl RaftNetwork<Mesh> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<Mesh>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        match self.call(MeshRequest::AppendEntries(rpc), &option).await? {
            MeshResponse::AppendEntries(r) => self.remote(r),
            _ => self.unexpected(),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Mesh>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .call(MeshRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            MeshResponse::InstallSnapshot(r) => self.remote(r),
            _ => self.unexpected(),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        match self.call(MeshRequest::Vote(rpc), &option).await? {
            MeshResponse::Vote(r) => self.remote(r),
            _ => self.unexpected(),
        }
    }
}
