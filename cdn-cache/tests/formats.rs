//! The disk tier's file head, pinned by golden bytes: a change to its layout must come as a
//! new version, never as a silent change to files a restarted cache reads.

use cdn_cache::store::disk::{Head, VariantHead};

#[test]
fn cache_object_v1_head() {
    let head = Head {
        key: "shop.example/v1/products/p-1?currency=EUR".into(),
        variants: vec![VariantHead {
            status: 200,
            headers: vec![
                ("cache-control".into(), b"max-age=60".to_vec()),
                ("etag".into(), b"\"v1\"".to_vec()),
            ],
            request_time_ms: 1_796_000_000_000,
            response_time_ms: 1_796_000_000_012,
            vary: vec![("accept-language".into(), Some("en".into()))],
            surrogate_keys: vec!["product:p-1".into(), "catalog".into()],
            body_bytes: 1_024,
        }],
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/cache-object-v1-head.hex");
    codec::check_golden(&path, &head).unwrap();
}
