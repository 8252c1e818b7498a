//! DNS on the wire: UDP and TCP listeners that parse each query, ask the `Authority` (a
//! hickory-server `RequestHandler`) and send its answer.
//!
//! UDP: one socket read by a loop per core; each loop answers a query before it reads the next,
//! so the socket's buffer is the only queue. hickory-server's own UDP listener spawns a task per
//! query and hands every answer to a writer task through a channel; at the router's rates that
//! hand-off cost more than the answer (BENCHMARKS.md). (One socket, not one per loop with
//! `SO_REUSEPORT`: that was slower, and a second router started on the same port would share
//! its queries instead of failing to start.)
//!
//! TCP: at most `tcp_connections_max` connections, each closed after `tcp_idle_ms` without a
//! query; queries on one connection are answered in turn.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::dns::Authority;

/// Largest UDP query read: EDNS buffers are at most 4096 in practice; longer datagrams arrive
/// cut short and are answered FORMERR.
const UDP_QUERY_MAX_BYTES: usize = 4_096;

/// The UDP socket on `addr`.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol as Proto, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Proto::UDP))?;
    s.set_nonblocking(true)?;
    // A burst of queries waits in the kernel rather than being dropped (the kernel caps it at
    // net.core.rmem_max).
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

/// Answers the queries that arrive on `socket`, until the task is aborted. Several loops may
/// read one socket.
pub async fn serve_udp(socket: Arc<UdpSocket>, authority: Arc<Authority>) {
    let mut buf = vec![0u8; UDP_QUERY_MAX_BYTES];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors of earlier sends surface here; the socket is still good.
                tracing::debug!(error = %e, "reading a DNS query");
                continue;
            }
        };
        if src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        // A bug that panics on some query costs that query, not the loop.
        let answered = AssertUnwindSafe(answer(&authority, &buf[..n], src, Protocol::Udp))
            .catch_unwind()
            .await;
        match answered {
            Ok(Some(answer)) => {
                let _ = socket.send_to(&answer, src).await;
            }
            Ok(None) => {}
            Err(_) => authority.count_panic(),
        }
    }
}

/// Accepts TCP connections until the task is aborted: `max` at once (more are closed at once),
/// each closed after `idle` without a query.
pub async fn serve_tcp(
    listener: TcpListener,
    authority: Arc<Authority>,
    max: usize,
    idle: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, src) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of descriptors, say: wait a little rather than spin.
                tracing::warn!(error = %e, "accepting a DNS connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(%src, "too many DNS connections; closing this one");
            continue;
        };
        let authority = Arc::clone(&authority);
        connections.spawn(async move {
            let _slot = slot;
            let served = AssertUnwindSafe(connection(stream, src, &authority, idle))
                .catch_unwind()
                .await;
            if served.is_err() {
                authority.count_panic();
            }
        });
    }
}

/// Queries on one TCP connection, each a two-byte length and a message, answered in turn.
async fn connection(
    mut stream: TcpStream,
    src: SocketAddr,
    authority: &Authority,
    idle: Duration,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let len = match tokio::time::timeout(idle, stream.read_u16()).await {
            Ok(Ok(len)) => usize::from(len),
            _ => return Ok(()),
        };
        // The message itself may not dawdle either.
        match tokio::time::timeout(idle, stream.read_exact(&mut buf[..len])).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let Some(answer) = answer(authority, &buf[..len], src, Protocol::Tcp).await else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&(answer.len() as u16).to_be_bytes());
        framed.extend_from_slice(&answer);
        tokio::time::timeout(idle, stream.write_all(&framed))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
    }
}

/// The answer to one message, if it gets one: none for what has no header or is itself an
/// answer (two servers must not bounce errors forever), FORMERR for what does not parse.
async fn answer(
    authority: &Authority,
    raw: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(raw)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        return None;
    }
    let Ok(request) = Request::from_bytes(raw.to_vec(), src, protocol) else {
        authority.count_malformed(protocol == Protocol::Tcp);
        return header_only(&header.metadata, ResponseCode::FormErr);
    };
    let slot = Answer {
        bytes: Arc::new(Mutex::new(None)),
        protocol,
    };
    authority
        .handle_request::<_, TokioTime>(&request, slot.clone())
        .await;
    let taken = slot.bytes.lock().unwrap_or_else(|e| e.into_inner()).take();
    taken.or_else(|| header_only(&request.metadata, ResponseCode::ServFail))
}

/// An answer of a header alone, with `code`.
fn header_only(request: &Metadata, code: ResponseCode) -> Option<Vec<u8>> {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = code;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    header.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    Some(bytes)
}

/// Where the `Authority` puts its answer: encoded, for the listener to send.
#[derive(Clone)]
struct Answer {
    bytes: Arc<Mutex<Option<Vec<u8>>>>,
    protocol: Protocol,
}

#[async_trait::async_trait]
impl ResponseHandler for Answer {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // Without EDNS a UDP answer is at most 512 bytes (RFC 1035 §4.2.1).
        let max = match self.protocol {
            Protocol::Udp => response.edns().map_or(512, |e| e.max_payload().max(512)),
            _ => u16::MAX,
        };
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = response.destructive_emit(&mut encoder).map_err(|e| {
            tracing::warn!(error = %e, "encoding a DNS answer");
            NetError::from(e)
        })?;
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes);
        Ok(info)
    }
}
