//! Durable apply throughput of the commerce state machine on a real redb file, each commit
//! fsynced, against a baseline measured in the same run: raw redb commits of the same rows,
//! which is the floor any state machine on this disk pays.
//!
//! - price changes in batches of 1,000 (one command, one commit each);
//! - edge order commits in batches of 100 (one command, one commit each), under time-led
//!   (UUIDv7) and random (UUIDv4) Idempotency-Keys;
//! - edge order commits from 4 edges at once through admission and the Raft log of a region
//!   (a fsynced log append, then the fsynced apply);
//! - price batches through the admin API over HTTP, 4 clients at once (JSON, Raft, reply).
//!
//! Run: `cargo bench -p core-region --bench apply` (prints medians of 5 runs and the ratios).
//! Set `TRADEWIND_BENCH_DIR` to put the files on another disk (default: the system temp dir).

use std::sync::Arc;
use std::time::Instant;

use commerce::command::{Command, PriceChange, Proposal};
use commerce::escrow::{Demand, GrantPolicy, StockOp};
use commerce::order::{LineRequest, Order, OrderRequest, Origin, ShipTo, price_order};
use commerce::{Country, Currency, CustomerId, EdgeId, Market, MarketId, Product, SkuId};
use core_region::machine::{LogEntry, StateMachine};
use core_region::replicated::CoreApp;
use core_region::store::redb::RedbStore;
use core_region::writes::{WriteLimits, Writes};
use redb::{Database, TableDefinition};
use replication::protocol::Member;
use replication::raft::{RaftNode, Timing};
use tokio::sync::RwLock;

const RUNS: usize = 5;
const SKUS: usize = 10_000;
const PRICE_BATCH: usize = 1_000;
const PRICE_BATCHES_PER_RUN: usize = 200;
const ORDER_BATCH: usize = 100;
const ORDER_BATCHES_PER_RUN: usize = 400;
/// Edges forwarding at once in the concurrent order benchmark.
const FORWARDERS: usize = 4;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("TRADEWIND_BENCH_DIR") {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn usd() -> Currency {
    Currency::from_code("USD").unwrap()
}

fn sku(i: usize) -> SkuId {
    SkuId::new(format!("SKU-{i:06}")).unwrap()
}

struct Machine {
    _dir: tempfile::TempDir,
    /// Shared with the log driver in the concurrent-forwarder runs.
    m: Arc<RwLock<StateMachine>>,
    next_command: u64,
}

impl Machine {
    fn new() -> Self {
        let dir = bench_dir();
        let store = Arc::new(RedbStore::open(&dir.path().join("core.redb")).unwrap());
        let mut m = Machine {
            _dir: dir,
            m: Arc::new(RwLock::new(StateMachine::open(store).unwrap())),
            next_command: 0,
        };
        m.seed();
        m
    }

    fn apply(&mut self, command: Command) {
        self.apply_many(vec![command]);
    }

    /// Applies commands as consecutive log entries in one durable commit.
    fn apply_many(&mut self, commands: Vec<Command>) {
        let proposals = commands
            .into_iter()
            .map(|command| {
                self.next_command += 1;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.next_command.to_be_bytes());
                Proposal {
                    command_id: id,
                    fingerprint: id,
                    at_ms: 1_000,
                    command,
                    key_ms: None,
                    actor: None,
                }
            })
            .collect();
        let mut m = self.m.blocking_write();
        let entries = LogEntry::numbered(m.applied() + 1, proposals);
        for out in m.apply(&entries).unwrap() {
            assert!(
                !matches!(out, commerce::command::Outcome::Rejected(_)),
                "{out:?}"
            );
        }
    }

    fn seed(&mut self) {
        for c in catalog() {
            self.apply(c);
        }
        // Grants for every run of the order benchmarks, 1,000 grant commands per commit.
        let per_sku = (RUNS * 2 * ORDER_BATCHES_PER_RUN * ORDER_BATCH / SKUS + 1) as u64;
        let grants: Vec<Command> = (0..SKUS)
            .map(|i| Command::Grant {
                edge: edge(0),
                sku: sku(i),
                demand: Demand::default(),
                policy: GrantPolicy {
                    min_units: per_sku,
                    max_units: per_sku,
                    ..GrantPolicy::default()
                },
                request: None,
            })
            .collect();
        for chunk in grants.chunks(1_000) {
            self.apply_many(chunk.to_vec());
        }
    }
}

/// The catalog every benchmark runs on: 10,000 SKUs in 50 products, priced and stocked.
fn catalog() -> Vec<Command> {
    let mut out = Vec::new();
    for p in 0..SKUS / 200 {
        let skus: Vec<serde_json::Value> = (0..200)
            .map(|i| serde_json::json!({"sku": sku(p * 200 + i)}))
            .collect();
        let product: Product = serde_json::from_value(serde_json::json!({
            "id": format!("P-{p}"), "title": "Bolt", "category": "industrial/fasteners", "skus": skus
        }))
        .unwrap();
        out.push(Command::UpsertProduct(product));
    }
    out.push(Command::UpsertMarket(Market {
        id: MarketId::new("sea").unwrap(),
        countries: [Country::new("SG").unwrap()].into(),
        currencies: [usd()].into(),
    }));
    for chunk in (0..SKUS).collect::<Vec<_>>().chunks(PRICE_BATCH) {
        out.push(Command::PriceBatch(
            chunk.iter().map(|i| price(*i, 1_000)).collect(),
        ));
        out.push(Command::StockBatch(
            chunk
                .iter()
                .map(|i| commerce::command::StockChange {
                    sku: sku(*i),
                    op: StockOp::Set(1_000_000_000),
                })
                .collect(),
        ));
    }
    out
}

fn edge(e: usize) -> EdgeId {
    EdgeId::new(format!("edge-{e}")).unwrap()
}

fn price(i: usize, amount: i64) -> PriceChange {
    PriceChange {
        sku: sku(i),
        currency: usd(),
        amount_minor: amount,
        list: None,
        customer_group: None,
        tiers: vec![],
    }
}

/// Price changes per second, durably applied in batches of 1,000.
fn run_prices(m: &mut Machine, round: i64) -> f64 {
    let batches: Vec<Command> = (0..PRICE_BATCHES_PER_RUN)
        .map(|b| {
            Command::PriceBatch(
                (0..PRICE_BATCH)
                    .map(|i| price((b * PRICE_BATCH + i) % SKUS, 1_000 + round))
                    .collect(),
            )
        })
        .collect();
    let start = Instant::now();
    for c in batches {
        m.apply(c);
    }
    (PRICE_BATCHES_PER_RUN * PRICE_BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// What Idempotency-Keys the shoppers of a benchmark send. The order id derives from the key
/// (`order_id`), so this decides where each order lands in the store's B-tree.
#[derive(Clone, Copy)]
enum Keys {
    /// UUIDv7, as the API recommends: time-led, so ids arrive roughly in order.
    UuidV7,
    /// UUIDv4: random, so every order is a random B-tree insert.
    UuidV4,
}

/// `batches` commit batches of 100 orders accepted at `edge`, each order one unit of a SKU.
fn order_batches(
    m: &RwLock<StateMachine>,
    edge: &EdgeId,
    batches: usize,
    keys: Keys,
) -> Vec<Command> {
    // Shoppers' clocks: 50 orders a millisecond across the mesh, from a fixed instant.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let m = m.blocking_read();
    let state = m.state();
    (0..batches)
        .map(|b| {
            let orders = (0..ORDER_BATCH)
                .map(|i| {
                    let k = b * ORDER_BATCH + i;
                    let req = OrderRequest {
                        customer_id: CustomerId::new(format!("cust-{}", k % 5_000)).unwrap(),
                        customer_group: None,
                        currency: usd(),
                        lines: vec![LineRequest {
                            sku: sku(k % SKUS),
                            qty: 1,
                        }],
                        // Sealed, as every order is: opaque here, the size of a sealed
                        // address.
                        ship_to: ShipTo {
                            country: Country::new("SG").unwrap(),
                            personal: commerce::personal::Personal::Sealed(
                                commerce::personal::SealedPersonal {
                                    home: "ap-singapore".into(),
                                    digest: [7; 16],
                                    sealed: vec![0xa5; 160],
                                },
                            ),
                        },
                    };
                    let priced =
                        price_order(&req, |s| state.sku_facts(s), &state.book, 1_000).unwrap();
                    let r: u128 = rand::random();
                    let key = match keys {
                        Keys::UuidV7 => {
                            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let ms = 1_764_000_000_000 + n / 50;
                            format!(
                                "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
                                ms >> 16,
                                ms & 0xffff,
                                r & 0xfff,
                                0x8000 | (r >> 12) & 0x3fff,
                                (r >> 26) & 0xffff_ffff_ffff
                            )
                        }
                        Keys::UuidV4 => format!(
                            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                            r & 0xffff_ffff,
                            (r >> 32) & 0xffff,
                            (r >> 48) & 0xfff,
                            0x8000 | (r >> 60) & 0x3fff,
                            (r >> 74) & 0xffff_ffff_ffff
                        ),
                    };
                    let id = commerce::testing::order_ids().order_id(&req.customer_id, &key);
                    Order::accepted(
                        id,
                        Some(key),
                        req,
                        priced,
                        Origin {
                            region: "ap-singapore".into(),
                            edge: Some(edge.clone()),
                        },
                        1_000,
                    )
                })
                .collect();
            Command::CommitOrders {
                edge: edge.clone(),
                orders,
            }
        })
        .collect()
}

/// Edge order commits per second applied straight to the state machine, one batch of 100 per
/// durable commit.
fn run_orders(m: &mut Machine, round: usize, keys: Keys) -> f64 {
    let batches = order_batches(&m.m, &edge(0), ORDER_BATCHES_PER_RUN, keys);
    if round == 0
        && matches!(keys, Keys::UuidV7)
        && let Command::CommitOrders { orders, .. } = &batches[0]
    {
        let order = codec::encode(&orders[0]).unwrap().len();
        let inventory = {
            let g = m.m.blocking_read();
            codec::encode(g.state().inventory(&sku(0)).unwrap())
                .unwrap()
                .len()
        };
        eprintln!("an order record is {order} bytes, an inventory record {inventory} bytes");
    }
    let start = Instant::now();
    for c in batches {
        m.apply(c);
    }
    (ORDER_BATCHES_PER_RUN * ORDER_BATCH) as f64 / start.elapsed().as_secs_f64()
}

/// A region as it runs: a group of one, writes going through admission and the Raft log (an
/// fsynced log append, then the fsynced apply), on its own files and runtime.
struct LogRegion {
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    machine: Arc<RwLock<StateMachine>>,
    writes: Writes,
}

impl LogRegion {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = bench_dir();
        let store = Arc::new(RedbStore::open(&dir.path().join("core.redb")).unwrap());
        let machine = Arc::new(RwLock::new(StateMachine::open(store).unwrap()));
        let members = std::collections::BTreeMap::from([(
            1,
            Member {
                name: "bench".into(),
                raft_addr: String::new(),
                admin_url: String::new(),
            },
        )]);
        let app = Arc::new(CoreApp::new(Arc::clone(&machine)));
        let node = rt
            .block_on(RaftNode::start(
                1,
                members,
                &dir.path().join("raft-log.redb"),
                app,
                None,
                None,
                Timing::default(),
            ))
            .unwrap();
        let writes = Writes::new(Arc::new(node), WriteLimits::default());
        let region = LogRegion {
            rt,
            _dir: dir,
            machine,
            writes,
        };
        for c in catalog() {
            region.propose(proposal(c));
        }
        region
    }

    fn propose(&self, p: Proposal) -> commerce::command::Outcome {
        self.rt
            .block_on(self.writes.propose(&p, std::time::Duration::from_secs(30)))
            .unwrap()
    }
}

fn proposal(command: Command) -> Proposal {
    let id: [u8; 16] = rand::random();
    Proposal {
        command_id: id,
        fingerprint: id,
        at_ms: 1_000,
        command,
        key_ms: None,
        actor: None,
    }
}

/// Edge order commits per second through admission and the Raft log, from `FORWARDERS` edges
/// forwarding batches of 100 at once. (Without grants, the units come from the pool: the same
/// rows.)
fn run_orders_via_log(r: &LogRegion) -> f64 {
    let per_edge = ORDER_BATCHES_PER_RUN / FORWARDERS;
    let work: Vec<Vec<Proposal>> = (0..FORWARDERS)
        .map(|e| {
            order_batches(&r.machine, &edge(e), per_edge, Keys::UuidV7)
                .into_iter()
                .map(proposal)
                .collect()
        })
        .collect();
    let writes = r.writes.clone();
    r.rt.block_on(async move {
        let start = Instant::now();
        let tasks: Vec<_> = work
            .into_iter()
            .map(|batches| {
                let w = writes.clone();
                tokio::spawn(async move {
                    for p in batches {
                        let out = w
                            .propose(&p, std::time::Duration::from_secs(30))
                            .await
                            .unwrap();
                        assert!(matches!(out, commerce::command::Outcome::Orders { .. }));
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        (per_edge * FORWARDERS * ORDER_BATCH) as f64 / start.elapsed().as_secs_f64()
    })
}

/// Where a baseline's rows land in the key space.
#[derive(Clone, Copy)]
enum Placement {
    /// New keys in rising order (orders under time-led ids).
    Rising,
    /// New keys scattered at random (orders under random ids).
    Scattered,
    /// Overwrites of `SKUS` existing keys (prices, inventory).
    Overwrite,
}

/// One kind of row a baseline commit writes: how many, how large, and where.
struct RowKind {
    per_commit: usize,
    value_bytes: usize,
    placement: Placement,
}

/// A raw redb file that, like the state machine's, lives through every run and grows with it.
struct RawRedb {
    _dir: tempfile::TempDir,
    db: Database,
}

const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");

fn raw_key(kind: usize, placement: Placement, round: usize, n: usize) -> String {
    match placement {
        Placement::Rising => format!("{kind}-new-{round:03}-{n:012}"),
        Placement::Scattered => format!(
            "{kind}-new-{:016x}",
            (n as u64 ^ (round as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ),
        Placement::Overwrite => format!("{kind}-sku-{:06}", n % SKUS),
    }
}

impl RawRedb {
    /// A file that already holds `SKUS` keys of each overwritten kind, as the state machine's
    /// file holds every SKU's price and inventory.
    fn new(kinds: &[RowKind]) -> Self {
        let dir = bench_dir();
        let db = Database::create(dir.path().join("raw.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(RAW).unwrap();
            for (k, kind) in kinds.iter().enumerate() {
                if let Placement::Overwrite = kind.placement {
                    for n in 0..SKUS {
                        let value = vec![0u8; kind.value_bytes];
                        t.insert(
                            raw_key(k, kind.placement, 0, n).as_bytes(),
                            value.as_slice(),
                        )
                        .unwrap();
                    }
                }
            }
        }
        txn.commit().unwrap();
        RawRedb { _dir: dir, db }
    }

    /// Commits per second: `commits` fsynced commits of the given rows.
    fn run(&self, kinds: &[RowKind], commits: usize, round: usize) -> f64 {
        let values: Vec<Vec<u8>> = kinds.iter().map(|k| vec![7u8; k.value_bytes]).collect();
        let start = Instant::now();
        for c in 0..commits {
            // Sorted, as the state machine's backend inserts them: the best case for a B-tree.
            let mut rows: Vec<(String, usize)> = Vec::new();
            for (k, kind) in kinds.iter().enumerate() {
                for r in 0..kind.per_commit {
                    rows.push((
                        raw_key(k, kind.placement, round, c * kind.per_commit + r),
                        k,
                    ));
                }
            }
            rows.sort_unstable();
            let txn = self.db.begin_write().unwrap();
            {
                let mut t = txn.open_table(RAW).unwrap();
                for (key, k) in &rows {
                    t.insert(key.as_bytes(), values[*k].as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        commits as f64 / start.elapsed().as_secs_f64()
    }
}

/// Price changes per second through the admin API: `clients` concurrent HTTP clients posting
/// batches of 1,000 changes.
fn run_http_prices(clients: usize, batches_per_client: usize) -> f64 {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = bench_dir();
        let token = "bench-token";
        let cfg_path = dir.path().join("core.toml");
        std::fs::write(
            &cfg_path,
            format!(
                "region = \"bench\"\n[store]\nbackend = \"redb\"\npath = \"core.redb\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_sha256 = [\"{}\"]\n[admin.http]\nplain_http = true\n",
                http_api::bearer::sha256_hex(token)
            ),
        )
        .unwrap();
        let config = util::config::load::<core_region::config::CoreConfig>(&cfg_path).unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(core_region::server::serve(
            config,
            async {
                let _ = stop_rx.await;
            },
            |s| {
                let _ = ready_tx.send(s.admin);
            },
        ));
        let base = format!("http://{}", ready_rx.await.unwrap());
        let http = reqwest::Client::new();
        for p in 0..SKUS / 200 {
            let skus: Vec<serde_json::Value> = (0..200)
                .map(|i| serde_json::json!({"sku": sku(p * 200 + i)}))
                .collect();
            let res = http
                .put(format!("{base}/admin/v1/products/P-{p}"))
                .bearer_auth(token)
                .json(&serde_json::json!({"id": format!("P-{p}"), "title": "Bolt", "category": "industrial", "skus": skus}))
                .send()
                .await
                .unwrap();
            assert!(res.status().is_success());
        }
        // Bodies are built before the clock starts: the load generator's JSON is not the core's.
        let bodies: Vec<Vec<String>> = (0..clients)
            .map(|c| {
                (0..batches_per_client)
                    .map(|b| {
                        let changes: Vec<PriceChange> = (0..PRICE_BATCH)
                            .map(|i| price(((c * batches_per_client + b) * PRICE_BATCH + i) % SKUS, 500 + b as i64))
                            .collect();
                        serde_json::json!({ "changes": changes }).to_string()
                    })
                    .collect()
            })
            .collect();
        let start = Instant::now();
        let mut tasks = Vec::new();
        for client_bodies in bodies {
            let (http, base) = (http.clone(), base.clone());
            tasks.push(tokio::spawn(async move {
                for body in client_bodies {
                    let res = http
                        .post(format!("{base}/admin/v1/prices"))
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .unwrap();
                    assert!(res.status().is_success(), "{}", res.status());
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let rate = (clients * batches_per_client * PRICE_BATCH) as f64 / start.elapsed().as_secs_f64();
        let _ = stop_tx.send(());
        server.await.unwrap().unwrap();
        rate
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let started = Instant::now();
    let mut m = Machine::new();
    let via_log = LogRegion::new();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); 9];
    // A price change overwrites one row of an existing SKU (~20 bytes: the entry's list, amount
    // and version).
    let price_rows = [RowKind {
        per_commit: PRICE_BATCH,
        value_bytes: 20,
        placement: Placement::Overwrite,
    }];
    // An edge order commit writes its order (~200 bytes for one line, printed below from a real
    // record) under the id its key names, and overwrites its SKU's inventory.
    let order_rows = |batches: usize, placement: Placement| {
        [
            RowKind {
                per_commit: ORDER_BATCH * batches,
                value_bytes: 200,
                placement,
            },
            RowKind {
                per_commit: ORDER_BATCH * batches,
                value_bytes: 40,
                placement: Placement::Overwrite,
            },
        ]
    };
    let raw_prices = RawRedb::new(&price_rows);
    let raw_orders = RawRedb::new(&order_rows(1, Placement::Rising));
    let per_batch = ORDER_BATCH as f64;
    for round in 0..RUNS {
        // Interleave each subject and its baseline so that both see the same machine weather.
        rates[0].push(run_prices(&mut m, round as i64));
        let commits = PRICE_BATCHES_PER_RUN;
        rates[1].push(raw_prices.run(&price_rows, commits, round) * PRICE_BATCH as f64);
        rates[2].push(run_orders(&mut m, round, Keys::UuidV7));
        let rows = order_rows(1, Placement::Rising);
        rates[3].push(raw_orders.run(&rows, ORDER_BATCHES_PER_RUN, round) * per_batch);
        rates[4].push(run_orders(&mut m, round, Keys::UuidV4));
        let rows = order_rows(1, Placement::Scattered);
        rates[5].push(raw_orders.run(&rows, ORDER_BATCHES_PER_RUN, round) * per_batch);
        rates[6].push(run_orders_via_log(&via_log));
        let rows = order_rows(FORWARDERS, Placement::Rising);
        let commits = ORDER_BATCHES_PER_RUN / FORWARDERS;
        rates[7].push(raw_orders.run(&rows, commits, round + RUNS) * per_batch * FORWARDERS as f64);
        rates[8].push(run_http_prices(4, 25));
        eprintln!("run {} done", round + 1);
    }
    let med: Vec<f64> = rates.into_iter().map(median).collect();
    println!(
        "median of {RUNS} runs ({:.0} s in all), per second:",
        started.elapsed().as_secs_f64()
    );
    let pair = |what: &str, subject: f64, baseline: f64| {
        println!("  {what:<58} {subject:>9.0}");
        println!(
            "    baseline: raw redb, the same rows per commit           {baseline:>9.0}   ratio {:.2}",
            subject / baseline
        );
    };
    pair("price changes, batches of 1,000", med[0], med[1]);
    pair("order commits, batches of 100, UUIDv7 keys", med[2], med[3]);
    pair("order commits, batches of 100, UUIDv4 keys", med[4], med[5]);
    pair(
        "order commits, batches of 100, 4 edges at once via the log",
        med[6],
        med[7],
    );
    println!(
        "  {:<58} {:>9.0}",
        "price changes via the admin API, 4 HTTP clients", med[8]
    );
}
