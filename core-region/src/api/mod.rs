//! The admin API of a core region (DESIGN §3): catalog, prices, stock, orders and escrow writes
//! go through the log; reads come from the in-memory state or the store. Every route but
//! `/healthz` needs a bearer token (`http_api::bearer`) with the scope the route needs
//! (`scope_for`); every error is a problem document.

mod audit;
mod catalog;
mod customers;
mod orders;
mod stock;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use commerce::command::{Actor, Command, Outcome};
use commerce::escrow::GrantPolicy;
use tokio::sync::RwLock;

use crate::machine::StateMachine;
use crate::store::Store;
use crate::writes::Writes;
use http_api::bearer::{Scope, TokenSet};
use http_api::{Body, Kind, Path, Problem};

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
    /// What central orders' ids are derived under (the deployment's secret).
    pub order_ids: Arc<commerce::order_id::OrderIdKey>,
    /// Seals the addresses admin writes give in the clear before they are proposed; opens
    /// those this region is home to for admin reads (elsewhere they are shown redacted).
    pub personal: Arc<sealing::PersonalData>,
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
        .merge(audit::routes())
        .merge(customers::routes())
        .route("/admin/v1/cluster", get(cluster))
        .route("/admin/v1/backup", get(backup))
        .route("/admin/v1/cluster/members", axum::routing::post(add_member))
        .route(
            "/admin/v1/cluster/members/{id}",
            axum::routing::delete(remove_member),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .merge(admin)
        .layer(DefaultBodyLimit::max(body_max_bytes));
    http_api::limits::finish(routes, request_timeout).with_state(state)
}

tokio::task_local! {
    /// The token and route of the admin request being served.
    static ACTOR: Actor;
}

/// The scope a route needs, by method and route (the one table of it): reads and writes of
/// the catalog need `catalog`, of prices `prices`, of stock and escrow `stock`; reading orders
/// `orders:read`, placing them `orders`; changing the group's members `cluster`, reading the
/// audit log `audit`, erasing a customer's personal data and reading how this region keeps it
/// `personal-data`; taking a backup `backup`. The group's view needs a token of any scope.
pub fn scope_for(method: &Method, route: &str) -> Option<Scope> {
    let rest = route.strip_prefix("/admin/v1/")?;
    let first = rest.split('/').next().unwrap_or("");
    Some(match (first, method) {
        ("products" | "markets" | "price-lists" | "promotions", _) => Scope::Catalog,
        ("prices" | "skus", _) => Scope::Prices,
        ("stock" | "inventory", _) => Scope::Stock,
        ("escrow", _) if rest.starts_with("escrow/commits") => Scope::Orders,
        ("escrow", _) => Scope::Stock,
        ("orders", &Method::GET) => Scope::OrdersRead,
        ("orders", _) => Scope::Orders,
        ("cluster", &Method::GET) => return None,
        ("cluster", _) => Scope::Cluster,
        ("audit", _) => Scope::Audit,
        ("customers" | "personal-data", _) => Scope::PersonalData,
        ("backup", _) => Scope::Backup,
        // A route this table does not know needs every scope there is: the full tokens'.
        _ => Scope::Cluster,
    })
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |m| m.as_str().to_owned());
    let needed = scope_for(req.method(), &route);
    match s.tokens.authorize(header, needed, util::clock::now_ms()) {
        Ok(token) => {
            // Who is asking travels with the request's task to the proposal it makes
            // (`submit`), for the audit log, without every handler passing it on.
            let actor = Actor {
                token: token.to_owned(),
                route: format!("{} {route}", req.method()),
            };
            ACTOR.scope(actor, next.run(req)).await
        }
        Err(denied) => {
            tracing::info!(%route, method = %req.method(), reason = %denied, "admin request refused");
            Problem::from(denied).into_response()
        }
    }
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
    id: replication::protocol::NodeId,
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
            Problem::new(Kind::NotLeader, e.to_string())
        }
        replication::raft::MembershipError::Refused(_) => {
            Problem::new(Kind::Conflict, e.to_string())
        }
    }
}

/// Whether a backup is being taken: one at a time (each reads the whole store). Per process:
/// a process runs one core.
static BACKING_UP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Clears `BACKING_UP` when the backup it stands for ends, however it ends.
struct BackingUp;

impl Drop for BackingUp {
    fn drop(&mut self) {
        BACKING_UP.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// A backup of this core's store: the group's state as this core has applied it, in one file
/// that `tradewind core --restore` puts into a new region's data directory
/// (`replication::raft::backup`). Personal data in it stays sealed as it is stored. The answer
/// starts at once and the backup is taken while its body is awaited (then sent whole), so
/// that the request's time limit, which bounds the wait for an answer, does not bound the
/// backup of a large store; a backup cut short is a body that `tradewind backup` refuses (it
/// checks the SHA-256).
async fn backup(State(s): State<AppState>) -> Result<Response, Problem> {
    use std::sync::atomic::Ordering;
    if BACKING_UP
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(Problem::new(
            Kind::Conflict,
            "a backup is being taken: one at a time",
        ));
    }
    let running = BackingUp;
    let app = crate::replicated::CoreApp::new(Arc::clone(&s.machine));
    let node = s.writes.node().id;
    let body = futures::stream::once(async move {
        let taken = tokio::task::spawn_blocking(move || {
            // Held while the store is read, even if the client has gone away meanwhile.
            let _running = running;
            replication::raft::backup::take(&app, node, util::clock::now_ms().unsigned_abs())
                .map(|t| (t.contents.last_applied.map_or(0, |l| l.index), t.encode()))
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        match taken {
            Ok((index, bytes)) => {
                tracing::info!(index, bytes = bytes.len(), "backup taken");
                Ok::<_, std::io::Error>(bytes)
            }
            Err(e) => {
                tracing::error!(error = %e, "taking a backup failed");
                Err(std::io::Error::other(e.to_string()))
            }
        }
    });
    let name = format!("{}.backup", s.region);
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_owned(),
            ),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

/// Adds a region to the group: it catches up as a learner, then votes.
async fn add_member(
    State(s): State<AppState>,
    Body(m): Body<NewMember>,
) -> Result<Json<serde_json::Value>, Problem> {
    replication::certs::check_node_name(&m.name)
        .map_err(|e| Problem::new(Kind::InvalidBody, e.to_string()))?;
    m.raft_addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| Problem::new(Kind::InvalidBody, format!("raft_addr: {e}")))?;
    let member = replication::protocol::Member {
        name: m.name,
        raft_addr: m.raft_addr,
        admin_url: m.admin_url,
    };
    let change = format!(
        "add member {} ({} at {}, {})",
        m.id,
        member.name,
        member.raft_addr,
        if m.voter { "voter" } else { "learner" }
    );
    let node = s.writes.node().clone();
    let made = async move { node.add_member(m.id, member, m.voter).await };
    noted(&s, &change, made).await?;
    Ok(cluster(State(s)).await)
}

/// Makes the membership change `change` (`made`), noted in the log before it is made, and
/// after, with what became of it: the audit log keeps both with who asked. A change that
/// cannot be noted first is not made; once asked, the change and its second note run to their
/// end in a task of their own, even if the caller goes away meanwhile.
async fn noted(
    s: &AppState,
    change: &str,
    made: impl Future<Output = Result<(), replication::raft::MembershipError>> + Send + 'static,
) -> Result<(), Problem> {
    submit(s, "cluster", None, membership_note(change, "asked")).await?;
    let (s, change) = (s.clone(), change.to_owned());
    let actor = ACTOR.try_with(Clone::clone).ok();
    let finish = async move {
        let result = made.await.map_err(membership_problem);
        let how = match &result {
            Ok(()) => "done".to_owned(),
            Err(p) => format!("failed: {}", p.detail),
        };
        if let Err(p) = submit(&s, "cluster", None, membership_note(&change, &how)).await {
            // The change stands (or failed) either way; the note that it was asked is kept.
            tracing::warn!(%change, problem = %p.detail, "a membership change's outcome was not noted");
        }
        result
    };
    let finished = match actor {
        Some(actor) => tokio::spawn(ACTOR.scope(actor, finish)).await,
        None => tokio::spawn(finish).await,
    };
    finished.map_err(|e| Problem::new(Kind::Internal, format!("a membership change: {e}")))?
}

/// The note of membership change `change` at stage `how`, within the note's bound: the change
/// cut short if need be, its stage always whole.
fn membership_note(change: &str, how: &str) -> Command {
    let room = commerce::command::MEMBERSHIP_NOTE_MAX_BYTES.saturating_sub(how.len() + 2);
    let mut change = change.to_owned();
    // On a character boundary.
    while change.len() > room {
        change.pop();
    }
    let mut note = format!("{change}: {how}");
    while note.len() > commerce::command::MEMBERSHIP_NOTE_MAX_BYTES {
        note.pop();
    }
    Command::NoteMembership { change: note }
}

/// Removes a region from the group.
async fn remove_member(
    State(s): State<AppState>,
    Path(id): Path<replication::protocol::NodeId>,
) -> Result<Json<serde_json::Value>, Problem> {
    let node = s.writes.node().clone();
    let made = async move { node.remove_member(id).await };
    noted(&s, &format!("remove member {id}"), made).await?;
    Ok(cluster(State(s)).await)
}

/// Proposes `command` for `route` and waits for its outcome (`Writes::submit`); a refusal at
/// apply is an error, as every other failure, with its problem type.
pub async fn submit(
    s: &AppState,
    route: &str,
    key: Option<&str>,
    command: Command,
) -> Result<Outcome, Problem> {
    let actor = ACTOR.try_with(Clone::clone).ok();
    let mut command = command;
    // Nothing goes into the log in the clear (I6).
    s.personal
        .seal_all(command.ship_tos_mut())
        .map_err(|e| match e {
            sealing::personal::SealError::Invalid(e) => {
                Problem::from(commerce::refusal::Rejection::from(e))
            }
            e => Problem::new(Kind::Unavailable, format!("an address not sealed: {e}")),
        })?;
    let outcome = s
        .writes
        .submit(route, key, command, actor, s.write_timeout)
        .await?;
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
            Kind::InvalidBody,
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
            Kind::BadRequest,
            format!("limit must be 1 to {PAGE_MAX}, got {n}"),
        )),
    }
}
