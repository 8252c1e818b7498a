//! `tradewind chaos <drill> --mesh FILE`: failover drills on a running demo (DESIGN §3). A drill
//! runs the workload at every edge, injects its fault, heals it, lets the mesh go quiet, and
//! reports what the checker finds (I1–I4) with detect and recovery times: JSON with `--report`,
//! a summary on stdout. Whatever happens, it heals before it exits.
//!
//! Drills so far: `region-outage` (SIGKILL the core and edges of one region, by default the
//! leader's, then start them again through the demo).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use chaos_tests::{checker, workload};
use serde_json::{Value, json};

use crate::mesh::Mesh;

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
}

#[derive(clap::Args, Debug)]
pub struct DrillArgs {
    /// The mesh.json of a running demo.
    #[arg(long, default_value = ".tradewind/demo/mesh.json")]
    mesh: PathBuf,
    /// Where to write the JSON report.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Seconds of load before the fault, with the fault, and after the heal.
    #[arg(long, default_value_t = 5)]
    phase_s: u64,
    /// Shoppers at each edge.
    #[arg(long, default_value_t = 2)]
    shoppers_per_edge: usize,
}

/// Longest a drill waits for the mesh to recover or go quiet.
const SETTLE: Duration = Duration::from_secs(60);
/// How often the write probe tries.
const PROBE_EVERY: Duration = Duration::from_millis(50);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub async fn run(drill: Drill) -> anyhow::Result<()> {
    match drill {
        Drill::RegionOutage { common, region } => region_outage(common, region).await,
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default()
}

async fn get(url: &str, token: Option<&str>) -> Option<Value> {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.ok()?.json().await.ok()
}

/// The region that leads, as the first core that answers says.
async fn leader(mesh: &Mesh) -> Option<String> {
    for r in &mesh.regions {
        if let Some(l) = get(&format!("{}/healthz", r.core.admin_url), None)
            .await
            .and_then(|h| h["leader"].as_str().map(str::to_owned))
        {
            return Some(l);
        }
    }
    None
}

/// One write through `admin`, under a new key: whether it committed.
async fn probe(admin: &str, token: &str) -> bool {
    let body = json!({"id": "drill-probe", "countries": ["SG"], "currencies": ["USD"]});
    http()
        .put(format!("{admin}/admin/v1/markets/drill-probe"))
        .bearer_auth(token)
        .header("idempotency-key", workload::uuid_v7())
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

fn kill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Asks the demo to start every stopped part again, and waits until `region`'s parts answer.
async fn heal(mesh_path: &Path, demo_pid: u32, region: &str) -> anyhow::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo_pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .context("asking the demo to start its stopped parts")?;
    let deadline = Instant::now() + SETTLE;
    loop {
        if let Ok(mesh) = Mesh::load(mesh_path)
            && let Some(r) = mesh.regions.iter().find(|r| r.name == region)
        {
            let core_up = get(&format!("{}/healthz", r.core.admin_url), None)
                .await
                .is_some();
            let mut edges_up = true;
            for e in &r.edges {
                edges_up &= get(&format!("{}/healthz", e.url), None).await.is_some();
            }
            if core_up && edges_up {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{region} did not come back within {SETTLE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn region_outage(args: DrillArgs, region: Option<String>) -> anyhow::Result<()> {
    let mesh = Mesh::load(&args.mesh)?;
    let token = mesh.admin_token.clone();
    let old_leader = leader(&mesh).await.context("no core answers")?;
    let victim = region.unwrap_or_else(|| old_leader.clone());
    let Some(down) = mesh.regions.iter().find(|r| r.name == victim).cloned() else {
        bail!("no region {victim} in {}", args.mesh.display());
    };
    let survivor = mesh
        .regions
        .iter()
        .find(|r| r.name != victim)
        .context("a region outage needs two regions or more")?
        .clone();
    let edges: Vec<String> = mesh
        .regions
        .iter()
        .flat_map(|r| r.edges.iter().map(|e| e.url.clone()))
        .collect();
    let page = get(
        &format!("{}/v1/products?limit=5&currency=USD", edges[0]),
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
    let hot = skus.first().context("the catalog is empty")?.clone();
    // Stock enough that orders are refused for the fault, not because the SKUs sold out.
    let changes: Vec<Value> = skus
        .iter()
        .map(|s| json!({"sku": s, "add": 1_000_000}))
        .collect();
    let stocked = http()
        .post(format!("{}/admin/v1/stock", survivor.core.admin_url))
        .bearer_auth(&token)
        .header("idempotency-key", workload::uuid_v7())
        .json(&json!({ "changes": changes }))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !stocked {
        bail!("could not stock the drill's SKUs");
    }
    let dir = args.mesh.parent().unwrap_or(Path::new("."));
    let history_path = dir.join(format!("history-region-outage-{}.jsonl", now_ms()));
    let (history, writer) = workload::history_writer(&history_path)?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(workload::run(
        workload::Workload {
            edges,
            shoppers_per_edge: args.shoppers_per_edge,
            skus: skus.clone(),
            hot,
            hot_percent: 30,
        },
        history.clone(),
        stopped,
    ));
    let phase = Duration::from_secs(args.phase_s);
    tokio::time::sleep(phase).await;

    // The fault: every process of the region, at once.
    let fault_at = now_ms();
    let _ = history
        .send(checker::Event::Fault {
            at_ms: fault_at,
            what: format!("SIGKILL {victim}"),
        })
        .await;
    kill(down.core.pid);
    for e in &down.edges {
        kill(e.pid);
    }
    // Detect: another region reports a leader; recover: a write commits elsewhere.
    let started = Instant::now();
    let (mut detect_ms, mut rto_ms) = (None, None);
    while started.elapsed() < SETTLE && rto_ms.is_none() {
        if detect_ms.is_none()
            && get(&format!("{}/healthz", survivor.core.admin_url), None)
                .await
                .is_some_and(|h| h["leader"].is_string() && h["leader"] != victim.as_str())
        {
            detect_ms = Some(now_ms() - fault_at);
        }
        if probe(&survivor.core.admin_url, &token).await {
            rto_ms = Some(now_ms() - fault_at);
            // A write committed elsewhere: the group has noticed by now, at the latest.
            detect_ms = detect_ms.or(rto_ms);
        } else {
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }
    tokio::time::sleep(phase.saturating_sub(started.elapsed())).await;
    let healed = heal(&args.mesh, mesh.pid, &victim).await;
    let recovered_at = now_ms();
    let _ = history
        .send(checker::Event::Heal {
            at_ms: recovered_at,
        })
        .await;
    tokio::time::sleep(phase).await;
    let _ = stop.send(true);
    let counts = load.await?;
    drop(history);
    tokio::task::spawn_blocking(move || writer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the history writer failed"))??;
    healed?;

    // Quiet: every edge has sent its outbox; then the core's final state.
    let mesh = Mesh::load(&args.mesh)?;
    let deadline = Instant::now() + SETTLE;
    for e in mesh.regions.iter().flat_map(|r| &r.edges) {
        while get(&format!("{}/v1/status", e.url), None)
            .await
            .is_none_or(|s| s["outbox_pending"] != 0)
        {
            if Instant::now() > deadline {
                bail!("edge {} did not send its outbox within {SETTLE:?}", e.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let state = workload::final_state(&survivor.core.admin_url, &token, &skus).await?;
    let events = workload::read_history(&history_path)?;
    let v = checker::check(&events, &state);
    // This drill's orders: the core also holds every order placed before it.
    let keys: std::collections::BTreeSet<&str> = events
        .iter()
        .filter_map(|e| match e {
            checker::Event::Order { key, .. } => Some(key.as_str()),
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
    let ok = v.ok() && rto_ms.is_some();
    let report = json!({
        "drill": "region-outage",
        "region": victim,
        "old_leader": old_leader,
        "fault_injected_at": fault_at,
        "recovered_at": recovered_at,
        "detect_ms": detect_ms,
        "rto_ms": rto_ms,
        "orders_attempted": counts.attempted,
        "orders_acked": counts.acked,
        "orders_refused": counts.refused,
        "orders_unanswered": counts.unanswered,
        "orders_committed": committed,
        "lost_acked_orders": v.lost_acked_orders.len(),
        "duplicate_orders": v.duplicate_orders.len(),
        "oversold_units": v.oversold_units,
        "orders_without_price_version": v.orders_without_price_version.len(),
        "violations": &v,
        "history": history_path.display().to_string(),
        "ok": ok,
    });
    if let Some(path) = &args.report {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "region-outage of {victim} (the leader was {old_leader}): detect {} ms, rto {} ms; orders attempted {}, acked {}, committed {}; lost {}, duplicates {}, oversold units {}, without price version {}: {}",
        detect_ms.map_or("-".into(), |d| d.to_string()),
        rto_ms.map_or("-".into(), |d| d.to_string()),
        counts.attempted,
        counts.acked,
        committed,
        v.lost_acked_orders.len(),
        v.duplicate_orders.len(),
        v.oversold_units,
        v.orders_without_price_version.len(),
        if ok { "ok" } else { "VIOLATED" }
    );
    if !ok {
        bail!(
            "the drill found violations (history: {})",
            history_path.display()
        );
    }
    Ok(())
}
