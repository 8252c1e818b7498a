//! The commerce state one process holds in memory: the catalog (products and the SKU index),
//! the price book, every SKU's inventory, and the customers whose personal data was erased. Mutators here keep the indexes
//! consistent; deciding *whether* a change is allowed is the caller's job (the core's state
//! machine), using the rules of the other modules.

use std::collections::{BTreeMap, HashMap};

use crate::catalog::{Category, Product, Sku};
use crate::escrow::Inventory;
use crate::id::{CustomerId, ProductId, SkuId};
use crate::order::SkuFacts;
use crate::personal::Erasure;
use crate::pricing::PriceBook;
use crate::record::{Record, RowError, Write};

#[derive(Clone, Debug, Default)]
pub struct State {
    /// Ordered by id, so listings page with a cursor.
    products: BTreeMap<ProductId, Product>,
    /// Which product owns each SKU.
    sku_owner: HashMap<SkuId, ProductId>,
    pub book: PriceBook,
    inventory: HashMap<SkuId, Inventory>,
    /// Customers whose personal data was erased, and when (one entry each, however often).
    erased: HashMap<CustomerId, Erasure>,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    /// When `customer`'s personal data was last erased, if it was.
    pub fn erasure(&self, customer: &CustomerId) -> Option<&Erasure> {
        self.erased.get(customer)
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

    /// Takes one write into memory: a decision's, or a stored row's (`Write::from_row`).
    /// Records memory does not hold (orders, the commit log) change nothing here.
    pub fn apply(&mut self, write: Write) {
        match write {
            Write::Put(Record::Market(m)) => self.book.upsert_market(m),
            Write::Put(Record::PriceList(l)) => self.book.upsert_list(l),
            Write::Put(Record::Product(p)) => self.upsert_product(p),
            Write::Put(Record::Price(sku, entry)) => self.book.set_price(sku, entry),
            Write::Put(Record::Promotion(p)) => self.book.upsert_promotion(p),
            Write::Put(Record::Inventory(sku, inv)) => self.set_inventory(sku, inv),
            Write::Put(Record::Order(_) | Record::CommitLog(..) | Record::EpochEnded(..)) => {}
            Write::Put(Record::Erasure(customer, e)) => {
                self.erased.insert(customer, e);
            }
            Write::DeletePromotion(id) => {
                self.book.remove_promotion(&id);
            }
        }
    }

    /// Takes one stored row into memory (`None`: the row was deleted). A core loads its state
    /// from its store this way and an edge follows the change feed this way. Rows of kinds not
    /// held in memory are passed over.
    pub fn load_row(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<(), RowError> {
        if let Some(w) = Write::from_row(key, value)? {
            self.apply(w);
        }
        Ok(())
    }
}
