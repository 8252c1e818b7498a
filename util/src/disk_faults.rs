//! A disk for tests that loses what was not synced: a redb storage backend that keeps two
//! images, what has been written and what has been synced (`sync_data`, redb's fsync), and on
//! a simulated power loss gives back only the synced one. A store that answers before its
//! write is synced loses that write here, where a SIGKILL (which keeps the page cache) would
//! not show it.

use std::sync::{Arc, Mutex, MutexGuard};

/// The two images of one disk.
#[derive(Debug, Default)]
struct Images {
    written: Vec<u8>,
    synced: Vec<u8>,
    syncs: u64,
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
                syncs: 0,
            })),
        }
    }

    /// Syncs so far.
    pub fn syncs(&self) -> u64 {
        self.images().syncs
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
}
