//! Retention (`[personal_data] retention_ms`): the region group's leader erases the personal
//! data of orders accepted longer ago than that, in commit order, a batch at a time
//! (`Command::EraseOrders`, which every region applies alike and the audit log keeps under the
//! actor `retention`). Only the leader proposes, so the regions do the work once; a region that
//! becomes leader starts again from the oldest order, skipping what is erased already. An order
//! read before it is old enough (accepted late, or with a clock ahead) waits in a bounded set
//! instead of holding back the ones after it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use commerce::command::{Actor, Command, ERASE_BATCH_MAX, Outcome};
use commerce::order::Personal;

use crate::reads::{CommitCursor, orders_after};
use crate::store::Store;
use crate::writes::Writes;

/// Batches one pass proposes at most, so that one pass never holds the leader for long.
const BATCHES_PER_PASS: usize = 10;
/// Orders read before they were old enough, kept to erase when they are, at most; past it,
/// the cursor waits for them.
const WAITING_MAX: usize = 100_000;

/// Where retention stands: the commit order read up to, and the orders read too young.
#[derive(Default)]
struct Progress {
    cursor: Option<CommitCursor>,
    waiting: BTreeSet<(i64, commerce::OrderId)>,
}

/// Runs retention on the current runtime for as long as it runs.
pub fn spawn(writes: Writes, store: Arc<dyn Store>, retention: Duration, timeout: Duration) {
    let every = (retention / 4).clamp(Duration::from_millis(200), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut progress = Progress::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let m = writes.node().metrics();
            if m.current_leader != Some(m.id) {
                progress = Progress::default();
                continue;
            }
            let cutoff =
                util::clock::now_ms() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
            if let Err(e) = pass(&writes, &store, &mut progress, cutoff, timeout).await {
                tracing::warn!(error = %e, "retention: a pass stopped; the next tick goes on");
            }
        }
    });
}

/// Proposes the erasure of `orders` (not erased yet, accepted before `cutoff`).
async fn erase(
    writes: &Writes,
    orders: Vec<commerce::OrderId>,
    cutoff: i64,
    timeout: Duration,
) -> Result<(), String> {
    if orders.is_empty() {
        return Ok(());
    }
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
            tracing::info!(orders = n, version, "retention: personal data erased");
            Ok(())
        }
        other => Err(format!("answered {}", other.kind())),
    }
}

/// Erases what is older than `cutoff`: first the orders waiting that now are, then those after
/// the cursor, a batch at a time; one too young waits, unless too many do already.
async fn pass(
    writes: &Writes,
    store: &Arc<dyn Store>,
    progress: &mut Progress,
    cutoff: i64,
    timeout: Duration,
) -> Result<(), String> {
    let due: Vec<_> = progress
        .waiting
        .iter()
        .take_while(|(at, _)| *at < cutoff)
        .take(ERASE_BATCH_MAX)
        .cloned()
        .collect();
    erase(
        writes,
        due.iter().map(|(_, id)| id.clone()).collect(),
        cutoff,
        timeout,
    )
    .await?;
    for d in &due {
        progress.waiting.remove(d);
    }
    for _ in 0..BATCHES_PER_PASS {
        let (st, after) = (Arc::clone(store), progress.cursor);
        let (page, last) =
            tokio::task::spawn_blocking(move || orders_after(&*st, after, ERASE_BATCH_MAX))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        let young: Vec<_> = page
            .iter()
            .filter(|o| o.accepted_at_ms >= cutoff)
            .filter(|o| !matches!(o.ship_to.personal, Personal::Erased { .. }))
            .map(|o| (o.accepted_at_ms, o.order_id.clone()))
            .collect();
        if progress.waiting.len() + young.len() > WAITING_MAX {
            // Too many waiting: this page is read again once some of them are erased.
            return Ok(());
        }
        let orders = page
            .iter()
            .filter(|o| o.accepted_at_ms < cutoff)
            .filter(|o| !matches!(o.ship_to.personal, Personal::Erased { .. }))
            .map(|o| o.order_id.clone())
            .collect();
        erase(writes, orders, cutoff, timeout).await?;
        progress.waiting.extend(young);
        progress.cursor = last.or(progress.cursor);
        if page.len() < ERASE_BATCH_MAX {
            return Ok(());
        }
    }
    Ok(())
}
