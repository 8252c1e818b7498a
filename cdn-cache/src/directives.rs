//! Cache directives as RFC 9111 §5.2 defines them: the `Cache-Control` of a request or a
//! response, and the `CDN-Cache-Control` of a response (RFC 9213), which takes the place of
//! `Cache-Control` for this cache when it is present and parses.
//!
//! The syntax is RFC 9110's list: directives separated by commas, each a token with an optional
//! `=` and a token or a quoted string; names compared without case. A directive given twice
//! counts once, the first time (RFC 9111 §4.2.1 allows the first, or calling the response
//! stale). A delta-seconds that is not a number makes the response stale (`Some(0)`), and one
//! past 2^31 is 2^31 (§1.2.2).

use axum::http::{HeaderMap, HeaderValue};

/// What a delta-seconds larger than any this cache represents is taken as (RFC 9111 §1.2.2).
pub const DELTA_MAX: u64 = 1 << 31;

/// Directives a list may hold before the rest are ignored: no legitimate header has more.
const DIRECTIVES_MAX: usize = 64;

/// The directives this cache acts on; others are ignored, as §5.2.3 requires.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directives {
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    /// `no-cache`, with or without field names: a qualified one is taken as unqualified, as
    /// §5.2.2.4 allows (the stricter reading).
    pub no_cache: bool,
    pub no_store: bool,
    /// `private`, qualified or not (taken as unqualified, §5.2.2.7).
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub must_understand: bool,
    pub immutable: bool,
    /// RFC 5861, in a response (and `stale-if-error` in a request too).
    pub stale_while_revalidate: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// Request only: `max-stale` with no value accepts any staleness (`Some(None)`).
    pub max_stale: Option<Option<u64>>,
    pub min_fresh: Option<u64>,
    pub only_if_cached: bool,
}

impl Directives {
    /// The directives of every `name` field line in `headers`, in order.
    pub fn of(headers: &HeaderMap, name: &str) -> Directives {
        let mut d = Directives::default();
        let mut seen = Vec::new();
        for (key, value) in headers
            .get_all(name)
            .iter()
            .flat_map(items)
            .take(DIRECTIVES_MAX)
        {
            if seen.contains(&key) {
                continue;
            }
            d.set(&key, value.as_deref());
            seen.push(key);
        }
        d
    }

    /// A response's directives for this cache: those of the first targeted field that is there
    /// and holds a directive (RFC 9213 §2.2: `CDN-Cache-Control`, then the older
    /// `Surrogate-Control` of the Edge Architecture specification), else `Cache-Control`; and
    /// whether they came from a targeted field.
    pub fn of_response(headers: &HeaderMap) -> (Directives, bool) {
        for targeted in ["cdn-cache-control", "surrogate-control"] {
            if headers
                .get_all(targeted)
                .iter()
                .any(|v| !items(v).is_empty())
            {
                return (Directives::of(headers, targeted), true);
            }
        }
        (Directives::of(headers, "cache-control"), false)
    }

    fn set(&mut self, key: &str, value: Option<&str>) {
        match key {
            "max-age" => self.max_age = Some(delta(value)),
            "s-maxage" => self.s_maxage = Some(delta(value)),
            "no-cache" => self.no_cache = true,
            "no-store" => self.no_store = true,
            "private" => self.private = true,
            "public" => self.public = true,
            "must-revalidate" => self.must_revalidate = true,
            "proxy-revalidate" => self.proxy_revalidate = true,
            "must-understand" => self.must_understand = true,
            "immutable" => self.immutable = true,
            "stale-while-revalidate" => self.stale_while_revalidate = Some(delta(value)),
            "stale-if-error" => self.stale_if_error = Some(delta(value)),
            "max-stale" => self.max_stale = Some(value.map(|v| delta(Some(v)))),
            "min-fresh" => self.min_fresh = Some(delta(value)),
            "only-if-cached" => self.only_if_cached = true,
            _ => {}
        }
    }
}

/// A delta-seconds value: digits only; none or anything else is 0 (stale), and a number past
/// `DELTA_MAX` is `DELTA_MAX`.
fn delta(value: Option<&str>) -> u64 {
    match value {
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            v.parse::<u64>().map_or(DELTA_MAX, |n| n.min(DELTA_MAX))
        }
        _ => 0,
    }
}

/// The directives of one field line: lower-cased names, values unquoted.
fn items(value: &HeaderValue) -> Vec<(String, Option<String>)> {
    let Ok(text) = value.to_str() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in split_list(text) {
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n.trim(), Some(unquote(v.trim()))),
            None => (item.trim(), None),
        };
        if !name.is_empty() && name.bytes().all(is_tchar) {
            out.push((name.to_ascii_lowercase(), value));
        }
    }
    out
}

/// The members of a comma-separated list, commas inside quoted strings kept.
pub fn split_list(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if c == '\\' && !escaped {
                    escaped = true;
                } else {
                    out.push(c);
                    escaped = false;
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// RFC 9110 §5.6.2's token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn names_without_case_values_unquoted_first_one_counts() {
        let d = Directives::of(
            &headers(&[
                ("cache-control", "Max-Age=\"60\", PUBLIC"),
                (
                    "cache-control",
                    "max-age=5, s-maxage=10, no-cache=\"set-cookie, x\"",
                ),
            ]),
            "cache-control",
        );
        assert_eq!(d.max_age, Some(60));
        assert_eq!(d.s_maxage, Some(10));
        assert!(d.public && d.no_cache && !d.private);
    }

    #[test]
    fn bad_numbers_are_stale_and_huge_ones_are_capped() {
        for (line, want) in [
            ("max-age=abc", 0),
            ("max-age=-1", 0),
            ("max-age=1.5", 0),
            ("max-age", 0),
            ("max-age=99999999999999999999999", DELTA_MAX),
            ("max-age=3000000000", DELTA_MAX),
            ("max-age=007", 7),
        ] {
            let d = Directives::of(&headers(&[("cache-control", line)]), "cache-control");
            assert_eq!(d.max_age, Some(want), "{line}");
        }
    }

    #[test]
    fn request_directives() {
        let d = Directives::of(
            &headers(&[("cache-control", "max-stale, min-fresh=5, only-if-cached")]),
            "cache-control",
        );
        assert_eq!(d.max_stale, Some(None));
        assert_eq!(d.min_fresh, Some(5));
        assert!(d.only_if_cached);
        let d = Directives::of(
            &headers(&[("cache-control", "max-stale=9")]),
            "cache-control",
        );
        assert_eq!(d.max_stale, Some(Some(9)));
    }

    #[test]
    fn cdn_cache_control_takes_the_place_of_cache_control() {
        let h = headers(&[
            ("cache-control", "no-store"),
            (
                "cdn-cache-control",
                "max-age=300, stale-while-revalidate=30",
            ),
        ]);
        let (d, targeted) = Directives::of_response(&h);
        assert!(targeted && !d.no_store);
        assert_eq!((d.max_age, d.stale_while_revalidate), (Some(300), Some(30)));
        let h = headers(&[("cache-control", "max-age=1"), ("cdn-cache-control", " , ")]);
        let (d, targeted) = Directives::of_response(&h);
        assert!(!targeted);
        assert_eq!(d.max_age, Some(1));
    }

    #[test]
    fn lists_keep_commas_inside_quotes() {
        assert_eq!(
            split_list(r#"a, b="x, \"y\"", , c"#),
            vec!["a", r#"b="x, \"y\"""#, "c"]
        );
    }
}
