//! The router's DNS answers, asked over real UDP and TCP sockets, and by hickory-resolver.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use hickory_server::proto::op::{Edns, ResponseCode};
use hickory_server::proto::rr::{RData, RecordType};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn each_regions_clients_get_that_regions_edges_with_the_scope_of_their_network() {
    let r = Router::start("").await;
    let www = format!("www.{ZONE}.");
    for (i, subnet) in SUBNETS.iter().enumerate() {
        for tcp_too in [false, true] {
            let q = query(&www, RecordType::A, Some(subnet));
            let a = if tcp_too {
                tcp(r.dns, &q).await
            } else {
                udp(r.dns, &q).await
            };
            assert_eq!(a.metadata.response_code, ResponseCode::NoError);
            assert!(a.metadata.authoritative);
            assert_eq!(addresses(&a), [ip(EDGE_ADDRS[i])], "{subnet}");
            assert_eq!(a.answers[0].ttl, 10);
            assert_eq!(ecs_of(&a), Some((24, 24)), "{subnet}");
        }
    }
    // The apex is a storefront name too; a client address in the subnet (a /32) is placed the
    // same way, and the answer still holds for its /24.
    let a = udp(
        r.dns,
        &query(&format!("{ZONE}."), RecordType::A, Some("198.51.100.77/32")),
    )
    .await;
    assert_eq!(addresses(&a), [ip(EDGE_ADDRS[1])]);
    assert_eq!(ecs_of(&a), Some((32, 24)));
    // AAAA: Singapore's edge has an IPv6 address; Shanghai's has none (NODATA, with the SOA).
    let a = udp(r.dns, &query(&www, RecordType::AAAA, Some(SUBNETS[1]))).await;
    assert_eq!(addresses(&a), [ip("::1")]);
    let a = udp(r.dns, &query(&www, RecordType::AAAA, Some(SUBNETS[0]))).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    assert!(a.answers.is_empty());
    assert!(matches!(a.authorities[0].data, RData::SOA(_)));
    // Without ECS the source address places the client: 127.0.0.1 is in no network, so the
    // regions in the order listed, and an ECS of source prefix 0 means the same, scope 0.
    let a = udp(r.dns, &query(&www, RecordType::A, None)).await;
    assert_eq!(addresses(&a), [ip(EDGE_ADDRS[0])]);
    let a = udp(r.dns, &query(&www, RecordType::A, Some("0.0.0.0/0"))).await;
    assert_eq!(addresses(&a), [ip(EDGE_ADDRS[0])]);
    assert_eq!(ecs_of(&a), Some((0, 0)));
}

#[tokio::test]
async fn hickory_resolver_resolves_the_storefront() {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
    use hickory_resolver::net::runtime::TokioRuntimeProvider;
    let r = Router::start("").await;
    let mut ns = NameServerConfig::udp_and_tcp(r.dns.ip());
    for c in &mut ns.connections {
        c.port = r.dns.port();
    }
    let mut opts = ResolverOpts::default();
    opts.cache_size = 0;
    let resolver = hickory_resolver::Resolver::builder_with_config(
        ResolverConfig::from_name_servers(vec![ns]),
        TokioRuntimeProvider::default(),
    )
    .with_options(opts)
    .build()
    .unwrap();
    let found = resolver.lookup_ip(format!("www.{ZONE}.")).await.unwrap();
    let found: Vec<IpAddr> = found.iter().collect();
    assert_eq!(found, [ip(EDGE_ADDRS[0])]);
    let missing = resolver.lookup_ip(format!("nope.{ZONE}.")).await;
    assert!(missing.is_err(), "{missing:?}");
}

#[tokio::test]
async fn the_zone_has_its_soa_ns_and_negative_answers() {
    let r = Router::start("").await;
    let apex = format!("{ZONE}.");
    let a = udp(r.dns, &query(&apex, RecordType::SOA, None)).await;
    assert_eq!(a.metadata.response_code, ResponseCode::NoError);
    let RData::SOA(soa) = &a.answers[0].data else {
        panic!("{a:?}")
    };
    assert_eq!(soa.mname.to_ascii(), format!("ns1.{ZONE}."));
    assert_eq!(soa.minimum, 10);
    // NS, with the name server's addresses as glue.
    let a = udp(r.dns, &query(&apex, RecordType::NS, None)).await;
    assert!(matches!(&a.answers[0].data, RData::NS(n) if n.0.to_ascii() == format!("ns1.{ZONE}.")));
    assert_eq!(a.additionals.len(), 2);
    let a = udp(r.dns, &query(&format!("ns1.{ZONE}."), RecordType::A, None)).await;
    assert_eq!(addresses(&a), [ip("127.0.0.1")]);
    // A name the zone does not have: NXDOMAIN with the SOA; a type a name does not have: NODATA.
    for (name, qtype, code) in [
        (
            format!("nope.{ZONE}."),
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            format!("a.www.{ZONE}."),
            RecordType::A,
            ResponseCode::NXDomain,
        ),
        (
            format!("www.{ZONE}."),
            RecordType::TXT,
            ResponseCode::NoError,
        ),
        (
            format!("www.{ZONE}."),
            RecordType::MX,
            ResponseCode::NoError,
        ),
        (apex.clone(), RecordType::TXT, ResponseCode::NoError),
    ] {
        let a = tcp(r.dns, &query(&name, qtype, Some(SUBNETS[2]))).await;
        assert_eq!(a.metadata.response_code, code, "{name} {qtype}");
        assert!(a.metadata.authoritative, "{name} {qtype}");
        assert!(a.answers.is_empty(), "{name} {qtype}");
        assert!(
            matches!(a.authorities[0].data, RData::SOA(_)),
            "{name} {qtype}"
        );
        // Nothing in a negative answer depends on where the client is.
        assert_eq!(ecs_of(&a), Some((24, 0)), "{name} {qtype}");
    }
    // Names outside the zone, and the zone's parent: REFUSED, not authoritative.
    for name in ["example.com.", "tradewind.test.", "."] {
        let a = udp(r.dns, &query(name, RecordType::A, None)).await;
        assert_eq!(a.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(!a.metadata.authoritative);
        assert!(a.answers.is_empty());
    }
    // Names are matched without regard to case, and the question comes back as asked.
    let a = udp(
        r.dns,
        &query(
            &format!("WwW.{}.", ZONE.to_uppercase()),
            RecordType::A,
            None,
        ),
    )
    .await;
    assert_eq!(addresses(&a), [ip(EDGE_ADDRS[0])]);
    assert_eq!(
        a.queries[0].name().to_ascii(),
        format!("WwW.{}.", ZONE.to_uppercase())
    );
    let page = r.metrics().await;
    let rcode = |code: &str| {
        metric(
            &page,
            &format!("tradewind_router_dns_responses_total{{rcode=\"{code}\"}}"),
        )
    };
    assert_eq!(rcode("REFUSED"), Some(3), "{page}");
    assert_eq!(rcode("NXDOMAIN"), Some(2), "{page}");
}

#[tokio::test]
async fn a_query_asked_again_gets_the_same_answer_with_its_own_id_and_is_counted_again() {
    let r = Router::start("").await;
    let mut q = query(&format!("www.{ZONE}."), RecordType::A, Some(SUBNETS[1]));
    // One socket: every query reaches the same UDP thread, and so its cache.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let first = udp_on(&sock, r.dns, &q).await;
    assert_eq!(addresses(&first), [ip(EDGE_ADDRS[1])]);
    // (`udp_on` checks that each answer carries its query's ID.)
    for id in [1, 2, u16::MAX] {
        q.metadata.id = id;
        let again = udp_on(&sock, r.dns, &q).await;
        assert_eq!(again.answers, first.answers);
        assert_eq!(ecs_of(&again), Some((24, 24)));
    }
    let page = r.metrics().await;
    for (name, counted) in [
        ("tradewind_router_dns_cache_hits_total", 3),
        ("tradewind_router_answers_total{region=\"ap-singapore\"}", 4),
        ("tradewind_router_ecs_queries_total", 4),
        ("tradewind_router_dns_queries_total{transport=\"udp\"}", 4),
        ("tradewind_router_dns_responses_total{rcode=\"NOERROR\"}", 4),
    ] {
        assert_eq!(metric(&page, name), Some(counted), "{name} in {page}");
    }
}

#[tokio::test]
async fn a_dead_edge_leaves_the_answers_within_2_s_and_all_dead_fails_open() {
    let r = Router::start("").await;
    let www = format!("www.{ZONE}.");
    let shanghai = query(&www, RecordType::A, Some(SUBNETS[0]));
    assert_eq!(addresses(&udp(r.dns, &shanghai).await), [ip(EDGE_ADDRS[0])]);
    // Shanghai's edge dies: its clients go to the nearest other region, Singapore.
    r.edges[0].kill();
    let start = std::time::Instant::now();
    loop {
        let a = udp(r.dns, &shanghai).await;
        if addresses(&a) == [ip(EDGE_ADDRS[1])] {
            break;
        }
        assert_eq!(addresses(&a), [ip(EDGE_ADDRS[0])]);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "still answered with the dead edge"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "the answer changed {:?} after the edge died",
        start.elapsed()
    );
    // Singapore's edge loses its cores, then us-east's falls behind: each leaves the answers.
    r.edges[1].says.lock().unwrap().core_connected = false;
    r.wait_for(Duration::from_secs(2), |h| h["edges"][1]["up"] == false)
        .await;
    assert_eq!(addresses(&udp(r.dns, &shanghai).await), [ip(EDGE_ADDRS[2])]);
    r.edges[2].says.lock().unwrap().staleness_ms = 60_000;
    r.wait_for(Duration::from_secs(2), |h| h["edges"][2]["up"] == false)
        .await;
    let health = r.health().await;
    assert!(
        health["edges"][2]["last"]["reason"]
            .as_str()
            .unwrap()
            .contains("stale"),
        "{health}"
    );
    // Nothing is healthy: the nearest region anyway, counted.
    assert_eq!(addresses(&udp(r.dns, &shanghai).await), [ip(EDGE_ADDRS[0])]);
    assert!(r.health().await["fail_open_total"].as_u64().unwrap() >= 1);
    // Singapore's edge reaches its cores again: it comes back after two passes.
    r.edges[1].says.lock().unwrap().core_connected = true;
    r.wait_for(Duration::from_secs(2), |h| h["edges"][1]["up"] == true)
        .await;
    assert_eq!(addresses(&udp(r.dns, &shanghai).await), [ip(EDGE_ADDRS[1])]);
}

#[tokio::test]
async fn v1_route_says_what_dns_answers_and_why() {
    let r = Router::start("").await;
    let get = |q: &str| reqwest::get(format!("{}/v1/route?{q}", r.http));
    let ans: serde_json::Value = get("ip=203.0.113.9").await.unwrap().json().await.unwrap();
    assert_eq!(ans["region"], "us-east");
    assert_eq!(ans["client_region"], "us-east");
    assert_eq!(ans["placed_by"], "table");
    assert_eq!(ans["network"], "203.0.113.0/24");
    assert_eq!(ans["scope_prefix"], 24);
    assert_eq!(ans["a"], serde_json::json!(["127.0.3.1"]));
    assert_eq!(ans["fail_open"], false);
    let order: Vec<&str> = ans["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["region"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["us-east", "cn-shanghai", "ap-singapore"]);
    let ans: serde_json::Value = get("ip=8.8.8.8").await.unwrap().json().await.unwrap();
    assert_eq!(ans["placed_by"], "default");
    for bad in ["ip=banana", "ip=", "", "ip=1.2.3.4.5"] {
        let res = get(bad).await.unwrap();
        assert_eq!(res.status(), 400, "{bad}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{bad}"
        );
        let doc: serde_json::Value = res.json().await.unwrap();
        assert!(
            doc["type"]
                .as_str()
                .unwrap()
                .starts_with("https://tradewind.dev/problems/"),
            "{doc}"
        );
    }
    assert_eq!(
        reqwest::get(format!("{}/nope", r.http))
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn malformed_oversized_and_foreign_queries_never_stop_it() {
    let r = Router::start("").await;
    let www = format!("www.{ZONE}.");
    let good = query(&www, RecordType::A, Some(SUBNETS[1]));
    // Random datagrams, from a seed printed so that a failure can be replayed.
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("FUZZ_SEED={seed}");
    let mut x = seed;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let valid = good.to_vec().unwrap();
    for i in 0..2_000 {
        let packet: Vec<u8> = if i % 2 == 0 {
            // Noise of any length up to 600 bytes.
            (0..next() % 600).map(|_| next() as u8).collect()
        } else {
            // A valid query with a few bytes flipped or cut short.
            let mut p = valid.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % p.len();
                p[at] = next() as u8;
            }
            p.truncate(1 + (next() as usize) % p.len());
            p
        };
        sock.send_to(&packet, r.dns).await.unwrap();
    }
    // A header whose question is cut off: FORMERR, to the same id.
    let a = udp_raw(r.dns, &valid[..14])
        .await
        .expect("an answer to a cut query");
    let a = hickory_server::proto::op::Message::from_vec(&a).unwrap();
    assert_eq!(
        (a.metadata.id, a.metadata.response_code),
        (good.metadata.id, ResponseCode::FormErr)
    );
    // An answer sent to it is not answered (two servers must not bounce errors forever).
    let mut answer = good.clone();
    answer.metadata.message_type = hickory_server::proto::op::MessageType::Response;
    let quiet = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    quiet
        .send_to(&answer.to_vec().unwrap(), r.dns)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let heard = tokio::time::timeout(Duration::from_millis(300), quiet.recv(&mut buf)).await;
    assert!(heard.is_err(), "answered an answer: {heard:?}");
    // An oversized datagram, and a query with two questions (FORMERR).
    sock.send_to(&vec![0xAB; 65_000], r.dns).await.unwrap();
    let mut two = good.clone();
    two.add_query(two.queries[0].clone());
    let a = hickory_server::proto::op::Message::from_vec(
        &udp_raw(r.dns, &two.to_vec().unwrap()).await.unwrap(),
    )
    .unwrap();
    assert_eq!(a.metadata.response_code, ResponseCode::FormErr);
    // ECS with address bits past its source prefix: FORMERR (RFC 7871 §6).
    let mut bad_ecs = query(&www, RecordType::A, Some("192.0.2.0/24"));
    let mut e = Edns::new();
    e.options_mut()
        .insert(hickory_server::proto::rr::rdata::opt::EdnsOption::Subnet(
            hickory_server::proto::rr::rdata::opt::ClientSubnet::new(ip("192.0.255.0"), 20, 0),
        ));
    bad_ecs.set_edns(e);
    assert_eq!(
        udp(r.dns, &bad_ecs).await.metadata.response_code,
        ResponseCode::FormErr
    );
    // An EDNS version the router does not speak: BADVERS.
    let mut v1 = good.clone();
    let mut e = Edns::new();
    e.set_version(1);
    v1.set_edns(e);
    // (BADVERS shares its code, 16, with BADSIG, which the decoder names it.)
    assert_eq!(u16::from(udp(r.dns, &v1).await.metadata.response_code), 16);
    // TCP: a length that promises more than comes, garbage, and a connection that says nothing.
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(r.dns).await.unwrap();
    s.write_all(&[0xFF, 0xFF]).await.unwrap();
    s.write_all(&[0u8; 1000]).await.unwrap();
    drop(s);
    let mut s = tokio::net::TcpStream::connect(r.dns).await.unwrap();
    s.write_all(&[
        0x00, 0x20, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
        23, 24, 25, 26, 27, 28, 29, 30, 31, 32,
    ])
    .await
    .unwrap();
    let _idle = tokio::net::TcpStream::connect(r.dns).await.unwrap();
    // Zone transfers are refused.
    let axfr = tcp(r.dns, &query(&format!("{ZONE}."), RecordType::AXFR, None)).await;
    assert_eq!(axfr.metadata.response_code, ResponseCode::Refused);
    // Still answering, over both transports, and nothing panicked.
    assert_eq!(addresses(&udp(r.dns, &good).await), [ip(EDGE_ADDRS[1])]);
    assert_eq!(addresses(&tcp(r.dns, &good).await), [ip(EDGE_ADDRS[1])]);
    let page = r.metrics().await;
    assert_eq!(
        metric(&page, "tradewind_router_dns_panics_total"),
        Some(0),
        "{page}"
    );
}

#[tokio::test]
async fn tcp_connections_are_bounded_and_idle_ones_closed() {
    use tokio::io::AsyncReadExt;
    let r = Router::start("tcp_connections_max = 2\ntcp_idle_ms = 1500").await;
    let q = query(&format!("www.{ZONE}."), RecordType::A, Some(SUBNETS[2]));
    // Several queries on one connection are answered in turn.
    let mut s = tokio::net::TcpStream::connect(r.dns).await.unwrap();
    for _ in 0..3 {
        let a = ask_on(&mut s, &q).await;
        assert_eq!(addresses(&a), [ip(EDGE_ADDRS[2])]);
    }
    let _second = tokio::net::TcpStream::connect(r.dns).await.unwrap();
    // A third connection, over the bound, is closed at once (well before the idle time).
    let mut third = tokio::net::TcpStream::connect(r.dns).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    // Idle connections are closed after 1.5 s, and their places taken again.
    let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(addresses(&tcp(r.dns, &q).await), [ip(EDGE_ADDRS[2])]);
}

#[tokio::test]
async fn a_second_router_on_the_same_port_fails_to_start_and_the_first_answers_on() {
    let r = Router::start("").await;
    let mut cfg = config(&r.edges, "");
    cfg.dns.listen = r.dns;
    let second = geo_router::serve(cfg, std::future::pending(), |_| {
        panic!("a second router started on the first one's port")
    })
    .await;
    let e = format!("{:#}", second.expect_err("the port is taken"));
    assert!(e.contains("in use"), "{e}");
    // Every client, whichever of the first router's UDP sockets the kernel gives it to, is
    // still answered.
    let q = query(&format!("www.{ZONE}."), RecordType::A, Some(SUBNETS[2]));
    for _ in 0..16 {
        assert_eq!(addresses(&udp(r.dns, &q).await), [ip(EDGE_ADDRS[2])]);
    }
}

/// A flood of UDP queries from one address (as a forged flood aimed at a victim looks): past
/// the network's rate, answers are dropped or sent truncated (never larger than the query),
/// while another network is answered in full and the same client is answered over TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_answers_past_a_networks_rate_are_dropped_or_truncated_and_others_are_served() {
    let r =
        Router::start("rrl = { responses_per_s = 5, burst = 5, slip = 2, ipv4_prefix = 32 }").await;
    let www = format!("www.{ZONE}.");
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut q = query(&www, RecordType::A, None);
    let sent = 20u16;
    let mut query_len = 0;
    for id in 0..sent {
        q.metadata.id = id;
        let bytes = q.to_vec().unwrap();
        query_len = bytes.len();
        sock.send_to(&bytes, r.dns).await.unwrap();
    }
    let (mut whole, mut truncated) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let a = hickory_server::proto::op::Message::from_vec(&buf[..n]).unwrap();
        if a.metadata.truncation {
            assert!(a.answers.is_empty() && n <= query_len, "{n} bytes: {a:?}");
            truncated += 1;
        } else {
            assert!(!a.answers.is_empty());
            whole += 1;
        }
    }
    // The burst, and perhaps a token earned while the queries went out.
    assert!((5..=6).contains(&whole), "{whole} whole answers");
    // Of the rest, every second is sent truncated, the others dropped.
    assert!(truncated >= 6, "{truncated} truncated answers");
    assert!(whole + truncated < sent as usize);

    // Another network is answered in full meanwhile; this one, over TCP.
    let other = tokio::net::UdpSocket::bind("127.0.0.2:0").await.unwrap();
    let a = udp_on(&other, r.dns, &query(&www, RecordType::A, None)).await;
    assert!(!a.metadata.truncation && !a.answers.is_empty());
    let a = tcp(r.dns, &query(&www, RecordType::A, None)).await;
    assert!(!a.metadata.truncation && !a.answers.is_empty());

    let m = r.metrics().await;
    let dropped = metric(
        &m,
        "tradewind_router_dns_rate_limited_total{action=\"dropped\"}",
    );
    let cut = metric(
        &m,
        "tradewind_router_dns_rate_limited_total{action=\"truncated\"}",
    );
    assert_eq!(cut, Some(truncated as u64));
    assert!(dropped.unwrap_or(0) >= 6, "{m}");
}

/// Hostile datagrams: real queries with random bytes changed, cut short or grown, and noise,
/// from a seed printed (TRADEWIND_SEED replays it). None panics an answer, and a good query is
/// answered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_datagrams_are_answered_or_dropped_and_the_router_goes_on() {
    use rand::{RngExt, SeedableRng};
    let seed = std::env::var("TRADEWIND_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| util::clock::now_ms().unsigned_abs());
    println!("seed {seed} (TRADEWIND_SEED={seed} sends the same datagrams again)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let r = Router::start("rrl = { responses_per_s = 0 }").await;
    let www = format!("www.{ZONE}.");
    let real = [
        query(&www, RecordType::A, None).to_vec().unwrap(),
        query(&www, RecordType::AAAA, Some("198.51.100.0/24"))
            .to_vec()
            .unwrap(),
        query(ZONE, RecordType::SOA, None).to_vec().unwrap(),
    ];
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for i in 0..2_000 {
        let mut bytes = if i % 4 == 0 {
            (0..rng.random_range(0..600))
                .map(|_| rng.random())
                .collect()
        } else {
            real[rng.random_range(0..real.len())].clone()
        };
        for _ in 0..rng.random_range(0..6) {
            if !bytes.is_empty() {
                let at = rng.random_range(0..bytes.len());
                bytes[at] = rng.random();
            }
        }
        bytes.truncate(rng.random_range(0..=bytes.len()));
        for _ in 0..rng.random_range(0..8) {
            bytes.push(rng.random());
        }
        sock.send_to(&bytes, r.dns).await.unwrap();
        if i % 64 == 0 {
            // Let the router keep up: a full socket buffer drops datagrams, not answers them.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let fresh = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let a = udp_on(&fresh, r.dns, &query(&www, RecordType::A, None)).await;
    assert!(!a.answers.is_empty());
    let page = r.metrics().await;
    assert_eq!(
        metric(&page, "tradewind_router_dns_panics_total"),
        Some(0),
        "seed {seed}"
    );
}

/// A real cache (`cdn-cache`), for the router to check; stopped when dropped.
struct Cache {
    health_url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn cache(name: &str) -> Cache {
    let text = format!(
        "name = \"{name}\"\n[http]\nlisten = \"127.0.0.1:0\"\nlistener = {{ plain_http = true }}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\nlistener = {{ plain_http = true }}\n\
         token_sha256 = [\"{}\"]\n[[origins]]\nname = \"assets\"\nurl = \"http://127.0.0.1:9\"\n",
        http_api::bearer::EXAMPLE_TOKEN_SHA256
    );
    let config: cdn_cache::CdnConfig =
        util::config::parse(&text, std::path::Path::new("."), "cdn.toml").unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (ready, started) = tokio::sync::oneshot::channel();
    tokio::spawn(cdn_cache::serve(
        config,
        async {
            let _ = stopped.await;
        },
        move |s| {
            let _ = ready.send(s);
        },
    ));
    let s = started.await.unwrap();
    Cache {
        health_url: format!("http://{}/healthz", s.admin),
        _stop: stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asset_names_are_answered_with_the_nearest_healthy_cache() {
    // Caches in Shanghai and Singapore; us-east has none.
    const CACHE_ADDRS: [&str; 2] = ["127.0.1.2", "127.0.2.2"];
    let caches = [
        cache("cn-shanghai-cdn").await,
        cache("ap-singapore-cdn").await,
    ];
    let r = Router::start_with("", |c| {
        c.asset_names = vec!["assets".into()];
        for (i, cache) in caches.iter().enumerate() {
            c.regions[i].caches = vec![geo_router::config::EdgeConfig {
                name: format!("{}-cdn", c.regions[i].name),
                health_url: cache.health_url.clone(),
                addresses: vec![ip(CACHE_ADDRS[i])],
            }];
        }
    })
    .await;
    r.wait_for(Duration::from_secs(10), |h| {
        h["edges"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["service"] == "assets" && e["up"] == true)
            .count()
            == 2
    })
    .await;
    let assets = format!("assets.{ZONE}.");
    let ask = |subnet: &'static str| {
        let q = query(&assets, RecordType::A, Some(subnet));
        async move { addresses(&udp(r.dns, &q).await) }
    };
    assert_eq!(ask(SUBNETS[0]).await, [ip(CACHE_ADDRS[0])]);
    assert_eq!(ask(SUBNETS[1]).await, [ip(CACHE_ADDRS[1])]);
    // us-east's clients go to the nearest region with a cache, as /v1/route says.
    let route: serde_json::Value =
        reqwest::get(format!("{}/v1/route?ip=203.0.113.9&service=assets", r.http))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(route["skipped"], serde_json::json!(["us-east"]));
    let expected = route["a"][0].as_str().unwrap().parse::<IpAddr>().unwrap();
    assert_eq!(ask(SUBNETS[2]).await, [expected]);
    assert!(CACHE_ADDRS.contains(&expected.to_string().as_str()));
    // The storefront names still answer with the edges.
    let www = query(&format!("www.{ZONE}."), RecordType::A, Some(SUBNETS[2]));
    assert_eq!(addresses(&udp(r.dns, &www).await), [ip(EDGE_ADDRS[2])]);
    let bad = reqwest::get(format!("{}/v1/route?ip=1.2.3.4&service=video", r.http))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Shanghai's cache stops: its clients get Singapore's.
    let [shanghai, _singapore] = caches;
    drop(shanghai);
    r.wait_for(Duration::from_secs(5), |h| {
        h["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "cn-shanghai-cdn" && e["up"] == false)
    })
    .await;
    assert_eq!(ask(SUBNETS[0]).await, [ip(CACHE_ADDRS[1])]);
}
