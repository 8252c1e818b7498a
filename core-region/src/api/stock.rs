//! Stock and escrow routes: stock batches, inventory, and the grant operations edges use.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use commerce::command::{Command, Outcome, StockChange};
use commerce::escrow::{Demand, StockOp};
use commerce::{EdgeId, SkuId};
use serde_json::{Value, json};

use super::{AppState, submit, version_reply};
use commerce::order::check_idempotency_key;
use http_api::{Body, Path, idempotency_key};
use http_api::{Kind, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/stock", post(post_stock))
        .route("/admin/v1/inventory/{sku}", get(inventory))
        .route("/admin/v1/escrow/grants", post(grant))
        .route("/admin/v1/escrow/returns", post(return_grant))
}

/// One stock change as admins write it: `{"sku": "S", "set": 10}`, `"add"` or `"remove"`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StockChangeBody {
    sku: SkuId,
    set: Option<u64>,
    add: Option<u64>,
    remove: Option<u64>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StockBatch {
    changes: Vec<StockChangeBody>,
}

async fn post_stock(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<StockBatch>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    super::check_batch_len(
        "stock",
        body.changes.len(),
        commerce::command::STOCK_BATCH_MAX,
    )?;
    let changes = body
        .changes
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let op = match (c.set, c.add, c.remove) {
                (Some(n), None, None) => StockOp::Set(n),
                (None, Some(n), None) => StockOp::Add(n),
                (None, None, Some(n)) => StockOp::Remove(n),
                _ => {
                    return Err(Problem::new(
                        Kind::InvalidBody,
                        format!("changes[{i}]: give exactly one of set, add, remove"),
                    ));
                }
            };
            Ok(StockChange { sku: c.sku, op })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let o = submit(&s, "stock", key.as_deref(), Command::StockBatch(changes)).await?;
    Ok(version_reply(&o))
}

async fn inventory(
    State(s): State<AppState>,
    Path(sku): Path<SkuId>,
) -> Result<Json<Value>, Problem> {
    let m = s.machine.read().await;
    if m.state().owner(&sku).is_none() {
        return Err(Problem::new(Kind::NotFound, format!("no sku {sku}")));
    }
    let inv = m.state().inventory(&sku).cloned().unwrap_or_default();
    let granted: BTreeMap<&str, u64> = inv.granted.iter().map(|(e, n)| (e.as_str(), *n)).collect();
    Ok(Json(json!({
        "sku": sku,
        "stocked": inv.stocked,
        "on_hand": inv.on_hand(),
        "committed": inv.committed,
        "granted": granted,
        "available": inv.available(),
        "recall": inv.recall,
        "version": m.applied(),
    })))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    edge: EdgeId,
    sku: SkuId,
    /// Units the edge sold of this SKU in the last `window_ms`.
    #[serde(default)]
    demand_units: u64,
    #[serde(default)]
    window_ms: u64,
    /// The edge's number for this request (applied once by it, however late it is sent
    /// again); without one, the Idempotency-Key makes it one grant.
    #[serde(default)]
    request: Option<u64>,
}

async fn grant(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(b): Body<GrantBody>,
) -> Result<Json<Value>, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let command = Command::Grant {
        edge: b.edge,
        sku: b.sku,
        demand: Demand {
            units: b.demand_units,
            window_ms: b.window_ms,
        },
        policy: s.grant_policy,
        request: b.request,
    };
    match submit(&s, "grants", key.as_deref(), command).await? {
        Outcome::Granted { version, units } => {
            Ok(Json(json!({"version": version, "units": units})))
        }
        other => Err(unexpected(&other)),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    edge: EdgeId,
    sku: SkuId,
    units: u64,
    /// Numbered as grants are.
    #[serde(default)]
    request: Option<u64>,
}

async fn return_grant(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(b): Body<ReturnBody>,
) -> Result<Json<Value>, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let command = Command::ReturnGrant {
        edge: b.edge,
        sku: b.sku,
        units: b.units,
        request: b.request,
    };
    match submit(&s, "returns", key.as_deref(), command).await? {
        Outcome::Returned { version, units } => {
            Ok(Json(json!({"version": version, "units": units})))
        }
        other => Err(unexpected(&other)),
    }
}

pub(super) fn unexpected(o: &Outcome) -> Problem {
    tracing::error!(outcome = o.kind(), "unexpected outcome");
    Problem::new(Kind::Internal, "unexpected outcome for this command")
}
