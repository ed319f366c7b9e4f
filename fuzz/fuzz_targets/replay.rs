//! `replay` on any bytes: it never panics, and reading the input as a stream (in reads of a
//! size the input picks, under a record limit it picks) gives exactly the events, dead
//! letters and counts of replaying the same bytes held in memory.

#![no_main]

#[path = "../../tests/common/trickle.rs"]
mod trickle;

use libfuzzer_sys::fuzz_target;
use sessionflow::engine::EngineConfig;
use sessionflow::parse::Limits;
use sessionflow::replay::{replay, replay_bytes, ReplayOptions};
use trickle::Trickle;

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
    let (mut held_events, mut held_dead) = (Vec::new(), Vec::new());
    let held = replay_bytes(input, &mut held_events, &mut held_dead, &options).unwrap();
    let (mut streamed_events, mut streamed_dead) = (Vec::new(), Vec::new());
    let reader = Trickle {
        bytes: input,
        most: usize::from(read_size).max(1),
    };
    let streamed = replay(reader, &mut streamed_events, &mut streamed_dead, &options).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&streamed_events),
        String::from_utf8_lossy(&held_events)
    );
    assert_eq!(
        String::from_utf8_lossy(&streamed_dead),
        String::from_utf8_lossy(&held_dead)
    );
    assert_eq!(streamed.lines, held.lines);
    assert_eq!(streamed.stats, held.stats);
    assert_eq!(streamed.sessions_held, held.sessions_held);
});
