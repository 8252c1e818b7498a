//! Orders: what a shopper asks for (`OrderRequest`), the checks it must pass, how it is priced,
//! and the record that is stored and replicated (`Order`).

use std::collections::HashSet;

use crate::catalog::{Category, QTY_MAX, Sku, truncate};
use crate::id::{CustomerGroup, CustomerId, EdgeId, OrderId, SkuId};
use crate::market::Country;
use crate::money::{Currency, Money};
use crate::pricing::{OrderDiscount, PriceBook, PriceContext, PriceStep, PricingError};

pub use crate::personal::{Address, Personal, ShipTo};

/// Lines one order may have. A bound on the work one request can cause, generous for B2B.
pub const ORDER_LINES_MAX: usize = 100;
/// Longest Idempotency-Key accepted (Stripe and the IETF draft both sit well under this).
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 128;

/// One line of an order request.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LineRequest {
    pub sku: SkuId,
    pub qty: u32,
}

/// An order as a shopper or buyer submits it.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderRequest {
    pub customer_id: CustomerId,
    /// The customer's group (member, wholesale, ...), for group prices and promotions.
    #[serde(default)]
    pub customer_group: Option<CustomerGroup>,
    pub currency: Currency,
    pub lines: Vec<LineRequest>,
    pub ship_to: ShipTo,
}

/// Why an order request is refused before any stock is touched. Each variant is a stable
/// problem `type` at the HTTP layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error("an order has 1 to {ORDER_LINES_MAX} lines, got {0}")]
    LineCount(usize),
    #[error("sku {0} appears on more than one line")]
    DuplicateLine(SkuId),
    #[error("unknown sku {0}")]
    UnknownSku(SkuId),
    #[error("sku {sku}: quantity {qty} is outside {min}..={max}")]
    Quantity {
        sku: SkuId,
        qty: u32,
        min: u32,
        max: u32,
    },
    #[error("ship_to: {0}")]
    Address(String),
    #[error("no market ships to {country} in {currency}")]
    NotSoldInMarket {
        country: Country,
        currency: Currency,
    },
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error("inconsistent order: {0}")]
    Inconsistent(String),
}

impl From<OrderError> for crate::refusal::Rejection {
    fn from(e: OrderError) -> Self {
        use crate::pricing::PricingError;
        let kind = match &e {
            OrderError::UnknownSku(_) => crate::refusal::RejectKind::UnknownSku,
            OrderError::Quantity { .. } | OrderError::Pricing(PricingError::BadQuantity(_)) => {
                crate::refusal::RejectKind::Quantity
            }
            OrderError::NotSoldInMarket { .. } => crate::refusal::RejectKind::NotSoldInMarket,
            OrderError::Pricing(PricingError::NoPrice { .. }) => {
                crate::refusal::RejectKind::NoPrice
            }
            _ => crate::refusal::RejectKind::Invalid,
        };
        crate::refusal::Rejection::new(kind, e.to_string())
    }
}

/// A priced line.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrderLine {
    pub sku: SkuId,
    pub qty: u32,
    pub unit_price: Money,
    pub total: Money,
    pub breakdown: Vec<PriceStep>,
}

/// The full price of an order request.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct PricedOrder {
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub discount: Option<OrderDiscount>,
    pub total: Money,
    /// Largest version among the price inputs used (invariant I4).
    pub price_version: u64,
}

/// What the order validator needs to know of one SKU.
pub struct SkuFacts<'a> {
    pub sku: &'a Sku,
    pub category: &'a Category,
}

/// Checks an order request against the catalog and markets and prices it. `lookup` finds a SKU
/// and its product's category. No stock is looked at: that is escrow's job.
pub fn price_order<'a>(
    req: &OrderRequest,
    lookup: impl Fn(&SkuId) -> Option<SkuFacts<'a>>,
    book: &PriceBook,
    now_ms: i64,
) -> Result<PricedOrder, OrderError> {
    if req.lines.is_empty() || req.lines.len() > ORDER_LINES_MAX {
        return Err(OrderError::LineCount(req.lines.len()));
    }
    req.ship_to.validate()?;
    let country = req.ship_to.country;
    if !book.sells(country, req.currency) {
        return Err(OrderError::NotSoldInMarket {
            country,
            currency: req.currency,
        });
    }
    let ctx = PriceContext {
        currency: req.currency,
        customer_group: req.customer_group.as_ref(),
        country: Some(country),
        now_ms,
    };
    let mut seen = HashSet::with_capacity(req.lines.len());
    let mut lines = Vec::with_capacity(req.lines.len());
    let mut subtotal = Money::zero(req.currency);
    let mut price_version = 0;
    for l in &req.lines {
        if !seen.insert(&l.sku) {
            return Err(OrderError::DuplicateLine(l.sku.clone()));
        }
        let facts = lookup(&l.sku).ok_or_else(|| OrderError::UnknownSku(l.sku.clone()))?;
        let (min, max) = (
            facts.sku.min_order_qty,
            facts.sku.max_order_qty.min(QTY_MAX),
        );
        if l.qty < min || l.qty > max {
            return Err(OrderError::Quantity {
                sku: l.sku.clone(),
                qty: l.qty,
                min,
                max,
            });
        }
        let q = book.quote(&l.sku, facts.category, l.qty, &ctx)?;
        subtotal = subtotal
            .checked_add(q.total)
            .map_err(|_| PricingError::Overflow)?;
        price_version = price_version.max(q.price_version);
        lines.push(OrderLine {
            sku: q.sku,
            qty: q.qty,
            unit_price: q.unit_price,
            total: q.total,
            breakdown: q.breakdown,
        });
    }
    let discount = book.order_discount(subtotal, &ctx).map(|(d, v)| {
        price_version = price_version.max(v);
        d
    });
    let off = discount.as_ref().map_or(0, |d| d.off.amount_minor);
    let total = Money::new(subtotal.amount_minor - off, req.currency);
    Ok(PricedOrder {
        lines,
        subtotal,
        discount,
        total,
        price_version,
    })
}

/// Where an order is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum OrderStatus {
    /// Accepted at an edge from its grant, durable there, not yet committed at a core.
    Accepted,
    /// Committed in the core's log.
    Committed,
    /// Refused at commit (see `reject_reason`); its units were never counted as sold.
    Rejected,
}

/// Where an order was taken.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Origin {
    pub region: String,
    /// The edge that accepted it from its grant; `None` for an order allocated centrally.
    pub edge: Option<EdgeId>,
}

/// An order as stored and replicated.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Order {
    pub order_id: OrderId,
    pub idempotency_key: Option<String>,
    pub customer_id: CustomerId,
    pub customer_group: Option<CustomerGroup>,
    pub currency: Currency,
    pub ship_to: ShipTo,
    pub lines: Vec<OrderLine>,
    pub subtotal: Money,
    pub discount: Option<OrderDiscount>,
    pub total: Money,
    pub price_version: u64,
    pub origin: Origin,
    pub accepted_at_ms: i64,
    pub status: OrderStatus,
    /// Store version at which the order committed (or was rejected).
    pub commit_version: Option<u64>,
    pub reject_reason: Option<String>,
}

impl Order {
    /// Whether `req` asks for this order again (a retry), rather than for something else under
    /// the same Idempotency-Key.
    pub fn is_retry_of(&self, req: &OrderRequest) -> bool {
        self.customer_id == req.customer_id
            && self.customer_group == req.customer_group
            && self.currency == req.currency
            && self.ship_to.may_equal(&req.ship_to)
            && self.lines.len() == req.lines.len()
            && self
                .lines
                .iter()
                .zip(&req.lines)
                .all(|(a, b)| a.sku == b.sku && a.qty == b.qty)
    }

    /// What was asked for: the request this order was made from.
    pub fn request(&self) -> OrderRequest {
        OrderRequest {
            customer_id: self.customer_id.clone(),
            customer_group: self.customer_group.clone(),
            currency: self.currency,
            lines: self
                .lines
                .iter()
                .map(|l| LineRequest {
                    sku: l.sku.clone(),
                    qty: l.qty,
                })
                .collect(),
            ship_to: self.ship_to.clone(),
        }
    }

    /// Whether `other` is this very order as it was taken (where and when), whatever became of
    /// it since: an edge sending it again, not a shopper's retry taken anew.
    pub fn same_acceptance(&self, other: &Order) -> bool {
        self.origin == other.origin && self.accepted_at_ms == other.accepted_at_ms
    }

    /// Assembles the record of an accepted order from its request and price.
    pub fn accepted(
        order_id: OrderId,
        idempotency_key: Option<String>,
        req: OrderRequest,
        priced: PricedOrder,
        origin: Origin,
        accepted_at_ms: i64,
    ) -> Order {
        Order {
            order_id,
            idempotency_key,
            customer_id: req.customer_id,
            customer_group: req.customer_group,
            currency: req.currency,
            ship_to: req.ship_to,
            lines: priced.lines,
            subtotal: priced.subtotal,
            discount: priced.discount,
            total: priced.total,
            price_version: priced.price_version,
            origin,
            accepted_at_ms,
            status: OrderStatus::Accepted,
            commit_version: None,
            reject_reason: None,
        }
    }

    /// Units per SKU this order takes.
    pub fn units(&self) -> impl Iterator<Item = (&SkuId, u32)> {
        self.lines.iter().map(|l| (&l.sku, l.qty))
    }

    /// Structural checks on an order that arrives already priced (from an edge): bounded, its id
    /// the one its Idempotency-Key names, one line per SKU, quantities in range, totals adding
    /// up. The price itself is the edge's
    /// promise to the shopper and is kept as given.
    pub fn check_shape(&self) -> Result<(), OrderError> {
        if self.lines.is_empty() || self.lines.len() > ORDER_LINES_MAX {
            return Err(OrderError::LineCount(self.lines.len()));
        }
        self.ship_to.validate()?;
        // Every field bounded, so that an order always fits a store record.
        crate::id::check_id("region", &self.origin.region)
            .map_err(|e| OrderError::Inconsistent(e.to_string()))?;
        if let Some(k) = &self.idempotency_key {
            check_idempotency_key(k).map_err(|e| OrderError::Inconsistent(e.to_string()))?;
            // One key, one id, wherever the order was taken: that is what makes a key commit
            // at most once.
            if !crate::order_id::may_name(&self.order_id, &self.customer_id, k) {
                return Err(OrderError::Inconsistent(
                    "the order id is not the one its Idempotency-Key names".into(),
                ));
            }
        }
        let mut seen = HashSet::with_capacity(self.lines.len());
        let mut subtotal = Money::zero(self.currency);
        for l in &self.lines {
            // List price, tier, promotion: a longer breakdown did not come from this engine.
            if l.breakdown.len() > 3 {
                return Err(OrderError::Inconsistent(format!(
                    "line {}: more than 3 price steps",
                    l.sku
                )));
            }
            if !seen.insert(&l.sku) {
                return Err(OrderError::DuplicateLine(l.sku.clone()));
            }
            if l.qty == 0 || l.qty > QTY_MAX {
                return Err(OrderError::Quantity {
                    sku: l.sku.clone(),
                    qty: l.qty,
                    min: 1,
                    max: QTY_MAX,
                });
            }
            let line_total = l.unit_price.checked_mul(l.qty);
            if l.unit_price.amount_minor < 0
                || l.unit_price.currency != self.currency
                || line_total != Ok(l.total)
            {
                return Err(OrderError::Inconsistent(format!(
                    "line {}: unit price times quantity is not the line total",
                    l.sku
                )));
            }
            subtotal = subtotal
                .checked_add(l.total)
                .map_err(|_| PricingError::Overflow)?;
        }
        let off = self.discount.as_ref().map_or(0, |d| d.off.amount_minor);
        if self
            .discount
            .as_ref()
            .is_some_and(|d| d.off.currency != self.currency)
        {
            return Err(OrderError::Inconsistent(
                "discount in another currency".into(),
            ));
        }
        if subtotal != self.subtotal
            || !(0..=subtotal.amount_minor).contains(&off)
            || self.total.amount_minor != subtotal.amount_minor - off
            || self.total.currency != self.currency
        {
            return Err(OrderError::Inconsistent(
                "subtotal, discount and total do not add up".into(),
            ));
        }
        Ok(())
    }
}

impl Order {
    /// A minimal record of an order refused at commit, small whatever the order carried: no
    /// lines, a bounded address and reason, and no key unless it is a valid one.
    pub fn rejected_stub(&self, reason: &str, version: u64) -> Order {
        let cut = |s: &str, max: usize| truncate(s, max).to_owned();
        Order {
            order_id: self.order_id.clone(),
            idempotency_key: self
                .idempotency_key
                .clone()
                .filter(|k| check_idempotency_key(k).is_ok()),
            customer_id: self.customer_id.clone(),
            customer_group: self.customer_group.clone(),
            currency: self.currency,
            ship_to: self.ship_to.bounded(self.accepted_at_ms),
            lines: Vec::new(),
            subtotal: Money::zero(self.currency),
            discount: None,
            total: Money::zero(self.currency),
            price_version: self.price_version,
            origin: Origin {
                region: cut(&self.origin.region, 64),
                edge: self.origin.edge.clone(),
            },
            accepted_at_ms: self.accepted_at_ms,
            status: OrderStatus::Rejected,
            commit_version: Some(version),
            reject_reason: Some(cut(reason, 512)),
        }
    }
}

/// An Idempotency-Key that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX_BYTES} visible ASCII characters")]
pub struct BadKey;

impl fault::Fault for BadKey {
    fn kind(&self) -> fault::Kind {
        fault::Kind::BadRequest
    }
}

/// The order among `newest` (a customer's orders, newest first) that `key` placed under a v2
/// id, if there is one.
pub fn v2_order_of<'o>(
    newest: impl IntoIterator<Item = &'o Order>,
    key: &str,
) -> Option<&'o Order> {
    newest
        .into_iter()
        .take(crate::order_id::V1_LOOKBACK_ORDERS)
        .find(|o| {
            crate::order_id::format_of(&o.order_id) == Some(crate::order_id::IdFormat::V2)
                && o.idempotency_key.as_deref() == Some(key)
        })
}

/// Checks an Idempotency-Key: 1 to 128 bytes of visible ASCII.
pub fn check_idempotency_key(key: &str) -> Result<(), BadKey> {
    if key.is_empty()
        || key.len() > IDEMPOTENCY_KEY_MAX_BYTES
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(BadKey);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::Market;
    use crate::pricing::tests::{book, c, sku};
    use crate::{MarketId, ProductId, catalog::Product};

    fn product() -> Product {
        serde_json::from_str(
            r#"{"id":"P","title":"Shirt","category":"apparel/shirts",
                "skus":[{"sku":"S","min_order_qty":1,"max_order_qty":500},
                        {"sku":"T","min_order_qty":2,"max_order_qty":4}]}"#,
        )
        .unwrap()
    }

    fn request(lines: &[(&str, u32)]) -> OrderRequest {
        OrderRequest {
            customer_id: CustomerId::new("c-1").unwrap(),
            customer_group: None,
            currency: c("USD"),
            lines: lines
                .iter()
                .map(|(s, q)| LineRequest {
                    sku: sku(s),
                    qty: *q,
                })
                .collect(),
            ship_to: crate::testing::request(&[]).ship_to,
        }
    }

    fn priced(req: &OrderRequest) -> Result<PricedOrder, OrderError> {
        let p = product();
        let _ = ProductId::new("P");
        let mut b = book();
        b.upsert_market(Market {
            id: MarketId::new("sea").unwrap(),
            countries: [Country::new("SG").unwrap()].into(),
            currencies: [c("USD")].into(),
        });
        let lookup = |s: &SkuId| {
            p.sku(s).map(|sku| SkuFacts {
                sku,
                category: &p.category,
            })
        };
        // `lookup` borrows `p`; pricing finishes before `p` goes away.
        price_order(req, lookup, &b, 0)
    }

    #[test]
    fn prices_a_valid_order() {
        let o = priced(&request(&[("S", 10)])).unwrap();
        assert_eq!(o.total.amount_minor, 9000);
        assert_eq!(o.price_version, 3);
    }

    #[test]
    fn refuses_bad_orders() {
        assert_eq!(priced(&request(&[])), Err(OrderError::LineCount(0)));
        assert!(matches!(
            priced(&request(&[("S", 1), ("S", 2)])),
            Err(OrderError::DuplicateLine(_))
        ));
        assert!(matches!(
            priced(&request(&[("Z", 1)])),
            Err(OrderError::UnknownSku(_))
        ));
        assert!(matches!(
            priced(&request(&[("S", 0)])),
            Err(OrderError::Quantity { .. })
        ));
        assert!(matches!(
            priced(&request(&[("T", 5)])),
            Err(OrderError::Quantity { max: 4, .. })
        ));
        // T has no price at all.
        assert!(matches!(
            priced(&request(&[("T", 2)])),
            Err(OrderError::Pricing(PricingError::NoPrice { .. }))
        ));
        let mut r = request(&[("S", 1)]);
        r.ship_to.country = Country::new("US").unwrap();
        assert!(matches!(
            priced(&r),
            Err(OrderError::NotSoldInMarket { .. })
        ));
        let mut r = request(&[("S", 1)]);
        if let crate::personal::Personal::Plain(a) = &mut r.ship_to.personal {
            a.city = String::new();
        }
        assert!(matches!(priced(&r), Err(OrderError::Address(_))));
        let many: Vec<(&str, u32)> = (0..101).map(|_| ("S", 1)).collect();
        assert_eq!(priced(&request(&many)), Err(OrderError::LineCount(101)));
    }

    #[test]
    fn shape_check_catches_tampered_totals() {
        let req = request(&[("S", 10)]);
        let p = priced(&req).unwrap();
        let origin = Origin {
            region: "r".into(),
            edge: None,
        };
        let mut o = Order::accepted(OrderId::new("o").unwrap(), None, req, p, origin, 0);
        assert!(o.check_shape().is_ok());
        o.total.amount_minor += 1;
        assert!(o.check_shape().is_err());
        o.total.amount_minor -= 1;
        o.lines[0].qty = 11;
        assert!(o.check_shape().is_err());
    }

    /// The largest order the shape check lets through fits a store record of every backend
    /// (90,000 bytes, `core-region`'s `VALUE_MAX_BYTES`) with room to spare.
    #[test]
    fn the_largest_order_fits_a_record() {
        let long = |c: char| c.to_string().repeat(64);
        let money = Money::new(i64::MAX, crate::Currency::from_code("USD").unwrap());
        let line = |i: usize| OrderLine {
            sku: SkuId::new(format!("{:02}{}", i, long('S'))[..64].to_owned()).unwrap(),
            qty: QTY_MAX,
            unit_price: money,
            total: money,
            breakdown: vec![
                PriceStep::ListPrice {
                    list: crate::PriceListId::new(long('L')).unwrap(),
                    unit_minor: i64::MAX,
                },
                PriceStep::Tier {
                    min_qty: u32::MAX,
                    unit_minor: i64::MAX,
                },
                PriceStep::Promotion {
                    promotion: crate::PromotionId::new(long('P')).unwrap(),
                    unit_off_minor: i64::MAX,
                },
            ],
        };
        let order = Order {
            order_id: OrderId::new(long('o')).unwrap(),
            idempotency_key: Some("k".repeat(IDEMPOTENCY_KEY_MAX_BYTES)),
            customer_id: CustomerId::new(long('c')).unwrap(),
            customer_group: Some(CustomerGroup::new(long('g')).unwrap()),
            currency: money.currency,
            // Sealed at its largest: larger than any address in the clear.
            ship_to: ShipTo {
                country: Country::new("SG").unwrap(),
                personal: crate::personal::Personal::Sealed(crate::personal::SealedPersonal {
                    home: long('h'),
                    digest: [0xff; 16],
                    sealed: vec![0xff; crate::personal::SEALED_MAX_BYTES],
                }),
            },
            lines: (0..ORDER_LINES_MAX).map(line).collect(),
            subtotal: money,
            discount: Some(crate::pricing::OrderDiscount {
                promotion: crate::PromotionId::new(long('d')).unwrap(),
                off: money,
            }),
            total: money,
            price_version: u64::MAX,
            origin: Origin {
                region: long('r'),
                edge: Some(EdgeId::new(long('e')).unwrap()),
            },
            accepted_at_ms: i64::MAX,
            status: OrderStatus::Rejected,
            commit_version: Some(u64::MAX),
            reject_reason: Some("x".repeat(512)),
        };
        let bytes = codec::encode(&order).unwrap().len();
        assert!(bytes < 45_000, "{bytes} bytes");
    }

    /// What logs, panics and errors print of an order never holds its address: neither its
    /// Debug output nor a refusal of a bad address (which a rejected order stores).
    #[test]
    fn an_address_is_never_printed() {
        let mut r = request(&[("S", 1)]);
        let address = |r: &mut OrderRequest| match &mut r.ship_to.personal {
            crate::personal::Personal::Plain(a) => a.clone(),
            other => panic!("{other:?}"),
        };
        let mut a = address(&mut r);
        a.line1 = "221B Baker Street".into();
        a.postal_code = "NW1 6XE".into();
        r.ship_to = ShipTo::plain(r.ship_to.country, (*a).clone());
        let printed = format!("{r:?}");
        assert!(
            printed.contains("country") && !printed.contains("Baker") && !printed.contains("NW1"),
            "{printed}"
        );
        a.city = "   ".into();
        a.line1 = "221B Baker Street".repeat(100);
        let refused = a.validate().unwrap_err().to_string();
        assert!(!refused.contains("Baker"), "{refused}");
        a.line1 = "221B Baker Street".into();
        let refused = a.validate().unwrap_err().to_string();
        assert!(
            refused.contains("city") && !refused.contains("Baker"),
            "{refused}"
        );
    }

    #[test]
    fn idempotency_keys() {
        assert!(check_idempotency_key("abc-123").is_ok());
        assert!(check_idempotency_key("").is_err());
        assert!(check_idempotency_key("a b").is_err());
        assert!(check_idempotency_key(&"k".repeat(129)).is_err());
    }
}
