//! The one way a parsed record reaches the engine, shared by `replay` and the live pipeline:
//! apply each observation in order, then fire the timers the record let pass; count every
//! outcome on the way. Replay and the live pipeline call these; the engine holds the rules.

use crate::engine::{Engine, EventSink, StateRecord};
use crate::model::{DerivedEvent, Source};
use crate::parse::Parsed;
use crate::stats::Stats;

/// Counts what passes through on its way to the real sink.
struct Counting<'a, S> {
    stats: &'a mut Stats,
    inner: &'a mut S,
}

impl<S: EventSink> EventSink for Counting<'_, S> {
    #[inline]
    fn emit(&mut self, event: &DerivedEvent<'_>) {
        self.stats.count_event(event);
        self.inner.emit(event);
    }

    #[inline]
    fn wants_state(&self) -> bool {
        self.inner.wants_state()
    }

    #[inline]
    fn state_changed(&mut self, session_id: &str, state: Option<&StateRecord<'_>>) {
        self.inner.state_changed(session_id, state);
    }
}

/// Applies one valid record: each observation in order, then the due timers.
pub fn apply_record(
    engine: &mut Engine,
    parsed: &Parsed<'_>,
    source: Source<'_>,
    wall_clock_ms: Option<i64>,
    stats: &mut Stats,
    sink: &mut impl EventSink,
) {
    stats.records += 1;
    if parsed.ignored().is_some() {
        stats.ignored += 1;
        return;
    }
    let mut counting = Counting { stats, inner: sink };
    for observation in parsed.observations() {
        let outcome = engine.apply(&observation, source, wall_clock_ms, &mut counting);
        counting.stats.observations += 1;
        counting.stats.outcomes[outcome as usize] += 1;
    }
    engine.finish_record(&mut counting);
}

/// Moves the watermark (end-of-input flush or idle advance) and counts what fires.
pub fn advance_watermark(
    engine: &mut Engine,
    to: i64,
    stats: &mut Stats,
    sink: &mut impl EventSink,
) {
    engine.advance_watermark(to, &mut Counting { stats, inner: sink });
}

/// The idle-partition advance of SPEC section 3 (`Engine::advance_idle`), counting what
/// fires.
pub fn advance_idle(
    engine: &mut Engine,
    wall_clock_ms: i64,
    stats: &mut Stats,
    sink: &mut impl EventSink,
) {
    engine.advance_idle(wall_clock_ms, &mut Counting { stats, inner: sink });
}
