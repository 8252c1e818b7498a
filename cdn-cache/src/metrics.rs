//! What a cache counts as it serves (requests by how the cache answered them, bytes served,
//! origin fetches and failures, requests that waited on another's fetch, purges), and what it
//! holds, read at each scrape.

use http_api::metrics::{Counter, Family, Registry};

/// How the cache answered a request: the `Cache-Status` it sent (RFC 9211), in short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Served from storage, fresh.
    Hit,
    /// Served from storage, stale (while revalidating, or because the origin failed).
    Stale,
    /// Validated with the origin (a 304), then served from storage.
    Revalidated,
    /// Fetched from the origin (and stored, if it may be).
    Miss,
    /// Sent to the origin without the cache: a method it does not cache, or a URL whose
    /// responses cannot be stored.
    Pass,
    /// Neither the cache nor the origin could answer.
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Hit,
        Outcome::Stale,
        Outcome::Revalidated,
        Outcome::Miss,
        Outcome::Pass,
        Outcome::Error,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Stale => "stale",
            Outcome::Revalidated => "revalidated",
            Outcome::Miss => "miss",
            Outcome::Pass => "pass",
            Outcome::Error => "error",
        }
    }
}

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    requests: Vec<Counter>,
    pub served_bytes: Counter,
    pub origin_fetches: Counter,
    pub origin_errors: Counter,
    pub collapsed: Counter,
    /// Purges by what named them: a URL, a surrogate key.
    pub purges_by_url: Counter,
    pub purges_by_key: Counter,
    pub purged_objects: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let requests = Family::<Labels, Counter>::default();
        let by_outcome = Outcome::ALL
            .iter()
            .map(|o| {
                requests
                    .get_or_create(&vec![("cache", o.name().into())])
                    .clone()
            })
            .collect();
        r.register(
            "cdn_requests",
            "Requests, by how the cache answered them.",
            requests,
        );
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let served_bytes = counter(&mut r, "cdn_served_bytes", "Body bytes sent to clients.");
        let origin_fetches = counter(
            &mut r,
            "cdn_origin_fetches",
            "Requests sent to origins (misses, validations, passes).",
        );
        let origin_errors = counter(
            &mut r,
            "cdn_origin_errors",
            "Origin fetches that got no usable response.",
        );
        let collapsed = counter(
            &mut r,
            "cdn_collapsed_requests",
            "Requests that waited on another request's fetch of the same URL instead of fetching.",
        );
        let purges = Family::<Labels, Counter>::default();
        let purges_by_url = purges.get_or_create(&vec![("by", "url".into())]).clone();
        let purges_by_key = purges.get_or_create(&vec![("by", "key".into())]).clone();
        r.register("cdn_purges", "Purges, by what they named.", purges);
        let purged_objects = counter(
            &mut r,
            "cdn_purged_objects",
            "Stored URLs that purges removed or marked stale.",
        );
        Metrics {
            requests: by_outcome,
            served_bytes,
            origin_fetches,
            origin_errors,
            collapsed,
            purges_by_url,
            purges_by_key,
            purged_objects,
            registry: r,
        }
    }

    pub fn answered(&self, outcome: Outcome, body_bytes: usize) {
        if let Some(c) = self.requests.get(outcome as usize) {
            c.inc();
        }
        self.served_bytes.inc_by(body_bytes as u64);
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }
}
