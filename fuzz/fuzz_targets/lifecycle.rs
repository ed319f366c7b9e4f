//! The engine on well-formed records with any timestamps and settings: a few sessions whose
//! observations carry the fuzzer's statuses, shapes and times (the extremes of `i64`, values
//! near each other, times in seconds), replayed with its lateness, retention and end of
//! input. Nothing may panic (this build checks integer overflow), and the output is the
//! same when replayed again.

#![no_main]

mod draw;

use draw::{lines, settings, Draw};
use libfuzzer_sys::fuzz_target;
use sessionflow::parse::Limits;
use sessionflow::replay::{replay_bytes, ReplayOptions};

fuzz_target!(|bytes: &[u8]| {
    let mut draw = Draw(bytes);
    let mut last = 1_764_000_000_000;
    let Some((engine, until_ms)) = settings(&mut draw, &mut last) else {
        return;
    };
    let options = ReplayOptions {
        engine,
        until_ms,
        limits: Limits::default(),
    };
    let input = lines(&mut draw, &mut last);
    let (mut events, mut dead) = (Vec::new(), Vec::new());
    replay_bytes(&input, &mut events, &mut dead, &options).unwrap();
    let (mut again, mut dead_again) = (Vec::new(), Vec::new());
    replay_bytes(&input, &mut again, &mut dead_again, &options).unwrap();
    assert_eq!(events, again);
    assert_eq!(dead, dead_again);
});
