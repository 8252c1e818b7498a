//! DNS on the wire: UDP and TCP listeners that parse each query, ask the `Authority` (a
//! hickory-server `RequestHandler`) and send its answer.
//!
//! UDP: a thread per core, each with its own socket on the port (`SO_REUSEPORT`; the kernel
//! spreads clients across them). Each turn waits for a query, reads what else has arrived
//! (`recvmmsg`), answers it all and sends the answers in one call (`sendmmsg`), so the socket's
//! buffer is the only queue, and a query asked before is answered from the thread's `cache`. At
//! the router's rates the kernel's work per datagram is most of the cost, so what is left to
//! spend is system calls, wake-ups and the router's own work: hickory-server's UDP listener
//! (a task per query, every answer through a channel to a writer task) answered half of what
//! gdnsd does; a loop per core on tokio, 0.9 of it; these threads, as much with every query
//! new and more with repeated ones (BENCHMARKS.md).
//! TCP is bound first, so a second router started on the same port fails there before it
//! could join the first one's UDP sockets.
//!
//! Every UDP answer is first weighed by response-rate limiting (`rrl`): over its network's
//! rate it is dropped or sent truncated, so the router cannot amplify a forged flood.
//!
//! TCP: at most `tcp_connections_max` connections, each closed after `tcp_idle_ms` without a
//! query; queries on one connection are answered in turn.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use std::time::Duration;

use hickory_server::net::NetError;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Header, HeaderCounts, MessageType, Metadata, ResponseCode};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::cache::AnswerCache;
use crate::dns::Authority;
use crate::metrics::Tally;
use crate::rrl::{Rrl, Verdict, truncated};

/// Largest UDP query read: EDNS buffers are at most 4096 in practice; longer datagrams arrive
/// cut short and are answered FORMERR.
const UDP_QUERY_MAX_BYTES: usize = 4_096;

/// How often a UDP loop waiting for queries checks whether it should stop.
const UDP_STOP_CHECK: Duration = Duration::from_millis(100);
/// Queries read, and answers sent, per system call (`recvmmsg`/`sendmmsg`).
const UDP_BATCH: usize = 32;
/// Bytes the UDP loops' answer caches keep, shared out between them (`cache`).
const UDP_CACHE_BYTES: usize = 16 << 20;

/// The DNS sockets on `addr`: the TCP listener, then `udp` UDP sockets on its port, blocking,
/// sharing the port with `SO_REUSEPORT` (the kernel spreads clients across them, and each loop
/// waits on its own socket's queue). TCP first: a second router started on the same port fails
/// there, before it could join the first one's UDP sockets. With port 0 the TCP port is taken
/// as it comes, and tried again when its UDP twin is in use.
pub fn bind(
    addr: SocketAddr,
    udp: usize,
) -> std::io::Result<(std::net::TcpListener, Vec<std::net::UdpSocket>)> {
    let mut tries = 0;
    loop {
        let tcp = std::net::TcpListener::bind(addr)?;
        tcp.set_nonblocking(true)?;
        match bind_udp(tcp.local_addr()?, udp) {
            Ok(sockets) => return Ok((tcp, sockets)),
            Err(e)
                if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 16 =>
            {
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn bind_udp(addr: SocketAddr, count: usize) -> std::io::Result<Vec<std::net::UdpSocket>> {
    use socket2::{Domain, Protocol as Proto, Socket, Type};
    (0..count.max(1))
        .map(|_| {
            let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Proto::UDP))?;
            s.set_reuse_port(true)?;
            // A burst of queries waits in the kernel rather than being dropped (the kernel
            // caps it at net.core.rmem_max).
            let _ = s.set_recv_buffer_size(4 << 20);
            s.set_read_timeout(Some(UDP_STOP_CHECK))?;
            s.bind(&addr.into())?;
            Ok(s.into())
        })
        .collect()
}

/// Threads that answer the queries arriving on UDP, one per socket, until stopped.
pub struct UdpLoops {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl UdpLoops {
    /// A thread reading each of `sockets` (made by `bind_udp`).
    pub fn start(
        sockets: Vec<std::net::UdpSocket>,
        authority: Arc<Authority>,
        rrl: Arc<Rrl>,
    ) -> std::io::Result<UdpLoops> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut started = UdpLoops {
            stop: Arc::clone(&stop),
            threads: Vec::with_capacity(sockets.len()),
        };
        let cache_bytes = UDP_CACHE_BYTES / sockets.len().max(1);
        for (i, socket) in sockets.into_iter().enumerate() {
            let (authority, stop, rrl) =
                (Arc::clone(&authority), Arc::clone(&stop), Arc::clone(&rrl));
            let cache = AnswerCache::new(cache_bytes);
            started.threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-udp-{i}"))
                    .spawn(move || serve_udp(&socket, &authority, &rrl, cache, &stop))?,
            );
        }
        Ok(started)
    }

    /// Stops the loops and waits for them (each notices within `UDP_STOP_CHECK`, or once the
    /// batch in hand is answered), which closes the sockets. (Dropped instead, the loops stop
    /// as soon, but nothing waits for them.)
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for UdpLoops {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One UDP loop. Each turn reads what has arrived (up to `UDP_BATCH` in one call; when nothing
/// has, it yields once, then waits), answers it, and sends the answers in one call: at
/// saturation the system calls and wake-ups, not the answers, are most of the cost
/// (BENCHMARKS.md).
fn serve_udp(
    socket: &std::net::UdpSocket,
    authority: &Authority,
    rrl: &Rrl,
    mut cache: AnswerCache,
    stop: &AtomicBool,
) {
    let fd = socket.as_raw_fd();
    let mut queries = vec![[0u8; UDP_QUERY_MAX_BYTES]; UDP_BATCH];
    let mut read_headers = MultiHeaders::<SockaddrStorage>::preallocate(UDP_BATCH, None);
    let mut arrived: Vec<(usize, Option<SocketAddr>)> = Vec::with_capacity(UDP_BATCH);
    let mut answers: Vec<(Vec<u8>, SockaddrStorage)> = Vec::with_capacity(UDP_BATCH);
    let mut yielded = false;
    while !stop.load(Ordering::Relaxed) {
        arrived.clear();
        let flags = if yielded {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_WAITFORONE | MsgFlags::MSG_DONTWAIT
        };
        let read = {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> =
                queries.iter_mut().map(|q| [IoSliceMut::new(q)]).collect();
            recvmmsg(fd, &mut read_headers, slices.iter_mut(), flags, None).map(|results| {
                arrived.extend(results.map(|m| (m.bytes, m.address.and_then(socket_addr))))
            })
        };
        match read {
            Ok(()) => yielded = false,
            // Nothing waiting: let whatever else is ready run first (the clients our answers
            // just woke, on a shared machine), then sleep only if still nothing has come. That
            // reads fuller batches and sleeps and wakes less: on the benchmark's two shared
            // cores, about a fifth less CPU per answer (BENCHMARKS.md).
            Err(Errno::EAGAIN) if !yielded => {
                yielded = true;
                std::thread::yield_now();
                continue;
            }
            // Nothing arrived within `UDP_STOP_CHECK`, or a signal.
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(e) => {
                // ICMP errors of earlier sends surface here; the socket is still good. Anything
                // else that repeats must not spin.
                tracing::debug!(error = %e, "reading DNS queries");
                if e != Errno::ECONNREFUSED {
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
        }
        answers.clear();
        // Read before anything is answered: what is kept was answered from this board or a
        // newer one.
        let generation = authority.generation();
        let now = std::time::Instant::now();
        for (query, &(n, src)) in queries.iter().zip(&arrived) {
            let Some(src) = src.filter(|s| s.port() != 0 && !s.ip().is_unspecified()) else {
                continue;
            };
            let query = &query[..n];
            match rrl.verdict(src.ip(), now) {
                Verdict::Send => {}
                Verdict::Slip => {
                    authority.count_rate_limited(true);
                    if let Some(t) = truncated(query) {
                        answers.push((t, SockaddrStorage::from(src)));
                    }
                    continue;
                }
                Verdict::Drop => {
                    authority.count_rate_limited(false);
                    continue;
                }
            }
            if let Some((again, tally)) = cache.lookup(generation, query, src.ip()) {
                authority.count_cached(&tally);
                answers.push((again, SockaddrStorage::from(src)));
                continue;
            }
            // A bug that panics on some query costs that query, not the loop. (Nothing in an
            // answer waits: the health board is read under a lock, never awaited.)
            let answered = std::panic::catch_unwind(AssertUnwindSafe(|| {
                futures::executor::block_on(answer(authority, query, src, Protocol::Udp))
            }));
            match answered {
                Ok(Some(a)) => {
                    if let Some(tally) = a.tally {
                        cache.keep(query, src.ip(), &a.bytes, tally);
                    }
                    answers.push((a.bytes, SockaddrStorage::from(src)));
                }
                Ok(None) => {}
                Err(_) => authority.count_panic(),
            }
        }
        send_all(fd, &answers);
    }
}

/// Sends `answers`, as many per system call as the socket takes. An answer the kernel refuses
/// for its own sake (an address it cannot reach, say) is dropped, as a lost datagram would be.
fn send_all(fd: RawFd, answers: &[(Vec<u8>, SockaddrStorage)]) {
    let mut next = 0;
    while next < answers.len() {
        match send_batch(fd, &answers[next..]) {
            Ok(sent) => next += sent.max(1),
            Err(Errno::EINTR) => {}
            Err(e) => {
                // The error is the first unsent answer's.
                tracing::debug!(error = %e, "sending a DNS answer");
                next += 1;
            }
        }
    }
}

/// Sends `answers` with one `sendmmsg` call; how many the kernel took. (Made here rather than
/// through nix, whose `sendmmsg` results, when counted, read back address slots it never
/// wrote.)
#[allow(unsafe_code)]
fn send_batch(fd: RawFd, answers: &[(Vec<u8>, SockaddrStorage)]) -> Result<usize, Errno> {
    use nix::libc;
    use nix::sys::socket::SockaddrLike;
    let mut iovs: Vec<libc::iovec> = answers
        .iter()
        .map(|(a, _)| libc::iovec {
            iov_base: a.as_ptr().cast_mut().cast(),
            iov_len: a.len(),
        })
        .collect();
    let mut headers: Vec<libc::mmsghdr> = iovs
        .iter_mut()
        .zip(answers)
        .map(|(iov, (_, to))| {
            // SAFETY: `msghdr` is plain data; all zeroes is an empty header.
            let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
            h.msg_name = to.as_ptr().cast_mut().cast();
            h.msg_namelen = to.len();
            h.msg_iov = iov;
            h.msg_iovlen = 1;
            libc::mmsghdr {
                msg_hdr: h,
                msg_len: 0,
            }
        })
        .collect();
    // SAFETY: each header points at one answer's bytes, its iovec and its address, all borrowed
    // from `answers` and `iovs`, which outlive the call and do not move during it; the kernel
    // reads them and writes only each header's `msg_len`. At most `UDP_BATCH` headers.
    let sent =
        unsafe { libc::sendmmsg(fd, headers.as_mut_ptr(), headers.len() as libc::c_uint, 0) };
    Errno::result(sent).map(|n| n as usize)
}

/// The standard form of a socket address from the kernel.
fn socket_addr(s: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = s.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    s.as_sockaddr_in6().map(|a| SocketAddr::V6((*a).into()))
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
        let Some(Answered { bytes: answer, .. }) =
            answer(authority, &buf[..len], src, Protocol::Tcp).await
        else {
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

/// An answer to send, counted in the metrics.
struct Answered {
    bytes: Vec<u8>,
    /// What the `Authority` counted for it: the answer may be given again from a cache (not
    /// for answers made here, to what did not parse).
    tally: Option<Tally>,
}

/// The answer to one UDP datagram from `src`, as the UDP loop makes it (without its rate limit
/// and cache): what the DNS fuzz target drives.
pub fn answer_datagram(authority: &Authority, raw: &[u8], src: SocketAddr) -> Option<Vec<u8>> {
    futures::executor::block_on(answer(authority, raw, src, Protocol::Udp)).map(|a| a.bytes)
}

/// The answer to one message, if it gets one: none for what has no header or is itself an
/// answer (two servers must not bounce errors forever), FORMERR for what does not parse.
async fn answer(
    authority: &Authority,
    raw: &[u8],
    src: SocketAddr,
    protocol: Protocol,
) -> Option<Answered> {
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
    let (_, mut tally) = authority.respond(&request, slot.clone()).await;
    let taken = slot.bytes.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(bytes) = taken else {
        // The answer did not encode: SERVFAIL is what goes, and what is counted.
        tally.code = ResponseCode::ServFail;
        authority.count(&tally);
        return header_only(&request.metadata, ResponseCode::ServFail);
    };
    authority.count(&tally);
    Some(Answered {
        bytes,
        tally: Some(tally),
    })
}

/// An answer of a header alone, with `code`.
fn header_only(request: &Metadata, code: ResponseCode) -> Option<Answered> {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = code;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    let mut bytes = Vec::with_capacity(12);
    header.emit(&mut BinEncoder::new(&mut bytes)).ok()?;
    Some(Answered { bytes, tally: None })
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
