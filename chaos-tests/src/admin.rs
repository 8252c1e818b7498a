//! A client of a core's admin API for tools (the sample loader, the drills): writes under an
//! Idempotency-Key, sent again with it while the core is away, and reads of the inventory.

use std::time::Duration;

use anyhow::{Context, bail};

/// Attempts per request when the core answers 503 or cannot be reached.
const ATTEMPTS: u32 = 8;

/// A core's admin API, for writes.
#[derive(Clone)]
pub struct Admin {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Admin {
    /// The admin API at `base` (`https://host:port`), with its bearer token, trusting the
    /// CA at `ca` when given.
    pub fn new(base: &str, token: String, ca: Option<&std::path::Path>) -> anyhow::Result<Admin> {
        Ok(Admin {
            http: http_api::client::builder(ca)?
                .timeout(Duration::from_secs(30))
                .build()?,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// Whether `sku` is stocked (or has sold) at the core.
    pub async fn stocked(&self, sku: &commerce::SkuId) -> anyhow::Result<bool> {
        let res = self
            .http
            .get(format!("{}/admin/v1/inventory/{sku}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .context("reading the inventory")?;
        if res.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(false);
        }
        let status = res.status();
        let inv: serde_json::Value = res.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("GET /admin/v1/inventory/{sku}: {status}: {inv}");
        }
        let count = |f: &str| inv[f].as_u64().unwrap_or(0);
        Ok(count("stocked") > 0 || count("committed") > 0)
    }

    /// Sends one write, retrying (with the same Idempotency-Key) while the core is unavailable
    /// or asks this client to slow down (after its Retry-After).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let url = format!("{}{path}", self.base);
        let mut delay = Duration::from_millis(100);
        for attempt in 1..=ATTEMPTS {
            let res = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token)
                .header("idempotency-key", key)
                .json(body)
                .send()
                .await;
            match res {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r)
                    if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS
                        && attempt < ATTEMPTS =>
                {
                    let wait = r
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                        .unwrap_or(1)
                        .min(10);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                    continue;
                }
                Ok(r)
                    if r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE
                        && attempt < ATTEMPTS => {}
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    bail!("{method} {path}: {status}: {text}");
                }
                Err(e) if attempt < ATTEMPTS => {
                    tracing::warn!(error = %e, path, "request failed; retrying");
                }
                Err(e) => return Err(e).with_context(|| format!("{method} {path}")),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        bail!("{method} {path}: gave up after {ATTEMPTS} attempts")
    }
}
