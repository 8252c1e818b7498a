//! `tradewind demo`: a whole mesh on loopback, as child processes of this one (DESIGN §3).
//!
//! Region N (from 1) listens on 127.0.N.1 with the same port layout as every other region:
//! `base + 101` the core's admin API, `base + 102` its QUIC endpoint (Raft, forwarded writes,
//! the feed edges follow), `base + 111 + k` its k-th edge. A fault proxy (its API on
//! 127.0.0.1, `base + 50`) carries every link from region N to region M, listening on N's
//! address at `base + 201 + M`: with `--wan realistic` with the round trip of the real regions,
//! with `--wan none` with no delay of its own, so that drills can cut or slow any link. Cores
//! reach each other through it (`[raft.routes]`), and edges reach other regions' cores through
//! it. The geo-router listens on 127.0.0.1, DNS (UDP and TCP) at `base + 53` and its HTTP API
//! at `base + 54`, authoritative for `shop.tradewind.test`; its geo table sends the
//! documentation prefixes 192.0.2.0/24, 198.51.100.0/24 and 203.0.113.0/24 to the first three
//! regions (and 2001:db8:N::/48 to region N). The state directory keeps the
//! certificates, the admin token, each part's config and data, and the logs, so that a restart
//! finds the mesh as it was; `--fresh` starts it over. The sample catalog is loaded once.
//!
//! Children are started with a pipe as their standard input and `TRADEWIND_EXIT_WITH_PARENT`:
//! when this process dies, however it dies, the pipe closes and each child shuts itself down.
//! A part that dies (killed in a drill, say) stays down, and the demo says so; SIGUSR1 starts
//! every stopped part again and rewrites `mesh.json` with their new pids. Ctrl-C or SIGTERM
//! stops the edges (they send their outboxes and give their grants back), then the cores.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::mpsc;

use core_region::config::CoreConfig;
use edge_node::config::EdgeConfig;
use geo_router::RouterConfig;
use replication::certs::Role;

use chaos_tests::mesh::{Mesh, MeshCore, MeshEdge, MeshLink, MeshProxy, MeshRegion, MeshRouter};

/// Region names, in order; the demo runs the first `--regions` of them.
pub const REGION_NAMES: [&str; 5] = [
    "cn-shanghai",
    "ap-singapore",
    "us-east",
    "eu-west",
    "sa-east",
];
/// Edges one region may have in the demo (their ports sit between the core's and the next
/// component's).
pub const EDGES_PER_REGION_MAX: usize = 9;
/// Where each of the demo's regions is (latitude, longitude), for the geo-router.
const REGION_COORDINATES: [(f64, f64); 5] = [
    (31.23, 121.47),
    (1.35, 103.82),
    (38.9, -77.04),
    (53.35, -6.26),
    (-23.55, -46.63),
];
/// The client networks the demo's geo table gives each region, by index.
const DOCUMENTATION_PREFIXES: [&str; 3] = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"];
/// The zone the demo's router is authoritative for.
pub const ZONE: &str = "shop.tradewind.test";
/// How long a part may take to print its ready line (a core opens its store and log).
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long the group may take to elect a leader, and an edge to receive its catalog.
const SETTLE_DEADLINE: Duration = Duration::from_secs(60);
/// How long the parts may take to stop after SIGTERM (an edge drains its outbox and returns its
/// grants, 10 s at most) before they are killed.
const STOP_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Wan {
    /// Links between regions add no delay of their own.
    None,
    /// Every link between regions goes through the fault proxy, with the round trips of the
    /// real regions (`round_trip_ms`).
    Realistic,
}

impl Wan {
    fn name(self) -> &'static str {
        match self {
            Wan::None => "none",
            Wan::Realistic => "realistic",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Core regions (one Raft voter each): 1 to 5.
    #[arg(long, default_value_t = 3)]
    regions: usize,
    /// Edges in each region: 1 to 9.
    #[arg(long, default_value_t = 1)]
    edges_per_region: usize,
    /// The port layout starts here (admin API at +101, QUIC at +102, edges from +111).
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    /// Certificates, token, configs, data and logs of the mesh; kept between runs.
    #[arg(long, default_value = ".tradewind/demo")]
    state_dir: PathBuf,
    /// How inter-region links are made.
    #[arg(long, value_enum, default_value_t = Wan::None)]
    wan: Wan,
    /// Wipe the state directory first.
    #[arg(long)]
    fresh: bool,
    /// Products in the sample catalog loaded at the first start.
    #[arg(long, default_value_t = 1_000)]
    sample_products: usize,
    /// UDP answers per second the router gives one /24 (response-rate limiting); 0 turns it
    /// off, for a DNS benchmark that asks from one address.
    #[arg(long, default_value_t = geo_router::rrl::RrlSettings::default().responses_per_s)]
    dns_rrl_per_s: u32,
}

/// Where each part of one region listens.
struct RegionLayout {
    name: &'static str,
    admin: SocketAddr,
    quic: SocketAddr,
    edges: Vec<(String, SocketAddr)>,
    /// The region's CDN cache: shoppers' side and its admin API.
    cdn: SocketAddr,
    cdn_admin: SocketAddr,
    /// Where the link to each region (by index) listens, on this region's address.
    links: Vec<SocketAddr>,
}

/// The round trip between two of the demo's regions, as between the real ones (ms).
pub fn round_trip_ms(a: usize, b: usize) -> u64 {
    // cn-shanghai, ap-singapore, us-east, eu-west, sa-east.
    const RTT: [[u64; 5]; 5] = [
        [0, 35, 200, 180, 300],
        [35, 0, 220, 160, 330],
        [200, 220, 0, 80, 120],
        [180, 160, 80, 0, 190],
        [300, 330, 120, 190, 0],
    ];
    RTT[a][b]
}

/// The fault proxy's API address.
fn proxy_api(args: &DemoArgs) -> SocketAddr {
    SocketAddr::new(
        Ipv4Addr::LOCALHOST.into(),
        args.base_port.saturating_add(50),
    )
}

/// The router's DNS address (UDP and TCP), and its HTTP API's.
fn router_addrs(args: &DemoArgs) -> (SocketAddr, SocketAddr) {
    let at = |offset: u16| {
        SocketAddr::new(
            Ipv4Addr::LOCALHOST.into(),
            args.base_port.saturating_add(offset),
        )
    };
    (at(53), at(54))
}

fn layout(args: &DemoArgs) -> anyhow::Result<Vec<RegionLayout>> {
    if !(1..=REGION_NAMES.len()).contains(&args.regions) {
        bail!("--regions must be 1 to {}", REGION_NAMES.len());
    }
    if !(1..=EDGES_PER_REGION_MAX).contains(&args.edges_per_region) {
        bail!("--edges-per-region must be 1 to {EDGES_PER_REGION_MAX}");
    }
    let port = |offset: usize| -> anyhow::Result<u16> {
        u16::try_from(usize::from(args.base_port) + offset)
            .ok()
            .filter(|p| *p >= 1024)
            .with_context(|| format!("--base-port {} puts ports out of range", args.base_port))
    };
    (0..args.regions)
        .map(|i| {
            let ip = Ipv4Addr::new(127, 0, i as u8 + 1, 1);
            let at = |p: u16| SocketAddr::new(ip.into(), p);
            Ok(RegionLayout {
                name: REGION_NAMES[i],
                admin: at(port(101)?),
                quic: at(port(102)?),
                edges: (0..args.edges_per_region)
                    .map(|k| Ok((format!("{}-{}", REGION_NAMES[i], k + 1), at(port(111 + k)?))))
                    .collect::<anyhow::Result<_>>()?,
                cdn: at(port(121)?),
                cdn_admin: at(port(122)?),
                links: (0..args.regions)
                    .map(|to| Ok(at(port(201 + to)?)))
                    .collect::<anyhow::Result<_>>()?,
            })
        })
        .collect()
}

/// Every port of the layout is free, or a clear error names the one that is not.
fn check_ports(args: &DemoArgs, regions: &[RegionLayout]) -> anyhow::Result<()> {
    let api = proxy_api(args);
    std::net::TcpListener::bind(api).map_err(|e| {
        anyhow::anyhow!("{api} (the fault proxy's API) is in use or cannot be bound: {e}; pick another --base-port")
    })?;
    let (dns, http) = router_addrs(args);
    let taken = |what: &'static str, addr: SocketAddr| {
        move |e: std::io::Error| {
            anyhow::anyhow!(
                "{addr} ({what}) is in use or cannot be bound: {e}; pick another --base-port"
            )
        }
    };
    std::net::UdpSocket::bind(dns).map_err(taken("the router's DNS", dns))?;
    std::net::TcpListener::bind(dns).map_err(taken("the router's DNS", dns))?;
    std::net::TcpListener::bind(http).map_err(taken("the router's HTTP API", http))?;
    let assets = assets_addr(args);
    std::net::TcpListener::bind(assets).map_err(taken("the asset origin", assets))?;
    for (i, r) in regions.iter().enumerate() {
        let in_use = |what: String, addr: SocketAddr| {
            move |e: std::io::Error| {
                anyhow::anyhow!(
                    "{addr} ({what}) is in use or cannot be bound: {e}; stop what holds it or pick another --base-port"
                )
            }
        };
        std::net::TcpListener::bind(r.admin)
            .map_err(in_use(format!("admin API of {}", r.name), r.admin))?;
        std::net::UdpSocket::bind(r.quic).map_err(in_use(format!("QUIC of {}", r.name), r.quic))?;
        for (name, addr) in &r.edges {
            std::net::TcpListener::bind(addr).map_err(in_use(format!("edge {name}"), *addr))?;
        }
        for (what, addr) in [("CDN cache", r.cdn), ("CDN cache's admin API", r.cdn_admin)] {
            std::net::TcpListener::bind(addr)
                .map_err(in_use(format!("{what} of {}", r.name), addr))?;
        }
        for (to, addr) in r.links.iter().enumerate().filter(|(to, _)| *to != i) {
            let what = format!("link {} -> {}", r.name, regions[to].name);
            std::net::UdpSocket::bind(addr).map_err(in_use(what, *addr))?;
        }
    }
    Ok(())
}

/// The layout a state directory was made with: a restart must keep it (the group's membership,
/// with its addresses, is in the Raft log).
fn layout_record(args: &DemoArgs) -> String {
    format!(
        "regions={} edges_per_region={} base_port={}\n",
        args.regions, args.edges_per_region, args.base_port
    )
}

/// The state directory ready for this layout: certificates, the admin token (made once and
/// kept), and the record of the layout. Returns the token.
fn prepare(args: &DemoArgs, regions: &[RegionLayout]) -> anyhow::Result<String> {
    let dir = &args.state_dir;
    if args.fresh && dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let record = dir.join("layout");
    let want = layout_record(args);
    match std::fs::read_to_string(&record) {
        Ok(had) if had != want => bail!(
            "{} holds a mesh made with {}; start it the same way, or add --fresh to start over",
            dir.display(),
            had.trim()
        ),
        Ok(_) => {}
        Err(_) => std::fs::write(&record, &want)?,
    }
    // The CA is made once (or brought by the operator); each node's certificate once.
    let certs = dir.join("certs");
    if !certs.join("ca.pem").exists() {
        replication::certs::init_ca(&certs).context("making the mesh's CA")?;
    }
    replication::certs::make_secret(&certs.join(replication::certs::SECRET_FILE))
        .context("making the mesh's deployment secret")?;
    // Each region's personal data key, once (`tradewind keys init` for a real mesh).
    for r in regions {
        if !certs.join("keys").join(format!("{}.keys", r.name)).exists() {
            sealing::keys::rotate(&certs.join("keys"), r.name)
                .with_context(|| format!("making {}'s personal data key", r.name))?;
        }
        sealing::shred::ensure(
            &certs.join("keys"),
            r.name,
            sealing::shred::DEFAULT_PERIOD_MS,
            sealing::shred::backfill_ms(sealing::shred::DEFAULT_PERIOD_MS),
        )
        .with_context(|| format!("making {}'s keeping keys", r.name))?;
    }
    let nodes = regions.iter().flat_map(|r| {
        std::iter::once((r.name.to_owned(), Role::Core))
            .chain(r.edges.iter().map(|(n, _)| (n.clone(), Role::Edge)))
    });
    for (node, role) in nodes {
        // A certificate made before roles is made again with its role (the demo's parts
        // require roles of each other), and a key left without its certificate (a run stopped
        // half-way through that) goes with it.
        let (pem, key) = (
            certs.join(format!("{node}.pem")),
            certs.join(format!("{node}.key")),
        );
        let stale = if pem.exists() {
            replication::tls::role_of(&certs, &node)?.is_none()
        } else {
            key.exists()
        };
        if stale {
            for f in [&pem, &key] {
                match std::fs::remove_file(f) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).with_context(|| format!("removing {}", f.display()));
                    }
                    _ => {}
                }
            }
        }
        if !certs.join(format!("{node}.pem")).exists() {
            replication::certs::issue_node(&certs, &node, role)
                .with_context(|| format!("making {node}'s certificate"))?;
        }
    }
    issue_https_certs(&certs, regions).context("making the HTTPS listeners' certificates")?;
    // The demo's identity provider: the key shopper tokens are signed with, and the JWKS the
    // edges trust (`tradewind token shopper` signs with it).
    let identity = dir.join(IDENTITY);
    std::fs::create_dir_all(&identity)?;
    http_api::identity::issuer::init(&identity).context("making the shoppers' signing key")?;
    let token = kept_token(&dir.join("admin-token"))?;
    // The token the edges purge their region's caches with (scope `purge` alone).
    kept_token(&dir.join(PURGE_TOKEN))?;
    Ok(token)
}

/// The token in `file`, made and written (0600) the first time.
fn kept_token(file: &Path) -> anyhow::Result<String> {
    match std::fs::read_to_string(file) {
        Ok(t) => Ok(t.trim().to_owned()),
        Err(_) => {
            let (token, _) = http_api::bearer::new_token();
            chaos_tests::mesh::write_private(file, &token)?;
            Ok(token)
        }
    }
}

/// The file of the edges' purge token, in the state directory.
const PURGE_TOKEN: &str = "purge-token";
/// A region's cache, by name.
fn cdn_name(region: &str) -> String {
    format!("{region}-cdn")
}
const ASSETS: &str = "assets";

/// The asset origin's address: one for the whole mesh, as a bucket of images would be.
fn assets_addr(args: &DemoArgs) -> SocketAddr {
    SocketAddr::new(
        Ipv4Addr::LOCALHOST.into(),
        args.base_port.saturating_add(61),
    )
}

/// The certificates the HTTPS listeners serve, issued again at every start (renewed, and
/// following the layout): a core's admin API for its address, an edge for its address and the
/// zone's storefront names, the router's API for its address.
fn issue_https_certs(certs: &Path, regions: &[RegionLayout]) -> anyhow::Result<()> {
    let storefront = [ZONE.to_owned(), format!("www.{ZONE}")];
    for r in regions {
        replication::certs::issue_server(certs, r.name, &[r.admin.ip().to_string()])?;
        for (name, addr) in &r.edges {
            let names: Vec<String> = std::iter::once(addr.ip().to_string())
                .chain(storefront.iter().cloned())
                .collect();
            replication::certs::issue_server(certs, name, &names)?;
        }
        // The cache answers for the storefront's names too (it stands in front of the edge),
        // and for the asset name, which the router answers with the nearest healthy cache.
        let names: Vec<String> = std::iter::once(r.cdn.ip().to_string())
            .chain(storefront.iter().cloned())
            .chain(std::iter::once(format!("{ASSETS}.{ZONE}")))
            .collect();
        replication::certs::issue_server(certs, &cdn_name(r.name), &names)?;
    }
    replication::certs::issue_server(certs, ROUTER, &[Ipv4Addr::LOCALHOST.to_string()])?;
    replication::certs::issue_server(certs, ASSETS, &[Ipv4Addr::LOCALHOST.to_string()])?;
    Ok(())
}

/// A part's HTTPS listener, serving the certificate `issue_https_certs` made for `name`, from
/// a config one directory below the state directory.
fn https(name: &str) -> http_api::serve::Settings {
    http_api::serve::Settings::tls(
        format!("../certs/{name}.https.pem").into(),
        format!("../certs/{name}.https.key").into(),
    )
}

/// The directory of the demo's identity provider, in the state directory.
pub const IDENTITY: &str = "identity";

/// The deployment's CA, as a part's config names it.
const CA_FROM_PART: &str = "../certs/ca.pem";

/// Where region `from` reaches region `to`'s core: its own directly, another through their link.
fn reach(regions: &[RegionLayout], from: usize, to: usize) -> SocketAddr {
    if from == to {
        regions[to].quic
    } else {
        regions[from].links[to]
    }
}

/// Writes `config` to `path` as the part reads it, marked as the demo's.
fn write_config<C: serde::Serialize>(path: &Path, config: &C) -> anyhow::Result<()> {
    let text = util::config::to_toml(config)
        .with_context(|| format!("writing the config {}", path.display()))?;
    std::fs::write(
        path,
        format!("# Written by `tradewind demo`; rewritten at every start.\n{text}"),
    )
    .with_context(|| format!("writing {}", path.display()))
}

/// Region `me`'s core: its store, its admin API, and the group, every other member reached
/// through the fault proxy's link.
fn core_config(regions: &[RegionLayout], me: usize, digest: &str) -> CoreConfig {
    use core_region::config::{AdminConfig, MemberConfig, RaftConfig, StoreConfig};
    let r = &regions[me];
    let routes = (0..regions.len())
        .filter(|to| *to != me)
        .map(|to| (regions[to].name.to_owned(), reach(regions, me, to)))
        .collect();
    let members = regions
        .iter()
        .enumerate()
        .map(|(i, m)| MemberConfig {
            id: i as u64 + 1,
            name: m.name.to_owned(),
            raft_addr: m.quic.to_string(),
            admin_url: format!("https://{}", m.admin),
            voter: true,
        })
        .collect();
    CoreConfig {
        region: r.name.to_owned(),
        store: StoreConfig::Redb {
            path: "core.redb".into(),
        },
        admin: AdminConfig::new(r.admin, vec![digest.to_owned()], {
            // The operator's tools (the sample loader, the drills) write in bursts.
            let mut http = https(r.name);
            http.client_rate_per_s = 5_000;
            http.client_burst = 10_000;
            http
        }),
        writes: Default::default(),
        raft: Some(RaftConfig {
            node_id: me as u64 + 1,
            listen: r.quic,
            certs_dir: "../certs".into(),
            log_path: None,
            members,
            timing: Default::default(),
            routes,
            // Every certificate of the demo names its role (made again when it did not).
            require_roles: true,
        }),
        grant_policy: Default::default(),
        feed: Default::default(),
        personal_data: residency(regions),
    }
}

/// The demo's residency policy: Chinese shoppers' data is kept in cn-shanghai (sealed with
/// SM4-GCM), South-East Asian shoppers' in ap-singapore, everyone else's in us-east (or, in a
/// smaller mesh, the first region), each where that region runs.
fn residency(regions: &[RegionLayout]) -> sealing::ResidencySettings {
    let runs = |name: &str| regions.iter().any(|r| r.name == name);
    let mut settings = sealing::ResidencySettings {
        home: Some(
            if runs("us-east") {
                "us-east"
            } else {
                regions[0].name
            }
            .to_owned(),
        ),
        ..Default::default()
    };
    let country = |c: &str| commerce::Country::new(c).expect("a demo country");
    if runs("cn-shanghai") {
        settings
            .homes
            .insert(country("CN"), "cn-shanghai".to_owned());
        settings
            .suites
            .insert("cn-shanghai".to_owned(), "sm4-gcm".to_owned());
    }
    if runs("ap-singapore") {
        for c in ["SG", "MY", "TH", "ID", "VN", "PH"] {
            settings.homes.insert(country(c), "ap-singapore".to_owned());
        }
    }
    settings
}

/// An edge follows its own region's core first, then the others in order.
fn edge_config(
    regions: &[RegionLayout],
    region: usize,
    name: &str,
    listen: SocketAddr,
) -> EdgeConfig {
    let cores = std::iter::once(region)
        .chain((0..regions.len()).filter(|i| *i != region))
        .map(|to| edge_node::config::CoreAddr {
            name: regions[to].name.to_owned(),
            quic: reach(regions, region, to),
        })
        .collect();
    EdgeConfig {
        region: regions[region].name.to_owned(),
        name: name.to_owned(),
        listen,
        // The region's cache connects from 127.0.0.1 and names the shopper it forwards.
        http: http_api::serve::Settings {
            trusted_proxies: vec!["127.0.0.1/32".parse().expect("a network")],
            ..https(name)
        },
        shoppers: http_api::identity::IdentitySettings::with_file(
            http_api::identity::issuer::DEMO_ISSUER,
            http_api::identity::issuer::DEMO_AUDIENCE,
            format!("../{IDENTITY}/shoppers.jwks.json").into(),
        ),
        certs_dir: "../certs".into(),
        require_roles: true,
        outbox_path: "outbox.redb".into(),
        cores,
        stale_after_ms: 5_000,
        limits: Default::default(),
        grants: Default::default(),
        cache: Default::default(),
        forward: Default::default(),
        cdn: edge_node::config::CdnSettings {
            purge_urls: vec![format!(
                "https://{}/admin/v1/purge",
                regions[region].cdn_admin
            )],
            purge_token_file: Some(format!("../{PURGE_TOKEN}").into()),
            ..Default::default()
        },
        personal_data: residency(regions),
    }
}

/// Region `region`'s cache: in front of its edges (the first, then the others when it is down)
/// and of the asset origin, purged by the
/// edges (their token has the `purge` scope alone) and by the operator (the admin token).
fn cdn_config(
    args: &DemoArgs,
    regions: &[RegionLayout],
    region: usize,
    admin_digest: &str,
    purge_digest: &str,
) -> cdn_cache::CdnConfig {
    let r = &regions[region];
    let name = cdn_name(r.name);
    let ca: PathBuf = "../certs/ca.pem".into();
    cdn_cache::CdnConfig {
        name: name.clone(),
        http: cdn_cache::config::Listen {
            listen: r.cdn,
            listener: https(&name),
        },
        admin: cdn_cache::config::Admin {
            listen: r.cdn_admin,
            listener: https(&name),
            token_sha256: vec![admin_digest.to_owned()],
            tokens: vec![http_api::bearer::ScopedToken {
                id: "edges".into(),
                sha256: purge_digest.to_owned(),
                scopes: vec![http_api::bearer::Scope::Purge],
                expires_at_ms: None,
            }],
        },
        origins: vec![
            cdn_cache::config::OriginConfig {
                name: "storefront".into(),
                host: None,
                path_prefix: "/".into(),
                url: format!("https://{}", r.edges[0].1),
                // The region's other edges take over when the first is down.
                backups: r.edges[1..]
                    .iter()
                    .map(|(_, addr)| format!("https://{addr}"))
                    .collect(),
                ca: Some(ca.clone()),
            },
            cdn_cache::config::OriginConfig {
                name: ASSETS.into(),
                host: None,
                path_prefix: "/assets/".into(),
                url: format!("https://{}", assets_addr(args)),
                backups: Vec::new(),
                ca: Some(ca),
            },
        ],
        memory: Default::default(),
        fetch: Default::default(),
        // Beside its config, in the region's directory: a restarted cache serves what it had.
        disk: Some(cdn_cache::config::DiskSettings {
            dir: "cdn-cache".into(),
            bytes_max: 1 << 30,
        }),
    }
}

/// One part of the mesh, running.
struct Part {
    name: String,
    args: Vec<String>,
    prefix: &'static str,
    process: Child,
    /// Whether its stopping was reported.
    reported: bool,
    /// Held open: when this process dies the pipe closes and the part stops itself.
    _lifeline: Option<ChildStdin>,
    log: PathBuf,
}

impl Part {
    /// Starts `tradewind <args>` and waits for its ready line, which starts with `prefix`.
    async fn start(
        name: &str,
        args: Vec<String>,
        log: PathBuf,
        prefix: &'static str,
    ) -> anyhow::Result<(Part, String)> {
        let exe = std::env::current_exe().context("finding this program")?;
        // The program this process runs, even when a rebuild has replaced the file since it
        // started (a part restarted later must be the same version as the rest of the mesh).
        let image = Path::new("/proc/self/exe");
        let program = if image.exists() { image } else { exe.as_path() };
        let err = util::files::append_private(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        // A group of its own: Ctrl-C in the terminal reaches the demo alone, which stops the
        // parts in order.
        let mut process = Command::new(program)
            .arg0(&exe)
            .process_group(0)
            .args(&args)
            .env("TRADEWIND_EXIT_WITH_PARENT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let lifeline = process.stdin.take();
        let stdout = process.stdout.take().context("the child's output")?;
        let (tx, mut rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with(prefix) {
                    let _ = tx.send(line);
                }
            }
        });
        let part = Part {
            name: name.to_owned(),
            args,
            prefix,
            process,
            reported: false,
            _lifeline: lifeline,
            log,
        };
        match tokio::time::timeout(READY_DEADLINE, rx.recv()).await {
            Ok(Some(line)) => Ok((part, line)),
            Ok(None) => bail!(
                "{name} stopped before it was ready; see {}",
                part.log.display()
            ),
            Err(_) => bail!(
                "{name} was not ready within {READY_DEADLINE:?}; see {}",
                part.log.display()
            ),
        }
    }

    fn pid(&self) -> u32 {
        self.process.id()
    }

    /// When it stops: edges first (they still need a core to send their outboxes to and take
    /// their grants back), then cores, then the proxy between them.
    fn stop_order(&self) -> u8 {
        match self.args.first().map(String::as_str) {
            // The router with the edges, before the cores.
            Some("edge" | "router") => 0,
            Some("core") => 1,
            _ => 2,
        }
    }

    fn running(&mut self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    /// The same part, started again.
    async fn restart(&mut self) -> anyhow::Result<()> {
        let (p, _) =
            Part::start(&self.name, self.args.clone(), self.log.clone(), self.prefix).await?;
        *self = p;
        Ok(())
    }
}

/// The value of `key=` in a ready line.
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// Stops every part, a kind at a time (`Part::stop_order`): SIGTERM, then SIGKILL for what has
/// not stopped by the deadline.
async fn stop_all(parts: &mut [Part]) {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    for order in 0..=2 {
        // A part already stopped is not signalled: its pid may be someone else's by now.
        for p in parts.iter_mut().filter(|p| p.stop_order() == order) {
            if p.running() {
                let _ = kill(Pid::from_raw(p.pid() as i32), Signal::SIGTERM);
            }
        }
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            let mut running = 0;
            for p in parts.iter_mut().filter(|p| p.stop_order() == order) {
                running += usize::from(p.running());
            }
            if running == 0 {
                break;
            }
            if Instant::now() > deadline {
                for p in parts.iter_mut().filter(|p| p.stop_order() == order) {
                    if p.running() {
                        eprintln!("{} did not stop in time; killing it", p.name);
                        let _ = p.process.kill();
                        let _ = p.process.wait();
                    }
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs the demo until `shutdown` resolves (also while it starts).
pub async fn run(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    tokio::pin!(shutdown);
    let started = Instant::now();
    let regions = layout(&args)?;
    check_ports(&args, &regions)?;
    let token = prepare(&args, &regions)?;
    let digest = http_api::bearer::sha256_hex(&token);
    let dir = std::fs::canonicalize(&args.state_dir)?;
    // Parts are started in order and stopped in reverse: the proxy, cores, then edges.
    let mut parts: Vec<Part> = Vec::new();
    let startup = async {
        let proxy = Some(start_proxy(&args, &regions, &dir, &digest, &mut parts).await?);
        let mut cores = Vec::new();
        for (i, r) in regions.iter().enumerate() {
            let home = dir.join(r.name);
            std::fs::create_dir_all(&home)?;
            let config = home.join("core.toml");
            write_config(&config, &core_config(&regions, i, &digest))?;
            let config = config.to_string_lossy().into_owned();
            let log = dir.join("logs").join(format!("{}.log", r.name));
            let (part, line) = Part::start(
                r.name,
                strings(&["core", "--config", &config]),
                log,
                "tradewind core ready:",
            )
            .await?;
            let admin_url = field(&line, "admin").unwrap_or_default().to_owned();
            cores.push(MeshCore {
                admin_url,
                quic: r.quic.to_string(),
                pid: part.pid(),
            });
            parts.push(part);
        }
        let ca = dir.join("certs").join("ca.pem");
        let http = http_api::client::trusting(&ca)?
            .timeout(Duration::from_secs(5))
            .build()?;
        let leader = wait_for_leader(&http, &cores).await?;
        let marker = dir.join("catalog-loaded");
        if !marker.exists() {
            println!(
                "loading the sample catalog ({} products) at {leader}...",
                args.sample_products
            );
            // At the leader: a write sent elsewhere would cross a link more, to be forwarded.
            let at = regions
                .iter()
                .position(|r| r.name == leader)
                .map_or(&cores[0].admin_url, |i| &cores[i].admin_url);
            crate::catalog::load_sample(
                at,
                token.clone(),
                Some(&ca),
                args.sample_products,
                crate::catalog::SAMPLE_SEED,
            )
            .await
            .context("loading the sample catalog")?;
            std::fs::write(&marker, format!("{} products\n", args.sample_products))?;
        }
        let mut mesh_regions = Vec::new();
        for (i, (r, core)) in regions.iter().zip(cores).enumerate() {
            let mut edges = Vec::new();
            for (name, listen) in &r.edges {
                let home = dir.join(name);
                std::fs::create_dir_all(&home)?;
                let config = home.join("edge.toml");
                write_config(&config, &edge_config(&regions, i, name, *listen))?;
                let config = config.to_string_lossy().into_owned();
                let log = dir.join("logs").join(format!("{name}.log"));
                let (part, line) = Part::start(
                    name,
                    strings(&["edge", "--config", &config]),
                    log,
                    "tradewind edge ready:",
                )
                .await?;
                edges.push(MeshEdge {
                    name: name.clone(),
                    url: field(&line, "http").unwrap_or_default().to_owned(),
                    pid: part.pid(),
                });
                parts.push(part);
            }
            mesh_regions.push(MeshRegion {
                name: r.name.to_owned(),
                core,
                edges,
                cdn: None,
            });
        }
        // Ready once every edge has applied what the group had when the edges started (the
        // whole sample catalog and its stock): an edge behind that would answer from less.
        let loaded = group_version(&http, &mesh_regions, &token).await?;
        for e in mesh_regions.iter().flat_map(|r| &r.edges) {
            wait_until(&format!("edge {} to have its catalog", e.name), || async {
                let Ok(r) = http.get(format!("{}/healthz", e.url)).send().await else {
                    return false;
                };
                let ok = r.status().is_success();
                let status: serde_json::Value = r.json().await.unwrap_or_default();
                ok && status["applied_version"]
                    .as_u64()
                    .is_some_and(|v| v >= loaded)
            })
            .await?;
        }
        let assets = start_assets(&args, &dir, &mut parts).await?;
        let purge_digest = http_api::bearer::sha256_hex(&kept_token(&dir.join(PURGE_TOKEN))?);
        for (i, r) in regions.iter().enumerate() {
            let name = cdn_name(r.name);
            let home = dir.join(&name);
            std::fs::create_dir_all(&home)?;
            let config = home.join("cdn.toml");
            write_config(
                &config,
                &cdn_config(&args, &regions, i, &digest, &purge_digest),
            )?;
            let config = config.to_string_lossy().into_owned();
            let log = dir.join("logs").join(format!("{name}.log"));
            let (part, line) = Part::start(
                &name,
                strings(&["cdn", "--config", &config]),
                log,
                "tradewind cdn ready:",
            )
            .await?;
            mesh_regions[i].cdn = Some(chaos_tests::mesh::MeshCdn {
                url: field(&line, "http").unwrap_or_default().to_owned(),
                admin_url: field(&line, "admin").unwrap_or_default().to_owned(),
                pid: part.pid(),
            });
            parts.push(part);
        }
        let router = Some(start_router(&args, &regions, &dir, &mut parts).await?);
        let mesh = Mesh {
            admin_token: token.clone(),
            admin_token_file: None,
            control: None,
            ca: Some(ca.clone()),
            identity: Some(dir.join(IDENTITY)),
            regions: mesh_regions,
            wan: args.wan.name().to_owned(),
            proxy,
            router,
            assets: Some(assets),
            pid: std::process::id(),
        };
        let mesh_path = dir.join("mesh.json");
        mesh.save(&mesh_path)?;
        let sku = example_sku(&http, &mesh.regions[0].edges[0].url).await;
        print_endpoints(&mesh, &mesh_path, &dir, &sku, started.elapsed());
        // One line that scripts and tests wait for.
        println!("tradewind demo ready: mesh={}", mesh_path.display());
        anyhow::Ok(mesh)
    };
    let result = tokio::select! {
        r = startup => r,
        _ = &mut shutdown => Err(anyhow::anyhow!("stopped before the mesh was ready")),
    };
    let mut mesh = match result {
        Ok(m) => m,
        Err(e) => {
            stop_all(&mut parts).await;
            return Err(e);
        }
    };
    let mesh_path = dir.join("mesh.json");
    let outcome = supervise(&mut parts, &mut mesh, &mesh_path, &mut shutdown).await;
    println!("stopping the mesh...");
    stop_all(&mut parts).await;
    let _ = std::fs::remove_file(&mesh_path);
    outcome
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

/// Until `shutdown`: reports a part that stops, and on SIGUSR1 starts every stopped part again.
async fn supervise(
    parts: &mut [Part],
    mesh: &mut Mesh,
    mesh_path: &Path,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1()).context("watching SIGUSR1")?;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = usr1.recv() => {
                for p in parts.iter_mut() {
                    if p.running() {
                        continue;
                    }
                    match p.restart().await {
                        Ok(()) => {
                            println!("{} started again (pid {})", p.name, p.pid());
                            set_pid(mesh, &p.name, p.pid());
                        }
                        Err(e) => println!("{} did not start again: {e:#}", p.name),
                    }
                }
                mesh.save(mesh_path)?;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        for p in parts.iter_mut() {
            if !p.reported
                && let Ok(Some(status)) = p.process.try_wait()
            {
                p.reported = true;
                println!(
                    "{} stopped ({status}); `kill -USR1 {}` starts every stopped part again (log: {})",
                    p.name,
                    std::process::id(),
                    p.log.display()
                );
            }
        }
    }
}

/// The fault proxy with a link from every region to every other, started as a part.
async fn start_proxy(
    args: &DemoArgs,
    regions: &[RegionLayout],
    dir: &Path,
    digest: &str,
    parts: &mut Vec<Part>,
) -> anyhow::Result<MeshProxy> {
    use chaos_tests::proxy::{LinkSpec, Protocol, ProxyConfig, Shape};
    let mut links = Vec::new();
    let mut specs = Vec::new();
    for (a, from) in regions.iter().enumerate() {
        for (b, to) in regions.iter().enumerate().filter(|(b, _)| *b != a) {
            let rtt = match args.wan {
                Wan::None => 0,
                Wan::Realistic => round_trip_ms(a, b),
            };
            let name = format!("{}->{}", from.name, to.name);
            specs.push(LinkSpec {
                name: name.clone(),
                protocol: Protocol::Udp,
                listen: from.links[b],
                target: to.quic,
                // Each direction carries half the round trip.
                shape: Shape {
                    latency_ms: rtt / 2,
                    jitter_ms: if rtt == 0 { 0 } else { (rtt / 40).max(1) },
                    ..Shape::default()
                },
            });
            links.push(MeshLink {
                name,
                from: from.name.to_owned(),
                to: to.name.to_owned(),
                listen: from.links[b].to_string(),
                target: to.quic.to_string(),
                rtt_ms: rtt,
            });
        }
    }
    let home = dir.join(PROXY);
    std::fs::create_dir_all(&home)?;
    let config = home.join("proxy.toml");
    write_config(
        &config,
        &ProxyConfig {
            api: proxy_api(args),
            token_sha256: vec![digest.to_owned()],
            links: specs,
        },
    )?;
    let config = config.to_string_lossy().into_owned();
    let log = dir.join("logs").join(format!("{PROXY}.log"));
    let (part, line) = Part::start(
        PROXY,
        strings(&["fault-proxy", "--config", &config]),
        log,
        "tradewind fault-proxy ready:",
    )
    .await?;
    let proxy = MeshProxy {
        api: field(&line, "api").unwrap_or_default().to_owned(),
        pid: part.pid(),
        links,
    };
    parts.push(part);
    Ok(proxy)
}

/// The fault proxy's name among the parts.
const PROXY: &str = "fault-proxy";
/// The router's name among the parts.
const ROUTER: &str = "geo-router";

/// The router's config: every region's edges, checked at their `/healthz`, and the geo table.
fn router_config(args: &DemoArgs, regions: &[RegionLayout]) -> RouterConfig {
    use geo_router::config::{
        DnsSettings, EdgeConfig as RouterEdge, GeoSettings, HealthSettings, HttpSettings,
        NameServer, NetworkEntry, RegionConfig,
    };
    let (dns, http) = router_addrs(args);
    let network = |cidr: String, region: &str| NetworkEntry {
        cidr: cidr.parse().expect("the demo's networks are CIDRs"),
        region: Some(region.to_owned()),
        latitude: None,
        longitude: None,
    };
    let mut networks = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        if let Some(prefix) = DOCUMENTATION_PREFIXES.get(i) {
            networks.push(network((*prefix).to_owned(), r.name));
        }
        networks.push(network(format!("2001:db8:{}::/48", i + 1), r.name));
    }
    let regions = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (latitude, longitude) = REGION_COORDINATES[i];
            RegionConfig {
                name: r.name.to_owned(),
                latitude,
                longitude,
                fallback: Vec::new(),
                edges: r
                    .edges
                    .iter()
                    .map(|(name, addr)| RouterEdge {
                        name: name.clone(),
                        health_url: format!("https://{addr}/healthz"),
                        addresses: vec![addr.ip()],
                    })
                    .collect(),
                caches: vec![RouterEdge {
                    name: cdn_name(r.name),
                    health_url: format!("https://{}/healthz", r.cdn_admin),
                    addresses: vec![r.cdn.ip()],
                }],
            }
        })
        .collect();
    RouterConfig {
        zone: ZONE.to_owned(),
        names: vec!["@".into(), "www".into()],
        asset_names: vec![ASSETS.into()],
        ttl_s: 10,
        dns: DnsSettings {
            rrl: geo_router::rrl::RrlSettings {
                responses_per_s: args.dns_rrl_per_s,
                burst: args.dns_rrl_per_s.saturating_mul(2),
                ..Default::default()
            },
            ..DnsSettings::new(
                dns,
                vec![NameServer {
                    name: "ns1".into(),
                    addresses: vec![dns.ip()],
                }],
            )
        },
        http: HttpSettings {
            listen: http,
            listener: https(ROUTER),
        },
        health: HealthSettings {
            ca: Some(CA_FROM_PART.into()),
            ..HealthSettings::default()
        },
        geo: GeoSettings {
            networks,
            ..GeoSettings::default()
        },
        regions,
    }
}

/// The geo-router, started as a part once the edges are up.
async fn start_router(
    args: &DemoArgs,
    regions: &[RegionLayout],
    dir: &Path,
    parts: &mut Vec<Part>,
) -> anyhow::Result<MeshRouter> {
    let home = dir.join(ROUTER);
    std::fs::create_dir_all(&home)?;
    let config = home.join("router.toml");
    write_config(&config, &router_config(args, regions))?;
    let config = config.to_string_lossy().into_owned();
    let log = dir.join("logs").join(format!("{ROUTER}.log"));
    let (part, line) = Part::start(
        ROUTER,
        strings(&["router", "--config", &config]),
        log,
        "tradewind router ready:",
    )
    .await?;
    let router = MeshRouter {
        dns: field(&line, "dns").unwrap_or_default().to_owned(),
        http: field(&line, "http").unwrap_or_default().to_owned(),
        zone: ZONE.to_owned(),
        pid: part.pid(),
    };
    parts.push(part);
    Ok(router)
}

/// Records the new pid of part `name` in `mesh`.
fn set_pid(mesh: &mut Mesh, name: &str, pid: u32) {
    if let Some(p) = mesh.proxy.as_mut().filter(|_| name == PROXY) {
        p.pid = pid;
    }
    if let Some(a) = mesh.assets.as_mut().filter(|_| name == ASSETS) {
        a.pid = pid;
    }
    if let Some(r) = mesh.router.as_mut().filter(|_| name == ROUTER) {
        r.pid = pid;
    }
    for r in &mut mesh.regions {
        if r.name == name {
            r.core.pid = pid;
        }
        for e in &mut r.edges {
            if e.name == name {
                e.pid = pid;
            }
        }
        if let Some(c) = r.cdn.as_mut().filter(|_| cdn_name(&r.name) == name) {
            c.pid = pid;
        }
    }
}

/// Starts the asset origin.
async fn start_assets(
    args: &DemoArgs,
    dir: &Path,
    parts: &mut Vec<Part>,
) -> anyhow::Result<chaos_tests::mesh::MeshAssets> {
    let home = dir.join(ASSETS);
    std::fs::create_dir_all(&home)?;
    let config = home.join("assets.toml");
    write_config(
        &config,
        &crate::assets::AssetsConfig {
            listen: assets_addr(args),
            listener: http_api::serve::Settings {
                // The caches forward from 127.0.0.1.
                trusted_proxies: vec!["127.0.0.1/32".parse().expect("a network")],
                ..https(ASSETS)
            },
        },
    )?;
    let config = config.to_string_lossy().into_owned();
    let (part, line) = Part::start(
        ASSETS,
        strings(&["assets", "--config", &config]),
        dir.join("logs").join("assets.log"),
        "tradewind assets ready:",
    )
    .await?;
    let assets = chaos_tests::mesh::MeshAssets {
        url: field(&line, "http").unwrap_or_default().to_owned(),
        pid: part.pid(),
    };
    parts.push(part);
    Ok(assets)
}

/// Polls `check` until it holds, for `SETTLE_DEADLINE` at most.
async fn wait_until<F, Fut>(what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + SETTLE_DEADLINE;
    while !check().await {
        if Instant::now() > deadline {
            bail!("waited {SETTLE_DEADLINE:?} for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The region that leads, once one does.
async fn wait_for_leader(http: &reqwest::Client, cores: &[MeshCore]) -> anyhow::Result<String> {
    let deadline = Instant::now() + SETTLE_DEADLINE;
    loop {
        for c in cores {
            let health: Option<serde_json::Value> =
                match http.get(format!("{}/healthz", c.admin_url)).send().await {
                    Ok(r) => r.json().await.ok(),
                    Err(_) => None,
                };
            if let Some(l) = health.as_ref().and_then(|h| h["leader"].as_str()) {
                return Ok(l.to_owned());
            }
        }
        if Instant::now() > deadline {
            bail!("the regions elected no leader within {SETTLE_DEADLINE:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The group's version, from the first core that answers.
async fn group_version(
    http: &reqwest::Client,
    regions: &[MeshRegion],
    token: &str,
) -> anyhow::Result<u64> {
    for r in regions {
        let answer = http
            .get(format!("{}/admin/v1/cluster", r.core.admin_url))
            .bearer_auth(token)
            .send()
            .await;
        let cluster: Option<serde_json::Value> = match answer {
            Ok(a) if a.status().is_success() => a.json().await.ok(),
            _ => None,
        };
        if let Some(v) = cluster.as_ref().and_then(|c| c["version"].as_u64()) {
            return Ok(v);
        }
    }
    bail!("no core told the group's version")
}

/// A SKU of the catalog sold in USD, for the example order.
async fn example_sku(http: &reqwest::Client, edge: &str) -> String {
    let page: Option<serde_json::Value> = match http
        .get(format!("{edge}/v1/products?limit=1&currency=USD"))
        .send()
        .await
    {
        Ok(r) => r.json().await.ok(),
        Err(_) => None,
    };
    page.as_ref()
        .and_then(|p| p["items"][0]["skus"][0]["sku"].as_str())
        .unwrap_or("<a sku>")
        .to_owned()
}

fn print_endpoints(mesh: &Mesh, mesh_path: &Path, dir: &Path, sku: &str, took: Duration) {
    println!();
    let n = mesh.regions.len();
    println!(
        "Tradewind demo: {n} region{}, ready in {:.1} s",
        if n == 1 { "" } else { "s" },
        took.as_secs_f64()
    );
    for r in &mesh.regions {
        println!("  {:<14} core admin {}", r.name, r.core.admin_url);
        for e in &r.edges {
            println!("  {:<14} edge {:<16} {}", "", e.name, e.url);
        }
        if let Some(c) = &r.cdn {
            println!(
                "  {:<14} cdn  {:<16} {} (admin {})",
                "",
                cdn_name(&r.name),
                c.url,
                c.admin_url
            );
        }
    }
    if let Some(a) = &mesh.assets {
        println!("  {:<14} {}", "assets", a.url);
    }
    let edge = &mesh.regions[0].edges[0].url;
    let admin = &mesh.regions[0].core.admin_url;
    if let Some(r) = &mesh.router {
        println!(
            "  {:<14} dns {} (zone {}), http {}",
            "geo-router", r.dns, r.zone, r.http
        );
    }
    println!();
    println!("  admin token    {}", mesh.admin_token);
    println!("  mesh           {}", mesh_path.display());
    println!("  logs           {}", dir.join("logs").display());
    println!();
    println!("Try (every API speaks TLS 1.3; curl trusts the mesh's CA with --cacert):");
    let ca = dir.join("certs").join("ca.pem");
    let curl = format!("curl -s --cacert {}", ca.display());
    println!("  {curl} '{edge}/v1/products?limit=2&currency=USD'");
    let identity = dir.join(IDENTITY);
    println!(
        "  S=$(cargo run -q --release -- token shopper --dir {} --customer c-1)   # a shopper's token",
        identity.display()
    );
    println!(
        "  {curl} -X POST {edge}/v1/orders -H \"authorization: Bearer $S\" -H 'content-type: application/json' -H \"idempotency-key: $(cat /proc/sys/kernel/random/uuid)\" \\\n    -d '{{\"currency\": \"USD\", \"lines\": [{{\"sku\": \"{sku}\", \"qty\": 1}}], \"ship_to\": {{\"country\": \"SG\", \"line1\": \"1 Raffles Place\", \"city\": \"Singapore\", \"postal_code\": \"048616\"}}}}'"
    );
    println!(
        "  {curl} -H 'authorization: Bearer {}' {admin}/admin/v1/cluster",
        mesh.admin_token
    );
    if let Some(c) = &mesh.regions[0].cdn {
        println!(
            "  {curl} -D - -o /dev/null '{}/v1/products?limit=2&currency=USD' | grep -i '^age\\|^cache-status'   # twice: a miss, then a hit",
            c.url
        );
        println!(
            "  {curl} -H 'authorization: Bearer {}' -H 'content-type: application/json' -d '{{\"keys\": [\"products\"]}}' {}/admin/v1/purge",
            mesh.admin_token, c.admin_url
        );
    }
    if let Some(r) = &mesh.router
        && let Ok(dns) = r.dns.parse::<SocketAddr>()
    {
        println!(
            "  dig @{} -p {} www.{} A +subnet=198.51.100.0/24",
            dns.ip(),
            dns.port(),
            r.zone
        );
        println!("  {curl} '{}/v1/route?ip=203.0.113.7'", r.http);
    }
    println!(
        "  cargo run --release -- status --mesh {}",
        mesh_path.display()
    );
    println!();
    println!(
        "Ctrl-C stops every part; the data stays in {} for the next start.",
        dir.display()
    );
}
