//! The catalog: products (SPU), their SKUs with attributes and order-quantity bounds, and
//! categories. Everything here is validated data; `Product::validate` is the one gate.

use std::collections::BTreeMap;

use crate::id::{ProductId, SkuId};

/// Largest quantity of one SKU on one order line. It bounds every `unit × qty` product (see
/// `money::UNIT_AMOUNT_MAX_MINOR`) and catches "999999999" typed into a quantity box.
pub const QTY_MAX: u32 = 1_000_000;
/// SKUs one product may have (every colour × size of a garment fits easily).
pub const SKUS_PER_PRODUCT_MAX: usize = 200;
/// Attributes (colour, size, configuration, ...) one SKU may carry.
pub const ATTRIBUTES_PER_SKU_MAX: usize = 16;
pub const ATTRIBUTE_NAME_MAX_BYTES: usize = 32;
pub const ATTRIBUTE_VALUE_MAX_BYTES: usize = 128;
pub const TITLE_MAX_BYTES: usize = 256;
/// Depth and segment length of a category path such as `apparel/shoes/running`.
pub const CATEGORY_DEPTH_MAX: usize = 6;
pub const CATEGORY_SEGMENT_MAX_BYTES: usize = 32;

/// A category path, `/`-separated from the root: `apparel/shoes/running`. A promotion on
/// `apparel` applies to every product whose category lies under it.
#[derive(
    Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Category(String);

impl Category {
    pub fn new(s: impl Into<String>) -> Result<Self, CatalogError> {
        let s = s.into();
        let segments: Vec<&str> = s.split('/').collect();
        let bad = |why: &str| CatalogError::BadCategory(format!("{:?}: {why}", truncate(&s, 80)));
        if segments.len() > CATEGORY_DEPTH_MAX {
            return Err(bad("too deep"));
        }
        for seg in &segments {
            if seg.is_empty() || seg.len() > CATEGORY_SEGMENT_MAX_BYTES {
                return Err(bad("every segment must be 1 to 32 bytes"));
            }
            if !seg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            {
                return Err(bad(
                    "segments use lower-case ASCII letters, digits, '-' and '_'",
                ));
            }
        }
        Ok(Category(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This category and each of its ancestors, most specific first:
    /// `a/b/c`, `a/b`, `a`.
    pub fn self_and_ancestors(&self) -> impl Iterator<Item = &str> {
        let s = self.0.as_str();
        std::iter::once(s).chain(s.rmatch_indices('/').map(move |(i, _)| &s[..i]))
    }

    /// Whether this category is `other` or lies under it.
    pub fn is_within(&self, other: &Category) -> bool {
        self.self_and_ancestors().any(|c| c == other.0)
    }
}

impl TryFrom<String> for Category {
    type Error = CatalogError;
    fn try_from(s: String) -> Result<Self, CatalogError> {
        Category::new(s)
    }
}

impl From<Category> for String {
    fn from(c: Category) -> String {
        c.0
    }
}

/// One sellable variant of a product.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sku {
    pub sku: SkuId,
    /// Variant attributes shoppers choose between: `{"colour": "red", "size": "M"}`.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Smallest quantity one order line may ask for (a case of 12, a B2B minimum).
    #[serde(default = "one")]
    pub min_order_qty: u32,
    /// Largest quantity one order line may ask for (limits per customer on hot items).
    #[serde(default = "qty_max")]
    pub max_order_qty: u32,
}

fn one() -> u32 {
    1
}

fn qty_max() -> u32 {
    QTY_MAX
}

/// A product (SPU) and its SKUs.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Product {
    pub id: ProductId,
    pub title: String,
    pub category: Category,
    pub skus: Vec<Sku>,
}

/// Why catalog data is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("bad category {0}")]
    BadCategory(String),
    #[error("product {0}: {1}")]
    BadProduct(ProductId, String),
}

impl Product {
    /// Checks every bound and rule of a product on its own (that a SKU is not already owned by
    /// another product is the state machine's check, since it needs the whole catalog).
    pub fn validate(&self) -> Result<(), CatalogError> {
        let bad = |why: String| Err(CatalogError::BadProduct(self.id.clone(), why));
        if self.title.trim().is_empty() || self.title.len() > TITLE_MAX_BYTES {
            return bad(format!("title must be 1 to {TITLE_MAX_BYTES} bytes"));
        }
        if self.skus.is_empty() || self.skus.len() > SKUS_PER_PRODUCT_MAX {
            return bad(format!("a product has 1 to {SKUS_PER_PRODUCT_MAX} skus"));
        }
        let mut seen = std::collections::HashSet::with_capacity(self.skus.len());
        for s in &self.skus {
            if !seen.insert(&s.sku) {
                return bad(format!("sku {} appears twice", s.sku));
            }
            if s.min_order_qty == 0
                || s.min_order_qty > s.max_order_qty
                || s.max_order_qty > QTY_MAX
            {
                return bad(format!(
                    "sku {}: need 1 <= min_order_qty <= max_order_qty <= {QTY_MAX}",
                    s.sku
                ));
            }
            if s.attributes.len() > ATTRIBUTES_PER_SKU_MAX {
                return bad(format!(
                    "sku {}: at most {ATTRIBUTES_PER_SKU_MAX} attributes",
                    s.sku
                ));
            }
            for (k, v) in &s.attributes {
                if k.is_empty()
                    || k.len() > ATTRIBUTE_NAME_MAX_BYTES
                    || v.len() > ATTRIBUTE_VALUE_MAX_BYTES
                {
                    return bad(format!(
                        "sku {}: attribute names are 1 to {ATTRIBUTE_NAME_MAX_BYTES} bytes, values at most {ATTRIBUTE_VALUE_MAX_BYTES}",
                        s.sku
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn sku(&self, sku: &SkuId) -> Option<&Sku> {
        self.skus.iter().find(|s| &s.sku == sku)
    }
}

pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(skus: Vec<Sku>) -> Product {
        Product {
            id: ProductId::new("P-1").unwrap(),
            title: "Linen shirt".into(),
            category: Category::new("apparel/shirts").unwrap(),
            skus,
        }
    }

    fn sku(id: &str) -> Sku {
        Sku {
            sku: SkuId::new(id).unwrap(),
            attributes: BTreeMap::from([("colour".into(), "red".into())]),
            min_order_qty: 1,
            max_order_qty: 10,
        }
    }

    #[test]
    fn categories_nest() {
        let c = Category::new("apparel/shoes/running").unwrap();
        let up: Vec<&str> = c.self_and_ancestors().collect();
        assert_eq!(up, ["apparel/shoes/running", "apparel/shoes", "apparel"]);
        assert!(c.is_within(&Category::new("apparel").unwrap()));
        assert!(!c.is_within(&Category::new("app").unwrap()));
        assert!(Category::new("").is_err());
        assert!(Category::new("a//b").is_err());
        assert!(Category::new("Apparel").is_err());
        assert!(Category::new("a/b/c/d/e/f/g").is_err());
    }

    #[test]
    fn product_rules() {
        assert!(product(vec![sku("A"), sku("B")]).validate().is_ok());
        assert!(product(vec![]).validate().is_err());
        assert!(product(vec![sku("A"), sku("A")]).validate().is_err());
        let mut s = sku("A");
        s.min_order_qty = 0;
        assert!(product(vec![s.clone()]).validate().is_err());
        s.min_order_qty = 5;
        s.max_order_qty = 4;
        assert!(product(vec![s]).validate().is_err());
        let mut p = product(vec![sku("A")]);
        p.title = " ".into();
        assert!(p.validate().is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let j = r#"{"id":"P","title":"t","category":"a","skus":[{"sku":"S","colour":"red"}]}"#;
        assert!(serde_json::from_str::<Product>(j).is_err());
        let j = r#"{"id":"P","title":"t","category":"a","skus":[{"sku":"S"}]}"#;
        let p: Product = serde_json::from_str(j).unwrap();
        assert_eq!(p.skus[0].max_order_qty, QTY_MAX);
    }
}
