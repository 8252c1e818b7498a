//! The change feed: a core region streams the rows its applied log entries changed, with their
//! versions, to the edges that subscribe to it, and an edge follows it from where it is.
//!
//! A row is a key and its new value (`None`: deleted), as the application stores it; which rows
//! are mirrored, and what they mean, is the application's business. On the wire, over the mesh
//! transport:
//!
//! - a subscriber asks for everything after `from_version` (what it has applied; 0 for nothing);
//! - when the core still holds those changes (its bounded history) it replays them, then streams
//!   each new version's changes as it is applied;
//! - when it does not, it sends a snapshot first: every mirrored row as of one version, in
//!   chunks, the last one marked; the subscriber replaces what it held once the last arrives;
//! - when nothing changes it sends a heartbeat with its latest version, so that the subscriber
//!   knows how fresh it is and notices a dead core.
//!
//! Memory is bounded everywhere: the history by bytes (the oldest versions go first), each
//! subscriber's queue by bytes. A subscriber that falls further behind than its queue is cut
//! loose and picked up again from the history, or from a fresh snapshot when the history has
//! moved past it: resynced, never allowed to hold memory hostage.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use util::config::Invalid;

use crate::app::{AppError, Mirror, SnapshotSource};
use crate::protocol::{FeedMessage, MeshRequest, MeshResponse, Row, Subscribe};
use crate::transport::{Answer, StreamFrame, Transport, TransportError, stream_frame};

/// Subscriptions one peer (one certificate name) may hold at once: an edge follows one core
/// with one, and a second while it replaces a stream that broke. More is a peer holding the
/// core's memory (a history replay, a queue, a task each) for nothing.
pub const SUBSCRIPTIONS_PER_PEER: usize = 4;
/// Feed messages waiting to be sent to one subscriber: little, since the feed's own queue,
/// bounded in bytes, is where a slow subscriber's backlog belongs.
const STREAM_FRAMES: usize = 4;

/// The bounds of a core's feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedLimits {
    /// Encoded changes kept for subscribers that resume; older versions are dropped first.
    pub history_bytes: usize,
    /// Encoded changes queued for one subscriber before it is cut loose and resynced.
    pub subscriber_queue_bytes: usize,
    /// Rows of a snapshot per message (each message also stays under the frame limit).
    pub snapshot_chunk_bytes: usize,
    /// A heartbeat is sent when nothing else was for this long.
    pub heartbeat_ms: u64,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            history_bytes: 64 * 1024 * 1024,
            subscriber_queue_bytes: 8 * 1024 * 1024,
            snapshot_chunk_bytes: 1024 * 1024,
            heartbeat_ms: 500,
        }
    }
}

impl FeedLimits {
    pub fn check(&self) -> Result<(), Invalid> {
        if self.subscriber_queue_bytes == 0 || self.history_bytes == 0 {
            return Err(Invalid(
                "feed.history_bytes and feed.subscriber_queue_bytes must be positive".into(),
            ));
        }
        if !(1024..=crate::frame::FRAME_MAX_BYTES / 2).contains(&self.snapshot_chunk_bytes) {
            return Err(Invalid::at(
                "feed.snapshot_chunk_bytes",
                format!("1024 to {}", crate::frame::FRAME_MAX_BYTES / 2),
            ));
        }
        if !(10..=60_000).contains(&self.heartbeat_ms) {
            return Err(Invalid::at("feed.heartbeat_ms", "10 to 60000"));
        }
        Ok(())
    }
}

/// Encodes a feed message as a frame of the mesh protocol's stream.
fn encode(msg: FeedMessage) -> Result<StreamFrame, ServeError> {
    stream_frame(&MeshResponse::Feed(msg)).map_err(ServeError::Encode)
}

/// One subscription held by a peer, counted in `Feed::peers` until dropped.
struct Held {
    peers: Arc<Mutex<HashMap<String, usize>>>,
    peer: String,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = peers.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                peers.remove(&self.peer);
            }
        }
    }
}

/// Why a subscriber stopped being fed.
#[derive(Debug, thiserror::Error)]
enum ServeError {
    #[error("the subscriber went away")]
    Gone,
    #[error("the history turns over faster than a snapshot is sent")]
    TurnsOver,
    #[error("cannot read a snapshot: {0}")]
    Snapshot(AppError),
    #[error("cannot encode a feed message: {0}")]
    Encode(crate::frame::FrameError),
}

struct Slot {
    id: u64,
    tx: mpsc::UnboundedSender<(u64, StreamFrame)>,
    queued: Arc<AtomicUsize>,
}

struct Hub {
    /// The changes of every version after `base` that changed mirrored rows, oldest first.
    history: VecDeque<(u64, StreamFrame)>,
    history_bytes: usize,
    base: u64,
    /// The last version published (changed rows or not).
    latest: u64,
    slots: Vec<Slot>,
    next_id: u64,
}

/// Where a subscriber stands when it attaches.
enum Attach {
    /// Changes after its version, then live ones.
    Follow {
        replay: Vec<(u64, StreamFrame)>,
        live: mpsc::UnboundedReceiver<(u64, StreamFrame)>,
        queued: Arc<AtomicUsize>,
    },
    /// The history no longer reaches back to its version.
    Behind,
}

/// A core's feed: the history of recent changes and the subscribers following it.
pub struct Feed {
    hub: Mutex<Hub>,
    /// Subscriptions held now, by peer.
    peers: Arc<Mutex<HashMap<String, usize>>>,
    limits: FeedLimits,
    source: Arc<dyn SnapshotSource>,
}

impl Feed {
    /// A feed whose store is at `version`, with snapshots read from `source`.
    pub fn new(version: u64, limits: FeedLimits, source: Arc<dyn SnapshotSource>) -> Self {
        Feed {
            hub: Mutex::new(Hub {
                history: VecDeque::new(),
                history_bytes: 0,
                base: version,
                latest: version,
                slots: Vec::new(),
                next_id: 0,
            }),
            peers: Arc::default(),
            limits,
            source,
        }
    }

    /// Subscriptions `peer` holds now.
    pub fn subscriptions_of(&self, peer: &str) -> usize {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(peer).copied().unwrap_or(0)
    }

    /// Answers `peer`'s subscription from `from`: the stream of the feed, or a refusal when
    /// the peer already holds `SUBSCRIPTIONS_PER_PEER`.
    pub fn subscribe(self: &Arc<Self>, peer: &str, from: u64) -> Answer<MeshResponse> {
        {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            let held = peers.entry(peer.to_owned()).or_insert(0);
            if *held >= SUBSCRIPTIONS_PER_PEER {
                tracing::warn!(%peer, "refused a feed subscription: too many from this peer");
                return Answer::Reply(MeshResponse::Refused(format!(
                    "{peer} already holds {SUBSCRIPTIONS_PER_PEER} feed subscriptions"
                )));
            }
            *held += 1;
        }
        // Given back when the subscription ends, however it ends.
        let held = Held {
            peers: Arc::clone(&self.peers),
            peer: peer.to_owned(),
        };
        let (tx, rx) = mpsc::channel(STREAM_FRAMES);
        tokio::spawn(Arc::clone(self).serve(held, from, tx));
        Answer::Stream(rx)
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, Hub> {
        self.hub.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The last version published.
    pub fn latest(&self) -> u64 {
        self.hub().latest
    }

    /// How many subscribers are following.
    pub fn subscribers(&self) -> usize {
        self.hub().slots.len()
    }

    /// Publishes the rows changed at `version` (in version order; a version that changed no
    /// mirrored row is published with none, so heartbeats say how far the core is).
    pub fn publish(&self, version: u64, rows: Vec<Row>) {
        let frame = if rows.is_empty() {
            None
        } else {
            match encode(FeedMessage::Changes { version, rows }) {
                Ok(f) => Some(f),
                Err(e) => {
                    // Subscribers would miss this version: start them over from a snapshot.
                    tracing::error!(version, error = %e, "could not encode feed changes");
                    self.reset(version);
                    return;
                }
            }
        };
        let mut hub = self.hub();
        if version <= hub.latest {
            return;
        }
        hub.latest = version;
        let Some(frame) = frame else {
            return;
        };
        let len = frame.len();
        hub.history.push_back((version, frame.clone()));
        hub.history_bytes += len;
        while hub.history_bytes > self.limits.history_bytes {
            let Some((v, f)) = hub.history.pop_front() else {
                break;
            };
            hub.history_bytes -= f.len();
            hub.base = v;
        }
        let limit = self.limits.subscriber_queue_bytes;
        hub.slots.retain(|s| {
            let queued = s.queued.fetch_add(len, Ordering::AcqRel) + len;
            if queued > limit {
                // Dropping the sender ends its live stream: it resumes from the history.
                tracing::warn!(
                    subscriber = s.id,
                    queued,
                    "feed subscriber fell behind; resyncing"
                );
                return false;
            }
            s.tx.send((version, frame.clone())).is_ok()
        });
    }

    /// Forgets the history: the store was replaced (a Raft snapshot was installed) and is now at
    /// `version`. Every subscriber starts over from a snapshot.
    pub fn reset(&self, version: u64) {
        let mut hub = self.hub();
        hub.history.clear();
        hub.history_bytes = 0;
        hub.base = version.max(hub.latest);
        hub.latest = hub.base;
        hub.slots.clear();
    }

    fn attach(&self, from: u64) -> Attach {
        let mut hub = self.hub();
        if from < hub.base {
            return Attach::Behind;
        }
        let replay = hub
            .history
            .iter()
            .filter(|(v, _)| *v > from)
            .cloned()
            .collect();
        let (tx, live) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let id = hub.next_id;
        hub.next_id += 1;
        hub.slots.push(Slot {
            id,
            tx,
            queued: Arc::clone(&queued),
        });
        Attach::Follow {
            replay,
            live,
            queued,
        }
    }

    /// Feeds one subscriber, from `from`, into `out` until it goes away (`out` is closed) or a
    /// snapshot cannot be read. Runs as its own task.
    async fn serve(self: Arc<Self>, held: Held, from: u64, out: mpsc::Sender<StreamFrame>) {
        let peer = &held.peer;
        match self.follow(from, &out).await {
            Ok(()) => tracing::debug!(%peer, "feed subscriber left"),
            Err(e) => tracing::warn!(%peer, error = %e, "stopped feeding a subscriber"),
        }
    }

    async fn follow(
        &self,
        mut from: u64,
        out: &mpsc::Sender<StreamFrame>,
    ) -> Result<(), ServeError> {
        let heartbeat = Duration::from_millis(self.limits.heartbeat_ms);
        // Snapshots sent in a row without catching up: the history turns over faster than
        // one snapshot can be read and sent, and the subscriber is better off reconnecting.
        let mut snapshots = 0;
        loop {
            let (replay, mut live, queued) = match self.attach(from) {
                Attach::Follow {
                    replay,
                    live,
                    queued,
                } => (replay, live, queued),
                Attach::Behind => {
                    snapshots += 1;
                    if snapshots > 3 {
                        return Err(ServeError::TurnsOver);
                    }
                    from = self.send_snapshot(out).await?;
                    continue;
                }
            };
            snapshots = 0;
            for (v, f) in replay {
                out.send(f).await.map_err(|_| ServeError::Gone)?;
                from = v;
            }
            'live: loop {
                match tokio::time::timeout(heartbeat, live.recv()).await {
                    Ok(Some((v, f))) => {
                        queued.fetch_sub(f.len(), Ordering::AcqRel);
                        if v > from {
                            out.send(f).await.map_err(|_| ServeError::Gone)?;
                            from = v;
                        }
                    }
                    // Cut loose (fell behind) or reset: attach again from where it is.
                    Ok(None) => break,
                    Err(_) => {
                        // Every change up to `latest` is in `live` by now (published under the
                        // hub's lock): sent first, so that the heartbeat says nothing else
                        // changed up to its version, and a subscriber may take it as applied.
                        // Cut loose meanwhile, a change may be missing: no heartbeat then,
                        // attach again.
                        let latest = self.latest();
                        loop {
                            match live.try_recv() {
                                Ok((v, f)) => {
                                    queued.fetch_sub(f.len(), Ordering::AcqRel);
                                    if v > from {
                                        out.send(f).await.map_err(|_| ServeError::Gone)?;
                                        from = v;
                                    }
                                }
                                Err(mpsc::error::TryRecvError::Empty) => break,
                                Err(mpsc::error::TryRecvError::Disconnected) => break 'live,
                            }
                        }
                        let version = latest.max(from);
                        let f = encode(FeedMessage::Heartbeat { version })?;
                        out.send(f).await.map_err(|_| ServeError::Gone)?;
                    }
                }
            }
        }
    }

    /// Sends a snapshot in chunks; returns its version.
    async fn send_snapshot(&self, out: &mpsc::Sender<StreamFrame>) -> Result<u64, ServeError> {
        let (version, rows) = self
            .source
            .feed_snapshot()
            .await
            .map_err(ServeError::Snapshot)?;
        let mut chunk = Vec::new();
        let mut bytes = 0;
        let mut rows = rows.into_iter().peekable();
        loop {
            let next = rows.next();
            let last = rows.peek().is_none();
            if let Some(row) = next {
                bytes += row.0.len() + row.1.as_ref().map_or(0, Vec::len) + 16;
                chunk.push(row);
            }
            if last || bytes >= self.limits.snapshot_chunk_bytes {
                let msg = FeedMessage::Snapshot {
                    version,
                    rows: std::mem::take(&mut chunk),
                    last,
                };
                let f = encode(msg)?;
                out.send(f).await.map_err(|_| ServeError::Gone)?;
                bytes = 0;
            }
            if last {
                return Ok(version);
            }
        }
    }
}

/// A core a subscriber can follow.
#[derive(Clone, Debug)]
pub struct Core {
    pub name: String,
    pub addr: SocketAddr,
}

/// Why following one core stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("{core} sent nothing for {after:?}")]
    Silent { core: String, after: Duration },
    #[error("{core} ended the feed")]
    Ended { core: String },
    #[error("{core} broke the feed's order (a snapshot interrupted, or not a feed)")]
    Protocol { core: String },
    #[error("the mirror refused a change: {0}")]
    Mirror(AppError),
}

/// Follows the feed of `core` into `mirror` until the stream breaks. A core that sends nothing
/// for `silence` (several heartbeats) is taken for dead. Partial snapshots are held here and
/// installed whole.
pub async fn follow<M: Mirror>(
    transport: &Transport,
    core: &Core,
    mirror: &mut M,
    silence: Duration,
) -> Result<(), FollowError> {
    let request = MeshRequest::Subscribe(Subscribe {
        from_version: mirror.version(),
    });
    let mut stream = transport
        .open_stream(&core.name, core.addr, &request, silence)
        .await?;
    let name = || core.name.clone();
    let mut pending: Option<(u64, Vec<Row>)> = None;
    loop {
        let msg = match tokio::time::timeout(silence, stream.next::<MeshResponse>()).await {
            Ok(Ok(Some(MeshResponse::Feed(m)))) => m,
            Ok(Ok(Some(MeshResponse::Refused(reason)))) => {
                return Err(TransportError::Refused {
                    peer: name(),
                    reason,
                }
                .into());
            }
            Ok(Ok(Some(_))) => return Err(FollowError::Protocol { core: name() }),
            Ok(Ok(None)) => return Err(FollowError::Ended { core: name() }),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                return Err(FollowError::Silent {
                    core: name(),
                    after: silence,
                });
            }
        };
        match msg {
            FeedMessage::Snapshot {
                version,
                rows,
                last,
            } => {
                let (v, mut held) = pending.take().unwrap_or((version, Vec::new()));
                if v != version {
                    return Err(FollowError::Protocol { core: name() });
                }
                held.extend(rows);
                if last {
                    mirror.install(version, held).map_err(FollowError::Mirror)?;
                } else {
                    pending = Some((version, held));
                }
            }
            FeedMessage::Changes { version, rows } => {
                if pending.is_some() {
                    return Err(FollowError::Protocol { core: name() });
                }
                if version > mirror.version() {
                    mirror.apply(version, rows).map_err(FollowError::Mirror)?;
                }
            }
            FeedMessage::Heartbeat { version } => {
                if pending.is_some() {
                    return Err(FollowError::Protocol { core: name() });
                }
                mirror.heartbeat(version);
            }
        }
    }
}

/// Follows the first of `cores` that answers into `mirror`, for good: when one stops (dies,
/// goes silent, ends the stream) the next is tried, resuming from the mirror's version, with a
/// pause that grows to 2 s while none answers. Cancel the future to stop.
pub async fn follow_cores<M: Mirror>(
    transport: &Transport,
    cores: &[Core],
    mirror: &mut M,
    silence: Duration,
) {
    const PAUSE_MIN: Duration = Duration::from_millis(50);
    const PAUSE_MAX: Duration = Duration::from_secs(2);
    let mut pause = PAUSE_MIN;
    for core in cores.iter().cycle() {
        let before = mirror.version();
        let result = follow(transport, core, mirror, silence).await;
        if let Err(e) = result {
            tracing::warn!(core = %core.name, version = mirror.version(), error = %e, "feed interrupted; trying the next core");
        }
        if mirror.version() > before {
            pause = PAUSE_MIN;
        } else {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PAUSE_MAX);
        }
    }
}
