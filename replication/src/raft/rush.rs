//! A short tail of the log rushed to a slow follower, beside openraft's replication stream.
//!
//! openraft 0.9 keeps one AppendEntries in flight per follower, and the commit index of an entry
//! reaches a follower only with the call after the one that carried the entry. Over a long link
//! (a far region, 200 ms and more there and back) a write then shows at that region two round
//! trips after it was made, more when a heartbeat was in flight when it was written. So when a
//! follower's stream has not moved for `STALLED` and it lacks only a short tail of the log, the
//! leader also sends it that tail with the commit index, outside the stream: the follower
//! appends what it lacks and applies what is committed about one way after the commit.
//!
//! This is what the stream would send anyway, under the same vote, and Raft takes an entry twice
//! as once. A follower that cannot take it (a gap before it, a newer leader) says no, and the
//! answer is dropped; the stream goes on as before. A tail is rushed again when the log or the
//! commit index moves (the entry first, then word that it committed). A voter is not rushed past
//! what the other voters that keep up hold (`network::ahead_upto`). Bounded: short tails only,
//! a few rushes in flight per follower, and only to far followers (`network::FAR`): on a short link
//! the stream keeps up, and a rush would only make the follower write its entries twice.

use std::collections::BTreeMap;
use std::time::Duration;

use openraft::raft::AppendEntriesRequest;
use openraft::storage::RaftLogReader;
use openraft::{LogId, Raft, ServerState};
use tokio::time::Instant;

use super::log_store::LogStore;
use super::network::{FAR, ahead_upto};
use crate::protocol::{Entry, Mesh, MeshRequest, NodeId};
use crate::wire::Wire;

/// A follower whose stream has not moved for this long, while the log has, is rushed.
const STALLED: Duration = Duration::from_millis(30);
/// Tails longer than this are left to the stream (a follower catching up, heavy load).
const TAIL_MAX_ENTRIES: u64 = 16;
/// Rushes in flight to one follower at most.
const IN_FLIGHT_MAX: usize = 4;
/// How long one rush may take.
const RUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Checked this often, and whenever the leader's metrics move.
const TICK: Duration = Duration::from_millis(10);

/// Runs while `raft` does: rushes the tail to stalled followers while this member leads.
pub fn start(raft: Raft<Mesh>, log: LogStore, wire: Wire) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut metrics = raft.metrics();
        // Per follower: what the stream had matched and since when, the (last entry, commit)
        // last rushed, and the rushes in flight.
        let mut seen: BTreeMap<NodeId, (Option<LogId<NodeId>>, Instant)> = BTreeMap::new();
        let mut rushed: BTreeMap<NodeId, (u64, Option<LogId<NodeId>>)> = BTreeMap::new();
        let mut rushing: BTreeMap<NodeId, Vec<tokio::task::JoinHandle<()>>> = BTreeMap::new();
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(TICK) => {}
            }
            let m = metrics.borrow().clone();
            let (ServerState::Leader, Some(repl), Some(last)) =
                (m.state, m.replication.as_ref(), m.last_log_index)
            else {
                seen.clear();
                continue;
            };
            let now = Instant::now();
            let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
            for (&target, &matched) in repl.iter().filter(|(t, _)| **t != m.id) {
                let from = matched.map_or(0, |l| l.index + 1);
                let upto = if voters.contains(&target) {
                    let others = voters
                        .iter()
                        .filter(|v| **v != target && **v != m.id)
                        .map(|v| repl.get(v).copied().flatten().map(|l| l.index));
                    ahead_upto(m.last_applied.map(|l| l.index), others)
                        .map_or(last, |u| u.min(last))
                } else {
                    last
                };
                // Stalled is measured from when the follower last moved or was caught up.
                let since = match seen.get(&target) {
                    Some((had, at)) if *had == matched && from <= last => *at,
                    _ => {
                        seen.insert(target, (matched, now));
                        now
                    }
                };
                let flying = rushing.entry(target).or_default();
                flying.retain(|h| !h.is_finished());
                if from > upto
                    || upto - from + 1 > TAIL_MAX_ENTRIES
                    || now - since < STALLED
                    || flying.len() >= IN_FLIGHT_MAX
                    || rushed.get(&target) == Some(&(upto, m.last_applied))
                {
                    continue;
                }
                let Some(member) = m.membership_config.membership().get_node(&target).cloned()
                else {
                    continue;
                };
                let Ok(addr) = member.raft_addr.parse() else {
                    continue;
                };
                if wire
                    .rtt(&member.name, addr)
                    .await
                    .is_none_or(|rtt| rtt < FAR)
                {
                    continue;
                }
                let Some(entries) = tail(&log, matched, upto).await else {
                    continue;
                };
                // Still the leader it was when the tail was chosen: a tail read after a change
                // of leader is not sent under the old vote.
                let still = {
                    let now = metrics.borrow();
                    now.state == ServerState::Leader && now.vote == m.vote
                };
                if !still {
                    continue;
                }
                let request = MeshRequest::AppendEntries(AppendEntriesRequest {
                    vote: m.vote,
                    prev_log_id: matched,
                    entries,
                    // What the leader has applied, which never passes what is committed.
                    leader_commit: m.last_applied,
                });
                let wire = wire.clone();
                rushed.insert(target, (upto, m.last_applied));
                flying.push(tokio::spawn(async move {
                    // The answer changes nothing here: the stream learns the same on its own.
                    let _ = wire.call(&member.name, addr, &request, RUSH_TIMEOUT).await;
                }));
            }
        }
    })
}

/// The entries after `matched` up to `last` (fewer when they are large: the read is bounded in
/// bytes), read together with the entry at `matched` and checked against it: `None` unless the
/// log still holds exactly `matched` and what follows it without a gap (the log may have been
/// purged or rewritten since the metrics were read).
async fn tail(log: &LogStore, matched: Option<LogId<NodeId>>, last: u64) -> Option<Vec<Entry>> {
    let start = matched.map_or(0, |m| m.index);
    let mut read = log
        .clone()
        .limited_get_log_entries(start, last + 1)
        .await
        .ok()?;
    if let Some(m) = matched {
        if read.first().map(|e| e.log_id) != Some(m) {
            return None;
        }
        read.remove(0);
    }
    let from = matched.map_or(0, |m| m.index + 1);
    let contiguous = read
        .iter()
        .enumerate()
        .all(|(i, e)| e.log_id.index == from + i as u64);
    (contiguous && !read.is_empty()).then_some(read)
}
