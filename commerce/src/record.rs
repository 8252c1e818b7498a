//! The rows of the authoritative store, typed. A decision says what it writes as `Write`s
//! (`decide`); the core turns them into rows (`Write::row`: the key of `keys`, the value in its
//! format of `format`) and takes them into memory (`State::apply`). A core loading its store and
//! an edge following the change feed turn rows back into `Write`s (`Write::from_row`) and take
//! them into memory the same way, so the same rows make the same state everywhere.

use crate::catalog::Product;
use crate::escrow::Inventory;
use crate::format::CommitLog;
use crate::id::{CustomerId, PromotionId, SkuId};
use crate::keys;
use crate::market::Market;
use crate::order::Order;
use crate::personal::{EpochEnd, Erasure};
use crate::pricing::{PriceEntry, PriceList, Promotion};

/// One stored record, with what its key is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Market(Market),
    PriceList(PriceList),
    Product(Product),
    /// A SKU's price in one list (the entry names the list).
    Price(SkuId, PriceEntry),
    Promotion(Promotion),
    Inventory(SkuId, Inventory),
    /// Boxed: an order is several times the size of the other records.
    Order(Box<Order>),
    /// The orders decided at one version.
    CommitLog(u64, CommitLog),
    /// A customer's personal data erased.
    Erasure(CustomerId, Erasure),
    /// A customer's epoch (`Erasure::epoch`) that an erasure ended: the key their home regions
    /// kept their addresses under in it is to be destroyed.
    EpochEnded(CustomerId, i64, EpochEnd),
}

/// One change a decision makes to the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    Put(Record),
    /// The one kind of record ever deleted.
    DeletePromotion(PromotionId),
}

/// Why a stored row does not make a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RowError {
    #[error("a {kind} row with a malformed key {key:?}")]
    BadKey { kind: &'static str, key: String },
    #[error(transparent)]
    Decode(#[from] codec::CodecError),
    #[error("a deleted {kind} row, which is never deleted")]
    NeverDeleted { kind: &'static str },
}

impl Record {
    /// The record's key (`keys`).
    pub fn key(&self) -> Vec<u8> {
        match self {
            Record::Market(m) => keys::market(&m.id),
            Record::PriceList(l) => keys::price_list(&l.id),
            Record::Product(p) => keys::product(&p.id),
            Record::Price(sku, e) => keys::price(sku, &e.list),
            Record::Promotion(p) => keys::promotion(&p.id),
            Record::Inventory(sku, _) => keys::inventory(sku),
            Record::Order(o) => keys::order(&o.order_id),
            Record::CommitLog(version, _) => keys::commit_log(*version),
            Record::Erasure(customer, _) => keys::erasure(customer),
            Record::EpochEnded(customer, epoch, _) => keys::epoch_ended(customer, *epoch),
        }
    }

    /// The key of the index row that goes with the record's own, if it has one: an order is
    /// listed among its customer's orders (`keys::customer_order`). Index rows hold nothing.
    pub fn index_key(&self) -> Option<Vec<u8>> {
        match self {
            Record::Order(o) => Some(keys::customer_order(
                &o.customer_id,
                o.accepted_at_ms,
                &o.order_id,
            )),
            _ => None,
        }
    }

    /// The record's value, in its format.
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        match self {
            Record::Market(m) => codec::encode(m),
            Record::PriceList(l) => codec::encode(l),
            Record::Product(p) => codec::encode(p),
            Record::Price(_, e) => codec::encode(e),
            Record::Promotion(p) => codec::encode(p),
            Record::Inventory(_, i) => codec::encode(i),
            Record::Order(o) => codec::encode(o.as_ref()),
            Record::CommitLog(_, c) => codec::encode(c),
            Record::Erasure(_, e) => codec::encode(e),
            Record::EpochEnded(_, _, e) => codec::encode(e),
        }
    }
}

impl Write {
    /// The row this write makes: its key, and its value (`None`: deleted).
    pub fn row(&self) -> Result<(Vec<u8>, Option<Vec<u8>>), codec::CodecError> {
        match self {
            Write::Put(r) => Ok((r.key(), Some(r.encode()?))),
            Write::DeletePromotion(id) => Ok((keys::promotion(id), None)),
        }
    }

    /// The write a stored row of a mirrored kind (`keys::MIRRORED`) stands for: what a core
    /// loads at start and an edge follows. `None` for rows of other kinds, which memory does
    /// not hold (orders, the commit log, dedup records, metadata).
    pub fn from_row(key: &[u8], value: Option<&[u8]>) -> Result<Option<Write>, RowError> {
        let Some(&tag) = key.first() else {
            return Ok(None);
        };
        if !keys::MIRRORED.contains(&tag) {
            return Ok(None);
        }
        let kind = keys::kind_name(tag);
        let bad_key = || RowError::BadKey {
            kind,
            key: String::from_utf8_lossy(key).into_owned(),
        };
        let single = || keys::parse_single(tag, key).ok_or_else(bad_key);
        let Some(v) = value else {
            return match tag {
                keys::PROMOTION => Ok(Some(Write::DeletePromotion(
                    PromotionId::new(single()?).map_err(|_| bad_key())?,
                ))),
                _ => Err(RowError::NeverDeleted { kind }),
            };
        };
        let record = match tag {
            keys::MARKET => Record::Market(codec::decode(v)?),
            keys::PRICE_LIST => Record::PriceList(codec::decode(v)?),
            keys::PRODUCT => Record::Product(codec::decode(v)?),
            keys::PRICE => {
                let sku = keys::parse_price(key)
                    .and_then(|(sku, _)| SkuId::new(sku).ok())
                    .ok_or_else(bad_key)?;
                Record::Price(sku, codec::decode(v)?)
            }
            keys::PROMOTION => Record::Promotion(codec::decode(v)?),
            keys::ERASURE => Record::Erasure(
                CustomerId::new(single()?).map_err(|_| bad_key())?,
                codec::decode(v)?,
            ),
            _ => {
                let sku = SkuId::new(single()?).map_err(|_| bad_key())?;
                Record::Inventory(sku, codec::decode(v)?)
            }
        };
        Ok(Some(Write::Put(record)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_bad_rows_are_refused() {
        let inv = Inventory {
            stocked: 5,
            ..Inventory::default()
        };
        let sku = SkuId::new("A").unwrap();
        let w = Write::Put(Record::Inventory(sku.clone(), inv));
        let (k, v) = w.row().unwrap();
        assert_eq!(Write::from_row(&k, v.as_deref()), Ok(Some(w)));
        let gone = Write::DeletePromotion(PromotionId::new("p").unwrap());
        let (k, v) = gone.row().unwrap();
        assert_eq!(v, None);
        assert_eq!(Write::from_row(&k, None), Ok(Some(gone)));
        // Kinds memory does not hold are passed over, undecoded.
        assert_eq!(Write::from_row(b"Oo-1", Some(b"junk")), Ok(None));
        assert_eq!(Write::from_row(b"", None), Ok(None));
        assert!(matches!(
            Write::from_row(&keys::inventory(&sku), None),
            Err(RowError::NeverDeleted { .. })
        ));
        assert!(matches!(
            Write::from_row(b"Ia b", Some(&[1])),
            Err(RowError::BadKey { .. })
        ));
        assert!(matches!(
            Write::from_row(&keys::inventory(&sku), Some(&[9, 9])),
            Err(RowError::Decode(_))
        ));
    }
}
