//! A customer's personal data erased on request (`DELETE
//! /admin/v1/customers/{id}/personal-data`, scope `personal-data`): every order of theirs in
//! every region keeps its non-personal fields and shows its address as erased, and so does any
//! of theirs accepted before and committed after (`commerce::personal::Erasure`). Replicated
//! and audited as every admin write; asking again erases what came since. How this region
//! keeps personal data (`GET /admin/v1/personal-data`, same scope): its region keys held and
//! destroyed, its keeping keys, and the erased epochs whose keys are destroyed or still due.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{delete, get};
use axum::{Json, Router};
use commerce::command::{Command, ERASE_BATCH_MAX, OrderCursor, Outcome};
use commerce::order::{Personal, check_idempotency_key};
use commerce::{CustomerId, OrderId};
use http_api::{Kind, Path, Problem, idempotency_key};
use serde_json::{Value, json};

use super::stock::unexpected;
use super::{AppState, submit};

/// Erasure commands one request may propose, at most: 100,000 orders of one customer.
const ERASE_COMMANDS_MAX: usize = 100;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/v1/customers/{id}/personal-data",
            delete(erase_personal_data),
        )
        .route("/admin/v1/personal-data", get(keeping))
}

/// How this region keeps personal data: key ids and counts, never a key.
async fn keeping(State(s): State<AppState>) -> Result<Json<Value>, Problem> {
    let personal = std::sync::Arc::clone(&s.personal);
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let region = personal.region();
        let Some(shred) = personal.shred() else {
            return Ok(Json(json!({"region": region, "home": false})));
        };
        let keys = sealing::FileKeys::load(personal.keys_dir(), region)
            .map_err(|e| Problem::new(Kind::Unavailable, e.to_string()))?;
        let (due, destroyed) = crate::keeping::ended(&*store, &**shred)
            .map_err(|e| Problem::new(Kind::Unavailable, e.to_string()))?;
        let ids = |v: Vec<&sealing::KeyId>| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        Ok(Json(json!({
            "region": region,
            "home": true,
            "region_keys": {"held": ids(keys.ids()), "retired": ids(keys.retired())},
            "keeping_keys": {
                "period_ms": shred.period_ms(),
                "first_period": shred.first_period(),
                "trees": shred.trees(),
            },
            "erased_epochs": {"keys_destroyed": destroyed, "keys_due": due.len()},
        })))
    })
    .await
    .map_err(|e| Problem::new(Kind::Unavailable, e.to_string()))?
}

/// Up to `ERASE_BATCH_MAX` ids of `customer`'s orders in this region's store whose address is
/// not erased yet, accepted at or before `until` when it is given.
async fn not_erased(
    s: &AppState,
    customer: &CustomerId,
    until: Option<i64>,
) -> Result<Vec<OrderId>, Problem> {
    let (store, customer) = (s.store.clone(), customer.clone());
    tokio::task::spawn_blocking(move || {
        let mut ids = Vec::new();
        let mut after: Option<OrderCursor> = None;
        loop {
            let page =
                crate::reads::customer_orders(&*store, &customer, after.as_ref(), ERASE_BATCH_MAX)?;
            let full = page.len() == ERASE_BATCH_MAX;
            after = page.last().map(OrderCursor::after);
            ids.extend(
                page.into_iter()
                    .filter(|o| until.is_none_or(|t| o.accepted_at_ms <= t))
                    .filter(|o| !matches!(o.ship_to.personal, Personal::Erased { .. }))
                    .map(|o| o.order_id)
                    .take(ERASE_BATCH_MAX - ids.len()),
            );
            if !full || ids.len() == ERASE_BATCH_MAX {
                return Ok(ids);
            }
        }
    })
    .await
    .map_err(|e| Problem::new(Kind::Internal, e.to_string()))?
    .map_err(|e: crate::store::StoreError| {
        Problem::new(Kind::Unavailable, e.to_string()).retry_after(1)
    })
}

/// Waits until this region has applied `version` (a write returns once the leader has), so
/// that what it reads next holds every order committed before it; at most `bound`.
async fn applied_here(
    s: &AppState,
    version: u64,
    bound: std::time::Duration,
) -> Result<(), Problem> {
    let deadline = tokio::time::Instant::now() + bound;
    while s.machine.read().await.applied() < version {
        if tokio::time::Instant::now() >= deadline {
            return Err(Problem::new(
                Kind::Unavailable,
                "this region has not caught up with the erasure yet; ask again",
            )
            .retry_after(1));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

async fn erase_personal_data(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(customer): Path<CustomerId>,
) -> Result<Json<Value>, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let mut erased = 0;
    // First the erasure itself, naming no order: its fingerprint is the customer's alone, so
    // that a retry under the caller's key is answered by it. Then the orders this region holds
    // that it reaches, a batch at a time, each read once this region has applied the command
    // before (and so every order committed before that).
    let mut orders = Vec::new();
    for n in 0..=ERASE_COMMANDS_MAX {
        let command = Command::ErasePersonal {
            customer: customer.clone(),
            orders: std::mem::take(&mut orders),
        };
        let named = command.items();
        let key = if n == 0 { key.as_deref() } else { None };
        let version = match submit(&s, "customers", key, command).await? {
            Outcome::Applied { version } => version,
            other => return Err(unexpected(&other)),
        };
        if n > 0 {
            erased += named;
        }
        applied_here(&s, version, s.write_timeout).await?;
        let until = s
            .machine
            .read()
            .await
            .state()
            .erasure(&customer)
            .map(|e| e.at_ms);
        orders = not_erased(&s, &customer, until).await?;
        if orders.is_empty() {
            return Ok(Json(json!({
                "customer": customer,
                "erased_orders": erased,
                "version": version,
            })));
        }
    }
    Err(Problem::new(
        Kind::Unavailable,
        format!(
            "more than {} of this customer's orders: erased {erased} so far; ask again to go on",
            ERASE_COMMANDS_MAX * ERASE_BATCH_MAX
        ),
    )
    .retry_after(1))
}
