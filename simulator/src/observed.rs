//! What members report as they apply, where two members that applied different entries at one
//! index are caught. An application reports what it applied at each index: a digest of the
//! entry, or of every entry up to it (a chain kept in its store survives its restarts and
//! travels in its snapshots, and so compares whole prefixes); `Observing` reports the entry
//! alone for an application that keeps no chain.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

use replication::app::{App, AppEntry, AppError};
use replication::protocol::Payload;

/// What every member reported as it applied.
#[derive(Default)]
pub struct Observed {
    /// Per index: the digest first reported, and by whom.
    digests: BTreeMap<u64, (u64, String)>,
    pub violations: Vec<String>,
}

impl Observed {
    /// Member `member` applied what `digest` stands for at `index`.
    pub fn applied(&mut self, member: &str, index: u64, digest: u64) {
        match self.digests.get(&index) {
            Some((d, first)) if *d != digest => self.violations.push(format!(
                "{member} applied a different entry at index {index} than {first} did"
            )),
            Some(_) => {}
            None => {
                self.digests.insert(index, (digest, member.to_owned()));
            }
        }
    }
}

/// A digest of `payload` at `index` (after `prev`, for a chain).
pub fn digest(prev: u64, index: u64, payload: Option<&Payload>) -> u64 {
    let mut h = DefaultHasher::new();
    (prev, index, payload.map(|p| &p.0)).hash(&mut h);
    h.finish()
}

/// `app`, reporting each entry it applies to `observed` as member `member`.
pub struct Observing<A> {
    pub app: A,
    pub member: String,
    pub observed: Arc<Mutex<Observed>>,
}

impl<A: App> App for Observing<A> {
    fn apply(&self, entries: Vec<AppEntry>, meta: Vec<u8>) -> Result<Vec<Payload>, AppError> {
        let digests: Vec<(u64, u64)> = entries
            .iter()
            .map(|e| (e.index, digest(0, e.index, e.payload.as_ref())))
            .collect();
        let replies = self.app.apply(entries, meta)?;
        let mut o = self.observed.lock().unwrap();
        for (index, d) in digests {
            o.applied(&self.member, index, d);
        }
        Ok(replies)
    }

    fn meta(&self) -> Result<Option<Vec<u8>>, AppError> {
        self.app.meta()
    }

    fn snapshot(&self) -> Result<(Vec<u8>, Vec<u8>), AppError> {
        self.app.snapshot()
    }

    fn install(&self, snapshot: &[u8], meta: Vec<u8>) -> Result<(), AppError> {
        self.app.install(snapshot, meta)
    }
}
