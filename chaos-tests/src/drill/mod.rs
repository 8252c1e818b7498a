//! `tradewind chaos <drill> --mesh FILE`: failover drills on a running demo (DESIGN §3).
//!
//! A drill stocks the SKUs it sells, starts shoppers at every edge (browsing and ordering) and
//! admins (changing prices, adding stock), a write probe and a monitor; after a phase of calm,
//! once the mesh is healthy (a leader, no member behind, every edge with a core), it injects
//! its fault, keeps it for a phase (and until writes commit again), heals it, runs a
//! phase more, lets the mesh go quiet (every outbox sent), then reads the core's final state and
//! reports what the checker finds (I1–I4) with what the history measured: JSON report, SVG
//! timeline and history in `<state-dir>/drills/<drill>-<time>/` (and `--report FILE`), a summary
//! on stdout. It aborts and heals when more orders fail than the error budget allows, and heals
//! on any way out, Ctrl-C included (`faults`).

mod faults;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::checker::{self, Event};
use crate::{report, workload};
use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::mesh::Mesh;
use faults::Faults;
use watch::{client, get_json};

#[derive(clap::Subcommand, Debug)]
pub enum Drill {
    /// SIGKILL everything of one region (by default the leader's), then start it again.
    RegionOutage {
        #[command(flatten)]
        common: DrillArgs,
        /// The region to take down; the leader's when absent.
        #[arg(long)]
        region: Option<String>,
    },
    /// SIGKILL the current leader's core, start it again, and do it again.
    LeaderKill {
        #[command(flatten)]
        common: DrillArgs,
        /// How many leaders to kill, one after the other.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
        times: u32,
    },
    /// A rolling upgrade's restarts under load: each region in turn, the leader's last, its
    /// core and edges stopped (SIGTERM, as an upgrade stops them) and started again (with
    /// whatever binary the start runs), the next once the mesh is healthy again.
    RollingRestart {
        #[command(flatten)]
        common: DrillArgs,
    },
    /// Cut one region (by default the leader's) off from the others: by the deployment's link
    /// commands, or through the fault proxy.
    Partition {
        #[command(flatten)]
        common: DrillArgs,
        /// The region to cut off; the leader's when absent.
        #[arg(long)]
        region: Option<String>,
    },
    /// SIGKILL one edge under load (by default the first of the leader's region), then start it
    /// again.
    EdgeCrash {
        #[command(flatten)]
        common: DrillArgs,
        #[arg(long)]
        edge: Option<String>,
    },
    /// Add round-trip time to the links between two regions (by default the leader's and the
    /// next one).
    SlowLink {
        #[command(flatten)]
        common: DrillArgs,
        /// The two regions, as `a,b`.
        #[arg(long, value_delimiter = ',')]
        between: Vec<String>,
        /// Round-trip time added, in milliseconds.
        #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        add_ms: u64,
    },
    /// No fault of its own: shoppers and admins at every edge and the checker, while an
    /// operator changes the mesh from outside (a rolling upgrade, a restore). Its middle phase
    /// lasts until the file `--until` exists (the operation is done), at most `--hold-s`.
    Steady {
        #[command(flatten)]
        common: DrillArgs,
        /// A file whose appearance ends the middle phase; without it, the phase lasts `--hold-s`.
        #[arg(long)]
        until: Option<PathBuf>,
        /// Longest the middle phase lasts, in seconds (by default `--phase-s`); with `--until`,
        /// the drill fails when the file has not appeared by then.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=3600))]
        hold_s: Option<u64>,
    },
    /// A new SKU with few units, and buyers at every edge asking for many times more.
    FlashSale {
        #[command(flatten)]
        common: DrillArgs,
        /// Units on sale.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        units: u64,
        /// Orders placed, as a multiple of the units.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=100))]
        oversubscribe: u64,
    },
}

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// The mesh.json of a running demo.
    #[arg(long, default_value = ".tradewind/demo/mesh.json")]
    mesh: PathBuf,
    /// Where to write the JSON report (it is also written next to the drill's history).
    #[arg(long)]
    report: Option<PathBuf>,
    /// Seconds of load before the fault, with the fault, and after the heal.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    phase_s: u64,
    /// Shoppers at each edge.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    shoppers_per_edge: u64,
    /// Abort and heal when more than this share of orders fail (no answer, 5xx) over 5 s.
    #[arg(long, default_value_t = 0.5)]
    error_budget: f64,
    /// The seed of every random choice the drill's actors make (shoppers, admins, probe);
    /// random when absent, and printed and reported either way, so that a run can be made
    /// again with the same choices.
    #[arg(long)]
    seed: Option<u64>,
    /// Fail the drill when writes take longer than this to come back after a fault (its
    /// `rto_ms`, the worst of its faults); DESIGN's target is 2,000 ms with realistic links.
    #[arg(long)]
    rto_target_ms: Option<u64>,
}

/// Longest a drill waits for writes to come back, or for the mesh to go quiet.
const SETTLE: Duration = Duration::from_secs(60);
/// SKUs the shoppers buy (from the catalog's first page), and stock added to each so that
/// orders are refused for the fault, not because the SKUs sold out.
const SKUS: usize = 5;
const DRILL_STOCK: u64 = 1_000_000;

/// A line of progress on stdout. A closed stdout (the reader went away) must not stop a drill
/// halfway through its heal, so write errors are ignored.
fn say(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{line}");
}

impl Drill {
    fn name(&self) -> &'static str {
        match self {
            Drill::RegionOutage { .. } => "region-outage",
            Drill::LeaderKill { .. } => "leader-kill",
            Drill::RollingRestart { .. } => "rolling-restart",
            Drill::Partition { .. } => "partition",
            Drill::EdgeCrash { .. } => "edge-crash",
            Drill::SlowLink { .. } => "slow-link",
            Drill::Steady { .. } => "steady",
            Drill::FlashSale { .. } => "flash-sale",
        }
    }

    fn common(&self) -> &DrillArgs {
        match self {
            Drill::RegionOutage { common, .. }
            | Drill::LeaderKill { common, .. }
            | Drill::RollingRestart { common, .. }
            | Drill::Partition { common, .. }
            | Drill::EdgeCrash { common, .. }
            | Drill::SlowLink { common, .. }
            | Drill::Steady { common, .. }
            | Drill::FlashSale { common, .. } => common,
        }
    }
}

/// A drill under way: the mesh, its faults, and the clock the fault phases keep.
struct Run {
    mesh: Mesh,
    faults: Faults,
    phase: Duration,
    /// The start of the last probe write that committed.
    last_ok: Arc<AtomicU64>,
    /// Whether the monitor last saw a leader, no member lagging and every edge with a core.
    healthy: Arc<std::sync::atomic::AtomicBool>,
    /// Set (with the reason) when the error budget is spent.
    abort: tokio::sync::watch::Receiver<Option<String>>,
    /// Every random choice follows from this.
    seed: u64,
}

/// Why a fault phase ended early.
struct Aborted(String);

impl Run {
    /// Waits `d`, or less if the drill aborts.
    async fn pause(&mut self, d: Duration) -> Result<(), Aborted> {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            if let Some(why) = self.abort.borrow().clone() {
                return Err(Aborted(why));
            }
            tokio::select! {
                _ = &mut sleep => return Ok(()),
                r = self.abort.changed() => if r.is_err() { sleep.as_mut().await; return Ok(()) },
            }
        }
    }

    /// Keeps the fault for a phase, and on until a write that started after `fault_at`
    /// committed (for `SETTLE` more at most).
    async fn hold(&mut self, fault_at: u64) -> Result<(), Aborted> {
        self.pause(self.phase).await?;
        let started = Instant::now();
        while self.last_ok.load(Ordering::Relaxed) < fault_at && started.elapsed() < SETTLE {
            self.pause(Duration::from_millis(50)).await?;
        }
        Ok(())
    }

    /// Waits (`SETTLE` at most) until the mesh is healthy again: a fault is measured from a
    /// mesh that is whole, not from one still catching up from the last drill.
    async fn settled(&mut self) -> Result<(), Aborted> {
        let started = Instant::now();
        while !self.healthy.load(Ordering::Relaxed) {
            if started.elapsed() > SETTLE {
                return Err(Aborted(format!(
                    "the mesh was not healthy within {SETTLE:?} before the fault (no leader, a \
                     member a second or more behind, or an edge without a core)"
                )));
            }
            self.pause(Duration::from_millis(100)).await?;
        }
        Ok(())
    }

    /// The region that leads now, as the first core that answers says.
    async fn leader(&self) -> anyhow::Result<String> {
        let mesh = self.faults.current()?;
        let http = client(&mesh, Duration::from_secs(2));
        let deadline = Instant::now() + SETTLE;
        loop {
            for r in &mesh.regions {
                if let Some(l) = get_json(&http, &format!("{}/healthz", r.core.admin_url), None)
                    .await
                    .and_then(|h| h["leader"].as_str().map(str::to_owned))
                {
                    return Ok(l);
                }
            }
            if Instant::now() > deadline {
                bail!("no core reports a leader");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn region(&self, name: &str) -> anyhow::Result<&crate::mesh::MeshRegion> {
        self.mesh.region(name)
    }
}

/// What a drill did, beyond the common report.
#[derive(Default)]
struct Outcome {
    details: serde_json::Map<String, Value>,
    /// A drill's own verdict (the checker's comes on top).
    failures: Vec<String>,
}

pub async fn run(drill: Drill, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let args = drill.common();
    if !(0.0..=1.0).contains(&args.error_budget) {
        bail!("--error-budget is a share of orders, 0 to 1");
    }
    let mesh = Mesh::load(&args.mesh)?;
    check_names(&drill, &mesh)?;
    let state_dir = args.mesh.parent().unwrap_or(Path::new("."));
    let dir = state_dir.join("drills").join(format!(
        "{}-{}",
        drill.name(),
        util::clock::now_ms().unsigned_abs()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let history_path = dir.join("history.jsonl");
    let (history, writer) = workload::history_writer(&history_path)?;
    let down = watch::Down::default();
    let faults = Faults::new(args.mesh.clone(), mesh.clone(), down, history.clone());
    let (abort_tx, abort) = tokio::sync::watch::channel(None);
    let seed = args.seed.unwrap_or_else(rand::random);
    say(&format!(
        "seed {seed}: --seed {seed} makes the same random choices again"
    ));
    let mut run = Run {
        mesh,
        faults,
        phase: Duration::from_secs(args.phase_s),
        last_ok: Arc::new(AtomicU64::new(0)),
        healthy: Arc::default(),
        abort,
        seed,
    };
    tokio::pin!(shutdown);
    let result = tokio::select! {
        r = drive(&drill, &mut run, history, abort_tx) => r,
        _ = &mut shutdown => Err(anyhow::anyhow!("interrupted")),
    };
    // Whatever happened, nothing stays killed or cut; or the operator hears what does.
    let healed = run.faults.heal().await;
    let (outcome, counts, aborted) = match (result, healed) {
        (Ok(r), Ok(())) => r,
        (Ok(_), Err(h)) => return Err(h.context("healing the mesh")),
        (Err(e), Ok(())) => {
            return Err(e.context(format!(
                "the {} drill stopped; the mesh is healed",
                drill.name()
            )));
        }
        (Err(e), Err(h)) => {
            return Err(e.context(format!(
                "the {} drill stopped, and healing failed too ({h:#}); see `tradewind status`, and the links (the fault proxy's /v1/links, or the deployment's)",
                drill.name()
            )));
        }
    };
    run.faults.close_history();
    tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the history writer failed"))??;
    conclude(&drill, &run, &dir, &history_path, outcome, counts, aborted).await
}

/// The regions and edges a drill names exist, before it stocks or loads anything.
fn check_names(drill: &Drill, mesh: &Mesh) -> anyhow::Result<()> {
    let regions: Vec<&str> = mesh.regions.iter().map(|r| r.name.as_str()).collect();
    let edges: Vec<&str> = mesh
        .regions
        .iter()
        .flat_map(|r| r.edges.iter().map(|e| e.name.as_str()))
        .collect();
    let named_regions: Vec<&String> = match drill {
        Drill::RegionOutage { region, .. } | Drill::Partition { region, .. } => {
            region.iter().collect()
        }
        Drill::SlowLink { between, .. } => between.iter().collect(),
        _ => Vec::new(),
    };
    for r in named_regions {
        if !regions.contains(&r.as_str()) {
            bail!("no region {r}; the mesh has {}", regions.join(", "));
        }
    }
    if let Drill::SlowLink { between, .. } = drill
        && !between.is_empty()
        && (between.len() != 2 || between[0] == between[1])
    {
        bail!("--between names two different regions, as a,b");
    }
    if let Drill::EdgeCrash { edge: Some(e), .. } = drill
        && !edges.contains(&e.as_str())
    {
        bail!("no edge {e}; the mesh has {}", edges.join(", "));
    }
    if regions.len() < 2
        && !matches!(
            drill,
            Drill::EdgeCrash { .. } | Drill::FlashSale { .. } | Drill::Steady { .. }
        )
    {
        bail!("the {} drill needs two regions or more", drill.name());
    }
    Ok(())
}

/// The drill from setup to heal; returns what it found, the shoppers' counts, and why it
/// aborted if it did. The history sender is dropped when it returns.
async fn drive(
    drill: &Drill,
    run: &mut Run,
    history: tokio::sync::mpsc::Sender<Event>,
    abort_tx: tokio::sync::watch::Sender<Option<String>>,
) -> anyhow::Result<(Outcome, workload::Counts, Option<String>)> {
    let args = drill.common();
    let mut outcome = Outcome::default();
    outcome.details.insert("seed".into(), json!(run.seed));
    let edges: Vec<String> = run
        .mesh
        .regions
        .iter()
        .flat_map(|r| r.edges.iter().map(|e| e.url.clone()))
        .collect();
    let cores: Vec<String> = run
        .mesh
        .regions
        .iter()
        .map(|r| r.core.admin_url.clone())
        .collect();
    let leader = run.leader().await?;
    let mut w = workload::Workload {
        edges,
        shoppers_per_edge: args.shoppers_per_edge as usize,
        skus: Vec::new(),
        hot: String::new(),
        hot_percent: 30,
        browse_percent: 30,
        max_orders: None,
        admin: Some(workload::AdminLoad {
            cores: cores.clone(),
            token: run.mesh.admin_token.clone(),
            every: Duration::from_millis(500),
        }),
        http: run.mesh.client(workload::REQUEST_TIMEOUT)?,
        shoppers: Arc::new(run.mesh.shoppers()?),
        seed: run.seed,
    };
    if let Drill::FlashSale {
        units,
        oversubscribe,
        ..
    } = drill
    {
        let sku = flash_sku(run, &leader, *units).await?;
        outcome.details.insert("sku".into(), json!(sku));
        outcome.details.insert("units".into(), json!(units));
        w.skus = vec![sku.clone()];
        w.hot = sku;
        w.hot_percent = 100;
        w.browse_percent = 10;
        w.max_orders = Some(units * oversubscribe);
        w.admin = None;
    } else {
        w.skus = stock_drill_skus(run, &leader).await?;
        w.hot = w.skus[0].clone();
    }
    outcome
        .details
        .insert("leader_before".into(), json!(leader));

    let live = Arc::new(workload::Live::default());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let shoppers = tokio::spawn(workload::run(
        w.clone(),
        history.clone(),
        stop.clone(),
        Arc::clone(&live),
    ));
    let probe = tokio::spawn(watch::probe(
        run.mesh.clone(),
        run.faults.down.clone(),
        history.clone(),
        Arc::clone(&run.last_ok),
        stop.clone(),
        workload::chooser(run.seed, workload::PROBE.0, workload::PROBE.1),
    ));
    let monitor = tokio::spawn(watch::monitor(
        run.mesh.clone(),
        run.faults.down.clone(),
        history.clone(),
        Arc::clone(&run.healthy),
        stop.clone(),
    ));
    let budget = tokio::spawn(watch::budget(
        Arc::clone(&live),
        args.error_budget,
        abort_tx,
    ));
    drop(history);

    let aborted = match faults_of(drill, run, &leader, &mut outcome).await {
        Ok(()) => None,
        Err(Aborted(why)) => {
            say(&format!("aborting: {why}"));
            Some(why)
        }
    };
    run.faults.heal().await?;
    if aborted.is_none() && !matches!(drill, Drill::FlashSale { .. }) {
        let _ = run.pause(run.phase).await;
    }
    let mut aborted = aborted;
    if let Drill::FlashSale { .. } = drill {
        // The buyers stop by themselves once every order is placed (or the budget is spent).
        let deadline = Instant::now() + SETTLE;
        while !shoppers.is_finished() && Instant::now() < deadline {
            if let Err(Aborted(why)) = run.pause(Duration::from_millis(100)).await {
                say(&format!("aborting: {why}"));
                aborted = Some(why);
                break;
            }
        }
    }
    let _ = stop_tx.send(true);
    budget.abort();
    let counts = shoppers.await?;
    let _ = probe.await;
    let _ = monitor.await;
    Ok((outcome, counts, aborted))
}

/// The drill's faults, from the first phase of calm to the moment before the heal.
async fn faults_of(
    drill: &Drill,
    run: &mut Run,
    leader: &str,
    outcome: &mut Outcome,
) -> Result<(), Aborted> {
    let fail = |e: anyhow::Error| Aborted(format!("{e:#}"));
    if !matches!(drill, Drill::FlashSale { .. }) {
        run.pause(run.phase).await?;
        run.settled().await?;
    }
    match drill {
        Drill::RegionOutage { region, .. } => {
            let victim = region.clone().unwrap_or_else(|| leader.to_owned());
            run.region(&victim).map_err(fail)?;
            let began = Faults::begins();
            run.faults.kill_region(&victim, true).await.map_err(fail)?;
            let at = run
                .faults
                .mark(began, format!("SIGKILL the core and edges of {victim}"))
                .await;
            outcome.details.insert("region".into(), json!(victim));
            run.hold(at).await
        }
        Drill::LeaderKill { times, .. } => {
            let mut killed = Vec::new();
            for i in 1..=*times {
                let leader = run.leader().await.map_err(fail)?;
                let began = Faults::begins();
                run.faults.kill_region(&leader, false).await.map_err(fail)?;
                let at = run
                    .faults
                    .mark(
                        began,
                        format!("SIGKILL the core of the leader, {leader} ({i} of {times})"),
                    )
                    .await;
                killed.push(leader);
                run.hold(at).await?;
                run.faults.heal().await.map_err(fail)?;
                // Back in the group before the next kill: the group needs a majority to lose one.
                run.pause(run.phase).await?;
                run.settled().await?;
            }
            outcome.details.insert("killed".into(), json!(killed));
            Ok(())
        }
        Drill::RollingRestart { .. } => {
            // The leader's region last: one leadership change, as a careful operator makes it.
            let mut order: Vec<String> = run
                .mesh
                .regions
                .iter()
                .map(|r| r.name.clone())
                .filter(|r| r != leader)
                .collect();
            order.push(leader.to_owned());
            for (i, region) in order.iter().enumerate() {
                let began = Faults::begins();
                run.faults.stop_region(region).await.map_err(fail)?;
                let at = run
                    .faults
                    .mark(began, format!(
                        "SIGTERM the core and edges of {region} ({} of {}), to start them again",
                        i + 1,
                        order.len()
                    ))
                    .await;
                run.hold(at).await?;
                run.faults.heal().await.map_err(fail)?;
                // Healthy again (a leader, nobody behind, every edge with a core) before the next.
                run.pause(run.phase).await?;
                run.settled().await?;
            }
            outcome.details.insert("restarted".into(), json!(order));
            Ok(())
        }
        Drill::Partition { region, .. } => {
            let victim = region.clone().unwrap_or_else(|| leader.to_owned());
            run.region(&victim).map_err(fail)?;
            let began = Faults::begins();
            run.faults.cut_off(&victim).await.map_err(fail)?;
            let at = run
                .faults
                .mark(began, format!("cut {victim} off from every other region"))
                .await;
            outcome.details.insert("region".into(), json!(victim));
            run.hold(at).await
        }
        Drill::EdgeCrash { edge, .. } => {
            let name = match edge {
                Some(e) => e.clone(),
                None => run
                    .region(leader)
                    .map_err(fail)?
                    .edges
                    .first()
                    .map(|e| e.name.clone())
                    .ok_or_else(|| Aborted(format!("{leader} has no edge")))?,
            };
            let began = Faults::begins();
            run.faults.kill_edge(&name).await.map_err(fail)?;
            let at = run.faults.mark(began, format!("SIGKILL edge {name}")).await;
            outcome.details.insert("edge".into(), json!(name));
            run.hold(at).await
        }
        Drill::SlowLink {
            between, add_ms, ..
        } => {
            let (a, b) = match between.as_slice() {
                [a, b] => (a.clone(), b.clone()),
                _ => {
                    let other = run
                        .mesh
                        .regions
                        .iter()
                        .find(|r| r.name != leader)
                        .ok_or_else(|| Aborted("a slow link needs two regions".into()))?;
                    (leader.to_owned(), other.name.clone())
                }
            };
            let links = run
                .faults
                .links(|f, t| (f == a && t == b) || (f == b && t == a));
            if links.is_empty() {
                return Err(Aborted(format!("no link between {a} and {b}")));
            }
            // Each direction of each link carries half the round trip.
            let began = Faults::begins();
            run.faults.slow(&links, add_ms / 2).await.map_err(fail)?;
            let at = run
                .faults
                .mark(
                    began,
                    format!("add {add_ms} ms round trip between {a} and {b}"),
                )
                .await;
            outcome.details.insert("between".into(), json!([a, b]));
            run.hold(at).await
        }
        Drill::Steady { until, hold_s, .. } => {
            let hold = hold_s.map_or(run.phase, Duration::from_secs);
            // The line an operator's script waits for before it begins.
            say(&format!(
                "steady: under load for up to {} s{}",
                hold.as_secs(),
                until
                    .as_ref()
                    .map(|f| format!(", until {} exists", f.display()))
                    .unwrap_or_default()
            ));
            let started = Instant::now();
            loop {
                if until.as_ref().is_some_and(|f| f.exists()) {
                    let s = started.elapsed().as_secs_f64();
                    outcome.details.insert("operation_s".into(), json!(s));
                    return Ok(());
                }
                if started.elapsed() >= hold {
                    return match until {
                        Some(f) => Err(Aborted(format!(
                            "{} did not appear within {} s",
                            f.display(),
                            hold.as_secs()
                        ))),
                        None => Ok(()),
                    };
                }
                run.pause(Duration::from_millis(100)).await?;
            }
        }
        Drill::FlashSale { .. } => Ok(()),
    }
}

/// The first SKUs of the catalog, with `DRILL_STOCK` more units each (at the leader).
async fn stock_drill_skus(run: &Run, leader: &str) -> anyhow::Result<Vec<String>> {
    let http = client(&run.mesh, Duration::from_secs(5));
    let edge = &run.mesh.regions[0].edges[0].url;
    let page = get_json(
        &http,
        &format!("{edge}/v1/products?limit={SKUS}&currency=USD"),
        None,
    )
    .await
    .context("reading the catalog")?;
    let skus: Vec<String> = page["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["skus"][0]["sku"].as_str().map(str::to_owned))
        .collect();
    if skus.is_empty() {
        bail!("the catalog is empty");
    }
    let changes: Vec<Value> = skus
        .iter()
        .map(|s| json!({"sku": s, "add": DRILL_STOCK}))
        .collect();
    let body = json!({ "changes": changes });
    admin_write(run, leader, reqwest::Method::POST, "stock", &body).await?;
    Ok(skus)
}

/// A product made for the sale: one SKU, a USD price, `units` in stock; returns the SKU once
/// every edge quotes it.
async fn flash_sku(run: &Run, leader: &str, units: u64) -> anyhow::Result<String> {
    let id = format!("flash-{}", util::clock::now_ms().unsigned_abs());
    let sku = format!("{id}-1");
    let product = json!({"id": id, "title": "Flash sale", "category": "electronics/accessories",
        "skus": [{"sku": sku, "max_order_qty": 1}]});
    let price = json!({"changes": [{"sku": sku, "currency": "USD", "amount_minor": 1999}]});
    let stock = json!({"changes": [{"sku": sku, "set": units}]});
    use reqwest::Method;
    admin_write(
        run,
        leader,
        Method::PUT,
        &format!("products/{id}"),
        &product,
    )
    .await?;
    admin_write(run, leader, Method::POST, "prices", &price).await?;
    admin_write(run, leader, Method::POST, "stock", &stock).await?;
    let http = client(&run.mesh, Duration::from_secs(2));
    let deadline = Instant::now() + SETTLE;
    for e in run.mesh.regions.iter().flat_map(|r| &r.edges) {
        let url = format!("{}/v1/skus/{sku}/quote?qty=1&currency=USD", e.url);
        while !http
            .get(&url)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            if Instant::now() > deadline {
                bail!("{} did not learn of {sku} within {SETTLE:?}", e.name);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(sku)
}

fn admin_url(run: &Run, region: &str) -> anyhow::Result<String> {
    Ok(run.region(region)?.core.admin_url.clone())
}

/// Sends one admin write to `region`'s core, under a key of its own.
async fn admin_write(
    run: &Run,
    region: &str,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> anyhow::Result<()> {
    let mut rng = workload::chooser(run.seed, workload::SETUP.0, workload::SETUP.1);
    let mesh = &run.mesh;
    crate::admin::Admin::new(
        &admin_url(run, region)?,
        mesh.admin_token.clone(),
        mesh.ca.as_deref(),
    )?
    .send(
        method,
        &format!("/admin/v1/{path}"),
        &workload::key(&mut rng),
        body,
    )
    .await
}

/// After the heal: waits until every edge has sent its outbox, reads the final state at the
/// leader, checks, reports.
async fn conclude(
    drill: &Drill,
    run: &Run,
    dir: &Path,
    history_path: &Path,
    mut outcome: Outcome,
    counts: workload::Counts,
    aborted: Option<String>,
) -> anyhow::Result<()> {
    let args = drill.common();
    let mesh = run.faults.current()?;
    let http = client(&mesh, Duration::from_secs(2));
    let deadline = Instant::now() + SETTLE;
    for e in mesh.regions.iter().flat_map(|r| &r.edges) {
        while get_json(&http, &format!("{}/v1/status", e.url), None)
            .await
            .is_none_or(|s| s["outbox_pending"] != 0)
        {
            if Instant::now() > deadline {
                bail!("edge {} did not send its outbox within {SETTLE:?}", e.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let events = workload::read_history(history_path)?;
    let skus: std::collections::BTreeSet<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Order { lines, .. } => Some(lines.iter().map(|l| l.sku.clone())),
            _ => None,
        })
        .flatten()
        .collect();
    let skus: Vec<String> = skus.into_iter().collect();
    let leader = run.leader().await?;
    let state = workload::final_state(&mesh, &admin_url(run, &leader)?, &skus).await?;
    let v = checker::check(&events, &state);
    // This drill's orders: the core also holds every order placed before it.
    let keys: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            Event::Order { key, .. } => Some(key.as_str()),
            _ => None,
        })
        .collect();
    let committed = state
        .orders
        .iter()
        .filter(|o| o.status == "committed")
        .filter(|o| {
            o.idempotency_key
                .as_deref()
                .is_some_and(|k| keys.contains(k))
        })
        .count();
    let timings = report::faults(&events);
    let during = report::acked_during_faults(&events);
    match drill {
        Drill::Partition { .. } => {
            let cut = outcome
                .details
                .get("region")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let cut_edges: Vec<String> = run
                .region(&cut)
                .map(|r| r.edges.iter().map(|e| e.url.clone()).collect())
                .unwrap_or_default();
            let n: u64 = cut_edges.iter().filter_map(|e| during.get(e)).sum();
            outcome
                .details
                .insert("acked_by_cut_edges_during_cut".into(), json!(n));
            if n == 0 && aborted.is_none() {
                outcome.failures.push(format!(
                    "the edges of {cut} accepted no order while cut off"
                ));
            }
        }
        Drill::FlashSale { .. } => {
            let sku = outcome
                .details
                .get("sku")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Some(i) = state.inventory.iter().find(|i| i.sku == sku) {
                outcome.details.insert("sold".into(), json!(i.committed));
                outcome
                    .details
                    .insert("left_in_grants".into(), json!(i.granted));
                if i.committed < i.stocked {
                    outcome.failures.push(format!(
                        "{} of {} units unsold ({} still in edges' grants)",
                        i.stocked - i.committed,
                        i.stocked,
                        i.granted
                    ));
                }
            }
        }
        Drill::RegionOutage { .. } | Drill::LeaderKill { .. } | Drill::RollingRestart { .. } => {
            if timings.iter().any(|t| t.rto_ms.is_none()) {
                outcome
                    .failures
                    .push(format!("writes did not come back within {SETTLE:?}"));
            }
        }
        Drill::EdgeCrash { .. } | Drill::SlowLink { .. } | Drill::Steady { .. } => {}
    }
    if let Some(why) = &aborted {
        outcome.failures.push(format!("aborted: {why}"));
    }
    if timings.iter().any(|t| t.leader_after.is_some()) {
        let after: Vec<_> = timings.iter().map(|t| &t.leader_after).collect();
        outcome.details.insert("leader_after".into(), json!(after));
    }
    let worst = |f: fn(&report::FaultTiming) -> Option<u64>| timings.iter().filter_map(f).max();
    let (detect_ms, rto_ms) = (worst(|t| t.detect_ms), worst(|t| t.rto_ms));
    if let Some(target) = args.rto_target_ms {
        match rto_ms {
            Some(rto) if rto > target => outcome
                .failures
                .push(format!("rto {rto} ms, over the target of {target} ms")),
            None if !timings.is_empty() => outcome.failures.push(format!(
                "writes did not come back after the fault (target {target} ms)"
            )),
            _ => {}
        }
    }
    let ok = v.ok() && outcome.failures.is_empty();
    let max_lag = report::max_replication_lag_ms(&events);
    let errors = report::errors_by_kind(&events);
    let svg_path = dir.join("timeline.svg");
    std::fs::write(
        &svg_path,
        report::svg(&format!("tradewind chaos {}", drill.name()), &events),
    )?;
    let mut r = json!({
        "drill": drill.name(),
        "fault_injected_at": timings.first().map(|t| t.at_ms),
        // When writes came back after the last fault, and when its heal began.
        "recovered_at": timings.iter().filter_map(|t| t.rto_ms.map(|r| t.at_ms + r)).max(),
        "healed_at": timings.last().and_then(|t| t.healed_at_ms),
        "detect_ms": detect_ms,
        "rto_ms": rto_ms,
        "rto_target_ms": args.rto_target_ms,
        "faults": timings,
        "orders_attempted": counts.attempted,
        "orders_acked": counts.acked,
        "orders_refused": counts.refused,
        "orders_failed": counts.failed,
        "orders_retried": counts.retried,
        "orders_retried_elsewhere": counts.retried_elsewhere,
        "orders_committed": committed,
        "reads": counts.browsed,
        "lost_acked_orders": v.lost_acked_orders.len(),
        "duplicate_orders": v.duplicate_orders.len(),
        "keys_with_two_orders": v.keys_with_two_orders.len(),
        "oversold_units": v.oversold_units,
        "orders_without_price_version": v.orders_without_price_version.len(),
        "orders_priced_off_their_version": v.orders_priced_off_their_version.len(),
        "orders_checked_against_a_price_change": v.orders_checked_against_a_price_change,
        "max_replication_lag_ms": max_lag,
        "errors_by_kind": errors,
        "acked_during_fault_by_edge": during,
        "violations": &v,
        "failures": outcome.failures,
        "aborted": aborted,
        "timeline": report::timeline(&events),
        "timeline_svg": svg_path.display().to_string(),
        "history": history_path.display().to_string(),
        "ok": ok,
    });
    if let Some(o) = r.as_object_mut() {
        o.extend(outcome.details.clone());
    }
    let text = serde_json::to_vec_pretty(&r)?;
    std::fs::write(dir.join("report.json"), &text)?;
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    }
    let ms = |v: Option<u64>| v.map_or("-".into(), |d| d.to_string());
    println!(
        "{}: detect {} ms, rto {} ms, largest replication lag {} ms; orders attempted {}, acked {}, committed {}, refused {}, failed {}, retried {} ({} elsewhere); lost {}, duplicates {}, keys told two orders {}, oversold units {}, without price version {}",
        drill.name(),
        ms(detect_ms),
        ms(rto_ms),
        ms(max_lag),
        counts.attempted,
        counts.acked,
        committed,
        counts.refused,
        counts.failed,
        counts.retried,
        counts.retried_elsewhere,
        v.lost_acked_orders.len(),
        v.duplicate_orders.len(),
        v.keys_with_two_orders.len(),
        v.oversold_units,
        v.orders_without_price_version.len(),
    );
    for (k, val) in &outcome.details {
        println!("  {k}: {val}");
    }
    for f in &outcome.failures {
        println!("  FAILED: {f}");
    }
    println!(
        "  report {}, timeline {}: {}",
        dir.join("report.json").display(),
        svg_path.display(),
        if ok { "ok" } else { "VIOLATED" }
    );
    if !ok {
        bail!("the {} drill found violations", drill.name());
    }
    Ok(())
}
