//! The embedded backend: one redb file, every commit fsynced (`Durability::Immediate`, redb's
//! default) before `commit` returns.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{
    KeyRange, LAYOUTS_READ, Op, Rows, STORE_LAYOUT, Store, StoreError, WriteBatch, decode_applied,
};
use commerce::keys::{META_APPLIED, META_FORMAT};
use replication::failpoint;

const KV: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");

pub struct RedbStore {
    db: Database,
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) the store file, checking the record format. A file that another
    /// process has open is refused by redb's lock: two cores on one file would both write.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io(format!("{}: {e}", dir.display())))?;
        }
        // What the store holds is shoppers' business: readable by this process's user alone.
        util::files::private(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
        let db = Database::create(path).map_err(|e| io(format!("{}: {e}", path.display())))?;
        Self::on_database(db)
    }

    /// A store on any redb backend: the tests of power losses put it on a disk that loses
    /// what was not synced (`util::disk_faults`).
    pub fn on_backend(backend: impl redb::StorageBackend) -> Result<Self, StoreError> {
        let db = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(io)?;
        Self::on_database(db)
    }

    /// Checks the record format of `db` (writing it into a new one).
    fn on_database(db: Database) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(io)?;
        {
            let mut t = txn.open_table(KV).map_err(io)?;
            let format = t.get(META_FORMAT).map_err(io)?.map(|v| v.value().to_vec());
            match format.as_deref() {
                None => {
                    t.insert(META_FORMAT, [STORE_LAYOUT].as_slice())
                        .map_err(io)?;
                }
                Some([f]) if LAYOUTS_READ.contains(f) => {}
                Some(other) => {
                    return Err(StoreError::Format {
                        found: format!("{other:?}"),
                    });
                }
            }
        }
        txn.commit().map_err(io)?;
        Ok(RedbStore { db })
    }
}

fn op_key(op: &Op) -> &[u8] {
    match op {
        Op::Put(k, _) | Op::Delete(k) => k,
    }
}

impl Store for RedbStore {
    fn applied(&self) -> Result<u64, StoreError> {
        let raw = self.get(META_APPLIED)?;
        decode_applied(raw.as_deref())
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        keys.iter()
            .map(|k| Ok(t.get(k.as_slice()).map_err(io)?.map(|v| v.value().to_vec())))
            .collect()
    }

    fn scan(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Rows, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        let mut rows = Vec::new();
        for item in t.range::<&[u8]>(start..end).map_err(io)?.take(limit) {
            let (k, v) = item.map_err(io)?;
            rows.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(rows)
    }

    fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut t = txn.open_table(KV).map_err(io)?;
            let raw = t.get(META_APPLIED).map_err(io)?.map(|v| v.value().to_vec());
            let found = decode_applied(raw.as_deref())?;
            if found != batch.from_applied {
                return Err(StoreError::Fenced {
                    expected: batch.from_applied,
                    found,
                });
            }
            // B-tree inserts in key order touch each page once; the sort is stable, so two
            // operations on one key keep their order.
            let mut ops: Vec<&Op> = batch.ops.iter().collect();
            ops.sort_by(|a, b| op_key(a).cmp(op_key(b)));
            let half = ops.len() / 2;
            for (i, op) in ops.into_iter().enumerate() {
                if i == half {
                    // A crash here leaves half a batch written to the file and uncommitted.
                    failpoint::hit("store.commit.mid_write", batch.ops.len());
                }
                match op {
                    Op::Put(k, v) => {
                        t.insert(k.as_slice(), v.as_slice()).map_err(io)?;
                    }
                    Op::Delete(k) => {
                        t.remove(k.as_slice()).map_err(io)?;
                    }
                }
            }
            t.insert(META_APPLIED, batch.to_applied.to_be_bytes().as_slice())
                .map_err(io)?;
        }
        txn.commit().map_err(io)
    }

    fn dump(&self, ranges: &[KeyRange]) -> Result<Rows, StoreError> {
        let txn = self.db.begin_read().map_err(io)?;
        let t = txn.open_table(KV).map_err(io)?;
        let mut rows = Vec::new();
        for (start, end) in ranges {
            for item in t.range(start.as_slice()..end.as_slice()).map_err(io)? {
                let (k, v) = item.map_err(io)?;
                rows.push((k.value().to_vec(), v.value().to_vec()));
            }
        }
        Ok(rows)
    }

    fn replace_all(&self, rows: &Rows) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io)?;
        {
            let mut t = txn.open_table(KV).map_err(io)?;
            t.retain(|_, _| false).map_err(io)?;
            for (k, v) in rows {
                t.insert(k.as_slice(), v.as_slice()).map_err(io)?;
            }
        }
        txn.commit().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The backend-neutral contract is checked in tests/store.rs; this is what only redb does.
    #[test]
    fn survives_reopen_and_locks_out_a_second_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let ops = vec![Op::Put(b"Pa".to_vec(), b"1".to_vec())];
            s.commit(&WriteBatch {
                from_applied: 0,
                to_applied: 7,
                ops,
            })
            .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(s.applied().unwrap(), 7);
        assert_eq!(s.get(b"Pa").unwrap().as_deref(), Some(b"1".as_slice()));
        // Two cores on one file would both write: the second open is refused.
        assert!(RedbStore::open(&path).is_err());
    }
}
