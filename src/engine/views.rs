//! Owned copies of what an engine holds and emits, for inspection, tools and tests: a
//! session's state ([`SessionView`]) and a derived event ([`OwnedEvent`]).

use super::sink::{EventSink, StateRecord};
use super::{Engine, SlotTexts};
use crate::model::{AnomalyKind, Cause, DerivedEvent, Source};

/// A session's state as owned values, for inspection and tests: the fields of
/// [`StateRecord`] (the one state shape), owned, with the session id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    pub status: String,
    pub since: i64,
    pub updated_at: i64,
    pub created_at: Option<i64>,
    pub expire_at: Option<i64>,
    pub abandon_at: Option<i64>,
    pub user_id: Option<String>,
    pub client_id: Option<String>,
    pub impersonated: bool,
    pub inferred: bool,
}

impl SessionView {
    pub fn new(id: &str, state: &StateRecord<'_>) -> Self {
        SessionView {
            id: id.to_owned(),
            status: state.status.to_owned(),
            since: state.since,
            updated_at: state.updated_at,
            created_at: state.created_at,
            expire_at: state.expire_at,
            abandon_at: state.abandon_at,
            user_id: state.user_id.map(str::to_owned),
            client_id: state.client_id.map(str::to_owned),
            impersonated: state.impersonated,
            inferred: state.inferred,
        }
    }
}

/// An owned copy of a [`DerivedEvent`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnedEvent {
    Transition {
        session_id: String,
        user_id: Option<String>,
        client_id: Option<String>,
        from: Option<String>,
        to: String,
        cause: Cause,
        at: i64,
        in_state_ms: Option<i64>,
        session_age_ms: Option<i64>,
        impersonated: bool,
        source: Option<(String, i32, i64)>,
    },
    Anomaly {
        kind: AnomalyKind,
        session_id: String,
        user_id: Option<String>,
        status: Option<String>,
        observed: String,
        at: i64,
        source: Option<(String, i32, i64)>,
    },
}

impl From<&DerivedEvent<'_>> for OwnedEvent {
    fn from(event: &DerivedEvent<'_>) -> Self {
        let owned = |s: Option<&str>| s.map(str::to_owned);
        let source =
            |s: &Option<Source<'_>>| s.map(|s| (s.topic.to_owned(), s.partition, s.offset));
        match event {
            DerivedEvent::Transition(t) => OwnedEvent::Transition {
                session_id: t.session_id.to_owned(),
                user_id: owned(t.user_id),
                client_id: owned(t.client_id),
                from: owned(t.from),
                to: t.to.to_owned(),
                cause: t.cause,
                at: t.at,
                in_state_ms: t.in_state_ms,
                session_age_ms: t.session_age_ms,
                impersonated: t.impersonated,
                source: source(&t.source),
            },
            DerivedEvent::Anomaly(a) => OwnedEvent::Anomaly {
                kind: a.kind,
                session_id: a.session_id.to_owned(),
                user_id: owned(a.user_id),
                status: owned(a.status),
                observed: a.observed.to_owned(),
                at: a.at,
                source: source(&a.source),
            },
        }
    }
}

/// Collects events as owned JSON-able values; for tests and small tools.
impl EventSink for Vec<OwnedEvent> {
    fn emit(&mut self, event: &DerivedEvent<'_>) {
        self.push(OwnedEvent::from(event));
    }
}

impl Engine {
    /// The state of one session, if held.
    pub fn session(&self, id: &str) -> Option<SessionView> {
        Some(self.view(self.lookup(id).found?))
    }

    /// Every session held, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionView> + '_ {
        self.table.iter().map(|&i| self.view(i))
    }

    fn view(&self, index: u32) -> SessionView {
        let mut texts = SlotTexts::default();
        let (id, record) = self.record(index, &mut texts);
        SessionView::new(id.unwrap_or_default(), &record)
    }
}
