//! Issue titles and culprits, following Sentry's rules so that issues read
//! the same as they would in Sentry.

use serde_json::{Map, Value};

use crate::normalize::{truncate, EventType};

const MAX_TITLE: usize = 200;
const MAX_CULPRIT: usize = 200;

/// Returns `(title, culprit)` for a normalized payload.
pub fn title_and_culprit(data: &Map<String, Value>, platform: &str, event_type: EventType) -> (String, String) {
    let frame_culprit = crash_frame(data).map(|f| frame_culprit(f, platform)).unwrap_or_default();
    let request_url = data.get("request").and_then(|r| r.get("url")).and_then(Value::as_str).unwrap_or_default();
    let transaction = data.get("transaction").and_then(Value::as_str).unwrap_or_default();
    let culprit_fallback = |c: String| -> String {
        if !c.is_empty() {
            c
        } else if !transaction.is_empty() {
            transaction.to_string()
        } else {
            request_url.to_string()
        }
    };
    let title = match event_type {
        EventType::Error => exception_title(data),
        EventType::Transaction => {
            if transaction.is_empty() { "<unlabeled transaction>".to_string() } else { transaction.to_string() }
        }
        EventType::Csp | EventType::Default => message_title(data),
    };
    (truncate(&title, MAX_TITLE), truncate(&culprit_fallback(frame_culprit), MAX_CULPRIT))
}

fn exception_title(data: &Map<String, Value>) -> String {
    let Some(exc) = data.get("exception").and_then(|e| e.get("values")).and_then(Value::as_array).and_then(|v| v.last()) else {
        return message_title(data);
    };
    let synthetic = exc.get("mechanism").and_then(|m| m.get("synthetic")).and_then(Value::as_bool) == Some(true);
    let ty = exc.get("type").and_then(Value::as_str).filter(|s| !synthetic && !s.is_empty());
    // A message sent with a stack trace (@sentry/node's captureMessage) comes
    // as a synthetic exception without a type: its message is the title.
    if ty.is_none() && data.get("logentry").is_some() {
        return message_title(data);
    }
    let value = exc.get("value").and_then(Value::as_str).map(first_line).filter(|s| !s.is_empty());
    match (ty, value) {
        (Some(t), Some(v)) => format!("{t}: {v}"),
        (Some(t), None) => t.to_string(),
        (None, Some(v)) if !synthetic => v.to_string(),
        _ => crash_frame(data)
            .and_then(|f| f.get("function").and_then(Value::as_str))
            .unwrap_or("<unknown>")
            .to_string(),
    }
}

fn message_title(data: &Map<String, Value>) -> String {
    let entry = data.get("logentry");
    let msg = entry
        .and_then(|e| e.get("formatted").or_else(|| e.get("message")))
        .and_then(Value::as_str)
        .map(first_line)
        .filter(|s| !s.is_empty());
    match msg {
        Some(m) => m.to_string(),
        None => "<unlabeled event>".to_string(),
    }
}

fn first_line(s: &str) -> &str {
    s.trim().lines().next().unwrap_or_default().trim()
}

/// The frames of the main stack trace: the last exception's, else the
/// crashed (or only) thread's, else the top-level `stacktrace`.
pub fn main_frames(data: &Map<String, Value>) -> Option<&Vec<Value>> {
    fn frames_of(st: Option<&Value>) -> Option<&Vec<Value>> {
        st.and_then(|s| s.get("frames")).and_then(Value::as_array).filter(|f| !f.is_empty())
    }
    if let Some(values) = data.get("exception").and_then(|e| e.get("values")).and_then(Value::as_array) {
        if let Some(f) = values.iter().rev().find_map(|e| frames_of(e.get("stacktrace"))) {
            return Some(f);
        }
    }
    if let Some(threads) = data.get("threads").and_then(|t| t.get("values")).and_then(Value::as_array) {
        let with_stack: Vec<&Value> = threads.iter().filter(|t| frames_of(t.get("stacktrace")).is_some()).collect();
        let chosen = with_stack
            .iter()
            .find(|t| t.get("crashed").and_then(Value::as_bool) == Some(true))
            .or_else(|| if with_stack.len() == 1 { with_stack.first() } else { None });
        if let Some(t) = chosen {
            return frames_of(t.get("stacktrace"));
        }
    }
    frames_of(data.get("stacktrace"))
}

/// The frame an error is blamed on: the last in-app frame, else the last frame.
pub fn crash_frame(data: &Map<String, Value>) -> Option<&Value> {
    let frames = main_frames(data)?;
    frames
        .iter()
        .rev()
        .find(|f| f.get("in_app").and_then(Value::as_bool) == Some(true))
        .or_else(|| frames.last())
}

fn frame_culprit(frame: &Value, platform: &str) -> String {
    let s = |k: &str| frame.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
    let location = s("module").or_else(|| s("filename")).or_else(|| s("abs_path")).unwrap_or("?");
    let function = s("function").unwrap_or("?");
    match platform {
        "javascript" | "node" => format!("{function}({location})"),
        "objc" | "cocoa" | "native" | "c" => function.to_string(),
        _ => format!("{location} in {function}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn exception_titles() {
        let d = map(json!({"exception": {"values": [
            {"type": "KeyError", "value": "'a'"},
            {"type": "ValueError", "value": "bad thing\nmore", "stacktrace": {"frames": [
                {"module": "lib", "function": "inner", "in_app": false},
                {"module": "app.views", "function": "index", "in_app": true},
                {"module": "lib2", "function": "deep", "in_app": false}
            ]}}
        ]}}));
        assert_eq!(title_and_culprit(&d, "python", EventType::Error), ("ValueError: bad thing".into(), "app.views in index".into()));
        assert_eq!(title_and_culprit(&d, "node", EventType::Error).1, "index(app.views)");
    }

    /// Regression: @sentry/node 11 sends captureMessage as a synthetic,
    /// typeless exception plus the message; the title was "?".
    #[test]
    fn synthetic_exception_with_message_is_titled_by_the_message() {
        let d = map(json!({"logentry": {"formatted": "User 17 failed to log in"}, "exception": {"values": [
            {"value": "User 17 failed to log in", "mechanism": {"type": "generic", "synthetic": true},
             "stacktrace": {"frames": [{"function": "?", "filename": "/app/send.mjs", "in_app": true}]}}
        ]}}));
        assert_eq!(title_and_culprit(&d, "node", EventType::Error).0, "User 17 failed to log in");
    }

    #[test]
    fn message_titles() {
        let d = map(json!({"logentry": {"formatted": "  hello\nworld"}}));
        assert_eq!(title_and_culprit(&d, "python", EventType::Default).0, "hello");
        let d = map(json!({"request": {"url": "http://x/y"}}));
        assert_eq!(title_and_culprit(&d, "python", EventType::Default), ("<unlabeled event>".into(), "http://x/y".into()));
    }
}
