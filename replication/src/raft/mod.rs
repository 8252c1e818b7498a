//! Consensus between core regions: openraft (storage v2) with the log in redb, the state machine
//! in the application (`App`), and Raft RPCs over the mesh transport.
//!
//! Commands are opaque bytes (`Payload`) here; the application gives them meaning. A write sent
//! to any member reaches the leader: a follower forwards it over the transport, and a caller
//! that retries the same command after a lost reply is deduplicated by the application.
//!
//! # Timing (defaults, for inter-region round trips up to 250 ms)
//!
//! - heartbeat every 150 ms: a follower hears from the leader several times per election
//!   timeout even when each heartbeat takes 125 ms to arrive;
//! - election timeout drawn from 700–1,000 ms: above heartbeat plus one-way delay plus jitter,
//!   so a healthy leader is not deposed by a slow link;
//! - after a leader dies: at most 1,000 ms until a follower stands, one round trip (≤ 250 ms)
//!   to win the vote, one more to commit the new leader's first entry: writes flow again within
//!   about 1.5 s, inside the 2 s the mesh promises.

// openraft's traits return its `StorageError`, a large type whose size is not ours to choose.
#![allow(clippy::result_large_err)]

mod log_store;
mod network;
mod state_machine;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Config, Raft, RaftMetrics, SnapshotPolicy};
use serde::{Deserialize, Serialize};

pub use log_store::LogStore;
pub use network::Network;
pub use state_machine::{RaftMeta, StateMachine};

use crate::transport::{Handler, Transport};

pub type NodeId = u64;

/// A member of the group: its name (that of its certificate), where it takes Raft traffic and
/// where its admin API is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub raft_addr: String,
    pub admin_url: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.raft_addr)
    }
}

/// An opaque command or reply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(pub Vec<u8>);

openraft::declare_raft_types!(
    /// The type configuration of the mesh's Raft group.
    pub Mesh:
        D = Payload,
        R = Payload,
        NodeId = NodeId,
        Node = Member,
        SnapshotData = std::io::Cursor<Vec<u8>>,
);

pub type Entry = openraft::Entry<Mesh>;

/// One committed entry as the application sees it: its index (the mesh version) and its
/// command, if it carries one (leader no-ops and membership changes carry none).
#[derive(Clone, Debug)]
pub struct AppEntry {
    pub index: u64,
    pub payload: Option<Payload>,
}

/// The application a Raft group replicates. Calls block (they write the application's store):
/// the group makes them from blocking threads.
pub trait App: Send + Sync + 'static {
    /// Applies consecutive committed entries in one durable transaction that also stores
    /// `meta` (opaque to the application); returns one reply per entry.
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, String>;
    /// The `meta` stored with the last applied entries, if any.
    fn meta(&self) -> Result<Option<Vec<u8>>, String>;
    /// A consistent copy of the whole state, and the `meta` it is current to.
    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), String>;
    /// Replaces the whole state with a `snapshot` from another member, storing `meta`.
    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), String>;
}

/// Messages between members.
#[derive(Debug, Serialize, Deserialize)]
pub enum MeshRequest {
    AppendEntries(AppendEntriesRequest<Mesh>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<Mesh>),
    /// A command a member forwards to the leader.
    Write(Payload),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum MeshResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    Write(Result<Payload, WriteError>),
    Refused(String),
}

/// Why a write did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    /// No leader is known (an election is under way, or this member is cut off from a
    /// majority); retry with the same command.
    #[error("no leader: {0}")]
    NoLeader(String),
    #[error("the group is unavailable: {0}")]
    Unavailable(String),
}

/// Raft timing, in milliseconds (see the module docs for why these defaults).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timing {
    pub heartbeat_ms: u64,
    pub election_min_ms: u64,
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, for members that are only a little behind.
    pub keep_entries: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 150,
            election_min_ms: 700,
            election_max_ms: 1_000,
            snapshot_every_entries: 10_000,
            keep_entries: 2_000,
        }
    }
}

impl Timing {
    fn config(&self, cluster: &str) -> Result<Config, String> {
        Config {
            cluster_name: cluster.to_owned(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.keep_entries,
            // A snapshot chunk per RPC: well under the transport's frame limit.
            snapshot_max_chunk_size: 4 * 1024 * 1024,
            ..Config::default()
        }
        .validate()
        .map_err(|e| e.to_string())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("raft config: {0}")]
    Config(String),
    #[error("raft log: {0}")]
    Log(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// Answers other members' messages.
struct MeshHandler {
    raft: Raft<Mesh>,
    /// Members as configured: a message's claimed sender must be the node its certificate names.
    known: BTreeMap<NodeId, Member>,
}

impl MeshHandler {
    /// The name of node `id`, from the current membership or the configured members.
    fn name_of(&self, id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.name.clone())
            .or_else(|| self.known.get(&id).map(|n| n.name.clone()))
    }

    fn check_sender(&self, peer: &str, claimed: NodeId) -> Result<(), String> {
        match self.name_of(claimed) {
            Some(name) if name == peer => Ok(()),
            Some(name) => Err(format!("{peer} speaks for node {claimed}, which is {name}")),
            None => Err(format!("{peer} speaks for node {claimed}, not a member")),
        }
    }
}

impl Handler for MeshHandler {
    type Request = MeshRequest;
    type Response = MeshResponse;

    async fn handle(&self, peer: &str, request: MeshRequest) -> MeshResponse {
        let refuse = |why: String| {
            tracing::warn!(%peer, %why, "refused a raft message");
            MeshResponse::Refused(why)
        };
        match request {
            MeshRequest::AppendEntries(rpc) => {
                if let Err(why) = self.check_sender(peer, rpc.vote.leader_id().node_id) {
                    return refuse(why);
                }
                MeshResponse::AppendEntries(
                    self.raft
                        .append_entries(rpc)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            MeshRequest::Vote(rpc) => {
                if let Err(why) = self.check_sender(peer, rpc.vote.leader_id().node_id) {
                    return refuse(why);
                }
                MeshResponse::Vote(self.raft.vote(rpc).await.map_err(|e| e.to_string()))
            }
            MeshRequest::InstallSnapshot(rpc) => {
                if let Err(why) = self.check_sender(peer, rpc.vote.leader_id().node_id) {
                    return refuse(why);
                }
                MeshResponse::InstallSnapshot(
                    self.raft
                        .install_snapshot(rpc)
                        .await
                        .map_err(|e| e.to_string()),
                )
            }
            MeshRequest::Write(payload) => {
                let known = self.known.values().any(|m| m.name == peer)
                    || self
                        .raft
                        .metrics()
                        .borrow()
                        .membership_config
                        .membership()
                        .nodes()
                        .any(|(_, n)| n.name == peer);
                if !known {
                    return refuse(format!("{peer} is not a member and may not write"));
                }
                MeshResponse::Write(write_local(&self.raft, payload).await)
            }
        }
    }
}

/// Proposes on this node; only a leader accepts.
async fn write_local(raft: &Raft<Mesh>, payload: Payload) -> Result<Payload, WriteError> {
    match raft.client_write(payload).await {
        Ok(r) => Ok(r.data),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(WriteError::NoLeader(match f.leader_node {
                Some(n) => format!("the leader is {}", n.name),
                None => "no leader known".into(),
            }))
        }
        Err(e) => Err(WriteError::Unavailable(e.to_string())),
    }
}

/// A running member.
pub struct RaftNode {
    pub raft: Raft<Mesh>,
    pub id: NodeId,
    transport: Arc<Transport>,
    serving: tokio::task::JoinHandle<()>,
    /// How long one forwarded write may take.
    forward_timeout: Duration,
}

impl RaftNode {
    /// Starts member `id` of a group whose initial voters are `members`, with its log in
    /// `log_path`, its state in `app`, and its traffic on `transport` (which it now serves).
    /// A fresh group is initialized with `members`; every member may do so, with the same list.
    pub async fn start<A: App>(
        id: NodeId,
        members: BTreeMap<NodeId, Member>,
        log_path: &Path,
        app: Arc<A>,
        transport: Arc<Transport>,
        timing: Timing,
    ) -> Result<Self, StartError> {
        let config = Arc::new(timing.config("tradewind").map_err(StartError::Config)?);
        let log = LogStore::open(log_path).map_err(|e| StartError::Log(e.to_string()))?;
        let network = Network {
            transport: Arc::clone(&transport),
        };
        let raft = Raft::new(id, config, network, log, StateMachine::new(app))
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let serving = transport.serve(Arc::new(MeshHandler {
            raft: raft.clone(),
            known: members.clone(),
        }));
        match raft.initialize(members).await {
            Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => return Err(StartError::Raft(e.to_string())),
        }
        Ok(RaftNode {
            raft,
            id,
            transport,
            serving,
            forward_timeout: Duration::from_secs(10),
        })
    }

    /// Commits `payload` through the leader, wherever it is: proposed here if this member
    /// leads, forwarded otherwise. Waits through an election, and for the commit, at most
    /// `patience`; a write that timed out may still commit later, so a caller retries it with
    /// the same command (which the application deduplicates).
    pub async fn write(&self, payload: Payload, patience: Duration) -> Result<Payload, WriteError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let leader = self.raft.current_leader().await;
            let attempt = async {
                match leader {
                    Some(l) if l == self.id => write_local(&self.raft, payload.clone()).await,
                    Some(l) => self.forward(l, payload.clone()).await,
                    None => Err(WriteError::NoLeader("no leader known".into())),
                }
            };
            let result = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(WriteError::Unavailable(format!(
                        "not committed within {patience:?}: no majority reachable?"
                    )))
                });
            match result {
                Err(WriteError::NoLeader(why)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(WriteError::NoLeader(why));
                    }
                    // An election takes a few hundred milliseconds; look again shortly.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
    }

    async fn forward(&self, leader: NodeId, payload: Payload) -> Result<Payload, WriteError> {
        let member = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .ok_or_else(|| {
                WriteError::NoLeader(format!("leader {leader} is not in the membership"))
            })?;
        let addr = member.raft_addr.parse().map_err(|e| {
            WriteError::Unavailable(format!("leader address {}: {e}", member.raft_addr))
        })?;
        match self
            .transport
            .call::<_, MeshResponse>(
                &member.name,
                addr,
                &MeshRequest::Write(payload),
                self.forward_timeout,
            )
            .await
        {
            Ok(MeshResponse::Write(r)) => r,
            Ok(other) => Err(WriteError::Unavailable(format!(
                "{} answered {other:?}",
                member.name
            ))),
            // The leader may have just died: treat it as an election in progress.
            Err(e) => Err(WriteError::NoLeader(e.to_string())),
        }
    }

    pub fn metrics(&self) -> RaftMetrics<NodeId, Member> {
        self.raft.metrics().borrow().clone()
    }

    /// Stops Raft and the transport.
    pub async fn shutdown(self) {
        let _ = self.raft.shutdown().await;
        self.transport.close();
        self.serving.abort();
    }
}
