//! The router's configuration: one TOML file, read by `util::config::load` (units in the
//! names, unknown keys refused, relative paths taken from the file's own directory), and written
//! from these same types by the demo. `tradewind router --config FILE --check-config` loads it
//! and stops.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use hickory_server::proto::rr::Name;
use ipnet::IpNet;
use util::config::{Config, Invalid, resolve};

/// Regions one router may know (a preference order is a small array per query).
pub const REGIONS_MAX: usize = 32;
/// Edges one region may list.
pub const EDGES_PER_REGION_MAX: usize = 64;
/// Addresses of one family a region's edges may have in all: an A or AAAA answer of them all
/// fits a 512-byte UDP reply (12 AAAA records take 336 bytes).
pub const ADDRESSES_PER_ANSWER_MAX: usize = 12;
/// Networks in the geo table.
pub const NETWORKS_MAX: usize = 100_000;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// The zone this server is authoritative for, e.g. `shop.tradewind.test`.
    pub zone: String,
    /// The storefront names, relative to the zone (`@` is the apex): answered with the edges of
    /// the nearest healthy region.
    #[serde(default = "default_names")]
    pub names: Vec<String>,
    /// The asset names (product images, scripts: what the caches serve), relative to the zone:
    /// answered with the caches of the nearest region that has a healthy one. None by default.
    #[serde(default)]
    pub asset_names: Vec<String>,
    /// TTL of the storefront answers, and of negative answers.
    #[serde(default = "default_ttl_s")]
    pub ttl_s: u32,
    pub dns: DnsSettings,
    pub http: HttpSettings,
    #[serde(default)]
    pub health: HealthSettings,
    #[serde(default)]
    pub geo: GeoSettings,
    pub regions: Vec<RegionConfig>,
}

fn default_names() -> Vec<String> {
    vec!["@".into(), "www".into()]
}

fn default_ttl_s() -> u32 {
    10
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSettings {
    /// UDP and TCP, on the same port (0 picks one; the chosen one is printed).
    pub listen: SocketAddr,
    /// A TCP connection that sends no query for this long is closed.
    #[serde(default = "default_tcp_idle_ms")]
    pub tcp_idle_ms: u64,
    /// TCP connections at once; more are closed as they arrive.
    #[serde(default = "default_tcp_connections_max")]
    pub tcp_connections_max: usize,
    /// The zone's name servers (NS at the apex, with their addresses as glue).
    #[serde(default)]
    pub nameservers: Vec<NameServer>,
    /// The SOA's responsible mailbox, as a name (`hostmaster` is `hostmaster.<zone>`).
    #[serde(default = "default_hostmaster")]
    pub hostmaster: String,
    /// Response-rate limiting of UDP answers (`rrl`).
    #[serde(default)]
    pub rrl: crate::rrl::RrlSettings,
}

impl DnsSettings {
    /// DNS on `listen`, with `nameservers` and the default bounds.
    pub fn new(listen: SocketAddr, nameservers: Vec<NameServer>) -> Self {
        DnsSettings {
            listen,
            tcp_idle_ms: default_tcp_idle_ms(),
            tcp_connections_max: default_tcp_connections_max(),
            nameservers,
            hostmaster: default_hostmaster(),
            rrl: Default::default(),
        }
    }
}

fn default_tcp_idle_ms() -> u64 {
    5_000
}

fn default_tcp_connections_max() -> usize {
    1_024
}

fn default_hostmaster() -> String {
    "hostmaster".into()
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NameServer {
    /// Relative to the zone (`ns1`), or absolute with a final dot (`ns1.example.net.`).
    pub name: String,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// `/v1/route`, `/v1/health`, `/metrics`, `/healthz` (0 picks a port).
    pub listen: SocketAddr,
    /// The listener: TLS certificate, timeouts, caps, rates, trusted proxies.
    #[serde(default)]
    pub listener: http_api::serve::Settings,
}

/// Active checks of every edge's `/healthz`.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSettings {
    /// The CA (PEM) that signs the edges' certificates, for `https` health URLs
    /// (`certs/ca.pem` of `tradewind certs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    pub interval_ms: u64,
    /// A check that takes longer fails.
    pub timeout_ms: u64,
    /// Consecutive failures that take an edge out of the answers.
    pub down_after: u32,
    /// Consecutive successes that put it back.
    pub up_after: u32,
    /// A bound tighter than the edges' own: an edge that has not heard from a core for longer
    /// than this is unhealthy. (One past its own `stale_after_ms` reports no core, and is out
    /// anyway.)
    pub max_staleness_ms: Option<u64>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            ca: None,
            interval_ms: 500,
            timeout_ms: 400,
            down_after: 3,
            up_after: 2,
            max_staleness_ms: None,
        }
    }
}

/// Where clients are.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct GeoSettings {
    /// A MaxMind GeoLite2 / GeoIP2 City (or Country) database, asked for clients the table
    /// does not place.
    pub mmdb: Option<PathBuf>,
    /// ISO country code → region, for database entries without coordinates.
    #[serde(default)]
    pub countries: HashMap<String, String>,
    /// Where a client nothing places goes; without it, the regions in the order listed.
    pub default_region: Option<String>,
    /// CIDR → region or coordinates; the longest prefix that holds the client wins.
    #[serde(default)]
    pub networks: Vec<NetworkEntry>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkEntry {
    pub cidr: IpNet,
    /// Clients in `cidr` belong to this region...
    pub region: Option<String>,
    /// ...or are here, and go to the nearest region.
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RegionConfig {
    pub name: String,
    pub latitude: f64,
    pub longitude: f64,
    /// Where this region's clients go when it has no healthy edge, in order; regions not named
    /// follow, nearest first.
    #[serde(default)]
    pub fallback: Vec<String>,
    pub edges: Vec<EdgeConfig>,
    /// Its caches (`tradewind cdn`), answered for the asset names; their health endpoint is
    /// the cache's admin `/healthz`.
    #[serde(default)]
    pub caches: Vec<EdgeConfig>,
}

/// A server the router answers with: an edge, or a cache.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    pub name: String,
    /// Its health endpoint, e.g. `http://127.0.1.1:7111/healthz`.
    pub health_url: String,
    /// The addresses DNS answers with for it (A and AAAA).
    pub addresses: Vec<IpAddr>,
}

impl Config for RouterConfig {
    fn resolve(&mut self, base: &Path) {
        if let Some(p) = self.geo.mmdb.as_mut() {
            resolve(base, p);
        }
        self.http.listener.resolve(base);
        if let Some(p) = self.health.ca.as_mut() {
            resolve(base, p);
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        self.problems().map_err(Invalid)?;
        self.http.listener.check("http.listener", self.http.listen)
    }
}

impl RouterConfig {
    /// The zone's name, fully qualified.
    pub(crate) fn zone_name(&self) -> Result<Name, String> {
        let mut n = Name::from_ascii(&self.zone).map_err(|e| format!("zone: {e}"))?;
        n.set_fqdn(true);
        Ok(n.to_lowercase())
    }

    /// A name of the zone's: `@` the apex, a relative name under it, or an absolute one.
    pub(crate) fn name_in_zone(&self, relative: &str) -> Result<Name, String> {
        let zone = self.zone_name()?;
        if relative == "@" {
            return Ok(zone);
        }
        let n = Name::from_ascii(relative).map_err(|e| format!("{relative}: {e}"))?;
        if n.is_fqdn() {
            return Ok(n.to_lowercase());
        }
        n.append_domain(&zone)
            .map(|n| n.to_lowercase())
            .map_err(|e| format!("{relative}: {e}"))
    }

    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| r.name == name)
    }

    fn problems(&self) -> Result<(), String> {
        self.dns.rrl.check()?;
        let zone = self.zone_name()?;
        if zone.is_root() {
            return Err("zone: the root is not a zone this router may serve".into());
        }
        if self.names.is_empty() {
            return Err("names: at least one storefront name".into());
        }
        let mut answered = std::collections::HashSet::new();
        for (key, n) in self
            .names
            .iter()
            .map(|n| ("names", n))
            .chain(self.asset_names.iter().map(|n| ("asset_names", n)))
        {
            let name = self.name_in_zone(n).map_err(|e| format!("{key}: {e}"))?;
            if !zone.zone_of(&name) {
                return Err(format!("{key}: {n} is not in the zone {zone}"));
            }
            if !answered.insert(name) {
                return Err(format!("{key}: {n} is named twice"));
            }
        }
        if !self.asset_names.is_empty() && self.regions.iter().all(|r| r.caches.is_empty()) {
            return Err("asset_names: no region has a cache to answer them with".into());
        }
        for ns in &self.dns.nameservers {
            self.name_in_zone(&ns.name)
                .map_err(|e| format!("dns.nameservers: {e}"))?;
        }
        self.name_in_zone(&self.dns.hostmaster)
            .map_err(|e| format!("dns.hostmaster: {e}"))?;
        if self.dns.tcp_idle_ms < 100 || self.dns.tcp_connections_max == 0 {
            return Err("dns: tcp_idle_ms >= 100 and tcp_connections_max >= 1".into());
        }
        if self.ttl_s > 86_400 {
            return Err("ttl_s: at most 86400".into());
        }
        let h = &self.health;
        if h.interval_ms < 50 || h.timeout_ms < 10 || h.down_after == 0 || h.up_after == 0 {
            return Err(
                "health: interval_ms >= 50, timeout_ms >= 10, down_after and up_after >= 1".into(),
            );
        }
        if self.regions.is_empty() || self.regions.len() > REGIONS_MAX {
            return Err(format!("regions: 1 to {REGIONS_MAX}"));
        }
        let mut edges = std::collections::HashSet::new();
        for (i, r) in self.regions.iter().enumerate() {
            if self.region_index(&r.name) != Some(i) {
                return Err(format!("regions: {} is listed twice", r.name));
            }
            check_point(r.latitude, r.longitude).map_err(|e| format!("region {}: {e}", r.name))?;
            for f in &r.fallback {
                if self.region_index(f).is_none() || *f == r.name {
                    return Err(format!(
                        "region {}: fallback {f} is not another region",
                        r.name
                    ));
                }
            }
            if r.edges.is_empty() || r.edges.len() > EDGES_PER_REGION_MAX {
                return Err(format!(
                    "region {}: 1 to {EDGES_PER_REGION_MAX} edges",
                    r.name
                ));
            }
            if r.caches.len() > EDGES_PER_REGION_MAX {
                return Err(format!(
                    "region {}: at most {EDGES_PER_REGION_MAX} caches",
                    r.name
                ));
            }
            for (what, servers) in [("edge", &r.edges), ("cache", &r.caches)] {
                for e in servers {
                    if !edges.insert(e.name.as_str()) {
                        return Err(format!("{what} {} is listed twice", e.name));
                    }
                    let url = reqwest::Url::parse(&e.health_url)
                        .map_err(|err| format!("{what} {}: health_url: {err}", e.name))?;
                    if !matches!(url.scheme(), "http" | "https") {
                        return Err(format!("{what} {}: health_url must be http(s)", e.name));
                    }
                    if e.addresses.is_empty() {
                        return Err(format!("{what} {}: at least one address", e.name));
                    }
                }
                for v6 in [false, true] {
                    let mut of_family: Vec<&IpAddr> = servers
                        .iter()
                        .flat_map(|e| &e.addresses)
                        .filter(|a| a.is_ipv6() == v6)
                        .collect();
                    of_family.sort();
                    of_family.dedup();
                    if of_family.len() > ADDRESSES_PER_ANSWER_MAX {
                        return Err(format!(
                            "region {}: at most {ADDRESSES_PER_ANSWER_MAX} IPv{} addresses in all its {what}s",
                            r.name,
                            if v6 { 6 } else { 4 }
                        ));
                    }
                }
            }
        }
        let g = &self.geo;
        if g.networks.len() > NETWORKS_MAX {
            return Err(format!("geo.networks: at most {NETWORKS_MAX}"));
        }
        for n in &g.networks {
            match (&n.region, n.latitude, n.longitude) {
                (Some(r), None, None) => {
                    if self.region_index(r).is_none() {
                        return Err(format!("geo.networks {}: no region {r}", n.cidr));
                    }
                }
                (None, Some(lat), Some(lon)) => {
                    check_point(lat, lon).map_err(|e| format!("geo.networks {}: {e}", n.cidr))?
                }
                _ => {
                    return Err(format!(
                        "geo.networks {}: a region, or latitude and longitude",
                        n.cidr
                    ));
                }
            }
        }
        for (country, region) in &g.countries {
            if self.region_index(region).is_none() {
                return Err(format!("geo.countries {country}: no region {region}"));
            }
        }
        if let Some(r) = &g.default_region
            && self.region_index(r).is_none()
        {
            return Err(format!("geo.default_region: no region {r}"));
        }
        Ok(())
    }
}

fn check_point(lat: f64, lon: f64) -> Result<(), String> {
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err("latitude must be -90 to 90 and longitude -180 to 180".into());
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const GOOD: &str = r#"
zone = "shop.tradewind.test"
[dns]
listen = "127.0.0.1:0"
nameservers = [{ name = "ns1", addresses = ["127.0.0.1"] }]
[http]
listen = "127.0.0.1:0"
[http.listener]
plain_http = true
[geo]
networks = [
  { cidr = "192.0.2.0/24", region = "cn-shanghai" },
  { cidr = "198.51.100.0/24", region = "ap-singapore" },
  { cidr = "203.0.113.0/24", region = "us-east" },
  { cidr = "10.9.0.0/16", latitude = 48.85, longitude = 2.35 },
]
[[regions]]
name = "cn-shanghai"
latitude = 31.23
longitude = 121.47
edges = [{ name = "cn-shanghai-1", health_url = "http://127.0.1.1:7111/healthz", addresses = ["127.0.1.1"] }]
[[regions]]
name = "ap-singapore"
latitude = 1.35
longitude = 103.82
edges = [{ name = "ap-singapore-1", health_url = "http://127.0.2.1:7111/healthz", addresses = ["127.0.2.1", "::1"] }]
[[regions]]
name = "us-east"
latitude = 38.9
longitude = -77.04
fallback = ["ap-singapore"]
edges = [{ name = "us-east-1", health_url = "http://127.0.3.1:7111/healthz", addresses = ["127.0.3.1"] }]
"#;

    pub fn good() -> RouterConfig {
        util::config::parse(GOOD, Path::new("."), "good").unwrap()
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = good();
        assert_eq!(c.ttl_s, 10);
        assert_eq!(c.names, ["@", "www"]);
        assert_eq!(c.health.interval_ms, 500);
        assert_eq!(c.health.down_after, 3);
        assert_eq!(
            c.name_in_zone("www").unwrap().to_ascii(),
            "www.shop.tradewind.test."
        );
        assert_eq!(
            c.name_in_zone("@").unwrap().to_ascii(),
            "shop.tradewind.test."
        );
    }

    #[test]
    fn the_example_router_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster/router.toml");
        let c = util::config::load::<RouterConfig>(&p).unwrap();
        assert_eq!(c.regions.len(), 3);
        assert_eq!(c.geo.networks.len(), 4);
        crate::geo::Geo::new(&c).unwrap();
    }

    #[test]
    fn bad_configs_are_refused_with_the_reason() {
        for (bad, why) in [
            (
                GOOD.replace("zone = \"shop.tradewind.test\"", "zone = \".\""),
                "root",
            ),
            (GOOD.replace("[http]", "typo = 1\n[http]"), "unknown field"),
            (
                GOOD.replace("[dns]", "asset_names = [\"assets\"]\n[dns]"),
                "no region has a cache",
            ),
            (
                GOOD.replace("[dns]", "asset_names = [\"www\"]\n[dns]"),
                "named twice",
            ),
            (
                GOOD.replace("region = \"us-east\" }", "region = \"mars\" }"),
                "no region mars",
            ),
            (
                GOOD.replace("latitude = 48.85", "latitude = 98.85"),
                "latitude",
            ),
            (
                GOOD.replace("fallback = [\"ap-singapore\"]", "fallback = [\"us-east\"]"),
                "fallback",
            ),
            (
                GOOD.replace("addresses = [\"127.0.3.1\"]", "addresses = []"),
                "at least one address",
            ),
            (
                GOOD.replace(
                    "addresses = [\"127.0.3.1\"]",
                    &format!(
                        "addresses = [{}]",
                        (1..=13)
                            .map(|i| format!("\"10.0.0.{i}\""))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ),
                "at most 12 IPv4",
            ),
            (
                GOOD.replace("http://127.0.3.1:7111/healthz", "ftp://x/"),
                "http(s)",
            ),
            (
                GOOD.replace("name = \"us-east-1\"", "name = \"cn-shanghai-1\""),
                "twice",
            ),
            (
                GOOD.replace("[dns]", "names = []\n[dns]"),
                "storefront name",
            ),
            (
                GOOD.replace("[dns]", "names = [\"www.elsewhere.test.\"]\n[dns]"),
                "not in the zone",
            ),
        ] {
            let err = util::config::parse::<RouterConfig>(&bad, Path::new("."), "bad")
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
