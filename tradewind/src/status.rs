//! `tradewind status --mesh FILE`: the mesh at a glance. The group as the cores see it (leader,
//! term, each region's role, applied version and lag), and each edge's health, version, lag,
//! outbox and grant units, read from the running parts themselves.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use chaos_tests::mesh::Mesh;

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.ok()?;
    let status = res.status().as_u16();
    Some((status, res.text().await.ok()?))
}

pub async fn run(mesh_path: &Path) -> anyhow::Result<()> {
    let mesh = Mesh::load(mesh_path)?;
    let http = mesh.client(Duration::from_secs(2))?;
    // The group, from the first core that answers.
    let mut cluster: Option<Value> = None;
    for r in &mesh.regions {
        let url = format!("{}/admin/v1/cluster", r.core.admin_url);
        if let Some((200, body)) = get(&http, &url, Some(&mesh.admin_token)).await {
            cluster = serde_json::from_str(&body).ok();
            break;
        }
    }
    use std::fmt::Write as _;
    let mut out = String::new();
    match &cluster {
        Some(c) => writeln!(
            out,
            "group: leader {}, term {}, version {}",
            c["leader"].as_str().unwrap_or("none"),
            c["term"],
            c["version"]
        )?,
        None => writeln!(out, "group: no core answers")?,
    }
    writeln!(
        out,
        "\n{:<16} {:<9} {:>8} {:>7}   {:<8} {:>8} {:>4} {:>6} {:>7}",
        "region", "role", "applied", "lag", "health", "version", "lag", "outbox", "grants"
    )?;
    for r in &mesh.regions {
        let member = cluster.as_ref().and_then(|c| {
            c["members"]
                .as_array()?
                .iter()
                .find(|m| m["region"] == r.name.as_str())
                .cloned()
        });
        let (role, applied, lag) = match &member {
            Some(m) => (
                m["role"].as_str().unwrap_or("?").to_owned(),
                m["applied_version"].to_string(),
                format!("{}ms", m["lag_ms"]),
            ),
            None => ("down".to_owned(), "-".into(), "-".into()),
        };
        write!(out, "{:<16} {:<9} {:>8} {:>7}", r.name, role, applied, lag)?;
        for (i, e) in r.edges.iter().enumerate() {
            let health = get(&http, &format!("{}/healthz", e.url), None).await;
            let (verdict, version, lag, pending, units) = match &health {
                Some((code, body)) => {
                    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                    (
                        if *code == 200 { "ok" } else { "degraded" },
                        v["applied_version"].to_string(),
                        v["version_lag"].to_string(),
                        v["outbox_pending"].to_string(),
                        v["grant_units"].to_string(),
                    )
                }
                None => ("down", "-".into(), "-".into(), "-".into(), "-".into()),
            };
            if i > 0 {
                write!(out, "{:<43}", "")?;
            }
            writeln!(
                out,
                "   {:<8} {:>8} {:>4} {:>6} {:>7}   {} {}",
                verdict, version, lag, pending, units, e.name, e.url
            )?;
        }
        if r.edges.is_empty() {
            writeln!(out)?;
        }
    }
    // A reader that stops early (`| head`) is no error.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
