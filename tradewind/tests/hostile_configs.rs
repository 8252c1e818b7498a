//! Config files read from hostile text: every example config with characters changed, cut
//! short or grown, and noise. Loading answers a config or an error that names the problem,
//! never a panic (configs come from operators' hands and deployment tools).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn examples() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = vec![dir.join("core.toml")];
    for f in std::fs::read_dir(dir.join("cluster")).unwrap() {
        files.push(f.unwrap().path());
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

/// Loads `text` as every kind of config.
fn load_all(text: &str) {
    let base = Path::new("/nonexistent");
    let _ = util::config::parse::<core_region::config::CoreConfig>(text, base, "hostile");
    let _ = util::config::parse::<edge_node::config::EdgeConfig>(text, base, "hostile");
    let _ = util::config::parse::<geo_router::RouterConfig>(text, base, "hostile");
    let _ = util::config::parse::<chaos_tests::proxy::ProxyConfig>(text, base, "hostile");
    let _ = util::config::parse::<cdn_cache::CdnConfig>(text, base, "hostile");
}

#[test]
fn every_example_loads_as_what_it_is() {
    for (path, text) in examples() {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let base = path.parent().unwrap();
        let loaded = if name == "router.toml" {
            util::config::parse::<geo_router::RouterConfig>(&text, base, &name).map(|_| ())
        } else if name.ends_with("-cdn.toml") {
            util::config::parse::<cdn_cache::CdnConfig>(&text, base, &name).map(|_| ())
        } else if name.ends_with("-1.toml") {
            util::config::parse::<edge_node::config::EdgeConfig>(&text, base, &name).map(|_| ())
        } else {
            util::config::parse::<core_region::config::CoreConfig>(&text, base, &name).map(|_| ())
        };
        loaded.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn examples_with_characters_changed_cut_or_grown_load_or_fail_cleanly(
        pick in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..6),
        cut in any::<prop::sample::Index>(),
        grow in ".{0,40}",
    ) {
        let all = examples();
        let (_, text) = pick.get(&all);
        let mut chars: Vec<char> = text.chars().collect();
        for (at, c) in &edits {
            let i = at.index(chars.len());
            chars[i] = *c;
        }
        chars.truncate(cut.index(chars.len() + 1));
        let mut text: String = chars.into_iter().collect();
        text.push_str(&grow);
        load_all(&text);
    }

    #[test]
    fn noise_loads_as_no_config_without_panicking(noise in ".{0,400}") {
        load_all(&noise);
    }
}
