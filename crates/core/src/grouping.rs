//! Grouping: which issue an event belongs to. See `docs/grouping.md` for the
//! rules and their reasons. In short: a custom `fingerprint` wins (with
//! `{{ default }}` and other variables resolved); otherwise exceptions group by
//! type and in-app frames (module or file, function, normalized context
//! line), threads and bare stack traces by frames, CSP reports by directive
//! and blocked host, and messages by their parameterized template.
//!
//! Each event yields up to two hashes, an "app" one (in-app frames only) and
//! a "system" one (all frames); an event joins the issue owning any of them.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::message::normalize_for_grouping;
use crate::title::crash_frame;

/// The version of the default grouping rules; stored with every hash so the
/// rules can change without silently splitting existing issues.
pub const ALGORITHM: &str = "picket:2026-11";

/// Hashes of one event, most specific first, with the algorithm id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupingResult {
    pub algorithm: &'static str,
    pub hashes: Vec<String>,
    /// The human-readable key behind the first hash (for debugging and docs).
    pub key: String,
}

/// Platforms whose context lines are stable enough to group by.
const CONTEXT_LINE_PLATFORMS: &[&str] = &["javascript", "node", "python", "php", "ruby"];
const MAX_CONTEXT_LINE: usize = 120;

/// Computes the grouping hashes of a normalized payload.
pub fn compute(data: &Map<String, Value>, platform: &str) -> GroupingResult {
    compute_with(picket_plugin_api::Registry::global(), data, platform)
}

/// [`compute`] with the interfaces of `registry`.
pub fn compute_with(registry: &picket_plugin_api::Registry, data: &Map<String, Value>, platform: &str) -> GroupingResult {
    let app = default_key(registry, data, platform, Variant::App);
    let system = default_key(registry, data, platform, Variant::System);
    let fingerprint: Option<Vec<String>> = data
        .get("fingerprint")
        .and_then(Value::as_array)
        .map(|fp| fp.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .filter(|fp: &Vec<String>| !fp.is_empty());
    let keys: Vec<String> = match fingerprint {
        Some(fp) if fp.iter().any(|p| is_default_marker(p)) => {
            let mut keys = vec![resolve_fingerprint(&fp, data, &app)];
            if system != app {
                keys.push(resolve_fingerprint(&fp, data, &system));
            }
            keys
        }
        Some(fp) => vec![resolve_fingerprint(&fp, data, &app)],
        None if system != app => vec![app, system],
        None => vec![app],
    };
    GroupingResult { algorithm: ALGORITHM, hashes: keys.iter().map(|k| hash(k)).collect(), key: keys[0].clone() }
}

fn hash(key: &str) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

fn is_default_marker(part: &str) -> bool {
    variable_name(part) == Some("default")
}

fn variable_name(part: &str) -> Option<&str> {
    let inner = part.trim().strip_prefix("{{")?.strip_suffix("}}")?.trim();
    (!inner.is_empty() && !inner.contains(char::is_whitespace)).then_some(inner)
}

/// Resolves `{{ default }}`, `{{ transaction }}`, `{{ type }}`, `{{ function }}`,
/// `{{ module }}`, `{{ message }}`, `{{ level }}`, `{{ logger }}`, `{{ tags.X }}`.
fn resolve_fingerprint(fp: &[String], data: &Map<String, Value>, default_key: &str) -> String {
    let last_exc = data.get("exception").and_then(|e| e.get("values")).and_then(Value::as_array).and_then(|v| v.last());
    let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    let parts: Vec<String> = fp
        .iter()
        .map(|part| match variable_name(part) {
            None => part.clone(),
            Some(name) => match name {
                "default" => default_key.to_string(),
                "transaction" => s(data.get("transaction")).unwrap_or_else(|| "<no-transaction>".into()),
                "type" | "error.type" => s(last_exc.and_then(|e| e.get("type"))).unwrap_or_else(|| "<no-type>".into()),
                "value" | "error.value" => s(last_exc.and_then(|e| e.get("value"))).unwrap_or_else(|| "<no-value>".into()),
                "function" | "stack.function" => s(crash_frame(data).and_then(|f| f.get("function"))).unwrap_or_else(|| "<no-function>".into()),
                "module" | "stack.module" => s(crash_frame(data).and_then(|f| f.get("module"))).unwrap_or_else(|| "<no-module>".into()),
                "package" | "stack.package" => s(crash_frame(data).and_then(|f| f.get("package"))).unwrap_or_else(|| "<no-package>".into()),
                "level" => s(data.get("level")).unwrap_or_else(|| "<no-level>".into()),
                "logger" => s(data.get("logger")).unwrap_or_else(|| "<no-logger>".into()),
                "message" => data
                    .get("logentry")
                    .and_then(|l| l.get("formatted").or_else(|| l.get("message")))
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| "<no-message>".into()),
                other => match other.strip_prefix("tags.") {
                    Some(tag) => tag_value(data, tag).unwrap_or_else(|| format!("<no-value-for-tag-{tag}>")),
                    None => part.clone(),
                },
            },
        })
        .collect();
    format!("fingerprint\u{1f}{}", parts.join("\u{1f}"))
}

fn tag_value(data: &Map<String, Value>, key: &str) -> Option<String> {
    data.get("tags")?.as_array()?.iter().find_map(|p| {
        let p = p.as_array()?;
        (p.first()?.as_str()? == key).then(|| p.get(1)?.as_str().map(str::to_string))?
    })
}

/// Which frames count.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Only in-app frames contribute (when any frame is marked in-app).
    App,
    /// All frames contribute.
    System,
}

/// The default grouping key: the component of the highest-scoring interface
/// that proposes one (Picket's: exceptions, then a single thread's or a bare
/// stack trace, then CSP, then the message); an event with none of them
/// groups by its (empty) message.
fn default_key(registry: &picket_plugin_api::Registry, data: &Map<String, Value>, platform: &str, variant: Variant) -> String {
    crate::interfaces::grouping_component(registry, data, platform, variant).unwrap_or_else(|| "message\u{1e}".to_string())
}

pub(crate) fn frames_of(st: Option<&Value>) -> Option<&Vec<Value>> {
    st.and_then(|s| s.get("frames")).and_then(Value::as_array).filter(|f| !f.is_empty())
}

pub(crate) fn exception_component(exc: &Value, platform: &str, variant: Variant) -> String {
    let synthetic = exc.get("mechanism").and_then(|m| m.get("synthetic")).and_then(Value::as_bool) == Some(true);
    let ty = if synthetic { "" } else { exc.get("type").and_then(Value::as_str).unwrap_or_default() };
    let frames = frames_of(exc.get("stacktrace")).and_then(|f| frames_component(f, platform, variant));
    match frames {
        // The stack trace takes precedence over the message: a changed
        // message from the same place is the same problem.
        Some(frames) => format!("{ty}\u{1d}{frames}"),
        None => {
            let value = exc.get("value").and_then(Value::as_str).unwrap_or_default();
            format!("{ty}\u{1d}value:{}", normalize_for_grouping(value))
        }
    }
}

/// Frame components joined; `None` when no frame contributes.
pub(crate) fn frames_component(frames: &[Value], platform: &str, variant: Variant) -> Option<String> {
    // Each frame's fields are read in one pass over its keys: this runs for
    // every frame of every event, twice (both variants), and a lookup per
    // field was most of grouping's cost.
    let frames: Vec<FrameFields<'_>> = frames.iter().map(FrameFields::of).collect();
    let any_in_app = frames.iter().any(|f| f.in_app == Some(true));
    let mut out = String::new();
    let mut previous: Option<&FrameFields<'_>> = None;
    for frame in &frames {
        if variant == Variant::App && any_in_app && frame.in_app != Some(true) {
            continue;
        }
        if previous.is_some_and(|p| p.same_location(frame)) {
            continue; // recursion: the same frame again adds nothing
        }
        previous = Some(frame);
        let frame_platform = frame.platform.and_then(Value::as_str).unwrap_or(platform);
        let mark = out.len();
        if !out.is_empty() {
            out.push('\u{1c}');
        }
        if !frame_component(frame, frame_platform, &mut out) {
            out.truncate(mark);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The fields of a frame that grouping reads.
#[derive(Default)]
struct FrameFields<'a> {
    abs_path: Option<&'a Value>,
    colno: Option<&'a Value>,
    context_line: Option<&'a Value>,
    filename: Option<&'a Value>,
    function: Option<&'a Value>,
    in_app: Option<bool>,
    lineno: Option<&'a Value>,
    module: Option<&'a Value>,
    package: Option<&'a Value>,
    platform: Option<&'a Value>,
    raw_function: Option<&'a Value>,
}

impl<'a> FrameFields<'a> {
    fn of(frame: &'a Value) -> FrameFields<'a> {
        let mut f = FrameFields::default();
        for (key, value) in frame.as_object().into_iter().flatten() {
            match key.as_str() {
                "abs_path" => f.abs_path = Some(value),
                "colno" => f.colno = Some(value),
                "context_line" => f.context_line = Some(value),
                "filename" => f.filename = Some(value),
                "function" => f.function = Some(value),
                "in_app" => f.in_app = value.as_bool(),
                "lineno" => f.lineno = Some(value),
                "module" => f.module = Some(value),
                "package" => f.package = Some(value),
                "platform" => f.platform = Some(value),
                "raw_function" => f.raw_function = Some(value),
                _ => {}
            }
        }
        f
    }

    fn same_location(&self, other: &FrameFields<'_>) -> bool {
        // The fields that differ most often between neighbouring frames first.
        self.lineno == other.lineno
            && self.function == other.function
            && self.colno == other.colno
            && self.filename == other.filename
            && self.module == other.module
            && self.abs_path == other.abs_path
            && self.package == other.package
    }
}

/// A string field, trimmed; `None` when missing, not a string or blank.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// Appends the frame's component (location, function, context line) to
/// `out`; false when the frame contributes nothing (`out` may then hold part
/// of it: the caller truncates).
fn frame_component(frame: &FrameFields<'_>, platform: &str, out: &mut String) -> bool {
    let is_js = matches!(platform, "javascript" | "node");
    let abs_path = text(frame.abs_path).unwrap_or_default();
    if is_js && matches!(abs_path, "[native code]" | "native code" | "eval code" | "<anonymous>") {
        return false;
    }
    let module = text(frame.module).map(normalize_module);
    let filename = text(frame.filename).or(text(frame.abs_path)).filter(|_| {
        // URLs carry build hashes and hosts: not a stable identity.
        !(is_js && (abs_path.starts_with("http://") || abs_path.starts_with("https://") || abs_path.starts_with("blob:")))
            && !matches!(abs_path, "<anonymous>" | "[native code]")
    });
    let function = text(frame.function).or(text(frame.raw_function)).and_then(|f| normalize_function(f, is_js));
    let context =
        if CONTEXT_LINE_PLATFORMS.contains(&platform) { text(frame.context_line).filter(|l| l.len() <= MAX_CONTEXT_LINE) } else { None };
    if module.is_none() && filename.is_none() && function.is_none() && context.is_none() {
        return false;
    }
    match (module, filename) {
        (Some(module), _) => out.push_str(&module),
        (None, Some(file)) => {
            let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
            if base.is_ascii() {
                out.extend(base.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            } else {
                out.push_str(&base.to_lowercase());
            }
        }
        (None, None) => {}
    }
    out.push('\u{1f}');
    out.push_str(function.unwrap_or_default());
    out.push('\u{1f}');
    // Whitespace runs collapse to one space: indentation changes are not a new problem.
    for (i, word) in context.into_iter().flat_map(str::split_whitespace).enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(word);
    }
    true
}

/// Generated class names (Java lambdas, proxies) change between builds.
fn normalize_module(m: &str) -> std::borrow::Cow<'_, str> {
    static GENERATED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"\$\$Lambda\$[^.]*|GeneratedMethodAccessor\d+|\$\$EnhancerByCGLIB\$\$[0-9a-f]+|\$fn__\d+").expect("static regex")
    });
    // Every pattern has a `$` or "GeneratedMethodAccessor": most modules have neither.
    if !m.contains('$') && !m.contains("GeneratedMethodAccessor") {
        return m.into();
    }
    GENERATED.replace_all(m, "<auto>")
}

fn normalize_function(f: &str, is_js: bool) -> Option<&str> {
    if is_js {
        if matches!(f, "?" | "<anonymous>" | "<anonymous function>" | "Anonymous function") || f.ends_with("/<") {
            return None;
        }
        // `Object.foo` / `Module.exports.foo` → `foo`: the receiver varies.
        return Some(f.rsplit('.').next().unwrap_or(f));
    }
    if f.starts_with("lambda$") || f == "<redacted>" || f == "<unknown>" {
        return None;
    }
    Some(f)
}

#[cfg(test)]
mod tests;
