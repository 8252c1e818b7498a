//! The simulator with registers and a counter as the group's application: every client's
//! writes and reads, through any member, checked linearizable at the end (Wing and Gong's
//! search), besides the checks of every step (`simulator`).
//!
//! `SIM_SEED=n cargo test -p simulator --test registers -- --nocapture` replays seed `n` and
//! prints its history; `scripts/sim-seeds.sh` runs seeds for a given time and keeps the ones
//! that fail in `regressions.txt` here, which every run replays.

mod app;
mod linear;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use replication::protocol::{NodeId, Payload};
use replication::raft::RaftNode;
use simulator::{Group, Observed, Workload};
use util::disk_faults::LosingDisk;

use crate::app::SimApp;
use crate::linear::{Op, Verdict};

/// A client's operation, as recorded.
struct Record {
    object: &'static str,
    input: String,
    called: f64,
    answered: Option<(f64, String)>,
}

const OBJECTS: [&str; 3] = ["a", "b", "n"];

#[derive(Default)]
struct Registers {
    history: Mutex<Vec<Record>>,
    /// Per client, the operations it has made (they name its operations).
    made: Mutex<std::collections::BTreeMap<usize, u64>>,
    /// Numbers the clients' calls and answers in the order they happen: the clock's ticks
    /// are too coarse to tell an answer from a call made in the same millisecond.
    events: AtomicU64,
}

impl Registers {
    fn event(&self) -> f64 {
        self.events.fetch_add(1, Ordering::Relaxed) as f64
    }
}

impl Workload for Registers {
    type App = SimApp;

    fn open(
        &self,
        name: &str,
        disk: LosingDisk,
        observed: &Arc<Mutex<Observed>>,
    ) -> Result<SimApp, String> {
        SimApp::on_disk(disk, name, Arc::clone(observed))
    }

    async fn operate(
        self: Arc<Self>,
        c: usize,
        up: Vec<(NodeId, Arc<RaftNode>)>,
        group: Arc<Group>,
    ) {
        let (pick, object, read) = group.net.draw(|r| {
            (
                r.random_range(0..up.len()),
                OBJECTS[r.random_range(0..OBJECTS.len())],
                r.random_bool(0.4),
            )
        });
        let placed = self
            .history
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.object == object)
            .count();
        if placed >= linear::OPS_MAX {
            return;
        }
        let n = {
            let mut made = self.made.lock().unwrap();
            let n = made.entry(c).or_default();
            *n += 1;
            *n
        };
        let op = format!("c{c}-{n}");
        let input = match (object, read) {
            ("n", true) => "count".to_owned(),
            ("n", false) => "add".to_owned(),
            (k, true) => format!("get {k}"),
            (k, false) => format!("set {k} {op}"),
        };
        let called = self.event();
        let index = {
            let mut h = self.history.lock().unwrap();
            h.push(Record {
                object,
                input: input.clone(),
                called,
                answered: None,
            });
            h.len() - 1
        };
        let (id, node) = &up[pick];
        let result = node
            .write(
                Payload(format!("{op} {input}").into_bytes()),
                Duration::from_secs(5),
            )
            .await;
        match result {
            Ok(reply) => {
                let reply = String::from_utf8_lossy(&reply.0).into_owned();
                group.count("ops answered");
                let answered = self.event();
                self.history.lock().unwrap()[index].answered = Some((answered, reply));
            }
            Err(e) => {
                group.count("ops unanswered");
                group
                    .net
                    .note(format!("client {c} at m{id}: {op} {input}: no answer: {e}"));
            }
        }
    }

    async fn verdict(
        self: Arc<Self>,
        _members: Vec<(NodeId, Arc<RaftNode>)>,
        group: Arc<Group>,
    ) -> Vec<String> {
        let records = std::mem::take(&mut *self.history.lock().unwrap());
        let mut violations = Vec::new();
        let undecided = linearizable(&records, &mut violations);
        for _ in 0..undecided {
            group.count("objects undecided");
        }
        violations
    }
}
/// Checks each object's operations; returns how many the search could not decide.
fn linearizable(records: &[Record], violations: &mut Vec<String>) -> usize {
    let mut undecided = 0;
    for object in OBJECTS {
        let ops: Vec<&Record> = records.iter().filter(|r| r.object == object).collect();
        let verdict = if object == "n" {
            let ops: Vec<Op<bool, u64>> = ops
                .iter()
                .map(|r| Op {
                    input: r.input == "add",
                    called: r.called,
                    answered: r
                        .answered
                        .as_ref()
                        .and_then(|(t, v)| Some((*t, v.parse().ok()?))),
                })
                .collect();
            linear::check(&linear::Counter, &ops)
        } else {
            let ops: Vec<Op<Option<String>, Option<String>>> = ops
                .iter()
                .filter(|r| r.input.starts_with("set") || r.answered.is_some())
                .map(|r| Op {
                    input: r.input.strip_prefix("set ").map(|s| s[2..].to_owned()),
                    called: r.called,
                    answered: r
                        .answered
                        .as_ref()
                        .map(|(t, v)| (*t, (v != "-" && v != "ok").then(|| v.clone()))),
                })
                .collect();
            linear::check(&linear::Register, &ops)
        };
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Undecided => undecided += 1,
            Verdict::Violation => {
                let lines: Vec<String> = ops
                    .iter()
                    .map(|r| format!("    #{} {} -> {:?}", r.called, r.input, r.answered))
                    .collect();
                violations.push(format!(
                    "the operations on {object} are not linearizable:\n{}",
                    lines.join("\n")
                ));
            }
        }
    }
    undecided
}

#[test]
fn seeded_runs_find_no_violation() {
    simulator::seeded_runs(
        "registers",
        include_str!("regressions.txt"),
        (None, None),
        |seed, length| simulator::run(seed, length, Registers::default()),
    );
}
