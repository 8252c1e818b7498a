//! openraft's network over the mesh transport: Raft RPCs travel as `MeshRequest` frames over
//! QUIC with mutual TLS, one stream per RPC.
//!
//! Two things happen to AppendEntries on the way, both invisible to openraft's protocol:
//!
//! - **A new leader's probes carry no entries the member already holds.** openraft 0.9 finds
//!   where a member's log ends by a binary search that starts in the middle of the leader's log
//!   and sends each probe's whole range (upstream issue databendlabs/openraft#2073): over a
//!   220 ms link, a member that held everything got some 30 messages of entries it had before
//!   the new leader's first commit (DRILLS.md). Until a leader has found where the member's log
//!   ends, a request `prev = P, entries = P+1..=L` is first asked as probes `prev = X,
//!   entries = []`, all at once: X the last entry of the range from an earlier term (the member
//!   cannot hold this term's yet) and the entries 1, 2, 4 ... 128 before it. The member holding
//!   X holds P+1..=X unchanged (Raft's log matching), so the full request would have changed
//!   nothing up to X: the answer is success up to the highest X held (`Success` or
//!   `PartialSuccess(X)`). A probe changes nothing but what a full request would have (it may
//!   truncate entries that conflict with the leader's). When a probe above the highest held
//!   found the member lacking, or none held and some lacked, the end is found, or left to
//!   openraft's own search: for this leadership, requests go whole (if none held, this call
//!   fails at once, a network error, and openraft asks again). A probe that got no answer says
//!   nothing either way.
//! - **One message carries at most `MESSAGE_ENTRIES_MAX_BYTES` of entries**, the first of them
//!   always: the rest are left for the next request (a `PartialSuccess` up to the last sent).
//!   A message must fit one heartbeat (300 ms) over a 220 ms link, where QUIC paces a window
//!   over a round trip.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{EntryPayload, Vote};

use super::{Member, Mesh, MeshRequest, MeshResponse, NodeId};
use crate::transport::{Transport, TransportError};

/// Makes one `Peer` per target node. A group of one member has no transport: it never calls
/// anyone.
#[derive(Clone)]
pub struct Network {
    pub transport: Option<Arc<Transport>>,
    pub sent: Arc<SentEntries>,
}

/// What this member, leading, sent its followers (all of them, since it started).
#[derive(Debug, Default)]
pub struct SentEntries {
    /// Entries carried in AppendEntries messages.
    pub sent: std::sync::atomic::AtomicU64,
    /// Entries a probe found the follower already held, so not sent.
    pub spared: std::sync::atomic::AtomicU64,
}

/// Most bytes of entries one AppendEntries carries (at least one entry is always sent).
pub const MESSAGE_ENTRIES_MAX_BYTES: usize = 256 * 1024;

/// The connection to one member.
pub struct Peer {
    transport: Option<Arc<Transport>>,
    member: Member,
    sent: Arc<SentEntries>,
    /// The leadership (vote) that has found where this member's log ends: its requests go
    /// whole. Any other leadership probes first.
    found_end: Option<Vote<NodeId>>,
}

/// How far back from the last entry of an earlier term the probes reach.
const PROBE_BACK_MAX: u64 = 128;

/// How many of `entries`, from the first, one message carries: at most
/// `MESSAGE_ENTRIES_MAX_BYTES` of them, the first always.
fn message_len(entries: &[openraft::Entry<Mesh>]) -> usize {
    let mut bytes = 0;
    entries
        .iter()
        .position(|e| {
            bytes += entry_bytes(e);
            bytes > MESSAGE_ENTRIES_MAX_BYTES
        })
        .map_or(entries.len(), |i| i.max(1))
}

/// About how many bytes an entry takes in a message.
fn entry_bytes(e: &openraft::Entry<Mesh>) -> usize {
    const OVERHEAD: usize = 32;
    OVERHEAD
        + match &e.payload {
            EntryPayload::Normal(p) => p.0.len(),
            EntryPayload::Membership(_) => 512,
            EntryPayload::Blank => 0,
        }
}

impl RaftNetworkFactory<Mesh> for Network {
    type Network = Peer;

    async fn new_client(&mut self, _target: NodeId, node: &Member) -> Peer {
        Peer {
            transport: self.transport.clone(),
            member: node.clone(),
            sent: Arc::clone(&self.sent),
            found_end: None,
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

impl Peer {
    /// While this leadership has not found where the member's log ends: probes in place of
    /// `rpc` (see the module docs), and their answer for `rpc`. `None`: send `rpc` itself.
    async fn probe(
        &mut self,
        rpc: &AppendEntriesRequest<Mesh>,
        option: &RPCOption,
    ) -> Rpc<Option<AppendEntriesResponse<NodeId>>> {
        let vote = rpc.vote;
        if self.found_end == Some(vote) || rpc.entries.is_empty() {
            return Ok(None);
        }
        // Entries of earlier terms: the range's first ones (terms only grow along a log).
        let earlier = rpc
            .entries
            .iter()
            .take_while(|e| e.log_id.leader_id.term < vote.leader_id().term)
            .map(|e| e.log_id)
            .collect::<Vec<_>>();
        let Some(top) = earlier.last().copied() else {
            // Only this term's entries: the member cannot hold them yet.
            self.found_end = Some(vote);
            return Ok(None);
        };
        let mut points = vec![top];
        let mut back = 1;
        while back <= PROBE_BACK_MAX && back < earlier.len() as u64 {
            points.push(earlier[earlier.len() - 1 - back as usize]);
            back *= 2;
        }
        let answers = futures::future::join_all(points.iter().map(|at| {
            self.send_entries(
                AppendEntriesRequest {
                    vote,
                    prev_log_id: Some(*at),
                    leader_commit: rpc.leader_commit,
                    entries: Vec::new(),
                },
                option,
            )
        }))
        .await;
        // A probe that got no answer (a lost packet, a timeout) says nothing either way.
        let (mut held, mut lacking, mut failed) = (None, false, None);
        for (at, answer) in points.iter().zip(answers) {
            match answer {
                Ok(higher @ AppendEntriesResponse::HigherVote(_)) => return Ok(Some(higher)),
                Ok(AppendEntriesResponse::Success) => held = held.max(Some(*at)),
                Ok(AppendEntriesResponse::Conflict | AppendEntriesResponse::PartialSuccess(_)) => {
                    lacking = true
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        let Some(held) = held else {
            if let (false, Some(e)) = (lacking, failed) {
                // Nothing learnt: openraft asks again, and the probes with it.
                return Err(e);
            }
            self.found_end = Some(vote);
            return Err(RPCError::Network(NetworkError::new(&Remote(format!(
                "{} holds none of {} to {top}; the entries go whole from now on",
                self.member.name,
                points.last().unwrap_or(&top)
            )))));
        };
        if held != top && lacking {
            // A probe above it found the follower lacking: the end is between.
            self.found_end = Some(vote);
        }
        let spared = rpc
            .entries
            .iter()
            .take_while(|e| e.log_id.index <= held.index);
        self.sent
            .spared
            .fetch_add(spared.count() as u64, Ordering::Relaxed);
        Ok(Some(
            if rpc.entries.last().map(|e| e.log_id) == Some(held) {
                AppendEntriesResponse::Success
            } else {
                AppendEntriesResponse::PartialSuccess(Some(held))
            },
        ))
    }

    async fn send_entries(
        &self,
        rpc: AppendEntriesRequest<Mesh>,
        option: &RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        match self.call(MeshRequest::AppendEntries(rpc), option).await? {
            MeshResponse::AppendEntries(r) => self.remote(r),
            _ => self.unexpected(),
        }
    }
}

impl RaftNetwork<Mesh> for Peer {
    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<Mesh>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        if let Some(r) = self.probe(&rpc, &option).await? {
            return Ok(r);
        }
        // At most a message's worth, the first entry always.
        let keep = message_len(&rpc.entries);
        let cut = (keep < rpc.entries.len()).then(|| rpc.entries[keep - 1].log_id);
        rpc.entries.truncate(keep);
        self.sent.sent.fetch_add(keep as u64, Ordering::Relaxed);
        match (self.send_entries(rpc, &option).await?, cut) {
            (AppendEntriesResponse::Success, Some(last_sent)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(last_sent)))
            }
            (r, _) => Ok(r),
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
