//! Admission of writes into the region group's log: past its bounds (in flight, and in bytes)
//! a write is refused at once instead of queued without limit, and what was admitted commits
//! once the log moves again.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use commerce::command::{Command, Outcome, Proposal};
use commerce::{Country, Currency, Market, MarketId};
use core_region::machine::StateMachine;
use core_region::replicated::CoreApp;
use core_region::store::redb::RedbStore;
use core_region::writes::{ProposeError, WriteLimits, Writes};
use replication::protocol::Member;
use replication::raft::{RaftNode, Timing};
use tokio::sync::RwLock;

fn proposal(n: u8) -> Proposal {
    let market = Market {
        id: MarketId::new(format!("m-{n}")).unwrap(),
        countries: [Country::new("SG").unwrap()].into(),
        currencies: [Currency::from_code("SGD").unwrap()].into(),
    };
    Proposal {
        command_id: [n; 16],
        fingerprint: [n; 16],
        at_ms: 0,
        command: Command::UpsertMarket(market),
        key_ms: None,
        actor: None,
    }
}

fn version(o: &Outcome) -> u64 {
    match o {
        Outcome::Applied { version } => *version,
        other => panic!("{other:?}"),
    }
}

struct Region {
    _dir: tempfile::TempDir,
    machine: Arc<RwLock<StateMachine>>,
    writes: Writes,
}

/// A region that is a group of one, its log and store in a temp dir.
async fn region(limits: WriteLimits) -> Region {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("core.redb")).unwrap());
    let machine = Arc::new(RwLock::new(StateMachine::open(store).unwrap()));
    let members = BTreeMap::from([(
        1,
        Member {
            name: "solo".into(),
            raft_addr: String::new(),
            admin_url: String::new(),
        },
    )]);
    let timing = Timing {
        heartbeat_ms: 50,
        election_min_ms: 150,
        election_max_ms: 300,
        ..Timing::default()
    };
    let node = RaftNode::start(
        1,
        members,
        &dir.path().join("raft-log.redb"),
        Arc::new(CoreApp::new(Arc::clone(&machine))),
        None,
        None,
        timing,
    )
    .await
    .unwrap();
    let writes = Writes::new(Arc::new(node), limits);
    // The first write waits for the election a new group holds.
    writes
        .propose(&proposal(200), Duration::from_secs(10))
        .await
        .unwrap();
    Region {
        _dir: dir,
        machine,
        writes,
    }
}

type Pending = tokio::task::JoinHandle<Result<Outcome, ProposeError>>;

/// Proposes until a proposal is refused (nothing commits while the test holds the state
/// machine), and returns those admitted, still waiting. Each is polled once on the spot, so it
/// is admitted or refused before the next is made.
async fn fill_until_overloaded(w: &Writes) -> Vec<Pending> {
    let mut admitted = Vec::new();
    for n in 1..=60 {
        let w = w.clone();
        let mut fut =
            Box::pin(async move { w.propose(&proposal(n), Duration::from_secs(30)).await });
        match std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await {
            std::task::Poll::Ready(Err(ProposeError::Overloaded)) => return admitted,
            std::task::Poll::Ready(other) => {
                panic!("answered while the machine is held: {other:?}")
            }
            std::task::Poll::Pending => admitted.push(tokio::spawn(fut)),
        }
    }
    panic!("60 proposals and none refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_bound_a_write_is_refused_at_once_and_the_admitted_commit_after() {
    let r = region(WriteLimits {
        inflight_max: 5,
        ..WriteLimits::default()
    })
    .await;
    let held = r.machine.write().await;
    let admitted = fill_until_overloaded(&r.writes).await;
    assert_eq!(admitted.len(), 5);
    assert_eq!(r.writes.inflight(), 5);
    drop(held);
    let mut versions = Vec::new();
    for a in admitted {
        versions.push(version(&a.await.unwrap().unwrap()));
    }
    versions.sort_unstable();
    versions.dedup();
    assert_eq!(versions.len(), 5, "each at its own version");
    assert_eq!(r.writes.inflight(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_is_bounded_in_bytes_too() {
    let one = codec::encode(&proposal(1)).unwrap().len();
    let r = region(WriteLimits {
        inflight_bytes_max: one * 3 + one / 2,
        ..WriteLimits::default()
    })
    .await;
    let held = r.machine.write().await;
    let admitted = fill_until_overloaded(&r.writes).await;
    assert_eq!(admitted.len(), 3);
    assert_eq!(r.writes.inflight_bytes(), one * 3);
    drop(held);
    for a in admitted {
        assert!(a.await.unwrap().is_ok());
    }
    assert_eq!(r.writes.inflight_bytes(), 0);
}
