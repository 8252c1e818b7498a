//! How the edge reaches the core regions: its writes (`EdgeWrite`) and reads (`EdgeRead`) over
//! the mesh to the first core that answers, starting with the one that answered last (its own
//! region's, normally); that core forwards a write to the leader, wherever it is, and answers a
//! read from its own store. A core that cannot be reached, or has no leader to forward to, is
//! passed over for the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use commerce::command::{EdgeRead, EdgeWrite, Outcome, ReadReply};
use replication::feed::Core;
use replication::protocol::{Payload, WriteError};
use replication::transport::Transport;

#[derive(Clone)]
pub struct Cores {
    transport: Arc<Transport>,
    cores: Arc<Vec<Core>>,
    /// The core that answered last.
    current: Arc<AtomicUsize>,
}

impl Cores {
    pub fn new(transport: Arc<Transport>, cores: Vec<Core>) -> Self {
        Cores {
            transport,
            cores: Arc::new(cores),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn list(&self) -> &[Core] {
        &self.cores
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    /// Sends `write`, giving each core at most `per_core`; the outcome, or the last core's
    /// reason. A refusal (the write itself is wrong) or an overloaded core is not tried
    /// elsewhere.
    pub async fn write(
        &self,
        write: &EdgeWrite,
        per_core: Duration,
    ) -> Result<Outcome, WriteError> {
        self.ask(write, per_core, Ask::Write).await
    }

    /// Sends `read` as `write` sends a write: the first core that answers answers it.
    pub async fn read(&self, read: &EdgeRead, per_core: Duration) -> Result<ReadReply, WriteError> {
        self.ask(read, per_core, Ask::Read).await
    }

    async fn ask<Q: codec::Versioned, R: codec::Versioned>(
        &self,
        question: &Q,
        per_core: Duration,
        ask: Ask,
    ) -> Result<R, WriteError> {
        let bytes = codec::encode(question)
            .map_err(|e| WriteError::refused(fault::Kind::Internal, e.to_string()))?;
        let start = self.current.load(Ordering::Relaxed);
        let n = self.cores.len();
        let mut last = WriteError::Unavailable("no core configured".into());
        for i in 0..n {
            let at = (start + i) % n;
            let core = &self.cores[at];
            let payload = Payload(bytes.clone());
            let (t, name, addr) = (&self.transport, &core.name, core.addr);
            let answer = match ask {
                Ask::Write => replication::raft::submit(t, name, addr, payload, per_core).await,
                Ask::Read => replication::raft::read(t, name, addr, payload, per_core).await,
            };
            match answer {
                Ok(reply) => {
                    self.current.store(at, Ordering::Relaxed);
                    return codec::decode(&reply.0)
                        .map_err(|e| WriteError::Unavailable(format!("{}: {e}", core.name)));
                }
                // The question itself is wrong, or the region overloaded: another core forwards
                // a write to the same leader.
                Err(e @ (WriteError::Refused { .. } | WriteError::Overloaded(_))) => return Err(e),
                Err(e) => {
                    tracing::debug!(core = %core.name, error = %e, "core did not answer; trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

#[derive(Clone, Copy)]
enum Ask {
    Write,
    Read,
}
