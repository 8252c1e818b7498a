//! The listener's defences over real sockets: TLS 1.3 with HTTP/2 and HTTP/1.1, a certificate
//! replaced while serving, and the refusals (TLS 1.2, plain HTTP on a TLS port, slowloris,
//! idle hoarders, a spoofed forwarding header, a flood), each while another client is served.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use http_api::serve::{ClientAddr, Front, Refusal, Settings};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A CA and a server certificate for `localhost` and 127.0.0.1, written to `dir`.
struct Pki {
    ca_pem: String,
    ca: Issuer<'static, KeyPair>,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca.self_signed(&ca_key).unwrap().pem();
        let pki = Pki {
            ca_pem,
            ca: Issuer::new(ca, ca_key),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
        };
        pki.issue("first");
        pki
    }

    /// Writes a new leaf whose common name is `cn`.
    fn issue(&self, cn: &str) {
        let mut p =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.ca).unwrap();
        std::fs::write(&self.key, key.serialize_pem()).unwrap();
        std::fs::write(&self.cert, cert.pem()).unwrap();
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
    }
}

fn app() -> Router {
    Router::new().route(
        "/who",
        get(|Extension(ClientAddr(ip)): Extension<ClientAddr>| async move { ip.to_string() }),
    )
}

/// Serves `app` on 127.0.0.1 with `settings`; the front, the address, and what stops it.
async fn start(settings: Settings) -> (Arc<Front>, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let front = Front::new(&settings).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&front).serve(listener, app(), async move {
        let _ = stopped.await;
    }));
    (front, addr, stop)
}

/// Waits for `cond` with a deadline.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether the server has closed `s` (a read sees the end, or a reset) within `limit`.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn tls13_serves_h2_and_http1_with_hsts_and_refuses_tls12_and_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (front, addr, _stop) = start(Settings::tls(pki.cert.clone(), pki.key.clone())).await;
    let url = format!("https://localhost:{}/who", addr.port());
    let h2 = pki
        .builder()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2);
    assert_eq!(
        h2.headers()["strict-transport-security"],
        "max-age=31536000"
    );
    assert_eq!(h2.text().await.unwrap(), "127.0.0.1");
    let h1 = pki.builder().http1_only().build().unwrap();
    let h1 = h1.get(&url).send().await.unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);

    // A client that offers TLS 1.2 at most fails its handshake.
    let tls12 = pki
        .builder()
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(&url).send().await.is_err());
    eventually("TLS 1.2 refusal counted", || {
        front.refusals().count(Refusal::HandshakeFailed) == 1
    })
    .await;

    // Plain HTTP on the TLS port: a problem document, then the connection is closed.
    let plain = reqwest::get(format!("http://127.0.0.1:{}/who", addr.port()))
        .await
        .unwrap();
    assert_eq!(plain.status(), 400);
    let doc: serde_json::Value = plain.json().await.unwrap();
    assert_eq!(doc["type"], "https://tradewind.dev/problems/tls-required");
    assert_eq!(front.refusals().count(Refusal::PlaintextOnTls), 1);

    // A client that connects and never says hello is dropped after the handshake timeout.
    let (front, addr, _stop) = start(Settings {
        handshake_timeout_ms: 200,
        ..Settings::tls(pki.cert.clone(), pki.key.clone())
    })
    .await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert_eq!(front.refusals().count(Refusal::HandshakeTimeout), 1);
}

#[tokio::test]
async fn a_new_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (front, addr, _stop) = start(Settings::tls(pki.cert.clone(), pki.key.clone())).await;
    let served_cn = || async {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
            .unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();
        let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        String::from_utf8_lossy(&leaf).into_owned()
    };
    assert!(served_cn().await.contains("first"));
    // A connection open across the change keeps working.
    let client = pki.builder().build().unwrap();
    let url = format!("https://localhost:{}/who", addr.port());
    assert!(client.get(&url).send().await.unwrap().status().is_success());

    pki.issue("second");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !served_cn().await.contains("second") {
        assert!(
            Instant::now() < deadline,
            "new certificate not served within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(client.get(&url).send().await.unwrap().status().is_success());

    // A key that is not the certificate's is refused, and the pair in use is kept.
    std::fs::write(&pki.key, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    assert!(!front.reload_certificate());
    assert!(served_cn().await.contains("second"));
}

#[tokio::test]
async fn a_slowloris_client_is_cut_off_while_others_are_served() {
    let (_front, addr, _stop) = start(Settings {
        header_read_timeout_ms: 300,
        idle_timeout_ms: 1_000,
        ..Settings::plain()
    })
    .await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    // One header byte every 100 ms: never a whole header within 300 ms.
    let mut cut = false;
    for b in b"GET /who HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        let ok = reqwest::get(format!("http://{addr}/who")).await.unwrap();
        assert!(ok.status().is_success());
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    assert!(cut || closed_within(&mut slow, Duration::from_secs(2)).await);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "held {:?}",
        started.elapsed()
    );

    // A kept-alive connection that goes quiet is closed too.
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    quiet
        .write_all(b"GET /who HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    assert!(closed_within(&mut quiet, Duration::from_secs(3)).await);

    // An HTTP/2 connection that opens and then says nothing (no header read is pending, so
    // only the idle timeout ends it).
    let mut h2 = TcpStream::connect(addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let opened = Instant::now();
    assert!(closed_within(&mut h2, Duration::from_secs(5)).await);
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "{:?}",
        opened.elapsed()
    );
}

/// Raises the soft limit on open files to the hard one; the limit.
fn open_files_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).unwrap().0
}

#[tokio::test]
async fn ten_thousand_idle_connections_from_one_address_take_only_its_share() {
    // The client's sockets stay open; the server holds only its cap of them.
    let want = 10_000u64;
    let n = want.min(open_files_limit().saturating_sub(1_000));
    assert!(n >= 1_000, "too few files allowed for this test: {n}");
    println!("opening {n} idle connections from 127.0.0.1");
    let (front, addr, _stop) = start(Settings {
        connections_per_client_max: 64,
        ..Settings::plain()
    })
    .await;
    let mut hoard = Vec::with_capacity(n as usize);
    for _ in 0..n {
        hoard.push(TcpStream::connect(addr).await.unwrap());
    }
    eventually("refusals counted", || {
        front.refusals().count(Refusal::ClientFull) == n - 64
    })
    .await;
    assert_eq!(front.connections_open(), 64);
    // Another address is served.
    let other = reqwest::Client::builder()
        .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let res = other
        .get(format!("http://{addr}/who"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "127.0.0.2");
    drop(hoard);
    eventually("hoard given back", || front.connections_open() <= 1).await;
}

#[tokio::test]
async fn forwarding_headers_count_only_from_trusted_proxies_and_rates_are_per_client() {
    // 127.0.0.1 is not trusted: its forwarding header is refused.
    let (front, addr, _stop) = start(Settings::plain()).await;
    let client = reqwest::Client::new();
    let spoof = client
        .get(format!("http://{addr}/who"))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(spoof.status(), 400);
    let doc: serde_json::Value = spoof.json().await.unwrap();
    assert_eq!(
        doc["type"],
        "https://tradewind.dev/problems/untrusted-forwarding-header"
    );
    assert_eq!(front.refusals().count(Refusal::UntrustedForwarding), 1);
    let ok = client
        .get(format!("http://{addr}/who"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.text().await.unwrap(), "127.0.0.1");

    // Behind a trusted proxy, each forwarded client has its own rate.
    let (_front, addr, _stop) = start(Settings {
        trusted_proxies: vec!["127.0.0.1/32".parse().unwrap()],
        client_rate_per_s: 1,
        client_burst: 2,
        ..Settings::plain()
    })
    .await;
    let ask = |who: &'static str| {
        client
            .get(format!("http://{addr}/who"))
            .header("x-forwarded-for", who)
            .send()
    };
    for _ in 0..2 {
        let res = ask("198.51.100.7").await.unwrap();
        assert_eq!(res.text().await.unwrap(), "198.51.100.7");
    }
    let flood = ask("198.51.100.7").await.unwrap();
    assert_eq!(flood.status(), 429);
    assert!(flood.headers().contains_key("retry-after"));
    // An IPv6 neighbour in the same /64 shares the bucket; another client does not.
    assert!(ask("2001:db8::1").await.unwrap().status().is_success());
    assert!(ask("2001:db8::2").await.unwrap().status().is_success());
    assert_eq!(ask("2001:db8::ffff").await.unwrap().status(), 429);
    assert!(ask("192.0.2.9").await.unwrap().status().is_success());
}
