//! A sample cross-border catalog: markets from China to the Gulf, eight currencies, products
//! with colour / size / configuration variants, tiered, member, wholesale and market prices,
//! promotions of every kind and stock. Deterministic for a seed, so a demo and a test see the
//! same catalog; `tradewind catalog load-sample` sends it through the admin API.

use std::collections::BTreeMap;

use commerce::catalog::{Category, Product, Sku};
use commerce::command::{PriceChange, StockChange};
use commerce::escrow::StockOp;
use commerce::pricing::{Discount, PriceList, Promotion, PromotionTarget, Tier};
use commerce::{
    Country, Currency, CustomerGroup, Market, MarketId, Money, PriceListId, ProductId, PromotionId,
    SkuId,
};

/// Everything the sample holds, in the order it must be written.
#[derive(Debug, Clone)]
pub struct SampleCatalog {
    pub markets: Vec<Market>,
    pub price_lists: Vec<PriceList>,
    pub products: Vec<Product>,
    pub prices: Vec<PriceChange>,
    pub promotions: Vec<Promotion>,
    pub stock: Vec<StockChange>,
}

/// SplitMix64: a tiny, fixed generator, so a seed gives the same catalog in every build.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// `true` with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn cur(code: &str) -> Currency {
    Currency::from_code(code).expect("sample currencies are ISO 4217")
}

/// Prices are set in USD cents and converted at fixed sample rates: (numerator, denominator)
/// from USD cents to the currency's minor units.
const RATES: &[(&str, i64, i64)] = &[
    ("USD", 1, 1),
    ("CNY", 72, 10),
    ("HKD", 78, 10),
    ("SGD", 135, 100),
    ("JPY", 150, 100),
    ("EUR", 92, 100),
    ("GBP", 79, 100),
    ("KWD", 31, 10),
];

fn convert(usd_cents: i64, code: &str) -> i64 {
    let (_, n, d) = RATES
        .iter()
        .find(|(c, _, _)| *c == code)
        .expect("known rate");
    let minor = usd_cents * n / d;
    // Shelf prices end in 9 (or 90 yen): 1999, 2490.
    if code == "JPY" {
        (minor / 10).max(1) * 10 - 10 + 90
    } else {
        (minor / 100).max(1) * 100 - 1
    }
}

struct Kind {
    category: &'static str,
    nouns: &'static [&'static str],
    /// Variant axes: attribute name and values.
    axes: &'static [(&'static str, &'static [&'static str])],
    usd_cents: (u64, u64),
    /// Minimum order quantity (B2B goods sell by the box).
    min_qty: u32,
}

const KINDS: &[Kind] = &[
    Kind {
        category: "apparel/shirts",
        nouns: &["Linen Shirt", "Oxford Shirt", "Silk Blouse", "Cotton Tee"],
        axes: &[
            ("colour", &["white", "navy", "red"]),
            ("size", &["S", "M", "L", "XL"]),
        ],
        usd_cents: (1_500, 9_000),
        min_qty: 1,
    },
    Kind {
        category: "apparel/shoes/running",
        nouns: &["Trail Runner", "Road Racer", "Marathon Trainer"],
        axes: &[
            ("colour", &["black", "blue"]),
            ("size", &["39", "40", "41", "42", "43"]),
        ],
        usd_cents: (6_000, 18_000),
        min_qty: 1,
    },
    Kind {
        category: "electronics/phones",
        nouns: &["Smartphone", "Foldable Phone", "Rugged Phone"],
        axes: &[
            ("configuration", &["128GB", "256GB", "512GB"]),
            ("colour", &["graphite", "silver"]),
        ],
        usd_cents: (29_900, 139_900),
        min_qty: 1,
    },
    Kind {
        category: "electronics/accessories",
        nouns: &[
            "USB-C Charger",
            "Power Bank",
            "Wireless Earbuds",
            "Phone Case",
        ],
        axes: &[("colour", &["black", "white"])],
        usd_cents: (900, 12_900),
        min_qty: 1,
    },
    Kind {
        category: "home/kitchen",
        nouns: &["Rice Cooker", "Tea Kettle", "Chef Knife", "Wok"],
        axes: &[("configuration", &["standard", "deluxe"])],
        usd_cents: (1_900, 24_900),
        min_qty: 1,
    },
    Kind {
        category: "beauty/skincare",
        nouns: &["Face Serum", "Sunscreen", "Sheet Mask Set"],
        axes: &[("size", &["30ml", "50ml"])],
        usd_cents: (800, 7_900),
        min_qty: 1,
    },
    Kind {
        category: "toys/building",
        nouns: &["Building Set", "Puzzle Box"],
        axes: &[],
        usd_cents: (1_200, 15_000),
        min_qty: 1,
    },
    Kind {
        category: "industrial/fasteners",
        nouns: &["Hex Bolt M8", "Wood Screw", "Rivet Pack"],
        axes: &[("finish", &["zinc", "stainless"])],
        usd_cents: (5, 90),
        min_qty: 100,
    },
];

const ADJECTIVES: &[&str] = &[
    "Classic", "Urban", "Pro", "Lite", "Heritage", "Nordic", "Sakura", "Coastal",
];

/// The sample's promotions and launch prices run from 2026-01-01 to 2031-01-01 (UTC): fixed
/// instants, so the same seed always gives byte-identical requests.
const CAMPAIGN_FROM_MS: i64 = 1_767_225_600_000;
const CAMPAIGN_UNTIL_MS: i64 = 1_924_992_000_000;
/// A summer sale that has ended (2025-06-01 to 2025-09-01), to show that windows close.
const SUMMER_2025: (i64, i64) = (1_748_736_000_000, 1_756_684_800_000);

fn markets() -> Vec<Market> {
    let m = |id: &str, countries: &[&str], currencies: &[&str]| Market {
        id: MarketId::new(id).expect("sample id"),
        countries: countries
            .iter()
            .map(|c| Country::new(c).expect("sample country"))
            .collect(),
        currencies: currencies.iter().map(|c| cur(c)).collect(),
    };
    vec![
        m("cn", &["CN"], &["CNY"]),
        m("greater-china", &["HK", "MO", "TW"], &["HKD", "USD"]),
        m(
            "sea",
            &["SG", "MY", "TH", "ID", "VN", "PH"],
            &["SGD", "USD"],
        ),
        m("japan", &["JP"], &["JPY"]),
        m("north-america", &["US", "CA"], &["USD"]),
        m(
            "europe",
            &["DE", "FR", "NL", "IT", "ES", "IE", "GB"],
            &["EUR", "GBP"],
        ),
        m(
            "gulf",
            &["KW", "AE", "SA", "QA", "BH", "OM"],
            &["KWD", "USD"],
        ),
    ]
}

/// Generates a catalog of `products` products from `seed`.
pub fn generate(products: usize, seed: u64) -> SampleCatalog {
    let mut rng = Rng(seed);
    let member = CustomerGroup::new("member").expect("sample id");
    let wholesale = CustomerGroup::new("wholesale").expect("sample id");
    let sea_launch = PriceListId::new("sea-launch-SGD").expect("sample id");
    let price_lists = vec![PriceList {
        id: sea_launch.clone(),
        currency: cur("SGD"),
        customer_group: None,
        market: Some(MarketId::new("sea").expect("sample id")),
        valid_from_ms: Some(CAMPAIGN_FROM_MS),
        valid_until_ms: Some(CAMPAIGN_UNTIL_MS),
    }];

    let mut out_products = Vec::with_capacity(products);
    let mut prices = Vec::new();
    let mut stock = Vec::new();
    for i in 0..products {
        let kind = &KINDS[i % KINDS.len()];
        let id = ProductId::new(format!("P-{i:05}")).expect("sample id");
        let title = format!("{} {} {:04}", rng.pick(ADJECTIVES), rng.pick(kind.nouns), i);
        // Every combination of the variant axes is one SKU.
        let mut combos: Vec<Vec<(&str, &str)>> = vec![vec![]];
        for (name, values) in kind.axes {
            combos = combos
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.push((*name, *v));
                        c
                    })
                })
                .collect();
        }
        let base_usd = rng.range(kind.usd_cents.0, kind.usd_cents.1) as i64;
        let mut skus = Vec::with_capacity(combos.len());
        for combo in combos {
            let code: Vec<String> = combo.iter().map(|(_, v)| v.to_ascii_uppercase()).collect();
            let sku = SkuId::new(if code.is_empty() {
                format!("{id}-STD")
            } else {
                format!("{id}-{}", code.join("-"))
            })
            .expect("sample id");
            let attributes: BTreeMap<String, String> = combo
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            // Bigger configurations cost more.
            let usd = base_usd + base_usd * (skus.len() as i64 % 3) / 10;
            add_prices(
                &mut rng,
                &mut prices,
                &sku,
                usd,
                kind,
                &member,
                &wholesale,
                &sea_launch,
            );
            let units = match rng.range(0, 99) {
                0..=1 => 0,
                2..=4 => rng.range(3, 12),
                _ => rng.range(20, 500),
            };
            stock.push(StockChange {
                sku: sku.clone(),
                op: StockOp::Set(units * u64::from(kind.min_qty)),
            });
            skus.push(Sku {
                sku,
                attributes,
                min_order_qty: kind.min_qty,
                max_order_qty: kind.min_qty * 1_000,
            });
        }
        out_products.push(Product {
            id,
            title,
            category: Category::new(kind.category).expect("sample category"),
            skus,
        });
    }

    let first_sku = out_products
        .first()
        .map(|p| p.skus[0].sku.clone())
        .expect("at least one product");
    let promotions = promotions(&member, first_sku);
    SampleCatalog {
        markets: markets(),
        price_lists,
        products: out_products,
        prices,
        promotions,
        stock,
    }
}

#[allow(clippy::too_many_arguments)]
fn add_prices(
    rng: &mut Rng,
    prices: &mut Vec<PriceChange>,
    sku: &SkuId,
    usd: i64,
    kind: &Kind,
    member: &CustomerGroup,
    wholesale: &CustomerGroup,
    sea_launch: &PriceListId,
) {
    let change =
        |code: &str, amount: i64, group: Option<&CustomerGroup>, tiers: Vec<Tier>| PriceChange {
            sku: sku.clone(),
            currency: cur(code),
            amount_minor: amount.max(1),
            list: None,
            customer_group: group.cloned(),
            tiers,
        };
    let tiered = rng.chance(30);
    for (code, _, _) in RATES {
        let base = convert(usd, code);
        let tiers = if tiered && matches!(*code, "USD" | "CNY") {
            vec![
                Tier {
                    min_qty: kind.min_qty.max(1) * 10,
                    amount_minor: (base * 95 / 100).max(1),
                },
                Tier {
                    min_qty: kind.min_qty.max(1) * 50,
                    amount_minor: (base * 90 / 100).max(1),
                },
            ]
        } else {
            vec![]
        };
        prices.push(change(code, base, None, tiers));
    }
    if rng.chance(40) {
        for code in ["USD", "CNY", "SGD"] {
            prices.push(change(
                code,
                convert(usd, code) * 93 / 100,
                Some(member),
                vec![],
            ));
        }
    }
    if kind.min_qty > 1 {
        let base = convert(usd, "USD");
        prices.push(change(
            "USD",
            base * 85 / 100,
            Some(wholesale),
            vec![
                Tier {
                    min_qty: kind.min_qty * 10,
                    amount_minor: (base * 80 / 100).max(1),
                },
                Tier {
                    min_qty: kind.min_qty * 100,
                    amount_minor: (base * 70 / 100).max(1),
                },
            ],
        ));
    }
    if rng.chance(10) {
        let mut c = change("SGD", convert(usd, "SGD") * 88 / 100, None, vec![]);
        c.list = Some(sea_launch.clone());
        prices.push(c);
    }
}

fn promotions(member: &CustomerGroup, flash_sku: SkuId) -> Vec<Promotion> {
    let p = |id: &str, target: PromotionTarget, discount: Discount| Promotion {
        id: PromotionId::new(id).expect("sample id"),
        target,
        discount,
        customer_group: None,
        market: None,
        valid_from_ms: Some(CAMPAIGN_FROM_MS),
        valid_until_ms: Some(CAMPAIGN_UNTIL_MS),
        version: 0,
    };
    let cat = |c: &str| PromotionTarget::Category(Category::new(c).expect("sample category"));
    let money = |amount: i64, code: &str| Money::new(amount, cur(code));
    let mut member_phones = p(
        "phones-member-50",
        cat("electronics/phones"),
        Discount::AmountOff(money(5_000, "USD")),
    );
    member_phones.customer_group = Some(member.clone());
    let mut kitchen_sea = p(
        "kitchen-sea-10",
        cat("home/kitchen"),
        Discount::PercentOffBps(1_000),
    );
    kitchen_sea.market = Some(MarketId::new("sea").expect("sample id"));
    let flash = p(
        "flash-30",
        PromotionTarget::Sku(flash_sku),
        Discount::PercentOffBps(3_000),
    );
    let mut summer = p(
        "summer-2025-20",
        cat("apparel"),
        Discount::PercentOffBps(2_000),
    );
    (summer.valid_from_ms, summer.valid_until_ms) = (Some(SUMMER_2025.0), Some(SUMMER_2025.1));
    let threshold = |id: &str, min: Money, off: Discount| {
        p(id, PromotionTarget::Order { min_subtotal: min }, off)
    };
    vec![
        p(
            "autumn-apparel-15",
            cat("apparel"),
            Discount::PercentOffBps(1_500),
        ),
        member_phones,
        kitchen_sea,
        flash,
        summer,
        threshold(
            "spend-200-usd",
            money(20_000, "USD"),
            Discount::AmountOff(money(2_000, "USD")),
        ),
        threshold(
            "spend-1500-cny",
            money(150_000, "CNY"),
            Discount::AmountOff(money(15_000, "CNY")),
        ),
        threshold(
            "spend-30000-jpy",
            money(30_000, "JPY"),
            Discount::PercentOffBps(1_000),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn sample_is_large_varied_valid_and_deterministic() {
        let a = generate(1_000, 7);
        let b = generate(1_000, 7);
        assert_eq!(a.products, b.products);
        assert_eq!(a.prices, b.prices);
        assert_eq!(a.products.len(), 1_000);
        for p in &a.products {
            p.validate().unwrap();
        }
        let currencies: BTreeSet<&str> = a.prices.iter().map(|c| c.currency.code()).collect();
        assert!(currencies.len() >= 3, "{currencies:?}");
        assert!(a.prices.iter().any(|c| !c.tiers.is_empty()));
        assert!(a.prices.iter().any(|c| {
            c.customer_group
                .as_ref()
                .is_some_and(|g| g.as_str() == "member")
        }));
        assert!(a.prices.iter().any(|c| c.list.is_some()));
        for c in &a.prices {
            let entry = commerce::pricing::PriceEntry {
                list: PriceListId::new("x").unwrap(),
                amount_minor: c.amount_minor,
                tiers: c.tiers.clone(),
                version: 0,
            };
            entry
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", c.sku));
        }
        for p in &a.promotions {
            p.validate().unwrap();
        }
        assert!(
            a.promotions
                .iter()
                .any(|p| matches!(p.target, PromotionTarget::Order { .. }))
        );
        let skus: usize = a.products.iter().map(|p| p.skus.len()).sum();
        assert_eq!(a.stock.len(), skus);
        for m in &a.markets {
            m.validate().unwrap();
        }
    }
}
