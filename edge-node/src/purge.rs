//! Purging the region's CDN caches of what the change feed changed: the mirror notes the
//! products each version touched (or everything, for markets, price lists, promotions and
//! snapshots), and this task sends each cache one purge of their surrogate keys as soon as it
//! can, the changes that come meanwhile going in the next. The storefront tags what it serves
//! with the same keys (`tags`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use commerce::ProductId;
use http_api::metrics::Counter;

use crate::config::CdnSettings;
use crate::mirror::{Catalog, Changed};

/// Every catalog read carries this key: purged when everything changes.
pub const CATALOG: &str = "catalog";
/// Pages of products carry this key: purged when any product changes.
pub const PRODUCTS: &str = "products";
/// How long a cache may take to answer a purge.
const PURGE_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries of one purge to one cache before it is given up (and counted).
const TRIES: u32 = 4;

/// The surrogate key of one product's reads.
pub fn product_key(p: &ProductId) -> String {
    format!("product:{p}")
}

/// The keys a change purges.
pub fn keys(changed: &Changed) -> Vec<String> {
    if changed.all {
        return vec![CATALOG.to_owned()];
    }
    std::iter::once(PRODUCTS.to_owned())
        .chain(changed.products.iter().map(product_key))
        .collect()
}

/// Counts of purges sent and given up.
#[derive(Clone, Default)]
pub struct PurgeCounters {
    pub sent: Counter,
    pub failed: Counter,
}

/// What purging needs: the caches, the token, a client that trusts their certificates.
pub struct Purger {
    urls: Vec<String>,
    token: Arc<String>,
    client: reqwest::Client,
    counters: PurgeCounters,
}

impl Purger {
    /// The purger `settings` describe (none when they list no cache). The token and CA files
    /// are read now, so that a missing one stops the edge at start.
    pub fn new(
        settings: &CdnSettings,
        certs_dir: &Path,
        counters: PurgeCounters,
    ) -> Result<Option<Purger>, String> {
        if settings.purge_urls.is_empty() {
            return Ok(None);
        }
        let token_file = settings
            .purge_token_file
            .as_ref()
            .ok_or("cdn.purge_token_file is not set")?;
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| format!("cdn.purge_token_file {}: {e}", token_file.display()))?
            .trim()
            .to_owned();
        let ca = settings
            .ca
            .clone()
            .unwrap_or_else(|| certs_dir.join("ca.pem"));
        let ca = ca.exists().then_some(ca);
        let client = http_api::client::builder(ca.as_deref())
            .map_err(|e| e.to_string())?
            .timeout(PURGE_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Some(Purger {
            urls: settings.purge_urls.clone(),
            token: Arc::new(token),
            client,
            counters,
        }))
    }

    /// Sends every cache a purge for each change the mirror notes, until dropped.
    pub async fn run(self, catalog: Catalog) {
        loop {
            let changed = catalog.next_changes().await;
            let body = serde_json::json!({ "keys": keys(&changed) });
            let sends: Vec<_> = self
                .urls
                .iter()
                .map(|url| tokio::spawn(self.send(url.clone(), body.clone())))
                .collect();
            for s in sends {
                let _ = s.await;
            }
        }
    }

    /// One purge to one cache, tried again after a failure, then given up and counted.
    fn send(
        &self,
        url: String,
        body: serde_json::Value,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (client, token, counters) = (
            self.client.clone(),
            Arc::clone(&self.token),
            self.counters.clone(),
        );
        async move {
            for attempt in 0..TRIES {
                let sent = client
                    .post(&url)
                    .bearer_auth(token.as_str())
                    .json(&body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        counters.sent.inc();
                        return;
                    }
                    Ok(r) => tracing::warn!(url, status = %r.status(), attempt, "purge refused"),
                    Err(e) => tracing::warn!(url, error = %e, attempt, "purge failed"),
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            counters.failed.inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_product_change_purges_it_and_the_pages_everything_purges_all() {
        let p = ProductId::new("P-1").unwrap();
        let changed = Changed {
            all: false,
            products: [p].into_iter().collect(),
        };
        assert_eq!(keys(&changed), vec!["products", "product:P-1"]);
        let all = Changed {
            all: true,
            products: Default::default(),
        };
        assert_eq!(keys(&all), vec!["catalog"]);
    }
}
