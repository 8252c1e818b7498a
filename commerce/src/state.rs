//! The commerce state one process holds in memory: the catalog (products and the SKU index),
//! the price book and, at a core, every SKU's inventory. Mutators here keep the indexes
//! consistent; deciding *whether* a change is allowed is the caller's job (the core's state
//! machine), using the rules of the other modules.

use std::collections::{BTreeMap, HashMap};

use serde::de::DeserializeOwned;

use crate::catalog::{Category, Product, Sku};
use crate::escrow::Inventory;
use crate::id::{ProductId, PromotionId, SkuId};
use crate::keys;
use crate::order::SkuFacts;
use crate::pricing::PriceBook;

#[derive(Clone, Debug, Default)]
pub struct State {
    /// Ordered by id, so listings page with a cursor.
    products: BTreeMap<ProductId, Product>,
    /// Which product owns each SKU.
    sku_owner: HashMap<SkuId, ProductId>,
    pub book: PriceBook,
    inventory: HashMap<SkuId, Inventory>,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn product(&self, id: &ProductId) -> Option<&Product> {
        self.products.get(id)
    }

    /// Products in id order, starting after `after` if given.
    pub fn products_after(&self, after: Option<&ProductId>) -> impl Iterator<Item = &Product> {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.products
            .range::<ProductId, _>((lower, Bound::Unbounded))
            .map(|(_, p)| p)
    }

    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    pub fn sku_count(&self) -> usize {
        self.sku_owner.len()
    }

    /// The product that owns `sku`.
    pub fn owner(&self, sku: &SkuId) -> Option<&ProductId> {
        self.sku_owner.get(sku)
    }

    /// A SKU with its product's category.
    pub fn sku(&self, sku: &SkuId) -> Option<(&Sku, &Category)> {
        let p = self.products.get(self.sku_owner.get(sku)?)?;
        Some((p.sku(sku)?, &p.category))
    }

    /// What order validation needs to know of a SKU.
    /// The price of `req.qty` units of `sku` for `req` at `now_ms`.
    pub fn quote(
        &self,
        sku: &SkuId,
        req: &crate::pricing::QuoteRequest,
        now_ms: i64,
    ) -> Result<crate::pricing::Quote, crate::order::OrderError> {
        let (_, category) = self
            .sku(sku)
            .ok_or_else(|| crate::order::OrderError::UnknownSku(sku.clone()))?;
        let ctx = crate::pricing::PriceContext {
            currency: req.currency,
            customer_group: req.customer_group.as_ref(),
            country: req.country,
            now_ms,
        };
        Ok(self.book.quote(sku, category, req.qty.unwrap_or(1), &ctx)?)
    }

    pub fn sku_facts(&self, sku: &SkuId) -> Option<SkuFacts<'_>> {
        self.sku(sku)
            .map(|(sku, category)| SkuFacts { sku, category })
    }

    /// Inserts or replaces a product. SKUs the old version had and the new one lacks stop
    /// belonging to it (their prices and stock stay, so that re-adding a SKU restores them).
    pub fn upsert_product(&mut self, product: Product) {
        if let Some(old) = self.products.get(&product.id) {
            for s in &old.skus {
                if self.sku_owner.get(&s.sku) == Some(&product.id) {
                    self.sku_owner.remove(&s.sku);
                }
            }
        }
        for s in &product.skus {
            self.sku_owner.insert(s.sku.clone(), product.id.clone());
        }
        self.products.insert(product.id.clone(), product);
    }

    pub fn inventory(&self, sku: &SkuId) -> Option<&Inventory> {
        self.inventory.get(sku)
    }

    pub fn inventories(&self) -> impl Iterator<Item = (&SkuId, &Inventory)> {
        self.inventory.iter()
    }

    pub fn set_inventory(&mut self, sku: SkuId, inv: Inventory) {
        self.inventory.insert(sku, inv);
    }

    /// Takes one stored row into memory (`None`: the row was deleted). A core loads its state
    /// from its store this way and an edge follows the change feed this way, so the same rows
    /// make the same state everywhere. Rows of kinds not held in memory are ignored.
    pub fn load_row(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
        codec: &impl RowCodec,
    ) -> Result<(), String> {
        let Some(&tag) = key.first() else {
            return Err("an empty key".into());
        };
        let id = |what: &str| {
            keys::parse_single(tag, key).ok_or_else(|| format!("a bad {what} key {key:?}"))
        };
        match (tag, value) {
            (keys::MARKET, Some(v)) => self.book.upsert_market(codec.decode(key, v)?),
            (keys::PRICE_LIST, Some(v)) => self.book.upsert_list(codec.decode(key, v)?),
            (keys::PRODUCT, Some(v)) => self.upsert_product(codec.decode(key, v)?),
            (keys::PRICE, Some(v)) => {
                let sku = keys::parse_price(key)
                    .and_then(|(sku, _)| SkuId::new(sku).ok())
                    .ok_or_else(|| format!("a bad price key {key:?}"))?;
                self.book.set_price(sku, codec.decode(key, v)?);
            }
            (keys::PROMOTION, Some(v)) => self.book.upsert_promotion(codec.decode(key, v)?),
            (keys::PROMOTION, None) => {
                let id = PromotionId::new(id("promotion")?).map_err(|e| e.to_string())?;
                self.book.remove_promotion(&id);
            }
            (keys::INVENTORY, Some(v)) => {
                let sku = SkuId::new(id("inventory")?).map_err(|e| e.to_string())?;
                self.set_inventory(sku, codec.decode(key, v)?);
            }
            (t, None) if keys::MIRRORED.contains(&t) => {
                return Err(format!(
                    "a deleted {} row, which is never deleted",
                    t as char
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// How stored values are decoded: the storage codec is the caller's (commerce does no IO).
pub trait RowCodec {
    fn decode<T: DeserializeOwned>(&self, key: &[u8], value: &[u8]) -> Result<T, String>;
}
