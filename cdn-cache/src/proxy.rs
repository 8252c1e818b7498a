//! The cache's answer to each request on its public listener.
//!
//! - GET and HEAD look for a stored response the request selects (`store`), and serve it if
//!   `freshness` says it may be; else one request per URL goes to the origin and the others
//!   wait for it (`Turn`: request collapsing), and what comes back is stored if it may be,
//!   validated with a conditional request when something is stored. `stale-while-revalidate`
//!   serves the stored response and validates it in the background; `stale-if-error` serves
//!   it when the origin fails.
//! - Conditional requests (`If-None-Match`, `If-Modified-Since`) and one byte range are
//!   answered from what is stored; the origin is asked for whole responses only.
//! - A URL whose response could not be stored is passed to the origin for a while, without
//!   waiting on others (`pass`); so are other methods, and a successful unsafe one
//!   invalidates what is stored for its URL and the `Location` and `Content-Location` it
//!   names on the same host (RFC 9111 §4.4).
//! - Responses too large to store are streamed through.
//!
//! Every answer carries `Age` (when stored), `Via` and `Cache-Status` (RFC 9211).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_api::Problem;
use http_api::serve::ClientAddr;
use tokio::sync::watch;

use crate::config::CdnConfig;
use crate::directives::Directives;
use crate::freshness::{self, Freshness, Reuse};
use crate::metrics::{Metrics, Outcome};
use crate::origin::{self, Fetched, Origins};
use crate::range::{self, Ranged};
use crate::store::{PurgeMode, SURROGATE_KEY_MAX_BYTES, SURROGATE_KEYS_MAX, Store, Stored, disk};

/// URLs remembered as not storable (hit-for-pass) at most.
const PASS_MAX: u64 = 100_000;

const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
/// Directives for this cache (`directives`), kept with what is stored, never passed on.
const SURROGATE_CONTROL: HeaderName = HeaderName::from_static("surrogate-control");

/// One region's cache: what it holds, its origins, the fetches in flight.
pub struct Cache {
    name: String,
    via: HeaderValue,
    pub store: Store,
    pub origins: Origins,
    flights: Mutex<HashMap<String, watch::Receiver<bool>>>,
    pass: moka::sync::Cache<String, ()>,
    pub metrics: Metrics,
    object_max: usize,
    body_max: usize,
    heuristic_max: Duration,
    /// How long a request waits on another's fetch before fetching itself.
    wait_max: Duration,
}

/// A request as the cache sees it.
#[derive(Clone)]
struct Ask {
    method: Method,
    headers: HeaderMap,
    path_and_query: String,
    key: String,
    origin: usize,
    client: IpAddr,
    directives: Directives,
    pragma_no_cache: bool,
    arrived: SystemTime,
}

/// The one fetch of a URL in flight: when it ends (or is dropped), those waiting are woken.
struct Flight {
    cache: Arc<Cache>,
    key: String,
    done: watch::Sender<bool>,
}

impl Drop for Flight {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.cache.flights.lock() {
            flights.remove(&self.key);
        }
        let _ = self.done.send(true);
    }
}

enum Turn {
    Lead(Flight),
    Wait(watch::Receiver<bool>),
}

/// An answer and how it was made.
struct Answer {
    response: Response,
    outcome: Outcome,
    body_bytes: usize,
}

impl Cache {
    /// The cache `config` describes, its disk tier (if any) opened and indexed.
    pub fn new(config: &CdnConfig) -> anyhow::Result<Arc<Cache>> {
        let f = &config.fetch;
        let m = &config.memory;
        let heuristic_max = Duration::from_secs(m.heuristic_max_s);
        let disk = config.disk.as_ref().map(|d| disk::Settings {
            dir: d.dir.clone(),
            bytes_max: d.bytes_max,
            object_bytes_max: m.object_bytes_max,
            heuristic_max,
        });
        Ok(Arc::new(Cache {
            name: config.name.clone(),
            via: HeaderValue::from_str(&format!("1.1 {}", config.name))?,
            store: Store::new(m.bytes_max, m.variants_max, disk)?,
            origins: Origins::new(&config.origins, f)?,
            flights: Mutex::new(HashMap::new()),
            pass: moka::sync::Cache::builder()
                .max_capacity(PASS_MAX)
                .time_to_live(Duration::from_secs(f.pass_s.max(1)))
                .build(),
            metrics: Metrics::new(),
            object_max: usize::try_from(config.memory.object_bytes_max).unwrap_or(usize::MAX),
            body_max: f.request_body_max_bytes,
            heuristic_max,
            wait_max: Duration::from_millis(f.response_timeout_ms + f.body_idle_timeout_ms),
        }))
    }

    /// The cache key of `path_and_query` on `host`.
    pub fn key(host: &str, path_and_query: &str) -> String {
        format!("{}{path_and_query}", host.to_ascii_lowercase())
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request) -> Response {
        let started = Instant::now();
        let client = req
            .extensions()
            .get::<ClientAddr>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0);
        let (parts, body) = req.into_parts();
        let host = parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .unwrap_or("")
            .to_owned();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let answer = match self.origins.route(&host, parts.uri.path()) {
            None => Answer::problem(Problem::new(
                fault::Kind::NotFound,
                "no origin of this cache serves that host and path",
            )),
            Some(origin) => {
                let directives = Directives::of(&parts.headers, "cache-control");
                let pragma_no_cache = !parts.headers.contains_key(header::CACHE_CONTROL)
                    && parts
                        .headers
                        .get_all(header::PRAGMA)
                        .iter()
                        .any(|v| v.to_str().is_ok_and(|v| v.contains("no-cache")));
                let ask = Ask {
                    key: Cache::key(&host, &path_and_query),
                    method: parts.method.clone(),
                    headers: parts.headers,
                    path_and_query,
                    origin,
                    client,
                    directives,
                    pragma_no_cache,
                    arrived: SystemTime::now(),
                };
                match ask.method {
                    Method::GET | Method::HEAD => self.cached(ask).await,
                    Method::CONNECT | Method::TRACE => Answer::problem(Problem::new(
                        fault::Kind::MethodNotAllowed,
                        "this cache does not take CONNECT or TRACE",
                    )),
                    _ => match axum::body::to_bytes(body, self.body_max).await {
                        Ok(body) => self.forward(&ask, body).await,
                        Err(_) => Answer::problem(Problem::new(
                            fault::Kind::BodyTooLarge,
                            format!("a request body is at most {} bytes here", self.body_max),
                        )),
                    },
                }
            }
        };
        self.metrics.answered(answer.outcome, answer.body_bytes);
        tracing::info!(
            target: "access",
            method = %parts.method,
            host,
            path = parts.uri.path(),
            status = answer.response.status().as_u16(),
            cache = answer.outcome.name(),
            bytes = answer.body_bytes,
            ms = started.elapsed().as_millis() as u64,
        );
        answer.response
    }

    /// GET and HEAD: from storage when it may, else through one fetch per URL.
    async fn cached(self: &Arc<Self>, ask: Ask) -> Answer {
        let mut waited = false;
        loop {
            let now = SystemTime::now();
            let stored = self.store.find(&ask.key, &ask.headers).await;
            if let Some(s) = &stored {
                // What a fetch brought after this request arrived is as good as validated.
                let reuse = if s.freshness.response_time >= ask.arrived {
                    Reuse::Fresh
                } else {
                    s.freshness
                        .reuse(&ask.directives, ask.pragma_no_cache, now, s.purged_at())
                };
                match reuse {
                    Reuse::Fresh => {
                        let outcome = if s.freshness.ttl_s(now, s.purged_at()) < 0 {
                            Outcome::Stale
                        } else {
                            Outcome::Hit
                        };
                        return self.serve_stored(s, &ask, outcome, now, None);
                    }
                    Reuse::WhileRevalidating => {
                        if let Turn::Lead(flight) = self.turn(&ask.key) {
                            let (cache, ask, s) = (Arc::clone(self), ask.clone(), Arc::clone(s));
                            tokio::spawn(async move {
                                cache.fetch(&ask, Some(s), Some(flight)).await;
                            });
                        }
                        return self.serve_stored(s, &ask, Outcome::Stale, now, None);
                    }
                    Reuse::Validate => {}
                }
            }
            if ask.directives.only_if_cached {
                return Answer::problem(Problem::new(
                    fault::Kind::NotCached,
                    "only-if-cached, and nothing stored may be served",
                ));
            }
            if !waited && self.pass.contains_key(&ask.key) {
                return self.forward(&ask, Bytes::new()).await;
            }
            match self.turn(&ask.key) {
                Turn::Lead(flight) => return self.fetch(&ask, stored, Some(flight)).await,
                Turn::Wait(mut done) if !waited => {
                    self.metrics.collapsed.inc();
                    let _ = tokio::time::timeout(self.wait_max, done.wait_for(|d| *d)).await;
                    waited = true;
                }
                Turn::Wait(_) => return self.fetch(&ask, stored, None).await,
            }
        }
    }

    fn turn(self: &Arc<Self>, key: &str) -> Turn {
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = flights.get(key) {
            return Turn::Wait(done.clone());
        }
        let (done, waiting) = watch::channel(false);
        flights.insert(key.to_owned(), waiting);
        Turn::Lead(Flight {
            cache: Arc::clone(self),
            key: key.to_owned(),
            done,
        })
    }

    /// Fetches the whole response for `ask` (conditionally, when `stored` has validators),
    /// stores it if it may, and answers from it; `flight` ends when this does.
    async fn fetch(
        &self,
        ask: &Ask,
        stored: Option<Arc<Stored>>,
        flight: Option<Flight>,
    ) -> Answer {
        let _flight = flight;
        let origin = self.origins.at(ask.origin);
        let mark = self.store.mark();
        let mut headers = origin::forwarded(&ask.headers, ask.client, &self.via);
        // Conditions and ranges are answered here, from the whole response.
        for h in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_RANGE,
            header::RANGE,
        ] {
            headers.remove(h);
        }
        let validating = stored.clone().filter(|s| {
            s.status == StatusCode::OK
                && (s.headers.contains_key(header::ETAG)
                    || s.headers.contains_key(header::LAST_MODIFIED))
        });
        if let Some(s) = &validating {
            if let Some(etag) = s.headers.get(header::ETAG) {
                headers.insert(header::IF_NONE_MATCH, etag.clone());
            }
            if let Some(lm) = s.headers.get(header::LAST_MODIFIED) {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        self.metrics.origin_fetches.inc();
        let fetched = origin
            .fetch(
                Method::GET,
                &ask.path_and_query,
                headers,
                Bytes::new(),
                self.object_max,
            )
            .await;
        let now = SystemTime::now();
        let stale_ok = |s: &Stored| {
            s.freshness
                .serves_on_error(&ask.directives, now, s.purged_at())
        };
        let f = match fetched {
            Err(e) => {
                self.metrics.origin_errors.inc();
                tracing::warn!(error = %e, key = ask.key, "origin fetch failed");
                return match &stored {
                    Some(s) if stale_ok(s) => self.serve_stored(s, ask, Outcome::Stale, now, None),
                    _ => Answer::problem(Problem::from_fault(&e)),
                };
            }
            Ok(f) => f,
        };
        if let Some(s) = &stored
            && f.status.is_server_error()
            && stale_ok(s)
        {
            return self.serve_stored(s, ask, Outcome::Stale, now, None);
        }
        if let Some(s) = &validating
            && f.status == StatusCode::NOT_MODIFIED
        {
            let (headers, keys) = strip_surrogate_keys(updated(&s.headers, &f.headers));
            let freshness = Freshness::of(
                s.status,
                &headers,
                f.request_time,
                f.response_time,
                self.heuristic_max,
            );
            let fresh = Arc::new(s.refreshed(headers, freshness, keys));
            self.store
                .put(&ask.key, &ask.headers, Arc::clone(&fresh), mark);
            return self.serve_stored(&fresh, ask, Outcome::Revalidated, now, None);
        }
        let Fetched {
            status,
            headers,
            body,
            request_time,
            response_time,
        } = f;
        let (headers, keys) = strip_surrogate_keys(headers);
        let body = match body {
            origin::Body::Whole(b) => b,
            origin::Body::Streaming(head, rest) => {
                self.pass.insert(ask.key.clone(), ());
                return self.relay(ask, status, headers, origin::Body::Streaming(head, rest));
            }
        };
        let (directives, _) = Directives::of_response(&headers);
        if !freshness::storable(
            &Method::GET,
            &ask.headers,
            &ask.directives,
            status,
            &headers,
            &directives,
        ) {
            // Not storable because of the response, not of this request: pass for a while.
            if !ask.directives.no_store && !ask.headers.contains_key(header::AUTHORIZATION) {
                self.pass.insert(ask.key.clone(), ());
            }
            return self.relay(ask, status, headers, origin::Body::Whole(body));
        }
        let vary = freshness::vary_names(&headers)
            .into_iter()
            .map(|name| {
                let value = crate::store::normalized(&ask.headers, &name);
                (name, value)
            })
            .collect();
        let freshness = Freshness::of(
            status,
            &headers,
            request_time,
            response_time,
            self.heuristic_max,
        );
        let s = Arc::new(Stored::new(
            status,
            headers,
            body,
            freshness,
            vary,
            keys.unwrap_or_default(),
        ));
        let kept = self.store.put(&ask.key, &ask.headers, Arc::clone(&s), mark);
        self.pass.invalidate(&ask.key);
        self.serve_stored(&s, ask, Outcome::Miss, now, Some(kept))
    }

    /// Any other method, or a URL that passes: sent to the origin as it came, the response
    /// streamed back. A successful unsafe method invalidates what it names.
    async fn forward(&self, ask: &Ask, body: Bytes) -> Answer {
        let origin = self.origins.at(ask.origin);
        let headers = origin::forwarded(&ask.headers, ask.client, &self.via);
        self.metrics.origin_fetches.inc();
        let f = match origin
            .fetch(ask.method.clone(), &ask.path_and_query, headers, body, 0)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                self.metrics.origin_errors.inc();
                return Answer::problem(Problem::from_fault(&e));
            }
        };
        let safe = matches!(
            ask.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        );
        if !safe && (f.status.is_success() || f.status.is_redirection()) {
            self.invalidate(ask, &f.headers);
        }
        let (headers, _) = strip_surrogate_keys(f.headers);
        let mut answer = self.relay(ask, f.status, headers, f.body);
        if safe {
            answer.outcome = Outcome::Pass;
        }
        answer
    }

    /// RFC 9111 §4.4: the target URI, and `Location` and `Content-Location` on the same host.
    fn invalidate(&self, ask: &Ask, res: &HeaderMap) {
        let host = ask.key.strip_suffix(&ask.path_and_query).unwrap_or("");
        let now = SystemTime::now();
        self.store.purge_key(&ask.key, PurgeMode::Hard, now);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(target) = res.get(&name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let path = if target.starts_with('/') {
                Some(target.to_owned())
            } else {
                reqwest::Url::parse(target).ok().and_then(|u| {
                    let authority = match u.port() {
                        Some(p) => format!("{}:{p}", u.host_str()?),
                        None => u.host_str()?.to_owned(),
                    };
                    authority.eq_ignore_ascii_case(host).then(|| {
                        let mut p = u.path().to_owned();
                        if let Some(q) = u.query() {
                            p.push('?');
                            p.push_str(q);
                        }
                        p
                    })
                })
            };
            if let Some(path) = path {
                self.store
                    .purge_key(&Cache::key(host, &path), PurgeMode::Hard, now);
            }
        }
    }

    /// A response from the origin, passed on as it came (not stored).
    fn relay(
        &self,
        ask: &Ask,
        status: StatusCode,
        mut headers: HeaderMap,
        body: origin::Body,
    ) -> Answer {
        headers.remove(SURROGATE_CONTROL);
        headers.append(header::VIA, self.via.clone());
        let detail = if ask.method == Method::GET || ask.method == Method::HEAD {
            "fwd=uri-miss"
        } else {
            "fwd=method"
        };
        if let Ok(v) = HeaderValue::from_str(&format!("{}; {detail}", self.name)) {
            headers.insert(CACHE_STATUS, v);
        }
        let (body, body_bytes) = match body {
            origin::Body::Whole(b) => {
                let n = b.len();
                if ask.method != Method::HEAD {
                    headers.remove(header::CONTENT_LENGTH);
                }
                (Body::from(b), n)
            }
            origin::Body::Streaming(head, rest) => {
                let counted = self.metrics.served_bytes.clone();
                let idle = self.origins.at(ask.origin).body_idle();
                (
                    Body::from_stream(origin::stream(head, rest, idle, counted)),
                    0,
                )
            }
        };
        let mut response = Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Answer {
            response,
            outcome: Outcome::Miss,
            body_bytes,
        }
    }

    /// A stored response as `ask` should get it: `Age`, `Via`, `Cache-Status`, and a 304 or
    /// a part of it when the request's conditions or range say so. `stored` is whether a
    /// response fetched for this request was kept (`None`: it came from storage).
    fn serve_stored(
        &self,
        s: &Stored,
        ask: &Ask,
        outcome: Outcome,
        now: SystemTime,
        stored: Option<bool>,
    ) -> Answer {
        let mut headers = s.headers.clone();
        headers.remove(SURROGATE_CONTROL);
        headers.insert(header::AGE, HeaderValue::from(s.freshness.age_s(now)));
        headers.append(header::VIA, self.via.clone());
        let ttl = s.freshness.ttl_s(now, s.purged_at());
        let status_text = match (outcome, stored) {
            (Outcome::Revalidated, _) => {
                format!("{}; fwd=stale; fwd-status=304; ttl={ttl}", self.name)
            }
            (_, Some(true)) => format!("{}; fwd=uri-miss; stored; ttl={ttl}", self.name),
            (_, Some(false)) => format!("{}; fwd=uri-miss", self.name),
            (_, None) => format!("{}; hit; ttl={ttl}", self.name),
        };
        if let Ok(v) = HeaderValue::from_str(&status_text) {
            headers.insert(CACHE_STATUS, v);
        }
        let len = s.body.len() as u64;
        let whole = s.status == StatusCode::OK;
        if whole && not_modified(&ask.headers, &s.headers) {
            let kept: HeaderMap = headers
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "content-length" | "content-type" | "content-encoding" | "content-range"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            return Answer::response(StatusCode::NOT_MODIFIED, kept, Bytes::new(), outcome);
        }
        let ranged = if whole && ask.method == Method::GET {
            range::select(&ask.headers, &s.headers, len)
        } else {
            Ranged::Full
        };
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        let (status, body) = match ranged {
            Ranged::Full => (s.status, s.body.clone()),
            Ranged::Part { start, end } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")) {
                    headers.insert(header::CONTENT_RANGE, v);
                }
                (
                    StatusCode::PARTIAL_CONTENT,
                    s.body.slice(start as usize..=end as usize),
                )
            }
            Ranged::Unsatisfiable => {
                let mut answer = Answer::problem(Problem::new(
                    fault::Kind::RangeNotSatisfiable,
                    format!("the representation has {len} bytes"),
                ));
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                    answer
                        .response
                        .headers_mut()
                        .insert(header::CONTENT_RANGE, v);
                }
                answer.outcome = outcome;
                return answer;
            }
        };
        if ask.method == Method::HEAD {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            return Answer::response(status, headers, Bytes::new(), outcome);
        }
        headers.remove(header::CONTENT_LENGTH);
        Answer::response(status, headers, body, outcome)
    }

    /// Purges every URL tagged with surrogate key `tag`; how many.
    pub fn purge_tag(&self, tag: &str, mode: PurgeMode) -> usize {
        self.metrics.purges_by_key.inc();
        let n = self.store.purge_tag(tag, mode, SystemTime::now());
        self.metrics.purged_objects.inc_by(n as u64);
        n
    }

    /// Purges one URL (`host` and path with query); whether it was stored.
    pub fn purge_url(&self, host: &str, path_and_query: &str, mode: PurgeMode) -> bool {
        self.metrics.purges_by_url.inc();
        let hit = self
            .store
            .purge_key(&Cache::key(host, path_and_query), mode, SystemTime::now());
        self.metrics.purged_objects.inc_by(u64::from(hit));
        hit
    }
}

impl Answer {
    fn response(status: StatusCode, headers: HeaderMap, body: Bytes, outcome: Outcome) -> Answer {
        let body_bytes = body.len();
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Answer {
            response,
            outcome,
            body_bytes,
        }
    }

    fn problem(p: Problem) -> Answer {
        Answer {
            response: p.into_response(),
            outcome: Outcome::Error,
            body_bytes: 0,
        }
    }
}

/// Fields a 304 does not change in what is stored: they describe the stored body and the
/// representation the validator named (RFC 9111 §3.2 leaves `Content-Length` out; the others
/// are what the cache-tests suite requires be kept).
const KEPT_ON_304: [&str; 5] = [
    "content-length",
    "content-encoding",
    "content-md5",
    "content-range",
    "etag",
];

/// The stored header updated by a 304's (RFC 9111 §3.2): each field the 304 sends replaces
/// the stored one, but those of `KEPT_ON_304`.
fn updated(stored: &HeaderMap, fresh: &HeaderMap) -> HeaderMap {
    let mut out = stored.clone();
    let replaced = |name: &HeaderName| !KEPT_ON_304.contains(&name.as_str());
    for name in fresh.keys().filter(|n| replaced(n)) {
        out.remove(name);
    }
    for (name, value) in fresh.iter().filter(|(n, _)| replaced(n)) {
        out.append(name.clone(), value.clone());
    }
    out
}

/// The header without `Surrogate-Key`, and the keys it named (if it had the field): they
/// are for this cache, not for shoppers.
fn strip_surrogate_keys(mut headers: HeaderMap) -> (HeaderMap, Option<Vec<String>>) {
    let lines: Vec<HeaderValue> = match headers.entry(SURROGATE_KEY) {
        axum::http::header::Entry::Occupied(e) => e.remove_entry_mult().1.collect(),
        axum::http::header::Entry::Vacant(_) => return (headers, None),
    };
    let mut keys: Vec<String> = Vec::new();
    for k in lines
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(str::split_ascii_whitespace)
    {
        if keys.len() == SURROGATE_KEYS_MAX {
            break;
        }
        if k.len() <= SURROGATE_KEY_MAX_BYTES && !keys.iter().any(|x| x == k) {
            keys.push(k.to_owned());
        }
    }
    (headers, Some(keys))
}

/// Whether a GET or HEAD's conditions say the client's copy is current (RFC 9110 §13.1.2,
/// §13.1.3): `If-None-Match` by weak comparison, else `If-Modified-Since` against
/// `Last-Modified`.
fn not_modified(req: &HeaderMap, stored: &HeaderMap) -> bool {
    if req.contains_key(header::IF_NONE_MATCH) {
        return stored
            .get(header::ETAG)
            .and_then(|e| e.to_str().ok())
            .is_some_and(|etag| http_api::conditional::none_match(req, etag));
    }
    match (
        freshness::date(req, "if-modified-since"),
        freshness::date(stored, "last-modified"),
    ) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in lines {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn a_304_replaces_the_fields_it_sends_but_content_length() {
        let stored = h(&[
            ("content-length", "10"),
            ("etag", "\"a\""),
            ("x-a", "1"),
            ("x-a", "2"),
            ("cache-control", "max-age=1"),
        ]);
        let fresh = h(&[
            ("content-length", "0"),
            ("cache-control", "max-age=60"),
            ("x-a", "3"),
            ("x-b", "4"),
        ]);
        let out = updated(&stored, &fresh);
        assert_eq!(out.get("content-length").unwrap(), "10");
        assert_eq!(out.get("cache-control").unwrap(), "max-age=60");
        let xa: Vec<_> = out.get_all("x-a").iter().collect();
        assert_eq!(xa, vec!["3"]);
        assert_eq!(out.get("x-b").unwrap(), "4");
        assert_eq!(out.get("etag").unwrap(), "\"a\"");
        let moved = updated(
            &stored,
            &h(&[("etag", "\"b\""), ("content-encoding", "br")]),
        );
        assert_eq!(moved.get("etag").unwrap(), "\"a\"");
        assert!(!moved.contains_key("content-encoding"));
    }

    #[test]
    fn surrogate_keys_are_taken_out_bounded() {
        let (rest, keys) = strip_surrogate_keys(h(&[
            ("surrogate-key", "product:1  sku:1-a"),
            ("surrogate-key", "product:1 category:shoes"),
            ("x", "y"),
        ]));
        assert_eq!(
            keys.unwrap(),
            vec!["product:1", "sku:1-a", "category:shoes"]
        );
        assert!(!rest.contains_key("surrogate-key") && rest.contains_key("x"));
        assert_eq!(strip_surrogate_keys(h(&[("x", "y")])).1, None);
    }

    #[test]
    fn conditions_are_weak_for_etags_and_dates_compare() {
        let stored = h(&[
            ("etag", "W/\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        assert!(not_modified(
            &h(&[("if-none-match", "\"x\", \"v1\"")]),
            &stored
        ));
        assert!(not_modified(&h(&[("if-none-match", "*")]), &stored));
        assert!(!not_modified(&h(&[("if-none-match", "\"v2\"")]), &stored));
        // If-None-Match decides when both are sent.
        assert!(!not_modified(
            &h(&[
                ("if-none-match", "\"v2\""),
                ("if-modified-since", "Sun, 06 Nov 1994 08:49:37 GMT")
            ]),
            &stored
        ));
        assert!(not_modified(
            &h(&[("if-modified-since", "Mon, 07 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
        assert!(!not_modified(
            &h(&[("if-modified-since", "Sat, 05 Nov 1994 08:49:37 GMT")]),
            &stored
        ));
    }
}
