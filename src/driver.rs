//! The one way a parsed record reaches the engine, shared by `replay` and the live pipeline:
//! apply each observation in order, then fire the timers the record let pass; count every
//! outcome on the way. Two drivers, one engine, one set of rules.

use crate::engine::{Engine, EventSink, StateRecord};
use crate::model::{Cause, DerivedEvent, Outcome, Source, StatusCode};
use crate::parse::{ErrorKind, ParseError, Parsed};

/// Label index of a transition's `from`: `none` for a first sighting, then the statuses.
const FROM_LABELS: usize = StatusCode::FIRST_OTHER as usize + 2;
const TO_LABELS: usize = StatusCode::FIRST_OTHER as usize + 1;

/// Plain counters behind the `sessionflow_*_total` metrics; the live pipeline exports their
/// growth, replay prints them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub records: u64,
    pub observations: u64,
    /// By [`Outcome`] in `Outcome::ALL` order.
    pub outcomes: [u64; 4],
    pub ignored: u64,
    /// By [`ErrorKind`] in `ErrorKind::ALL` order.
    pub invalid: [u64; 6],
    /// By `[from][to][cause]` label index.
    pub transitions: Vec<[[u64; 3]; TO_LABELS]>,
    /// By [`AnomalyKind`] in `AnomalyKind::ALL` order.
    pub anomalies: [u64; 2],
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            transitions: vec![[[0; 3]; TO_LABELS]; FROM_LABELS],
            ..Stats::default()
        }
    }

    pub fn outcome(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize]
    }

    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }

    pub fn invalid_of(&self, kind: ErrorKind) -> u64 {
        self.invalid[kind as usize]
    }

    pub fn transitions_by_cause(&self, cause: Cause) -> u64 {
        self.transitions
            .iter()
            .flat_map(|to| to.iter())
            .map(|causes| causes[cause as usize])
            .sum()
    }

    pub fn transitions_total(&self) -> u64 {
        Cause::ALL
            .iter()
            .map(|&c| self.transitions_by_cause(c))
            .sum()
    }

    pub fn anomalies_total(&self) -> u64 {
        self.anomalies.iter().sum()
    }

    /// Every non-zero transition counter as (from, to, cause) labels.
    pub fn transition_counts(
        &self,
    ) -> impl Iterator<Item = (&'static str, &'static str, Cause, u64)> + '_ {
        self.transitions.iter().enumerate().flat_map(|(from, tos)| {
            tos.iter().enumerate().flat_map(move |(to, causes)| {
                Cause::ALL.into_iter().filter_map(move |cause| {
                    let n = causes[cause as usize];
                    (n > 0).then(|| (from_label(from), to_label(to), cause, n))
                })
            })
        })
    }

    fn count_event(&mut self, event: &DerivedEvent<'_>) {
        match event {
            DerivedEvent::Transition(t) => {
                let from = t.from.map_or(0, |s| status_index(s) + 1);
                self.transitions[from][status_index(t.to)][t.cause as usize] += 1;
            }
            DerivedEvent::Anomaly(a) => self.anomalies[a.kind as usize] += 1,
        }
    }

    /// A record that failed to parse.
    pub fn count_invalid(&mut self, error: &ParseError) {
        self.records += 1;
        self.invalid[error.kind as usize] += 1;
    }
}

fn status_index(status: &str) -> usize {
    StatusCode::known(status).map_or(StatusCode::FIRST_OTHER as usize, |c| c.0 as usize)
}

fn from_label(index: usize) -> &'static str {
    if index == 0 {
        "none"
    } else {
        to_label(index - 1)
    }
}

fn to_label(index: usize) -> &'static str {
    StatusCode(index as u32).label()
}

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
