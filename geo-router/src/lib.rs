//! The geo-router: authoritative DNS for the shop zone that answers each shopper with the
//! healthy edges of the region nearest them, and an HTTP API that explains its answers.
//!
//! - `config`: the TOML config and its checks.
//! - `geo`: where a client is (geo table, MaxMind database, default) and the order in which
//!   regions should serve it, with the ECS scope of that placement.
//! - `health`: active checks of every edge's `/healthz` and the board of healthy addresses.
//! - `route`: the one decision, from a client address and the board, that DNS and
//!   `/v1/route` share.
//! - `dns`: the answers (a hickory-server `RequestHandler`).
//! - `wire`: DNS over UDP (a thread per core) and TCP (bounded connections).
//! - `cache`: the answers each UDP loop has given, to give again while the board stands.
//! - `rrl`: response-rate limiting of UDP answers, so the router amplifies no forged flood.
//! - `http`: `/v1/route`, `/v1/health`, `/metrics`, `/healthz`.
//! - `metrics`: counters.
//!
//! It talks to edges over HTTP only, and knows nothing of commerce.

// One audited call into the kernel (`wire::send_batch`) is allowed; nothing else.
#![deny(unsafe_code)]

pub mod cache;
pub mod config;
pub mod dns;
pub mod geo;
pub mod health;
pub mod http;
pub mod metrics;
pub mod route;
pub mod rrl;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use config::RouterConfig;

/// Where a started router listens.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub dns: SocketAddr,
    pub http: SocketAddr,
}

/// What answers DNS: the geo table, the health board (no checks running until
/// `Health::spawn_checks`), the metrics and the authority over them.
pub struct Parts {
    pub geo: Arc<geo::Geo>,
    pub health: Arc<health::Health>,
    pub metrics: Arc<metrics::Metrics>,
    pub authority: Arc<dns::Authority>,
}

/// The parts `config` makes (also what the DNS fuzz target answers with).
pub fn parts(config: &RouterConfig) -> anyhow::Result<Parts> {
    let geo = Arc::new(geo::Geo::new(config)?);
    let health = Arc::new(health::Health::new(config));
    let regions: Vec<String> = config.regions.iter().map(|r| r.name.clone()).collect();
    let metrics = Arc::new(metrics::Metrics::new(&regions));
    let authority = Arc::new(dns::Authority::new(
        config,
        Arc::clone(&geo),
        Arc::clone(&health),
        Arc::clone(&metrics),
    )?);
    Ok(Parts {
        geo,
        health,
        metrics,
        authority,
    })
}

/// Runs the router until `shutdown` resolves. `on_ready` is called once DNS (UDP and TCP) and
/// HTTP listen.
pub async fn serve(
    config: RouterConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(Started),
) -> anyhow::Result<()> {
    util::config::Config::check(&config)?;
    let Parts {
        geo,
        health,
        metrics,
        authority,
    } = parts(&config)?;
    let regions: Vec<String> = config.regions.iter().map(|r| r.name.clone()).collect();

    // A UDP thread per core: one answers with less CPU per query, but two answer sooner
    // (BENCHMARKS.md).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (tcp, udp) = wire::bind(config.dns.listen, cores)
        .with_context(|| format!("binding DNS (TCP and UDP) on {}", config.dns.listen))?;
    let dns_addr = tcp.local_addr()?;
    let tcp = tokio::net::TcpListener::from_std(tcp)?;
    let rrl = Arc::new(rrl::Rrl::new(config.dns.rrl));
    let udp = wire::UdpLoops::start(udp, Arc::clone(&authority), rrl)
        .context("starting the DNS (UDP) threads")?;
    let tcp_task = tokio::spawn(wire::serve_tcp(
        tcp,
        authority,
        config.dns.tcp_connections_max,
        Duration::from_millis(config.dns.tcp_idle_ms),
    ));

    let front = http_api::serve::Front::new(&config.http.listener)?;
    let http_listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
    let http_addr = http_listener.local_addr()?;
    let app = http::router(http::Api {
        geo,
        health: Arc::clone(&health),
        metrics,
        regions: Arc::new(regions),
        ttl_s: config.ttl_s,
    });
    let checks = health.spawn_checks()?;
    let (stop_http, stopped) = tokio::sync::oneshot::channel::<()>();
    let http_task = tokio::spawn(front.serve(http_listener, app, async {
        let _ = stopped.await;
    }));
    on_ready(Started {
        dns: dns_addr,
        http: http_addr,
    });
    shutdown.await;
    for task in checks.into_iter().chain([tcp_task]) {
        task.abort();
    }
    let _ = tokio::task::spawn_blocking(move || udp.stop()).await;
    let _ = stop_http.send(());
    let _ = http_task.await;
    Ok(())
}
