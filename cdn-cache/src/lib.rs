//! `cdn-cache`: a shared HTTP cache (RFC 9111) in front of a region's edges and asset origin,
//! purged by URL and by surrogate key. It speaks HTTP only and knows no commerce type.
//!
//! - `config`: the TOML config and its checks.
//! - `directives`: `Cache-Control` and `CDN-Cache-Control` parsed.
//! - `freshness`: RFC 9111's rules for one response: storable, fresh, how old, reusable.
//! - `store`: the memory tier and the disk tier (each bounded by bytes), variants by `Vary`,
//!   the surrogate-key index, purges.
//! - `origin`: the origins, chosen by host and path prefix, and fetches from them.
//! - `range`: byte ranges served from stored responses.
//! - `proxy`: the answer to each request (lookup, collapsing, validation, stale serving,
//!   invalidation, pass-through).
//! - `admin`: purges, `/metrics`, `/healthz`.
//! - `metrics`: counters.

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod directives;
pub mod freshness;
pub mod metrics;
pub mod origin;
pub mod proxy;
pub mod range;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

pub use config::CdnConfig;
pub use proxy::Cache;

/// How long an admin request may take.
const ADMIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a started cache listens.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub http: SocketAddr,
    pub admin: SocketAddr,
}

/// Checks what `--check-config` can without starting: the config's values, its origins, and
/// that the disk tier's directory (if any) can be made and written.
pub fn check(config: &CdnConfig) -> anyhow::Result<()> {
    util::config::Config::check(config)?;
    origin::Origins::new(&config.origins, &config.fetch)?;
    if let Some(d) = &config.disk {
        store::disk::check_dir(&d.dir)?;
    }
    Ok(())
}

/// Runs the cache until `shutdown` resolves. `on_ready` is called once both listeners listen.
pub async fn serve(
    config: CdnConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(Started),
) -> anyhow::Result<()> {
    util::config::Config::check(&config)?;
    let tokens = http_api::bearer::admin_tokens(
        &config.admin.token_sha256,
        &config.admin.tokens,
        config.admin.listen,
    )
    .map_err(|e| anyhow::anyhow!("admin.{e}"))?;
    let cache = Cache::new(&config)?;

    let front = http_api::serve::Front::new(&config.http.listener)?;
    let listener = std::net::TcpListener::bind(config.http.listen)
        .with_context(|| format!("binding HTTP on {}", config.http.listen))?;
    let http = listener.local_addr()?;
    let handler = Arc::clone(&cache);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let cache = Arc::clone(&handler);
        async move { cache.handle(req).await }
    });
    // A thread per core, each with its own runtime, as the edge serves its storefront.
    let servers = http_api::serve::Threads::start(&front, listener, app, "cdn")
        .context("starting the cache's threads")?;

    let admin_front = http_api::serve::Front::new(&config.admin.listener)?;
    let admin_listener = tokio::net::TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("binding the admin API on {}", config.admin.listen))?;
    let admin = admin_listener.local_addr()?;
    let admin_app = admin::router(Arc::clone(&cache), tokens, ADMIN_REQUEST_TIMEOUT);

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let admin_task = tokio::spawn(admin_front.serve(admin_listener, admin_app, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    on_ready(Started { http, admin });
    shutdown.await;
    let _ = stop.send(true);
    servers.stop().await.context("the cache's threads")?;
    let _ = admin_task.await;
    Ok(())
}
