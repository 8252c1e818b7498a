//! The simulator with the core's own commerce as the group's application: each member applies
//! the log to a real `StateMachine` over a real redb store (`RedbStore`) on a disk that loses
//! what was not synced, so power losses reach the commerce store as well as the log. Shoppers
//! place central orders under Idempotency-Keys and, after no answer, send the same request
//! again under the same key at any member, or at an edge; two edges take grants of stock,
//! accept orders from them as durable (acknowledged) and commit them to the group, again until
//! answered. At the end, faults healed, what is still unanswered is sent again, and every
//! member of the group must hold the same store, in which:
//!
//! - I1: every order acknowledged (a central order answered, an edge order accepted from a
//!   grant) is there, committed;
//! - I2: for every SKU, units committed plus units in grants never exceed units stocked;
//! - I3: a key's answers all name one order, and every committed order's units are counted once
//!   (the units each SKU's inventory counts as committed are those of the committed orders).
//!
//! `SIM_SEED=n cargo test -p simulator --test orders -- --nocapture` replays seed `n`.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use commerce::command::{Command, Outcome, Proposal};
use commerce::escrow::{Demand, GrantPolicy, StockOp};
use commerce::order::{LineRequest, Order, OrderStatus, Origin, price_order};
use commerce::testing::{SKUS, catalog, order_ids, request, sku, stock};
use commerce::{CustomerId, EdgeId, OrderId};
use core_region::machine::StateMachine;
use core_region::reads::orders_after;
use core_region::replicated::CoreApp;
use core_region::store::redb::RedbStore;
use rand::RngExt;
use replication::app::{App, AppEntry, AppError};
use replication::protocol::{NodeId, Payload};
use replication::raft::RaftNode;
use simulator::{Group, Observed, Observing, Workload};
use tokio::sync::RwLock;
use util::disk_faults::LosingDisk;

/// Units stocked of each SKU of the catalog at the start: few, so that edges' grants, central
/// orders and out-of-stock answers all happen.
const STOCKED: [u64; 3] = [40, 25, 12];
/// The proposers' clock at the start of a run (unix ms); simulated time moves it on.
const START_MS: i64 = 1_000 * 3_600_000;
/// How long a client waits for one answer.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long the end may take to get every unanswered request answered.
const SETTLE: Duration = Duration::from_secs(60);

/// The core's application, its calls made from a thread of their own: it takes its machine's
/// lock as the core's blocking threads do, which the simulator's one thread may not.
struct OffThread(CoreApp);

impl OffThread {
    fn call<T: Send>(&self, f: impl FnOnce(&CoreApp) -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| f(&self.0))
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl App for OffThread {
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, AppError> {
        self.call(|a| a.apply(entries, meta))
    }

    fn meta(&self) -> Result<Option<Vec<u8>>, AppError> {
        self.call(|a| a.meta())
    }

    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        self.call(|a| a.snapshot())
    }

    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), AppError> {
        self.call(|a| a.install(snapshot, meta))
    }
}

fn digest16(parts: &[&[u8]]) -> [u8; 16] {
    let half = |salt: u8| {
        let mut h = DefaultHasher::new();
        (salt, parts).hash(&mut h);
        h.finish().to_be_bytes()
    };
    let mut out = [0; 16];
    out[..8].copy_from_slice(&half(0));
    out[8..].copy_from_slice(&half(1));
    out
}

/// A request as a client sends it, and every time again after no answer: the same command
/// under the same id, proposed at the time it is sent.
#[derive(Clone)]
struct Request {
    command: Command,
    command_id: [u8; 16],
    key_ms: Option<u64>,
}

impl Request {
    fn new(name: &str, command: Command, key_ms: Option<u64>) -> Request {
        Request {
            command_id: digest16(&[name.as_bytes()]),
            command,
            key_ms,
        }
    }

    /// Sends it through `node`, proposed at `at_ms`; the outcome, or why none came.
    async fn send(&self, node: &RaftNode, at_ms: i64) -> Result<Outcome, String> {
        let proposal = Proposal {
            command_id: self.command_id,
            // What was asked, the same each time it is sent again.
            fingerprint: digest16(&[format!("{:?}", self.command).as_bytes()]),
            at_ms,
            command: self.command.clone(),
            key_ms: self.key_ms,
            actor: None,
        };
        let payload = Payload(codec::encode(&proposal).map_err(|e| e.to_string())?);
        let reply = node
            .write(payload, PATIENCE)
            .await
            .map_err(|e| e.to_string())?;
        codec::decode(&reply.0).map_err(|e| e.to_string())
    }
}

/// A shopper's key: what was asked under it, and every answer it got.
struct Key {
    customer: CustomerId,
    lines: Vec<LineRequest>,
    /// How the core is asked (none for a key first used at an edge).
    request: Option<Request>,
    /// Order ids and statuses answered (central), or accepted (at an edge).
    answers: Vec<(OrderId, OrderStatus)>,
    /// Still without an answer: sent again now and then.
    unanswered: bool,
}

/// An edge as the group sees it: its grants, the request it is waiting on, and its outbox of
/// orders accepted (acknowledged to shoppers) and not yet decided by the group.
struct Edge {
    id: EdgeId,
    units: BTreeMap<String, u64>,
    /// A grant asked and not yet answered: sent again until it is, before any other.
    asking: Option<Request>,
    asked: u64,
    outbox: BTreeMap<OrderId, Order>,
    /// Every order it accepted: I1 holds it to them.
    accepted: BTreeSet<OrderId>,
    commits: u64,
}

#[derive(Default)]
struct Orders {
    /// Each member's state machine as last opened, by member name.
    machines: Mutex<BTreeMap<String, Arc<RwLock<StateMachine>>>>,
    /// The catalog and stock commands not yet answered, in order.
    setup: Mutex<Option<Vec<Request>>>,
    keys: Mutex<BTreeMap<String, Key>>,
    edges: Mutex<Vec<Edge>>,
    /// Stock added by the sellers: each request, and the units it added once answered.
    restocks: Mutex<Vec<(Request, Option<u64>)>>,
    violations: Mutex<Vec<String>>,
    /// When the run's first client acted, on its simulated clock.
    origin: OnceLock<tokio::time::Instant>,
}

enum Action {
    Setup(Request),
    Central(String, Request),
    Grant(usize, Request),
    Accept(usize),
    Commit(usize),
    Restock(usize),
}

impl Orders {
    fn new() -> Orders {
        let setup = catalog()
            .into_iter()
            .chain(
                SKUS.iter()
                    .zip(STOCKED)
                    .map(|(s, n)| stock(s, StockOp::Set(n))),
            )
            .enumerate()
            .map(|(i, c)| Request::new(&format!("setup-{i}"), c, None))
            .collect();
        Orders {
            setup: Mutex::new(Some(setup)),
            edges: Mutex::new(
                ["e0", "e1"]
                    .iter()
                    .map(|e| Edge {
                        id: EdgeId::new(*e).unwrap(),
                        units: BTreeMap::new(),
                        asking: None,
                        asked: 0,
                        outbox: BTreeMap::new(),
                        accepted: BTreeSet::new(),
                        commits: 0,
                    })
                    .collect(),
            ),
            ..Orders::default()
        }
    }

    /// The proposers' clock: the start's, moved on by the run's simulated time.
    fn now_ms(&self) -> i64 {
        let origin = *self.origin.get_or_init(tokio::time::Instant::now);
        START_MS + origin.elapsed().as_millis() as i64
    }

    fn violation(&self, v: String) {
        self.violations.lock().unwrap().push(v);
    }

    /// A new central order of client `c`'s `n`th key.
    fn new_key(&self, c: usize, n: u64, sku_pick: usize, qty: u32) -> (String, Request) {
        let name = format!("key-{c}-{n}");
        let customer = CustomerId::new(format!("cust-{c}")).unwrap();
        let mut req = request(&[(SKUS[sku_pick], qty)]);
        req.customer_id = customer.clone();
        let lines = req.lines.clone();
        let command = Command::CentralOrder {
            order_id: order_ids().order_id(&customer, &name),
            idempotency_key: Some(name.clone()),
            request: req,
            region: "r1".into(),
            edge: None,
        };
        let request = Request::new(&name, command, Some(self.now_ms() as u64));
        self.keys.lock().unwrap().insert(
            name.clone(),
            Key {
                customer,
                lines,
                request: Some(request.clone()),
                answers: Vec::new(),
                unanswered: true,
            },
        );
        (name, request)
    }

    /// What client `c` does next, drawn from `group`'s seed.
    fn next(&self, c: usize, group: &Group) -> Option<Action> {
        if let Some(first) = self.setup.lock().unwrap().as_ref().and_then(|s| s.first()) {
            return Some(Action::Setup(first.clone()));
        }
        let (roll, again, pick, sku_pick, qty, edge) = group.net.draw(|r| {
            (
                r.random_range(0..100),
                r.random_bool(0.5),
                r.random_range(0..u32::MAX) as usize,
                r.random_range(0..SKUS.len()),
                r.random_range(1..=3u32),
                r.random_range(0..2usize),
            )
        });
        match roll {
            0..50 => {
                let keys = self.keys.lock().unwrap();
                let unanswered: Vec<(&String, &Request)> = keys
                    .iter()
                    .filter(|(_, k)| k.unanswered)
                    .filter_map(|(n, k)| Some((n, k.request.as_ref()?)))
                    .collect();
                if again && !unanswered.is_empty() {
                    let (name, request) = unanswered[pick % unanswered.len()];
                    group.count("keys sent again");
                    return Some(Action::Central(name.clone(), request.clone()));
                }
                let n = keys.len() as u64;
                drop(keys);
                let (name, request) = self.new_key(c, n, sku_pick, qty);
                Some(Action::Central(name, request))
            }
            50..65 => {
                let mut edges = self.edges.lock().unwrap();
                let e = &mut edges[edge];
                if e.asking.is_none() {
                    e.asked += 1;
                    let command = Command::Grant {
                        edge: e.id.clone(),
                        sku: sku(SKUS[sku_pick]),
                        demand: Demand {
                            units: u64::from(qty) * 3,
                            window_ms: 30_000,
                        },
                        policy: GrantPolicy {
                            low_stock_units: 4,
                            max_share_bps: 5_000,
                            ..GrantPolicy::default()
                        },
                        request: Some(e.asked),
                    };
                    e.asking = Some(Request::new(
                        &format!("grant-{}-{}", e.id, e.asked),
                        command,
                        None,
                    ));
                }
                Some(Action::Grant(edge, e.asking.clone().expect("asked")))
            }
            65..80 => Some(Action::Accept(edge)),
            80..95 => Some(Action::Commit(edge)),
            _ => {
                let mut restocks = self.restocks.lock().unwrap();
                let unanswered: Vec<usize> = (0..restocks.len())
                    .filter(|i| restocks[*i].1.is_none())
                    .collect();
                if again && !unanswered.is_empty() {
                    return Some(Action::Restock(unanswered[pick % unanswered.len()]));
                }
                let command = stock(SKUS[sku_pick], StockOp::Add(u64::from(qty) * 4));
                let n = restocks.len();
                restocks.push((Request::new(&format!("restock-{n}"), command, None), None));
                Some(Action::Restock(n))
            }
        }
    }

    /// Records what was answered under key `name`.
    fn answered(&self, name: &str, outcome: &Outcome, group: &Group) {
        let mut keys = self.keys.lock().unwrap();
        let Some(key) = keys.get_mut(name) else {
            return;
        };
        key.unanswered = false;
        match outcome {
            Outcome::Order { order, duplicate } => {
                key.answers.push((order.order_id.clone(), order.status));
                group.count(if *duplicate {
                    "central orders answered again"
                } else {
                    "central orders"
                });
            }
            Outcome::Rejected(r) => {
                // Refused whole (out of stock, say): nothing stands under the key, and a shopper
                // may send it again.
                group.count("central orders refused");
                group.net.note(format!("{name}: refused: {}", r.detail));
            }
            other => self.violation(format!("{name}: a central order answered {other:?}")),
        }
    }

    /// Edge `e` accepts an order from its grant, as durable as its outbox: a key of its own, or
    /// one a shopper got no answer for at the core, sent again here.
    fn accept(&self, e: usize, members: &[(NodeId, Arc<RaftNode>)], group: &Group) {
        let Some(machine) = members.iter().find_map(|(id, _)| {
            self.machines
                .lock()
                .unwrap()
                .get(&format!("m{id}"))
                .cloned()
        }) else {
            return;
        };
        // The edge's copy of the catalog: a member's, as the feed would bring it.
        let Ok(m) = machine.try_read() else { return };
        let mut edges = self.edges.lock().unwrap();
        let edge = &mut edges[e];
        let mut keys = self.keys.lock().unwrap();
        let (pick, again, qty) = group.net.draw(|r| {
            (
                r.random_range(0..u32::MAX) as usize,
                r.random_bool(0.3),
                r.random_range(1..=2u32),
            )
        });
        let held: Vec<(String, u64)> = edge
            .units
            .iter()
            .filter(|(_, u)| **u > 0)
            .map(|(s, u)| (s.clone(), *u))
            .collect();
        if held.is_empty() {
            return;
        }
        let retry = keys
            .iter()
            .filter(|(_, k)| {
                k.unanswered
                    && k.lines.len() == 1
                    && held.iter().any(|(s, u)| {
                        *s == k.lines[0].sku.to_string() && *u >= u64::from(k.lines[0].qty)
                    })
            })
            .map(|(n, _)| n.clone())
            .collect::<Vec<_>>();
        let (name, customer, lines) = if again && !retry.is_empty() {
            let name = retry[pick % retry.len()].clone();
            let k = &keys[&name];
            group.count("keys sent again at an edge");
            (name, k.customer.clone(), k.lines.clone())
        } else {
            let (s, u) = &held[pick % held.len()];
            let qty = qty.min(*u as u32);
            let name = format!("key-{}-{}", edge.id, edge.accepted.len());
            let customer = CustomerId::new(format!("cust-{e}")).unwrap();
            (name, customer, vec![LineRequest { sku: sku(s), qty }])
        };
        let mut req = request(&[]);
        req.customer_id = customer.clone();
        req.lines = lines.clone();
        let at = self.now_ms();
        let state = m.state();
        let Ok(priced) = price_order(&req, |s| state.sku_facts(s), &state.book, at) else {
            return;
        };
        let order = Order::accepted(
            order_ids().order_id(&customer, &name),
            Some(name.clone()),
            req,
            priced,
            Origin {
                region: "r1".into(),
                edge: Some(edge.id.clone()),
            },
            at,
        );
        let line = &lines[0];
        *edge.units.get_mut(&line.sku.to_string()).expect("held") -= u64::from(line.qty);
        let key = keys.entry(name.clone()).or_insert_with(|| Key {
            customer,
            lines,
            request: None,
            answers: Vec::new(),
            unanswered: false,
        });
        key.unanswered = false;
        key.answers
            .push((order.order_id.clone(), OrderStatus::Accepted));
        edge.accepted.insert(order.order_id.clone());
        edge.outbox.insert(order.order_id.clone(), order);
        group.count("edge orders accepted");
    }

    /// The request that commits edge `e`'s outbox (up to 16 orders), if any.
    fn commit_request(&self, e: usize) -> Option<Request> {
        let mut edges = self.edges.lock().unwrap();
        let edge = &mut edges[e];
        if edge.outbox.is_empty() {
            return None;
        }
        edge.commits += 1;
        let orders: Vec<Order> = edge.outbox.values().take(16).cloned().collect();
        Some(Request::new(
            &format!("commit-{}-{}", edge.id, edge.commits),
            Command::CommitOrders {
                edge: edge.id.clone(),
                orders,
            },
            None,
        ))
    }

    /// Takes the group's answer to edge `e`'s commit.
    fn committed(&self, e: usize, outcome: &Outcome, group: &Group) {
        let mut edges = self.edges.lock().unwrap();
        let edge = &mut edges[e];
        let Outcome::Orders { results, .. } = outcome else {
            self.violation(format!("{}: a commit answered {outcome:?}", edge.id));
            return;
        };
        for r in results {
            let Some(order) = edge.outbox.remove(&r.order_id) else {
                continue;
            };
            match (r.status, &r.original) {
                (OrderStatus::Committed, _) => group.count("edge orders committed"),
                // Decided before under its id (the key sent again elsewhere first): the edge's
                // copy stands down for the original, which I1 still holds to be committed.
                (OrderStatus::Rejected, Some(_)) => group.count("edge orders superseded"),
                (status, _) => self.violation(format!(
                    "{}: order {} (key {:?}) accepted from its grant was {status:?} at commit: {:?}",
                    edge.id, order.order_id, order.idempotency_key, r.reject_reason
                )),
            }
        }
    }

    async fn act(&self, action: Action, node: &RaftNode, group: &Group) {
        match action {
            Action::Setup(request) => {
                if let Ok(outcome) = request.send(node, self.now_ms()).await {
                    if !matches!(outcome, Outcome::Applied { .. }) {
                        self.violation(format!("the catalog was not set up: {outcome:?}"));
                    }
                    let mut setup = self.setup.lock().unwrap();
                    if let Some(s) = setup.as_mut() {
                        s.retain(|r| r.command_id != request.command_id);
                        if s.is_empty() {
                            *setup = None;
                        }
                    }
                }
            }
            Action::Central(name, request) => match request.send(node, self.now_ms()).await {
                Ok(outcome) => self.answered(&name, &outcome, group),
                Err(e) => {
                    group.count("central orders unanswered");
                    group.net.note(format!("{name}: no answer: {e}"));
                }
            },
            Action::Grant(e, request) => match request.send(node, self.now_ms()).await {
                Ok(outcome) => {
                    let mut edges = self.edges.lock().unwrap();
                    let edge = &mut edges[e];
                    if edge.asking.as_ref().map(|r| r.command_id) != Some(request.command_id) {
                        return;
                    }
                    edge.asking = None;
                    match outcome {
                        Outcome::Granted { units, .. } => {
                            let Command::Grant { sku, .. } = &request.command else {
                                return;
                            };
                            *edge.units.entry(sku.to_string()).or_default() += units;
                            group.count("grants");
                        }
                        Outcome::Rejected(_) => group.count("grants refused"),
                        other => {
                            drop(edges);
                            self.violation(format!("a grant answered {other:?}"));
                        }
                    }
                }
                Err(_) => group.count("grants unanswered"),
            },
            Action::Accept(_) => {}
            Action::Restock(i) => {
                let request = self.restocks.lock().unwrap()[i].0.clone();
                match request.send(node, self.now_ms()).await {
                    Ok(Outcome::Applied { .. }) => {
                        let Command::StockBatch(changes) = &request.command else {
                            return;
                        };
                        let added = changes
                            .iter()
                            .map(|c| match c.op {
                                StockOp::Add(n) => n,
                                _ => 0,
                            })
                            .sum();
                        self.restocks.lock().unwrap()[i].1 = Some(added);
                        group.count("restocks");
                    }
                    Ok(other) => self.violation(format!("a restock answered {other:?}")),
                    Err(_) => group.count("restocks unanswered"),
                }
            }
            Action::Commit(e) => {
                let Some(request) = self.commit_request(e) else {
                    return;
                };
                match request.send(node, self.now_ms()).await {
                    Ok(outcome) => self.committed(e, &outcome, group),
                    Err(_) => group.count("edge commits unanswered"),
                }
            }
        }
    }

    /// Sends every unanswered request again until each is answered (the faults are healed).
    async fn settle(&self, members: &[(NodeId, Arc<RaftNode>)], group: &Group) {
        let end = tokio::time::Instant::now() + SETTLE;
        let mut turn = 0;
        loop {
            let keys: Vec<(String, Request)> = self
                .keys
                .lock()
                .unwrap()
                .iter()
                .filter(|(_, k)| k.unanswered)
                .filter_map(|(n, k)| Some((n.clone(), k.request.clone()?)))
                .collect();
            let grants: Vec<(usize, Request)> = self
                .edges
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((i, e.asking.clone()?)))
                .collect();
            let outboxes: Vec<usize> = self
                .edges
                .lock()
                .unwrap()
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.outbox.is_empty())
                .map(|(i, _)| i)
                .collect();
            let setup = self.setup.lock().unwrap().clone().unwrap_or_default();
            let restocks: Vec<usize> = {
                let r = self.restocks.lock().unwrap();
                (0..r.len()).filter(|i| r[*i].1.is_none()).collect()
            };
            if keys.is_empty()
                && grants.is_empty()
                && outboxes.is_empty()
                && setup.is_empty()
                && restocks.is_empty()
            {
                return;
            }
            if tokio::time::Instant::now() >= end {
                self.violation(format!(
                    "still unanswered {SETTLE:?} after the faults healed: {} keys, {} grants, {} outboxes",
                    keys.len(),
                    grants.len(),
                    outboxes.len()
                ));
                return;
            }
            turn += 1;
            let node = &members[turn % members.len()].1;
            let actions = setup
                .into_iter()
                .map(Action::Setup)
                .chain(keys.into_iter().map(|(n, r)| Action::Central(n, r)))
                .chain(grants.into_iter().map(|(e, r)| Action::Grant(e, r)))
                .chain(outboxes.into_iter().map(Action::Commit))
                .chain(restocks.into_iter().map(Action::Restock));
            for action in actions {
                self.act(action, node, group).await;
            }
        }
    }

    /// I1 to I3 over what member `name` holds; the store's rows, to compare with the others'.
    async fn check_member(
        &self,
        name: &str,
        machine: &RwLock<StateMachine>,
    ) -> core_region::store::Rows {
        let m = machine.read().await;
        let store = Arc::clone(m.store());
        let mut orders: BTreeMap<OrderId, Order> = BTreeMap::new();
        let mut after = None;
        loop {
            match orders_after(&*store, after, 256) {
                Ok((page, cursor)) => {
                    let done = page.len() < 256;
                    for o in page {
                        orders.insert(o.order_id.clone(), o);
                    }
                    after = cursor;
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    self.violation(format!("{name}: its orders could not be read: {e}"));
                    break;
                }
            }
        }
        // I1: every order acknowledged stands committed.
        let mut acknowledged: BTreeSet<OrderId> = BTreeSet::new();
        for (key, k) in self.keys.lock().unwrap().iter() {
            let ids: BTreeSet<&OrderId> = k.answers.iter().map(|(id, _)| id).collect();
            // I3: one key, one order, whoever answered and however often.
            if ids.len() > 1 {
                self.violation(format!("key {key} was answered with orders {ids:?}"));
            }
            for (id, status) in &k.answers {
                if matches!(status, OrderStatus::Committed | OrderStatus::Accepted) {
                    acknowledged.insert(id.clone());
                }
            }
        }
        for e in self.edges.lock().unwrap().iter() {
            acknowledged.extend(e.accepted.iter().cloned());
        }
        for id in &acknowledged {
            match orders.get(id) {
                Some(o) if o.status == OrderStatus::Committed => {}
                Some(o) => {
                    self.violation(format!("{name}: acknowledged order {id} is {:?}", o.status))
                }
                None => self.violation(format!("{name}: acknowledged order {id} is lost")),
            }
        }
        // I2, and I3's units counted once.
        let mut sold: BTreeMap<String, u64> = BTreeMap::new();
        for o in orders
            .values()
            .filter(|o| o.status == OrderStatus::Committed)
        {
            for l in &o.lines {
                *sold.entry(l.sku.to_string()).or_default() += u64::from(l.qty);
            }
        }
        let restocks = self.restocks.lock().unwrap();
        for (s, stocked) in SKUS.iter().zip(STOCKED) {
            let Some(inv) = m.state().inventory(&sku(s)) else {
                self.violation(format!("{name}: no inventory of {s}"));
                continue;
            };
            // Every restock answered (the end waits for them), each added once.
            let added: u64 = restocks
                .iter()
                .filter(|(r, _)| matches!(&r.command, Command::StockBatch(c) if c[0].sku == sku(s)))
                .filter_map(|(_, n)| *n)
                .sum();
            if inv.stocked != stocked + added {
                self.violation(format!(
                    "{name}: {s} has {} units stocked, {stocked} set and {added} added",
                    inv.stocked
                ));
            }
            let granted: u64 = inv.granted.values().sum();
            if inv.committed + granted > inv.stocked {
                self.violation(format!(
                    "{name}: {s} oversold: {} committed and {granted} granted of {} stocked",
                    inv.committed, inv.stocked
                ));
            }
            let counted = sold.get(*s).copied().unwrap_or(0);
            if inv.committed != counted {
                self.violation(format!(
                    "{name}: {s} counts {} units committed, its committed orders hold {counted}",
                    inv.committed
                ));
            }
        }
        m.dump().unwrap_or_else(|e| {
            self.violation(format!("{name}: its store could not be read: {e}"));
            Vec::new()
        })
    }
}

impl Workload for Orders {
    type App = Observing<OffThread>;

    fn open(
        &self,
        name: &str,
        disk: LosingDisk,
        observed: &Arc<Mutex<Observed>>,
    ) -> Result<Self::App, String> {
        let store = RedbStore::on_backend(disk).map_err(|e| e.to_string())?;
        let machine = StateMachine::open(Arc::new(store)).map_err(|e| e.to_string())?;
        let machine = Arc::new(RwLock::new(machine));
        self.machines
            .lock()
            .unwrap()
            .insert(name.to_owned(), Arc::clone(&machine));
        Ok(Observing {
            app: OffThread(CoreApp::new(machine)),
            member: name.to_owned(),
            observed: Arc::clone(observed),
        })
    }

    async fn operate(
        self: Arc<Self>,
        c: usize,
        members: Vec<(NodeId, Arc<RaftNode>)>,
        group: Arc<Group>,
    ) {
        let pick = group.net.draw(|r| r.random_range(0..members.len()));
        let Some(action) = self.next(c, &group) else {
            return;
        };
        if let Action::Accept(e) = action {
            self.accept(e, &members, &group);
            return;
        }
        self.act(action, &members[pick].1, &group).await;
    }

    async fn verdict(
        self: Arc<Self>,
        members: Vec<(NodeId, Arc<RaftNode>)>,
        group: Arc<Group>,
    ) -> Vec<String> {
        if members.is_empty() {
            return vec!["no member runs at the end".into()];
        }
        self.settle(&members, &group).await;
        // Every member of the group (a member removed and never added again keeps an old
        // store) applies all the leader of the latest term has.
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        let members = loop {
            let leader = members
                .iter()
                .filter(|(id, n)| n.metrics().current_leader == Some(*id))
                .max_by_key(|(_, n)| n.metrics().current_term);
            let view = leader.map(|(_, l)| {
                let m = l.metrics();
                let in_group: BTreeSet<NodeId> = m
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(id, _)| *id)
                    .collect();
                let of_group: Vec<(NodeId, Arc<RaftNode>)> = members
                    .iter()
                    .filter(|(id, _)| in_group.contains(id))
                    .cloned()
                    .collect();
                let applied: BTreeSet<Option<u64>> = of_group
                    .iter()
                    .map(|(_, n)| n.metrics().last_applied.map(|l| l.index))
                    .collect();
                (of_group, applied)
            });
            match view {
                Some((of_group, applied)) if applied.len() == 1 => break of_group,
                _ if tokio::time::Instant::now() >= end => {
                    let states: Vec<String> = members
                        .iter()
                        .map(|(id, n)| {
                            let m = n.metrics();
                            format!(
                                "m{id} {:?} of term {} (vote {}), log to {:?}, voters {:?}",
                                m.state,
                                m.current_term,
                                m.vote,
                                m.last_log_index,
                                m.membership_config.membership().get_joint_config()
                            )
                        })
                        .collect();
                    self.violation(format!(
                        "no leader that every member of its group caught up with: {:?}; {}",
                        view.map(|(_, applied)| applied),
                        states.join("; ")
                    ));
                    return std::mem::take(&mut *self.violations.lock().unwrap());
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let mut first: Option<(String, core_region::store::Rows)> = None;
        for (id, _) in &members {
            let name = format!("m{id}");
            let Some(machine) = self.machines.lock().unwrap().get(&name).cloned() else {
                continue;
            };
            let rows = self.check_member(&name, &machine).await;
            match &first {
                None => first = Some((name, rows)),
                Some((other, theirs)) if *theirs != rows => self.violation(format!(
                    "{name} and {other} hold different stores ({} and {} rows)",
                    rows.len(),
                    theirs.len()
                )),
                Some(_) => {}
            }
        }
        std::mem::take(&mut *self.violations.lock().unwrap())
    }
}

#[test]
fn seeded_runs_keep_every_order_and_oversell_none() {
    // Fewer seeds than the registers': commerce applies cost more.
    simulator::seeded_runs(
        "orders",
        include_str!("regressions.txt"),
        (Some(3), Some(60)),
        |seed, length| simulator::run(seed, length, Orders::new()),
    );
}
