//! Durable apply throughput of the commerce state machine on a real redb file, each commit
//! fsynced, against a baseline measured in the same run: raw redb commits of the same number of
//! rows of the same size, which is the floor any state machine on this disk pays.
//!
//! - price changes in batches of 1,000 (one command, one commit each);
//! - edge order commits in batches of 100 (one command, one commit each);
//! - the same price batches through the admin API over HTTP, 4 clients at once (JSON parsing,
//!   the log driver's group commit and the reply included).
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
use core_region::store::redb::RedbStore;
use redb::{Database, TableDefinition};

const RUNS: usize = 5;
const SKUS: usize = 10_000;
const PRICE_BATCH: usize = 1_000;
const PRICE_BATCHES_PER_RUN: usize = 200;
const ORDER_BATCH: usize = 100;
const ORDER_BATCHES_PER_RUN: usize = 400;

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
    m: StateMachine,
    next_command: u64,
}

impl Machine {
    fn new() -> Self {
        let dir = bench_dir();
        let store = Arc::new(RedbStore::open(&dir.path().join("core.redb")).unwrap());
        let mut m = Machine {
            _dir: dir,
            m: StateMachine::open(store).unwrap(),
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
        let first = self.m.applied() + 1;
        let entries: Vec<LogEntry> = commands
            .into_iter()
            .enumerate()
            .map(|(i, command)| {
                self.next_command += 1;
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&self.next_command.to_be_bytes());
                LogEntry {
                    index: first + i as u64,
                    proposal: Proposal {
                        command_id: id,
                        fingerprint: id,
                        at_ms: 1_000,
                        command,
                    },
                }
            })
            .collect();
        for out in self.m.apply(&entries).unwrap() {
            assert!(
                !matches!(out, commerce::command::Outcome::Rejected(_)),
                "{out:?}"
            );
        }
    }

    fn seed(&mut self) {
        for p in 0..SKUS / 200 {
            let skus: Vec<serde_json::Value> = (0..200)
                .map(|i| serde_json::json!({"sku": sku(p * 200 + i)}))
                .collect();
            let product: Product = serde_json::from_value(serde_json::json!({
                "id": format!("P-{p}"), "title": "Bolt", "category": "industrial/fasteners", "skus": skus
            }))
            .unwrap();
            self.apply(Command::UpsertProduct(product));
        }
        self.apply(Command::UpsertMarket(Market {
            id: MarketId::new("sea").unwrap(),
            countries: [Country::new("SG").unwrap()].into(),
            currencies: [usd()].into(),
        }));
        for chunk in (0..SKUS).collect::<Vec<_>>().chunks(PRICE_BATCH) {
            self.apply(Command::PriceBatch(
                chunk.iter().map(|i| price(*i, 1_000)).collect(),
            ));
            self.apply(Command::StockBatch(
                chunk
                    .iter()
                    .map(|i| commerce::command::StockChange {
                        sku: sku(*i),
                        op: StockOp::Set(1_000_000_000),
                    })
                    .collect(),
            ));
        }
        // Grants for every run of the order benchmark, 1,000 grant commands per commit.
        let per_sku = (RUNS * ORDER_BATCHES_PER_RUN * ORDER_BATCH / SKUS + 1) as u64;
        let grants: Vec<Command> = (0..SKUS)
            .map(|i| Command::Grant {
                edge: EdgeId::new("sg-1").unwrap(),
                sku: sku(i),
                demand: Demand::default(),
                policy: GrantPolicy {
                    min_units: per_sku,
                    ..GrantPolicy::default()
                },
            })
            .collect();
        for chunk in grants.chunks(1_000) {
            self.apply_many(chunk.to_vec());
        }
    }
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

/// Edge order commits per second, durably applied in batches of 100.
fn run_orders(m: &mut Machine, round: usize) -> f64 {
    let edge = EdgeId::new("sg-1").unwrap();
    let n = ORDER_BATCHES_PER_RUN * ORDER_BATCH;
    let state = m.m.state();
    let batches: Vec<Command> = (0..ORDER_BATCHES_PER_RUN)
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
                        ship_to: ShipTo {
                            country: Country::new("SG").unwrap(),
                            line1: "1 Raffles Place".into(),
                            city: "Singapore".into(),
                            postal_code: "048616".into(),
                        },
                    };
                    let priced =
                        price_order(&req, |s| state.sku_facts(s), &state.book, 1_000).unwrap();
                    // Shoppers' keys are random; an order's id is the one its key names.
                    let key = format!(
                        "{:032x}",
                        (k as u128 + ((round as u128) << 64))
                            .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                    );
                    Order::accepted(
                        commerce::order::order_id_for(&req.customer_id, &key),
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
        .collect();
    if round == 0
        && let Command::CommitOrders { orders, .. } = &batches[0]
    {
        let order = replication::codec::encode(1, &orders[0]).unwrap().len();
        let inventory = replication::codec::encode(1, m.m.state().inventory(&sku(0)).unwrap())
            .unwrap()
            .len();
        eprintln!("an order record is {order} bytes, an inventory record {inventory} bytes");
    }
    let start = Instant::now();
    for c in batches {
        m.apply(c);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// One kind of row a baseline commit writes: how many, how large, and whether each is a new
/// key (an order) or an overwrite of one of `SKUS` existing keys (a price, an inventory).
struct RowKind {
    per_commit: usize,
    value_bytes: usize,
    fresh: bool,
}

/// A raw redb file that, like the state machine's, lives through every run and grows with it.
struct RawRedb {
    _dir: tempfile::TempDir,
    db: Database,
}

const RAW: TableDefinition<&[u8], &[u8]> = TableDefinition::new("t");

/// Keys of the baseline's rows: new ones scattered like order ids derived from shoppers' keys,
/// overwritten ones cycling through the SKUs.
fn raw_key(kind: usize, fresh: bool, round: usize, n: usize) -> String {
    match (fresh, kind) {
        (true, _) => format!(
            "{kind}-new-{:016x}",
            (n as u64 ^ (round as u64) << 40).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ),
        (false, _) => format!("{kind}-sku-{:06}", n % SKUS),
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
            for (k, kind) in kinds.iter().enumerate().filter(|(_, k)| !k.fresh) {
                for n in 0..SKUS {
                    let value = vec![0u8; kind.value_bytes];
                    t.insert(raw_key(k, false, 0, n).as_bytes(), value.as_slice())
                        .unwrap();
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
                    rows.push((raw_key(k, kind.fresh, round, c * kind.per_commit + r), k));
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
                "region = \"bench\"\n[store]\nbackend = \"redb\"\npath = \"core.redb\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_sha256 = [\"{}\"]\n",
                core_region::api::auth::sha256_hex(token)
            ),
        )
        .unwrap();
        let config = core_region::config::CoreConfig::load(&cfg_path).unwrap();
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
    let mut prices = Vec::new();
    let mut raw_1000 = Vec::new();
    let mut orders = Vec::new();
    let mut raw_100 = Vec::new();
    let mut http = Vec::new();
    // A price change overwrites one row of an existing SKU (~20 bytes: the entry's list, amount
    // and version).
    let price_rows = [RowKind {
        per_commit: PRICE_BATCH,
        value_bytes: 20,
        fresh: false,
    }];
    // An edge order commit writes its order (~160 bytes for one line) under a random id (the
    // digest of the shopper's key) and overwrites its SKU's inventory (~15 bytes); the sizes
    // are printed below from the real records.
    let order_rows = [
        RowKind {
            per_commit: ORDER_BATCH,
            value_bytes: 160,
            fresh: true,
        },
        RowKind {
            per_commit: ORDER_BATCH,
            value_bytes: 15,
            fresh: false,
        },
    ];
    let raw_prices = RawRedb::new(&price_rows);
    let raw_orders = RawRedb::new(&order_rows);
    for round in 0..RUNS {
        // Interleave the subject and its baseline so that both see the same machine weather.
        prices.push(run_prices(&mut m, round as i64));
        raw_1000
            .push(raw_prices.run(&price_rows, PRICE_BATCHES_PER_RUN, round) * PRICE_BATCH as f64);
        orders.push(run_orders(&mut m, round));
        raw_100
            .push(raw_orders.run(&order_rows, ORDER_BATCHES_PER_RUN, round) * ORDER_BATCH as f64);
        http.push(run_http_prices(4, 25));
        eprintln!("run {} done", round + 1);
    }
    let (p, r1, o, r2, h) = (
        median(prices),
        median(raw_1000),
        median(orders),
        median(raw_100),
        median(http),
    );
    println!(
        "median of {RUNS} runs ({:.0} s in all):",
        started.elapsed().as_secs_f64()
    );
    println!("  price changes, batches of 1,000, state machine : {p:>10.0} /s");
    println!(
        "  raw redb, the same rows per 1,000 (baseline)   : {r1:>10.0} /s   ratio {:.2}",
        p / r1
    );
    println!("  order commits, batches of 100, state machine   : {o:>10.0} /s");
    println!(
        "  raw redb, the same rows per 100 (baseline)     : {r2:>10.0} /s   ratio {:.2}",
        o / r2
    );
    println!("  price changes via admin API, 4 HTTP clients    : {h:>10.0} /s");
}
