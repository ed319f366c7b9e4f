//! The engine on well-formed records with any timestamps and settings: a few sessions whose
//! observations carry the fuzzer's statuses, shapes and times (the extremes of `i64`, values
//! near each other, times in seconds), replayed with its lateness, retention and end of
//! input. Nothing may panic (this build checks integer overflow), and the output is the
//! same when replayed again.

#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use sessionflow::engine::EngineConfig;
use sessionflow::model::KNOWN_STATUSES;
use sessionflow::parse::Limits;
use sessionflow::replay::{replay_bytes, ReplayOptions};

/// Statuses beyond the known ones: an other status, and an empty one.
const OTHER_STATUSES: [&str; 2] = ["unknown_to_us", ""];

const TYPES: [&str; 4] = [
    "session.created",
    "session.ended",
    "session.revoked",
    "session.pending",
];

/// Reads the fuzzer's bytes as small numbers and times.
struct Draw<'a>(&'a [u8]);

impl Draw<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    /// A time near the last one, far from it, or an extreme.
    fn time(&mut self, last: &mut i64) -> Option<i64> {
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

    fn optional_time(&mut self, last: &mut i64) -> Option<Option<i64>> {
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
fn line(draw: &mut Draw<'_>, last: &mut i64) -> Option<String> {
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

fuzz_target!(|bytes: &[u8]| {
    let mut draw = Draw(bytes);
    let mut last = 1_764_000_000_000;
    let (Some(lateness), Some(retention), Some(until)) = (
        draw.time(&mut last),
        draw.time(&mut last),
        draw.optional_time(&mut last),
    ) else {
        return;
    };
    let options = ReplayOptions {
        engine: EngineConfig {
            // The CLI takes any non-negative value.
            allowed_lateness_ms: lateness.checked_abs().unwrap_or(i64::MAX),
            terminal_retention_ms: retention.checked_abs().unwrap_or(i64::MAX),
            max_clock_skew_ms: 0,
            max_sessions: None,
        },
        until_ms: until,
        limits: Limits::default(),
    };
    let mut input = Vec::new();
    while let Some(line) = line(&mut draw, &mut last) {
        writeln!(input, "{line}").unwrap();
    }
    let (mut events, mut dead) = (Vec::new(), Vec::new());
    replay_bytes(&input, &mut events, &mut dead, &options).unwrap();
    let (mut again, mut dead_again) = (Vec::new(), Vec::new());
    replay_bytes(&input, &mut again, &mut dead_again, &options).unwrap();
    assert_eq!(events, again);
    assert_eq!(dead, dead_again);
});
