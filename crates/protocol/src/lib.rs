//! The Sentry wire protocol as Picket receives it: pure functions, no I/O.
//!
//! Everything here parses bytes that came from the internet, so every
//! function bounds its work and returns an error instead of panicking.
//!
//! - [`dsn`]: DSNs (`http://KEY@host/42`) and building them.
//! - [`auth`]: the `X-Sentry-Auth` / `Authorization: Sentry` / query forms.
//! - [`decompress`]: `Content-Encoding` bodies with an output limit (bomb guard).
//! - [`json`]: lenient JSON (Python's `NaN`/`Infinity`) with a depth bound.
//! - [`envelope`]: the envelope format, items with and without `length`.
//! - [`store`]: `/store/` bodies (JSON, base64, base64+zlib).
//! - [`security`]: browser CSP reports turned into event payloads.
//!
//! ```
//! let env = picket_protocol::envelope::Envelope::parse(
//!     b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"event\"}\n{\"message\":\"hi\"}\n",
//! ).unwrap();
//! assert_eq!(env.items.len(), 1);
//! assert_eq!(env.items[0].item_type(), "event");
//! ```

pub mod auth;
pub mod decompress;
pub mod dsn;
pub mod envelope;
pub mod json;
pub mod security;
pub mod store;

/// Size limits, as Relay's defaults (bytes).
pub mod limits {
    /// An event, transaction or feedback payload after decompression.
    pub const MAX_EVENT_SIZE: usize = 1024 * 1024;
    /// A request body as it arrives (compressed).
    pub const MAX_ENVELOPE_COMPRESSED: usize = 20 * 1024 * 1024;
    /// An envelope after decompression.
    pub const MAX_ENVELOPE_SIZE: usize = 100 * 1024 * 1024;
    /// One attachment, and all attachments of one envelope together.
    pub const MAX_ATTACHMENT_SIZE: usize = 100 * 1024 * 1024;
    /// A check-in item.
    pub const MAX_CHECK_IN_SIZE: usize = 100 * 1024;
    /// Sessions per envelope (items) and aggregates per `sessions` item.
    pub const MAX_SESSIONS: usize = 100;
    /// One envelope or item header line.
    pub const MAX_HEADER_SIZE: usize = 64 * 1024;
    /// How deep JSON may nest before it is refused (serde_json's recursion limit).
    pub const MAX_JSON_DEPTH: usize = 128;
    /// A CSP report body.
    pub const MAX_SECURITY_REPORT_SIZE: usize = 64 * 1024;
}

/// Normalizes an event id: 32 hex digits, or a dashed UUID, to lowercase simple hex.
pub fn parse_event_id(s: &str) -> Option<String> {
    let u = uuid::Uuid::try_parse(s.trim()).ok()?;
    Some(u.simple().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids() {
        assert_eq!(
            parse_event_id("9EC79C33-EC99-42AB-8353-589FCB2E04DC").as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert_eq!(
            parse_event_id("9ec79c33ec9942ab8353589fcb2e04dc").as_deref(),
            Some("9ec79c33ec9942ab8353589fcb2e04dc")
        );
        assert_eq!(parse_event_id("nope"), None);
        assert_eq!(parse_event_id(""), None);
    }
}

/// Every parser must be total: any bytes give a value or an error, never a panic.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn auth_parsers_are_total(s in ".{0,200}") {
            let _ = crate::auth::parse_auth_header(&s);
            let _ = crate::auth::parse_auth_query(&s);
            let _ = crate::auth::percent_decode(&s);
        }

        #[test]
        fn dsn_parser_is_total(s in ".{0,200}") {
            if let Ok(d) = crate::dsn::Dsn::parse(&s) {
                // What parses, prints back to something that parses the same.
                prop_assert_eq!(crate::dsn::Dsn::parse(&d.to_string()).unwrap(), d);
            }
        }

        #[test]
        fn decoders_are_total(bytes in proptest::collection::vec(any::<u8>(), 0..256), enc in 0usize..6) {
            let encoding = ["", "gzip", "deflate", "br", "zstd", "gzip, br"][enc];
            let full = crate::decompress::decode(encoding, &bytes, 4096);
            let prefix = crate::decompress::decode_prefix(encoding, &bytes, 64);
            if let Ok(full) = full {
                prop_assert_eq!(prefix.unwrap(), &full[..full.len().min(64)], "a prefix is the start of the whole");
            }
            if let Ok(env) = crate::envelope::Envelope::parse(&bytes) {
                prop_assert_eq!(crate::envelope::Envelope::parse_headers(&bytes).unwrap(), env.headers);
            }
            let _ = crate::store::decode_store_body(&bytes, 4096);
            let _ = crate::security::events_from_report(&serde_json::Value::from(String::from_utf8_lossy(&bytes).into_owned()));
        }

        #[test]
        fn lenient_json_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = crate::json::parse_lenient(&bytes);
            let _ = crate::json::validate_object(&bytes);
        }

        /// Standard JSON comes back unchanged. (Floats are exactly representable
        /// ones: serde_json's fast float parsing may differ in the last bit.)
        #[test]
        fn valid_json_round_trips(keys in proptest::collection::vec("[a-z\"\\\\]{0,6}", 0..5), n in any::<i64>(), eighths in -1_000_000i32..1_000_000) {
            let f = f64::from(eighths) / 8.0;
            let mut obj = serde_json::Map::new();
            for (i, k) in keys.iter().enumerate() {
                obj.insert(k.clone(), if i % 2 == 0 { serde_json::json!(n) } else { serde_json::json!([f, k, null, true]) });
            }
            let v = serde_json::Value::Object(obj);
            let text = serde_json::to_vec(&v).unwrap();
            prop_assert_eq!(crate::json::parse_lenient(&text).unwrap(), v);
            prop_assert!(crate::json::validate_object(&text).is_ok());
        }

        /// The fast parser and serde_json agree on any JSON text: compact or
        /// spaced, any strings (escapes, control characters, non-ASCII),
        /// any numbers.
        #[test]
        fn fast_parse_agrees_with_serde_json(v in json_value(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { serde_json::to_string(&v).unwrap() };
            let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
            // The fast parser itself, not a fallback to serde_json.
            prop_assert_eq!(crate::json::fast::parse(&text), Some(expected.clone()));
            prop_assert!(crate::json::fast::validates(&text), "the check refuses what the parse takes: {}", text);
            prop_assert_eq!(crate::json::parse_lenient(text.as_bytes()).unwrap(), expected);
        }

        /// Damaged JSON: whatever the fast parser accepts, serde_json
        /// accepts with the same value; what it refuses, serde_json decides.
        #[test]
        fn fast_parse_never_accepts_what_serde_json_would_not(v in json_value(), edits in proptest::collection::vec((any::<proptest::sample::Index>(), prop_oneof![
            Just('"'), Just('\\'), Just(','), Just(':'), Just('{'), Just('}'), Just('['), Just(']'), Just('-'), Just('0'), Just('1'), Just('.'), Just('e'),
            Just('u'), Just('n'), Just(' '), Just('\u{1}'), Just('é'), Just('D'), Just('8'),
        ]), 1..4)) {
            let mut chars: Vec<char> = serde_json::to_string(&v).unwrap().chars().collect();
            for (at, c) in edits {
                if chars.is_empty() { break; }
                let i = at.index(chars.len());
                chars[i] = c;
            }
            // And every prefix: texts that end in the middle of anything.
            for end in 0..=chars.len() {
                let text: String = chars[..end].iter().collect();
                let strict = serde_json::from_str::<serde_json::Value>(&text).ok();
                let fast = crate::json::fast::parse(&text);
                // Ingest's check (the same parser, building nothing) takes exactly what it takes.
                prop_assert_eq!(crate::json::fast::validates(&text), fast.is_some(), "{}", text);
                // What ingest accepts, the digest parses into an object; what it refuses, the digest would too.
                let object = crate::json::parse_lenient(text.as_bytes()).is_ok_and(|v| v.is_object());
                prop_assert_eq!(crate::json::validate_object(text.as_bytes()).is_ok(), object, "{}", text);
                if let Some(fast) = fast {
                    prop_assert_eq!(Some(fast), strict, "{}", text);
                }
            }
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let text = prop_oneof![any::<String>(), "[ -~\\x00-\\x1f\"\\\\é\u{1F600}]{0,40}"];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from), // NaN and infinities become null
            (-1_000_000i64..1_000_000).prop_map(|n| Value::from(n as f64 / 1000.0)),
            text.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 8, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                proptest::collection::btree_map(text.clone(), inner, 0..8).prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
