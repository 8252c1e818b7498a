//! Consensus between core regions: openraft (storage v2) with the log in redb, the state machine
//! in the application (`App`), and Raft RPCs over the mesh transport.
//!
//! Commands are opaque bytes (`Payload`) here; the application gives them meaning. A write sent
//! to any member reaches the leader: a follower forwards it over the transport, and a caller
//! that retries the same command after a lost reply is deduplicated by the application.
//!
//! # Timing (defaults, for inter-region round trips up to 250 ms)
//!
//! - heartbeat every 300 ms. openraft also gives each AppendEntries exactly one heartbeat
//!   interval to come back, so it must exceed the slowest round trip (250 ms) plus the
//!   follower's fsync; a message carries at most 256 KiB of entries for the same reason;
//! - election timeout drawn from 350–450 ms, anew for every try. A voter also honours the
//!   lease of the leader it heard (the maximum election timeout, 450 ms), and looks to stand
//!   when lease and election timeout have both passed since a leader was last heard: 800–900
//!   ms, nearly three heartbeats, so a late heartbeat or two do not depose a healthy leader. It
//!   stands only after a pre-vote (`stand.rs`);
//! - after a leader dies: a voter stands, one round trip wins the vote, one more sends each
//!   voter what it lacks and commits the new leader's first entry (`network.rs`), and the
//!   writes made meanwhile commit in the next. With 200 ms round trips writes flow again in
//!   1.5 to 1.8 s (DRILLS.md).

// openraft's traits return its `StorageError`, a large type whose size is not ours to choose.
#![allow(clippy::result_large_err)]

pub mod backup;
mod log_store;
mod network;
mod rush;
mod stand;
mod state_machine;
mod submit;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::raft::AppendEntriesResponse;
use openraft::{Config, Raft, RaftMetrics, SnapshotPolicy};
use serde::{Deserialize, Serialize};

pub use log_store::{LOG, LogStore};
pub use network::{Network, SentCounts, SentEntries};
pub use state_machine::{RaftMeta, StateMachine};
pub use submit::{read, submit};

use crate::app::{App, Submissions};
use crate::certs::Role;
use crate::feed::Feed;
use crate::protocol::{
    ClusterView, Member, MemberView, Mesh, MeshRequest, MeshResponse, NodeId, Payload, WriteError,
};
use crate::tls::Peer;
use crate::transport::{Answer, Handler};
use crate::wire::Wire;

/// The members a group is formed with: voters, and learners that receive the log and never
/// vote (a region far away that should not slow commits, or one being prepared). Learners are
/// added by the first leader, once, when the group is new; later changes go through the admin
/// API. A map of members alone is a group of voters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Members {
    pub voters: BTreeMap<NodeId, Member>,
    pub learners: BTreeMap<NodeId, Member>,
}

impl From<BTreeMap<NodeId, Member>> for Members {
    fn from(voters: BTreeMap<NodeId, Member>) -> Self {
        Members {
            voters,
            learners: BTreeMap::new(),
        }
    }
}

/// Why a membership change was not made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MembershipError {
    #[error("this member does not lead; ask the leader ({0})")]
    NotLeader(String),
    #[error("{0}")]
    Refused(String),
}

/// How long a new member may take to catch up before it is made a voter.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(30);

/// How long a starting member may take to apply what its log holds committed.
const STARTUP_APPLY_TIMEOUT: Duration = Duration::from_secs(120);

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
    /// Entries in one append request at most (before this layer cuts a message by bytes).
    pub entries_per_request: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 300,
            election_min_ms: 350,
            election_max_ms: 450,
            snapshot_every_entries: 10_000,
            keep_entries: 2_000,
            // openraft's own default.
            entries_per_request: 300,
        }
    }
}

impl Timing {
    /// Whether openraft takes this timing (what `--check-config` asks before a start would).
    pub fn check(&self) -> Result<(), String> {
        self.config("check").map(|_| ())
    }

    fn config(&self, cluster: &str) -> Result<Config, String> {
        Config {
            cluster_name: cluster.to_owned(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_min_ms,
            election_timeout_max: self.election_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.keep_entries,
            max_payload_entries: self.entries_per_request,
            // A snapshot chunk per RPC: well under the transport's frame limit, and a few
            // seconds at most on a slow inter-region link.
            snapshot_max_chunk_size: 1024 * 1024,
            install_snapshot_timeout: 10_000,
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
    /// The log holds nothing while the state it was applied to holds something: the log was
    /// lost (deleted, a disk replaced). Starting would apply entries twice and let a voter
    /// vote again in terms it already voted in.
    #[error(
        "member {id}: its raft log ({log}) holds nothing, yet its store has applied entries: the log \
         was lost. Starting it now could apply entries twice and let it vote twice in one term. \
         Restore the log; or remove this member from the group at the leader \
         (DELETE /admin/v1/cluster/members/{id}), empty its data directory, start it, and add it \
         again (POST /admin/v1/cluster/members): it rejoins as a learner, from a snapshot, and \
         votes once it has caught up"
    )]
    LogLost { id: NodeId, log: String },
}

/// Answers other members' messages.
struct MeshHandler {
    raft: Raft<Mesh>,
    lag: Arc<LagTracker>,
    /// Members as configured: a message's claimed sender must be the node its certificate names.
    known: BTreeMap<NodeId, Member>,
    feed: Option<Arc<Feed>>,
    submissions: Arc<std::sync::OnceLock<Arc<dyn Submissions>>>,
    elections: Arc<stand::Elections>,
    /// This member's log: a member whose log holds nothing votes for no one.
    log: LogStore,
}

/// Why a member with an empty log grants no vote.
const EMPTY_LOG: &str = "this member's log holds nothing: it votes once it holds the group's";

impl MeshHandler {
    /// Whether this member's log holds nothing, not even the group's first membership: it is
    /// new, or it lost its data and waits to be added again (`form_group` never forms a group
    /// that has had a leader). Either way its vote would count an empty log as up to date.
    /// Whether this member's log holds nothing of the group's (empty, or only a restore's
    /// mark): it grants no vote, and says so (`EMPTY_LOG`).
    fn log_empty(&self) -> bool {
        // A log it cannot read is taken for one that holds nothing: no vote on a guess.
        self.log.holds_nothing_of_its_own().unwrap_or(true)
    }

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

    /// `check_sender` for a leader's messages (entries, snapshots), which may also come from a
    /// member this one does not know: one added after the membership this member holds (its
    /// log is old, or empty and started with the configured voters). Refused, it would never
    /// learn the membership that names that leader, and never catch up (the simulator found
    /// a member emptied and added again under a leader added at runtime: seed 21000133). Its
    /// certificate must name the core role (one issued before roles is held to the members
    /// known); it may not speak under an id known as another's, nor for another id under a
    /// name this member knows. A core certificate of the deployment's CA outside the group is
    /// trusted this far: a region retired is revoked (`revoked.txt`).
    fn check_leader(&self, peer: &str, role: Option<Role>, claimed: NodeId) -> Result<(), String> {
        // A certificate issued before roles is held to the members this one knows.
        if self.name_of(claimed).is_some() || role != Some(Role::Core) {
            return self.check_sender(peer, claimed);
        }
        match self.id_of(peer) {
            Some(id) => Err(format!(
                "{peer} speaks for node {claimed}, but it is node {id}"
            )),
            None => Ok(()),
        }
    }

    /// The id of the member named `name`, from the current membership or the configured
    /// members.
    fn id_of(&self, name: &str) -> Option<NodeId> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .nodes()
            .chain(self.known.iter())
            .find(|(_, n)| n.name == name)
            .map(|(id, _)| *id)
    }
}

impl Handler for MeshHandler {
    type Request = MeshRequest;
    type Response = MeshResponse;

    async fn handle(&self, peer: &Peer, request: MeshRequest) -> Answer<MeshResponse> {
        if let Some(role) = peer.role
            && !request.allowed_for(role)
        {
            let why = format!("{role}s may not send {}", request.kind());
            tracing::warn!(%peer, %why, "refused a mesh request");
            return Answer::Reply(MeshResponse::Refused(why));
        }
        let role = peer.role;
        let peer = &*peer.name;
        match request {
            MeshRequest::Subscribe(sub) => match &self.feed {
                Some(feed) => feed.subscribe(peer, sub.from_version),
                None => Answer::Reply(MeshResponse::Refused("this node has no feed".into())),
            },
            request => Answer::Reply(self.answer(peer, role, request).await),
        }
    }
}

impl MeshHandler {
    async fn answer(&self, peer: &str, role: Option<Role>, request: MeshRequest) -> MeshResponse {
        let refuse = |why: String| {
            tracing::warn!(%peer, %why, "refused a raft message");
            MeshResponse::Refused(why)
        };
        match request {
            MeshRequest::AppendEntries(rpc) => {
                if let Err(why) = self.check_leader(peer, role, rpc.vote.leader_id().node_id) {
                    return refuse(why);
                }
                // A leadership sends only entries of its own or of earlier ones. openraft 0.9's
                // stream of a leader just deposed may read its log after the new leader's
                // entries replaced its own there, and send them under the old vote, after an
                // entry of its own (found by the simulator, seed 6001101): taken, they would
                // leave this log with a leader's entry after another's it never held.
                let leader = *rpc.vote.leader_id();
                if rpc.entries.iter().any(|e| e.log_id.leader_id > leader) {
                    return refuse(format!(
                        "entries of a later leadership than the request's ({leader}): the \
                         sender's log changed under it"
                    ));
                }
                let r = self.raft.append_entries(rpc).await;
                if r.as_ref()
                    .is_ok_and(|r| !matches!(r, AppendEntriesResponse::HigherVote(_)))
                {
                    self.elections.heard();
                }
                MeshResponse::AppendEntries(r.map_err(|e| e.to_string()))
            }
            MeshRequest::Vote(rpc) => {
                if let Err(why) = self.check_sender(peer, rpc.vote.leader_id().node_id) {
                    return refuse(why);
                }
                if self.log_empty() {
                    return MeshResponse::Vote(Err(EMPTY_LOG.into()));
                }
                let r = self.raft.vote(rpc).await;
                if r.as_ref().is_ok_and(|r| r.vote_granted) {
                    self.elections.heard();
                }
                MeshResponse::Vote(r.map_err(|e| e.to_string()))
            }
            MeshRequest::PreVote(ask) => {
                if let Err(why) = self.check_sender(peer, ask.candidate) {
                    return refuse(why);
                }
                if self.log_empty() {
                    return MeshResponse::PreVote(false);
                }
                let me = self.raft.metrics().borrow().id;
                MeshResponse::PreVote(self.elections.would_vote(&self.raft, me, &ask))
            }
            MeshRequest::InstallSnapshot(rpc) => {
                if let Err(why) = self.check_leader(peer, role, rpc.vote.leader_id().node_id) {
                    return refuse(why);
                }
                let vote = rpc.vote;
                let r = self.raft.install_snapshot(rpc).await;
                // Refused (a deposed leader's), the answer carries the newer vote.
                if r.as_ref().is_ok_and(|r| r.vote <= vote) {
                    self.elections.heard();
                }
                MeshResponse::InstallSnapshot(r.map_err(|e| e.to_string()))
            }
            MeshRequest::View => MeshResponse::View(Box::new(view(&self.raft, &self.lag))),
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
            MeshRequest::Submit(payload) => match self.submissions.get() {
                Some(s) => MeshResponse::Write(s.submit(peer.to_owned(), payload).await),
                // Starting: the application has not said yet how it judges them.
                None => MeshResponse::Write(Err(WriteError::Unavailable(
                    "this member takes no edge writes yet".into(),
                ))),
            },
            MeshRequest::Read(payload) => match self.submissions.get() {
                Some(s) => MeshResponse::Read(s.read(peer.to_owned(), payload).await),
                None => MeshResponse::Read(Err(WriteError::Unavailable(
                    "this member takes no edge reads yet".into(),
                ))),
            },
            MeshRequest::Subscribe(_) => refuse("a subscription is a stream".into()),
        }
    }
}

/// Records when each log index was reached, so that a member's lag can be told in time: the
/// age of the oldest entry it has not acknowledged, and no more than this member has led. A new
/// leader learns what each follower holds by a binary search over its log (openraft 0.9); until
/// it ends, what it knows a follower to hold says nothing of the follower's real lag, only that
/// the leader does not know better yet.
pub struct LagTracker {
    samples: std::sync::Mutex<std::collections::VecDeque<(u64, tokio::time::Instant)>>,
    /// The term this member leads and since when.
    leading: std::sync::Mutex<Option<(u64, tokio::time::Instant)>>,
}

/// Samples kept: at one per metrics change, minutes of history at full write speed.
const LAG_SAMPLES_MAX: usize = 8_192;

impl LagTracker {
    /// The tracker, and the task that feeds it while `raft` runs.
    fn start(raft: &Raft<Mesh>) -> (Arc<Self>, tokio::task::JoinHandle<()>) {
        let tracker = Arc::new(LagTracker {
            samples: std::sync::Mutex::new(std::collections::VecDeque::new()),
            leading: std::sync::Mutex::new(None),
        });
        let mut rx = raft.metrics();
        let t = Arc::clone(&tracker);
        let task = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let (last, term, leads) = {
                    let m = rx.borrow();
                    (
                        m.last_log_index,
                        m.current_term,
                        m.current_leader == Some(m.id),
                    )
                };
                let now = tokio::time::Instant::now();
                if let Some(i) = last {
                    t.record(i, now);
                }
                let mut leading = t.leading.lock().unwrap_or_else(|e| e.into_inner());
                match (*leading, leads) {
                    (Some((held, _)), true) if held == term => {}
                    (_, true) => *leading = Some((term, now)),
                    (_, false) => *leading = None,
                }
            }
        });
        (tracker, task)
    }

    fn record(&self, index: u64, at: tokio::time::Instant) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.back().is_none_or(|(i, _)| *i < index) {
            s.push_back((index, at));
            if s.len() > LAG_SAMPLES_MAX {
                s.pop_front();
            }
        }
    }

    /// Milliseconds since the first entry after `matched` was appended here, or, for a leader
    /// of `term`, since it began to lead if that is less (0 when the term is newer than what
    /// the tracker has seen yet).
    fn lag_ms(&self, matched: u64, term: Option<u64>) -> u64 {
        let leading = *self.leading.lock().unwrap_or_else(|e| e.into_inner());
        let led = match (term, leading) {
            (Some(t), Some((held, since))) if held == t => since.elapsed().as_millis() as u64,
            (Some(_), _) => 0,
            (None, _) => u64::MAX,
        };
        self.behind_ms(matched).min(led)
    }

    /// Milliseconds since the first entry after `matched` was appended here.
    fn behind_ms(&self, matched: u64) -> u64 {
        let s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        match s.iter().find(|(i, _)| *i > matched) {
            Some((_, at)) => at.elapsed().as_millis() as u64,
            None => 0,
        }
    }
}

/// The role a member shows for itself while its last vote is one it gave itself and no
/// majority granted.
const CANDIDATE: &str = "candidate";

/// Whether this member's vote is for itself and was never granted (it stood, alone or in vain).
fn stood_unanswered(m: &RaftMetrics<NodeId, Member>) -> bool {
    m.current_leader != Some(m.id) && m.vote.leader_id().node_id == m.id && !m.vote.is_committed()
}

/// The group as this member sees it.
fn view(raft: &Raft<Mesh>, lag: &LagTracker) -> ClusterView {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: std::collections::BTreeSet<NodeId> = membership.voter_ids().collect();
    let leads = (m.current_leader == Some(m.id)).then_some(m.current_term);
    let members = membership
        .nodes()
        .map(|(id, node)| {
            let role = if Some(*id) == m.current_leader {
                "leader"
            } else if *id == m.id && stood_unanswered(&m) {
                CANDIDATE
            } else if voters.contains(id) {
                "follower"
            } else {
                "learner"
            };
            let (applied_version, lag_ms) = if *id == m.id {
                (
                    m.last_applied.map(|l| l.index),
                    (Some(*id) == m.current_leader).then_some(0),
                )
            } else {
                match m.replication.as_ref().and_then(|r| r.get(id)) {
                    // A leader learns what a follower holds from its first answer: until then
                    // the lag is unknown, not as old as the log.
                    Some(matched) => {
                        let matched = matched.map(|l| l.index);
                        (matched, matched.map(|i| lag.lag_ms(i, leads)))
                    }
                    None => (None, None),
                }
            };
            MemberView {
                id: *id,
                name: node.name.clone(),
                role: role.into(),
                applied_version,
                lag_ms,
                raft_addr: node.raft_addr.clone(),
                admin_url: node.admin_url.clone(),
            }
        })
        .collect();
    ClusterView {
        leader: m
            .current_leader
            .and_then(|l| membership.get_node(&l).map(|n| n.name.clone())),
        term: m.current_term,
        version: m.last_applied.map_or(0, |l| l.index),
        members,
        answered_by: membership
            .get_node(&m.id)
            .map_or_else(|| m.id.to_string(), |n| n.name.clone()),
    }
}

/// How often every member's connection is looked at (and re-made if it closed).
const KEEP_CONNECTED_EVERY: Duration = Duration::from_secs(1);

/// Keeps a connection open to every other member, followers included, for as long as Raft
/// runs. Followers never call each other until the leader dies; the vote between them would
/// then wait for a QUIC handshake, a round trip more than a far link leaves within the vote's
/// time limit (the least election timeout: 350 ms against 2 × 220 ms).
async fn keep_connected(raft: Raft<Mesh>, wire: Wire, id: NodeId) {
    let metrics = raft.metrics();
    let mut tick = tokio::time::interval(KEEP_CONNECTED_EVERY);
    loop {
        // On the tick only: the metrics move with every commit, far more often.
        tick.tick().await;
        if metrics.has_changed().is_err() {
            return;
        }
        let others: Vec<Member> = metrics
            .borrow()
            .membership_config
            .membership()
            .nodes()
            .filter(|(n, _)| **n != id)
            .map(|(_, m)| m.clone())
            .collect();
        // A member that does not answer must not hold up the others: the handshakes go on
        // in the transport when the wait for them is cut.
        let warm = others.iter().filter_map(|m| {
            let addr = m.raft_addr.parse().ok()?;
            Some(tokio::time::timeout(
                KEEP_CONNECTED_EVERY,
                wire.warm(&m.name, addr),
            ))
        });
        futures::future::join_all(warm).await;
    }
}

/// Forms the group with `voters`: the same group whichever member does it first.
async fn initialize(raft: &Raft<Mesh>, voters: BTreeMap<NodeId, Member>) -> Result<(), String> {
    match raft.initialize(voters).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// How often a voter with an empty log asks the others whether the group exists.
const FORM_ASK_EVERY: Duration = Duration::from_millis(500);

/// A configured voter whose log is empty forms the group only once a majority of the voters
/// say that they have not formed it either, and never once one says it has. A voter whose
/// data is gone (lost, or emptied to rejoin, as `StartError::LogLost` tells operators) is then
/// added again by the leader, and waits for that: had it formed the group anew with the
/// configured voters, it would vote as one of them with an empty log, and a member with an old
/// log and an old membership could win an election over entries committed since (the
/// simulator found it: `simulator/`).
async fn form_group(raft: Raft<Mesh>, id: NodeId, voters: BTreeMap<NodeId, Member>, wire: Wire) {
    loop {
        if raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        let asks = voters.iter().filter(|(v, _)| **v != id).map(|(_, m)| {
            let wire = &wire;
            async move {
                let addr = m.raft_addr.parse().ok()?;
                match wire
                    .call(&m.name, addr, &MeshRequest::View, FORM_ASK_EVERY)
                    .await
                {
                    // Formed and past term 0: it has voted, and the leadership it voted for
                    // may have committed entries this member cannot see (a member that only
                    // granted a vote shows no leader and nothing applied). Except a member
                    // that formed the group a moment ago and stood, its vote its own and
                    // never granted, with no leader known and nothing past the group's first
                    // membership applied: new, and waiting for this member's vote, which an
                    // empty log never gives (a group stopped while forming formed again only
                    // with this; found by a test in CI).
                    Ok(MeshResponse::View(v)) => Some((
                        !v.members.is_empty() && v.term > 0 && !stood_alone(&v),
                        v.members.iter().any(|m| m.id == id),
                    )),
                    _ => None,
                }
            }
        });
        let answers: Vec<(bool, bool)> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        if let Some((_, with_me)) = answers.iter().find(|(elected, _)| *elected) {
            if !with_me {
                tracing::warn!(
                    "this member's log is empty and the group exists: waiting to be added to \
                     it (POST /admin/v1/cluster/members at the leader)"
                );
            }
            return;
        }
        let fresh = 1 + answers.len();
        if fresh > voters.len() / 2 {
            if let Err(e) = initialize(&raft, voters.clone()).await {
                tracing::error!(error = %e, "could not form the group");
            }
            return;
        }
        tokio::time::sleep(FORM_ASK_EVERY).await;
    }
}

/// Whether the member that answered `v` stood for election and no one ever led for it: its own
/// role `CANDIDATE`, no leader known, nothing applied past the group's first membership.
fn stood_alone(v: &ClusterView) -> bool {
    v.leader.is_none()
        && v.version == 0
        && v.members
            .iter()
            .any(|m| m.name == v.answered_by && m.role == CANDIDATE)
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

/// Adds the learners a group was formed with, once: when this member leads while the
/// membership is still the one the group was initialized with (its log index 0). After that
/// the membership is the operators' (a learner they removed is not added back); ends when the
/// membership has moved on or Raft stops.
async fn add_initial_learners(raft: Raft<Mesh>, id: NodeId, learners: BTreeMap<NodeId, Member>) {
    let mut rx = raft.metrics();
    loop {
        let (leads, moved_on) = {
            let m = rx.borrow_and_update();
            // Not yet initialized (or metrics not yet showing it) reads as no log id: wait.
            let moved_on = m.membership_config.log_id().is_some_and(|l| l.index > 0);
            (m.current_leader == Some(id), moved_on)
        };
        if moved_on {
            return;
        }
        if leads {
            match raft
                .change_membership(openraft::ChangeMembers::AddNodes(learners.clone()), true)
                .await
            {
                Ok(_) => {
                    tracing::info!(learners = ?learners.keys().collect::<Vec<_>>(), "added the configured learners");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not add the configured learners yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// A running member.
pub struct RaftNode {
    pub raft: Raft<Mesh>,
    pub id: NodeId,
    wire: Option<Wire>,
    serving: Option<tokio::task::JoinHandle<()>>,
    /// The tasks that run beside Raft (elections, rushes, connections, forming the group, the
    /// lag): ended at shutdown, so that the member's files are closed when it returns.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    lag: Arc<LagTracker>,
    submissions: Arc<std::sync::OnceLock<Arc<dyn Submissions>>>,
    sent: Arc<SentEntries>,
    /// The network openraft was given (it shares its state), to forget members that leave.
    network: Network,
}

impl RaftNode {
    /// Starts member `id` of a group whose initial voters are `members`, with its log in
    /// `log_path`, its state in `app`, and its traffic on `transport` (which it now serves; a
    /// group of one member needs none), where subscribers may follow `feed`. A fresh group is
    /// initialized with `members`; every member may do so, with the same list.
    pub async fn start<A: App>(
        id: NodeId,
        members: impl Into<Members>,
        log_path: &Path,
        app: Arc<A>,
        wire: Option<Wire>,
        feed: Option<Arc<Feed>>,
        timing: Timing,
    ) -> Result<Self, StartError> {
        let log = LogStore::open(log_path).map_err(|e| StartError::Log(e.to_string()))?;
        let name = log_path.display().to_string();
        Self::start_on_log(id, members, log, &name, app, wire, feed, timing).await
    }

    /// `start`, with a log already open (`name` says which, in errors): on a file, or on any
    /// redb backend (`LogStore::on_backend`, as the tests of power losses use).
    #[allow(clippy::too_many_arguments)] // `start`'s, and the log's name for its errors.
    pub async fn start_on_log<A: App>(
        id: NodeId,
        members: impl Into<Members>,
        log: LogStore,
        name: &str,
        app: Arc<A>,
        wire: Option<Wire>,
        feed: Option<Arc<Feed>>,
        timing: Timing,
    ) -> Result<Self, StartError> {
        let Members { voters, learners } = members.into();
        let known: BTreeMap<NodeId, Member> = voters
            .iter()
            .chain(&learners)
            .map(|(id, m)| (*id, m.clone()))
            .collect();
        let config = Arc::new(timing.config("tradewind").map_err(StartError::Config)?);
        let committed = log
            .committed()
            .map_err(|e| StartError::Log(e.to_string()))?;
        let empty = log
            .last_log_id()
            .map_err(|e| StartError::Log(e.to_string()))?
            .is_none();
        // The app's store may block: asked on a blocking thread, as the state machine asks it.
        let applied = if empty {
            let app = Arc::clone(&app);
            crate::sim::blocking(move || app.meta())
                .await
                .map_err(|e| StartError::Raft(e.to_string()))?
                .map_err(|e| StartError::Raft(e.to_string()))?
                .is_some()
        } else {
            false
        };
        if applied {
            return Err(StartError::LogLost {
                id,
                log: name.to_owned(),
            });
        }
        let handler_log = log.clone();
        let sent = Arc::new(SentEntries::default());
        let network = Network::new(wire.clone(), Arc::clone(&sent), log.clone());
        let tail_reader = log.clone();
        let elections = Arc::new(stand::Elections::new(log.clone(), &timing));
        let raft = Raft::new(id, config, network.clone(), log, StateMachine::new(app))
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let (lag, lag_task) = LagTracker::start(&raft);
        let mut tasks = vec![lag_task];
        if let Some(w) = &wire {
            tasks.push(rush::start(raft.clone(), tail_reader, w.clone()));
            tasks.push(tokio::spawn(keep_connected(raft.clone(), w.clone(), id)));
        }
        tasks.push(stand::start(
            raft.clone(),
            id,
            Arc::clone(&elections),
            wire.clone(),
            timing,
        ));
        let submissions = Arc::new(std::sync::OnceLock::new());
        let serving = wire.as_ref().and_then(|w| {
            w.serve(Arc::new(MeshHandler {
                raft: raft.clone(),
                lag: Arc::clone(&lag),
                known,
                feed,
                submissions: Arc::clone(&submissions),
                elections,
                log: handler_log,
            }))
        });
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        // Voters form the group (any of them may, with the same list), once they know it is
        // new (`form_group`); a learner waits to be added.
        if !initialized && voters.contains_key(&id) {
            match &wire {
                Some(w) => {
                    tasks.push(tokio::spawn(form_group(
                        raft.clone(),
                        id,
                        voters.clone(),
                        w.clone(),
                    )));
                }
                None => initialize(&raft, voters.clone())
                    .await
                    .map_err(StartError::Raft)?,
            }
        }
        if !learners.is_empty() {
            tasks.push(tokio::spawn(add_initial_learners(
                raft.clone(),
                id,
                learners,
            )));
        }
        // Entries this member knew committed before it stopped are applied before it serves:
        // a restarted region answers with all it had, never with less.
        if let Some(c) = committed {
            let mut rx = raft.metrics();
            let caught_up = tokio::time::timeout(
                STARTUP_APPLY_TIMEOUT,
                rx.wait_for(|m| m.last_applied.is_some_and(|l| l.index >= c.index)),
            )
            .await;
            if !matches!(caught_up, Ok(Ok(_))) {
                return Err(StartError::Raft(format!(
                    "could not apply the log's committed entries up to {} within {STARTUP_APPLY_TIMEOUT:?}",
                    c.index
                )));
            }
        }
        Ok(RaftNode {
            raft,
            id,
            wire,
            serving,
            tasks,
            lag,
            submissions,
            sent,
            network,
        })
    }

    /// Takes writes from nodes that are not members through `s` from now on (until then they
    /// are refused); the first call wins.
    pub fn accept_submissions(&self, s: Arc<dyn Submissions>) {
        let _ = self.submissions.set(s);
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
                    Some(l) => {
                        // A leader that dies takes its connections down only when they time
                        // out: stop waiting on it as soon as the group elects another.
                        let mut rx = self.raft.metrics();
                        tokio::select! {
                            r = self.forward(l, payload.clone(), deadline) => r,
                            _ = rx.wait_for(|m| m.current_leader != Some(l)) => {
                                Err(WriteError::NoLeader(format!("leader {l} was replaced")))
                            }
                        }
                    }
                    None => Err(WriteError::NoLeader("no leader known".into())),
                }
            };
            let result = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| {
                    Err(WriteError::Timeout(format!(
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

    /// Sends `payload` to `leader` to commit, waiting at most until the caller's `deadline`.
    async fn forward(
        &self,
        leader: NodeId,
        payload: Payload,
        deadline: tokio::time::Instant,
    ) -> Result<Payload, WriteError> {
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
        let wire = self
            .wire
            .as_ref()
            .ok_or_else(|| WriteError::NoLeader("a group of one has no other leader".into()))?;
        match wire
            .call(
                &member.name,
                addr,
                &MeshRequest::Write(payload),
                deadline.saturating_duration_since(tokio::time::Instant::now()),
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

    /// Entries this member, leading, sent its followers, those it spared them (they held them
    /// already), and the probes answered.
    pub fn entries_sent(&self) -> SentCounts {
        self.sent.counts()
    }

    /// The group as the leader sees it: asked of the leader when this member does not lead,
    /// this member's own view when the leader cannot be reached.
    pub async fn view(&self, timeout: Duration) -> ClusterView {
        let own = view(&self.raft, &self.lag);
        let m = self.metrics();
        let leader = match m.current_leader {
            Some(l) if l != self.id => m.membership_config.membership().get_node(&l).cloned(),
            _ => return own,
        };
        let (Some(leader), Some(wire)) = (leader, &self.wire) else {
            return own;
        };
        let Ok(addr) = leader.raft_addr.parse() else {
            return own;
        };
        match wire
            .call(&leader.name, addr, &MeshRequest::View, timeout)
            .await
        {
            Ok(MeshResponse::View(v)) => *v,
            _ => own,
        }
    }

    /// Adds a region: first as a learner that catches up, then, if `voter`, as a voter. Only
    /// the leader changes the membership.
    pub async fn add_member(
        &self,
        id: NodeId,
        member: Member,
        voter: bool,
    ) -> Result<(), MembershipError> {
        self.leading()?;
        self.network.forget(id);
        let added = self
            .raft
            .add_learner(id, member, false)
            .await
            .map_err(|e| self.membership_error(e))?;
        if voter {
            // A voter that holds nothing yet grants no vote (`log_empty`): made one before it
            // caught up, with a voter's log lost it can leave the group with no majority that
            // elects (the simulator found it, seed 225 of its orders). openraft's own blocking
            // wait counts a learner within its replication lag threshold (5,000 entries) as
            // caught up, so one holding nothing passes it at once.
            self.caught_up(id, added.log_id.index).await?;
            // One voter added to the membership as it stands when the change applies (not a
            // whole set computed here, which a concurrent change could make stale).
            self.raft
                .change_membership(
                    openraft::ChangeMembers::AddVoterIds([id].into_iter().collect()),
                    false,
                )
                .await
                .map_err(|e| self.membership_error(e))?;
        }
        Ok(())
    }

    /// Waits, at most `LEARNER_CATCH_UP`, until learner `id` holds the log up to `index`.
    async fn caught_up(&self, id: NodeId, index: u64) -> Result<(), MembershipError> {
        let mut rx = self.raft.metrics();
        let waited = tokio::time::timeout(
            LEARNER_CATCH_UP,
            rx.wait_for(|m| {
                m.current_leader != Some(self.id)
                    || m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten())
                        .is_some_and(|l| l.index >= index)
            }),
        )
        .await;
        match waited {
            Ok(Ok(m)) if m.current_leader == Some(self.id) => Ok(()),
            Ok(_) => Err(MembershipError::NotLeader(
                "this member stopped leading while the new member caught up".into(),
            )),
            Err(_) => Err(MembershipError::Refused(format!(
                "node {id} did not catch up within {LEARNER_CATCH_UP:?}: it stays a learner; \
                 ask again once it is reachable"
            ))),
        }
    }

    /// Removes a region from the group (voter or learner).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), MembershipError> {
        self.leading()?;
        let membership = self.metrics().membership_config.membership().clone();
        if !membership.nodes().any(|(n, _)| *n == id) {
            return Err(MembershipError::Refused(format!("{id} is not a member")));
        }
        if membership.voter_ids().all(|v| v == id) {
            return Err(MembershipError::Refused(
                "the last voter cannot be removed".into(),
            ));
        }
        if membership.voter_ids().any(|v| v == id) {
            // As for adding: one voter taken out of the membership as it then stands.
            self.raft
                .change_membership(
                    openraft::ChangeMembers::RemoveVoters([id].into_iter().collect()),
                    false,
                )
                .await
                .map_err(|e| self.membership_error(e))?;
            if id == self.id {
                // Out of the membership (a voter is removed with its node), it steps down: it
                // must change nothing more.
                return Ok(());
            }
        }
        self.raft
            .change_membership(
                openraft::ChangeMembers::RemoveNodes([id].into_iter().collect()),
                false,
            )
            .await
            .map_err(|e| self.membership_error(e))?;
        self.network.forget(id);
        Ok(())
    }

    fn leading(&self) -> Result<(), MembershipError> {
        let m = self.metrics();
        match m.current_leader {
            // openraft 0.9 goes on leading for a while once it has left the voters, and a
            // change made meanwhile would be made by a member the group no longer counts.
            Some(l) if l == self.id && !m.membership_config.voter_ids().any(|v| v == l) => {
                Err(MembershipError::NotLeader(
                    "this member has left the voters and is stepping down".into(),
                ))
            }
            Some(l) if l == self.id => Ok(()),
            Some(l) => Err(MembershipError::NotLeader(
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map_or_else(|| format!("node {l}"), |n| n.admin_url.clone()),
            )),
            None => Err(MembershipError::NotLeader("none elected yet".into())),
        }
    }

    fn membership_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, Member>>,
    ) -> MembershipError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                MembershipError::NotLeader(
                    f.leader_node
                        .map_or_else(|| "unknown".into(), |n| n.admin_url),
                )
            }
            other => MembershipError::Refused(other.to_string()),
        }
    }

    /// Stops Raft, the tasks beside it and the transport; returns once those tasks are gone.
    /// openraft's state-machine worker and the transport's connection tasks let go of the
    /// member's files a moment later.
    pub async fn shutdown(self) {
        let _ = self.raft.shutdown().await;
        if let Some(w) = &self.wire {
            w.close();
        }
        for task in self.serving.into_iter().chain(self.tasks) {
            task.abort();
            let _ = task.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{LagTracker, Payload};

    /// Logs written before payloads were byte strings must read the same.
    #[test]
    fn a_payload_encodes_as_the_byte_sequence_it_was() {
        let bytes: Vec<u8> = (0..=255).cycle().take(1_000).collect();
        let log = super::log_store::LOG;
        let now = codec::encode_as(log, &Payload(bytes.clone())).unwrap();
        assert_eq!(now, codec::encode_as(log, &bytes).unwrap());
        let back: Payload = codec::decode_as(log, &now).unwrap();
        assert_eq!(back.0, bytes);
    }

    #[test]
    fn lag_is_the_age_of_the_first_entry_missing_and_at_most_the_time_led() {
        let t = LagTracker {
            samples: std::sync::Mutex::new(std::collections::VecDeque::new()),
            leading: std::sync::Mutex::new(None),
        };
        let now = tokio::time::Instant::now();
        t.record(10, now - Duration::from_secs(30));
        t.record(20, now - Duration::from_secs(1));
        // Matched 15: the first entry after it (20) arrived a second ago.
        assert!((1_000..1_500).contains(&t.lag_ms(15, None)));
        assert!(t.lag_ms(5, None) >= 30_000);
        assert_eq!(t.lag_ms(20, None), 0);
        // A leader of two seconds knows no follower to be further behind than that.
        *t.leading.lock().unwrap() = Some((3, now - Duration::from_secs(2)));
        assert!((2_000..2_500).contains(&t.lag_ms(5, Some(3))));
        assert!((1_000..1_500).contains(&t.lag_ms(15, Some(3))));
        // A term the tracker has not seen begin yet: the leader has just begun.
        assert_eq!(t.lag_ms(5, Some(4)), 0);
    }
}
