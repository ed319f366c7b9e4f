//! The changelog is enough to resume, at any point of any history: records drawn as for
//! `lifecycle` (extreme timestamps, any statuses, shapes and settings) are fed to an engine
//! up to a point the first byte picks, which may also move its watermark there the way the
//! live pipeline's idle advance does; an engine restored from its compacted changelog (the
//! live pipeline's `Restorer`) must hold the same sessions, and, fed the rest and then
//! flushed to the drawn end of input, derive the same events and write the same changelog
//! as the engine that was never stopped.

#![no_main]

mod draw;
#[path = "../../tests/common/restore_kit.rs"]
mod restore_kit;

use draw::{lines, settings, Draw};
use libfuzzer_sys::fuzz_target;
use restore_kit::{feed, feed_both, restore, sessions_sorted, Capture};
use sessionflow::engine::Engine;
use sessionflow::parse::Parser;

fuzz_target!(|bytes: &[u8]| {
    let Some((&split_at, rest)) = bytes.split_first() else {
        return;
    };
    let mut draw = Draw(rest);
    let mut last = 1_764_000_000_000;
    let Some((config, until_ms)) = settings(&mut draw, &mut last) else {
        return;
    };
    let input = lines(&mut draw, &mut last);
    let records: Vec<Vec<u8>> = input.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    let split = usize::from(split_at) % records.len();

    let mut parser = Parser::default();
    let mut original = Engine::new(config);
    let mut before = Capture::default();
    feed(
        &mut original,
        &mut parser,
        &records[..split],
        0,
        &mut before,
    );
    // The top bit of the split byte: the partition went idle at the split, so its watermark
    // moved on to a wall clock past its newest event (the live pipeline's idle advance) and
    // what that fired is in the changelog the restore reads.
    if split_at & 0x80 != 0 {
        let wall_clock = original
            .max_event_time()
            .unwrap_or(last)
            .saturating_add(i64::from(split_at & 0x7f) * 60_000);
        original.advance_idle(wall_clock, &mut before);
    }
    let mut restored = restore(config, &before, &original);
    assert_eq!(sessions_sorted(&restored), sessions_sorted(&original));

    let (mut after_original, mut after_restored) = feed_both(
        &mut original,
        &mut restored,
        &mut parser,
        &records[split..],
        split,
    );
    if let Some(end) = until_ms {
        original.advance_watermark(end, &mut after_original);
        restored.advance_watermark(end, &mut after_restored);
    }
    let text = |events: &[Vec<u8>]| String::from_utf8_lossy(&events.concat()).into_owned();
    assert_eq!(text(&after_restored.events), text(&after_original.events));
    assert_eq!(after_restored.changelog, after_original.changelog);
    assert_eq!(sessions_sorted(&restored), sessions_sorted(&original));
});
