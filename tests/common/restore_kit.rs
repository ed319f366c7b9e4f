//! Replays records into an engine while capturing its events and its changelog compacted
//! as Kafka would, and restores an engine from that changelog the way the live pipeline does:
//! for the restore tests and the `restore` fuzz target.

use std::collections::HashMap;

use sessionflow::app::restore::Restorer;
use sessionflow::apply;
use sessionflow::changelog::{encode_state, encode_watermark, Progress, PROGRESS_KEY};
use sessionflow::config::OnCorrupt;
use sessionflow::engine::{Engine, EngineConfig, EventSink, SessionView, StateRecord};
use sessionflow::kafka::source::ChangelogRecord;
use sessionflow::model::{DerivedEvent, Source};
use sessionflow::output::write_event;
use sessionflow::parse::Parser;
use sessionflow::stats::Stats;

/// Events as JSON lines, and the changelog compacted as Kafka would: last value per key.
#[derive(Default)]
pub struct Capture {
    pub events: Vec<Vec<u8>>,
    pub changelog: HashMap<String, Option<Vec<u8>>>,
    pub changes: usize,
}

impl EventSink for Capture {
    fn emit(&mut self, event: &DerivedEvent<'_>) {
        let mut line = Vec::new();
        write_event(&mut line, event);
        self.events.push(line);
    }

    fn wants_state(&self) -> bool {
        true
    }

    fn state_changed(&mut self, session_id: &str, state: Option<&StateRecord<'_>>) {
        self.changes += 1;
        let value = state.map(|s| {
            let mut bytes = Vec::new();
            encode_state(&mut bytes, s);
            bytes
        });
        self.changelog.insert(session_id.to_owned(), value);
    }
}

pub fn feed(
    engine: &mut Engine,
    parser: &mut Parser,
    records: &[Vec<u8>],
    first_offset: usize,
    sink: &mut Capture,
) {
    let mut stats = Stats::new();
    for (i, raw) in records.iter().enumerate() {
        let source = Source {
            topic: "t",
            partition: 0,
            offset: (first_offset + i) as i64,
        };
        parser.parse(raw, |result| {
            if let Ok(parsed) = result {
                apply::apply_record(engine, &parsed, source, None, &mut stats, sink);
            }
        });
    }
}

/// Feeds the rest of the input alike to the engine that never stopped and to the restored
/// one: what each derived and wrote from the split on.
pub fn feed_both(
    original: &mut Engine,
    restored: &mut Engine,
    parser: &mut Parser,
    rest: &[Vec<u8>],
    first_offset: usize,
) -> (Capture, Capture) {
    let (mut after_original, mut after_restored) = (Capture::default(), Capture::default());
    feed(original, parser, rest, first_offset, &mut after_original);
    feed(restored, parser, rest, first_offset, &mut after_restored);
    (after_original, after_restored)
}

/// The engine's sessions in id order, to compare two engines.
pub fn sessions_sorted(engine: &Engine) -> Vec<SessionView> {
    let mut all: Vec<_> = engine.sessions().collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    all
}

/// Rebuilds an engine the way the live pipeline does (`Restorer`, the one dispatch of
/// changelog records): the compacted changelog, then the partition's progress record.
pub fn restore(config: EngineConfig, capture: &Capture, original: &Engine) -> Engine {
    let mut restorer = Restorer::new(Engine::new(config), OnCorrupt::Stop);
    for (offset, (id, value)) in capture.changelog.iter().enumerate() {
        let record = ChangelogRecord {
            offset: offset as i64,
            key: id.as_bytes(),
            value: value.as_deref(),
        };
        restorer.apply(record).unwrap();
    }
    let mut progress = Vec::new();
    encode_watermark(
        &mut progress,
        &Progress {
            watermark: original.watermark(),
            max_event_time: original.max_event_time(),
            applied_through: None,
        },
    );
    let record = ChangelogRecord {
        offset: capture.changelog.len() as i64,
        key: PROGRESS_KEY,
        value: Some(&progress),
    };
    restorer.apply(record).unwrap();
    assert_eq!(restorer.skipped, 0);
    restorer.engine
}
