//! The demo's asset origin: the sample catalog's product images at
//! `/assets/products/<product id>.svg`, drawn from the id alone (the same id, the same bytes),
//! with a strong `ETag`, a `Last-Modified` and a year's lifetime, as an origin of static assets
//! serves them. Every region's CDN cache fronts it (`tradewind assets --config FILE`).

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::extract::Path as UrlPath;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use util::config::{Config, Invalid};

#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AssetsConfig {
    pub listen: SocketAddr,
    #[serde(default)]
    pub listener: http_api::serve::Settings,
}

impl Config for AssetsConfig {
    fn resolve(&mut self, base: &Path) {
        self.listener.resolve(base);
    }

    fn check(&self) -> Result<(), Invalid> {
        self.listener.check("listener", self.listen)
    }
}

/// When every image was last changed: they never change.
const LAST_MODIFIED: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// A product's image: a tile in colours drawn from its id, with the id written on it.
pub fn image(id: &str) -> String {
    let h = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let (hue, accent) = (h % 360, (h >> 16) % 360);
    let (cx, cy, r) = (
        100 + (h >> 32) % 200,
        100 + (h >> 40) % 200,
        40 + (h >> 48) % 80,
    );
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="400" height="400" viewBox="0 0 400 400"><rect width="400" height="400" fill="hsl({hue},55%,45%)"/><circle cx="{cx}" cy="{cy}" r="{r}" fill="hsl({accent},70%,70%)" opacity="0.8"/><text x="200" y="370" font-family="sans-serif" font-size="24" text-anchor="middle" fill="#fff">{id}</text></svg>"##
    )
}

async fn product_image(UrlPath(file): UrlPath<String>, headers: HeaderMap) -> Response {
    let Some(id) = file
        .strip_suffix(".svg")
        .filter(|id| commerce::id::check_id("product", id).is_ok())
    else {
        return http_api::limits::not_found().await.into_response();
    };
    let body = image(id);
    let digest = http_api::bearer::sha256_hex(&body);
    let etag = format!("\"{}\"", &digest[..16]);
    let mut res = if http_api::conditional::none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        body.into_response()
    };
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("image/svg+xml"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::LAST_MODIFIED,
        HeaderValue::from_static(LAST_MODIFIED),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    res
}

pub fn router() -> Router {
    let routes = Router::new()
        .route("/assets/products/{file}", get(product_image))
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        );
    http_api::limits::finish(routes, std::time::Duration::from_secs(10))
}

/// Serves the images until `shutdown` resolves; `on_ready` gets the address.
pub async fn serve(
    config: AssetsConfig,
    shutdown: impl Future<Output = ()>,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    util::config::Config::check(&config)?;
    let front = http_api::serve::Front::new(&config.listener)?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let serving = tokio::spawn(front.serve(listener, router(), std::future::pending()));
    on_ready(addr);
    shutdown.await;
    serving.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_drawn_from_its_id_alone() {
        assert_eq!(image("P-1"), image("P-1"));
        assert_ne!(image("P-1"), image("P-2"));
        assert!(image("P-1").contains(">P-1</text>"));
    }
}
