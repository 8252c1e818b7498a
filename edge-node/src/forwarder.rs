//! The forwarder: sends the outbox's accepted orders to the core, oldest first, and records
//! what the core decided. Any core forwards to the leader, so it follows the leader through a
//! failover; after a restart it starts from what the outbox still holds; an order sent twice
//! commits once, by its id.
//!
//! How it paces itself is decided without IO (`Pacing`): a batch holds at most
//! `batch_orders_max` orders and `batch_bytes_max` encoded bytes, so a backlog never makes a
//! batch larger than a core takes; a batch a core refuses anyway (its bound is smaller) is
//! split in two and sent again at once, down to single orders; after a failure (no core
//! answered, or the verdicts could not be recorded) it waits, longer each time up to a cap and
//! with jitter, so that the edges of a region whose core died do not come back in step.

use std::sync::Arc;
use std::time::Duration;

use commerce::command::{EdgeRequest, EdgeWrite, Outcome};
use fault::Backoff;
use http_api::metrics::Counter;
use replication::protocol::WriteError;
use tokio::sync::watch;

use crate::config::ForwardSettings;
use crate::cores::Cores;
use crate::outbox::Outbox;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long one batch may take at one core before the next is tried.
const PER_CORE: Duration = Duration::from_secs(10);
/// Looked at again this often even when nothing new was accepted.
const IDLE: Duration = Duration::from_secs(1);

/// What the forwarder has done, for /metrics.
#[derive(Default)]
pub struct ForwardStats {
    pub committed: Counter,
    pub rejected: Counter,
    pub failures: Counter,
    /// Batches a core refused as they were, and which were split.
    pub splits: Counter,
    /// Orders accepted here under a key whose order was taken elsewhere (a shopper's retry),
    /// superseded by that order; their units went back to the grants.
    pub superseded: Counter,
}

/// How one batch went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The core decided every order and the verdicts are recorded.
    Settled,
    /// A core refused the batch as it is (too large for it, say): sent again, it would be
    /// refused again.
    Refused,
    /// No core took it (none answered, no leader, overloaded): it may go through later.
    Unreached,
    /// The core decided, but the verdicts could not be recorded here: sent again, the core
    /// answers each order as it was.
    NotRecorded,
}

/// The forwarder's pacing, as a function of what happened: how large the next batch may be,
/// and how long to wait before it.
#[derive(Clone, Debug)]
pub struct Pacing {
    settings: ForwardSettings,
    /// Orders the next batch may hold: the configured bound, halved by each refusal and
    /// doubled back by each settled batch.
    orders: usize,
    backoff: Backoff,
}

impl Pacing {
    pub fn new(settings: ForwardSettings) -> Self {
        Pacing {
            settings,
            orders: settings.batch_orders_max,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
        }
    }

    /// The bounds of the next batch: orders, and encoded bytes.
    pub fn batch(&self) -> (usize, usize) {
        (self.orders, self.settings.batch_bytes_max)
    }

    /// What to do after a batch of `len` orders went as `sent`: how long to wait before the
    /// next (`draw` is a random number, for the jitter).
    pub fn after(&mut self, sent: Sent, len: usize, draw: u64) -> Duration {
        match sent {
            Sent::Settled => {
                self.backoff.succeeded();
                self.orders = (self.orders * 2).min(self.settings.batch_orders_max);
                Duration::ZERO
            }
            // Split, and sent again at once; a single order refused waits like a failure
            // (its age shows in /v1/status, and past the bound /healthz says so).
            Sent::Refused if len > 1 => {
                self.orders = (len / 2).max(1);
                Duration::ZERO
            }
            Sent::Refused | Sent::Unreached | Sent::NotRecorded => self.backoff.failed(draw),
        }
    }
}

/// Runs until `stop` turns true, then returns once the batch in flight is settled.
pub async fn run(
    outbox: Outbox,
    cores: Cores,
    settings: ForwardSettings,
    stats: Arc<ForwardStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pacing = Pacing::new(settings);
    loop {
        if *stop.borrow() {
            return;
        }
        let (orders, bytes) = pacing.batch();
        let ob = outbox.clone();
        let batch = match tokio::task::spawn_blocking(move || ob.pending(orders, bytes)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot read the outbox");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        if batch.is_empty() {
            tokio::select! {
                _ = outbox.pending_added.notified() => {}
                _ = tokio::time::sleep(IDLE) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let n = batch.len();
        let sent = send(&outbox, &cores, &stats, batch).await;
        if sent == Sent::Refused && n > 1 {
            stats.splits.inc();
        }
        let wait = pacing.after(sent, n, rand::random());
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

/// Sends one batch and records the core's verdicts.
async fn send(
    outbox: &Outbox,
    cores: &Cores,
    stats: &ForwardStats,
    batch: Vec<commerce::order::Order>,
) -> Sent {
    let n = batch.len();
    let write = EdgeWrite {
        request: EdgeRequest::Commit(batch),
    };
    let results = match cores.write(&write, PER_CORE).await {
        Ok(Outcome::Orders { results, .. }) => results,
        Ok(other) => {
            stats.failures.inc();
            tracing::error!(
                outcome = other.kind(),
                orders = n,
                "the core answered a commit batch with something else"
            );
            return Sent::Refused;
        }
        Err(e @ WriteError::Refused { .. }) => {
            stats.failures.inc();
            tracing::warn!(error = %e, orders = n, "the core refused a commit batch; splitting it");
            return Sent::Refused;
        }
        Err(e) => {
            stats.failures.inc();
            tracing::warn!(error = %e, orders = n, "no core took the outbox; retrying");
            return Sent::Unreached;
        }
    };
    let rejected = results
        .iter()
        .filter(|r| r.status == commerce::order::OrderStatus::Rejected)
        .count();
    for r in results.iter().filter(|r| r.original.is_some()) {
        stats.superseded.inc();
        if r.key_reused {
            tracing::warn!(order = %r.order_id, "an Idempotency-Key accepted here was used elsewhere for a different order; that order stands");
        } else {
            tracing::info!(order = %r.order_id, "a shopper's retry taken here was already taken elsewhere; its units are back");
        }
    }
    match outbox.settle(results).await {
        Ok(()) => {
            stats.committed.inc_by((n - rejected) as u64);
            stats.rejected.inc_by(rejected as u64);
            if rejected > 0 {
                tracing::warn!(rejected, "the core rejected orders this edge accepted");
            }
            Sent::Settled
        }
        Err(e) => {
            stats.failures.inc();
            tracing::error!(error = %e, "cannot record the core's verdicts; sent again later");
            Sent::NotRecorded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ForwardSettings {
        ForwardSettings {
            batch_orders_max: 1_000,
            ..ForwardSettings::default()
        }
    }

    #[test]
    fn a_refused_batch_is_split_at_once_and_grows_back_once_batches_go_through() {
        let mut p = Pacing::new(settings());
        assert_eq!(p.batch().0, 1_000);
        assert_eq!(p.after(Sent::Refused, 800, 1), Duration::ZERO);
        assert_eq!(p.batch().0, 400);
        assert_eq!(p.after(Sent::Refused, 400, 1), Duration::ZERO);
        assert_eq!(p.batch().0, 200);
        p.after(Sent::Settled, 200, 1);
        assert_eq!(p.batch().0, 400);
        for _ in 0..5 {
            p.after(Sent::Settled, 10, 1);
        }
        assert_eq!(p.batch().0, 1_000);
        // A single order refused is not sent again at once.
        let mut p = Pacing::new(settings());
        p.after(Sent::Refused, 2, 1);
        assert_eq!(p.batch().0, 1);
        assert!(p.after(Sent::Refused, 1, 1) >= BACKOFF_MIN / 2);
    }

    /// A batch the core decided but whose verdicts could not be recorded is not sent again at
    /// once, or the edge would hammer the core as fast as it answers.
    #[test]
    fn failures_wait_longer_each_time_with_jitter_and_a_success_resets_the_wait() {
        for failure in [Sent::Unreached, Sent::NotRecorded] {
            let mut p = Pacing::new(settings());
            let waits: Vec<Duration> = (0..8).map(|i| p.after(failure, 5, i * 104_729)).collect();
            assert!(waits[0] >= BACKOFF_MIN / 2, "{failure:?}: {waits:?}");
            assert!(waits.iter().all(|w| *w <= BACKOFF_MAX), "{waits:?}");
            assert!(waits[7] >= BACKOFF_MAX / 2, "{failure:?} grows: {waits:?}");
            assert_eq!(p.after(Sent::Settled, 5, 0), Duration::ZERO);
            assert!(p.after(failure, 5, 0) <= BACKOFF_MIN);
        }
        // Two edges that failed together draw different waits.
        let (mut a, mut b) = (Pacing::new(settings()), Pacing::new(settings()));
        assert_ne!(
            a.after(Sent::Unreached, 1, 12_345),
            b.after(Sent::Unreached, 1, 67_890)
        );
    }
}
