//! Request extractors whose every rejection is a problem document, and the headers the APIs
//! read alike.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::{Problem, json_rejection};
use fault::Kind;

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
                .map_err(json_rejection);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| json_rejection(JsonRejection::from(e)))?;
        // A plain parse first: axum's names the path of a bad field, which costs a third of
        // the parse of a large batch. Only a body that fails is parsed again, for that message.
        match serde_json::from_slice(&bytes) {
            Ok(v) => Ok(Body(v)),
            Err(_) => Json::<T>::from_bytes(&bytes)
                .map(|Json(v)| Body(v))
                .map_err(json_rejection),
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
            .map_err(|r| Problem::new(Kind::BadRequest, r.body_text()))
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
            .map_err(|r| Problem::new(Kind::BadRequest, r.body_text()))
    }
}

/// The Idempotency-Key header, checked by `check` (the grammar is the domain's: keys name
/// orders); `None` when absent.
pub fn idempotency_key<E: std::fmt::Display>(
    headers: &HeaderMap,
    check: impl Fn(&str) -> Result<(), E>,
) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| Problem::new(Kind::BadRequest, "Idempotency-Key must be ASCII"))?;
    check(k).map_err(|e| Problem::new(Kind::BadRequest, e.to_string()))?;
    Ok(Some(k.to_owned()))
}
