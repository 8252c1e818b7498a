//! Start-up and shutdown of an edge: its mesh identity, the feed it follows, the outbox, the
//! forwarder and grant keeper, and the storefront API. On shutdown it stops taking orders (reads
//! go on), sends what its outbox holds, gives its grants back, then stops.
//!
//! The storefront is served as nginx serves: one thread per core, each with a runtime of its own
//! accepting from the same listening socket, so that a connection lives on one thread, with no
//! work stealing and no cross-thread wake-ups between its requests. The feed, the forwarder and
//! the grant keeper run on the caller's runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use replication::feed::Core;
use replication::tls::NodeTls;
use replication::transport::Transport;
use tokio::sync::{mpsc, watch};

use crate::api::{Edge, EdgeParts, router};
use crate::config::EdgeConfig;
use crate::cores::Cores;
use crate::forwarder::{self, ForwardStats};
use crate::grants::{self, DemandBook};
use crate::metrics::Metrics;
use crate::mirror::Catalog;
use crate::outbox::Outbox;

/// A feed that says nothing for this long is given up for the next core (heartbeats come
/// every 500 ms by default).
const FEED_SILENCE: Duration = Duration::from_secs(2);
/// On shutdown: how long the outbox may take to reach a core, and the grants to go back.
const DRAIN: Duration = Duration::from_secs(5);
const RETURN: Duration = Duration::from_secs(5);

/// Where a started edge listens.
pub struct Started {
    pub http: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

fn fail<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> StartError + '_ {
    move |e| StartError(format!("{what}: {e}"))
}

/// Serves an edge until `shutdown` resolves. `on_ready` is called once the API listens.
pub async fn serve(
    config: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_ready: impl FnOnce(Started),
) -> Result<(), StartError> {
    let tls = NodeTls::load(&config.certs_dir, &config.name).map_err(fail("certificates"))?;
    let secret =
        replication::certs::read_secret(&config.certs_dir.join(replication::certs::SECRET_FILE))
            .map_err(fail("deployment secret"))?;
    // The edge only calls out: any port on the storefront's address.
    let transport = Transport::bind(SocketAddr::new(config.listen.ip(), 0), &tls)
        .map_err(fail("QUIC endpoint"))?
        .requiring_roles(config.require_roles);
    let transport = Arc::new(transport);
    let cores: Vec<Core> = config
        .cores
        .iter()
        .map(|c| Core {
            name: c.name.clone(),
            addr: c.quic,
        })
        .collect();
    let path = config.outbox_path.clone();
    let queue = config.limits.intake_queue;
    let outbox = tokio::task::spawn_blocking(move || Outbox::open(&path, queue))
        .await
        .map_err(fail("outbox"))?
        .map_err(fail("outbox"))?;

    let catalog = Catalog::default();
    let follow = {
        let (transport, cores, mut mirror) =
            (Arc::clone(&transport), cores.clone(), catalog.clone());
        tokio::spawn(async move {
            replication::feed::follow_cores(&transport, &cores, &mut mirror, FEED_SILENCE).await;
        })
    };
    let link = Cores::new(Arc::clone(&transport), cores);
    let (stop_tx, stop_rx) = watch::channel(false);
    let forward = Arc::new(ForwardStats::default());
    let forwarding = tokio::spawn(forwarder::run(
        outbox.clone(),
        link.clone(),
        config.forward,
        Arc::clone(&forward),
        stop_rx,
    ));
    let demand = Arc::new(DemandBook::new(Duration::from_millis(
        config.grants.window_ms,
    )));
    let (refill, refills) = mpsc::channel(grants::QUEUE);
    let cache = crate::cache::ProductCache::new(
        config.cache.product_bytes,
        Duration::from_millis(config.cache.ttl_ms),
    );
    let purge_counters = crate::purge::PurgeCounters::default();
    let metrics = Arc::new(Metrics::new(&forward, cache.counters(), &purge_counters));
    let purging = crate::purge::Purger::new(&config.cdn, &config.certs_dir, purge_counters)
        .map_err(fail("cdn"))?
        .map(|p| tokio::spawn(p.run(catalog.clone())));
    let keeping = tokio::spawn(grants::run(
        outbox.clone(),
        link.clone(),
        catalog.clone(),
        Arc::clone(&metrics),
        Arc::clone(&demand),
        config.grants,
        refills,
    ));

    let identity =
        http_api::identity::Verifier::new(&config.shoppers).map_err(fail("shopper identity"))?;
    identity.watch();
    let personal = sealing::PersonalData::sealing(
        &config.personal_data,
        &config.region,
        &config.keys_dir(),
        &secret,
    )
    .map_err(fail("personal data keys"))?;
    let personal = Arc::new(personal);
    personal.watch();
    tracing::info!(keys = ?personal.sealer.keys(), "sealing personal data");
    let accepting = Arc::new(AtomicBool::new(true));
    let edge = Edge(Arc::new(EdgeParts {
        region: config.region.clone(),
        edge: config.edge_id(),
        order_ids: commerce::order_id::OrderIdKey::of_deployment(&secret),
        personal,
        catalog,
        outbox: outbox.clone(),
        cores: link.clone(),
        demand,
        refill,
        metrics: Arc::clone(&metrics),
        cache,
        stale_after: Duration::from_millis(config.stale_after_ms),
        pending_age_max: Duration::from_millis(config.forward.pending_age_max_ms),
        central_timeout: Duration::from_millis(config.limits.central_timeout_ms),
        central: tokio::sync::Semaphore::new(config.limits.central_inflight_max),
        accepting: Arc::clone(&accepting),
        identity,
        cdn_max_age_s: config.cdn.max_age_s,
    }));
    let app = router(edge, &config.limits);
    let front = http_api::serve::Front::new(&config.http).map_err(fail("storefront listener"))?;
    let listener = std::net::TcpListener::bind(config.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(fail(&format!("listen on {}", config.listen)))?;
    let http = listener.local_addr().map_err(fail("listen"))?;
    let servers = http_api::serve::Threads::start(&front, listener, app, "http")
        .map_err(fail("start the storefront's threads"))?;
    let threads = servers.count();
    on_ready(Started { http });
    let tls = front.is_tls();
    tracing::info!(edge = %config.name, %http, threads, tls, "storefront API listening");

    let wind_down = {
        let (outbox, link, metrics) = (outbox.clone(), link.clone(), Arc::clone(&metrics));
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new orders; sending the outbox, returning grants");
            accepting.store(false, Ordering::Release);
            let drained = tokio::time::timeout(DRAIN, async {
                while outbox.pending_count() > 0 || outbox.queued() > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            if drained.is_err() {
                tracing::warn!(
                    pending = outbox.pending_count(),
                    "outbox not drained in time; sent after the next start"
                );
            }
            grants::return_all(&outbox, &link, &metrics, RETURN).await;
        }
    };
    wind_down.await;
    servers.stop().await.map_err(fail("storefront API"))?;
    let _ = stop_tx.send(true);
    let _ = forwarding.await;
    keeping.abort();
    follow.abort();
    if let Some(p) = purging {
        p.abort();
    }
    tracing::info!("edge stopped");
    Ok(())
}
