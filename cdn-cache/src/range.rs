//! Range requests answered from a stored full response (RFC 9110 §14): one byte range
//! (`bytes=a-b`, `a-`, `-n`), honoured only if `If-Range` (when sent) still names the stored
//! representation. A request for several ranges gets the whole response, which §14.2 allows;
//! a `Range` that does not parse is ignored, as it requires.

use axum::http::{HeaderMap, header};

/// What to send of a representation of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ranged {
    Full,
    /// The bytes `start..=end`.
    Part {
        start: u64,
        end: u64,
    },
    Unsatisfiable,
}

/// The part of a stored 200 response (`stored` its header, `len` its body's length) that a
/// GET with `req` headers asks for.
pub fn select(req: &HeaderMap, stored: &HeaderMap, len: u64) -> Ranged {
    let Some(range) = req.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ranged::Full;
    };
    if let Some(if_range) = req.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && !if_range_holds(if_range.trim(), stored)
    {
        return Ranged::Full;
    }
    let Some((unit, spec)) = range.split_once('=') else {
        return Ranged::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") || spec.contains(',') {
        return Ranged::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ranged::Full;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            None => Ranged::Full,
            Some(0) => Ranged::Unsatisfiable,
            Some(_) if len == 0 => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        (a, b) => {
            let Some(start) = number(a) else {
                return Ranged::Full;
            };
            let end = match b {
                "" => u64::MAX,
                b => match number(b) {
                    Some(e) if e >= start => e,
                    _ => return Ranged::Full,
                },
            };
            if start >= len {
                Ranged::Unsatisfiable
            } else {
                Ranged::Part {
                    start,
                    end: end.min(len - 1),
                }
            }
        }
    }
}

/// Whether `If-Range` names the stored representation: its strong entity tag, or its
/// `Last-Modified` date exactly (§13.1.5).
fn if_range_holds(if_range: &str, stored: &HeaderMap) -> bool {
    if if_range.starts_with('"') {
        return stored
            .get(header::ETAG)
            .and_then(|e| e.to_str().ok())
            .is_some_and(|e| e.trim() == if_range);
    }
    match (
        httpdate::parse_http_date(if_range).ok(),
        crate::freshness::date(stored, "last-modified"),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn req(lines: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in lines {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn one_range_of_each_form() {
        let stored = req(&[("etag", "\"v1\"")]);
        let sel = |r: &'static str| select(&req(&[("range", r)]), &stored, 100);
        assert_eq!(sel("bytes=0-9"), Ranged::Part { start: 0, end: 9 });
        assert_eq!(sel("bytes=90-"), Ranged::Part { start: 90, end: 99 });
        assert_eq!(sel("bytes=90-500"), Ranged::Part { start: 90, end: 99 });
        assert_eq!(sel("bytes=-10"), Ranged::Part { start: 90, end: 99 });
        assert_eq!(sel("bytes=-1000"), Ranged::Part { start: 0, end: 99 });
        assert_eq!(sel("bytes=100-"), Ranged::Unsatisfiable);
        assert_eq!(sel("bytes=-0"), Ranged::Unsatisfiable);
        for ignored in [
            "bytes=9-0",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=x-",
            "bytes",
        ] {
            assert_eq!(sel(ignored), Ranged::Full, "{ignored}");
        }
        assert_eq!(
            select(&req(&[("range", "bytes=0-0")]), &stored, 0),
            Ranged::Unsatisfiable
        );
    }

    #[test]
    fn if_range_must_name_what_is_stored() {
        let stored = req(&[
            ("etag", "\"v1\""),
            ("last-modified", "Sun, 06 Nov 1994 08:49:37 GMT"),
        ]);
        let part = Ranged::Part { start: 0, end: 0 };
        let with = |v: &'static str| {
            select(
                &req(&[("range", "bytes=0-0"), ("if-range", v)]),
                &stored,
                10,
            )
        };
        assert_eq!(with("\"v1\""), part);
        assert_eq!(with("\"v2\""), Ranged::Full);
        assert_eq!(with("W/\"v1\""), Ranged::Full);
        assert_eq!(with("Sun, 06 Nov 1994 08:49:37 GMT"), part);
        assert_eq!(with("Sun, 06 Nov 1994 08:49:38 GMT"), Ranged::Full);
    }
}
