//! Response-rate limiting of UDP answers, so that the router cannot be used to flood a victim
//! whose address an attacker writes as the source of its queries (an amplifier: an answer is
//! several times the query). Modelled on BIND's and Knot's RRL: answers to one network (an IPv4
//! /24, an IPv6 /56 by default) are counted in a token bucket; past its rate, answers are
//! dropped, except every `slip`-th, which goes out truncated (TC=1, no records: no larger than
//! the query) so that a real resolver behind that network retries over TCP, where the source
//! cannot be forged, and is answered. TCP is never limited here. Time is passed in.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::Instant;

/// Independent tables, so the UDP threads rarely wait for each other.
const SHARDS: usize = 16;
/// Networks tracked per shard; when full, networks whose buckets have refilled are forgotten.
const NETWORKS_PER_SHARD: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RrlSettings {
    /// Answers per second to one network; 0 turns limiting off.
    pub responses_per_s: u32,
    /// Answers one network may get at once after a quiet spell.
    pub burst: u32,
    /// Of the answers over the rate, every `slip`-th is sent truncated; 0 drops them all.
    pub slip: u32,
    /// The networks answers are counted by.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

impl Default for RrlSettings {
    fn default() -> Self {
        RrlSettings {
            // A resolver asks again once per TTL (10 s) per name; a large ISP's resolvers
            // behind one /24 ask for a few names. Far above that, far below a flood.
            responses_per_s: 100,
            burst: 200,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
        }
    }
}

impl RrlSettings {
    pub fn check(&self) -> Result<(), String> {
        if self.responses_per_s > 0 && self.burst == 0 {
            return Err("dns.rrl.burst: at least 1".into());
        }
        if self.ipv4_prefix > 32 || self.ipv6_prefix > 128 {
            return Err("dns.rrl: ipv4_prefix at most 32, ipv6_prefix at most 128".into());
        }
        if self.slip > 10 {
            return Err("dns.rrl.slip: 0 to 10".into());
        }
        Ok(())
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Send,
    /// Send a truncated answer instead.
    Slip,
    Drop,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    /// Answers limited since the bucket last had a token (for `slip`).
    limited: u32,
}

pub struct Rrl {
    settings: RrlSettings,
    shards: Vec<Mutex<HashMap<IpAddr, Bucket>>>,
}

impl Rrl {
    pub fn new(settings: RrlSettings) -> Self {
        Rrl {
            settings,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    /// The network `ip` is counted in.
    pub fn network(&self, ip: IpAddr) -> IpAddr {
        // The top `prefix` bits of a `width`-bit address.
        let mask = |prefix: u8, width: u32| -> u128 {
            match u32::from(prefix) {
                0 => 0,
                p if p >= width => u128::MAX >> (128 - width),
                p => (u128::MAX >> (128 - width)) & !(u128::MAX >> (128 - width + p)),
            }
        };
        match ip {
            IpAddr::V4(v4) => {
                let m = mask(self.settings.ipv4_prefix, 32) as u32;
                IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & m))
            }
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => self.network(IpAddr::V4(v4)),
                None => {
                    let m = mask(self.settings.ipv6_prefix, 128);
                    IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & m))
                }
            },
        }
    }

    /// Whether an answer to `ip` at `now` goes out whole, truncated or not at all.
    pub fn verdict(&self, ip: IpAddr, now: Instant) -> Verdict {
        let s = &self.settings;
        if s.responses_per_s == 0 {
            return Verdict::Send;
        }
        let net = self.network(ip);
        let shard = {
            use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
            BuildHasherDefault::<DefaultHasher>::default().hash_one(net) as usize % SHARDS
        };
        let (rate, burst) = (f64::from(s.responses_per_s), f64::from(s.burst));
        let mut table = self.shards[shard].lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= NETWORKS_PER_SHARD && !table.contains_key(&net) {
            table.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
            if table.len() >= NETWORKS_PER_SHARD {
                // Every tracked network is busy: a newcomer is limited like a busy one.
                return Verdict::Drop;
            }
        }
        let b = table.entry(net).or_insert(Bucket {
            tokens: burst,
            at: now,
            limited: 0,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            b.limited = 0;
            return Verdict::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        if s.slip > 0 && b.limited.is_multiple_of(s.slip) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// The truncated form of an answer to `query`: its header with QR and TC set and no records,
/// and its question. `None` when the query has no whole question to copy.
pub fn truncated(query: &[u8]) -> Option<Vec<u8>> {
    // Header (12 bytes), then one question: a name of labels, then type and class. An answer
    // (QR set) gets none, truncated or not: two servers must not bounce replies forever, and
    // a rate-limited network is when that would start (found by the hostile-datagrams test,
    // whose noise from 127.0.0.1 set the rate limit off before an answer was sent from there).
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            // A compression pointer or an extended label type: not in a question.
            return None;
        }
        at += 1 + len;
    }
    let end = at + 4;
    if end > query.len() {
        return None;
    }
    let mut out = query[..end].to_vec();
    // QR and TC, the opcode and RD kept; AA, RA, Z and the response code cleared.
    out[2] = (out[2] & 0b0111_1001) | 0b1000_0010;
    out[3] = 0;
    // One question, no answers, authorities or additional records (the OPT record too).
    out[6..12].fill(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_network_gets_its_burst_then_every_slipth_answer_truncated() {
        let rrl = Rrl::new(RrlSettings {
            responses_per_s: 10,
            burst: 5,
            slip: 2,
            ..RrlSettings::default()
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(rrl.verdict(ip("192.0.2.1"), t0), Verdict::Send);
        }
        let over: Vec<Verdict> = (0..6).map(|_| rrl.verdict(ip("192.0.2.77"), t0)).collect();
        use Verdict::*;
        assert_eq!(over, [Drop, Slip, Drop, Slip, Drop, Slip]);
        // Another network is answered meanwhile.
        assert_eq!(rrl.verdict(ip("198.51.100.1"), t0), Verdict::Send);
        // A tenth of a second later, one token is back.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(rrl.verdict(ip("192.0.2.1"), t1), Verdict::Send);
        assert_ne!(rrl.verdict(ip("192.0.2.1"), t1), Verdict::Send);
    }

    #[test]
    fn networks_are_prefixes_and_off_means_off() {
        let rrl = Rrl::new(RrlSettings::default());
        assert_eq!(rrl.network(ip("192.0.2.99")), ip("192.0.2.0"));
        assert_eq!(rrl.network(ip("2001:db8:1:2ff::1")), ip("2001:db8:1:200::"));
        assert_eq!(rrl.network(ip("::ffff:192.0.2.9")), ip("192.0.2.0"));
        let off = Rrl::new(RrlSettings {
            responses_per_s: 0,
            ..RrlSettings::default()
        });
        let t = Instant::now();
        assert!((0..10_000).all(|_| off.verdict(ip("192.0.2.1"), t) == Verdict::Send));
    }

    #[test]
    fn a_truncated_answer_is_the_header_and_question_only() {
        // id 0xabcd, RD, one question www.x. A IN, one additional record (an OPT).
        let mut q = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1];
        q.extend_from_slice(b"\x03www\x01x\x00\x00\x01\x00\x01");
        let question_end = q.len();
        q.extend_from_slice(&[0, 0, 41, 16, 0, 0, 0, 0, 0, 0, 0]);
        let t = truncated(&q).unwrap();
        assert_eq!(t.len(), question_end);
        assert!(t.len() <= q.len());
        assert_eq!(&t[..2], &[0xab, 0xcd]);
        assert_eq!(t[2], 0x83, "QR, TC and RD");
        assert_eq!(&t[4..12], &[0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&t[12..], &q[12..question_end]);
        for bad in [
            &q[..5],
            &q[..14],
            b"\x00\x00\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00".as_slice(),
        ] {
            assert!(truncated(bad).is_none());
        }
        // An answer, rate limited, is dropped, not answered truncated.
        let mut answer = q.clone();
        answer[2] |= 0x80;
        assert!(truncated(&answer).is_none());
    }
}
