//! A direct reader for the JSON headers peers normally send: one object whose members are
//! strings and integers, `extFields` an object of strings. It returns `None` on anything else
//! (`null`, booleans, numbers written as strings or as floats, nested values, surrogate escapes,
//! duplicate members, malformed input), and the caller then runs the lenient serde reader, so
//! what it accepts it decodes exactly as that reader would; it only skips serde's per-member
//! visitor machinery on the hot path.

use std::borrow::Cow;

use bytes::Bytes;

use super::{ExtFields, LanguageCode, RemotingCommand, SerializeType};

/// Position of the first byte at or after `i` that a JSON string cannot hold as is (`"`, `\\` or a
/// control character), or `b.len()`. Eight bytes at a time, then byte by byte.
pub(super) fn find_special(b: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(c) = b.get(i..i + 8) {
        let x = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        let quote = x ^ (LO * u64::from(b'"'));
        let backslash = x ^ (LO * u64::from(b'\\'));
        let hit = (quote.wrapping_sub(LO) & !quote)
            | (backslash.wrapping_sub(LO) & !backslash)
            | (x.wrapping_sub(LO * 0x20) & !x);
        if hit & HI != 0 {
            break;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.eat(b'"')?;
        let start = self.i;
        self.i = find_special(self.b, self.i);
        match *self.b.get(self.i)? {
            b'"' => {
                let s = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
                self.i += 1;
                Some(Cow::Borrowed(s))
            }
            b'\\' => self.escaped_string(start).map(Cow::Owned),
            _ => None,
        }
    }

    /// The rest of a string that has escapes; `start` is just after its opening quote.
    fn escaped_string(&mut self, start: usize) -> Option<String> {
        let mut out: Vec<u8> = self.b.get(start..self.i)?.to_vec();
        loop {
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    let e = *self.b.get(self.i + 1)?;
                    self.i += 2;
                    let c = match e {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            let mut code = 0u32;
                            for &h in self.b.get(self.i..self.i + 4)? {
                                code = (code << 4) | char::from(h).to_digit(16)?;
                            }
                            // Surrogate pairs are left to serde.
                            let ch = char::from_u32(code)?;
                            self.i += 4;
                            let mut utf8 = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut utf8).as_bytes());
                            continue;
                        }
                        _ => return None,
                    };
                    out.push(c);
                }
                0x00..=0x1f => return None,
                _ => {
                    let end = find_special(self.b, self.i);
                    out.extend_from_slice(self.b.get(self.i..end)?);
                    self.i = end;
                }
            }
        }
    }

    /// A JSON integer (no fraction, no exponent) that fits an `i32`.
    fn int(&mut self) -> Option<i32> {
        self.ws();
        let start = self.i;
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        let n = self.i - digits;
        // No leading zeros; `-0` is left to serde, which reads it as a float.
        let leading_zero = self.b.get(digits) == Some(&b'0');
        if n == 0 || n > 11 || (leading_zero && (n > 1 || digits > start)) {
            return None;
        }
        if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let text = std::str::from_utf8(self.b.get(start..self.i)?).ok()?;
        text.parse::<i64>().ok().and_then(|v| i32::try_from(v).ok())
    }

    /// Skips a member value of an unknown key: only strings and integers are expected there.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            _ => self.int().map(drop),
        }
    }

    fn ext_fields(&mut self) -> Option<ExtFields> {
        self.eat(b'{')?;
        let mut ext = ExtFields::with_capacity(16);
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(ext);
        }
        // A key whose (length, last byte) was not seen before cannot repeat an earlier one, and
        // is appended without searching the keys so far.
        let mut seen = 0u64;
        loop {
            let k = self.string()?;
            self.eat(b':')?;
            let v = self.string()?.into_owned();
            let bit = 1u64 << ((k.len() * 7 + usize::from(k.bytes().last().unwrap_or(0))) % 64);
            let fresh = seen & bit == 0;
            seen |= bit;
            match (intern(&k), fresh) {
                (Some(key), true) => ext.push_static_unchecked(key, v),
                (Some(key), false) => ext.insert_static(key, v),
                (None, _) => ext.insert(k.into_owned(), v),
            }
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(ext);
                }
                _ => return None,
            }
        }
    }
}

/// The extFields keys of the requests and responses on the message path (send, pull), so that
/// decoding them allocates no key.
fn intern(key: &str) -> Option<&'static str> {
    // SEND_MESSAGE_V2 / SEND_BATCH_MESSAGE
    const LETTERS: [&str; 14] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n",
    ];
    const KEYS: &[&str] = &[
        // send response
        "msgId",
        "queueId",
        "queueOffset",
        "transactionId",
        "MSG_REGION",
        "TRACE_ON",
        // pull request and response
        "consumerGroup",
        "topic",
        "maxMsgNums",
        "sysFlag",
        "commitOffset",
        "suspendTimeoutMillis",
        "subscription",
        "subVersion",
        "expressionType",
        "maxMsgBytes",
        "suggestWhichBrokerId",
        "nextBeginOffset",
        "minOffset",
        "maxOffset",
        "topicSysFlag",
        "groupSysFlag",
        "bname",
    ];
    if let [c] = key.as_bytes() {
        return LETTERS.get(usize::from(c.wrapping_sub(b'a'))).copied();
    }
    KEYS.iter().copied().find(|k| super::key_eq(k, key))
}

/// Decodes `header` if it has the usual shape; `None` sends the caller to the lenient reader.
pub(super) fn decode(header: &[u8]) -> Option<RemotingCommand> {
    let mut s = Scan { b: header, i: 0 };
    let mut cmd = RemotingCommand {
        code: 0,
        language: LanguageCode::Other,
        version: 0,
        opaque: 0,
        flag: 0,
        remark: None,
        ext_fields: ExtFields::new(),
        body: Bytes::new(),
        serialize_type: SerializeType::Json,
        body_tail: Box::default(),
    };
    s.eat(b'{')?;
    let mut seen = 0u8;
    let mut once = |bit: u8| -> Option<()> {
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        Some(())
    };
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            let key = s.string()?;
            s.eat(b':')?;
            match key.as_ref() {
                "code" => {
                    once(1)?;
                    cmd.code = s.int()?;
                }
                "language" => {
                    once(2)?;
                    cmd.language = LanguageCode::from_name(&s.string()?);
                }
                "version" => {
                    once(4)?;
                    cmd.version = s.int()?;
                }
                "opaque" => {
                    once(8)?;
                    cmd.opaque = s.int()?;
                }
                "flag" => {
                    once(16)?;
                    cmd.flag = s.int()?;
                }
                "remark" => {
                    once(32)?;
                    cmd.remark = Some(s.string()?.into_owned());
                }
                "extFields" => {
                    once(64)?;
                    cmd.ext_fields = s.ext_fields()?;
                }
                _ => s.skip_value()?,
            }
            match s.peek()? {
                b',' => s.i += 1,
                b'}' => {
                    s.i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == header.len()).then_some(cmd)
}
