//! Purging the region's CDN caches of what the change feed changed: the mirror notes the
//! products each version touched (or everything, for markets, price lists, promotions and
//! snapshots), and this task sends each cache one purge of their surrogate keys as soon as it
//! can, the changes that come meanwhile going in the next. The storefront tags what it serves
//! with the same keys (`tags`). A cache that could not be purged (down, or refusing) is owed
//! a purge of everything: sent every `OWED_EVERY`, and in place of the next change's keys,
//! until it takes it, so that a cache back from an outage (its disk tier holding what it
//! had) never goes on serving what changed meanwhile.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
/// How often a cache owed a purge of everything is sent it again.
const OWED_EVERY: Duration = Duration::from_secs(1);

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

    /// Sends every cache a purge for each change the mirror notes, until dropped; and a
    /// purge of everything to each cache owed one.
    pub async fn run(self, catalog: Catalog) {
        let owed: Arc<Vec<AtomicBool>> =
            Arc::new(self.urls.iter().map(|_| AtomicBool::new(false)).collect());
        loop {
            let any_owed = owed.iter().any(|o| o.load(Ordering::Relaxed));
            // `next_changes` loses nothing when it is given up waiting.
            let changed = if any_owed {
                tokio::select! {
                    c = catalog.next_changes() => Some(c),
                    () = tokio::time::sleep(OWED_EVERY) => None,
                }
            } else {
                Some(catalog.next_changes().await)
            };
            let keys = changed.map(|c| keys(&c));
            let sends: Vec<_> = self
                .urls
                .iter()
                .enumerate()
                .filter_map(|(i, url)| {
                    let everything = owed[i].load(Ordering::Relaxed);
                    let keys = if everything {
                        vec![CATALOG.to_owned()]
                    } else {
                        keys.clone()?
                    };
                    let body = serde_json::json!({ "keys": keys });
                    Some(tokio::spawn(self.send(
                        url.clone(),
                        body,
                        Arc::clone(&owed),
                        i,
                    )))
                })
                .collect();
            for s in sends {
                let _ = s.await;
            }
        }
    }

    /// One purge to cache `i`, tried again after a failure, then given up, counted, and a purge
    /// of everything owed to it; taken, it settles what was owed.
    fn send(
        &self,
        url: String,
        body: serde_json::Value,
        owed: Arc<Vec<AtomicBool>>,
        i: usize,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (client, token, counters) = (
            self.client.clone(),
            Arc::clone(&self.token),
            self.counters.clone(),
        );
        let everything = body["keys"] == serde_json::json!([CATALOG]);
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
                        if everything {
                            owed[i].store(false, Ordering::Relaxed);
                        }
                        return;
                    }
                    Ok(r) => tracing::warn!(url, status = %r.status(), attempt, "purge refused"),
                    Err(e) => tracing::warn!(url, error = %e, attempt, "purge failed"),
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            counters.failed.inc();
            owed[i].store(true, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A cache down for a while: the purge of a change is given up, and the edge goes on
    /// sending it a purge of everything, with no further change, until it takes one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cache_that_missed_a_purge_is_owed_a_purge_of_everything() {
        let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let log = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/admin/v1/purge",
            axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                let log = Arc::clone(&log);
                async move {
                    let mut l = log.lock().unwrap();
                    l.push(body);
                    // Down for the first purge's every try.
                    if l.len() <= TRIES as usize {
                        axum::http::StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let purger = Purger {
            urls: vec![format!("http://{addr}/admin/v1/purge")],
            token: Arc::new("t".into()),
            client: reqwest::Client::new(),
            counters: PurgeCounters::default(),
        };
        let catalog = Catalog::default();
        tokio::spawn(purger.run(catalog.clone()));
        catalog.note_changed(false, [ProductId::new("P-1").unwrap()]);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let bodies = seen.lock().unwrap().clone();
            if let Some(after) = bodies.get(TRIES as usize) {
                assert_eq!(
                    bodies[0]["keys"],
                    serde_json::json!(["products", "product:P-1"])
                );
                assert_eq!(after["keys"], serde_json::json!([CATALOG]), "{bodies:?}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{bodies:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Taken: nothing more is owed, so nothing more is sent without a change.
        tokio::time::sleep(OWED_EVERY * 2).await;
        assert_eq!(seen.lock().unwrap().len(), TRIES as usize + 1);
    }

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
