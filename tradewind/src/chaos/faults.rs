//! Faults injected into a running demo, and their undoing. Every fault records how to undo it
//! before it is made; `heal` undoes all of them (links get their shapes back, killed parts are
//! started again through the demo), and is safe to call twice: a drill calls it when the fault
//! has lasted, and again on any way out, Ctrl-C included, so that it never leaves a process
//! killed or a link cut.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chaos_tests::checker::Event;
use chaos_tests::proxy::Shape;
use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use super::now_ms;
use super::watch::{Down, all_up, client, get_json, mark_down};
use crate::mesh::Mesh;

/// Longest a healed part may take to answer again.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);
/// How often the demo is asked again to start its stopped parts.
const RESTART_EVERY: Duration = Duration::from_secs(2);

enum Undo {
    /// Start the demo's stopped parts again; wait until these (a region's core by the region's
    /// name, an edge by its own) answer.
    Restart(String),
    /// Give a link its shape back.
    Link(String, Shape),
}

pub struct Faults {
    mesh_path: PathBuf,
    mesh: Mesh,
    pub down: Down,
    undo: Mutex<Vec<Undo>>,
    /// Taken away by `close_history`: the history is complete once every sender is gone.
    history: Mutex<Option<mpsc::Sender<Event>>>,
}

fn signal(pid: u32, s: Signal) -> nix::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s)
}

impl Faults {
    pub fn new(mesh_path: PathBuf, mesh: Mesh, down: Down, history: mpsc::Sender<Event>) -> Self {
        Faults {
            mesh_path,
            mesh,
            down,
            undo: Mutex::new(Vec::new()),
            history: Mutex::new(Some(history)),
        }
    }

    /// Faults and heals from now on are not recorded (the drill is over).
    pub fn close_history(&self) {
        self.history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }

    async fn record(&self, e: Event) {
        let tx = self
            .history
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(tx) = tx {
            let _ = tx.send(e).await;
        }
    }

    fn push(&self, u: Undo) {
        self.undo.lock().unwrap_or_else(|p| p.into_inner()).push(u);
    }

    /// Records the fault in the history; returns its time.
    pub async fn mark(&self, what: String) -> u64 {
        let at_ms = now_ms();
        super::say(&format!("fault: {what}"));
        self.record(Event::Fault { at_ms, what }).await;
        at_ms
    }

    /// The mesh as it is now (the demo rewrites it with new pids when it restarts parts).
    pub fn current(&self) -> Mesh {
        Mesh::load(&self.mesh_path).unwrap_or_else(|_| self.mesh.clone())
    }

    /// SIGKILLs region `region`'s core, and its edges too when `edges`.
    pub fn kill_region(&self, region: &str, edges: bool) -> anyhow::Result<()> {
        let mesh = self.current();
        let r = mesh
            .regions
            .iter()
            .find(|r| r.name == region)
            .with_context(|| format!("no region {region} in the mesh"))?;
        self.push(Undo::Restart(region.to_owned()));
        mark_down(&self.down, region);
        signal(r.core.pid, Signal::SIGKILL).with_context(|| format!("killing {region}'s core"))?;
        if edges {
            for e in &r.edges {
                self.push(Undo::Restart(e.name.clone()));
                signal(e.pid, Signal::SIGKILL).with_context(|| format!("killing {}", e.name))?;
            }
        }
        Ok(())
    }

    /// SIGKILLs edge `name`.
    pub fn kill_edge(&self, name: &str) -> anyhow::Result<()> {
        let mesh = self.current();
        let e = mesh
            .regions
            .iter()
            .flat_map(|r| &r.edges)
            .find(|e| e.name == name)
            .with_context(|| format!("no edge {name} in the mesh"))?;
        self.push(Undo::Restart(name.to_owned()));
        signal(e.pid, Signal::SIGKILL).with_context(|| format!("killing {name}"))
    }

    fn proxy_api(&self) -> anyhow::Result<String> {
        self.mesh
            .proxy
            .as_ref()
            .map(|p| p.api.clone())
            .context("this mesh has no fault proxy (a demo from an older version?)")
    }

    /// Gives each named link of the fault proxy the shape `change` makes of its current one.
    pub async fn reshape(
        &self,
        links: &[String],
        change: impl Fn(Shape) -> Shape,
    ) -> anyhow::Result<()> {
        let api = self.proxy_api()?;
        let http = client(Duration::from_secs(2));
        let all = get_json(&http, &format!("{api}/v1/links"), None)
            .await
            .context("reading the fault proxy's links")?;
        for name in links {
            let shape: Shape = all["links"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["name"] == name.as_str())
                .and_then(|l| serde_json::from_value(l["shape"].clone()).ok())
                .with_context(|| format!("the fault proxy has no link {name}"))?;
            self.push(Undo::Link(name.clone(), shape));
            set_link(&http, &api, name, &change(shape)).await?;
        }
        Ok(())
    }

    /// Cuts every link from and to `region`: its core and edges reach no other region, and no
    /// other region reaches them.
    pub async fn cut_off(&self, region: &str) -> anyhow::Result<()> {
        let links = self.links(|from, to| from == region || to == region);
        mark_down(&self.down, region);
        self.reshape(&links, |s| Shape { cut: true, ..s }).await
    }

    /// The names of the proxy's links between regions that `pick(from, to)` chooses.
    pub fn links(&self, pick: impl Fn(&str, &str) -> bool) -> Vec<String> {
        self.mesh
            .proxy
            .iter()
            .flat_map(|p| &p.links)
            .filter(|l| pick(&l.from, &l.to))
            .map(|l| l.name.clone())
            .collect()
    }

    /// Undoes every fault made so far: links first, then killed parts started again; waits
    /// until they answer. Records the heal (its start) in the history when there was something
    /// to undo.
    pub async fn heal(&self) -> anyhow::Result<()> {
        let undo: Vec<Undo> =
            std::mem::take(&mut *self.undo.lock().unwrap_or_else(|p| p.into_inner()));
        if undo.is_empty() {
            return Ok(());
        }
        // The fault window ends here; what follows is the mesh recovering.
        let at_ms = now_ms();
        super::say("healing");
        self.record(Event::Heal { at_ms }).await;
        let http = client(Duration::from_secs(2));
        let mut result = Ok(());
        let mut restart = Vec::new();
        // Last made, first undone: a link changed twice ends with its first shape.
        for u in undo.into_iter().rev() {
            match u {
                Undo::Link(name, shape) => {
                    let api = self.proxy_api()?;
                    if let Err(e) = set_link(&http, &api, &name, &shape).await {
                        result = Err(e);
                    }
                }
                Undo::Restart(part) => restart.push(part),
            }
        }
        if !restart.is_empty() {
            // The demo starts again the parts it has seen stop; one killed a moment ago may not
            // be seen yet, so the request is repeated until they answer.
            let deadline = Instant::now() + RESTART_DEADLINE;
            let mut asked = Instant::now() - RESTART_EVERY;
            while !self.answering(&http, &restart).await {
                if Instant::now() > deadline {
                    bail!(
                        "{} did not come back within {RESTART_DEADLINE:?}",
                        restart.join(", ")
                    );
                }
                if asked.elapsed() >= RESTART_EVERY {
                    signal(self.mesh.pid, Signal::SIGUSR1).context(
                        "asking the demo to start its stopped parts (is it still running?)",
                    )?;
                    asked = Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        all_up(&self.down);
        super::say("healed");
        result
    }

    /// Whether every named part (a region's core by the region's name, an edge by its own)
    /// answers its health check.
    async fn answering(&self, http: &reqwest::Client, parts: &[String]) -> bool {
        let mesh = self.current();
        for p in parts {
            let url = mesh
                .regions
                .iter()
                .find(|r| &r.name == p)
                .map(|r| r.core.admin_url.clone())
                .or_else(|| {
                    mesh.regions
                        .iter()
                        .flat_map(|r| &r.edges)
                        .find(|e| &e.name == p)
                        .map(|e| e.url.clone())
                });
            let Some(url) = url else { return false };
            if http.get(format!("{url}/healthz")).send().await.is_err() {
                return false;
            }
        }
        true
    }
}

async fn set_link(
    http: &reqwest::Client,
    api: &str,
    name: &str,
    shape: &Shape,
) -> anyhow::Result<()> {
    let res = http
        .put(format!("{api}/v1/links/{name}"))
        .json(shape)
        .send()
        .await
        .with_context(|| format!("reaching the fault proxy to shape {name}"))?;
    if !res.status().is_success() {
        bail!(
            "the fault proxy refused the shape of {name}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    Ok(())
}
