//! Draws well-formed records of four sessions from the fuzzer's bytes, with any statuses and
//! shapes and extreme timestamps, and engine settings to go with them: shared by the
//! `lifecycle` and `restore` targets.

use std::io::Write;

use sessionflow::engine::EngineConfig;
use sessionflow::model::KNOWN_STATUSES;

/// Statuses beyond the known ones: an other status, and an empty one.
const OTHER_STATUSES: [&str; 2] = ["unknown_to_us", ""];

const TYPES: [&str; 4] = [
    "session.created",
    "session.ended",
    "session.revoked",
    "session.pending",
];

/// Reads the fuzzer's bytes as small numbers and times.
pub struct Draw<'a>(pub &'a [u8]);

impl Draw<'_> {
    pub fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A time near the last one, far from it, or an extreme.
    pub fn time(&mut self, last: &mut i64) -> Option<i64> {
        let t = match self.byte()? % 8 {
            0 => i64::MAX,
            1 => i64::MIN,
            2 => 0,
            3 => -1 - i64::from(self.byte()?),
            4 => last.saturating_add(i64::from(self.byte()?) * 1_000),
            5 => last.saturating_sub(i64::from(self.byte()?) * 1_000),
            6 => {
                let (&bytes, rest) = self.0.split_first_chunk::<8>()?;
                self.0 = rest;
                i64::from_le_bytes(bytes)
            }
            _ => 1_764_000_000 + i64::from(self.byte()?) * 3_600,
        };
        *last = t;
        Some(t)
    }

    pub fn optional_time(&mut self, last: &mut i64) -> Option<Option<i64>> {
        if self.byte()? % 4 == 0 {
            Some(None)
        } else {
            self.time(last).map(Some)
        }
    }
}

fn json_time(t: Option<i64>) -> String {
    t.map_or_else(|| "null".to_owned(), |t| t.to_string())
}

/// One observation as an input line, or `None` when the bytes run out.
pub fn line(draw: &mut Draw<'_>, last: &mut i64) -> Option<String> {
    let shape = draw.byte()?;
    let id = draw.byte()? % 4;
    let pick = usize::from(draw.byte()?) % (KNOWN_STATUSES.len() + OTHER_STATUSES.len());
    let status = KNOWN_STATUSES
        .get(pick)
        .unwrap_or_else(|| &OTHER_STATUSES[pick - KNOWN_STATUSES.len()]);
    let updated_at = draw.time(last)?;
    let created_at = draw.optional_time(last)?;
    let expire_at = draw.optional_time(last)?;
    let abandon_at = draw.optional_time(last)?;
    let actor = if shape & 4 != 0 {
        r#"{"sub":"user_admin"}"#
    } else {
        "null"
    };
    let session = format!(
        r#"{{"object":"session","id":"sess_{id}","user_id":"user_{id}","client_id":"client_1","actor":{actor},"status":"{status}","updated_at":{updated_at},"created_at":{},"expire_at":{},"abandon_at":{}}}"#,
        json_time(created_at),
        json_time(expire_at),
        json_time(abandon_at),
    );
    Some(match shape % 4 {
        0 | 1 => session,
        2 => format!("[{session}]"),
        _ => format!(
            r#"{{"object":"event","type":"{}","timestamp":{},"data":{session}}}"#,
            TYPES[usize::from(shape >> 4) % TYPES.len()],
            draw.time(last)?,
        ),
    })
}

/// Lateness, retention (any non-negative value, as the CLI takes) and an end of input.
pub fn settings(draw: &mut Draw<'_>, last: &mut i64) -> Option<(EngineConfig, Option<i64>)> {
    let lateness = draw.time(last)?;
    let retention = draw.time(last)?;
    let until = draw.optional_time(last)?;
    let config = EngineConfig {
        allowed_lateness_ms: lateness.checked_abs().unwrap_or(i64::MAX),
        terminal_retention_ms: retention.checked_abs().unwrap_or(i64::MAX),
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    Some((config, until))
}

/// The drawn records, one a line.
pub fn lines(draw: &mut Draw<'_>, last: &mut i64) -> Vec<u8> {
    let mut input = Vec::new();
    while let Some(line) = line(draw, last) {
        writeln!(input, "{line}").unwrap();
    }
    input
}
