//! What went wrong, said one way from the state machine to the edge and to every HTTP API: a
//! stable [`Kind`] that clients match on (it becomes the problem `type` at the HTTP layer),
//! [`Whose`] fault it is, and whether trying the same request again can help ([`Retry`]).
//! Every error that crosses a crate boundary says these through [`Fault`], so a refusal stays a
//! refusal on its way (never mistaken for an outage), and an outage stays retryable.
//!
//! The model is pingora's errors (source and retry decided where the error is made, not
//! guessed where it is handled) and TiKV's error codes (one catalogue of stable names).

#![forbid(unsafe_code)]

use std::fmt;

/// Whose fault a failure is: who must act for the request to succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Whose {
    /// The caller asked for something wrong, or not allowed; only a different request helps.
    Caller,
    /// Something the callee depends on failed (a peer region, a core, the store); the same
    /// request may succeed later.
    Peer,
    /// A bug or an exhausted resource here.
    Us,
}

/// Whether the same request, sent again, can succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Retry {
    /// It will be refused again.
    Never,
    /// After a moment (an election, a restart, a queue draining); with the same
    /// Idempotency-Key, so it applies at most once.
    Later,
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident => $slug:literal, $whose:ident, $retry:ident;)*) => {
        /// Every kind of failure a caller can be told of. The slug is the stable part (the
        /// last segment of a problem document's `type`); README.md lists them.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum Kind {
            $($(#[$doc])* $name,)*
        }

        impl Kind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [Kind] = &[$(Kind::$name),*];

            /// The stable name clients match on.
            pub fn slug(self) -> &'static str {
                match self { $(Kind::$name => $slug,)* }
            }

            pub fn whose(self) -> Whose {
                match self { $(Kind::$name => Whose::$whose,)* }
            }

            pub fn retry(self) -> Retry {
                match self { $(Kind::$name => Retry::$retry,)* }
            }
        }
    };
}

kinds! {
    /// The body is not JSON.
    MalformedJson => "malformed-json", Caller, Never;
    /// The body is JSON, but not a valid request (a missing field, a bad value, a rule broken).
    InvalidBody => "invalid-body", Caller, Never;
    BodyTooLarge => "body-too-large", Caller, Never;
    UnsupportedMediaType => "unsupported-media-type", Caller, Never;
    /// A bad query, path or header.
    BadRequest => "bad-request", Caller, Never;
    Unauthorized => "unauthorized", Caller, Never;
    /// Plain HTTP sent to a port that speaks TLS only.
    TlsRequired => "tls-required", Caller, Never;
    /// A forwarding header (`X-Forwarded-For`, `Forwarded`) from an address that is not one of
    /// the listener's trusted proxies.
    UntrustedForwarding => "untrusted-forwarding-header", Caller, Never;
    NotFound => "not-found", Caller, Never;
    MethodNotAllowed => "method-not-allowed", Caller, Never;
    MissingIdempotencyKey => "missing-idempotency-key", Caller, Never;
    /// The Idempotency-Key was used before for a different request.
    IdempotencyKeyReused => "idempotency-key-reused", Caller, Never;
    /// The Idempotency-Key is past the time it is honoured (24 hours): a retry that late may
    /// already be applied, so it is refused; a new request needs a new key.
    IdempotencyKeyExpired => "idempotency-key-expired", Caller, Never;
    UnknownSku => "unknown-sku", Caller, Never;
    UnknownPriceList => "unknown-price-list", Caller, Never;
    UnknownMarket => "unknown-market", Caller, Never;
    UnknownPromotion => "unknown-promotion", Caller, Never;
    /// It contradicts stored data (a SKU owned by another product, a list of another currency).
    Conflict => "conflict", Caller, Never;
    /// A stock decrease would cut into units held in edge grants (invariant I2); it may succeed
    /// once the grants come back.
    HeldInGrants => "held-in-grants", Caller, Later;
    /// Not enough units; it may succeed once stock is added.
    OutOfStock => "out-of-stock", Caller, Later;
    NotSoldInMarket => "not-sold-in-market", Caller, Never;
    NoPrice => "no-price", Caller, Never;
    Quantity => "bad-quantity", Caller, Never;
    /// Over this client's request rate.
    RateLimited => "rate-limited", Caller, Later;
    /// The request took too long to arrive.
    RequestTimeout => "request-timeout", Caller, Later;
    /// Membership changes are made by the leader; ask it.
    NotLeader => "not-leader", Peer, Later;
    /// Too much in flight here; nothing was done.
    Overloaded => "overloaded", Us, Later;
    /// No leader, no core, or no store to be reached now; nothing was done.
    Unavailable => "unavailable", Peer, Later;
    /// Not done in time, and it may still be: retry with the same key.
    Timeout => "timeout", Peer, Later;
    Internal => "internal", Us, Never;
    // Kinds are only ever added below: a kind's place is its encoding on the mesh
    // (`WriteError::Refused`), pinned by replication's golden frames (the order above is
    // the one meshes of earlier builds speak).
    /// A shopper's bearer token that does not verify: forged, expired, for another audience or
    /// issuer, signed with an algorithm or key not accepted, or too large.
    InvalidToken => "invalid-token", Caller, Never;
    /// This needs a signed-in shopper (a bearer token from the identity provider).
    TokenRequired => "token-required", Caller, Never;
    /// A customer group asked for in a query or body that the shopper's token does not grant.
    GroupNotGranted => "group-not-granted", Caller, Never;
    /// A customer id in a body that is not the one the shopper's token names.
    CustomerNotGranted => "customer-not-granted", Caller, Never;
    /// An admin token without the scope the route needs.
    InsufficientScope => "insufficient-scope", Caller, Never;
    /// A cache could not reach the origin behind it.
    OriginUnreachable => "origin-unreachable", Peer, Later;
    /// The origin behind a cache did not answer, or stopped sending, within its time.
    OriginTimeout => "origin-timeout", Peer, Later;
    /// The origin behind a cache sent a response that is not HTTP, or broke off its body.
    OriginBroken => "origin-broken", Peer, Later;
    /// `Cache-Control: only-if-cached`, and the cache has nothing it may serve.
    NotCached => "not-cached", Caller, Never;
    /// A `Range` that no byte of the representation falls in.
    RangeNotSatisfiable => "range-not-satisfiable", Caller, Never;
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// An error that says what kind of failure it is. Whose fault it is and whether a retry
/// helps follow from the kind, unless the error knows better.
pub trait Fault: std::error::Error {
    fn kind(&self) -> Kind;

    fn whose(&self) -> Whose {
        self.kind().whose()
    }

    fn retry(&self) -> Retry {
        self.kind().retry()
    }
}

/// When to try again after failures in a row: waits that double from `min` to `max`, each
/// drawn from the upper half of the current step (so callers that failed together, such as
/// every edge of a region whose core died, do not come back together), and back to `min` after
/// a success. Randomness is a parameter (`draw`), so that a test can replay any schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: std::time::Duration,
    max: std::time::Duration,
    step: std::time::Duration,
}

impl Backoff {
    pub fn new(min: std::time::Duration, max: std::time::Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            step: min,
        }
    }

    /// The wait after one more failure, for a random `draw`.
    pub fn failed(&mut self, draw: u64) -> std::time::Duration {
        let step = self.step;
        self.step = (self.step * 2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from((step - half).as_micros()).unwrap_or(u64::MAX);
        half + std::time::Duration::from_micros(draw % spread.max(1))
    }

    /// A success: the next failure waits the least again.
    pub fn succeeded(&mut self) {
        self.step = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter_and_resets_on_success() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800));
        let waits: Vec<Duration> = (0..6).map(|i| b.failed(i * 7_919)).collect();
        let steps = [100u64, 200, 400, 800, 800, 800];
        for (w, step) in waits.iter().zip(steps) {
            let step = Duration::from_millis(step);
            assert!(*w >= step / 2 && *w <= step, "{w:?} outside {step:?}");
        }
        // Different draws spread callers over the upper half of a step.
        let mut a = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut c = a.clone();
        assert_ne!(a.failed(1), c.failed(40_000));
        b.succeeded();
        assert!(b.failed(0) <= Duration::from_millis(100));
    }

    #[test]
    fn slugs_are_unique_and_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(k.slug()), "{k:?} repeats a slug");
            assert!(
                k.slug()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{k:?}"
            );
        }
    }

    #[test]
    fn what_a_caller_can_fix_is_never_retried_as_it_is() {
        for k in [
            Kind::InvalidBody,
            Kind::IdempotencyKeyReused,
            Kind::UnknownSku,
        ] {
            assert_eq!((k.whose(), k.retry()), (Whose::Caller, Retry::Never));
        }
        for k in [Kind::Unavailable, Kind::Timeout, Kind::Overloaded] {
            assert_eq!(k.retry(), Retry::Later);
            assert_ne!(k.whose(), Whose::Caller);
        }
    }
}
