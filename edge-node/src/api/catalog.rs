//! Products and quotes, from the edge's mirror of its region: a page of products, one product
//! (rendered once per generation of its rows, with an ETag), and the price of a quantity of one
//! SKU. Every read carries the version it was read at.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commerce::catalog::Category;
use commerce::pricing::{PriceContext, Quote, QuoteRequest};
use commerce::refusal::Rejection;
use commerce::shopper::price_group;
use commerce::{Country, Currency, CustomerGroup, Money, ProductId, SkuId};
use http_api::{Kind, Path, Problem, ProblemDocument, Query};
use utoipa::{IntoParams, ToSchema};

use super::{Edge, Who};
use crate::cache::{Rendered, ViewKey};
use crate::purge;

/// Products in a page, largest first.
const PAGE_MAX: usize = 100;

#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ProductQuery {
    /// Products in the page: 1 to 100, 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the page before.
    cursor: Option<ProductId>,
    /// Prices in this currency; none when absent.
    currency: Option<Currency>,
    /// Optional: the group's prices come from the shopper's token; a group given here must be
    /// that one (else 403 `group-not-granted`).
    customer_group: Option<CustomerGroup>,
    /// The destination, for market prices.
    country: Option<Country>,
}

#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ViewQuery {
    /// Prices in this currency; none when absent.
    currency: Option<Currency>,
    /// Optional: the group's prices come from the shopper's token; a group given here must be
    /// that one (else 403 `group-not-granted`).
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
    let now = util::clock::now_ms();
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
        (status = UNAUTHORIZED, description = "A bearer token that does not verify (`invalid-token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = FORBIDDEN, description = "A customer group the shopper's token does not grant (`group-not-granted`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No catalog yet.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_products(
    State(e): State<Edge>,
    who: Who,
    Query(q): Query<ProductQuery>,
) -> Result<Response, Problem> {
    let group = price_group(who.0.as_ref(), q.customer_group.as_ref())?;
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
            .map(|p| product_view(&e, &state, p, q.currency, group.as_ref(), q.country))
            .collect();
        (items, next)
    };
    let page = ProductPage {
        items,
        next_cursor: next,
    };
    let mut res = axum::Json(page).into_response();
    e.read_headers(res.headers_mut());
    e.cdn_headers(
        res.headers_mut(),
        &who,
        &[purge::CATALOG.into(), purge::PRODUCTS.into()],
    );
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
        (status = UNAUTHORIZED, description = "A bearer token that does not verify (`invalid-token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = FORBIDDEN, description = "A customer group the shopper's token does not grant (`group-not-granted`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No catalog yet.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_product(
    State(e): State<Edge>,
    who: Who,
    Path(id): Path<ProductId>,
    Query(q): Query<ViewQuery>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let group = price_group(who.0.as_ref(), q.customer_group.as_ref())?;
    e.has_catalog()?;
    let product = id.clone();
    let key = ViewKey {
        generation: e.catalog.generation(&id),
        product: id,
        currency: q.currency,
        group,
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
    let matches = http_api::conditional::none_match(&headers, rendered.etag.to_str().unwrap_or(""));
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
    let tags = {
        let state = e.catalog.read();
        let mut tags = vec![purge::CATALOG.to_owned(), purge::product_key(&product)];
        if let Some(p) = state.product(&product) {
            tags.push(format!("category:{}", p.category.as_str()));
            tags.extend(p.skus.iter().map(|s| format!("sku:{}", s.sku)));
        }
        tags
    };
    e.cdn_headers(res.headers_mut(), &who, &tags);
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
        (status = UNAUTHORIZED, description = "A bearer token that does not verify (`invalid-token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = FORBIDDEN, description = "A customer group the shopper's token does not grant (`group-not-granted`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, description = "Unknown SKU, no price, not sold there, or a quantity out of range.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No catalog yet.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(super) async fn quote(
    State(e): State<Edge>,
    who: Who,
    Path(sku): Path<SkuId>,
    Query(mut q): Query<QuoteRequest>,
) -> Result<Response, Problem> {
    q.customer_group = price_group(who.0.as_ref(), q.customer_group.as_ref())?;
    e.has_catalog()?;
    let quote = e
        .catalog
        .read()
        .quote(&sku, &q, util::clock::now_ms())
        .map_err(|err| Problem::from(Rejection::from(err)))?;
    let mut res = axum::Json(quote).into_response();
    e.read_headers(res.headers_mut());
    let mut tags = vec![purge::CATALOG.to_owned(), format!("sku:{sku}")];
    if let Some(p) = e.catalog.read().owner(&sku) {
        tags.push(purge::product_key(p));
    }
    e.cdn_headers(res.headers_mut(), &who, &tags);
    Ok(res)
}
