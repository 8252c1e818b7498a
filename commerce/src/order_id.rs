//! Order ids: the id of the order a customer places under an Idempotency-Key. Every edge and
//! core derives the same id from the same customer and key, so a key retried anywhere names one
//! order and commits at most once (I3) without a separate index of keys.
//!
//! Two formats, told apart by their prefix; ids of both stay valid for as long as orders are
//! kept:
//! - v2, `o2-…`: an HMAC-SHA256 of the customer and the key under the deployment's secret
//!   (`OrderIdKey`, the same at every edge and core). Without the secret nobody can compute the
//!   id of someone's order from their customer id and key, nor tell two ids' customers apart.
//! - v1, `o-…`: a SHA-256 of the customer and the key, with no secret, made by earlier
//!   versions. Still found, and still taken from an edge not yet upgraded. A key first used
//!   under v1 and retried under v2 names two ids, so the core also looks for the v1 id of each
//!   v2 order's key (`v1_id`) while it holds v1 orders, and answers the retry with that order.
//!
//! A time-led key (a UUIDv7 or a ULID, as the API recommends) gives an id led by that time,
//! `o2-<ms, 12 hex>-<mac, 20 hex>`, so that orders reach the store roughly in the order of
//! their ids and a B-tree takes them side by side; any other key gives `o2-<mac, 32 hex>`.

use crate::id::{CustomerId, OrderId};

/// The prefix of each format.
const V1: &str = "o-";
const V2: &str = "o2-";

/// The deployment's secret that v2 order ids are derived under.
pub struct OrderIdKey(ring::hmac::Key);

impl OrderIdKey {
    /// Bytes of a secret.
    pub const LEN: usize = 32;

    pub fn new(secret: &[u8; Self::LEN]) -> Self {
        OrderIdKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret))
    }

    /// The key derived from the deployment's secret (kept beside its certificates), for order
    /// ids alone: the secret may key other things without their values ever meeting.
    pub fn of_deployment(secret: &[u8; Self::LEN]) -> Self {
        let deployment = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        let tag = ring::hmac::sign(&deployment, b"tradewind order ids v2");
        let mut key = [0u8; Self::LEN];
        key.copy_from_slice(tag.as_ref());
        Self::new(&key)
    }

    /// The id of the order `customer` places under Idempotency-Key `key`.
    pub fn order_id(&self, customer: &CustomerId, key: &str) -> OrderId {
        let mut mac = ring::hmac::Context::with_key(&self.0);
        mac.update(customer.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(key.as_bytes());
        id_of(V2, key, mac.sign().as_ref())
    }
}

impl std::fmt::Debug for OrderIdKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OrderIdKey(..)")
    }
}

/// The v1 id of the order `customer` placed under `key`: what versions before v2 derived.
pub fn v1_id(customer: &CustomerId, key: &str) -> OrderId {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(customer.as_str().as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    id_of(V1, key, &h.finalize())
}

/// `prefix`, then the key's time if it has one, then as much of `digest` as fits.
fn id_of(prefix: &str, key: &str, digest: &[u8]) -> OrderId {
    let hex = |bytes: &[u8], out: &mut String| {
        for b in bytes {
            out.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            out.push(char::from_digit(u32::from(b & 0xf), 16).unwrap_or('0'));
        }
    };
    let mut id = String::with_capacity(prefix.len() + 33);
    id.push_str(prefix);
    match key_time_ms(key) {
        Some(ms) => {
            id.push_str(&format!("{ms:012x}-"));
            hex(&digest[..10], &mut id);
        }
        None => hex(&digest[..16], &mut id),
    }
    OrderId::new(id).expect("hex digits are id characters")
}

/// A UUIDv7 made at unix-ms `ms` from the random bits `random`: the key the API recommends,
/// since it says when it was made (`key_time_ms`), sorts by time, and names time-led order ids.
pub fn time_led_key(ms: u64, random: u128) -> String {
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        (ms >> 16) & 0xffff_ffff,
        ms & 0xffff,
        (random >> 116) & 0xfff,
        0x8000 | ((random >> 100) & 0x3fff),
        random & 0xffff_ffff_ffff
    )
}

/// The unix-ms time at the start of a UUIDv7 or ULID key, if the key is one.
pub fn key_time_ms(key: &str) -> Option<u64> {
    let b = key.as_bytes();
    // UUIDv7: 8-4-4-4-12 hex digits, version nibble 7; the first 48 bits are the time.
    if b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'7'
        && b.iter()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || c.is_ascii_hexdigit())
    {
        let hex: String = key[..8].chars().chain(key[9..13].chars()).collect();
        return u64::from_str_radix(&hex, 16).ok();
    }
    // ULID: 26 Crockford base32 digits; the first 10 are the time (48 bits, so the first
    // digit is at most 7).
    const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    if b.len() == 26 {
        let mut ms: u64 = 0;
        for (i, c) in b.iter().enumerate() {
            let d = CROCKFORD
                .iter()
                .position(|x| *x == c.to_ascii_uppercase())?;
            if i < 10 {
                ms = ms * 32 + d as u64;
            }
        }
        return (b[0] <= b'7').then_some(ms);
    }
    None
}

/// Which format an order id is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdFormat {
    V1,
    V2,
}

pub fn format_of(id: &OrderId) -> Option<IdFormat> {
    let s = id.as_str();
    if s.starts_with(V2) {
        Some(IdFormat::V2)
    } else if s.starts_with(V1) {
        Some(IdFormat::V1)
    } else {
        None
    }
}

/// Whether `id` can be the id of the order `customer` places under `key`, as far as can be
/// told without the deployment's secret (which the rules, the same on every replica, never
/// hold): a v1 id exactly, a v2 id by its shape and the time its key leads with. The MAC itself
/// is made by the edge or core that took the order, each holding the secret.
pub fn may_name(id: &OrderId, customer: &CustomerId, key: &str) -> bool {
    match format_of(id) {
        Some(IdFormat::V1) => v1_id(customer, key) == *id,
        Some(IdFormat::V2) => {
            let body = &id.as_str()[V2.len()..];
            let all_hex =
                |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
            match key_time_ms(key) {
                Some(ms) => body
                    .split_once('-')
                    .is_some_and(|(time, mac)| time == format!("{ms:012x}") && all_hex(mac, 20)),
                None => all_hex(body, 32),
            }
        }
        None => false,
    }
}

/// How many of a customer's newest orders a decision looks through for one a key placed under
/// a v2 id, when the key comes again under its v1 id (from a build before v2 ids, during a
/// rolling upgrade): bounded, since it is read for every such order.
pub const V1_LOOKBACK_ORDERS: usize = 256;

/// The v1 id a v2 order under `key` may stand beside (a key first used before v2), if it is
/// one.
pub fn v1_beside(id: &OrderId, customer: &CustomerId, key: &str) -> Option<OrderId> {
    (format_of(id) == Some(IdFormat::V2)).then(|| v1_id(customer, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(s: &str) -> CustomerId {
        CustomerId::new(s).unwrap()
    }

    #[test]
    fn ids_are_keyed_stable_and_distinct() {
        let (k1, k2) = (OrderIdKey::new(&[1; 32]), OrderIdKey::new(&[2; 32]));
        let (c1, c2) = (customer("c-1"), customer("c-2"));
        let a = k1.order_id(&c1, "k");
        assert_eq!(a, k1.order_id(&c1, "k"));
        assert_ne!(a, k1.order_id(&c2, "k"));
        assert_ne!(a, k1.order_id(&c1, "k2"));
        // Another deployment's secret, another id: the id is no function of customer and key.
        assert_ne!(a, k2.order_id(&c1, "k"));
        assert_ne!(a, v1_id(&c1, "k"));
        assert_eq!(format_of(&a), Some(IdFormat::V2));
        assert_eq!(a.as_str().len(), 35);
        assert!(may_name(&a, &c1, "k"));
        assert!(!may_name(&a, &c1, "01932c07-a6b4-7000-8000-000000000000"));
    }

    #[test]
    fn a_time_led_key_leads_its_id_with_its_time() {
        let k = OrderIdKey::new(&[1; 32]);
        let c = customer("c-1");
        let v7 = "01932c07-a6b4-7000-8000-000000000000";
        let id = k.order_id(&c, v7);
        // HMAC-SHA256(secret, customer 0x00 key), as any HMAC implementation computes it.
        let k7 = OrderIdKey::new(&[7; 32]);
        assert_eq!(
            k7.order_id(&customer("cust-1"), v7).as_str(),
            "o2-01932c07a6b4-4ccac79c20677d71da87"
        );
        assert!(id.as_str().starts_with("o2-01932c07a6b4-"), "{id}");
        assert_eq!(id.as_str().len(), 36);
        assert!(may_name(&id, &c, v7));
        // Its time is the key's: the same MAC under another time is not the key's id.
        let other = id.as_str().replace("o2-01932c07a6b4", "o2-01932c07a6b5");
        assert!(!may_name(&OrderId::new(other).unwrap(), &c, v7));
        let later = k.order_id(&c, "01932c07-a6b5-7000-8000-000000000000");
        assert!(later > id, "ids of later keys sort later");
    }

    /// v1 ids as earlier versions made them (golden: a stored order's id never changes).
    #[test]
    fn v1_ids_are_what_earlier_versions_made() {
        let c = customer("cust-1");
        let id = v1_id(&c, "k-42");
        assert_eq!(id.as_str(), "o-5c60ada77a8aabd980a527b7a84f8f85");
        assert_eq!(format_of(&id), Some(IdFormat::V1));
        assert!(may_name(&id, &c, "k-42"));
        assert!(!may_name(&id, &c, "k-43"));
        assert!(!may_name(&id, &customer("cust-2"), "k-42"));
        let v7 = v1_id(&c, "01932c07-a6b4-7000-8000-000000000000");
        assert!(v7.as_str().starts_with("o-01932c07a6b4-"), "{v7}");
        assert_eq!(
            v1_beside(&OrderIdKey::new(&[1; 32]).order_id(&c, "k-42"), &c, "k-42"),
            Some(id.clone())
        );
        assert_eq!(v1_beside(&id, &c, "k-42"), None);
    }

    #[test]
    fn keys_say_when_they_were_made() {
        let v7 = "01932c07-a6b3-7d2e-9f00-1a2b3c4d5e6f";
        assert_eq!(key_time_ms(v7), Some(0x0193_2c07_a6b3));
        assert_eq!(
            key_time_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            Some(1_469_922_850_259)
        );
        assert_eq!(key_time_ms("81ARZ3NDEKTSV4RRFFQ69G5FAV"), None);
        let made = time_led_key(1_733_000_000_123, u128::MAX / 3);
        assert_eq!(key_time_ms(&made), Some(1_733_000_000_123));
        assert!(crate::order::check_idempotency_key(&made).is_ok());
        // A UUIDv4 is not time-led.
        assert_eq!(key_time_ms("9b2e4f0a-1c3d-4e5f-8a7b-6c5d4e3f2a1b"), None);
        assert_eq!(key_time_ms("ILLEGAL-ULID-CHARS-UUUUUUU"), None);
    }
}
