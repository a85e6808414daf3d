//! The ingest endpoints. Each request is authenticated by its DSN key
//! (before its body is decompressed), decompressed under a hard limit, split and checked item by item, and
//! queued durably; the answer (`200 {"id": ...}`) is sent only after the
//! queue row is committed. Digest happens later, in the worker.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use http_body_util::BodyExt;
use picket_protocol::auth::{self, ClientAuth};
use picket_protocol::envelope::Envelope;
use picket_protocol::limits::*;
use picket_protocol::{decompress, json, security};
use picket_store::accounts::{self, ProjectKey};
use picket_store::queue::{QueueMeta, QueuedEnvelope};
use serde_json::{json, Value};
use tower_http::cors::{AllowHeaders, AllowMethods, AllowOrigin, CorsLayer, ExposeHeaders};

use crate::error::ApiError;
use crate::AppState;

/// The ingest routes, with CORS for browsers on all of them (errors included).
pub fn router() -> Router<AppState> {
    let mut r = Router::new();
    for (path, handler) in [
        ("/api/{project_id}/envelope", post(envelope) as axum::routing::MethodRouter<AppState>),
        ("/api/{project_id}/store", any(store)),
        ("/api/{project_id}/security", post(security_report)),
        ("/api/{project_id}/csp-report", post(security_report)),
    ] {
        r = r.route(path, handler.clone()).route(&format!("{path}/"), handler);
    }
    r = r.route("/api/store", any(store_without_project)).route("/api/store/", any(store_without_project));
    r.layer(cors()).layer(axum::extract::DefaultBodyLimit::disable())
}

fn cors() -> CorsLayer {
    let h = |s: &'static str| header::HeaderName::from_static(s);
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods(AllowMethods::list([Method::GET, Method::POST, Method::OPTIONS]))
        .allow_headers(AllowHeaders::list([
            h("x-sentry-auth"), h("x-requested-with"), h("x-forwarded-for"), h("origin"), h("referer"), h("accept"),
            h("content-type"), h("authentication"), h("authorization"), h("content-encoding"), h("transfer-encoding"),
            h("sentry-trace"), h("baggage"),
        ]))
        .expose_headers(ExposeHeaders::list([h("x-sentry-error"), h("x-sentry-rate-limits"), h("retry-after")]))
        .max_age(std::time::Duration::from_secs(3600))
}

/// What every ingest request carries besides its body.
struct RequestInfo {
    headers: HeaderMap,
    query: String,
    client_ip: Option<String>,
}

/// Splits a request into what ingest reads of it and its body (no copies).
fn request_info(req: Request, trust_forwarded_for: bool) -> (RequestInfo, Body) {
    let (parts, body) = req.into_parts();
    let forwarded = trust_forwarded_for
        .then(|| parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()).and_then(|v| v.split(',').next()).map(|s| s.trim().to_string()))
        .flatten();
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
    let info = RequestInfo { query: parts.uri.query().unwrap_or_default().to_string(), client_ip: forwarded.or(peer), headers: parts.headers };
    (info, body)
}

/// Reads the body up to `limit` bytes as they arrive; more is a 413 before
/// the rest is read.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut body = body;
    let mut buf = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::bad_request(format!("cannot read request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            if buf.len() + data.len() > limit {
                return Err(ApiError::too_large(format!("request body exceeds {limit} bytes")));
            }
            buf.extend_from_slice(data);
        }
    }
    Ok(buf)
}

fn content_encoding(headers: &HeaderMap) -> &str {
    headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn decode_body(headers: &HeaderMap, body: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    decompress::decode(content_encoding(headers), body, limit).map_err(|e| match e {
        // Not compressed: "after decompression" would mislead.
        decompress::DecodeError::TooLarge { limit } if body.len() > limit => ApiError::too_large(format!("body is {} bytes, over the limit of {limit} bytes", body.len())),
        other => decode_error(other),
    })
}

fn decode_error(e: decompress::DecodeError) -> ApiError {
    match e {
        decompress::DecodeError::TooLarge { limit } => ApiError::too_large(format!("body exceeds {limit} bytes after decompression")),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// Whether the body's only coding is gzip (then it is a gzip stream of
/// exactly the decoded body).
fn is_plain_gzip(headers: &HeaderMap) -> bool {
    content_encoding(headers).trim().eq_ignore_ascii_case("gzip")
}

/// The auth from the request's headers and query, if there is any: what
/// can be checked before the body is read. Different keys are refused.
fn request_auth(info: &RequestInfo) -> Result<Option<ClientAuth>, ApiError> {
    let found = auth_in_request(info)?;
    if found.is_empty() {
        return Ok(None);
    }
    auth::merge(found).map(Some).map_err(auth_error)
}

fn auth_in_request(info: &RequestInfo) -> Result<Vec<ClientAuth>, ApiError> {
    let mut found = Vec::new();
    for name in ["x-sentry-auth", "authorization"] {
        if let Some(v) = info.headers.get(name).and_then(|v| v.to_str().ok()) {
            match auth::parse_auth_header(v).map_err(auth_error)? {
                Some(a) => found.push(a),
                // `Authorization` may carry another scheme for a proxy; `X-Sentry-Auth` is only ever ours.
                None if name == "x-sentry-auth" => {
                    return Err(ApiError::unauthorized("invalid X-Sentry-Auth header: expected 'Sentry sentry_key=<the DSN's public key>, sentry_version=7'"))
                }
                None => {}
            }
        }
    }
    if let Some(a) = auth::parse_auth_query(&info.query).map_err(auth_error)? {
        found.push(a);
    }
    Ok(found)
}

/// Collects the auth from every place it may be; different keys are refused.
fn client_auth(info: &RequestInfo, envelope_dsn: Option<&str>) -> Result<ClientAuth, ApiError> {
    let mut found = auth_in_request(info)?;
    if let Some(dsn) = envelope_dsn {
        let d = picket_protocol::dsn::Dsn::parse(dsn).map_err(|e| ApiError::unauthorized(format!("invalid envelope header 'dsn': {e}")))?;
        found.push(ClientAuth { public_key: d.public_key, ..ClientAuth::default() });
    }
    auth::merge(found).map_err(auth_error)
}

/// A protocol version we do not speak is a bad request (400); anything else about auth is 401.
fn auth_error(e: auth::AuthError) -> ApiError {
    match e {
        auth::AuthError::Version(_) => ApiError::bad_request(e.to_string()),
        _ => ApiError::unauthorized(e.to_string()),
    }
}

/// A DSN key with what ingest needs of its project.
#[derive(Clone)]
pub(crate) struct KeyInfo {
    key: ProjectKey,
    allowed_origins: String,
}

/// Keys looked up recently, found or not, so that ingest does not read the
/// database on every request. Entries live [`KEY_CACHE_TTL`]: a disabled key
/// or a changed rate limit takes effect within that time.
#[derive(Default)]
pub(crate) struct KeyCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<KeyInfo>)>>,
}

impl KeyCache {
    /// Forgets a project's keys at once (it was deleted by this server).
    pub(crate) fn forget_project(&self, project_id: i64) {
        self.entries.lock().expect("key cache").retain(|_, (_, info)| info.as_ref().is_none_or(|i| i.key.project_id != project_id));
    }
}

const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);
const KEY_CACHE_MAX: usize = 10_000;

async fn lookup_key(state: &AppState, public_key: &str) -> Result<Option<KeyInfo>, ApiError> {
    if let Some((at, info)) = state.keys.entries.lock().expect("key cache").get(public_key) {
        if at.elapsed() < KEY_CACHE_TTL {
            return Ok(info.clone());
        }
    }
    let public = public_key.to_string();
    let info = state
        .store
        .read_async(move |c| {
            let Some(key) = accounts::key_by_public(c, &public)? else { return Ok(None) };
            let project = accounts::project_by_id(c, key.project_id)?;
            Ok(Some(KeyInfo { key, allowed_origins: project.allowed_origins }))
        })
        .await?;
    let mut entries = state.keys.entries.lock().expect("key cache");
    if entries.len() >= KEY_CACHE_MAX {
        entries.clear(); // crude but bounded: a flood of made-up keys cannot grow memory
    }
    entries.insert(public_key.to_string(), (std::time::Instant::now(), info.clone()));
    Ok(info)
}

/// Finds the key and checks it belongs to the project in the URL (if any).
async fn authenticate(state: &AppState, auth: &ClientAuth, project_id: Option<i64>) -> Result<KeyInfo, ApiError> {
    let info = lookup_key(state, &auth.public_key).await?;
    let dsn_hint = |pid: String| picket_protocol::dsn::build_dsn(&state.settings.url_prefix, &auth.public_key, pid.parse().unwrap_or(0));
    match info {
        Some(i) if !i.key.is_active => Err(ApiError::forbidden("this DSN key is disabled; enable it or use another key of the project")),
        Some(i) if project_id.is_none_or(|p| p == i.key.project_id) => Ok(i),
        _ => Err(ApiError::forbidden(format!(
            "project not found or key incorrect: {}; check the DSN your SDK is configured with",
            dsn_hint(project_id.map(|p| p.to_string()).unwrap_or_else(|| "?".into()))
        ))),
    }
}

fn parse_project_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>().ok().filter(|p| *p > 0).ok_or_else(|| ApiError::bad_request(format!("invalid project id '{raw}' in the URL: expected a positive number")))
}

/// Refuses requests from origins the project does not allow (browsers send `Origin`).
fn check_origin(info: &RequestInfo, key: &KeyInfo) -> Result<(), ApiError> {
    let Some(origin) = info.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let allowed = key.allowed_origins.split([',', '\n', ' ']).map(str::trim).filter(|s| !s.is_empty()).any(|a| a == "*" || a == origin);
    if allowed {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("origin '{origin}' is not allowed for this project; add it to the project's allowed origins")))
    }
}

/// Load shedding and per-key limits, before anything is queued.
fn check_limits(state: &AppState, key: &KeyInfo, events: i64) -> Result<(), ApiError> {
    if state.queue_len.load(Ordering::Relaxed) >= state.settings.max_queue {
        return Err(ApiError::rate_limited("the event queue is full; retry later", 10, "organization", "queue_full"));
    }
    if let (Some(count), Some(window)) = (key.key.rate_limit_count, key.key.rate_limit_window) {
        if events > 0 {
            state
                .limiter
                .check(key.key.id, count, window, events)
                .map_err(|wait| ApiError::rate_limited(format!("rate limit of this key reached ({count} events per {window}s)"), wait, "key", "key_quota"))?;
        }
    }
    Ok(())
}

/// What plugins say about new events for the project: `is_rate_limited`
/// (429) and a `create_event` veto (401, as Sentry answered).
async fn check_plugins(state: &AppState, project_id: i64) -> Result<(), ApiError> {
    let plugins = state.plugins.project(state, project_id).await?;
    if plugins.is_rate_limited() {
        return Err(ApiError::rate_limited("creation of this event was denied by a plugin's rate limit", 60, "project", "plugin"));
    }
    let mut ctx = picket_plugin_api::PermContext::new(picket_plugin_api::UserRef::new(0, "", None), picket_plugin_api::Permission::CreateEvent);
    ctx.project = Some(plugins.project.clone());
    ctx.org_slug = Some(plugins.project.org_slug.clone());
    if !picket_core::plugins::authorize_in_project(&plugins, &ctx, true) {
        return Err(ApiError::unauthorized("this event cannot be recorded: a plugin denied create_event for this project"));
    }
    Ok(())
}

/// Queues envelopes and waits for the commit.
async fn enqueue(state: &AppState, items: Vec<QueuedEnvelope>) -> Result<(), ApiError> {
    let n = items.len() as i64;
    if n == 0 {
        return Ok(());
    }
    let mut items = items;
    let prepared: Vec<_> = items.iter_mut().map(QueuedEnvelope::prepare).collect();
    let ids = {
        // Counted while waiting, also when the client goes away mid-wait
        // (the future is dropped): the digest reads this as the load.
        let _waiting = Waiting::new(&state.ingest_waiting);
        state.store.enqueue(prepared).await?
    };
    for (id, item) in ids.into_iter().zip(items) {
        state.fresh.put(id, item.body);
    }
    state.queue_len.fetch_add(n, Ordering::Relaxed);
    state.queued.notify_one();
    Ok(())
}

/// One request waiting for its queue commit, counted for as long as it lives.
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Ingest requests answered with a client error, by project (once the key
/// named it; `None` before) and outcome. They are written to the projects'
/// stats and summed up in the log every few seconds rather than one write
/// or log line each: a client hammering a full queue must not cost a
/// transaction per request, nor flood the log.
#[derive(Default)]
pub(crate) struct Refusals {
    counts: std::sync::Mutex<std::collections::HashMap<(Option<i64>, &'static str), i64>>,
}

impl Refusals {
    fn note(&self, project_id: Option<i64>, answer: &Result<Response, ApiError>) {
        let Err(e) = answer else { return };
        let outcome = match e.status.as_u16() {
            429 => "rate_limited",
            413 => "too_large",
            401 | 403 => "filtered",
            400..=499 => "invalid",
            _ => return, // not the client's doing (the queue could not be written): logged where it happened
        };
        *self.counts.lock().expect("refusal counts").entry((project_id, outcome)).or_default() += 1;
    }

    fn take(&self) -> std::collections::HashMap<(Option<i64>, &'static str), i64> {
        std::mem::take(&mut *self.counts.lock().expect("refusal counts"))
    }
}

/// How often refusals are written to the stats, and summed up in the log.
const REFUSALS_WRITE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);
const REFUSALS_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Writes the refusals counted by ingest (see [`Refusals`]) until
/// `shutdown`, then once more.
pub async fn write_refusals(state: AppState, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut unlogged: std::collections::BTreeMap<&'static str, i64> = Default::default();
    let mut logged_at = std::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(REFUSALS_WRITE_INTERVAL) => false,
            _ = shutdown.changed() => true,
        };
        let counts = state.refusals.take();
        let rows: Vec<(i64, String, &'static str, i64)> = counts.iter().filter_map(|(&(p, outcome), &n)| Some((p?, "request".to_string(), outcome, n))).collect();
        for ((_, outcome), n) in counts {
            *unlogged.entry(outcome).or_default() += n;
        }
        if !rows.is_empty() {
            if let Err(e) = state.store.write(move |c| picket_store::digest::add_item_counts(c, &rows)).await {
                tracing::warn!(error = %e, "writing the counts of refused ingest requests failed; they are left out of the stats");
            }
        }
        if !unlogged.is_empty() && (stopping || logged_at.elapsed() >= REFUSALS_LOG_INTERVAL) {
            let total: i64 = unlogged.values().sum();
            let by_outcome = unlogged.iter().map(|(o, n)| format!("{o} {n}")).collect::<Vec<_>>().join(", ");
            tracing::info!(requests = total, outcomes = %by_outcome, seconds = logged_at.elapsed().as_secs(), "ingest refused requests (each with a 4xx answer; per project in its stats as item type 'request')");
            unlogged.clear();
            logged_at = std::time::Instant::now();
        }
        if stopping {
            break;
        }
    }
}

fn meta(info: &RequestInfo, auth: &ClientAuth) -> QueueMeta {
    QueueMeta { client_ip: info.client_ip.clone(), sdk_client: auth.client.clone() }
}

fn id_response(event_id: Option<String>) -> Response {
    match event_id {
        Some(id) => axum::Json(json!({ "id": id })).into_response(),
        None => axum::Json(json!({})).into_response(),
    }
}

/// Checks the items of an envelope against the size limits and validates
/// the JSON of event-like items, so that a bad event is refused now (400)
/// rather than dropped silently later. Returns the number of events.
fn check_items(env: &Envelope<'_>) -> Result<i64, ApiError> {
    let mut attachments_total = 0usize;
    let mut sessions = 0usize;
    let mut events = 0i64;
    for item in &env.items {
        let ty = item.item_type();
        let size = item.payload.len();
        let too_large = |limit: usize| ApiError::too_large(format!("envelope item '{ty}' is {size} bytes, over the limit of {limit} bytes"));
        match ty {
            "event" | "transaction" | "feedback" | "user_report" | "sessions" | "session" | "check_in" | "client_report" => {
                let limit = if ty == "check_in" { MAX_CHECK_IN_SIZE } else { MAX_EVENT_SIZE };
                if size > limit {
                    return Err(too_large(limit));
                }
                // Syntax only: the digest parses the item for real.
                json::validate_object(item.payload).map_err(|e| ApiError::bad_request(format!("envelope item '{ty}': {e}")))?;
                if ty == "event" || ty == "transaction" {
                    events += 1;
                }
                if ty == "session" {
                    sessions += 1;
                }
                if ty == "sessions" {
                    let v = json::parse_lenient(item.payload).map_err(|e| ApiError::bad_request(format!("envelope item '{ty}': {e}")))?;
                    if v.get("aggregates").and_then(Value::as_array).is_some_and(|a| a.len() > MAX_SESSIONS) {
                        return Err(ApiError::too_large(format!("a 'sessions' item may hold at most {MAX_SESSIONS} aggregates")));
                    }
                }
            }
            "attachment" => {
                if size > MAX_ATTACHMENT_SIZE {
                    return Err(too_large(MAX_ATTACHMENT_SIZE));
                }
                attachments_total += size;
            }
            _ => {}
        }
    }
    if attachments_total > MAX_ATTACHMENT_SIZE {
        return Err(ApiError::too_large(format!("attachments total {attachments_total} bytes, over the limit of {MAX_ATTACHMENT_SIZE} bytes")));
    }
    if sessions > MAX_SESSIONS {
        return Err(ApiError::too_large(format!("an envelope may hold at most {MAX_SESSIONS} sessions")));
    }
    Ok(events)
}

/// `POST /api/{project_id}/envelope/`
async fn envelope(State(state): State<AppState>, Path(project_id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let mut project = None;
    let answer = envelope_inner(&state, &project_id, req, &mut project).await;
    state.refusals.note(project, &answer);
    answer
}

/// Sets `project` once the key is known, so that a refusal counts for it.
async fn envelope_inner(state: &AppState, project_id: &str, req: Request, project: &mut Option<i64>) -> Result<Response, ApiError> {
    let state = state.clone();
    let project_id = parse_project_id(project_id)?;
    let (info, body) = request_info(req, state.settings.trust_forwarded_for);
    // The key is checked before the body is decompressed, so that a request
    // without a valid one costs no decompression (a bomb would cost up to
    // the size limit). The SDKs send it in a header or the query; a tunnel
    // may send it only in the envelope's `dsn` header, so then the header
    // line, and only that, is decoded first.
    let (raw, key) = match request_auth(&info)? {
        Some(auth) => {
            let key = authenticate(&state, &auth, Some(project_id)).await?;
            *project = Some(key.key.project_id);
            (read_body(body, MAX_ENVELOPE_COMPRESSED).await?, key)
        }
        None => {
            let raw = read_body(body, MAX_ENVELOPE_COMPRESSED).await?;
            let head = decompress::decode_prefix(content_encoding(&info.headers), &raw, MAX_HEADER_SIZE + 1).map_err(decode_error)?;
            let headers = Envelope::parse_headers(&head).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let auth = client_auth(&info, headers.get("dsn").and_then(Value::as_str))?;
            let key = authenticate(&state, &auth, Some(project_id)).await?;
            (raw, key)
        }
    };
    *project = Some(key.key.project_id);
    let body = decode_body(&info.headers, &raw, MAX_ENVELOPE_SIZE)?;
    // What the SDKs send is the body gzipped: queue that as it is.
    let gzipped = is_plain_gzip(&info.headers).then_some(raw);
    let env = Envelope::parse(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    // Every place the key may be must name the same one.
    let auth = client_auth(&info, env.dsn())?;
    check_origin(&info, &key)?;
    let events = check_items(&env)?;
    check_limits(&state, &key, events)?;
    check_plugins(&state, key.key.project_id).await?;
    let event_id = env.event_id();
    let empty = env.items.is_empty();
    drop(env);
    if !empty {
        enqueue(&state, vec![QueuedEnvelope { project_id, received: picket_store::now(), meta: meta(&info, &auth), body, gzipped }]).await?;
    }
    Ok(id_response(event_id))
}

/// Wraps a single event payload into an envelope for the queue.
fn event_envelope(event_id: &str, item_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 128);
    out.extend_from_slice(json!({ "event_id": event_id }).to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(json!({ "type": item_type, "length": payload.len() }).to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload);
    out.push(b'\n');
    out
}

/// A transparent 1×1 GIF, the answer to `GET /store/` (image beacons).
const PIXEL_GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00\x21\xf9\x04\x01\x00\x00\x00\x00\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00\x3b";

/// `POST|GET /api/{project_id}/store/`
async fn store(State(state): State<AppState>, Path(project_id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let mut project = None;
    let answer = match parse_project_id(&project_id) {
        Ok(project_id) => store_inner(state.clone(), Some(project_id), req, &mut project).await,
        Err(e) => Err(e),
    };
    state.refusals.note(project, &answer);
    answer
}

/// `POST|GET /api/store/`: the project comes from the key.
async fn store_without_project(State(state): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let mut project = None;
    let answer = store_inner(state.clone(), None, req, &mut project).await;
    state.refusals.note(project, &answer);
    answer
}

async fn store_inner(state: AppState, project_id: Option<i64>, req: Request, project: &mut Option<i64>) -> Result<Response, ApiError> {
    let method = req.method().clone();
    if method != Method::GET && method != Method::POST {
        return Err(ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST (or GET with ?sentry_data=)"));
    }
    let is_envelope = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/x-sentry-envelope"));
    if is_envelope && method == Method::POST {
        if let Some(pid) = project_id {
            return envelope_inner(&state, &pid.to_string(), req, project).await;
        }
    }
    let (info, body) = request_info(req, state.settings.trust_forwarded_for);
    // The key first: a request without a valid one costs no decompression.
    let auth = client_auth(&info, None)?;
    let key = authenticate(&state, &auth, project_id).await?;
    let project_id = key.key.project_id;
    *project = Some(project_id);
    check_origin(&info, &key)?;
    let json_bytes = if method == Method::GET {
        let data = info
            .query
            .split('&')
            .find_map(|kv| kv.strip_prefix("sentry_data="))
            .map(auth::percent_decode)
            .ok_or_else(|| ApiError::bad_request("GET /store/ needs the event in ?sentry_data="))?;
        picket_protocol::store::decode_store_body(data.as_bytes(), MAX_EVENT_SIZE).map_err(|e| ApiError::bad_request(e.to_string()))?
    } else {
        let raw = read_body(body, MAX_ENVELOPE_COMPRESSED).await?;
        let body = decode_body(&info.headers, &raw, MAX_EVENT_SIZE)?;
        picket_protocol::store::decode_store_body(&body, MAX_EVENT_SIZE).map_err(|e| match e {
            decompress::DecodeError::TooLarge { limit } => ApiError::too_large(format!("event exceeds {limit} bytes")),
            other => ApiError::bad_request(other.to_string()),
        })?
    };
    if json_bytes.len() > MAX_EVENT_SIZE {
        return Err(ApiError::too_large(format!("event is {} bytes, over the limit of {MAX_EVENT_SIZE} bytes", json_bytes.len())));
    }
    let value = json::parse_lenient(&json_bytes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let Value::Object(obj) = &value else {
        return Err(ApiError::bad_request("event must be a JSON object"));
    };
    check_limits(&state, &key, 1)?;
    check_plugins(&state, key.key.project_id).await?;
    let event_id = obj
        .get("event_id")
        .and_then(Value::as_str)
        .and_then(picket_protocol::parse_event_id)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let item_type = if obj.get("type").and_then(Value::as_str) == Some("transaction") { "transaction" } else { "event" };
    let body = event_envelope(&event_id, item_type, &json_bytes);
    enqueue(&state, vec![QueuedEnvelope { project_id, received: picket_store::now(), meta: meta(&info, &auth), body, gzipped: None }]).await?;
    if method == Method::GET {
        return Ok(([(header::CONTENT_TYPE, "image/gif")], PIXEL_GIF).into_response());
    }
    Ok(id_response(Some(event_id)))
}

/// `POST /api/{project_id}/security/`: CSP reports from browsers (key in the query).
async fn security_report(State(state): State<AppState>, Path(project_id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let mut project = None;
    let answer = security_report_inner(&state, &project_id, req, &mut project).await;
    state.refusals.note(project, &answer);
    answer
}

async fn security_report_inner(state: &AppState, project_id: &str, req: Request, project: &mut Option<i64>) -> Result<Response, ApiError> {
    let state = state.clone();
    let project_id = parse_project_id(project_id)?;
    let (info, body) = request_info(req, state.settings.trust_forwarded_for);
    let auth = client_auth(&info, None)?;
    let key = authenticate(&state, &auth, Some(project_id)).await?;
    *project = Some(key.key.project_id);
    let raw = read_body(body, MAX_SECURITY_REPORT_SIZE).await?;
    let body = decode_body(&info.headers, &raw, MAX_SECURITY_REPORT_SIZE)?;
    let value = json::parse_lenient(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut events = security::events_from_report(&value).map_err(|e| ApiError::bad_request(e.to_string()))?;
    check_limits(&state, &key, events.len() as i64)?;
    check_plugins(&state, key.key.project_id).await?;
    let user_agent = info.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string);
    let received = picket_store::now();
    let items: Vec<QueuedEnvelope> = events
        .iter_mut()
        .map(|ev| {
            if let Some(ua) = &user_agent {
                ev["request"]["headers"] = json!([["User-Agent", ua]]);
            }
            let id = uuid::Uuid::new_v4().simple().to_string();
            let payload = serde_json::to_vec(ev).unwrap_or_default();
            QueuedEnvelope { project_id, received, meta: meta(&info, &auth), body: event_envelope(&id, "event", &payload), gzipped: None }
        })
        .collect();
    enqueue(&state, items).await?;
    Ok(StatusCode::OK.into_response())
}
