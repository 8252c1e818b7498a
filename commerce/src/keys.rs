//! The key layout of the authoritative store: one ordered byte keyspace, a one-byte tag per
//! record kind, then the record's id. Ids never contain `0x00` (see `id::check_id`), so it
//! separates the parts of compound keys and keeps their byte order equal to tuple order.
//! Numbers are big-endian so that byte order is numeric order.
//!
//! | tag | key                          | value                       |
//! |-----|------------------------------|-----------------------------|
//! | `M` | `M` name                     | metadata (applied index, format) |
//! | `P` | `P` product id               | `Product`                   |
//! | `L` | `L` price list id            | `PriceList`                 |
//! | `K` | `K` market id                | `Market`                    |
//! | `R` | `R` sku `0` price list id    | `PriceEntry`                |
//! | `N` | `N` promotion id             | `Promotion`                 |
//! | `I` | `I` sku                      | `Inventory`                 |
//! | `O` | `O` order id                 | `Order`                     |
//! | `U` | `U` customer `0` newness(8) order id | nothing: a customer's orders, newest first |
//! | `C` | `C` version(8)               | ids of the orders decided at that version, in order |
//! | `D` | `D` command id(16)           | dedup record of a command   |
//! | `V` | `V` version(8)               | command id applied there(16), log clock then(8) |
//! | `A` | `A` version(8)               | `AuditRecord`: the admin write applied there |
//! | `E` | `E` customer                 | `Erasure`: when the customer's personal data was erased |
//! | `X` | `X` customer `0` epoch(8)    | `Erasure`: the one that ended the customer's epoch (its key is destroyed) |

use crate::id::{CustomerId, MarketId, OrderId, PriceListId, ProductId, PromotionId, SkuId};

pub const META: u8 = b'M';
pub const PRODUCT: u8 = b'P';
pub const PRICE_LIST: u8 = b'L';
pub const MARKET: u8 = b'K';
pub const PRICE: u8 = b'R';
pub const PROMOTION: u8 = b'N';
pub const INVENTORY: u8 = b'I';
pub const ORDER: u8 = b'O';
pub const CUSTOMER_ORDER: u8 = b'U';
pub const COMMIT_LOG: u8 = b'C';
pub const DEDUP: u8 = b'D';
pub const DEDUP_BY_VERSION: u8 = b'V';
pub const AUDIT: u8 = b'A';
pub const ERASURE: u8 = b'E';
pub const EPOCH_ENDED: u8 = b'X';

/// The last applied log index (the store's version).
pub const META_APPLIED: &[u8] = b"Mapplied";
/// The format of the stored values; a store written by a newer format is refused.
pub const META_FORMAT: &[u8] = b"Mformat";
/// The log's clock: the largest proposer's clock (unix ms, big-endian) of the entries applied,
/// by which dedup records expire.
pub const META_CLOCK: &[u8] = b"Mclock";
/// The replication log's record of what the store has applied (opaque to the store).
pub const META_REPLICATION: &[u8] = b"Mreplication";
/// A random token of the last committed batch, for backends whose commits can be "maybe
/// committed": a retry that finds its own token knows it already committed.
pub const META_BATCH_TOKEN: &[u8] = b"Mbatch_token";

fn tagged(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = 1 + parts.iter().map(|p| p.len() + 1).sum::<usize>();
    let mut k = Vec::with_capacity(len);
    k.push(tag);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            k.push(0);
        }
        k.extend_from_slice(p);
    }
    k
}

pub fn product(id: &ProductId) -> Vec<u8> {
    tagged(PRODUCT, &[id.as_str().as_bytes()])
}

pub fn price_list(id: &PriceListId) -> Vec<u8> {
    tagged(PRICE_LIST, &[id.as_str().as_bytes()])
}

pub fn market(id: &MarketId) -> Vec<u8> {
    tagged(MARKET, &[id.as_str().as_bytes()])
}

pub fn price(sku: &SkuId, list: &PriceListId) -> Vec<u8> {
    tagged(PRICE, &[sku.as_str().as_bytes(), list.as_str().as_bytes()])
}

pub fn erasure(customer: &CustomerId) -> Vec<u8> {
    tagged(ERASURE, &[customer.as_str().as_bytes()])
}

/// An epoch of `customer` ended (`Record::EpochEnded`); the epoch is a time (unix ms, `i64`)
/// written with its sign bit flipped so that byte order is numeric order.
pub fn epoch_ended(customer: &CustomerId, epoch: i64) -> Vec<u8> {
    let ordered = (epoch as u64) ^ (1 << 63);
    tagged(
        EPOCH_ENDED,
        &[customer.as_str().as_bytes(), &ordered.to_be_bytes()],
    )
}

/// The customer and the epoch of an `epoch_ended` key.
pub fn parse_epoch_ended(key: &[u8]) -> Option<(&str, i64)> {
    let rest = key.strip_prefix(&[EPOCH_ENDED])?;
    let (customer, epoch) = rest.split_at_checked(rest.len().checked_sub(9)?)?;
    let (&zero, epoch) = epoch.split_first()?;
    if zero != 0 {
        return None;
    }
    let ordered = u64::from_be_bytes(epoch.try_into().ok()?);
    Some((
        std::str::from_utf8(customer).ok()?,
        (ordered ^ (1 << 63)) as i64,
    ))
}

pub fn promotion(id: &PromotionId) -> Vec<u8> {
    tagged(PROMOTION, &[id.as_str().as_bytes()])
}

pub fn inventory(sku: &SkuId) -> Vec<u8> {
    tagged(INVENTORY, &[sku.as_str().as_bytes()])
}

pub fn order(id: &OrderId) -> Vec<u8> {
    tagged(ORDER, &[id.as_str().as_bytes()])
}

/// A customer's order in the index of their orders: ordered by customer, then newest first
/// (`u64::MAX` less the time it was accepted), then by id.
pub fn customer_order(customer: &CustomerId, accepted_at_ms: i64, id: &OrderId) -> Vec<u8> {
    let newness = u64::MAX - accepted_at_ms.max(0).unsigned_abs();
    tagged(
        CUSTOMER_ORDER,
        &[
            customer.as_str().as_bytes(),
            &newness.to_be_bytes(),
            id.as_str().as_bytes(),
        ],
    )
}

/// `[start, end)` covering every order of `customer` in their index.
pub fn customer_orders(customer: &CustomerId) -> (Vec<u8>, Vec<u8>) {
    let mut start = tagged(CUSTOMER_ORDER, &[customer.as_str().as_bytes()]);
    start.push(0);
    let mut end = start.clone();
    // Every key of the customer has their id and `0`, then more bytes: `1` ends the range.
    if let Some(last) = end.last_mut() {
        *last = 1;
    }
    (start, end)
}

/// The order id of a key of a customer's order index.
pub fn parse_customer_order(key: &[u8]) -> Option<&str> {
    let rest = key.strip_prefix(&[CUSTOMER_ORDER])?;
    let sep = rest.iter().position(|b| *b == 0)?;
    // The customer, `0`, eight bytes of newness (which may hold `0`s), `0`, then the id.
    let id = rest.get(sep + 1 + 8 + 1..)?;
    std::str::from_utf8(id).ok()
}

/// The commit log: one row per version that decided orders, listing them in order. One row per
/// batch rather than one per order keeps an order commit at three rows.
pub fn commit_log(version: u64) -> Vec<u8> {
    tagged(COMMIT_LOG, &[&version.to_be_bytes()])
}

/// The version of a commit-log key.
pub fn parse_commit_log(key: &[u8]) -> Option<u64> {
    match key {
        [COMMIT_LOG, rest @ ..] => Some(u64::from_be_bytes(rest.try_into().ok()?)),
        _ => None,
    }
}

pub fn dedup(command_id: &[u8; 16]) -> Vec<u8> {
    tagged(DEDUP, &[command_id])
}

pub fn dedup_by_version(version: u64) -> Vec<u8> {
    tagged(DEDUP_BY_VERSION, &[&version.to_be_bytes()])
}

/// The audit log: the admin write applied at `version`.
pub fn audit(version: u64) -> Vec<u8> {
    tagged(AUDIT, &[&version.to_be_bytes()])
}

/// The SKU and price-list id of a price key.
pub fn parse_price(key: &[u8]) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(&[PRICE])?;
    let sep = rest.iter().position(|b| *b == 0)?;
    let sku = std::str::from_utf8(&rest[..sep]).ok()?;
    let list = std::str::from_utf8(&rest[sep + 1..]).ok()?;
    Some((sku, list))
}

/// The id in a key made of one tag and one id (products, inventory, ...).
pub fn parse_single(tag: u8, key: &[u8]) -> Option<&str> {
    std::str::from_utf8(key.strip_prefix(&[tag])?).ok()
}

/// What the records under `tag` are, for messages.
pub fn kind_name(tag: u8) -> &'static str {
    match tag {
        META => "metadata",
        PRODUCT => "product",
        PRICE_LIST => "price list",
        MARKET => "market",
        PRICE => "price",
        PROMOTION => "promotion",
        INVENTORY => "inventory",
        ORDER => "order",
        CUSTOMER_ORDER => "customer's order",
        COMMIT_LOG => "commit log",
        DEDUP => "dedup record",
        DEDUP_BY_VERSION => "dedup index",
        AUDIT => "audit record",
        ERASURE => "erasure",
        EPOCH_ENDED => "ended epoch",
        _ => "unknown",
    }
}

/// The kinds of record edges mirror through the change feed: what they need to list the
/// catalog, quote prices and sell from their grants (an inventory row carries every edge's
/// grant of its SKU). In the order a store is loaded.
pub const MIRRORED: [u8; 7] = [
    MARKET, PRICE_LIST, PRODUCT, PRICE, PROMOTION, INVENTORY, ERASURE,
];

/// Whether edges mirror the row under `key`.
pub fn mirrored(key: &[u8]) -> bool {
    key.first().is_some_and(|t| MIRRORED.contains(t))
}

/// `[start, end)` covering every key with `tag`.
pub fn tag_range(tag: u8) -> (Vec<u8>, Vec<u8>) {
    (vec![tag], vec![tag + 1])
}

/// From and to (exclusive) the keys of orders with v1 ids (`o-…`; `order_id`).
pub fn v1_order_range() -> (Vec<u8>, Vec<u8>) {
    (tagged(ORDER, &[b"o-"]), tagged(ORDER, &[b"o."]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_epochs_read_back_in_numeric_order() {
        let c = CustomerId::new("c-1").unwrap();
        let keys: Vec<_> = [-5i64, 0, 7, 1_733_000_000_000]
            .iter()
            .map(|e| epoch_ended(&c, *e))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for (k, e) in keys.iter().zip([-5i64, 0, 7, 1_733_000_000_000]) {
            assert_eq!(parse_epoch_ended(k), Some(("c-1", e)));
        }
        assert_eq!(parse_epoch_ended(b"Xc-1"), None);
        assert_eq!(parse_epoch_ended(&erasure(&c)), None);
    }

    #[test]
    fn a_customers_orders_sort_newest_first_and_stay_theirs() {
        let c = CustomerId::new("c-1").unwrap();
        let other = CustomerId::new("c-10").unwrap();
        let id = |s: &str| OrderId::new(s).unwrap();
        let old = customer_order(&c, 1_000, &id("o-b"));
        let new = customer_order(&c, 2_000, &id("o-a"));
        let same_time = customer_order(&c, 2_000, &id("o-c"));
        assert!(new < same_time && same_time < old);
        let (lo, hi) = customer_orders(&c);
        for k in [&old, &new, &same_time] {
            assert!(lo <= *k && *k < hi);
        }
        // Another customer whose id starts with this one's is outside the range.
        let theirs = customer_order(&other, 1_500, &id("o-d"));
        assert!(!(lo <= theirs && theirs < hi));
        assert_eq!(parse_customer_order(&old), Some("o-b"));
        // A time whose bytes hold zeros still parses.
        let zeros = customer_order(&c, 0xff00_0000_0000, &id("o-z"));
        assert_eq!(parse_customer_order(&zeros), Some("o-z"));
    }

    #[test]
    fn compound_keys_sort_as_tuples() {
        let a = SkuId::new("A").unwrap();
        let ab = SkuId::new("AB").unwrap();
        let z = PriceListId::new("z").unwrap();
        let b = PriceListId::new("b").unwrap();
        // ("A", "z") < ("AB", "b") even though "Az" > "ABb" byte-wise without a separator.
        assert!(price(&a, &z) < price(&ab, &b));
        assert!(commit_log(1) < commit_log(2));
        assert!(commit_log(256) > commit_log(255));
        assert_eq!(parse_commit_log(&commit_log(77)), Some(77));
        assert_eq!(parse_commit_log(b"Cxx"), None);
        assert_eq!(parse_price(&price(&a, &z)), Some(("A", "z")));
        assert_eq!(parse_single(INVENTORY, &inventory(&ab)), Some("AB"));
        assert_eq!(parse_single(INVENTORY, b"Px"), None);
        let (lo, hi) = tag_range(ORDER);
        let k = order(&OrderId::new("o-1").unwrap());
        assert!(lo <= k && k < hi);
    }
}
