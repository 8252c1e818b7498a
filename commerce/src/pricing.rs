//! Price lists, tiers, promotions and the pricing engine.
//!
//! # Precedence (what a shopper pays, in this order; nothing else stacks)
//!
//! 1. **List price.** Every price list that *applies* is considered: same currency; no customer
//!    group or the shopper's group (member, wholesale, ...); no market or a market holding the
//!    destination country; `valid_from_ms <= now < valid_until_ms`. For each such list that prices
//!    the SKU, its unit price at the requested quantity is its **tier** (the quantity break with
//!    the largest `min_qty <= qty`) or else its base amount. The **lowest** of these wins, so a
//!    member or wholesale price never makes a shopper pay more than the public one. Ties go to the
//!    more specific list (group before none, then market before none), then the smaller list id.
//! 2. **One line promotion.** Of the promotions that apply to the line (same rules for group,
//!    market and window; targeting the SKU or its category or any ancestor category; an amount-off
//!    in the line's currency), the single one that takes most off the unit price is applied, never
//!    below zero. Ties go to a SKU target before a category target, then the smaller id.
//!    Promotions never stack with each other.
//! 3. **One order discount.** After the lines are summed, of the order-level (spend X, get Y off)
//!    promotions whose threshold the subtotal meets, the single largest is applied, never below
//!    zero.
//!
//! Percentages are in basis points and round half-to-even to the minor unit, per unit, so
//! `unit_price × qty == total` always holds exactly.
//!
//! When no destination country is known (a shopper browsing), lists and promotions limited to a
//! market do not apply; an order always has a country, so the order price is the binding one.
//!
//! `price_version` is the largest store version among the inputs a quote used (the winning list
//! entry and the applied promotion): the order records it (invariant I4), and it names exactly
//! which writes produced the price.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{Category, QTY_MAX};
use crate::id::{CustomerGroup, MarketId, PriceListId, PromotionId, SkuId};
use crate::market::{Country, Market};
use crate::money::{Currency, Money, Rounding, UNIT_AMOUNT_MAX_MINOR, mul_div};
use crate::refusal::Rejection;

/// Quantity breaks one price may carry.
pub const TIERS_MAX: usize = 16;
/// 100 % in basis points.
pub const BPS_FULL: u32 = 10_000;

/// A price list: prices in one currency, optionally only for one customer group, one market and
/// one validity window.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceList {
    pub id: PriceListId,
    pub currency: Currency,
    #[serde(default)]
    pub customer_group: Option<CustomerGroup>,
    #[serde(default)]
    pub market: Option<MarketId>,
    /// Unix milliseconds from which the list applies (inclusive).
    #[serde(default)]
    pub valid_from_ms: Option<i64>,
    /// Unix milliseconds until which the list applies (exclusive).
    #[serde(default)]
    pub valid_until_ms: Option<i64>,
}

impl PriceList {
    /// The list a price change lands in when it names none: `base-USD`, or `member-USD` for the
    /// group `member`. Such lists have no market and no window.
    pub fn implicit(currency: Currency, group: Option<&CustomerGroup>) -> PriceList {
        let prefix = group.map_or("base", |g| g.as_str());
        // A group id is at most 64 bytes of the id alphabet; "-XXX" keeps it within 68, which we
        // trim back to the id bound by keeping the currency suffix intact.
        let mut id = format!("{}-{}", prefix, currency.code());
        if id.len() > crate::id::ID_MAX_BYTES {
            id = format!(
                "{}-{}",
                &prefix[..crate::id::ID_MAX_BYTES - 4],
                currency.code()
            );
        }
        PriceList {
            id: PriceListId::new(id).expect("group ids and currency codes are id characters"),
            currency,
            customer_group: group.cloned(),
            market: None,
            valid_from_ms: None,
            valid_until_ms: None,
        }
    }

    pub fn validate(&self) -> Result<(), Rejection> {
        check_window(self.valid_from_ms, self.valid_until_ms)
            .map_err(|e| Rejection::invalid(format!("price list {}: {e}", self.id)))
    }
}

fn check_window(from: Option<i64>, until: Option<i64>) -> Result<(), String> {
    match (from, until) {
        (Some(f), Some(u)) if f >= u => Err("valid_from_ms must be before valid_until_ms".into()),
        _ => Ok(()),
    }
}

fn in_window(from: Option<i64>, until: Option<i64>, now_ms: i64) -> bool {
    from.is_none_or(|f| f <= now_ms) && until.is_none_or(|u| now_ms < u)
}

/// A quantity break: from `min_qty` units on, each unit costs `amount_minor`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub min_qty: u32,
    pub amount_minor: i64,
}

/// One SKU's price in one list.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct PriceEntry {
    pub list: PriceListId,
    /// Unit price for any quantity below the first tier.
    pub amount_minor: i64,
    /// Quantity breaks, `min_qty` strictly increasing, amounts never rising.
    pub tiers: Vec<Tier>,
    /// Store version that wrote this entry.
    pub version: u64,
}

/// Checks a unit amount given from outside: positive and not absurd.
pub fn check_unit_amount(amount_minor: i64) -> Result<(), Rejection> {
    if !(1..=UNIT_AMOUNT_MAX_MINOR).contains(&amount_minor) {
        return Err(Rejection::invalid(format!(
            "amount_minor must be between 1 and {UNIT_AMOUNT_MAX_MINOR}, got {amount_minor}"
        )));
    }
    Ok(())
}

impl PriceEntry {
    /// Checks the amount and the tiers: quantity breaks must rise strictly in quantity and never
    /// rise in price, so buying more never costs more per unit.
    pub fn validate(&self) -> Result<(), Rejection> {
        check_unit_amount(self.amount_minor)?;
        if self.tiers.len() > TIERS_MAX {
            return Err(Rejection::invalid(format!("at most {TIERS_MAX} tiers")));
        }
        let mut prev = Tier {
            min_qty: 1,
            amount_minor: self.amount_minor,
        };
        for t in &self.tiers {
            check_unit_amount(t.amount_minor)?;
            if t.min_qty <= prev.min_qty || t.min_qty > QTY_MAX {
                return Err(Rejection::invalid(format!(
                    "tier min_qty must rise strictly from 2 up to {QTY_MAX} (got {} after {})",
                    t.min_qty, prev.min_qty
                )));
            }
            if t.amount_minor > prev.amount_minor {
                return Err(Rejection::invalid(format!(
                    "tier prices must not rise with quantity ({} at {} after {} at {})",
                    t.amount_minor, t.min_qty, prev.amount_minor, prev.min_qty
                )));
            }
            prev = *t;
        }
        Ok(())
    }

    /// The unit price at `qty` and the tier that set it, if any.
    pub fn unit_at(&self, qty: u32) -> (i64, Option<&Tier>) {
        match self.tiers.iter().rev().find(|t| t.min_qty <= qty) {
            Some(t) => (t.amount_minor, Some(t)),
            None => (self.amount_minor, None),
        }
    }
}

/// What a promotion takes off.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Discount {
    /// A share of the price in basis points (1500 = 15 %).
    PercentOffBps(u32),
    /// A fixed amount; applies only to prices in its currency.
    AmountOff(Money),
}

impl Discount {
    /// How much this takes off `amount` of `currency`; `None` if it does not apply to that
    /// currency. Never more than `amount`.
    fn off(&self, amount: i64, currency: Currency) -> Option<i64> {
        match self {
            Discount::PercentOffBps(bps) => mul_div(
                amount,
                i64::from(*bps),
                i64::from(BPS_FULL),
                Rounding::HalfEven,
            )
            .map(|off| off.clamp(0, amount)),
            Discount::AmountOff(m) if m.currency == currency => Some(m.amount_minor.min(amount)),
            Discount::AmountOff(_) => None,
        }
    }
}

/// What a promotion applies to.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PromotionTarget {
    /// One SKU's unit price.
    Sku(SkuId),
    /// The unit price of every SKU whose product lies in this category or under it.
    Category(Category),
    /// The order subtotal, once it reaches `min_subtotal` (spend X, get Y off).
    Order { min_subtotal: Money },
}

/// A time-boxed discount.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Promotion {
    pub id: PromotionId,
    pub target: PromotionTarget,
    pub discount: Discount,
    #[serde(default)]
    pub customer_group: Option<CustomerGroup>,
    #[serde(default)]
    pub market: Option<MarketId>,
    #[serde(default)]
    pub valid_from_ms: Option<i64>,
    #[serde(default)]
    pub valid_until_ms: Option<i64>,
    /// Store version that wrote this promotion (set by the state machine; ignored on input).
    #[serde(default)]
    pub version: u64,
}

impl Promotion {
    pub fn validate(&self) -> Result<(), Rejection> {
        let bad = |why: String| Err(Rejection::invalid(format!("promotion {}: {why}", self.id)));
        match self.discount {
            Discount::PercentOffBps(bps) if bps == 0 || bps > BPS_FULL => {
                return bad(format!("percent_off_bps must be 1 to {BPS_FULL}"));
            }
            Discount::AmountOff(m) => {
                if let Err(e) = check_unit_amount(m.amount_minor) {
                    return bad(e.detail);
                }
            }
            Discount::PercentOffBps(_) => {}
        }
        if let PromotionTarget::Order { min_subtotal } = &self.target {
            if !(0..=UNIT_AMOUNT_MAX_MINOR).contains(&min_subtotal.amount_minor) {
                return bad(format!(
                    "min_subtotal must be between 0 and {UNIT_AMOUNT_MAX_MINOR}"
                ));
            }
            if let Discount::AmountOff(m) = self.discount
                && m.currency != min_subtotal.currency
            {
                return bad("amount_off and min_subtotal must share a currency".into());
            }
        }
        check_window(self.valid_from_ms, self.valid_until_ms).or_else(bad)
    }

    fn applies(&self, ctx: &PriceContext<'_>, markets: &HashMap<MarketId, Market>) -> bool {
        in_window(self.valid_from_ms, self.valid_until_ms, ctx.now_ms)
            && group_applies(self.customer_group.as_ref(), ctx.customer_group)
            && market_applies(self.market.as_ref(), ctx.country, markets)
    }
}

fn group_applies(want: Option<&CustomerGroup>, have: Option<&CustomerGroup>) -> bool {
    want.is_none_or(|w| have == Some(w))
}

fn market_applies(
    want: Option<&MarketId>,
    country: Option<Country>,
    markets: &HashMap<MarketId, Market>,
) -> bool {
    match want {
        None => true,
        Some(m) => {
            country.is_some_and(|c| markets.get(m).is_some_and(|m| m.countries.contains(&c)))
        }
    }
}

/// Who is asking and when: everything a price depends on besides the SKU and quantity.
#[derive(Clone, Copy, Debug)]
pub struct PriceContext<'a> {
    pub currency: Currency,
    pub customer_group: Option<&'a CustomerGroup>,
    /// Destination country, when known (always for orders).
    pub country: Option<Country>,
    /// Unix milliseconds; validity windows are judged against it.
    pub now_ms: i64,
}

/// One step of how a unit price came about.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PriceStep {
    /// The winning list's base unit price.
    ListPrice { list: PriceListId, unit_minor: i64 },
    /// The quantity break that replaced it.
    Tier { min_qty: u32, unit_minor: i64 },
    /// The one line promotion applied.
    Promotion {
        promotion: PromotionId,
        unit_off_minor: i64,
    },
}

/// The price of `qty` units of one SKU.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quote {
    pub sku: SkuId,
    pub qty: u32,
    pub unit_price: Money,
    pub total: Money,
    pub breakdown: Vec<PriceStep>,
    pub price_version: u64,
}

/// What a quote asks for (the query of the APIs' quote routes).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::IntoParams),
    into_params(parameter_in = Query)
)]
pub struct QuoteRequest {
    /// Units; 1 when absent.
    pub qty: Option<u32>,
    pub currency: Currency,
    pub customer_group: Option<CustomerGroup>,
    /// The destination, for market lists.
    pub country: Option<Country>,
}

/// An order-level discount that was applied.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderDiscount {
    pub promotion: PromotionId,
    pub off: Money,
}

/// Why a price could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("sku {sku} has no price in {currency} for this customer and destination")]
    NoPrice { sku: SkuId, currency: Currency },
    #[error("quantity must be between 1 and {QTY_MAX}, got {0}")]
    BadQuantity(u32),
    #[error("amount overflow while pricing")]
    Overflow,
}

/// Every price list, price, market and promotion, indexed for quoting. The state machine keeps
/// one of these in memory at the core; edges keep one fed by the change feed.
#[derive(Clone, Debug, Default)]
pub struct PriceBook {
    lists: HashMap<PriceListId, PriceList>,
    prices: HashMap<SkuId, Vec<PriceEntry>>,
    markets: HashMap<MarketId, Market>,
    promotions: BTreeMap<PromotionId, Promotion>,
    // Indexes over `promotions`, rebuilt for the one promotion that changes.
    sku_promotions: HashMap<SkuId, Vec<Promotion>>,
    category_promotions: HashMap<String, Vec<Promotion>>,
    order_promotions: Vec<Promotion>,
}

impl PriceBook {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn list(&self, id: &PriceListId) -> Option<&PriceList> {
        self.lists.get(id)
    }

    pub fn lists(&self) -> impl Iterator<Item = &PriceList> {
        self.lists.values()
    }

    pub fn upsert_list(&mut self, list: PriceList) {
        self.lists.insert(list.id.clone(), list);
    }

    pub fn market(&self, id: &MarketId) -> Option<&Market> {
        self.markets.get(id)
    }

    pub fn markets(&self) -> impl Iterator<Item = &Market> {
        self.markets.values()
    }

    pub fn upsert_market(&mut self, market: Market) {
        self.markets.insert(market.id.clone(), market);
    }

    /// Whether some market ships to `country` and sells there in `currency`.
    pub fn sells(&self, country: Country, currency: Currency) -> bool {
        self.markets.values().any(|m| m.sells(country, currency))
    }

    /// Every list entry of one SKU.
    pub fn prices(&self, sku: &SkuId) -> &[PriceEntry] {
        self.prices.get(sku).map_or(&[], Vec::as_slice)
    }

    /// Number of SKUs that have at least one price.
    pub fn priced_skus(&self) -> usize {
        self.prices.len()
    }

    /// Sets a SKU's price in one list, replacing what that list held for it. Entries stay
    /// ordered by list id, so the book is the same however it was built (live or reloaded).
    pub fn set_price(&mut self, sku: SkuId, entry: PriceEntry) {
        let entries = self.prices.entry(sku).or_default();
        match entries.binary_search_by(|e| e.list.cmp(&entry.list)) {
            Ok(i) => entries[i] = entry,
            Err(i) => entries.insert(i, entry),
        }
    }

    pub fn promotion(&self, id: &PromotionId) -> Option<&Promotion> {
        self.promotions.get(id)
    }

    pub fn promotions(&self) -> impl Iterator<Item = &Promotion> {
        self.promotions.values()
    }

    pub fn upsert_promotion(&mut self, promotion: Promotion) {
        self.remove_promotion(&promotion.id);
        self.index_mut(&promotion.target).push(promotion.clone());
        self.promotions.insert(promotion.id.clone(), promotion);
    }

    pub fn remove_promotion(&mut self, id: &PromotionId) -> Option<Promotion> {
        let old = self.promotions.remove(id)?;
        self.index_mut(&old.target).retain(|p| &p.id != id);
        Some(old)
    }

    fn index_mut(&mut self, target: &PromotionTarget) -> &mut Vec<Promotion> {
        match target {
            PromotionTarget::Sku(s) => self.sku_promotions.entry(s.clone()).or_default(),
            PromotionTarget::Category(c) => self
                .category_promotions
                .entry(c.as_str().to_owned())
                .or_default(),
            PromotionTarget::Order { .. } => &mut self.order_promotions,
        }
    }

    fn list_applies(&self, list: &PriceList, ctx: &PriceContext<'_>) -> bool {
        list.currency == ctx.currency
            && in_window(list.valid_from_ms, list.valid_until_ms, ctx.now_ms)
            && group_applies(list.customer_group.as_ref(), ctx.customer_group)
            && market_applies(list.market.as_ref(), ctx.country, &self.markets)
    }

    /// Prices `qty` units of `sku` (whose product is in `category`) for `ctx`, following the
    /// precedence in the module docs.
    pub fn quote(
        &self,
        sku: &SkuId,
        category: &Category,
        qty: u32,
        ctx: &PriceContext<'_>,
    ) -> Result<Quote, PricingError> {
        if qty == 0 || qty > QTY_MAX {
            return Err(PricingError::BadQuantity(qty));
        }
        let no_price = || PricingError::NoPrice {
            sku: sku.clone(),
            currency: ctx.currency,
        };

        // 1. The lowest applicable list price at this quantity.
        struct Candidate<'e> {
            unit: i64,
            /// Sorts "more specific" first: (no group, no market) is least specific.
            generic: (bool, bool),
            entry: &'e PriceEntry,
            tier: Option<&'e Tier>,
        }
        let mut best: Option<Candidate<'_>> = None;
        for entry in self.prices(sku) {
            let Some(list) = self.lists.get(&entry.list) else {
                continue;
            };
            if !self.list_applies(list, ctx) {
                continue;
            }
            let (unit, tier) = entry.unit_at(qty);
            let generic = (list.customer_group.is_none(), list.market.is_none());
            let better = best
                .as_ref()
                .is_none_or(|b| (unit, generic, &entry.list) < (b.unit, b.generic, &b.entry.list));
            if better {
                best = Some(Candidate {
                    unit,
                    generic,
                    entry,
                    tier,
                });
            }
        }
        let Candidate {
            unit: list_unit,
            entry,
            tier,
            ..
        } = best.ok_or_else(no_price)?;

        // 2. The one line promotion that takes most off.
        let mut promo: Option<(i64, bool, &Promotion)> = None;
        let sku_promos = self.sku_promotions.get(sku).into_iter().flatten();
        let category_promos = category
            .self_and_ancestors()
            .filter_map(|c| self.category_promotions.get(c))
            .flatten();
        for p in sku_promos.chain(category_promos) {
            if !p.applies(ctx, &self.markets) {
                continue;
            }
            let Some(off) = p.discount.off(list_unit, ctx.currency) else {
                continue;
            };
            if off <= 0 {
                continue;
            }
            let by_category = matches!(p.target, PromotionTarget::Category(_));
            let better = match &promo {
                None => true,
                // More off first, then SKU targets, then the smaller id.
                Some((o, c, q)) => (-off, by_category, &p.id) < (-*o, *c, &q.id),
            };
            if better {
                promo = Some((off, by_category, p));
            }
        }

        let unit_off = promo.map_or(0, |(off, _, _)| off);
        let unit = Money::new(list_unit - unit_off, ctx.currency);
        let total = unit.checked_mul(qty).map_err(|_| PricingError::Overflow)?;

        let mut breakdown = Vec::with_capacity(3);
        breakdown.push(PriceStep::ListPrice {
            list: entry.list.clone(),
            unit_minor: entry.amount_minor,
        });
        if let Some(t) = tier {
            breakdown.push(PriceStep::Tier {
                min_qty: t.min_qty,
                unit_minor: t.amount_minor,
            });
        }
        let mut price_version = entry.version;
        if let Some((off, _, p)) = promo {
            breakdown.push(PriceStep::Promotion {
                promotion: p.id.clone(),
                unit_off_minor: off,
            });
            price_version = price_version.max(p.version);
        }
        Ok(Quote {
            sku: sku.clone(),
            qty,
            unit_price: unit,
            total,
            breakdown,
            price_version,
        })
    }

    /// The single largest order-level discount for a subtotal, with its version.
    pub fn order_discount(
        &self,
        subtotal: Money,
        ctx: &PriceContext<'_>,
    ) -> Option<(OrderDiscount, u64)> {
        let mut best: Option<(i64, &Promotion)> = None;
        for p in &self.order_promotions {
            let PromotionTarget::Order { min_subtotal } = &p.target else {
                continue;
            };
            if min_subtotal.currency != subtotal.currency
                || subtotal.amount_minor < min_subtotal.amount_minor
                || !p.applies(ctx, &self.markets)
            {
                continue;
            }
            let Some(off) = p.discount.off(subtotal.amount_minor, subtotal.currency) else {
                continue;
            };
            if off > 0 && best.is_none_or(|(o, q)| (-off, &p.id) < (-o, &q.id)) {
                best = Some((off, p));
            }
        }
        best.map(|(off, p)| {
            (
                OrderDiscount {
                    promotion: p.id.clone(),
                    off: Money::new(off, subtotal.currency),
                },
                p.version,
            )
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn c(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    pub fn sku(s: &str) -> SkuId {
        SkuId::new(s).unwrap()
    }

    pub fn ctx(currency: &str) -> PriceContext<'static> {
        PriceContext {
            currency: c(currency),
            customer_group: None,
            country: None,
            now_ms: 1_000,
        }
    }

    /// A book with one SKU priced in USD: 1000 base, tiers at 10 (900) and 100 (800); a member
    /// list at 950.
    pub fn book() -> PriceBook {
        let mut b = PriceBook::new();
        let usd = c("USD");
        let member = CustomerGroup::new("member").unwrap();
        b.upsert_list(PriceList::implicit(usd, None));
        b.upsert_list(PriceList::implicit(usd, Some(&member)));
        b.set_price(
            sku("S"),
            PriceEntry {
                list: PriceListId::new("base-USD").unwrap(),
                amount_minor: 1000,
                tiers: vec![
                    Tier {
                        min_qty: 10,
                        amount_minor: 900,
                    },
                    Tier {
                        min_qty: 100,
                        amount_minor: 800,
                    },
                ],
                version: 3,
            },
        );
        b.set_price(
            sku("S"),
            PriceEntry {
                list: PriceListId::new("member-USD").unwrap(),
                amount_minor: 950,
                tiers: vec![],
                version: 4,
            },
        );
        b
    }

    fn cat() -> Category {
        Category::new("apparel/shirts").unwrap()
    }

    fn promo(id: &str, target: PromotionTarget, discount: Discount) -> Promotion {
        Promotion {
            id: PromotionId::new(id).unwrap(),
            target,
            discount,
            customer_group: None,
            market: None,
            valid_from_ms: None,
            valid_until_ms: None,
            version: 7,
        }
    }

    #[test]
    fn base_price_and_tiers() {
        let b = book();
        let q = b.quote(&sku("S"), &cat(), 1, &ctx("USD")).unwrap();
        assert_eq!(q.unit_price.amount_minor, 1000);
        assert_eq!(q.total.amount_minor, 1000);
        assert_eq!(q.price_version, 3);
        let q = b.quote(&sku("S"), &cat(), 10, &ctx("USD")).unwrap();
        assert_eq!(q.unit_price.amount_minor, 900);
        assert_eq!(q.total.amount_minor, 9000);
        assert_eq!(q.breakdown.len(), 2);
        let q = b.quote(&sku("S"), &cat(), 150, &ctx("USD")).unwrap();
        assert_eq!(q.unit_price.amount_minor, 800);
    }

    #[test]
    fn member_price_is_the_lowest_not_the_most_specific() {
        let b = book();
        let member = CustomerGroup::new("member").unwrap();
        let mut x = ctx("USD");
        x.customer_group = Some(&member);
        let q = b.quote(&sku("S"), &cat(), 1, &x).unwrap();
        assert_eq!(q.unit_price.amount_minor, 950);
        assert_eq!(q.price_version, 4);
        // At 10 units the public tier (900) beats the member price (950).
        let q = b.quote(&sku("S"), &cat(), 10, &x).unwrap();
        assert_eq!(q.unit_price.amount_minor, 900);
    }

    #[test]
    fn no_price_in_other_currency_and_bad_quantity() {
        let b = book();
        assert!(matches!(
            b.quote(&sku("S"), &cat(), 1, &ctx("EUR")),
            Err(PricingError::NoPrice { .. })
        ));
        assert_eq!(
            b.quote(&sku("S"), &cat(), 0, &ctx("USD")),
            Err(PricingError::BadQuantity(0))
        );
        assert!(b.quote(&sku("NOPE"), &cat(), 1, &ctx("USD")).is_err());
    }

    #[test]
    fn one_promotion_the_largest() {
        let mut b = book();
        b.upsert_promotion(promo(
            "cat10",
            PromotionTarget::Category(Category::new("apparel").unwrap()),
            Discount::PercentOffBps(1000),
        ));
        b.upsert_promotion(promo(
            "sku50",
            PromotionTarget::Sku(sku("S")),
            Discount::AmountOff(Money::new(50, c("USD"))),
        ));
        let q = b.quote(&sku("S"), &cat(), 1, &ctx("USD")).unwrap();
        // 10 % of 1000 = 100 beats 50 off; never both.
        assert_eq!(q.unit_price.amount_minor, 900);
        assert_eq!(q.price_version, 7);
        let promos = q
            .breakdown
            .iter()
            .filter(|s| matches!(s, PriceStep::Promotion { .. }))
            .count();
        assert_eq!(promos, 1);
        // Removing the category promotion leaves the SKU one.
        b.remove_promotion(&PromotionId::new("cat10").unwrap());
        let q = b.quote(&sku("S"), &cat(), 1, &ctx("USD")).unwrap();
        assert_eq!(q.unit_price.amount_minor, 950);
    }

    #[test]
    fn promotions_respect_window_group_currency_and_floor() {
        let mut b = book();
        let mut p = promo(
            "later",
            PromotionTarget::Sku(sku("S")),
            Discount::PercentOffBps(5000),
        );
        p.valid_from_ms = Some(2_000);
        b.upsert_promotion(p);
        let mut p = promo(
            "jpy",
            PromotionTarget::Sku(sku("S")),
            Discount::AmountOff(Money::new(5000, c("JPY"))),
        );
        p.customer_group = None;
        b.upsert_promotion(p);
        let q = b.quote(&sku("S"), &cat(), 1, &ctx("USD")).unwrap();
        assert_eq!(q.unit_price.amount_minor, 1000, "{q:?}");
        let mut later = ctx("USD");
        later.now_ms = 2_000;
        assert_eq!(
            b.quote(&sku("S"), &cat(), 1, &later)
                .unwrap()
                .unit_price
                .amount_minor,
            500
        );
        b.upsert_promotion(promo(
            "huge",
            PromotionTarget::Sku(sku("S")),
            Discount::AmountOff(Money::new(1_000_000, c("USD"))),
        ));
        let q = b.quote(&sku("S"), &cat(), 3, &ctx("USD")).unwrap();
        assert_eq!(q.unit_price.amount_minor, 0);
        assert_eq!(q.total.amount_minor, 0);
    }

    #[test]
    fn market_lists_need_a_country_in_the_market() {
        let mut b = book();
        b.upsert_market(Market {
            id: MarketId::new("sea").unwrap(),
            countries: [Country::new("SG").unwrap()].into(),
            currencies: [c("USD")].into(),
        });
        b.upsert_list(PriceList {
            id: PriceListId::new("sea-USD").unwrap(),
            currency: c("USD"),
            customer_group: None,
            market: Some(MarketId::new("sea").unwrap()),
            valid_from_ms: None,
            valid_until_ms: None,
        });
        b.set_price(
            sku("S"),
            PriceEntry {
                list: PriceListId::new("sea-USD").unwrap(),
                amount_minor: 700,
                tiers: vec![],
                version: 9,
            },
        );
        assert_eq!(
            b.quote(&sku("S"), &cat(), 1, &ctx("USD"))
                .unwrap()
                .unit_price
                .amount_minor,
            1000
        );
        let mut sg = ctx("USD");
        sg.country = Some(Country::new("SG").unwrap());
        assert_eq!(
            b.quote(&sku("S"), &cat(), 1, &sg)
                .unwrap()
                .unit_price
                .amount_minor,
            700
        );
        let mut us = ctx("USD");
        us.country = Some(Country::new("US").unwrap());
        assert_eq!(
            b.quote(&sku("S"), &cat(), 1, &us)
                .unwrap()
                .unit_price
                .amount_minor,
            1000
        );
    }

    #[test]
    fn order_threshold_discount() {
        let mut b = book();
        let usd = c("USD");
        b.upsert_promotion(promo(
            "spend100",
            PromotionTarget::Order {
                min_subtotal: Money::new(10_000, usd),
            },
            Discount::AmountOff(Money::new(1_000, usd)),
        ));
        b.upsert_promotion(promo(
            "spend100pct",
            PromotionTarget::Order {
                min_subtotal: Money::new(10_000, usd),
            },
            Discount::PercentOffBps(500),
        ));
        let x = ctx("USD");
        assert!(b.order_discount(Money::new(9_999, usd), &x).is_none());
        let (d, _) = b.order_discount(Money::new(10_000, usd), &x).unwrap();
        assert_eq!(d.off.amount_minor, 1_000); // 10.00 beats 5 % of 100.00
        let (d, _) = b.order_discount(Money::new(40_000, usd), &x).unwrap();
        assert_eq!(d.off.amount_minor, 2_000); // 5 % of 400.00 beats 10.00
        assert!(
            b.order_discount(Money::new(40_000, c("EUR")), &ctx("EUR"))
                .is_none()
        );
    }

    #[test]
    fn entry_validation() {
        let mut e = book().prices(&sku("S"))[0].clone();
        assert!(e.validate().is_ok());
        e.tiers[1].amount_minor = 950; // rises after 900
        assert!(e.validate().is_err());
        e.tiers[1].amount_minor = 800;
        e.tiers[1].min_qty = 10; // not strictly rising
        assert!(e.validate().is_err());
        e.tiers.clear();
        e.amount_minor = 0;
        assert!(e.validate().is_err());
        e.amount_minor = UNIT_AMOUNT_MAX_MINOR + 1;
        assert!(e.validate().is_err());
    }

    #[test]
    fn promotion_validation() {
        let usd = c("USD");
        assert!(
            promo(
                "a",
                PromotionTarget::Sku(sku("S")),
                Discount::PercentOffBps(0)
            )
            .validate()
            .is_err()
        );
        assert!(
            promo(
                "a",
                PromotionTarget::Sku(sku("S")),
                Discount::PercentOffBps(10_001)
            )
            .validate()
            .is_err()
        );
        assert!(
            promo(
                "a",
                PromotionTarget::Order {
                    min_subtotal: Money::new(1, usd)
                },
                Discount::AmountOff(Money::new(1, c("EUR")))
            )
            .validate()
            .is_err()
        );
        let mut p = promo(
            "a",
            PromotionTarget::Sku(sku("S")),
            Discount::PercentOffBps(10),
        );
        p.valid_from_ms = Some(5);
        p.valid_until_ms = Some(5);
        assert!(p.validate().is_err());
    }

    #[test]
    fn implicit_list_ids() {
        assert_eq!(PriceList::implicit(c("JPY"), None).id.as_str(), "base-JPY");
        let g = CustomerGroup::new("x".repeat(64)).unwrap();
        let l = PriceList::implicit(c("JPY"), Some(&g));
        assert!(l.id.as_str().ends_with("-JPY"));
        assert_eq!(l.id.as_str().len(), 64);
    }
}
