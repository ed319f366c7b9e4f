//! The state changelog is enough to resume: an engine restored from the compacted changelog
//! (last value per session, tombstones dropped, plus the watermark record) holds the same
//! state as the engine that wrote it and derives exactly the same events from then on.
//! This is what lets a restarted or reassigned partition continue without re-deriving. The
//! restore goes through `Restorer`, the dispatch the live pipeline's changelog reader uses.

mod common;

use std::collections::HashMap;

use common::restore_kit::{feed, feed_both, restore, sessions_sorted, Capture};
use sessionflow::app::restore::Restorer;
use sessionflow::changelog::{encode_watermark, Progress, PROGRESS_KEY};
use sessionflow::config::OnCorrupt;
use sessionflow::engine::{Engine, EngineConfig};
use sessionflow::generate::{GenerateOptions, Generator};
use sessionflow::kafka::source::ChangelogRecord;
use sessionflow::parse::Parser;

fn records(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GenerateOptions::new(count as u64, seed));
    let (mut out, mut key) = (Vec::new(), Vec::new());
    let mut all = Vec::new();
    while all.len() < count && generator.next_record(&mut out, &mut key) {
        all.push(out.clone());
    }
    all
}

#[test]
fn an_engine_restored_from_the_changelog_continues_exactly_like_the_original() {
    let config = EngineConfig {
        allowed_lateness_ms: 60_000,
        // Short retention, so that tombstones are part of the changelog.
        terminal_retention_ms: 3_600_000,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let all = records(40_000, 21);
    // With `idle`, the partition went idle at the split: its watermark moved on to a wall
    // clock an hour past its newest event (the live pipeline's idle advance), past every
    // event time it holds, and what that fired is in the changelog the restore reads.
    for (split, idle) in [
        (1_000, false),
        (17_000, false),
        (17_000, true),
        (33_000, true),
    ] {
        let mut parser = Parser::default();
        let mut original = Engine::new(config);
        let mut capture = Capture::default();
        feed(&mut original, &mut parser, &all[..split], 0, &mut capture);
        if idle {
            let wall_clock = original.max_event_time().unwrap() + 3_600_000;
            let changes = capture.changes;
            original.advance_idle(wall_clock, &mut capture);
            assert!(
                capture.changes > changes,
                "split {split}: the idle advance fired"
            );
        }
        assert!(
            capture.changelog.values().any(Option::is_none) || split < 5_000,
            "tombstones present"
        );

        let mut restored = restore(config, &capture, &original);
        assert_eq!(
            sessions_sorted(&restored),
            sessions_sorted(&original),
            "split {split}: same state"
        );
        assert_eq!(
            restored.sessions_by_status().collect::<Vec<_>>(),
            original.sessions_by_status().collect::<Vec<_>>()
        );

        let (mut after_original, mut after_restored) = feed_both(
            &mut original,
            &mut restored,
            &mut parser,
            &all[split..],
            split,
        );
        // Then the end of input (`--until-ms`, or a partition idle for good): every timer
        // left fires.
        let end = original.max_event_time().unwrap() + 30 * 86_400_000;
        original.advance_watermark(end, &mut after_original);
        restored.advance_watermark(end, &mut after_restored);
        assert!(!after_original.events.is_empty());
        assert_eq!(
            after_restored.events, after_original.events,
            "split {split}: same events"
        );
        assert_eq!(
            after_restored.changelog, after_original.changelog,
            "split {split}: same changelog writes"
        );
        assert_eq!(
            sessions_sorted(&restored),
            sessions_sorted(&original),
            "split {split}: same final state"
        );
    }
}

#[test]
fn replayed_input_after_a_restore_emits_nothing_again() {
    // After a crash the input since the last commit is read again: against the restored
    // state it is stale or duplicate and derives nothing new (SPEC section 6).
    let config = EngineConfig {
        allowed_lateness_ms: 60_000,
        terminal_retention_ms: 86_400_000,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let all = records(20_000, 22);
    let mut parser = Parser::default();
    let mut original = Engine::new(config);
    let mut capture = Capture::default();
    feed(&mut original, &mut parser, &all[..15_000], 0, &mut capture);
    let mut restored = restore(config, &capture, &original);
    let mut replayed = Capture::default();
    feed(
        &mut restored,
        &mut parser,
        &all[10_000..15_000],
        10_000,
        &mut replayed,
    );
    let first_sightings = replayed
        .events
        .iter()
        .filter(|e| e.windows(11).any(|w| w == b"\"from\":null"))
        .count();
    assert_eq!(
        first_sightings, 0,
        "no session known before is sighted again"
    );
    let observed = replayed
        .events
        .iter()
        .filter(|e| e.windows(18).any(|w| w == b"\"cause\":\"observed\""))
        .count();
    assert_eq!(
        observed,
        0,
        "nothing observed again: {:?}",
        replayed
            .events
            .first()
            .map(|e| String::from_utf8_lossy(e).into_owned())
    );
}

/// A changelog partition as Kafka keeps it: records in offset order, compaction keeping the
/// last record of each key (tombstones too, as before `delete.retention.ms`).
#[derive(Default)]
struct Log {
    records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Log {
    fn compacted(&self) -> Vec<ChangelogRecord<'_>> {
        let mut last: HashMap<&[u8], usize> = HashMap::new();
        for (offset, (key, _)) in self.records.iter().enumerate() {
            last.insert(key, offset);
        }
        let mut kept: Vec<usize> = last.into_values().collect();
        kept.sort_unstable();
        kept.into_iter()
            .map(|o| {
                let (key, value) = &self.records[o];
                ChangelogRecord {
                    offset: o as i64,
                    key,
                    value: value.as_deref(),
                }
            })
            .collect()
    }
}

/// Feeds `records` one batch each, writing to `log` what the live pipeline writes: each
/// state change under the session id, then the partition's progress record.
fn feed_logged(engine: &mut Engine, records: &[Vec<u8>], first_offset: usize, log: &mut Log) {
    let mut parser = Parser::default();
    for (i, raw) in records.iter().enumerate() {
        let mut capture = Capture::default();
        feed(
            engine,
            &mut parser,
            std::slice::from_ref(raw),
            first_offset + i,
            &mut capture,
        );
        for (id, value) in capture.changelog {
            log.records.push((id.into_bytes(), value));
        }
        let mut progress = Vec::new();
        encode_watermark(
            &mut progress,
            &Progress {
                watermark: engine.watermark(),
                max_event_time: engine.max_event_time(),
                applied_through: Some((first_offset + i) as i64),
            },
        );
        log.records.push((PROGRESS_KEY.to_vec(), Some(progress)));
    }
}

fn restore_log(config: EngineConfig, log: &Log) -> Restorer {
    let mut restorer = Restorer::new(Engine::new(config), OnCorrupt::Stop);
    for record in log.compacted() {
        restorer.apply(record).unwrap_or_else(|e| panic!("{e}"));
    }
    restorer
}

/// Issue 16, item 1: a valid session whose id spells version 1's progress key
/// (`"\u0000sessionflow.watermark"`) used to share its key with the progress record, so
/// compaction kept one of the two and every restore of the partition failed. Sessions and
/// progress now live in disjoint key spaces: both survive compaction and restore.
#[test]
fn a_session_id_spelling_a_reserved_key_cannot_touch_the_progress_record() {
    let config = EngineConfig {
        allowed_lateness_ms: 60_000,
        terminal_retention_ms: 86_400_000,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let mut input = records(2_000, 23);
    let hostile = |status: &str, at: i64| {
        format!(
            r#"{{"object":"session","id":"\u0000sessionflow.watermark","status":"{status}","updated_at":{at},"user_id":"user_h"}}"#
        )
        .into_bytes()
    };
    input.insert(500, hostile("active", 1_764_000_000_000));
    input.push(hostile("ended", 1_764_000_100_000));
    let mut original = Engine::new(config);
    let mut log = Log::default();
    feed_logged(&mut original, &input, 0, &mut log);
    assert!(original.session("\0sessionflow.watermark").is_some());

    let restorer = restore_log(config, &log);
    assert_eq!(
        restorer.progress.applied_through,
        Some(input.len() as i64 - 1),
        "the progress record survived compaction"
    );
    assert_eq!(restorer.engine.watermark(), original.watermark());
    assert_eq!(
        sessions_sorted(&restorer.engine),
        sessions_sorted(&original),
        "the hostile session restored like any other"
    );
}

/// Issue 16, item 2: version 1 cut strings at 65 535 bytes, so a long `user_id` (input
/// limits bound ids and statuses, not user and client ids) came back cut after a restore,
/// and the next observation of the session was a change of user. Now it restores whole and
/// the restored engine continues exactly like the original.
#[test]
fn strings_longer_than_65535_bytes_restore_whole() {
    let config = EngineConfig {
        allowed_lateness_ms: 60_000,
        terminal_retention_ms: 86_400_000,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let user = format!("user_{}é{}", "u".repeat(65_528), "x".repeat(5_000));
    let snapshot = |status: &str, minute: i64| {
        format!(
            r#"{{"object":"session","id":"sess_long","status":"{status}","updated_at":{},"user_id":"{user}","client_id":"client_1"}}"#,
            1_764_000_000_000 + minute * 60_000
        )
        .into_bytes()
    };
    let input = [
        snapshot("active", 0),
        snapshot("active", 5),
        snapshot("ended", 9),
    ];
    let mut original = Engine::new(config);
    let mut log = Log::default();
    feed_logged(&mut original, &input[..2], 0, &mut log);
    let mut restored = restore_log(config, &log).engine;
    assert_eq!(
        restored.session("sess_long").unwrap().user_id.as_deref(),
        Some(user.as_str())
    );
    let (after_original, after_restored) = feed_both(
        &mut original,
        &mut restored,
        &mut Parser::default(),
        &input[2..],
        2,
    );
    assert_eq!(after_restored.events, after_original.events);
    assert_eq!(sessions_sorted(&restored), sessions_sorted(&original));
}

/// The failure message of a Kafka test shows the log's tail with floods collapsed (this
/// binary runs without a broker, so the harness's helper is tested here).
#[test]
fn a_failed_waits_log_tail_collapses_a_flood_of_one_line() {
    let log = "\
t1 INFO started
t2 WARN delivery failed topic=a
t3 WARN delivery failed topic=a
t4 WARN delivery failed topic=a
t5 ERROR coordinator timed out";
    assert_eq!(
        common::log_tail(log, 2),
        "t2 WARN delivery failed topic=a  [and 2 more like it]\nt5 ERROR coordinator timed out"
    );
    assert_eq!(common::log_tail(log, 10).lines().count(), 3);
    assert_eq!(common::log_tail("", 5), "");
}
