//! simd-json's tape as the classifier reads it (values, the keys of an object, the size of a
//! nested value), and the cold path that words what is wrong with invalid JSON.

use simd_json::{Node, StaticNode};

use super::error::{ErrorKind, ParseError, Place, Problem};
use super::fields::{Field, Keys};

impl<'t> Field<'t> {
    /// The value at tape index `at`.
    pub(super) fn from_node(nodes: &[Node<'t>], at: usize) -> Field<'t> {
        match nodes[at] {
            Node::String(s) => Field::Str(s),
            Node::Object { .. } => Field::Object(at),
            Node::Array { len, .. } => Field::Array(at, len),
            Node::Static(StaticNode::Null) => Field::Null,
            Node::Static(StaticNode::Bool(_)) => Field::Bool,
            Node::Static(StaticNode::I64(v)) => Field::Int(v),
            Node::Static(StaticNode::U64(v)) => Field::Uint(v),
            Node::Static(StaticNode::F64(v)) => Field::Float(v),
        }
    }
}

impl<'t> Keys<'t> {
    /// One pass over a tape object's keys; nested values are skipped in O(1).
    #[inline]
    pub(super) fn scan(nodes: &[Node<'t>], object: usize) -> Keys<'t> {
        let mut keys = Keys::default();
        let Node::Object { len, .. } = nodes[object] else {
            return keys;
        };
        let mut at = object + 1;
        for _ in 0..len {
            let value = at + 1;
            if let Node::String(key) = nodes[at] {
                keys.set(key.as_bytes(), Field::from_node(nodes, value));
            }
            at = value + span(&nodes[value]);
        }
        keys
    }
}

/// Turns simd-json's error into a dead-letter reason. simd-json's categories are coarse
/// (a truncated record is a `Syntax` error at byte 0), so the cold error path re-reads the
/// record to say what is actually wrong and where.
pub(super) fn json_error(e: &simd_json::Error, raw: &[u8], max_depth: usize) -> ParseError {
    use simd_json::ErrorType as E;
    let (what, at) = match e.error() {
        E::DepthLimitExceeded => {
            return ParseError::new(
                ErrorKind::TooLarge,
                Place::Root,
                Problem::TooDeep { limit: max_depth },
            )
        }
        // simd-json's index for these is where its block starts, not the byte at fault.
        E::InvalidUtf8 => (
            "invalid UTF-8",
            std::str::from_utf8(raw)
                .err()
                .map_or(e.index(), |u| u.valid_up_to()),
        ),
        E::InvalidEscape | E::InvalidUnicodeEscape | E::InvalidUnicodeCodepoint => {
            first_bad_escape(raw).unwrap_or(("invalid string escape", e.index()))
        }
        E::InvalidNumber | E::InvalidExponent | E::Overflow => ("invalid number", e.index()),
        E::ExpectedObjectColon => ("expected `:` after an object key", e.index()),
        E::KeyMustBeAString | E::ExpectedObjectKey => ("object key must be a string", e.index()),
        _ => diagnose(raw).unwrap_or(("syntax error", e.index())),
    };
    ParseError::new(ErrorKind::InvalidJson, Place::Root, Problem::Json(what, at))
}

/// The first escape inside a string that JSON (or Unicode) does not allow, and where its
/// backslash is: an unknown escape letter, `\u` without four hex digits, or a surrogate
/// that is not half of a pair.
fn first_bad_escape(raw: &[u8]) -> Option<(&'static str, usize)> {
    let hex4 = |at: usize| -> Option<u16> {
        let digits = raw.get(at..at + 4)?;
        u16::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    };
    let mut in_string = false;
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'"' => in_string = !in_string,
            b'\\' if in_string => {
                match raw.get(i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => match hex4(i + 2) {
                        None => return Some(("`\\u` escape without four hex digits", i)),
                        Some(0xD800..=0xDBFF) => {
                            let low = (raw.get(i + 6..i + 8) == Some(b"\\u"))
                                .then(|| hex4(i + 8))
                                .flatten();
                            if !matches!(low, Some(0xDC00..=0xDFFF)) {
                                return Some(("unpaired surrogate in a `\\u` escape", i));
                            }
                            i += 6;
                        }
                        Some(0xDC00..=0xDFFF) => {
                            return Some(("unpaired surrogate in a `\\u` escape", i))
                        }
                        Some(_) => {}
                    },
                    _ => return Some(("invalid string escape", i)),
                }
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// A structural reading of invalid JSON: strings, brackets and what follows the value.
/// Returns `None` when the structure looks sound (the problem is inside a token).
fn diagnose(raw: &[u8]) -> Option<(&'static str, usize)> {
    let mut stack = BracketStack::default();
    let mut in_string = None;
    let mut escaped = false;
    let mut value_done = false;
    for (i, &b) in raw.iter().enumerate() {
        if in_string.is_some() {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => {
                    in_string = None;
                    value_done = stack.is_empty();
                }
                0..=0x1f => return Some(("control character inside a string", i)),
                _ => {}
            }
            continue;
        }
        if b.is_ascii_whitespace() {
            continue;
        }
        if value_done {
            return Some(("trailing data after the JSON value", i));
        }
        match b {
            b'"' => in_string = Some(i),
            b'{' | b'[' => stack.push(b == b'{'),
            b'}' | b']' => {
                if stack.pop() != Some(b == b'}') {
                    return Some(("unexpected closing bracket", i));
                }
                value_done = stack.is_empty();
            }
            b',' | b':' if stack.is_empty() => return Some(("unexpected character", i)),
            b',' | b':' => {}
            b'-' | b'0'..=b'9' | b'a'..=b'z' | b'.' | b'+' | b'E' => {
                // A scalar; a top-level one ends at the next whitespace.
                if stack.is_empty() && raw.get(i + 1).is_none_or(u8::is_ascii_whitespace) {
                    value_done = true;
                }
            }
            _ => return Some(("unexpected character", i)),
        }
    }
    if let Some(start) = in_string {
        return Some(("unterminated string (record truncated?)", start));
    }
    match stack.last() {
        Some(true) => Some(("unclosed object (record truncated?)", raw.len())),
        Some(false) => Some(("unclosed array (record truncated?)", raw.len())),
        None if raw.iter().all(u8::is_ascii_whitespace) => Some(("empty record", 0)),
        None => None,
    }
}

/// Open brackets as bits (`true` = object), allocation-free: exact for the first 128 levels,
/// counted beyond (the depth limit is far lower).
#[derive(Default)]
struct BracketStack {
    bits: u128,
    depth: usize,
}

impl BracketStack {
    fn push(&mut self, object: bool) {
        if self.depth < 128 {
            self.bits = (self.bits << 1) | u128::from(object);
        }
        self.depth += 1;
    }

    fn last(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.bits & 1 == 1)
    }

    fn pop(&mut self) -> Option<bool> {
        let top = self.last()?;
        self.depth -= 1;
        if self.depth < 128 {
            self.bits >>= 1;
        }
        Some(top)
    }

    fn is_empty(&self) -> bool {
        self.depth == 0
    }
}

/// Number of tape nodes a value occupies, itself included.
#[inline]
pub(super) fn span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}
