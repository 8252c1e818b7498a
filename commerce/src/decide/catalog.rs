//! Catalog rules: products, markets, price lists, promotions and price batches.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Effects, Input, reject};
use crate::catalog::Product;
use crate::command::{PRICE_BATCH_MAX, PriceChange};
use crate::id::{CustomerGroup, PriceListId, PromotionId, SkuId};
use crate::market::Market;
use crate::money::Currency;
use crate::pricing::{PriceEntry, PriceList, Promotion, PromotionTarget};
use crate::record::{Record, Write};
use crate::refusal::{RejectKind, Rejection};

fn invalid(why: impl Into<String>) -> Rejection {
    Rejection::new(RejectKind::Invalid, why)
}

/// A product replaces its previous version whole; each of its SKUs belongs to it alone.
pub(super) fn upsert_product(i: &Input<'_>, product: &Product) -> Result<Effects, Rejection> {
    product.validate().map_err(|e| invalid(e.to_string()))?;
    for s in &product.skus {
        if let Some(owner) = i.state.owner(&s.sku)
            && owner != &product.id
        {
            return reject(
                RejectKind::Conflict,
                format!("sku {} already belongs to product {owner}", s.sku),
            );
        }
    }
    i.applied(vec![Write::Put(Record::Product(product.clone()))])
}

pub(super) fn upsert_market(i: &Input<'_>, market: &Market) -> Result<Effects, Rejection> {
    market.validate()?;
    i.applied(vec![Write::Put(Record::Market(market.clone()))])
}

/// A list may change anything but its currency: prices already in it are in that currency.
pub(super) fn upsert_price_list(i: &Input<'_>, list: &PriceList) -> Result<Effects, Rejection> {
    list.validate()?;
    i.known_market(list.market.as_ref())?;
    if let Some(old) = i.state.book.list(&list.id)
        && old.currency != list.currency
    {
        return reject(
            RejectKind::Conflict,
            format!(
                "price list {} is in {}; a list never changes currency",
                list.id, old.currency
            ),
        );
    }
    i.applied(vec![Write::Put(Record::PriceList(list.clone()))])
}

/// A promotion records the version that wrote it (its price version, I4).
pub(super) fn upsert_promotion(i: &Input<'_>, promo: &Promotion) -> Result<Effects, Rejection> {
    promo.validate()?;
    i.known_market(promo.market.as_ref())?;
    if let PromotionTarget::Sku(sku) = &promo.target {
        i.known_sku(sku)?;
    }
    let mut promo = promo.clone();
    promo.version = i.version;
    i.applied(vec![Write::Put(Record::Promotion(promo))])
}

pub(super) fn delete_promotion(i: &Input<'_>, id: &PromotionId) -> Result<Effects, Rejection> {
    if i.state.book.promotion(id).is_none() {
        return reject(
            RejectKind::UnknownPromotion,
            format!("unknown promotion {id}"),
        );
    }
    i.applied(vec![Write::DeletePromotion(id.clone())])
}

/// Sets up to `PRICE_BATCH_MAX` prices, all or none. A change names its list, or lands in the
/// implicit list of its currency and group (`base-USD`, `member-USD`), made on first use.
pub(super) fn price_batch(i: &Input<'_>, changes: &[PriceChange]) -> Result<Effects, Rejection> {
    if changes.is_empty() || changes.len() > PRICE_BATCH_MAX {
        return Err(invalid(format!(
            "a price batch has 1 to {PRICE_BATCH_MAX} changes"
        )));
    }
    let mut new_lists: BTreeMap<PriceListId, PriceList> = BTreeMap::new();
    // The implicit list of each (currency, group) met so far, resolved once per batch.
    let mut implicit_ids: HashMap<(Currency, Option<&CustomerGroup>), PriceListId> = HashMap::new();
    let mut seen: HashSet<(&SkuId, PriceListId)> = HashSet::with_capacity(changes.len());
    let mut prices = Vec::with_capacity(changes.len());
    for (n, c) in changes.iter().enumerate() {
        let at = |detail: String| format!("changes[{n}] (sku {}): {detail}", c.sku);
        i.known_sku(&c.sku)?;
        let list = match &c.list {
            Some(id) => {
                let list = i.state.book.list(id).ok_or_else(|| {
                    Rejection::new(
                        RejectKind::UnknownPriceList,
                        at(format!("unknown price list {id}")),
                    )
                })?;
                if list.currency != c.currency {
                    return reject(
                        RejectKind::Conflict,
                        at(format!(
                            "price list {id} is in {}, not {}",
                            list.currency, c.currency
                        )),
                    );
                }
                if c.customer_group.is_some() && c.customer_group != list.customer_group {
                    return reject(
                        RejectKind::Conflict,
                        at(format!("price list {id} is for another customer group")),
                    );
                }
                id.clone()
            }
            None => match implicit_ids.get(&(c.currency, c.customer_group.as_ref())) {
                Some(id) => id.clone(),
                None => {
                    let implicit = PriceList::implicit(c.currency, c.customer_group.as_ref());
                    match i.state.book.list(&implicit.id) {
                        Some(existing) if existing != &implicit => {
                            return reject(
                                RejectKind::Conflict,
                                at(format!(
                                    "price list {} exists with other settings; name it with \"list\"",
                                    implicit.id
                                )),
                            );
                        }
                        Some(_) => {}
                        None => {
                            new_lists.insert(implicit.id.clone(), implicit.clone());
                        }
                    }
                    implicit_ids
                        .insert((c.currency, c.customer_group.as_ref()), implicit.id.clone());
                    implicit.id
                }
            },
        };
        let entry = PriceEntry {
            list: list.clone(),
            amount_minor: c.amount_minor,
            tiers: c.tiers.clone(),
            version: i.version,
        };
        entry.validate().map_err(|e| invalid(at(e.detail)))?;
        if !seen.insert((&c.sku, list)) {
            return Err(invalid(at(format!(
                "sku {} appears twice for one list",
                c.sku
            ))));
        }
        prices.push(Write::Put(Record::Price(c.sku.clone(), entry)));
    }
    let mut writes: Vec<Write> = new_lists
        .into_values()
        .map(|l| Write::Put(Record::PriceList(l)))
        .collect();
    writes.append(&mut prices);
    i.applied(writes)
}
