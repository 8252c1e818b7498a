//! The Raft log and vote, in a redb file of their own: one table of entries keyed by index, one
//! of metadata (vote, committed, last purged). Every append is one transaction, fsynced before
//! Raft is told the entries are durable.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AnyError, LogId, LogState, RaftLogReader, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::{Entry, Mesh, NodeId};
use codec::Format;

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "last_purged";
/// Where a restore (`backup::restore`) began this log: it holds nothing of its own up to there.
const RESTORED: &str = "restored";

/// The format of every value in the log file (openraft's entries, votes and log ids).
pub const LOG: Format = Format {
    label: "raft log",
    version: 1,
};

/// The log store; cheap to clone (replication streams each get one as their reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

fn read_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::read_logs(AnyError::error(e.to_string())).into()
}

fn write_err(e: impl ToString) -> StorageError<NodeId> {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

fn enc<T: Serialize>(v: &T) -> Result<Vec<u8>, StorageError<NodeId>> {
    codec::encode_as(LOG, v).map_err(write_err)
}

fn dec<T: DeserializeOwned>(b: &[u8]) -> Result<T, StorageError<NodeId>> {
    codec::decode_as(LOG, b).map_err(read_err)
}

impl LogStore {
    /// Opens (or creates) the log file.
    pub fn open(path: &Path) -> Result<Self, StorageError<NodeId>> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        // The log carries every write, orders and their shoppers' details among them: readable
        // by this process's user alone.
        util::files::private(path).map_err(|e| write_err(format!("{}: {e}", path.display())))?;
        let db =
            Database::create(path).map_err(|e| write_err(format!("{}: {e}", path.display())))?;
        Self::open_db(db)
    }

    /// The log on any redb backend (the tests of power losses give it a disk that loses what
    /// was not synced).
    pub fn on_backend(backend: impl redb::StorageBackend) -> Result<Self, StorageError<NodeId>> {
        let db = redb::Builder::new()
            .create_with_backend(backend)
            .map_err(write_err)?;
        Self::open_db(db)
    }

    fn open_db(db: Database) -> Result<Self, StorageError<NodeId>> {
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(ENTRIES).map_err(write_err)?;
        txn.open_table(META).map_err(write_err)?;
        txn.commit().map_err(write_err)?;
        Ok(LogStore { db: Arc::new(db) })
    }

    /// The last log id known committed (what Raft recorded with `save_committed`).
    pub fn committed(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError<NodeId>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(META).map_err(read_err)?;
        let v = t.get(key).map_err(read_err)?;
        v.map(|v| dec(v.value())).transpose()
    }

    /// Writes one metadata value; `durable` ones are fsynced before this returns, the others
    /// reach the disk with the next durable commit.
    fn put_meta<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        durable: bool,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = enc(value)?;
        let mut txn = self.db.begin_write().map_err(write_err)?;
        if !durable {
            txn.set_durability(redb::Durability::None)
                .map_err(write_err)?;
        }
        {
            let mut t = txn.open_table(META).map_err(write_err)?;
            t.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }

    /// The id of the entry at `index`, if the log holds it.
    pub fn log_id_at(&self, index: u64) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(ENTRIES).map_err(read_err)?;
        match t.get(index).map_err(read_err)? {
            Some(v) => Ok(Some(dec::<Entry>(v.value())?.log_id)),
            None => Ok(None),
        }
    }

    /// The entries in `range`, in order, as many as fit `max_bytes` as stored (one at least,
    /// however large, so that replication always makes progress).
    pub fn entries(
        &self,
        range: std::ops::Range<u64>,
        max_bytes: usize,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(ENTRIES).map_err(read_err)?;
        let mut out = Vec::new();
        let mut bytes = 0;
        for item in t.range(range).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            if !out.is_empty() && bytes + v.value().len() > max_bytes {
                break;
            }
            bytes += v.value().len();
            out.push(dec::<Entry>(v.value())?);
        }
        Ok(out)
    }

    /// The id of the last entry the log holds or purged.
    pub fn last_log_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.last_entry_id()?.or(self.get_meta(PURGED)?))
    }

    /// Whether the log holds nothing of the group's: no entry, and nothing purged but what a
    /// restore recorded (a member restored from a backup holds the backup's state, not the
    /// log that led to it, until the leader sends it the entries after). Such a member grants
    /// no vote: it could have voted, as the member it replaces, in terms it has no record of.
    pub fn holds_nothing_of_its_own(&self) -> Result<bool, StorageError<NodeId>> {
        if self.last_entry_id()?.is_some() {
            return Ok(false);
        }
        let purged: Option<LogId<NodeId>> = self.get_meta(PURGED)?;
        let restored: Option<LogId<NodeId>> = self.get_meta(RESTORED)?;
        Ok(purged.is_none() || purged == restored)
    }

    /// Whether nothing was ever written to this log: no entry, no vote, nothing committed or
    /// purged (a new file).
    pub fn is_new(&self) -> Result<bool, StorageError<NodeId>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let entries = txn.open_table(ENTRIES).map_err(read_err)?;
        let meta = txn.open_table(META).map_err(read_err)?;
        Ok(entries.is_empty().map_err(read_err)? && meta.is_empty().map_err(read_err)?)
    }

    /// Records, in a new log, that the group's entries up to `at` are applied and committed
    /// (a backup's state was installed) and none of them is held: the leader sends what
    /// follows; and `vote`, if given (`backup::restore`). Fsynced before it returns.
    pub fn mark_restored(
        &self,
        at: LogId<NodeId>,
        vote: Option<Vote<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        if !self.is_new()? {
            return Err(write_err(
                "a restore needs a new log; this one holds entries or a vote",
            ));
        }
        let bytes = enc(&at)?;
        let committed = enc(&Some(at))?;
        let vote = vote.map(|v| enc(&v)).transpose()?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut m = txn.open_table(META).map_err(write_err)?;
            m.insert(PURGED, bytes.as_slice()).map_err(write_err)?;
            m.insert(RESTORED, bytes.as_slice()).map_err(write_err)?;
            m.insert(COMMITTED, committed.as_slice())
                .map_err(write_err)?;
            if let Some(v) = &vote {
                m.insert(VOTE, v.as_slice()).map_err(write_err)?;
            }
        }
        txn.commit().map_err(write_err)
    }

    fn last_entry_id(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let t = txn.open_table(ENTRIES).map_err(read_err)?;
        match t.last().map_err(read_err)? {
            Some((_, v)) => Ok(Some(dec::<Entry>(v.value())?.log_id)),
            None => Ok(None),
        }
    }

    /// Removes the entries in `range` in one transaction, and records `purged` if given.
    fn remove(
        &self,
        range: impl RangeBounds<u64>,
        purged: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut t = txn.open_table(ENTRIES).map_err(write_err)?;
            t.retain_in(range, |_, _| false).map_err(write_err)?;
            if let Some(p) = purged {
                let bytes = enc(&p)?;
                let mut m = txn.open_table(META).map_err(write_err)?;
                m.insert(PURGED, bytes.as_slice()).map_err(write_err)?;
            }
        }
        txn.commit().map_err(write_err)
    }
}

/// Most bytes of entries one read returns for replication (one entry is always returned, however
/// large). A message carries at most `network::MESSAGE_ENTRIES_MAX_BYTES` of them; a read may
/// cover more, so that a new leader's probe (which sends no entries a member already holds)
/// spans more of the log per round trip (`network.rs`). The price: a follower far behind is
/// caught up with reads of up to 8 MiB for each 256 KiB message sent.
const REPLICATION_READ_MAX_BYTES: usize = 8 * 1024 * 1024;

impl RaftLogReader<Mesh> for LogStore {
    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let log = self.clone();
        crate::sim::blocking(move || log.entries(start..end, REPLICATION_READ_MAX_BYTES))
            .await
            .map_err(read_err)?
    }

    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError<NodeId>> {
        let db = Arc::clone(&self.db);
        let (start, end) = (range.start_bound().cloned(), range.end_bound().cloned());
        crate::sim::blocking(move || {
            let txn = db.begin_read().map_err(read_err)?;
            let t = txn.open_table(ENTRIES).map_err(read_err)?;
            let mut out = Vec::new();
            for item in t.range::<u64>((start, end)).map_err(read_err)? {
                let (_, v) = item.map_err(read_err)?;
                out.push(dec::<Entry>(v.value())?);
            }
            Ok(out)
        })
        .await
        .map_err(read_err)?
    }
}

impl RaftLogStorage<Mesh> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<Mesh>, StorageError<NodeId>> {
        let purged: Option<LogId<NodeId>> = self.get_meta(PURGED)?;
        let last = self.last_log_id()?;
        Ok(LogState {
            last_purged_log_id: purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        // A vote must survive a crash, or a member could vote twice in one term.
        self.put_meta(VOTE, vote, true)
            .map_err(|e| StorageIOError::write_vote(AnyError::error(e.to_string())).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.get_meta(VOTE)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        // Only a hint for a faster restart (what is committed can always be learnt again from
        // the group), so it rides on the next fsync instead of paying one of its own.
        self.put_meta(COMMITTED, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Ok(self.get_meta::<Option<LogId<NodeId>>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<Mesh>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let rows: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, enc(&e)?)))
            .collect::<Result<_, StorageError<NodeId>>>()?;
        let db = Arc::clone(&self.db);
        let result = crate::sim::blocking(move || -> Result<(), String> {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            {
                let mut t = txn.open_table(ENTRIES).map_err(|e| e.to_string())?;
                for (index, bytes) in &rows {
                    t.insert(*index, bytes.as_slice())
                        .map_err(|e| e.to_string())?;
                }
            }
            // A crash here: the entries never became durable, so they were never committed.
            crate::failpoint::hit(
                "raft.log.before_commit",
                rows.iter().map(|(_, b)| b.len()).sum(),
            );
            // Durability::Immediate (redb's default): fsynced when commit returns.
            txn.commit().map_err(|e| e.to_string())
        })
        .await
        .map_err(write_err)?;
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.clone())));
                Err(write_err(e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove((Bound::Included(log_id.index), Bound::Unbounded), None)
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove(..=log_id.index, Some(log_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A vote is synced before it is answered: after a power loss it is still there, so a
    /// member never votes twice in one term. (Saving it without a sync fails this test.)
    #[tokio::test]
    async fn a_vote_survives_a_power_loss() {
        let disk = util::disk_faults::LosingDisk::new();
        let mut log = LogStore::on_backend(disk.clone()).unwrap();
        let vote = Vote::new(7, 2);
        log.save_vote(&vote).await.unwrap();
        let after = disk.power_loss();
        drop(log);
        let mut log = LogStore::on_backend(after).unwrap();
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
    }
}
