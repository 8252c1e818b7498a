//! `tradewind`: the one binary users run. Each subcommand is a thin shell over a library crate.

#![forbid(unsafe_code)]

mod assets;
mod catalog;
mod demo;
mod status;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tradewind",
    version,
    about = "Edge-distributed multi-region commerce mesh"
)]
struct Cli {
    /// Log as JSON lines instead of text (logs go to stderr; RUST_LOG filters them).
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole mesh on this machine: regions on 127.0.N.1, each with its core and edges,
    /// the sample catalog loaded; Ctrl-C stops it, and the next start finds the data again.
    Demo(demo::DemoArgs),
    /// Failover drills on a running demo, checked against the commerce invariants.
    Chaos {
        #[command(subcommand)]
        drill: chaos_tests::drill::Drill,
    },
    /// The mesh at a glance: leader, versions and lag, each edge's health, outbox and grants.
    Status {
        /// The mesh.json a running demo wrote.
        #[arg(long, default_value = ".tradewind/demo/mesh.json")]
        mesh: PathBuf,
    },
    /// Run one core region (store, state machine, admin API).
    Core {
        /// The core's TOML config (see examples/core.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and exit.
        #[arg(long)]
        check_config: bool,
        /// Once serving, load the sample catalog through the admin API (idempotent: a restart
        /// with this flag changes nothing).
        #[arg(long)]
        load_sample: bool,
        /// Products in the sample catalog.
        #[arg(long, default_value_t = 1_000, requires = "load_sample")]
        sample_products: usize,
        /// The deployment's CA (`certs/ca.pem` of `tradewind certs`), for the sample loader
        /// and for `--group`.
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// Restore the store from this backup (`tradewind backup`) into the config's new, empty
        /// data directory, and exit. A region of a group is then started and added to the
        /// group again (README, "Backup and restore").
        #[arg(long, conflicts_with_all = ["check_config", "load_sample"])]
        restore: Option<PathBuf>,
        /// For `--restore` of a region of a group: the admin API of one of the group's other
        /// members, which must no longer count this region among them; the restored region
        /// takes the group's current term from it.
        #[arg(long, requires = "restore")]
        group: Option<String>,
        /// The admin token `--group` is asked with (any scope).
        #[arg(long, env = "TRADEWIND_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
    /// Take a backup of a core's store through its admin API (a token with the `backup`
    /// scope), checked before it is written (0600).
    Backup {
        /// The core's admin API, e.g. https://127.0.1.1:7101
        #[arg(long)]
        admin: String,
        /// The deployment's CA (PEM), for an https admin URL.
        #[arg(long)]
        cacert: Option<PathBuf>,
        #[arg(long, env = "TRADEWIND_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Run one edge node (storefront API, local order intake from escrow grants).
    Edge {
        /// The edge's TOML config (see examples/cluster/ap-singapore-1.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Run the geo-router: authoritative DNS for the shop zone, answering each shopper with
    /// the healthy edges of the nearest region, and its HTTP API (`/v1/route`, `/metrics`).
    Router {
        /// The router's TOML config (see examples/cluster/router.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Run one region's CDN cache: a shared HTTP cache (RFC 9111) in front of the region's
    /// edges and asset origin, purged by URL and surrogate key through its admin API.
    Cdn {
        /// The cache's TOML config (see examples/cluster/cn-shanghai-cdn.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// The demo's asset origin: the sample catalog's product images (SVG, drawn from each
    /// product's id), with validators and a year's lifetime, behind every region's CDN cache.
    Assets {
        /// Its TOML config: `listen` and `[listener]` (TLS, as every listener).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// The fault proxy: links between regions with latency, jitter, loss, bandwidth limits and
    /// cuts, changed at runtime through its HTTP API (the demo runs one for its links between regions).
    FaultProxy {
        /// Its TOML config: `api = "127.0.0.1:PORT"` and `[[links]]` (name, protocol, listen,
        /// target, shape).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Work with catalogs through a core's admin API.
    Catalog {
        #[command(subcommand)]
        command: catalog::CatalogCommand,
    },
    /// Admin tokens, and shopper tokens signed by a small identity provider of the mesh's own.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The deployment CA and node certificates for mutual TLS between regions and edges.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Region keys that shoppers' personal data is sealed to: each region's private keys in
    /// DIR/<region>.keys (0600, for that region's cores only), every region's public keys in
    /// DIR/public.keys (for every node).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make the first key of each region in a directory that has none of theirs.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// Core regions, comma-separated (e.g. cn-shanghai,ap-singapore,us-east).
        #[arg(long, value_delimiter = ',', required = true)]
        regions: Vec<String>,
    },
    /// Add a new key to a region: data is sealed to it from now on, and what was sealed to
    /// its older keys, which are kept, still opens. Copy DIR/<region>.keys to the region's
    /// cores and DIR/public.keys to every node.
    Rotate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        region: String,
    },
    /// Make a region's keeping keys (DIR/<region>.shred), if it has none: what its cores keep
    /// addresses under, and destroy a customer's or a period's key in. `keys init` makes them;
    /// this is for a region whose keys were made by a build before them. Copy the file to the
    /// region's cores only.
    Keeping {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        region: String,
        /// The length of a period (ms): retention destroys a period's key once all of it is
        /// past the retention time. One day by default.
        #[arg(long, default_value_t = sealing::shred::DEFAULT_PERIOD_MS)]
        period_ms: u64,
        /// The oldest order time (unix ms) to keep: by default ten years back, or 100,000
        /// periods if fewer.
        #[arg(long)]
        since_ms: Option<i64>,
    },
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a CA, one certificate per node and each region's first personal data key
    /// (`keys/`) in a new directory.
    Init {
        /// Directory to write ca.pem, ca.key and <node>.pem / <node>.key into.
        #[arg(long)]
        out: PathBuf,
        /// Core regions, comma-separated (e.g. cn-shanghai,ap-singapore,us-east).
        #[arg(long, value_delimiter = ',', required = true)]
        regions: Vec<String>,
        /// Edge nodes, comma-separated.
        #[arg(long, value_delimiter = ',')]
        edges: Vec<String>,
    },
    /// Issue a certificate for one more node, signed by the CA in the directory. The
    /// certificate names the node's role, which decides what it may ask of the mesh: a core
    /// takes part in the Raft group, an edge follows a feed and sends orders and reads, a
    /// router may only ask how the group stands.
    Add {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        node: String,
        /// core, edge or router.
        #[arg(long, value_parser = ["core", "edge", "router"])]
        role: String,
    },
    /// Make the deployment's secret (DIR/deployment.secret) unless it is there: 32 random bytes
    /// that every core and edge of the mesh derives the same order ids from, so that nobody
    /// without it can compute an order's id. Copy it, with ca.pem, to every node's certificate
    /// directory; `certs init` makes it too.
    Secret {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Stop trusting a node's certificates (every one of the node, or one certificate by its
    /// file), though the CA signed them: added to DIR/revoked.txt, which every node of the mesh
    /// reads again within 2 s (copy the file to each node's certificate directory). A revoked
    /// node's connections are closed and new ones refused.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        /// The node whose every certificate is revoked.
        #[arg(long, conflicts_with = "cert", required_unless_present = "cert")]
        node: Option<String>,
        /// One certificate (PEM) to revoke, by its SHA-256.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Issue (or renew) the certificate an HTTPS listener serves, signed by the CA in the
    /// directory: <name>.https.pem and <name>.https.key, for the config's tls_cert and
    /// tls_key. A listener serving them picks a renewed pair up without a restart.
    Server {
        #[arg(long)]
        dir: PathBuf,
        /// What the files are named after, e.g. the node (cn-shanghai, sg-edge-1).
        #[arg(long)]
        name: String,
        /// Every name clients reach the listener by: its addresses and DNS names (the
        /// storefront names of the router's zone for an edge), comma-separated or repeated.
        #[arg(long = "for", value_delimiter = ',', required = true)]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Print a new random admin token and the digest to put in a config's admin.token_sha256.
    New,
    /// Print the digest of a token given on standard input.
    Hash,
    /// Print a new admin token limited to some scopes (and, if asked, to a time), and the
    /// `[[admin.tokens]]` entry to put in every core's config.
    Create {
        /// What the audit log and refusals call it, e.g. pricing-bot.
        #[arg(long)]
        id: String,
        /// Scopes, comma-separated: catalog, prices, stock, orders:read, orders, cluster, audit,
        /// personal-data.
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<http_api::bearer::Scope>,
        /// Refused this many days from now.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Print a shopper token (a JWT, EdDSA) signed with the key in DIR (`tradewind demo` keeps
    /// one in .tradewind/demo/identity), for `Authorization: Bearer` at a storefront whose
    /// `[shoppers]` trusts that key's JWKS (DIR/shoppers.jwks.json).
    Shopper {
        /// The identity provider's directory; the key and JWKS are made there if missing.
        #[arg(long, default_value = ".tradewind/demo/identity")]
        dir: PathBuf,
        /// The customer the token names (its `sub`).
        #[arg(long)]
        customer: String,
        /// Their customer group (`customer_group`), for group prices.
        #[arg(long)]
        group: Option<String>,
        #[arg(long, default_value_t = 3_600)]
        ttl_s: u64,
        #[arg(long, default_value = http_api::identity::issuer::DEMO_ISSUER)]
        issuer: String,
        #[arg(long, default_value = http_api::identity::issuer::DEMO_AUDIENCE)]
        audience: String,
    },
    /// Start signing shopper tokens with a new key in DIR; its public half is published first
    /// beside the old ones, so tokens signed before stay valid until they expire.
    RotateShopperKey {
        #[arg(long, default_value = ".tradewind/demo/identity")]
        dir: PathBuf,
    },
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// What SIGHUP means to a command.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Hangup {
    /// The terminal closed, the session dropped: stop as on Ctrl-C (a drill heals the mesh
    /// first).
    Stops,
    /// A server's: read its TLS certificates again (as nginx does); `http_api::serve` watches
    /// it. The server goes on.
    Reloads,
}

/// A future that resolves on Ctrl-C or SIGTERM, and on SIGHUP when `hangup` says it stops.
/// The handlers are installed when this is called (inside the runtime, before the work
/// starts), so that a signal that comes early is neither lost nor fatal.
fn shutdown_signal(
    rt: &tokio::runtime::Runtime,
    hangup: Hangup,
) -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let _inside = rt.enter();
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    );
    async move {
        match signals {
            (Ok(mut term), Ok(mut int), Ok(mut hup)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                    _ = async {
                        loop {
                            hup.recv().await;
                            if hangup == Hangup::Stops {
                                return;
                            }
                        }
                    } => {}
                }
            }
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM, SIGINT and SIGHUP; only SIGKILL stops this process");
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutdown requested");
    }
}

fn main() -> std::process::ExitCode {
    // No transparent huge pages for this process: the allocator asks for them, and then every
    // fresh 2 MiB page is zeroed whole on its first touch, a sixth of a replicating region's CPU
    // under order load, while the process uses a few KiB of it (BENCHMARKS.md, replication).
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    let cli = Cli::parse();
    init_logging(cli.log_json);
    exit_with_parent();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // The chain of causes, one line; no backtrace for an operator's mistake.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A part started by `tradewind demo` reads its standard input, a pipe from the demo, until it
/// closes: then the demo is gone, however it went, and the part shuts itself down as on SIGTERM.
fn exit_with_parent() {
    if std::env::var_os("TRADEWIND_EXIT_WITH_PARENT").is_none() {
        return;
    }
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGTERM);
    });
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(args) => {
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Stops);
            rt.block_on(demo::run(args, stop))
        }
        Command::Status { mesh } => runtime()?.block_on(status::run(&mesh)),
        Command::Chaos { drill } => {
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Stops);
            rt.block_on(chaos_tests::drill::run(drill, stop))
        }
        Command::Core {
            config,
            check_config,
            load_sample,
            sample_products,
            cacert,
            restore,
            group,
            token,
        } => {
            let mut cfg: core_region::config::CoreConfig = util::config::load(&config)?;
            if check_config {
                println!("{}: ok (region {})", config.display(), cfg.region);
                return Ok(());
            }
            if let Some(from) = restore {
                let bytes = std::fs::read(&from)
                    .with_context(|| format!("reading the backup {}", from.display()))?;
                let taken = core_region::backup::read(&bytes)?;
                let leader = match (&group, core_region::backup::rejoins(&cfg, &taken)) {
                    (Some(url), true) => {
                        let token = token
                            .context("--group needs an admin token (TRADEWIND_ADMIN_TOKEN)")?;
                        let id = cfg.members().0;
                        Some(runtime()?.block_on(group_leader(
                            url,
                            cacert.as_deref(),
                            &token,
                            id,
                        ))?)
                    }
                    _ => None,
                };
                let r = core_region::backup::restore(&cfg, &taken, leader)?;
                println!(
                    "restored {} into region {}: the group's state as of entry {}, taken at node {} (Unix ms {}); start the core{}",
                    from.display(),
                    cfg.region,
                    r.index,
                    r.node,
                    r.taken_at_ms,
                    if r.rejoins {
                        ", then add it to the group again (POST /admin/v1/cluster/members at the leader)"
                    } else {
                        ""
                    }
                );
                return Ok(());
            }
            // The sample is loaded through the real admin API, with a token that lives only in
            // this process.
            let loader_token = load_sample.then(|| {
                let (token, digest) = http_api::bearer::new_token();
                cfg.admin.token_sha256.push(digest);
                token
            });
            let region = cfg.region.clone();
            let scheme = cfg.admin.http.scheme();
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Reloads);
            rt.block_on(core_region::server::serve(cfg, stop, |s| {
                // One line on stdout that scripts and tests wait for.
                let raft = s.raft.map_or_else(|| "none".to_owned(), |a| a.to_string());
                println!(
                    "tradewind core ready: region={region} admin={scheme}://{} raft={raft} version={}",
                    s.admin, s.version
                );
                if let Some(token) = loader_token {
                    let admin = format!("{scheme}://{}", s.admin);
                    tokio::spawn(async move {
                        if let Err(e) = catalog::load_sample(
                            &admin,
                            token,
                            cacert.as_deref(),
                            sample_products,
                            catalog::SAMPLE_SEED,
                        )
                        .await
                        {
                            tracing::error!(error = %e, "loading the sample catalog failed");
                        }
                    });
                }
            }))?;
            Ok(())
        }
        Command::Edge {
            config,
            check_config,
        } => {
            let cfg: edge_node::config::EdgeConfig = util::config::load(&config)?;
            if check_config {
                println!(
                    "{}: ok (edge {} of {})",
                    config.display(),
                    cfg.name,
                    cfg.region
                );
                return Ok(());
            }
            let (name, region) = (cfg.name.clone(), cfg.region.clone());
            let scheme = cfg.http.scheme();
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Reloads);
            rt.block_on(edge_node::server::serve(cfg, stop, |s| {
                // One line on stdout that scripts and tests wait for.
                println!(
                    "tradewind edge ready: edge={name} region={region} http={scheme}://{}",
                    s.http
                );
            }))?;
            Ok(())
        }
        Command::Router {
            config,
            check_config,
        } => {
            let cfg: geo_router::RouterConfig = util::config::load(&config)?;
            if check_config {
                geo_router::geo::Geo::new(&cfg)?;
                println!(
                    "{}: ok (zone {}, {} regions)",
                    config.display(),
                    cfg.zone,
                    cfg.regions.len()
                );
                return Ok(());
            }
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Reloads);
            let zone = cfg.zone.clone();
            let scheme = cfg.http.listener.scheme();
            rt.block_on(geo_router::serve(cfg, stop, |s| {
                // One line on stdout that scripts and tests wait for.
                println!(
                    "tradewind router ready: zone={zone} dns={} http={scheme}://{}",
                    s.dns, s.http
                );
            }))?;
            Ok(())
        }
        Command::Cdn {
            config,
            check_config,
        } => {
            let cfg: cdn_cache::CdnConfig = util::config::load(&config)?;
            if check_config {
                cdn_cache::check(&cfg)?;
                println!(
                    "{}: ok (cache {}, {} origins)",
                    config.display(),
                    cfg.name,
                    cfg.origins.len()
                );
                return Ok(());
            }
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Reloads);
            let name = cfg.name.clone();
            let (scheme, admin_scheme) = (cfg.http.listener.scheme(), cfg.admin.listener.scheme());
            rt.block_on(cdn_cache::serve(cfg, stop, |s| {
                // One line on stdout that scripts and tests wait for.
                println!(
                    "tradewind cdn ready: cache={name} http={scheme}://{} admin={admin_scheme}://{}",
                    s.http, s.admin
                );
            }))?;
            Ok(())
        }
        Command::Assets {
            config,
            check_config,
        } => {
            let cfg: assets::AssetsConfig = util::config::load(&config)?;
            if check_config {
                println!("{}: ok", config.display());
                return Ok(());
            }
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Reloads);
            let scheme = cfg.listener.scheme();
            rt.block_on(assets::serve(cfg, stop, |addr| {
                // One line on stdout that scripts and tests wait for.
                println!("tradewind assets ready: http={scheme}://{addr}");
            }))?;
            Ok(())
        }
        Command::FaultProxy {
            config,
            check_config,
        } => {
            let cfg: chaos_tests::proxy::ProxyConfig = util::config::load(&config)?;
            if check_config {
                println!("{}: ok ({} links)", config.display(), cfg.links.len());
                return Ok(());
            }
            let rt = runtime()?;
            let stop = shutdown_signal(&rt, Hangup::Stops);
            rt.block_on(chaos_tests::proxy::serve(cfg, stop, |s| {
                // One line on stdout that scripts and tests wait for.
                println!("tradewind fault-proxy ready: api=http://{}", s.api);
            }))?;
            Ok(())
        }
        Command::Catalog { command } => runtime()?.block_on(catalog::run(command)),
        Command::Backup {
            admin,
            cacert,
            token,
            out,
        } => runtime()?.block_on(backup(&admin, cacert.as_deref(), &token, &out)),
        Command::Keys { command } => {
            match command {
                KeysCommand::Init { dir, regions } => {
                    let ids = sealing::init(&dir, &regions)?;
                    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
                    println!(
                        "{}: keys {} (each <region>.keys and <region>.shred private to its region), public.keys",
                        dir.display(),
                        ids.join(", ")
                    );
                }
                KeysCommand::Keeping {
                    dir,
                    region,
                    period_ms,
                    since_ms,
                } => {
                    sealing::keys::KeyId::new(&region, 1)?;
                    if period_ms < 1_000 {
                        anyhow::bail!("--period-ms: at least 1000");
                    }
                    let path = sealing::shred::path(&dir, &region);
                    let since = since_ms.unwrap_or_else(|| sealing::shred::backfill_ms(period_ms));
                    if sealing::shred::ensure(&dir, &region, period_ms, since)? {
                        println!("{}: made ({period_ms} ms periods)", path.display());
                    } else {
                        println!("{}: already there, left as it is", path.display());
                    }
                }
                KeysCommand::Rotate { dir, region } => {
                    let id = sealing::keys::rotate(&dir, &region)?;
                    println!(
                        "{}: {id} added to {region}.keys and public.keys; older keys kept",
                        dir.display()
                    );
                }
            }
            Ok(())
        }
        Command::Certs { command } => {
            match command {
                CertsCommand::Init {
                    out,
                    regions,
                    edges,
                } => {
                    use replication::certs::{Role, all_as};
                    let nodes = [all_as(Role::Core, &regions), all_as(Role::Edge, &edges)].concat();
                    replication::certs::init(&out, &nodes)?;
                    // Every region's first personal data key where nodes look for it by
                    // default (`[personal_data] keys_dir`): beside the certificates.
                    sealing::init(&out.join("keys"), &regions)?;
                    let named: Vec<String> = nodes
                        .iter()
                        .map(|(n, role)| format!("{n} ({role})"))
                        .collect();
                    println!(
                        "{}: ca.pem, ca.key (keep it safe), certificates for {}, and keys/ with each region's personal data key (<region>.keys to that region's cores only) and public.keys (every node)",
                        out.display(),
                        named.join(", ")
                    );
                }
                CertsCommand::Add { dir, node, role } => {
                    let role: replication::certs::Role = role.parse()?;
                    replication::certs::issue_node(&dir, &node, role)?;
                    println!("{}: {node}.pem and {node}.key, a {role}", dir.display());
                }
                CertsCommand::Secret { dir } => {
                    let path = dir.join(replication::certs::SECRET_FILE);
                    if replication::certs::make_secret(&path)? {
                        println!("{}: made; copy it to every node", path.display());
                    } else {
                        println!("{}: already there, kept", path.display());
                    }
                }
                CertsCommand::Server { dir, name, names } => {
                    let (cert, key) = replication::certs::issue_server(&dir, &name, &names)?;
                    println!(
                        "{} and {}, for {}",
                        cert.display(),
                        key.display(),
                        names.join(", ")
                    );
                }
                CertsCommand::Revoke { dir, node, cert } => {
                    let entry = match (node, cert) {
                        (Some(node), _) => node,
                        (None, Some(path)) => replication::revoked::entry_of_cert(&path)?,
                        (None, None) => anyhow::bail!("--node or --cert"),
                    };
                    replication::revoked::revoke(&dir, &entry)?;
                    println!("revoked {entry} in {}", dir.join("revoked.txt").display());
                }
            }
            Ok(())
        }
        Command::Token { command } => {
            match command {
                TokenCommand::New => {
                    let (token, digest) = http_api::bearer::new_token();
                    println!("token:  {token}");
                    println!("sha256: {digest}");
                    println!("(put the sha256 line in admin.token_sha256; keep the token secret)");
                }
                TokenCommand::Hash => {
                    let mut token = String::new();
                    std::io::stdin()
                        .read_line(&mut token)
                        .context("reading the token from standard input")?;
                    println!("{}", http_api::bearer::sha256_hex(token.trim()));
                }
                TokenCommand::Create {
                    id,
                    scopes,
                    expires_in_days,
                } => {
                    let (token, sha256) = http_api::bearer::new_token();
                    let entry = http_api::bearer::ScopedToken {
                        id,
                        sha256,
                        scopes,
                        expires_at_ms: expires_in_days
                            .map(|d| util::clock::now_ms() + i64::from(d) * 86_400_000),
                    };
                    // Checked as a core checks it, before anyone pastes it.
                    http_api::bearer::TokenSet::new(&[], std::slice::from_ref(&entry))?;
                    #[derive(serde::Serialize)]
                    struct Entry {
                        tokens: [http_api::bearer::ScopedToken; 1],
                    }
                    let toml = util::config::to_toml(&Entry { tokens: [entry] })?;
                    println!("token: {token}");
                    println!("(keep the token secret; put this in every core's [admin] section)");
                    println!();
                    print!("{}", toml.replace("[[tokens]]", "[[admin.tokens]]"));
                }
                TokenCommand::Shopper {
                    dir,
                    customer,
                    group,
                    ttl_s,
                    issuer,
                    audience,
                } => {
                    use http_api::identity::issuer;
                    commerce::CustomerId::new(customer.as_str()).context("--customer")?;
                    if let Some(g) = &group {
                        commerce::CustomerGroup::new(g.as_str()).context("--group")?;
                    }
                    std::fs::create_dir_all(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    issuer::init(&dir)?;
                    let now = u64::try_from(util::clock::now_ms() / 1_000).unwrap_or(0);
                    let token = issuer::Issuer::load(&dir, &issuer, &audience)?.sign(
                        &customer,
                        group.as_deref(),
                        now,
                        ttl_s,
                    )?;
                    println!("{token}");
                }
                TokenCommand::RotateShopperKey { dir } => {
                    let kid = http_api::identity::issuer::rotate(&dir)?;
                    println!(
                        "signing with key {kid}; every storefront trusting the JWKS takes it within seconds"
                    );
                }
            }
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// GET `path` of the admin API at `admin` with `token`, within `timeout_s`: the URL and the
/// answer, or why there is none (a refusal with its problem document).
async fn admin_get(
    admin: &str,
    ca: Option<&std::path::Path>,
    token: &str,
    path: &str,
    timeout_s: u64,
) -> anyhow::Result<(String, reqwest::Response)> {
    let http = http_api::client::builder(ca)?
        .timeout(std::time::Duration::from_secs(timeout_s))
        .build()?;
    let url = format!("{}{path}", admin.trim_end_matches('/'));
    let res = http
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    if !res.status().is_success() {
        anyhow::bail!(
            "{url} answered {}: {}",
            res.status(),
            res.text().await.unwrap_or_default()
        );
    }
    Ok((url, res))
}

/// `tradewind backup`: the core's backup, read whole, checked (format and SHA-256) and only
/// then written, readable by this user alone (it holds every order, personal data sealed).
async fn backup(
    admin: &str,
    ca: Option<&std::path::Path>,
    token: &str,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let (_, res) = admin_get(admin, ca, token, "/admin/v1/backup", 600).await?;
    let bytes = res.bytes().await.context("reading the backup")?;
    let taken = replication::raft::backup::Backup::read(&bytes)?;
    util::files::replace(out, &bytes, true)
        .with_context(|| format!("writing {}", out.display()))?;
    let c = &taken.contents;
    println!(
        "{}: backup of {admin} as of entry {} ({} bytes, SHA-256 checked)",
        out.display(),
        c.last_applied.map_or(0, |l| l.index),
        bytes.len()
    );
    Ok(())
}

/// The current term and leader of the group whose member answers at `admin`, as the leader
/// itself says them (a member without a leader may be a candidate at a term no one granted),
/// once the group no longer counts member `id` (the region being restored was removed).
async fn group_leader(
    admin: &str,
    ca: Option<&std::path::Path>,
    token: &str,
    id: u64,
) -> anyhow::Result<(u64, u64)> {
    let (url, res) = admin_get(admin, ca, token, "/admin/v1/cluster", 10).await?;
    let view: serde_json::Value = res.json().await.context("reading the group's view")?;
    let members = view["members"]
        .as_array()
        .with_context(|| format!("{url} names no members"))?;
    if let Some(m) = members.iter().find(|m| m["id"].as_u64() == Some(id)) {
        anyhow::bail!(
            "member {id} ({}) is still in the group: remove it first (DELETE {}/admin/v1/cluster/members/{id}), then restore",
            m["region"].as_str().unwrap_or("?"),
            admin.trim_end_matches('/')
        );
    }
    let leader = view["leader"]
        .as_str()
        .filter(|l| view["answered_by"].as_str() == Some(*l));
    let Some(leader) = leader else {
        anyhow::bail!(
            "{url} was not answered by the group's leader (leader {}, answered by {}): ask again once the group has one",
            view["leader"],
            view["answered_by"]
        );
    };
    let leader_id = members
        .iter()
        .find(|m| m["region"].as_str() == Some(leader))
        .and_then(|m| m["id"].as_u64())
        .with_context(|| format!("{url}: the leader {leader} is not among the members"))?;
    let term = view["term"]
        .as_u64()
        .with_context(|| format!("{url} gives no term"))?;
    Ok((term, leader_id))
}
