//! Runs one core region: opens the store, loads the state machine, starts the log driver and
//! serves the admin API until the shutdown future resolves, then drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::RwLock;

use crate::api::auth::TokenSet;
use crate::api::{self, AppState};
use crate::config::{CoreConfig, StoreConfig};
use crate::machine::{MachineError, StateMachine};
use crate::sequencer::Sequencer;
use crate::store::{Store, StoreError};

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
    #[error("{0}")]
    Other(String),
}

/// A started core: where it listens and what version it loaded.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub admin: SocketAddr,
    pub version: u64,
}

/// Keeps the backend's process-wide resources (the FDB network thread) alive while serving.
enum Backend {
    Redb,
    #[cfg(feature = "foundationdb")]
    Fdb(
        #[expect(dead_code, reason = "held for its Drop, which stops the FDB network")]
        crate::store::fdb::FdbNetwork,
    ),
}

fn open_store(config: &StoreConfig) -> Result<(Arc<dyn Store>, Backend), StartError> {
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
    let version = machine.applied();
    tracing::info!(
        region = %config.region,
        version,
        products = machine.state().product_count(),
        skus = machine.state().sku_count(),
        "state loaded"
    );
    let machine = Arc::new(RwLock::new(machine));
    let sequencer = Sequencer::start(Arc::clone(&machine), config.sequencer);
    let tokens = TokenSet::from_hex(&config.admin.token_sha256)
        .map_err(|e| StartError::Other(e.to_string()))?;
    let state = AppState {
        region: config.region.clone(),
        machine,
        store,
        sequencer,
        tokens: Arc::new(tokens),
        grant_policy: config.grant_policy,
        write_timeout: Duration::from_millis(config.admin.write_timeout_ms),
        started_at_ms: api::now_ms(),
    };
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
    tracing::info!(%admin, "admin API listening");
    on_ready(Started { admin, version });
    let app = api::router(
        state,
        config.admin.body_max_bytes,
        Duration::from_millis(config.admin.request_timeout_ms),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| StartError::Other(e.to_string()))?;
    tracing::info!("admin API stopped; core shut down cleanly");
    Ok(())
}
