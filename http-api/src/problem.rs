//! RFC 9457 problem documents: every error the mesh's HTTP APIs return is one of these, with a
//! stable `type` that clients may match on. The catalogue of types is `ProblemType`; README.md
//! lists it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commerce::command::{RejectKind, Rejection};

/// Prefix of every problem `type` URI.
pub const TYPE_BASE: &str = "https://tradewind.dev/problems/";

/// Every kind of problem, with its HTTP status and title. The slug is the stable part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemType {
    MalformedJson,
    InvalidBody,
    BodyTooLarge,
    UnsupportedMediaType,
    BadRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    MissingIdempotencyKey,
    IdempotencyKeyReused,
    UnknownSku,
    UnknownPriceList,
    UnknownMarket,
    UnknownPromotion,
    Conflict,
    NotLeader,
    HeldInGrants,
    OutOfStock,
    NotSoldInMarket,
    NoPrice,
    Quantity,
    Overloaded,
    RateLimited,
    Unavailable,
    Timeout,
    RequestTimeout,
    Internal,
}

impl ProblemType {
    pub fn slug(self) -> &'static str {
        self.info().0
    }

    fn info(self) -> (&'static str, StatusCode, &'static str) {
        use ProblemType::*;
        use StatusCode as S;
        match self {
            MalformedJson => ("malformed-json", S::BAD_REQUEST, "Malformed JSON"),
            InvalidBody => (
                "invalid-body",
                S::UNPROCESSABLE_ENTITY,
                "Invalid request body",
            ),
            BodyTooLarge => (
                "body-too-large",
                S::PAYLOAD_TOO_LARGE,
                "Request body too large",
            ),
            UnsupportedMediaType => (
                "unsupported-media-type",
                S::UNSUPPORTED_MEDIA_TYPE,
                "Expected Content-Type: application/json",
            ),
            BadRequest => ("bad-request", S::BAD_REQUEST, "Bad request"),
            Unauthorized => (
                "unauthorized",
                S::UNAUTHORIZED,
                "Missing or wrong bearer token",
            ),
            NotFound => ("not-found", S::NOT_FOUND, "Not found"),
            MethodNotAllowed => (
                "method-not-allowed",
                S::METHOD_NOT_ALLOWED,
                "Method not allowed",
            ),
            MissingIdempotencyKey => (
                "missing-idempotency-key",
                S::BAD_REQUEST,
                "This request needs an Idempotency-Key header",
            ),
            IdempotencyKeyReused => (
                "idempotency-key-reused",
                S::UNPROCESSABLE_ENTITY,
                "Idempotency-Key reused for a different request",
            ),
            UnknownSku => ("unknown-sku", S::UNPROCESSABLE_ENTITY, "Unknown SKU"),
            UnknownPriceList => (
                "unknown-price-list",
                S::UNPROCESSABLE_ENTITY,
                "Unknown price list",
            ),
            UnknownMarket => ("unknown-market", S::UNPROCESSABLE_ENTITY, "Unknown market"),
            UnknownPromotion => ("unknown-promotion", S::NOT_FOUND, "Unknown promotion"),
            Conflict => ("conflict", S::CONFLICT, "Conflicts with existing data"),
            NotLeader => (
                "not-leader",
                S::MISDIRECTED_REQUEST,
                "Send this to the region that leads the group",
            ),
            HeldInGrants => (
                "held-in-grants",
                S::CONFLICT,
                "Stock is held in edge grants",
            ),
            OutOfStock => ("out-of-stock", S::CONFLICT, "Out of stock"),
            NotSoldInMarket => (
                "not-sold-in-market",
                S::UNPROCESSABLE_ENTITY,
                "Not sold to that destination in that currency",
            ),
            NoPrice => (
                "no-price",
                S::UNPROCESSABLE_ENTITY,
                "No price for this customer and destination",
            ),
            Quantity => (
                "bad-quantity",
                S::UNPROCESSABLE_ENTITY,
                "Quantity out of range",
            ),
            Overloaded => (
                "overloaded",
                S::SERVICE_UNAVAILABLE,
                "Too many writes in flight",
            ),
            RateLimited => (
                "rate-limited",
                S::TOO_MANY_REQUESTS,
                "Too many requests from this client",
            ),
            Unavailable => (
                "unavailable",
                S::SERVICE_UNAVAILABLE,
                "The store is unavailable",
            ),
            Timeout => (
                "timeout",
                S::GATEWAY_TIMEOUT,
                "The write did not finish in time",
            ),
            RequestTimeout => (
                "request-timeout",
                S::REQUEST_TIMEOUT,
                "The request took too long to arrive",
            ),
            Internal => ("internal", S::INTERNAL_SERVER_ERROR, "Internal error"),
        }
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

/// A problem document ready to send.
#[derive(Debug)]
pub struct Problem {
    pub kind: ProblemType,
    pub detail: String,
    pub retry_after_s: Option<u32>,
}

impl Problem {
    pub fn new(kind: ProblemType, detail: impl Into<String>) -> Self {
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

    pub fn status(&self) -> StatusCode {
        self.kind.info().1
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let (slug, status, title) = self.kind.info();
        let body = ProblemDocument {
            type_: format!("{TYPE_BASE}{slug}"),
            title,
            status: status.as_u16(),
            detail: self.detail,
        };
        let mut res = (status, Json(body)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after_s {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.kind == ProblemType::Unauthorized {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<Rejection> for Problem {
    fn from(r: Rejection) -> Self {
        let kind = match r.kind {
            RejectKind::Invalid => ProblemType::InvalidBody,
            RejectKind::UnknownSku => ProblemType::UnknownSku,
            RejectKind::UnknownPriceList => ProblemType::UnknownPriceList,
            RejectKind::UnknownMarket => ProblemType::UnknownMarket,
            RejectKind::UnknownPromotion => ProblemType::UnknownPromotion,
            RejectKind::Conflict => ProblemType::Conflict,
            RejectKind::HeldInGrants => ProblemType::HeldInGrants,
            RejectKind::OutOfStock => ProblemType::OutOfStock,
            RejectKind::NotSoldInMarket => ProblemType::NotSoldInMarket,
            RejectKind::NoPrice => ProblemType::NoPrice,
            RejectKind::Quantity => ProblemType::Quantity,
            RejectKind::IdempotencyKeyReused => ProblemType::IdempotencyKeyReused,
        };
        Problem::new(kind, r.detail)
    }
}

impl From<JsonRejection> for Problem {
    fn from(r: JsonRejection) -> Self {
        let kind = match &r {
            JsonRejection::JsonSyntaxError(_) => ProblemType::MalformedJson,
            JsonRejection::JsonDataError(_) => ProblemType::InvalidBody,
            JsonRejection::MissingJsonContentType(_) => ProblemType::UnsupportedMediaType,
            JsonRejection::BytesRejection(b) if b.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ProblemType::BodyTooLarge
            }
            _ => ProblemType::BadRequest,
        };
        Problem::new(kind, r.body_text())
    }
}

impl From<QueryRejection> for Problem {
    fn from(r: QueryRejection) -> Self {
        Problem::new(ProblemType::BadRequest, r.body_text())
    }
}

impl From<PathRejection> for Problem {
    fn from(r: PathRejection) -> Self {
        Problem::new(ProblemType::BadRequest, r.body_text())
    }
}
