//! Active health checks of every edge and cache, and the board of healthy addresses DNS answers
//! from.
//!
//! Each server's `/healthz` is fetched every `interval_ms`. An edge's check passes only when it
//! answers 200 with its health document and that document says it can sell: it reaches a core,
//! is no staler than its bound (or the router's `max_staleness_ms`), has a catalog and is not
//! shutting down. A cache's passes when it answers 200 with a cache's health document (a cache
//! whose origins fail still serves what it holds). A server goes out of the answers after
//! `down_after` failures in a row and comes back after `up_after` passes; it starts out, until
//! it has passed. Every change rebuilds the board, which DNS queries read without waiting on
//! the checks.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::{HealthSettings, RouterConfig};

/// Largest health document read.
const BODY_MAX_BYTES: usize = 64 * 1024;

/// One region's answer for one service: the addresses of its healthy edges (or caches), and
/// of all of them (for answering when no region has a healthy one).
#[derive(Debug, Clone, Default)]
pub struct RegionAnswer {
    pub healthy_edges: usize,
    pub healthy: Addresses,
    pub all: Addresses,
}

#[derive(Debug, Clone, Default)]
pub struct Addresses {
    pub v4: Vec<IpAddr>,
    pub v6: Vec<IpAddr>,
}

impl Addresses {
    fn add(&mut self, ip: IpAddr) {
        let list = if ip.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        };
        if !list.contains(&ip) {
            list.push(ip);
        }
    }
}

/// What a name is answered with: the storefront's edges, or the caches that serve assets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Storefront,
    Assets,
}

/// What DNS answers from: for each service, one entry per region, in the config's order.
#[derive(Debug, Default)]
pub struct Board {
    pub regions: Vec<RegionAnswer>,
    pub assets: Vec<RegionAnswer>,
}

impl Board {
    /// Each region's answer for `service`.
    pub fn answers(&self, service: Service) -> &[RegionAnswer] {
        match service {
            Service::Storefront => &self.regions,
            Service::Assets => &self.assets,
        }
    }
}

/// The last check of an edge.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    pub at_unix_ms: u64,
    pub ok: bool,
    /// Why it failed (empty when it passed).
    pub reason: String,
    pub latency_ms: u64,
}

/// An edge or a cache, as the checks found it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EdgeState {
    pub name: String,
    pub service: Service,
    pub region: String,
    #[serde(skip)]
    pub region_index: usize,
    pub health_url: String,
    pub addresses: Vec<IpAddr>,
    /// In the answers.
    pub up: bool,
    /// When `up` last changed (or the router started).
    pub since_unix_ms: u64,
    pub passes_in_a_row: u32,
    pub failures_in_a_row: u32,
    pub checks_passed: u64,
    pub checks_failed: u64,
    pub last: Option<Check>,
}

/// The edges' states and the board made from them.
pub struct Health {
    settings: HealthSettings,
    edges: Mutex<Vec<EdgeState>>,
    board: RwLock<Arc<Board>>,
    /// Moves on after each new board is in place (`generation`).
    generation: AtomicU64,
    regions: usize,
}

impl Health {
    pub fn new(c: &RouterConfig) -> Health {
        let now = util::clock::now_ms().unsigned_abs();
        let edges: Vec<EdgeState> = c
            .regions
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                let edges = r.edges.iter().map(|e| (Service::Storefront, e));
                let caches = r.caches.iter().map(|e| (Service::Assets, e));
                edges.chain(caches).map(move |(service, e)| EdgeState {
                    name: e.name.clone(),
                    service,
                    region: r.name.clone(),
                    region_index: i,
                    health_url: e.health_url.clone(),
                    addresses: e.addresses.clone(),
                    up: false,
                    since_unix_ms: now,
                    passes_in_a_row: 0,
                    failures_in_a_row: 0,
                    checks_passed: 0,
                    checks_failed: 0,
                    last: None,
                })
            })
            .collect();
        let board = build_board(&edges, c.regions.len());
        Health {
            settings: c.health.clone(),
            edges: Mutex::new(edges),
            board: RwLock::new(Arc::new(board)),
            generation: AtomicU64::new(0),
            regions: c.regions.len(),
        }
    }

    /// The current board.
    pub fn board(&self) -> Arc<Board> {
        Arc::clone(&self.board.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Changes whenever the board does: an answer built after reading a generation was built
    /// from that board or a newer one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn edges(&self) -> Vec<EdgeState> {
        self.edges.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Records a check of edge `i`; rebuilds the board when the edge goes in or out.
    pub fn record(&self, i: usize, check: Check) {
        let mut edges = self.edges.lock().unwrap_or_else(|e| e.into_inner());
        let Some(e) = edges.get_mut(i) else { return };
        if check.ok {
            e.checks_passed += 1;
            e.passes_in_a_row = e.passes_in_a_row.saturating_add(1);
            e.failures_in_a_row = 0;
        } else {
            e.checks_failed += 1;
            e.failures_in_a_row = e.failures_in_a_row.saturating_add(1);
            e.passes_in_a_row = 0;
        }
        let flip = if e.up {
            e.failures_in_a_row >= self.settings.down_after
        } else {
            e.passes_in_a_row >= self.settings.up_after
        };
        if flip {
            e.up = !e.up;
            e.since_unix_ms = check.at_unix_ms;
            if e.up {
                tracing::info!(edge = %e.name, region = %e.region, "edge is up");
            } else {
                tracing::warn!(edge = %e.name, region = %e.region, reason = %check.reason, "edge is down");
            }
        }
        e.last = Some(check);
        if flip {
            let board = Arc::new(build_board(&edges, self.regions));
            *self.board.write().unwrap_or_else(|e| e.into_inner()) = board;
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Checks every edge until the returned tasks are aborted.
    pub fn spawn_checks(self: &Arc<Self>) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let client = http_api::client::builder(self.settings.ca.as_deref())?
            .no_proxy()
            .timeout(Duration::from_millis(self.settings.timeout_ms))
            .connect_timeout(Duration::from_millis(self.settings.timeout_ms))
            .pool_max_idle_per_host(1)
            .user_agent("tradewind-geo-router")
            .build()?;
        let urls: Vec<(Service, String)> = self
            .edges()
            .into_iter()
            .map(|e| (e.service, e.health_url))
            .collect();
        Ok(urls
            .into_iter()
            .enumerate()
            .map(|(i, (service, url))| {
                let (me, client) = (Arc::clone(self), client.clone());
                tokio::spawn(async move {
                    let mut tick =
                        tokio::time::interval(Duration::from_millis(me.settings.interval_ms));
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tick.tick().await;
                        let check = check_once(&client, service, &url, &me.settings).await;
                        me.record(i, check);
                    }
                })
            })
            .collect())
    }
}

fn build_board(edges: &[EdgeState], regions: usize) -> Board {
    let mut board = Board {
        regions: vec![RegionAnswer::default(); regions],
        assets: vec![RegionAnswer::default(); regions],
    };
    for e in edges {
        let r = match e.service {
            Service::Storefront => &mut board.regions[e.region_index],
            Service::Assets => &mut board.assets[e.region_index],
        };
        for ip in &e.addresses {
            r.all.add(*ip);
            if e.up {
                r.healthy.add(*ip);
            }
        }
        r.healthy_edges += usize::from(e.up);
    }
    board
}

/// One check of one edge or cache.
async fn check_once(
    client: &reqwest::Client,
    service: Service,
    url: &str,
    s: &HealthSettings,
) -> Check {
    let started = Instant::now();
    let at_unix_ms = util::clock::now_ms().unsigned_abs();
    let outcome = async {
        let mut resp = client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("unreachable: {}", short(&e)))?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading the answer: {}", short(&e)))?
        {
            if body.len() + chunk.len() > BODY_MAX_BYTES {
                return Err(format!("health document over {BODY_MAX_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        match service {
            Service::Storefront => judge(status, &body, s.max_staleness_ms),
            Service::Assets => judge_cache(status, &body),
        }
    };
    let result = match tokio::time::timeout(Duration::from_millis(s.timeout_ms), outcome).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", s.timeout_ms)),
    };
    Check {
        at_unix_ms,
        ok: result.is_ok(),
        reason: result.err().unwrap_or_default(),
        latency_ms: started.elapsed().as_millis() as u64,
    }
}

fn short(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s = format!("{s}: {inner}");
        source = inner.source();
    }
    s
}

/// The part of an edge's health document the router reads.
#[derive(serde::Deserialize)]
struct EdgeHealth {
    core_connected: bool,
    staleness_ms: Option<u64>,
    stale_after_ms: u64,
    #[serde(default = "yes")]
    accepting: bool,
    #[serde(default)]
    applied_version: Option<u64>,
}

fn yes() -> bool {
    true
}

/// Whether an edge that answered `status` with `body` can take shoppers, and if not, why.
pub(crate) fn judge(status: u16, body: &[u8], max_staleness_ms: Option<u64>) -> Result<(), String> {
    let Ok(h) = serde_json::from_slice::<EdgeHealth>(body) else {
        return Err(format!("HTTP {status} without an edge health document"));
    };
    if !h.core_connected {
        return Err("reaches no core".into());
    }
    let bound = max_staleness_ms.unwrap_or(h.stale_after_ms);
    match h.staleness_ms {
        None => return Err("has never heard from a core".into()),
        Some(ms) if ms > bound => return Err(format!("stale: {ms} ms behind (bound {bound} ms)")),
        Some(_) => {}
    }
    if !h.accepting {
        return Err("shutting down".into());
    }
    if h.applied_version == Some(0) {
        return Err("has no catalog yet".into());
    }
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    Ok(())
}

/// The part of a cache's health document the router reads.
#[derive(serde::Deserialize)]
struct CacheHealth {
    status: String,
    #[allow(dead_code)] // Read to tell a cache's document from another's.
    origins: Vec<String>,
}

/// Whether a cache that answered `status` with `body` can take clients, and if not, why.
pub(crate) fn judge_cache(status: u16, body: &[u8]) -> Result<(), String> {
    let Ok(h) = serde_json::from_slice::<CacheHealth>(body) else {
        return Err(format!("HTTP {status} without a cache health document"));
    };
    if status != 200 || h.status != "ok" {
        return Err(format!("HTTP {status}, status {:.32}", h.status));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::good;

    fn doc(core_connected: bool, staleness: Option<u64>, accepting: bool) -> Vec<u8> {
        serde_json::json!({
            "status": "ok", "region": "r", "edge": "e", "applied_version": 7, "version_lag": 0,
            "core_connected": core_connected, "staleness_ms": staleness, "stale_after_ms": 5000,
            "outbox_pending": 0, "accepting": accepting,
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn an_edge_passes_only_when_it_can_sell() {
        assert_eq!(judge(200, &doc(true, Some(40), true), None), Ok(()));
        assert!(
            judge(503, &doc(false, Some(40), true), None)
                .unwrap_err()
                .contains("no core")
        );
        assert!(
            judge(200, &doc(true, Some(6_000), true), None)
                .unwrap_err()
                .contains("stale")
        );
        assert!(
            judge(200, &doc(true, Some(900), true), Some(500))
                .unwrap_err()
                .contains("bound 500")
        );
        assert!(
            judge(200, &doc(true, None, true), None)
                .unwrap_err()
                .contains("never")
        );
        assert!(
            judge(503, &doc(true, Some(1), false), None)
                .unwrap_err()
                .contains("shutting")
        );
        // A 200 from something that is not an edge is no pass.
        assert!(judge(200, b"OK", None).unwrap_err().contains("without"));
        assert!(
            judge(500, &doc(true, Some(1), true), None)
                .unwrap_err()
                .contains("500")
        );
    }

    #[test]
    fn a_cache_passes_when_it_answers_as_a_cache() {
        let cache =
            br#"{"status":"ok","objects":3,"bytes":10,"disk":null,"origins":["storefront"]}"#;
        assert_eq!(judge_cache(200, cache), Ok(()));
        assert!(judge_cache(503, cache).unwrap_err().contains("503"));
        assert!(judge_cache(200, b"ok\n").unwrap_err().contains("without"));
        // An edge's document is not a cache's.
        assert!(
            judge_cache(200, &doc(true, Some(1), true))
                .unwrap_err()
                .contains("without")
        );
    }

    #[test]
    fn edges_go_down_after_failures_and_up_after_passes() {
        let h = Health::new(&good());
        let check = |ok| Check {
            at_unix_ms: util::clock::now_ms().unsigned_abs(),
            ok,
            reason: if ok { String::new() } else { "x".into() },
            latency_ms: 1,
        };
        // Out until it passes twice.
        assert_eq!(h.board().regions[0].healthy_edges, 0);
        assert_eq!(
            h.board().regions[0].all.v4,
            ["127.0.1.1".parse::<IpAddr>().unwrap()]
        );
        h.record(0, check(true));
        assert_eq!(h.board().regions[0].healthy_edges, 0);
        h.record(0, check(true));
        assert_eq!(h.board().regions[0].healthy_edges, 1);
        assert_eq!(h.board().regions[0].healthy.v4.len(), 1);
        // Two failures are not enough; a pass between them starts the count over.
        h.record(0, check(false));
        h.record(0, check(false));
        h.record(0, check(true));
        h.record(0, check(false));
        h.record(0, check(false));
        assert_eq!(h.board().regions[0].healthy_edges, 1);
        h.record(0, check(false));
        assert_eq!(h.board().regions[0].healthy_edges, 0);
        let e = &h.edges()[0];
        assert!(!e.up);
        assert_eq!((e.checks_passed, e.checks_failed), (3, 5));
        // Singapore's edge has an IPv6 address too.
        assert_eq!(h.board().regions[1].all.v6.len(), 1);
    }
}
