//! The envelope format: one JSON header line, then items, each a JSON header
//! line and a payload that is either `length` bytes or runs to the next `\n`.
//!
//! Parsing borrows the payloads from the input buffer; nothing is copied.

use serde_json::{Map, Value};

use crate::limits::MAX_HEADER_SIZE;

/// A parsed envelope.
#[derive(Debug)]
pub struct Envelope<'a> {
    pub headers: Map<String, Value>,
    pub items: Vec<Item<'a>>,
}

/// One item of an envelope: its headers and its raw payload.
#[derive(Debug)]
pub struct Item<'a> {
    pub headers: Map<String, Value>,
    pub payload: &'a [u8],
}

/// Why an envelope is malformed. The `Display` is sent to clients.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("empty envelope: the body must start with a JSON header line")]
    Empty,
    #[error("invalid envelope header: {0}")]
    Header(String),
    #[error("invalid item header at byte {at}: {reason}")]
    ItemHeader { at: usize, reason: String },
    #[error("item at byte {at} declares length {length} but only {available} bytes follow")]
    Truncated { at: usize, length: usize, available: usize },
    #[error("item at byte {at} is not followed by a newline after its {length} bytes")]
    MissingNewline { at: usize, length: usize },
    #[error("header line at byte {at} is longer than {MAX_HEADER_SIZE} bytes")]
    HeaderTooLong { at: usize },
}

impl<'a> Envelope<'a> {
    /// Parses only the envelope's header line, which may be all that `buf`
    /// holds of the envelope (its start, decoded on its own): ingest reads
    /// the key in a `dsn` header this way before decoding the whole body.
    /// The errors are those [`Envelope::parse`] gives for the same line.
    pub fn parse_headers(buf: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(EnvelopeError::Empty);
        }
        let (line, _) = read_line(buf, 0)?;
        parse_header_object(line).map_err(EnvelopeError::Header)
    }

    /// Parses an envelope. Blank lines between items are tolerated.
    pub fn parse(buf: &'a [u8]) -> Result<Envelope<'a>, EnvelopeError> {
        if buf.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(EnvelopeError::Empty);
        }
        let (line, mut pos) = read_line(buf, 0)?;
        let headers = parse_header_object(line).map_err(EnvelopeError::Header)?;
        let mut items = Vec::new();
        loop {
            // Skip blank lines (some clients end with "\n\n" or separate items with them).
            while pos < buf.len() && (buf[pos] == b'\n' || buf[pos] == b'\r') {
                pos += 1;
            }
            if pos >= buf.len() {
                break;
            }
            let at = pos;
            let (line, next) = read_line(buf, pos)?;
            let headers = parse_header_object(line).map_err(|reason| EnvelopeError::ItemHeader { at, reason })?;
            match headers.get("type") {
                Some(Value::String(t)) if !t.is_empty() => {}
                _ => return Err(EnvelopeError::ItemHeader { at, reason: "missing \"type\"".into() }),
            }
            pos = next;
            let payload = match headers.get("length") {
                None | Some(Value::Null) => {
                    let end = memchr(b'\n', &buf[pos..]).map_or(buf.len(), |i| pos + i);
                    let p = &buf[pos..end];
                    pos = end;
                    p
                }
                Some(v) => {
                    let length = v
                        .as_u64()
                        .and_then(|l| usize::try_from(l).ok())
                        .ok_or_else(|| EnvelopeError::ItemHeader { at, reason: format!("\"length\" must be a non-negative integer, got {v}") })?;
                    let available = buf.len() - pos;
                    if length > available {
                        return Err(EnvelopeError::Truncated { at, length, available });
                    }
                    let p = &buf[pos..pos + length];
                    pos += length;
                    if pos < buf.len() && buf[pos] != b'\n' {
                        return Err(EnvelopeError::MissingNewline { at, length });
                    }
                    p
                }
            };
            items.push(Item { headers, payload });
        }
        Ok(Envelope { headers, items })
    }

    /// The envelope header `event_id`, normalized, if valid.
    pub fn event_id(&self) -> Option<String> {
        self.headers.get("event_id").and_then(Value::as_str).and_then(crate::parse_event_id)
    }

    /// The envelope header `dsn`, if any.
    pub fn dsn(&self) -> Option<&str> {
        self.headers.get("dsn").and_then(Value::as_str)
    }
}

impl Item<'_> {
    /// The item type (`event`, `attachment`, ...).
    pub fn item_type(&self) -> &str {
        self.headers.get("type").and_then(Value::as_str).unwrap_or_default()
    }

    /// A string header of the item, e.g. `filename` or `content_type`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(Value::as_str)
    }
}

/// Returns the line starting at `pos` (without `\n`) and the position after it.
fn read_line(buf: &[u8], pos: usize) -> Result<(&[u8], usize), EnvelopeError> {
    let rest = &buf[pos..];
    let end = memchr(b'\n', rest).unwrap_or(rest.len());
    if end > MAX_HEADER_SIZE {
        return Err(EnvelopeError::HeaderTooLong { at: pos });
    }
    let next = if end < rest.len() { pos + end + 1 } else { buf.len() };
    Ok((&rest[..end], next))
}

fn parse_header_object(line: &[u8]) -> Result<Map<String, Value>, String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    match crate::json::parse_lenient(line) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(format!("expected a JSON object, got {}", crate::json::type_name(&other))),
        Err(e) => Err(e.to_string()),
    }
}

fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The docs' full example: explicit lengths, a BOM and `\r\n` inside a payload, implicit last item.
    #[test]
    fn docs_example() {
        let buf = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://e12d836b15bb49d7bbf99e64295d995b@example.com/42\"}\n\
{\"type\":\"event\",\"length\":41,\"content_type\":\"application/json\"}\n\
{\"message\":\"hello world\",\"level\":\"error\"}\n\
{\"type\":\"attachment\",\"length\":10,\"content_type\":\"text/plain\",\"filename\":\"hello.txt\"}\n\
\xef\xbb\xbfHello\r\n\n\
{\"type\":\"client_report\"}\n\
{\"timestamp\":\"2020-02-07T14:16:00Z\",\"discarded_events\":[{\"reason\":\"queue_overflow\",\"category\":\"error\",\"quantity\":2}]}";
        let env = Envelope::parse(buf).unwrap();
        assert_eq!(env.event_id().as_deref(), Some("9ec79c33ec9942ab8353589fcb2e04dc"));
        assert_eq!(env.dsn(), Some("https://e12d836b15bb49d7bbf99e64295d995b@example.com/42"));
        let types: Vec<_> = env.items.iter().map(|i| i.item_type()).collect();
        assert_eq!(types, ["event", "attachment", "client_report"]);
        assert_eq!(env.items[1].payload, b"\xef\xbb\xbfHello\r\n");
        assert_eq!(env.items[1].header_str("filename"), Some("hello.txt"));
        assert!(env.items[2].payload.starts_with(b"{\"timestamp\""));
    }

    #[test]
    fn empty_items_and_header_only() {
        let env = Envelope::parse(b"{}").unwrap();
        assert!(env.items.is_empty());
        let env = Envelope::parse(b"{}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"session\"}\n{}\n").unwrap();
        assert_eq!(env.items.len(), 2);
        assert_eq!(env.items[0].payload, b"");
        assert_eq!(env.items[1].payload, b"{}");
    }

    #[test]
    fn malformed() {
        assert_eq!(Envelope::parse(b"").unwrap_err(), EnvelopeError::Empty);
        assert!(matches!(Envelope::parse(b"[]\n").unwrap_err(), EnvelopeError::Header(_)));
        assert!(matches!(Envelope::parse(b"{}\n{\"length\":1}\nx").unwrap_err(), EnvelopeError::ItemHeader { .. }));
        assert!(matches!(Envelope::parse(b"{}\n{\"type\":\"event\",\"length\":10}\nabc").unwrap_err(), EnvelopeError::Truncated { .. }));
        assert!(matches!(Envelope::parse(b"{}\n{\"type\":\"event\",\"length\":1}\nabc").unwrap_err(), EnvelopeError::MissingNewline { .. }));
        assert!(matches!(Envelope::parse(b"{}\n{\"type\":\"event\",\"length\":-1}\nabc").unwrap_err(), EnvelopeError::ItemHeader { .. }));
        assert!(matches!(Envelope::parse(b"{}\nnot json\n").unwrap_err(), EnvelopeError::ItemHeader { .. }));
    }

    #[test]
    fn crlf_belongs_to_payload_without_length() {
        let env = Envelope::parse(b"{}\r\n{\"type\":\"event\"}\r\n{\"a\":1}\r\n").unwrap();
        assert_eq!(env.items[0].payload, b"{\"a\":1}\r");
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// The parser never panics, whatever the bytes.
            #[test]
            fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = Envelope::parse(&bytes);
            }

            /// Items written with explicit lengths come back byte for byte.
            #[test]
            fn round_trip(payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..6)) {
                let mut buf = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n".to_vec();
                for p in &payloads {
                    buf.extend_from_slice(format!("{{\"type\":\"attachment\",\"length\":{}}}\n", p.len()).as_bytes());
                    buf.extend_from_slice(p);
                    buf.push(b'\n');
                }
                let env = Envelope::parse(&buf).unwrap();
                prop_assert_eq!(env.items.len(), payloads.len());
                for (item, p) in env.items.iter().zip(&payloads) {
                    prop_assert_eq!(item.payload, &p[..]);
                }
            }
        }
    }
}
