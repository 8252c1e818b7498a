//! The storefront API (DESIGN §3), answered from the edge's mirror of its region and its own
//! outbox: products, quotes and availability from memory; orders accepted from this edge's
//! grants, durably, before the answer; central orders (no grant left) sent to the core while
//! the shopper waits. Reads carry the mirror's version, and say when the edge has heard from no
//! core for longer than its bound. Every error is a problem document.
//!
//! Each route is declared once, with its OpenAPI description (`#[utoipa::path]`), and the
//! router and the description served at `/openapi.json` are built from the same declarations.
//! By concern: `catalog` (products and quotes), `orders` (placing and reading orders), `ops`
//! (status, health, metrics, the description); what they share is here.

mod catalog;
mod ops;
mod orders;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, header};
use commerce::shopper::Shopper;
use commerce::{CustomerGroup, CustomerId, EdgeId, SkuId};
use http_api::identity::TokenError;
use http_api::{Kind, Problem};
use tokio::sync::mpsc;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::ProductCache;
use crate::cores::Cores;
use crate::grants::DemandBook;
use crate::metrics::Metrics;
use crate::mirror::Catalog;
use crate::outbox::Outbox;

/// What every handler shares (one reference count per request).
#[derive(Clone)]
pub struct Edge(pub Arc<EdgeParts>);

impl std::ops::Deref for Edge {
    type Target = EdgeParts;
    fn deref(&self) -> &EdgeParts {
        &self.0
    }
}

pub struct EdgeParts {
    pub region: String,
    pub edge: EdgeId,
    /// What order ids are derived under (the deployment's secret).
    pub order_ids: commerce::order_id::OrderIdKey,
    /// Seals each order's personal data for its home region (I6).
    pub personal: Arc<sealing::PersonalData>,
    pub catalog: Catalog,
    pub outbox: Outbox,
    pub cores: Cores,
    pub demand: Arc<DemandBook>,
    /// SKUs sold here, for the grant keeper to look at.
    pub refill: mpsc::Sender<SkuId>,
    pub metrics: Arc<Metrics>,
    /// Rendered products.
    pub cache: ProductCache,
    pub stale_after: Duration,
    /// Past this age of its oldest unsent order, the edge is not healthy.
    pub pending_age_max: Duration,
    pub central_timeout: Duration,
    /// Central orders from this edge waiting for the core, bounded.
    pub central: tokio::sync::Semaphore,
    /// Turned off on shutdown: no new orders while the outbox drains and grants go back.
    pub accepting: Arc<AtomicBool>,
    /// Verifies shoppers' tokens.
    pub identity: Arc<http_api::identity::Verifier>,
    /// How long a CDN cache may keep an anonymous shopper's catalog read (0: not at all).
    pub cdn_max_age_s: u64,
}

/// Who is asking: the shopper a valid bearer token names, or an anonymous shopper (no
/// `Authorization` header). A header that is there and does not verify is refused (401
/// `invalid-token`), never taken as anonymous.
pub struct Who(pub Option<Shopper>);

impl Who {
    /// The signed-in shopper, or 401 `token-required`.
    pub fn required(self) -> Result<Shopper, Problem> {
        self.0.ok_or_else(|| {
            Problem::new(
                Kind::TokenRequired,
                "sign in: send `Authorization: Bearer <token>` from the identity provider",
            )
        })
    }
}

impl axum::extract::FromRequestParts<Edge> for Who {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        e: &Edge,
    ) -> Result<Self, Problem> {
        let refuse = |err: TokenError| {
            e.metrics.token_refused(err.reason());
            Problem::from(err)
        };
        let Some(v) = e.identity.shopper(&parts.headers).map_err(refuse)? else {
            return Ok(Who(None));
        };
        let settings = e.identity.settings();
        let customer = CustomerId::new(v.customer.as_str())
            .map_err(|_| refuse(TokenError::Claim(settings.customer_claim.clone())))?;
        let group = match &v.group {
            Some(g) => Some(
                CustomerGroup::new(g.as_str())
                    .map_err(|_| refuse(TokenError::Claim(settings.group_claim.clone())))?,
            ),
            None => None,
        };
        Ok(Who(Some(Shopper { customer, group })))
    }
}

/// The description's frame; the paths and schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
    modifiers(&ShopperAuth),
    info(
        title = "Tradewind storefront API",
        description = "What an edge serves shoppers: products, prices and availability from \
            memory, and orders accepted from its escrow grants. Errors are RFC 9457 problem \
            documents (application/problem+json) with a stable `type`."
    ),
    tags(
        (name = "catalog", description = "Products, prices and availability, from the edge's mirror of its region."),
        (name = "orders", description = "Orders, accepted here from this edge's grants or placed at the core."),
        (name = "operations", description = "Health, status and metrics, for the geo-router and operators."),
    )
)]
struct Storefront;

/// The `shopper` security scheme: a bearer JWT from the seller's identity provider.
struct ShopperAuth;

impl utoipa::Modify for ShopperAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .description(Some(
                "A token from the seller's identity provider: it names the customer (orders) \
                 and their customer group (prices). Without one, public prices and no orders.",
            ))
            .build();
        api.components
            .get_or_insert_with(Default::default)
            .add_security_scheme("shopper", SecurityScheme::Http(scheme));
    }
}

/// The storefront's routes, and their OpenAPI description.
fn routes() -> (Router<Edge>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(Storefront::openapi())
        .routes(routes!(catalog::list_products))
        .routes(routes!(catalog::get_product))
        .routes(routes!(catalog::quote))
        .routes(routes!(orders::place_order))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::list_orders))
        .routes(routes!(ops::status))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .split_for_parts()
}

/// The storefront's OpenAPI 3.1 description.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(edge: Edge, limits: &crate::config::Limits) -> Router {
    let routes = routes()
        .0
        .layer(DefaultBodyLimit::max(limits.body_max_bytes));
    let timeout = Duration::from_millis(limits.request_timeout_ms);
    http_api::limits::finish(routes, timeout).with_state(edge)
}

impl Edge {
    /// Milliseconds since a core was last heard from; `None` if none ever was.
    pub(super) fn staleness_ms(&self) -> Option<u64> {
        self.catalog.silence().map(|d| d.as_millis() as u64)
    }

    pub(super) fn stale(&self) -> bool {
        self.staleness_ms()
            .is_none_or(|ms| ms > self.stale_after.as_millis() as u64)
    }

    /// The headers every read carries: the version it was read at, and staleness.
    pub(super) fn read_headers(&self, h: &mut HeaderMap) {
        h.insert(
            "x-tradewind-version",
            HeaderValue::from(self.catalog.version()),
        );
        if self.stale() {
            h.insert("x-tradewind-stale", HeaderValue::from_static("true"));
            if let Some(ms) = self.staleness_ms() {
                h.insert("x-tradewind-staleness-ms", HeaderValue::from(ms));
            }
        }
    }

    /// What a shared cache may do with a catalog read: keep an anonymous shopper's for
    /// `cdn_max_age_s` (`CDN-Cache-Control`; browsers revalidate each use), never a signed-in
    /// shopper's, whose prices are their group's (`private`); `Vary: Authorization`, so that a
    /// kept page is never served to a request that carries a token; and `tags` as its
    /// surrogate keys, which the feed's changes purge (`purge`).
    pub(super) fn cdn_headers(&self, h: &mut HeaderMap, who: &Who, tags: &[String]) {
        h.insert(header::VARY, HeaderValue::from_static("authorization"));
        if who.0.is_some() || self.cdn_max_age_s == 0 {
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            );
            return;
        }
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            "cdn-cache-control",
            HeaderValue::from_str(&format!("public, max-age={}", self.cdn_max_age_s))
                .expect("digits are a header value"),
        );
        if let Ok(v) = HeaderValue::from_str(&tags.join(" ")) {
            h.insert("surrogate-key", v);
        }
    }

    pub(super) fn has_catalog(&self) -> Result<(), Problem> {
        if self.catalog.version() == 0 {
            return Err(Problem::new(
                Kind::Unavailable,
                "this edge has not received its region's catalog yet",
            )
            .retry_after(1));
        }
        Ok(())
    }
}
