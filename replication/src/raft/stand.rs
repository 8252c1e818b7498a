//! When a voter stands for election: on time, and only when a majority would vote for it.
//!
//! openraft 0.9 looks at its election timer on a tick, every 1.5 heartbeats (450 ms), and has no
//! pre-vote. So a follower stood up to 450 ms late, and over long links the follower whose log
//! was behind (the far region's, which the old leader reached last) often stood first: refused
//! by the others for its log, it still held its own vote in the new term, refused theirs, and
//! elections split round after round (DRILLS.md: leaders elected after 2.5 to 5 s). openraft's
//! own elections are therefore off, and this module stands instead:
//!
//! - a voter stands once it has heard no leader for the lease (the maximum election timeout)
//!   and its election timeout, drawn anew for every try; it looks every `TICK`;
//! - first it asks the other voters whether they would vote for it (`PreVote`). One would if it
//!   has heard no leader within the lease itself and the candidate's log is at least as up to
//!   date as its own (Raft's rule). Only with a majority, itself counted, does it stand
//!   (`trigger().elect()`), and the election proper is Raft's;
//! - a try that fails waits its election timeout before the next.
//!
//! A voter whose log is behind thus never stands while one ahead of it lives, and never raises
//! the term for nothing. A pre-vote changes nothing at the voter asked.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use openraft::{Raft, ServerState};
use tokio::time::Instant;

use super::Timing;
use super::log_store::LogStore;
use crate::protocol::{Member, Mesh, MeshRequest, MeshResponse, NodeId, PreVote};
use crate::wire::Wire;

/// How often a voter looks whether it is time to stand.
const TICK: Duration = Duration::from_millis(10);
/// How long, in leases since it last heard a leader, a voter defers to itself a candidate
/// whose log is only as up to date as its own, from a member listed after it: long enough to
/// stand itself (a lease and an election timeout) and be elected.
const DEFER_LEASES: u32 = 4;

/// What the election driver and the member's message handler share.
pub struct Elections {
    /// When this member last heard a leader (took its AppendEntries or snapshot) or granted a
    /// vote.
    heard: Mutex<Instant>,
    log: LogStore,
    /// How long a leader heard is trusted to live on: openraft's lease, the maximum election
    /// timeout.
    lease: Duration,
}

impl Elections {
    pub fn new(log: LogStore, timing: &Timing) -> Self {
        Elections {
            heard: Mutex::new(Instant::now()),
            log,
            lease: Duration::from_millis(timing.election_max_ms),
        }
    }

    /// A leader was heard (or a vote granted): no standing for a while.
    pub fn heard(&self) {
        *self.heard.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn heard_at(&self) -> Instant {
        *self.heard.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pre-vote's answer: whether member `me` would vote for `ask`. Not while it leads or
    /// hears a leader; then for a log at least as up to date as its own, but for one only as up
    /// to date from a member listed after it (`NodeId` order) not yet: for `DEFER_LEASES`
    /// leases it expects to stand and win itself, so that two equals do not stand at once and
    /// split the vote. After that (it could not win: a one-way broken link) it defers no more.
    pub fn would_vote(&self, raft: &Raft<Mesh>, me: NodeId, ask: &PreVote) -> bool {
        let quiet = self.heard_at().elapsed();
        if raft.metrics().borrow().state == ServerState::Leader || quiet < self.lease {
            return false;
        }
        let defer = ask.candidate > me && quiet < self.lease * DEFER_LEASES;
        self.log
            .last_log_id()
            .is_ok_and(|mine| ask.last_log > mine || (ask.last_log == mine && !defer))
    }
}

/// Turns openraft's own elections off and stands for member `id` while `raft` runs; while it
/// leads, sends heartbeats every `heartbeat_ms` (openraft 0.9 sends them only on its tick,
/// every 1.5 heartbeats, which a lease of 1.5 heartbeats would not outlast).
pub fn start(
    raft: Raft<Mesh>,
    id: NodeId,
    elections: std::sync::Arc<Elections>,
    wire: Option<Wire>,
    timing: Timing,
) -> tokio::task::JoinHandle<()> {
    raft.runtime_config().elect(false);
    tokio::spawn(async move {
        let metrics = raft.metrics();
        let draw = || {
            let range =
                timing.election_min_ms..timing.election_max_ms.max(timing.election_min_ms + 1);
            Duration::from_millis(match &wire {
                Some(w) => w.draw_ms(range),
                None => rand::random_range(range),
            })
        };
        let heartbeat = Duration::from_millis(timing.heartbeat_ms);
        let mut beat = Instant::now();
        let mut timeout = draw();
        let mut tried: Option<Instant> = None;
        loop {
            // On the tick only: the metrics move with every commit, far more often.
            tokio::time::sleep(TICK).await;
            if metrics.has_changed().is_err() {
                return;
            }
            if metrics.borrow().state == ServerState::Leader {
                if beat.elapsed() >= heartbeat {
                    beat = Instant::now();
                    let _ = raft.trigger().heartbeat().await;
                }
                continue;
            }
            let (voters, configs) = {
                let m = metrics.borrow();
                let membership = m.membership_config.membership();
                let voters: Vec<(NodeId, Member)> = membership
                    .voter_ids()
                    .filter_map(|v| Some((v, membership.get_node(&v)?.clone())))
                    .collect();
                (voters, membership.get_joint_config().clone())
            };
            if !voters.iter().any(|(v, _)| *v == id) {
                continue;
            }
            // Quiet since the lease of the last leader heard ran out, or the last try.
            let quiet = elections.heard_at() + elections.lease;
            let quiet = tried.map_or(quiet, |t| t.max(quiet));
            if Instant::now() < quiet + timeout {
                continue;
            }
            tried = Some(Instant::now());
            timeout = draw();
            let others: Vec<(NodeId, Member)> =
                voters.into_iter().filter(|(v, _)| *v != id).collect();
            let ask = PreVote {
                candidate: id,
                last_log: elections.log.last_log_id().ok().flatten(),
            };
            let wait = Duration::from_millis(timing.election_min_ms);
            let asked_at = Instant::now();
            if pre_vote(wire.as_ref(), &configs, &others, &ask, wait).await
                // Meanwhile a leader may have been heard, or a vote granted: then not.
                && elections.heard_at() < asked_at
                && raft.metrics().borrow().state != ServerState::Leader
            {
                tracing::info!(last_log = ?ask.last_log, "a majority would vote for this member: standing");
                let _ = raft.trigger().elect().await;
            }
        }
    })
}

/// Whether a majority of every voter configuration (`configs`: one, or two while the
/// membership changes) would vote for `ask`'s candidate, asking the `others`: answered as soon
/// as that is so, or can no longer be. A voter that does not answer within `wait` would not.
async fn pre_vote(
    wire: Option<&Wire>,
    configs: &[BTreeSet<NodeId>],
    others: &[(NodeId, Member)],
    ask: &PreVote,
    wait: Duration,
) -> bool {
    use futures::StreamExt;
    let majority = |ids: &BTreeSet<NodeId>| {
        configs
            .iter()
            .all(|c| c.iter().filter(|v| ids.contains(v)).count() > c.len() / 2)
    };
    let mut yes = BTreeSet::from([ask.candidate]);
    let mut could = yes.clone();
    could.extend(others.iter().map(|(v, _)| *v));
    let Some(wire) = wire else {
        return majority(&yes);
    };
    let request = MeshRequest::PreVote(ask.clone());
    let mut answers: futures::stream::FuturesUnordered<_> = others
        .iter()
        .map(|(v, m)| {
            let request = &request;
            async move {
                let Ok(addr) = m.raft_addr.parse() else {
                    return (*v, false);
                };
                let r = wire.call(&m.name, addr, request, wait).await;
                (*v, matches!(r, Ok(MeshResponse::PreVote(true))))
            }
        })
        .collect();
    while !majority(&yes) && majority(&could) {
        let Some((voter, granted)) = answers.next().await else {
            break;
        };
        if granted {
            yes.insert(voter);
        } else {
            could.remove(&voter);
        }
    }
    majority(&yes)
}
