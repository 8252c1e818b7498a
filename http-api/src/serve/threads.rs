//! A listener served from several threads, each with a runtime of its own (a current-thread
//! tokio runtime) accepting on a clone of the same socket: connections stay on the thread that
//! took them, with no work stealing between threads, which serves more requests a second on
//! few cores than one multi-threaded runtime (BENCHMARKS.md, the edge's reads).

use std::sync::Arc;

use axum::Router;
use tokio::sync::watch;

use super::Front;

/// Threads serving one listener, at most (one per core up to this).
pub const THREADS_MAX: usize = 8;

/// The threads serving a listener; `stop` ends them (letting open connections finish), and
/// `join` waits for them.
pub struct Threads {
    handles: Vec<std::thread::JoinHandle<std::io::Result<()>>>,
    serving: watch::Sender<bool>,
}

impl Threads {
    /// Serves `app` on `listener` (blocking or not) from one thread per core, up to
    /// `THREADS_MAX`, named `<name>-<i>`.
    pub fn start(
        front: &Arc<Front>,
        listener: std::net::TcpListener,
        app: Router,
        name: &str,
    ) -> std::io::Result<Threads> {
        listener.set_nonblocking(true)?;
        let count = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(THREADS_MAX);
        let (serving, on) = watch::channel(true);
        let mut handles = Vec::with_capacity(count);
        for i in 0..count {
            let listener = listener.try_clone()?;
            let (app, front, mut on) = (app.clone(), Arc::clone(front), on.clone());
            let handle = std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || -> std::io::Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        front
                            .serve(listener, app, async move {
                                let _ = on.wait_for(|on| !on).await;
                            })
                            .await;
                        Ok(())
                    })
                })?;
            handles.push(handle);
        }
        Ok(Threads { handles, serving })
    }

    /// How many threads serve.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// Stops accepting, lets open connections finish, and waits for every thread (off the
    /// async runtime).
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.serving.send(false);
        let handles = self.handles;
        tokio::task::spawn_blocking(move || {
            handles
                .into_iter()
                .map(|t| {
                    t.join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("panicked")))
                })
                .collect::<Result<Vec<()>, _>>()
                .map(|_| ())
        })
        .await
        .map_err(std::io::Error::other)?
    }
}
