//! Rendered product documents (the JSON of `GET /v1/products/{id}` and its ETag), by product and
//! view (currency, customer group, destination), in a moka cache weighted by bytes. A view is
//! keyed by the product's generation in the mirror, so a feed change to the product (its record,
//! a SKU's price or stock) or to what every price depends on (a market, a price list, a
//! promotion) makes the old rendering unreachable at once; it then ages out. A rendering lives at
//! most `ttl` besides, so that the units this edge sells from its grants show in `available`
//! within that time. A miss renders once however many requests wait for it.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderValue;
use commerce::{Country, Currency, CustomerGroup, ProductId};
use http_api::metrics::Counter;

/// Which rendering of which product.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ViewKey {
    pub product: ProductId,
    pub currency: Option<Currency>,
    pub group: Option<CustomerGroup>,
    pub country: Option<Country>,
    /// The mirror's generations (everything, this product) when rendered.
    pub generation: (u64, u64),
}

/// A rendered product.
pub struct Rendered {
    pub body: Bytes,
    pub etag: HeaderValue,
}

impl Rendered {
    /// `body` with its ETag: the body's digest, so the same bytes carry the same tag whatever
    /// version they were read at.
    pub fn new(body: Vec<u8>) -> Self {
        let mut h = std::hash::DefaultHasher::new();
        body.hash(&mut h);
        let etag = HeaderValue::from_str(&format!("\"{:016x}\"", h.finish()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        Rendered {
            body: body.into(),
            etag,
        }
    }
}

#[derive(Clone)]
pub struct ProductCache {
    cache: moka::future::Cache<ViewKey, Arc<Rendered>>,
    hits: Counter,
    misses: Counter,
}

impl ProductCache {
    pub fn new(max_bytes: u64, ttl: Duration) -> Self {
        ProductCache {
            cache: moka::future::Cache::builder()
                .weigher(|k: &ViewKey, v: &Arc<Rendered>| {
                    let size = v.body.len() + k.product.as_str().len() + 64;
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .max_capacity(max_bytes)
                .time_to_live(ttl)
                .build(),
            hits: Counter::default(),
            misses: Counter::default(),
        }
    }

    /// The rendering for `key`, made by `render` on a miss (once, however many wait for it). An
    /// error is not cached.
    pub async fn get<E: Send + Sync + 'static>(
        &self,
        key: ViewKey,
        render: impl Future<Output = Result<Rendered, E>>,
    ) -> Result<Arc<Rendered>, Arc<E>> {
        if let Some(hit) = self.cache.get(&key).await {
            self.hits.inc();
            return Ok(hit);
        }
        self.misses.inc();
        self.cache
            .try_get_with(key, async { render.await.map(Arc::new) })
            .await
    }

    /// Its (hits, misses) counters, shared.
    pub fn counters(&self) -> (Counter, Counter) {
        (self.hits.clone(), self.misses.clone())
    }
}
