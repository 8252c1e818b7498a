//! The storefront API (DESIGN §3), answered from the edge's mirror of its region and its own
//! outbox: products, quotes and availability from memory; orders accepted from this edge's
//! grants, durably, before the answer; central orders (no grant left) sent to the core while
//! the shopper waits. Reads carry the mirror's version, and say when the edge has heard from no
//! core for longer than its bound. Every error is a problem document.
//!
//! Each route is declared once, with its OpenAPI description (`#[utoipa::path]`), and the
//! router and the description served at `/openapi.json` are built from the same declarations.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commerce::catalog::Category;
use commerce::command::{EdgeRequest, EdgeWrite, Outcome};
use commerce::order::check_idempotency_key;
use commerce::order::{Order, OrderRequest, OrderStatus, Origin, order_id_for, price_order};
use commerce::pricing::{PriceContext, Quote, QuoteRequest};
use commerce::refusal::Rejection;
use commerce::{Country, Currency, CustomerGroup, EdgeId, Money, OrderId, ProductId, SkuId};
use http_api::{Body, Kind, Path, Problem, ProblemDocument, Query, idempotency_key};
use tokio::sync::mpsc;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::cache::{ProductCache, Rendered, ViewKey};
use crate::cores::Cores;
use crate::forwarder::ForwardStats;
use crate::grants::DemandBook;
use crate::metrics::Metrics;
use crate::mirror::Catalog;
use crate::outbox::{Intake, Outbox, OutboxError};

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
    pub catalog: Catalog,
    pub outbox: Outbox,
    pub cores: Cores,
    pub demand: Arc<DemandBook>,
    /// SKUs sold here, for the grant keeper to look at.
    pub refill: mpsc::Sender<SkuId>,
    pub metrics: Arc<Metrics>,
    pub forward: Arc<ForwardStats>,
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
}

/// The description's frame; the paths and schemas come from the routes.
#[derive(OpenApi)]
#[openapi(
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

/// The storefront's routes, and their OpenAPI description.
fn routes() -> (Router<Edge>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(Storefront::openapi())
        .routes(routes!(list_products))
        .routes(routes!(get_product))
        .routes(routes!(quote))
        .routes(routes!(place_order))
        .routes(routes!(get_order))
        .routes(routes!(status))
        .routes(routes!(healthz))
        .routes(routes!(metrics))
        .routes(routes!(openapi_json))
        .split_for_parts()
}

/// The storefront's OpenAPI 3.1 description.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes().1
}

pub fn router(edge: Edge, limits: &crate::config::Limits) -> Router {
    let limiter = crate::ratelimit::RateLimiter::new(limits.client_rate_per_s, limits.client_burst);
    let routes = routes()
        .0
        .layer(DefaultBodyLimit::max(limits.body_max_bytes))
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::ratelimit::limit,
        ));
    let timeout = Duration::from_millis(limits.request_timeout_ms);
    http_api::limits::finish(routes, timeout).with_state(edge)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Edge {
    /// Milliseconds since a core was last heard from; `None` if none ever was.
    fn staleness_ms(&self) -> Option<u64> {
        self.catalog.silence().map(|d| d.as_millis() as u64)
    }

    fn stale(&self) -> bool {
        self.staleness_ms()
            .is_none_or(|ms| ms > self.stale_after.as_millis() as u64)
    }

    /// The headers every read carries: the version it was read at, and staleness.
    fn read_headers(&self, h: &mut HeaderMap) {
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

    fn has_catalog(&self) -> Result<(), Problem> {
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

/// Products in a page, largest first.
const PAGE_MAX: usize = 100;

#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ProductQuery {
    /// Products in the page: 1 to 100, 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the page before.
    cursor: Option<ProductId>,
    /// Prices in this currency; none when absent.
    currency: Option<Currency>,
    /// The shopper's customer group, for group prices.
    customer_group: Option<CustomerGroup>,
    /// The destination, for market prices.
    country: Option<Country>,
}

#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ViewQuery {
    /// Prices in this currency; none when absent.
    currency: Option<Currency>,
    /// The shopper's customer group, for group prices.
    customer_group: Option<CustomerGroup>,
    /// The destination, for market prices.
    country: Option<Country>,
}

/// A SKU as shoppers see it.
#[derive(serde::Serialize, ToSchema)]
struct SkuView {
    sku: SkuId,
    /// Variant attributes: `{"colour": "red", "size": "M"}`.
    attributes: BTreeMap<String, String>,
    min_order_qty: u32,
    max_order_qty: u32,
    /// The unit price of one unit in the asked currency; absent without a currency, null when
    /// there is none for this shopper and destination.
    price: Option<Money>,
    /// Units this edge can sell: its grants and the region's central pool.
    available: u64,
}

/// A product as shoppers see it.
#[derive(serde::Serialize, ToSchema)]
struct ProductView {
    id: ProductId,
    title: String,
    category: Category,
    skus: Vec<SkuView>,
}

/// A page of products, in id order.
#[derive(serde::Serialize, ToSchema)]
struct ProductPage {
    items: Vec<ProductView>,
    /// Where the next page starts; null on the last page.
    next_cursor: Option<ProductId>,
}

/// A product as shoppers see it: each SKU with its unit price in the asked currency (when
/// there is one) and the units this edge can sell (its grants and the central pool).
fn product_view(
    e: &Edge,
    state: &commerce::state::State,
    p: &commerce::catalog::Product,
    currency: Option<Currency>,
    group: Option<&CustomerGroup>,
    country: Option<Country>,
) -> ProductView {
    let now = now_ms();
    let skus = p
        .skus
        .iter()
        .map(|s| {
            let price = currency.and_then(|currency| {
                let ctx = PriceContext {
                    currency,
                    customer_group: group,
                    country,
                    now_ms: now,
                };
                state
                    .book
                    .quote(&s.sku, &p.category, 1, &ctx)
                    .ok()
                    .map(|q| q.unit_price)
            });
            let pool = state.inventory(&s.sku).map_or(0, |i| i.available());
            SkuView {
                sku: s.sku.clone(),
                attributes: s.attributes.clone(),
                min_order_qty: s.min_order_qty,
                max_order_qty: s.max_order_qty,
                price,
                available: pool + e.outbox.units(&s.sku),
            }
        })
        .collect();
    ProductView {
        id: p.id.clone(),
        title: p.title.clone(),
        category: p.category.clone(),
        skus,
    }
}

/// Lists products, a page at a time.
#[utoipa::path(
    get,
    path = "/v1/products",
    tag = "catalog",
    params(ProductQuery),
    responses(
        (status = OK, description = "A page of products.", body = ProductPage, headers(
            ("x-tradewind-version" = u64, description = "The region's version this was read at."),
            ("x-tradewind-stale" = bool, description = "Present when the edge has heard from no core for longer than its bound."),
        )),
        (status = BAD_REQUEST, description = "A bad query.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No catalog yet.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn list_products(
    State(e): State<Edge>,
    Query(q): Query<ProductQuery>,
) -> Result<Response, Problem> {
    e.has_catalog()?;
    let limit = q.limit.unwrap_or(20).clamp(1, PAGE_MAX);
    let (items, next) = {
        let state = e.catalog.read();
        let page: Vec<&commerce::catalog::Product> = state
            .products_after(q.cursor.as_ref())
            .take(limit)
            .collect();
        let next = (page.len() == limit)
            .then(|| page.last().map(|p| p.id.clone()))
            .flatten();
        let items: Vec<ProductView> = page
            .into_iter()
            .map(|p| {
                product_view(
                    &e,
                    &state,
                    p,
                    q.currency,
                    q.customer_group.as_ref(),
                    q.country,
                )
            })
            .collect();
        (items, next)
    };
    let page = ProductPage {
        items,
        next_cursor: next,
    };
    let mut res = axum::Json(page).into_response();
    e.read_headers(res.headers_mut());
    Ok(res)
}

/// One product, with its SKUs' prices and availability.
#[utoipa::path(
    get,
    path = "/v1/products/{id}",
    tag = "catalog",
    params(("id" = ProductId, Path, description = "The product."), ViewQuery,
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy held: 304 while it is current.")),
    responses(
        (status = OK, description = "The product.", body = ProductView, headers(
            ("etag" = String, description = "Names this rendering; send it back in If-None-Match."),
            ("x-tradewind-version" = u64, description = "The region's version this was read at."),
        )),
        (status = NOT_MODIFIED, description = "The copy held is current."),
        (status = NOT_FOUND, description = "No such product.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = BAD_REQUEST, description = "A bad id or query.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No catalog yet.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn get_product(
    State(e): State<Edge>,
    Path(id): Path<ProductId>,
    Query(q): Query<ViewQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    e.has_catalog()?;
    let key = ViewKey {
        generation: e.catalog.generation(&id),
        product: id,
        currency: q.currency,
        group: q.customer_group,
        country: q.country,
    };
    let render = {
        let (e, key) = (e.clone(), key.clone());
        async move {
            let state = e.catalog.read();
            let p = state.product(&key.product).ok_or_else(|| {
                Problem::new(Kind::NotFound, format!("no product {}", key.product))
            })?;
            let view = product_view(&e, &state, p, key.currency, key.group.as_ref(), key.country);
            serde_json::to_vec(&view)
                .map(Rendered::new)
                .map_err(|err| Problem::new(Kind::Internal, err.to_string()))
        }
    };
    let rendered = e
        .cache
        .get(key, render)
        .await
        .map_err(|p| Problem::new(p.kind, p.detail.clone()))?;
    let etag = rendered.etag.to_str().unwrap_or("");
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            rendered.body.clone(),
        )
            .into_response()
    };
    res.headers_mut()
        .insert(header::ETAG, rendered.etag.clone());
    e.read_headers(res.headers_mut());
    Ok(res)
}

/// The price of a quantity of one SKU, with how it came about.
#[utoipa::path(
    get,
    path = "/v1/skus/{sku}/quote",
    tag = "catalog",
    params(("sku" = SkuId, Path, description = "The SKU."), QuoteRequest),
    responses(
        (status = OK, description = "The quote.", body = Quote),
        (status = BAD_REQUEST, description = "A bad SKU or query.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, description = "Unknown SKU, no price, not sold there, or a quantity out of range.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No catalog yet.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn quote(
    State(e): State<Edge>,
    Path(sku): Path<SkuId>,
    Query(q): Query<QuoteRequest>,
) -> Result<Response, Problem> {
    e.has_catalog()?;
    let quote = e
        .catalog
        .read()
        .quote(&sku, &q, now_ms())
        .map_err(|err| Problem::from(Rejection::from(err)))?;
    let mut res = axum::Json(quote).into_response();
    e.read_headers(res.headers_mut());
    Ok(res)
}

/// The answer to a placed order: what the shopper needs, not the whole record (`GET
/// /v1/orders/{id}` has that).
#[derive(serde::Serialize, ToSchema)]
struct Placed<'a> {
    order_id: &'a OrderId,
    /// `accepted` here from a grant (durable at this edge, committed at a core soon after), or
    /// `committed` when placed at the core.
    status: OrderStatus,
    total: &'a Money,
    /// The price version the order was priced at.
    price_version: u64,
    /// The region's version it committed at, once it has.
    commit_version: Option<u64>,
    region: &'a str,
    edge: &'a EdgeId,
}

fn placed_reply(e: &Edge, status: StatusCode, order: &Order, replayed: bool) -> Response {
    let placed = Placed {
        order_id: &order.order_id,
        status: order.status,
        total: &order.total,
        price_version: order.price_version,
        commit_version: order.commit_version,
        region: &e.region,
        edge: &e.edge,
    };
    let mut res = (status, axum::Json(placed)).into_response();
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

/// An order as the storefront shows it: the order, and where it was taken.
#[derive(serde::Serialize, ToSchema)]
struct OrderView<'a> {
    #[serde(flatten)]
    order: &'a Order,
    region: &'a str,
    edge: &'a EdgeId,
}

fn outbox_problem(err: OutboxError) -> Problem {
    match err {
        OutboxError::Overloaded => Problem::new(Kind::Overloaded, err.to_string()).retry_after(1),
        OutboxError::Store(_) => Problem::new(Kind::Unavailable, err.to_string()).retry_after(1),
    }
}

/// Places an order.
///
/// Accepted here from this edge's grants, durably, before the answer; or, when no grant here
/// holds its units, placed at the core while the shopper waits. The same Idempotency-Key from
/// the same customer always names the same order.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    params(("Idempotency-Key" = String, Header,
        description = "1 to 128 visible ASCII characters; a UUIDv7 or ULID is best. Required: a retry under the same key returns the first result.")),
    request_body(content = OrderRequest, content_type = "application/json"),
    responses(
        (status = CREATED, description = "Placed.", body = Placed),
        (status = OK, description = "Placed before under this key: the same order.", body = Placed, headers(
            ("idempotent-replayed" = bool, description = "Always true."))),
        (status = BAD_REQUEST, description = "Malformed JSON, or no Idempotency-Key.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = CONFLICT, description = "Out of stock.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = PAYLOAD_TOO_LARGE, description = "The body is too large.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "Not application/json.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, description = "An invalid order (unknown fields or SKUs, quantities, currency or destination), or the key used for another order.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = TOO_MANY_REQUESTS, description = "Over this client's rate.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "Overloaded, shutting down, no catalog yet, or no core reachable for a central order; retry after Retry-After.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn place_order(
    State(e): State<Edge>,
    headers: HeaderMap,
    Body(req): Body<OrderRequest>,
) -> Result<Response, Problem> {
    let started = std::time::Instant::now();
    let key = idempotency_key(&headers, check_idempotency_key)?.ok_or_else(|| {
        Problem::new(
            Kind::MissingIdempotencyKey,
            "orders need an Idempotency-Key header, so that a retry never places a second order",
        )
    })?;
    if !e.accepting.load(Ordering::Acquire) {
        return Err(Problem::new(
            Kind::Unavailable,
            "this edge is shutting down; send the order to another",
        )
        .retry_after(1));
    }
    e.has_catalog()?;
    let order_id = order_id_for(&req.customer_id, &key);
    // A retry is found by the outbox's writer (`Intake::Existing`): no read on the way in.
    let now = now_ms();
    let priced = {
        let state = e.catalog.read();
        price_order(&req, |s| state.sku_facts(s), &state.book, now)
    };
    let priced = match priced {
        Ok(p) => p,
        Err(err) => {
            // Prices or the catalog may have changed since the first attempt: a retry of an
            // order taken before is still answered with it.
            let ob = e.outbox.clone();
            let id = order_id.clone();
            let known = tokio::task::spawn_blocking(move || ob.order(&id))
                .await
                .map_err(|err| Problem::new(Kind::Internal, err.to_string()))?
                .map_err(outbox_problem)?;
            return match known {
                Some(prev) => replay(&e, &prev, &req),
                None => Err(Problem::from(Rejection::from(err))),
            };
        }
    };
    let origin = Origin {
        region: e.region.clone(),
        edge: Some(e.edge.clone()),
    };
    let order = Order::accepted(
        order_id,
        Some(key.clone()),
        req.clone(),
        priced,
        origin,
        now,
    );
    let at = tokio::time::Instant::now();
    for (sku, qty) in order.units() {
        e.demand.record(sku, u64::from(qty), at);
        // A full queue drops the hint; the SKU is looked at again with its next order.
        let _ = e.refill.try_send(sku.clone());
    }
    let res = match e.outbox.accept(order).await.map_err(outbox_problem)? {
        Intake::Accepted(o) => {
            e.metrics.accepted(started.elapsed());
            Ok(placed_reply(&e, StatusCode::CREATED, &o, false))
        }
        Intake::Existing(prev) => replay(&e, &prev, &req),
        Intake::NoGrant => central(&e, key, req).await,
    };
    if res.is_err() {
        e.metrics.refused();
    }
    res
}

/// The answer to an order id seen before: the order, or a refusal when the key was used for
/// another request.
fn replay(e: &Edge, prev: &Order, req: &OrderRequest) -> Result<Response, Problem> {
    if !prev.is_retry_of(req) {
        return Err(Problem::new(
            Kind::IdempotencyKeyReused,
            format!(
                "Idempotency-Key already used by order {} for a different request",
                prev.order_id
            ),
        ));
    }
    Ok(placed_reply(e, StatusCode::OK, prev, true))
}

/// No grant here holds the order's units: the core allocates from its pool while the shopper
/// waits, or answers out of stock. When this edge's mirror already shows the pool short of a
/// line, the shopper hears so here, as of the mirror's version, and the core is not asked: a
/// sold-out SKU does not become a write at the core per order. Central orders in flight from
/// this edge are bounded; past the bound, 503 at once.
async fn central(e: &Edge, key: String, req: OrderRequest) -> Result<Response, Problem> {
    {
        let state = e.catalog.read();
        let version = e.catalog.version();
        for l in &req.lines {
            let inv = state.inventory(&l.sku).cloned().unwrap_or_default();
            if let Err(short) = inv.can_commit_central(u64::from(l.qty)) {
                return Err(Problem::new(
                    Kind::OutOfStock,
                    format!("sku {}: {short} (as of version {version})", l.sku),
                ));
            }
        }
    }
    let Ok(_slot) = e.central.try_acquire() else {
        return Err(Problem::new(
            Kind::Overloaded,
            "too many orders from this edge are waiting for the core; retry in a moment",
        )
        .retry_after(1));
    };
    let write = EdgeWrite {
        request: EdgeRequest::CentralOrder {
            idempotency_key: key,
            request: req,
        },
    };
    let unreachable = |why: String| {
        Problem::new(
            Kind::Unavailable,
            format!("no grant here holds these units, and no core took the order: {why}"),
        )
        .retry_after(1)
    };
    let outcome = tokio::time::timeout(e.central_timeout, e.cores.write(&write, e.central_timeout))
        .await
        .map_err(|_| unreachable("timed out".into()))?
        .map_err(|err| unreachable(err.to_string()))?;
    match outcome {
        Outcome::Order { order, duplicate } => {
            // Kept for GET /v1/orders/{id} and retries here; the core has it whatever happens.
            if let Err(err) = e.outbox.record((*order).clone()).await {
                tracing::warn!(order = %order.order_id, error = %err, "central order not recorded locally");
            }
            e.metrics.central();
            let status = if duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            };
            Ok(placed_reply(e, status, &order, duplicate))
        }
        Outcome::Rejected(r) => Err(Problem::from(r)),
        other => Err(Problem::new(
            Kind::Internal,
            format!("unexpected answer from the core: {other:?}"),
        )),
    }
}

/// An order taken or placed at this edge, as it is now.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order.")),
    responses(
        (status = OK, description = "The order, and where it was taken.", body = OrderView),
        (status = NOT_FOUND, description = "No such order at this edge.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
async fn get_order(State(e): State<Edge>, Path(id): Path<OrderId>) -> Result<Response, Problem> {
    let ob = e.outbox.clone();
    let found = tokio::task::spawn_blocking(move || ob.order(&id))
        .await
        .map_err(|err| Problem::new(Kind::Internal, err.to_string()))?
        .map_err(outbox_problem)?;
    match found {
        Some(o) => {
            let view = OrderView {
                order: &o,
                region: &e.region,
                edge: &e.edge,
            };
            Ok(axum::Json(view).into_response())
        }
        None => Err(Problem::new(Kind::NotFound, "no such order at this edge")),
    }
}

/// Where this edge stands.
#[derive(serde::Serialize, ToSchema)]
struct EdgeStatus {
    region: String,
    edge: EdgeId,
    /// The region's version this edge's mirror has applied.
    applied_version: u64,
    /// Versions the region has that this edge has not applied yet.
    version_lag: u64,
    /// Whether a core was heard from within `stale_after_ms`.
    core_connected: bool,
    /// Milliseconds since a core was last heard from; null if none ever was.
    staleness_ms: Option<u64>,
    stale_after_ms: u64,
    /// Orders accepted here that no core has decided yet.
    outbox_pending: u64,
    /// How old the oldest of them is (ms); null when there is none.
    outbox_oldest_pending_ms: Option<u64>,
    /// Past this, the edge is not healthy: what it accepts is not reaching any core.
    outbox_pending_age_max_ms: u64,
    /// False while shutting down.
    accepting: bool,
}

/// `/healthz`: the status, and the verdict.
#[derive(serde::Serialize, ToSchema)]
struct Health {
    /// `ok`, or `degraded` (stale, no catalog, shutting down, or orders not reaching a core).
    status: &'static str,
    #[serde(flatten)]
    edge: EdgeStatus,
}

fn edge_status(e: &Edge) -> EdgeStatus {
    EdgeStatus {
        region: e.region.clone(),
        edge: e.edge.clone(),
        applied_version: e.catalog.version(),
        version_lag: e.catalog.lag(),
        core_connected: !e.stale(),
        staleness_ms: e.staleness_ms(),
        stale_after_ms: e.stale_after.as_millis() as u64,
        outbox_pending: e.outbox.pending_count(),
        outbox_oldest_pending_ms: e.outbox.oldest_pending_ms(now_ms()),
        outbox_pending_age_max_ms: e.pending_age_max.as_millis() as u64,
        accepting: e.accepting.load(Ordering::Acquire),
    }
}

/// Where this edge stands: its region's version, staleness, and the outbox.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "operations",
    responses((status = OK, description = "This edge's status.", body = EdgeStatus))
)]
async fn status(State(e): State<Edge>) -> axum::Json<EdgeStatus> {
    axum::Json(edge_status(&e))
}

/// Whether this edge can take shoppers.
///
/// 200 while it can sell with a current catalog; 503 (with the same document) when it has
/// heard from no core for longer than its bound, has no catalog yet, is shutting down, or holds
/// an order no core has taken for longer than its bound: the geo-router sends shoppers
/// elsewhere.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = OK, description = "Serving with a current catalog.", body = Health),
        (status = SERVICE_UNAVAILABLE, description = "Stale, no catalog yet, or shutting down.", body = Health),
    )
)]
async fn healthz(State(e): State<Edge>) -> Response {
    let edge = edge_status(&e);
    let backlog_ok = edge
        .outbox_oldest_pending_ms
        .is_none_or(|ms| ms <= edge.outbox_pending_age_max_ms);
    let ok = !e.stale() && e.catalog.version() > 0 && edge.accepting && backlog_ok;
    let health = Health {
        status: if ok { "ok" } else { "degraded" },
        edge,
    };
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(health)).into_response()
}

/// This description.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = OK, description = "The storefront API's OpenAPI 3.1 description.", content_type = "application/json"))
)]
async fn openapi_json() -> Response {
    static DESCRIBED: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    let body = DESCRIBED.get_or_init(|| openapi().to_json().unwrap_or_default().into());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.clone(),
    )
        .into_response()
}

/// Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = OK, description = "Counters, gauges and histograms in the Prometheus text format.", content_type = "text/plain"))
)]
async fn metrics(State(e): State<Edge>) -> Response {
    let units: u64 = e.outbox.all_units().iter().map(|(_, n)| n).sum();
    let text = e.metrics.render(&crate::metrics::Gauges {
        outbox_pending: e.outbox.pending_count(),
        outbox_oldest_pending_ms: e.outbox.oldest_pending_ms(now_ms()),
        intake_queued: e.outbox.queued(),
        grant_units: units,
        feed_version: e.catalog.version(),
        feed_lag: e.catalog.lag(),
        cache: e.cache.counts(),
        staleness_ms: e.staleness_ms(),
        forward: &e.forward,
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}
