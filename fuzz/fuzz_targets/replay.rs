//! `replay` on any bytes: it never panics, and reading the input as a stream (in reads of a
//! size the input picks, under a record limit it picks) gives exactly the events, dead
//! letters and counts of replaying the same bytes held in memory.

#![no_main]

#[path = "../../tests/common/trickle.rs"]
mod trickle;

use libfuzzer_sys::fuzz_target;
use sessionflow::engine::EngineConfig;
use sessionflow::parse::Limits;
use sessionflow::replay::ReplayOptions;
use trickle::replayed;

fuzz_target!(|bytes: &[u8]| {
    let Some((&[read_size, limit, lateness, retention], input)) = bytes.split_first_chunk() else {
        return;
    };
    let options = ReplayOptions {
        engine: EngineConfig {
            allowed_lateness_ms: i64::from(lateness) * 60_000,
            terminal_retention_ms: i64::from(retention) * 3_600_000,
            max_clock_skew_ms: 0,
            max_sessions: None,
        },
        until_ms: None,
        // 0 keeps the default; otherwise small enough that lines run over it.
        limits: Limits {
            max_record_bytes: match limit {
                0 => Limits::default().max_record_bytes,
                n => usize::from(n) * 8,
            },
            ..Limits::default()
        },
    };
    let read_size = usize::from(read_size).max(1);
    assert_eq!(
        replayed(input, Some(read_size), &options),
        replayed(input, None, &options)
    );
});
