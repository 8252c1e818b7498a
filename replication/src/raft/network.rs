//! openraft's network over the mesh transport: Raft RPCs travel as `MeshRequest` frames over
//! QUIC with mutual TLS, one stream per RPC.
//!
//! Four things happen to AppendEntries on the way, all invisible to openraft's protocol:
//!
//! - **A new leader sends a member only what it lacks, at once, when the member's vote said
//!   where its log ended.** A member granting a vote reports its last log id V; it cannot gain
//!   an entry afterwards but from this leader (a leader it votes for later has a greater vote,
//!   and this leader's messages would be answered with it). When the leader's own log holds V, the member holds every
//!   entry up to V (Raft's log matching) and none after: a request is answered without a
//!   message when it lies wholly at or below V (`Success`) or starts above it (`Conflict`),
//!   and the one that spans V is sent from V on. openraft's search for the end of the member's
//!   log then costs no round trip, and over a 200 ms link a failover is one round trip shorter
//!   than with the probes below (DRILLS.md). openraft takes an answer without a message as the
//!   member's word at that moment; the member gave it with its vote, a moment before.
//! - **Otherwise (a learner, a voter holding a deposed leader's entries), a new leader's probes
//!   carry no entries the member already holds.** openraft 0.9 finds
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
//! - **openraft's empty requests to a member in another region carry the entries written
//!   meanwhile** (`send_empty`), and its next request for them is answered from the
//!   acknowledgement (`Search::ahead`): openraft 0.9 sends word of each new commit index in a
//!   message of its own before them, which cost a round trip per commit whenever the far
//!   follower made the majority.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{EntryPayload, LeaderId, LogId, Vote};

use super::log_store::LogStore;
use crate::protocol::{Member, Mesh, MeshRequest, MeshResponse, NodeId};
use crate::transport::TransportError;
use crate::wire::Wire;

/// Makes one `Peer` per target node. A group of one member has no transport: it never calls
/// anyone.
#[derive(Clone)]
pub struct Network {
    wire: Option<Wire>,
    sent: Arc<SentEntries>,
    /// This member's own log, to look up the entry at the index where a member's log ended.
    log: LogStore,
    /// Per member, what this member's latest leadership knows of where its log ends. openraft
    /// asks for votes and replicates through different `Peer`s, and makes new ones for a
    /// member whenever the membership changes, so they share it here.
    searches: Arc<Mutex<HashMap<NodeId, Search>>>,
}

impl Network {
    pub fn new(wire: Option<Wire>, sent: Arc<SentEntries>, log: LogStore) -> Self {
        Network {
            wire,
            sent,
            log,
            searches: Arc::default(),
        }
    }

    /// Forgets what is known of where `target`'s log ends: called when it leaves the group and
    /// before it joins, so that a member removed, wiped and added again under the same id in
    /// one leadership is never answered from what its earlier self held.
    pub fn forget(&self, target: NodeId) {
        if let Ok(mut all) = self.searches.lock() {
            all.remove(&target);
        }
    }
}

/// What one leadership of this member knows of where a member's log ends.
#[derive(Clone, Copy, Debug)]
struct Search {
    leader: LeaderId<NodeId>,
    /// The member's last log id when it granted this leadership its vote (`None`: no vote
    /// heard).
    voted: Option<Option<LogId<NodeId>>>,
    /// The end was found (or left to openraft's own search): requests go whole. From then on
    /// the member's log may have grown past `voted`.
    found: bool,
    /// The last entry the member acknowledged in a message that carried more than openraft
    /// asked (entries on an empty request): it holds this leader's log up to there.
    ahead: Option<LogId<NodeId>>,
    /// Messages with entries on their way to the member. An empty request carries entries only
    /// when there are none, so that no entry is sent twice over a long link at once (which
    /// would only queue behind each other there).
    sending: u32,
    /// The last entry openraft was told the member holds (its `matching`).
    acked: Option<LogId<NodeId>>,
    /// The round trip to the member, as last measured.
    rtt: Option<Duration>,
}

impl Search {
    fn new(leader: LeaderId<NodeId>) -> Self {
        Search {
            leader,
            voted: None,
            found: false,
            ahead: None,
            sending: 0,
            acked: None,
            rtt: None,
        }
    }
}

/// One message with entries on its way to a member, counted in its `Search::sending` until
/// dropped (answered, failed, or given up by openraft).
struct Sending<'a> {
    peer: &'a Peer,
    leader: LeaderId<NodeId>,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.peer
            .update(self.leader, |s| s.sending = s.sending.saturating_sub(1));
    }
}

/// What this member, leading, sent its followers (all of them, since it started).
#[derive(Debug, Default)]
pub struct SentEntries {
    /// Entries carried in AppendEntries messages.
    sent: AtomicU64,
    /// Entries the follower was found to hold already (from its vote or a probe), so not sent.
    spared: AtomicU64,
    /// Probes that came back answered.
    probes: AtomicU64,
    /// Entries carried on openraft's empty requests (also counted in `sent`).
    carried: AtomicU64,
}

/// `SentEntries` read at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentCounts {
    pub sent: u64,
    pub spared: u64,
    pub probes: u64,
    pub carried: u64,
}

impl SentEntries {
    pub fn counts(&self) -> SentCounts {
        SentCounts {
            sent: self.sent.load(Ordering::Relaxed),
            spared: self.spared.load(Ordering::Relaxed),
            probes: self.probes.load(Ordering::Relaxed),
            carried: self.carried.load(Ordering::Relaxed),
        }
    }

    fn spare(&self, n: usize) {
        self.spared.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Most bytes of entries one AppendEntries carries (at least one entry is always sent).
pub const MESSAGE_ENTRIES_MAX_BYTES: usize = 256 * 1024;

/// The connection to one member.
pub struct Peer {
    wire: Option<Wire>,
    target: NodeId,
    member: Member,
    sent: Arc<SentEntries>,
    log: LogStore,
    searches: Arc<Mutex<HashMap<NodeId, Search>>>,
}

/// Entries ride on openraft's empty messages to a member at least this far away, there and
/// back: beyond the work of reading them twice. Over loopback that work cost order commits up
/// to a tenth (BENCHMARKS.md); between regions, even near ones, a round trip costs far more.
const CARRY_MIN_RTT: Duration = Duration::from_millis(5);

/// How far entries may be sent to a member ahead of openraft's stream (rushed by `rush.rs`, or
/// carried on an empty message): no further than the furthest that another member keeping up
/// holds (`others`: what each has acknowledged; keeping up: at least what is `committed`).
/// Entries sent ahead reach a far member before the near ones' streams bring them, and a far
/// member whose log is ahead of every near one's is the only member that can win the election
/// when the leader dies: every write would then cross the long link. `None` when no other
/// member keeps up (down, or none): nothing holds the member back, as it is then the one
/// commits wait for.
pub(super) fn ahead_upto(
    committed: Option<u64>,
    others: impl IntoIterator<Item = Option<u64>>,
) -> Option<u64> {
    others
        .into_iter()
        .flatten()
        .filter(|held| committed.is_none_or(|c| *held >= c))
        .max()
}

/// A member this far away, there and back, or further, is far: entries are rushed to it
/// (`rush.rs`), and those sent to it ahead of the stream wait for nearer members (`ahead_upto`).
pub(super) const FAR: Duration = Duration::from_millis(50);

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

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Peer {
        Peer {
            wire: self.wire.clone(),
            target,
            member: node.clone(),
            sent: Arc::clone(&self.sent),
            log: self.log.clone(),
            searches: Arc::clone(&self.searches),
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
        let Some(wire) = &self.wire else {
            return Err(RPCError::Unreachable(Unreachable::new(&Remote(
                "this member has no transport (a group of one)".into(),
            ))));
        };
        match wire.call(&self.member.name, addr, &request, timeout).await {
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

/// Where a member's log ends against a request `prev`, `entries`, from the last log id `voted`
/// it reported when it granted this leadership its vote. `leader_at(i)` is the leader's own
/// entry at index `i`, asked only when `i` lies past the request.
#[derive(Debug, PartialEq, Eq)]
enum VotedEnd {
    /// The member lacks the request's `prev`: the request would conflict.
    BeforePrev,
    /// The member holds the leader's log up to this entry (from the start: `None`), and nothing
    /// after it.
    Held(Option<LogId<NodeId>>),
    /// The member's last entry is not the leader's at that index (it holds entries of a
    /// deposed leader the log lost): not known from the vote.
    Unknown,
}

fn voted_end(
    prev: Option<LogId<NodeId>>,
    entries: &[openraft::Entry<Mesh>],
    voted: Option<LogId<NodeId>>,
    leader_at: impl FnOnce(u64) -> Option<LogId<NodeId>>,
) -> VotedEnd {
    let Some(v) = voted else {
        // An empty log holds nothing but the very start.
        return match prev {
            None => VotedEnd::Held(None),
            Some(_) => VotedEnd::BeforePrev,
        };
    };
    if prev.is_some_and(|p| p.index > v.index) {
        return VotedEnd::BeforePrev;
    }
    let last = entries.last().map(|e| e.log_id).or(prev);
    let leaders = if prev.is_some_and(|p| p.index == v.index) {
        prev
    } else if let Some(e) = entries.iter().find(|e| e.log_id.index == v.index) {
        Some(e.log_id)
    } else if last.is_none_or(|l| l.index < v.index) {
        leader_at(v.index)
    } else {
        None
    };
    if leaders == Some(v) {
        VotedEnd::Held(Some(v))
    } else {
        VotedEnd::Unknown
    }
}

impl Peer {
    /// What the leadership of `vote` knows of where this member's log ends.
    fn search(&self, vote: &Vote<NodeId>) -> Search {
        let leader = *vote.leader_id();
        let known = self
            .searches
            .lock()
            .ok()
            .and_then(|all| all.get(&self.target).copied());
        known
            .filter(|s| s.leader == leader)
            .unwrap_or(Search::new(leader))
    }

    /// Updates what `leader` knows. A later leadership's record replaces an earlier's, and is
    /// not replaced by it (a vote answered late).
    fn update(&self, leader: LeaderId<NodeId>, f: impl FnOnce(&mut Search)) {
        if let Ok(mut all) = self.searches.lock() {
            let s = all.entry(self.target).or_insert(Search::new(leader));
            if s.leader < leader {
                *s = Search::new(leader);
            }
            if s.leader == leader {
                f(s);
            }
        }
    }

    /// How far entries may go ahead of the stream to this member, `rtt` away (`ahead_upto`),
    /// judged by what the members nearer to `leader` acknowledged to it; `None`: no bound. Only
    /// a far member is held back (`FAR`): near ones are the ones it waits for. (Learners count
    /// as others too: this layer does not know who votes.)
    fn others_upto(
        &self,
        leader: LeaderId<NodeId>,
        committed: Option<LogId<NodeId>>,
        rtt: Duration,
    ) -> Option<u64> {
        if rtt < FAR {
            return None;
        }
        let all = self.searches.lock().ok()?;
        let others = all
            .iter()
            .filter(|(t, s)| {
                **t != self.target && s.leader == leader && s.rtt.is_some_and(|r| r < rtt)
            })
            .map(|(_, s)| s.acked.max(s.ahead).map(|l| l.index));
        ahead_upto(committed.map(|c| c.index), others)
    }

    /// Counts a message with entries on its way to the member until the guard is dropped.
    fn sending(&self, leader: LeaderId<NodeId>) -> Sending<'_> {
        self.update(leader, |s| s.sending += 1);
        Sending { peer: self, leader }
    }

    /// Drops from `rpc` the entries the member holds, all up to `held`, and answers `Success`
    /// if that was all of them.
    fn skip_held(
        &self,
        rpc: &mut AppendEntriesRequest<Mesh>,
        held: Option<LogId<NodeId>>,
    ) -> Option<AppendEntriesResponse<NodeId>> {
        let h = held.filter(|h| rpc.prev_log_id.is_none_or(|p| p.index < h.index))?;
        let all = rpc.entries.len();
        rpc.entries.retain(|e| e.log_id.index > h.index);
        self.sent.spare(all - rpc.entries.len());
        if rpc.entries.is_empty() {
            return Some(AppendEntriesResponse::Success);
        }
        rpc.prev_log_id = Some(h);
        None
    }

    /// While this leadership has not found where the member's log ends: probes in place of
    /// `rpc` (see the module docs), and their answer for `rpc`. `None`: send `rpc` itself.
    async fn probe(
        &self,
        rpc: &AppendEntriesRequest<Mesh>,
        option: &RPCOption,
    ) -> Rpc<Option<AppendEntriesResponse<NodeId>>> {
        let vote = rpc.vote;
        // Entries of earlier terms: the range's first ones (terms only grow along a log).
        let earlier = rpc
            .entries
            .iter()
            .take_while(|e| e.log_id.leader_id.term < vote.leader_id().term)
            .map(|e| e.log_id)
            .collect::<Vec<_>>();
        let Some(top) = earlier.last().copied() else {
            // Only this term's entries: the member cannot hold them yet.
            self.update(*vote.leader_id(), |s| s.found = true);
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
            if answer.is_ok() {
                self.sent.probes.fetch_add(1, Ordering::Relaxed);
            }
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
            self.update(*vote.leader_id(), |s| s.found = true);
            return Err(RPCError::Network(NetworkError::new(&Remote(format!(
                "{} holds none of {} to {top}; the entries go whole from now on",
                self.member.name,
                points.last().unwrap_or(&top)
            )))));
        };
        if held != top && lacking {
            // A probe above it found the follower lacking: the end is between.
            self.update(*vote.leader_id(), |s| s.found = true);
        }
        self.sent.spare(
            rpc.entries
                .iter()
                .take_while(|e| e.log_id.index <= held.index)
                .count(),
        );
        Ok(Some(
            if rpc.entries.last().map(|e| e.log_id) == Some(held) {
                AppendEntriesResponse::Success
            } else {
                AppendEntriesResponse::PartialSuccess(Some(held))
            },
        ))
    }

    /// openraft's request, answered from what this leadership knows of the member where it
    /// can be, sent from where the member's log ends otherwise (see the module docs).
    async fn append(
        &self,
        mut rpc: AppendEntriesRequest<Mesh>,
        option: &RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let search = self.search(&rpc.vote);
        let leader = *rpc.vote.leader_id();
        if rpc.entries.is_empty() {
            return self.send_empty(rpc, search, option).await;
        }
        let asked_prev = rpc.prev_log_id;
        if let Some(r) = self.skip_held(&mut rpc, search.ahead) {
            return Ok(r);
        }
        if !search.found {
            let end = match search.voted {
                // A point read of this member's own log (its page cache, in practice): too short
                // to be worth a blocking thread.
                Some(voted) => voted_end(rpc.prev_log_id, &rpc.entries, voted, |index| {
                    self.log.log_id_at(index).ok().flatten()
                }),
                None => VotedEnd::Unknown,
            };
            match end {
                VotedEnd::BeforePrev => return Ok(AppendEntriesResponse::Conflict),
                VotedEnd::Held(held) => {
                    if let Some(r) = self.skip_held(&mut rpc, held) {
                        return Ok(r);
                    }
                    // What follows goes to the member: its log grows past `voted`.
                    self.update(leader, |s| s.found = true);
                }
                VotedEnd::Unknown => {
                    if let Some(r) = self.probe(&rpc, option).await? {
                        return Ok(r);
                    }
                }
            }
        }
        // At most a message's worth, the first entry always.
        let keep = message_len(&rpc.entries);
        let cut = (keep < rpc.entries.len()).then(|| rpc.entries[keep - 1].log_id);
        rpc.entries.truncate(keep);
        self.sent.sent.fetch_add(keep as u64, Ordering::Relaxed);
        let moved = rpc.prev_log_id != asked_prev;
        let _sending = self.sending(leader);
        match (self.send_entries(rpc, option).await?, cut) {
            (AppendEntriesResponse::Success, Some(last_sent)) => {
                Ok(AppendEntriesResponse::PartialSuccess(Some(last_sent)))
            }
            (r, _) => self.answer_moved(leader, r, moved),
        }
    }

    /// The round trip to the member, as the open connection measures it (recorded for the
    /// other members' `others_upto`).
    async fn rtt(&self, leader: LeaderId<NodeId>) -> Option<Duration> {
        let (Some(wire), Ok(addr)) = (&self.wire, self.member.raft_addr.parse()) else {
            return None;
        };
        let rtt = wire.rtt(&self.member.name, addr).await;
        if rtt.is_some() {
            self.update(leader, |s| s.rtt = rtt);
        }
        rtt
    }

    /// The member's answer `r` to a request whose `prev` this layer `moved` from openraft's. A
    /// conflict there says nothing of openraft's own `prev` and must not reach it as if it did:
    /// the member lacks what this leadership knew it held (it lost its log, or was replaced),
    /// so that knowledge is dropped and openraft asks again.
    fn answer_moved(
        &self,
        leader: LeaderId<NodeId>,
        r: AppendEntriesResponse<NodeId>,
        moved: bool,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        if moved && matches!(r, AppendEntriesResponse::Conflict) {
            self.update(leader, |s| *s = Search::new(leader));
            return Err(RPCError::Network(NetworkError::new(&Remote(format!(
                "{} lacks entries this leader knew it held; asking again",
                self.member.name
            )))));
        }
        Ok(r)
    }

    /// An empty request (openraft's heartbeat, or its word of a new commit index) to a member
    /// over a link between regions (`CARRY_MIN_RTT`) carries, once the member's end is found, the entries the leader has
    /// after what the member holds. openraft 0.9 sends word of a commit on its own, a round trip
    /// before the entries written meanwhile (DRILLS.md); so they go with it, and openraft's
    /// request for them is answered from the acknowledgement (`Search::ahead`). Over loopback
    /// the round trip costs less than reading the entries twice (BENCHMARKS.md).
    async fn send_empty(
        &self,
        mut rpc: AppendEntriesRequest<Mesh>,
        search: Search,
        option: &RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let leader = *rpc.vote.leader_id();
        let asked_prev = rpc.prev_log_id;
        let mut carried = None;
        let mut _sending = None;
        if let (true, 0, Some(prev), Some(rtt)) = (
            search.found,
            search.sending,
            rpc.prev_log_id.max(search.ahead),
            self.rtt(leader).await.filter(|r| *r >= CARRY_MIN_RTT),
        ) {
            let log = self.log.clone();
            let read = crate::sim::blocking(move || {
                log.entries(prev.index..u64::MAX, MESSAGE_ENTRIES_MAX_BYTES)
            })
            .await;
            // The log still holds `prev` (not purged past it, nor rewritten by a newer leader
            // since this one stepped down), and only this leadership's entries or older go.
            if let Ok(Ok(read)) = read
                && read.first().is_some_and(|e| e.log_id == prev)
            {
                let upto = self.others_upto(leader, rpc.leader_commit, rtt);
                let mut more: Vec<_> = read
                    .into_iter()
                    .skip(1)
                    .take_while(|e| e.log_id.leader_id.term <= leader.term)
                    .take_while(|e| upto.is_none_or(|u| e.log_id.index <= u))
                    .collect();
                more.truncate(message_len(&more));
                if let Some(last) = more.last() {
                    carried = Some(last.log_id);
                    self.sent
                        .sent
                        .fetch_add(more.len() as u64, Ordering::Relaxed);
                    self.sent
                        .carried
                        .fetch_add(more.len() as u64, Ordering::Relaxed);
                    rpc.prev_log_id = Some(prev);
                    rpc.entries = more;
                    _sending = Some(self.sending(leader));
                }
            }
        }
        let moved = rpc.prev_log_id != asked_prev;
        let r = self.send_entries(rpc, option).await?;
        if let (AppendEntriesResponse::Success, Some(last)) = (&r, carried) {
            self.update(leader, |s| s.ahead = s.ahead.max(Some(last)));
        }
        self.answer_moved(leader, r, moved)
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
        rpc: AppendEntriesRequest<Mesh>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        let leader = *rpc.vote.leader_id();
        let asked_last = rpc.entries.last().map(|e| e.log_id).or(rpc.prev_log_id);
        // openraft asks below what it was told the member holds only when it started over
        // with the member (removed and added again): what this leadership knew is void.
        if self
            .search(&rpc.vote)
            .acked
            .is_some_and(|a| rpc.prev_log_id.is_none_or(|p| p.index < a.index))
        {
            self.update(leader, |s| *s = Search::new(leader));
        }
        let r = self.append(rpc, &option).await;
        let acked = match &r {
            Ok(AppendEntriesResponse::Success) => asked_last,
            Ok(AppendEntriesResponse::PartialSuccess(upto)) => *upto,
            _ => None,
        };
        if acked.is_some() {
            self.update(leader, |s| s.acked = s.acked.max(acked));
        }
        r
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<Mesh>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        // A snapshot moves the member's log past where its vote said it ended: from now on
        // nothing is answered from the vote, and requests go whole (found by the simulator,
        // seed 2: a member that voted with its log at 137, then took a snapshot up to 242, was
        // answered "conflict" at 242, which openraft had just been told it held).
        self.update(*rpc.vote.leader_id(), |s| s.found = true);
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
        let leader = *rpc.vote.leader_id();
        let r = match self.call(MeshRequest::Vote(rpc), &option).await? {
            MeshResponse::Vote(r) => self.remote(r)?,
            _ => return self.unexpected(),
        };
        if r.vote_granted && *r.vote.leader_id() == leader {
            self.update(leader, |s| s.voted = Some(r.last_log_id));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use super::{VotedEnd, ahead_upto, voted_end};
    use crate::protocol::{Mesh, NodeId};

    #[test]
    fn entries_go_ahead_no_further_than_another_member_keeping_up_holds() {
        // Three members: the far follower waits for the near one, which keeps up.
        assert_eq!(ahead_upto(Some(40), [Some(42)]), Some(42));
        // Five: the furthest of those that keep up; one behind the commits (down, or slow)
        // and one that acknowledged nothing do not hold anyone back.
        assert_eq!(
            ahead_upto(Some(40), [Some(41), Some(30), None, Some(45)]),
            Some(45)
        );
        // The near follower is down (behind the commits): nothing holds the far one back,
        // as the commits now wait for it.
        assert_eq!(ahead_upto(Some(40), [Some(30)]), None);
        assert_eq!(ahead_upto(Some(40), [None]), None);
        // Two members, or nothing committed yet.
        assert_eq!(ahead_upto(Some(40), []), None);
        assert_eq!(ahead_upto(None, [Some(3)]), Some(3));
    }

    fn id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// Entries `from..=to`, of `term` up to `change` and of `term + 1` after it.
    fn entries(from: u64, to: u64, term: u64, change: u64) -> Vec<Entry<Mesh>> {
        (from..=to)
            .map(|i| Entry {
                log_id: id(if i <= change { term } else { term + 1 }, i),
                payload: EntryPayload::Blank,
            })
            .collect()
    }

    fn never(_: u64) -> Option<LogId<NodeId>> {
        panic!("the leader's log is asked only past the request")
    }

    #[test]
    fn a_request_is_placed_against_where_the_voter_log_ended() {
        let e = entries(11, 20, 2, 20);
        // At, below or inside the request: held up to it.
        for v in [20, 15, 10] {
            assert_eq!(
                voted_end(Some(id(2, 10)), &e, Some(id(2, v)), never),
                VotedEnd::Held(Some(id(2, v)))
            );
        }
        // The request starts past it: the voter lacks `prev`.
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, Some(id(2, 9)), never),
            VotedEnd::BeforePrev
        );
        // An empty log holds only a request from the start.
        assert_eq!(voted_end(None, &e, None, never), VotedEnd::Held(None));
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, None, never),
            VotedEnd::BeforePrev
        );
    }

    #[test]
    fn past_the_request_the_leader_log_is_asked() {
        let e = entries(11, 20, 2, 20);
        let leader = |i| Some(id(3, i));
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, Some(id(3, 30)), leader),
            VotedEnd::Held(Some(id(3, 30)))
        );
        // The leader holds another entry there, or none: not known.
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, Some(id(2, 30)), leader),
            VotedEnd::Unknown
        );
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, Some(id(2, 30)), |_| None),
            VotedEnd::Unknown
        );
    }

    #[test]
    fn a_voter_holding_a_deposed_leader_entries_is_not_known() {
        // The leader's entries turn to term 3 after 15; the voter's 18 is of term 2.
        let e = entries(11, 20, 2, 15);
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, Some(id(2, 18)), never),
            VotedEnd::Unknown
        );
        assert_eq!(
            voted_end(Some(id(2, 10)), &e, Some(id(2, 15)), never),
            VotedEnd::Held(Some(id(2, 15)))
        );
    }
}
