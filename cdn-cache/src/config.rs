//! A cache's configuration: one TOML file (`tradewind cdn --config FILE`), read by
//! `util::config::load` (units in the names, unknown keys refused, relative paths from the
//! file's directory). `--check-config` loads it and stops.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use http_api::bearer::ScopedToken;
use util::config::{Config, Invalid, resolve};

/// Origins one cache may front.
pub const ORIGINS_MAX: usize = 64;
/// Servers besides its `url` one origin may have.
pub const BACKUPS_MAX: usize = 16;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CdnConfig {
    /// Names this cache in `Via` and `Cache-Status` (a token: letters, digits, `-`, `.`).
    pub name: String,
    /// Where shoppers' requests come in.
    pub http: Listen,
    /// `POST /admin/v1/purge`, `/metrics`, `/healthz`.
    pub admin: Admin,
    pub origins: Vec<OriginConfig>,
    #[serde(default)]
    pub memory: MemorySettings,
    #[serde(default)]
    pub fetch: FetchSettings,
    /// A disk tier behind the memory tier, kept across restarts; none when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskSettings>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSettings {
    /// Its directory, made if need be; one cache's alone.
    pub dir: PathBuf,
    /// What its files hold at most, together.
    pub bytes_max: u64,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Listen {
    /// 0 picks a port; the chosen one is printed.
    pub listen: SocketAddr,
    /// TLS certificate, timeouts, caps, rates, trusted proxies.
    #[serde(default)]
    pub listener: http_api::serve::Settings,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    pub listen: SocketAddr,
    #[serde(default)]
    pub listener: http_api::serve::Settings,
    /// SHA-256 digests of tokens that may purge (`tradewind token new`).
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// Tokens with scopes: `purge` lets one purge.
    #[serde(default)]
    pub tokens: Vec<ScopedToken>,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct OriginConfig {
    /// Names it in metrics and errors.
    pub name: String,
    /// Requests for this host only (any host when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Requests whose path starts with this (the longest prefix wins).
    #[serde(default = "default_prefix")]
    pub path_prefix: String,
    /// `http://` or `https://` host and port, no path: the request's path is appended.
    pub url: String,
    /// More servers of this origin (the region's other edges), in the same form: tried in
    /// turn when the one before cannot be reached, or (GET, HEAD) does not answer in time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
    /// The CA that the origin's certificate is signed by (`ca.pem` of `tradewind certs`);
    /// the system's roots when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
}

fn default_prefix() -> String {
    "/".into()
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemorySettings {
    /// What the memory tier holds at most, bodies and headers counted.
    pub bytes_max: u64,
    /// Larger responses are streamed to the client and not stored.
    pub object_bytes_max: u64,
    /// Variants (by `Vary`) one URL may have stored at once.
    pub variants_max: usize,
    /// A heuristic freshness lifetime (of a response with `Last-Modified` and no explicit
    /// one) is at most this.
    pub heuristic_max_s: u64,
}

impl Default for MemorySettings {
    fn default() -> Self {
        MemorySettings {
            bytes_max: 256 << 20,
            object_bytes_max: 8 << 20,
            variants_max: 16,
            heuristic_max_s: 86_400,
        }
    }
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchSettings {
    pub connect_timeout_ms: u64,
    /// An origin must send a response's header within this.
    pub response_timeout_ms: u64,
    /// And then never wait longer than this for more of its body.
    pub body_idle_timeout_ms: u64,
    /// A request's body (what the cache forwards of a POST) is at most this.
    pub request_body_max_bytes: usize,
    /// Idle keep-alive connections kept to each origin.
    pub idle_connections_per_origin_max: usize,
    /// A URL whose response could not be stored is fetched for each request, without waiting
    /// on another's fetch, for this long (Varnish's hit-for-pass).
    pub pass_s: u64,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            connect_timeout_ms: 3_000,
            response_timeout_ms: 30_000,
            body_idle_timeout_ms: 30_000,
            request_body_max_bytes: 1 << 20,
            idle_connections_per_origin_max: 256,
            pass_s: 120,
        }
    }
}

impl Config for CdnConfig {
    fn resolve(&mut self, base: &Path) {
        if let Some(d) = &mut self.disk {
            resolve(base, &mut d.dir);
        }
        self.http.listener.resolve(base);
        self.admin.listener.resolve(base);
        for o in &mut self.origins {
            if let Some(ca) = &mut o.ca {
                resolve(base, ca);
            }
        }
    }

    fn check(&self) -> Result<(), Invalid> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(Invalid::at("name", "1 to 64 letters, digits, '-' and '.'"));
        }
        self.http
            .listener
            .check("http.listener", self.http.listen)?;
        self.admin
            .listener
            .check("admin.listener", self.admin.listen)?;
        http_api::bearer::admin_tokens(
            &self.admin.token_sha256,
            &self.admin.tokens,
            self.admin.listen,
        )
        .map_err(|e| Invalid::at("admin", e))?;
        if self.origins.is_empty() || self.origins.len() > ORIGINS_MAX {
            return Err(Invalid::at(
                "origins",
                format!("1 to {ORIGINS_MAX} origins"),
            ));
        }
        for (i, o) in self.origins.iter().enumerate() {
            let at = |what: String| Invalid::at(&format!("origins[{i}] ({})", o.name), what);
            if self.origins[..i].iter().any(|p| p.name == o.name) {
                return Err(at("a second origin of this name".into()));
            }
            if !o.path_prefix.starts_with('/') {
                return Err(at("path_prefix must start with '/'".into()));
            }
            if o.backups.len() > BACKUPS_MAX {
                return Err(at(format!("at most {BACKUPS_MAX} backups")));
            }
            for (key, u) in
                std::iter::once(("url", &o.url)).chain(o.backups.iter().map(|b| ("backups", b)))
            {
                let url = reqwest::Url::parse(u).map_err(|e| at(format!("{key}: {e}")))?;
                if !matches!(url.scheme(), "http" | "https")
                    || url.host().is_none()
                    || url.path() != "/"
                    || url.query().is_some()
                {
                    return Err(at(format!(
                        "{key} must be http:// or https:// with a host, and no path or query"
                    )));
                }
            }
            if self.origins[..i]
                .iter()
                .any(|p| p.host == o.host && p.path_prefix == o.path_prefix)
            {
                return Err(at("another origin has the same host and path_prefix".into()));
            }
        }
        let m = &self.memory;
        if !((1 << 20)..=(1 << 40)).contains(&m.bytes_max) {
            return Err(Invalid::at("memory.bytes_max", "1 MiB to 1 TiB"));
        }
        if m.object_bytes_max == 0 || m.object_bytes_max > m.bytes_max / 4 {
            return Err(Invalid::at(
                "memory.object_bytes_max",
                "more than 0 and at most a quarter of memory.bytes_max",
            ));
        }
        if !(1..=1_024).contains(&m.variants_max) {
            return Err(Invalid::at("memory.variants_max", "1 to 1024"));
        }
        if let Some(d) = &self.disk
            && !(4 * m.object_bytes_max.min(1 << 30)..=1 << 50).contains(&d.bytes_max)
        {
            return Err(Invalid::at(
                "disk.bytes_max",
                "at least four times memory.object_bytes_max (or 4 GiB), at most 1 PiB",
            ));
        }
        let f = &self.fetch;
        for (key, ms) in [
            ("fetch.connect_timeout_ms", f.connect_timeout_ms),
            ("fetch.response_timeout_ms", f.response_timeout_ms),
            ("fetch.body_idle_timeout_ms", f.body_idle_timeout_ms),
        ] {
            if !(10..=600_000).contains(&ms) {
                return Err(Invalid::at(key, "10 to 600000"));
            }
        }
        if !(1_024..=1 << 30).contains(&f.request_body_max_bytes) {
            return Err(Invalid::at(
                "fetch.request_body_max_bytes",
                "1 KiB to 1 GiB",
            ));
        }
        if f.pass_s > 86_400 {
            return Err(Invalid::at("fetch.pass_s", "at most 86400"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "r1-cdn"
[http]
listen = "127.0.0.1:0"
listener = { plain_http = true }
[admin]
listen = "127.0.0.1:0"
listener = { plain_http = true }
token_sha256 = ["bf66fea1902142a38bbd8b051e659eb8f38873d6e8945a5a753826581fa74ceb"]
[[origins]]
name = "storefront"
url = "http://127.0.0.1:7111"
[[origins]]
name = "assets"
path_prefix = "/assets/"
url = "https://127.0.0.1:7131"
ca = "certs/ca.pem"
"#;

    fn parse(text: &str) -> Result<CdnConfig, util::config::ConfigError> {
        util::config::parse(text, Path::new("/etc/tw"), "cdn.toml")
    }

    #[test]
    fn a_good_config_loads_and_paths_resolve() {
        let c = parse(GOOD).unwrap();
        assert_eq!(
            c.origins[1].ca.as_deref(),
            Some(Path::new("/etc/tw/certs/ca.pem"))
        );
        assert_eq!(c.memory.bytes_max, 256 << 20);
    }

    #[test]
    fn the_example_loads() {
        let p =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster/cn-shanghai-cdn.toml");
        let c = util::config::load::<CdnConfig>(&p).unwrap();
        assert_eq!(c.origins.len(), 1);
        assert!(c.http.listener.is_tls() && c.admin.listener.is_tls());
    }

    #[test]
    fn bad_values_say_where() {
        for (from, to, key) in [
            ("name = \"r1-cdn\"", "name = \"r1 cdn\"", "name"),
            (
                "url = \"http://127.0.0.1:7111\"",
                "url = \"http://127.0.0.1:7111/x\"",
                "origins[0]",
            ),
            (
                "url = \"http://127.0.0.1:7111\"",
                "url = \"ftp://127.0.0.1\"",
                "origins[0]",
            ),
            (
                "path_prefix = \"/assets/\"",
                "path_prefix = \"assets\"",
                "origins[1]",
            ),
            ("name = \"assets\"", "name = \"storefront\"", "origins[1]"),
            ("token_sha256 = [\"bf66", "token_sha256 = [\"zz66", "admin"),
            (
                "listen = \"127.0.0.1:0\"\nlistener = { plain_http = true }\n[admin]",
                "listen = \"0.0.0.0:80\"\nlistener = { plain_http = true }\n[admin]",
                "http.listener",
            ),
        ] {
            assert!(GOOD.contains(from), "{from}");
            let text = GOOD.replacen(from, to, 1);
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(key), "{to}: {err}");
        }
        let no_token = GOOD.replace(
            "token_sha256 = [\"bf66fea1902142a38bbd8b051e659eb8f38873d6e8945a5a753826581fa74ceb\"]",
            "",
        );
        assert!(parse(&no_token).unwrap_err().to_string().contains("admin"));
        let small = format!("{GOOD}[memory]\nbytes_max = 1048576\nobject_bytes_max = 1048576\n");
        assert!(
            parse(&small)
                .unwrap_err()
                .to_string()
                .contains("object_bytes_max")
        );
    }
}
