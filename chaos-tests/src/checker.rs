//! The drill checker: a pure function of what shoppers were told (the history) and what the
//! core holds once the mesh is healed and quiet (every decided order and the inventory), which
//! reports the commerce invariants of DESIGN §2:
//!
//! - I1 lost acknowledged orders: answered 200/201 with an order id, and not committed;
//! - I3 duplicate orders: one order id, or one (customer, Idempotency-Key), committed twice;
//!   and, from the shoppers' side, one key answered with two different orders (a shopper
//!   retries a key after no answer or a 5xx, at the same edge or another);
//! - I2 oversold units: per SKU, units committed (by the inventory, or by the committed orders
//!   when they say more) plus units still granted to edges, past the units stocked (adds minus
//!   removals);
//! - I4 committed orders without the price version they were priced at, or priced otherwise
//!   than it says: a line's list price (`base-USD`, where the drill's admins set prices) must
//!   be the one the last of the drill's price changes to its SKU at or before the order's
//!   price version set.

use std::collections::{BTreeMap, BTreeSet};

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Line {
    pub sku: String,
    pub qty: u32,
}

/// One line of a drill's history (JSON lines): what was sent, and what the sender was told.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An order sent to an edge.
    Order {
        at_ms: u64,
        edge: String,
        customer: String,
        key: String,
        lines: Vec<Line>,
    },
    /// The edge's answer to it: the HTTP status, the order id when there was one, the problem
    /// type when there was one (0 and `None`s when no answer came).
    OrderAnswer {
        at_ms: u64,
        customer: String,
        key: String,
        status: u16,
        order_id: Option<String>,
        problem: Option<String>,
    },
    /// A shopper's read at an edge (a product page or a quote), answered with `status` (0: no
    /// answer) after `took_ms`.
    Browse {
        at_ms: u64,
        edge: String,
        status: u16,
        took_ms: u64,
    },
    /// An admin's write (a price or stock change) at the core `core`; `status` 0 when no core
    /// answered; the version it committed at, and for a price change what it set.
    Admin {
        at_ms: u64,
        core: String,
        what: String,
        status: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        price: Option<PriceSet>,
    },
    /// The drill's write probe, started at `at_ms`: whether it committed, and when it finished.
    Probe {
        at_ms: u64,
        took_ms: u64,
        ok: bool,
    },
    /// What the mesh said about itself: the leader as a core that is not down sees it, the
    /// members the leader reports a second or more behind, the largest lag of a member no fault
    /// of the drill took down, and the edges that report no core.
    Observe {
        at_ms: u64,
        leader: Option<String>,
        lagging: Vec<String>,
        max_lag_ms: Option<u64>,
        edges_disconnected: Vec<String>,
    },
    /// A fault injected, and its heal.
    Fault {
        at_ms: u64,
        what: String,
    },
    Heal {
        at_ms: u64,
    },
}

/// A list price an admin set: `amount_minor` for `sku` in `base-USD`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PriceSet {
    pub sku: String,
    pub amount_minor: i64,
}

/// The list the drill's admins set prices in, and its shoppers are priced from.
pub const BASE_LIST: &str = "base-USD";

/// An order as the core holds it once the mesh is quiet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct FinalOrder {
    pub order_id: String,
    /// `committed` or `rejected`.
    pub status: String,
    pub customer_id: String,
    pub idempotency_key: Option<String>,
    pub lines: Vec<Line>,
    pub price_version: Option<u64>,
    /// Per SKU, the unit list price its line was priced at, when from `BASE_LIST`.
    #[serde(default)]
    pub base_prices: BTreeMap<String, i64>,
}

/// A SKU's inventory at the core once the mesh is quiet.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct FinalInventory {
    pub sku: String,
    /// Units ever made sellable: adds minus removals (the inventory's `stocked`).
    pub stocked: u64,
    pub committed: u64,
    /// Units still in edges' grants (the sum of the inventory's `granted`).
    pub granted: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FinalState {
    pub orders: Vec<FinalOrder>,
    pub inventory: Vec<FinalInventory>,
}

/// What the checker found; `ok()` when nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Violations {
    pub lost_acked_orders: Vec<String>,
    pub duplicate_orders: Vec<String>,
    /// Keys (`customer key`) that shoppers were told placed two different orders.
    pub keys_with_two_orders: Vec<String>,
    /// SKU → units sold or granted past the stock.
    pub oversold: BTreeMap<String, u64>,
    pub oversold_units: u64,
    pub orders_without_price_version: Vec<String>,
    /// Orders whose list price is not the one in force at their price version.
    pub orders_priced_off_their_version: Vec<String>,
    /// Orders whose price could be checked against a price change of the drill (not a
    /// violation: how much the check above saw).
    pub orders_checked_against_a_price_change: u64,
}

impl Violations {
    pub fn ok(&self) -> bool {
        self.lost_acked_orders.is_empty()
            && self.duplicate_orders.is_empty()
            && self.keys_with_two_orders.is_empty()
            && self.oversold_units == 0
            && self.orders_without_price_version.is_empty()
            && self.orders_priced_off_their_version.is_empty()
    }
}

pub fn check(history: &[Event], state: &FinalState) -> Violations {
    let committed: Vec<&FinalOrder> = state
        .orders
        .iter()
        .filter(|o| o.status == "committed")
        .collect();
    let mut v = Violations::default();

    // I1: every order a shopper was told is placed is committed.
    let ids: BTreeSet<&str> = committed.iter().map(|o| o.order_id.as_str()).collect();
    let mut lost = BTreeSet::new();
    for e in history {
        if let Event::OrderAnswer {
            status: 200 | 201,
            order_id: Some(id),
            ..
        } = e
            && !ids.contains(id.as_str())
        {
            lost.insert(id.clone());
        }
    }
    v.lost_acked_orders = lost.into_iter().collect();

    // I3: one order id, one (customer, key), commits once.
    let mut by_id: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_key: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for o in &committed {
        *by_id.entry(&o.order_id).or_default() += 1;
        if let Some(k) = &o.idempotency_key {
            by_key
                .entry((&o.customer_id, k))
                .or_default()
                .push(&o.order_id);
        }
    }
    let mut dup: BTreeSet<String> = by_id
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id.to_owned())
        .collect();
    for ids in by_key.into_values().filter(|ids| ids.len() > 1) {
        dup.extend(ids.into_iter().map(str::to_owned));
    }
    v.duplicate_orders = dup.into_iter().collect();
    let mut told: BTreeMap<(&str, &str), BTreeSet<&str>> = BTreeMap::new();
    for e in history {
        if let Event::OrderAnswer {
            customer,
            key,
            status: 200 | 201,
            order_id: Some(id),
            ..
        } = e
        {
            told.entry((customer, key)).or_default().insert(id);
        }
    }
    v.keys_with_two_orders = told
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|((c, k), _)| format!("{c} {k}"))
        .collect();

    // I2: committed (by the inventory or by the orders, whichever says more) plus granted, at
    // most stocked.
    let mut sold: BTreeMap<&str, u64> = BTreeMap::new();
    for o in &committed {
        for l in &o.lines {
            *sold.entry(&l.sku).or_default() += u64::from(l.qty);
        }
    }
    for i in &state.inventory {
        let committed = i
            .committed
            .max(sold.get(i.sku.as_str()).copied().unwrap_or(0));
        let over = (committed + i.granted).saturating_sub(i.stocked);
        if over > 0 {
            v.oversold.insert(i.sku.clone(), over);
            v.oversold_units += over;
        }
    }

    // I4: every committed order knows its price version.
    v.orders_without_price_version = committed
        .iter()
        .filter(|o| o.price_version.is_none_or(|p| p == 0))
        .map(|o| o.order_id.clone())
        .collect();
    // I4 against the price changes themselves: per SKU, the drill's price changes by the
    // version they committed at.
    // A SKU with a change whose outcome nobody heard (no core answered, or with an error)
    // is not checked: that change may have committed, at a version no one knows.
    let mut changes: BTreeMap<&str, BTreeMap<u64, i64>> = BTreeMap::new();
    let mut unknown: BTreeSet<&str> = BTreeSet::new();
    for e in history {
        match e {
            Event::Admin {
                status: 200..=299,
                version: Some(at),
                price: Some(p),
                ..
            } => {
                changes
                    .entry(&p.sku)
                    .or_default()
                    .insert(*at, p.amount_minor);
            }
            Event::Admin { price: Some(p), .. } => {
                unknown.insert(&p.sku);
            }
            _ => {}
        }
    }
    for sku in unknown {
        changes.remove(sku);
    }
    let mut off = BTreeSet::new();
    for o in &committed {
        let Some(at) = o.price_version else { continue };
        let mut checked = false;
        for (sku, unit) in &o.base_prices {
            let in_force = changes
                .get(sku.as_str())
                .and_then(|c| c.range(..=at).next_back());
            if let Some((_, amount)) = in_force {
                checked = true;
                if amount != unit {
                    off.insert(o.order_id.clone());
                }
            }
        }
        v.orders_checked_against_a_price_change += u64::from(checked);
    }
    v.orders_priced_off_their_version = off.into_iter().collect();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, qty: u32) -> Line {
        Line {
            sku: sku.into(),
            qty,
        }
    }

    fn acked(key: &str, id: &str) -> [Event; 2] {
        [
            Event::Order {
                at_ms: 1,
                edge: "e".into(),
                customer: "c".into(),
                key: key.into(),
                lines: vec![line("S", 1)],
            },
            Event::OrderAnswer {
                at_ms: 2,
                customer: "c".into(),
                key: key.into(),
                status: 201,
                order_id: Some(id.into()),
                problem: None,
            },
        ]
    }

    fn order(id: &str, key: &str, status: &str) -> FinalOrder {
        FinalOrder {
            order_id: id.into(),
            status: status.into(),
            customer_id: "c".into(),
            idempotency_key: Some(key.into()),
            lines: vec![line("S", 1)],
            price_version: Some(7),
            base_prices: BTreeMap::new(),
        }
    }

    fn stock(stocked: u64, committed: u64, granted: u64) -> Vec<FinalInventory> {
        vec![FinalInventory {
            sku: "S".into(),
            stocked,
            committed,
            granted,
        }]
    }

    #[test]
    fn a_clean_history_has_no_violation_and_refusals_are_not_losses() {
        let mut h: Vec<Event> = [acked("k1", "o1"), acked("k2", "o2")].concat();
        h.push(Event::OrderAnswer {
            at_ms: 3,
            customer: "c".into(),
            key: "k3".into(),
            status: 409,
            order_id: None,
            problem: Some("out-of-stock".into()),
        });
        let state = FinalState {
            orders: vec![
                order("o1", "k1", "committed"),
                order("o2", "k2", "committed"),
            ],
            inventory: stock(5, 2, 3),
        };
        let v = check(&h, &state);
        assert!(v.ok(), "{v:?}");
    }

    #[test]
    fn an_acknowledged_order_missing_or_rejected_is_lost() {
        let h: Vec<Event> = [acked("k1", "o1"), acked("k2", "o2"), acked("k3", "o3")].concat();
        let state = FinalState {
            orders: vec![
                order("o1", "k1", "committed"),
                order("o2", "k2", "rejected"),
            ],
            inventory: stock(5, 1, 0),
        };
        let v = check(&h, &state);
        assert_eq!(v.lost_acked_orders, ["o2", "o3"]);
        assert!(!v.ok());
    }

    #[test]
    fn an_order_priced_otherwise_than_its_price_version_says_is_a_violation() {
        let change = |at: u64, amount: i64| Event::Admin {
            at_ms: at,
            core: "a".into(),
            what: format!("price S USD {amount}"),
            status: 200,
            version: Some(at),
            price: Some(PriceSet {
                sku: "S".into(),
                amount_minor: amount,
            }),
        };
        let mut lost = change(7, 5_000);
        if let Event::Admin {
            status, version, ..
        } = &mut lost
        {
            (*status, *version) = (0, None);
        }
        let h = [change(5, 1_000), change(9, 2_000)];
        // A change nobody heard the outcome of: its SKU is not checked at all.
        let unheard = check(
            &[change(5, 1_000), lost],
            &FinalState {
                orders: vec![FinalOrder {
                    price_version: Some(8),
                    base_prices: [("S".to_owned(), 5_000)].into(),
                    ..order("o9", "o9", "committed")
                }],
                inventory: vec![],
            },
        );
        assert!(unheard.ok(), "{unheard:?}");
        assert_eq!(unheard.orders_checked_against_a_price_change, 0);
        let priced = |id: &str, version: u64, unit: i64| FinalOrder {
            price_version: Some(version),
            base_prices: [("S".to_owned(), unit)].into(),
            ..order(id, id, "committed")
        };
        let state = FinalState {
            orders: vec![
                // Before any change of the drill: not checked.
                priced("o1", 3, 777),
                // At or after a change, its price.
                priced("o2", 5, 1_000),
                priced("o3", 8, 1_000),
                priced("o4", 9, 2_000),
                // Says version 9, priced as at 5: I4 broken.
                priced("o5", 9, 1_000),
            ],
            inventory: vec![],
        };
        let v = check(&h, &state);
        assert_eq!(v.orders_priced_off_their_version, ["o5"]);
        assert_eq!(v.orders_checked_against_a_price_change, 4);
        assert!(!v.ok());
    }

    #[test]
    fn a_key_retried_and_told_another_order_is_a_violation() {
        let answer = |id: &str| Event::OrderAnswer {
            at_ms: 2,
            customer: "c".into(),
            key: "k1".into(),
            status: 201,
            order_id: Some(id.into()),
            problem: None,
        };
        let lost = Event::OrderAnswer {
            at_ms: 1,
            customer: "c".into(),
            key: "k1".into(),
            status: 0,
            order_id: None,
            problem: None,
        };
        let state = FinalState {
            orders: vec![order("o1", "k1", "committed")],
            inventory: vec![],
        };
        // No answer, then the retry's 201: one order, as it should be.
        let v = check(&[lost.clone(), answer("o1")], &state);
        assert!(v.ok(), "{v:?}");
        // Two 201s naming two orders for one key: a shopper charged twice, as they see it.
        let v = check(&[answer("o1"), lost, answer("o2")], &state);
        assert_eq!(v.keys_with_two_orders, ["c k1"]);
        assert!(!v.ok());
    }

    #[test]
    fn one_key_or_one_id_committed_twice_is_a_duplicate() {
        let h: Vec<Event> = acked("k1", "o1").to_vec();
        let state = FinalState {
            orders: vec![
                order("o1", "k1", "committed"),
                order("o1b", "k1", "committed"),
                order("o9", "k9", "committed"),
                order("o9", "k9", "committed"),
            ],
            inventory: stock(10, 4, 0),
        };
        let v = check(&h, &state);
        assert_eq!(v.duplicate_orders, ["o1", "o1b", "o9"]);
    }

    #[test]
    fn units_sold_or_granted_past_the_stock_are_oversold() {
        // The inventory says 3 committed and 2 granted of 4 stocked: one oversold.
        let state = FinalState {
            orders: vec![],
            inventory: stock(4, 3, 2),
        };
        let v = check(&[], &state);
        assert_eq!((v.oversold_units, v.oversold.get("S")), (1, Some(&1)));
        // The orders say more than the inventory does: they count.
        let state = FinalState {
            orders: (0..6)
                .map(|i| order(&format!("o{i}"), &format!("k{i}"), "committed"))
                .collect(),
            inventory: stock(4, 3, 0),
        };
        assert_eq!(check(&[], &state).oversold_units, 2);
    }

    #[test]
    fn a_committed_order_without_its_price_version_is_reported() {
        let mut o = order("o1", "k1", "committed");
        o.price_version = None;
        let mut zero = order("o2", "k2", "committed");
        zero.price_version = Some(0);
        let state = FinalState {
            orders: vec![o, zero],
            inventory: stock(5, 2, 0),
        };
        assert_eq!(
            check(&[], &state).orders_without_price_version,
            ["o1", "o2"]
        );
    }

    #[test]
    fn history_lines_are_json_with_an_event_tag() {
        let e = &acked("k1", "o1")[1];
        let line = serde_json::to_string(e).unwrap();
        assert!(line.starts_with(r#"{"event":"order_answer""#), "{line}");
        assert_eq!(&serde_json::from_str::<Event>(&line).unwrap(), e);
    }
}
