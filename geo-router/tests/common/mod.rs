//! A router on free ports with three regions, each with one edge whose `/healthz` is served by
//! a small HTTP server the test controls (up, stale, cut off from its cores, or gone), and a
//! DNS client that speaks the wire format over UDP or TCP.

#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use geo_router::RouterConfig;
use hickory_server::proto::op::{Edns, Message};
use hickory_server::proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_server::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const ZONE: &str = "shop.tradewind.test";
/// The clients of each region, as the demo's geo table has them.
pub const SUBNETS: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
/// The address each region's edge is answered with.
pub const EDGE_ADDRS: [&str; 3] = ["127.0.1.1", "127.0.2.1", "127.0.3.1"];

/// What an edge's `/healthz` says.
#[derive(Clone, Copy)]
pub struct EdgeSays {
    pub core_connected: bool,
    pub staleness_ms: u64,
}

pub struct HealthServer {
    pub says: Arc<Mutex<EdgeSays>>,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    pub async fn start() -> HealthServer {
        let says = Arc::new(Mutex::new(EdgeSays {
            core_connected: true,
            staleness_ms: 20,
        }));
        let state = Arc::clone(&says);
        let app = axum::Router::new().route(
            "/healthz",
            axum::routing::get(move || {
                let s = *state.lock().unwrap();
                async move {
                    let ok = s.core_connected && s.staleness_ms <= 5_000;
                    let code = if ok { 200 } else { 503 };
                    (
                        axum::http::StatusCode::from_u16(code).unwrap(),
                        axum::Json(serde_json::json!({
                            "status": if ok { "ok" } else { "degraded" },
                            "region": "r", "edge": "e", "applied_version": 12, "version_lag": 0,
                            "core_connected": s.core_connected, "staleness_ms": s.staleness_ms,
                            "stale_after_ms": 5000, "outbox_pending": 0, "accepting": true,
                        })),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        HealthServer { says, url, task }
    }

    /// The edge dies: its port refuses connections from now on.
    pub fn kill(&self) {
        self.task.abort();
    }
}

pub struct Router {
    pub dns: SocketAddr,
    pub http: String,
    pub edges: Vec<HealthServer>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for Router {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.task.abort();
    }
}

/// The config, with `dns_extra` lines in its `[dns]` table.
pub fn config(edges: &[HealthServer], dns_extra: &str) -> RouterConfig {
    let regions: [(&str, f64, f64); 3] = [
        ("cn-shanghai", 31.23, 121.47),
        ("ap-singapore", 1.35, 103.82),
        ("us-east", 38.9, -77.04),
    ];
    let mut text = format!(
        "zone = \"{ZONE}\"\n[dns]\nlisten = \"127.0.0.1:0\"\n{dns_extra}\nnameservers = [{{ name = \"ns1\", addresses = [\"127.0.0.1\", \"::1\"] }}]\n[http]\nlisten = \"127.0.0.1:0\"\n[http.listener]\nplain_http = true\n[health]\ninterval_ms = 100\ntimeout_ms = 300\n[geo]\nnetworks = [\n"
    );
    for (i, (name, _, _)) in regions.iter().enumerate() {
        text += &format!("  {{ cidr = \"{}\", region = \"{name}\" }},\n", SUBNETS[i]);
    }
    text += "]\n";
    for (i, (name, lat, lon)) in regions.iter().enumerate() {
        let v6 = if i == 1 { ", \"::1\"" } else { "" };
        text += &format!(
            "[[regions]]\nname = \"{name}\"\nlatitude = {lat}\nlongitude = {lon}\nedges = [{{ name = \"{name}-1\", health_url = \"{}\", addresses = [\"{}\"{v6}] }}]\n",
            edges[i].url, EDGE_ADDRS[i]
        );
    }
    util::config::parse(&text, std::path::Path::new("."), "test").unwrap()
}

impl Router {
    /// A router over three fresh health servers, once every edge is in the answers.
    pub async fn start(dns_extra: &str) -> Router {
        Router::start_with(dns_extra, |_| {}).await
    }

    /// `start`, with the config changed by `change` first.
    pub async fn start_with(dns_extra: &str, change: impl FnOnce(&mut RouterConfig)) -> Router {
        let mut edges = Vec::new();
        for _ in 0..3 {
            edges.push(HealthServer::start().await);
        }
        let mut cfg = config(&edges, dns_extra);
        change(&mut cfg);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(geo_router::serve(
            cfg,
            async {
                let _ = stopped.await;
            },
            move |s| {
                let _ = ready_tx.send(s);
            },
        ));
        let started = ready.await.expect("the router starts");
        let r = Router {
            dns: started.dns,
            http: format!("http://{}", started.http),
            edges,
            stop: Some(stop),
            task,
        };
        r.wait_for(Duration::from_secs(10), |h| {
            h["edges"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["up"] == true)
        })
        .await;
        r
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn health(&self) -> serde_json::Value {
        reqwest::get(format!("{}/v1/health", self.http))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Polls `/v1/health` until `ok` holds; returns how long it took.
    pub async fn wait_for(
        &self,
        deadline: Duration,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            let h = self.health().await;
            if ok(&h) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < deadline,
                "waited {deadline:?}; health: {h:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A query for `name` of type `qtype`, with an EDNS Client Subnet when `ecs` is given.
pub fn query(name: &str, qtype: RecordType, ecs: Option<&str>) -> Message {
    use hickory_server::proto::op::Query;
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if let Some(subnet) = ecs {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        e.options_mut()
            .insert(EdnsOption::Subnet(subnet.parse::<ClientSubnet>().unwrap()));
        m.set_edns(e);
    }
    m
}

/// Sends raw bytes over UDP and returns the answer, if one comes; like a resolver, it asks
/// three times, 700 ms apart (a datagram may be dropped while the server's buffer is full).
pub async fn udp_raw(server: SocketAddr, bytes: &[u8]) -> Option<Vec<u8>> {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_raw_on(&sock, server, bytes).await
}

/// `udp_raw` from `sock`: queries from one socket reach the same one of the router's UDP
/// threads.
pub async fn udp_raw_on(
    sock: &tokio::net::UdpSocket,
    server: SocketAddr,
    bytes: &[u8],
) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 65_535];
    for _ in 0..3 {
        sock.send_to(bytes, server).await.unwrap();
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(700), sock.recv(&mut buf)).await
        {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

pub async fn udp(server: SocketAddr, m: &Message) -> Message {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp_on(&sock, server, m).await
}

/// `udp` from `sock`.
pub async fn udp_on(sock: &tokio::net::UdpSocket, server: SocketAddr, m: &Message) -> Message {
    let answer = udp_raw_on(sock, server, &m.to_vec().unwrap())
        .await
        .expect("an answer over UDP");
    let a = Message::from_vec(&answer).unwrap();
    assert_eq!(a.metadata.id, m.metadata.id);
    a
}

/// The value of the metric line that starts with `name` (its labels included), if any.
pub fn metric(page: &str, name: &str) -> Option<u64> {
    http_api::metrics::sample(page, name).map(|v| v as u64)
}

pub async fn tcp(server: SocketAddr, m: &Message) -> Message {
    let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
    ask_on(&mut s, m).await
}

/// One query on an open TCP connection.
pub async fn ask_on(s: &mut tokio::net::TcpStream, m: &Message) -> Message {
    let bytes = m.to_vec().unwrap();
    s.write_all(&(bytes.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&bytes).await.unwrap();
    let len = s.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// The addresses of an answer's A and AAAA records.
pub fn addresses(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// The ECS option of an answer: (source, scope).
pub fn ecs_of(m: &Message) -> Option<(u8, u8)> {
    use hickory_server::proto::rr::rdata::opt::EdnsCode;
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}
