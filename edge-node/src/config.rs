//! The edge's configuration: one TOML file, read by `util::config::load` (units in the names,
//! unknown keys refused, relative paths taken from the file's own directory), and written from
//! these same types by the demo. `tradewind edge --config FILE --check-config` loads it and stops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use commerce::EdgeId;
use util::config::{Config, Invalid, resolve};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// The region this edge serves, e.g. `ap-singapore`.
    pub region: String,
    /// This edge's name: its certificate's, and the edge id the core knows it by.
    pub name: String,
    /// The storefront API's address (port 0 picks one; the chosen one is printed).
    pub listen: SocketAddr,
    /// The storefront listener: TLS certificate, timeouts, caps, rates, trusted proxies.
    #[serde(default)]
    pub http: http_api::serve::Settings,
    /// The identity provider whose tokens name shoppers: who orders, and whose group prices
    /// they see. Without a valid token a shopper is anonymous: public prices, no orders.
    pub shoppers: http_api::identity::IdentitySettings,
    /// The deployment's certificates (`tradewind certs init`): `ca.pem`, `<name>.pem`,
    /// `<name>.key`.
    pub certs_dir: PathBuf,
    /// Where shoppers' personal data is kept (the residency policy), and where the key files
    /// are (`keys` beside the certificates by default): every address is sealed here for its
    /// home region before it is written or sent.
    #[serde(default, skip_serializing_if = "is_default")]
    pub personal_data: sealing::ResidencySettings,
    /// Refuse cores whose certificates name no role, as certificates made before roles do;
    /// set once every node's certificate has been reissued with one.
    #[serde(default)]
    pub require_roles: bool,
    /// This edge's durable outbox (a redb file): accepted orders until a core has them, and
    /// the units of its grants.
    pub outbox_path: PathBuf,
    /// The core regions' QUIC endpoints, this edge's own region first: the feed is followed
    /// and writes are sent to the first that answers.
    pub cores: Vec<CoreAddr>,
    /// Past this long without a word from any core, reads are marked stale (they go on), and
    /// `/healthz` reports it.
    #[serde(default = "default_stale_after_ms")]
    pub stale_after_ms: u64,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub grants: GrantSettings,
    #[serde(default)]
    pub cache: CacheSettings,
    #[serde(default)]
    pub forward: ForwardSettings,
    /// The region's CDN caches in front of this edge: how long they may keep what anonymous
    /// shoppers read, and where to purge what the feed changes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub cdn: CdnSettings,
}

/// What this edge tells the region's CDN caches (`cdn-cache`), and how it purges them.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CdnSettings {
    /// How long a cache may keep an anonymous shopper's catalog read (`CDN-Cache-Control:
    /// max-age`); 0 lets none keep it. The units an edge holds change with its own sales,
    /// which no purge follows: within this, a cached page shows them. Changes from the feed
    /// (prices, products, promotions, markets) are purged at once.
    pub max_age_s: u64,
    /// The purge endpoints of the region's caches (`https://host:port/admin/v1/purge`).
    pub purge_urls: Vec<String>,
    /// The file holding the token (of scope `purge`) purges are sent with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_token_file: Option<PathBuf>,
    /// The CA of the caches' admin certificates; the deployment's (`certs_dir/ca.pem`) when
    /// absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

impl Default for CdnSettings {
    fn default() -> Self {
        CdnSettings {
            max_age_s: 5,
            purge_urls: Vec::new(),
            purge_token_file: None,
            ca: None,
        }
    }
}

/// Caches one edge may purge.
pub const PURGE_URLS_MAX: usize = 16;

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// How the outbox is sent to the core.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardSettings {
    /// Orders in one batch, at most.
    pub batch_orders_max: usize,
    /// Encoded bytes of the orders in one batch, at most: half of what a core takes in one
    /// command by default (`writes.command_max_bytes`, 2 MiB), for what wraps them. A batch a
    /// core refuses as too large is split whatever this says.
    pub batch_bytes_max: usize,
    /// Past this age of the oldest order no core has taken, `/healthz` says the edge is not
    /// healthy (orders it accepts are not reaching any core).
    pub pending_age_max_ms: u64,
}

impl Default for ForwardSettings {
    fn default() -> Self {
        ForwardSettings {
            batch_orders_max: commerce::command::COMMIT_BATCH_MAX,
            batch_bytes_max: 1024 * 1024,
            // Ten failovers' time: a core region lost and replaced is back within seconds.
            pending_age_max_ms: 60_000,
        }
    }
}

/// The rendered products kept in memory.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Bytes of rendered products kept at most.
    pub product_bytes: u64,
    /// A rendering is redone after this long at most (the units this edge holds show in
    /// `available` within it); catalog and price changes from the feed take effect at once.
    pub ttl_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            product_bytes: 64 * 1024 * 1024,
            ttl_ms: 1_000,
        }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoreAddr {
    /// The region's name, as in its certificate.
    pub name: String,
    pub quic: SocketAddr,
}

/// Bounds on what one client may ask.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body.
    pub body_max_bytes: usize,
    /// How long one request may take in all, its body included.
    pub request_timeout_ms: u64,
    /// Orders waiting for the outbox's next commit; past this, 503 at once.
    pub intake_queue: usize,
    /// How long a central order (no grant left) may wait for the core.
    pub central_timeout_ms: u64,
    /// Central orders waiting for the core at once; past this, 503 at once.
    pub central_inflight_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // An order of 100 lines is about 10 KiB of JSON.
            body_max_bytes: 64 * 1024,
            request_timeout_ms: 10_000,
            intake_queue: 8_192,
            central_timeout_ms: 5_000,
            // A region's leader commits thousands of orders a second; this many waiting from
            // one edge means the core is slow, and more would only queue.
            central_inflight_max: 256,
        }
    }
}

/// When the edge asks for grants.
#[derive(Debug, Clone, Copy, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantSettings {
    /// A SKU sold here in the last `window_ms` whose units here fell to this many or fewer, or
    /// to less than `lead_ms` of its demand, is refilled; the core sizes the grant from that
    /// demand.
    pub refill_at_units: u64,
    pub window_ms: u64,
    /// Ask this long before the units would run out at the current demand, so that a grant
    /// arrives before the last unit is sold.
    pub lead_ms: u64,
}

impl Default for GrantSettings {
    fn default() -> Self {
        GrantSettings {
            refill_at_units: 2,
            window_ms: 10_000,
            lead_ms: 2_000,
        }
    }
}

fn default_stale_after_ms() -> u64 {
    5_000
}

/// Core regions an edge may list.
pub const CORES_MAX: usize = 16;

impl Config for EdgeConfig {
    fn resolve(&mut self, base: &Path) {
        resolve(base, &mut self.certs_dir);
        resolve(base, &mut self.outbox_path);
        self.personal_data.resolve(base);
        self.http.resolve(base);
        self.shoppers.resolve(base);
        for p in [&mut self.cdn.purge_token_file, &mut self.cdn.ca]
            .into_iter()
            .flatten()
        {
            resolve(base, p);
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        self.problems().map_err(Invalid)?;
        self.shoppers.check()?;
        self.personal_data.check()?;
        self.personal_data.check_listeners(&[self.listen])?;
        self.http.check("http", self.listen)
    }
}

impl EdgeConfig {
    fn problems(&self) -> Result<(), String> {
        replication::certs::check_node_name(&self.region).map_err(|e| format!("region: {e}"))?;
        replication::certs::check_node_name(&self.name).map_err(|e| format!("name: {e}"))?;
        EdgeId::new(self.name.as_str()).map_err(|e| format!("name: {e}"))?;
        if self.cores.is_empty() || self.cores.len() > CORES_MAX {
            return Err(format!("cores: 1 to {CORES_MAX} core regions"));
        }
        for c in &self.cores {
            replication::certs::check_node_name(&c.name).map_err(|e| format!("cores: {e}"))?;
        }
        let l = &self.limits;
        if l.body_max_bytes < 1024
            || l.request_timeout_ms < 100
            || l.intake_queue == 0
            || l.central_inflight_max == 0
        {
            return Err("limits: body_max_bytes >= 1024, request_timeout_ms >= 100, intake_queue and central_inflight_max > 0".into());
        }
        if self.grants.window_ms == 0 {
            return Err("grants.window_ms: more than 0".into());
        }
        let c = &self.cdn;
        if c.max_age_s > 86_400 {
            return Err("cdn.max_age_s: at most 86400".into());
        }
        if c.purge_urls.len() > PURGE_URLS_MAX {
            return Err(format!("cdn.purge_urls: at most {PURGE_URLS_MAX}"));
        }
        for u in &c.purge_urls {
            let ok = reqwest::Url::parse(u)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return Err(format!("cdn.purge_urls: {u:?} is not an http(s) URL"));
            }
        }
        if !c.purge_urls.is_empty() && c.purge_token_file.is_none() {
            return Err("cdn.purge_token_file: purges need a token (scope purge)".into());
        }
        let f = &self.forward;
        if !(1..=commerce::command::COMMIT_BATCH_MAX).contains(&f.batch_orders_max)
            || f.batch_bytes_max < 16 * 1024
            || f.pending_age_max_ms < 100
        {
            return Err(format!(
                "forward: batch_orders_max 1 to {}, batch_bytes_max >= 16384, pending_age_max_ms >= 100",
                commerce::command::COMMIT_BATCH_MAX
            ));
        }
        Ok(())
    }

    /// Where the personal data key files are.
    pub fn keys_dir(&self) -> PathBuf {
        sealing::personal::keys_dir(&self.personal_data, &self.certs_dir)
    }

    pub fn edge_id(&self) -> EdgeId {
        EdgeId::new(self.name.as_str()).expect("checked at load")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
region = "ap-singapore"
name = "ap-singapore-1"
listen = "127.0.0.1:0"
certs_dir = "certs"
outbox_path = "data/outbox.redb"
[http]
plain_http = true
[shoppers]
issuer = "https://id.example/"
audience = "storefront"
jwks_file = "jwks.json"
[[cores]]
name = "ap-singapore"
quic = "127.0.0.1:7102"
"#;

    #[test]
    fn loads_resolves_paths_and_refuses_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("edge.toml");
        std::fs::write(&p, GOOD).unwrap();
        let c = util::config::load::<EdgeConfig>(&p).unwrap();
        assert_eq!(c.outbox_path, dir.path().join("data/outbox.redb"));
        assert_eq!(c.shoppers.jwks_file, Some(dir.path().join("jwks.json")));
        assert_eq!(c.edge_id().as_str(), "ap-singapore-1");
        for (bad, why) in [
            (
                GOOD.replace("name = \"ap-singapore-1\"", "name = \"a b\""),
                "name",
            ),
            (
                GOOD.replace("[[cores]]", "typo = 1\n[[cores]]"),
                "unknown field",
            ),
            (
                GOOD.replace(
                    "[[cores]]\nname = \"ap-singapore\"\nquic = \"127.0.0.1:7102\"\n",
                    "",
                ),
                "missing field `cores`",
            ),
            (format!("{GOOD}[limits]\nbody_max_bytes = 10\n"), "limits"),
            (
                GOOD.replace(
                    "jwks_file = \"jwks.json\"",
                    "jwks_url = \"http://id.example/jwks\"",
                ),
                "shoppers.jwks_url",
            ),
        ] {
            std::fs::write(&p, &bad).unwrap();
            let err = util::config::load::<EdgeConfig>(&p)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }

    #[test]
    fn the_example_edges_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster");
        for region in ["cn-shanghai", "ap-singapore", "us-east"] {
            let c =
                util::config::load::<EdgeConfig>(&dir.join(format!("{region}-1.toml"))).unwrap();
            assert_eq!(
                (c.region.as_str(), c.cores[0].name.as_str()),
                (region, region)
            );
            assert_eq!(c.cores.len(), 3);
        }
    }
}
