//! How a Raft member reaches the others: over the QUIC transport, or over the simulator's
//! network (`sim`). The members' code calls only this, so the simulator runs all of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::{MeshRequest, MeshResponse};
use crate::sim;
use crate::transport::{Handler, Transport, TransportError};

#[derive(Clone)]
pub enum Wire {
    Quic(Arc<Transport>),
    Sim(sim::Port),
}

impl From<Arc<Transport>> for Wire {
    fn from(t: Arc<Transport>) -> Self {
        Wire::Quic(t)
    }
}

impl Wire {
    /// Sends `request` to `peer` at `addr` and waits for its reply, at most `timeout`.
    pub async fn call(
        &self,
        peer: &str,
        addr: SocketAddr,
        request: &MeshRequest,
        timeout: Duration,
    ) -> Result<MeshResponse, TransportError> {
        match self {
            Wire::Quic(t) => t.call(peer, addr, request, timeout).await,
            Wire::Sim(p) => p.call(peer, request, timeout).await,
        }
    }

    /// The round trip to `peer`, as an open connection measures it; `None` without one.
    pub async fn rtt(&self, peer: &str, addr: SocketAddr) -> Option<Duration> {
        match self {
            Wire::Quic(t) => t.rtt(peer, addr).await,
            Wire::Sim(p) => p.rtt(peer),
        }
    }

    /// Opens a connection to `peer` unless one is open.
    pub async fn warm(&self, peer: &str, addr: SocketAddr) -> Result<(), TransportError> {
        match self {
            Wire::Quic(t) => t.warm(peer, addr).await,
            Wire::Sim(_) => Ok(()),
        }
    }

    /// Answers the other members' requests with `handler`, until `close`.
    pub fn serve<H>(&self, handler: Arc<H>) -> Option<tokio::task::JoinHandle<()>>
    where
        H: Handler<Request = MeshRequest, Response = MeshResponse>,
    {
        match self {
            Wire::Quic(t) => Some(t.serve(handler)),
            Wire::Sim(p) => {
                p.serve(handler);
                None
            }
        }
    }

    pub fn close(&self) {
        match self {
            Wire::Quic(t) => t.close(),
            Wire::Sim(p) => p.close(),
        }
    }

    /// A random number of milliseconds in `range` (an election timeout): from the
    /// simulation's seed when simulated.
    pub fn draw_ms(&self, range: std::ops::Range<u64>) -> u64 {
        match self {
            Wire::Quic(_) => rand::random_range(range),
            Wire::Sim(p) => p.draw_ms(range),
        }
    }
}
