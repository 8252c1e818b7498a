//! The log driver: a full queue answers at once instead of blocking or growing, and what waits
//! while a commit is under way goes into the next commit together (group commit).

use std::future::Future;
use std::sync::Arc;

use commerce::command::{Command, Outcome, Proposal};
use commerce::{Country, Currency, Market, MarketId};
use core_region::machine::StateMachine;
use core_region::sequencer::{ProposeError, Sequencer, SequencerLimits};
use core_region::store::redb::RedbStore;
use tokio::sync::RwLock;

fn proposal(n: u8) -> (Proposal, usize) {
    let market = Market {
        id: MarketId::new(format!("m-{n}")).unwrap(),
        countries: [Country::new("SG").unwrap()].into(),
        currencies: [Currency::from_code("SGD").unwrap()].into(),
    };
    let p = Proposal {
        command_id: [n; 16],
        fingerprint: [n; 16],
        at_ms: 0,
        command: Command::UpsertMarket(market),
    };
    (p, 100)
}

fn version(o: &Outcome) -> u64 {
    match o {
        Outcome::Applied { version } => *version,
        other => panic!("{other:?}"),
    }
}

async fn setup(
    limits: SequencerLimits,
) -> (tempfile::TempDir, Arc<RwLock<StateMachine>>, Sequencer) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(RedbStore::open(&dir.path().join("core.redb")).unwrap());
    let machine = Arc::new(RwLock::new(StateMachine::open(store).unwrap()));
    let log = Sequencer::start(Arc::clone(&machine), limits);
    (dir, machine, log)
}

type Pending = tokio::task::JoinHandle<Result<Outcome, ProposeError>>;

/// Proposes until the log driver refuses one (it can apply nothing while the test holds the
/// state machine), and returns the accepted proposals, still waiting. Each proposal is polled
/// once on the spot, so it is queued or refused before the next is made.
async fn fill_until_overloaded(log: &Sequencer) -> Vec<Pending> {
    let mut accepted = Vec::new();
    for n in 1..=50 {
        let (p, b) = proposal(n);
        let log = log.clone();
        let mut fut = Box::pin(async move { log.propose(p, b).await });
        match std::future::poll_fn(|cx| std::task::Poll::Ready(fut.as_mut().poll(cx))).await {
            std::task::Poll::Ready(Err(ProposeError::Overloaded)) => return accepted,
            std::task::Poll::Ready(other) => {
                panic!("answered while the machine is held: {other:?}")
            }
            std::task::Poll::Pending => accepted.push(tokio::spawn(fut)),
        }
    }
    panic!("50 proposals and the queue never filled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_overloaded_at_once_and_drains_after() {
    let limits = SequencerLimits {
        queue_max: 3,
        ..SequencerLimits::default()
    };
    let (_dir, machine, log) = setup(limits).await;
    // Hold the state machine: the driver takes one batch and waits for the lock.
    let held = machine.write().await;
    let accepted = fill_until_overloaded(&log).await;
    assert_eq!(log.queued(), 3, "refused only once the queue was full");
    assert!(accepted.len() >= 3);
    drop(held);
    let mut versions = Vec::new();
    for a in accepted {
        versions.push(version(&a.await.unwrap().unwrap()));
    }
    let expected: Vec<u64> = (1..=versions.len() as u64).collect();
    assert_eq!(versions, expected);
    assert_eq!(log.queued(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_in_bytes_too() {
    let limits = SequencerLimits {
        queue_bytes_max: 350,
        ..SequencerLimits::default()
    };
    let (_dir, machine, log) = setup(limits).await;
    let held = machine.write().await;
    let accepted = fill_until_overloaded(&log).await;
    // Proposals of 100 bytes: at most 3 wait, whatever the count limit says.
    assert_eq!((log.queued(), log.queued_bytes()), (3, 300));
    drop(held);
    for a in accepted {
        assert!(a.await.unwrap().is_ok());
    }
    assert_eq!(log.queued_bytes(), 0);
}
