//! Where an engine's derived events and state changes go: the [`EventSink`] it is given, and
//! the borrowed [`StateRecord`] a change carries.

use crate::model::DerivedEvent;

/// Where derived events go. Events borrow from the engine and the observation: serialise or
/// copy them inside `emit`.
pub trait EventSink {
    fn emit(&mut self, event: &DerivedEvent<'_>);

    /// Whether [`EventSink::state_changed`] should be called; false spares the hot path the
    /// work of describing each change (replay needs none).
    fn wants_state(&self) -> bool {
        false
    }

    /// Every change of a session's state, in order, with the state after it (`None`: the
    /// session was forgotten). Feeds the state changelog (SPEC section 6).
    fn state_changed(&mut self, _session_id: &str, _state: Option<&StateRecord<'_>>) {}
}

/// A session's state `S` (SPEC section 2), borrowed: what the changelog stores and restores.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateRecord<'a> {
    pub status: &'a str,
    pub since: i64,
    pub updated_at: i64,
    pub created_at: Option<i64>,
    pub expire_at: Option<i64>,
    pub abandon_at: Option<i64>,
    pub user_id: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub impersonated: bool,
    pub inferred: bool,
}

/// Discards everything (internal bookkeeping that must not notify).
pub(super) struct NoSink;

impl EventSink for NoSink {
    fn emit(&mut self, _: &DerivedEvent<'_>) {}
}
