//! `mesh.json` (DESIGN §3): what a running demo is made of, where each part listens and which
//! process it is. `demo` writes it once every part is ready; `status` (and the drills) read it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Mesh {
    /// The admin token; a deployment's description names the file it is kept in instead
    /// (`admin_token_file`), which `load` reads into it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub admin_token: String,
    /// Where the admin token is kept (a deployment's description holds no secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    /// The deployment's CA (PEM): what the parts' HTTPS certificates are signed by, for
    /// clients to trust (`curl --cacert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The directory of the identity provider the edges trust (its signing key): where the
    /// drills and tools get shopper tokens from (`tradewind token shopper --dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<PathBuf>,
    pub regions: Vec<MeshRegion>,
    /// How inter-region links behave: `none` (no delay of their own) or `realistic` (the real
    /// regions' round trips); empty for a deployment, whose links are what they are.
    #[serde(default)]
    pub wan: String,
    /// The fault proxy every inter-region link goes through (drills cut and slow links with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<MeshProxy>,
    /// The geo-router: authoritative DNS for the shop zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router: Option<MeshRouter>,
    /// The origin of the catalog's images, behind every region's cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<MeshAssets>,
    /// The demo's own process (0: a deployment, which no one process runs).
    #[serde(default)]
    pub pid: u32,
    /// How the drills kill and start a deployment's parts, which no demo supervises.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<MeshControl>,
}

/// Commands that kill, stop and start one part of a deployment (a region's core by the region's name,
/// an edge by its own), each run with `sh -c` once `{part}` is replaced by the part's name:
/// `ssh` and `systemctl` for hosts, a script for parts on this machine. `start` returns once
/// the part runs; the drill then waits until it answers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshControl {
    /// SIGKILL, as a crash.
    pub kill: String,
    /// SIGTERM, as an upgrade stops a part: returns once it has stopped.
    pub stop: String,
    pub start: String,
    /// How the drills cut, slow and heal links between regions; without it they use the fault
    /// proxy (`proxy`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<LinkControl>,
}

/// Commands that shape the link from region `{from}` to region `{to}` (what `{from}`'s parts
/// send to `{to}`'s): `nft` and `tc` through `ssh` on hosts, the fault proxy's API on this
/// machine. A drill that cuts a region off cuts both directions.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkControl {
    /// Drops everything the link carries.
    pub cut: String,
    /// Adds `{delay_ms}` of one-way delay to what the link carries.
    pub slow: String,
    /// Gives the link back as it was before any drill: not cut, no delay added.
    pub heal: String,
}

impl MeshControl {
    /// Runs `template` once each `{name}` of `vars` is replaced by its value, which must be one
    /// a shell takes as it is (a part's or region's name, a number).
    pub fn run(template: &str, vars: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut command = template.to_owned();
        for (name, value) in vars {
            if value.starts_with('-')
                || value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                anyhow::bail!("{value:?} is not a {name} a command can be given");
            }
            command = command.replace(&format!("{{{name}}}"), value);
        }
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .output()
            .with_context(|| format!("running {command}"))?;
        if !out.status.success() {
            anyhow::bail!(
                "{command} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshRouter {
    /// DNS, UDP and TCP (`127.0.0.1:7053`).
    pub dns: String,
    /// Its HTTP API: `/v1/route?ip=`, `/v1/health`, `/metrics`.
    pub http: String,
    pub zone: String,
    #[serde(default)]
    pub pid: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshRegion {
    pub name: String,
    pub core: MeshCore,
    pub edges: Vec<MeshEdge>,
    /// The region's CDN cache, in front of its edge and the asset origin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cdn: Option<MeshCdn>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshCdn {
    /// Where shoppers' requests go (`https://127.0.1.1:7121`).
    pub url: String,
    /// Its admin API: `POST /admin/v1/purge`, `/metrics`, `/healthz`.
    pub admin_url: String,
    #[serde(default)]
    pub pid: u32,
}

/// The sample asset origin: the catalog's product images.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshAssets {
    pub url: String,
    #[serde(default)]
    pub pid: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshProxy {
    /// Its control API: `GET /v1/links`, `PUT /v1/links/{name}`.
    pub api: String,
    #[serde(default)]
    pub pid: u32,
    pub links: Vec<MeshLink>,
}

/// The link from one region to another: `from`'s core and edges reach `to`'s core through it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshLink {
    pub name: String,
    pub from: String,
    pub to: String,
    pub listen: String,
    pub target: String,
    pub rtt_ms: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshCore {
    pub admin_url: String,
    pub quic: String,
    #[serde(default)]
    pub pid: u32,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MeshEdge {
    pub name: String,
    pub url: String,
    #[serde(default)]
    pub pid: u32,
}

/// Refuses `path` unless this user owns it and no one else has the `mode` bits of it (0o022:
/// may write it; 0o077: may read or write it).
fn private_to_owner(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me || meta.mode() & mode != 0 {
        anyhow::bail!(
            "{} must be owned by this user (uid {me}) and closed to others (mode {:o} has {:o})",
            path.display(),
            meta.mode() & 0o777,
            meta.mode() & mode
        );
    }
    Ok(())
}

impl Mesh {
    /// A client of the mesh's APIs: it trusts the mesh's CA, and gives up after `timeout`.
    pub fn client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        Ok(http_api::client::builder(self.ca.as_deref())?
            .timeout(timeout)
            .build()?)
    }

    /// The identity provider the edges trust, to sign shopper tokens with.
    pub fn shoppers(&self) -> anyhow::Result<http_api::identity::issuer::Issuer> {
        let dir = self
            .identity
            .as_deref()
            .context("this mesh.json names no identity provider (made by an older demo?)")?;
        Ok(http_api::identity::issuer::Issuer::demo(dir)?)
    }

    /// Region `name`, or an error that lists the mesh's regions.
    pub fn region(&self, name: &str) -> anyhow::Result<&MeshRegion> {
        self.regions
            .iter()
            .find(|r| r.name == name)
            .with_context(|| {
                let names: Vec<&str> = self.regions.iter().map(|r| r.name.as_str()).collect();
                format!("no region {name}; the mesh has {}", names.join(", "))
            })
    }

    pub fn load(path: &Path) -> anyhow::Result<Mesh> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {} (is the demo running?)", path.display()))?;
        let mut mesh: Mesh = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a mesh.json", path.display()))?;
        // Its commands are run as they are: only from a file no one else may change.
        if mesh.control.is_some() {
            private_to_owner(path, 0o022)
                .with_context(|| format!("{} names commands to run", path.display()))?;
        }
        if mesh.admin_token.is_empty() {
            let file = mesh.admin_token_file.as_deref().with_context(|| {
                format!("{} names no admin token, nor its file", path.display())
            })?;
            let file = path.parent().unwrap_or(Path::new(".")).join(file);
            private_to_owner(&file, 0o077).context("the admin token's file")?;
            mesh.admin_token = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the admin token from {}", file.display()))?
                .trim()
                .to_owned();
        }
        Ok(mesh)
    }

    /// Written whole or not at all (readers never see half a file), readable by its owner
    /// alone: it holds the admin token.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        write_private(path, &serde_json::to_string_pretty(self)?)
    }
}

/// Writes a file whole, that only its owner may read (the mesh description and the admin
/// token hold a secret).
pub fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    util::files::replace(path, text.as_bytes(), true)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::MeshControl;

    #[test]
    fn a_command_gets_its_names_and_nothing_a_shell_would_read_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let template = format!("echo {{from}} {{to}} {{delay_ms}} > '{}'", out.display());
        let vars = [
            ("from", "cn-shanghai"),
            ("to", "us-east"),
            ("delay_ms", "150"),
        ];
        MeshControl::run(&template, &vars).unwrap();
        let said = std::fs::read_to_string(&out).unwrap();
        assert_eq!(said, "cn-shanghai us-east 150\n");

        for bad in ["", "-rf", "a;b", "US-East", "a b", "$(id)", "a/b"] {
            let e = MeshControl::run("true {part}", &[("part", bad)]).unwrap_err();
            assert!(e.to_string().contains("is not a part"), "{bad:?}: {e}");
        }
        let e = MeshControl::run("echo no >&2; exit 3", &[]).unwrap_err();
        assert!(format!("{e:#}").contains("exit status: 3): no"), "{e:#}");
    }
}
