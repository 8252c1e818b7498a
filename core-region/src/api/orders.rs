//! Order routes: central orders placed at the core, edge order commits, and order reads.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use commerce::command::{Command, Outcome};
use commerce::order::{Order, OrderRequest};
use commerce::{EdgeId, OrderId};
use serde_json::{Value, json};

use super::stock::unexpected;
use super::{AppState, page_limit, submit};
use crate::reads::{CommitCursor, orders_after, read_order};
use commerce::order::check_idempotency_key;
use http_api::{Body, Path, Query, idempotency_key};
use http_api::{Kind, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/orders", post(place_order).get(list_orders))
        .route("/admin/v1/orders/{id}", get(get_order))
        .route("/admin/v1/escrow/commits", post(commit_orders))
}

async fn place_order(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(req): Body<OrderRequest>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?.ok_or_else(|| {
        Problem::new(
            Kind::MissingIdempotencyKey,
            "orders need an Idempotency-Key header, so that a retry never places a second order",
        )
    })?;
    let (scoped, command) = Command::central_order(req, key, s.region.clone(), None, &s.order_ids);
    match submit(&s, "orders", Some(&scoped), command).await? {
        Outcome::Order {
            mut order,
            duplicate,
        } => {
            s.personal.open_order(&mut order);
            let mut res = (StatusCode::CREATED, Json(order)).into_response();
            if duplicate {
                res.headers_mut()
                    .insert("idempotent-replayed", HeaderValue::from_static("true"));
            }
            Ok(res)
        }
        other => Err(unexpected(&other)),
    }
}

async fn get_order(
    State(s): State<AppState>,
    Path(id): Path<OrderId>,
) -> Result<Json<Order>, Problem> {
    let store = s.store.clone();
    let lookup = id.clone();
    let found = tokio::task::spawn_blocking(move || read_order(&*store, &lookup))
        .await
        .map_err(|e| Problem::new(Kind::Internal, e.to_string()))??;
    let mut order = found.ok_or_else(|| Problem::new(Kind::NotFound, format!("no order {id}")))?;
    s.personal.open_order(&mut order);
    Ok(Json(order))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderPage {
    /// The `next` of the previous page: `<version>.<seq>`.
    after: Option<String>,
    limit: Option<usize>,
}

fn parse_cursor(s: &str) -> Option<CommitCursor> {
    let (v, seq) = s.split_once('.')?;
    Some((v.parse().ok()?, seq.parse().ok()?))
}

async fn list_orders(
    State(s): State<AppState>,
    Query(q): Query<OrderPage>,
) -> Result<Json<Value>, Problem> {
    let limit = page_limit(q.limit)?;
    let after = match q.after.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c).ok_or_else(|| {
            Problem::new(
                Kind::BadRequest,
                "after must be the `next` cursor of a previous page",
            )
        })?),
    };
    let (store, personal) = (s.store.clone(), s.personal.clone());
    let (items, last) = tokio::task::spawn_blocking(move || {
        orders_after(&*store, after, limit).map(|(mut items, last)| {
            items.iter_mut().for_each(|o| personal.open_order(o));
            (items, last)
        })
    })
    .await
    .map_err(|e| Problem::new(Kind::Internal, e.to_string()))??;
    let next = last
        .filter(|_| items.len() == limit)
        .map(|(v, seq)| format!("{v}.{seq}"));
    Ok(Json(json!({ "items": items, "next": next })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitBody {
    edge: EdgeId,
    orders: Vec<Order>,
}

async fn commit_orders(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(b): Body<CommitBody>,
) -> Result<Json<Value>, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    if b.orders.is_empty() || b.orders.len() > commerce::command::COMMIT_BATCH_MAX {
        return Err(Problem::new(
            Kind::InvalidBody,
            format!(
                "a commit batch has 1 to {} orders",
                commerce::command::COMMIT_BATCH_MAX
            ),
        ));
    }
    let command = Command::CommitOrders {
        edge: b.edge,
        orders: b.orders,
    };
    match submit(&s, "commits", key.as_deref(), command).await? {
        Outcome::Orders { version, results } => {
            Ok(Json(json!({ "version": version, "results": results })))
        }
        other => Err(unexpected(&other)),
    }
}
