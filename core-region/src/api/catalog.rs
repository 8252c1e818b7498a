//! Catalog and pricing routes: products, markets, price lists, promotions, prices, quotes.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use commerce::command::{Command, PriceChange};
use commerce::order::OrderError;
use commerce::pricing::{PriceList, Promotion, QuoteRequest};
use commerce::{Market, MarketId, PriceListId, Product, ProductId, PromotionId, SkuId};
use serde_json::{Value, json};

use super::{AppState, page_limit, submit, version_reply};
use commerce::order::check_idempotency_key;
use http_api::{Body, Path, Query, idempotency_key};
use http_api::{Kind, Problem};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/products", get(list_products))
        .route("/admin/v1/products/{id}", put(put_product).get(get_product))
        .route("/admin/v1/markets", get(list_markets))
        .route("/admin/v1/markets/{id}", put(put_market))
        .route("/admin/v1/price-lists", get(list_price_lists))
        .route("/admin/v1/price-lists/{id}", put(put_price_list))
        .route("/admin/v1/promotions", get(list_promotions))
        .route(
            "/admin/v1/promotions/{id}",
            put(put_promotion).delete(delete_promotion),
        )
        .route("/admin/v1/prices", post(post_prices))
        .route("/admin/v1/prices/{sku}", get(get_prices))
        .route("/admin/v1/skus/{sku}/quote", get(quote))
}

fn same_id(path: &str, body: &str) -> Result<(), Problem> {
    if path != body {
        return Err(Problem::new(
            Kind::InvalidBody,
            format!("id in the path ({path}) and in the body ({body}) differ"),
        ));
    }
    Ok(())
}

async fn put_product(
    State(s): State<AppState>,
    Path(id): Path<ProductId>,
    headers: HeaderMap,
    Body(product): Body<Product>,
) -> Result<Response, Problem> {
    same_id(id.as_str(), product.id.as_str())?;
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let o = submit(
        &s,
        "products",
        key.as_deref(),
        Command::UpsertProduct(product),
    )
    .await?;
    Ok(version_reply(&o))
}

async fn get_product(
    State(s): State<AppState>,
    Path(id): Path<ProductId>,
) -> Result<Json<Product>, Problem> {
    let m = s.machine.read().await;
    m.state()
        .product(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| Problem::new(Kind::NotFound, format!("no product {id}")))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductPage {
    after: Option<ProductId>,
    limit: Option<usize>,
}

async fn list_products(
    State(s): State<AppState>,
    Query(q): Query<ProductPage>,
) -> Result<Json<Value>, Problem> {
    let limit = page_limit(q.limit)?;
    let m = s.machine.read().await;
    let items: Vec<&Product> = m
        .state()
        .products_after(q.after.as_ref())
        .take(limit)
        .collect();
    let next = (items.len() == limit)
        .then(|| items.last().map(|p| p.id.clone()))
        .flatten();
    Ok(Json(json!({ "items": items, "next": next })))
}

async fn put_market(
    State(s): State<AppState>,
    Path(id): Path<MarketId>,
    headers: HeaderMap,
    Body(market): Body<Market>,
) -> Result<Response, Problem> {
    same_id(id.as_str(), market.id.as_str())?;
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let o = submit(&s, "markets", key.as_deref(), Command::UpsertMarket(market)).await?;
    Ok(version_reply(&o))
}

async fn list_markets(State(s): State<AppState>) -> Json<Value> {
    let m = s.machine.read().await;
    let mut items: Vec<&Market> = m.state().book.markets().collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Json(json!({ "items": items }))
}

async fn put_price_list(
    State(s): State<AppState>,
    Path(id): Path<PriceListId>,
    headers: HeaderMap,
    Body(list): Body<PriceList>,
) -> Result<Response, Problem> {
    same_id(id.as_str(), list.id.as_str())?;
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let o = submit(
        &s,
        "price-lists",
        key.as_deref(),
        Command::UpsertPriceList(list),
    )
    .await?;
    Ok(version_reply(&o))
}

async fn list_price_lists(State(s): State<AppState>) -> Json<Value> {
    let m = s.machine.read().await;
    let mut items: Vec<&PriceList> = m.state().book.lists().collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    Json(json!({ "items": items }))
}

async fn put_promotion(
    State(s): State<AppState>,
    Path(id): Path<PromotionId>,
    headers: HeaderMap,
    Body(promotion): Body<Promotion>,
) -> Result<Response, Problem> {
    same_id(id.as_str(), promotion.id.as_str())?;
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let o = submit(
        &s,
        "promotions",
        key.as_deref(),
        Command::UpsertPromotion(promotion),
    )
    .await?;
    Ok(version_reply(&o))
}

async fn delete_promotion(
    State(s): State<AppState>,
    Path(id): Path<PromotionId>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    let o = submit(
        &s,
        "promotions-delete",
        key.as_deref(),
        Command::DeletePromotion(id),
    )
    .await?;
    Ok(version_reply(&o))
}

async fn list_promotions(State(s): State<AppState>) -> Json<Value> {
    let m = s.machine.read().await;
    let items: Vec<&Promotion> = m.state().book.promotions().collect();
    Json(json!({ "items": items }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBatch {
    changes: Vec<PriceChange>,
}

async fn post_prices(
    State(s): State<AppState>,
    headers: HeaderMap,
    Body(body): Body<PriceBatch>,
) -> Result<Response, Problem> {
    let key = idempotency_key(&headers, check_idempotency_key)?;
    super::check_batch_len(
        "price",
        body.changes.len(),
        commerce::command::PRICE_BATCH_MAX,
    )?;
    let o = submit(
        &s,
        "prices",
        key.as_deref(),
        Command::PriceBatch(body.changes),
    )
    .await?;
    Ok(version_reply(&o))
}

async fn get_prices(
    State(s): State<AppState>,
    Path(sku): Path<SkuId>,
) -> Result<Json<Value>, Problem> {
    let m = s.machine.read().await;
    if m.state().owner(&sku).is_none() {
        return Err(Problem::new(Kind::NotFound, format!("no sku {sku}")));
    }
    Ok(Json(
        json!({ "sku": sku, "prices": m.state().book.prices(&sku) }),
    ))
}

async fn quote(
    State(s): State<AppState>,
    Path(sku): Path<SkuId>,
    Query(q): Query<QuoteRequest>,
) -> Result<Json<commerce::pricing::Quote>, Problem> {
    let m = s.machine.read().await;
    match m.state().quote(&sku, &q, util::clock::now_ms()) {
        Ok(quote) => Ok(Json(quote)),
        Err(OrderError::UnknownSku(_)) => {
            Err(Problem::new(Kind::NotFound, format!("no sku {sku}")))
        }
        Err(e) => Err(commerce::refusal::Rejection::from(e).into()),
    }
}
