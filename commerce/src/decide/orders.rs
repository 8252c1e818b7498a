//! Order rules: edge orders committed against their edge's grant, and central orders priced
//! and allocated from the pool. Each order is decided once, by its id, and an order placed
//! under an Idempotency-Key carries the id that key names (`order_id`), so one key is one
//! order wherever it was retried (I3); a key first used before v2 ids is answered with the
//! order its v1 id names.

use std::collections::HashMap;

use super::stock::inventory_writes;
use super::{Effects, Input, reject};
use crate::command::{COMMIT_BATCH_MAX, OrderResult, Outcome};
use crate::escrow::Inventory;
use crate::format::CommitLog;
use crate::id::{CustomerId, EdgeId, OrderId, SkuId};
use crate::order::{Order, OrderRequest, OrderStatus, Origin, check_idempotency_key, price_order};
use crate::personal::{KeptAddress, Personal};
use crate::record::{Record, Write};
use crate::refusal::{RejectKind, Rejection};

/// Orders `edge` accepted from its grants. Each is checked and committed against the grant
/// (then the pool), all lines or none; one that would oversell, or is malformed, is stored as
/// rejected and counts as nothing sold. An order decided before changes nothing: sent again by
/// the same edge (a forwarder's retry) it is answered as it was; taken anew under the same key
/// (a shopper's retry at another edge, or at the core), the answer names the order that
/// stands, so that the edge gives its copy's units back to its grant and shows that order,
/// and says whether the copy asked for something else under the key.
pub(super) fn commit_orders(
    i: &Input<'_>,
    edge: &EdgeId,
    orders: &[Order],
) -> Result<Effects, Rejection> {
    if orders.is_empty() || orders.len() > COMMIT_BATCH_MAX {
        return reject(
            RejectKind::Invalid,
            format!("a commit batch has 1 to {COMMIT_BATCH_MAX} orders"),
        );
    }
    let mut touched: HashMap<&SkuId, Inventory> = HashMap::new();
    let mut results: Vec<OrderResult> = Vec::with_capacity(orders.len());
    let mut writes = Vec::with_capacity(orders.len() + 2);
    // Orders decided by this command, and where each is in `orders_here`: a batch may repeat
    // one.
    let mut orders_here: Vec<Order> = Vec::with_capacity(orders.len());
    let mut here: HashMap<&OrderId, usize> = HashMap::new();
    let mut logged: Vec<OrderId> = Vec::with_capacity(orders.len());
    for o in orders {
        if let Some(&at) = here.get(&o.order_id) {
            let first = &orders_here[at];
            results.push(duplicate_of(first, o, i.version));
            continue;
        }
        if let Some(prev) = i.decided.get(&o.order_id).or_else(|| {
            let key = o.idempotency_key.as_deref()?;
            decided_under_v1(i, &o.order_id, &o.customer_id, key)
        }) {
            results.push(duplicate_of(prev, o, i.version));
            continue;
        }
        let order = match edge_order_units(i, &touched, edge, o) {
            Ok(units) => {
                touched.extend(units);
                let mut order = o.clone();
                order.status = OrderStatus::Committed;
                order.commit_version = Some(i.version);
                order.reject_reason = None;
                order
            }
            Err(reason) => o.rejected_stub(&reason, i.version),
        };
        here.insert(&o.order_id, orders_here.len());
        logged.push(order.order_id.clone());
        results.push(OrderResult {
            order_id: order.order_id.clone(),
            status: order.status,
            version: i.version,
            duplicate: false,
            reject_reason: order.reject_reason.clone(),
            original: None,
            key_reused: false,
        });
        orders_here.push(order);
    }
    writes.extend(orders_here.into_iter().map(|mut o| {
        erased_if_reached(i, &mut o);
        Write::Put(Record::Order(Box::new(o)))
    }));
    writes.extend(inventory_writes(touched));
    if !logged.is_empty() {
        writes.push(Write::Put(Record::CommitLog(i.version, CommitLog(logged))));
    }
    Ok(Effects {
        outcome: Outcome::Orders {
            version: i.version,
            results,
        },
        writes,
    })
}

/// The order decided before under the v1 id that `key` named, when `id` is its v2 id.
fn decided_under_v1<'i>(
    i: &Input<'i>,
    id: &OrderId,
    customer: &CustomerId,
    key: &str,
) -> Option<&'i Order> {
    i.decided
        .get(&crate::order_id::v1_beside(id, customer, key)?)
}

/// The answer to `sent`, an order whose id was decided before as `prev` (at `version`, when
/// it has none of its own).
fn duplicate_of(prev: &Order, sent: &Order, version: u64) -> OrderResult {
    let elsewhere = !prev.same_acceptance(sent);
    OrderResult {
        // The id the edge sent, which it settles by: `original` names the order that stands.
        order_id: sent.order_id.clone(),
        status: prev.status,
        version: prev.commit_version.unwrap_or(version),
        duplicate: true,
        reject_reason: prev.reject_reason.clone(),
        original: elsewhere.then(|| Box::new(prev.clone())),
        key_reused: elsewhere && !prev.is_retry_of(&sent.request()),
    }
}

/// Checks an edge order and works out its units from the edge's grants (on top of what this
/// batch already took, in `touched`), all lines or none. Returns the changed inventories, or
/// why the order is rejected.
fn edge_order_units<'o>(
    i: &Input<'_>,
    touched: &HashMap<&'o SkuId, Inventory>,
    edge: &EdgeId,
    o: &'o Order,
) -> Result<Vec<(&'o SkuId, Inventory)>, String> {
    if o.origin.edge.as_ref() != Some(edge) {
        return Err(format!(
            "order names edge {:?}, batch came from {edge}",
            o.origin.edge
        ));
    }
    o.check_shape().map_err(|e| e.to_string())?;
    let mut staged: Vec<(&SkuId, Inventory)> = Vec::with_capacity(o.lines.len());
    for (sku, qty) in o.units() {
        let mut inv = touched
            .get(sku)
            .cloned()
            .or_else(|| i.state.inventory(sku).cloned())
            .unwrap_or_default();
        inv.commit_from_grant(edge, u64::from(qty))
            .map_err(|e| format!("sku {sku}: {e}"))?;
        staged.push((sku, inv));
    }
    Ok(staged)
}

/// An order allocated from the central pool (no grant left at the edge, or placed through the
/// admin API), priced at the proposer's time, all lines or none. The same key with the same
/// request is the same order; with another request it is refused.
pub(super) fn central_order(
    i: &Input<'_>,
    order_id: &OrderId,
    key: Option<&str>,
    request: &OrderRequest,
    origin: Origin,
) -> Result<Effects, Rejection> {
    if let Some(k) = key {
        check_idempotency_key(k).map_err(|e| Rejection::invalid(e.to_string()))?;
        if !crate::order_id::may_name(order_id, &request.customer_id, k) {
            return reject(
                RejectKind::Invalid,
                "the order id is not the one its Idempotency-Key names",
            );
        }
    }
    let v1 = key.and_then(|k| decided_under_v1(i, order_id, &request.customer_id, k));
    if let Some(prev) = i.decided.get(order_id).or(v1) {
        if !prev.is_retry_of(request) {
            return reject(
                RejectKind::IdempotencyKeyReused,
                format!(
                    "Idempotency-Key already used by order {} for a different request",
                    prev.order_id
                ),
            );
        }
        return Ok(Effects {
            outcome: Outcome::Order {
                order: Box::new(prev.clone()),
                duplicate: true,
            },
            writes: Vec::new(),
        });
    }
    let state = i.state;
    let priced = price_order(request, |s| state.sku_facts(s), &state.book, i.at_ms)?;
    let mut touched: HashMap<&SkuId, Inventory> = HashMap::new();
    for l in &request.lines {
        let mut inv = i.state.inventory(&l.sku).cloned().unwrap_or_default();
        inv.commit_central(u64::from(l.qty)).map_err(|e| {
            let r = Rejection::from(e);
            Rejection::new(r.kind, format!("sku {}: {}", l.sku, r.detail))
        })?;
        touched.insert(&l.sku, inv);
    }
    let mut order = Order::accepted(
        order_id.clone(),
        key.map(str::to_owned),
        request.clone(),
        priced,
        origin,
        i.at_ms,
    );
    order.status = OrderStatus::Committed;
    order.commit_version = Some(i.version);
    erased_if_reached(i, &mut order);
    let mut writes = vec![Write::Put(Record::Order(Box::new(order.clone())))];
    writes.extend(inventory_writes(touched));
    writes.push(Write::Put(Record::CommitLog(
        i.version,
        CommitLog(vec![order_id.clone()]),
    )));
    Ok(Effects {
        outcome: Outcome::Order {
            order: Box::new(order),
            duplicate: false,
        },
        writes,
    })
}

/// `order` with its address erased when its customer's erasure reaches it (accepted before).
fn erased_if_reached(i: &Input<'_>, order: &mut Order) {
    if let Some(e) = i.state.erasure(&order.customer_id) {
        e.reach(order.accepted_at_ms, &mut order.ship_to);
    }
}

/// Erases `customer`'s personal data from the orders named that are theirs and accepted
/// before it (others are left as they are: an erasure reaches one customer, and what they
/// ordered since), and keeps the erasure, at the proposer's time (or the one kept, if later),
/// for what of theirs commits later.
pub(super) fn erase_personal(
    i: &Input<'_>,
    customer: &CustomerId,
    orders: &[OrderId],
) -> Result<Effects, Rejection> {
    check_erase_batch(orders)?;
    // Never back in time: a later request through a region whose clock is behind still
    // reaches what the earlier one did.
    let at_ms = i
        .state
        .erasure(customer)
        .map_or(i.at_ms, |e| e.at_ms.max(i.at_ms));
    let erasure = crate::personal::Erasure { at_ms };
    let mut writes = vec![Write::Put(Record::Erasure(customer.clone(), erasure))];
    // A new epoch: the key of the one it ends is destroyed at the customer's home regions.
    let ended = crate::personal::Erasure::epoch(i.state.erasure(customer));
    if ended != at_ms {
        writes.push(Write::Put(Record::EpochEnded(
            customer.clone(),
            ended,
            crate::personal::EpochEnd {
                at_ms,
                version: i.version,
            },
        )));
    }
    writes.extend(erased(i, orders, at_ms, |o| {
        &o.customer_id == customer && o.accepted_at_ms <= at_ms
    }));
    i.applied(writes)
}

/// Retention: erases the personal data of the orders named that were accepted before
/// `before_ms` (no later than the proposer's time).
pub(super) fn erase_orders(
    i: &Input<'_>,
    orders: &[OrderId],
    before_ms: i64,
) -> Result<Effects, Rejection> {
    check_erase_batch(orders)?;
    if before_ms > i.at_ms {
        return reject(
            RejectKind::Invalid,
            "retention erases orders accepted before its own time, not after",
        );
    }
    i.applied(erased(i, orders, i.at_ms, |o| o.accepted_at_ms < before_ms))
}

fn check_erase_batch(orders: &[OrderId]) -> Result<(), Rejection> {
    check_batch("an erasure", orders.len())
}

fn check_batch(what: &str, len: usize) -> Result<(), Rejection> {
    if len > crate::command::ERASE_BATCH_MAX {
        return reject(
            RejectKind::Invalid,
            format!(
                "{what} names at most {} orders",
                crate::command::ERASE_BATCH_MAX
            ),
        );
    }
    Ok(())
}

/// Addresses as their home region keeps them: each replaces its order's while the order holds
/// the same sealed address (equal digests, the same home, other bytes) and its customer is
/// still at the epoch it was kept for; any other is passed over (erased since, or kept again).
pub(super) fn keep_addresses(i: &Input<'_>, kept: &[KeptAddress]) -> Result<Effects, Rejection> {
    check_batch("keeping addresses", kept.len())?;
    let writes = kept
        .iter()
        .filter_map(|k| {
            let o = i.decided.get(&k.order_id)?;
            let Personal::Sealed(now) = &o.ship_to.personal else {
                return None;
            };
            let same = now.home == k.personal.home && now.digest == k.personal.digest;
            let epoch = crate::personal::Erasure::epoch(i.state.erasure(&o.customer_id));
            if !same || now.sealed == k.personal.sealed || epoch != k.epoch {
                return None;
            }
            let mut o = o.clone();
            o.ship_to.personal = Personal::Sealed(k.personal.clone());
            Some(Write::Put(Record::Order(Box::new(o))))
        })
        .collect();
    i.applied(writes)
}

/// The orders named that `reached` picks, decided before and not erased yet, with their
/// address erased at `at_ms`.
fn erased(
    i: &Input<'_>,
    orders: &[OrderId],
    at_ms: i64,
    reached: impl Fn(&Order) -> bool,
) -> Vec<Write> {
    orders
        .iter()
        .filter_map(|id| i.decided.get(id))
        .filter(|o| reached(o))
        .filter(|o| !matches!(o.ship_to.personal, Personal::Erased { .. }))
        .map(|o| {
            let mut o = o.clone();
            o.ship_to.personal = Personal::Erased { at_ms };
            Write::Put(Record::Order(Box::new(o)))
        })
        .collect()
}
