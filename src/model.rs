//! The vocabulary shared by every module: statuses, observations, source positions and the
//! derived events of SPEC section 4, all borrowed so that the hot path never allocates.

use std::fmt;

/// The eight statuses Clerk documents; anything else is kept verbatim as an *other* status.
pub const KNOWN_STATUSES: [&str; 8] = [
    "active",
    "pending",
    "ended",
    "removed",
    "revoked",
    "replaced",
    "expired",
    "abandoned",
];

/// A status as the engine stores it: a small code, resolved to text through the engine's
/// status table. Codes below [`StatusCode::FIRST_OTHER`] are the known statuses in
/// [`KNOWN_STATUSES`] order; higher codes are interned *other* statuses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(pub u32);

impl StatusCode {
    pub const ACTIVE: StatusCode = StatusCode(0);
    pub const PENDING: StatusCode = StatusCode(1);
    pub const ENDED: StatusCode = StatusCode(2);
    pub const REMOVED: StatusCode = StatusCode(3);
    pub const REVOKED: StatusCode = StatusCode(4);
    pub const REPLACED: StatusCode = StatusCode(5);
    pub const EXPIRED: StatusCode = StatusCode(6);
    pub const ABANDONED: StatusCode = StatusCode(7);
    /// The first code handed to an unknown status string.
    pub const FIRST_OTHER: u32 = 8;

    /// The code of a known status, or `None` for an *other* status.
    #[inline]
    pub fn known(status: &str) -> Option<StatusCode> {
        let code = match status {
            "active" => 0,
            "pending" => 1,
            "ended" => 2,
            "removed" => 3,
            "revoked" => 4,
            "replaced" => 5,
            "expired" => 6,
            "abandoned" => 7,
            _ => return None,
        };
        Some(StatusCode(code))
    }

    /// `active` or `pending`.
    #[inline]
    pub fn is_live(self) -> bool {
        self.0 <= 1
    }

    /// `ended`, `removed`, `revoked`, `replaced`, `expired` or `abandoned`.
    #[inline]
    pub fn is_terminal(self) -> bool {
        (2..Self::FIRST_OTHER).contains(&self.0)
    }

    /// The metric label for this status: its name when known, `other` otherwise, so that
    /// label values stay a closed set.
    #[inline]
    pub fn label(self) -> &'static str {
        KNOWN_STATUSES
            .get(self.0 as usize)
            .copied()
            .unwrap_or("other")
    }
}

/// Whether a status string is live, without interning it.
#[inline]
pub fn status_is_live(status: &str) -> bool {
    status == "active" || status == "pending"
}

/// One Session as read from a record, validated and normalised (timestamps in milliseconds).
/// Strings borrow from the parser's buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation<'a> {
    pub id: &'a str,
    pub status: &'a str,
    /// Event time of the observation.
    pub updated_at: i64,
    pub created_at: Option<i64>,
    pub expire_at: Option<i64>,
    pub abandon_at: Option<i64>,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// An `actor` object was present: the session is an impersonation.
    pub impersonated: bool,
}

impl Observation<'_> {
    /// SPEC section 3: the smaller known deadline of a live session, `None` otherwise.
    #[inline]
    pub fn deadline(&self) -> Option<i64> {
        if !status_is_live(self.status) {
            return None;
        }
        deadline_of(self.expire_at, self.abandon_at)
    }
}

/// The smaller of the known deadlines.
#[inline]
pub fn deadline_of(expire_at: Option<i64>, abandon_at: Option<i64>) -> Option<i64> {
    match (expire_at, abandon_at) {
        (Some(e), Some(a)) => Some(e.min(a)),
        (e, a) => e.or(a),
    }
}

/// Where a record came from: topic, partition and offset (`"-"`, 0, line number in replay).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// Why a transition happened (SPEC section 4 `cause`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Cause {
    Observed,
    Inferred,
    Correction,
}

impl Cause {
    pub const ALL: [Cause; 3] = [Cause::Observed, Cause::Inferred, Cause::Correction];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Observed => "observed",
            Cause::Inferred => "inferred",
            Cause::Correction => "correction",
        }
    }
}

/// The kinds of anomaly the engine reports.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum AnomalyKind {
    /// A terminal session reported live again.
    Resurrection,
    /// An observation more than `max_clock_skew_ms` ahead of the wall clock (live mode).
    FutureEventTime,
    /// A session dropped from state to make room for a new one (`max_sessions`, off by
    /// default).
    Evicted,
}

impl AnomalyKind {
    pub const ALL: [AnomalyKind; 3] = [
        AnomalyKind::Resurrection,
        AnomalyKind::FutureEventTime,
        AnomalyKind::Evicted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::Resurrection => "resurrection",
            AnomalyKind::FutureEventTime => "future_event_time",
            AnomalyKind::Evicted => "evicted",
        }
    }
}

/// A `session.transition` event (SPEC section 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition<'a> {
    pub session_id: &'a str,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    /// `None` on a first sighting.
    pub from: Option<&'a str>,
    pub to: &'a str,
    pub cause: Cause,
    pub at: i64,
    pub in_state_ms: Option<i64>,
    pub session_age_ms: Option<i64>,
    pub impersonated: bool,
    /// `None` for inferred events.
    pub source: Option<Source<'a>>,
}

/// A `session.anomaly` event (SPEC section 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly<'a> {
    pub kind: AnomalyKind,
    pub session_id: &'a str,
    pub user_id: Option<&'a str>,
    /// The state's status, `None` when the session is not held.
    pub status: Option<&'a str>,
    pub observed: &'a str,
    pub at: i64,
    pub source: Option<Source<'a>>,
}

/// Everything the engine emits, borrowed for the duration of one sink call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DerivedEvent<'a> {
    Transition(Transition<'a>),
    Anomaly(Anomaly<'a>),
}

/// What became of one observation (the `outcome` label of `sessionflow_records_total`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It went through the rules: a change, an event, or (resurrection) an anomaly.
    Applied,
    Duplicate,
    Stale,
    Late,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Applied,
        Outcome::Duplicate,
        Outcome::Stale,
        Outcome::Late,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::Late => "late",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
