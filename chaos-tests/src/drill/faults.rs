//! Faults injected into a running mesh, and their undoing: parts killed or stopped by pid (the
//! demo) or by the deployment's commands, links cut or slowed by the fault proxy (the demo) or
//! by the deployment's commands. Every fault records how to undo it before it is made; `heal`
//! undoes them (links healed, killed parts started again) and forgets each step only once it
//! is done, so it can be called
//! again after it was interrupted or failed: a drill calls it when the fault has lasted, and
//! again on any way out, Ctrl-C included, and says so if something could not be undone.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::checker::Event;
use crate::proxy::Shape;
use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;

use super::watch::{Down, all_up, client, get_json, mark_down};
use crate::mesh::{LinkControl, Mesh, MeshControl};

/// Longest a healed part may take to answer again.
const RESTART_DEADLINE: Duration = Duration::from_secs(60);
/// How often the demo is asked again to start its stopped parts.
const RESTART_EVERY: Duration = Duration::from_secs(2);

#[derive(Clone, PartialEq)]
enum Undo {
    /// Start the demo's stopped parts again; wait until these (a region's core by the region's
    /// name, an edge by its own) answer.
    Restart(String),
    /// Give a fault proxy's link its shape back.
    Shape(String, Shape),
    /// Heal the link from one region to another by the deployment's command.
    Heal(Link),
}

/// The link from one region to another (what the first one's parts send to the second's).
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub from: String,
    pub to: String,
}

pub struct Faults {
    mesh_path: PathBuf,
    mesh: Mesh,
    pub down: Down,
    undo: Mutex<Vec<Undo>>,
    /// Taken away by `close_history`: the history is complete once every sender is gone.
    history: Mutex<Option<mpsc::Sender<Event>>>,
}

/// Runs one of the deployment's commands off the drill's runtime threads (it may take a while:
/// `ssh`, a part that drains before it stops).
async fn command(template: &str, vars: &[(&str, &str)]) -> anyhow::Result<()> {
    let template = template.to_owned();
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        MeshControl::run(&template, &vars)
    })
    .await?
}

/// SIGKILLs part `name`: by the deployment's `control` command, or, in a demo, by its pid.
async fn kill(mesh: &Mesh, name: &str, pid: u32) -> anyhow::Result<()> {
    match &mesh.control {
        Some(control) => command(&control.kill, &[("part", name)]).await,
        None => signal(pid, Signal::SIGKILL),
    }
}

/// Whether `pid` runs this program (a reaped part's pid may be given to another process).
fn ours(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| c.split(|b| *b == 0).any(|arg| arg.ends_with(b"tradewind")))
}

/// Sends `s` to `pid` if it still runs this program: a pid from `mesh.json` may have ended and
/// been given to another process since.
fn signal(pid: u32, s: Signal) -> anyhow::Result<()> {
    if !ours(pid) {
        bail!("process {pid} is not a tradewind process (it has ended)");
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), s)?;
    Ok(())
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

    /// The time to stamp a fault with: taken before it is made, so that the time its command
    /// takes (`ssh` to a host, a part draining before it stops) counts against the mesh's
    /// detect and rto, never for it.
    pub fn begins() -> u64 {
        util::clock::now_ms().unsigned_abs()
    }

    /// Records the fault that began at `at_ms` (`begins`) in the history; returns `at_ms`.
    pub async fn mark(&self, at_ms: u64, what: String) -> u64 {
        super::say(&format!("fault: {what}"));
        self.record(Event::Fault { at_ms, what }).await;
        at_ms
    }

    /// The mesh as it is now (the demo rewrites it with new pids when it restarts parts).
    pub fn current(&self) -> anyhow::Result<Mesh> {
        Mesh::load(&self.mesh_path)
    }

    /// Stops region `region`'s core and edges as an upgrade does (SIGTERM: edges send their
    /// outboxes and give their grants back first), to be started again by the heal; returns
    /// once every one has stopped (a part still draining would be taken for one started again).
    pub async fn stop_region(&self, region: &str) -> anyhow::Result<()> {
        let mesh = self.current()?;
        let r = mesh.region(region)?;
        mark_down(&self.down, region);
        let parts = std::iter::once((region, r.core.pid))
            .chain(r.edges.iter().map(|e| (e.name.as_str(), e.pid)));
        let mut stopping = Vec::new();
        for (name, pid) in parts {
            self.push(Undo::Restart(name.to_owned()));
            match &mesh.control {
                // The command returns once the part has stopped.
                Some(control) => command(&control.stop, &[("part", name)]).await,
                None => signal(pid, Signal::SIGTERM).map(|()| stopping.push((name, pid))),
            }
            .with_context(|| format!("stopping {name}"))?;
        }
        let deadline = Instant::now() + RESTART_DEADLINE;
        for (name, pid) in stopping {
            while ours(pid) {
                if Instant::now() > deadline {
                    bail!("{name} did not stop within {RESTART_DEADLINE:?} of SIGTERM");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    /// SIGKILLs region `region`'s core, and its edges too when `edges`.
    pub async fn kill_region(&self, region: &str, edges: bool) -> anyhow::Result<()> {
        let mesh = self.current()?;
        let r = mesh.region(region)?;
        self.push(Undo::Restart(region.to_owned()));
        mark_down(&self.down, region);
        kill(&mesh, region, r.core.pid)
            .await
            .with_context(|| format!("killing {region}'s core"))?;
        if edges {
            for e in &r.edges {
                self.push(Undo::Restart(e.name.clone()));
                kill(&mesh, &e.name, e.pid)
                    .await
                    .with_context(|| format!("killing {}", e.name))?;
            }
        }
        Ok(())
    }

    /// SIGKILLs edge `name`.
    pub async fn kill_edge(&self, name: &str) -> anyhow::Result<()> {
        let mesh = self.current()?;
        let e = mesh
            .regions
            .iter()
            .flat_map(|r| &r.edges)
            .find(|e| e.name == name)
            .with_context(|| format!("no edge {name} in the mesh"))?;
        self.push(Undo::Restart(name.to_owned()));
        kill(&mesh, name, e.pid)
            .await
            .with_context(|| format!("killing {name}"))
    }

    fn proxy_api(&self) -> anyhow::Result<String> {
        self.mesh
            .proxy
            .as_ref()
            .map(|p| p.api.clone())
            .context("this mesh names neither link commands nor a fault proxy")
    }

    /// The deployment's link commands, when it has them (otherwise links are the proxy's).
    fn link_commands(&self) -> Option<&LinkControl> {
        self.mesh.control.as_ref().and_then(|c| c.links.as_ref())
    }

    /// Cuts `links`: nothing they carry arrives.
    pub async fn cut(&self, links: &[Link]) -> anyhow::Result<()> {
        match self.link_commands() {
            Some(c) => self.by_command(links, &c.cut, None).await,
            None => self.reshape(links, |s| Shape { cut: true, ..s }).await,
        }
    }

    /// Adds `one_way_ms` of delay to what `links` carry.
    pub async fn slow(&self, links: &[Link], one_way_ms: u64) -> anyhow::Result<()> {
        match self.link_commands() {
            Some(c) => self.by_command(links, &c.slow, Some(one_way_ms)).await,
            None => {
                self.reshape(links, |s| Shape {
                    latency_ms: s.latency_ms + one_way_ms,
                    ..s
                })
                .await
            }
        }
    }

    /// Runs the deployment's `template` for each link, once its heal is recorded.
    async fn by_command(
        &self,
        links: &[Link],
        template: &str,
        delay_ms: Option<u64>,
    ) -> anyhow::Result<()> {
        let delay = delay_ms.map(|d| d.to_string());
        for l in links {
            let heal = Undo::Heal(l.clone());
            if !self
                .undo
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&heal)
            {
                self.push(heal);
            }
            let mut vars = vec![("from", l.from.as_str()), ("to", l.to.as_str())];
            vars.extend(delay.as_deref().map(|d| ("delay_ms", d)));
            command(template, &vars)
                .await
                .with_context(|| format!("shaping the link {} -> {}", l.from, l.to))?;
        }
        Ok(())
    }

    /// Gives each of `links` through the fault proxy the shape `change` makes of its current one.
    async fn reshape(&self, links: &[Link], change: impl Fn(Shape) -> Shape) -> anyhow::Result<()> {
        let api = self.proxy_api()?;
        let mesh = self.current()?;
        let http = client(&mesh, Duration::from_secs(2));
        let token = mesh.admin_token.as_str();
        let all = get_json(&http, &format!("{api}/v1/links"), Some(token))
            .await
            .context("reading the fault proxy's links")?;
        for l in links {
            let name = self
                .mesh
                .proxy
                .iter()
                .flat_map(|p| &p.links)
                .find(|p| p.from == l.from && p.to == l.to)
                .map(|p| p.name.clone())
                .with_context(|| format!("the fault proxy has no link {} -> {}", l.from, l.to))?;
            let shape: Shape = all["links"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| serde_json::from_value(p["shape"].clone()).ok())
                .with_context(|| format!("the fault proxy has no link {name}"))?;
            self.push(Undo::Shape(name.clone(), shape));
            set_link(&http, token, &api, &name, &change(shape)).await?;
        }
        Ok(())
    }

    /// Cuts every link from and to `region`: its core and edges reach no other region, and no
    /// other region reaches them.
    pub async fn cut_off(&self, region: &str) -> anyhow::Result<()> {
        let links = self.links(|from, to| from == region || to == region);
        mark_down(&self.down, region);
        self.cut(&links).await
    }

    /// The links between regions that `pick(from, to)` chooses: every pair of regions when the
    /// deployment shapes links by command, the fault proxy's links otherwise.
    pub fn links(&self, pick: impl Fn(&str, &str) -> bool) -> Vec<Link> {
        let all: Vec<Link> = if self.link_commands().is_some() {
            let regions = &self.mesh.regions;
            regions
                .iter()
                .flat_map(|a| regions.iter().map(move |b| (a, b)))
                .filter(|(a, b)| a.name != b.name)
                .map(|(a, b)| Link {
                    from: a.name.clone(),
                    to: b.name.clone(),
                })
                .collect()
        } else {
            self.mesh
                .proxy
                .iter()
                .flat_map(|p| &p.links)
                .map(|l| Link {
                    from: l.from.clone(),
                    to: l.to.clone(),
                })
                .collect()
        };
        all.into_iter().filter(|l| pick(&l.from, &l.to)).collect()
    }

    /// Undoes every fault made so far: links first, then killed parts started again (waiting
    /// until they answer). Each step is forgotten once done, so a heal interrupted or failed
    /// part way leaves the rest for the next. Records the heal (its start) in the history when
    /// there was something to undo.
    pub async fn heal(&self) -> anyhow::Result<()> {
        let steps: Vec<Undo> = self.undo.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if steps.is_empty() {
            return Ok(());
        }
        // The fault window ends here; what follows is the mesh recovering.
        let at_ms = util::clock::now_ms().unsigned_abs();
        super::say("healing");
        self.record(Event::Heal { at_ms }).await;
        let mesh = self.current()?;
        let http = client(&mesh, Duration::from_secs(2));
        let mut failed = Vec::new();
        // Last made, first undone: a link changed twice ends with its first shape.
        for step in steps.iter().rev() {
            let healed = match step {
                Undo::Shape(name, shape) => match self.proxy_api() {
                    Ok(api) => set_link(&http, &mesh.admin_token, &api, name, shape).await,
                    Err(e) => Err(e),
                },
                Undo::Heal(l) => match self.link_commands() {
                    Some(c) => command(&c.heal, &[("from", &l.from), ("to", &l.to)])
                        .await
                        .with_context(|| format!("healing the link {} -> {}", l.from, l.to)),
                    None => Err(anyhow::anyhow!("the mesh's link commands are gone")),
                },
                Undo::Restart(_) => continue,
            };
            match healed {
                Ok(()) => self.forget(step),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        let restart: Vec<String> = steps
            .iter()
            .filter_map(|u| match u {
                Undo::Restart(part) => Some(part.clone()),
                Undo::Shape(..) | Undo::Heal(_) => None,
            })
            .collect();
        if !restart.is_empty() {
            match self.restart(&http, &restart).await {
                Ok(()) => steps
                    .iter()
                    .filter(|u| matches!(u, Undo::Restart(_)))
                    .for_each(|u| self.forget(u)),
                Err(e) => failed.push(format!("{e:#}")),
            }
        }
        if !failed.is_empty() {
            bail!("could not undo every fault: {}", failed.join("; "));
        }
        all_up(&self.down);
        super::say("healed");
        Ok(())
    }

    fn forget(&self, step: &Undo) {
        let mut undo = self.undo.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = undo.iter().position(|u| u == step) {
            undo.remove(i);
        }
    }

    /// Starts `parts` again and waits until they answer: a deployment's by its `control`
    /// commands, once each; a demo's by asking it to start its stopped parts, again and again,
    /// since one killed a moment ago may not be seen stopped yet.
    async fn restart(&self, http: &reqwest::Client, parts: &[String]) -> anyhow::Result<()> {
        if let Some(control) = &self.mesh.control {
            for p in parts {
                command(&control.start, &[("part", p)])
                    .await
                    .with_context(|| format!("starting {p} again"))?;
            }
        }
        let deadline = Instant::now() + RESTART_DEADLINE;
        let mut asked = Instant::now() - RESTART_EVERY;
        while !self.answering(http, parts).await {
            if Instant::now() > deadline {
                bail!(
                    "{} did not come back within {RESTART_DEADLINE:?}",
                    parts.join(", ")
                );
            }
            if self.mesh.control.is_none() && asked.elapsed() >= RESTART_EVERY {
                signal(self.mesh.pid, Signal::SIGUSR1)
                    .context("asking the demo to start its stopped parts (is it still running?)")?;
                asked = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Whether every named part (a region's core by the region's name, an edge by its own)
    /// answers HTTP at all (a restarted edge says 503 until it has its catalog: it is up).
    async fn answering(&self, http: &reqwest::Client, parts: &[String]) -> bool {
        let Ok(mesh) = self.current() else {
            return false;
        };
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
    token: &str,
    api: &str,
    name: &str,
    shape: &Shape,
) -> anyhow::Result<()> {
    let res = http
        .put(format!("{api}/v1/links/{name}"))
        .bearer_auth(token)
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
