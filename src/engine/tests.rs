//! The engine's own unit tests: slot size, status reclamation, eviction at the session cap.

use super::*;

#[test]
fn a_slot_stays_within_its_memory_budget() {
    assert!(std::mem::size_of::<Slot>() <= 120);
}

/// Events, and the changelog's view: the state after each change (`None`: forgotten).
#[derive(Default)]
struct Recorder {
    events: Vec<OwnedEvent>,
    states: Vec<(String, Option<String>)>,
}

impl EventSink for Recorder {
    fn emit(&mut self, event: &DerivedEvent<'_>) {
        self.events.push(OwnedEvent::from(event));
    }
    fn wants_state(&self) -> bool {
        true
    }
    fn state_changed(&mut self, session_id: &str, state: Option<&StateRecord<'_>>) {
        let status = state.map(|s| s.status.to_owned());
        self.states.push((session_id.to_owned(), status));
    }
}

const T: i64 = 1_764_000_000_000;

fn observe(engine: &mut Engine, sink: &mut Recorder, id: &str, status: &str, at: i64) {
    let o = Observation {
        id,
        status,
        updated_at: at,
        created_at: Some(T),
        expire_at: Some(T + 86_400_000),
        abandon_at: None,
        user_id: Some("user_1"),
        client_id: None,
        impersonated: false,
    };
    let source = Source {
        topic: "t",
        partition: 0,
        offset: 0,
    };
    engine.apply(&o, source, None, sink);
    engine.finish_record(sink);
}

#[test]
fn an_unknown_status_is_reclaimed_once_no_session_holds_it() {
    let mut engine = Engine::new(EngineConfig::default());
    let mut sink = Recorder::default();
    // One session held throughout; 10 000 distinct unknown statuses pass through it.
    for i in 0..10_000 {
        observe(
            &mut engine,
            &mut sink,
            "sess_1",
            &format!("status_{i}"),
            T + i,
        );
        assert!(
            engine.unknown_statuses() <= 2,
            "at {i}: {}",
            engine.unknown_statuses()
        );
    }
    // Each transition still named the status the session left, before it was reclaimed.
    let last = sink.events.last().unwrap();
    match last {
        OwnedEvent::Transition { from, to, .. } => {
            assert_eq!(from.as_deref(), Some("status_9998"));
            assert_eq!(to, "status_9999");
        }
        other => panic!("{other:?}"),
    }
    // Two sessions in one unknown status share its text; a third status comes and goes.
    observe(&mut engine, &mut sink, "sess_2", "status_9999", T + 20_000);
    observe(&mut engine, &mut sink, "sess_1", "active", T + 20_001);
    observe(&mut engine, &mut sink, "sess_3", "other_a", T + 20_002);
    observe(&mut engine, &mut sink, "sess_3", "other_b", T + 20_003);
    assert_eq!(
        engine.unknown_statuses(),
        3,
        "status_9999, other_a (unheld), other_b"
    );
    observe(&mut engine, &mut sink, "sess_4", "other_c", T + 20_004);
    assert_eq!(
        engine.unknown_statuses(),
        3,
        "other_a reclaimed when other_c came"
    );
    let view = engine.session("sess_2").unwrap();
    assert_eq!(view.status, "status_9999", "a held status keeps its text");
    assert_eq!(engine.session("sess_4").unwrap().status, "other_c");
}

#[test]
fn at_the_session_cap_a_new_session_evicts_the_terminal_one_nearest_its_forget_time() {
    let mut engine = Engine::new(EngineConfig {
        max_sessions: Some(3),
        ..EngineConfig::default()
    });
    let mut sink = Recorder::default();
    observe(&mut engine, &mut sink, "sess_live", "active", T);
    observe(&mut engine, &mut sink, "sess_ended_late", "ended", T + 2);
    observe(&mut engine, &mut sink, "sess_ended_early", "ended", T + 1);
    sink.events.clear();
    sink.states.clear();
    observe(&mut engine, &mut sink, "sess_new", "active", T + 3);
    assert_eq!(engine.len(), 3);
    assert!(
        engine.session("sess_ended_early").is_none(),
        "the terminal one nearest its forget time"
    );
    assert!(engine.session("sess_ended_late").is_some() && engine.session("sess_new").is_some());
    match &sink.events[0] {
        OwnedEvent::Anomaly {
            kind,
            session_id,
            status,
            observed,
            at,
            ..
        } => {
            assert_eq!(*kind, AnomalyKind::Evicted);
            assert_eq!(session_id, "sess_ended_early");
            assert_eq!(status.as_deref(), Some("ended"));
            assert_eq!(observed, "active");
            assert_eq!(*at, T + 3);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        sink.states[0],
        ("sess_ended_early".to_owned(), None),
        "a tombstone"
    );
    // With no terminal session left, the live one nearest its deadline goes.
    observe(&mut engine, &mut sink, "sess_other", "active", T + 4);
    observe(&mut engine, &mut sink, "sess_more", "active", T + 5);
    assert_eq!(engine.len(), 3);
    assert!(engine.session("sess_ended_late").is_none());
    assert!(
        engine.session("sess_live").is_none(),
        "the live one with the earliest deadline"
    );
    // Without a cap nothing is evicted.
    let mut uncapped = Engine::new(EngineConfig::default());
    for i in 0..100 {
        observe(
            &mut uncapped,
            &mut sink,
            &format!("sess_{i}"),
            "active",
            T + i,
        );
    }
    assert_eq!(uncapped.len(), 100);
}
