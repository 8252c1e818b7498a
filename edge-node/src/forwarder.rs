//! The forwarder: sends the outbox's accepted orders to the core, oldest first, in batches of
//! up to `COMMIT_BATCH_MAX`, and records what the core decided. It retries with backoff while
//! no core answers, follows the leader through a failover (any core forwards to it), and after
//! a restart starts from what the outbox still holds: an order sent twice commits once, by its
//! id.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use commerce::command::{COMMIT_BATCH_MAX, EdgeRequest, EdgeWrite, Outcome};
use tokio::sync::watch;

use crate::cores::Cores;
use crate::outbox::Outbox;

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How long one batch may take at one core before the next is tried.
const PER_CORE: Duration = Duration::from_secs(10);
/// Looked at again this often even when nothing new was accepted (a failed batch waits for it).
const IDLE: Duration = Duration::from_secs(1);

/// What the forwarder has done, for /metrics.
#[derive(Default)]
pub struct ForwardStats {
    pub committed: AtomicU64,
    pub rejected: AtomicU64,
    pub failures: AtomicU64,
}

/// Runs until `stop` turns true, then returns once the batch in flight is settled.
pub async fn run(
    outbox: Outbox,
    cores: Cores,
    stats: Arc<ForwardStats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if *stop.borrow() {
            return;
        }
        let ob = outbox.clone();
        let batch = match tokio::task::spawn_blocking(move || ob.pending(COMMIT_BATCH_MAX)).await {
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
        let write = EdgeWrite {
            key: None,
            request: EdgeRequest::Commit(batch),
        };
        match cores.write(&write, PER_CORE).await {
            Ok(Outcome::Orders { results, .. }) => {
                let rejected = results
                    .iter()
                    .filter(|r| r.status == commerce::order::OrderStatus::Rejected)
                    .count();
                match outbox.settle(results).await {
                    Ok(()) => {
                        stats
                            .committed
                            .fetch_add((n - rejected) as u64, Ordering::Relaxed);
                        stats.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
                        backoff = BACKOFF_MIN;
                    }
                    // Sent again later: the core answers it as duplicates, with the same fate.
                    Err(e) => tracing::error!(error = %e, "cannot record committed orders"),
                }
                if rejected > 0 {
                    tracing::warn!(rejected, "the core rejected orders this edge accepted");
                }
            }
            other => {
                stats.failures.fetch_add(1, Ordering::Relaxed);
                match other {
                    Ok(o) => {
                        tracing::warn!(outcome = ?o, orders = n, "the core refused a commit batch")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, orders = n, "no core took the outbox; retrying")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.changed() => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
