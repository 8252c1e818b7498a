//! What every API router ends with: a time limit on each request, and problem documents for
//! routes and methods that do not exist.

use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;
use fault::Kind;

/// `router` with problem documents for unknown routes and methods, and a time limit on every
/// request.
pub fn finish<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    request_timeout: Duration,
) -> Router<S> {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            limit_time(request_timeout, req, next)
        }))
}

/// Answers 408 when a request, body included, takes longer than `limit`. A write already
/// proposed keeps going; its caller retries with the same Idempotency-Key.
async fn limit_time(limit: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => Problem::new(
            Kind::RequestTimeout,
            format!(
                "the request did not complete within {} ms",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

pub async fn not_found() -> Problem {
    Problem::new(Kind::NotFound, "no such route")
}

pub async fn method_not_allowed() -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        "this route does not take that method",
    )
}
