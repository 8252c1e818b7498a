//! A simulated network for a Raft group whose members run in one process, on tokio's paused
//! clock: the simulator (`simulator/`) runs the real members (openraft, the elections of
//! `raft::stand`, rush and carried entries, the log and state-machine stores) over it, and
//! only the wire and the clock are made up.
//!
//! Every message is encoded and decoded as the transport would (one frame per request and
//! per reply), and each way may be dropped, delayed (so reordered) or duplicated, or find its
//! link cut or its receiver crashed; a message that is lost leaves its caller waiting out its
//! timeout, as a lost QUIC stream would. Everything random, the members' election timeouts
//! included, is drawn from one generator seeded once, in the order the members ask, and the
//! members' store calls run on the simulator's own thread (`blocking`): a seed replays the
//! same run.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::certs::Role;
use crate::frame;
use crate::protocol::{MeshRequest, MeshResponse};
use crate::tls::Peer;
use crate::transport::{Answer, Handler, TransportError};

/// Lines of history kept (the latest), printed when a run fails.
const HISTORY_MAX: usize = 4_000;

thread_local! {
    /// Whether this thread runs a simulation: store calls then run on it, in order.
    static SIMULATED: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as a simulator's: the members' store calls made on it run on it, not on
/// tokio's blocking threads, whose timing no seed decides.
pub fn simulate_on_this_thread() {
    SIMULATED.with(|s| s.set(true));
}

/// Runs `f`, a call that blocks (a store's), on a blocking thread, or here in a simulation.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, tokio::task::JoinError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if SIMULATED.with(Cell::get) {
        Ok(f())
    } else {
        tokio::task::spawn_blocking(f).await
    }
}

/// How every link behaves unless told otherwise: each way of each message.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// One-way delay, drawn between these.
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Chance that a message is lost.
    pub drop: f64,
    /// Chance that a request arrives twice (the copy later, its answer lost).
    pub duplicate: f64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(5),
            drop: 0.0,
            duplicate: 0.0,
        }
    }
}

type Serve = Arc<
    dyn Fn(Peer, MeshRequest) -> Pin<Box<dyn Future<Output = Answer<MeshResponse>> + Send>>
        + Send
        + Sync,
>;

struct Node {
    /// Raised at every crash: messages to or from an earlier life are lost.
    life: u64,
    serve: Option<Serve>,
}

struct State {
    rng: StdRng,
    faults: Faults,
    /// Links cut, one way each (from, to).
    cut: BTreeSet<(String, String)>,
    /// Extra one-way delay on a link (from, to): a long link.
    long: BTreeMap<(String, String), Duration>,
    nodes: BTreeMap<String, Node>,
    history: VecDeque<String>,
    /// When the run began, for the history's times.
    origin: tokio::time::Instant,
    messages: u64,
    lost: u64,
}

/// The network: shared by every member's `Port` and by the simulator that breaks it.
#[derive(Clone)]
pub struct Net(Arc<Mutex<State>>);

/// What happens to one message on one way.
enum Fate {
    Lost,
    Arrives {
        after: Duration,
        copy: Option<Duration>,
    },
}

impl Net {
    pub fn new(seed: u64, faults: Faults) -> Net {
        Net(Arc::new(Mutex::new(State {
            rng: StdRng::seed_from_u64(seed),
            faults,
            cut: BTreeSet::new(),
            long: BTreeMap::new(),
            nodes: BTreeMap::new(),
            history: VecDeque::new(),
            origin: tokio::time::Instant::now(),
            messages: 0,
            lost: 0,
        })))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The port of member `name` in a new life (its first, or after a crash).
    pub fn port(&self, name: &str) -> Port {
        let mut s = self.state();
        let node = s.nodes.entry(name.to_owned()).or_insert(Node {
            life: 0,
            serve: None,
        });
        node.life += 1;
        node.serve = None;
        Port {
            net: self.clone(),
            name: name.into(),
            life: node.life,
        }
    }

    /// Member `name` crashes: what it was sending, answering or about to receive is lost.
    pub fn crash(&self, name: &str) {
        let mut s = self.state();
        if let Some(n) = s.nodes.get_mut(name) {
            n.life += 1;
            n.serve = None;
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: &str, to: &str) {
        self.state().cut.insert((from.to_owned(), to.to_owned()));
    }

    /// Makes the link from `from` to `to` longer by `extra` each message (one way).
    pub fn lengthen(&self, from: &str, to: &str, extra: Duration) {
        self.state()
            .long
            .insert((from.to_owned(), to.to_owned()), extra);
    }

    /// Every link whole and short again.
    pub fn heal(&self) {
        let mut s = self.state();
        s.cut.clear();
        s.long.clear();
    }

    /// A draw from the run's generator (for the simulator's own choices).
    pub fn draw<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut self.state().rng)
    }

    /// Adds a line to the run's history, stamped with the simulated time.
    pub fn note(&self, line: impl Into<String>) {
        let mut s = self.state();
        let line = format!("{:>9.3}s {}", s.origin.elapsed().as_secs_f64(), line.into());
        if s.history.len() == HISTORY_MAX {
            s.history.pop_front();
        }
        s.history.push_back(line);
    }

    /// The latest lines of history.
    pub fn history(&self) -> Vec<String> {
        self.state().history.iter().cloned().collect()
    }

    /// Messages sent, and lost.
    pub fn counts(&self) -> (u64, u64) {
        let s = self.state();
        (s.messages, s.lost)
    }

    fn alive(&self, name: &str, life: u64) -> bool {
        self.state().nodes.get(name).is_some_and(|n| n.life == life)
    }

    /// The fate of one message from `from` to `to`, drawn now.
    fn fate(&self, from: &str, to: &str) -> Fate {
        let mut s = self.state();
        s.messages += 1;
        let f = s.faults;
        let key = (from.to_owned(), to.to_owned());
        if s.cut.contains(&key) || s.rng.random_bool(f.drop.clamp(0.0, 1.0)) {
            s.lost += 1;
            return Fate::Lost;
        }
        let extra = s.long.get(&key).copied().unwrap_or_default();
        let lo = f.delay_min.as_micros() as u64;
        let hi = (f.delay_max.as_micros() as u64).max(lo + 1);
        let rng = &mut s.rng;
        let after = Duration::from_micros(rng.random_range(lo..hi)) + extra;
        let copy = rng
            .random_bool(f.duplicate.clamp(0.0, 1.0))
            .then(|| Duration::from_micros(rng.random_range(lo..hi)) + extra);
        Fate::Arrives { after, copy }
    }

    /// Where `to` answers, if it is up, `from` still in its life `life`, and the link whole
    /// now, on arrival.
    fn arrive(&self, from: &str, life: u64, to: &str) -> Option<(Serve, u64)> {
        let s = self.state();
        if s.nodes.get(from).is_none_or(|n| n.life != life)
            || s.cut.contains(&(from.to_owned(), to.to_owned()))
        {
            return None;
        }
        let node = s.nodes.get(to)?;
        Some((node.serve.clone()?, node.life))
    }

    fn one_way(&self, from: &str, to: &str) -> Option<Duration> {
        let s = self.state();
        if s.cut.contains(&(from.to_owned(), to.to_owned())) {
            return None;
        }
        let extra = s
            .long
            .get(&(from.to_owned(), to.to_owned()))
            .copied()
            .unwrap_or_default();
        Some((s.faults.delay_min + s.faults.delay_max) / 2 + extra)
    }
}

/// One member's place on the network, for one life.
#[derive(Clone)]
pub struct Port {
    net: Net,
    name: Arc<str>,
    life: u64,
}

impl Port {
    /// Answers requests with `handler` from now until this life ends.
    pub fn serve<H>(&self, handler: Arc<H>)
    where
        H: Handler<Request = MeshRequest, Response = MeshResponse>,
    {
        let serve: Serve = Arc::new(move |peer, request| {
            let handler = Arc::clone(&handler);
            Box::pin(async move { handler.handle(&peer, request).await })
        });
        let mut s = self.net.state();
        if let Some(n) = s.nodes.get_mut(&*self.name)
            && n.life == self.life
        {
            n.serve = Some(serve);
        }
    }

    /// Stops answering (the member shut down).
    pub fn close(&self) {
        let mut s = self.net.state();
        if let Some(n) = s.nodes.get_mut(&*self.name)
            && n.life == self.life
        {
            n.serve = None;
        }
    }

    /// The round trip to `to` as a connection would measure it: `None` while the link is cut.
    pub fn rtt(&self, to: &str) -> Option<Duration> {
        Some(self.net.one_way(&self.name, to)? + self.net.one_way(to, &self.name)?)
    }

    /// A draw of an election timeout, from the run's generator.
    pub fn draw_ms(&self, range: std::ops::Range<u64>) -> u64 {
        self.net.draw(|r| r.random_range(range))
    }

    /// Sends `request` to `to` and waits for its answer, at most `timeout`.
    pub async fn call(
        &self,
        to: &str,
        request: &MeshRequest,
        timeout: Duration,
    ) -> Result<MeshResponse, TransportError> {
        let call_err = |why| TransportError::Call {
            peer: to.to_owned(),
            why,
        };
        let bytes = frame::encode(request).map_err(call_err)?;
        let exchange = async {
            let Fate::Arrives { after, copy } = self.net.fate(&self.name, to) else {
                return std::future::pending().await;
            };
            if let Some(later) = copy {
                let (port, to, bytes) = (self.clone(), to.to_owned(), bytes.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(later).await;
                    if let Some((serve, _)) = port.net.arrive(&port.name, port.life, &to)
                        && let Ok(request) = frame::decode_body(&bytes[4..])
                    {
                        // The copy's answer goes nowhere: its caller took the first.
                        let _ = serve(port.peer(), request).await;
                    }
                });
            }
            tokio::time::sleep(after).await;
            let Some((serve, their_life)) = self.net.arrive(&self.name, self.life, to) else {
                return std::future::pending().await;
            };
            let request = frame::decode_body(&bytes[4..]).map_err(call_err)?;
            let answer = serve(self.peer(), request).await;
            let Answer::Reply(reply) = answer else {
                return Err(TransportError::Refused {
                    peer: to.to_owned(),
                    reason: "streams are not simulated".into(),
                });
            };
            let reply = frame::encode(&reply).map_err(call_err)?;
            // The answer leaves only if its member lived through answering.
            let Fate::Arrives { after, .. } = self.net.fate(to, &self.name) else {
                return std::future::pending().await;
            };
            if !self.net.alive(to, their_life) {
                return std::future::pending().await;
            }
            tokio::time::sleep(after).await;
            if !self.net.alive(&self.name, self.life) {
                return std::future::pending().await;
            }
            frame::decode_body(&reply[4..]).map_err(call_err)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                peer: to.to_owned(),
                after: timeout,
            })?
    }

    fn peer(&self) -> Peer {
        Peer {
            name: Arc::clone(&self.name),
            role: Some(Role::Core),
        }
    }
}
