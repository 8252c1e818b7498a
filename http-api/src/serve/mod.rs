//! Serving an API on a listener that faces the internet: TLS 1.3 (or plain HTTP on loopback,
//! when the config says so), HTTP/2 and HTTP/1.1, and what keeps one client from taking the
//! listener from the others. Every HTTP listener of the mesh is served here, so each has the
//! same defences:
//!
//! - a connection over the listener's or its client's cap is closed at once (`clients`);
//! - a TLS handshake must finish within `handshake_timeout_ms`, a request's header within
//!   `header_read_timeout_ms`, and a connection that moves no byte for `idle_timeout_ms` is
//!   closed (`io`): slowloris clients and idle hoarders give their sockets back;
//! - plain HTTP sent to a TLS port gets a problem document saying so, and TLS below 1.3 gets
//!   the handshake failure rustls sends;
//! - each request is counted against its client's rate (`ratelimit`), the client being the
//!   peer, or whom a trusted proxy says it forwards (`clients::client_of`);
//! - every TLS answer carries HSTS.
//!
//! Refusals are counted and logged by reason, at most a line a second each. The API sees the
//! client's address as a [`ClientAddr`] request extension.

mod clients;
mod io;
mod ratelimit;
mod settings;
mod threads;
pub mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::problem::Problem;
use fault::Kind;

pub use clients::{Refusal, Refusals, client_key, client_of};
pub use ratelimit::RateLimiter;
pub use settings::Settings;
pub use threads::{THREADS_MAX, Threads};
pub use tls::TlsError;

/// The client a request is from: the peer, or whom a trusted proxy forwards for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// Largest request header block, and HTTP/2 header list.
const HEADER_MAX_BYTES: usize = 64 * 1024;
/// Streams one HTTP/2 connection may have open at once.
const H2_STREAMS_MAX: u32 = 256;
/// How long connections open at shutdown may take to finish their requests.
const GRACE: Duration = Duration::from_secs(30);
/// A failed `accept` (no file descriptors left) is retried after this, not in a hot loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Why a listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS certificate: {0}")]
    Tls(#[from] TlsError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// One listener's defences and TLS, shared by every thread that accepts on it.
pub struct Front {
    settings: Settings,
    tls: Option<(TlsAcceptor, Arc<tls::Reloading>)>,
    hsts: Option<HeaderValue>,
    connections: Arc<clients::Connections>,
    limiter: RateLimiter,
    refusals: Refusals,
    /// HTTP/1.1 only, HTTP/2 only (as ALPN chose), and either (plain HTTP, by the preface).
    h1: auto::Builder<TokioExecutor>,
    h2: auto::Builder<TokioExecutor>,
    either: auto::Builder<TokioExecutor>,
}

impl Front {
    /// The listener's TLS and defences, from checked `settings`. With TLS, it watches the
    /// certificate files on the current runtime.
    pub fn new(settings: &Settings) -> Result<Arc<Self>, ServeError> {
        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => {
                let certs = tls::Reloading::load(cert, key)?;
                certs.watch();
                let config = tls::server_config(Arc::clone(&certs))?;
                Some((TlsAcceptor::from(Arc::new(config)), certs))
            }
            _ => None,
        };
        let hsts = (tls.is_some() && settings.hsts_max_age_s > 0).then(|| {
            HeaderValue::try_from(format!("max-age={}", settings.hsts_max_age_s))
                .expect("digits are a header value")
        });
        let mut either = auto::Builder::new(TokioExecutor::new());
        either
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_millis(settings.header_read_timeout_ms))
            .max_buf_size(HEADER_MAX_BYTES)
            .keep_alive(true);
        either
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS_MAX)
            .max_header_list_size(HEADER_MAX_BYTES as u32);
        Ok(Arc::new(Front {
            connections: clients::Connections::new(
                settings.connections_max,
                settings.connections_per_client_max,
            ),
            limiter: RateLimiter::new(settings.client_rate_per_s, settings.client_burst),
            refusals: Refusals::default(),
            h1: either.clone().http1_only(),
            h2: either.clone().http2_only(),
            either,
            settings: settings.clone(),
            tls,
            hsts,
        }))
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> &Refusals {
        &self.refusals
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.connections.open()
    }

    /// Reads the certificate files again now (what SIGHUP does).
    pub fn reload_certificate(&self) -> bool {
        self.tls.as_ref().is_some_and(|(_, c)| c.reload(true))
    }

    /// Serves `app` on `listener` until `shutdown` resolves; then stops accepting and lets
    /// open connections finish their requests (for up to `GRACE`). Several threads may serve
    /// the same `Front` on clones of one listening socket.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()>,
    ) {
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
            let trusted = self
                .settings
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&peer.ip()));
            let key = (!trusted).then(|| client_key(peer.ip()));
            let slot = match self.connections.admit(key) {
                Ok(slot) => slot,
                Err(why) => {
                    self.refusals
                        .note(why, peer.ip(), &"connection closed at once");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (front, app, watcher) = (Arc::clone(&self), app.clone(), graceful.watcher());
            tokio::spawn(async move {
                let _slot = slot;
                front.connection(tcp, peer, app, watcher).await;
            });
        }
        drop(listener);
        if tokio::time::timeout(GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing them");
        }
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        app: Router,
        watcher: Watcher,
    ) {
        let activity = io::Activity::new();
        let Some((acceptor, _)) = &self.tls else {
            let io = io::Tracked {
                inner: tcp,
                activity: Arc::clone(&activity),
            };
            return self
                .http(io, &self.either, peer, app, watcher, &activity)
                .await;
        };
        let limit = Duration::from_millis(self.settings.handshake_timeout_ms);
        let handshake = tokio::time::timeout(limit, async {
            let mut first = [0u8; 1];
            match tcp.peek(&mut first).await {
                Ok(0) | Err(_) => Ok(None),
                // A TLS record starts with its content type, 22 for a handshake.
                Ok(_) if first[0] != 22 => Err(tcp),
                Ok(_) => Ok(Some(acceptor.accept(tcp).await)),
            }
        })
        .await;
        let tls = match handshake {
            Err(_) => {
                return self.refusals.note(
                    Refusal::HandshakeTimeout,
                    peer.ip(),
                    &format_args!("TLS handshake not done within {} ms", limit.as_millis()),
                );
            }
            Ok(Ok(None)) => return,
            Ok(Err(tcp)) => return self.refuse_plaintext(tcp, peer).await,
            Ok(Ok(Some(Err(e)))) => {
                return self.refusals.note(
                    Refusal::HandshakeFailed,
                    peer.ip(),
                    &format_args!("TLS handshake: {e}"),
                );
            }
            Ok(Ok(Some(Ok(tls)))) => tls,
        };
        let builder = match tls.get_ref().1.alpn_protocol() {
            Some(tls::ALPN_H2) => &self.h2,
            _ => &self.h1,
        };
        let io = io::Tracked {
            inner: tls,
            activity: Arc::clone(&activity),
        };
        self.http(io, builder, peer, app, watcher, &activity).await;
    }

    async fn http<I>(
        self: &Arc<Self>,
        io: I,
        builder: &auto::Builder<TokioExecutor>,
        peer: SocketAddr,
        app: Router,
        watcher: Watcher,
        activity: &io::Activity,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let front = Arc::clone(self);
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let (front, app) = (Arc::clone(&front), app.clone());
            async move { Ok::<_, Infallible>(front.request(app, peer, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(io), service)
            .into_owned();
        let idle = Duration::from_millis(self.settings.idle_timeout_ms);
        tokio::select! {
            served = watcher.watch(conn) => {
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            }
            () = activity.idle_for(idle) => {
                tracing::debug!(%peer, "idle connection closed");
            }
        }
    }

    /// One request: who its client is, whether it may make it now, then the API.
    async fn request(&self, app: Router, peer: SocketAddr, req: Request<Incoming>) -> Response {
        let res = match client_of(peer.ip(), req.headers(), &self.settings.trusted_proxies) {
            Err(why) => {
                self.refusals
                    .note(Refusal::UntrustedForwarding, peer.ip(), &why);
                Problem::new(Kind::UntrustedForwarding, why).into_response()
            }
            Ok(client) => match self.limiter.take(client_key(client), Instant::now()) {
                Err(wait) => {
                    self.refusals
                        .note(Refusal::RateLimited, client, &"over the client's rate");
                    Problem::new(
                        Kind::RateLimited,
                        format!(
                            "over {} requests per second from this client",
                            self.limiter.rate()
                        ),
                    )
                    .retry_after(wait)
                    .into_response()
                }
                Ok(()) => {
                    let mut req = req.map(Body::new);
                    req.extensions_mut().insert(ClientAddr(client));
                    req.extensions_mut().insert(ConnectInfo(peer));
                    match app.oneshot(req).await {
                        Ok(res) => res,
                        Err(never) => match never {},
                    }
                }
            },
        };
        self.finish(res)
    }

    fn finish(&self, mut res: Response) -> Response {
        if let Some(hsts) = &self.hsts {
            res.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        res
    }

    /// Plain HTTP on a TLS port: a problem document saying to use TLS, then the connection is
    /// closed.
    async fn refuse_plaintext(&self, mut tcp: TcpStream, peer: SocketAddr) {
        self.refusals.note(
            Refusal::PlaintextOnTls,
            peer.ip(),
            &"plain HTTP on a TLS port",
        );
        let body = serde_json::to_vec(&crate::problem::ProblemDocument::of(
            Kind::TlsRequired,
            "this port speaks TLS 1.3 only: use https://".into(),
        ))
        .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let write = async {
            tcp.write_all(head.as_bytes()).await?;
            tcp.write_all(&body).await?;
            tcp.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), write).await;
    }
}
