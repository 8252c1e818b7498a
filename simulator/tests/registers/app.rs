//! The application the simulated group carries: registers and a counter in redb on a disk
//! that loses what was not synced, with commands deduplicated by their operation's id (a
//! write the group retried after a lost reply applies once, as the mesh's own application
//! does). Each apply extends a hash chain over every entry applied, kept in the store and its
//! snapshots; members report their chain at each index to `Observed`, where two members that
//! applied different prefixes up to one index are caught.

use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use replication::app::{App, AppEntry, AppError};
use replication::protocol::Payload;
use simulator::Observed;

const REGISTERS: TableDefinition<&str, &str> = TableDefinition::new("registers");
/// Operation id → the reply it got.
const DONE: TableDefinition<&str, &str> = TableDefinition::new("done");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub struct SimApp {
    db: Database,
    member: String,
    observed: Arc<Mutex<Observed>>,
}

/// A number kept in the meta table (the counter, the chain of applied entries); 0 when absent.
fn get_u64(t: &impl ReadableTable<&'static str, &'static [u8]>, key: &str) -> u64 {
    t.get(key)
        .ok()
        .flatten()
        .and_then(|v| v.value().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

impl SimApp {
    pub fn on_disk(
        disk: util::disk_faults::LosingDisk,
        member: &str,
        observed: Arc<Mutex<Observed>>,
    ) -> Result<SimApp, String> {
        let db = redb::Builder::new()
            .create_with_backend(disk)
            .map_err(|e| e.to_string())?;
        let txn = db.begin_write().map_err(|e| e.to_string())?;
        txn.open_table(REGISTERS).map_err(|e| e.to_string())?;
        txn.open_table(DONE).map_err(|e| e.to_string())?;
        txn.open_table(META).map_err(|e| e.to_string())?;
        txn.commit().map_err(|e| e.to_string())?;
        Ok(SimApp {
            db,
            member: member.to_owned(),
            observed,
        })
    }
}

/// Runs one command (`op set key value`, `op get key`, `op add`, `op count`) against the
/// tables; the reply.
fn run(
    registers: &mut redb::Table<&str, &str>,
    meta: &mut redb::Table<&str, &[u8]>,
    command: &str,
) -> Result<String, AppError> {
    let words: Vec<&str> = command.split(' ').collect();
    Ok(match words.as_slice() {
        [_, "set", key, value] => {
            registers.insert(*key, *value)?;
            "ok".into()
        }
        [_, "get", key] => registers
            .get(*key)?
            .map_or_else(|| "-".into(), |v| v.value().to_owned()),
        [_, "add"] => {
            let n = get_u64(meta, "counter") + 1;
            meta.insert("counter", n.to_be_bytes().as_slice())?;
            n.to_string()
        }
        [_, "count"] => get_u64(meta, "counter").to_string(),
        _ => return Err(std::io::Error::other(format!("not a command: {command}")).into()),
    })
}

impl App for SimApp {
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, AppError> {
        let txn = self.db.begin_write()?;
        let mut replies = Vec::new();
        let mut chains = Vec::new();
        {
            let mut registers = txn.open_table(REGISTERS)?;
            let mut done = txn.open_table(DONE)?;
            let mut m = txn.open_table(META)?;
            let mut at = get_u64(&m, "chain");
            for e in &entries {
                at = simulator::observed_digest(at, e.index, e.payload.as_ref());
                chains.push((e.index, at));
                let Some(p) = &e.payload else {
                    replies.push(Payload(Vec::new()));
                    continue;
                };
                let command = String::from_utf8(p.0.clone())?;
                let op = command.split(' ').next().unwrap_or_default().to_owned();
                let before = done.get(op.as_str())?.map(|r| r.value().to_owned());
                let reply = match before {
                    Some(r) => r,
                    None => {
                        let r = run(&mut registers, &mut m, &command)?;
                        done.insert(op.as_str(), r.as_str())?;
                        r
                    }
                };
                replies.push(Payload(reply.into_bytes()));
            }
            m.insert("chain", at.to_be_bytes().as_slice())?;
            m.insert("raft", meta.as_slice())?;
        }
        txn.commit()?;
        let mut o = self.observed.lock().unwrap();
        for (index, c) in chains {
            o.applied(&self.member, index, c);
        }
        Ok(replies)
    }

    fn meta(&self) -> Result<Option<Vec<u8>>, AppError> {
        let txn = self.db.begin_read()?;
        let t = txn.open_table(META)?;
        Ok(t.get("raft")?.map(|v| v.value().to_vec()))
    }

    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        let txn = self.db.begin_read()?;
        let mut lines = Vec::new();
        for item in txn.open_table(REGISTERS)?.iter()? {
            let (k, v) = item?;
            lines.push(format!("r {} {}", k.value(), v.value()));
        }
        for item in txn.open_table(DONE)?.iter()? {
            let (k, v) = item?;
            lines.push(format!("d {} {}", k.value(), v.value()));
        }
        let m = txn.open_table(META)?;
        lines.push(format!("c {}", get_u64(&m, "counter")));
        lines.push(format!("h {}", get_u64(&m, "chain")));
        let meta = m
            .get("raft")?
            .map(|v| v.value().to_vec())
            .unwrap_or_default();
        Ok((lines.join("\n").into_bytes(), meta))
    }

    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), AppError> {
        let txn = self.db.begin_write()?;
        {
            let mut registers = txn.open_table(REGISTERS)?;
            let mut done = txn.open_table(DONE)?;
            let mut m = txn.open_table(META)?;
            registers.retain(|_, _| false)?;
            done.retain(|_, _| false)?;
            for line in std::str::from_utf8(snapshot)?.lines() {
                let bad = || std::io::Error::other(format!("bad snapshot line: {line}"));
                match line.split(' ').collect::<Vec<_>>().as_slice() {
                    ["r", k, v] => {
                        registers.insert(*k, *v)?;
                    }
                    ["d", k, v] => {
                        done.insert(*k, *v)?;
                    }
                    ["c", n] | ["h", n] => {
                        let n: u64 = n.parse().map_err(|_| bad())?;
                        let key = if line.starts_with('c') {
                            "counter"
                        } else {
                            "chain"
                        };
                        m.insert(key, n.to_be_bytes().as_slice())?;
                    }
                    _ => return Err(bad().into()),
                }
            }
            m.insert("raft", meta.as_slice())?;
        }
        Ok(txn.commit()?)
    }
}
