//! Picket's HTTP side: the ingest endpoints SDKs talk to, the `/api/0/` web
//! API, health checks, and the digest worker that moves events from the
//! durable queue into issues.
//!
//! - [`ingest`]: `/api/{id}/envelope/`, `/api/{id}/store/`, `/api/store/`, `/api/{id}/security/`.
//! - [`api`]: the Sentry-shaped web API under `/api/0/`.
//! - [`worker`]: the digest loop.
//! - [`retention`]: the hourly deletion of data older than the retention period.
//! - [`plugins`]: the plugin host (per-project state, post-processing, failures);
//!   the plugin endpoints of the API live in `plugin_api`.
//! - [`error`]: one error type mapped to HTTP answers in one place.
//!
//! Build the router with [`app`] and serve it; tests drive it the same way.

use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use axum::Router;
use picket_store::Store;

pub mod api;
pub mod error;
pub mod ingest;
pub mod plugins;
mod plugin_api;
mod ratelimit;
pub mod retention;
pub mod worker;

/// Settings the HTTP side needs (the binary fills them from its configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Public base URL, used in DSNs and links (`http://127.0.0.1:9000`).
    pub url_prefix: String,
    /// Answer 429 when more envelopes than this wait in the queue.
    pub max_queue: i64,
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Envelopes digested per transaction.
    pub digest_batch: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { url_prefix: "http://127.0.0.1:9000".into(), max_queue: 100_000, trust_forwarded_for: false, digest_batch: 256 }
    }
}

/// Shared state of the server.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub settings: Arc<Settings>,
    /// Envelopes waiting in the queue (kept in memory; seeded from the database).
    pub queue_len: Arc<AtomicI64>,
    /// Wakes the digest worker when something was queued.
    pub queued: Arc<tokio::sync::Notify>,
    /// Ingest requests waiting for their queue commit (the digest's load signal).
    pub ingest_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// Decoded bodies of freshly queued envelopes, so the digest need not
    /// decompress what ingest has just decompressed.
    pub fresh: Arc<worker::FreshBodies>,
    /// The extension system: registry and per-project plugin state.
    pub plugins: Arc<plugins::PluginHost>,
    /// Events handed from the digest to post-processing.
    pub handoff: Arc<plugins::HandoffChannel>,
    /// The thread that processes digest batches; post-processing gives the
    /// events back to it to be freed.
    pub(crate) digest_thread: Arc<worker::CpuThread>,
    /// The second digest thread: it processes half of each large batch
    /// while `digest_thread` does the other half.
    pub(crate) digest_helper: Arc<worker::CpuThread>,
    limiter: Arc<ratelimit::Limiter>,
    keys: Arc<ingest::KeyCache>,
    /// Ingest requests refused, counted for the stats and the log.
    pub(crate) refusals: Arc<ingest::Refusals>,
}

impl AppState {
    /// Creates the state; counts what is already queued.
    pub fn new(store: Store, settings: Settings) -> picket_store::Result<AppState> {
        let waiting = store.read(picket_store::queue::len)?;
        let plugins = Arc::new(plugins::PluginHost::new(picket_plugin_api::Registry::global(), store.clone()));
        Ok(AppState {
            plugins,
            handoff: Arc::new(plugins::HandoffChannel::default()),
            digest_thread: Arc::new(worker::CpuThread::spawn("picket-digest")),
            digest_helper: Arc::new(worker::CpuThread::spawn("picket-digest-2")),
            store,
            settings: Arc::new(settings),
            queue_len: Arc::new(AtomicI64::new(waiting)),
            queued: Arc::new(tokio::sync::Notify::new()),
            fresh: Arc::new(worker::FreshBodies::default()),
            ingest_waiting: Default::default(),
            limiter: Arc::new(ratelimit::Limiter::default()),
            keys: Arc::new(ingest::KeyCache::default()),
            refusals: Arc::new(ingest::Refusals::default()),
        })
    }
}

/// The whole HTTP application. When `url_prefix` has a path
/// (`https://example.com/sentry`), which the DSNs and links then carry, it
/// is answered under that path as well as at the root: a proxy may pass the
/// path on or strip it.
pub fn app(state: AppState) -> Router {
    let path = prefix_path(&state.settings.url_prefix);
    let app = routes(state);
    match path {
        Some(path) => Router::new().nest_service(&path, app.clone()).fallback_service(app),
        None => app,
    }
}

/// The path of a public URL (`/sentry` of `https://example.com/sentry/`), if it has one.
fn prefix_path(url_prefix: &str) -> Option<String> {
    let rest = url_prefix.split_once("://").map_or(url_prefix, |(_, rest)| rest);
    let path = rest.find('/').map(|i| rest[i..].trim_end_matches('/'))?;
    (!path.is_empty()).then(|| path.to_string())
}

fn routes(state: AppState) -> Router {
    Router::new()
        .merge(ingest::router())
        .merge(api::router())
        .merge(plugin_api::router())
        .route("/_health", axum::routing::get(health))
        .route("/_health/", axum::routing::get(health))
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(axum::middleware::from_fn(json_errors))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Every error under `/api/` is JSON `{"detail": ...}`, including the
/// framework's own answers (an unknown route, a wrong method, an unreadable
/// query string, a body over the limit), which come as plain text or empty.
async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    use axum::http::header;
    use axum::response::IntoResponse;
    let uri = req.uri().clone();
    let path = uri.path();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|t| t.starts_with("application/json"));
    if !path.starts_with("/api/") || !(status.is_client_error() || status.is_server_error()) || is_json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let detail = match status.as_u16() {
        _ if !text.is_empty() => text,
        404 if !path.ends_with('/') => format!("no such endpoint '{path}': API paths end with '/' (see docs/api.md)"),
        404 => format!("no such endpoint '{path}' (see docs/api.md)"),
        405 => format!("method not allowed on '{path}' (see docs/api.md)"),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut out = (status, axum::Json(serde_json::json!({ "detail": detail }))).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}

async fn health(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match state.store.read_async(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).await {
        Ok(_) => (axum::http::StatusCode::OK, "ok\n").into_response(),
        Err(e) => (axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("database unavailable: {e}\n")).into_response(),
    }
}
