//! What the simulator checks at every step, from what the members running at that moment show
//! (their metrics, and their logs as stored): a leader leads under its own committed vote (one
//! leader per leadership: openraft 0.9 orders leaderships by term and node id, so one term may
//! see two, one after the other); log matching; every committed entry in the log of the leader
//! of the latest term; no member told held (by the network layer, to the leader) what it lacks.
//! Applied entries are compared as members apply them (`app::Observed`).

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use openraft::{LogId, RaftMetrics, ServerState};
use replication::protocol::{Entry, Member, NodeId};
use replication::raft::LogStore;

/// One running member as the checker sees it.
pub struct Seen<'a> {
    pub id: NodeId,
    pub metrics: RaftMetrics<NodeId, Member>,
    pub log: &'a LogStore,
}

/// What the checker has learnt so far in a run.
#[derive(Default)]
pub struct Checker {
    /// Per term, the members that led it.
    leaders: BTreeMap<u64, std::collections::BTreeSet<NodeId>>,
    /// Every entry known committed: its id and a digest of its payload.
    committed: BTreeMap<u64, (LogId<NodeId>, u64)>,
    /// The greatest term any member has been seen in: a leader of an earlier term (one that
    /// restarted and resumed its old leadership while the others were down) is stale.
    latest: u64,
    pub terms_led: usize,
}

fn digest(e: &Entry) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{:?}", e.payload).hash(&mut h);
    h.finish()
}

/// A member's log as stored: index → (id, digest).
type Log = BTreeMap<u64, (LogId<NodeId>, u64)>;

fn read(log: &LogStore) -> Result<Log, String> {
    let entries = log
        .entries(0..u64::MAX, usize::MAX)
        .map_err(|e| e.to_string())?;
    Ok(entries
        .iter()
        .map(|e| (e.log_id.index, (e.log_id, digest(e))))
        .collect())
}

impl Checker {
    /// Checks the members `seen` now; `deep` also reads their logs. New leaders go to `note`.
    pub fn step(&mut self, seen: &[Seen], deep: bool, note: &mut dyn FnMut(String)) -> Vec<String> {
        let mut bad = Vec::new();
        for s in seen {
            if let Err(fatal) = &s.metrics.running_state {
                bad.push(format!("m{} stopped running: {fatal}", s.id));
            }
            if s.metrics.state != ServerState::Leader {
                continue;
            }
            // openraft 0.9 (without its `single-term-leader` feature) orders leaderships by
            // (term, node id): two members may lead one term, one after the other, the later
            // one's vote the greater. What must hold is that a leader leads under its own
            // committed vote, and that each leadership's entries are kept (checked below).
            let vote = s.metrics.vote;
            if vote.leader_id().node_id != s.id || !vote.is_committed() {
                bad.push(format!("m{} leads under the vote {vote}", s.id));
            }
            let term = s.metrics.current_term;
            let leaders = self.leaders.entry(term).or_default();
            if leaders.insert(s.id) {
                self.terms_led += 1;
                let others = if leaders.len() > 1 {
                    format!(" (as {leaders:?} have: a greater vote)")
                } else {
                    String::new()
                };
                note(format!("m{} leads term {term}{others}", s.id));
            }
        }
        self.latest = seen
            .iter()
            .map(|s| s.metrics.current_term)
            .fold(self.latest, u64::max);
        bad.extend(self.told_held(seen));
        if !deep {
            return bad;
        }
        let mut logs = BTreeMap::new();
        for s in seen {
            match read(s.log) {
                Ok(l) => {
                    logs.insert(s.id, l);
                }
                Err(e) => bad.push(format!("m{}: its log cannot be read: {e}", s.id)),
            }
        }
        // What each member applied is committed: learnt, and compared with what was.
        for s in seen {
            let (Some(applied), Some(log)) = (s.metrics.last_applied, logs.get(&s.id)) else {
                continue;
            };
            for (index, entry) in log.range(..=applied.index) {
                match self.committed.get(index) {
                    Some(known) if known != entry => bad.push(format!(
                        "index {index} committed as {:?} and, at m{}, as {:?}",
                        known.0, s.id, entry.0
                    )),
                    Some(_) => {}
                    None => {
                        self.committed.insert(*index, *entry);
                    }
                }
            }
        }
        // Log matching: two logs with an entry of the same id agree on it and on all before.
        let ids: Vec<NodeId> = logs.keys().copied().collect();
        for (n, a) in ids.iter().enumerate() {
            for b in &ids[n + 1..] {
                let (la, lb) = (&logs[a], &logs[b]);
                let shared = la
                    .iter()
                    .rev()
                    .find(|(i, e)| lb.get(i).is_some_and(|f| f.0 == e.0));
                let Some((&upto, _)) = shared else { continue };
                for (i, e) in la.range(..=upto) {
                    if let Some(f) = lb.get(i)
                        && f != e
                    {
                        bad.push(format!(
                            "logs of m{a} and m{b} agree at {upto} but differ at {i}: {:?} and {:?}",
                            e.0, f.0
                        ));
                        break;
                    }
                }
            }
        }
        // The leader of the latest term seen holds every committed entry it has not purged.
        let latest = self.latest;
        for l in seen {
            if l.metrics.state != ServerState::Leader || l.metrics.current_term != latest {
                continue;
            }
            let Some(log) = logs.get(&l.id) else { continue };
            let purged = l.metrics.purged.map_or(0, |p| p.index + 1);
            for (index, entry) in self.committed.range(purged..) {
                if log.get(index) != Some(entry) {
                    bad.push(format!(
                        "m{} leads term {latest} without the committed entry {:?}",
                        l.id, entry.0
                    ));
                    break;
                }
            }
        }
        bad
    }

    /// What the leader of the latest term was told each member holds, against that member's
    /// log: a point read per member, cheap enough for every change of the leader's metrics (a
    /// wrong "held" lasts only until the member's next answer).
    fn told_held(&self, seen: &[Seen]) -> Vec<String> {
        let mut bad = Vec::new();
        for l in seen {
            if l.metrics.state != ServerState::Leader || l.metrics.current_term != self.latest {
                continue;
            }
            let members = l.metrics.membership_config.membership();
            for (target, matched) in l.metrics.replication.iter().flatten() {
                let (Some(matched), Some(t)) = (matched, seen.iter().find(|s| s.id == *target))
                else {
                    continue;
                };
                if *target == l.id || !members.nodes().any(|(n, _)| n == target) {
                    continue;
                }
                let holds = t.log.log_id_at(matched.index).ok().flatten() == Some(*matched)
                    || t.metrics.purged.is_some_and(|p| p.index >= matched.index)
                    || t.metrics.snapshot.is_some_and(|s| s.index >= matched.index);
                if !holds {
                    bad.push(format!(
                        "m{} was told m{target} holds {matched:?}, which it lacks (its last: {:?})",
                        l.id,
                        t.log.last_log_id().ok().flatten()
                    ));
                }
            }
        }
        bad
    }
}
