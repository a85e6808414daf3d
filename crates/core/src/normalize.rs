//! Normalization: makes every payload look like the current protocol, so the
//! rest of Picket reads one shape. Lenient: a field of the wrong type is
//! coerced when the intent is clear and dropped (with a note in `errors`)
//! when it is not; the event itself is never refused for a bad field.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde_json::{json, Map, Value};

use picket_plugin_api::{Event, NormalizeContext, Registry};

use crate::{grouping, title};

/// Event severity, ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Debug,
    Info,
    Warning,
    Error,
    Fatal,
}

impl Level {
    /// The wire name (`"warning"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }

    /// Parses a level from a name, an alias, or a Python logging number.
    pub fn parse(v: &Value) -> Option<Level> {
        match v {
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "debug" | "trace" => Some(Level::Debug),
                "info" | "log" | "notice" => Some(Level::Info),
                "warning" | "warn" => Some(Level::Warning),
                "error" | "err" => Some(Level::Error),
                "fatal" | "critical" => Some(Level::Fatal),
                other => other.parse::<i64>().ok().and_then(Level::from_python),
            },
            Value::Number(n) => n.as_f64().and_then(|f| Level::from_python(f as i64)),
            _ => None,
        }
    }

    fn from_python(n: i64) -> Option<Level> {
        match n {
            0..=10 => Some(Level::Debug),
            11..=20 => Some(Level::Info),
            21..=30 => Some(Level::Warning),
            31..=40 => Some(Level::Error),
            41..=50 => Some(Level::Fatal),
            _ => None,
        }
    }
}

/// What the event is, inferred by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Default,
    Error,
    Csp,
    Transaction,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Default => "default",
            EventType::Error => "error",
            EventType::Csp => "csp",
            EventType::Transaction => "transaction",
        }
    }
}

/// Facts about the request an event arrived in.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// When Picket received the event (Unix seconds).
    pub received: f64,
    /// The envelope's `sent_at`, for clock-drift correction.
    pub sent_at: Option<f64>,
    /// The envelope header `event_id`, which wins over the payload's.
    pub event_id: Option<String>,
    /// The client's address, for `{{auto}}` IPs.
    pub client_ip: Option<String>,
    /// The SDK from the envelope header or the auth `sentry_client`.
    pub sdk: Option<Value>,
    /// The project the event was sent to.
    pub project_id: i64,
}

impl Context {
    /// A context with only the receive time set.
    pub fn at(received: f64) -> Context {
        Context { received, ..Context::default() }
    }
}

/// A normalized event with everything the store needs.
#[derive(Debug, Clone)]
pub struct NormalizedEvent {
    pub event_id: String,
    /// Event time, Unix seconds.
    pub timestamp: f64,
    pub received: f64,
    pub level: Level,
    pub event_type: EventType,
    pub platform: String,
    pub title: String,
    pub culprit: String,
    /// Text searched by free-text queries (title, culprit, message, exception values).
    pub search_text: String,
    pub release: Option<String>,
    pub environment: Option<String>,
    /// Tags, including the derived ones (`level`, `environment`, ...), deduplicated by key.
    pub tags: Vec<(String, String)>,
    /// A stable identity of the user, for the distinct-user count.
    pub user_key: Option<String>,
    /// Grouping hashes, the most specific first, and the algorithm that made them.
    pub grouping: grouping::GroupingResult,
    /// Aggregate views (slugs) the event's issue belongs to.
    pub views: Vec<&'static str>,
    /// The normalized payload as stored.
    pub data: Map<String, Value>,
}

/// Why an event payload was refused outright.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("event payload must be a JSON object, got {0}")]
    NotAnObject(&'static str),
}

const VALID_PLATFORMS: &[&str] = &[
    "as3", "c", "cfml", "cocoa", "csharp", "elixir", "go", "groovy", "haskell", "java", "javascript", "native", "node", "objc",
    "other", "perl", "php", "python", "ruby", "rust", "dart", "kotlin", "swift",
];

/// Relay's limits, in characters.
pub(crate) mod max_chars {
    pub const LOGGER: usize = 64;
    pub const CULPRIT: usize = 200;
    pub const SERVER_NAME: usize = 256;
    pub const RELEASE: usize = 200;
    pub const ENVIRONMENT: usize = 64;
    pub const DIST: usize = 64;
    pub const MESSAGE: usize = 8192;
    pub const TAG_KEY: usize = 200;
    pub const TAG_VALUE: usize = 200;
    pub const EXCEPTION_TYPE: usize = 256;
    pub const EXCEPTION_VALUE: usize = 8192;
    pub const TRANSACTION: usize = 200;
}

const MAX_TAGS: usize = 200;
/// Timestamps further ahead than this are reset to the receive time.
const MAX_SECS_IN_FUTURE: f64 = 60.0;
/// Timestamps older than this are reset to the receive time.
const MAX_SECS_IN_PAST: f64 = 30.0 * 86400.0;
/// Smaller differences between `sent_at` and receive time are not corrected.
const MIN_CLOCK_DRIFT_SECS: f64 = 55.0 * 60.0;

/// Normalizes an event payload. Only a payload that is not an object is refused.
pub fn normalize(raw: Value, ctx: &Context) -> Result<NormalizedEvent, NormalizeError> {
    normalize_with(raw, ctx, Registry::global(), &NoHooks)
}

/// What plugins do to an event on its way in (see [`crate::plugins`]).
pub trait EventHooks {
    /// Changes the normalized payload before title, tags and grouping are computed.
    fn preprocess(&self, _data: &mut Map<String, Value>) {}
    /// Tags to add, computed from the event before it is grouped.
    fn extra_tags(&self, _event: &Event) -> Vec<(String, String)> {
        Vec::new()
    }
}

/// No plugins.
pub struct NoHooks;
impl EventHooks for NoHooks {}

/// [`normalize`] with the interfaces of `registry` and the hooks of the project's plugins.
pub fn normalize_with(raw: Value, ctx: &Context, registry: &Registry, hooks: &dyn EventHooks) -> Result<NormalizedEvent, NormalizeError> {
    let mut data = match raw {
        Value::Object(m) => m,
        other => return Err(NormalizeError::NotAnObject(picket_protocol::json::type_name(&other))),
    };
    let mut errors: Vec<Value> = Vec::new();

    crate::interfaces::apply_aliases(registry, &mut data);

    let event_id = ctx
        .event_id
        .clone()
        .or_else(|| data.get("event_id").and_then(Value::as_str).and_then(picket_protocol::parse_event_id))
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    data.insert("event_id".into(), json!(event_id));

    // Timestamps, with clock drift correction when the envelope says when it was sent.
    let drift = ctx.sent_at.map(|s| ctx.received - s).filter(|d| d.abs() >= MIN_CLOCK_DRIFT_SECS).unwrap_or(0.0);
    let mut timestamp = match data.get("timestamp").map(parse_timestamp) {
        Some(Some(t)) => t + drift,
        Some(None) => {
            errors.push(json!({"type": "invalid_data", "name": "timestamp"}));
            ctx.received
        }
        None => ctx.received,
    };
    if timestamp > ctx.received + MAX_SECS_IN_FUTURE {
        errors.push(json!({"type": "future_timestamp", "name": "timestamp"}));
        timestamp = ctx.received;
    } else if timestamp < ctx.received - MAX_SECS_IN_PAST {
        errors.push(json!({"type": "past_timestamp", "name": "timestamp"}));
        timestamp = ctx.received;
    }
    data.insert("timestamp".into(), json!(timestamp));
    if let Some(start) = data.get("start_timestamp").and_then(parse_timestamp) {
        data.insert("start_timestamp".into(), json!(start + drift));
    }
    data.insert("received".into(), json!(ctx.received));

    let is_transaction = data.get("type").and_then(Value::as_str) == Some("transaction");
    let level = match data.get("level") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let l = Level::parse(v);
            if l.is_none() {
                errors.push(json!({"type": "invalid_data", "name": "level", "value": v}));
            }
            l
        }
    }
    .unwrap_or(if is_transaction { Level::Info } else { Level::Error });
    data.insert("level".into(), json!(level.as_str()));

    let platform = data
        .get("platform")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .filter(|p| VALID_PLATFORMS.contains(&p.as_str()))
        .unwrap_or_else(|| "other".to_string());
    data.insert("platform".into(), json!(platform));

    normalize_message(&mut data);
    let interface_ctx = NormalizeContext::new(ctx.received, drift, ctx.client_ip.clone());
    crate::interfaces::normalize_all(registry, &mut data, &interface_ctx, &mut errors);
    if data.get("sdk").is_none_or(|s| !s.is_object()) {
        if let Some(sdk) = &ctx.sdk {
            data.insert("sdk".into(), sdk.clone());
        }
    }
    if let Some(Value::Array(fp)) = data.get_mut("fingerprint") {
        for part in fp.iter_mut() {
            if !part.is_string() {
                *part = Value::String(value_to_string(part));
            }
        }
    } else {
        data.remove("fingerprint");
    }

    // Plain string fields: coerce numbers, trim to limits, drop empties.
    for (key, limit) in [
        ("logger", max_chars::LOGGER),
        ("culprit", max_chars::CULPRIT),
        ("transaction", max_chars::TRANSACTION),
        ("server_name", max_chars::SERVER_NAME),
        ("release", max_chars::RELEASE),
        ("environment", max_chars::ENVIRONMENT),
        ("dist", max_chars::DIST),
        ("site", max_chars::TAG_VALUE),
    ] {
        let s = data.get(key).and_then(|v| match v {
            Value::String(s) => Some(s.trim().to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        match s {
            Some(s) if !s.is_empty() && !s.contains(['\n', '\r']) => {
                data.insert(key.into(), json!(truncate(&s, limit)));
            }
            _ => {
                data.remove(key);
            }
        }
    }

    hooks.preprocess(&mut data);

    let event_type = if is_transaction {
        EventType::Transaction
    } else if data.get("csp").is_some_and(Value::is_object) {
        EventType::Csp
    } else if has_exception(&data) {
        EventType::Error
    } else {
        EventType::Default
    };
    data.insert("type".into(), json!(event_type.as_str()));

    let mut tags = collect_tags(&mut data, level);
    let (title, culprit) = title::title_and_culprit(&data, &platform, event_type);
    if !data.contains_key("culprit") && !culprit.is_empty() {
        data.insert("culprit".into(), json!(culprit));
    }
    let culprit = data.get("culprit").and_then(Value::as_str).unwrap_or(&culprit).to_string();
    data.insert("title".into(), json!(title));
    // Plugins' tags and the aggregate views see the event as it will be stored.
    let event = Event::from_data(ctx.project_id, std::mem::take(&mut data));
    let extra = hooks.extra_tags(&event);
    let views = views_for(registry, &event);
    data = event.data;
    if !extra.is_empty() {
        // A plugin adds tags; it does not replace one the event has (the
        // SDK's own or a derived one) or one an earlier plugin added, as in
        // Sentry: "plugins should not override user provided tags".
        for (k, v) in extra {
            add_tag(&mut tags, k, v, Existing::Keep);
        }
        data.insert("tags".into(), Value::Array(tags.iter().map(|(k, v)| json!([k, v])).collect()));
    }
    let search_text = search_text(registry, &data, &title, &culprit);
    let user_key = user_key(&data);
    let grouping = grouping::compute_with(registry, &data, &platform);
    if !errors.is_empty() {
        let list = data.entry("errors").or_insert_with(|| json!([]));
        if let Value::Array(l) = list {
            l.extend(errors);
        }
    }
    data.remove("_meta");

    Ok(NormalizedEvent {
        event_id,
        timestamp,
        received: ctx.received,
        level,
        event_type,
        release: data.get("release").and_then(Value::as_str).map(String::from),
        environment: data.get("environment").and_then(Value::as_str).map(String::from),
        platform,
        title,
        culprit,
        search_text,
        tags,
        user_key,
        grouping,
        views,
        data,
    })
}

/// The aggregate views whose `should_store` accepts the event.
fn views_for(registry: &Registry, event: &Event) -> Vec<&'static str> {
    registry
        .views()
        .iter()
        .filter(|v| crate::plugins::guarded("view", v.slug(), "should_store", || v.should_store(event)).unwrap_or(false))
        .map(|v| v.slug())
        .collect()
}

/// Parses an RFC 3339 string (timezone optional, UTC assumed) or a number of seconds.
pub fn parse_timestamp(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e11),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(f) = s.parse::<f64>() {
                return Some(f).filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e11);
            }
            if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
                return Some(dt.timestamp_micros() as f64 / 1e6);
            }
            let naive = s.trim_end_matches('Z');
            for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S%.f"] {
                if let Ok(dt) = NaiveDateTime::parse_from_str(naive, fmt) {
                    return Some(dt.and_utc().timestamp_micros() as f64 / 1e6);
                }
            }
            None
        }
        _ => None,
    }
}

/// Formats Unix seconds as RFC 3339 with milliseconds, as Sentry's API does.
pub fn format_timestamp(t: f64) -> String {
    DateTime::<Utc>::from_timestamp_micros((t * 1e6) as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `message` may be a string or an object; `logentry` is the current name.
/// Merges the two; the message interface then formats and trims it.
fn normalize_message(data: &mut Map<String, Value>) {
    let message = data.remove("message");
    let mut entry = match data.remove("logentry") {
        Some(Value::Object(m)) => m,
        Some(Value::String(s)) => Map::from_iter([("formatted".to_string(), json!(s))]),
        _ => Map::new(),
    };
    match message {
        Some(Value::String(s)) if !entry.contains_key("formatted") && !entry.contains_key("message") => {
            entry.insert("formatted".into(), json!(s));
        }
        Some(Value::Object(m)) if entry.is_empty() => entry = m,
        _ => {}
    }
    if !entry.is_empty() {
        data.insert("logentry".into(), Value::Object(entry));
    }
}

/// `%s`, `%d`, `%r`... with positional params, `%(name)s` with named ones, `{}`/`{0}` braces.
pub(crate) fn format_params(template: &str, params: Option<&Value>) -> String {
    let Some(params) = params else { return template.to_string() };
    let mut out = String::with_capacity(template.len() + 16);
    let mut positional = params.as_array().map(|a| a.iter()).into_iter().flatten();
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.peek().map(|&(_, c)| c) {
            Some('%') => {
                chars.next();
                out.push('%');
            }
            Some('(') => {
                let rest = &template[i + 2..];
                match (rest.find(')'), params.as_object()) {
                    (Some(close), Some(obj)) => {
                        let name = &rest[..close];
                        out.push_str(&obj.get(name).map(value_to_string).unwrap_or_default());
                        // Skip past ")" (a byte index), then the conversion character.
                        let close_at = i + 2 + close;
                        while chars.peek().is_some_and(|&(j, _)| j <= close_at) {
                            chars.next();
                        }
                        while let Some(&(_, c)) = chars.peek() {
                            chars.next();
                            if c.is_ascii_alphabetic() {
                                break;
                            }
                        }
                    }
                    _ => out.push('%'),
                }
            }
            Some(_) => {
                // flags, width, precision, then the conversion letter
                let mut spec = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    chars.next();
                    spec.push(c);
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
                match positional.next() {
                    Some(v) => out.push_str(&value_to_string(v)),
                    None => {
                        out.push('%');
                        out.push_str(&spec);
                    }
                }
            }
            None => out.push('%'),
        }
    }
    out
}

fn has_exception(data: &Map<String, Value>) -> bool {
    data.get("exception")
        .and_then(|e| e.get("values"))
        .and_then(Value::as_array)
        .is_some_and(|v| !v.is_empty())
}

/// Most frames kept per stack trace, as Relay: the outermost
/// [`KEEP_OUTER_FRAMES`] and the innermost rest (where the error happened).
const MAX_FRAMES: usize = 250;
const KEEP_OUTER_FRAMES: usize = 50;

pub(crate) fn normalize_stacktrace(st: Option<&mut Value>) {
    let Some(st) = st else { return };
    let Some(obj) = st.as_object_mut() else {
        *st = Value::Null;
        return;
    };
    let mut frames: Vec<Value> = match obj.remove("frames") {
        Some(Value::Array(f)) => f.into_iter().filter(Value::is_object).collect(),
        _ => vec![],
    };
    if frames.len() > MAX_FRAMES {
        // Frames run outermost first: drop from the middle, say which.
        let end = frames.len() - (MAX_FRAMES - KEEP_OUTER_FRAMES);
        frames.drain(KEEP_OUTER_FRAMES..end);
        obj.insert("frames_omitted".into(), json!([KEEP_OUTER_FRAMES, end]));
    }
    obj.insert("frames".into(), Value::Array(frames));
}

pub(crate) fn to_pairs(v: Value) -> Vec<Value> {
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match v {
                    Value::Array(list) => {
                        for item in list {
                            out.push(json!([k, value_to_string(&item)]));
                        }
                    }
                    Value::Null => {}
                    other => out.push(json!([k, value_to_string(&other)])),
                }
            }
        }
        Value::Array(list) => {
            for pair in list {
                if let Value::Array(p) = pair {
                    if let (Some(k), Some(v)) = (p.first(), p.get(1)) {
                        out.push(json!([value_to_string(k), value_to_string(v)]));
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Adds a tag (trimmed to the limits; a key already present takes the new value).
fn push_tag(tags: &mut Vec<(String, String)>, k: String, v: String) {
    add_tag(tags, k, v, Existing::Replace);
}

/// What [`add_tag`] does with a key the event already has.
#[derive(Clone, Copy, PartialEq)]
enum Existing {
    Replace,
    Keep,
}

fn add_tag(tags: &mut Vec<(String, String)>, k: String, v: String, existing: Existing) {
    let k = trim_to(k, max_chars::TAG_KEY);
    let v = trim_to(v, max_chars::TAG_VALUE);
    if k.is_empty() || v.is_empty() || k.contains(char::is_control) || v.contains(['\n', '\r']) {
        return;
    }
    if let Some(present) = tags.iter_mut().find(|(ek, _)| *ek == k) {
        if existing == Existing::Replace {
            present.1 = v;
        }
    } else if tags.len() < MAX_TAGS {
        tags.push((k, v));
    }
}

/// `s` trimmed and cut to `max` characters; the common case (already
/// trimmed, no more bytes than `max`) keeps the string without a copy.
fn trim_to(s: String, max: usize) -> String {
    let trimmed = s.trim();
    if trimmed.len() == s.len() && s.len() <= max {
        return s;
    }
    truncate(trimmed, max)
}

/// Tags from the payload (map or pairs) plus the derived ones, as Sentry shows them.
fn collect_tags(data: &mut Map<String, Value>, level: Level) -> Vec<(String, String)> {
    let mut tags: Vec<(String, String)> = Vec::new();
    match data.remove("tags") {
        Some(Value::Object(m)) => {
            for (k, v) in m {
                if !v.is_null() {
                    push_tag(&mut tags, k, value_to_string(&v));
                }
            }
        }
        Some(Value::Array(list)) => {
            for pair in list {
                if let Value::Array(p) = pair {
                    if let (Some(k), Some(v)) = (p.first(), p.get(1)) {
                        if !v.is_null() {
                            push_tag(&mut tags, value_to_string(k), value_to_string(v));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    push_tag(&mut tags, "level".into(), level.as_str().into());
    for (key, tag) in [("environment", "environment"), ("release", "release"), ("dist", "dist"), ("logger", "logger"), ("transaction", "transaction")] {
        if let Some(v) = data.get(key).and_then(Value::as_str) {
            push_tag(&mut tags, tag.into(), v.to_string());
        }
    }
    if let Some(user) = data.get("user").and_then(Value::as_object) {
        let ident = [("id", "id"), ("email", "email"), ("username", "username"), ("ip_address", "ip")]
            .iter()
            .find_map(|(field, prefix)| user.get(*field).and_then(Value::as_str).filter(|s| !s.is_empty()).map(|v| format!("{prefix}:{v}")));
        if let Some(ident) = ident {
            push_tag(&mut tags, "user".into(), ident);
        }
    }
    // server_name, site and url come from the built-in tag plugins (servers, sites, urls).
    if let Some(contexts) = data.get("contexts").and_then(Value::as_object) {
        for (ctx, tag) in [("browser", "browser"), ("os", "os"), ("runtime", "runtime"), ("device", "device")] {
            if let Some(c) = contexts.get(ctx).and_then(Value::as_object) {
                let name = c.get("name").and_then(Value::as_str).or_else(|| c.get("model").and_then(Value::as_str));
                if let Some(name) = name {
                    let version = c.get("version").and_then(Value::as_str);
                    let v = match version {
                        Some(ver) => format!("{name} {ver}"),
                        None => name.to_string(),
                    };
                    push_tag(&mut tags, tag.into(), v);
                }
            }
        }
    }
    if let Some(m) = data.get("exception").and_then(|e| e.get("values")).and_then(Value::as_array).and_then(|v| v.last()).and_then(|e| e.get("mechanism")) {
        if let Some(handled) = m.get("handled").and_then(Value::as_bool) {
            push_tag(&mut tags, "handled".into(), if handled { "yes" } else { "no" }.into());
        }
        if let Some(t) = m.get("type").and_then(Value::as_str) {
            push_tag(&mut tags, "mechanism".into(), t.into());
        }
    }
    data.insert("tags".into(), Value::Array(tags.iter().map(|(k, v)| json!([k, v])).collect()));
    tags
}

fn user_key(data: &Map<String, Value>) -> Option<String> {
    let user = data.get("user")?.as_object()?;
    ["id", "email", "username", "ip_address"]
        .iter()
        .find_map(|f| user.get(*f).and_then(Value::as_str).filter(|s| !s.is_empty()).map(|v| format!("{f}:{v}")))
}

fn search_text(registry: &Registry, data: &Map<String, Value>, title: &str, culprit: &str) -> String {
    let mut parts = vec![title.to_string(), culprit.to_string()];
    parts.extend(crate::interfaces::search_terms(registry, data));
    let mut text = parts.join("\n");
    text.truncate(text.floor_char_boundary(16 * 1024));
    text
}

/// Stringifies a scalar the way a person would expect (`42`, `true`, `"x"` → `x`).
pub fn value_to_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Truncates to at most `max` characters, on a character boundary.
pub fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests;
