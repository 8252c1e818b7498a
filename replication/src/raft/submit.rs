//! Writes and reads from nodes outside the group (edges). The group's members take them over
//! the same QUIC endpoint as Raft; what such a node may write or read, and what a write becomes
//! in the log, is the application's to decide (`Submissions`). `submit` is how the node sends
//! a write, `read` a read.

use std::net::SocketAddr;
use std::time::Duration;

use crate::protocol::{MeshRequest, MeshResponse, Payload, WriteError};
use crate::transport::Transport;

/// Sends `payload` to member `name` at `addr` to vet and commit, waiting at most `timeout`. A
/// member that cannot be reached is `Unavailable`: the caller tries another, with the same
/// payload (the application deduplicates).
pub async fn submit(
    transport: &Transport,
    name: &str,
    addr: SocketAddr,
    payload: Payload,
    timeout: Duration,
) -> Result<Payload, WriteError> {
    call(transport, name, addr, MeshRequest::Submit(payload), timeout).await
}

/// Asks member `name` at `addr` to answer the read `payload` from its store, waiting at most
/// `timeout`; errors as `submit`'s.
pub async fn read(
    transport: &Transport,
    name: &str,
    addr: SocketAddr,
    payload: Payload,
    timeout: Duration,
) -> Result<Payload, WriteError> {
    call(transport, name, addr, MeshRequest::Read(payload), timeout).await
}

async fn call(
    transport: &Transport,
    name: &str,
    addr: SocketAddr,
    request: MeshRequest,
    timeout: Duration,
) -> Result<Payload, WriteError> {
    match transport
        .call::<_, MeshResponse>(name, addr, &request, timeout)
        .await
    {
        Ok(MeshResponse::Write(r) | MeshResponse::Read(r)) => r,
        Ok(MeshResponse::Refused(why)) => Err(WriteError::refused(fault::Kind::BadRequest, why)),
        Ok(_) => Err(WriteError::Unavailable(format!(
            "{name} answered with something else"
        ))),
        Err(e) => Err(WriteError::Unavailable(e.to_string())),
    }
}
