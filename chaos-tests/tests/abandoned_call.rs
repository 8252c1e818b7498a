//! A mesh call given up on stops taking its link: a large request to a peer behind a long link
//! (the fault proxy, 300 ms round trip) times out while QUIC is still sending it, and the rest of
//! it never crosses the link. (A QUIC stream dropped half-way is finished, every byte still sent: the
//! retries of a large Raft message queued behind the copies before them, DRILLS.md.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chaos_tests::proxy::{LinkSpec, Protocol, ProxyConfig, Shape, serve};
use replication::tls::NodeTls;
use replication::transport::{Answer, Handler, Transport, TransportError};

const TOKEN: &str = "tw_proxy_test_token";

/// Answers small requests at once, and large ones never.
struct Slow;

impl Handler for Slow {
    type Request = Vec<u8>;
    type Response = ();

    async fn handle(&self, _peer: &replication::tls::Peer, request: Vec<u8>) -> Answer<()> {
        if request.len() > 100 {
            std::future::pending::<()>().await;
        }
        Answer::Reply(())
    }
}

async fn bytes_through(api: &str) -> u64 {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{api}/v1/links"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["links"][0]["bytes"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_times_out_stops_sending_its_request() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["client".to_owned(), "server".to_owned()];
    replication::certs::init(
        dir.path(),
        &replication::certs::all_as(replication::certs::Role::Core, &names),
    )
    .unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let server = Transport::bind(any, &NodeTls::load(dir.path(), "server").unwrap()).unwrap();
    server.serve(Arc::new(Slow));
    let server_addr = server.local_addr().unwrap();

    let link: SocketAddr = std::net::UdpSocket::bind(any)
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ProxyConfig {
        token_sha256: vec![http_api::bearer::sha256_hex(TOKEN)],
        api: any,
        links: vec![LinkSpec {
            name: "client->server".into(),
            protocol: Protocol::Udp,
            listen: link,
            target: server_addr,
            shape: Shape {
                latency_ms: 150,
                ..Shape::default()
            },
        }],
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(serve(config, std::future::pending(), move |s| {
        let _ = tx.send(s.api);
    }));
    let api = format!("http://{}", rx.await.unwrap());

    let client = Transport::bind(any, &NodeTls::load(dir.path(), "client").unwrap())
        .unwrap()
        .with_routes(HashMap::from([("server".to_owned(), link)]));
    // The connection made, and its round trip known.
    client
        .call::<_, ()>("server", server_addr, &vec![1u8], Duration::from_secs(5))
        .await
        .unwrap();
    let before = bytes_through(&api).await;
    // 1 MB, all of it in QUIC's buffers at once, paced over the 300 ms round trip: the call
    // gives up when about a third has left.
    let request = vec![7u8; 1_000_000];
    let r = client
        .call::<_, ()>("server", server_addr, &request, Duration::from_millis(80))
        .await;
    assert!(matches!(r, Err(TransportError::Timeout { .. })), "{r:?}");
    // Long enough for the whole request to have crossed, had it gone on being sent.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let crossed = bytes_through(&api).await - before;
    assert!(
        crossed < 700_000,
        "{crossed} bytes of a 1 MB request crossed the link after the call gave up"
    );
}
