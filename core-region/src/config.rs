//! The core's configuration: one TOML file, read by `util::config::load` (units in the names,
//! unknown keys refused, relative paths taken from the file's own directory), and written from
//! these same types by a tool that deploys a mesh (the demo). `tradewind core --config FILE
//! --check-config` loads it and stops.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use commerce::escrow::GrantPolicy;
use util::config::{Config, Invalid, resolve};

use crate::writes::WriteLimits;
use replication::feed::FeedLimits;
use replication::protocol::{Member, NodeId};
use replication::raft::{Members, Timing};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// This region's name, e.g. `cn-shanghai`.
    pub region: String,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    #[serde(default)]
    pub writes: WriteLimits,
    /// The region group. Without this section the region is a group of one: it replicates to
    /// no one and needs no certificates.
    #[serde(default)]
    pub raft: Option<RaftConfig>,
    /// How large the escrow grants this core makes are.
    #[serde(default)]
    pub grant_policy: GrantPolicy,
    /// The change feed edges follow, served on the `[raft]` endpoint: its history and queues.
    #[serde(default)]
    pub feed: FeedLimits,
    /// Where shoppers' personal data is kept (the residency policy), and where the key files
    /// are (`keys` beside the certificates; beside the raft log for a group of one, made on
    /// its first start): the addresses this region is home to are opened here, for their
    /// owners, and any address an admin write gives in the clear is sealed before it is
    /// proposed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub personal_data: sealing::ResidencySettings,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// This region's place in the group of core regions.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RaftConfig {
    /// This region's id in `members`.
    pub node_id: NodeId,
    /// Where this region takes Raft traffic (QUIC); port 0 picks one.
    pub listen: SocketAddr,
    /// The deployment's certificates (`tradewind certs init`): `ca.pem`, `<region>.pem` and
    /// `<region>.key`.
    pub certs_dir: PathBuf,
    /// The Raft log (a redb file). By default next to a redb store, as `raft-log.redb`.
    #[serde(default)]
    pub log_path: Option<PathBuf>,
    /// The regions the group is formed with, this region among them: 3 or 5 voters (1 works,
    /// alone), and learners (`voter = false`), which the first leader adds once.
    pub members: Vec<MemberConfig>,
    #[serde(default)]
    pub timing: Timing,
    /// Members reached at another address than the one they advertise: member name → address
    /// (a WAN proxy in between, a NAT). Only this region uses these.
    #[serde(default)]
    pub routes: BTreeMap<String, SocketAddr>,
    /// Refuse peers (members and edges) whose certificates name no role, as certificates made
    /// before roles do; set once every node's certificate has been reissued with one.
    #[serde(default)]
    pub require_roles: bool,
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    pub id: NodeId,
    /// The region's name, as in its certificate.
    pub name: String,
    pub raft_addr: String,
    pub admin_url: String,
    /// A learner (`false`) receives the log and never votes: a region far away that should not
    /// slow commits down, or one being prepared to vote.
    #[serde(default = "voter_default")]
    pub voter: bool,
}

fn voter_default() -> bool {
    true
}

/// Voters a group may have: one per region, and more than seven regions would make every
/// commit wait on a distant majority.
pub const VOTERS_MAX: usize = 7;
/// Members, voters and learners, a group may have: every one of them is sent the whole log.
pub const MEMBERS_MAX: usize = 16;

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(tag = "backend", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// An embedded redb file: the backend used everywhere FoundationDB is not.
    Redb { path: PathBuf },
    /// A FoundationDB cluster (needs a build with `--features foundationdb`).
    Foundationdb {
        cluster_file: PathBuf,
        /// Every key of this region lives under this prefix.
        key_prefix: String,
    },
}

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin API (port 0 picks a free port; the chosen one is printed).
    pub listen: SocketAddr,
    /// SHA-256 digests (hex) of the bearer tokens allowed in with every scope; `tradewind
    /// token new` makes one.
    #[serde(default)]
    pub token_sha256: Vec<String>,
    /// Tokens allowed in with some scopes, until a time: `[[admin.tokens]]` with `id`,
    /// `sha256`, `scopes` and `expires_at_ms`; `tradewind token create` makes one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<http_api::bearer::ScopedToken>,
    /// Largest request body.
    #[serde(default = "default_body_max_bytes")]
    pub body_max_bytes: usize,
    /// How long a write may wait for the log before the caller is told to retry.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// How long one request may take in all, reading its body included: a client that sends
    /// slowly or never finishes is cut off instead of holding a connection forever.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// The admin listener: TLS certificate, timeouts, caps, rates, trusted proxies.
    #[serde(default)]
    pub http: http_api::serve::Settings,
}

impl AdminConfig {
    /// The admin API on `listen` for the tokens of `token_sha256`, with the default bounds.
    pub fn new(
        listen: SocketAddr,
        token_sha256: Vec<String>,
        http: http_api::serve::Settings,
    ) -> Self {
        AdminConfig {
            listen,
            token_sha256,
            tokens: Vec::new(),
            http,
            body_max_bytes: default_body_max_bytes(),
            write_timeout_ms: default_write_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
        }
    }

    /// The admin API's URL, as the other regions and tools reach it.
    pub fn url(&self) -> String {
        format!("{}://{}", self.http.scheme(), self.listen)
    }
}

/// 16 MiB: a full price batch of 10,000 changes with tiers is about 2 MB of JSON.
fn default_body_max_bytes() -> usize {
    16 * 1024 * 1024
}

/// 10 s: a write normally takes milliseconds; this only fires when the store is stuck.
fn default_write_timeout_ms() -> u64 {
    10_000
}

/// 30 s: room for a 16 MiB body on a slow link and a write that waits its full 10 s.
fn default_request_timeout_ms() -> u64 {
    30_000
}

impl Config for CoreConfig {
    fn resolve(&mut self, base: &Path) {
        match &mut self.store {
            StoreConfig::Redb { path } => resolve(base, path),
            StoreConfig::Foundationdb { cluster_file, .. } => resolve(base, cluster_file),
        }
        if let Some(r) = &mut self.raft {
            resolve(base, &mut r.certs_dir);
            if let Some(p) = &mut r.log_path {
                resolve(base, p);
            }
        }
        self.admin.http.resolve(base);
        self.personal_data.resolve(base);
    }

    fn check(&self) -> Result<(), Invalid> {
        self.problems().map_err(Invalid)?;
        self.personal_data.check()?;
        let listeners: Vec<SocketAddr> = std::iter::once(self.admin.listen)
            .chain(self.raft.as_ref().map(|r| r.listen))
            .collect();
        self.personal_data.check_listeners(&listeners)?;
        self.admin.http.check("admin.http", self.admin.listen)
    }
}

impl CoreConfig {
    fn problems(&self) -> Result<(), String> {
        commerce::id::check_id("region", &self.region).map_err(|e| e.to_string())?;
        http_api::bearer::admin_tokens(
            &self.admin.token_sha256,
            &self.admin.tokens,
            self.admin.listen,
        )
        .map_err(|e| format!("admin.{e}"))?;
        if !(1024..=1 << 30).contains(&self.admin.body_max_bytes) {
            return Err("admin.body_max_bytes must be 1 KiB to 1 GiB".into());
        }
        if !(100..=600_000).contains(&self.admin.write_timeout_ms) {
            return Err("admin.write_timeout_ms must be 100 to 600000".into());
        }
        if !(self.admin.write_timeout_ms..=600_000).contains(&self.admin.request_timeout_ms) {
            return Err(
                "admin.request_timeout_ms must be at least write_timeout_ms and at most 600000"
                    .into(),
            );
        }
        let w = &self.writes;
        // A command travels in one frame, with room for what wraps it.
        let command_limit = replication::frame::FRAME_MAX_BYTES / 2;
        if w.inflight_max == 0
            || !(64 * 1024..=command_limit).contains(&w.command_max_bytes)
            || w.inflight_bytes_max < w.command_max_bytes
        {
            return Err(format!(
                "writes: need inflight_max > 0, command_max_bytes 64 KiB to {command_limit} and inflight_bytes_max >= command_max_bytes"
            ));
        }
        self.feed.check().map_err(|e| e.to_string())?;
        if let Some(r) = &self.raft {
            check_raft(&self.region, r)?;
        }
        self.raft_log_path().map_err(|e| e.0)?;
        let g = &self.grant_policy;
        if g.max_share_bps > 10_000 || g.horizon_ms == 0 || g.min_units > g.max_units {
            return Err(
                "grant_policy: need horizon_ms > 0, min_units <= max_units, max_share_bps <= 10000"
                    .into(),
            );
        }
        if let StoreConfig::Foundationdb { key_prefix, .. } = &self.store {
            if key_prefix.is_empty() {
                return Err("store.key_prefix must not be empty: regions would share keys".into());
            }
            if !cfg!(feature = "foundationdb") {
                return Err(
                    "store.backend = \"foundationdb\" needs a build with --features foundationdb"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

fn check_raft(region: &str, r: &RaftConfig) -> Result<(), String> {
    r.timing.check().map_err(|e| format!("raft.timing: {e}"))?;
    let voters = r.members.iter().filter(|m| m.voter).count();
    if voters == 0 || voters > VOTERS_MAX || r.members.len() > MEMBERS_MAX {
        return Err(format!(
            "raft.members: 1 to {VOTERS_MAX} voters and {MEMBERS_MAX} members in all"
        ));
    }
    let mut ids = std::collections::BTreeSet::new();
    let mut names = std::collections::BTreeSet::new();
    for m in &r.members {
        replication::certs::check_node_name(&m.name).map_err(|e| format!("raft.members: {e}"))?;
        if !ids.insert(m.id) || !names.insert(m.name.as_str()) {
            return Err(format!(
                "raft.members: id {} or name {} appears twice",
                m.id, m.name
            ));
        }
        m.raft_addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("raft.members: {}: raft_addr {:?}: {e}", m.name, m.raft_addr))?;
    }
    if let Some(name) = r
        .routes
        .keys()
        .find(|n| !names.contains(n.as_str()) || *n == region)
    {
        return Err(format!(
            "raft.routes: {name} is not another member of the group"
        ));
    }
    match r.members.iter().find(|m| m.id == r.node_id) {
        Some(me) if me.name == region => Ok(()),
        Some(me) => Err(format!(
            "raft.node_id {} is {} in raft.members, but this region is {region}",
            r.node_id, me.name
        )),
        None => Err(format!("raft.node_id {} is not in raft.members", r.node_id)),
    }
}

impl CoreConfig {
    /// Where the personal data key files are, and whether this region makes its own key there
    /// when it has none (a group of one, as with the deployment's secret).
    pub fn keys_dir(&self) -> Result<(PathBuf, bool), Invalid> {
        if let Some(d) = &self.personal_data.keys_dir {
            return Ok((d.clone(), false));
        }
        match &self.raft {
            Some(r) => Ok((r.certs_dir.join("keys"), false)),
            None => Ok((
                self.raft_log_path()?
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join("keys"),
                true,
            )),
        }
    }

    /// Where the Raft log lives.
    pub fn raft_log_path(&self) -> Result<PathBuf, Invalid> {
        if let Some(p) = self.raft.as_ref().and_then(|r| r.log_path.clone()) {
            return Ok(p);
        }
        match &self.store {
            StoreConfig::Redb { path } => Ok(path
                .parent()
                .unwrap_or(Path::new("."))
                .join("raft-log.redb")),
            StoreConfig::Foundationdb { .. } => Err(Invalid::at(
                "raft.log_path",
                "set it (a local file) with store.backend = \"foundationdb\"",
            )),
        }
    }

    /// Where the deployment's secret is (`replication::certs::SECRET_FILE`), and whether this
    /// region makes it when it is missing: a region of a group reads the group's, from its
    /// certificate directory; a group of one keeps its own beside its Raft log, made on its first
    /// start.
    pub fn secret_path(&self) -> Result<(PathBuf, bool), Invalid> {
        use replication::certs::SECRET_FILE;
        match &self.raft {
            Some(r) => Ok((r.certs_dir.join(SECRET_FILE), false)),
            None => Ok((
                self.raft_log_path()?
                    .parent()
                    .unwrap_or(Path::new("."))
                    .join(SECRET_FILE),
                true,
            )),
        }
    }

    /// This region's id and the members the group is formed with. Without a `[raft]` section:
    /// a group of one, this region.
    pub fn members(&self) -> (NodeId, Members) {
        match &self.raft {
            Some(r) => {
                let (voters, learners): (Vec<&MemberConfig>, Vec<&MemberConfig>) =
                    r.members.iter().partition(|m| m.voter);
                let map = |ms: Vec<&MemberConfig>| -> BTreeMap<NodeId, Member> {
                    ms.into_iter()
                        .map(|m| {
                            let member = Member {
                                name: m.name.clone(),
                                raft_addr: m.raft_addr.clone(),
                                admin_url: m.admin_url.clone(),
                            };
                            (m.id, member)
                        })
                        .collect()
                };
                let members = Members {
                    voters: map(voters),
                    learners: map(learners),
                };
                (r.node_id, members)
            }
            None => (
                1,
                BTreeMap::from([(
                    1,
                    Member {
                        name: self.region.clone(),
                        raft_addr: String::new(),
                        admin_url: self.admin.url(),
                    },
                )])
                .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("core.toml");
        std::fs::write(&p, text).unwrap();
        p
    }

    const GOOD: &str = r#"
region = "cn-shanghai"
[store]
backend = "redb"
path = "data/core.redb"
[admin]
listen = "127.0.0.1:0"
token_sha256 = ["0000000000000000000000000000000000000000000000000000000000000000"]
[admin.http]
plain_http = true
"#;

    #[test]
    fn loads_and_resolves_paths() {
        let dir = tempfile::tempdir().unwrap();
        let c = util::config::load::<CoreConfig>(&write(dir.path(), GOOD)).unwrap();
        let StoreConfig::Redb { path } = &c.store else {
            panic!("redb expected")
        };
        assert_eq!(path, &dir.path().join("data/core.redb"));
        assert_eq!(c.grant_policy, GrantPolicy::default());
    }

    #[test]
    fn refuses_bad_configs() {
        let dir = tempfile::tempdir().unwrap();
        for (bad, why) in [
            (
                GOOD.replace("region = \"cn-shanghai\"", "region = \"a b\""),
                "region",
            ),
            (
                GOOD.replace("[admin]", "[admin]\ntypo = 1"),
                "unknown field",
            ),
            (GOOD.replace("[\"0000", "[\"zz00"), "SHA-256"),
            (
                GOOD.replace("backend = \"redb\"", "backend = \"sqlite\""),
                "variant",
            ),
            (
                GOOD.replace("[admin]", "[admin]\nwrite_timeout_ms = 1"),
                "write_timeout_ms",
            ),
            (
                GOOD.replace("[admin]", "[admin]\nrequest_timeout_ms = 50"),
                "request_timeout_ms",
            ),
            // The example token off loopback (over TLS, so that only the token is wrong).
            (
                GOOD.replace(
                    "0000000000000000000000000000000000000000000000000000000000000000",
                    http_api::bearer::EXAMPLE_TOKEN_SHA256,
                )
                .replace("listen = \"127.0.0.1:0\"", "listen = \"0.0.0.0:0\"")
                .replace(
                    "plain_http = true",
                    "tls_cert = \"a.pem\"\ntls_key = \"a.key\"",
                ),
                "example token",
            ),
        ] {
            let err = util::config::load::<CoreConfig>(&write(dir.path(), &bad))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{why}: {err}");
        }
        assert!(util::config::load::<CoreConfig>(&dir.path().join("missing.toml")).is_err());
        // The example token on loopback is taken.
        let example = GOOD.replace(
            "0000000000000000000000000000000000000000000000000000000000000000",
            http_api::bearer::EXAMPLE_TOKEN_SHA256,
        );
        util::config::load::<CoreConfig>(&write(dir.path(), &example)).unwrap();
    }

    fn group(learner_flags: &[bool]) -> String {
        let members: String = learner_flags
            .iter()
            .enumerate()
            .map(|(i, voter)| {
                let name = if i == 0 { "cn-shanghai".to_owned() } else { format!("r-{i}") };
                format!(
                    "[[raft.members]]\nid = {}\nname = \"{name}\"\nraft_addr = \"127.0.0.1:{}\"\nadmin_url = \"http://127.0.0.1:1\"\nvoter = {voter}\n",
                    i + 1,
                    7000 + i
                )
            })
            .collect();
        format!(
            "{GOOD}[raft]\nnode_id = 1\nlisten = \"127.0.0.1:0\"\ncerts_dir = \"certs\"\n{members}"
        )
    }

    #[test]
    fn members_are_voters_unless_they_say_not() {
        let dir = tempfile::tempdir().unwrap();
        let c = util::config::load::<CoreConfig>(&write(
            dir.path(),
            &group(&[true, true, true, false]),
        ))
        .unwrap();
        let (id, m) = c.members();
        assert_eq!(id, 1);
        assert_eq!(m.voters.keys().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(m.learners.keys().copied().collect::<Vec<_>>(), vec![4]);
        let all_learners = group(&[false, false, false]);
        let err = util::config::load::<CoreConfig>(&write(dir.path(), &all_learners)).unwrap_err();
        assert!(err.to_string().contains("1 to 7 voters"), "{err}");
        let err =
            util::config::load::<CoreConfig>(&write(dir.path(), &group(&[true; 8]))).unwrap_err();
        assert!(err.to_string().contains("1 to 7 voters"), "{err}");
        // Timing openraft would refuse at start is refused by the check already.
        let none_per_request = format!(
            "{}[raft.timing]\nentries_per_request = 0\n",
            group(&[true, true, true])
        );
        let err =
            util::config::load::<CoreConfig>(&write(dir.path(), &none_per_request)).unwrap_err();
        assert!(err.to_string().contains("raft.timing"), "{err}");
    }
}
