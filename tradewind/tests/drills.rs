//! `tradewind chaos` as an operator runs it, on a demo of three regions: the workload passes
//! the checker on a healthy mesh; every drill (region-outage, partition, leader-kill,
//! edge-crash, slow-link, flash-sale) reports ok with zero violations and leaves the mesh
//! whole; a drill that spends its error budget aborts and heals; Ctrl-C during a fault heals
//! before the drill exits.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{edge_urls, eventually, free_base_port, get_value, start_small_demo as start};
use serde_json::{Value, json};

/// One demo at a time: each is eight processes on a machine of two cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `tradewind chaos <args> --mesh <mesh> --report <file>`: whether it succeeded, its
/// output, and its report when it wrote one.
async fn drill(mesh: &Path, args: &[&str]) -> (bool, String, Option<Value>) {
    let report = mesh.with_file_name(format!("report-{}.json", args[0]));
    let _ = std::fs::remove_file(&report);
    let mut cmd = std::process::Command::new(common::bin());
    cmd.arg("chaos")
        .args(args)
        .arg("--mesh")
        .arg(mesh)
        .arg("--report")
        .arg(&report);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = std::fs::read_to_string(&report)
        .ok()
        .map(|t| serde_json::from_str(&t).unwrap());
    (out.status.success(), text, r)
}

/// A drill that must pass: ok, and none of I1–I4 broken.
async fn passes(mesh: &Path, args: &[&str]) -> Value {
    let (ok, out, r) = drill(mesh, args).await;
    assert!(ok, "{args:?}: {out}");
    let r = r.unwrap_or_else(|| panic!("{args:?} wrote no report: {out}"));
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(
        (
            &r["lost_acked_orders"],
            &r["duplicate_orders"],
            &r["oversold_units"],
            &r["orders_without_price_version"]
        ),
        (&json!(0), &json!(0), &json!(0), &json!(0)),
        "{r}"
    );
    assert!(r["orders_acked"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["keys_with_two_orders"], 0, "{r}");
    assert_eq!(r["orders_priced_off_their_version"], 0, "{r}");
    println!(
        "{}: rto {} ms, orders {} retried {} ({} elsewhere), {} checked against a price change",
        args[0],
        r["rto_ms"],
        r["orders_attempted"],
        r["orders_retried"],
        r["orders_retried_elsewhere"],
        r["orders_checked_against_a_price_change"]
    );
    assert!(
        Path::new(r["timeline_svg"].as_str().unwrap()).exists(),
        "{r}"
    );
    r
}

/// No link of the fault proxy is cut or slowed past its configured shape, and every part of
/// the mesh answers.
async fn whole(mesh_path: &Path, shapes: &Value) {
    let mesh: Value = serde_json::from_str(&std::fs::read_to_string(mesh_path).unwrap()).unwrap();
    let api = mesh["proxy"]["api"].as_str().unwrap();
    let links = get_value(&format!("{api}/v1/links"), mesh["admin_token"].as_str()).await;
    let now: Vec<&Value> = links["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["shape"])
        .collect();
    let before: Vec<&Value> = shapes["links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["shape"])
        .collect();
    assert_eq!(now, before);
    for r in mesh["regions"].as_array().unwrap() {
        let urls = std::iter::once(r["core"]["admin_url"].as_str().unwrap()).chain(
            r["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["url"].as_str().unwrap()),
        );
        for u in urls {
            eventually(
                &format!("{u} answering"),
                Duration::from_secs(30),
                || async {
                    common::client()
                        .get(format!("{u}/healthz"))
                        .send()
                        .await
                        .is_ok()
                },
            )
            .await;
        }
    }
}

/// The rto target the drills are held to here (see `region_outage_and_partition_break_no_invariant`).
const RTO_TARGET_MS: &str = "4000";

/// A demo to drill on: its directory, its process, its mesh.json and that file's path, and the
/// fault proxy's links as they were at the start.
async fn drill_demo() -> (tempfile::TempDir, common::Proc, Value, PathBuf, Value) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("demo");
    let (demo, mesh) = start(&state, free_base_port(), "none");
    let shapes = links(&mesh).await;
    (dir, demo, mesh, state.join("mesh.json"), shapes)
}

async fn links(mesh: &Value) -> Value {
    get_value(
        &format!("{}/v1/links", mesh["proxy"]["api"].as_str().unwrap()),
        mesh["admin_token"].as_str(),
    )
    .await
}

/// What CI runs on every change: a region outage of the leader's region and a partition of
/// it, each a few seconds, each with zero violations; the partitioned region's edges go on
/// taking orders from their grants while cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_outage_and_partition_break_no_invariant() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, mut demo, _, mesh_path, shapes) = drill_demo().await;

    // The drills fail past their rto target: DESIGN's 2 s is for release builds with realistic
    // links (scripts/drills.sh, DRILLS.md); this debug build shares two cores with the whole
    // mesh, so it is held to twice that.
    let r = passes(
        &mesh_path,
        &[
            "region-outage",
            "--phase-s",
            "2",
            "--rto-target-ms",
            RTO_TARGET_MS,
        ],
    )
    .await;
    assert!(r["rto_ms"].as_u64().is_some(), "{r}");
    assert_eq!(r["rto_target_ms"], 4_000, "{r}");
    // I4 was checked against the admins' price changes, not only as "has a version".
    assert!(
        r["orders_checked_against_a_price_change"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert_eq!(r["region"], r["leader_before"], "{r}");
    assert!(r["detect_ms"].as_u64().is_some(), "{r}");
    whole(&mesh_path, &shapes).await;

    let r = passes(
        &mesh_path,
        &[
            "partition",
            "--phase-s",
            "2",
            "--rto-target-ms",
            RTO_TARGET_MS,
        ],
    )
    .await;
    assert!(
        r["acked_by_cut_edges_during_cut"].as_u64().unwrap() > 0,
        "{r}"
    );
    assert!(r["rto_ms"].as_u64().is_some(), "{r}");
    whole(&mesh_path, &shapes).await;
    assert!(demo.terminate().success());
}

/// The other drills pass and leave the mesh whole: the leader killed, an edge killed under
/// load, a slow link, every region restarted in turn, a flash sale that sells every unit and
/// not one more. A drill whose error
/// budget is spent aborts, says why, and heals; so does one interrupted by Ctrl-C mid-fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_drill_heals_the_mesh_on_every_way_out() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (_dir, mut demo, mesh, mesh_path, shapes) = drill_demo().await;

    // A region or edge the mesh does not have is refused before anything starts.
    for args in [
        &["partition", "--region", "nowhere"][..],
        &["edge-crash", "--edge", "nowhere-1"],
        &["slow-link", "--between", "cn-shanghai,cn-shanghai"],
    ] {
        let (ok, out, r) = drill(&mesh_path, args).await;
        assert!(!ok && r.is_none(), "{args:?}: {out}");
        assert!(
            out.contains("nowhere") || out.contains("two different"),
            "{out}"
        );
    }

    let r = passes(
        &mesh_path,
        &[
            "leader-kill",
            "--times",
            "1",
            "--phase-s",
            "1",
            "--rto-target-ms",
            RTO_TARGET_MS,
        ],
    )
    .await;
    assert_eq!(r["killed"][0], r["leader_before"], "{r}");
    whole(&mesh_path, &shapes).await;

    let r = passes(&mesh_path, &["edge-crash", "--phase-s", "1"]).await;
    assert!(r["edge"].is_string(), "{r}");
    // Shoppers of the killed edge sent their orders again under the same keys, some at other
    // edges, and no key was told two orders (the checker's count, in `passes`).
    assert!(r["orders_retried"].as_u64().unwrap() > 0, "{r}");
    whole(&mesh_path, &shapes).await;

    let r = passes(
        &mesh_path,
        &["slow-link", "--add-ms", "300", "--phase-s", "1"],
    )
    .await;
    // Writes went on while the link was slow (rto is the first write after the fault).
    assert!(r["rto_ms"].as_u64().unwrap() < 5_000, "{r}");
    whole(&mesh_path, &shapes).await;

    // A rolling upgrade's restarts: each region stopped with SIGTERM and started again by the
    // demo, in turn, the leader's last.
    let r = passes(&mesh_path, &["rolling-restart", "--phase-s", "1"]).await;
    assert_eq!(r["restarted"].as_array().unwrap().len(), 3, "{r}");
    assert_eq!(r["restarted"][2], r["leader_before"], "{r}");
    whole(&mesh_path, &shapes).await;

    let r = passes(
        &mesh_path,
        &["flash-sale", "--units", "30", "--oversubscribe", "5"],
    )
    .await;
    assert_eq!((&r["sold"], &r["units"]), (&json!(30), &json!(30)), "{r}");
    assert_eq!(r["orders_acked"], 30, "{r}");
    assert_eq!(r["orders_attempted"], 150, "{r}");

    // No failure allowed: the killed region's shoppers spend the budget at once.
    let (ok, out, r) = drill(
        &mesh_path,
        &["region-outage", "--phase-s", "2", "--error-budget", "0"],
    )
    .await;
    assert!(!ok, "{out}");
    let r = r.unwrap_or_else(|| panic!("no report: {out}"));
    assert!(
        r["aborted"].as_str().unwrap().contains("orders failed"),
        "{r}"
    );
    assert_eq!(r["ok"], false, "{r}");
    whole(&mesh_path, &shapes).await;

    // Ctrl-C in the middle of a partition: the links are whole again when the drill exits.
    let mut chaos = std::process::Command::new(common::bin())
        .args(["chaos", "partition", "--phase-s", "5", "--mesh"])
        .arg(&mesh_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = chaos.stdout.take().unwrap();
    let pid = chaos.id();
    let (fault_tx, fault_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut fault_tx = Some(fault_tx);
        // Read to the end: the drill goes on writing while it heals.
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("fault:")
                && let Some(tx) = fault_tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(60), fault_rx)
        .await
        .expect("the drill injected its fault")
        .unwrap();
    // The fault is announced just before it is made.
    eventually("a link cut", Duration::from_secs(5), || async {
        links(&mesh).await["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["shape"]["cut"] == true)
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || chaos.wait_with_output().unwrap())
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("interrupted") && err.contains("healed"),
        "{err}"
    );
    whole(&mesh_path, &shapes).await;
    assert!(demo.terminate().success());
}

/// The drills' machinery on a quiet demo: shoppers browsing and ordering at every edge for a
/// few seconds while admins change prices and stock, their history, the core's final state
/// once the outboxes are empty, and a clean bill from the checker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_on_a_healthy_mesh_passes_the_checker() {
    use chaos_tests::{checker, workload};
    let _one = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let (mut demo, mesh) = start(&dir.path().join("demo"), base, "none");
    let token = mesh["admin_token"].as_str().unwrap().to_owned();
    let edges = edge_urls(&mesh);
    let page = get_value(
        &format!("{}/v1/products?limit=5&currency=USD", edges[0]),
        None,
    )
    .await;
    let skus: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["skus"][0]["sku"].as_str().unwrap().to_owned())
        .collect();
    // A new seed every run, printed; TRADEWIND_SEED makes a run's choices again.
    let seed = std::env::var("TRADEWIND_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| util::clock::now_ms().unsigned_abs());
    println!("workload seed {seed} (TRADEWIND_SEED={seed} makes the same choices again)");
    let w = workload::Workload {
        edges: edges.clone(),
        shoppers_per_edge: 2,
        hot: skus[0].clone(),
        skus: skus.clone(),
        hot_percent: 50,
        browse_percent: 30,
        max_orders: None,
        admin: Some(workload::AdminLoad {
            cores: vec![
                mesh["regions"][1]["core"]["admin_url"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            ],
            token: token.clone(),
            every: Duration::from_millis(200),
        }),
        http: common::client(),
        shoppers: std::sync::Arc::new(
            http_api::identity::issuer::Issuer::demo(std::path::Path::new(
                mesh["identity"].as_str().unwrap(),
            ))
            .unwrap(),
        ),
        seed,
    };
    let path = dir.path().join("history.jsonl");
    let (history, writer) = workload::history_writer(&path).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let live = std::sync::Arc::new(workload::Live::default());
    let shoppers = tokio::spawn(workload::run(w, history, stopped, live));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(true).unwrap();
    let counts = shoppers.await.unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        counts.acked > 0 && counts.failed == 0 && counts.browsed > 0,
        "{counts:?}"
    );
    for e in &edges {
        eventually("the outbox sent", Duration::from_secs(20), || async {
            get_value(&format!("{e}/v1/status"), None).await["outbox_pending"] == 0
        })
        .await;
    }
    // Read at the leader: an edge hears of a commit once the leader applied it, and another
    // region may apply it a moment later.
    let cluster = get_value(
        &format!(
            "{}/admin/v1/cluster",
            mesh["regions"][0]["core"]["admin_url"].as_str().unwrap()
        ),
        Some(&token),
    )
    .await;
    let leader = cluster["leader"].as_str().unwrap();
    let admin = mesh["regions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == leader)
        .and_then(|r| r["core"]["admin_url"].as_str())
        .unwrap();
    let parsed: chaos_tests::mesh::Mesh = serde_json::from_value(mesh.clone()).unwrap();
    let state = workload::final_state(&parsed, admin, &skus).await.unwrap();
    let history = workload::read_history(&path).unwrap();
    let count = |f: fn(&checker::Event) -> bool| history.iter().filter(|e| f(e)).count() as u64;
    assert_eq!(
        count(|e| matches!(e, checker::Event::Order { .. })),
        counts.attempted
    );
    assert_eq!(
        count(|e| matches!(e, checker::Event::OrderAnswer { .. })),
        counts.attempted
    );
    assert_eq!(
        count(|e| matches!(e, checker::Event::Browse { status: 200, .. })),
        counts.browsed
    );
    let admins = count(|e| matches!(e, checker::Event::Admin { .. }));
    let admins_ok = count(|e| matches!(e, checker::Event::Admin { status: 200, .. }));
    assert!(
        admins >= 5 && admins_ok == admins,
        "{admins_ok} of {admins}"
    );
    let v = checker::check(&history, &state);
    assert!(v.ok(), "{v:?}");
    assert!(state.orders.len() as u64 >= counts.acked);
    assert!(demo.terminate().success());
}
