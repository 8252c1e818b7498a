//! Runs one core region: opens the store, loads the state machine, joins the region group
//! (Raft, and the change feed on the same QUIC endpoint) and serves the admin API until the
//! shutdown future resolves, then drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::RwLock;

use replication::feed::Feed;
use replication::raft::RaftNode;
use replication::tls::NodeTls;
use replication::transport::Transport;
use replication::wire::Wire;

use crate::api::{self, AppState};
use crate::config::{CoreConfig, StoreConfig};
use crate::feed::StoreSnapshots;
use crate::machine::{MachineError, StateMachine};
use crate::replicated::CoreApp;
use crate::store::{Store, StoreError};
use crate::writes::Writes;
use http_api::bearer::TokenSet;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("state: {0}")]
    Machine(#[from] MachineError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("config: {0}")]
    Config(#[from] util::config::Invalid),
    #[error("admin listener: {0}")]
    Listener(#[from] http_api::serve::ServeError),
    #[error("{0}")]
    Other(String),
}

/// A started core: where it listens and what version it loaded.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub admin: SocketAddr,
    /// Where it takes Raft traffic, when it is part of a group of several regions.
    pub raft: Option<SocketAddr>,
    pub version: u64,
}

/// Keeps the backend's process-wide resources (the FDB network thread) alive while serving.
pub(crate) enum Backend {
    Redb,
    #[cfg(feature = "foundationdb")]
    Fdb(
        #[expect(dead_code, reason = "held for its Drop, which stops the FDB network")]
        crate::store::fdb::FdbNetwork,
    ),
}

pub(crate) fn open_store(config: &StoreConfig) -> Result<(Arc<dyn Store>, Backend), StartError> {
    match config {
        StoreConfig::Redb { path } => {
            let store = crate::store::redb::RedbStore::open(path).map_err(|e| match e {
                StoreError::Io(m) if m.contains("lock") || m.contains("in use") => StoreError::Io(
                    format!("{m} (is another core running on {}?)", path.display()),
                ),
                e => e,
            })?;
            Ok((Arc::new(store), Backend::Redb))
        }
        #[cfg(feature = "foundationdb")]
        StoreConfig::Foundationdb {
            cluster_file,
            key_prefix,
        } => {
            let network = crate::store::fdb::FdbNetwork::start();
            let store = crate::store::fdb::FdbStore::open(
                &network,
                &cluster_file.to_string_lossy(),
                key_prefix.as_bytes(),
            )?;
            Ok((Arc::new(store), Backend::Fdb(network)))
        }
        #[cfg(not(feature = "foundationdb"))]
        StoreConfig::Foundationdb { .. } => Err(StartError::Other(
            "this build has no FoundationDB backend; rebuild with --features foundationdb".into(),
        )),
    }
}

/// Binds the QUIC endpoint of a region that has a `[raft]` section.
fn bind_transport(config: &CoreConfig) -> Result<Option<Arc<Transport>>, StartError> {
    let Some(r) = &config.raft else {
        return Ok(None);
    };
    let tls = NodeTls::load(&r.certs_dir, &config.region)
        .map_err(|e| StartError::Other(format!("raft certificates: {e}")))?;
    let t = Transport::bind(r.listen, &tls)
        .map_err(|e| StartError::Other(e.to_string()))?
        .with_routes(r.routes.clone().into_iter().collect())
        .requiring_roles(r.require_roles);
    Ok(Some(Arc::new(t)))
}

/// The deployment's secret, that order ids and address digests are derived under (made first
/// by a group of one, on its first start only: a store that holds data had a secret, and a new
/// one would give its keys other ids).
fn deployment_secret(config: &CoreConfig, applied: u64) -> Result<[u8; 32], StartError> {
    let (path, make) = config.secret_path()?;
    let fail =
        |e: replication::certs::CertError| StartError::Other(format!("deployment secret: {e}"));
    if make && !path.exists() && applied > 0 {
        return Err(StartError::Other(format!(
            "deployment secret: {} is missing while the store holds data; restore it (a new one would give every Idempotency-Key another order id)",
            path.display()
        )));
    }
    if make && replication::certs::make_secret(&path).map_err(fail)? {
        tracing::info!(path = %path.display(), "made this region's deployment secret");
    }
    replication::certs::read_secret(&path).map_err(fail)
}

/// The personal data keys of this region: its sealer, and its opener where it is a home
/// region. A group of one makes its own region's key on its first start.
fn personal_data(
    config: &CoreConfig,
    secret: &[u8; 32],
    applied: u64,
) -> Result<sealing::PersonalData, StartError> {
    let (dir, make) = config.keys_dir()?;
    let fail = |e: &dyn std::fmt::Display| StartError::Other(format!("personal data keys: {e}"));
    let file = dir.join(format!("{}.keys", config.region));
    if make && !file.exists() && applied > 0 {
        // A new key would leave every address sealed to the lost one unopenable for good.
        return Err(fail(&format!(
            "{} is missing while the store holds data: restore it; or, if this store was written by a build before sealing, make it with `tradewind keys init --dir {} --regions {}`",
            file.display(),
            dir.display(),
            config.region
        )));
    }
    if make && !file.exists() {
        let id = sealing::keys::init(&dir, std::slice::from_ref(&config.region))
            .map_err(|e| fail(&e))?;
        tracing::info!(keys = ?id, dir = %dir.display(), "made this region's personal data key");
    }
    let keeping = sealing::shred::path(&dir, &config.region);
    if make && !keeping.exists() {
        if applied > 0 {
            // New keeping keys would leave every address kept under the lost ones unopenable.
            return Err(fail(&format!(
                "{} is missing while the store holds data: restore it; or, if this store was written by a build before keeping keys, make it with `tradewind keys keeping --dir {} --region {}`",
                keeping.display(),
                dir.display(),
                config.region
            )));
        }
        let period = config
            .personal_data
            .key_period_ms
            .unwrap_or(sealing::shred::DEFAULT_PERIOD_MS);
        sealing::shred::ensure(
            &dir,
            &config.region,
            period,
            sealing::shred::backfill_ms(period),
        )
        .map_err(|e| fail(&e))?;
        tracing::info!(path = %keeping.display(), period_ms = period, "made this region's keeping keys");
    }
    sealing::PersonalData::opening(&config.personal_data, &config.region, &dir, secret)
        .map_err(|e| fail(&e))
}

/// Serves a core until `shutdown` resolves. `on_ready` is called once the admin API listens.
pub async fn serve(
    config: CoreConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Started),
) -> Result<(), StartError> {
    let store_config = config.store.clone();
    // `_backend` holds the backend's process-wide resources until this function returns.
    let (store, machine, _backend) = tokio::task::spawn_blocking(move || {
        let (store, backend) = open_store(&store_config)?;
        let machine = StateMachine::open(Arc::clone(&store))?;
        Ok::<_, StartError>((store, machine, backend))
    })
    .await
    .map_err(|e| StartError::Other(e.to_string()))??;
    let secret = deployment_secret(&config, machine.applied())?;
    let order_ids = Arc::new(commerce::order_id::OrderIdKey::of_deployment(&secret));
    let personal = Arc::new(personal_data(&config, &secret, machine.applied())?);
    personal.watch();
    let version = machine.applied();
    tracing::info!(
        region = %config.region,
        version,
        products = machine.state().product_count(),
        skus = machine.state().sku_count(),
        "state loaded"
    );
    // Edges follow the feed on the region's QUIC endpoint; a region without one has no feed.
    let transport = bind_transport(&config)?;
    let feed = transport.as_ref().map(|_| {
        Arc::new(Feed::new(
            version,
            config.feed,
            Arc::new(StoreSnapshots::new(Arc::clone(&store))),
        ))
    });
    let mut machine = machine;
    if let Some(feed) = &feed {
        machine.set_feed(Arc::clone(feed));
    }
    let machine = Arc::new(RwLock::new(machine));
    let raft_addr = match &transport {
        Some(t) => Some(
            t.local_addr()
                .map_err(|e| StartError::Other(e.to_string()))?,
        ),
        None => None,
    };
    let (id, members) = config.members();
    let log_path = config.raft_log_path()?;
    let timing = config.raft.as_ref().map(|r| r.timing).unwrap_or_default();
    let node = RaftNode::start(
        id,
        members,
        &log_path,
        Arc::new(CoreApp::new(Arc::clone(&machine))),
        transport.map(Wire::from),
        feed,
        timing,
    )
    .await
    .map_err(|e| StartError::Other(e.to_string()))?;
    let node = Arc::new(node);
    let writes = Writes::new(Arc::clone(&node), config.writes);
    node.accept_submissions(Arc::new(crate::edges::EdgeWrites {
        writes: writes.clone(),
        store: Arc::clone(&store),
        reads: Arc::new(tokio::sync::Semaphore::new(
            crate::edges::READS_INFLIGHT_MAX,
        )),
        region: config.region.clone(),
        policy: config.grant_policy,
        order_ids: Arc::clone(&order_ids),
        personal: Arc::clone(&personal),
        timeout: Duration::from_millis(config.admin.write_timeout_ms),
    }));
    if let Some(ms) = config.personal_data.retention_ms {
        crate::retention::spawn(
            writes.clone(),
            Arc::clone(&store),
            Duration::from_millis(ms),
            Duration::from_millis(config.admin.write_timeout_ms),
        );
    }
    crate::keeping::Keeper {
        writes: writes.clone(),
        store: Arc::clone(&store),
        machine: Arc::clone(&machine),
        personal: Arc::clone(&personal),
        retention: config.personal_data.retention_ms.map(Duration::from_millis),
        rotate: config
            .personal_data
            .intake_key_rotate_ms
            .map(Duration::from_millis),
        grace: Duration::from_millis(
            config
                .personal_data
                .intake_key_grace_ms
                .unwrap_or(sealing::personal::INTAKE_KEY_GRACE_MS),
        ),
        tree_nodes_max: config
            .personal_data
            .keeping_tree_nodes_max
            .unwrap_or(sealing::shred::TREE_NODES_MAX),
        timeout: Duration::from_millis(config.admin.write_timeout_ms),
    }
    .spawn(config.personal_data.keeping.unwrap_or(true));
    let tokens = TokenSet::new(&config.admin.token_sha256, &config.admin.tokens)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let state = AppState {
        region: config.region.clone(),
        machine,
        store,
        writes,
        tokens: Arc::new(tokens),
        grant_policy: config.grant_policy,
        order_ids,
        personal,
        write_timeout: Duration::from_millis(config.admin.write_timeout_ms),
        started_at_ms: util::clock::now_ms(),
    };
    let front = http_api::serve::Front::new(&config.admin.http)?;
    let listener = TcpListener::bind(config.admin.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.admin.listen,
            source,
        })?;
    let admin = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.admin.listen,
        source,
    })?;
    tracing::info!(%admin, ?raft_addr, tls = front.is_tls(), "admin API listening");
    on_ready(Started {
        admin,
        raft: raft_addr,
        version,
    });
    let app = api::router(
        state,
        config.admin.body_max_bytes,
        Duration::from_millis(config.admin.request_timeout_ms),
    );
    front.serve(listener, app, shutdown).await;
    tracing::info!("admin API stopped; stopping raft");
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await;
    }
    tracing::info!("core shut down cleanly");
    Ok(())
}
