//! `If-None-Match` (RFC 9110 §13.1.2): whether a client's copy is the one an entity tag names,
//! by weak comparison, as that field is always compared. Every part that answers conditional
//! GETs (the edge's product reads, the asset origin, the CDN cache) asks here.

use axum::http::{HeaderMap, header};

/// Whether `req` has an `If-None-Match` that names `etag` (or is `*`): answer 304.
pub fn none_match(req: &HeaderMap, etag: &str) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let etag = weak(etag);
    req.get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || weak(t) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn req(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn weak_comparison_lists_and_star() {
        assert!(none_match(&req("\"x\", \"v1\""), "W/\"v1\""));
        assert!(none_match(&req("W/\"v1\""), "\"v1\""));
        assert!(none_match(&req("*"), "\"v1\""));
        assert!(!none_match(&req("\"v2\""), "\"v1\""));
        assert!(!none_match(&HeaderMap::new(), "\"v1\""));
    }
}
