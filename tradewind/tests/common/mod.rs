//! Real `tradewind` processes for tests: a config in a temp dir, the binary started on port 0,
//! its ready line awaited with a deadline, SIGKILL on demand and on drop.

#![allow(dead_code)] // each test file uses a different part of this

pub mod carve;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const TOKEN: &str = "tw_process_test_token";

/// How long a core may take to open its store and listen.
const READY_DEADLINE: Duration = Duration::from_secs(60);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tradewind")
}

/// The CA every certificate of this test binary is signed by (`ca.pem`, `ca.key` in it), so
/// that one client (`client`) trusts every process's HTTPS listener.
pub fn test_ca() -> &'static Path {
    static CA: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        replication::certs::init_ca(dir.path()).unwrap();
        replication::certs::make_secret(&dir.path().join(replication::certs::SECRET_FILE)).unwrap();
        dir
    })
    .path()
}

/// The identity provider every edge of this test binary trusts (`shoppers.key`,
/// `shoppers.jwks.json` in it).
pub fn test_identity() -> &'static Path {
    static ID: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        http_api::identity::issuer::init(dir.path()).unwrap();
        dir
    })
    .path()
}

/// The customer the test orders are for (`order`).
pub const CUSTOMER: &str = "c-1";

/// A shopper token for `customer` (in `group`), from the test identity provider.
pub fn shopper_token(customer: &str, group: Option<&str>) -> String {
    let now = util::clock::now_ms().unsigned_abs() / 1_000;
    http_api::identity::issuer::Issuer::demo(test_identity())
        .unwrap()
        .sign(customer, group, now, 3_600)
        .unwrap()
}

/// A shopper token for `customer` from the identity provider of a running demo (its
/// mesh.json's `identity`).
pub fn demo_shopper_token(mesh: &serde_json::Value, customer: &str) -> String {
    let dir = Path::new(
        mesh["identity"]
            .as_str()
            .expect("mesh.json names its identity provider"),
    );
    let now = util::clock::now_ms().unsigned_abs() / 1_000;
    http_api::identity::issuer::Issuer::demo(dir)
        .unwrap()
        .sign(customer, None, now, 3_600)
        .unwrap()
}

/// A client of the storefront signed in as `CUSTOMER` (every request carries their token).
pub fn shopper_client() -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    let bearer = format!("Bearer {}", shopper_token(CUSTOMER, None));
    h.insert(reqwest::header::AUTHORIZATION, bearer.parse().unwrap());
    http_api::client::trusting(&test_ca().join("ca.pem"))
        .unwrap()
        .default_headers(h)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// The `[shoppers]` section of an edge that trusts the test identity provider.
pub fn shoppers_section() -> String {
    format!(
        "[shoppers]\nissuer = {:?}\naudience = {:?}\njwks_file = {:?}\n",
        http_api::identity::issuer::DEMO_ISSUER,
        http_api::identity::issuer::DEMO_AUDIENCE,
        http_api::identity::issuer::jwks_path(test_identity()),
    )
}

/// `dir`, holding the test CA (once), and certificates for `nodes` (in `role`) that it lacks.
pub fn certs_in(dir: &Path, role: replication::certs::Role, nodes: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["ca.pem", "ca.key", replication::certs::SECRET_FILE] {
        if !dir.join(f).exists() {
            std::fs::copy(test_ca().join(f), dir.join(f)).unwrap();
        }
    }
    for n in nodes {
        if !dir.join(format!("{n}.pem")).exists() {
            replication::certs::issue_node(dir, n, role).unwrap();
        }
        // A region's personal data key, beside the certificates as the demo keeps it.
        if role == replication::certs::Role::Core
            && !dir.join("keys").join(format!("{n}.keys")).exists()
        {
            sealing::keys::rotate(&dir.join("keys"), n).unwrap();
        }
        if role == replication::certs::Role::Core {
            let period = sealing::shred::DEFAULT_PERIOD_MS;
            sealing::shred::ensure(
                &dir.join("keys"),
                n,
                period,
                sealing::shred::backfill_ms(period),
            )
            .unwrap();
        }
    }
    dir.to_path_buf()
}

/// The TOML keys of an HTTPS listener on 127.0.0.1 for `name`, its certificate issued in
/// `certs` by the test CA.
pub fn https_keys(certs: &Path, name: &str) -> String {
    let (cert, key) =
        replication::certs::issue_server(certs, name, &["127.0.0.1".to_owned()]).unwrap();
    format!("tls_cert = {cert:?}\ntls_key = {key:?}\n")
}

/// Writes a core config for `dir` (data in `dir/data`), its admin API on a free port over TLS.
pub fn write_config(dir: &Path) -> PathBuf {
    let digest = http_api::bearer::sha256_hex(TOKEN);
    let https = https_keys(
        &certs_in(&dir.join("certs"), replication::certs::Role::Core, &[]),
        "test-region",
    );
    let path = dir.join("core.toml");
    std::fs::write(
        &path,
        format!(
            r#"
region = "test-region"
[store]
backend = "redb"
path = "data/core.redb"
[admin]
listen = "127.0.0.1:0"
token_sha256 = ["{digest}"]
[admin.http]
{https}"#
        ),
    )
    .unwrap();
    path
}

/// The regions of a test group.
pub const REGIONS: [&str; 3] = ["cn-shanghai", "ap-singapore", "us-east"];

/// A free port on loopback (TCP for admin APIs, UDP for Raft): bound, read, released.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// Writes certificates and one config per region of a group of `REGIONS`, each region in
/// `dir/<region>/`, and returns the config paths (member ids are 1, 2, 3 in `REGIONS` order).
pub fn write_group(dir: &Path) -> Vec<PathBuf> {
    write_group_of(dir, &REGIONS)
}

/// `write_group` for the regions `regions`.
pub fn write_group_of(dir: &Path, regions: &[&str]) -> Vec<PathBuf> {
    let certs = certs_in(&dir.join("certs"), replication::certs::Role::Core, regions);
    let ports: Vec<(u16, u16)> = regions
        .iter()
        .map(|_| (free_port(false), free_port(true)))
        .collect();
    let members: String = regions
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (name, (admin, raft)))| {
            format!(
                "[[raft.members]]\nid = {}\nname = \"{name}\"\nraft_addr = \"127.0.0.1:{raft}\"\nadmin_url = \"https://127.0.0.1:{admin}\"\n",
                i + 1
            )
        })
        .collect();
    let digest = http_api::bearer::sha256_hex(TOKEN);
    regions
        .iter()
        .zip(&ports)
        .enumerate()
        .map(|(i, (name, (admin, raft)))| {
            let region_dir = dir.join(name);
            std::fs::create_dir_all(&region_dir).unwrap();
            let https = https_keys(&certs, name);
            let path = region_dir.join("core.toml");
            std::fs::write(
                &path,
                format!(
                    r#"
region = "{name}"
[store]
backend = "redb"
path = "data/core.redb"
[admin]
listen = "127.0.0.1:{admin}"
token_sha256 = ["{digest}"]
[admin.http]
{https}[raft]
node_id = {id}
listen = "127.0.0.1:{raft}"
certs_dir = "../certs"
{members}"#,
                    id = i + 1
                ),
            )
            .unwrap();
            path
        })
        .collect()
}

pub fn store_path(dir: &Path) -> PathBuf {
    dir.join("data/core.redb")
}

/// A child process of the binary, killed (SIGKILL) when dropped.
pub struct Proc {
    child: Child,
}

impl Proc {
    /// Starts the binary with `args` and extra environment, and waits until a line of its
    /// stdout gives `ready` something.
    pub fn spawn<T: Send + 'static>(
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
        ready: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> (Proc, T) {
        Self::spawn_program(Path::new(bin()), args, env, ready)
    }

    /// `spawn`, of another program.
    pub fn spawn_program<T: Send + 'static>(
        program: &Path,
        args: &[&std::ffi::OsStr],
        env: &[(&str, &str)],
        ready: impl Fn(&str) -> Option<T> + Send + 'static,
    ) -> (Proc, T) {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env("RUST_LOG", "warn,openraft=off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tradewind");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(r) = ready(&line) {
                    let _ = tx.send(r);
                }
            }
        });
        match rx.recv_timeout(READY_DEADLINE) {
            Ok(r) => (Proc { child }, r),
            Err(_) => {
                let _ = child.kill();
                panic!("{args:?} did not print its ready line within {READY_DEADLINE:?}");
            }
        }
    }

    /// The most memory the process has held (VmHWM), MiB; 0 where /proc does not say.
    pub fn peak_rss_mib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    }

    pub fn signal(&self, s: nix::sys::signal::Signal) -> nix::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), s)
    }

    /// SIGSTOP: the process is frozen, as if cut off from everyone.
    pub fn freeze(&self) {
        self.signal(nix::sys::signal::Signal::SIGSTOP).unwrap();
    }

    /// SIGCONT: the frozen process runs on.
    pub fn thaw(&self) {
        self.signal(nix::sys::signal::Signal::SIGCONT).unwrap();
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit on its own (a failpoint), up to a deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "process still running after {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM).unwrap();
        self.wait_exit(Duration::from_secs(30))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL ends a frozen process too; thawing first is harmless (and may find the
        // process gone already).
        let _ = self.signal(nix::sys::signal::Signal::SIGCONT);
        self.kill();
    }
}

/// `tradewind core`, running.
pub struct CoreProcess {
    proc: Proc,
    pub admin: String,
    /// Its QUIC endpoint (Raft and the change feed), when it has one.
    pub quic: Option<std::net::SocketAddr>,
}

impl std::ops::Deref for CoreProcess {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for CoreProcess {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl CoreProcess {
    /// Starts `tradewind core --config <config>` with extra environment, and waits until it
    /// prints its ready line.
    pub fn start(config: &Path, env: &[(&str, &str)]) -> CoreProcess {
        let args = ["core".as_ref(), "--config".as_ref(), config.as_os_str()];
        let (proc, (admin, quic)) = Proc::spawn(&args, env, |line| {
            let rest = line.split("admin=").nth(1)?;
            let url = rest.split_whitespace().next().unwrap_or("").to_owned();
            let quic = line
                .split("raft=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|a| a.parse().ok());
            Some((url, quic))
        });
        CoreProcess { proc, admin, quic }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.admin)
    }
}

/// `tradewind edge`, running.
pub struct EdgeProcess {
    proc: Proc,
    pub http: String,
}

impl std::ops::Deref for EdgeProcess {
    type Target = Proc;
    fn deref(&self) -> &Proc {
        &self.proc
    }
}

impl std::ops::DerefMut for EdgeProcess {
    fn deref_mut(&mut self) -> &mut Proc {
        &mut self.proc
    }
}

impl EdgeProcess {
    /// Starts `tradewind edge --config <config>` and waits until it prints its ready line.
    pub fn start(config: &Path) -> EdgeProcess {
        let args = ["edge".as_ref(), "--config".as_ref(), config.as_os_str()];
        let (proc, http) = Proc::spawn(&args, &[], |line| {
            let rest = line.split("http=").nth(1)?;
            Some(rest.split_whitespace().next().unwrap_or("").to_owned())
        });
        EdgeProcess { proc, http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    /// The edge's metrics page.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of counter or gauge `name` in the edge's metrics (0 when absent).
    pub async fn metric(&self, name: &str) -> u64 {
        http_api::metrics::sample(&self.metrics().await, name).map_or(0, |v| v as u64)
    }
}

/// Writes the config of edge `name` of `region` in `dir` (its outbox in `dir/data`), with a
/// certificate from the deployment CA in `certs`, following `cores` (name, QUIC address) in
/// that order.
pub fn write_edge_config(
    dir: &Path,
    certs: &Path,
    name: &str,
    region: &str,
    cores: &[(&str, std::net::SocketAddr)],
) -> PathBuf {
    write_edge_config_with(dir, certs, name, region, cores, "")
}

/// `write_edge_config`, with `extra` TOML (keys, then sections) before the cores. The
/// storefront serves TLS, with the keys of an `[http]` section in `extra` if it has one, and
/// trusts the test identity provider unless `extra` has a `[shoppers]` section.
pub fn write_edge_config_with(
    dir: &Path,
    certs: &Path,
    name: &str,
    region: &str,
    cores: &[(&str, std::net::SocketAddr)],
    extra: &str,
) -> PathBuf {
    certs_in(certs, replication::certs::Role::Edge, &[name]);
    let https = format!("[http]\n{}", https_keys(certs, name));
    let (extra, http) = if extra.contains("[http]\n") {
        (extra.replace("[http]\n", &https), String::new())
    } else {
        (extra.to_owned(), https)
    };
    let shoppers = if extra.contains("[shoppers]") {
        String::new()
    } else {
        shoppers_section()
    };
    std::fs::create_dir_all(dir).unwrap();
    let cores: String = cores
        .iter()
        .map(|(n, a)| format!("[[cores]]\nname = \"{n}\"\nquic = \"{a}\"\n"))
        .collect();
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        format!(
            "region = \"{region}\"\nname = \"{name}\"\nlisten = \"127.0.0.1:0\"\ncerts_dir = {certs:?}\noutbox_path = \"data/outbox.redb\"\n{extra}\n{http}{shoppers}{cores}"
        ),
    )
    .unwrap();
    path
}

/// A raw TLS 1.3 connection (ALPN http/1.1) to the `https://` listener at `url`, trusting the
/// test CA: for tests that speak HTTP byte by byte.
pub async fn tls_stream(url: &str) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let addr = url.trim_start_matches("https://");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(test_ca().join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let host = addr.rsplit_once(':').unwrap().0.to_owned();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(host.try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// A client that trusts the test CA (and so every listener of these tests, the demos' too).
pub fn client() -> reqwest::Client {
    http_api::client::trusting(&test_ca().join("ca.pem"))
        .unwrap()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// An edge's mirror of a region's change feed, in memory: the commerce state its rows make,
/// loaded the way a core loads its store (`State::load_row`).
#[derive(Default)]
pub struct EdgeMirror {
    pub state: commerce::state::State,
    pub version: u64,
    pub snapshots: usize,
    pub changes: usize,
}

/// An `EdgeMirror` that a feed follower fills while a test watches it.
#[derive(Clone)]
pub struct SharedMirror {
    pub inner: std::sync::Arc<std::sync::Mutex<EdgeMirror>>,
    applied: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
}

impl SharedMirror {
    pub fn new() -> Self {
        SharedMirror {
            inner: Default::default(),
            applied: std::sync::Arc::new(tokio::sync::watch::channel(0).0),
        }
    }

    /// Waits until the mirror has applied `version`, at most `deadline`.
    pub async fn applied(&self, version: u64, deadline: Duration) {
        let mut rx = self.applied.subscribe();
        let reached = tokio::time::timeout(deadline, rx.wait_for(|v| *v >= version))
            .await
            .is_ok();
        assert!(
            reached,
            "the mirror did not reach version {version} within {deadline:?} (at {})",
            *self.applied.borrow()
        );
    }

    pub fn with<T>(&self, f: impl FnOnce(&EdgeMirror) -> T) -> T {
        f(&self.inner.lock().unwrap())
    }

    fn load(
        state: &mut commerce::state::State,
        rows: Vec<replication::protocol::Row>,
    ) -> Result<(), commerce::record::RowError> {
        for (k, v) in rows {
            state.load_row(&k, v.as_deref())?;
        }
        Ok(())
    }
}

impl replication::app::Mirror for SharedMirror {
    fn version(&self) -> u64 {
        self.inner.lock().unwrap().version
    }

    fn install(
        &mut self,
        version: u64,
        rows: Vec<replication::protocol::Row>,
    ) -> Result<(), replication::app::AppError> {
        let mut state = commerce::state::State::new();
        Self::load(&mut state, rows)?;
        let mut m = self.inner.lock().unwrap();
        m.state = state;
        m.version = version;
        m.snapshots += 1;
        drop(m);
        self.applied.send_replace(version);
        Ok(())
    }

    fn apply(
        &mut self,
        version: u64,
        rows: Vec<replication::protocol::Row>,
    ) -> Result<(), replication::app::AppError> {
        let mut m = self.inner.lock().unwrap();
        Self::load(&mut m.state, rows)?;
        m.version = version;
        m.changes += 1;
        drop(m);
        self.applied.send_replace(version);
        Ok(())
    }
}

/// Follows the feeds of `cores` (the first that answers, then the next) into a new mirror,
/// as the edge node `edge`, whose certificate is made in `certs`.
pub fn follow_feed(
    certs: &Path,
    edge: &str,
    cores: Vec<replication::feed::Core>,
) -> (SharedMirror, tokio::task::JoinHandle<()>) {
    let transport = mesh_node(certs, edge);
    let mirror = SharedMirror::new();
    let mut m = mirror.clone();
    let task = tokio::spawn(async move {
        replication::feed::follow_cores(&transport, &cores, &mut m, Duration::from_secs(2)).await;
    });
    (mirror, task)
}

/// What the test deployment's order ids are derived under (its `deployment.secret`, which
/// every certificate directory of this test binary holds).
pub fn deployment_order_ids() -> commerce::order_id::OrderIdKey {
    let secret =
        replication::certs::read_secret(&test_ca().join(replication::certs::SECRET_FILE)).unwrap();
    commerce::order_id::OrderIdKey::of_deployment(&secret)
}

/// An order as edge `edge` accepted it from its grants (one unit of `sku` at 10.00 USD under
/// Idempotency-Key `key`), in the JSON of the admin API's commit batches.
pub fn edge_order(edge: &str, key: &str, sku: &str) -> serde_json::Value {
    let customer = commerce::CustomerId::new("cust").unwrap();
    let money = serde_json::json!({"amount_minor": 1000, "currency": "USD"});
    serde_json::json!({
        "order_id": deployment_order_ids().order_id(&customer, key),
        "idempotency_key": key, "customer_id": "cust", "customer_group": null,
        "currency": "USD",
        "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"},
        "lines": [{"sku": sku, "qty": 1, "unit_price": money, "total": money, "breakdown": []}],
        "subtotal": money, "discount": null, "total": money, "price_version": 1,
        "origin": {"region": "edge", "edge": edge},
        "accepted_at_ms": 0, "status": "accepted", "commit_version": null, "reject_reason": null
    })
}

/// An edge named `name` of the deployment whose certificates are in `certs` (issued here), on
/// its own QUIC endpoint: how an edge meets the core regions.
pub fn mesh_node(certs: &Path, name: &str) -> replication::transport::Transport {
    replication::certs::issue_node(certs, name, replication::certs::Role::Edge).unwrap();
    let tls = replication::tls::NodeTls::load(certs, name).unwrap();
    replication::transport::Transport::bind("127.0.0.1:0".parse().unwrap(), &tls).unwrap()
}

/// Sends `write` as edge `transport` to region `name` at `addr`; the region's outcome, or why
/// it gave none.
pub async fn edge_write(
    transport: &replication::transport::Transport,
    name: &str,
    addr: std::net::SocketAddr,
    write: &commerce::command::EdgeWrite,
) -> Result<commerce::command::Outcome, replication::protocol::WriteError> {
    let payload = replication::protocol::Payload(codec::encode(write).unwrap());
    let reply =
        replication::raft::submit(transport, name, addr, payload, Duration::from_secs(30)).await?;
    Ok(codec::decode(&reply.0).unwrap())
}

/// The Idempotency-Key of an admin write tagged `tag`: a UUIDv7, which says when it was made, as
/// such keys must (a retry past 24 h is refused). The same tag gives the same key throughout a
/// test, so that sending it again is a retry.
pub fn admin_key(tag: &str) -> String {
    static STARTED_MS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let ms = *STARTED_MS.get_or_init(|| util::clock::now_ms().unsigned_abs());
    let bits = tag.bytes().fold(0xcbf2_9ce4_8422_2325u128, |h, b| {
        (h ^ u128::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    commerce::order_id::time_led_key(ms, bits)
}

/// An order request for one unit of `sku` (the API's JSON).
pub fn order(sku: &str) -> serde_json::Value {
    serde_json::json!({"customer_id": CUSTOMER, "currency": "USD", "lines": [{"sku": sku, "qty": 1}],
           "ship_to": {"country": "SG", "line1": "1 Raffles Place", "city": "Singapore", "postal_code": "048616"}})
}

/// Writes a catalog of one product `P-1` with one SKU `S-1` at 25.00 USD, sold to SG, with
/// `units` in stock, through the admin API at `admin`; the version of the last write.
pub async fn seed(admin: &str, units: u64) -> u64 {
    let send = |method: reqwest::Method, path: &str, key: &str, body: serde_json::Value| {
        let req = client()
            .request(method, format!("{admin}{path}"))
            .bearer_auth(TOKEN)
            .header("idempotency-key", admin_key(key))
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            let status = res.status();
            let v: serde_json::Value = res.json().await.unwrap();
            assert!(status.is_success(), "{status} {v}");
            v
        }
    };
    send(
        reqwest::Method::PUT,
        "/admin/v1/markets/sea",
        "seed-market",
        serde_json::json!({"id": "sea", "countries": ["SG"], "currencies": ["USD"]}),
    )
    .await;
    send(
        reqwest::Method::PUT,
        "/admin/v1/products/P-1",
        "seed-product",
        serde_json::json!({"id": "P-1", "title": "Kettle", "category": "home", "skus": [{"sku": "S-1"}]}),
    )
    .await;
    send(
        reqwest::Method::POST,
        "/admin/v1/prices",
        "seed-price",
        serde_json::json!({"changes": [{"sku": "S-1", "currency": "USD", "amount_minor": 2500}]}),
    )
    .await;
    let v = send(
        reqwest::Method::POST,
        "/admin/v1/stock",
        "seed-stock",
        serde_json::json!({"changes": [{"sku": "S-1", "set": units}]}),
    )
    .await;
    v["version"].as_u64().unwrap()
}

/// `tradewind demo` with `args`, until its ready line: the process, the seconds that took, and
/// the mesh.json it wrote.
pub fn start_demo(args: &[&str]) -> (Proc, f64, serde_json::Value) {
    // The demo keeps a CA it finds: give it the test CA, which `client` trusts (wiping the
    // state here for --fresh, so that the demo does not wipe the CA too).
    if let Some(i) = args.iter().position(|a| *a == "--state-dir") {
        let state = Path::new(args[i + 1]);
        if args.contains(&"--fresh") && state.exists() {
            std::fs::remove_dir_all(state).unwrap();
        }
        certs_in(&state.join("certs"), replication::certs::Role::Core, &[]);
    }
    let args: Vec<&std::ffi::OsStr> = std::iter::once("demo")
        .chain(args.iter().copied().filter(|a| *a != "--fresh"))
        .map(|a| a.as_ref())
        .collect();
    let t = std::time::Instant::now();
    let (demo, mesh_path) = Proc::spawn(&args, &[], |line| {
        Some(line.strip_prefix("tradewind demo ready: mesh=")?.to_owned())
    });
    let took = t.elapsed().as_secs_f64();
    let mesh = serde_json::from_str(&std::fs::read_to_string(mesh_path).unwrap()).unwrap();
    (demo, took, mesh)
}

/// A base port whose demo ports are all free on the three regions' addresses. Each call in a
/// process starts from another candidate: tests running at once would otherwise all find the
/// same base before any of their demos binds it.
pub fn free_base_port() -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let seed = (std::process::id() as u16).wrapping_add(call.wrapping_mul(13 * 97));
    (0..200u16)
        .map(|i| 20_000 + (seed.wrapping_add(i * 97) % 400) * 100)
        .find(|base| {
            std::net::TcpListener::bind(("127.0.0.1", base + 50)).is_ok()
                && std::net::UdpSocket::bind(("127.0.0.1", base + 53)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 53)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 54)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", base + 61)).is_ok()
                && (1..=3u8).all(|n| {
                    let ip = std::net::Ipv4Addr::new(127, 0, n, 1);
                    std::net::TcpListener::bind((ip, base + 101)).is_ok()
                        && std::net::UdpSocket::bind((ip, base + 102)).is_ok()
                        && std::net::TcpListener::bind((ip, base + 111)).is_ok()
                        && std::net::TcpListener::bind((ip, base + 121)).is_ok()
                        && std::net::TcpListener::bind((ip, base + 122)).is_ok()
                        && (1..=3).all(|m| std::net::UdpSocket::bind((ip, base + 200 + m)).is_ok())
                })
        })
        .expect("a free base port")
}

/// A demo of three regions with an edge each and a catalog of 100 products, with `wan` links.
pub fn start_small_demo(state: &Path, base: u16, wan: &str) -> (Proc, serde_json::Value) {
    let base = base.to_string();
    let (demo, _, mesh) = start_demo(&[
        "--regions",
        "3",
        "--edges-per-region",
        "1",
        "--base-port",
        &base,
        "--state-dir",
        state.to_str().unwrap(),
        "--wan",
        wan,
        "--sample-products",
        "100",
    ]);
    (demo, mesh)
}

/// GET `url`, with `token` as bearer when there is one: the JSON answer.
pub async fn get_value(url: &str, token: Option<&str>) -> serde_json::Value {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// The storefront of each region's first edge, in a mesh.json.
pub fn edge_urls(mesh: &serde_json::Value) -> Vec<String> {
    mesh["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["edges"][0]["url"].as_str().unwrap().to_owned())
        .collect()
}

/// A SKU of the catalog: the first the storefront at `edge` lists.
pub async fn first_sku(edge: &str) -> String {
    let page = get_value(&format!("{edge}/v1/products?limit=1&currency=USD"), None).await;
    page["items"][0]["skus"][0]["sku"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Waits until `check` holds, polling, at most `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = std::time::Instant::now() + deadline;
    while !check().await {
        assert!(
            std::time::Instant::now() < end,
            "{what}: not within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `q` quantile of `v` (nearest rank), for benchmarks.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// The median of `v` (the upper one of an even count), for benchmarks.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
