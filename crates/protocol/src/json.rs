//! Lenient JSON: Python clients send `NaN`, `Infinity` and `-Infinity`, which
//! are not JSON; they become `null` (the number has no meaning to a tracker).
//! Nesting is bounded so that hostile input cannot exhaust the stack, and
//! invalid UTF-8 and lone UTF-16 surrogate escapes are replaced rather than
//! refused: an event with one bad byte in a variable's value is still worth
//! keeping.

use serde::Deserialize;
use serde_json::Value;

pub(crate) mod fast;

/// Why a body is not acceptable JSON. The `Display` is sent to clients.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("invalid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("empty body: expected a JSON object")]
    Empty,
    #[error("expected a JSON object")]
    NotAnObject,
}

/// Parses a JSON value from bytes, leniently (see the module docs).
pub fn parse_lenient(bytes: &[u8]) -> Result<Value, JsonError> {
    with_lenient_text(bytes, |text| {
        // The common case; anything it does not handle goes to serde_json.
        match fast::parse(text) {
            Some(value) => Ok(value),
            None => serde_json_value(text),
        }
    })
}

/// The whole text as a value, parsed by serde_json (which words the errors).
fn serde_json_value(text: &str) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Value::deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Checks that bytes are acceptable to [`parse_lenient`] and hold a JSON
/// object, without building the value (ingest only needs to know): it
/// accepts exactly what [`parse_lenient`] parses into an object.
pub fn validate_object(bytes: &[u8]) -> Result<(), JsonError> {
    with_lenient_text(bytes, |text| {
        if !text.trim_start().starts_with('{') {
            return Err(JsonError::NotAnObject);
        }
        // The common case. The rest (the few texts the fast parser leaves
        // to serde_json) is parsed as the digest will parse it, so that
        // nothing accepted here is refused there: serde_json's own check
        // without a value (`IgnoredAny`) takes more, such as a lone
        // surrogate escape or `1e400`.
        if fast::validates(text) {
            return Ok(());
        }
        serde_json_value(text).map(drop)
    })
}

/// Runs `parse` on the text strictly first (the common case costs one pass);
/// only if that fails, on the text with `NaN`/`Infinity` replaced. Nesting is
/// bounded by serde_json's recursion limit (128), reported as [`JsonError::TooDeep`].
fn with_lenient_text<T>(bytes: &[u8], parse: impl Fn(&str) -> Result<T, JsonError>) -> Result<T, JsonError> {
    // `from_utf8` has a fast path for ASCII; the lossy scan only runs on bad input.
    let text: std::borrow::Cow<'_, str> = match std::str::from_utf8(bytes) {
        Ok(s) => s.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    };
    if text.trim().is_empty() {
        return Err(JsonError::Empty);
    }
    let first = match parse(&text) {
        Ok(v) => return Ok(v),
        Err(e) => e,
    };
    let result = match sanitize(&text) {
        Some(fixed) => parse(&fixed),
        None => Err(first),
    };
    result.map_err(|e| match e {
        JsonError::Syntax(s) if s.to_string().starts_with("recursion limit exceeded") => JsonError::TooDeep(crate::limits::MAX_JSON_DEPTH),
        other => other,
    })
}

/// How a JSON value's kind reads in an error message ("an array", ...).
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Replaces `NaN`, `Infinity` and `-Infinity` outside strings by `null`,
/// and escapes of lone UTF-16 surrogates inside strings (`"\ud800"`, which
/// Python writes for the `surrogateescape` strings of undecodable file names
/// and bytes) by `\ufffd`, the replacement character, as invalid UTF-8 is
/// replaced; `None` when there is none of them.
fn sanitize(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut in_string = false;
    let mut escaped = false;
    let mut replacements: Vec<(usize, usize, &str)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if in_string {
            if escaped {
                escaped = false;
                if c == b'u' {
                    match (fast::hex4(b, i + 1), fast::hex4(b, i + 7).filter(|_| b.get(i + 5..i + 7) == Some(b"\\u"))) {
                        (Some(0xD800..=0xDBFF), Some(0xDC00..=0xDFFF)) => i += 10, // a pair: one character
                        (Some(0xD800..=0xDFFF), _) => {
                            replacements.push((i - 1, 6, "\\ufffd"));
                            i += 4;
                        }
                        _ => {}
                    }
                }
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let token: Option<usize> = match c {
            b'"' => {
                in_string = true;
                None
            }
            b'N' if b[i..].starts_with(b"NaN") => Some(3),
            b'I' if b[i..].starts_with(b"Infinity") => Some(8),
            b'-' if b[i..].starts_with(b"-Infinity") => Some(9),
            _ => None,
        };
        match token {
            Some(len) => {
                replacements.push((i, len, "null"));
                i += len;
            }
            None => i += 1,
        }
    }
    if replacements.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, len, with) in replacements {
        out.push_str(&text[last..at]);
        out.push_str(with);
        last = at + len;
    }
    out.push_str(&text[last..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_numbers_become_null() {
        let v = parse_lenient(br#"{"a": NaN, "b": [Infinity, -Infinity], "s": "NaN Infinity"}"#).unwrap();
        assert_eq!(v, json!({"a": null, "b": [null, null], "s": "NaN Infinity"}));
    }

    #[test]
    fn escaped_quotes_keep_string_state() {
        let v = parse_lenient(br#"{"a": "x\"NaN", "b": NaN}"#).unwrap();
        assert_eq!(v, json!({"a": "x\"NaN", "b": null}));
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(matches!(parse_lenient(deep.as_bytes()), Err(JsonError::TooDeep(_))));
        let ok = "[".repeat(100) + &"]".repeat(100);
        assert!(parse_lenient(ok.as_bytes()).is_ok());
    }

    #[test]
    fn lone_surrogates_are_replaced() {
        let v = parse_lenient(br#"{"a": "x\ud800y", "b": "\udc00", "c": "\ud83d\ude00", "d": "\ud83d\u0041", "e": "\\ud800", "f": NaN, "g": "\ud800"}"#).unwrap();
        assert_eq!(v, json!({"a": "x\u{fffd}y", "b": "\u{fffd}", "c": "\u{1F600}", "d": "\u{fffd}A", "e": "\\ud800", "f": null, "g": "\u{fffd}"}));
        assert!(validate_object(br#"{"a": "\ud800"}"#).is_ok(), "ingest's check takes what the parse takes");
        // Outside strings nothing changes: still an error.
        assert!(parse_lenient(br#"{"a": \ud800}"#).is_err());
    }

    #[test]
    fn bad_utf8_is_replaced() {
        let v = parse_lenient(b"{\"a\": \"caf\xe9\"}").unwrap();
        assert_eq!(v["a"], "caf\u{fffd}");
    }

    #[test]
    fn validation_agrees_with_parsing() {
        for ok in [&b"{\"a\": NaN}"[..], b" {} ", b"{\"a\": [1, {\"b\": \"\\u00e9\"}]}"] {
            assert!(validate_object(ok).is_ok(), "{}", String::from_utf8_lossy(ok));
            assert!(parse_lenient(ok).unwrap().is_object());
        }
        // An out-of-range float: serde_json refuses it in a value, so the
        // check does too (the digest would drop the event).
        for bad in [&b"[1]"[..], b"{", b"", b"{} x", b"\"s\"", br#"{"a": 1e400}"#] {
            assert!(validate_object(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_fast_parser_takes_the_common_case_and_leaves_the_rest() {
        let agree = |text: &str| {
            let fast = fast::parse(text).unwrap_or_else(|| panic!("fast parser gave up on {text}"));
            assert_eq!(fast, serde_json::from_str::<Value>(text).unwrap(), "{text}");
            assert!(fast::validates(text), "the check refuses {text}");
        };
        agree(r#" {"a": [1, -2, 3.5, -0.25, 1e3, 2E-2, 18446744073709551615, -9223372036854775808], "b": {"c": null, "d": true, "e": false}} "#);
        agree(r#"{"s": "tab\t nl\n quote\" slash\/ back\\ \b\f\r \u0000 \u00e9 \u20AC \ud83d\ude00 café 日本, a longer run of plain text"}"#);
        agree(r#"{"dup": 1, "dup": 2, "": ""}"#);
        agree("[]");
        agree(&("[".repeat(50) + &"]".repeat(50)));
        for leave in [
            "[1,]",
            r#"{"a":1,}"#,
            "01",
            "-0",
            "18446744073709551616",
            "-9223372036854775809",
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            "\"raw\u{1}control\"",
            r#""\x""#,
            "NaN",
            "[1] x",
            "tru",
            r#"{"a" 1}"#,
            "1.",
            r#""unterminated"#,
            // Found by the `json` fuzz target: the text ends right after an escape.
            r#""S  \\\\"#,
            r#"["Si-\\i\nI[ f  i \n"#,
        ] {
            assert_eq!(fast::parse(leave), None, "{leave}");
            assert!(!fast::validates(leave), "the check takes {leave}");
        }
        assert_eq!(fast::parse(&("[".repeat(120) + &"]".repeat(120))), None, "deep nesting is serde_json's to decide");
    }

    #[test]
    fn errors() {
        assert!(matches!(parse_lenient(b"  "), Err(JsonError::Empty)));
        assert!(matches!(parse_lenient(b"{\"a\":"), Err(JsonError::Syntax(_))));
        assert!(matches!(parse_lenient(b"{} {}"), Err(JsonError::Syntax(_))));
    }
}
