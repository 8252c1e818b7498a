//! Pricing engine throughput: quotes per second on one core for a SKU with quantity breaks, a
//! member price (with its own quantity break, which wins) and a live category promotion, in a
//! book of 10,000 SKUs. The baseline is the least any
//! engine must do, one hash lookup of a precomputed price, measured in the same run.
//!
//! Run: `cargo bench -p commerce --bench pricing`

use std::collections::HashMap;
use std::hint::black_box;

use commerce::pricing::{
    Discount, PriceBook, PriceContext, PriceEntry, PriceList, Promotion, PromotionTarget, Tier,
};
use commerce::{Category, Currency, CustomerGroup, PriceListId, PromotionId, SkuId};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const SKUS: usize = 10_000;

fn book() -> (PriceBook, Vec<SkuId>) {
    let usd = Currency::from_code("USD").unwrap();
    let member = CustomerGroup::new("member").unwrap();
    let mut b = PriceBook::new();
    b.upsert_list(PriceList::implicit(usd, None));
    b.upsert_list(PriceList::implicit(usd, Some(&member)));
    let skus: Vec<SkuId> = (0..SKUS)
        .map(|i| SkuId::new(format!("SKU-{i:06}")).unwrap())
        .collect();
    for (i, s) in skus.iter().enumerate() {
        let base = 1_000 + i as i64;
        b.set_price(
            s.clone(),
            PriceEntry {
                list: PriceListId::new("base-USD").unwrap(),
                amount_minor: base,
                tiers: vec![
                    Tier {
                        min_qty: 10,
                        amount_minor: base * 9 / 10,
                    },
                    Tier {
                        min_qty: 100,
                        amount_minor: base * 8 / 10,
                    },
                ],
                version: 1,
            },
        );
        // Members pay less, with their own quantity break, so at 12 units the member tier wins.
        b.set_price(
            s.clone(),
            PriceEntry {
                list: PriceListId::new("member-USD").unwrap(),
                amount_minor: base * 95 / 100,
                tiers: vec![Tier {
                    min_qty: 10,
                    amount_minor: base * 85 / 100,
                }],
                version: 2,
            },
        );
    }
    b.upsert_promotion(Promotion {
        id: PromotionId::new("autumn-apparel").unwrap(),
        target: PromotionTarget::Category(Category::new("apparel").unwrap()),
        discount: Discount::PercentOffBps(1_500),
        customer_group: None,
        market: None,
        valid_from_ms: Some(0),
        valid_until_ms: Some(i64::MAX),
        version: 3,
    });
    (b, skus)
}

fn bench(c: &mut Criterion) {
    let (book, skus) = book();
    let usd = Currency::from_code("USD").unwrap();
    let member = CustomerGroup::new("member").unwrap();
    let category = Category::new("apparel/shirts/linen").unwrap();
    let ctx = PriceContext {
        currency: usd,
        customer_group: Some(&member),
        country: None,
        now_ms: 1_700_000_000_000,
    };
    let sku = &skus[4242];
    let q = book.quote(sku, &category, 12, &ctx).unwrap();
    // The member list's quantity break beats the public one, and the promotion applies on top.
    assert_eq!(
        q.breakdown.len(),
        3,
        "list, tier and promotion all take part: {q:?}"
    );
    assert!(
        matches!(&q.breakdown[0], commerce::pricing::PriceStep::ListPrice { list, .. } if list.as_str() == "member-USD"),
        "{q:?}"
    );

    let mut g = c.benchmark_group("pricing");
    g.throughput(Throughput::Elements(1));
    g.bench_function("quote_tier_member_promotion", |b| {
        b.iter(|| {
            book.quote(black_box(sku), &category, black_box(12), &ctx)
                .unwrap()
        })
    });
    let precomputed: HashMap<SkuId, i64> = skus.iter().map(|s| (s.clone(), 1)).collect();
    g.bench_function("baseline_hash_lookup", |b| {
        b.iter(|| *precomputed.get(black_box(sku)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
