//! The change feed over real QUIC on loopback: a subscriber catches up from the history or from a
//! snapshot, resumes where it was after a disconnect, and one that stops reading is cut loose
//! with its queue bounded, then resynced.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replication::app::{AppError, Mirror, SnapshotRead, SnapshotSource};
use replication::certs;
use replication::feed::{self, Core, Feed, FeedLimits};
use replication::protocol::{MeshRequest, MeshResponse, Row};
use replication::tls::{NodeTls, Peer};
use replication::transport::{Answer, Handler, Transport};

const DEADLINE: Duration = Duration::from_secs(20);

/// The "store" a feed publishes: rows and the version they are at.
#[derive(Default)]
struct Rows {
    version: u64,
    rows: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Clone, Default)]
struct Source(Arc<Mutex<Rows>>);

impl SnapshotSource for Source {
    fn feed_snapshot(&self) -> SnapshotRead<'_> {
        Box::pin(async move {
            let s = self.0.lock().unwrap();
            let rows = s
                .rows
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect();
            Ok((s.version, rows))
        })
    }
}

/// A core: its rows, its feed, served on a QUIC endpoint the way a region serves it.
struct TestCore {
    source: Source,
    feed: Arc<Feed>,
    addr: SocketAddr,
    _transport: Transport,
}

struct Serve(Arc<Feed>);

impl Handler for Serve {
    type Request = MeshRequest;
    type Response = MeshResponse;

    async fn handle(&self, peer: &Peer, request: MeshRequest) -> Answer<MeshResponse> {
        match request {
            MeshRequest::Subscribe(s) => self.0.subscribe(&peer.name, s.from_version),
            _ => Answer::Reply(MeshResponse::Refused("feed only".into())),
        }
    }
}

impl TestCore {
    fn start(dir: &std::path::Path, limits: FeedLimits) -> TestCore {
        let source = Source::default();
        let feed = Arc::new(Feed::new(0, limits, Arc::new(source.clone())));
        let t = Transport::bind(
            "127.0.0.1:0".parse().unwrap(),
            &NodeTls::load(dir, "cn-shanghai").unwrap(),
        )
        .unwrap();
        t.serve(Arc::new(Serve(Arc::clone(&feed))));
        TestCore {
            source,
            feed,
            addr: t.local_addr().unwrap(),
            _transport: t,
        }
    }

    fn core(&self) -> Core {
        Core {
            name: "cn-shanghai".into(),
            addr: self.addr,
        }
    }

    /// Applies one version that sets `n` keys, and publishes it.
    fn write(&self, n: usize, value_bytes: usize) {
        let mut s = self.source.0.lock().unwrap();
        s.version += 1;
        let v = s.version;
        let rows: Vec<Row> = (0..n)
            .map(|i| {
                let key = format!("k{:04}", (v as usize * 7 + i) % 500).into_bytes();
                let mut value = format!("v{v}").into_bytes();
                value.resize(value_bytes.max(value.len()), b'.');
                s.rows.insert(key.clone(), value.clone());
                (key, Some(value))
            })
            .collect();
        // Published while the rows are held, as a region publishes inside its apply.
        self.feed.publish(v, rows);
    }
}

/// An edge's mirror: the rows it has, and what it went through.
#[derive(Default)]
struct TestMirror {
    version: u64,
    rows: BTreeMap<Vec<u8>, Vec<u8>>,
    snapshots: usize,
    changes: usize,
}

impl Mirror for TestMirror {
    fn version(&self) -> u64 {
        self.version
    }

    fn install(&mut self, version: u64, rows: Vec<Row>) -> Result<(), AppError> {
        self.rows = rows
            .into_iter()
            .map(|(k, v)| (k, v.expect("a snapshot holds values")))
            .collect();
        self.version = version;
        self.snapshots += 1;
        Ok(())
    }

    fn apply(&mut self, version: u64, rows: Vec<Row>) -> Result<(), AppError> {
        assert!(version > self.version, "{version} after {}", self.version);
        for (k, v) in rows {
            match v {
                Some(v) => self.rows.insert(k, v),
                None => self.rows.remove(&k),
            };
        }
        self.version = version;
        self.changes += 1;
        Ok(())
    }

    /// As an edge's: a heartbeat says the core is at `version` with every change up to it
    /// sent, so a version that changed no row is reached too (and were a change still to come
    /// below it, `apply` would refuse it and the rows would differ).
    fn heartbeat(&mut self, version: u64) {
        self.version = self.version.max(version);
    }
}

fn edge(dir: &std::path::Path) -> Transport {
    Transport::bind(
        "127.0.0.1:0".parse().unwrap(),
        &NodeTls::load(dir, "cn-shanghai-1").unwrap(),
    )
    .unwrap()
}

fn certs_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    certs::init(
        dir.path(),
        &[
            ("cn-shanghai".into(), certs::Role::Core),
            ("cn-shanghai-1".into(), certs::Role::Edge),
        ],
    )
    .unwrap();
    dir
}

/// Follows `core` into `mirror` until the mirror reaches `version`.
async fn follow_until(t: &Transport, core: &TestCore, mirror: &mut TestMirror, version: u64) {
    let c = core.core();
    let run = async {
        loop {
            if mirror.version >= version {
                return;
            }
            // Follow for a while, then look at the mirror again.
            let _ = tokio::time::timeout(
                Duration::from_millis(100),
                feed::follow(t, &c, mirror, Duration::from_secs(5)),
            )
            .await;
        }
    };
    tokio::time::timeout(DEADLINE, run)
        .await
        .expect("the mirror caught up");
}

fn assert_same(core: &TestCore, mirror: &TestMirror) {
    let s = core.source.0.lock().unwrap();
    assert_eq!(mirror.version, s.version);
    assert!(mirror.rows == s.rows, "the mirror differs from the core");
}

#[tokio::test]
async fn a_subscriber_replays_the_history_and_resumes_where_it_was() {
    let dir = certs_dir();
    let core = TestCore::start(dir.path(), FeedLimits::default());
    for _ in 0..20 {
        core.write(3, 10);
    }
    let t = edge(dir.path());
    let mut mirror = TestMirror::default();
    follow_until(&t, &core, &mut mirror, 20).await;
    assert_same(&core, &mirror);
    assert_eq!((mirror.snapshots, mirror.changes), (0, 20));
    // Away for a while: it comes back from version 20, with only what it missed.
    for _ in 0..5 {
        core.write(2, 10);
    }
    follow_until(&t, &core, &mut mirror, 25).await;
    assert_same(&core, &mirror);
    assert_eq!((mirror.snapshots, mirror.changes), (0, 25));
}

/// Versions that change no mirrored row (an order, a new leader's first entry) are published
/// with none; a subscriber reaches them from the heartbeat, and the changes after them still
/// arrive.
#[tokio::test]
async fn a_subscriber_reaches_versions_that_changed_nothing_it_mirrors() {
    let dir = certs_dir();
    let limits = FeedLimits {
        // Well within each of `follow_until`'s windows.
        heartbeat_ms: 20,
        ..FeedLimits::default()
    };
    let core = TestCore::start(dir.path(), limits);
    for n in [3, 0, 2, 0, 0] {
        core.write(n, 10);
    }
    let t = edge(dir.path());
    let mut mirror = TestMirror::default();
    follow_until(&t, &core, &mut mirror, 5).await;
    assert_same(&core, &mirror);
    assert_eq!(mirror.changes, 2);
    for n in [0, 4, 0] {
        core.write(n, 10);
    }
    follow_until(&t, &core, &mut mirror, 8).await;
    assert_same(&core, &mirror);
    assert_eq!(mirror.changes, 3);
}

#[tokio::test]
async fn a_subscriber_behind_the_history_gets_a_snapshot_in_chunks_then_changes() {
    let dir = certs_dir();
    let limits = FeedLimits {
        history_bytes: 4 * 1024,
        snapshot_chunk_bytes: 1024,
        ..FeedLimits::default()
    };
    let core = TestCore::start(dir.path(), limits);
    for _ in 0..200 {
        core.write(5, 40);
    }
    let t = edge(dir.path());
    let mut mirror = TestMirror::default();
    follow_until(&t, &core, &mut mirror, 200).await;
    assert_same(&core, &mirror);
    assert_eq!(mirror.snapshots, 1, "the history had moved past version 0");
    // Live changes follow the snapshot on the same stream.
    let c = core.core();
    let follow = async {
        let _ = feed::follow(&t, &c, &mut mirror, Duration::from_secs(5)).await;
    };
    let writes = async {
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            core.write(1, 10);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::select! {
        _ = follow => panic!("the feed ended"),
        _ = writes => {}
    }
    assert_same(&core, &mirror);
    assert_eq!(
        mirror.snapshots, 1,
        "no second snapshot for a subscriber that keeps up"
    );
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_cut_loose_then_resynced() {
    let dir = certs_dir();
    let limits = FeedLimits {
        history_bytes: 256 * 1024,
        subscriber_queue_bytes: 32 * 1024,
        ..FeedLimits::default()
    };
    let core = TestCore::start(dir.path(), limits);
    let t = edge(dir.path());
    // Subscribed, but reading nothing: the stream's flow control fills, then its queue.
    let request = MeshRequest::Subscribe(replication::protocol::Subscribe { from_version: 0 });
    let stalled = t
        .open_stream("cn-shanghai", core.addr, &request, DEADLINE)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while core.feed.subscribers() == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Far more than the queue and the transport's windows hold: 4,000 versions of 1 KiB.
    for _ in 0..4_000 {
        core.write(1, 1024);
        tokio::task::yield_now().await;
    }
    // It was cut loose rather than queued for without bound.
    assert_eq!(
        core.feed.subscribers(),
        0,
        "the stalled subscriber is still queued for"
    );
    drop(stalled);
    // Reading again (a fresh stream from where its mirror is), it is resynced: the history
    // has moved on, so with a snapshot.
    let mut mirror = TestMirror::default();
    follow_until(&t, &core, &mut mirror, 4_000).await;
    assert_same(&core, &mirror);
    assert_eq!(mirror.snapshots, 1);
}

/// One peer may hold `SUBSCRIPTIONS_PER_PEER` subscriptions; the next is refused, and one given
/// back makes room again.
#[tokio::test]
async fn a_peer_holds_a_bounded_number_of_subscriptions() {
    let dir = certs_dir();
    let core = TestCore::start(dir.path(), FeedLimits::default());
    let t = edge(dir.path());
    let request = MeshRequest::Subscribe(replication::protocol::Subscribe { from_version: 0 });
    let mut held = Vec::new();
    for _ in 0..feed::SUBSCRIPTIONS_PER_PEER {
        let s = t
            .open_stream("cn-shanghai", core.addr, &request, DEADLINE)
            .await
            .unwrap();
        held.push(s);
    }
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while core.feed.subscriptions_of("cn-shanghai-1") < feed::SUBSCRIPTIONS_PER_PEER {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut extra = t
        .open_stream("cn-shanghai", core.addr, &request, DEADLINE)
        .await
        .unwrap();
    let refused = extra.next::<MeshResponse>().await;
    assert!(
        format!("{refused:?}").contains("feed subscriptions"),
        "{refused:?}"
    );
    assert_eq!(
        core.feed.subscriptions_of("cn-shanghai-1"),
        feed::SUBSCRIPTIONS_PER_PEER
    );
    // One given back (noticed at its next heartbeat): room for another.
    drop(held.pop());
    let wait_for = |n: usize| {
        let feed = Arc::clone(&core.feed);
        async move {
            let deadline = tokio::time::Instant::now() + DEADLINE;
            while feed.subscriptions_of("cn-shanghai-1") != n {
                assert!(tokio::time::Instant::now() < deadline, "{n} subscribers");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    wait_for(feed::SUBSCRIPTIONS_PER_PEER - 1).await;
    let _again = t
        .open_stream("cn-shanghai", core.addr, &request, DEADLINE)
        .await
        .unwrap();
    wait_for(feed::SUBSCRIPTIONS_PER_PEER).await;
}
