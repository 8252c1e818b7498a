//! Purging the region's CDN caches of what the change feed changed: the mirror notes the
//! products each version touched (or everything, for markets, price lists, promotions and
//! snapshots), and this task sends each cache one purge of their surrogate keys as soon as it
//! can, the changes that come meanwhile going in the next. The storefront tags what it serves
//! with the same keys (`tags`). Each cache has its own task and its own pending changes, so a
//! cache that is down delays no other. A cache that could not be purged (down, or refusing)
//! is owed a purge of everything, sent again after `OWED_FIRST`, then twice as long each time
//! up to `OWED_MAX`, and in place of its next change's keys, until it takes it: a cache back
//! from an outage (its disk tier holding what it had) stops serving what changed meanwhile
//! within about `OWED_MAX` at the latest, while this edge stays up (what is owed is not kept
//! across the edge's restarts).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use commerce::ProductId;
use http_api::metrics::Counter;

use crate::config::CdnSettings;
use crate::mirror::{Catalog, Changed, Changes};

/// Every catalog read carries this key: purged when everything changes.
pub const CATALOG: &str = "catalog";
/// Pages of products carry this key: purged when any product changes.
pub const PRODUCTS: &str = "products";
/// How long a cache may take to answer a purge.
const PURGE_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries of one purge to one cache before it is given up (and counted).
const TRIES: u32 = 4;
/// When a cache owed a purge of everything is first sent it again, and the longest wait
/// between such tries.
const OWED_FIRST: Duration = Duration::from_secs(1);
const OWED_MAX: Duration = Duration::from_secs(30);

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
        let queues: Vec<Arc<Changes>> = self.urls.iter().map(|_| Arc::default()).collect();
        for (url, queue) in self.urls.iter().zip(&queues) {
            tokio::spawn(self.cache_loop(url.clone(), Arc::clone(queue)));
        }
        loop {
            let changed = catalog.next_changes().await;
            for q in &queues {
                q.note(changed.all, changed.products.iter().cloned());
            }
        }
    }

    /// One cache's purges: its pending changes, or everything while it is owed that.
    fn cache_loop(
        &self,
        url: String,
        queue: Arc<Changes>,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (client, token, counters) = (
            self.client.clone(),
            Arc::clone(&self.token),
            self.counters.clone(),
        );
        async move {
            let mut owed: Option<Duration> = None;
            loop {
                // While owed, a change or the time to try again, whichever comes first.
                let changed = match owed {
                    Some(wait) => tokio::time::timeout(wait, queue.next()).await.ok(),
                    None => Some(queue.next().await),
                };
                let keys = if owed.is_some() {
                    vec![CATALOG.to_owned()]
                } else {
                    match &changed {
                        Some(c) => keys(c),
                        None => continue,
                    }
                };
                let body = serde_json::json!({ "keys": keys });
                if send(&client, &token, &url, &body).await {
                    counters.sent.inc();
                    owed = None;
                } else {
                    // Counted once per outage, not once per try of it.
                    if owed.is_none() {
                        counters.failed.inc();
                    }
                    owed = Some(owed.map_or(OWED_FIRST, |w| (w * 2).min(OWED_MAX)));
                }
            }
        }
    }
}

/// One purge to one cache, tried again after a failure; whether it was taken. A refusal a
/// retry cannot change (a 4xx but 408 and 429: a wrong token, a bad request) is not retried.
async fn send(client: &reqwest::Client, token: &str, url: &str, body: &serde_json::Value) -> bool {
    for attempt in 0..TRIES {
        match client.post(url).bearer_auth(token).json(body).send().await {
            Ok(r) if r.status().is_success() => return true,
            Ok(r) => {
                let status = r.status();
                tracing::warn!(url, %status, attempt, "purge refused");
                if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
                    return false;
                }
            }
            Err(e) => tracing::warn!(url, error = %e, attempt, "purge failed"),
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    false
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
        tokio::time::sleep(OWED_FIRST * 2).await;
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
