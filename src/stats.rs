//! Plain counters of what records, observations and timers did (`Stats`), kept on the hot
//! path without a metrics call; the live pipeline exports their growth, replay and the demo
//! print them through one summary formatter.

use std::fmt;

use crate::model::{AnomalyKind, Cause, DerivedEvent, Outcome, StatusCode};
use crate::parse::{ErrorKind, ParseError};

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
    pub outcomes: [u64; Outcome::ALL.len()],
    pub ignored: u64,
    /// By [`ErrorKind`] in `ErrorKind::ALL` order.
    pub invalid: [u64; ErrorKind::ALL.len()],
    /// By `[from][to][cause]` label index.
    pub transitions: Vec<[[u64; Cause::ALL.len()]; TO_LABELS]>,
    /// By [`AnomalyKind`] in `AnomalyKind::ALL` order.
    pub anomalies: [u64; AnomalyKind::ALL.len()],
}

impl Stats {
    pub fn new() -> Self {
        Stats {
            transitions: vec![[[0; Cause::ALL.len()]; TO_LABELS]; FROM_LABELS],
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

    pub(crate) fn count_event(&mut self, event: &DerivedEvent<'_>) {
        match event {
            DerivedEvent::Transition(t) => {
                let from = t.from.map_or(0, |s| status_index(s) + 1);
                self.transitions[from][status_index(t.to)][t.cause as usize] += 1;
            }
            DerivedEvent::Anomaly(a) => self.anomalies[a.kind as usize] += 1,
        }
    }

    /// Moves `other`'s counts into these, leaving `other` at zero (a processing lane's
    /// counts after a batch).
    pub fn absorb(&mut self, other: &mut Stats) {
        fn drain<const N: usize>(into: &mut [u64; N], from: &mut [u64; N]) {
            for (a, b) in into.iter_mut().zip(from.iter_mut()) {
                *a += std::mem::take(b);
            }
        }
        self.records += std::mem::take(&mut other.records);
        self.observations += std::mem::take(&mut other.observations);
        self.ignored += std::mem::take(&mut other.ignored);
        drain(&mut self.outcomes, &mut other.outcomes);
        drain(&mut self.invalid, &mut other.invalid);
        drain(&mut self.anomalies, &mut other.anomalies);
        for (into, from) in self
            .transitions
            .iter_mut()
            .zip(other.transitions.iter_mut())
        {
            for (into, from) in into.iter_mut().zip(from.iter_mut()) {
                drain(into, from);
            }
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

/// The counters' part of a summary line: records, observations by outcome, transitions by
/// cause, anomalies, and the sessions held (`replay` and `demo` print it).
pub struct Summary<'a> {
    pub stats: &'a Stats,
    pub sessions_held: u64,
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.stats;
        write!(
            f,
            "{} records ({} ignored, {} invalid), {} observations (applied {}, duplicate {}, \
             stale {}, late {}); {} transitions (observed {}, inferred {}, correction {}), \
             {} anomalies; {} sessions held",
            s.records,
            s.ignored,
            s.invalid_total(),
            s.observations,
            s.outcome(Outcome::Applied),
            s.outcome(Outcome::Duplicate),
            s.outcome(Outcome::Stale),
            s.outcome(Outcome::Late),
            s.transitions_total(),
            s.transitions_by_cause(Cause::Observed),
            s.transitions_by_cause(Cause::Inferred),
            s.transitions_by_cause(Cause::Correction),
            s.anomalies_total(),
            self.sessions_held,
        )
    }
}
