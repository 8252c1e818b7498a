//! UDP datagrams at the geo-router, answered as its UDP loop answers them (without the rate
//! limit and cache in front), by the router of `examples/cluster/router.toml`.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;

static AUTHORITY: LazyLock<Arc<geo_router::dns::Authority>> = LazyLock::new(|| {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/cluster/router.toml"
    );
    let config: geo_router::config::RouterConfig =
        util::config::load(std::path::Path::new(path)).expect("the example router config");
    geo_router::parts(&config)
        .expect("the example router")
        .authority
});

fuzz_target!(|data: &[u8]| {
    let src: SocketAddr = "192.0.2.7:5353".parse().unwrap();
    let _ = geo_router::wire::answer_datagram(&AUTHORITY, data, src);
});
