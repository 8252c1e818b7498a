//! Retention (`[personal_data] retention_ms`): the region group's leader erases the personal
//! data of orders accepted longer ago than that, in commit order, a batch at a time
//! (`Command::EraseOrders`, which every region applies alike and the audit log keeps under the
//! actor `retention`). Only the leader proposes, so the regions do the work once; a region that
//! becomes leader starts again from the oldest order, skipping what is erased already.

use std::sync::Arc;
use std::time::Duration;

use commerce::command::{Actor, Command, ERASE_BATCH_MAX, Outcome};
use commerce::order::Personal;

use crate::reads::{CommitCursor, orders_after};
use crate::store::Store;
use crate::writes::Writes;

/// Batches one pass proposes at most, so that one pass never holds the leader for long.
const BATCHES_PER_PASS: usize = 10;

/// Runs retention on the current runtime for as long as it runs.
pub fn spawn(writes: Writes, store: Arc<dyn Store>, retention: Duration, timeout: Duration) {
    let every = (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut cursor: Option<CommitCursor> = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let m = writes.node().metrics();
            if m.current_leader != Some(m.id) {
                cursor = None;
                continue;
            }
            let cutoff =
                util::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = pass(&writes, &store, &mut cursor, cutoff, timeout).await {
                tracing::warn!(error = %e, "retention: a pass stopped; the next tick goes on");
            }
        }
    });
}

/// Erases what is older than `cutoff` after `cursor`, moving `cursor` past each batch whose
/// orders are all older; a batch with a younger order is read again next time (orders of an
/// edge may commit out of their order of acceptance).
async fn pass(
    writes: &Writes,
    store: &Arc<dyn Store>,
    cursor: &mut Option<CommitCursor>,
    cutoff: i64,
    timeout: Duration,
) -> Result<(), String> {
    for _ in 0..BATCHES_PER_PASS {
        let (st, after) = (Arc::clone(store), *cursor);
        let (page, last) =
            tokio::task::spawn_blocking(move || orders_after(&*st, after, ERASE_BATCH_MAX))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let all_old = page.iter().all(|o| o.accepted_at_ms < cutoff);
        let orders: Vec<_> = page
            .iter()
            .filter(|o| o.accepted_at_ms < cutoff)
            .filter(|o| !matches!(o.ship_to.personal, Personal::Erased { .. }))
            .map(|o| o.order_id.clone())
            .collect();
        if !orders.is_empty() {
            let n = orders.len();
            let actor = Actor {
                token: "retention".into(),
                route: "retention".into(),
            };
            let command = Command::EraseOrders {
                orders,
                before_ms: cutoff,
            };
            match writes
                .submit("retention", None, command, Some(actor), timeout)
                .await
                .map_err(|e| e.to_string())?
            {
                Outcome::Applied { version } => {
                    tracing::info!(orders = n, version, "retention: personal data erased")
                }
                other => return Err(format!("answered {}", other.kind())),
            }
        }
        if !all_old {
            return Ok(());
        }
        *cursor = last.or(*cursor);
        if page.len() < ERASE_BATCH_MAX {
            return Ok(());
        }
    }
    Ok(())
}
