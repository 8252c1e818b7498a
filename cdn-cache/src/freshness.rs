//! RFC 9111's rules for one stored response, as a shared cache keeps them: whether a response
//! may be stored (§3), how long it is fresh (§4.2.1, heuristics by §4.2.2), how old it is
//! (§4.2.3), and whether a request may take it as it is, stale, or only once validated (§4,
//! §4.2.4, with RFC 5861's `stale-while-revalidate` and `stale-if-error`). Pure: the time is
//! passed in.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderMap, Method, StatusCode};

use crate::directives::{DELTA_MAX, Directives};

/// Statuses whose responses may be given heuristic freshness (RFC 9110 §15.1).
const HEURISTIC: [u16; 12] = [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Statuses this cache understands (for `must-understand`, RFC 9111 §5.2.2.3).
const UNDERSTOOD: [u16; 14] = [
    200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501,
];

/// A heuristic lifetime is this share of the time since the response's `Last-Modified`.
const HEURISTIC_FRACTION: u32 = 10;

/// What a stored response's freshness depends on, computed once when it is received.
#[derive(Clone, Debug)]
pub struct Freshness {
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    /// `corrected_initial_age` of §4.2.3: how old the response already was when it arrived.
    initial_age: Duration,
    pub lifetime: Duration,
    /// The response's directives for this cache (`CDN-Cache-Control` or `Cache-Control`).
    pub directives: Directives,
}

/// What a request may do with a stored response that matches it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Serve it as it is.
    Fresh,
    /// Serve it now, stale, and validate it in the background (`stale-while-revalidate`).
    WhileRevalidating,
    /// Ask the origin first (a conditional request).
    Validate,
}

/// Seconds from `Date`-like header `name`, if it is there and parses (all three HTTP-date
/// forms of RFC 9110 §5.6.7).
pub fn date(headers: &HeaderMap, name: &str) -> Option<SystemTime> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .and_then(|s| httpdate::parse_http_date(s.trim()).ok())
}

impl Freshness {
    /// The freshness of a response received at `response_time` to a request sent at
    /// `request_time`. A lifetime found by heuristic is at most `heuristic_max`.
    pub fn of(
        status: StatusCode,
        headers: &HeaderMap,
        request_time: SystemTime,
        response_time: SystemTime,
        heuristic_max: Duration,
    ) -> Freshness {
        let (directives, targeted) = Directives::of_response(headers);
        let date_value = date(headers, "date").unwrap_or(response_time);
        // One line whose first member is digits ("0,7200" is 0, as the cache-tests suite
        // requires); any other Age ("abc", "-1", "7200.0", two lines) is doubted, and a cache
        // that doubts an age takes the response as stale rather than younger than it may be.
        let mut ages = headers.get_all("age").iter();
        let age_value = match (ages.next(), ages.next()) {
            (None, _) => 0,
            (Some(v), None) => v
                .to_str()
                .ok()
                .and_then(|v| v.split(',').next())
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .map_or(DELTA_MAX, |v| {
                    v.parse::<u64>().map_or(DELTA_MAX, |a| a.min(DELTA_MAX))
                }),
            (Some(_), Some(_)) => DELTA_MAX,
        };
        let apparent_age = response_time.duration_since(date_value).unwrap_or_default();
        let response_delay = response_time
            .duration_since(request_time)
            .unwrap_or_default();
        let initial_age = apparent_age.max(Duration::from_secs(age_value) + response_delay);
        let lifetime = if let Some(s) = directives.s_maxage {
            Duration::from_secs(s)
        } else if let Some(s) = directives.max_age {
            Duration::from_secs(s)
        } else if headers.contains_key("expires") && !targeted {
            // An Expires that does not parse is in the past (§5.3).
            date(headers, "expires")
                .and_then(|e| e.duration_since(date_value).ok())
                .unwrap_or_default()
        } else if HEURISTIC.contains(&status.as_u16()) || directives.public {
            date(headers, "last-modified")
                .and_then(|m| date_value.duration_since(m).ok())
                .map_or(Duration::ZERO, |since| {
                    (since / HEURISTIC_FRACTION).min(heuristic_max)
                })
        } else {
            Duration::ZERO
        };
        Freshness {
            request_time,
            response_time,
            initial_age,
            lifetime,
            directives,
        }
    }

    /// `current_age` of §4.2.3 at `now`.
    pub fn age(&self, now: SystemTime) -> Duration {
        self.initial_age + now.duration_since(self.response_time).unwrap_or_default()
    }

    /// The `Age` to send at `now`, in seconds.
    pub fn age_s(&self, now: SystemTime) -> u64 {
        self.age(now).as_secs().min(DELTA_MAX)
    }

    /// Its lifetime, cut short by a soft purge: a purged response is as stale as if its
    /// lifetime had ended when it was purged.
    fn lifetime(&self, purged_at: Option<SystemTime>) -> Duration {
        match purged_at {
            Some(at) => self
                .lifetime
                .min(self.age(at).saturating_sub(Duration::from_nanos(1))),
            None => self.lifetime,
        }
    }

    /// How long it has been stale at `now`, if it is.
    fn staleness(&self, now: SystemTime, purged_at: Option<SystemTime>) -> Option<Duration> {
        let (age, lifetime) = (self.age(now), self.lifetime(purged_at));
        (age >= lifetime).then(|| age - lifetime)
    }

    /// Seconds of freshness left at `now`, negative once stale (`Cache-Status`'s `ttl`).
    pub fn ttl_s(&self, now: SystemTime, purged_at: Option<SystemTime>) -> i64 {
        let (age, lifetime) = (self.age(now), self.lifetime(purged_at));
        if age < lifetime {
            (lifetime - age).as_secs() as i64
        } else {
            -((age - lifetime).as_secs().min(DELTA_MAX) as i64) - 1
        }
    }

    /// Whether it may never be served stale: `must-revalidate`, `proxy-revalidate` and
    /// `s-maxage` (which implies the latter for a shared cache, §5.2.2.10) say so, and so does
    /// `no-cache`.
    fn never_stale(&self) -> bool {
        let d = &self.directives;
        d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache
    }

    /// What a request with directives `req` (and `pragma_no_cache`, a `Pragma: no-cache`
    /// without `Cache-Control`) may do with this response at `now`.
    pub fn reuse(
        &self,
        req: &Directives,
        pragma_no_cache: bool,
        now: SystemTime,
        purged_at: Option<SystemTime>,
    ) -> Reuse {
        let age = self.age(now);
        if req.no_cache || pragma_no_cache || self.directives.no_cache {
            return Reuse::Validate;
        }
        if req.max_age.is_some_and(|m| age.as_secs() > m) {
            return Reuse::Validate;
        }
        let Some(stale) = self.staleness(now, purged_at) else {
            let left = self.lifetime.saturating_sub(age);
            if req.min_fresh.is_some_and(|m| left.as_secs() < m) {
                return Reuse::Validate;
            }
            return Reuse::Fresh;
        };
        if req.min_fresh.is_some_and(|m| m > 0) || self.never_stale() {
            return Reuse::Validate;
        }
        match req.max_stale {
            Some(None) => return Reuse::Fresh,
            Some(Some(m)) if stale.as_secs() <= m => return Reuse::Fresh,
            _ => {}
        }
        match self.directives.stale_while_revalidate {
            Some(w) if stale <= Duration::from_secs(w) => Reuse::WhileRevalidating,
            _ => Reuse::Validate,
        }
    }

    /// Whether it may be served stale because the origin failed (RFC 5861 `stale-if-error`,
    /// from the response or the request).
    pub fn serves_on_error(
        &self,
        req: &Directives,
        now: SystemTime,
        purged_at: Option<SystemTime>,
    ) -> bool {
        if self.never_stale() {
            return false;
        }
        let window = self
            .directives
            .stale_if_error
            .into_iter()
            .chain(req.stale_if_error)
            .max();
        match (window, self.staleness(now, purged_at)) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(w), Some(stale)) => stale <= Duration::from_secs(w),
        }
    }
}

/// Whether a shared cache may store the response (`status`, `res` headers and `directives`)
/// to a request (`method`, `req` headers and `req_directives`): RFC 9111 §3 and §3.5, and this
/// cache's own refusals (a `Vary: *` never matches; a `Set-Cookie` belongs to one shopper).
pub fn storable(
    method: &Method,
    req: &HeaderMap,
    req_directives: &Directives,
    status: StatusCode,
    res: &HeaderMap,
    directives: &Directives,
) -> bool {
    if *method != Method::GET || req_directives.no_store {
        return false;
    }
    let code = status.as_u16();
    if !(200..600).contains(&code) || code == 206 || code == 304 {
        return false;
    }
    if directives.must_understand {
        if !UNDERSTOOD.contains(&code) {
            return false;
        }
    } else if directives.no_store {
        return false;
    }
    if directives.private {
        return false;
    }
    if req.contains_key("authorization")
        && !(directives.must_revalidate || directives.public || directives.s_maxage.is_some())
    {
        return false;
    }
    if res.contains_key("set-cookie") || vary_names(res).iter().any(|n| n == "*") {
        return false;
    }
    directives.public
        || directives.max_age.is_some()
        || directives.s_maxage.is_some()
        || res.contains_key("expires")
        || HEURISTIC.contains(&code)
}

/// The field names a response's `Vary` lists, lower-cased.
pub fn vary_names(res: &HeaderMap) -> Vec<String> {
    res.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(crate::directives::split_list)
        .map(str::to_ascii_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const T0: u64 = 1_700_000_000;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    fn headers(lines: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn http_date(s: u64) -> String {
        httpdate::fmt_http_date(at(s))
    }

    fn fresh(lines: &[(&'static str, String)]) -> Freshness {
        Freshness::of(
            StatusCode::OK,
            &headers(lines),
            at(T0),
            at(T0),
            Duration::from_secs(86_400),
        )
    }

    #[test]
    fn lifetime_by_precedence() {
        let d = http_date(T0);
        let f = fresh(&[
            ("cache-control", "max-age=60, s-maxage=120".into()),
            ("date", d.clone()),
        ]);
        assert_eq!(f.lifetime, Duration::from_secs(120));
        let f = fresh(&[
            ("cache-control", "max-age=60".into()),
            ("expires", http_date(T0 + 600)),
        ]);
        assert_eq!(f.lifetime, Duration::from_secs(60));
        let f = fresh(&[("date", d.clone()), ("expires", http_date(T0 + 600))]);
        assert_eq!(f.lifetime, Duration::from_secs(600));
        let f = fresh(&[("date", d.clone()), ("expires", "0".into())]);
        assert_eq!(f.lifetime, Duration::ZERO);
        // Heuristic: a tenth of the time since it last changed, at most the cap.
        let f = fresh(&[
            ("date", d.clone()),
            ("last-modified", http_date(T0 - 1_000)),
        ]);
        assert_eq!(f.lifetime, Duration::from_secs(100));
        let f = fresh(&[("date", d), ("last-modified", http_date(T0 - 10_000_000))]);
        assert_eq!(f.lifetime, Duration::from_secs(86_400));
    }

    #[test]
    fn age_counts_the_age_header_the_delay_and_the_time_since() {
        let f = Freshness::of(
            StatusCode::OK,
            &headers(&[
                ("cache-control", "max-age=100".into()),
                ("age", "30".into()),
                ("date", http_date(T0)),
            ]),
            at(T0 - 2),
            at(T0),
            Duration::ZERO,
        );
        assert_eq!(f.age(at(T0)), Duration::from_secs(32));
        assert_eq!(f.age(at(T0 + 10)), Duration::from_secs(42));
        for (age, want) in [
            ("7200.0", DELTA_MAX),
            ("0,7200", 0),
            ("7200,0", 7200),
            ("x", DELTA_MAX),
            (" 9 ", 9),
        ] {
            let f = fresh(&[("date", http_date(T0)), ("age", age.into())]);
            assert_eq!(f.age_s(at(T0)), want, "{age}");
        }
        // A Date in the past makes the apparent age.
        let f = fresh(&[("date", http_date(T0 - 50)), ("age", "10".into())]);
        assert_eq!(f.age_s(at(T0)), 50);
    }

    #[test]
    fn requests_directives_and_stale_serving() {
        let f = fresh(&[(
            "cache-control",
            "max-age=10, stale-while-revalidate=20, stale-if-error=60".into(),
        )]);
        let none = Directives::default();
        assert_eq!(f.reuse(&none, false, at(T0 + 5), None), Reuse::Fresh);
        assert_eq!(f.reuse(&none, true, at(T0 + 5), None), Reuse::Validate);
        assert_eq!(
            f.reuse(&none, false, at(T0 + 15), None),
            Reuse::WhileRevalidating
        );
        assert_eq!(f.reuse(&none, false, at(T0 + 31), None), Reuse::Validate);
        assert!(f.serves_on_error(&none, at(T0 + 69), None));
        assert!(!f.serves_on_error(&none, at(T0 + 71), None));
        let max_age = Directives {
            max_age: Some(3),
            ..Default::default()
        };
        assert_eq!(f.reuse(&max_age, false, at(T0 + 5), None), Reuse::Validate);
        let min_fresh = Directives {
            min_fresh: Some(8),
            ..Default::default()
        };
        assert_eq!(
            f.reuse(&min_fresh, false, at(T0 + 5), None),
            Reuse::Validate
        );
        let max_stale = Directives {
            max_stale: Some(Some(100)),
            ..Default::default()
        };
        assert_eq!(f.reuse(&max_stale, false, at(T0 + 50), None), Reuse::Fresh);
        // A soft purge makes it stale at once; stale-while-revalidate still applies.
        assert_eq!(
            f.reuse(&none, false, at(T0 + 2), Some(at(T0 + 1))),
            Reuse::WhileRevalidating
        );
        let strict = fresh(&[("cache-control", "max-age=10, must-revalidate".into())]);
        assert_eq!(
            strict.reuse(&max_stale, false, at(T0 + 50), None),
            Reuse::Validate
        );
        assert!(!strict.serves_on_error(&none, at(T0 + 11), None));
    }

    #[test]
    fn what_a_shared_cache_stores() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let nd = Directives::default();
        let ok = StatusCode::OK;
        let cc = |v: &'static str| headers(&[("cache-control", v.into())]);
        let dir = |h: &HeaderMap| Directives::of_response(h).0;
        let h = cc("max-age=60");
        assert!(storable(&get, &none, &nd, ok, &h, &dir(&h)));
        assert!(!storable(&Method::POST, &none, &nd, ok, &h, &dir(&h)));
        for refused in ["private, max-age=60", "no-store", "max-age=60, no-store"] {
            let h = cc(refused);
            assert!(!storable(&get, &none, &nd, ok, &h, &dir(&h)), "{refused}");
        }
        let h = cc("no-store, must-understand, max-age=5");
        assert!(storable(&get, &none, &nd, ok, &h, &dir(&h)));
        let auth = headers(&[("authorization", "Bearer x".into())]);
        let h = cc("max-age=60");
        assert!(!storable(&get, &auth, &nd, ok, &h, &dir(&h)));
        let h = cc("s-maxage=60");
        assert!(storable(&get, &auth, &nd, ok, &h, &dir(&h)));
        let h = headers(&[("vary", "accept, *".into())]);
        assert!(!storable(&get, &none, &nd, ok, &h, &dir(&h)));
        // Not heuristically cacheable and nothing explicit.
        assert!(!storable(&get, &none, &nd, StatusCode::FOUND, &none, &nd));
        assert!(storable(
            &get,
            &none,
            &nd,
            StatusCode::NOT_FOUND,
            &none,
            &nd
        ));
    }
}
