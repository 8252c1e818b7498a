//! Reads of decided orders from the store: one order by its id, and every order in commit order
//! through the commit log (the admin API); a customer's orders, newest first, through their
//! index (edges, for the shopper signed in there); the audit log of admin writes.

use commerce::command::{AuditRecord, OrderCursor};
use commerce::format::CommitLog;
use commerce::keys;
use commerce::order::Order;
use commerce::personal::EpochEnd;
use commerce::{CustomerId, OrderId};

use crate::store::decode;
use crate::store::{Store, StoreError};

/// Reads one order from the store.
pub fn read_order(store: &dyn Store, id: &OrderId) -> Result<Option<Order>, StoreError> {
    let key = keys::order(id);
    store.get(&key)?.map(|v| decode(&key, &v)).transpose()
}

/// Up to `limit` of `customer`'s orders, newest first, after `after`.
pub fn customer_orders(
    store: &dyn Store,
    customer: &CustomerId,
    after: Option<&OrderCursor>,
    limit: usize,
) -> Result<Vec<Order>, StoreError> {
    let (lo, hi) = keys::customer_orders(customer);
    let from = match after {
        Some(c) => {
            let mut k = keys::customer_order(customer, c.accepted_at_ms, &c.order_id);
            k.push(0);
            k
        }
        None => lo,
    };
    let index = store.scan(&from, &hi, limit)?;
    let order_keys = index
        .iter()
        .map(|(k, _)| {
            keys::parse_customer_order(k)
                .and_then(|id| OrderId::new(id).ok())
                .map(|id| keys::order(&id))
                .ok_or_else(|| StoreError::corrupt(k, "bad index key"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut orders = Vec::with_capacity(order_keys.len());
    for (k, v) in order_keys.iter().zip(store.get_many(&order_keys)?) {
        let Some(v) = v else {
            return Err(StoreError::corrupt(k, "indexed but not stored"));
        };
        let order: Order = decode(k, &v)?;
        // The index is the customer's; a row saying otherwise is not shown to them.
        if &order.customer_id == customer {
            orders.push(order);
        }
    }
    Ok(orders)
}

/// Up to `limit` records of the audit log after version `after`, oldest first.
pub fn audit_after(
    store: &dyn Store,
    after: u64,
    limit: usize,
) -> Result<Vec<AuditRecord>, StoreError> {
    let from = keys::audit(after.saturating_add(1));
    let (_, end) = keys::tag_range(keys::AUDIT);
    store
        .scan(&from, &end, limit)?
        .iter()
        .map(|(k, v)| decode(k, v))
        .collect()
}

/// A position in commit order: the version an order was decided at and its place there.
pub type CommitCursor = (u64, u32);

/// Commit-log rows read per page while listing orders.
const LOG_PAGE_ROWS: usize = 64;

/// Up to `limit` decided orders in commit order after `after`, with the cursor of the last one.
pub fn orders_after(
    store: &dyn Store,
    after: Option<CommitCursor>,
    limit: usize,
) -> Result<(Vec<Order>, Option<CommitCursor>), StoreError> {
    let mut from = keys::commit_log(after.map_or(0, |(v, _)| v));
    let end = [keys::COMMIT_LOG + 1];
    let mut picked: Vec<(CommitCursor, Vec<u8>)> = Vec::with_capacity(limit);
    'pages: loop {
        let rows = store.scan(&from, &end, LOG_PAGE_ROWS)?;
        for (k, v) in &rows {
            let version =
                keys::parse_commit_log(k).ok_or_else(|| StoreError::corrupt(k, "bad log key"))?;
            let CommitLog(ids) = decode(k, v)?;
            for (seq, id) in ids.iter().enumerate() {
                let at = (version, seq as u32);
                if after.is_some_and(|a| at <= a) {
                    continue;
                }
                picked.push((at, keys::order(id)));
                if picked.len() == limit {
                    break 'pages;
                }
            }
        }
        match rows.last() {
            Some((k, _)) if rows.len() == LOG_PAGE_ROWS => {
                from = k.clone();
                from.push(0);
            }
            _ => break,
        }
    }
    let order_keys: Vec<Vec<u8>> = picked.iter().map(|(_, k)| k.clone()).collect();
    let mut orders = Vec::with_capacity(picked.len());
    for (k, v) in order_keys.iter().zip(store.get_many(&order_keys)?) {
        let v = v.ok_or_else(|| StoreError::corrupt(k, "commit log names a missing order"))?;
        orders.push(decode(k, &v)?);
    }
    Ok((orders, picked.last().map(|(at, _)| *at)))
}

/// Calls `f` with the customer, the epoch and how it ended of every ended epoch
/// (`Record::EpochEnded`), a page at a time.
pub fn ended_epochs(
    store: &dyn Store,
    f: &mut dyn FnMut(&str, i64, EpochEnd),
) -> Result<(), StoreError> {
    let (start, end) = keys::tag_range(keys::EPOCH_ENDED);
    store.for_each(&start, &end, 4_096, &mut |k, v| {
        let (customer, epoch) = keys::parse_epoch_ended(k)
            .ok_or_else(|| StoreError::corrupt(k, "bad ended epoch key"))?;
        f(customer, epoch, decode(k, v)?);
        Ok(())
    })
}
