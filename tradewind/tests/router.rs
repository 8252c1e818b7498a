//! The demo's geo-router, asked by real resolvers: hickory-resolver in every run, and `dig`
//! (bind9-dnsutils) in the test `.ci/run` runs after installing it. Each region's clients get
//! that region's edge; an edge killed with SIGKILL leaves the answers within 2 s.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::{eventually, free_base_port, get_value, start_small_demo};
use serde_json::Value;

const ZONE: &str = "shop.tradewind.test";

fn router_dns(mesh: &Value) -> SocketAddr {
    mesh["router"]["dns"].as_str().unwrap().parse().unwrap()
}

/// Until the router has every edge and every cache in its answers.
async fn all_edges_up(mesh: &Value) {
    let health = format!("{}/v1/health", mesh["router"]["http"].as_str().unwrap());
    eventually(
        "every edge and cache in the router's answers",
        Duration::from_secs(20),
        || {
            let health = health.clone();
            async move {
                let h = get_value(&health, None).await;
                h["edges"].as_array().is_some_and(|e| {
                    let of = |service: &str| e.iter().filter(|e| e["service"] == service).count();
                    of("storefront") == 3 && of("assets") == 3 && e.iter().all(|e| e["up"] == true)
                })
            }
        },
    )
    .await;
}

fn resolver(dns: SocketAddr) -> hickory_resolver::TokioResolver {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let mut ns = NameServerConfig::udp_and_tcp(dns.ip());
    for c in &mut ns.connections {
        c.port = dns.port();
    }
    let mut opts = ResolverOpts::default();
    // Every lookup asks the router: the test watches its answers change.
    opts.cache_size = 0;
    opts.timeout = Duration::from_millis(500);
    hickory_resolver::Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .unwrap()
}

async fn lookup(r: &hickory_resolver::TokioResolver) -> Vec<IpAddr> {
    lookup_name(r, "www").await
}

async fn lookup_name(r: &hickory_resolver::TokioResolver, name: &str) -> Vec<IpAddr> {
    match r.lookup_ip(format!("{name}.{ZONE}.")).await {
        Ok(found) => found.iter().collect(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test]
async fn a_killed_edge_leaves_the_answers_within_2_s() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let (_demo, mesh) = start_small_demo(dir.path(), base, "none");
    let dns = router_dns(&mesh);
    assert_eq!(dns, SocketAddr::from(([127, 0, 0, 1], base + 53)));
    assert_eq!(mesh["router"]["zone"], ZONE);
    all_edges_up(&mesh).await;
    // 127.0.0.1 is in no network of the demo's geo table: the regions in the order listed.
    let r = resolver(dns);
    let shanghai: IpAddr = "127.0.1.1".parse().unwrap();
    assert_eq!(lookup(&r).await, [shanghai]);
    let pid = mesh["regions"][0]["edges"][0]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    loop {
        let found = lookup(&r).await;
        if !found.is_empty() && found != [shanghai] {
            // 127.0.0.1 is in no network: the next region in the order listed.
            assert_eq!(found, ["127.0.2.1".parse::<IpAddr>().unwrap()]);
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(2),
            "still {found:?} 2 s after the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("the answer changed {:?} after SIGKILL", killed.elapsed());
    let route = get_value(
        &format!(
            "{}/v1/route?ip=192.0.2.1",
            mesh["router"]["http"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(route["region"], "ap-singapore");
    assert_eq!(route["skipped"], serde_json::json!(["cn-shanghai"]));
    // The asset name is the caches': Shanghai's cache still stands, on its region's address.
    assert_eq!(lookup_name(&r, "assets").await, [shanghai]);
    let route = get_value(
        &format!(
            "{}/v1/route?ip=192.0.2.1&service=assets",
            mesh["router"]["http"].as_str().unwrap()
        ),
        None,
    )
    .await;
    assert_eq!(route["region"], "cn-shanghai");
}

/// `dig` against the demo's router: each documentation prefix gets its own region's edge, over
/// UDP and TCP, with the ECS scope in the answer; names outside the zone are refused.
#[tokio::test]
#[ignore = "needs dig (bind9-dnsutils); .ci/run installs it and runs this test"]
async fn dig_gets_each_regions_edge_for_its_clients() {
    let dir = tempfile::tempdir().unwrap();
    let base = free_base_port();
    let (_demo, mesh) = start_small_demo(dir.path(), base, "none");
    let dns = router_dns(&mesh);
    all_edges_up(&mesh).await;
    let dig = |args: &[&str]| -> String {
        let out = std::process::Command::new("dig")
            .arg(format!("@{}", dns.ip()))
            .args(["-p", &dns.port().to_string(), "+time=2", "+tries=2"])
            .args(args)
            .output()
            .expect("dig (apt-get install bind9-dnsutils)");
        assert!(out.status.success(), "dig {args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let www = format!("www.{ZONE}");
    for (i, subnet) in ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"]
        .iter()
        .enumerate()
    {
        for transport in ["+notcp", "+tcp"] {
            let subnet_arg = format!("+subnet={subnet}");
            let short = dig(&[&www, "A", transport, &subnet_arg, "+short"]);
            assert_eq!(
                short.trim(),
                format!("127.0.{}.1", i + 1),
                "{subnet} {transport}"
            );
            let full = dig(&[&www, "A", transport, &subnet_arg]);
            assert!(
                full.contains(&format!("CLIENT-SUBNET: {subnet}/24")),
                "{full}"
            );
            assert!(full.contains("flags: qr aa"), "{full}");
        }
        // The asset name: the region's cache, which shares its edge's address.
        let subnet_arg = format!("+subnet={subnet}");
        let assets = dig(&[&format!("assets.{ZONE}"), "A", &subnet_arg, "+short"]);
        assert_eq!(assets.trim(), format!("127.0.{}.1", i + 1), "{subnet}");
    }
    let nx = dig(&[&format!("nope.{ZONE}"), "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let refused = dig(&["example.com", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    let soa = dig(&[ZONE, "SOA", "+short"]);
    assert!(
        soa.starts_with(&format!("ns1.{ZONE}. hostmaster.{ZONE}.")),
        "{soa}"
    );
}
