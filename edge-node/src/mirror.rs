//! The edge's copy of its region's catalog, prices, promotions, markets and inventory: the
//! commerce `State` the change feed's rows make (loaded with `State::load_row`, as a core loads
//! its store), its version, and when a core was last heard from. Reads take a read lock for
//! the time of one response; the feed takes the write lock per version.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use commerce::state::{RowCodec, State};
use replication::feed::{Mirror, Row};
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::time::Instant;

/// The values of feed rows are store records: versioned bincode.
struct Records;

/// The record format of the rows a core sends (its store's).
const RECORD_FORMAT: u8 = 1;

impl RowCodec for Records {
    fn decode<T: DeserializeOwned>(&self, _key: &[u8], value: &[u8]) -> Result<T, String> {
        replication::codec::decode(RECORD_FORMAT, value).map_err(|e| e.to_string())
    }
}

/// What the feed has made, shared by every request.
#[derive(Clone)]
pub struct Catalog {
    state: Arc<RwLock<State>>,
    /// The version applied; its changes wake whoever waits for one.
    version: Arc<watch::Sender<u64>>,
    /// When a core last said anything (a change, a snapshot or a heartbeat).
    heard: Arc<watch::Sender<Option<Instant>>>,
    /// The newest version a core said it has applied.
    latest: Arc<std::sync::atomic::AtomicU64>,
}

impl Default for Catalog {
    fn default() -> Self {
        Catalog {
            state: Arc::default(),
            version: Arc::new(watch::channel(0).0),
            heard: Arc::new(watch::channel(None).0),
            latest: Arc::default(),
        }
    }
}

impl Catalog {
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn version(&self) -> u64 {
        *self.version.borrow()
    }

    /// Versions the core has applied that this mirror has not (its lag).
    pub fn lag(&self) -> u64 {
        self.latest
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(self.version())
    }

    /// How long since a core was last heard from; `None` if none ever was.
    pub fn silence(&self) -> Option<std::time::Duration> {
        self.heard.borrow().map(|t| t.elapsed())
    }

    /// Waits until `version` is applied, at most `timeout`; whether it was.
    pub async fn reached(&self, version: u64, timeout: std::time::Duration) -> bool {
        let mut rx = self.version.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|v| *v >= version))
            .await
            .is_ok()
    }

    fn load(state: &mut State, rows: Vec<Row>) -> Result<(), String> {
        for (k, v) in rows {
            state.load_row(&k, v.as_deref(), &Records)?;
        }
        Ok(())
    }

    fn applied(&self, version: u64) {
        self.version.send_replace(version);
        self.heard(version);
    }

    fn heard(&self, version: u64) {
        self.latest
            .fetch_max(version, std::sync::atomic::Ordering::Relaxed);
        self.heard.send_replace(Some(Instant::now()));
    }
}

impl Mirror for Catalog {
    fn version(&self) -> u64 {
        Catalog::version(self)
    }

    fn install(&mut self, version: u64, rows: Vec<Row>) -> Result<(), String> {
        // Built aside, swapped in whole: readers see the old state or the new, never half.
        let mut state = State::new();
        Self::load(&mut state, rows)?;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = state;
        self.applied(version);
        Ok(())
    }

    fn apply(&mut self, version: u64, rows: Vec<Row>) -> Result<(), String> {
        Self::load(
            &mut self.state.write().unwrap_or_else(|p| p.into_inner()),
            rows,
        )?;
        self.applied(version);
        Ok(())
    }

    fn heartbeat(&mut self, version: u64) {
        self.heard(version);
    }
}
