//! DNS over UDP: one socket read by a loop per core, each of which parses a query, asks the
//! `Authority` (the same `RequestHandler` hickory-server's TCP listener calls) and sends the
//! answer itself. (One socket, not one per core with `SO_REUSEPORT`: with that, a second router
//! started on the same port would silently share its queries instead of failing to start, and
//! two binding port 0 may be handed the same port.)
//!
//! hickory-server's own UDP listener reads one socket, spawns a task per query and sends every
//! answer through a channel to a writer task; at the router's rates that hand-off, not the
//! answer, is the cost (BENCHMARKS.md), so UDP is served here and TCP stays with hickory-server.

use std::net::SocketAddr;
use std::sync::Arc;

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
use tokio::net::UdpSocket;

use crate::dns::Authority;

/// Largest query read: EDNS buffers are at most 4096 in practice; longer datagrams arrive cut
/// short and are answered FORMERR.
const QUERY_MAX_BYTES: usize = 4_096;

/// The socket on `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
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
pub async fn serve(socket: Arc<UdpSocket>, authority: Arc<Authority>) {
    let mut buf = vec![0u8; QUERY_MAX_BYTES];
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
        let raw = &buf[..n];
        let Ok(header) = Header::read(&mut BinDecoder::new(raw)) else {
            // Not even a header: nothing to answer to.
            continue;
        };
        if header.metadata.message_type == MessageType::Response {
            // Never answer an answer: two servers could bounce errors forever.
            continue;
        }
        let reply = Reply {
            socket: Arc::clone(&socket),
            to: src,
        };
        match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
            Ok(request) => {
                authority
                    .handle_request::<_, TokioTime>(&request, reply)
                    .await;
            }
            Err(_) => {
                authority.count_malformed();
                reply
                    .send_header(&header.metadata, ResponseCode::FormErr)
                    .await;
            }
        }
    }
}

/// Where one answer goes.
#[derive(Clone)]
struct Reply {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
}

impl Reply {
    /// An answer of a header alone, with `code`.
    async fn send_header(&self, request: &Metadata, code: ResponseCode) {
        let mut metadata = Metadata::response_from_request(request);
        metadata.response_code = code;
        let header = Header {
            metadata,
            counts: HeaderCounts::default(),
        };
        let mut bytes = Vec::with_capacity(12);
        if header.emit(&mut BinEncoder::new(&mut bytes)).is_ok() {
            let _ = self.socket.send_to(&bytes, self.to).await;
        }
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
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
        let max = response.edns().map_or(512, |e| e.max_payload().max(512));
        let request = *response.metadata();
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        match response.destructive_emit(&mut encoder) {
            Ok(info) => {
                self.socket.send_to(&bytes, self.to).await?;
                Ok(info)
            }
            Err(e) => {
                tracing::warn!(error = %e, "encoding a DNS answer");
                self.send_header(&request, ResponseCode::ServFail).await;
                Err(NetError::from(e))
            }
        }
    }
}
