//! Orders: accepted here from this edge's grants, durably, before the answer; placed at the
//! core while the shopper waits when no grant here holds their units (or answered out of stock
//! here when the mirror shows the pool short); and read back by their own customer only: one,
//! or a page of all of theirs wherever they were placed (from the nearest core, with what this
//! edge holds that no core has yet).

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commerce::command::{
    EdgeRead, EdgeRequest, EdgeWrite, ORDERS_PAGE_MAX, OrderCursor, Outcome, ReadReply, orders_page,
};
use commerce::order::check_idempotency_key;
use commerce::order::{Order, OrderRequest, OrderStatus, Origin, Personal, price_order};
use commerce::refusal::Rejection;
use commerce::shopper::OrderForm;
use commerce::{EdgeId, Money, OrderId};
use http_api::{Body, Kind, Path, Problem, ProblemDocument, Query, idempotency_key};
use utoipa::{IntoParams, ToSchema};

use super::{Edge, Who};
use crate::outbox::{Intake, OutboxError};

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

/// A read of the outbox, off the async threads (redb blocks).
async fn read_outbox<T: Send + 'static>(
    e: &Edge,
    read: impl FnOnce(&crate::outbox::Outbox) -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, Problem> {
    let ob = e.outbox.clone();
    tokio::task::spawn_blocking(move || read(&ob))
        .await
        .map_err(|err| Problem::new(Kind::Internal, err.to_string()))?
        .map_err(outbox_problem)
}

fn outbox_problem(err: OutboxError) -> Problem {
    match err {
        OutboxError::Overloaded => Problem::new(Kind::Overloaded, err.to_string()).retry_after(1),
        OutboxError::Store(_) => Problem::new(Kind::Unavailable, err.to_string()).retry_after(1),
    }
}

/// Places an order for the signed-in shopper.
///
/// Accepted here from this edge's grants, durably, before the answer; or, when no grant here
/// holds its units, placed at the core while the shopper waits. The customer, and the group
/// whose prices apply, are the ones the shopper's token names. The same Idempotency-Key from
/// the same customer always names the same order.
#[utoipa::path(
    post,
    path = "/v1/orders",
    tag = "orders",
    params(("Idempotency-Key" = String, Header,
        description = "1 to 128 visible ASCII characters; a UUIDv7 or ULID is best. Required: a retry under the same key returns the first result.")),
    request_body(content = OrderForm, content_type = "application/json"),
    security(("shopper" = [])),
    responses(
        (status = CREATED, description = "Placed.", body = Placed),
        (status = OK, description = "Placed before under this key: the same order.", body = Placed, headers(
            ("idempotent-replayed" = bool, description = "Always true."))),
        (status = BAD_REQUEST, description = "Malformed JSON, or no Idempotency-Key.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNAUTHORIZED, description = "No bearer token (`token-required`), or one that does not verify (`invalid-token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = FORBIDDEN, description = "A customer_id or customer_group the token does not grant.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = CONFLICT, description = "Out of stock.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = PAYLOAD_TOO_LARGE, description = "The body is too large.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNSUPPORTED_MEDIA_TYPE, description = "Not application/json.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNPROCESSABLE_ENTITY, description = "An invalid order (unknown fields or SKUs, quantities, currency or destination), or the key used for another order.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = TOO_MANY_REQUESTS, description = "Over this client's rate.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "Overloaded, shutting down, no catalog yet, or no core reachable for a central order; retry after Retry-After.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(super) async fn place_order(
    State(e): State<Edge>,
    who: Who,
    headers: HeaderMap,
    Body(form): Body<OrderForm>,
) -> Result<Response, Problem> {
    let started = std::time::Instant::now();
    let mut req = form.request_of(&who.required()?)?;
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
    // Sealed for its home region before anything is written or sent (I6); a retry is told
    // by the address's digest.
    seal(&e, &mut req)?;
    let order_id = e.order_ids.order_id(&req.customer_id, &key);
    // A retry is found by the outbox's writer (`Intake::Existing`): no read on the way in.
    let now = util::clock::now_ms();
    let priced = {
        let state = e.catalog.read();
        price_order(&req, |s| state.sku_facts(s), &state.book, now)
    };
    let priced = match priced {
        Ok(p) => p,
        Err(err) => {
            // Prices or the catalog may have changed since the first attempt: a retry of an
            // order taken before is still answered with it.
            // Under its v1 id too, for a key first used before v2 ids (as `take_in` finds it).
            let id = order_id.clone();
            let v1 = commerce::order_id::v1_beside(&order_id, &req.customer_id, &key);
            let known = read_outbox(&e, move |ob| match ob.order(&id)? {
                Some(o) => Ok(Some(o)),
                None => v1.map_or(Ok(None), |v1| ob.order(&v1)),
            })
            .await?;
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

/// Seals `req`'s address for its home region.
fn seal(e: &Edge, req: &mut OrderRequest) -> Result<(), Problem> {
    use sealing::personal::SealError;
    match e.personal.sealer.seal(&req.customer_id, &mut req.ship_to) {
        Ok(()) => Ok(()),
        Err(SealError::Invalid(err)) => Err(Problem::from(Rejection::from(err))),
        Err(err) => {
            tracing::error!(error = %err, "an address not sealed; order refused");
            Err(Problem::new(
                Kind::Unavailable,
                "this edge cannot seal the shopper's address for its home region now",
            )
            .retry_after(1))
        }
    }
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
    let ours = e.order_ids.order_id(&req.customer_id, &key);
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
            if !duplicate && order.order_id != ours {
                // A retry of this key here would name another order than the core's.
                tracing::error!(ours = %ours, core = %order.order_id, "the core derives order ids under another deployment secret than this edge: give every node the same deployment.secret");
            }
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
            // Its kind only: an answer about other orders is nothing this shopper may read.
            format!("unexpected answer from the core: {}", other.kind()),
        )),
    }
}

/// Orders not yet at any core that a list looks through, at most (the newest).
const PENDING_LOOK_MAX: usize = 4_096;

/// The problem a core that did not answer a read is.
fn unanswered(err: replication::protocol::WriteError) -> Problem {
    match err {
        replication::protocol::WriteError::Refused { kind, reason } => Problem::new(kind, reason),
        other => Problem::new(
            Kind::Unavailable,
            format!("no core answered for the orders: {other}"),
        )
        .retry_after(1),
    }
}

/// One of the signed-in shopper's orders, wherever it was placed, as it is now.
///
/// Another customer's order is answered exactly as an unknown id is, so that ids cannot be
/// probed.
#[utoipa::path(
    get,
    path = "/v1/orders/{id}",
    tag = "orders",
    params(("id" = OrderId, Path, description = "The order.")),
    security(("shopper" = [])),
    responses(
        (status = OK, description = "The order, and the edge that answers.", body = OrderView),
        (status = UNAUTHORIZED, description = "No bearer token (`token-required`), or one that does not verify (`invalid-token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = NOT_FOUND, description = "None of this shopper's orders has this id.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "Not here, and no core answered; retry after Retry-After.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(super) async fn get_order(
    State(e): State<Edge>,
    who: Who,
    Path(id): Path<OrderId>,
) -> Result<Response, Problem> {
    let shopper = who.required()?;
    let lookup = id.clone();
    let local = read_outbox(&e, move |ob| ob.order(&lookup)).await?;
    // This edge cannot open an address; a core of its home region can. An order here whose
    // home is this region is asked of the core, which has it once committed.
    let found = match local {
        Some(o) if !homed_at(&o, &e.region) => Some(o),
        local => {
            let read = EdgeRead::Order {
                customer: shopper.customer.clone(),
                id,
                region: e.region.clone(),
            };
            match e.cores.read(&read, e.central_timeout).await {
                Ok(ReadReply::Order(Some(o))) => Some(*o),
                Ok(_) => local,
                Err(_) if local.is_some() => local,
                Err(err) => return Err(unanswered(err)),
            }
        }
    };
    match found {
        Some(o) if o.customer_id == shopper.customer => {
            let view = OrderView {
                order: &o,
                region: &e.region,
                edge: &e.edge,
            };
            Ok(axum::Json(view).into_response())
        }
        _ => Err(Problem::new(Kind::NotFound, "no such order")),
    }
}

/// Whether `order`'s address is sealed for `region`.
fn homed_at(order: &Order, region: &str) -> bool {
    matches!(&order.ship_to.personal, Personal::Sealed(s) if s.home == region)
}

#[derive(serde::Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OrderListQuery {
    /// Orders in the page: 1 to 100, 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The `next_cursor` of the page before.
    cursor: Option<String>,
}

/// A page of the signed-in shopper's orders, newest first.
#[derive(serde::Serialize, ToSchema)]
struct OrderPage {
    items: Vec<Order>,
    /// Where the next page starts; null on the last page.
    next_cursor: Option<String>,
}

fn cursor_text(c: &OrderCursor) -> String {
    format!("{}.{}", c.accepted_at_ms, c.order_id)
}

fn parse_cursor(s: &str) -> Result<OrderCursor, Problem> {
    let bad = || Problem::new(Kind::BadRequest, "cursor: not a next_cursor of this API");
    let (ms, id) = s.split_once('.').ok_or_else(bad)?;
    Ok(OrderCursor {
        accepted_at_ms: ms.parse().map_err(|_| bad())?,
        order_id: OrderId::new(id).map_err(|_| bad())?,
    })
}

/// The signed-in shopper's orders, newest first, wherever they were placed.
///
/// From the nearest core region (every region holds every committed order), with the orders
/// this edge has accepted that no core has yet; a page ends at `limit`, and its `next_cursor`
/// gives the next.
#[utoipa::path(
    get,
    path = "/v1/orders",
    tag = "orders",
    params(OrderListQuery),
    security(("shopper" = [])),
    responses(
        (status = OK, description = "A page of the shopper's orders.", body = OrderPage),
        (status = BAD_REQUEST, description = "A bad limit or cursor.", body = ProblemDocument, content_type = "application/problem+json"),
        (status = UNAUTHORIZED, description = "No bearer token (`token-required`), or one that does not verify (`invalid-token`).", body = ProblemDocument, content_type = "application/problem+json"),
        (status = SERVICE_UNAVAILABLE, description = "No core answered; retry after Retry-After.", body = ProblemDocument, content_type = "application/problem+json"),
    )
)]
pub(super) async fn list_orders(
    State(e): State<Edge>,
    who: Who,
    Query(q): Query<OrderListQuery>,
) -> Result<Response, Problem> {
    let shopper = who.required()?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=ORDERS_PAGE_MAX).contains(&limit) {
        return Err(Problem::new(
            Kind::BadRequest,
            format!("limit: 1 to {ORDERS_PAGE_MAX}"),
        ));
    }
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let read = EdgeRead::CustomerOrders {
        customer: shopper.customer.clone(),
        after: after.clone(),
        limit,
        region: e.region.clone(),
    };
    let at_core = match e
        .cores
        .read(&read, e.central_timeout)
        .await
        .map_err(unanswered)?
    {
        ReadReply::Orders(v) => v,
        ReadReply::Order(_) => Vec::new(),
    };
    let customer = shopper.customer.clone();
    let here = read_outbox(&e, move |ob| ob.pending_of(&customer, PENDING_LOOK_MAX)).await?;
    let (items, next) = orders_page(
        &shopper.customer,
        at_core,
        here,
        after.as_ref(),
        limit as usize,
    );
    let next_cursor = next.as_ref().map(cursor_text);
    Ok(axum::Json(OrderPage { items, next_cursor }).into_response())
}
