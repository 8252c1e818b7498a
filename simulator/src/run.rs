//! One run of the simulator for one seed: the members, the workload's clients, the faults (a
//! nemesis), the checker, and the verdict.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::RngExt;
use replication::app::App;
use replication::protocol::{Member, NodeId};
use replication::raft::{LogStore, Members, RaftNode, StartError, Timing};
use replication::sim::{Faults, Net};
use replication::wire::Wire;
use tokio::time::Instant;
use util::disk_faults::LosingDisk;

use crate::checks::{Checker, Seen};
use crate::observed::Observed;

/// What the group carries in a run: the application each member applies to, the clients that
/// write and read through the group, and the verdict on what they saw.
pub trait Workload: Send + Sync + Sized + 'static {
    type App: App;
    /// Clients that run at once.
    const CLIENTS: usize = 4;

    /// Member `name`'s application, on `disk` (one that loses what was not synced), reporting
    /// what it applies to `observed`.
    fn open(
        &self,
        name: &str,
        disk: LosingDisk,
        observed: &Arc<Mutex<Observed>>,
    ) -> Result<Self::App, String>;

    /// One operation of client `client` through one of `members` (those running and in the
    /// group), drawing what it does from `group.net`.
    fn operate(
        self: Arc<Self>,
        client: usize,
        members: Vec<(NodeId, Arc<RaftNode>)>,
        group: Arc<Group>,
    ) -> impl Future<Output = ()> + Send;

    /// At the end, every member started, the faults healed and the clients stopped: what was
    /// violated. The checks of every step still run meanwhile.
    fn verdict(
        self: Arc<Self>,
        members: Vec<(NodeId, Arc<RaftNode>)>,
        group: Arc<Group>,
    ) -> impl Future<Output = Vec<String>> + Send;
}

/// What the workload shares with the run: the network (its draws and its history), counts of
/// what happened, and whether the clients should stop.
pub struct Group {
    pub net: Net,
    stop: AtomicBool,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl Group {
    /// Counts one more `what`, for the run's summary.
    pub fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_default() += 1;
    }

    /// Whether the clients should stop.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// What a run found, and what it did.
pub struct Outcome {
    pub violations: Vec<String>,
    pub history: Vec<String>,
    stats: String,
}

impl Outcome {
    /// The outcome of a run whose harness panicked.
    pub fn panicked() -> Outcome {
        Outcome {
            violations: vec![
                "the simulator itself panicked (replay the seed for its message)".into(),
            ],
            history: Vec::new(),
            stats: String::new(),
        }
    }

    pub fn summary(&self) -> String {
        let verdict = if self.violations.is_empty() {
            "ok".to_owned()
        } else {
            format!("{} violations", self.violations.len())
        };
        format!("{verdict}; {}", self.stats)
    }
}

/// Timing as deployed between regions, but snapshots every 200 entries (keeping 50), so that
/// members catch up by snapshot as well as by log; one seed in four (those divisible by 4)
/// keeps the log as long as deployed and sends it 20 entries to a request, so that openraft's
/// search for where a member's log ends takes many requests over a log longer than one of them.
fn timing(seed: u64) -> Timing {
    if seed.is_multiple_of(4) {
        Timing {
            entries_per_request: 20,
            ..Timing::default()
        }
    } else {
        Timing {
            snapshot_every_entries: 200,
            keep_entries: 50,
            ..Timing::default()
        }
    }
}

fn member(id: NodeId) -> Member {
    Member {
        name: format!("m{id}"),
        raft_addr: format!("127.0.0.1:{}", 7000 + id),
        admin_url: format!("sim://m{id}"),
    }
}

enum State {
    Down,
    Starting,
    Up(Arc<RaftNode>, LogStore),
}

struct Slot {
    id: NodeId,
    log_disk: LosingDisk,
    app_disk: LosingDisk,
    /// Its log disk was lost while its store was kept: it must refuse to start.
    log_lost: bool,
    state: State,
}

/// How `World::start` tells a member that refused to start for a lost log.
const LOG_LOST: &str = "its log is lost";

/// Everything the tasks of a run share.
struct World<W> {
    group: Arc<Group>,
    net: Net,
    workload: Arc<W>,
    slots: Mutex<Vec<Slot>>,
    voters: BTreeMap<NodeId, Member>,
    observed: Arc<Mutex<Observed>>,
    violations: Mutex<Vec<String>>,
    /// The checker's end, after the verdict's.
    checked: AtomicBool,
    /// Membership changes asked by rejoins (beside the nemesis's own).
    rejoins: std::sync::atomic::AtomicU64,
    /// Rejoins under way: one lost log at a time, so that a majority of every membership keeps
    /// its disks (two of three voters' logs lost is a group no one can bring back, or finish a
    /// membership change in).
    rejoining: std::sync::atomic::AtomicUsize,
    timing: Timing,
}

impl<W: Workload> World<W> {
    /// Records a violation, once: the checks find it again at every step while it lasts.
    fn violation(&self, v: String) {
        let mut all = self.violations.lock().unwrap();
        if !all.contains(&v) {
            self.net.note(format!("VIOLATION {v}"));
            all.push(v);
        }
    }

    fn count(&self, what: &'static str) {
        self.group.count(what);
    }

    fn up(&self) -> Vec<(NodeId, Arc<RaftNode>)> {
        self.slots
            .lock()
            .unwrap()
            .iter()
            .filter_map(|s| match &s.state {
                State::Up(n, _) => Some((s.id, Arc::clone(n))),
                _ => None,
            })
            .collect()
    }

    /// Members down that may start (not those whose log is lost: `rejoin` starts them).
    fn restartable(&self) -> Vec<NodeId> {
        self.slots
            .lock()
            .unwrap()
            .iter()
            .filter(|s| matches!(s.state, State::Down) && !s.log_lost)
            .map(|s| s.id)
            .collect()
    }

    fn leader(&self) -> Option<Arc<RaftNode>> {
        self.up()
            .into_iter()
            .filter(|(_, n)| n.metrics().state == openraft::ServerState::Leader)
            .max_by_key(|(_, n)| n.metrics().current_term)
            .map(|(_, n)| n)
    }

    /// Starts member `id` on what its disks hold.
    async fn start(&self, id: NodeId) {
        let (log_disk, app_disk) = {
            let mut slots = self.slots.lock().unwrap();
            let s = &mut slots[id as usize - 1];
            if !matches!(s.state, State::Down) {
                return;
            }
            s.state = State::Starting;
            (s.log_disk.clone(), s.app_disk.clone())
        };
        let name = format!("m{id}");
        let started = async {
            let log = LogStore::on_backend(log_disk).map_err(|e| format!("log: {e}"))?;
            let app = self.workload.open(&name, app_disk, &self.observed)?;
            let node = RaftNode::start_on_log(
                id,
                Members {
                    voters: self.voters.clone(),
                    learners: BTreeMap::new(),
                },
                log.clone(),
                &name,
                Arc::new(app),
                Some(Wire::Sim(self.net.port(&name))),
                None,
                self.timing,
            )
            .await
            .map_err(|e| match e {
                StartError::LogLost { .. } => LOG_LOST.to_owned(),
                e => e.to_string(),
            })?;
            Ok::<_, String>((node, log))
        };
        let result = started.await;
        let mut slots = self.slots.lock().unwrap();
        let s = &mut slots[id as usize - 1];
        match result {
            Ok((node, log)) => {
                let last = log.last_log_id().ok().flatten();
                self.net
                    .note(format!("{name} started (its log ends at {last:?})"));
                s.state = State::Up(Arc::new(node), log);
            }
            Err(e) if e == LOG_LOST && s.log_lost => {
                s.state = State::Down;
                drop(slots);
                self.net
                    .note(format!("{name} refused to start: its log is lost"));
            }
            Err(e) => {
                s.state = State::Down;
                drop(slots);
                self.violation(format!("{name} did not start: {e}"));
            }
        }
    }

    /// The operators' way back for a member whose log was lost: removed at the leader, its
    /// disks emptied, started, and added again.
    async fn rejoin(&self, id: NodeId) {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(leader) = self.leader() else {
                continue;
            };
            let still = leader
                .metrics()
                .membership_config
                .membership()
                .nodes()
                .any(|(n, _)| *n == id);
            if still {
                self.rejoins.fetch_add(1, Ordering::Relaxed);
                let r = leader.remove_member(id).await;
                self.net
                    .note(format!("removing m{id}, whose log is lost: {r:?}"));
                continue;
            }
            {
                let mut slots = self.slots.lock().unwrap();
                let s = &mut slots[id as usize - 1];
                if !matches!(s.state, State::Down) {
                    return;
                }
                s.log_disk = LosingDisk::new();
                s.app_disk = LosingDisk::new();
                s.log_lost = false;
            }
            self.net.note(format!("m{id} wiped, to join again"));
            self.start(id).await;
            break;
        }
        // Added again, asked of whoever leads until one answers that it is done.
        while Instant::now() < end {
            let Some(leader) = self.leader() else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            };
            self.rejoins.fetch_add(1, Ordering::Relaxed);
            let r = leader.add_member(id, member(id), true).await;
            self.net.note(format!("adding m{id} again: {r:?}"));
            if r.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Member `id` crashes: its disks keep what was synced; with `wipe`, nothing.
    async fn crash(&self, id: NodeId, wipe: bool) {
        let (node, had) = {
            let mut slots = self.slots.lock().unwrap();
            let s = &mut slots[id as usize - 1];
            let State::Up(node, log) = std::mem::replace(&mut s.state, State::Down) else {
                return;
            };
            self.net.crash(&format!("m{id}"));
            if wipe {
                s.log_disk = LosingDisk::new();
                s.app_disk = LosingDisk::new();
            } else {
                s.log_disk = s.log_disk.power_loss();
                s.app_disk = s.app_disk.power_loss();
            }
            (node, log.last_log_id().ok().flatten())
        };
        self.net.note(format!(
            "m{id} {} (its log ended at {had:?})",
            if wipe {
                "crashed and was wiped"
            } else {
                "lost its power"
            }
        ));
        self.count(if wipe { "wipes" } else { "crashes" });
        // Its tasks stop; what they still write goes to the disks it had, now gone.
        let _ = node.raft.shutdown().await;
    }
}

/// Client `c`: an operation of the workload now and then, through a member of the group.
async fn client<W: Workload>(world: Arc<World<W>>, c: usize) {
    while !world.group.stopping() {
        let pause = world.net.draw(|r| r.random_range(10..400));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        // Clients, like edges, send to the members of the group.
        let up: Vec<(NodeId, Arc<RaftNode>)> = world
            .up()
            .into_iter()
            .filter(|(id, n)| {
                n.metrics()
                    .membership_config
                    .membership()
                    .nodes()
                    .any(|(m, _)| m == id)
            })
            .collect();
        if up.is_empty() {
            continue;
        }
        Arc::clone(&world.workload)
            .operate(c, up, Arc::clone(&world.group))
            .await;
    }
}

/// Breaks things, every half second to four seconds, one of: crash a member or start one
/// that is down; cut a partition, or one way of a link; make a link long; make every link
/// lossy, slow and duplicating; heal; change the membership (two changes at once, sometimes);
/// wipe a member that has left.
async fn nemesis<W: Workload>(world: Arc<World<W>>, all: Vec<NodeId>) {
    while !world.group.stopping() {
        let pause = world.net.draw(|r| r.random_range(500..4_000));
        tokio::time::sleep(Duration::from_millis(pause)).await;
        let roll = world.net.draw(|r| r.random_range(0..100));
        let pick = |ids: &[NodeId]| -> Option<NodeId> {
            (!ids.is_empty()).then(|| ids[world.net.draw(|r| r.random_range(0..ids.len()))])
        };
        let up: Vec<NodeId> = world.up().iter().map(|(id, _)| *id).collect();
        match roll {
            0..20 => {
                // The leader, half the time: failovers are what the group is for.
                let leader = world.leader().map(|l| l.id);
                let id = match leader {
                    Some(l) if world.net.draw(|r| r.random_bool(0.5)) => Some(l),
                    _ => pick(&up),
                };
                if let Some(id) = id {
                    world.crash(id, false).await;
                }
            }
            20..45 => {
                if let Some(id) = pick(&world.restartable()) {
                    let w = Arc::clone(&world);
                    tokio::spawn(async move { w.start(id).await });
                }
            }
            45..55 => {
                let side: Vec<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|_| world.net.draw(|r| r.random_bool(0.5)))
                    .collect();
                for a in &side {
                    for b in all.iter().filter(|b| !side.contains(b)) {
                        world.net.cut(&format!("m{a}"), &format!("m{b}"));
                        world.net.cut(&format!("m{b}"), &format!("m{a}"));
                    }
                }
                world
                    .net
                    .note(format!("partition: {side:?} apart from the rest"));
                world.count("partitions");
            }
            55..60 => {
                if let (Some(a), Some(b)) = (pick(&all), pick(&all))
                    && a != b
                {
                    world.net.cut(&format!("m{a}"), &format!("m{b}"));
                    world.net.note(format!("cut one way: m{a} -> m{b}"));
                }
            }
            60..68 => {
                if let (Some(a), Some(b)) = (pick(&all), pick(&all))
                    && a != b
                {
                    let extra =
                        Duration::from_millis(world.net.draw(|r| r.random_range(50..2_500)));
                    world
                        .net
                        .lengthen(&format!("m{a}"), &format!("m{b}"), extra);
                    world
                        .net
                        .lengthen(&format!("m{b}"), &format!("m{a}"), extra);
                    world
                        .net
                        .note(format!("link m{a} <-> m{b} longer by {extra:?}"));
                }
            }
            68..76 => {
                let f = world.net.draw(|r| Faults {
                    delay_min: Duration::from_millis(r.random_range(0..20)),
                    delay_max: Duration::from_millis(r.random_range(20..1_500)),
                    drop: r.random_range(0.0..0.2),
                    duplicate: r.random_range(0.0..0.1),
                });
                world.net.set_faults(f);
                world.net.note(format!("every link now {f:?}"));
            }
            76..90 => {
                world.net.heal();
                world.net.set_faults(Faults::default());
                world.net.note("healed");
            }
            90..96 => change_membership(&world, &all).await,
            96..98 => {
                // A voter's log disk is lost, its store kept: it must refuse to start, and the
                // operators bring it back (`rejoin`).
                // Only while no other is rejoining, and from three voters up: a group of two
                // that loses one's log has no majority left to bring it back.
                let voters = world.leader().map_or(0, |l| {
                    l.metrics()
                        .membership_config
                        .membership()
                        .voter_ids()
                        .count()
                });
                if world.rejoining.load(Ordering::Relaxed) > 0 || voters < 3 {
                    continue;
                }
                if let Some(id) = pick(&up) {
                    world.crash(id, false).await;
                    {
                        let mut slots = world.slots.lock().unwrap();
                        let s = &mut slots[id as usize - 1];
                        s.log_disk = LosingDisk::new();
                        s.log_lost = true;
                    }
                    world.net.note(format!("m{id} lost its log disk"));
                    world.count("logs lost");
                    world.start(id).await;
                    let w = Arc::clone(&world);
                    world.rejoining.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        w.rejoin(id).await;
                        // One that gave up (no leader to remove it) still counts: its log is
                        // still lost, and losing another could leave no majority.
                        let back = !w.slots.lock().unwrap()[id as usize - 1].log_lost;
                        if back {
                            w.rejoining.fetch_sub(1, Ordering::Relaxed);
                        }
                    });
                }
            }
            _ => {
                // A member that has left is wiped: it may join again, from nothing.
                let Some(leader) = world.leader() else {
                    continue;
                };
                let membership = leader.metrics().membership_config.membership().clone();
                let gone: Vec<NodeId> = all
                    .iter()
                    .copied()
                    .filter(|id| !membership.nodes().any(|(n, _)| n == id))
                    .collect();
                if let Some(id) = pick(&gone) {
                    world.crash(id, true).await;
                    let w = Arc::clone(&world);
                    tokio::spawn(async move { w.start(id).await });
                }
            }
        }
    }
}

/// At the leader: adds a member that is not a voter, or removes a voter (never below three),
/// and now and then both at once.
async fn change_membership<W: Workload>(world: &Arc<World<W>>, all: &[NodeId]) {
    let Some(leader) = world.leader() else { return };
    let membership = leader.metrics().membership_config.membership().clone();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let others: Vec<NodeId> = all
        .iter()
        .copied()
        .filter(|id| !voters.contains(id))
        .collect();
    let (add, remove, both) = world.net.draw(|r| {
        (
            (!others.is_empty()).then(|| others[r.random_range(0..others.len())]),
            (voters.len() > 3).then(|| voters[r.random_range(0..voters.len())]),
            r.random_bool(0.3),
        )
    });
    let adding = async {
        if let Some(id) = add {
            world.net.note(format!("adding m{id} as a voter"));
            let r = tokio::time::timeout(
                Duration::from_secs(20),
                leader.add_member(id, member(id), true),
            )
            .await;
            world.net.note(format!("adding m{id}: {r:?}"));
            return matches!(r, Ok(Ok(())));
        }
        false
    };
    let removing = async {
        if let Some(id) = remove {
            world.net.note(format!("removing m{id}"));
            let r = tokio::time::timeout(Duration::from_secs(20), leader.remove_member(id)).await;
            world.net.note(format!("removing m{id}: {r:?}"));
            return matches!(r, Ok(Ok(())));
        }
        false
    };
    world.count("membership changes");
    if both {
        // Two changes at once: each, once answered, holds in the membership that follows both
        // (a change that replaced the whole voter set, computed before the other applied,
        // would undo it), unless an operator's rejoin changed it meanwhile.
        let rejoins = world.rejoins.load(Ordering::Relaxed);
        let (added, removed) = tokio::join!(adding, removing);
        let membership = leader.metrics().membership_config.membership().clone();
        let unchanged = rejoins == world.rejoins.load(Ordering::Relaxed);
        if let (Some(a), true, true) = (add, added, unchanged)
            && !membership.voter_ids().any(|v| v == a)
        {
            world.violation(format!(
                "m{a} was added as a voter, answered so, and is not one: {membership:?}"
            ));
        }
        if let (Some(r), true, true) = (remove, removed, unchanged)
            && membership.nodes().any(|(n, _)| *n == r)
        {
            world.violation(format!(
                "m{r} was removed, answered so, and is still a member: {membership:?}"
            ));
        }
    } else if add.is_some() && (remove.is_none() || world.net.draw(|r| r.random_bool(0.5))) {
        adding.await;
    } else {
        removing.await;
    }
}

async fn checker<W: Workload>(world: Arc<World<W>>) {
    let mut checker = Checker::default();
    let mut deep_at = Instant::now();
    while !world.checked.load(Ordering::Relaxed) {
        // Every 50 ms, and at every change of the leader's metrics: what it was told a member
        // holds may be wrong for no longer than the member's next answer.
        let tick = tokio::time::sleep(Duration::from_millis(50));
        match world.leader() {
            Some(leader) => {
                let mut metrics = leader.raft.metrics();
                // A clone of openraft's receiver reads as changed until marked seen.
                metrics.borrow_and_update();
                tokio::select! {
                    _ = tick => {}
                    // A member whose Raft ended (a panic) has no more changes: the tick alone.
                    Ok(()) = metrics.changed() => {}
                }
            }
            None => tick.await,
        }
        let deep = Instant::now() >= deep_at;
        if deep {
            deep_at = Instant::now() + Duration::from_millis(500);
        }
        check_now(&world, &mut checker, deep);
    }
    check_now(&world, &mut checker, true);
    *world
        .group
        .counts
        .lock()
        .unwrap()
        .entry("terms led")
        .or_default() = checker.terms_led as u64;
}

fn check_now<W: Workload>(world: &World<W>, checker: &mut Checker, deep: bool) {
    let slots = world.slots.lock().unwrap();
    let seen: Vec<Seen> = slots
        .iter()
        .filter_map(|s| match &s.state {
            State::Up(node, log) => Some(Seen {
                id: s.id,
                metrics: node.metrics(),
                log,
            }),
            _ => None,
        })
        .collect();
    let mut notes = Vec::new();
    let bad = checker.step(&seen, deep, &mut |n| notes.push(n));
    drop(slots);
    for n in notes {
        world.net.note(n);
    }
    for b in bad {
        world.violation(b);
    }
}

/// Panics anywhere in a run (a member's task among them), which are violations too.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn catch_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let before = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(info.to_string());
            before(info);
        }));
    });
}

/// Runs seed `seed` for `length` of simulated time, the group carrying `workload`.
pub fn run<W: Workload>(seed: u64, length: Duration, workload: W) -> Outcome {
    catch_panics();
    PANICS.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    // Which branch of a `select!` tokio polls first, from the seed too (.cargo/config.toml).
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let rt = builder.build().expect("a runtime");
    replication::sim::simulate_on_this_thread();
    let mut outcome = rt.block_on(run_async(seed, length, workload));
    drop(rt);
    let panics = std::mem::take(&mut *PANICS.lock().unwrap_or_else(|e| e.into_inner()));
    outcome
        .violations
        .extend(panics.into_iter().map(|p| format!("a panic: {p}")));
    outcome
}

async fn run_async<W: Workload>(seed: u64, length: Duration, workload: W) -> Outcome {
    let net = Net::new(seed, Faults::default());
    let five = net.draw(|r| r.random_bool(0.5));
    let voters: Vec<NodeId> = if five {
        (1..=5).collect()
    } else {
        (1..=3).collect()
    };
    let all: Vec<NodeId> = (1..=voters.len() as NodeId + 1).collect();
    net.note(format!(
        "seed {seed}: voters {voters:?}, and m{} to join",
        all.len()
    ));
    let group = Arc::new(Group {
        net: net.clone(),
        stop: AtomicBool::new(false),
        counts: Mutex::default(),
    });
    let world = Arc::new(World {
        group: Arc::clone(&group),
        net: net.clone(),
        workload: Arc::new(workload),
        slots: Mutex::new(
            all.iter()
                .map(|id| Slot {
                    id: *id,
                    log_disk: LosingDisk::new(),
                    app_disk: LosingDisk::new(),
                    log_lost: false,
                    state: State::Down,
                })
                .collect(),
        ),
        voters: voters.iter().map(|id| (*id, member(*id))).collect(),
        observed: Arc::default(),
        violations: Mutex::default(),
        checked: AtomicBool::new(false),
        rejoins: Default::default(),
        rejoining: Default::default(),
        timing: timing(seed),
    });
    for id in &all {
        world.start(*id).await;
    }
    let mut tasks = Vec::new();
    for c in 0..W::CLIENTS {
        tasks.push(tokio::spawn(client(Arc::clone(&world), c)));
    }
    let breaking = tokio::spawn(nemesis(Arc::clone(&world), all.clone()));
    let checking = tokio::spawn(checker(Arc::clone(&world)));
    tokio::time::sleep(length).await;

    // The end: faults stop, every member starts, and the group has time to settle.
    breaking.abort();
    let _ = breaking.await;
    net.heal();
    net.set_faults(Faults::default());
    net.note("the end: healed, every member started");
    for id in world.restartable() {
        world.start(id).await;
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    group.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let judged = Arc::clone(&world.workload)
        .verdict(world.up(), Arc::clone(&group))
        .await;
    world.checked.store(true, Ordering::Relaxed);
    let _ = checking.await;

    let mut violations = std::mem::take(&mut *world.violations.lock().unwrap());
    violations.extend(std::mem::take(
        &mut world.observed.lock().unwrap().violations,
    ));
    violations.extend(judged);
    for (_, node) in world.up() {
        let _ = node.raft.shutdown().await;
    }
    let (messages, lost) = net.counts();
    let counts = group.counts.lock().unwrap().clone();
    let stats = format!(
        "{} voters, {messages} messages ({lost} lost), {}",
        voters.len(),
        counts
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    Outcome {
        violations,
        history: net.history(),
        stats,
    }
}
