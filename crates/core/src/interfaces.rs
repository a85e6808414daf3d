//! Picket's built-in Data Interfaces, written against the public
//! [`Interface`] trait and registered like a third party's. Each owns one
//! payload key (and its legacy `sentry.interfaces.*` alias): it normalizes
//! its part, proposes a grouping component (highest score first), renders
//! itself as HTML and text, and offers search terms.

use picket_plugin_api::html::escape;
use picket_plugin_api::{register_interface, GroupingContext, Html, Interface, NormalizeContext};
use serde_json::{json, Map, Value};

use crate::grouping::{self, Variant};
use crate::message::normalize_for_grouping;
use crate::normalize::{max_chars, parse_timestamp, truncate, value_to_string};

fn variant(ctx: &GroupingContext<'_>) -> Variant {
    if ctx.in_app_only {
        Variant::App
    } else {
        Variant::System
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Runs an interface method, turning a panic (from a plugin's interface) into `None`.
fn guarded<T>(key: &str, method: &str, f: impl FnOnce() -> T) -> Option<T> {
    crate::plugins::guarded("interface", key, method, f)
}

// ---------------------------------------------------------------- message

/// `logentry` (legacy `sentry.interfaces.Message`): the log message, its template and params.
#[derive(Default)]
pub struct MessageInterface;
register_interface!(MessageInterface);

impl Interface for MessageInterface {
    fn key(&self) -> &'static str {
        "logentry"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Message"]
    }
    fn title(&self) -> &'static str {
        "Message"
    }
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        let entry = match value {
            Value::Object(m) => m,
            Value::String(s) => {
                *value = json!({"formatted": s});
                value.as_object_mut().expect("just built")
            }
            _ => return Err("logentry must be an object or a string".into()),
        };
        if let Some(Value::String(template)) = entry.get("message") {
            if !entry.get("formatted").is_some_and(Value::is_string) {
                let formatted = crate::normalize::format_params(template, entry.get("params"));
                entry.insert("formatted".into(), json!(formatted));
            }
        }
        for key in ["message", "formatted"] {
            match entry.get(key) {
                Some(Value::String(s)) => {
                    let t = truncate(s, max_chars::MESSAGE);
                    entry.insert(key.into(), json!(t));
                }
                Some(_) => {
                    entry.remove(key);
                }
                None => {}
            }
        }
        if entry.get("message") == entry.get("formatted") {
            entry.remove("message");
        }
        if !entry.contains_key("formatted") && !entry.contains_key("message") {
            *value = Value::Null;
        }
        Ok(())
    }
    fn grouping_component(&self, value: &Value, _ctx: &GroupingContext<'_>) -> Option<String> {
        // The template groups, not the formatted text: "User 1 failed" and "User 2 failed" are one issue.
        let message = value.get("message").or_else(|| value.get("formatted")).and_then(Value::as_str).unwrap_or_default();
        Some(format!("message\u{1e}{}", normalize_for_grouping(message)))
    }
    fn to_html(&self, value: &Value) -> Html {
        let text = str_of(value, "formatted").or_else(|| str_of(value, "message")).unwrap_or_default();
        let mut out = format!("<pre class=\"message\">{}</pre>", escape(text));
        if let (Some(template), Some(_)) = (str_of(value, "message"), value.get("params")) {
            out.push_str(&format!("<p class=\"template\">Template: <code>{}</code></p>", escape(template)));
        }
        Html::trusted(out)
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        str_of(value, "formatted").or_else(|| str_of(value, "message")).map(str::to_string)
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        ["formatted", "message"].iter().filter_map(|k| str_of(value, k)).map(str::to_string).collect()
    }
}

// -------------------------------------------------------------- exception

/// `exception` (legacy `sentry.interfaces.Exception`): a chain of exceptions, each with a stack trace.
#[derive(Default)]
pub struct ExceptionInterface;
register_interface!(ExceptionInterface);

impl Interface for ExceptionInterface {
    fn key(&self) -> &'static str {
        "exception"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Exception"]
    }
    fn title(&self) -> &'static str {
        "Exception"
    }
    fn score(&self) -> i32 {
        2000
    }
    /// A list, `{values}`, or one bare exception → `{values: [...]}`.
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        let values = match value.take() {
            Value::Array(list) => list,
            Value::Object(mut m) => match m.remove("values") {
                Some(Value::Array(list)) => list,
                Some(Value::Null) | None if m.contains_key("type") || m.contains_key("value") => vec![Value::Object(m)],
                _ => vec![],
            },
            _ => vec![],
        };
        let values: Vec<Value> = values
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(mut e) => {
                    for (key, limit) in [("type", max_chars::EXCEPTION_TYPE), ("value", max_chars::EXCEPTION_VALUE), ("module", max_chars::EXCEPTION_TYPE)] {
                        match e.get(key) {
                            None | Some(Value::Null) => {
                                e.remove(key);
                            }
                            Some(v) => {
                                let s = value_to_string(v);
                                e.insert(key.into(), json!(truncate(&s, limit)));
                            }
                        }
                    }
                    if !e.contains_key("type") && !e.contains_key("value") {
                        return None;
                    }
                    crate::normalize::normalize_stacktrace(e.get_mut("stacktrace"));
                    crate::normalize::normalize_stacktrace(e.get_mut("raw_stacktrace"));
                    Some(Value::Object(e))
                }
                _ => None,
            })
            .collect();
        *value = if values.is_empty() { Value::Null } else { values_object(values) };
        Ok(())
    }
    fn grouping_component(&self, value: &Value, ctx: &GroupingContext<'_>) -> Option<String> {
        let values = value.get("values").and_then(Value::as_array).filter(|v| !v.is_empty())?;
        let parts: Vec<String> = values.iter().map(|e| grouping::exception_component(e, ctx.platform, variant(ctx))).collect();
        Some(format!("exception\u{1e}{}", parts.join("\u{1e}")))
    }
    fn to_html(&self, value: &Value) -> Html {
        let mut out = String::new();
        // Most recent (the one that was raised last) first, as Sentry shows them.
        for e in value.get("values").and_then(Value::as_array).into_iter().flatten().rev() {
            let ty = str_of(e, "type").unwrap_or("Error");
            out.push_str(&format!("<div class=\"exception\"><h4><span class=\"type\">{}</span>", escape(ty)));
            if let Some(v) = str_of(e, "value") {
                out.push_str(&format!(": <span class=\"value\">{}</span>", escape(v)));
            }
            out.push_str("</h4>");
            if let Some(frames) = e.get("stacktrace").and_then(|s| s.get("frames")).and_then(Value::as_array) {
                out.push_str(&frames_html(frames));
            }
            out.push_str("</div>");
        }
        Html::trusted(out)
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        let mut out = String::new();
        for e in value.get("values").and_then(Value::as_array).into_iter().flatten() {
            if let Some(frames) = e.get("stacktrace").and_then(|s| s.get("frames")).and_then(Value::as_array) {
                out.push_str(&frames_text(frames));
            }
            out.push_str(&format!("{}: {}\n", str_of(e, "type").unwrap_or("Error"), str_of(e, "value").unwrap_or_default()));
        }
        Some(out)
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        let mut terms = Vec::new();
        for e in value.get("values").and_then(Value::as_array).into_iter().flatten() {
            for k in ["type", "value"] {
                if let Some(s) = str_of(e, k) {
                    terms.push(s.to_string());
                }
            }
        }
        terms
    }
}

fn frames_html(frames: &[Value]) -> String {
    let mut out = String::from("<ol class=\"frames\">");
    for f in frames.iter().rev() {
        let file = str_of(f, "filename").or_else(|| str_of(f, "abs_path")).or_else(|| str_of(f, "module")).unwrap_or("?");
        let func = str_of(f, "function").unwrap_or("?");
        let line = f.get("lineno").map(value_to_string).unwrap_or_default();
        let in_app = if f.get("in_app").and_then(Value::as_bool) == Some(true) { " in-app" } else { "" };
        out.push_str(&format!("<li class=\"frame{in_app}\"><code>{}</code> in <code>{}</code>", escape(file), escape(func)));
        if !line.is_empty() {
            out.push_str(&format!(" at line {}", escape(&line)));
        }
        if let Some(ctx) = str_of(f, "context_line") {
            out.push_str(&format!("<pre class=\"context\">{}</pre>", escape(ctx)));
        }
        out.push_str("</li>");
    }
    out.push_str("</ol>");
    out
}

fn frames_text(frames: &[Value]) -> String {
    let mut out = String::from("Stacktrace (most recent call last):\n");
    for f in frames {
        let file = str_of(f, "filename").or_else(|| str_of(f, "abs_path")).or_else(|| str_of(f, "module")).unwrap_or("?");
        let line = f.get("lineno").map(value_to_string).unwrap_or_else(|| "?".into());
        out.push_str(&format!("  File \"{file}\", line {line}, in {}\n", str_of(f, "function").unwrap_or("?")));
        if let Some(ctx) = str_of(f, "context_line") {
            out.push_str(&format!("    {}\n", ctx.trim()));
        }
    }
    out
}

// ----------------------------------------------------- stacktrace, threads

/// `stacktrace` (legacy `sentry.interfaces.Stacktrace`): a stack trace without an exception.
#[derive(Default)]
pub struct StacktraceInterface;
register_interface!(StacktraceInterface);

impl Interface for StacktraceInterface {
    fn key(&self) -> &'static str {
        "stacktrace"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Stacktrace"]
    }
    fn title(&self) -> &'static str {
        "Stack trace"
    }
    fn score(&self) -> i32 {
        1000
    }
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        crate::normalize::normalize_stacktrace(Some(value));
        Ok(())
    }
    fn grouping_component(&self, value: &Value, ctx: &GroupingContext<'_>) -> Option<String> {
        let frames = grouping::frames_of(Some(value))?;
        grouping::frames_component(frames, ctx.platform, variant(ctx)).map(|c| format!("stacktrace\u{1e}{c}"))
    }
    fn to_html(&self, value: &Value) -> Html {
        Html::trusted(value.get("frames").and_then(Value::as_array).map(|f| frames_html(f)).unwrap_or_default())
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        value.get("frames").and_then(Value::as_array).map(|f| frames_text(f))
    }
}

/// `threads`: the threads of a process, each possibly with a stack trace.
#[derive(Default)]
pub struct ThreadsInterface;
register_interface!(ThreadsInterface);

impl Interface for ThreadsInterface {
    fn key(&self) -> &'static str {
        "threads"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Threads"]
    }
    fn title(&self) -> &'static str {
        "Threads"
    }
    fn score(&self) -> i32 {
        1010
    }
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        let mut values = values_list(value.take());
        for t in values.iter_mut().filter_map(Value::as_object_mut) {
            crate::normalize::normalize_stacktrace(t.get_mut("stacktrace"));
        }
        *value = values_object(values);
        Ok(())
    }
    /// Only a single thread with a stack trace groups (several: nothing says which crashed).
    fn grouping_component(&self, value: &Value, ctx: &GroupingContext<'_>) -> Option<String> {
        let threads = value.get("values")?.as_array()?;
        let mut with_stack = threads.iter().filter_map(|t| grouping::frames_of(t.get("stacktrace")));
        let first = with_stack.next()?;
        if with_stack.next().is_some() {
            return None;
        }
        grouping::frames_component(first, ctx.platform, variant(ctx)).map(|c| format!("stacktrace\u{1e}{c}"))
    }
    fn to_html(&self, value: &Value) -> Html {
        let mut out = String::new();
        for t in value.get("values").and_then(Value::as_array).into_iter().flatten() {
            let name = str_of(t, "name").map(str::to_string).or_else(|| t.get("id").map(value_to_string)).unwrap_or_default();
            let crashed = if t.get("crashed").and_then(Value::as_bool) == Some(true) { " (crashed)" } else { "" };
            out.push_str(&format!("<div class=\"thread\"><h4>Thread {}{crashed}</h4>", escape(&name)));
            if let Some(frames) = t.get("stacktrace").and_then(|s| s.get("frames")).and_then(Value::as_array) {
                out.push_str(&frames_html(frames));
            }
            out.push_str("</div>");
        }
        Html::trusted(out)
    }
}

/// `{values: [...]}` or a bare list → the objects of the list.
fn values_list(v: Value) -> Vec<Value> {
    let values = match v {
        Value::Array(list) => list,
        Value::Object(mut m) => match m.remove("values") {
            Some(Value::Array(list)) => list,
            _ => vec![],
        },
        _ => vec![],
    };
    values.into_iter().filter(Value::is_object).collect()
}

// ------------------------------------------------------------ breadcrumbs

/// `breadcrumbs`: what happened before the event (the last 100 are kept).
#[derive(Default)]
pub struct BreadcrumbsInterface;
register_interface!(BreadcrumbsInterface);

const MAX_BREADCRUMBS: usize = 100;

impl Interface for BreadcrumbsInterface {
    fn key(&self) -> &'static str {
        "breadcrumbs"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Breadcrumbs"]
    }
    fn title(&self) -> &'static str {
        "Breadcrumbs"
    }
    fn score(&self) -> i32 {
        100
    }
    fn normalize(&self, value: &mut Value, ctx: &NormalizeContext) -> Result<(), String> {
        let mut values = values_list(value.take());
        if values.len() > MAX_BREADCRUMBS {
            values.drain(..values.len() - MAX_BREADCRUMBS);
        }
        for crumb in values.iter_mut().filter_map(Value::as_object_mut) {
            let Some(timestamp) = crumb.get_mut("timestamp") else { continue };
            // Seconds as a float (what the SDKs send) stay as they are
            // unless the clock drifted: nothing to rebuild, for up to a
            // hundred crumbs per event.
            if ctx.clock_drift == 0.0 && timestamp.is_f64() && timestamp.as_f64().is_some_and(|t| t > 0.0) {
                continue;
            }
            if let Some(t) = parse_timestamp(timestamp) {
                *timestamp = json!(t + ctx.clock_drift);
            }
        }
        *value = values_object(values);
        Ok(())
    }
    fn to_html(&self, value: &Value) -> Html {
        let mut out = String::from("<table class=\"breadcrumbs\"><tr><th>Time</th><th>Category</th><th>Level</th><th>Message</th></tr>");
        for c in value.get("values").and_then(Value::as_array).into_iter().flatten() {
            let time = c.get("timestamp").and_then(Value::as_f64).map(crate::normalize::format_timestamp).unwrap_or_default();
            let message = str_of(c, "message").map(str::to_string).or_else(|| c.get("data").map(|d| d.to_string())).unwrap_or_default();
            out.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&time),
                escape(str_of(c, "category").unwrap_or_default()),
                escape(str_of(c, "level").unwrap_or("info")),
                escape(&message)
            ));
        }
        out.push_str("</table>");
        Html::trusted(out)
    }
}

// ---------------------------------------------------------------- request

/// `request` (legacy `sentry.interfaces.Http`): the HTTP request being handled.
#[derive(Default)]
pub struct RequestInterface;
register_interface!(RequestInterface);

impl Interface for RequestInterface {
    fn key(&self) -> &'static str {
        "request"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Http"]
    }
    fn title(&self) -> &'static str {
        "Request"
    }
    fn score(&self) -> i32 {
        700
    }
    /// Headers and env as a map, pairs, or a map of lists (PHP) → a list of pairs.
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        let Some(req) = value.as_object_mut() else {
            return Err("request must be an object".into());
        };
        for key in ["headers", "env"] {
            if let Some(h) = req.remove(key) {
                let pairs = crate::normalize::to_pairs(h);
                if !pairs.is_empty() {
                    req.insert(key.into(), Value::Array(pairs));
                }
            }
        }
        if let Some(m) = req.get("method").and_then(Value::as_str) {
            let upper = m.to_ascii_uppercase();
            req.insert("method".into(), json!(upper));
        }
        Ok(())
    }
    fn to_html(&self, value: &Value) -> Html {
        let mut out = format!(
            "<p class=\"request-line\"><code>{} {}</code></p>",
            escape(str_of(value, "method").unwrap_or("GET")),
            escape(str_of(value, "url").unwrap_or_default())
        );
        if let Some(q) = value.get("query_string").filter(|q| !q.is_null()) {
            out.push_str(&format!("<p>Query: <code>{}</code></p>", escape(&value_to_string(q))));
        }
        if let Some(headers) = value.get("headers").and_then(Value::as_array) {
            out.push_str("<table class=\"headers\">");
            for h in headers {
                out.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", escape(&h.get(0).map(value_to_string).unwrap_or_default()), escape(&h.get(1).map(value_to_string).unwrap_or_default())));
            }
            out.push_str("</table>");
        }
        Html::trusted(out)
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        Some(format!("{} {}", str_of(value, "method").unwrap_or("GET"), str_of(value, "url")?))
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        str_of(value, "url").map(|u| vec![u.to_string()]).unwrap_or_default()
    }
}

// ------------------------------------------------------------------- user

/// `user` (legacy `sentry.interfaces.User`): who was affected.
#[derive(Default)]
pub struct UserInterface;
register_interface!(UserInterface);

impl Interface for UserInterface {
    fn key(&self) -> &'static str {
        "user"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.User"]
    }
    fn title(&self) -> &'static str {
        "User"
    }
    fn score(&self) -> i32 {
        300
    }
    fn normalize(&self, value: &mut Value, ctx: &NormalizeContext) -> Result<(), String> {
        let Some(user) = value.as_object_mut() else {
            return Err("user must be an object".into());
        };
        if let Some(id) = user.get("id") {
            match id {
                Value::String(_) => {}
                Value::Number(_) | Value::Bool(_) => {
                    let s = value_to_string(id);
                    user.insert("id".into(), json!(s));
                }
                _ => {
                    user.remove("id");
                }
            }
        }
        if user.get("ip_address").and_then(Value::as_str) == Some("{{auto}}") {
            match &ctx.client_ip {
                Some(ip) => user.insert("ip_address".into(), json!(ip)),
                None => user.remove("ip_address"),
            };
        }
        if user.is_empty() {
            *value = Value::Null;
        }
        Ok(())
    }
    fn to_html(&self, value: &Value) -> Html {
        Html::trusted(key_value_table(value, "user"))
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        let parts: Vec<String> = ["id", "email", "username", "ip_address"].iter().filter_map(|k| str_of(value, k).map(|v| format!("{k}: {v}"))).collect();
        (!parts.is_empty()).then(|| parts.join("\n"))
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        ["id", "email", "username"].iter().filter_map(|k| str_of(value, k)).map(str::to_string).collect()
    }
}

fn key_value_table(value: &Value, class: &str) -> String {
    let mut out = format!("<table class=\"{class}\">");
    if let Some(m) = value.as_object() {
        for (k, v) in m {
            let shown = if v.is_string() { value_to_string(v) } else { v.to_string() };
            out.push_str(&format!("<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&shown)));
        }
    }
    out.push_str("</table>");
    out
}

// --------------------------------------------- template, query, csp, others

/// `template` (legacy `sentry.interfaces.Template`): where in a template the error happened.
#[derive(Default)]
pub struct TemplateInterface;
register_interface!(TemplateInterface);

impl Interface for TemplateInterface {
    fn key(&self) -> &'static str {
        "template"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Template"]
    }
    fn title(&self) -> &'static str {
        "Template"
    }
    fn score(&self) -> i32 {
        800
    }
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        if !value.is_object() {
            return Err("template must be an object".into());
        }
        Ok(())
    }
    fn to_html(&self, value: &Value) -> Html {
        let mut out = format!(
            "<p><code>{}</code> line {}</p><pre class=\"context\">",
            escape(str_of(value, "filename").or_else(|| str_of(value, "abs_path")).unwrap_or("?")),
            escape(&value.get("lineno").map(value_to_string).unwrap_or_default())
        );
        for k in ["pre_context", "context_line", "post_context"] {
            match value.get(k) {
                Some(Value::Array(lines)) => lines.iter().for_each(|l| out.push_str(&format!("{}\n", escape(&value_to_string(l))))),
                Some(Value::String(l)) => out.push_str(&format!("<b>{}</b>\n", escape(l))),
                _ => {}
            }
        }
        out.push_str("</pre>");
        Html::trusted(out)
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        Some(format!("{} line {}: {}", str_of(value, "filename")?, value.get("lineno").map(value_to_string).unwrap_or_default(), str_of(value, "context_line").unwrap_or_default()))
    }
}

/// `query` (legacy `sentry.interfaces.Query`): an SQL query and its engine.
#[derive(Default)]
pub struct QueryInterface;
register_interface!(QueryInterface);

impl Interface for QueryInterface {
    fn key(&self) -> &'static str {
        "query"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Query"]
    }
    fn title(&self) -> &'static str {
        "Query"
    }
    fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
        match value {
            Value::String(q) => *value = json!({"query": q}),
            Value::Object(m) if m.get("query").is_some_and(Value::is_string) => {}
            _ => return Err("query must be an object with a 'query' string".into()),
        }
        Ok(())
    }
    fn to_html(&self, value: &Value) -> Html {
        let engine = str_of(value, "engine").map(|e| format!("<p>Engine: {}</p>", escape(e))).unwrap_or_default();
        Html::trusted(format!("{engine}<pre class=\"sql\">{}</pre>", escape(str_of(value, "query").unwrap_or_default())))
    }
    fn to_text(&self, value: &Value) -> Option<String> {
        str_of(value, "query").map(str::to_string)
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        str_of(value, "query").map(|q| vec![q.to_string()]).unwrap_or_default()
    }
}

/// `csp`: a Content Security Policy violation report.
#[derive(Default)]
pub struct CspInterface;
register_interface!(CspInterface);

impl Interface for CspInterface {
    fn key(&self) -> &'static str {
        "csp"
    }
    fn aliases(&self) -> &'static [&'static str] {
        &["sentry.interfaces.Csp"]
    }
    fn title(&self) -> &'static str {
        "CSP report"
    }
    fn score(&self) -> i32 {
        900
    }
    /// By directive and blocked host: the same policy blocking the same origin is one problem.
    fn grouping_component(&self, value: &Value, _ctx: &GroupingContext<'_>) -> Option<String> {
        let csp = value.as_object()?;
        let directive = csp.get("effective_directive").and_then(Value::as_str).unwrap_or_default();
        let blocked = csp.get("blocked_uri").and_then(Value::as_str).unwrap_or_default();
        let host = blocked.split_once("://").map_or(blocked, |(_, r)| r.split('/').next().unwrap_or(r));
        Some(format!("csp\u{1e}{directive}\u{1e}{host}"))
    }
    fn to_html(&self, value: &Value) -> Html {
        Html::trusted(key_value_table(value, "csp"))
    }
    fn search_terms(&self, value: &Value) -> Vec<String> {
        ["blocked_uri", "effective_directive"].iter().filter_map(|k| str_of(value, k)).map(str::to_string).collect()
    }
}

/// Interfaces Picket stores and shows as they are (`contexts`, `debug_meta`).
macro_rules! plain_interface {
    ($name:ident, $key:literal, $alias:literal, $title:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Default)]
        pub struct $name;
        register_interface!($name);
        impl Interface for $name {
            fn key(&self) -> &'static str {
                $key
            }
            fn aliases(&self) -> &'static [&'static str] {
                &[$alias]
            }
            fn title(&self) -> &'static str {
                $title
            }
            fn normalize(&self, value: &mut Value, _ctx: &NormalizeContext) -> Result<(), String> {
                if value.is_object() {
                    Ok(())
                } else {
                    Err(concat!($key, " must be an object").into())
                }
            }
        }
    };
}

plain_interface!(ContextsInterface, "contexts", "sentry.interfaces.Contexts", "Contexts", "`contexts`: device, OS, runtime, browser, trace, ...");
plain_interface!(DebugMetaInterface, "debug_meta", "sentry.interfaces.DebugMeta", "Debug information", "`debug_meta`: debug images and SDK info for symbolication.");

// ------------------------------------------------------- used by normalize

/// Moves aliased keys to their interface's key (the alias loses if both are present).
pub(crate) fn apply_aliases(registry: &picket_plugin_api::Registry, data: &mut Map<String, Value>) {
    for iface in registry.interfaces() {
        for alias in iface.aliases() {
            if let Some(v) = data.remove(*alias) {
                data.entry(iface.key().to_string()).or_insert(v);
            }
        }
    }
}

/// Normalizes every interface present, highest score first. A value an
/// interface refuses is dropped with a note in `errors`; one it empties
/// (`null`) is dropped silently.
pub(crate) fn normalize_all(registry: &picket_plugin_api::Registry, data: &mut Map<String, Value>, ctx: &NormalizeContext, errors: &mut Vec<Value>) {
    for iface in registry.interfaces() {
        let key = iface.key();
        let Some(value) = data.get_mut(key) else { continue };
        let outcome = guarded(key, "normalize", || iface.normalize(value, ctx)).unwrap_or_else(|| Err("the interface failed".into()));
        match outcome {
            Ok(()) if data.get(key).is_some_and(Value::is_null) => {
                data.remove(key);
            }
            Ok(()) => {}
            Err(reason) => {
                let original = data.remove(key);
                errors.push(json!({"type": "invalid_data", "name": key, "reason": reason, "value": original}));
            }
        }
    }
}

/// Search terms of every interface present.
pub(crate) fn search_terms(registry: &picket_plugin_api::Registry, data: &Map<String, Value>) -> Vec<String> {
    let mut terms = Vec::new();
    for iface in registry.interfaces() {
        if let Some(v) = data.get(iface.key()) {
            terms.extend(guarded(iface.key(), "search_terms", || iface.search_terms(v)).unwrap_or_default());
        }
    }
    terms
}

/// The grouping component of the highest-scoring interface that has one.
pub(crate) fn grouping_component(registry: &picket_plugin_api::Registry, data: &Map<String, Value>, platform: &str, variant: Variant) -> Option<String> {
    let ctx = GroupingContext::new(platform, variant == Variant::App, data);
    registry.interfaces().iter().find_map(|iface| {
        let v = data.get(iface.key())?;
        guarded(iface.key(), "grouping_component", || iface.grouping_component(v, &ctx)).flatten()
    })
}

/// The interfaces of an event in display order, as `(key, title, html)`;
/// keys no interface claims are not included (the API shows them as raw data).
pub fn render_html(registry: &picket_plugin_api::Registry, data: &Map<String, Value>) -> Vec<(&'static str, &'static str, Html)> {
    registry
        .interfaces()
        .iter()
        .filter_map(|iface| {
            let v = data.get(iface.key())?;
            let html = guarded(iface.key(), "to_html", || iface.to_html(v))?;
            (!html.is_empty()).then(|| (iface.key(), iface.title(), html))
        })
        .collect()
}

/// The interfaces of an event as plain text (e-mails, tickets), as `(key, title, text)`.
pub fn render_text(registry: &picket_plugin_api::Registry, data: &Map<String, Value>) -> Vec<(&'static str, &'static str, String)> {
    registry
        .interfaces()
        .iter()
        .filter_map(|iface| {
            let v = data.get(iface.key())?;
            let text = guarded(iface.key(), "to_text", || iface.to_text(v)).flatten()?;
            (!text.trim().is_empty()).then(|| (iface.key(), iface.title(), text))
        })
        .collect()
}

/// `{"values": [...]}` without `json!`, which would serialize (deep-copy)
/// the list instead of moving it.
fn values_object(values: Vec<Value>) -> Value {
    let mut m = serde_json::Map::with_capacity(1);
    m.insert("values".into(), Value::Array(values));
    Value::Object(m)
}
