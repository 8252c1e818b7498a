//! Config files as every part of the mesh reads them (`util::config::parse`): a core's, an
//! edge's, the geo-router's, a CDN cache's and the fault proxy's. Nothing may panic; a config that loads
//! passed its checks.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent");
    let _ = util::config::parse::<core_region::config::CoreConfig>(text, base, "core.toml");
    let _ = util::config::parse::<edge_node::config::EdgeConfig>(text, base, "edge.toml");
    let _ = util::config::parse::<geo_router::config::RouterConfig>(text, base, "router.toml");
    let _ = util::config::parse::<chaos_tests::proxy::ProxyConfig>(text, base, "proxy.toml");
    let _ = util::config::parse::<cdn_cache::CdnConfig>(text, base, "cdn.toml");
});
