//! Stock and escrow rules: stock batches, grants to edges and their return. Every inventory
//! keeps invariant I2 (`committed + granted <= stocked`) after each of them.

use std::collections::HashMap;

use super::{Effects, Input, reject};
use crate::command::{Outcome, STOCK_BATCH_MAX, StockChange};
use crate::escrow::{Demand, GrantPolicy, Inventory, Numbered, STOCK_MAX, grant_size};
use crate::id::{EdgeId, SkuId};
use crate::record::{Record, Write};
use crate::refusal::{RejectKind, Rejection};

/// The writes of changed inventories, in SKU order so that every replica writes the same rows.
pub(super) fn inventory_writes(touched: HashMap<&SkuId, Inventory>) -> Vec<Write> {
    let mut touched: Vec<(&SkuId, Inventory)> = touched.into_iter().collect();
    touched.sort_by(|a, b| a.0.cmp(b.0));
    touched
        .into_iter()
        .map(|(sku, inv)| {
            debug_assert!(inv.holds_i2());
            Write::Put(Record::Inventory(sku.clone(), inv))
        })
        .collect()
}

/// Up to `STOCK_BATCH_MAX` stock changes, all or none; a decrease that would cut into units
/// held in grants is refused (`held-in-grants`).
pub(super) fn stock_batch(i: &Input<'_>, changes: &[StockChange]) -> Result<Effects, Rejection> {
    if changes.is_empty() || changes.len() > STOCK_BATCH_MAX {
        return reject(
            RejectKind::Invalid,
            format!("a stock batch has 1 to {STOCK_BATCH_MAX} changes"),
        );
    }
    let mut touched: HashMap<&SkuId, Inventory> = HashMap::new();
    for (n, c) in changes.iter().enumerate() {
        i.known_sku(&c.sku)?;
        let inv = touched
            .entry(&c.sku)
            .or_insert_with(|| i.state.inventory(&c.sku).cloned().unwrap_or_default());
        inv.apply_stock(c.op).map_err(|e| {
            let r = Rejection::from(e);
            Rejection::new(
                r.kind,
                format!("changes[{n}] (sku {}): {}", c.sku, r.detail),
            )
        })?;
    }
    i.applied(inventory_writes(touched))
}

/// A grant to `edge` sized from its demand under `policy` (which travels in the command, so
/// that every replica sizes it alike); at low stock, none, and the edges are asked to give
/// theirs back. A numbered request the inventory shows applied is answered as it was.
pub(super) fn grant(
    i: &Input<'_>,
    edge: &EdgeId,
    sku: &SkuId,
    demand: Demand,
    policy: &GrantPolicy,
    request: Option<u64>,
) -> Result<Effects, Rejection> {
    i.known_sku(sku)?;
    if policy.max_share_bps > 10_000
        || policy.max_units > STOCK_MAX
        || policy.horizon_ms == 0
        || policy.min_units > policy.max_units
    {
        return reject(RejectKind::Invalid, "grant policy out of range");
    }
    let before = i.state.inventory(sku).cloned().unwrap_or_default();
    let granted = |units| Effects {
        outcome: Outcome::Granted {
            version: i.version,
            units,
        },
        writes: Vec::new(),
    };
    match request.map(|n| before.grant_request(edge, n)) {
        Some(Numbered::Again) => return Ok(granted(before.last_granted(edge))),
        Some(Numbered::Stale) => return Ok(granted(0)),
        Some(Numbered::New) | None => {}
    }
    let mut inv = before.clone();
    if let Some(n) = request
        && !inv.record_grant(edge, n, 0)
    {
        return Ok(granted(0));
    }
    let low_stock = inv.available() <= policy.low_stock_units;
    let size = grant_size(demand, inv.available(), policy);
    let units = inv.grant_or_recall(edge, size, low_stock);
    if let Some(n) = request {
        inv.record_grant(edge, n, units);
    }
    Ok(Effects {
        outcome: Outcome::Granted {
            version: i.version,
            units,
        },
        writes: changed(sku, before, inv),
    })
}

/// Units of `edge`'s grant given back to the pool (at most what it holds). A numbered return
/// the inventory shows applied changes nothing.
pub(super) fn return_grant(
    i: &Input<'_>,
    edge: &EdgeId,
    sku: &SkuId,
    units: u64,
    request: Option<u64>,
) -> Result<Effects, Rejection> {
    let before = i.state.inventory(sku).cloned().unwrap_or_default();
    let mut inv = before.clone();
    if let Some(n) = request
        && (before.return_request(edge, n) != Numbered::New || !inv.record_return(edge, n))
    {
        return Ok(Effects {
            outcome: Outcome::Returned {
                version: i.version,
                units: 0,
            },
            writes: Vec::new(),
        });
    }
    let units = inv.return_grant(edge, units);
    Ok(Effects {
        outcome: Outcome::Returned {
            version: i.version,
            units,
        },
        writes: changed(sku, before, inv),
    })
}

/// The write of `after`, if it differs from `before`.
fn changed(sku: &SkuId, before: Inventory, after: Inventory) -> Vec<Write> {
    if after == before {
        return Vec::new();
    }
    inventory_writes(HashMap::from([(sku, after)]))
}
