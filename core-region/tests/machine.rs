//! The state machine's shell over a real redb file: exactly once by index and by command id,
//! commands refused whole when their rows cannot be stored, entries of one batch that see each
//! other's orders, and state that survives a reopen. The rules themselves are `commerce`'s and
//! are tested there (`commerce::decide`).

use std::sync::Arc;

use commerce::command::{Command, OrderResult, Outcome, Proposal, StockChange};
use commerce::escrow::StockOp;
use commerce::order::Order;
use commerce::order::OrderStatus;
use commerce::refusal::RejectKind;
use commerce::testing::{
    catalog, central_order, edge, edge_order, exact_grant, request, sku, stock,
};
use commerce::{CustomerId, EdgeId, OrderId, Product};
use core_region::machine::{LogEntry, MachineError, StateMachine};
use core_region::reads::{orders_after, read_order};
use core_region::store::redb::RedbStore;

struct Harness {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    machine: Option<StateMachine>,
    next_id: u8,
    /// The proposers' clock (unix ms) of the next proposals.
    at_ms: i64,
}

const HOUR_MS: i64 = 3_600_000;

impl Harness {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("core.redb");
        let m = StateMachine::open(Arc::new(RedbStore::open(&path).unwrap())).unwrap();
        let mut h = Harness {
            _dir: dir,
            path,
            machine: Some(m),
            next_id: 0,
            at_ms: 1_000 * HOUR_MS,
        };
        for c in catalog()
            .into_iter()
            .chain([stock("A", StockOp::Set(10)), stock("B", StockOp::Set(3))])
        {
            assert!(matches!(h.run(c), Outcome::Applied { .. }));
        }
        h
    }

    fn m(&self) -> &StateMachine {
        self.machine.as_ref().unwrap()
    }

    fn m_mut(&mut self) -> &mut StateMachine {
        self.machine.as_mut().unwrap()
    }

    /// Closes the store (releasing its file lock) and opens it again, as a restart does.
    fn reopen(&mut self) {
        drop(self.machine.take());
        let m = StateMachine::open(Arc::new(RedbStore::open(&self.path).unwrap())).unwrap();
        self.machine = Some(m);
    }

    fn proposal(&mut self, command: Command) -> Proposal {
        self.next_id += 1;
        Proposal {
            command_id: [self.next_id; 16],
            fingerprint: [self.next_id; 16],
            at_ms: self.at_ms,
            command,
            key_ms: None,
            actor: None,
        }
    }

    fn apply(&mut self, proposals: Vec<Proposal>) -> Vec<Outcome> {
        let entries = LogEntry::numbered(self.m().applied() + 1, proposals);
        self.m_mut().apply(&entries).unwrap()
    }

    fn run(&mut self, command: Command) -> Outcome {
        let p = self.proposal(command);
        self.apply(vec![p]).pop().unwrap()
    }

    fn inv(&self, s: &str) -> commerce::escrow::Inventory {
        self.m()
            .state()
            .inventory(&sku(s))
            .cloned()
            .unwrap_or_default()
    }
}

fn add(s: &str, n: u64) -> Command {
    Command::StockBatch(vec![StockChange {
        sku: sku(s),
        op: StockOp::Add(n),
    }])
}

#[test]
fn a_retried_command_applies_once() {
    let mut h = Harness::new();
    let add = h.proposal(add("A", 5));
    let first = h.apply(vec![add.clone()]);
    // The same command again, in a later batch and twice within one batch.
    let again = h.apply(vec![add.clone(), add.clone()]);
    assert_eq!(again, vec![first[0].clone(), first[0].clone()]);
    assert_eq!(h.inv("A").on_hand(), 15);
    // Survives a reopen: the dedup record is in the store.
    h.reopen();
    assert_eq!(h.apply(vec![add.clone()]), first);
    assert_eq!(h.inv("A").on_hand(), 15);
    // The same id with a different request is refused, not applied.
    let mut other = add;
    other.fingerprint = [0xEE; 16];
    let out = h.apply(vec![other]);
    assert!(
        matches!(&out[0], Outcome::Rejected(r) if r.kind == RejectKind::IdempotencyKeyReused),
        "{out:?}"
    );
    assert_eq!(h.inv("A").on_hand(), 15);
}

#[test]
fn replayed_log_entries_are_skipped_and_gaps_refused() {
    let mut h = Harness::new();
    let applied = h.m().applied();
    let p = h.proposal(add("A", 1));
    let entry = LogEntry {
        index: applied + 1,
        proposal: Some(p),
    };
    h.m_mut().apply(std::slice::from_ref(&entry)).unwrap();
    // A log replayed from the start after a crash: nothing applies twice.
    h.m_mut().apply(&[entry]).unwrap();
    assert_eq!(h.inv("A").on_hand(), 11);
    let p = h.proposal(add("A", 1));
    let gap = LogEntry {
        index: h.m().applied() + 2,
        proposal: Some(p),
    };
    assert!(matches!(
        h.m_mut().apply(&[gap]),
        Err(MachineError::Gap { .. })
    ));
}

#[test]
fn a_refused_command_consumes_its_index_and_writes_nothing() {
    let mut h = Harness::new();
    let before = h.m().applied();
    let out = h.run(stock("A", StockOp::Remove(11)));
    assert!(matches!(out, Outcome::Rejected(_)), "{out:?}");
    assert_eq!(h.m().applied(), before + 1);
    h.reopen();
    assert_eq!(h.inv("A").on_hand(), 10);
}

#[test]
fn a_command_whose_rows_cannot_be_stored_is_refused_whole() {
    let mut h = Harness::new();
    // Valid by every rule (200 SKUs of 16 long attributes), but over the record limit.
    let skus: Vec<serde_json::Value> = (0..200)
        .map(|i| {
            let attrs: serde_json::Map<String, serde_json::Value> = (0..16)
                .map(|a| (format!("attribute-{a}"), "v".repeat(128).into()))
                .collect();
            serde_json::json!({"sku": format!("BIG-{i}"), "attributes": attrs})
        })
        .collect();
    let big: Product = serde_json::from_value(serde_json::json!({
        "id": "BIG", "title": "Big", "category": "things", "skus": skus}))
    .unwrap();
    let out = h.run(Command::UpsertProduct(big));
    match out {
        Outcome::Rejected(r) => {
            assert_eq!(r.kind, RejectKind::Invalid);
            assert!(r.detail.contains("over the limit"), "{}", r.detail);
        }
        other => panic!("{other:?}"),
    }
    assert!(h.m().state().owner(&sku("BIG-0")).is_none());
    h.reopen();
    assert!(h.m().state().owner(&sku("BIG-0")).is_none());
}

#[test]
fn entries_of_one_batch_see_the_orders_decided_before_them() {
    let mut h = Harness::new();
    let e = edge("sg-1");
    h.run(exact_grant(&e, "A", 4));
    let o = edge_order(h.m().state(), "k-1", &e, request(&[("A", 1)]));
    let commit = Command::CommitOrders {
        edge: e.clone(),
        orders: vec![o.clone()],
    };
    let central = central_order(request(&[("A", 1)]), "k-1");
    // The edge's order, its retry and the same key at the core, in one batch.
    let ps = vec![
        h.proposal(commit.clone()),
        h.proposal(commit),
        h.proposal(central),
    ];
    let out = h.apply(ps);
    let Outcome::Orders { results, .. } = &out[1] else {
        panic!("{out:?}")
    };
    assert!(results[0].duplicate);
    assert!(
        matches!(&out[2], Outcome::Order { duplicate: true, order } if order.order_id == o.order_id)
    );
    assert_eq!(h.inv("A").committed, 1);
}

/// A retried admin write is answered from its dedup record while its key is honoured (24 h
/// from when the key says it was made); past that the record is forgotten, and the retry is
/// refused as expired, never applied again. (This replaced a test that showed the retry
/// applied again once its record was pruned, 1,000,000 versions later.)
#[test]
fn a_retried_admin_write_past_its_keys_time_is_refused_not_applied_again() {
    let mut h = Harness::new();
    let made = h.at_ms;
    let mut add_five = h.proposal(add("A", 5));
    add_five.key_ms = Some(u64::try_from(made).unwrap());
    let first = h.apply(vec![add_five.clone()]);
    assert_eq!(h.inv("A").on_hand(), 15);
    // Retried 23 hours later, after a restart: the first outcome.
    h.at_ms = made + 23 * HOUR_MS;
    h.reopen();
    add_five.at_ms = h.at_ms;
    assert_eq!(h.apply(vec![add_five.clone()]), first);
    assert_eq!(h.inv("A").on_hand(), 15);
    // The log's clock moves past the record's retention: it is forgotten.
    h.at_ms = made + 26 * HOUR_MS;
    h.run(add("B", 1));
    let (lo, hi) = commerce::keys::tag_range(commerce::keys::DEDUP);
    assert_eq!(h.m().store().scan(&lo, &hi, 100).unwrap().len(), 1);
    // The same write retried now is refused, and nothing is applied again.
    add_five.at_ms = h.at_ms;
    let out = h.apply(vec![add_five]);
    assert!(
        matches!(&out[0], Outcome::Rejected(r) if r.kind == RejectKind::IdempotencyKeyExpired),
        "{out:?}"
    );
    assert_eq!(h.inv("A").on_hand(), 15);
    // The records kept are bounded by time, and the index with them.
    let (lo, hi) = commerce::keys::tag_range(commerce::keys::DEDUP_BY_VERSION);
    assert_eq!(h.m().store().scan(&lo, &hi, 100).unwrap().len(), 1);
}

#[test]
fn state_and_orders_survive_a_reopen() {
    let mut h = Harness::new();
    let e = edge("sg-1");
    h.run(exact_grant(&e, "A", 4));
    let orders: Vec<_> = ["e-1", "e-2", "e-3"]
        .iter()
        .map(|k| edge_order(h.m().state(), k, &e, request(&[("A", 1)])))
        .collect();
    h.run(Command::CommitOrders {
        edge: e,
        orders: orders[..2].to_vec(),
    });
    h.run(central_order(request(&[("B", 1)]), "c-1"));
    let version = h.m().applied();
    let prices = h.m().state().book.prices(&sku("A")).to_vec();
    h.reopen();
    assert_eq!(h.m().applied(), version);
    assert_eq!(h.m().state().product_count(), 1);
    assert_eq!(h.m().state().book.prices(&sku("A")), prices.as_slice());
    assert_eq!((h.inv("A").committed, h.inv("B").committed), (2, 1));
    // Every decided order is readable, and listed in commit order.
    let store = h.m().store().clone();
    let ids = commerce::testing::order_ids();
    let id = |key: &str| ids.order_id(&CustomerId::new("cust-1").unwrap(), key);
    let o = read_order(&*store, &id("e-2")).unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Committed);
    let (page, cursor) = orders_after(&*store, None, 2).unwrap();
    let ids: Vec<&OrderId> = page.iter().map(|o| &o.order_id).collect();
    assert_eq!(ids, [&id("e-1"), &id("e-2")]);
    let (rest, _) = orders_after(&*store, cursor, 10).unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].order_id, id("c-1"));
}

/// Each customer's orders, wherever they were taken, are listed newest first a page at a time
/// from their index; a store written before the index existed (layout 1) gets it at open.
#[test]
fn a_customers_orders_are_listed_newest_first_and_indexed_when_an_old_store_opens() {
    use commerce::command::OrderCursor;
    use core_region::reads::customer_orders;
    use core_region::store::{Op, WriteBatch};
    let mut h = Harness::new();
    let e = edge("sg-1");
    h.run(exact_grant(&e, "A", 4));
    let at_edge: Vec<_> = ["e-1", "e-2"]
        .iter()
        .map(|k| edge_order(h.m().state(), k, &e, request(&[("A", 1)])))
        .collect();
    h.run(Command::CommitOrders {
        edge: e,
        orders: at_edge.clone(),
    });
    h.run(central_order(request(&[("B", 1)]), "c-1"));
    let mut theirs = request(&[("B", 1)]);
    theirs.customer_id = CustomerId::new("cust-2").unwrap();
    h.run(central_order(theirs, "c-2"));
    let (me, them) = (
        CustomerId::new("cust-1").unwrap(),
        CustomerId::new("cust-2").unwrap(),
    );
    let ids = commerce::testing::order_ids();
    let id = |c: &CustomerId, key: &str| ids.order_id(c, key);
    let list = |h: &Harness| {
        let store = h.m().store().clone();
        let first = customer_orders(&*store, &me, None, 2).unwrap();
        let cursor = OrderCursor::after(first.last().unwrap());
        let rest = customer_orders(&*store, &me, Some(&cursor), 2).unwrap();
        let ids =
            |v: &[commerce::order::Order]| v.iter().map(|o| o.order_id.clone()).collect::<Vec<_>>();
        (
            ids(&first),
            ids(&rest),
            ids(&customer_orders(&*store, &them, None, 10).unwrap()),
        )
    };
    // The central order came later than the edge's (accepted at the proposer's clock); the two
    // edge orders were accepted in the same millisecond, so their ids order them.
    let mut edge_ids = [id(&me, "e-1"), id(&me, "e-2")];
    edge_ids.sort();
    let want = (
        vec![id(&me, "c-1"), edge_ids[0].clone()],
        vec![edge_ids[1].clone()],
        vec![id(&them, "c-2")],
    );
    assert_eq!(list(&h), want);

    // The same store as layout 1 wrote it: no index.
    let store = h.m().store().clone();
    let (lo, hi) = commerce::keys::tag_range(commerce::keys::CUSTOMER_ORDER);
    let mut ops: Vec<Op> = store
        .scan(&lo, &hi, 100)
        .unwrap()
        .into_iter()
        .map(|(k, _)| Op::Delete(k))
        .collect();
    assert_eq!(ops.len(), 4);
    ops.push(Op::Put(commerce::keys::META_FORMAT.to_vec(), vec![1]));
    let applied = store.applied().unwrap();
    store
        .commit(&WriteBatch {
            from_applied: applied,
            to_applied: applied,
            ops,
        })
        .unwrap();
    drop(store);
    assert_eq!(
        customer_orders(&**h.m().store(), &me, None, 10)
            .unwrap()
            .len(),
        0
    );
    h.reopen();
    assert_eq!(list(&h), want);
    let layout = h.m().store().get(commerce::keys::META_FORMAT).unwrap();
    assert_eq!(layout, Some(vec![core_region::store::STORE_LAYOUT]));
    assert_eq!(h.m().applied(), applied);
}

/// `o` as a build before v2 ids named it: under its key's v1 id.
fn as_v1(mut o: Order) -> Order {
    o.order_id = commerce::order_id::v1_id(&o.customer_id, o.idempotency_key.as_deref().unwrap());
    o
}

/// One unit of A that edge `e` accepted under key `key`.
fn taken(h: &Harness, key: &str, e: &EdgeId) -> Order {
    edge_order(h.m().state(), key, e, request(&[("A", 1)]))
}

/// What became of the orders of each commit, `(edge, order)`, applied together in one batch.
fn commit_in_one_batch(h: &mut Harness, commits: Vec<(&EdgeId, Order)>) -> Vec<OrderResult> {
    let proposals = commits
        .into_iter()
        .map(|(e, o)| {
            h.proposal(Command::CommitOrders {
                edge: e.clone(),
                orders: vec![o],
            })
        })
        .collect();
    h.apply(proposals)
        .into_iter()
        .map(|out| match out {
            Outcome::Orders { mut results, .. } => results.remove(0),
            other => panic!("not an orders outcome: {other:?}"),
        })
        .collect()
}

/// That the order result `r` is a duplicate answered by the order `stands`.
fn answered_by(r: &OrderResult, stands: &Order) {
    assert!(r.duplicate, "{r:?}");
    assert_eq!(
        r.original.as_ref().unwrap().order_id,
        stands.order_id,
        "{r:?}"
    );
}

/// A store that holds orders with v1 ids (made before order ids were keyed) answers a key
/// retried under its v2 id with the v1 order, also after a restart, from an edge or at the
/// core; the v1 ids are found by the range of their prefix, so a store without any never
/// looks them up.
#[test]
fn a_key_retried_under_a_v2_id_finds_its_v1_order_after_a_restart() {
    let mut h = Harness::new();
    let (old_edge, new_edge) = (edge("sg-1"), edge("sg-2"));
    h.run(exact_grant(&old_edge, "A", 3));
    h.run(exact_grant(&new_edge, "A", 3));
    let first = as_v1(taken(&h, "k-1", &old_edge));
    commit_in_one_batch(&mut h, vec![(&old_edge, first.clone())]);
    h.reopen();
    let retry = taken(&h, "k-1", &new_edge);
    let r = commit_in_one_batch(&mut h, vec![(&new_edge, retry.clone())]).remove(0);
    answered_by(&r, &first);
    assert_eq!(r.order_id, retry.order_id);
    let out = h.run(central_order(request(&[("A", 1)]), "k-1"));
    assert!(
        matches!(&out, Outcome::Order { order, duplicate: true } if order.order_id == first.order_id),
        "{out:?}"
    );
    assert_eq!(h.inv("A").committed, 1);
}

/// Both ways round without a restart, in batches of their own and in one batch: a v1 order is
/// looked for by the next v2 order of its key, and a v2 order is found, through the customer's
/// index (or among the batch's own orders), by its key retried under the v1 id.
#[test]
fn a_key_is_one_order_across_id_versions_in_a_running_machine() {
    let mut h = Harness::new();
    let (e1, e2) = (edge("sg-1"), edge("sg-2"));
    h.run(exact_grant(&e1, "A", 4));
    h.run(exact_grant(&e2, "A", 4));
    // v1 first, then v2, each in its own batch, no reopen between.
    let old = as_v1(taken(&h, "k-1", &e1));
    assert!(!commit_in_one_batch(&mut h, vec![(&e1, old.clone())])[0].duplicate);
    let new = taken(&h, "k-1", &e2);
    let r = commit_in_one_batch(&mut h, vec![(&e2, new)]);
    answered_by(&r[0], &old);
    // v2 first, then v1.
    let new = taken(&h, "k-2", &e2);
    assert!(!commit_in_one_batch(&mut h, vec![(&e2, new.clone())])[0].duplicate);
    let old = as_v1(taken(&h, "k-2", &e1));
    let r = commit_in_one_batch(&mut h, vec![(&e1, old)]);
    answered_by(&r[0], &new);
    assert_eq!(h.inv("A").committed, 2, "two keys, two orders");
    // v2 then v1 in one batch: the v2 order is not in the store yet when the v1 one is decided.
    let new = taken(&h, "k-3", &e2);
    let old = as_v1(taken(&h, "k-3", &e1));
    let r = commit_in_one_batch(&mut h, vec![(&e2, new.clone()), (&e1, old)]);
    answered_by(&r[1], &new);
    // v1 then v2 in one batch.
    let old = as_v1(taken(&h, "k-4", &e1));
    let new = taken(&h, "k-4", &e2);
    let r = commit_in_one_batch(&mut h, vec![(&e1, old.clone()), (&e2, new)]);
    answered_by(&r[1], &old);
    assert_eq!(h.inv("A").committed, 4, "four keys, four orders");
}

/// The first v1 order a store ever takes and its key's v2 retry, in one apply batch: the
/// batch itself brings the v1 order, so its v1 id is looked up before the store holds it.
#[test]
fn a_stores_first_v1_order_and_its_v2_retry_in_one_batch_are_one_order() {
    let mut h = Harness::new();
    let (e1, e2) = (edge("sg-1"), edge("sg-2"));
    h.run(exact_grant(&e1, "A", 2));
    h.run(exact_grant(&e2, "A", 2));
    let old = as_v1(taken(&h, "k-1", &e1));
    let new = taken(&h, "k-1", &e2);
    let r = commit_in_one_batch(&mut h, vec![(&e1, old.clone()), (&e2, new)]);
    answered_by(&r[1], &old);
    assert_eq!(h.inv("A").committed, 1);
}
