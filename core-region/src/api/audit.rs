//! `GET /admin/v1/audit`: the admin writes every region applied, oldest first, a page at a
//! time; each with the id of the token that made it (never the token), its route, command id,
//! the version it was applied at, and what became of it.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use http_api::{Kind, Problem, Query};
use serde_json::{Value, json};

use super::{AppState, page_limit};

pub fn routes() -> Router<AppState> {
    Router::new().route("/admin/v1/audit", get(list))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditPage {
    /// The `next` of the previous page: the version it ended at.
    after: Option<u64>,
    limit: Option<usize>,
}

async fn list(
    State(s): State<AppState>,
    Query(q): Query<AuditPage>,
) -> Result<Json<Value>, Problem> {
    let limit = page_limit(q.limit)?;
    let store = s.store.clone();
    let after = q.after.unwrap_or(0);
    let items =
        tokio::task::spawn_blocking(move || crate::reads::audit_after(&*store, after, limit))
            .await
            .map_err(|e| Problem::new(Kind::Internal, e.to_string()))??;
    let next = (items.len() == limit)
        .then(|| items.last().map(|r| r.version))
        .flatten();
    let items: Vec<Value> = items
        .into_iter()
        .map(|r| {
            let id: String = r.command_id.iter().map(|b| format!("{b:02x}")).collect();
            json!({"version": r.version, "at_ms": r.at_ms, "token": r.token, "route": r.route,
                   "command_id": id, "command": r.command, "outcome": r.outcome})
        })
        .collect();
    Ok(Json(json!({ "items": items, "next": next })))
}
