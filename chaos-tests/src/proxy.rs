//! The fault proxy: links between regions that behave like a WAN, changed while they run.
//!
//! Each link listens on one address and relays to another, UDP (QUIC: Raft, the feed, edges'
//! writes) or TCP, with a shape: one-way latency plus jitter (in both directions, so a round
//! trip through a link costs twice its latency), random loss (UDP), a bandwidth limit, and a cut
//! that drops everything (a partition). Packets and chunks keep their order. Every queue is
//! bounded: what would wait more than `BACKLOG_MAX` behind the bandwidth limit, or find its
//! queue full, is dropped, as a router drops it.
//!
//! The control API (HTTP on loopback): `GET /v1/links` lists the links with their shape and
//! counters; `PUT /v1/links/{name}` sets a link's shape; `GET /healthz`. Every route but
//! `/healthz` asks for a bearer token, and every request must name the API's own loopback
//! address in `Host`: a web page a developer visits cannot cut their mesh's links by pointing
//! a name it controls at 127.0.0.1 (DNS rebinding).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use util::config::{Config, Invalid};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use http_api::bearer::TokenSet;
use http_api::{Body, Kind, Path, Problem};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Packets or chunks one direction of one link holds at once.
const QUEUE: usize = 4_096;
/// The most a packet may wait behind the bandwidth limit before it is dropped.
const BACKLOG_MAX: Duration = Duration::from_secs(1);
/// Largest UDP datagram relayed.
const DATAGRAM_MAX: usize = 65_535;
/// TCP chunk size.
const CHUNK: usize = 64 * 1024;
/// UDP clients one link tracks; the longest idle is forgotten past this.
const SESSIONS_MAX: usize = 1_024;
/// A UDP client silent this long is forgotten.
const SESSION_IDLE: Duration = Duration::from_secs(120);
/// Bounds of a shape.
const LATENCY_MAX_MS: u64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
}

/// How a link behaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shape {
    /// One-way delay, each direction.
    pub latency_ms: u64,
    /// Up to this much more, at random, each packet (order is kept).
    pub jitter_ms: u64,
    /// Share of UDP datagrams dropped, 0 to 1.
    pub loss: f64,
    /// Bytes per second each direction; 0 for no limit.
    pub bandwidth_bytes_per_s: u64,
    /// Drop everything (UDP), close and refuse connections (TCP).
    pub cut: bool,
}

impl Shape {
    pub fn check(&self) -> Result<(), Invalid> {
        if self.latency_ms > LATENCY_MAX_MS || self.jitter_ms > LATENCY_MAX_MS {
            return Err(Invalid(format!(
                "latency_ms and jitter_ms: at most {LATENCY_MAX_MS}"
            )));
        }
        if !(0.0..=1.0).contains(&self.loss) {
            return Err(Invalid::at("loss", "0 to 1"));
        }
        Ok(())
    }
}

/// One link, as configured.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub name: String,
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub target: SocketAddr,
    #[serde(default)]
    pub shape: Shape,
}

/// The proxy's config file.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// The control API; loopback only.
    pub api: SocketAddr,
    /// SHA-256 digests (hex) of the bearer tokens the API takes (`tradewind token new`).
    pub token_sha256: Vec<String>,
    pub links: Vec<LinkSpec>,
}

impl Config for ProxyConfig {
    fn check(&self) -> Result<(), Invalid> {
        if !self.api.ip().is_loopback() {
            return Err(Invalid::at("api", "a loopback address"));
        }
        if self.token_sha256.is_empty() {
            return Err(Invalid::at("token_sha256", "at least one token's digest"));
        }
        TokenSet::from_hex(&self.token_sha256).map_err(|e| Invalid::at("token_sha256", e))?;
        let mut names = std::collections::BTreeSet::new();
        for l in &self.links {
            if !names.insert(l.name.as_str()) {
                return Err(Invalid::at("links", format!("{} appears twice", l.name)));
            }
            l.shape
                .check()
                .map_err(|e| Invalid::at(&format!("links.{}", l.name), e))?;
        }
        Ok(())
    }
}

/// What went through a link.
#[derive(Default, Debug, serde::Serialize)]
pub struct Counters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub dropped: AtomicU64,
}

/// A running link: its spec, its current shape, its counters.
pub struct Link {
    pub spec: LinkSpec,
    shape: RwLock<Shape>,
    pub counters: Counters,
}

impl Link {
    pub fn shape(&self) -> Shape {
        *self.shape.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_shape(&self, s: Shape) {
        *self.shape.write().unwrap_or_else(|p| p.into_inner()) = s;
    }
}

/// One direction of a link: packets leave in order, each after its delay, at most as fast as
/// the bandwidth allows.
struct Line {
    link: Arc<Link>,
    /// When the last packet finished leaving at the bandwidth limit, and when it arrives.
    busy_until: Instant,
    last_arrival: Instant,
}

impl Line {
    fn new(link: Arc<Link>) -> Self {
        let now = Instant::now();
        Line {
            link,
            busy_until: now,
            last_arrival: now,
        }
    }

    /// Waits while more than `BACKLOG_MAX` waits behind the bandwidth limit: a lossless link
    /// (TCP) slows its sender down instead of dropping.
    async fn room(&self) {
        let shape = self.link.shape();
        if shape.bandwidth_bytes_per_s > 0
            && !shape.cut
            && let Some(at) = self.busy_until.checked_sub(BACKLOG_MAX)
        {
            tokio::time::sleep_until(at).await;
        }
    }

    /// When a packet of `len` bytes sent now arrives; `None` when it is dropped (a lossy link
    /// drops at random and past its backlog; any link drops while cut).
    fn schedule(&mut self, len: usize, lossy: bool) -> Option<Instant> {
        let shape = self.link.shape();
        let c = &self.link.counters;
        if shape.cut || (lossy && shape.loss > 0.0 && rand::random::<f64>() < shape.loss) {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let now = Instant::now();
        let mut departs = now;
        if shape.bandwidth_bytes_per_s > 0 {
            let start = self.busy_until.max(now);
            if lossy && start - now > BACKLOG_MAX {
                c.dropped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            let takes = Duration::from_secs_f64(len as f64 / shape.bandwidth_bytes_per_s as f64);
            self.busy_until = start + takes;
            departs = self.busy_until;
        }
        let jitter = if shape.jitter_ms > 0 {
            Duration::from_micros(rand::random_range(0..=shape.jitter_ms * 1_000))
        } else {
            Duration::ZERO
        };
        let arrives =
            (departs + Duration::from_millis(shape.latency_ms) + jitter).max(self.last_arrival);
        self.last_arrival = arrives;
        c.packets.fetch_add(1, Ordering::Relaxed);
        c.bytes.fetch_add(len as u64, Ordering::Relaxed);
        Some(arrives)
    }
}

type Packets = mpsc::Sender<(Instant, Vec<u8>)>;

/// A delay line: what is put in comes out at its time, in order, to `deliver`, until the
/// sender is dropped (the task then ends) or `deliver` says stop.
fn delay_line<F, Fut>(deliver: F) -> (Packets, tokio::task::JoinHandle<()>)
where
    F: Fn(Vec<u8>) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(QUEUE);
    let task = tokio::spawn(async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if !deliver(bytes).await {
                return;
            }
        }
    });
    (tx, task)
}

/// Relays datagrams from clients at `listen` to `target`, each client through a socket of its
/// own (so that answers find their way back), bound on the listening address's IP.
async fn udp_link(link: Arc<Link>, front: std::net::UdpSocket) -> std::io::Result<()> {
    let front = Arc::new(UdpSocket::from_std(front)?);
    struct Session {
        out: Packets,
        line: Line,
        seen: Instant,
        /// Relays the target's answers; it ends with the session (dropping `out` ends the
        /// other direction).
        answers: tokio::task::JoinHandle<()>,
    }
    impl Drop for Session {
        fn drop(&mut self) {
            self.answers.abort();
        }
    }
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; DATAGRAM_MAX];
    loop {
        let (n, client) = front.recv_from(&mut buf).await?;
        if !sessions.contains_key(&client) {
            if sessions.len() >= SESSIONS_MAX {
                let oldest = sessions.iter().min_by_key(|(_, s)| s.seen).map(|(a, _)| *a);
                if let Some(a) = oldest {
                    sessions.remove(&a);
                }
            }
            sessions.retain(|_, s| s.seen.elapsed() < SESSION_IDLE);
            let upstream = UdpSocket::bind(SocketAddr::new(link.spec.listen.ip(), 0)).await?;
            upstream.connect(link.spec.target).await?;
            let upstream = Arc::new(upstream);
            // Answers: from the target back to this client, through the link's other direction.
            let (back, _) = {
                let front = Arc::clone(&front);
                delay_line(move |bytes| {
                    let front = Arc::clone(&front);
                    async move {
                        let _ = front.send_to(&bytes, client).await;
                        true
                    }
                })
            };
            let answers = {
                let (upstream, link) = (Arc::clone(&upstream), Arc::clone(&link));
                tokio::spawn(async move {
                    let mut line = Line::new(link);
                    let mut buf = vec![0u8; DATAGRAM_MAX];
                    loop {
                        let n = match upstream.recv(&mut buf).await {
                            Ok(n) => n,
                            // The target was down a moment (ICMP port unreachable): it answers
                            // again once it is back.
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                            Err(_) => return,
                        };
                        if let Some(at) = line.schedule(n, true)
                            && back.try_send((at, buf[..n].to_vec())).is_err()
                        {
                            line.link.counters.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        if back.is_closed() {
                            return;
                        }
                    }
                })
            };
            let (out, _) = delay_line(move |bytes| {
                let upstream = Arc::clone(&upstream);
                async move {
                    let _ = upstream.send(&bytes).await;
                    true
                }
            });
            sessions.insert(
                client,
                Session {
                    out,
                    line: Line::new(Arc::clone(&link)),
                    seen: Instant::now(),
                    answers,
                },
            );
        }
        let Some(s) = sessions.get_mut(&client) else {
            continue;
        };
        s.seen = Instant::now();
        if let Some(at) = s.line.schedule(n, true)
            && s.out.try_send((at, buf[..n].to_vec())).is_err()
        {
            link.counters.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Relays TCP connections from `listen` to `target`; a cut closes them and refuses new ones.
async fn tcp_link(link: Arc<Link>, listener: std::net::TcpListener) -> std::io::Result<()> {
    let listener = TcpListener::from_std(listener)?;
    loop {
        let (client, _) = listener.accept().await?;
        if link.shape().cut {
            link.counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let link = Arc::clone(&link);
        tokio::spawn(async move {
            let socket = match link.spec.target {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            };
            let upstream = match socket.and_then(|s| {
                s.bind(SocketAddr::new(link.spec.listen.ip(), 0))?;
                Ok(s)
            }) {
                Ok(s) => s.connect(link.spec.target).await,
                Err(e) => Err(e),
            };
            let Ok(upstream) = upstream else {
                link.counters.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            };
            let (cr, cw) = client.into_split();
            let (ur, uw) = upstream.into_split();
            tokio::join!(pump(cr, uw, Arc::clone(&link)), pump(ur, cw, link));
        });
    }
}

/// One direction of a TCP relay, through the link's delay and bandwidth; ends on a cut.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    to: tokio::net::tcp::OwnedWriteHalf,
    link: Arc<Link>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let to = Arc::new(tokio::sync::Mutex::new(to));
    let (out, delivering) = {
        let to = Arc::clone(&to);
        delay_line(move |bytes| {
            let to = Arc::clone(&to);
            async move { to.lock().await.write_all(&bytes).await.is_ok() }
        })
    };
    let mut line = Line::new(Arc::clone(&link));
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // TCP loses nothing: a chunk waits for room behind the bandwidth limit.
        line.room().await;
        let sent = match line.schedule(n, false) {
            Some(at) => out.send((at, buf[..n].to_vec())).await.is_ok(),
            None => !link.shape().cut,
        };
        if !sent {
            break;
        }
    }
    // Let what is in flight arrive (unless cut), then close this direction.
    drop(out);
    if link.shape().cut {
        delivering.abort();
    }
    let _ = delivering.await;
    let _ = to.lock().await.shutdown().await;
}

type Links = Arc<HashMap<String, Arc<Link>>>;

#[derive(serde::Serialize)]
struct LinkView<'a> {
    name: &'a str,
    protocol: Protocol,
    listen: SocketAddr,
    target: SocketAddr,
    shape: Shape,
    packets: u64,
    bytes: u64,
    dropped: u64,
}

fn view(l: &Link) -> LinkView<'_> {
    LinkView {
        name: &l.spec.name,
        protocol: l.spec.protocol,
        listen: l.spec.listen,
        target: l.spec.target,
        shape: l.shape(),
        packets: l.counters.packets.load(Ordering::Relaxed),
        bytes: l.counters.bytes.load(Ordering::Relaxed),
        dropped: l.counters.dropped.load(Ordering::Relaxed),
    }
}

async fn list(State(links): State<Links>) -> axum::Json<serde_json::Value> {
    let mut all: Vec<LinkView<'_>> = links.values().map(|l| view(l)).collect();
    all.sort_by(|a, b| a.name.cmp(b.name));
    axum::Json(serde_json::json!({ "links": all }))
}

async fn set(
    State(links): State<Links>,
    Path(name): Path<String>,
    Body(shape): Body<Shape>,
) -> Result<axum::Json<serde_json::Value>, Problem> {
    let link = links
        .get(&name)
        .ok_or_else(|| Problem::new(Kind::NotFound, format!("no link {name}")))?;
    shape
        .check()
        .map_err(|e| Problem::new(Kind::InvalidBody, e.to_string()))?;
    link.set_shape(shape);
    tracing::info!(link = %name, ?shape, "link shape changed");
    Ok(axum::Json(serde_json::json!(view(link))))
}

/// A running proxy: where its API listens.
pub struct Started {
    pub api: SocketAddr,
}

/// Runs the proxy until `shutdown` resolves; `on_ready` once every link and the API listen.
pub async fn serve(
    config: ProxyConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Started),
) -> std::io::Result<()> {
    let links: HashMap<String, Arc<Link>> = config
        .links
        .into_iter()
        .map(|spec| {
            let shape = spec.shape;
            (
                spec.name.clone(),
                Arc::new(Link {
                    spec,
                    shape: RwLock::new(shape),
                    counters: Counters::default(),
                }),
            )
        })
        .collect();
    let links: Links = Arc::new(links);
    let mut running = tokio::task::JoinSet::new();
    for link in links.values() {
        // Bind before reporting ready: a port in use is an error now, not later.
        let link = Arc::clone(link);
        let bound = |e: std::io::Error| {
            std::io::Error::new(
                e.kind(),
                format!("link {} on {}: {e}", link.spec.name, link.spec.listen),
            )
        };
        match link.spec.protocol {
            Protocol::Udp => {
                let socket = std::net::UdpSocket::bind(link.spec.listen).map_err(bound)?;
                socket.set_nonblocking(true)?;
                running.spawn(udp_link(Arc::clone(&link), socket));
            }
            Protocol::Tcp => {
                let listener = std::net::TcpListener::bind(link.spec.listen).map_err(bound)?;
                listener.set_nonblocking(true)?;
                running.spawn(tcp_link(Arc::clone(&link), listener));
            }
        }
    }
    let tokens = TokenSet::from_hex(&config.token_sha256)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let api = TcpListener::bind(config.api).await?;
    let addr = api.local_addr()?;
    let guarded = Router::new()
        .route("/v1/links", get(list))
        .route("/v1/links/{name}", axum::routing::put(set))
        .layer(axum::middleware::from_fn(move |req, next| {
            let tokens = tokens.clone();
            async move { bearer(&tokens, req, next).await }
        }));
    let app = http_api::limits::finish(
        guarded.route("/healthz", get(|| async { "ok" })),
        Duration::from_secs(10),
    )
    .layer(axum::middleware::from_fn(move |req, next| {
        own_host(addr, req, next)
    }))
    .with_state(Arc::clone(&links));
    let front = http_api::serve::Front::new(&http_api::serve::Settings::plain())
        .map_err(std::io::Error::other)?;
    on_ready(Started { api: addr });
    tokio::select! {
        () = front.serve(api, app, shutdown) => Ok(()),
        Some(Ok(Err(e))) = running.join_next() => Err(e),
    }
}

/// Refuses a request without one of the API's bearer tokens.
async fn bearer(
    tokens: &TokenSet,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let auth = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if tokens.accepts_header(auth) {
        next.run(req).await
    } else {
        Problem::new(
            Kind::Unauthorized,
            "the fault proxy's API needs its bearer token",
        )
        .into_response()
    }
}

/// Refuses a request whose `Host` is not the API's own address (or `localhost` at its port).
async fn own_host(
    api: SocketAddr,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    let ours =
        host.is_some_and(|h| h == api.to_string() || h == format!("localhost:{}", api.port()));
    if ours {
        next.run(req).await
    } else {
        Problem::new(
            Kind::BadRequest,
            format!("Host must be {api} or localhost:{}", api.port()),
        )
        .into_response()
    }
}
