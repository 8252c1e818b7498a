//! Escrow arithmetic (the demarcation protocol): how a SKU's stock is split between units
//! already sold, units granted to edges, and the central pool, and how grants are sized.
//!
//! Invariant I2 holds for every `Inventory` after every operation here:
//! `committed + granted_total <= stocked`, where `stocked` is adds minus removals. Every
//! operation that would break it is refused (or clamped, for grants) and leaves the inventory
//! unchanged; the property tests drive arbitrary interleavings to show it.

use std::collections::BTreeMap;

use crate::id::{EdgeId, SkuId};

/// Largest stock figure accepted (a trillion units); keeps every sum far from `u64::MAX`.
pub const STOCK_MAX: u64 = 1_000_000_000_000;

/// Edges that may hold a grant of one SKU at once. Far above any real mesh (a few edges per
/// region), and it keeps one SKU's inventory record small enough for every store backend.
pub const GRANT_HOLDERS_MAX: usize = 256;

/// A change to a SKU's stock, as an admin sends it.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockOp {
    /// The seller now holds this many unsold units (including units in outstanding grants).
    Set(u64),
    /// Units received.
    Add(u64),
    /// Units written off (damaged, sold elsewhere).
    Remove(u64),
}

/// Why an escrow operation was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum EscrowError {
    #[error("stock figure {0} is above the limit of {STOCK_MAX}")]
    TooLarge(u64),
    #[error(
        "cannot lower unsold stock to {wanted}: {granted} units are held in edge grants and {pool} are in the central pool; wait for grants to come back"
    )]
    HeldInGrants {
        wanted: u64,
        granted: u64,
        pool: u64,
    },
    #[error("out of stock: {wanted} wanted, {available} available")]
    OutOfStock { wanted: u64, available: u64 },
}

impl From<EscrowError> for crate::refusal::Rejection {
    fn from(e: EscrowError) -> Self {
        let kind = match e {
            EscrowError::TooLarge(_) => crate::refusal::RejectKind::Invalid,
            EscrowError::HeldInGrants { .. } => crate::refusal::RejectKind::HeldInGrants,
            EscrowError::OutOfStock { .. } => crate::refusal::RejectKind::OutOfStock,
        };
        crate::refusal::Rejection::new(kind, e.to_string())
    }
}

/// A SKU's stock at a core.
#[derive(Clone, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Inventory {
    /// Units ever made sellable: adds minus removals.
    pub stocked: u64,
    /// Units in committed orders.
    pub committed: u64,
    /// Units granted to each edge and not yet sold or returned.
    pub granted: BTreeMap<EdgeId, u64>,
    /// The core asks the edges to give their grants back: a grant was refused because the pool
    /// ran low (`GrantPolicy::low_stock_units`), so the last units are sold centrally, one order
    /// at a time. Cleared when stock is added or no grant is left.
    pub recall: bool,
    /// The last grant and the last return each edge asked for, by the edge's numbers: a
    /// request sent again (its answer lost) is answered as it was and applied once, however
    /// late it comes. At most `GRANT_HOLDERS_MAX` edges.
    pub requests: BTreeMap<EdgeId, EdgeRequests>,
}

/// An edge's last requests of one SKU. An edge has at most one grant request and one return
/// of a SKU open at a time, numbered from a counter that only grows.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct EdgeRequests {
    /// The number of the last grant request applied, and the units it granted.
    pub grant: u64,
    pub granted: u64,
    /// The number of the last return applied.
    pub returned: u64,
}

/// What a numbered request from an edge is, given the last ones applied.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Numbered {
    /// Newer than any applied: apply it.
    New,
    /// Applied before (its answer was lost): answer as then, change nothing.
    Again,
    /// Older than one applied since: the edge closed it long ago; change nothing.
    Stale,
}

fn numbered(last: u64, request: u64) -> Numbered {
    match request.cmp(&last) {
        std::cmp::Ordering::Greater => Numbered::New,
        std::cmp::Ordering::Equal => Numbered::Again,
        std::cmp::Ordering::Less => Numbered::Stale,
    }
}

/// Where the units of an edge order came from when it committed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct CommitSource {
    pub from_grant: u64,
    pub from_pool: u64,
}

impl Inventory {
    pub fn granted_total(&self) -> u64 {
        self.granted.values().sum()
    }

    /// Unsold units, wherever they are (pool and grants).
    pub fn on_hand(&self) -> u64 {
        self.stocked.saturating_sub(self.committed)
    }

    /// Units in the central pool: neither sold nor granted.
    pub fn available(&self) -> u64 {
        self.on_hand().saturating_sub(self.granted_total())
    }

    /// Invariant I2.
    pub fn holds_i2(&self) -> bool {
        self.committed
            .checked_add(self.granted_total())
            .is_some_and(|used| used <= self.stocked)
    }

    /// Applies a stock change, or refuses it whole if it would break I2.
    pub fn apply_stock(&mut self, op: StockOp) -> Result<(), EscrowError> {
        let granted = self.granted_total();
        let new_stocked = match op {
            StockOp::Set(n) => {
                if n > STOCK_MAX {
                    return Err(EscrowError::TooLarge(n));
                }
                if n < granted {
                    return Err(EscrowError::HeldInGrants {
                        wanted: n,
                        granted,
                        pool: self.available(),
                    });
                }
                self.committed + n
            }
            StockOp::Add(n) => {
                let s = self.stocked.saturating_add(n);
                if n > STOCK_MAX || s - self.committed > STOCK_MAX {
                    return Err(EscrowError::TooLarge(n));
                }
                s
            }
            StockOp::Remove(n) => {
                let pool = self.available();
                if n > pool {
                    return Err(EscrowError::HeldInGrants {
                        wanted: self.on_hand().saturating_sub(n),
                        granted,
                        pool,
                    });
                }
                self.stocked - n
            }
        };
        if new_stocked > self.stocked {
            // More to sell: grants may be asked for again.
            self.recall = false;
        }
        self.stocked = new_stocked;
        debug_assert!(self.holds_i2());
        Ok(())
    }

    /// Grants up to `units` from the pool to `edge`; returns how many were granted (none to a
    /// new holder once `GRANT_HOLDERS_MAX` edges hold grants).
    pub fn grant(&mut self, edge: &EdgeId, units: u64) -> u64 {
        if !self.granted.contains_key(edge) && self.granted.len() >= GRANT_HOLDERS_MAX {
            return 0;
        }
        let n = units.min(self.available());
        if n > 0 {
            *self.granted.entry(edge.clone()).or_default() += n;
        }
        debug_assert!(self.holds_i2());
        n
    }

    /// Takes back up to `units` of `edge`'s grant into the pool; returns how many came back.
    pub fn return_grant(&mut self, edge: &EdgeId, units: u64) -> u64 {
        let Some(held) = self.granted.get_mut(edge) else {
            return 0;
        };
        let n = units.min(*held);
        *held -= n;
        if *held == 0 {
            self.granted.remove(edge);
        }
        if self.granted.is_empty() {
            self.recall = false;
        }
        n
    }

    /// What grant request number `request` of `edge` is.
    pub fn grant_request(&self, edge: &EdgeId, request: u64) -> Numbered {
        numbered(self.requests.get(edge).map_or(0, |r| r.grant), request)
    }

    /// What return number `request` of `edge` is.
    pub fn return_request(&self, edge: &EdgeId, request: u64) -> Numbered {
        numbered(self.requests.get(edge).map_or(0, |r| r.returned), request)
    }

    /// The units the last grant request of `edge` granted.
    pub fn last_granted(&self, edge: &EdgeId) -> u64 {
        self.requests.get(edge).map_or(0, |r| r.granted)
    }

    /// Records grant request `request` of `edge` as applied, granting `units`; `false` (and
    /// nothing recorded) when `GRANT_HOLDERS_MAX` other edges already have requests recorded.
    pub fn record_grant(&mut self, edge: &EdgeId, request: u64, units: u64) -> bool {
        let Some(r) = self.requests_of(edge) else {
            return false;
        };
        r.grant = request;
        r.granted = units;
        true
    }

    /// Records return `request` of `edge` as applied.
    pub fn record_return(&mut self, edge: &EdgeId, request: u64) -> bool {
        let Some(r) = self.requests_of(edge) else {
            return false;
        };
        r.returned = request;
        true
    }

    fn requests_of(&mut self, edge: &EdgeId) -> Option<&mut EdgeRequests> {
        if !self.requests.contains_key(edge) && self.requests.len() >= GRANT_HOLDERS_MAX {
            return None;
        }
        Some(self.requests.entry(edge.clone()).or_default())
    }

    /// A grant for `edge` of `size` units (`grant_size`), out of a pool that `low_stock`
    /// says is nearly gone when `size` is 0: the edges are then asked to give their grants back
    /// (`recall`). Returns the units granted.
    pub fn grant_or_recall(&mut self, edge: &EdgeId, size: u64, low_stock: bool) -> u64 {
        let n = self.grant(edge, size);
        if n == 0 && low_stock && !self.granted.is_empty() {
            self.recall = true;
        }
        n
    }

    /// Commits `units` sold by `edge` from its grant. An honest edge never sells more than its
    /// grant; if one does (its grant was lost with its disk), the rest comes from the pool, and
    /// if the pool is short too the commit is refused rather than oversold.
    pub fn commit_from_grant(
        &mut self,
        edge: &EdgeId,
        units: u64,
    ) -> Result<CommitSource, EscrowError> {
        let held = self.granted.get(edge).copied().unwrap_or(0);
        let CommitSource {
            from_grant,
            from_pool,
        } = from_grant(held, units);
        let available = self.available();
        if from_pool > available {
            return Err(EscrowError::OutOfStock {
                wanted: units,
                available: held + available,
            });
        }
        self.return_grant(edge, from_grant);
        self.committed += units;
        debug_assert!(self.holds_i2());
        Ok(CommitSource {
            from_grant,
            from_pool,
        })
    }

    /// Whether the pool holds `units` for a centrally allocated order: the core's rule at
    /// commit, and an edge's, on its mirror, before it asks the core at all.
    pub fn can_commit_central(&self, units: u64) -> Result<(), EscrowError> {
        let available = self.available();
        if units > available {
            return Err(EscrowError::OutOfStock {
                wanted: units,
                available,
            });
        }
        Ok(())
    }

    /// Commits `units` of a centrally allocated order from the pool.
    pub fn commit_central(&mut self, units: u64) -> Result<(), EscrowError> {
        self.can_commit_central(units)?;
        self.committed += units;
        debug_assert!(self.holds_i2());
        Ok(())
    }
}

/// Where `units` sold by an edge come from when it holds `held` of the SKU: its grant first,
/// then the central pool. The core commits an edge's order by this (`commit_from_grant`); the
/// edge sells from its own books by it (`sell_from_grants`), where nothing may come from the
/// pool.
pub fn from_grant(held: u64, units: u64) -> CommitSource {
    let from_grant = units.min(held);
    CommitSource {
        from_grant,
        from_pool: units - from_grant,
    }
}

/// What an edge holds of each SKU of an order's `lines` after selling the order from its
/// grants, all lines or none: `None` when a line wants more than the edge holds of its SKU
/// (`held`), and the order is then the central pool's to allocate.
pub fn sell_from_grants<'s>(
    lines: impl IntoIterator<Item = (&'s SkuId, u32)>,
    mut held: impl FnMut(&SkuId) -> u64,
) -> Option<Vec<(&'s SkuId, u64)>> {
    lines
        .into_iter()
        .map(|(sku, qty)| {
            let have = held(sku);
            let source = from_grant(have, u64::from(qty));
            (source.from_pool == 0).then_some((sku, have - source.from_grant))
        })
        .collect()
}

/// Recent demand an edge observed for one SKU.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Demand {
    /// Units sold in the window.
    pub units: u64,
    /// Length of the window.
    pub window_ms: u64,
}

/// How large grants are. It travels inside the grant command, so every replica sizes a grant
/// the same way whatever its own configuration says.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantPolicy {
    /// A grant covers this much time of the edge's recent demand.
    pub horizon_ms: u64,
    /// Smallest grant worth making: an edge with no demand yet still gets this many.
    pub min_units: u64,
    /// Largest single grant, whatever the demand.
    pub max_units: u64,
    /// At most this share of the pool goes to one grant, so one busy edge cannot starve the
    /// others (basis points).
    pub max_share_bps: u32,
    /// At or below this many units in the pool, no more grants: edges sell centrally, where
    /// the last units are allocated one order at a time.
    pub low_stock_units: u64,
}

impl Default for GrantPolicy {
    fn default() -> Self {
        GrantPolicy {
            // 30 s of demand per grant: an edge asks again a few times a minute at steady load.
            horizon_ms: 30_000,
            min_units: 1,
            max_units: 1_000,
            // A quarter of the pool: with 3 edges per region and 3 regions, the pool still holds
            // most of the stock after every edge took a grant.
            max_share_bps: 2_500,
            low_stock_units: 10,
        }
    }
}

/// Units to grant an edge with `demand` out of a pool of `pool` units. Zero when the pool is at
/// or below `low_stock_units`; otherwise the demand over the horizon, at least `min_units`, at
/// most `max_units`, a `max_share_bps` share of the pool, and what lies above the low-stock line.
pub fn grant_size(demand: Demand, pool: u64, policy: &GrantPolicy) -> u64 {
    if pool <= policy.low_stock_units {
        return 0;
    }
    let wanted = if demand.window_ms == 0 {
        0
    } else {
        let num = u128::from(demand.units) * u128::from(policy.horizon_ms);
        u64::try_from(num.div_ceil(u128::from(demand.window_ms))).unwrap_or(u64::MAX)
    };
    let share = u64::try_from(u128::from(pool) * u128::from(policy.max_share_bps) / 10_000)
        .unwrap_or(u64::MAX);
    wanted
        .max(policy.min_units)
        .min(policy.max_units)
        .min(share)
        .min(pool - policy.low_stock_units)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_grant_refused_for_low_stock_recalls_the_others_until_stock_comes_back() {
        let (a, b) = (EdgeId::new("a").unwrap(), EdgeId::new("b").unwrap());
        let mut inv = Inventory::default();
        inv.apply_stock(StockOp::Set(20)).unwrap();
        assert_eq!(inv.grant_or_recall(&a, 12, false), 12);
        assert!(!inv.recall);
        // The pool (8) is low: nothing for b, and a is asked to give its units back.
        assert_eq!(inv.grant_or_recall(&b, 0, true), 0);
        assert!(inv.recall);
        inv.return_grant(&a, 5);
        assert!(inv.recall, "still held by a");
        inv.return_grant(&a, 7);
        assert!(!inv.recall, "nothing left to recall");
        // Asked again, then stock added: grants may be asked for again.
        inv.grant_or_recall(&a, 3, false);
        inv.grant_or_recall(&b, 0, true);
        assert!(inv.recall);
        inv.apply_stock(StockOp::Add(100)).unwrap();
        assert!(!inv.recall);
        assert!(inv.holds_i2());
    }

    use super::*;

    fn edge(s: &str) -> EdgeId {
        EdgeId::new(s).unwrap()
    }

    #[test]
    fn stock_ops_keep_i2() {
        let mut inv = Inventory::default();
        inv.apply_stock(StockOp::Set(10)).unwrap();
        assert_eq!(inv.grant(&edge("a"), 6), 6);
        assert_eq!(inv.available(), 4);
        // Cannot set unsold stock below what edges hold.
        assert!(matches!(
            inv.apply_stock(StockOp::Set(5)),
            Err(EscrowError::HeldInGrants { granted: 6, .. })
        ));
        assert!(inv.apply_stock(StockOp::Remove(5)).is_err());
        inv.apply_stock(StockOp::Remove(4)).unwrap();
        assert_eq!(inv.available(), 0);
        assert_eq!(inv.commit_from_grant(&edge("a"), 2).unwrap().from_grant, 2);
        assert_eq!(inv.on_hand(), 4);
        inv.apply_stock(StockOp::Set(4)).unwrap();
        assert_eq!(inv.return_grant(&edge("a"), 100), 4);
        assert!(inv.granted.is_empty());
        assert!(inv.holds_i2());
        assert!(inv.apply_stock(StockOp::Add(STOCK_MAX + 1)).is_err());
    }

    #[test]
    fn commit_beyond_grant_uses_pool_or_refuses() {
        let mut inv = Inventory::default();
        inv.apply_stock(StockOp::Set(5)).unwrap();
        inv.grant(&edge("a"), 2);
        let src = inv.commit_from_grant(&edge("a"), 4).unwrap();
        assert_eq!((src.from_grant, src.from_pool), (2, 2));
        assert!(inv.commit_from_grant(&edge("a"), 2).is_err());
        assert_eq!(inv.committed, 4);
        assert!(inv.commit_central(1).is_ok());
        assert!(inv.commit_central(1).is_err());
    }

    #[test]
    fn an_edge_sells_from_its_grants_all_lines_or_none() {
        let (a, b) = (SkuId::new("A").unwrap(), SkuId::new("B").unwrap());
        let held = |s: &SkuId| if s.as_str() == "A" { 3 } else { 1 };
        assert_eq!(
            sell_from_grants([(&a, 2), (&b, 1)], held),
            Some(vec![(&a, 1), (&b, 0)])
        );
        assert_eq!(sell_from_grants([(&a, 2), (&b, 2)], held), None);
        assert_eq!(sell_from_grants([(&a, 4)], held), None);
    }

    #[test]
    fn grant_sizing() {
        let p = GrantPolicy::default();
        // 10 units over 10 s → 30 units for 30 s.
        let d = Demand {
            units: 10,
            window_ms: 10_000,
        };
        assert_eq!(grant_size(d, 10_000, &p), 30);
        // No demand yet: the minimum.
        assert_eq!(grant_size(Demand::default(), 10_000, &p), 1);
        // Huge demand: the cap.
        let hot = Demand {
            units: 1_000_000,
            window_ms: 1_000,
        };
        assert_eq!(grant_size(hot, 1_000_000, &p), 1_000);
        // Bounded by a share of the pool, shrinking with it.
        assert_eq!(grant_size(hot, 400, &p), 100);
        assert_eq!(grant_size(hot, 40, &p), 10);
        assert_eq!(grant_size(hot, 12, &p), 2);
        // Zero at low stock.
        assert_eq!(grant_size(hot, 10, &p), 0);
        assert_eq!(grant_size(hot, 0, &p), 0);
    }
}
