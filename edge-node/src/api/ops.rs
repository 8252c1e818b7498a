//! What operators and the geo-router ask of an edge: where it stands (`/v1/status`), whether it
//! can take shoppers (`/healthz`), its counters (`/metrics`) and the API's description.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commerce::EdgeId;
use utoipa::ToSchema;

use super::{Edge, openapi};

/// Where this edge stands.
#[derive(serde::Serialize, ToSchema)]
pub(super) struct EdgeStatus {
    region: String,
    edge: EdgeId,
    /// The region's version this edge's mirror has applied.
    applied_version: u64,
    /// Versions the region has that this edge has not applied yet.
    version_lag: u64,
    /// Whether a core was heard from within `stale_after_ms`.
    core_connected: bool,
    /// Milliseconds since a core was last heard from; null if none ever was.
    staleness_ms: Option<u64>,
    stale_after_ms: u64,
    /// Orders accepted here that no core has decided yet.
    outbox_pending: u64,
    /// How old the oldest of them is (ms); null when there is none.
    outbox_oldest_pending_ms: Option<u64>,
    /// Past this, the edge is not healthy: what it accepts is not reaching any core.
    outbox_pending_age_max_ms: u64,
    /// Units this edge may still sell from its grants.
    grant_units: u64,
    /// False while shutting down.
    accepting: bool,
    /// The key each home region's personal data is sealed to here (`<region>/<n>`): after a
    /// rotation, the new key once this edge has read it.
    sealing_keys: Vec<String>,
}

/// `/healthz`: the status, and the verdict.
#[derive(serde::Serialize, ToSchema)]
struct Health {
    /// `ok`, or `degraded` (stale, no catalog, shutting down, or orders not reaching a core).
    status: &'static str,
    #[serde(flatten)]
    edge: EdgeStatus,
}

fn edge_status(e: &Edge) -> EdgeStatus {
    EdgeStatus {
        region: e.region.clone(),
        edge: e.edge.clone(),
        applied_version: e.catalog.version(),
        version_lag: e.catalog.lag(),
        core_connected: !e.stale(),
        staleness_ms: e.staleness_ms(),
        stale_after_ms: e.stale_after.as_millis() as u64,
        outbox_pending: e.outbox.pending_count(),
        outbox_oldest_pending_ms: e.outbox.oldest_pending_ms(util::clock::now_ms()),
        outbox_pending_age_max_ms: e.pending_age_max.as_millis() as u64,
        grant_units: grant_units(e),
        accepting: e.accepting.load(Ordering::Acquire),
        sealing_keys: e.personal.sealer.keys(),
    }
}

fn grant_units(e: &Edge) -> u64 {
    e.outbox.all_units().iter().map(|(_, n)| n).sum()
}

/// Where this edge stands: its region's version, staleness, and the outbox.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    responses((status = OK, description = "This edge's status.", body = EdgeStatus))
)]
pub(super) async fn status(State(e): State<Edge>) -> axum::Json<EdgeStatus> {
    axum::Json(edge_status(&e))
}

/// Whether this edge can take shoppers.
///
/// 200 while it can sell with a current catalog; 503 (with the same document) when it has
/// heard from no core for longer than its bound, has no catalog yet, is shutting down, or holds
/// an order no core has taken for longer than its bound: the geo-router sends shoppers
/// elsewhere.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = OK, description = "Serving with a current catalog.", body = Health),
        (status = SERVICE_UNAVAILABLE, description = "Stale, no catalog yet, or shutting down.", body = Health),
    )
)]
pub(super) async fn healthz(State(e): State<Edge>) -> Response {
    let edge = edge_status(&e);
    let backlog_ok = edge
        .outbox_oldest_pending_ms
        .is_none_or(|ms| ms <= edge.outbox_pending_age_max_ms);
    let ok = !e.stale() && e.catalog.version() > 0 && edge.accepting && backlog_ok;
    let health = Health {
        status: if ok { "ok" } else { "degraded" },
        edge,
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health)).into_response()
}

/// This description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = OK, description = "The storefront API's OpenAPI 3.1 description.", content_type = "application/json"))
)]
pub(super) async fn openapi_json() -> Response {
    static DESCRIBED: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    let body = DESCRIBED.get_or_init(|| openapi().to_json().unwrap_or_default().into());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = OK, description = "Counters, gauges and histograms in the OpenMetrics text format (Prometheus scrapes it).", content_type = "application/openmetrics-text"))
)]
pub(super) async fn metrics(State(e): State<Edge>) -> Response {
    e.metrics.respond(&crate::metrics::Gauges {
        outbox_pending: e.outbox.pending_count(),
        outbox_oldest_pending_ms: e.outbox.oldest_pending_ms(util::clock::now_ms()),
        intake_queued: e.outbox.queued(),
        grant_units: grant_units(&e),
        feed_version: e.catalog.version(),
        feed_lag: e.catalog.lag(),
        staleness_ms: e.staleness_ms(),
    })
}
