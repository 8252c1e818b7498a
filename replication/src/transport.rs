//! The mesh's transport: request/reply over QUIC (quinn) with mutual TLS. One QUIC endpoint per
//! node serves and calls; every call is one bidirectional stream carrying one request frame and
//! one reply frame. Connections to a peer are reused, and re-made when they break.
//!
//! A peer is known by the node name of its verified certificate, never by what it says. Bad
//! input from a connected peer (garbage, a truncated or oversized frame, another protocol
//! version) is refused on that stream with a logged reason; the connection and every other
//! peer are served on. A connection without a certificate of the deployment CA never gets past
//! the handshake.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, VarInt};
use rustls::pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::frame::{self, FRAME_MAX_BYTES, FrameError};
use crate::revoked::Revoked;
use crate::tls::{NodeTls, Peer, TlsError};

/// Streams one connection may have open at once, connections one peer (a node name) may have
/// open to a node, and requests one peer may have in hand at a node, on whatever connections,
/// open or closed since: they bound the work one peer can queue on a node. A node keeps one
/// connection to each peer and makes a new one only when it breaks (one handshake at a time),
/// so a few are room for a restart's overlap.
const STREAMS_PER_CONNECTION: u32 = 256;
const CONNECTIONS_PER_PEER: usize = 8;
const REQUESTS_PER_PEER: usize = 2_048;
/// How often the list of revoked certificates is looked at for changes.
const REVOKED_POLL: Duration = Duration::from_secs(2);
/// A connection that has heard nothing from its peer for this long is closed, so one to a peer
/// that died is not kept for calls that would only time out. Keep-alives (below) keep healthy
/// connections open across the 250 ms round trips of inter-region links; a peer that restarted
/// answers them with a stateless reset (see `NodeTls::restart_keys`), closing the old connection
/// sooner still.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3);
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// Application error code on a stream refused for bad input.
const REFUSED: VarInt = VarInt::from_u32(1);

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Revoked(#[from] crate::revoked::RevokedError),
    #[error("bind {addr}: {why}")]
    Bind {
        addr: SocketAddr,
        why: std::io::Error,
    },
    #[error("connect to {peer} at {addr}: {why}")]
    Connect {
        peer: String,
        addr: SocketAddr,
        why: String,
    },
    #[error("call to {peer}: {why}")]
    Call { peer: String, why: FrameError },
    #[error("{peer} refused the request: {reason}")]
    Refused { peer: String, reason: String },
    #[error("call to {peer} timed out after {after:?}")]
    Timeout { peer: String, after: Duration },
}

/// What a reply frame carries: the handler's answer, or why the request was refused.
#[derive(Serialize, Deserialize)]
enum Reply<T> {
    Ok(T),
    Refused(String),
}

/// Answers requests from peers.
pub trait Handler: Send + Sync + 'static {
    type Request: DeserializeOwned + Send + 'static;
    type Response: Serialize + Send + 'static;

    /// Answers `request` from `peer` (the name and role its certificate carries).
    fn handle(
        &self,
        peer: &Peer,
        request: Self::Request,
    ) -> impl Future<Output = Answer<Self::Response>> + Send;
}

/// How a request is answered: with one reply, or with a stream of them.
pub enum Answer<R> {
    Reply(R),
    /// Frames made by `stream_frame` (of `R`), sent in order as they arrive; the stream ends
    /// when the sender is dropped. The channel's bound is the backpressure: while the peer
    /// reads slowly, whoever feeds the channel waits.
    Stream(tokio::sync::mpsc::Receiver<StreamFrame>),
}

/// One encoded reply of a stream: encoded once, it can go to any number of streams.
#[derive(Clone, Debug)]
pub struct StreamFrame(Arc<[u8]>);

impl StreamFrame {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Encodes `reply` as a frame of a stream (`Answer::Stream`), read by `Stream::next`.
pub fn stream_frame<R: Serialize>(reply: &R) -> Result<StreamFrame, FrameError> {
    frame::encode(&Reply::Ok(reply)).map(|bytes| StreamFrame(bytes.into()))
}

/// The receiving end of a streamed answer.
pub struct Stream {
    peer: String,
    recv: quinn::RecvStream,
    /// Kept open: finishing or dropping it would tell the server we are gone.
    _send: Abandoned,
    max_frame: usize,
}

impl Stream {
    /// The next reply; `None` once the server ended the stream.
    pub async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, TransportError> {
        let call_err = |why: FrameError| TransportError::Call {
            peer: self.peer.clone(),
            why,
        };
        match frame::read_next::<Reply<T>>(&mut self.recv, self.max_frame).await {
            Ok(Some(Reply::Ok(r))) => Ok(Some(r)),
            Ok(Some(Reply::Refused(reason))) => Err(TransportError::Refused {
                peer: self.peer.clone(),
                reason,
            }),
            Ok(None) => Ok(None),
            Err(e) => Err(call_err(e)),
        }
    }
}

/// One node's endpoint.
pub struct Transport {
    endpoint: Endpoint,
    node: String,
    max_frame: usize,
    connections: Arc<Mutex<HashMap<PeerAt, quinn::Connection>>>,
    /// One handshake at a time to each peer: the calls that find no connection wait for the
    /// one being made rather than each making its own (a peer takes only so many at once).
    dialing: Arc<std::sync::Mutex<HashMap<PeerAt, Arc<Mutex<()>>>>>,
    /// Certificates no longer trusted (`revoked.txt`), and what each peer holds here, so that
    /// a peer revoked while connected is cut off.
    revoked: Arc<Revoked>,
    loads: PeerLoads,
    /// Peers reached somewhere else than at the address they are called at: through a WAN
    /// proxy or a NAT.
    routes: HashMap<String, SocketAddr>,
    /// Whether a peer whose certificate names no role (issued before roles) is refused, both
    /// ways, rather than served by its name alone.
    require_roles: bool,
}

/// A peer by name, at the address it is reached at.
type PeerAt = (String, SocketAddr);

/// The sending side of a call, reset (its unsent and unacknowledged bytes dropped) unless the
/// call got as far as it needed. A quinn stream dropped half-way is finished instead, every byte
/// still sent: a call that timed out went on taking the link, so the retry of a large Raft
/// message over a long link waited behind the copies before it, timed out in turn, and a far
/// follower got nothing for seconds after a failover (DRILLS.md).
struct Abandoned {
    stream: quinn::SendStream,
    kept: bool,
}

impl Abandoned {
    fn new(stream: quinn::SendStream) -> Self {
        Abandoned {
            stream,
            kept: false,
        }
    }

    /// The call went far enough (its answer came, or its stream is handed on): no reset.
    fn keep(&mut self) {
        self.kept = true;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if !self.kept {
            let _ = self.stream.reset(quinn::VarInt::from_u32(0));
        }
    }
}

/// A new connection's congestion window: a round trip's worth of a Raft batch.
const INITIAL_WINDOW_BYTES: u64 = 1024 * 1024;

fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(VarInt::from_u32(STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(
            IDLE_TIMEOUT
                .try_into()
                .expect("3 s is a valid idle timeout"),
        ))
        .keep_alive_interval(Some(KEEP_ALIVE));
    // Links between regions are long (up to a quarter of a second there and back) and a Raft
    // call must finish within a heartbeat: a batch of entries has to go out in one round trip,
    // not in the several that slow start from the internet's default window would take. The
    // mesh is a private set of known peers, not the open internet.
    let mut cubic = quinn::congestion::CubicConfig::default();
    cubic.initial_window(INITIAL_WINDOW_BYTES);
    t.congestion_controller_factory(Arc::new(cubic));
    Arc::new(t)
}

impl Transport {
    /// Binds a QUIC endpoint on `addr` (port 0 picks one) that serves and calls as `tls.node`.
    pub fn bind(addr: SocketAddr, tls: &NodeTls) -> Result<Self, TransportError> {
        let server_crypto = QuicServerConfig::try_from(tls.server_config()?)
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server.transport_config(transport_config());
        let client_crypto = QuicClientConfig::try_from(tls.client_config()?)
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(Arc::new(client_crypto));
        client.transport_config(transport_config());
        let bind_err = |why| TransportError::Bind { addr, why };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
        let (reset_key, cid_key) = tls.restart_keys();
        let mut config = quinn::EndpointConfig::new(Arc::new(reset_key));
        config.cid_generator(move || {
            Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
        });
        let mut endpoint =
            Endpoint::new(config, Some(server), socket, Arc::new(quinn::TokioRuntime))
                .map_err(bind_err)?;
        endpoint.set_default_client_config(client);
        let t = Transport {
            endpoint,
            node: tls.node.clone(),
            max_frame: FRAME_MAX_BYTES,
            connections: Arc::new(Mutex::new(HashMap::new())),
            dialing: Arc::new(std::sync::Mutex::new(HashMap::new())),
            revoked: Arc::new(Revoked::load(&tls.dir)?),
            loads: Arc::new(std::sync::Mutex::new(HashMap::new())),
            routes: HashMap::new(),
            require_roles: false,
        };
        t.watch_revoked();
        Ok(t)
    }

    /// Reads the list of revoked certificates again every 2 s (when it changed), and closes
    /// every connection, to or from this node, of a peer it now revokes. Ends when the
    /// transport is dropped.
    fn watch_revoked(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime: revoked certificates are read at start only");
            return;
        };
        let revoked = Arc::downgrade(&self.revoked);
        let (connections, loads) = (Arc::clone(&self.connections), Arc::clone(&self.loads));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(REVOKED_POLL);
            loop {
                tick.tick().await;
                let Some(revoked) = revoked.upgrade() else { return };
                if !revoked.reload() {
                    continue;
                }
                for (peer, conn) in connections.lock().await.iter() {
                    if leaf_of(conn).is_some_and(|leaf| revoked.revokes(&peer.0, &leaf)) {
                        conn.close(REFUSED, b"revoked");
                    }
                }
                let loads = loads.lock().unwrap_or_else(|p| p.into_inner());
                for (peer, load) in loads.iter() {
                    for (fp, conn) in load.live.values() {
                        if revoked.revokes_fingerprint(peer, fp) {
                            tracing::warn!(%peer, "closed a connection: its certificate is revoked");
                            conn.close(REFUSED, b"revoked");
                        }
                    }
                }
            }
        });
    }

    /// Reaches each named peer at its route instead of the address it is called at (the one a
    /// group's membership advertises): a link through a WAN proxy or a NAT.
    pub fn with_routes(mut self, routes: HashMap<String, SocketAddr>) -> Self {
        self.routes = routes;
        self
    }

    /// Refuses peers whose certificates name no role, calling and called: once every node's
    /// certificate has been reissued with one (`certs::issue_node`).
    pub fn requiring_roles(mut self, required: bool) -> Self {
        self.require_roles = required;
        self
    }

    /// Sets the largest frame this endpoint reads (requests it serves, replies it receives).
    pub fn with_max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The round trip to `peer` at `addr` (or its route), as the open connection to it
    /// measures it; `None` without one.
    pub async fn rtt(&self, peer: &str, addr: SocketAddr) -> Option<Duration> {
        let addr = self.routes.get(peer).copied().unwrap_or(addr);
        let key = (peer.to_owned(), addr);
        self.connections
            .lock()
            .await
            .get(&key)
            .filter(|c| c.close_reason().is_none())
            .map(|c| c.rtt())
    }

    /// Connects to `peer` at `addr` unless a connection is open; keep-alives hold it open.
    pub async fn warm(&self, peer: &str, addr: SocketAddr) -> Result<(), TransportError> {
        self.connection(peer, addr).await.map(drop)
    }

    async fn connection(
        &self,
        peer: &str,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, TransportError> {
        let addr = self.routes.get(peer).copied().unwrap_or(addr);
        let key = (peer.to_owned(), addr);
        let open = |key| async move {
            self.connections
                .lock()
                .await
                .get(key)
                .filter(|c| c.close_reason().is_none())
                .cloned()
        };
        if let Some(c) = open(&key).await {
            return Ok(c);
        }
        // One handshake at a time to this peer; whoever waited for it finds its connection.
        let dial = Arc::clone(
            self.dialing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key.clone())
                .or_default(),
        );
        let dialing = dial.lock_owned().await;
        if let Some(c) = open(&key).await {
            return Ok(c);
        }
        let connect_err = |why: String| TransportError::Connect {
            peer: peer.to_owned(),
            addr,
            why,
        };
        // The connections' lock is not held while connecting: a peer that does not answer
        // must not hold up calls to everyone else. The server name is the peer's node name:
        // the handshake fails unless its certificate, signed by our CA, carries exactly that
        // name.
        let connecting = self
            .endpoint
            .connect(addr, peer)
            .map_err(|e| connect_err(e.to_string()))?;
        // The handshake goes on, and its connection is kept, even when the caller stops
        // waiting: over a link whose round trip is near a call's time limit (a far region,
        // whose heartbeat is the limit), a handshake dropped with each timed-out call would
        // never finish.
        // The server is vetted (not revoked, a core) before its connection is kept for others
        // to use, in the same task: a caller that stops waiting leaves no unvetted connection.
        let connections = Arc::clone(&self.connections);
        let (revoked, require_roles, name) = (
            Arc::clone(&self.revoked),
            self.require_roles,
            peer.to_owned(),
        );
        let conn = tokio::spawn(async move {
            let conn = connecting.await.map_err(|e| e.to_string())?;
            if let Err(why) = vet_server(&conn, &name, &revoked, require_roles) {
                conn.close(REFUSED, why.as_bytes());
                return Err(why);
            }
            connections.lock().await.insert(key, conn.clone());
            drop(dialing);
            Ok(conn)
        })
        .await
        .map_err(|e| connect_err(e.to_string()))?
        .map_err(connect_err)?;
        Ok(conn)
    }

    /// Sends `request` to `peer` at `addr` and waits for its reply, at most `timeout`.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        peer: &str,
        addr: SocketAddr,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, TransportError> {
        let call_err = |why: FrameError| TransportError::Call {
            peer: peer.to_owned(),
            why,
        };
        let request = frame::encode(request).map_err(call_err)?;
        let attempt = async {
            let conn = self.connection(peer, addr).await?;
            let (send, mut recv) = conn.open_bi().await.map_err(|e| TransportError::Connect {
                peer: peer.to_owned(),
                addr,
                why: e.to_string(),
            })?;
            let mut send = Abandoned::new(send);
            frame::write(&mut send.stream, &request)
                .await
                .map_err(call_err)?;
            let reply = frame::read::<Reply<Resp>>(&mut recv, self.max_frame).await;
            send.keep();
            match reply {
                Ok(Reply::Ok(r)) => Ok(r),
                Ok(Reply::Refused(reason)) => Err(TransportError::Refused {
                    peer: peer.to_owned(),
                    reason,
                }),
                Err(e) => Err(call_err(e)),
            }
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| TransportError::Timeout {
                peer: peer.to_owned(),
                after: timeout,
            })?
    }

    /// Sends `request` to `peer` at `addr` and returns the stream of its answers (the peer's
    /// handler answers `Answer::Stream`). Connecting and sending take at most `timeout`; how
    /// long to wait for each answer is the caller's choice.
    pub async fn open_stream<Req: Serialize>(
        &self,
        peer: &str,
        addr: SocketAddr,
        request: &Req,
        timeout: Duration,
    ) -> Result<Stream, TransportError> {
        let request = frame::encode(request).map_err(|why| TransportError::Call {
            peer: peer.to_owned(),
            why,
        })?;
        let attempt = async {
            let conn = self.connection(peer, addr).await?;
            let (send, recv) = conn.open_bi().await.map_err(|e| TransportError::Connect {
                peer: peer.to_owned(),
                addr,
                why: e.to_string(),
            })?;
            let mut send = Abandoned::new(send);
            frame::send(&mut send.stream, &request)
                .await
                .map_err(|why| TransportError::Call {
                    peer: peer.to_owned(),
                    why,
                })?;
            send.keep();
            Ok(Stream {
                peer: peer.to_owned(),
                recv,
                _send: send,
                max_frame: self.max_frame,
            })
        };
        tokio::time::timeout(timeout, attempt)
            .await
            .map_err(|_| TransportError::Timeout {
                peer: peer.to_owned(),
                after: timeout,
            })?
    }

    /// Serves `handler` until the endpoint closes.
    pub fn serve<H: Handler>(&self, handler: Arc<H>) -> tokio::task::JoinHandle<()> {
        let endpoint = self.endpoint.clone();
        let max_frame = self.max_frame;
        let open = Arc::clone(&self.loads);
        let revoked = Arc::clone(&self.revoked);
        let require_roles = self.require_roles;
        tokio::spawn(async move {
            while let Some(incoming) = endpoint.accept().await {
                let handler = Arc::clone(&handler);
                let open = Arc::clone(&open);
                let revoked = Arc::clone(&revoked);
                tokio::spawn(async move {
                    let remote = incoming.remote_address();
                    let conn = match incoming.await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(%remote, error = %e, "refused a connection");
                            return;
                        }
                    };
                    let identity = conn
                        .peer_identity()
                        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok());
                    let Some((peer, leaf)) = identity
                        .as_deref()
                        .and_then(|chain| Some((Peer::of(chain)?, chain.first()?.to_vec())))
                    else {
                        tracing::warn!(%remote, "refused a connection: no usable node name and role in its certificate");
                        conn.close(REFUSED, b"no node name in certificate");
                        return;
                    };
                    if revoked.revokes(&peer.name, &leaf) {
                        tracing::warn!(%remote, %peer, "refused a connection: its certificate is revoked");
                        conn.close(REFUSED, b"revoked");
                        return;
                    }
                    if peer.role.is_none() && require_roles {
                        tracing::warn!(%remote, %peer, "refused a connection: its certificate names no role, and roles are required here");
                        conn.close(REFUSED, b"no role in certificate");
                        return;
                    }
                    if peer.role.is_none() {
                        tracing::warn!(%remote, %peer, "a peer's certificate names no role: served as before roles, by its name; reissue it with one (move its <node>.pem and .key aside, `tradewind certs add --node <node> --role ...`, then `tradewind certs revoke --cert` the old one)");
                    }
                    let fp = crate::revoked::fingerprint(&leaf);
                    let Some(slot) = PeerSlot::take(&open, &peer.name, fp, &conn) else {
                        tracing::warn!(%remote, %peer, "refused a connection: {CONNECTIONS_PER_PEER} from this peer are open");
                        conn.close(REFUSED, b"too many connections from this peer");
                        return;
                    };
                    let requests = Arc::clone(&slot.requests);
                    serve_connection(conn, peer, handler, max_frame, requests).await;
                });
            }
        })
    }

    /// Closes every connection and the endpoint.
    pub fn close(&self) {
        self.endpoint.close(VarInt::from_u32(0), b"closing");
    }
}

/// What one peer holds at a node: its open connections (with their certificates' digests, to
/// close them when one is revoked), and permits for the requests it may have in hand.
struct PeerLoad {
    live: HashMap<usize, ([u8; 32], quinn::Connection)>,
    requests: Arc<tokio::sync::Semaphore>,
}

type PeerLoads = Arc<std::sync::Mutex<HashMap<Arc<str>, PeerLoad>>>;

/// One of a peer's open connections, given back however its serving ends.
struct PeerSlot {
    open: PeerLoads,
    peer: Arc<str>,
    id: usize,
    requests: Arc<tokio::sync::Semaphore>,
}

impl PeerSlot {
    fn take(
        open: &PeerLoads,
        peer: &Arc<str>,
        fp: [u8; 32],
        conn: &quinn::Connection,
    ) -> Option<Self> {
        let mut map = open.lock().unwrap_or_else(|p| p.into_inner());
        let load = map.entry(Arc::clone(peer)).or_insert_with(|| PeerLoad {
            live: HashMap::new(),
            requests: Arc::new(tokio::sync::Semaphore::new(REQUESTS_PER_PEER)),
        });
        if load.live.len() >= CONNECTIONS_PER_PEER {
            return None;
        }
        let id = conn.stable_id();
        load.live.insert(id, (fp, conn.clone()));
        Some(PeerSlot {
            open: Arc::clone(open),
            peer: Arc::clone(peer),
            id,
            requests: Arc::clone(&load.requests),
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut map = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(load) = map.get_mut(&self.peer) {
            load.live.remove(&self.id);
            // Forgotten only when nothing of the peer's is in hand: its requests still being
            // served count against it when it comes back.
            if load.live.is_empty() && load.requests.available_permits() == REQUESTS_PER_PEER {
                map.remove(&self.peer);
            }
        }
    }
}

/// Why a server this node called is not one it calls, if it is not: its certificate is
/// revoked, or names no core (every node calls cores only: members call members, edges their
/// cores), or names no role where roles are required.
fn vet_server(
    conn: &quinn::Connection,
    name: &str,
    revoked: &Revoked,
    require_roles: bool,
) -> Result<(), String> {
    if leaf_of(conn).is_none_or(|leaf| revoked.revokes(name, &leaf)) {
        return Err("its certificate is revoked".into());
    }
    let role = conn
        .peer_identity()
        .and_then(|any| any.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| Peer::of(&chain))
        .map(|p| p.role);
    match role {
        Some(None) if require_roles => {
            Err("its certificate names no role, and roles are required here".into())
        }
        Some(None | Some(crate::certs::Role::Core)) => Ok(()),
        Some(Some(role)) => Err(format!("its certificate names a {role}, not a core")),
        None => Err("no usable node name and role in its certificate".into()),
    }
}

/// The certificate (DER) a connection's peer presented.
fn leaf_of(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .first()
        .map(|c| c.to_vec())
}

async fn serve_connection<H: Handler>(
    conn: quinn::Connection,
    peer: Peer,
    handler: Arc<H>,
    max_frame: usize,
    requests: Arc<tokio::sync::Semaphore>,
) {
    loop {
        let (mut send, mut recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(_) => return, // the peer went away; it reconnects when it needs to
        };
        let Ok(permit) = Arc::clone(&requests).try_acquire_owned() else {
            tracing::warn!(%peer, "refused a request: {REQUESTS_PER_PEER} from this peer are in hand");
            let _ = send.reset(REFUSED);
            let _ = recv.stop(REFUSED);
            continue;
        };
        let handler = Arc::clone(&handler);
        let peer = peer.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match frame::read::<H::Request>(&mut recv, max_frame).await {
                Ok(request) => {
                    let sent = match handler.handle(&peer, request).await {
                        Answer::Reply(response) => match frame::encode(&Reply::Ok(response)) {
                            Ok(bytes) => frame::write(&mut send, &bytes).await,
                            Err(e) => Err(e),
                        },
                        Answer::Stream(mut frames) => {
                            let mut sent = Ok(());
                            while let Some(f) = frames.recv().await {
                                sent = frame::send(&mut send, &f.0).await;
                                if sent.is_err() {
                                    break;
                                }
                            }
                            // Dropping `frames` tells its feeder the peer is gone.
                            drop(frames);
                            sent.and_then(|()| send.finish().map_err(FrameError::from))
                        }
                    };
                    if let Err(e) = sent {
                        tracing::debug!(%peer, error = %e, "could not send a reply");
                    }
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "refused a request");
                    let refusal = frame::encode(&Reply::<()>::Refused(e.to_string()));
                    let sent = match refusal {
                        Ok(bytes) => frame::write(&mut send, &bytes).await,
                        Err(e) => Err(e),
                    };
                    if sent.is_err() {
                        let _ = send.reset(REFUSED);
                    }
                    let _ = recv.stop(REFUSED);
                }
            }
        });
    }
}
