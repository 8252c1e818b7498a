//! The cache's operator API, on its own listener: `POST /admin/v1/purge` (a bearer token with
//! the `purge` scope), `GET /metrics` and `GET /healthz` (no token, as at every part).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_api::bearer::{Scope, TokenSet};
use http_api::metrics::{ConstCounter, Registry, count};
use http_api::{Body, Problem};

use crate::proxy::Cache;
use crate::store::PurgeMode;

/// URLs and keys one purge may name in all.
pub const PURGE_NAMES_MAX: usize = 10_000;

#[derive(Clone)]
struct Api {
    cache: Arc<Cache>,
    tokens: Arc<TokenSet>,
}

/// What to purge: surrogate keys, URLs (`https://host/path?query`, the host as clients send
/// it), or both; `"mode": "soft"` marks them stale instead of dropping them.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Purge {
    #[serde(default)]
    pub keys: Vec<String>,
    #[serde(default)]
    pub urls: Vec<String>,
    #[serde(default = "hard")]
    pub mode: PurgeMode,
}

fn hard() -> PurgeMode {
    PurgeMode::Hard
}

/// What a purge found: how many stored URLs it removed or marked stale.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
pub struct Purged {
    pub purged: usize,
}

pub fn router(cache: Arc<Cache>, tokens: TokenSet, request_timeout: Duration) -> Router {
    let api = Api {
        cache,
        tokens: Arc::new(tokens),
    };
    let routes = Router::new()
        .route("/admin/v1/purge", post(purge))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz));
    http_api::limits::finish(routes, request_timeout).with_state(api)
}

async fn purge(
    State(api): State<Api>,
    headers: HeaderMap,
    Body(p): Body<Purge>,
) -> Result<axum::Json<Purged>, Problem> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = api
        .tokens
        .authorize(auth, Some(Scope::Purge), now_ms)
        .map_err(|e| Problem::from_fault(&e))?;
    if p.keys.len() + p.urls.len() > PURGE_NAMES_MAX {
        return Err(Problem::new(
            fault::Kind::InvalidBody,
            format!("at most {PURGE_NAMES_MAX} keys and URLs in one purge"),
        ));
    }
    let mut targets = Vec::with_capacity(p.urls.len());
    for url in &p.urls {
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| u.host_str().is_some())
            .ok_or_else(|| {
                Problem::new(
                    fault::Kind::InvalidBody,
                    format!("{url:?} is not an absolute URL"),
                )
            })?;
        let host = match parsed.port() {
            Some(port) => format!("{}:{port}", parsed.host_str().unwrap_or_default()),
            None => parsed.host_str().unwrap_or_default().to_owned(),
        };
        let mut path = parsed.path().to_owned();
        if let Some(q) = parsed.query() {
            path.push('?');
            path.push_str(q);
        }
        targets.push((host, path));
    }
    let mut purged = 0;
    for key in &p.keys {
        purged += api.cache.purge_tag(key, p.mode);
    }
    for (host, path) in &targets {
        purged += usize::from(api.cache.purge_url(host, path, p.mode));
    }
    tracing::info!(
        token,
        keys = p.keys.len(),
        urls = p.urls.len(),
        mode = ?p.mode,
        purged,
        "purge"
    );
    Ok(axum::Json(Purged { purged }))
}

async fn metrics(State(api): State<Api>) -> Response {
    let memory = api.cache.store.memory_usage();
    let mut now = Registry::default();
    now.register(
        "cdn_memory_objects",
        "URLs stored in memory.",
        count(memory.objects),
    );
    now.register(
        "cdn_memory_bytes",
        "Bytes stored in memory.",
        count(memory.bytes),
    );
    // Totals kept by the store, read now: counters, as Prometheus takes them.
    now.register(
        "cdn_evictions",
        "Stored URLs evicted to keep within the memory bound.",
        ConstCounter::new(memory.evictions),
    );
    if let Some(disk) = api.cache.store.disk() {
        let d = disk.usage();
        now.register(
            "cdn_disk_objects",
            "URLs stored on disk.",
            count(d.held.objects),
        );
        now.register(
            "cdn_disk_bytes",
            "Bytes of the disk tier's files.",
            count(d.held.bytes),
        );
        for (name, help, value) in [
            (
                "cdn_disk_evictions",
                "Files evicted to keep within the disk bound.",
                d.held.evictions,
            ),
            (
                "cdn_disk_reads",
                "URLs read back from disk on a memory miss.",
                d.reads,
            ),
            (
                "cdn_disk_read_errors",
                "Files that did not read back whole (dropped).",
                d.read_errors,
            ),
            ("cdn_disk_writes", "Files written.", d.writes),
            (
                "cdn_disk_write_errors",
                "Writes that failed (a full or unwritable disk); memory and origins serve.",
                d.write_errors,
            ),
            (
                "cdn_disk_writes_dropped",
                "Writes dropped because the writer's queue was full.",
                d.writes_dropped,
            ),
        ] {
            now.register(name, help, ConstCounter::new(value));
        }
    }
    http_api::metrics::respond(&[api.cache.metrics.registry(), &now])
}

async fn healthz(State(api): State<Api>) -> Response {
    let memory = api.cache.store.memory_usage();
    let disk = api.cache.store.disk().map(|d| {
        let d = d.usage();
        serde_json::json!({"objects": d.held.objects, "bytes": d.held.bytes, "write_errors": d.write_errors})
    });
    axum::Json(serde_json::json!({
        "status": "ok",
        "objects": memory.objects,
        "bytes": memory.bytes,
        "disk": disk,
        "origins": api.cache.origins.names(),
    }))
    .into_response()
}
