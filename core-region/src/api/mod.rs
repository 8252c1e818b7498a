//! The admin API of a core region (DESIGN §3): catalog, prices, stock, orders and escrow writes
//! go through the log; reads come from the in-memory state or the store. Every route but
//! `/healthz` needs a bearer token; every error is a problem document (`problem`).

pub mod auth;
mod catalog;
mod orders;
pub mod problem;
mod stock;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commerce::command::{Command, Outcome};
use commerce::escrow::GrantPolicy;
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;

use crate::machine::StateMachine;
use crate::store::Store;
use crate::writes::{ProposeError, Writes};
use auth::TokenSet;
use problem::{Problem, ProblemType};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub region: String,
    pub machine: Arc<RwLock<StateMachine>>,
    pub store: Arc<dyn Store>,
    /// Where writes enter the region group's log.
    pub writes: Writes,
    pub tokens: Arc<TokenSet>,
    pub grant_policy: GrantPolicy,
    /// How long a write may wait for the log before the caller is told to retry.
    pub write_timeout: Duration,
    /// Unix ms when this process started, for `/admin/v1/cluster`.
    pub started_at_ms: i64,
}

/// Builds the admin router.
pub fn router(state: AppState, body_max_bytes: usize, request_timeout: Duration) -> Router {
    let admin = Router::new()
        .merge(catalog::routes())
        .merge(stock::routes())
        .merge(orders::routes())
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/cluster/members", axum::routing::post(add_member))
        .route(
            "/admin/v1/cluster/members/{id}",
            axum::routing::delete(remove_member),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            limit_time(request_timeout, req, next)
        }))
        .with_state(state)
}

/// Answers 408 when a request, body included, takes longer than `limit`. A write already
/// proposed keeps going; its caller retries with the same Idempotency-Key.
async fn limit_time(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(
            ProblemType::RequestTimeout,
            format!(
                "the request did not complete within {} ms",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !s.tokens.accepts_header(header) {
        return Problem::new(
            ProblemType::Unauthorized,
            "send Authorization: Bearer <admin token>",
        )
        .into_response();
    }
    next.run(req).await
}

async fn not_found() -> Problem {
    Problem::new(ProblemType::NotFound, "no such route")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        ProblemType::MethodNotAllowed,
        "this route does not take that method",
    )
}

/// This region's own view, without asking anyone: its applied version, the leader it knows
/// and the term.
async fn healthz(State(s): State<AppState>) -> Json<serde_json::Value> {
    let version = s.machine.read().await.applied();
    let m = s.writes.node().metrics();
    let leader = m.current_leader.and_then(|l| {
        m.membership_config
            .membership()
            .get_node(&l)
            .map(|n| n.name.clone())
    });
    Json(serde_json::json!({
        "status": "ok",
        "region": s.region,
        "version": version,
        "leader": leader,
        "term": m.current_term,
    }))
}

/// The region group as its leader sees it (asked of the leader when this region does not lead).
async fn cluster(State(s): State<AppState>) -> Json<serde_json::Value> {
    let v = s.writes.node().view(Duration::from_secs(2)).await;
    let members: Vec<serde_json::Value> = v
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "region": m.name,
                "id": m.id,
                "role": m.role,
                "applied_version": m.applied_version,
                "lag_ms": m.lag_ms,
                "raft_addr": m.raft_addr,
                "admin_url": m.admin_url,
            })
        })
        .collect();
    Json(serde_json::json!({
        "leader": v.leader,
        "term": v.term,
        "version": v.version,
        "members": members,
        "answered_by": v.answered_by,
        "started_at_ms": s.started_at_ms,
    }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    id: replication::raft::NodeId,
    name: String,
    raft_addr: String,
    admin_url: String,
    /// A voter takes part in commits; a learner only follows.
    #[serde(default = "yes")]
    voter: bool,
}

fn yes() -> bool {
    true
}

fn membership_problem(e: replication::raft::MembershipError) -> Problem {
    match e {
        replication::raft::MembershipError::NotLeader(_) => {
            Problem::new(ProblemType::NotLeader, e.to_string())
        }
        replication::raft::MembershipError::Refused(_) => {
            Problem::new(ProblemType::Conflict, e.to_string())
        }
    }
}

/// Adds a region to the group: it catches up as a learner, then votes.
async fn add_member(
    State(s): State<AppState>,
    Body(m): Body<NewMember>,
) -> Result<Json<serde_json::Value>, Problem> {
    replication::certs::check_node_name(&m.name)
        .map_err(|e| Problem::new(ProblemType::InvalidBody, e.to_string()))?;
    m.raft_addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| Problem::new(ProblemType::InvalidBody, format!("raft_addr: {e}")))?;
    let member = replication::raft::Member {
        name: m.name,
        raft_addr: m.raft_addr,
        admin_url: m.admin_url,
    };
    s.writes
        .node()
        .add_member(m.id, member, m.voter)
        .await
        .map_err(membership_problem)?;
    Ok(cluster(State(s)).await)
}

/// Removes a region from the group.
async fn remove_member(
    State(s): State<AppState>,
    Path(id): Path<replication::raft::NodeId>,
) -> Result<Json<serde_json::Value>, Problem> {
    s.writes
        .node()
        .remove_member(id)
        .await
        .map_err(membership_problem)?;
    Ok(cluster(State(s)).await)
}

/// A JSON body whose every rejection is a problem document.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        if !json_content_type(req.headers()) {
            // axum's verdict on the content type, and its problem.
            return Json::<T>::from_request(req, state)
                .await
                .map(|Json(v)| Body(v))
                .map_err(Problem::from);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::from(JsonRejection::from(e)))?;
        // A plain parse first: axum's names the path of a bad field, which costs a third of
        // the parse of a large batch. Only a body that fails is parsed again, for that message.
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Body(v)),
            Err(_) => Json::<T>::from_bytes(&bytes)
                .map(|Json(v)| Body(v))
                .map_err(Problem::from),
        }
    }
}

/// `application/json` or `application/<something>+json`, as axum's `Json` takes.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Query parameters whose rejection is a problem document.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(Problem::from)
    }
}

/// A path parameter whose rejection is a problem document.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(Problem::from)
    }
}

/// The Idempotency-Key header, checked; `None` when absent.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| Problem::new(ProblemType::BadRequest, "Idempotency-Key must be ASCII"))?;
    commerce::order::check_idempotency_key(k)
        .map_err(|e| Problem::new(ProblemType::BadRequest, e))?;
    Ok(Some(k.to_owned()))
}

/// Proposes `command` for `route` and waits for its outcome (`Writes::submit`); a refusal at
/// apply is an error, as every other failure, with its problem type.
pub async fn submit(
    s: &AppState,
    route: &str,
    key: Option<&str>,
    command: Command,
) -> Result<Outcome, Problem> {
    let outcome = s
        .writes
        .submit(route, key, command, s.write_timeout)
        .await
        .map_err(|e| match e {
            ProposeError::TooLarge(_) => Problem::new(ProblemType::BodyTooLarge, e.to_string()),
            ProposeError::Overloaded => {
                Problem::new(ProblemType::Overloaded, e.to_string()).retry_after(1)
            }
            ProposeError::Timeout(_) => Problem::new(
                ProblemType::Timeout,
                "the write did not commit in time and may still; retry with the same Idempotency-Key",
            ),
            ProposeError::NoLeader(_) | ProposeError::Unavailable(_) => {
                Problem::new(ProblemType::Unavailable, e.to_string()).retry_after(1)
            }
        })?;
    match outcome {
        Outcome::Rejected(r) => Err(r.into()),
        o => Ok(o),
    }
}

/// `{"version": N}` for a write that answers nothing else.
pub fn version_reply(outcome: &Outcome) -> Response {
    let version = match outcome {
        Outcome::Applied { version }
        | Outcome::Granted { version, .. }
        | Outcome::Returned { version, .. }
        | Outcome::Orders { version, .. } => *version,
        Outcome::Order { order, .. } => order.commit_version.unwrap_or(0),
        Outcome::Rejected(_) => 0,
    };
    (
        StatusCode::OK,
        Json(serde_json::json!({ "version": version })),
    )
        .into_response()
}

/// Refuses a batch with no items or more than `max` before it is queued.
pub fn check_batch_len(what: &str, len: usize, max: usize) -> Result<(), Problem> {
    if len == 0 || len > max {
        return Err(Problem::new(
            ProblemType::InvalidBody,
            format!("a {what} batch has 1 to {max} changes, got {len}"),
        ));
    }
    Ok(())
}

/// Page size bounds for listings.
pub const PAGE_DEFAULT: usize = 100;
pub const PAGE_MAX: usize = 1_000;

pub fn page_limit(limit: Option<usize>) -> Result<usize, Problem> {
    match limit.unwrap_or(PAGE_DEFAULT) {
        n @ 1..=PAGE_MAX => Ok(n),
        n => Err(Problem::new(
            ProblemType::BadRequest,
            format!("limit must be 1 to {PAGE_MAX}, got {n}"),
        )),
    }
}
