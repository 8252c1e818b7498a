//! A disk for tests that loses what was not synced: a redb storage backend that keeps two
//! images, what has been written and what has been synced (`sync_data`, redb's fsync), and on
//! a simulated power loss gives back only the synced one. A store that answers before its
//! write is synced loses that write here, where a SIGKILL (which keeps the page cache) would
//! not show it. In the harsher mode (`tear_at_next_sync`), the power goes during the next
//! sync: the writes since the one before reach the disk in part, the last of them torn.

use std::sync::{Arc, Mutex, MutexGuard};

/// The two images of one disk.
#[derive(Debug, Default)]
struct Images {
    written: Vec<u8>,
    synced: Vec<u8>,
    syncs: u64,
    /// The writes since the last sync, in order (offset, bytes), while a tear is armed.
    since_sync: Vec<(u64, Vec<u8>)>,
    tear: Tear,
}

#[derive(Debug, Default)]
enum Tear {
    #[default]
    Off,
    Armed,
    /// The image the power left during the sync it was armed for.
    Done(Vec<u8>),
}

/// A disk (cheap to clone: the clones are the same disk). Give a clone to
/// `redb::Builder::create_with_backend`; keep one to cut the power.
#[derive(Clone, Debug, Default)]
pub struct LosingDisk {
    images: Arc<Mutex<Images>>,
}

impl LosingDisk {
    pub fn new() -> LosingDisk {
        LosingDisk::default()
    }

    fn images(&self) -> MutexGuard<'_, Images> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power goes: a new disk holding only what this one had synced. (This one goes on
    /// taking the writes of whatever still holds it, which the new one never sees.)
    pub fn power_loss(&self) -> LosingDisk {
        let synced = self.images().synced.clone();
        LosingDisk {
            images: Arc::new(Mutex::new(Images {
                written: synced.clone(),
                synced,
                ..Images::default()
            })),
        }
    }

    /// Syncs so far.
    pub fn syncs(&self) -> u64 {
        self.images().syncs
    }

    /// Arms the harsher mode: during the next sync the power goes, leaving on the disk the
    /// synced image with the first half of the writes since (in order), the last of those
    /// cut in half. The sync itself goes on here; `torn` gives that disk.
    pub fn tear_at_next_sync(&self) {
        let mut i = self.images();
        i.since_sync.clear();
        i.tear = Tear::Armed;
    }

    /// The disk the armed tear left, once the sync it waited for came.
    pub fn torn(&self) -> Option<LosingDisk> {
        match &self.images().tear {
            Tear::Done(image) => Some(LosingDisk {
                images: Arc::new(Mutex::new(Images {
                    written: image.clone(),
                    synced: image.clone(),
                    ..Images::default()
                })),
            }),
            _ => None,
        }
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, "past the end of the disk")
}

impl redb::StorageBackend for LosingDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.images().written.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let i = self.images();
        let at = usize::try_from(offset).map_err(|_| out_of_range())?;
        let from = i.written.get(at..at + out.len()).ok_or_else(out_of_range)?;
        out.copy_from_slice(from);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        self.images().written.resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut i = self.images();
        if matches!(i.tear, Tear::Armed) {
            let mut image = i.synced.clone();
            let writes = std::mem::take(&mut i.since_sync);
            let reached = writes.len().div_ceil(2);
            for (n, (at, data)) in writes.iter().take(reached).enumerate() {
                let keep = if n + 1 == reached {
                    data.len() / 2
                } else {
                    data.len()
                };
                let at = *at as usize;
                if image.len() < at + keep {
                    image.resize(at + keep, 0);
                }
                image[at..at + keep].copy_from_slice(&data[..keep]);
            }
            // The file's length as the writes had it (redb sets it before writing).
            let len = i.written.len().max(image.len());
            image.resize(len, 0);
            i.tear = Tear::Done(image);
        }
        i.synced = i.written.clone();
        i.syncs += 1;
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut i = self.images();
        let at = usize::try_from(offset).map_err(|_| out_of_range())?;
        let to = i
            .written
            .get_mut(at..at + data.len())
            .ok_or_else(out_of_range)?;
        to.copy_from_slice(data);
        if matches!(i.tear, Tear::Armed) {
            i.since_sync.push((offset, data.to_vec()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Durability, ReadableDatabase, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    fn put(db: &redb::Database, k: u64, durable: bool) {
        let mut txn = db.begin_write().unwrap();
        if !durable {
            txn.set_durability(Durability::None).unwrap();
        }
        txn.open_table(T).unwrap().insert(k, k).unwrap();
        txn.commit().unwrap();
    }

    fn has(disk: LosingDisk, k: u64) -> bool {
        let db = redb::Builder::new().create_with_backend(disk).unwrap();
        let txn = db.begin_read().unwrap();
        txn.open_table(T)
            .map(|t| t.get(k).unwrap().is_some())
            .unwrap_or(false)
    }

    #[test]
    fn a_power_loss_keeps_what_was_synced_and_drops_the_rest() {
        let disk = LosingDisk::new();
        let db = redb::Builder::new()
            .create_with_backend(disk.clone())
            .unwrap();
        let before = disk.syncs();
        put(&db, 1, true);
        assert!(disk.syncs() > before, "a durable commit syncs");
        put(&db, 2, false);
        let after = disk.power_loss();
        drop(db);
        assert!(has(after.clone(), 1));
        assert!(!has(after, 2), "a commit without a sync is gone");
    }

    #[test]
    fn a_sync_torn_by_a_power_loss_leaves_what_was_synced_before_it() {
        let disk = LosingDisk::new();
        let db = redb::Builder::new()
            .create_with_backend(disk.clone())
            .unwrap();
        put(&db, 1, true);
        disk.tear_at_next_sync();
        put(&db, 2, true);
        drop(db);
        let torn = disk.torn().expect("the sync came");
        // redb finds the torn commit and recovers the one before it.
        assert!(has(torn.clone(), 1));
        assert!(!has(torn, 2));
    }
}
