//! The lenient reader: rewrites JSON as fastjson (and the C++ client) write it into standard JSON,
//! in one pass, so that `serde_json` can then deserialize it.
//!
//! Accepted beyond standard JSON: bare object keys (`{0:"a"}`, `{-1:2}`, `{name:1}`), object or array
//! keys (`{{"brokerName":"b","queueId":0,"topic":"t"}:5}`, rewritten to a string key holding the key's
//! compact JSON with sorted members), single-quoted strings, raw control characters and `\x`/`\'`
//! escapes inside strings, one trailing comma in an object or array, a UTF-8 byte-order mark, and the
//! fastjson type suffixes `L`/`S`/`B`/`F`/`D` after a number. Object members whose value is `null` are
//! dropped, because fastjson treats `null` and absent alike (it never writes null members itself).
//!
//! Every byte is looked at a bounded number of times: containers nested deeper than [`MAX_DEPTH`] and
//! object keys nested inside object keys more than [`MAX_KEY_NESTING`] deep are refused rather than
//! recursed into.

use crate::error::{ProtocolError, Result};

/// Most containers (objects and arrays) that may be nested in one document. It equals `serde_json`'s
/// own limit, so a document this reader passes on is never refused by the parser for its depth.
pub const MAX_DEPTH: usize = 127;

/// Most object keys that may be nested inside object keys. Each level is re-escaped into a string,
/// which can double its length, so this bounds the output at a small multiple of the input.
pub const MAX_KEY_NESTING: usize = 2;

/// Rewrites lenient JSON into standard JSON text.
pub fn normalize(input: &[u8]) -> Result<Vec<u8>> {
    let mut n = Normalizer {
        src: input,
        pos: 0,
        key_nesting: 0,
    };
    if n.src.starts_with(b"\xEF\xBB\xBF") {
        n.pos = 3;
    }
    let mut out = Vec::with_capacity(input.len() + input.len() / 8 + 16);
    n.skip_ws();
    n.value(&mut out, 0)?;
    n.skip_ws();
    if n.pos < n.src.len() {
        return Err(n.error("trailing characters after the JSON value"));
    }
    Ok(out)
}

struct Normalizer<'a> {
    src: &'a [u8],
    pos: usize,
    key_nesting: usize,
}

/// What `value` wrote, so an object can drop a `null` member.
#[derive(PartialEq, Eq)]
enum Written {
    Null,
    Other,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0C | 0x08)
}

/// Bytes allowed in a bare (unquoted) key: identifier and number characters, and any non-ASCII byte
/// so identifiers in other scripts pass through as UTF-8.
fn is_bare_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'-' | b'+' | b'.') || b >= 0x80
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Writes `\u00XX` for one byte.
fn push_u00(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b"\\u00");
    out.push(HEX[usize::from(b >> 4)]);
    out.push(HEX[usize::from(b & 0xF)]);
}

impl Normalizer<'_> {
    fn error(&self, what: &str) -> ProtocolError {
        ProtocolError::InvalidBody(format!("{what} at byte {}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    /// The input from `start` up to the current position.
    fn since(&self, start: usize) -> &[u8] {
        self.src.get(start..self.pos).unwrap_or_default()
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            if !is_ws(b) {
                break;
            }
            self.pos += 1;
        }
    }

    fn value(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<Written> {
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'{') => self.object(out, depth + 1).map(|_| Written::Other),
            Some(b'[') => self.array(out, depth + 1).map(|_| Written::Other),
            Some(q @ (b'"' | b'\'')) => self.string(out, q).map(|_| Written::Other),
            Some(b'-' | b'+' | b'.' | b'0'..=b'9') => self.number(out).map(|_| Written::Other),
            Some(b) if b.is_ascii_alphabetic() => self.literal(out),
            Some(_) => Err(self.error("unexpected character")),
        }
    }

    fn enter(&self, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(self.error(&format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<()> {
        self.enter(depth)?;
        self.pos += 1; // '{'
        out.push(b'{');
        let mut first = true;
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.error("unterminated object")),
                Some(b'}') => {
                    self.pos += 1;
                    out.push(b'}');
                    return Ok(());
                }
                Some(_) => {}
            }
            let mark = out.len();
            if !first {
                out.push(b',');
            }
            self.key(out, depth)?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after an object key"));
            }
            self.pos += 1;
            out.push(b':');
            self.skip_ws();
            if self.value(out, depth)? == Written::Null {
                out.truncate(mark);
            } else {
                first = false;
            }
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    // A following '}' (trailing comma) is handled at the top of the loop; a second
                    // comma is not a key and fails there.
                    self.skip_ws();
                    if self.peek() == Some(b',') {
                        return Err(self.error("empty object member"));
                    }
                }
                Some(b'}') => {}
                None => return Err(self.error("unterminated object")),
                Some(_) => return Err(self.error("expected ',' or '}' in an object")),
            }
        }
    }

    fn array(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<()> {
        self.enter(depth)?;
        self.pos += 1; // '['
        out.push(b'[');
        let mut first = true;
        loop {
            self.skip_ws();
            match self.peek() {
                None => return Err(self.error("unterminated array")),
                Some(b']') => {
                    self.pos += 1;
                    out.push(b']');
                    return Ok(());
                }
                Some(b',') => return Err(self.error("empty array element")),
                Some(_) => {}
            }
            if !first {
                out.push(b',');
            }
            first = false;
            self.value(out, depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {}
                None => return Err(self.error("unterminated array")),
                Some(_) => return Err(self.error("expected ',' or ']' in an array")),
            }
        }
    }

    fn key(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<()> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.string(out, q),
            Some(b'{' | b'[') => self.container_key(out, depth),
            Some(b) if is_bare_key_byte(b) => {
                let start = self.pos;
                while self.peek().is_some_and(is_bare_key_byte) {
                    self.pos += 1;
                }
                out.push(b'"');
                out.extend_from_slice(self.since(start));
                out.push(b'"');
                Ok(())
            }
            Some(_) => Err(self.error("expected an object key")),
            None => Err(self.error("unterminated object")),
        }
    }

    /// An object or array used as a key becomes a string holding its canonical JSON (compact,
    /// members sorted), so equal keys written with different spacing or member order compare equal.
    fn container_key(&mut self, out: &mut Vec<u8>, depth: usize) -> Result<()> {
        if self.key_nesting >= MAX_KEY_NESTING {
            return Err(self.error("object keys nested too deeply inside object keys"));
        }
        self.key_nesting += 1;
        let mut text = Vec::new();
        let res = self.value(&mut text, depth);
        self.key_nesting -= 1;
        res?;
        let canonical: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| self.error(&format!("invalid object key ({e})")))?;
        let canonical = canonical.to_string();
        serde_json::to_writer(&mut *out, &canonical)
            .map_err(|e| self.error(&format!("invalid object key ({e})")))
    }

    fn string(&mut self, out: &mut Vec<u8>, quote: u8) -> Result<()> {
        self.pos += 1; // opening quote
        out.push(b'"');
        loop {
            let Some(b) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match b {
                _ if b == quote => {
                    out.push(b'"');
                    return Ok(());
                }
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => self.escape(out)?,
                0x00..=0x1F => push_u00(out, b),
                _ => out.push(b),
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let Some(e) = self.peek() else {
            return Err(self.error("unterminated string escape"));
        };
        self.pos += 1;
        match e {
            b'\'' => out.push(b'\''),
            b'x' => {
                let hi = self.peek().and_then(hex_digit);
                let lo = self.src.get(self.pos + 1).copied().and_then(hex_digit);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(self.error("invalid \\x escape"));
                };
                self.pos += 2;
                push_u00(out, hi << 4 | lo);
            }
            // Standard escapes (including \uXXXX, whose digits follow as ordinary bytes) are
            // copied; serde_json validates them.
            _ => {
                out.push(b'\\');
                out.push(e);
            }
        }
        Ok(())
    }

    fn number(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if self.peek() == Some(b'+') {
            self.pos += 1;
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("invalid number"));
        }
        out.extend_from_slice(self.since(start));
        if self
            .peek()
            .is_some_and(|b| matches!(b, b'L' | b'S' | b'B' | b'F' | b'D'))
        {
            self.pos += 1;
        }
        Ok(())
    }

    fn literal(&mut self, out: &mut Vec<u8>) -> Result<Written> {
        let start = self.pos;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        match self.since(start) {
            b"true" => out.extend_from_slice(b"true"),
            b"false" => out.extend_from_slice(b"false"),
            b"null" | b"undefined" => {
                out.extend_from_slice(b"null");
                return Ok(Written::Null);
            }
            _ => {
                self.pos = start;
                return Err(self.error("unknown literal"));
            }
        }
        Ok(Written::Other)
    }
}
