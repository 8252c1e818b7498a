//! The router's HTTP API: `GET /v1/route?ip=[&service=assets]` (what DNS would answer a client
//! there for the storefront or the assets, and why), `GET /v1/health` (every edge's and cache's
//! state and last check), `GET /metrics`, `GET /healthz`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use http_api::{Kind, Problem};

use crate::geo::{Geo, Place, PlacedBy};
use crate::health::{EdgeState, Health, Service};
use crate::metrics::Metrics;
use crate::route::Route;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Api {
    pub geo: Arc<Geo>,
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub regions: Arc<Vec<String>>,
    pub ttl_s: u32,
}

pub fn router(api: Api) -> Router {
    let routes = Router::new()
        .route("/v1/route", get(route))
        .route("/v1/health", get(health))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(api);
    http_api::limits::finish(routes, REQUEST_TIMEOUT)
}

#[derive(serde::Deserialize)]
struct RouteQuery {
    ip: String,
    /// `storefront` (the default) or `assets`.
    #[serde(default)]
    service: Option<String>,
}

#[derive(serde::Serialize)]
struct RouteAnswer {
    ip: IpAddr,
    /// `table` (the config's geo table), `database` (the MaxMind database) or `default`.
    placed_by: &'static str,
    /// The network that placed it.
    network: Option<String>,
    /// The client's region, or null when placed by coordinates or not at all.
    client_region: Option<String>,
    latitude: Option<f64>,
    longitude: Option<f64>,
    /// The ECS scope prefix an answer for this client carries.
    scope_prefix: u8,
    /// Every region in the order it would serve this client.
    order: Vec<RegionChoice>,
    /// The region DNS answers with.
    region: String,
    /// Regions passed over for having no healthy edge.
    skipped: Vec<String>,
    /// No region had a healthy edge: the first one's edges anyway.
    fail_open: bool,
    a: Vec<IpAddr>,
    aaaa: Vec<IpAddr>,
    ttl_s: u32,
}

#[derive(serde::Serialize)]
struct RegionChoice {
    region: String,
    healthy_edges: usize,
    /// From the client's coordinates, when it has some.
    distance_km: Option<f64>,
}

async fn route(
    State(api): State<Api>,
    http_api::Query(q): http_api::Query<RouteQuery>,
) -> Result<axum::Json<RouteAnswer>, Problem> {
    let ip: IpAddr = q.ip.trim().parse().map_err(|_| {
        Problem::new(
            Kind::BadRequest,
            format!("ip: {:.64} is not an IPv4 or IPv6 address", q.ip),
        )
    })?;
    let service = match q.service.as_deref() {
        None | Some("storefront") => Service::Storefront,
        Some("assets") => Service::Assets,
        Some(other) => {
            return Err(Problem::new(
                Kind::BadRequest,
                format!("service: {other:.32} is neither storefront nor assets"),
            ));
        }
    };
    let board = api.health.board();
    let answers = board.answers(service);
    let r = Route::new(&api.geo, answers, ip);
    let name = |i: usize| api.regions[i].clone();
    let (client_region, point) = match r.located.place {
        Place::Region(i) => (Some(name(i)), None),
        Place::Point {
            latitude,
            longitude,
        } => (None, Some((latitude, longitude))),
        Place::Nowhere => (None, None),
    };
    let (placed_by, network) = match r.located.by {
        PlacedBy::Table(n) => ("table", Some(n.to_string())),
        PlacedBy::Database(n) => ("database", Some(n.to_string())),
        PlacedBy::Default => ("default", None),
    };
    let order = r
        .order
        .as_slice()
        .iter()
        .map(|i| {
            let i = usize::from(*i);
            RegionChoice {
                region: name(i),
                healthy_edges: answers[i].healthy_edges,
                distance_km: point.map(|(lat, lon)| api.geo.distance_km(lat, lon, i).round()),
            }
        })
        .collect();
    Ok(axum::Json(RouteAnswer {
        ip,
        placed_by,
        network,
        client_region,
        latitude: point.map(|p| p.0),
        longitude: point.map(|p| p.1),
        scope_prefix: r.located.scope,
        order,
        region: name(r.region),
        skipped: r.order.as_slice()[..r.skipped]
            .iter()
            .map(|i| name(usize::from(*i)))
            .collect(),
        fail_open: r.fail_open,
        a: r.addresses(answers, false).to_vec(),
        aaaa: r.addresses(answers, true).to_vec(),
        ttl_s: api.ttl_s,
    }))
}

#[derive(serde::Serialize)]
struct HealthAnswer {
    edges: Vec<EdgeState>,
    /// Storefront answers given while no region had a healthy edge.
    fail_open_total: u64,
}

async fn health(State(api): State<Api>) -> axum::Json<HealthAnswer> {
    axum::Json(HealthAnswer {
        edges: api.health.edges(),
        fail_open_total: api.metrics.fail_open_total(),
    })
}

async fn metrics(State(api): State<Api>) -> Response {
    api.metrics.respond(&api.health.edges())
}

/// The router itself is up (its answers may still fail open; `/v1/health` says).
async fn healthz() -> &'static str {
    "ok\n"
}
