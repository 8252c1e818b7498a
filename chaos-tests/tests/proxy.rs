//! The fault proxy over real sockets on loopback: a UDP and a TCP echo server behind links,
//! with latency, a cut, loss and a bandwidth limit set through the control API while they run.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chaos_tests::proxy::{LinkSpec, Protocol, ProxyConfig, Shape, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "tw_proxy_test_token";

fn free_udp() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn free_tcp() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn udp_echo() -> SocketAddr {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_535];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&buf[..n], from).await;
        }
    });
    addr
}

async fn tcp_echo() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A datagram's round trip through `link`, or `None` when nothing comes back in `wait`.
async fn udp_round_trip(link: SocketAddr, wait: Duration) -> Option<Duration> {
    let c = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    c.connect(link).await.unwrap();
    let t = Instant::now();
    c.send(b"ping").await.unwrap();
    let mut buf = [0u8; 16];
    match tokio::time::timeout(wait, c.recv(&mut buf)).await {
        Ok(Ok(4)) => Some(t.elapsed()),
        _ => None,
    }
}

async fn shape(api: &str, link: &str, s: serde_json::Value) -> reqwest::StatusCode {
    reqwest::Client::new()
        .put(format!("{api}/v1/links/{link}"))
        .bearer_auth(TOKEN)
        .json(&s)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_delay_cut_drop_and_throttle_as_told_while_they_run() {
    let (udp_target, tcp_target) = (udp_echo().await, tcp_echo().await);
    let (udp_link, tcp_link) = (free_udp(), free_tcp());
    let config = ProxyConfig {
        token_sha256: vec![http_api::bearer::sha256_hex(TOKEN)],
        api: "127.0.0.1:0".parse().unwrap(),
        links: vec![
            LinkSpec {
                name: "u".into(),
                protocol: Protocol::Udp,
                listen: udp_link,
                target: udp_target,
                shape: Shape {
                    latency_ms: 40,
                    ..Shape::default()
                },
            },
            LinkSpec {
                name: "t".into(),
                protocol: Protocol::Tcp,
                listen: tcp_link,
                target: tcp_target,
                shape: Shape {
                    latency_ms: 30,
                    ..Shape::default()
                },
            },
        ],
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(config, std::future::pending(), move |s| {
        let _ = tx.send(s.api);
    }));
    let api = format!("http://{}", rx.await.unwrap());
    // The API takes only its token, and only requests that name its own address.
    let http = reqwest::Client::new();
    let anonymous = http.get(format!("{api}/v1/links")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let wrong = http
        .get(format!("{api}/v1/links"))
        .bearer_auth("tw_not_it")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let rebound = http
        .get(format!("{api}/v1/links"))
        .bearer_auth(TOKEN)
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 400);

    // Latency each way: a round trip costs twice the link's latency.
    let rtt = udp_round_trip(udp_link, Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        rtt >= Duration::from_millis(80) && rtt < Duration::from_millis(600),
        "{rtt:?}"
    );

    // Cut, then healed; then all lost, then none.
    assert_eq!(
        shape(&api, "u", serde_json::json!({"cut": true})).await,
        200
    );
    assert_eq!(
        udp_round_trip(udp_link, Duration::from_millis(300)).await,
        None
    );
    assert_eq!(shape(&api, "u", serde_json::json!({})).await, 200);
    assert!(
        udp_round_trip(udp_link, Duration::from_secs(2))
            .await
            .unwrap()
            < Duration::from_millis(80)
    );
    assert_eq!(
        shape(&api, "u", serde_json::json!({"loss": 1.0})).await,
        200
    );
    assert_eq!(
        udp_round_trip(udp_link, Duration::from_millis(300)).await,
        None
    );
    assert_eq!(
        shape(&api, "u", serde_json::json!({"loss": 0.0})).await,
        200
    );
    assert!(
        udp_round_trip(udp_link, Duration::from_secs(2))
            .await
            .is_some()
    );

    // TCP: delayed both ways, and in order.
    let mut s = tokio::net::TcpStream::connect(tcp_link).await.unwrap();
    let t = Instant::now();
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    assert!(
        t.elapsed() >= Duration::from_millis(60),
        "{:?}",
        t.elapsed()
    );

    // Throttled to 100 KB/s each way: 20 KB there and back take 0.4 s at least.
    assert_eq!(
        shape(
            &api,
            "t",
            serde_json::json!({"bandwidth_bytes_per_s": 100_000})
        )
        .await,
        200
    );
    let payload = vec![7u8; 20_000];
    let t = Instant::now();
    s.write_all(&payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, payload);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );

    // Cut: the open connection ends, new ones are closed at once.
    assert_eq!(
        shape(&api, "t", serde_json::json!({"cut": true})).await,
        200
    );
    let _ = s.write_all(b"x").await;
    let mut one = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(2), s.read(&mut one)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let mut fresh = tokio::net::TcpStream::connect(tcp_link).await.unwrap();
    let _ = fresh.write_all(b"x").await;
    let read = tokio::time::timeout(Duration::from_secs(2), fresh.read(&mut one)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");

    // Bad requests get problem documents.
    assert_eq!(shape(&api, "nope", serde_json::json!({})).await, 404);
    assert_eq!(shape(&api, "u", serde_json::json!({"loss": 2})).await, 422);
    assert_eq!(
        shape(&api, "u", serde_json::json!({"latency": 5})).await,
        422
    );
    let links: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/v1/links"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(links["links"][0]["name"], "t");
    assert!(links["links"][1]["packets"].as_u64().unwrap() > 0);
}
