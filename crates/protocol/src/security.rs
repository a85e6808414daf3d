//! Browser security reports (`application/csp-report` and the Reporting API's
//! `application/reports+json`) turned into event payloads with a `csp` interface.

use serde_json::{json, Map, Value};

/// Why a security report was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecurityReportError {
    #[error("invalid security report: {0}")]
    Invalid(String),
}

/// Turns a report body (already parsed JSON) into zero or more event payloads.
/// Reports of other types in a Reporting API batch are skipped.
pub fn events_from_report(body: &Value) -> Result<Vec<Value>, SecurityReportError> {
    let reports: Vec<&Map<String, Value>> = match body {
        Value::Object(o) if o.contains_key("csp-report") => match o.get("csp-report") {
            Some(Value::Object(r)) => vec![r],
            _ => return Err(SecurityReportError::Invalid("\"csp-report\" must be an object".into())),
        },
        Value::Array(list) => list
            .iter()
            .filter_map(|r| r.as_object())
            .filter(|r| r.get("type").and_then(Value::as_str) == Some("csp-violation"))
            .filter_map(|r| r.get("body").and_then(Value::as_object))
            .collect(),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("csp-violation") => {
            o.get("body").and_then(Value::as_object).into_iter().collect()
        }
        _ => return Err(SecurityReportError::Invalid("expected {\"csp-report\": {...}} or a Reporting API list".into())),
    };
    Ok(reports.into_iter().map(csp_event).collect())
}

fn get_str<'a>(r: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| r.get(*k).and_then(Value::as_str)).filter(|s| !s.is_empty())
}

/// Builds one event from a CSP report (both the legacy dashed and the
/// Reporting API camelCase field names).
fn csp_event(r: &Map<String, Value>) -> Value {
    let document_uri = get_str(r, &["document-uri", "documentURL", "documentURI"]).unwrap_or("");
    let blocked_uri = get_str(r, &["blocked-uri", "blockedURL", "blockedURI"]).unwrap_or("");
    let violated = get_str(r, &["violated-directive", "violatedDirective"]).unwrap_or("");
    let effective = get_str(r, &["effective-directive", "effectiveDirective"])
        .map(str::to_string)
        .unwrap_or_else(|| violated.split_whitespace().next().unwrap_or("").to_string());
    let directive_kind = effective.trim_end_matches("-src-elem").trim_end_matches("-src-attr").trim_end_matches("-src");
    let blocked_host = host_of(blocked_uri);
    let message = format!("Blocked '{directive_kind}' from '{blocked_host}'");
    json!({
        "level": "error",
        "logger": "csp",
        "message": message,
        "culprit": effective,
        "request": {"url": document_uri},
        "tags": [["effective-directive", effective], ["blocked-uri", blocked_uri]],
        "csp": {
            "document_uri": document_uri,
            "blocked_uri": blocked_uri,
            "effective_directive": effective,
            "violated_directive": violated,
            "original_policy": get_str(r, &["original-policy", "originalPolicy"]),
            "referrer": get_str(r, &["referrer"]),
            "disposition": get_str(r, &["disposition"]),
            "source_file": get_str(r, &["source-file", "sourceFile"]),
            "line_number": r.get("line-number").or_else(|| r.get("lineNumber")),
            "status_code": r.get("status-code").or_else(|| r.get("statusCode")),
        },
    })
}

/// `https://evil.example.com/x.js` → `evil.example.com`; keywords like `inline` stay.
fn host_of(uri: &str) -> &str {
    match uri.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(rest),
        None => uri,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_report() {
        let body = json!({"csp-report": {"document-uri": "https://example.com/page", "blocked-uri": "https://evil.example.net/x.js", "violated-directive": "script-src 'self'", "original-policy": "script-src 'self'"}});
        let events = events_from_report(&body).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["message"], "Blocked 'script' from 'evil.example.net'");
        assert_eq!(events[0]["csp"]["effective_directive"], "script-src");
    }

    #[test]
    fn reporting_api_batch() {
        let body = json!([
            {"type": "csp-violation", "body": {"documentURL": "https://example.com/", "blockedURL": "inline", "effectiveDirective": "style-src-elem"}},
            {"type": "deprecation", "body": {}}
        ]);
        let events = events_from_report(&body).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["message"], "Blocked 'style' from 'inline'");
    }

    #[test]
    fn invalid() {
        assert!(events_from_report(&json!("x")).is_err());
        assert!(events_from_report(&json!({"csp-report": 1})).is_err());
    }
}
