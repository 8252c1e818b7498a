//! Property tests for the two rules the product stands on: escrow never oversells (invariant
//! I2) under any interleaving of grants, sales, returns and stock changes, and the pricing
//! engine never goes negative, never charges more per unit for more units, and never stacks
//! promotions beyond the documented precedence. Failing cases are shrunk and their seeds kept
//! next to this file (`properties.proptest-regressions`), so a failure replays with plain
//! `cargo test`.

use std::collections::BTreeMap;

use commerce::escrow::{Demand, GrantPolicy, Inventory, StockOp, grant_size};
use commerce::pricing::{
    Discount, PriceBook, PriceContext, PriceEntry, PriceList, PriceStep, Promotion,
    PromotionTarget, Tier,
};
use commerce::{Category, Currency, CustomerGroup, EdgeId, Money, PriceListId, PromotionId, SkuId};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Escrow

#[derive(Debug, Clone)]
enum Step {
    Stock(StockOp),
    /// An edge asks for a grant with some recent demand.
    Grant {
        edge: usize,
        demand: u64,
    },
    /// A shopper buys at an edge, from the edge's own books only.
    EdgeSale {
        edge: usize,
        qty: u64,
    },
    /// The edge's forwarder commits what it sold so far.
    Forward {
        edge: usize,
    },
    /// The edge hands back part of its unsold grant.
    Return {
        edge: usize,
        units: u64,
    },
    /// An order allocated centrally.
    Central {
        qty: u64,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..50).prop_map(|n| Step::Stock(StockOp::Set(n))),
        (0u64..50).prop_map(|n| Step::Stock(StockOp::Add(n))),
        (0u64..50).prop_map(|n| Step::Stock(StockOp::Remove(n))),
        (0usize..3, 0u64..40).prop_map(|(edge, demand)| Step::Grant { edge, demand }),
        (0usize..3, 1u64..6).prop_map(|(edge, qty)| Step::EdgeSale { edge, qty }),
        (0usize..3).prop_map(|edge| Step::Forward { edge }),
        (0usize..3, 0u64..10).prop_map(|(edge, units)| Step::Return { edge, units }),
        (1u64..6).prop_map(|qty| Step::Central { qty }),
    ]
}

/// An edge's own books: what it may still sell, and what it sold but has not committed yet.
#[derive(Default, Debug)]
struct EdgeBooks {
    grant_left: u64,
    sold_pending: u64,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn escrow_never_oversells(steps in proptest::collection::vec(step(), 1..200)) {
        let edges: Vec<EdgeId> = (0..3).map(|i| EdgeId::new(format!("e{i}")).unwrap()).collect();
        let policy = GrantPolicy { low_stock_units: 2, ..GrantPolicy::default() };
        let mut inv = Inventory::default();
        let mut books: Vec<EdgeBooks> = (0..3).map(|_| EdgeBooks::default()).collect();
        let mut sold_total = 0u64;

        for s in steps {
            let before = inv.clone();
            match s {
                Step::Stock(op) => {
                    if inv.apply_stock(op).is_err() {
                        prop_assert_eq!(&inv, &before, "a refused stock change must change nothing");
                    }
                }
                Step::Grant { edge, demand } => {
                    let size = grant_size(Demand { units: demand, window_ms: 10_000 }, inv.available(), &policy);
                    let got = inv.grant(&edges[edge], size);
                    prop_assert!(got <= size);
                    books[edge].grant_left += got;
                }
                Step::EdgeSale { edge, qty } => {
                    // The edge sells only from its own grant, never asking anyone.
                    if books[edge].grant_left >= qty {
                        books[edge].grant_left -= qty;
                        books[edge].sold_pending += qty;
                    }
                }
                Step::Forward { edge } => {
                    let n = std::mem::take(&mut books[edge].sold_pending);
                    if n > 0 {
                        let src = inv.commit_from_grant(&edges[edge], n);
                        // An honest edge's sales always fit its grant at the core.
                        prop_assert!(src.is_ok(), "acknowledged edge sale refused: {:?}", src);
                        prop_assert_eq!(src.unwrap().from_pool, 0);
                        sold_total += n;
                    }
                }
                Step::Return { edge, units } => {
                    let n = units.min(books[edge].grant_left);
                    books[edge].grant_left -= n;
                    prop_assert_eq!(inv.return_grant(&edges[edge], n), n);
                }
                Step::Central { qty } => {
                    if inv.commit_central(qty).is_ok() {
                        sold_total += qty;
                    } else {
                        prop_assert_eq!(&inv, &before);
                    }
                }
            }
            // I2 at every step.
            prop_assert!(inv.holds_i2(), "I2 broken: {:?}", inv);
            prop_assert_eq!(inv.committed, sold_total);
            // What the core believes an edge holds covers what the edge may still sell plus what
            // it sold and has not forwarded yet.
            for (i, e) in edges.iter().enumerate() {
                let at_core = inv.granted.get(e).copied().unwrap_or(0);
                prop_assert_eq!(at_core, books[i].grant_left + books[i].sold_pending);
            }
        }
    }

    #[test]
    fn grant_size_is_bounded(units in 0u64..1_000_000, window_ms in 0u64..100_000, pool in 0u64..100_000) {
        let p = GrantPolicy::default();
        let g = grant_size(Demand { units, window_ms }, pool, &p);
        prop_assert!(g <= p.max_units);
        prop_assert!(g <= pool);
        if pool <= p.low_stock_units {
            prop_assert_eq!(g, 0);
        } else {
            prop_assert!(g <= pool - p.low_stock_units);
            prop_assert!(g as u128 * 10_000 <= pool as u128 * p.max_share_bps as u128);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pricing

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn sku() -> SkuId {
    SkuId::new("S").unwrap()
}

fn category() -> Category {
    Category::new("apparel/shirts/linen").unwrap()
}

/// A valid entry: a base price and quantity breaks that never rise.
fn entry(list: &'static str) -> impl Strategy<Value = PriceEntry> {
    (
        1i64..1_000_000,
        proptest::collection::vec((2u32..1000, 0i64..1000), 0..5),
        0u64..100,
    )
        .prop_map(move |(base, raw, version)| {
            let mut tiers: Vec<Tier> = Vec::new();
            let mut qtys: Vec<u32> = raw.iter().map(|(q, _)| *q).collect();
            qtys.sort_unstable();
            qtys.dedup();
            let mut price = base;
            for (q, (_, cut)) in qtys.into_iter().zip(raw) {
                price = (price - cut).max(1);
                tiers.push(Tier {
                    min_qty: q,
                    amount_minor: price,
                });
            }
            PriceEntry {
                list: PriceListId::new(list).unwrap(),
                amount_minor: base,
                tiers,
                version,
            }
        })
}

fn discount() -> impl Strategy<Value = Discount> {
    prop_oneof![
        (1u32..=10_000).prop_map(Discount::PercentOffBps),
        (1i64..2_000_000).prop_map(|a| Discount::AmountOff(Money::new(a, usd()))),
    ]
}

fn target() -> impl Strategy<Value = PromotionTarget> {
    prop_oneof![
        Just(PromotionTarget::Sku(sku())),
        Just(PromotionTarget::Category(Category::new("apparel").unwrap())),
        Just(PromotionTarget::Category(
            Category::new("apparel/shirts").unwrap()
        )),
        Just(PromotionTarget::Category(Category::new("toys").unwrap())),
    ]
}

fn promotions() -> impl Strategy<Value = Vec<Promotion>> {
    proptest::collection::vec((target(), discount(), any::<bool>(), 0u64..100), 0..6).prop_map(
        |ps| {
            ps.into_iter()
                .enumerate()
                .map(|(i, (target, discount, members_only, version))| Promotion {
                    id: PromotionId::new(format!("p{i}")).unwrap(),
                    target,
                    discount,
                    customer_group: members_only.then(|| CustomerGroup::new("member").unwrap()),
                    market: None,
                    valid_from_ms: None,
                    valid_until_ms: None,
                    version,
                })
                .collect()
        },
    )
}

fn book_strategy() -> impl Strategy<Value = (PriceBook, Vec<Promotion>)> {
    (
        entry("base-USD"),
        proptest::option::of(entry("member-USD")),
        promotions(),
    )
        .prop_map(|(base, member, promos)| {
            let mut b = PriceBook::new();
            let g = CustomerGroup::new("member").unwrap();
            b.upsert_list(PriceList::implicit(usd(), None));
            b.upsert_list(PriceList::implicit(usd(), Some(&g)));
            b.set_price(sku(), base);
            if let Some(m) = member {
                b.set_price(sku(), m);
            }
            for p in &promos {
                b.upsert_promotion(p.clone());
            }
            (b, promos)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn prices_are_never_negative_and_tiers_are_monotone(
        (book, _) in book_strategy(),
        q1 in 1u32..2000,
        q2 in 1u32..2000,
        member in any::<bool>(),
    ) {
        let g = CustomerGroup::new("member").unwrap();
        let ctx = PriceContext { currency: usd(), customer_group: member.then_some(&g), country: None, now_ms: 0 };
        let (lo, hi) = (q1.min(q2), q1.max(q2));
        let a = book.quote(&sku(), &category(), lo, &ctx).unwrap();
        let b = book.quote(&sku(), &category(), hi, &ctx).unwrap();
        for q in [&a, &b] {
            prop_assert!(q.unit_price.amount_minor >= 0);
            prop_assert_eq!(q.unit_price.amount_minor * i64::from(q.qty), q.total.amount_minor);
        }
        prop_assert!(b.unit_price.amount_minor <= a.unit_price.amount_minor,
            "{} units cost {} each but {} units cost {} each", hi, b.unit_price, lo, a.unit_price);
    }

    #[test]
    fn promotions_never_stack((book, promos) in book_strategy(), qty in 1u32..2000, member in any::<bool>()) {
        let g = CustomerGroup::new("member").unwrap();
        let ctx = PriceContext { currency: usd(), customer_group: member.then_some(&g), country: None, now_ms: 0 };
        let q = book.quote(&sku(), &category(), qty, &ctx).unwrap();
        let applied: Vec<&PriceStep> = q.breakdown.iter().filter(|s| matches!(s, PriceStep::Promotion { .. })).collect();
        prop_assert!(applied.len() <= 1);

        // Recompute by brute force: the lowest list price at this quantity, then each applicable
        // promotion on its own; the engine's price must equal the best single one.
        let list_unit = book
            .prices(&sku())
            .iter()
            .filter(|e| e.list.as_str() == "base-USD" || member)
            .map(|e| e.unit_at(qty).0)
            .min()
            .unwrap();
        let best_single = promos
            .iter()
            .filter(|p| p.customer_group.is_none() || member)
            .filter(|p| match &p.target {
                PromotionTarget::Sku(_) => true,
                PromotionTarget::Category(c) => category().is_within(c),
                PromotionTarget::Order { .. } => false,
            })
            .map(|p| match p.discount {
                Discount::PercentOffBps(bps) => {
                    let off = commerce::money::mul_div(list_unit, i64::from(bps), 10_000, commerce::Rounding::HalfEven).unwrap();
                    list_unit - off.min(list_unit)
                }
                Discount::AmountOff(m) => list_unit - m.amount_minor.min(list_unit),
            })
            .fold(list_unit, i64::min);
        prop_assert_eq!(q.unit_price.amount_minor, best_single);
        // The version names an input that was actually used.
        let versions: BTreeMap<&str, u64> = promos.iter().map(|p| (p.id.as_str(), p.version)).collect();
        if let Some(PriceStep::Promotion { promotion, .. }) = applied.first() {
            prop_assert!(q.price_version >= versions[promotion.as_str()]);
        }
    }
}
