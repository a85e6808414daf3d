//! A JSON parser for the common case, building the same `serde_json::Value`
//! as serde_json does (same maps, same number kinds), with less work per
//! byte: strings are scanned eight bytes at a time and there is no visitor
//! machinery between the bytes and the tree. The same parser also only
//! checks a text, building nothing ([`validates`]: ingest's check).
//!
//! It gives up (`None`) on anything unusual rather than deciding it: deep
//! nesting, floats it cannot hand to serde_json, integers that do not fit,
//! `-0`, surrogate escapes that are not a valid pair, and every syntax
//! error. The caller then parses with serde_json, which either agrees or
//! reports the error; so a `Some` is always what serde_json would return.

use serde_json::{Map, Number, Value};

/// Deeper than this, serde_json decides (its own limit is
/// [`crate::limits::MAX_JSON_DEPTH`]).
const MAX_DEPTH: usize = 100;

/// The value of the whole text, or `None` to leave it to serde_json.
pub(crate) fn parse(text: &str) -> Option<Value> {
    parse_as::<Value>(text)
}

/// Whether [`parse`] would return a value for the text, found without
/// building it (no allocation; about as fast as serde_json's own check
/// without a value, which accepts more than its parse does). `false` leaves
/// the text to serde_json, as `None` does.
pub(crate) fn validates(text: &str) -> bool {
    parse_as::<()>(text).is_some()
}

fn parse_as<T: Tree>(text: &str) -> Option<T> {
    let mut p = Parser { text, bytes: text.as_bytes(), at: 0 };
    p.whitespace();
    let value = p.value::<T>(0)?;
    p.whitespace();
    (p.at == p.bytes.len()).then_some(value)
}

/// What the parser builds: a `serde_json::Value`, or nothing at all (`()`,
/// whose maps, strings and array items take no memory). One grammar for
/// both, so the check cannot accept a text the parse would not.
trait Tree: Sized {
    type Map: Default;
    type Text: Text;
    fn null() -> Self;
    fn bool(b: bool) -> Self;
    fn number(n: Number) -> Self;
    fn string(s: Self::Text) -> Self;
    fn array(items: Vec<Self>) -> Self;
    fn object(map: Self::Map) -> Self;
    /// A repeated key: the last value wins, as in serde_json.
    fn insert(map: &mut Self::Map, key: Self::Text, value: Self);
}

/// A string being decoded: a `String`, or nothing.
trait Text {
    fn new(plain: &str, capacity: usize) -> Self;
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
}

impl Tree for Value {
    type Map = Map<String, Value>;
    type Text = String;
    fn null() -> Self {
        Value::Null
    }
    fn bool(b: bool) -> Self {
        Value::Bool(b)
    }
    fn number(n: Number) -> Self {
        Value::Number(n)
    }
    fn string(s: String) -> Self {
        Value::String(s)
    }
    fn array(items: Vec<Value>) -> Self {
        Value::Array(items)
    }
    fn object(map: Self::Map) -> Self {
        Value::Object(map)
    }
    fn insert(map: &mut Self::Map, key: String, value: Value) {
        map.insert(key, value);
    }
}

impl Text for String {
    fn new(plain: &str, capacity: usize) -> Self {
        let mut s = String::with_capacity(capacity);
        s.push_str(plain);
        s
    }
    fn push_str(&mut self, s: &str) {
        self.push_str(s);
    }
    fn push(&mut self, c: char) {
        self.push(c);
    }
}

impl Tree for () {
    type Map = ();
    type Text = ();
    fn null() {}
    fn bool(_: bool) {}
    fn number(_: Number) {}
    fn string(_: ()) {}
    fn array(_: Vec<()>) {}
    fn object(_: ()) {}
    fn insert(_: &mut (), _: (), _: ()) {}
}

impl Text for () {
    fn new(_: &str, _: usize) {}
    fn push_str(&mut self, _: &str) {}
    fn push(&mut self, _: char) {}
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

    fn value<T: Tree>(&mut self, depth: usize) -> Option<T> {
        match self.peek()? {
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b'"' => {
                self.at += 1;
                self.string::<T::Text>().map(T::string)
            }
            b't' => self.literal("true", T::bool(true)),
            b'f' => self.literal("false", T::bool(false)),
            b'n' => self.literal("null", T::null()),
            b'-' | b'0'..=b'9' => self.number().map(T::number),
            _ => None,
        }
    }

    fn literal<T>(&mut self, word: &str, value: T) -> Option<T> {
        self.bytes[self.at..].starts_with(word.as_bytes()).then(|| {
            self.at += word.len();
            value
        })
    }

    fn object<T: Tree>(&mut self, depth: usize) -> Option<T> {
        let mut map = T::Map::default();
        if self.open(depth, b'}')? {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                self.at += 1;
                let key = self.string::<T::Text>()?;
                self.whitespace();
                if self.peek()? != b':' {
                    return None;
                }
                self.at += 1;
                self.whitespace();
                let value = self.value::<T>(depth)?;
                T::insert(&mut map, key, value);
                if !self.next_item(b'}')? {
                    break;
                }
            }
        }
        Some(T::object(map))
    }

    fn array<T: Tree>(&mut self, depth: usize) -> Option<T> {
        let mut items = Vec::new();
        if self.open(depth, b']')? {
            loop {
                items.push(self.value::<T>(depth)?);
                if !self.next_item(b']')? {
                    break;
                }
            }
        }
        Some(T::array(items))
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
    fn string<S: Text>(&mut self) -> Option<S> {
        let start = self.at;
        let mut at = find_special(self.bytes, start)?;
        if self.bytes[at] == b'"' {
            self.at = at + 1;
            return Some(S::new(&self.text[start..at], at - start));
        }
        let mut out = S::new(&self.text[start..at], at - start + 16);
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
                            let unit = hex4(self.bytes, at)?;
                            at += 4;
                            let c = match unit {
                                0xD800..=0xDBFF => {
                                    // Only a high surrogate followed by a low one is a character.
                                    if self.bytes.get(at..at + 2)? != b"\\u" {
                                        return None;
                                    }
                                    let low = hex4(self.bytes, at + 2)?;
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


    fn number(&mut self) -> Option<Number> {
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
            return serde_json::from_str::<Number>(&self.text[start..self.at]).ok();
        }
        let magnitude: u64 = self.text[start + usize::from(negative)..self.at].parse().ok()?;
        match (negative, magnitude) {
            (false, n) => Some(Number::from(n)),
            // serde_json makes `-0` a float, and too-negative integers too.
            (true, 0) => None,
            (true, n) if n <= 1 << 63 => Some(Number::from((n as i64).wrapping_neg())),
            (true, _) => None,
        }
    }
}

/// The UTF-16 code unit written as the four hex digits at `at` (of a
/// `\uXXXX` escape), if they are four hex digits.
pub(crate) fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |n, &d| Some(n * 16 + (d as char).to_digit(16)?))
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
