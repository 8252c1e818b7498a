//! RFC 9457 problem documents: every error the mesh's HTTP APIs return is one of these, with a
//! stable `type` that clients may match on: the slug of its `fault::Kind`, the catalogue every
//! crate shares (README.md lists it). A `Fault` becomes a problem of its own kind, with
//! `Retry-After` when trying again can help.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fault::{Fault, Kind, Retry, Whose};

/// Prefix of every problem `type` URI.
pub const TYPE_BASE: &str = "https://tradewind.dev/problems/";

/// The HTTP status and title of each kind of problem: the one place a `fault::Kind` meets
/// HTTP.
pub fn status_and_title(kind: Kind) -> (StatusCode, &'static str) {
    use Kind::*;
    use StatusCode as S;
    match kind {
        MalformedJson => (S::BAD_REQUEST, "Malformed JSON"),
        InvalidBody => (S::UNPROCESSABLE_ENTITY, "Invalid request body"),
        BodyTooLarge => (S::PAYLOAD_TOO_LARGE, "Request body too large"),
        UnsupportedMediaType => (
            S::UNSUPPORTED_MEDIA_TYPE,
            "Expected Content-Type: application/json",
        ),
        BadRequest => (S::BAD_REQUEST, "Bad request"),
        Unauthorized => (S::UNAUTHORIZED, "Missing or wrong bearer token"),
        InvalidToken => (S::UNAUTHORIZED, "The bearer token does not verify"),
        TokenRequired => (
            S::UNAUTHORIZED,
            "Sign in: this needs a shopper's bearer token",
        ),
        GroupNotGranted => (
            S::FORBIDDEN,
            "The shopper's token does not grant that customer group",
        ),
        CustomerNotGranted => (S::FORBIDDEN, "The shopper's token names another customer"),
        InsufficientScope => (
            S::FORBIDDEN,
            "The admin token does not have the scope this route needs",
        ),
        TlsRequired => (
            S::BAD_REQUEST,
            "This port speaks TLS 1.3 only: use https://",
        ),
        UntrustedForwarding => (
            S::BAD_REQUEST,
            "Forwarding header from an address that is not a trusted proxy",
        ),
        NotFound => (S::NOT_FOUND, "Not found"),
        MethodNotAllowed => (S::METHOD_NOT_ALLOWED, "Method not allowed"),
        MissingIdempotencyKey => (
            S::BAD_REQUEST,
            "This request needs an Idempotency-Key header",
        ),
        IdempotencyKeyReused => (
            S::UNPROCESSABLE_ENTITY,
            "Idempotency-Key reused for a different request",
        ),
        IdempotencyKeyExpired => (
            S::UNPROCESSABLE_ENTITY,
            "Idempotency-Key past the time it is honoured",
        ),
        UnknownSku => (S::UNPROCESSABLE_ENTITY, "Unknown SKU"),
        UnknownPriceList => (S::UNPROCESSABLE_ENTITY, "Unknown price list"),
        UnknownMarket => (S::UNPROCESSABLE_ENTITY, "Unknown market"),
        UnknownPromotion => (S::NOT_FOUND, "Unknown promotion"),
        Conflict => (S::CONFLICT, "Conflicts with existing data"),
        NotLeader => (
            S::MISDIRECTED_REQUEST,
            "Send this to the region that leads the group",
        ),
        HeldInGrants => (S::CONFLICT, "Stock is held in edge grants"),
        OutOfStock => (S::CONFLICT, "Out of stock"),
        NotSoldInMarket => (
            S::UNPROCESSABLE_ENTITY,
            "Not sold to that destination in that currency",
        ),
        NoPrice => (
            S::UNPROCESSABLE_ENTITY,
            "No price for this customer and destination",
        ),
        Quantity => (S::UNPROCESSABLE_ENTITY, "Quantity out of range"),
        Overloaded => (S::SERVICE_UNAVAILABLE, "Too many writes in flight"),
        RateLimited => (S::TOO_MANY_REQUESTS, "Too many requests from this client"),
        Unavailable => (S::SERVICE_UNAVAILABLE, "The store is unavailable"),
        Timeout => (S::GATEWAY_TIMEOUT, "The write did not finish in time"),
        RequestTimeout => (S::REQUEST_TIMEOUT, "The request took too long to arrive"),
        Internal => (S::INTERNAL_SERVER_ERROR, "Internal error"),
        OriginUnreachable => (S::BAD_GATEWAY, "The origin could not be reached"),
        OriginTimeout => (S::GATEWAY_TIMEOUT, "The origin did not answer in time"),
        OriginBroken => (S::BAD_GATEWAY, "The origin sent a broken response"),
        NotCached => (
            S::GATEWAY_TIMEOUT,
            "Not in the cache, and only-if-cached was asked",
        ),
        RangeNotSatisfiable => (
            S::RANGE_NOT_SATISFIABLE,
            "The range is outside the representation",
        ),
    }
}

/// An RFC 9457 problem document as it is sent (`application/problem+json`).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ProblemDocument {
    /// `https://tradewind.dev/problems/<slug>`: the stable part clients match on.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    pub type_: String,
    /// A short summary of the kind of problem.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
}

impl ProblemDocument {
    /// The document for a problem of `kind`.
    pub fn of(kind: Kind, detail: String) -> Self {
        let (status, title) = status_and_title(kind);
        ProblemDocument {
            type_: format!("{TYPE_BASE}{}", kind.slug()),
            title,
            status: status.as_u16(),
            detail,
        }
    }
}

/// A problem document ready to send.
#[derive(Debug)]
pub struct Problem {
    pub kind: Kind,
    pub detail: String,
    pub retry_after_s: Option<u32>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            detail: detail.into(),
            retry_after_s: None,
        }
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after_s = Some(seconds);
        self
    }

    /// The problem an error of the mesh is: its kind and message, and `Retry-After: 1` when
    /// the same request may succeed later through no change of the caller's (an election, a
    /// queue draining), not when the caller must change something first (more stock).
    pub fn from_fault(e: &(impl Fault + ?Sized)) -> Self {
        if e.whose() != Whose::Caller {
            tracing::warn!(kind = %e.kind(), error = %e, "request failed");
        }
        let p = Problem::new(e.kind(), e.to_string());
        if e.retry() == Retry::Later && e.whose() != Whose::Caller {
            p.retry_after(1)
        } else {
            p
        }
    }

    pub fn status(&self) -> StatusCode {
        status_and_title(self.kind).0
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ProblemDocument::of(self.kind, self.detail);
        let mut res = (status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        // RFC 6750 §3: what a client that can fetch a new token needs to know.
        let challenge = match self.kind {
            Kind::Unauthorized | Kind::TokenRequired => Some("Bearer"),
            Kind::InvalidToken => Some("Bearer error=\"invalid_token\""),
            _ => None,
        };
        if let Some(c) = challenge {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(c));
        }
        res
    }
}

/// Any error of the mesh is the problem of its kind (`Problem::from_fault`), so that `?`
/// turns it into its problem document.
impl<E: Fault> From<E> for Problem {
    fn from(e: E) -> Self {
        Problem::from_fault(&e)
    }
}

/// The problem a JSON body's rejection is.
pub(crate) fn json_rejection(r: JsonRejection) -> Problem {
    let kind = match &r {
        JsonRejection::JsonSyntaxError(_) => Kind::MalformedJson,
        JsonRejection::JsonDataError(_) => Kind::InvalidBody,
        JsonRejection::MissingJsonContentType(_) => Kind::UnsupportedMediaType,
        JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Kind::BodyTooLarge
        }
        _ => Kind::BadRequest,
    };
    Problem::new(kind, r.body_text())
}
