//! Serialises derived events (SPEC section 4) and replay dead-letter lines (SPEC section 5)
//! as compact JSON into a reused byte buffer, without going through a generic serializer.

use crate::model::{Anomaly, DerivedEvent, Source, Transition};
use crate::parse::ParseError;

/// Appends `event` as one JSON object (no newline).
pub fn write_event(out: &mut Vec<u8>, event: &DerivedEvent<'_>) {
    match event {
        DerivedEvent::Transition(t) => write_transition(out, t),
        DerivedEvent::Anomaly(a) => write_anomaly(out, a),
    }
}

fn write_transition(out: &mut Vec<u8>, t: &Transition<'_>) {
    out.extend_from_slice(b"{\"type\":\"session.transition\",\"session_id\":");
    write_str(out, t.session_id);
    out.extend_from_slice(b",\"user_id\":");
    write_opt_str(out, t.user_id);
    out.extend_from_slice(b",\"client_id\":");
    write_opt_str(out, t.client_id);
    out.extend_from_slice(b",\"from\":");
    write_opt_str(out, t.from);
    out.extend_from_slice(b",\"to\":");
    write_str(out, t.to);
    out.extend_from_slice(b",\"cause\":\"");
    out.extend_from_slice(t.cause.as_str().as_bytes());
    out.extend_from_slice(b"\",\"at\":");
    write_int(out, t.at);
    out.extend_from_slice(b",\"in_state_ms\":");
    write_opt_int(out, t.in_state_ms);
    out.extend_from_slice(b",\"session_age_ms\":");
    write_opt_int(out, t.session_age_ms);
    out.extend_from_slice(if t.impersonated {
        b",\"impersonated\":true,\"source\":"
    } else {
        b",\"impersonated\":false,\"source\":"
    });
    write_source(out, t.source.as_ref());
    out.push(b'}');
}

fn write_anomaly(out: &mut Vec<u8>, a: &Anomaly<'_>) {
    out.extend_from_slice(b"{\"type\":\"session.anomaly\",\"kind\":\"");
    out.extend_from_slice(a.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"session_id\":");
    write_str(out, a.session_id);
    out.extend_from_slice(b",\"user_id\":");
    write_opt_str(out, a.user_id);
    out.extend_from_slice(b",\"status\":");
    write_opt_str(out, a.status);
    out.extend_from_slice(b",\"observed\":");
    write_str(out, a.observed);
    out.extend_from_slice(b",\"at\":");
    write_int(out, a.at);
    out.extend_from_slice(b",\"source\":");
    write_source(out, a.source.as_ref());
    out.push(b'}');
}

fn write_source(out: &mut Vec<u8>, source: Option<&Source<'_>>) {
    match source {
        None => out.extend_from_slice(b"null"),
        Some(s) => {
            out.extend_from_slice(b"{\"topic\":");
            write_str(out, s.topic);
            out.extend_from_slice(b",\"partition\":");
            write_int(out, i64::from(s.partition));
            out.extend_from_slice(b",\"offset\":");
            write_int(out, s.offset);
            out.push(b'}');
        }
    }
}

/// Appends a replay dead-letter line object: `{"line":N,"kind":…,"error":…,"raw":…}`. `raw`
/// is the line (bytes that are not UTF-8 replaced, so the line stays JSON), or its first bytes
/// when it was longer than the record limit: `raw_bytes` then gives its whole length, so that
/// one oversized line cannot make the output many times its own size.
pub fn write_dead_letter_line(
    out: &mut Vec<u8>,
    line: u64,
    error: &ParseError,
    raw: &[u8],
    raw_bytes: usize,
) {
    out.extend_from_slice(b"{\"line\":");
    write_int(out, line as i64);
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(error.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"error\":");
    write_str(out, &error.to_string());
    out.extend_from_slice(b",\"raw\":");
    write_str(out, &String::from_utf8_lossy(raw));
    if raw_bytes > raw.len() {
        out.extend_from_slice(b",\"raw_bytes\":");
        write_int(out, raw_bytes as i64);
    }
    out.push(b'}');
}

#[inline]
fn write_int(out: &mut Vec<u8>, v: i64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

#[inline]
fn write_opt_int(out: &mut Vec<u8>, v: Option<i64>) {
    match v {
        Some(v) => write_int(out, v),
        None => out.extend_from_slice(b"null"),
    }
}

#[inline]
fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string literal, escaping quotes, backslashes and control characters.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Ids and statuses almost never need escaping: copy them whole. A fold without an early
    // exit, so that the compiler can check many bytes at a time.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_with_quotes_and_control_characters_stay_valid_json() {
        let mut out = Vec::new();
        let text = "a\"b\\c\nd\u{1}é";
        write_str(&mut out, text);
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, text);
    }
}
