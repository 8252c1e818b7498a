//! `GET /metrics`: registries of Prometheus metrics written out in the OpenMetrics text format,
//! which Prometheus scrapes natively. Each service keeps a registry of what it counts as it
//! goes (counters, histograms), and builds a second one at each scrape for what is read then
//! (queue depths, versions, ages): both are written in one exposition.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::{encode_eof, encode_registry};

pub use prometheus_client::metrics::counter::{ConstCounter, Counter};
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// The exposition's media type.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registries, in order, as one exposition.
pub fn render(registries: &[&Registry]) -> String {
    let mut out = String::new();
    for r in registries {
        // Writing to a String cannot fail; a metric that fails to encode is left out.
        let _ = encode_registry(&mut out, r);
    }
    let _ = encode_eof(&mut out);
    out
}

/// The registries as the answer to `GET /metrics`.
pub fn respond(registries: &[&Registry]) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        render(registries),
    )
        .into_response()
}

/// A gauge of a count read at scrape time (saturating: a count never passes `i64::MAX`).
pub fn count(v: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

/// A gauge of milliseconds read at scrape time, in seconds; NaN when there is none.
pub fn seconds(ms: Option<u64>) -> ConstGauge<f64> {
    ConstGauge::new(ms.map_or(f64::NAN, |ms| ms as f64 / 1000.0))
}

/// The value of one series in an exposition: `series` is the name with its labels as written
/// (`requests_total{code="200"}`).
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_of_two_registries_make_one_exposition() {
        let mut live = Registry::default();
        let served = Counter::<u64>::default();
        live.register("served", "Requests served.", served.clone());
        served.inc_by(3);
        let mut now = Registry::default();
        now.register("queued", "Requests waiting.", count(7));
        now.register("age_seconds", "Age of the oldest.", seconds(Some(1500)));
        now.register("silence_seconds", "Since last heard.", seconds(None));
        let text = render(&[&live, &now]);
        for line in [
            "# TYPE served counter",
            "served_total 3",
            "queued 7",
            "age_seconds 1.5",
            "silence_seconds NaN",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(sample(&text, "served_total"), Some(3.0));
        assert_eq!(sample(&text, "age_seconds"), Some(1.5));
        assert!(sample(&text, "silence_seconds").is_some_and(f64::is_nan));
        assert_eq!(sample(&text, "served"), None);
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
