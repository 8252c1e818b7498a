//! The origins a cache fronts and how it reaches them: each is chosen by the request's host
//! (when the origin names one) and the longest matching path prefix, and is reached over one
//! pooled client (HTTP/1.1 keep-alive, or HTTP/2 by ALPN over TLS), with a time limit on the
//! connection, on the response's header and on every wait for more of its body. An origin may
//! have several servers (a region's edges): a request goes to the one that answered last, and
//! to the next when it cannot be reached (any method: nothing was sent) or, for GET and HEAD,
//! when it does not answer in time.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use bytes::{Bytes, BytesMut};

use crate::config::{FetchSettings, OriginConfig};

/// Fields that describe one connection, not the message (RFC 9110 §7.6.1), which a proxy
/// never forwards, with `Proxy-Connection` and `Keep-Alive` that old clients still send.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `headers` without hop-by-hop fields and those its `Connection` lists.
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let listed: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if !HOP_BY_HOP.contains(&n) && !listed.iter().any(|l| l == n) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Why the origin gave no usable response.
#[derive(Debug, thiserror::Error)]
pub enum OriginError {
    #[error("origin {origin} unreachable: {why}")]
    Unreachable { origin: String, why: String },
    #[error("origin {origin} did not answer within {ms} ms")]
    Timeout { origin: String, ms: u64 },
    #[error("origin {origin} sent a broken response: {why}")]
    Broken { origin: String, why: String },
}

impl fault::Fault for OriginError {
    fn kind(&self) -> fault::Kind {
        match self {
            OriginError::Unreachable { .. } => fault::Kind::OriginUnreachable,
            OriginError::Timeout { .. } => fault::Kind::OriginTimeout,
            OriginError::Broken { .. } => fault::Kind::OriginBroken,
        }
    }
}

/// A response from an origin: its header, and its body whole when it fit `store_max`, else
/// what was read of it and the rest to stream.
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
    pub request_time: SystemTime,
    pub response_time: SystemTime,
}

pub enum Body {
    Whole(Bytes),
    /// Too large to store: the part read, and the response to read the rest from.
    Streaming(Bytes, reqwest::Response),
}

/// One origin.
pub struct Origin {
    pub name: String,
    host: Option<String>,
    prefix: String,
    /// Its servers' base URLs, the first the config's `url`, then its `backups`.
    bases: Vec<String>,
    /// The server that answered last: requests go there first.
    current: AtomicUsize,
    client: reqwest::Client,
    settings: FetchSettings,
}

/// Every origin of a cache, in the order they are chosen by.
pub struct Origins {
    list: Vec<Origin>,
}

impl Origins {
    pub fn new(configs: &[OriginConfig], settings: &FetchSettings) -> anyhow::Result<Origins> {
        let mut list = Vec::new();
        for c in configs {
            let client = http_api::client::builder(c.ca.as_deref())?
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(Duration::from_millis(settings.connect_timeout_ms))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(settings.idle_connections_per_origin_max)
                .build()?;
            list.push(Origin {
                name: c.name.clone(),
                host: c.host.as_ref().map(|h| h.to_ascii_lowercase()),
                prefix: c.path_prefix.clone(),
                bases: std::iter::once(&c.url)
                    .chain(&c.backups)
                    .map(|u| u.trim_end_matches('/').to_owned())
                    .collect(),
                current: AtomicUsize::new(0),
                client,
                settings: settings.clone(),
            });
        }
        // Longest prefix first, and an origin for one host before one for any.
        list.sort_by(|a, b| {
            (b.host.is_some(), b.prefix.len()).cmp(&(a.host.is_some(), a.prefix.len()))
        });
        Ok(Origins { list })
    }

    /// The origin that serves `path` on `host` (its place, for `at`).
    pub fn route(&self, host: &str, path: &str) -> Option<usize> {
        let host = host.split(':').next().unwrap_or(host);
        self.list.iter().position(|o| {
            o.host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(host))
                && path.starts_with(&o.prefix)
        })
    }

    /// The origin `route` gave the place of.
    pub fn at(&self, i: usize) -> &Origin {
        &self.list[i]
    }

    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|o| o.name.clone()).collect()
    }
}

impl Origin {
    /// Sends the request (`headers` already the ones to forward) for `path_and_query`, and
    /// reads the response's body whole up to `store_max` bytes.
    pub async fn fetch(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: Bytes,
        store_max: usize,
    ) -> Result<Fetched, OriginError> {
        let request_time = SystemTime::now();
        let limit = self.settings.response_timeout_ms;
        let safe = matches!(method, Method::GET | Method::HEAD);
        let first = self.current.load(Ordering::Relaxed);
        let n = self.bases.len();
        let mut tried = 0;
        let mut res = loop {
            let at = (first + tried) % n;
            let request = self
                .client
                .request(
                    method.clone(),
                    format!("{}{path_and_query}", self.bases[at]),
                )
                .headers(headers.clone())
                .body(body.clone());
            let failed =
                match tokio::time::timeout(Duration::from_millis(limit), request.send()).await {
                    Ok(Ok(res)) => {
                        self.current.store(at, Ordering::Relaxed);
                        break res;
                    }
                    Err(_) => (self.timeout(limit), safe),
                    Ok(Err(e)) => (self.failed(&e), e.is_connect() || safe),
                };
            tried += 1;
            match failed {
                (e, true) if tried < n => {
                    tracing::warn!(error = %e, server = self.bases[at], "an origin server failed; trying the next");
                }
                (e, _) => return Err(e),
            }
        };
        let response_time = SystemTime::now();
        let status = res.status();
        let mut headers = end_to_end(res.headers());
        if !headers.contains_key(header::DATE) {
            // A recipient with a clock adds the Date a response lacks (RFC 9110 §6.6.1).
            if let Ok(d) = HeaderValue::from_str(&httpdate::fmt_http_date(response_time)) {
                headers.insert(header::DATE, d);
            }
        }
        let body = if method == Method::HEAD {
            Body::Whole(Bytes::new())
        } else if res.content_length().is_some_and(|n| n > store_max as u64) {
            Body::Streaming(Bytes::new(), res)
        } else {
            let mut read = BytesMut::new();
            loop {
                match self.chunk(&mut res).await? {
                    None => break Body::Whole(read.freeze()),
                    Some(c) if read.len() + c.len() > store_max => {
                        read.extend_from_slice(&c);
                        break Body::Streaming(read.freeze(), res);
                    }
                    Some(c) => read.extend_from_slice(&c),
                }
            }
        };
        Ok(Fetched {
            status,
            headers,
            body,
            request_time,
            response_time,
        })
    }

    /// The next piece of a response's body, waiting at most the idle limit for it.
    pub async fn chunk(&self, res: &mut reqwest::Response) -> Result<Option<Bytes>, OriginError> {
        let limit = self.settings.body_idle_timeout_ms;
        match tokio::time::timeout(Duration::from_millis(limit), res.chunk()).await {
            Err(_) => Err(self.timeout(limit)),
            Ok(Err(e)) => Err(OriginError::Broken {
                origin: self.name.clone(),
                why: chain(&e),
            }),
            Ok(Ok(c)) => Ok(c),
        }
    }

    /// The longest wait for more of a body.
    pub fn body_idle(&self) -> Duration {
        Duration::from_millis(self.settings.body_idle_timeout_ms)
    }

    fn timeout(&self, ms: u64) -> OriginError {
        OriginError::Timeout {
            origin: self.name.clone(),
            ms,
        }
    }

    fn failed(&self, e: &reqwest::Error) -> OriginError {
        if e.is_timeout() {
            return self.timeout(self.settings.connect_timeout_ms);
        }
        let why = chain(e);
        if e.is_connect() {
            OriginError::Unreachable {
                origin: self.name.clone(),
                why,
            }
        } else {
            OriginError::Broken {
                origin: self.name.clone(),
                why,
            }
        }
    }
}

/// A body streamed through: `head` (already read), then the rest of `res`, each wait for more
/// at most `idle`; the bytes are counted in `served`. An origin that stalls or breaks off ends
/// the stream with an error, so the client sees a truncated response, never a complete-looking
/// one.
pub fn stream(
    head: Bytes,
    res: reqwest::Response,
    idle: Duration,
    served: http_api::metrics::Counter,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::unfold((Some(head), Some(res)), move |(head, res)| {
        let served = served.clone();
        async move {
            if let Some(h) = head.filter(|h| !h.is_empty()) {
                served.inc_by(h.len() as u64);
                return Some((Ok(h), (None, res)));
            }
            let mut res = res?;
            match tokio::time::timeout(idle, res.chunk()).await {
                Ok(Ok(Some(c))) => {
                    served.inc_by(c.len() as u64);
                    Some((Ok(c), (None, Some(res))))
                }
                Ok(Ok(None)) => None,
                Ok(Err(e)) => Some((Err(std::io::Error::other(e)), (None, None))),
                Err(_) => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the origin stopped sending",
                    )),
                    (None, None),
                )),
            }
        }
    })
}

/// An error and its sources, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// The header to send an origin for a client's request: its end-to-end fields without `Host`
/// (the client sets the origin's), with the client named in `X-Forwarded-For` (this cache
/// being the proxy the origin trusts) and this cache in `Via`.
pub fn forwarded(headers: &HeaderMap, client: IpAddr, via: &HeaderValue) -> HeaderMap {
    let mut out = end_to_end(headers);
    out.remove(header::HOST);
    out.remove(HeaderName::from_static("forwarded"));
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        out.insert(HeaderName::from_static("x-forwarded-for"), v);
    }
    out.append(header::VIA, via.clone());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_not_forwarded() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("connection", "close, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("accept", "text/html"),
            ("accept", "*/*"),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["accept"]);
        assert_eq!(out.get_all("accept").iter().count(), 2);
    }
}
