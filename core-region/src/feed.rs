//! The region's side of the change feed (`replication::feed`): edges mirror the rows of
//! `commerce::keys::MIRRORED`; the state machine publishes the ones each version changes
//! (`StateMachine::set_feed`), and a subscriber too far behind gets them all, read here from
//! one consistent view of the store together with the version they are at.

use std::sync::Arc;

use commerce::keys;
use replication::app::{AppError, SnapshotRead, SnapshotSource};

use crate::store::{KeyRange, Store, decode_applied};

pub struct StoreSnapshots {
    store: Arc<dyn Store>,
}

impl StoreSnapshots {
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreSnapshots { store }
    }
}

/// The ranges a feed snapshot reads: the applied index and every mirrored kind, ascending.
fn snapshot_ranges() -> Vec<KeyRange> {
    let mut applied_end = keys::META_APPLIED.to_vec();
    applied_end.push(0);
    let mut ranges: Vec<KeyRange> = keys::MIRRORED
        .iter()
        .map(|tag| keys::tag_range(*tag))
        .collect();
    ranges.push((keys::META_APPLIED.to_vec(), applied_end));
    ranges.sort();
    ranges
}

impl SnapshotSource for StoreSnapshots {
    fn feed_snapshot(&self) -> SnapshotRead<'_> {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let rows = store.dump(&snapshot_ranges())?;
                let mut version = 0;
                let mut mirrored = Vec::with_capacity(rows.len());
                for (k, v) in rows {
                    if k == keys::META_APPLIED {
                        version = decode_applied(Some(&v))?;
                    } else {
                        mirrored.push((k, Some(v)));
                    }
                }
                Ok::<_, AppError>((version, mirrored))
            })
            .await?
        })
    }
}
