//! A JSON parser for the common case, building the same `serde_json::Value`
//! as serde_json does (same maps, same number kinds), with less work per
//! byte: strings are scanned eight bytes at a time and there is no visitor
//! machinery between the bytes and the tree.
//!
//! It gives up (`None`) on anything unusual rather than deciding it: deep
//! nesting, floats it cannot hand to serde_json, integers that do not fit,
//! `-0`, surrogate escapes that are not a valid pair, and every syntax
//! error. The caller then parses with serde_json, which either agrees or
//! reports the error; so a `Some` is always what serde_json would return.

use serde_json::{Map, Value};

/// Deeper than this, serde_json decides (its own limit is
/// [`crate::limits::MAX_JSON_DEPTH`]).
const MAX_DEPTH: usize = 100;

/// The value of the whole text, or `None` to leave it to serde_json.
pub(crate) fn parse(text: &str) -> Option<Value> {
    let mut p = Parser { text, bytes: text.as_bytes(), at: 0 };
    p.whitespace();
    let value = p.value(0)?;
    p.whitespace();
    (p.at == p.bytes.len()).then_some(value)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => {
                self.at += 1;
                self.string().map(Value::String)
            }
            b't' => self.literal("true", Value::Bool(true)),
            b'f' => self.literal("false", Value::Bool(false)),
            b'n' => self.literal("null", Value::Null),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> Option<Value> {
        self.bytes[self.at..].starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            value
        })
    }

    fn object(&mut self, depth: usize) -> Option<Value> {
        let mut map = Map::new();
        if self.open(depth, b'}')? {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                self.at += 1;
                let key = self.string()?;
                self.whitespace();
                if self.peek()? != b':' {
                    return None;
                }
                self.at += 1;
                self.whitespace();
                let value = self.value(depth)?;
                // A repeated key: the last value wins, as in serde_json.
                map.insert(key, value);
                if !self.next_item(b'}')? {
                    break;
                }
            }
        }
        Some(Value::Object(map))
    }

    fn array(&mut self, depth: usize) -> Option<Value> {
        let mut items = Vec::new();
        if self.open(depth, b']')? {
            loop {
                items.push(self.value(depth)?);
                if !self.next_item(b']')? {
                    break;
                }
            }
        }
        Some(Value::Array(items))
    }

    /// Reads the opening bracket of an object or array: true if items
    /// follow, false if `close` came right away (and was read).
    fn open(&mut self, depth: usize, close: u8) -> Option<bool> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.at += 1;
        self.whitespace();
        if self.peek()? == close {
            self.at += 1;
            return Some(false);
        }
        Some(true)
    }

    /// After an item: true if a comma says another follows, false if
    /// `close` ended the list (both read).
    fn next_item(&mut self, close: u8) -> Option<bool> {
        self.whitespace();
        match self.peek()? {
            b',' => {
                self.at += 1;
                self.whitespace();
                Some(true)
            }
            c if c == close => {
                self.at += 1;
                Some(false)
            }
            _ => None,
        }
    }

    /// The rest of a string whose opening quote has been read.
    fn string(&mut self) -> Option<String> {
        let start = self.at;
        let mut at = find_special(self.bytes, start)?;
        if self.bytes[at] == b'"' {
            self.at = at + 1;
            return Some(self.text[start..at].to_owned());
        }
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(&self.text[start..at]);
        loop {
            // The text may end right after an escape.
            match *self.bytes.get(at)? {
                b'"' => {
                    self.at = at + 1;
                    return Some(out);
                }
                b'\\' => {
                    let escape = *self.bytes.get(at + 1)?;
                    at += 2;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let unit = self.hex4(at)?;
                            at += 4;
                            let c = match unit {
                                0xD800..=0xDBFF => {
                                    // Only a high surrogate followed by a low one is a character.
                                    if self.bytes.get(at..at + 2)? != b"\\u" {
                                        return None;
                                    }
                                    let low = self.hex4(at + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&low) {
                                        return None;
                                    }
                                    at += 6;
                                    char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00))?
                                }
                                0xDC00..=0xDFFF => return None,
                                _ => char::from_u32(unit)?,
                            };
                            out.push(c);
                        }
                        _ => return None,
                    }
                }
                0x00..=0x1F => return None, // serde_json refuses raw control characters
                _ => {
                    let next = find_special(self.bytes, at)?;
                    out.push_str(&self.text[at..next]);
                    at = next;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.bytes.get(at..at + 4)?;
        digits.iter().try_fold(0u32, |n, &d| Some(n * 16 + (d as char).to_digit(16)?))
    }

    fn number(&mut self) -> Option<Value> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                while let Some(b'0'..=b'9') = self.peek() {
                    self.at += 1;
                }
            }
            _ => return None,
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            // A float: serde_json parses the token itself, so its rounding
            // is the one every stored value has always had.
            while let Some(b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            return serde_json::from_str::<serde_json::Number>(&self.text[start..self.at]).ok().map(Value::Number);
        }
        let magnitude: u64 = self.text[start + usize::from(negative)..self.at].parse().ok()?;
        match (negative, magnitude) {
            (false, n) => Some(Value::from(n)),
            // serde_json makes `-0` a float, and too-negative integers too.
            (true, 0) => None,
            (true, n) if n <= 1 << 63 => Some(Value::from((n as i64).wrapping_neg())),
            (true, _) => None,
        }
    }
}

/// The first `"`, `\` or control character at or after `from`; `None` if
/// the text ends first.
fn find_special(bytes: &[u8], from: usize) -> Option<usize> {
    const LOW: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        // A high bit for each byte below 0x20, '"' or '\\' (the zero-byte
        // test on x - 0x20.., x ^ '"' and x ^ '\\'). Borrows only carry
        // upwards, so the lowest flagged byte is a real one.
        let quote = x ^ (LOW * u64::from(b'"'));
        let backslash = x ^ (LOW * u64::from(b'\\'));
        let found = ((x.wrapping_sub(LOW * 0x20) & !x) | (quote.wrapping_sub(LOW) & !quote) | (backslash.wrapping_sub(LOW) & !backslash)) & HIGH;
        if found != 0 {
            return Some(i + found.trailing_zeros() as usize / 8);
        }
        i += 8;
    }
    bytes[i..].iter().position(|&b| b < 0x20 || b == b'"' || b == b'\\').map(|p| i + p)
}
