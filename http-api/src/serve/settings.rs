//! A listener's settings, the same table in every part's config (`[http]` of an edge or a
//! router, `[admin.http]` of a core): TLS or, on loopback only, plain HTTP; timeouts; caps on
//! connections; the rate each client may ask at; which proxies may say who the client is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use util::config::{Invalid, resolve};

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The certificate chain (PEM, leaf first) and its private key (PEM) the listener serves
    /// TLS 1.3 with. Both files are read again when either changes, and on SIGHUP; a pair that
    /// does not load is logged and the one in use is kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP instead: allowed only on a loopback address, and only when said here.
    pub plain_http: bool,
    /// `Strict-Transport-Security: max-age` on every TLS answer; 0 sends none.
    pub hsts_max_age_s: u64,
    /// A client must finish its TLS handshake within this.
    pub handshake_timeout_ms: u64,
    /// A client must send a request's whole header within this, counted from the connection's
    /// start or the previous answer (what a slowloris client never does).
    pub header_read_timeout_ms: u64,
    /// A connection with no byte read or written for this long is closed.
    pub idle_timeout_ms: u64,
    /// Open connections on this listener, and from one client, at most; past them a new
    /// connection is closed at once. A client is an IPv4 address or an IPv6 /64, the block a
    /// single subscriber is given.
    pub connections_max: usize,
    pub connections_per_client_max: usize,
    /// Requests per second one client may make, and the burst it may make at once; past them,
    /// 429 with Retry-After.
    pub client_rate_per_s: u32,
    pub client_burst: u32,
    /// Proxies (addresses or CIDRs) whose `X-Forwarded-For` names the client. A request that
    /// carries one from any other address is refused, so that a spoofed header is seen rather
    /// than believed or silently dropped; a trusted proxy is not held to the per-client cap on
    /// connections (many clients come through it).
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            tls_cert: None,
            tls_key: None,
            plain_http: false,
            // A year, as the HSTS preload list asks.
            hsts_max_age_s: 31_536_000,
            handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            connections_max: 16_384,
            // A browser opens six per host; an office behind one address, a few hundred.
            connections_per_client_max: 256,
            // A shopper's browser makes tens of requests a second at most; a whole office
            // behind one address, a few hundred.
            client_rate_per_s: 500,
            client_burst: 1_000,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Settings {
    /// Settings for plain HTTP (loopback only): tests and tools that run on one machine.
    pub fn plain() -> Self {
        Settings {
            plain_http: true,
            ..Settings::default()
        }
    }

    /// Settings for TLS with this certificate and key.
    pub fn tls(cert: PathBuf, key: PathBuf) -> Self {
        Settings {
            tls_cert: Some(cert),
            tls_key: Some(key),
            ..Settings::default()
        }
    }

    pub fn resolve(&mut self, base: &Path) {
        for p in [&mut self.tls_cert, &mut self.tls_key]
            .into_iter()
            .flatten()
        {
            resolve(base, p);
        }
    }

    /// Whether it serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The scheme of URLs to this listener: `https`, or `http` for plain HTTP.
    pub fn scheme(&self) -> &'static str {
        if self.is_tls() { "https" } else { "http" }
    }

    /// What the types cannot say; `key` names the table in errors (`http`, `admin.http`).
    pub fn check(&self, key: &str, listen: SocketAddr) -> Result<(), Invalid> {
        let at = |field: &str, what: String| Invalid::at(&format!("{key}.{field}"), what);
        match (&self.tls_cert, &self.tls_key, self.plain_http) {
            (Some(_), Some(_), false) => {}
            (Some(_), None, _) | (None, Some(_), _) => {
                return Err(at("tls_key", "tls_cert and tls_key go together".into()));
            }
            (Some(_), Some(_), true) => {
                return Err(at(
                    "plain_http",
                    "either TLS (tls_cert, tls_key) or plain_http, not both".into(),
                ));
            }
            (None, None, false) => {
                return Err(at(
                    "tls_cert",
                    "no TLS certificate: set tls_cert and tls_key (`tradewind certs server`), or plain_http = true on a loopback address".into(),
                ));
            }
            (None, None, true) if !listen.ip().is_loopback() => {
                return Err(at(
                    "plain_http",
                    format!(
                        "plain HTTP is served on loopback addresses only, and {listen} is not one: set tls_cert and tls_key"
                    ),
                ));
            }
            (None, None, true) => {}
        }
        for (field, ms) in [
            ("handshake_timeout_ms", self.handshake_timeout_ms),
            ("header_read_timeout_ms", self.header_read_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if !(100..=3_600_000).contains(&ms) {
                return Err(at(field, "100 to 3600000".into()));
            }
        }
        if self.idle_timeout_ms < self.header_read_timeout_ms {
            return Err(at(
                "idle_timeout_ms",
                "at least header_read_timeout_ms".into(),
            ));
        }
        if self.connections_max == 0 || self.connections_max > 1_000_000 {
            return Err(at("connections_max", "1 to 1000000".into()));
        }
        if self.connections_per_client_max == 0
            || self.connections_per_client_max > self.connections_max
        {
            return Err(at(
                "connections_per_client_max",
                "1 to connections_max".into(),
            ));
        }
        if self.client_rate_per_s == 0 || self.client_burst == 0 {
            return Err(at(
                "client_rate_per_s",
                "client_rate_per_s and client_burst more than 0".into(),
            ));
        }
        if self.trusted_proxies.len() > 1_024 {
            return Err(at("trusted_proxies", "at most 1024".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_http_only_when_said_and_only_on_loopback() {
        let none = Settings::default();
        let err = none.check("http", addr("127.0.0.1:0")).unwrap_err();
        assert!(err.0.contains("http.tls_cert"), "{err}");
        let plain = Settings::plain();
        plain.check("http", addr("127.0.0.1:0")).unwrap();
        plain.check("http", addr("[::1]:0")).unwrap();
        for public in ["0.0.0.0:443", "192.0.2.1:80", "[::]:443"] {
            let err = plain.check("admin.http", addr(public)).unwrap_err();
            assert!(err.0.starts_with("admin.http.plain_http"), "{err}");
        }
        let tls = Settings::tls("a.pem".into(), "a.key".into());
        tls.check("http", addr("0.0.0.0:443")).unwrap();
        let both = Settings {
            plain_http: true,
            ..tls.clone()
        };
        assert!(both.check("http", addr("127.0.0.1:0")).is_err());
        let half = Settings {
            tls_key: None,
            ..tls
        };
        assert!(half.check("http", addr("127.0.0.1:0")).is_err());
    }

    #[test]
    fn bounds_are_checked() {
        let ok = Settings::plain();
        for bad in [
            Settings {
                header_read_timeout_ms: 0,
                ..ok.clone()
            },
            Settings {
                idle_timeout_ms: 1_000,
                header_read_timeout_ms: 2_000,
                ..ok.clone()
            },
            Settings {
                connections_per_client_max: 0,
                ..ok.clone()
            },
            Settings {
                connections_per_client_max: ok.connections_max + 1,
                ..ok.clone()
            },
            Settings {
                client_burst: 0,
                ..ok.clone()
            },
        ] {
            assert!(bad.check("http", addr("127.0.0.1:0")).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths_resolve_from_the_file() {
        let mut s = Settings::tls("certs/a.pem".into(), "/abs/a.key".into());
        s.resolve(Path::new("/etc/tradewind"));
        assert_eq!(s.tls_cert.unwrap(), Path::new("/etc/tradewind/certs/a.pem"));
        assert_eq!(s.tls_key.unwrap(), Path::new("/abs/a.key"));
    }
}
