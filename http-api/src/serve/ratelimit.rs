//! A token bucket per client (a `client_key`): one client flooding a listener is answered 429
//! with Retry-After, and everyone else is served as before. The table of clients is bounded;
//! when full, clients whose buckets have refilled (idle ones) are forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Clients tracked at once.
const CLIENTS_MAX: usize = 65_536;

#[derive(Clone)]
pub struct RateLimiter {
    /// Tokens added per second, and the most a bucket holds.
    rate: f64,
    burst: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            rate: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Arc::default(),
        }
    }

    /// Requests per second a client may make.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Takes a token for `client` at `now`; when there is none, the seconds until there is.
    pub fn take(&self, client: IpAddr, now: Instant) -> Result<(), u32> {
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= CLIENTS_MAX && !b.contains_key(&client) {
            let (rate, burst) = (self.rate, self.burst);
            b.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
            if b.len() >= CLIENTS_MAX {
                // Every tracked client is busy: the newcomer waits like a busy one.
                return Err(1);
            }
        }
        let (tokens, at) = b.entry(client).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.rate).ceil().max(1.0) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_while_others_are_served() {
        let l = RateLimiter::new(10, 5);
        let now = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(l.take(a, now), Ok(()));
        }
        assert_eq!(l.take(a, now), Err(1));
        assert_eq!(l.take(b, now), Ok(()));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_no_more_than_the_burst() {
        let l = RateLimiter::new(2, 3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(l.take(a, t0), Ok(()));
        }
        assert_eq!(l.take(a, t0), Err(1));
        // Half a second at 2 per second is one token.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(l.take(a, t1), Ok(()));
        assert_eq!(l.take(a, t1), Err(1));
        // An hour idle fills the bucket to its burst, not beyond.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(l.take(a, t2), Ok(()));
        }
        assert_eq!(l.take(a, t2), Err(1));
    }

    #[test]
    fn a_full_table_forgets_idle_clients_first() {
        let l = RateLimiter::new(1, 1);
        let t0 = Instant::now();
        let client = |i: u32| IpAddr::from(i.to_be_bytes());
        for i in 0..CLIENTS_MAX as u32 {
            assert_eq!(l.take(client(i), t0), Ok(()));
        }
        // Every tracked client is busy: a newcomer waits.
        assert_eq!(l.take(client(u32::MAX), t0), Err(1));
        // A second on, they have all refilled: they are forgotten and the newcomer is served.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.take(client(u32::MAX), t1), Ok(()));
    }
}
