//! The mesh protocol: every message members and edges send each other over the transport
//! (`MeshRequest`, answered with `MeshResponse` or a stream of them), and the values they
//! carry: opaque commands and replies (`Payload`), the group's members, Raft's messages (with
//! openraft's types, configured here as `Mesh`), writes and why they fail (`WriteError`), the
//! cluster view, pre-votes, and the change feed's messages. Frames carry them encoded under
//! `frame::PROTOCOL`; nothing here does any IO.

use std::fmt;

use openraft::LogId;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::certs::Role;

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

/// An opaque command or reply. Its bytes are (de)serialized as one byte string rather than
/// byte by byte, which bincode encodes the same way: the log's format is unchanged, and a
/// 100 KiB command costs a copy instead of 100,000 calls.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload(#[serde(with = "serde_bytes")] pub Vec<u8>);

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

/// Messages between members.
#[derive(Debug, Serialize, Deserialize)]
pub enum MeshRequest {
    AppendEntries(AppendEntriesRequest<Mesh>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<Mesh>),
    /// A command a member forwards to the leader.
    Write(Payload),
    /// The group as the leader sees it.
    View,
    /// Follow this member's change feed (any node of the deployment may: edges do).
    Subscribe(Subscribe),
    /// A write from a node that is not a member (an edge), for the application to vet and
    /// propose (`Submissions`); answered with `MeshResponse::Write`.
    Submit(Payload),
    /// Would the member vote for this candidate (`raft/stand.rs`)?
    PreVote(PreVote),
    /// A read from a node that is not a member (an edge), for the application to vet and
    /// answer from its store (`Submissions::read`); answered with `MeshResponse::Read`.
    /// (Kinds are only ever added at the end: the ones before keep their encoding.)
    Read(Payload),
}

impl MeshRequest {
    /// Whether a node in `role` may send this request: Raft's messages, forwarded writes and
    /// the group's view are between cores; an edge follows a feed and submits writes and reads
    /// for a core to vet; a router may only ask how the group stands.
    pub fn allowed_for(&self, role: Role) -> bool {
        match self {
            MeshRequest::AppendEntries(_)
            | MeshRequest::Vote(_)
            | MeshRequest::InstallSnapshot(_)
            | MeshRequest::PreVote(_)
            | MeshRequest::Write(_) => role == Role::Core,
            MeshRequest::View => matches!(role, Role::Core | Role::Router),
            MeshRequest::Subscribe(_) | MeshRequest::Submit(_) | MeshRequest::Read(_) => {
                role == Role::Edge
            }
        }
    }

    /// What this request is called in logs and refusals.
    pub fn kind(&self) -> &'static str {
        match self {
            MeshRequest::AppendEntries(_) => "append-entries",
            MeshRequest::Vote(_) => "vote",
            MeshRequest::InstallSnapshot(_) => "install-snapshot",
            MeshRequest::Write(_) => "write",
            MeshRequest::View => "view",
            MeshRequest::Subscribe(_) => "subscribe",
            MeshRequest::Submit(_) => "submit",
            MeshRequest::PreVote(_) => "pre-vote",
            MeshRequest::Read(_) => "read",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum MeshResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, String>),
    Vote(Result<VoteResponse<NodeId>, String>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, String>),
    Write(Result<Payload, WriteError>),
    View(Box<ClusterView>),
    Refused(String),
    /// One message of a change feed's stream.
    Feed(FeedMessage),
    PreVote(bool),
    Read(Result<Payload, WriteError>),
}

/// The group as one member sees it (the leader sees the most: how far each member is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub leader: Option<String>,
    pub term: u64,
    /// The last entry applied by the member that answers.
    pub version: u64,
    pub members: Vec<MemberView>,
    /// Which member answered.
    pub answered_by: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub id: NodeId,
    pub name: String,
    /// `leader`, `follower` or `learner`; a member answering for itself shows `candidate` while
    /// its vote is its own and no majority granted it.
    pub role: String,
    /// How far the member's log is known to match the leader's (its own last applied entry
    /// when it answers for itself).
    pub applied_version: Option<u64>,
    /// How old the oldest entry is that the member has not acknowledged (0 when caught up).
    pub lag_ms: Option<u64>,
    pub raft_addr: String,
    pub admin_url: String,
}

/// Why a write did not commit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    /// No leader is known (an election is under way, or this member is cut off from a
    /// majority); retry with the same command.
    #[error("no leader: {0}")]
    NoLeader(String),
    /// Not committed in the time given; it may still commit, so retry with the same command.
    #[error("not committed in time: {0}")]
    Timeout(String),
    #[error("the group is unavailable: {0}")]
    Unavailable(String),
    /// Too many writes in flight at the region asked; retry after a moment.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// Not a write the sender may make, or not one at all (`kind` says which): retrying it
    /// as it is changes nothing.
    #[error("refused: {reason}")]
    Refused { kind: fault::Kind, reason: String },
}

impl WriteError {
    /// A refusal of kind `kind`.
    pub fn refused(kind: fault::Kind, reason: impl Into<String>) -> Self {
        WriteError::Refused {
            kind,
            reason: reason.into(),
        }
    }
}

impl fault::Fault for WriteError {
    fn kind(&self) -> fault::Kind {
        match self {
            WriteError::NoLeader(_) | WriteError::Unavailable(_) => fault::Kind::Unavailable,
            WriteError::Timeout(_) => fault::Kind::Timeout,
            WriteError::Overloaded(_) => fault::Kind::Overloaded,
            WriteError::Refused { kind, .. } => *kind,
        }
    }
}

/// A stored row: its key and its new value, or `None` where it was deleted.
pub type Row = (Vec<u8>, Option<Vec<u8>>);

/// Rows with their keys and values as byte strings: bincode encodes them as it does byte
/// sequences, at the cost of a copy rather than of a call per byte.
mod row_bytes {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_bytes::{ByteBuf, Bytes};

    use super::Row;

    pub fn serialize<S: Serializer>(rows: &[Row], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(rows.len()))?;
        for (key, value) in rows {
            seq.serialize_element(&(Bytes::new(key), value.as_deref().map(Bytes::new)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Row>, D::Error> {
        let rows: Vec<(ByteBuf, Option<ByteBuf>)> = Vec::deserialize(d)?;
        Ok(rows
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.map(ByteBuf::into_vec)))
            .collect())
    }
}

/// What a subscriber asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The last version the subscriber has applied (0: it holds nothing).
    pub from_version: u64,
}

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FeedMessage {
    /// A part of every mirrored row as of `version`. The parts of one snapshot arrive in a row;
    /// the subscriber replaces its rows with them when the `last` one has come.
    Snapshot {
        version: u64,
        #[serde(with = "row_bytes")]
        rows: Vec<Row>,
        last: bool,
    },
    /// The rows changed at `version`.
    Changes {
        version: u64,
        #[serde(with = "row_bytes")]
        rows: Vec<Row>,
    },
    /// Nothing to send; the core has applied up to `version`.
    Heartbeat { version: u64 },
}

impl FeedMessage {
    pub fn version(&self) -> u64 {
        match self {
            FeedMessage::Snapshot { version, .. }
            | FeedMessage::Changes { version, .. }
            | FeedMessage::Heartbeat { version } => *version,
        }
    }
}

/// A candidate's question to a voter: would it vote for `candidate`, whose log ends at
/// `last_log`?
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct PreVote {
    pub candidate: NodeId,
    pub last_log: Option<LogId<NodeId>>,
}
