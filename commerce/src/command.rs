//! Commands: every write to the authoritative state, as it travels through the log, and the
//! outcome of applying one. A command is applied at one version (its log index), atomically and
//! at most once: the `Proposal` envelope carries the id that makes a retry a no-op.

use crate::catalog::Product;
use crate::escrow::{Demand, GrantPolicy, StockOp};
use crate::id::{CustomerGroup, CustomerId, EdgeId, OrderId, PriceListId, PromotionId, SkuId};
use crate::market::Market;
use crate::money::Currency;
use crate::order::{Order, OrderRequest, OrderStatus, ShipTo};
use crate::order_id::OrderIdKey;
use crate::pricing::{PriceList, Promotion, Tier};
use crate::refusal::Rejection;

/// Changes one price batch may hold (a bound on one log entry's size and apply time).
pub const PRICE_BATCH_MAX: usize = 10_000;
/// Changes one stock batch may hold.
pub const STOCK_BATCH_MAX: usize = 10_000;
/// Orders one commit batch from an edge may hold.
pub const COMMIT_BATCH_MAX: usize = 1_000;

/// One price to set.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceChange {
    pub sku: SkuId,
    pub currency: Currency,
    pub amount_minor: i64,
    /// The list to set it in; by default the implicit list of the currency and group
    /// (`base-USD`, `member-USD`).
    #[serde(default)]
    pub list: Option<PriceListId>,
    #[serde(default)]
    pub customer_group: Option<CustomerGroup>,
    #[serde(default)]
    pub tiers: Vec<Tier>,
}

/// One stock change.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct StockChange {
    pub sku: SkuId,
    pub op: StockOp,
}

/// A write an edge sends a core region over the mesh. Which edge sends it is not in it: the
/// region takes that from the edge's certificate, so an edge speaks only for itself.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct EdgeWrite {
    pub request: EdgeRequest,
}

/// What an edge may ask of the core. Each is applied once however often it is sent: commits
/// by their orders' ids, grants and returns by the edge's number for them, central orders by
/// the shopper's Idempotency-Key.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum EdgeRequest {
    /// Orders the edge accepted from its grants (its outbox), committed each by its order id.
    Commit(Vec<Order>),
    /// Units of `sku`, sized from the edge's demand by the region's grant policy. `request`
    /// numbers it among the edge's requests of the SKU (`Inventory::requests`).
    Grant {
        sku: SkuId,
        demand: Demand,
        request: u64,
    },
    /// Units of a grant the edge gives back, numbered as grants are.
    Return {
        sku: SkuId,
        units: u64,
        request: u64,
    },
    /// An order the edge has no grant left for, allocated from the central pool; the shopper's
    /// Idempotency-Key makes it one order however often it is sent.
    CentralOrder {
        idempotency_key: String,
        request: OrderRequest,
    },
}

impl EdgeWrite {
    /// What can be told wrong before the write is proposed: a central order's key, and a
    /// commit batch of 1 to `COMMIT_BATCH_MAX` orders.
    pub fn check(&self) -> Result<(), Rejection> {
        match &self.request {
            EdgeRequest::Commit(orders) if orders.is_empty() || orders.len() > COMMIT_BATCH_MAX => {
                Err(Rejection::invalid(format!(
                    "a commit batch has 1 to {COMMIT_BATCH_MAX} orders"
                )))
            }
            EdgeRequest::CentralOrder {
                idempotency_key, ..
            } => crate::order::check_idempotency_key(idempotency_key)
                .map_err(|e| Rejection::invalid(e.to_string())),
            _ => Ok(()),
        }
    }
}

/// Orders in one page of a customer's orders, at most.
pub const ORDERS_PAGE_MAX: u32 = 100;

/// What an edge may read from a core region's store over the mesh: the orders of the customer
/// whose token it verified. The core answers only orders of the customer named, so an edge
/// shows a shopper nothing of anyone else's even by mistake. `region` is the asking edge's: a
/// core opens the addresses it is home to only for an edge of its own region, so that an edge
/// that reads from another region's core (its own being down) never holds them in the clear.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum EdgeRead {
    /// Up to `limit` (1 to `ORDERS_PAGE_MAX`) of the customer's orders, newest first, after
    /// `after` (the last of the page before).
    CustomerOrders {
        customer: CustomerId,
        after: Option<OrderCursor>,
        limit: u32,
        region: String,
    },
    /// One order, if it is the customer's.
    Order {
        customer: CustomerId,
        id: OrderId,
        region: String,
    },
}

/// Where a page of a customer's orders ends: its last order's time and id (the order of their
/// index, `keys::customer_order`).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct OrderCursor {
    pub accepted_at_ms: i64,
    pub order_id: OrderId,
}

impl OrderCursor {
    /// The cursor that a page ending at `order` continues from.
    pub fn after(order: &Order) -> Self {
        OrderCursor {
            accepted_at_ms: order.accepted_at_ms,
            order_id: order.order_id.clone(),
        }
    }

    /// Whether `order` comes after this cursor, newest first (later times first, then ids in
    /// order, as the index sorts them).
    pub fn precedes(&self, order: &Order) -> bool {
        newest_first(self.accepted_at_ms, &self.order_id)
            < newest_first(order.accepted_at_ms, &order.order_id)
    }
}

/// One page of `customer`'s orders, newest first, made of what a core holds (`at_core`, a page
/// after `after`) and what an edge holds that no core may have yet (`here`): each order once,
/// the core's word over the edge's, only the customer's, only those after `after`, at most
/// `limit`; with the cursor of the next page when the page is full.
pub fn orders_page(
    customer: &CustomerId,
    at_core: Vec<Order>,
    here: Vec<Order>,
    after: Option<&OrderCursor>,
    limit: usize,
) -> (Vec<Order>, Option<OrderCursor>) {
    let mut by_id: std::collections::HashMap<OrderId, Order> = std::collections::HashMap::new();
    for o in here.into_iter().chain(at_core) {
        if &o.customer_id == customer && after.is_none_or(|c| c.precedes(&o)) {
            by_id.insert(o.order_id.clone(), o);
        }
    }
    let mut items: Vec<Order> = by_id.into_values().collect();
    items.sort_by(|a, b| {
        newest_first(a.accepted_at_ms, &a.order_id)
            .cmp(&newest_first(b.accepted_at_ms, &b.order_id))
    });
    items.truncate(limit);
    let next = (items.len() == limit)
        .then(|| items.last().map(OrderCursor::after))
        .flatten();
    (items, next)
}

/// The place of an order accepted at `at_ms` in its customer's list, newest first: as the
/// store's index sorts it (`keys::customer_order`, which takes a time before 1970 as 0).
fn newest_first(at_ms: i64, id: &OrderId) -> (std::cmp::Reverse<i64>, &OrderId) {
    (std::cmp::Reverse(at_ms.max(0)), id)
}

/// A core's answer to an `EdgeRead`.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum ReadReply {
    /// A page of a customer's orders, newest first.
    Orders(Vec<Order>),
    Order(Option<Box<Order>>),
}

impl EdgeRead {
    /// The region of the edge that asks (none from an edge of a build before it said).
    pub fn region(&self) -> &str {
        match self {
            EdgeRead::CustomerOrders { region, .. } | EdgeRead::Order { region, .. } => region,
        }
    }

    /// What can be told wrong before reading.
    pub fn check(&self) -> Result<(), Rejection> {
        match self {
            EdgeRead::CustomerOrders { limit, .. } if !(1..=ORDERS_PAGE_MAX).contains(limit) => {
                Err(Rejection::invalid(format!(
                    "a page has 1 to {ORDERS_PAGE_MAX} orders"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl EdgeRequest {
    /// The command this request from `edge` stands for at `region`, under the region's grant
    /// `policy`; with the route, and the key its command id is derived from where it has one:
    /// a central order's key is the shopper's, scoped to the customer as at the admin API, so
    /// a retry through any edge or region is the same order.
    pub fn into_command(
        self,
        edge: EdgeId,
        region: &str,
        policy: GrantPolicy,
        ids: &OrderIdKey,
    ) -> (&'static str, Option<String>, Command) {
        match self {
            EdgeRequest::Commit(orders) => {
                ("commits", None, Command::CommitOrders { edge, orders })
            }
            EdgeRequest::Grant {
                sku,
                demand,
                request,
            } => (
                "grants",
                None,
                Command::Grant {
                    edge,
                    sku,
                    demand,
                    policy,
                    request: Some(request),
                },
            ),
            EdgeRequest::Return {
                sku,
                units,
                request,
            } => (
                "returns",
                None,
                Command::ReturnGrant {
                    edge,
                    sku,
                    units,
                    request: Some(request),
                },
            ),
            EdgeRequest::CentralOrder {
                idempotency_key,
                request,
            } => {
                let (scoped, command) = Command::central_order(
                    request,
                    idempotency_key,
                    region.to_owned(),
                    Some(edge),
                    ids,
                );
                ("orders", Some(scoped), command)
            }
        }
    }
}

/// Every write to the authoritative state.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Command {
    UpsertProduct(Product),
    UpsertMarket(Market),
    UpsertPriceList(PriceList),
    UpsertPromotion(Promotion),
    DeletePromotion(PromotionId),
    /// All of the changes or none.
    PriceBatch(Vec<PriceChange>),
    /// All of the changes or none.
    StockBatch(Vec<StockChange>),
    /// Grants `edge` units of `sku` sized by `grant_size(demand, pool, policy)`. A numbered
    /// request is applied once by its number (the edge's, in `Inventory::requests`); an
    /// unnumbered one (the admin API's) by its Idempotency-Key, as other admin writes.
    Grant {
        edge: EdgeId,
        sku: SkuId,
        demand: Demand,
        policy: GrantPolicy,
        request: Option<u64>,
    },
    /// `edge` gives back units of its grant (it has already taken them off its own books);
    /// numbered as grants are.
    ReturnGrant {
        edge: EdgeId,
        sku: SkuId,
        units: u64,
        request: Option<u64>,
    },
    /// Orders `edge` accepted from its grants, committed each by its order id.
    CommitOrders {
        edge: EdgeId,
        orders: Vec<Order>,
    },
    /// An order allocated from the central pool (no grant left at the edge, or placed through
    /// the admin API), priced at `at_ms` of the proposal.
    CentralOrder {
        order_id: OrderId,
        idempotency_key: Option<String>,
        request: OrderRequest,
        region: String,
        edge: Option<EdgeId>,
    },
    /// A change to the group's membership asked through the admin API, noted in the log so
    /// that the audit log keeps it with who asked (Raft's own membership entry names no one):
    /// `change` says what was asked, or what became of it. Deciding it changes nothing.
    /// (Variants are only ever added at the end: the ones before keep their encoding.)
    NoteMembership {
        change: String,
    },
    /// Erases `customer`'s personal data: the orders named (theirs, up to `ERASE_BATCH_MAX`)
    /// keep every field but their address, which becomes `Personal::Erased`; and the erasure
    /// is kept, so that any order of theirs accepted before it and committed after (from an
    /// edge's outbox) is stored erased too. The admin API names the customer's orders as its
    /// region holds them, in as many commands as they take.
    ErasePersonal {
        customer: CustomerId,
        orders: Vec<OrderId>,
    },
    /// Retention: the orders named (up to `ERASE_BATCH_MAX`) that were accepted before
    /// `before_ms` keep every field but their address, which becomes `Personal::Erased`. The
    /// region's leader names them as its store holds them (`core-region`'s `retention.rs`).
    EraseOrders {
        orders: Vec<OrderId>,
        before_ms: i64,
    },
    /// Addresses as their home region keeps them (up to `ERASE_BATCH_MAX`): sealed again by
    /// it under its keeping keys, so that an erasure can destroy the one key that opens a
    /// customer's (`sealing::shred`). Each replaces its order's only while the order holds the
    /// same address and the customer's epoch is the one it names.
    KeepAddresses {
        kept: Vec<crate::personal::KeptAddress>,
    },
}

/// Orders one erasure command names, at most.
pub const ERASE_BATCH_MAX: usize = 1_000;

/// Longest membership note (`Command::NoteMembership`).
pub const MEMBERSHIP_NOTE_MAX_BYTES: usize = 512;

impl Command {
    /// An order for the central pool under the shopper's Idempotency-Key `key`, taken by
    /// `region` (through `edge`, when one sent it), with the id `ids` derives for it, and the
    /// key scoped as its command id is derived: keys belong to a customer, as order ids do
    /// (`order_id`), so the same key sent through any edge or region places one order.
    pub fn central_order(
        request: OrderRequest,
        key: String,
        region: String,
        edge: Option<EdgeId>,
        ids: &OrderIdKey,
    ) -> (String, Command) {
        let scoped = format!("{}\u{0}{key}", request.customer_id);
        let command = Command::CentralOrder {
            order_id: ids.order_id(&request.customer_id, &key),
            idempotency_key: Some(key),
            request,
            region,
            edge,
        };
        (scoped, command)
    }

    /// The ids of the orders a decision on this command reads (`decide::Input::decided`):
    /// the core reads what is stored under them before it decides.
    pub fn order_ids(&self) -> Vec<&OrderId> {
        match self {
            Command::CommitOrders { orders, .. } => orders
                .iter()
                .take(COMMIT_BATCH_MAX)
                .map(|o| &o.order_id)
                .collect(),
            Command::CentralOrder { order_id, .. } => vec![order_id],
            Command::ErasePersonal { orders, .. } | Command::EraseOrders { orders, .. } => {
                orders.iter().take(ERASE_BATCH_MAX).collect()
            }
            Command::KeepAddresses { kept } => kept
                .iter()
                .take(ERASE_BATCH_MAX)
                .map(|k| &k.order_id)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// This command's keyed orders under v1 ids (from a build before v2 ids), with their
    /// customers and keys: a decision looks among the customer's newest orders
    /// (`order_id::V1_LOOKBACK_ORDERS`) for one the same key placed under a v2 id, and answers
    /// with it (`decide::Input::decided`, under the v1 id).
    pub fn v1_keyed(&self) -> Vec<(&OrderId, &CustomerId, &str)> {
        let v1 =
            |id: &OrderId| crate::order_id::format_of(id) == Some(crate::order_id::IdFormat::V1);
        match self {
            Command::CommitOrders { orders, .. } => orders
                .iter()
                .take(COMMIT_BATCH_MAX)
                .filter(|o| v1(&o.order_id))
                .filter_map(|o| Some((&o.order_id, &o.customer_id, o.idempotency_key.as_deref()?)))
                .collect(),
            Command::CentralOrder {
                order_id,
                idempotency_key: Some(key),
                request,
                ..
            } if v1(order_id) => vec![(order_id, &request.customer_id, key.as_str())],
            _ => Vec::new(),
        }
    }

    /// The v1 ids that the keys of this command's v2 orders named before v2
    /// (`order_id::v1_beside`): a decision looks for an order under them too, and the core reads
    /// them while it holds any v1 order.
    pub fn v1_ids_beside(&self) -> Vec<OrderId> {
        let beside = |id: &OrderId, customer: &CustomerId, key: Option<&str>| {
            crate::order_id::v1_beside(id, customer, key?)
        };
        match self {
            Command::CommitOrders { orders, .. } => orders
                .iter()
                .take(COMMIT_BATCH_MAX)
                .filter_map(|o| beside(&o.order_id, &o.customer_id, o.idempotency_key.as_deref()))
                .collect(),
            Command::CentralOrder {
                order_id,
                idempotency_key,
                request,
                ..
            } => beside(order_id, &request.customer_id, idempotency_key.as_deref())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Where each order this command carries ships to, with the order's customer: what is
    /// sealed before the command is proposed (I6).
    pub fn ship_tos_mut(&mut self) -> Vec<(&CustomerId, &mut ShipTo)> {
        match self {
            Command::CommitOrders { orders, .. } => orders
                .iter_mut()
                .map(|o| (&o.customer_id, &mut o.ship_to))
                .collect(),
            Command::CentralOrder { request, .. } => {
                vec![(&request.customer_id, &mut request.ship_to)]
            }
            _ => Vec::new(),
        }
    }

    /// How many items (prices, stock changes, orders) the command carries; 1 for the others.
    pub fn items(&self) -> usize {
        match self {
            Command::PriceBatch(v) => v.len(),
            Command::StockBatch(v) => v.len(),
            Command::CommitOrders { orders, .. } => orders.len(),
            Command::ErasePersonal { orders, .. } | Command::EraseOrders { orders, .. } => {
                orders.len()
            }
            Command::KeepAddresses { kept } => kept.len(),
            _ => 1,
        }
    }

    /// Whether applying this command leaves a dedup record under its command id (when it
    /// changed state), so that a retry gets the first outcome: what is not idempotent by
    /// itself. Orders leave none (each is kept forever under the id its key names), nor do
    /// numbered grants and returns (their numbers are kept with the inventory).
    pub fn keeps_dedup_record(&self) -> bool {
        match self {
            // Keeping an address again changes nothing: it names the address it replaces.
            Command::CommitOrders { .. }
            | Command::CentralOrder { .. }
            | Command::KeepAddresses { .. } => false,
            Command::Grant { request, .. } | Command::ReturnGrant { request, .. } => {
                request.is_none()
            }
            _ => true,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Command::UpsertProduct(_) => "upsert_product",
            Command::UpsertMarket(_) => "upsert_market",
            Command::UpsertPriceList(_) => "upsert_price_list",
            Command::UpsertPromotion(_) => "upsert_promotion",
            Command::DeletePromotion(_) => "delete_promotion",
            Command::PriceBatch(_) => "price_batch",
            Command::StockBatch(_) => "stock_batch",
            Command::Grant { .. } => "grant",
            Command::ReturnGrant { .. } => "return_grant",
            Command::CommitOrders { .. } => "commit_orders",
            Command::CentralOrder { .. } => "central_order",
            Command::NoteMembership { .. } => "note_membership",
            Command::ErasePersonal { .. } => "erase_personal",
            Command::EraseOrders { .. } => "erase_orders",
            Command::KeepAddresses { .. } => "keep_addresses",
        }
    }
}

/// A command as proposed to the log.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Proposal {
    /// Makes a retry of the same command a no-op: derived from the caller's Idempotency-Key
    /// where there is one, random otherwise.
    pub command_id: [u8; 16],
    /// Digest of what the caller asked for, to tell a retry (same digest) from a different
    /// request that reuses an Idempotency-Key (different digest).
    pub fingerprint: [u8; 16],
    /// The proposer's clock (unix ms). Apply uses this, never its own clock, so that every
    /// replica computes the same result.
    pub at_ms: i64,
    pub command: Command,
    /// When the caller's Idempotency-Key says it was made (a UUIDv7 or a ULID), for a command
    /// that keeps a dedup record: a key past its time is refused (`commerce::dedup`).
    pub key_ms: Option<u64>,
    /// Who made an admin write, for the audit log; none for an edge's.
    pub actor: Option<Actor>,
}

/// Who made an admin write: the id of their token (never the token) and the route.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Actor {
    pub token: String,
    pub route: String,
}

/// One admin write as the audit log keeps it, under the version it was applied at: who made
/// it, through which route, its command id, when (the proposer's clock), and what became of
/// it (`applied`, `replayed`, or `rejected: <kind>`).
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct AuditRecord {
    pub version: u64,
    pub at_ms: i64,
    pub token: String,
    pub route: String,
    pub command_id: [u8; 16],
    pub command: String,
    pub outcome: String,
}

/// What happened to one order of a `CommitOrders` batch.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct OrderResult {
    pub order_id: OrderId,
    pub status: OrderStatus,
    /// The version at which it committed (or was rejected), possibly by an earlier batch.
    pub version: u64,
    /// `true` when this batch found it already decided and changed nothing.
    pub duplicate: bool,
    pub reject_reason: Option<String>,
    /// The order that stands under this id, when the id was first decided for an order taken
    /// elsewhere (the shopper's key retried at another edge, or at the core): the sending
    /// edge's copy took nothing from its grant and is superseded by this one.
    pub original: Option<Box<Order>>,
    /// Whether the sending edge's copy asked for something other than `original` under the
    /// same Idempotency-Key (the key reused for a different order).
    pub key_reused: bool,
}

/// The result of applying one command.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// Written at `version`.
    Applied {
        version: u64,
    },
    Granted {
        version: u64,
        units: u64,
    },
    Returned {
        version: u64,
        units: u64,
    },
    Orders {
        version: u64,
        results: Vec<OrderResult>,
    },
    /// A central order: committed now, or found committed before under its id or key.
    Order {
        order: Box<Order>,
        duplicate: bool,
    },
    Rejected(Rejection),
}

impl Outcome {
    /// A short name for logs and errors: what kind of answer, and none of what it carries.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Applied { .. } => "applied",
            Outcome::Granted { .. } => "granted",
            Outcome::Returned { .. } => "returned",
            Outcome::Orders { .. } => "orders",
            Outcome::Order { .. } => "order",
            Outcome::Rejected(_) => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::MemoryMachine;
    use crate::testing::{catalog, edge, edge_order, request};

    /// Orders of `customer` under `keys`, accepted at the times given.
    fn orders(customer: &str, keyed: &[(&str, i64)]) -> Vec<Order> {
        let mut m = MemoryMachine::new();
        for c in catalog() {
            m.apply(&c, 1_000);
        }
        keyed
            .iter()
            .map(|(key, at)| {
                let mut req = request(&[("A", 1)]);
                req.customer_id = CustomerId::new(customer).unwrap();
                let mut o = edge_order(&m.state, key, &edge("e-1"), req);
                o.accepted_at_ms = *at;
                o
            })
            .collect()
    }

    #[test]
    fn a_page_merges_the_cores_orders_with_the_edges_each_once_newest_first() {
        let me = CustomerId::new("cust-1").unwrap();
        let mine = orders(
            "cust-1",
            &[("a", 50), ("b", 40), ("c", 30), ("d", 20), ("e", 10)],
        );
        let theirs = orders("cust-2", &[("x", 45)]);
        // The core has b, c, d, e (b committed); the edge still holds a and b as pending.
        let mut at_core: Vec<Order> = mine[1..].to_vec();
        at_core[0].status = crate::order::OrderStatus::Committed;
        let here = vec![mine[0].clone(), mine[1].clone(), theirs[0].clone()];
        let (page, next) = orders_page(&me, at_core.clone(), here.clone(), None, 3);
        let ids = |v: &[Order]| v.iter().map(|o| o.order_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&page), ids(&mine[..3]));
        assert_eq!(
            page[1].status,
            crate::order::OrderStatus::Committed,
            "the core's word"
        );
        let next = next.expect("a full page has a next one");
        // The next page: only what comes after the cursor, from either side.
        let rest_at_core: Vec<Order> = at_core.into_iter().filter(|o| next.precedes(o)).collect();
        let (rest, last) = orders_page(&me, rest_at_core, here, Some(&next), 3);
        assert_eq!(ids(&rest), ids(&mine[3..]));
        assert_eq!(last, None);
        // Ties in time go by id, as the store's index sorts them.
        let tied = orders("cust-1", &[("p", 7), ("q", 7)]);
        let (page, _) = orders_page(&me, tied.clone(), Vec::new(), None, 10);
        let mut want = ids(&tied);
        want.sort();
        assert_eq!(ids(&page), want);
        // A time before 1970 sorts as the index sorts it (as 0), so no page skips it.
        let old = orders("cust-1", &[("m", 0), ("n", -5)]);
        let (first, next) = orders_page(&me, old.clone(), Vec::new(), None, 1);
        let next = next.unwrap();
        let (second, _) = orders_page(&me, old.clone(), Vec::new(), Some(&next), 1);
        let mut both = ids(&first);
        both.extend(ids(&second));
        both.sort();
        let mut want = ids(&old);
        want.sort();
        assert_eq!(both, want);
    }
}
