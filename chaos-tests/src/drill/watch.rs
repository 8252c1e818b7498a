//! What runs beside a drill's shoppers: the write probe (a small admin write every 50 ms at a
//! core that is not down: when writes stop and when they come back), the monitor (what the mesh
//! says about itself: leader, lag, edges without a core) and the error budget. The probe and the
//! monitor write to the history; the budget raises the drill's abort.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checker::Event;
use crate::workload::{self, Live};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::mesh::Mesh;

/// How often the probe writes.
const PROBE_EVERY: Duration = Duration::from_millis(50);
/// How long one probe write may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Probe writes under way at once: a timeout's worth.
const PROBES_IN_FLIGHT_MAX: usize = 40;
/// How often the monitor looks.
const OBSERVE_EVERY: Duration = Duration::from_millis(100);
/// A member this far behind the leader counts as lagging.
const LAGGING_MS: u64 = 1_000;
/// The error budget is judged over this window.
const BUDGET_WINDOW: Duration = Duration::from_secs(5);
/// Fewer orders than this in a window say nothing about the budget.
const BUDGET_MIN_ORDERS: u64 = 20;

/// Regions whose core a fault has taken away (killed or cut off), now and at any time in the
/// drill, shared between the drill and its watchers: the probe writes elsewhere, and their lag
/// (also while they catch up after the heal) is not the mesh's lag.
pub type Down = Arc<Mutex<Regions>>;

#[derive(Default)]
pub struct Regions {
    now: BTreeSet<String>,
    ever: BTreeSet<String>,
}

fn regions(down: &Down) -> std::sync::MutexGuard<'_, Regions> {
    down.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn is_down(down: &Down, region: &str) -> bool {
    regions(down).now.contains(region)
}

fn was_down(down: &Down, region: &str) -> bool {
    regions(down).ever.contains(region)
}

pub fn mark_down(down: &Down, region: &str) {
    let mut r = regions(down);
    r.now.insert(region.to_owned());
    r.ever.insert(region.to_owned());
}

/// Every region is back.
pub fn all_up(down: &Down) {
    regions(down).now.clear();
}

/// A client of `mesh`'s APIs (one that trusts no CA when the mesh's cannot be read: its
/// requests then fail, and say so, where they are made).
pub fn client(mesh: &Mesh, timeout: Duration) -> reqwest::Client {
    mesh.client(timeout).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no client that trusts the mesh's CA");
        reqwest::Client::default()
    })
}

pub async fn get_json(http: &reqwest::Client, url: &str, token: Option<&str>) -> Option<Value> {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.ok()?.json().await.ok()
}

/// Starts one small admin write under a new key every `PROBE_EVERY` (without waiting for the
/// last: the time writes come back is known to within a tick, not a timeout), at the first
/// core that is not down, until `stop`; records each in the history, and the start of the
/// latest that committed in `last_ok`.
pub async fn probe(
    mesh: Mesh,
    down: Down,
    history: mpsc::Sender<Event>,
    last_ok: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
    mut rng: rand::rngs::StdRng,
) {
    let http = client(&mesh, PROBE_TIMEOUT);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = tokio::task::JoinSet::new();
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        while in_flight.try_join_next().is_some() {}
        let Some(core) = mesh.regions.iter().find(|r| !is_down(&down, &r.name)) else {
            continue;
        };
        if in_flight.len() >= PROBES_IN_FLIGHT_MAX {
            continue;
        }
        let req = http
            .put(format!(
                "{}/admin/v1/markets/drill-probe",
                core.core.admin_url
            ))
            .bearer_auth(&mesh.admin_token)
            .header("idempotency-key", workload::key(&mut rng))
            .json(&json!({"id": "drill-probe", "countries": ["SG"], "currencies": ["USD"]}));
        let (history, last_ok) = (history.clone(), Arc::clone(&last_ok));
        in_flight.spawn(async move {
            let at_ms = util::clock::now_ms().unsigned_abs();
            let ok = req.send().await.is_ok_and(|r| r.status().is_success());
            if ok {
                last_ok.fetch_max(at_ms, Ordering::Relaxed);
            }
            let took_ms = util::clock::now_ms().unsigned_abs().saturating_sub(at_ms);
            let _ = history.send(Event::Probe { at_ms, took_ms, ok }).await;
        });
    }
    in_flight.join_all().await;
}

/// Records what the mesh says about itself every `OBSERVE_EVERY` until `stop`, and in `healthy`
/// whether it has a leader, no member lagging and every edge connected to a core.
pub async fn monitor(
    mesh: Mesh,
    down: Down,
    history: mpsc::Sender<Event>,
    healthy: Arc<std::sync::atomic::AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let quick = client(&mesh, Duration::from_millis(500));
    let mut tick = tokio::time::interval(OBSERVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // The leader as the cores that are not down see it (their own views: quick), in the
        // highest term any of them knows: a deposed leader may still think it leads.
        let mut leader: Option<String> = None;
        let mut term = 0;
        for r in mesh.regions.iter().filter(|r| !is_down(&down, &r.name)) {
            if let Some(h) = get_json(&quick, &format!("{}/healthz", r.core.admin_url), None).await
            {
                let t = h["term"].as_u64().unwrap_or(0);
                if t > term || (t == term && leader.is_none()) {
                    leader = h["leader"].as_str().map(str::to_owned);
                    term = t;
                }
            }
        }
        // Lag as the leader measures it, when the leader is up: a follower would ask the
        // leader, and wait on it when it is gone.
        let (mut lagging, mut max_lag_ms) = (Vec::new(), None);
        // Whether all that makes the mesh healthy was seen: an answer that did not come is not
        // a member caught up, nor an edge connected.
        let mut seen_all = false;
        let leading = leader
            .as_deref()
            .filter(|l| !is_down(&down, l))
            .and_then(|l| mesh.regions.iter().find(|r| r.name == l));
        if let Some(r) = leading
            && let Some(c) = get_json(
                &quick,
                &format!("{}/admin/v1/cluster", r.core.admin_url),
                Some(&mesh.admin_token),
            )
            .await
        {
            seen_all = true;
            for m in c["members"].as_array().into_iter().flatten() {
                let (Some(region), Some(lag)) = (m["region"].as_str(), m["lag_ms"].as_u64()) else {
                    continue;
                };
                if lag >= LAGGING_MS {
                    lagging.push(region.to_owned());
                }
                if !was_down(&down, region) {
                    max_lag_ms = Some(max_lag_ms.unwrap_or(0).max(lag));
                }
            }
        }
        let mut asks = tokio::task::JoinSet::new();
        for e in mesh.regions.iter().flat_map(|r| &r.edges) {
            let (quick, url, name) = (
                quick.clone(),
                format!("{}/v1/status", e.url),
                e.name.clone(),
            );
            asks.spawn(async move {
                match get_json(&quick, &url, None).await {
                    Some(s) => (s["core_connected"] == false).then_some((name, true)),
                    None => Some((name, false)),
                }
            });
        }
        let mut edges_disconnected = Vec::new();
        for (name, answered) in asks.join_all().await.into_iter().flatten() {
            if answered {
                edges_disconnected.push(name);
            } else {
                seen_all = false;
            }
        }
        edges_disconnected.sort();
        healthy.store(
            seen_all && leader.is_some() && lagging.is_empty() && edges_disconnected.is_empty(),
            Ordering::Relaxed,
        );
        // When all of it was known: a change counts from when it was seen, not before.
        let at_ms = util::clock::now_ms().unsigned_abs();
        let _ = history
            .send(Event::Observe {
                at_ms,
                leader,
                lagging,
                max_lag_ms,
                edges_disconnected,
            })
            .await;
    }
}

/// Watches the shoppers' answers: once more than `budget` of the orders in the last
/// `BUDGET_WINDOW` failed (no answer, or a 5xx), sends the reason on `abort` and returns.
pub async fn budget(live: Arc<Live>, budget: f64, abort: watch::Sender<Option<String>>) {
    let step = Duration::from_millis(500);
    let window = (BUDGET_WINDOW.as_millis() / step.as_millis()) as usize;
    let mut seen: std::collections::VecDeque<(u64, u64)> = std::collections::VecDeque::new();
    while !abort.is_closed() {
        tokio::time::sleep(step).await;
        let c = live.counts();
        let answered = c.acked + c.refused + c.failed;
        seen.push_back((answered, c.failed));
        if seen.len() > window + 1 {
            seen.pop_front();
        }
        let (a0, f0) = seen.front().copied().unwrap_or_default();
        let (orders, failed) = (answered - a0, c.failed - f0);
        if orders >= BUDGET_MIN_ORDERS && failed as f64 > budget * orders as f64 {
            let _ = abort.send(Some(format!(
                "{failed} of the last {orders} orders failed (budget {:.0}%)",
                budget * 100.0
            )));
            return;
        }
    }
}
