//! Who a client is, and how much of a listener it may hold: the key limits count by (an IPv4
//! address, or an IPv6 /64), the client's address behind a trusted proxy, the caps on open
//! connections, and a log of refusals that says why without flooding the log.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The unit limits count by: an IPv4 address, or the /64 of an IPv6 address (the block one
/// subscriber is given, so that one host cannot take a fresh address per connection). An
/// IPv4-mapped IPv6 address is its IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !((1u128 << 64) - 1))),
        },
    }
}

/// Addresses one `X-Forwarded-For` may list.
const FORWARDED_HOPS_MAX: usize = 32;

/// The client a request comes from: `peer` itself, or, when `peer` is a trusted proxy, the
/// nearest address in `X-Forwarded-For` that is not a trusted proxy (proxies append, so the
/// addresses left of the first untrusted one were written by the client and prove nothing).
/// A forwarding header from any other peer is an error: it is refused, not believed.
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> Result<IpAddr, String> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let forwarded = headers.get_all("x-forwarded-for");
    if !is_trusted(&peer) {
        if forwarded.iter().next().is_some() || headers.contains_key("forwarded") {
            return Err(format!(
                "a forwarding header from {peer}, which is not a trusted proxy"
            ));
        }
        return Ok(peer);
    }
    let mut hops = Vec::new();
    for value in forwarded {
        let text = value
            .to_str()
            .map_err(|_| "X-Forwarded-For: not ASCII".to_owned())?;
        for part in text.split(',') {
            if hops.len() == FORWARDED_HOPS_MAX {
                return Err(format!(
                    "X-Forwarded-For: more than {FORWARDED_HOPS_MAX} addresses"
                ));
            }
            let ip: IpAddr = part
                .trim()
                .parse()
                .map_err(|_| format!("X-Forwarded-For: {:?} is not an address", part.trim()))?;
            hops.push(ip);
        }
    }
    Ok(hops
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer))
}

/// Kinds of `Refusal`.
const REFUSALS: usize = 7;

/// Why a connection or a request was refused before reaching an API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    ListenerFull,
    ClientFull,
    HandshakeFailed,
    HandshakeTimeout,
    PlaintextOnTls,
    UntrustedForwarding,
    RateLimited,
}

impl Refusal {
    pub fn name(self) -> &'static str {
        match self {
            Refusal::ListenerFull => "listener-full",
            Refusal::ClientFull => "client-connections-full",
            Refusal::HandshakeFailed => "tls-handshake-failed",
            Refusal::HandshakeTimeout => "tls-handshake-timeout",
            Refusal::PlaintextOnTls => "plaintext-on-tls-port",
            Refusal::UntrustedForwarding => "untrusted-forwarding-header",
            Refusal::RateLimited => "rate-limited",
        }
    }
}

/// Counts of refusals by reason, and a log line per reason at most once a second (with how
/// many were refused since the last line), so a flood is reported without becoming one.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: [AtomicU64; REFUSALS],
    logged_at_s: [AtomicU64; REFUSALS],
    logged_count: [AtomicU64; REFUSALS],
}

impl Refusals {
    pub fn note(&self, why: Refusal, client: IpAddr, detail: &dyn std::fmt::Display) {
        let i = why as usize;
        let n = self.counts[i].fetch_add(1, Ordering::Relaxed) + 1;
        let now_s = util::clock::now_ms().max(0) as u64 / 1000;
        let last = self.logged_at_s[i].load(Ordering::Relaxed);
        if now_s > last
            && self.logged_at_s[i]
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let since = n - self.logged_count[i].swap(n, Ordering::Relaxed);
            tracing::warn!(reason = why.name(), %client, refused_since_last_line = since, "refused: {detail}");
        }
    }

    /// Refusals of this kind since the listener started.
    pub fn count(&self, why: Refusal) -> u64 {
        self.counts[why as usize].load(Ordering::Relaxed)
    }
}

/// Open connections, by client, with their caps.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    per_client_max: u32,
    open: Mutex<(usize, HashMap<IpAddr, u32>)>,
}

/// A connection's place in the table, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    table: Arc<Connections>,
    /// `None` for a trusted proxy, which counts toward the listener's cap only.
    client: Option<IpAddr>,
}

impl Connections {
    pub fn new(max: usize, per_client_max: usize) -> Arc<Self> {
        Arc::new(Connections {
            max,
            per_client_max: u32::try_from(per_client_max).unwrap_or(u32::MAX),
            open: Mutex::default(),
        })
    }

    /// A place for a new connection from `client` (a `client_key`), unless a cap is reached.
    pub fn admit(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Slot, Refusal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.0 >= self.max {
            return Err(Refusal::ListenerFull);
        }
        if let Some(c) = client {
            let n = open.1.entry(c).or_insert(0);
            if *n >= self.per_client_max {
                return Err(Refusal::ClientFull);
            }
            *n += 1;
        }
        open.0 += 1;
        Ok(Slot {
            table: Arc::clone(self),
            client,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        open.0 -= 1;
        if let Some(c) = self.client
            && let Some(n) = open.1.get_mut(&c)
        {
            *n -= 1;
            if *n == 0 {
                open.1.remove(&c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_are_their_64_and_mapped_ipv4_is_ipv4() {
        assert_eq!(client_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            client_key(ip("2001:db8:1:2::1")),
            client_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(client_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn forwarding_headers_count_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let none = headers(&[]);
        assert_eq!(
            client_of(ip("192.0.2.1"), &none, &trusted),
            Ok(ip("192.0.2.1"))
        );
        // A spoof from an untrusted address is refused, whichever header it uses.
        let spoof = headers(&[("x-forwarded-for", "198.51.100.9")]);
        assert!(client_of(ip("192.0.2.1"), &spoof, &trusted).is_err());
        let spoof = headers(&[("forwarded", "for=198.51.100.9")]);
        assert!(client_of(ip("192.0.2.1"), &spoof, &trusted).is_err());
        // Through two trusted proxies: the nearest untrusted address; what the client wrote
        // to the left of it is ignored.
        let chain = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.9"),
            ("x-forwarded-for", "10.1.1.1"),
        ]);
        assert_eq!(
            client_of(ip("10.2.2.2"), &chain, &trusted),
            Ok(ip("198.51.100.9"))
        );
        // A trusted proxy that adds nothing is the client.
        assert_eq!(
            client_of(ip("10.2.2.2"), &none, &trusted),
            Ok(ip("10.2.2.2"))
        );
        let junk = headers(&[("x-forwarded-for", "not-an-address")]);
        assert!(client_of(ip("10.2.2.2"), &junk, &trusted).is_err());
        let long = headers(&[("x-forwarded-for", &["192.0.2.1"; 40].join(","))]);
        assert!(client_of(ip("10.2.2.2"), &long, &trusted).is_err());
    }

    #[test]
    fn connections_are_capped_per_listener_and_per_client_and_given_back() {
        let t = Connections::new(3, 2);
        let a = Some(ip("192.0.2.1"));
        let a1 = t.admit(a).unwrap();
        let _a2 = t.admit(a).unwrap();
        assert_eq!(t.admit(a).unwrap_err(), Refusal::ClientFull);
        let _b = t.admit(Some(ip("192.0.2.2"))).unwrap();
        assert_eq!(t.admit(None).unwrap_err(), Refusal::ListenerFull);
        drop(a1);
        assert_eq!(t.open(), 2);
        let _a3 = t.admit(a).unwrap();
    }
}
