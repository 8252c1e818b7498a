//! The QUIC transport between real endpoints on loopback: mutual TLS against the deployment CA,
//! identities taken from certificates, and bad input from a connected peer refused on its own
//! stream while everyone else is served.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use replication::certs;
use replication::frame::{self, PROTOCOL};

const PROTOCOL_VERSION: u8 = PROTOCOL.version;
use replication::tls::{NodeTls, Peer};
use replication::transport::{Answer, Handler, Transport, TransportError, stream_frame};
use serde::{Deserialize, Serialize};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The system allocator, counting the bytes held: what a peer's declared frame lengths cost.
struct Counting;

static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        HELD.fetch_add(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HELD.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Answers with the caller's name as its certificate says, and the message; `count N` is
/// answered with a stream of N replies.
struct Echo;

impl Handler for Echo {
    type Request = String;
    type Response = (String, String);

    async fn handle(&self, peer: &Peer, request: String) -> Answer<(String, String)> {
        let peer: &str = &peer.name;
        if let Some(n) = request.strip_prefix("count ") {
            let n: usize = n.parse().unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let peer = peer.to_owned();
            tokio::spawn(async move {
                for i in 0..n {
                    let f = stream_frame(&(peer.clone(), i.to_string())).unwrap();
                    if tx.send(f).await.is_err() {
                        return;
                    }
                }
            });
            return Answer::Stream(rx);
        }
        Answer::Reply((peer.to_owned(), request))
    }
}

/// The reply envelope as it travels (mirrors the transport's private type).
#[derive(Debug, Serialize, Deserialize)]
enum Reply<T> {
    Ok(T),
    Refused(String),
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Mesh {
    dir: tempfile::TempDir,
    nodes: Vec<(Transport, SocketAddr)>,
}

fn mesh(names: &[&str]) -> Mesh {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    certs::init(dir.path(), &certs::all_as(certs::Role::Core, &names)).unwrap();
    let nodes = names
        .iter()
        .map(|n| {
            let t = Transport::bind(loopback(), &NodeTls::load(dir.path(), n).unwrap()).unwrap();
            t.serve(Arc::new(Echo));
            let addr = t.local_addr().unwrap();
            (t, addr)
        })
        .collect();
    Mesh { dir, nodes }
}

#[tokio::test]
async fn peers_call_each_other_under_their_certified_names() {
    let m = mesh(&["cn-shanghai", "ap-singapore", "us-east"]);
    for (i, (from, _)) in m.nodes.iter().enumerate() {
        for (j, (to, addr)) in m.nodes.iter().enumerate() {
            if i == j {
                continue;
            }
            let (seen, msg): (String, String) = from
                .call(to.node(), *addr, &format!("hello {j}"), TIMEOUT)
                .await
                .unwrap();
            assert_eq!(seen, from.node());
            assert_eq!(msg, format!("hello {j}"));
        }
    }
}

#[tokio::test]
async fn a_streamed_answer_arrives_whole_and_in_order_then_ends() {
    let m = mesh(&["cn-shanghai", "us-east"]);
    let (caller, _) = &m.nodes[0];
    let (callee, addr) = &m.nodes[1];
    // Far more than the server's channel and the stream's flow-control window hold at once.
    let n = 20_000;
    let mut stream = caller
        .open_stream(callee.node(), *addr, &format!("count {n}"), TIMEOUT)
        .await
        .unwrap();
    for i in 0..n {
        let (seen, msg): (String, String) = stream.next().await.unwrap().unwrap();
        assert_eq!((seen.as_str(), msg), ("cn-shanghai", i.to_string()));
    }
    assert!(stream.next::<(String, String)>().await.unwrap().is_none());
    // The connection serves plain calls alongside.
    let (_, msg): (String, String) = caller
        .call(callee.node(), *addr, &"after".to_owned(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(msg, "after");
}

#[tokio::test]
async fn a_node_of_another_ca_or_under_another_name_is_refused() {
    let m = mesh(&["cn-shanghai", "ap-singapore"]);
    let (_, target) = &m.nodes[1];
    // Same node name, certificate from another deployment's CA.
    let other = tempfile::tempdir().unwrap();
    certs::init(
        other.path(),
        &[("cn-shanghai".to_owned(), certs::Role::Core)],
    )
    .unwrap();
    let intruder = Transport::bind(
        loopback(),
        &NodeTls::load(other.path(), "cn-shanghai").unwrap(),
    )
    .unwrap();
    let r: Result<(String, String), _> = intruder
        .call("ap-singapore", *target, &"let me in".to_owned(), TIMEOUT)
        .await;
    assert!(matches!(r, Err(TransportError::Connect { .. })), "{r:?}");
    // A real node that expects a name the target's certificate does not carry.
    let (honest, _) = &m.nodes[0];
    let r: Result<(String, String), _> = honest
        .call("us-east", *target, &"who are you".to_owned(), TIMEOUT)
        .await;
    assert!(matches!(r, Err(TransportError::Connect { .. })), "{r:?}");
    // The target serves everyone else as before.
    let (seen, _): (String, String) = honest
        .call("ap-singapore", *target, &"still there?".to_owned(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen, "cn-shanghai");
}

/// A QUIC connection from `from` (its certificate in `m`) to node `to` at `addr`, without the
/// transport: a peer that may send anything on it.
async fn raw_connection(m: &Mesh, from: &str, addr: SocketAddr, to: &str) -> quinn::Connection {
    let tls = NodeTls::load(m.dir.path(), from).unwrap();
    let mut client = quinn::Endpoint::client(loopback()).unwrap();
    client.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(tls.client_config().unwrap()).unwrap(),
    )));
    client.connect(addr, to).unwrap().await.unwrap()
}

/// Sends raw bytes on a fresh stream of a properly authenticated connection and returns what
/// comes back, if anything.
async fn raw(conn: &quinn::Connection, bytes: &[u8]) -> Option<Vec<u8>> {
    let (mut send, mut recv) = conn.open_bi().await.ok()?;
    send.write_all(bytes).await.ok()?;
    send.finish().ok()?;
    recv.read_to_end(1 << 20).await.ok()
}

fn refusal(answer: Option<Vec<u8>>) -> String {
    let answer = answer.expect("an answer to a bad frame");
    match frame::decode_body::<Reply<()>>(&answer[4..]).unwrap() {
        Reply::Refused(reason) => reason,
        Reply::Ok(()) => panic!("bad frame accepted"),
    }
}

#[tokio::test]
async fn bad_frames_are_refused_on_their_stream_and_the_peer_is_served_on() {
    let m = mesh(&["cn-shanghai", "ap-singapore"]);
    let (_, target) = &m.nodes[1];
    // A raw connection with valid credentials, to send what a well-behaved transport never would.
    let conn = raw_connection(&m, "cn-shanghai", *target, "ap-singapore").await;

    let garbage = refusal(raw(&conn, &[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x01]).await);
    assert!(garbage.contains("version"), "{garbage}");
    let huge = refusal(raw(&conn, &u32::MAX.to_be_bytes()).await);
    assert!(huge.contains("over the limit"), "{huge}");
    let mut wrong_version = frame::encode(&"hi".to_owned()).unwrap();
    wrong_version[4] = PROTOCOL_VERSION + 1;
    let wrong = refusal(raw(&conn, &wrong_version).await);
    assert!(wrong.contains("unknown format version"), "{wrong}");
    let truncated = refusal(raw(&conn, &[0, 0, 0, 100, PROTOCOL_VERSION, 1, 2]).await);
    assert!(truncated.contains("stream"), "{truncated}");
    // The right version, but not a string: two bytes that are not UTF-8.
    let not_utf8 = refusal(raw(&conn, &[0, 0, 0, 4, PROTOCOL_VERSION, 2, 0xC3, 0x28]).await);
    assert!(not_utf8.contains("malformed"), "{not_utf8}");

    // The same connection, and everyone else, are still served.
    let ok = raw(&conn, &frame::encode(&"fine".to_owned()).unwrap())
        .await
        .unwrap();
    match frame::decode_body::<Reply<(String, String)>>(&ok[4..]).unwrap() {
        Reply::Ok((peer, msg)) => {
            assert_eq!((peer.as_str(), msg.as_str()), ("cn-shanghai", "fine"))
        }
        Reply::Refused(r) => panic!("{r}"),
    }
    let (honest, _) = &m.nodes[0];
    let _: (String, String) = honest
        .call("ap-singapore", *target, &"and me".to_owned(), TIMEOUT)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_dead_peer_is_an_error_in_bounded_time_and_a_restarted_one_is_reached_again() {
    let Mesh { dir, mut nodes } = mesh(&["cn-shanghai", "ap-singapore"]);
    let (target, addr) = nodes.pop().unwrap();
    let (caller, _) = &nodes[0];
    let _: (String, String) = caller
        .call("ap-singapore", addr, &"1".to_owned(), TIMEOUT)
        .await
        .unwrap();
    target.close();
    drop(target);
    let r: Result<(String, String), _> = caller
        .call(
            "ap-singapore",
            addr,
            &"2".to_owned(),
            Duration::from_secs(2),
        )
        .await;
    assert!(r.is_err());
    // The node comes back on the same address, as a restarted process does, and the caller
    // connects afresh. The closed endpoint lets go of its socket once its tasks notice.
    let tls = NodeTls::load(dir.path(), "ap-singapore").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let back = loop {
        match Transport::bind(addr, &tls) {
            Ok(t) => break t,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    back.serve(Arc::new(Echo));
    let (seen, _): (String, String) = caller
        .call("ap-singapore", addr, &"3".to_owned(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(seen, "cn-shanghai");
}

/// A node killed without a word (its process gone, nothing sent) and restarted on the same
/// address resets the connections its predecessor had, so a caller holding one learns at once
/// that it is dead instead of waiting on it until the idle timeout.
#[tokio::test]
async fn a_killed_peer_restarted_on_its_address_resets_its_old_connections() {
    let Mesh { dir, nodes } = mesh(&["cn-shanghai"]);
    let (caller, _) = &nodes[0];
    certs::issue_node(dir.path(), "ap-singapore", certs::Role::Core).unwrap();
    let tls = NodeTls::load(dir.path(), "ap-singapore").unwrap();
    // The peer runs on a runtime of its own, so that it can vanish mid-connection the way a
    // killed process does: its tasks dropped, no close sent.
    let peer_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let peer_tls = tls.clone();
    peer_rt.spawn(async move {
        let t = Transport::bind(loopback(), &peer_tls).unwrap();
        t.serve(Arc::new(Echo));
        tx.send(t.local_addr().unwrap()).unwrap();
        std::future::pending::<()>().await;
        drop(t);
    });
    let addr = rx.await.unwrap();
    let _: (String, String) = caller
        .call("ap-singapore", addr, &"1".to_owned(), TIMEOUT)
        .await
        .unwrap();
    peer_rt.shutdown_background();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let back = loop {
        match Transport::bind(addr, &tls) {
            Ok(t) => break t,
            Err(e) => {
                assert!(tokio::time::Instant::now() < deadline, "{e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    back.serve(Arc::new(Echo));
    // Without the reset the cached connection would swallow this call until its timeout (the
    // connection's idle timeout, 3 s, is longer).
    let first: Result<(String, String), _> = caller
        .call(
            "ap-singapore",
            addr,
            &"2".to_owned(),
            Duration::from_secs(2),
        )
        .await;
    assert!(
        !matches!(first, Err(TransportError::Timeout { .. })),
        "the old connection was not reset: {first:?}"
    );
    let (seen, msg): (String, String) = caller
        .call("ap-singapore", addr, &"3".to_owned(), TIMEOUT)
        .await
        .unwrap();
    assert_eq!((seen.as_str(), msg.as_str()), ("cn-shanghai", "3"));
}

/// A peer that declares the largest frame on many streams and sends a few bytes of each holds
/// what it sent, not what it declared: the receiver's memory grows as bytes arrive.
#[tokio::test]
async fn a_frames_memory_is_taken_as_its_bytes_arrive() {
    let m = mesh(&["cn-shanghai", "ap-singapore"]);
    let (_, target) = &m.nodes[1];
    let conn = raw_connection(&m, "cn-shanghai", *target, "ap-singapore").await;
    let before = HELD.load(std::sync::atomic::Ordering::Relaxed);
    let declared = frame::FRAME_MAX_BYTES as u32;
    let mut open = Vec::new();
    for _ in 0..20 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        send.write_all(&declared.to_be_bytes()).await.unwrap();
        send.write_all(&[PROTOCOL_VERSION, 1, 2, 3, 4, 5])
            .await
            .unwrap();
        open.push((send, recv));
    }
    // Declared: 20 x 16 MiB. Held, while the streams stay open: a first allocation each.
    let bound = 64 << 20;
    let watch_until = std::time::Instant::now() + Duration::from_secs(1);
    while std::time::Instant::now() < watch_until {
        let grown = HELD
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(before);
        assert!(
            grown < bound,
            "{grown} bytes held for 20 frames of a few bytes each"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(open);
}

/// One peer cannot hold more than a few connections to a node (each of at most 256 streams):
/// past them a new connection is closed at once; a connection that ends gives its place back;
/// other peers are served throughout.
#[tokio::test]
async fn a_peer_holds_a_bounded_number_of_connections() {
    let m = mesh(&["cn-shanghai", "ap-singapore", "us-east"]);
    let (_, target) = &m.nodes[1];
    let hello = frame::encode(&"hello".to_owned()).unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        let conn = raw_connection(&m, "cn-shanghai", *target, "ap-singapore").await;
        assert!(raw(&conn, &hello).await.is_some(), "one of the first eight");
        held.push(conn);
    }
    let ninth = raw_connection(&m, "cn-shanghai", *target, "ap-singapore").await;
    assert!(raw(&ninth, &hello).await.is_none(), "the ninth was served");
    // Another peer is served meanwhile.
    let (other, _) = &m.nodes[2];
    let _: (String, String) = other
        .call("ap-singapore", *target, &"me too".to_owned(), TIMEOUT)
        .await
        .unwrap();
    // One closed: a new connection gets its place.
    held.pop().unwrap().close(0u32.into(), b"done");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let again = raw_connection(&m, "cn-shanghai", *target, "ap-singapore").await;
        if raw(&again, &hello).await.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls to a peer with no connection yet wait for one handshake instead of each making its
/// own: a hundred at once all succeed, though the peer takes only eight connections.
#[tokio::test]
async fn calls_at_once_to_a_new_peer_share_one_handshake() {
    let m = mesh(&["cn-shanghai", "ap-singapore"]);
    let (caller, _) = &m.nodes[0];
    let (_, target) = &m.nodes[1];
    let asks: Vec<String> = (0..100).map(|i| format!("call {i}")).collect();
    let calls = asks
        .iter()
        .map(|ask| caller.call::<_, (String, String)>("ap-singapore", *target, ask, TIMEOUT));
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.unwrap().0, "cn-shanghai");
    }
}

/// A node revoked (`revoked.txt`, read again while running) is cut off: its open connection is
/// closed and new ones refused, and nodes do not call it either; everyone else is served; off
/// the list, it is served again.
#[tokio::test]
async fn a_revoked_node_is_cut_off_at_runtime_and_everyone_else_is_served() {
    let m = mesh(&["cn-shanghai", "ap-singapore", "us-east"]);
    let (revoked, revoked_addr) = &m.nodes[0];
    let (target, target_addr) = &m.nodes[1];
    let (other, _) = &m.nodes[2];
    let hello = "hello".to_owned();
    let call = |from: &'static str| {
        let (t, to, addr) = match from {
            "revoked" => (revoked, "ap-singapore", *target_addr),
            "other" => (other, "ap-singapore", *target_addr),
            _ => (target, "cn-shanghai", *revoked_addr),
        };
        let hello = hello.clone();
        async move {
            t.call::<_, (String, String)>(to, addr, &hello, TIMEOUT)
                .await
        }
    };
    call("revoked").await.unwrap();
    call("target").await.unwrap();
    replication::revoked::revoke(m.dir.path(), "cn-shanghai").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call("revoked").await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    call("other").await.unwrap();
    let to_revoked = call("target").await;
    assert!(
        matches!(to_revoked, Err(TransportError::Connect { .. })),
        "{to_revoked:?}"
    );
    std::fs::write(m.dir.path().join("revoked.txt"), "# none\n").unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while call("revoked").await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nodes call cores only: a server whose certificate, though of the deployment's CA and under
/// the name called, names it an edge or a router is refused, so that a stolen edge certificate
/// behind a hijacked address cannot take a core's traffic; a core's, or one from before roles,
/// is called.
#[tokio::test]
async fn a_server_is_called_only_when_its_certificate_names_a_core() {
    let dir = tempfile::tempdir().unwrap();
    certs::init(dir.path(), &[("cn-shanghai".to_owned(), certs::Role::Core)]).unwrap();
    certs::issue_node(dir.path(), "sg-edge-1", certs::Role::Edge).unwrap();
    certs::issue_node(dir.path(), "geo-1", certs::Role::Router).unwrap();
    certs::issue_node(dir.path(), "us-east", certs::Role::Core).unwrap();
    certs::issue_node_without_role(dir.path(), "ap-singapore").unwrap();
    let caller = Transport::bind(
        loopback(),
        &NodeTls::load(dir.path(), "cn-shanghai").unwrap(),
    )
    .unwrap();
    for (name, called) in [
        ("sg-edge-1", false),
        ("geo-1", false),
        ("us-east", true),
        ("ap-singapore", true),
    ] {
        let server =
            Transport::bind(loopback(), &NodeTls::load(dir.path(), name).unwrap()).unwrap();
        server.serve(Arc::new(Echo));
        let addr = server.local_addr().unwrap();
        let answer: Result<(String, String), _> =
            caller.call(name, addr, &"hello".to_owned(), TIMEOUT).await;
        match answer {
            Ok((_, msg)) => assert!(called && msg == "hello", "{name} was called"),
            Err(e) => assert!(
                !called && e.to_string().contains("not a core"),
                "{name}: {e}"
            ),
        }
    }
}

/// Once roles are required, a certificate from before roles is refused both ways: as a caller
/// and as the server called.
#[tokio::test]
async fn required_roles_refuse_certificates_without_one_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    certs::init(dir.path(), &[("cn-shanghai".to_owned(), certs::Role::Core)]).unwrap();
    certs::issue_node_without_role(dir.path(), "ap-singapore").unwrap();
    let bind = |name: &str| {
        Transport::bind(loopback(), &NodeTls::load(dir.path(), name).unwrap())
            .unwrap()
            .requiring_roles(true)
    };
    let (core, old) = (bind("cn-shanghai"), bind("ap-singapore"));
    core.serve(Arc::new(Echo));
    old.serve(Arc::new(Echo));
    let hello = "hello".to_owned();
    let called: Result<(String, String), _> = core
        .call("ap-singapore", old.local_addr().unwrap(), &hello, TIMEOUT)
        .await;
    assert!(
        called
            .as_ref()
            .is_err_and(|e| e.to_string().contains("names no role")),
        "{called:?}"
    );
    let calling: Result<(String, String), _> = old
        .call("cn-shanghai", core.local_addr().unwrap(), &hello, TIMEOUT)
        .await;
    assert!(calling.is_err(), "{calling:?}");
}
