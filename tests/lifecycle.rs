//! Table-driven scenarios for every rule of SPEC sections 2 and 3, with explicit event times,
//! including the boundaries (deadline equal to the watermark, equal `updated_at`, `expire_at`
//! equal to `abandon_at`, inferred `at` clamped to `since`).

use sessionflow::engine::{Engine, EngineConfig, OwnedEvent, StateRecord};
use sessionflow::model::{AnomalyKind, Cause, Observation, Outcome, Source};

const T: i64 = 1_764_000_000_000;
const H: i64 = 3_600_000;

/// An observation with the usual fields; tweak with struct update syntax.
fn obs(id: &'static str, status: &'static str, updated_at: i64) -> Observation<'static> {
    Observation {
        id,
        status,
        updated_at,
        created_at: Some(T),
        expire_at: None,
        abandon_at: None,
        user_id: Some("user_1"),
        client_id: Some("client_1"),
        impersonated: false,
    }
}

fn with_deadlines(
    o: Observation<'static>,
    expire_at: Option<i64>,
    abandon_at: Option<i64>,
) -> Observation<'static> {
    Observation {
        expire_at,
        abandon_at,
        ..o
    }
}

struct Run {
    engine: Engine,
    events: Vec<OwnedEvent>,
    offset: i64,
}

impl Run {
    fn new(lateness: i64) -> Run {
        Run::with(EngineConfig {
            allowed_lateness_ms: lateness,
            ..EngineConfig::default()
        })
    }

    fn with(config: EngineConfig) -> Run {
        Run {
            engine: Engine::new(config),
            events: Vec::new(),
            offset: 0,
        }
    }

    /// Applies one observation as one record (then timers fire) and returns its outcome.
    fn record(&mut self, o: Observation<'_>) -> Outcome {
        self.live_record(o, None)
    }

    fn live_record(&mut self, o: Observation<'_>, now: Option<i64>) -> Outcome {
        let source = Source {
            topic: "t",
            partition: 0,
            offset: self.offset,
        };
        self.offset += 1;
        let outcome = self.engine.apply(&o, source, now, &mut self.events);
        self.engine.finish_record(&mut self.events);
        outcome
    }

    fn take(&mut self) -> Vec<OwnedEvent> {
        std::mem::take(&mut self.events)
    }

    /// (session, from, to, cause, at) of each transition taken so far.
    fn transitions(&mut self) -> Vec<(String, Option<String>, String, Cause, i64)> {
        self.take()
            .into_iter()
            .filter_map(|e| match e {
                OwnedEvent::Transition {
                    session_id,
                    from,
                    to,
                    cause,
                    at,
                    ..
                } => Some((session_id, from, to, cause, at)),
                OwnedEvent::Anomaly { .. } => None,
            })
            .collect()
    }
}

fn tr(
    id: &str,
    from: Option<&str>,
    to: &str,
    cause: Cause,
    at: i64,
) -> (String, Option<String>, String, Cause, i64) {
    (id.into(), from.map(Into::into), to.into(), cause, at)
}

#[test]
fn first_sighting_emits_a_transition_from_null_with_age_and_source() {
    let mut run = Run::new(0);
    assert_eq!(run.record(obs("s", "active", T + 5)), Outcome::Applied);
    let events = run.take();
    assert_eq!(
        events,
        vec![OwnedEvent::Transition {
            session_id: "s".into(),
            user_id: Some("user_1".into()),
            client_id: Some("client_1".into()),
            from: None,
            to: "active".into(),
            cause: Cause::Observed,
            at: T + 5,
            in_state_ms: None,
            session_age_ms: Some(5),
            impersonated: false,
            source: Some(("t".into(), 0, 0)),
        }]
    );
}

#[test]
fn unknown_created_at_gives_a_null_session_age() {
    let mut run = Run::new(0);
    run.record(Observation {
        created_at: None,
        ..obs("s", "active", T)
    });
    assert!(matches!(
        run.take()[0],
        OwnedEvent::Transition {
            session_age_ms: None,
            ..
        }
    ));
}

#[test]
fn an_older_observation_is_stale_and_changes_nothing() {
    let mut run = Run::new(0);
    run.record(obs("s", "active", T + H));
    run.take();
    assert_eq!(run.record(obs("s", "ended", T)), Outcome::Stale);
    assert!(run.take().is_empty());
    assert_eq!(run.engine.session("s").unwrap().status, "active");
}

#[test]
fn same_status_and_equal_updated_at_is_a_duplicate() {
    let mut run = Run::new(0);
    run.record(obs("s", "active", T));
    run.take();
    assert_eq!(run.record(obs("s", "active", T)), Outcome::Duplicate);
    assert!(run.take().is_empty());
}

#[test]
fn equal_updated_at_with_another_status_is_a_transition_not_stale() {
    let mut run = Run::new(0);
    run.record(obs("s", "active", T));
    run.take();
    assert_eq!(run.record(obs("s", "ended", T)), Outcome::Applied);
    assert_eq!(
        run.transitions(),
        vec![tr("s", Some("active"), "ended", Cause::Observed, T)]
    );
}

#[test]
fn a_refresh_takes_timestamps_deadlines_and_ids_but_keeps_since() {
    let mut run = Run::new(0);
    run.record(with_deadlines(obs("s", "active", T), None, Some(T + H)));
    run.take();
    let refreshed = Observation {
        user_id: Some("user_2"),
        ..with_deadlines(obs("s", "active", T + H / 2), None, Some(T + 3 * H))
    };
    assert_eq!(run.record(refreshed), Outcome::Applied);
    assert!(run.take().is_empty());
    let state = run.engine.session("s").unwrap();
    assert_eq!(state.since, T);
    assert_eq!(state.updated_at, T + H / 2);
    assert_eq!(state.abandon_at, Some(T + 3 * H));
    assert_eq!(state.user_id.as_deref(), Some("user_2"));
    // The old deadline no longer fires; the new one does.
    run.record(obs("z", "active", T + 2 * H));
    assert_eq!(
        run.transitions(),
        vec![tr("z", None, "active", Cause::Observed, T + 2 * H)]
    );
    run.record(obs("z", "active", T + 3 * H));
    assert_eq!(
        run.transitions(),
        vec![tr(
            "s",
            Some("active"),
            "abandoned",
            Cause::Inferred,
            T + 3 * H
        )]
    );
}

#[test]
fn a_transition_reports_time_in_the_previous_state() {
    let mut run = Run::new(0);
    run.record(obs("s", "pending", T));
    run.record(obs("s", "active", T + 1000));
    let events = run.take();
    assert!(matches!(
        events[1],
        OwnedEvent::Transition {
            in_state_ms: Some(1000),
            session_age_ms: Some(1000),
            cause: Cause::Observed,
            ..
        }
    ));
}

#[test]
fn a_terminal_session_reported_live_is_a_resurrection_anomaly() {
    let mut run = Run::new(0);
    run.record(obs("s", "active", T));
    run.record(obs("s", "revoked", T + H));
    run.take();
    assert_eq!(run.record(obs("s", "active", T + 2 * H)), Outcome::Applied);
    assert_eq!(
        run.take(),
        vec![OwnedEvent::Anomaly {
            kind: AnomalyKind::Resurrection,
            session_id: "s".into(),
            user_id: Some("user_1".into()),
            status: Some("revoked".into()),
            observed: "active".into(),
            at: T + 2 * H,
            source: Some(("t".into(), 0, 2)),
        }]
    );
    let state = run.engine.session("s").unwrap();
    assert_eq!(
        (state.status.as_str(), state.updated_at),
        ("revoked", T + H)
    );
}

#[test]
fn terminal_to_terminal_and_to_unknown_statuses_are_transitions() {
    let mut run = Run::new(0);
    run.record(obs("s", "ended", T));
    run.record(obs("s", "removed", T + 1));
    run.record(obs("s", "quarantined", T + 2));
    assert_eq!(
        run.transitions(),
        vec![
            tr("s", None, "ended", Cause::Observed, T),
            tr("s", Some("ended"), "removed", Cause::Observed, T + 1),
            tr("s", Some("removed"), "quarantined", Cause::Observed, T + 2),
        ]
    );
}

#[test]
fn an_unknown_status_has_no_deadline() {
    let mut run = Run::new(0);
    run.record(with_deadlines(
        obs("s", "quarantined", T),
        Some(T + 1),
        Some(T + 1),
    ));
    run.record(obs("z", "active", T + 10 * H));
    assert_eq!(run.transitions().len(), 2);
    assert_eq!(run.engine.session("s").unwrap().status, "quarantined");
}

#[test]
fn a_timer_fires_when_the_watermark_reaches_the_deadline_exactly() {
    let mut run = Run::new(0);
    run.record(with_deadlines(obs("s", "active", T), Some(T + H), None));
    run.record(obs("z", "active", T + H - 1));
    assert_eq!(
        run.transitions().len(),
        2,
        "one millisecond early: no timer"
    );
    run.record(obs("z", "active", T + H));
    assert_eq!(
        run.transitions(),
        vec![tr("s", Some("active"), "expired", Cause::Inferred, T + H)]
    );
}

#[test]
fn the_inferred_status_follows_the_earlier_deadline() {
    // (expire_at, abandon_at, inferred status, at)
    let cases = [
        (Some(T + H), Some(T + H), "expired", T + H),
        (Some(T + H), Some(T + 2 * H), "expired", T + H),
        (Some(T + 2 * H), Some(T + H), "abandoned", T + H),
        (Some(T + H), None, "expired", T + H),
        (None, Some(T + H), "abandoned", T + H),
    ];
    for (expire_at, abandon_at, status, at) in cases {
        let mut run = Run::new(0);
        run.record(with_deadlines(obs("s", "active", T), expire_at, abandon_at));
        run.record(obs("z", "active", T + 5 * H));
        let fired = run.transitions().pop().unwrap();
        assert_eq!(
            fired,
            tr("s", Some("active"), status, Cause::Inferred, at),
            "{expire_at:?} {abandon_at:?}"
        );
    }
}

#[test]
fn a_session_without_deadlines_never_fires() {
    let mut run = Run::new(0);
    run.record(obs("s", "active", T));
    run.record(obs("z", "active", T + 1000 * H));
    assert_eq!(run.engine.session("s").unwrap().status, "active");
}

#[test]
fn a_pending_session_expires_like_an_active_one() {
    let mut run = Run::new(0);
    run.record(with_deadlines(obs("s", "pending", T), Some(T + H), None));
    run.record(obs("z", "active", T + 2 * H));
    assert_eq!(
        run.transitions().pop().unwrap(),
        tr("s", Some("pending"), "expired", Cause::Inferred, T + H)
    );
}

#[test]
fn the_inferred_time_is_clamped_to_since() {
    let mut run = Run::new(0);
    // First seen already past its deadline.
    run.record(with_deadlines(
        obs("s", "active", T + 2 * H),
        Some(T + H),
        None,
    ));
    let events = run.take();
    assert_eq!(events.len(), 2);
    assert!(matches!(
        &events[1],
        OwnedEvent::Transition { cause: Cause::Inferred, at, in_state_ms: Some(0), source: None, .. } if *at == T + 2 * H
    ));
}

#[test]
fn timers_fire_in_deadline_then_id_order() {
    let mut run = Run::new(0);
    run.record(with_deadlines(obs("c", "active", T), Some(T + H), None));
    run.record(with_deadlines(obs("a", "active", T), Some(T + 2 * H), None));
    run.record(with_deadlines(obs("b", "active", T), Some(T + H), None));
    run.take();
    run.record(obs("z", "active", T + 3 * H));
    let fired: Vec<String> = run
        .transitions()
        .into_iter()
        .filter(|t| t.3 == Cause::Inferred)
        .map(|t| t.0)
        .collect();
    assert_eq!(fired, ["b", "c", "a"]);
}

#[test]
fn allowed_lateness_holds_timers_back() {
    let mut run = Run::new(H);
    run.record(with_deadlines(obs("s", "active", T), Some(T + H), None));
    run.record(obs("z", "active", T + 2 * H - 1));
    assert_eq!(run.transitions().len(), 2);
    run.record(obs("z", "active", T + 2 * H));
    assert_eq!(run.transitions().len(), 1);
}

#[test]
fn the_watermark_never_moves_back() {
    let mut run = Run::new(0);
    run.record(obs("a", "active", T + H));
    run.record(obs("b", "active", T));
    assert_eq!(run.engine.watermark(), Some(T + H));
    run.engine.advance_watermark(T, &mut Vec::new());
    assert_eq!(run.engine.watermark(), Some(T + H));
}

#[test]
fn stale_and_duplicate_observations_still_move_the_watermark() {
    let mut run = Run::new(0);
    run.record(obs("s", "active", T + 2 * H));
    run.record(obs("s", "active", T + 2 * H)); // duplicate
    run.record(obs("s", "ended", T)); // stale
    assert_eq!(run.engine.watermark(), Some(T + 2 * H));
}

/// Sets up session `s` inferred `abandoned` at `T + H` (its abandon deadline).
fn inferred_session(run: &mut Run) {
    run.record(with_deadlines(
        obs("s", "active", T),
        Some(T + 10 * H),
        Some(T + H),
    ));
    run.record(obs("z", "active", T + 2 * H));
    let state = run.engine.session("s").unwrap();
    assert!(state.inferred && state.status == "abandoned" && state.since == T + H);
    run.take();
}

#[test]
fn after_an_inference_the_same_status_confirms_it_silently() {
    let mut run = Run::new(0);
    inferred_session(&mut run);
    let confirmation = with_deadlines(
        obs("s", "abandoned", T + 3 * H),
        Some(T + 10 * H),
        Some(T + H),
    );
    assert_eq!(run.record(confirmation), Outcome::Applied);
    assert!(run.take().is_empty());
    let state = run.engine.session("s").unwrap();
    assert!(!state.inferred);
    assert_eq!((state.since, state.updated_at), (T + H, T + 3 * H));
}

#[test]
fn after_an_inference_a_live_status_with_a_later_deadline_is_a_correction() {
    let mut run = Run::new(0);
    inferred_session(&mut run);
    let extended = with_deadlines(
        obs("s", "active", T + H / 2),
        Some(T + 10 * H),
        Some(T + 5 * H),
    );
    assert_eq!(run.record(extended), Outcome::Applied);
    let events = run.take();
    assert!(matches!(
        &events[0],
        OwnedEvent::Transition { from: Some(f), to, cause: Cause::Correction, at, in_state_ms: Some(0), .. }
            if f == "abandoned" && to == "active" && *at == T + H / 2
    ));
    let state = run.engine.session("s").unwrap();
    assert!(!state.inferred);
    assert_eq!((state.status.as_str(), state.since), ("active", T + H / 2));
}

#[test]
fn after_an_inference_a_live_status_without_deadline_is_a_correction() {
    let mut run = Run::new(0);
    inferred_session(&mut run);
    assert_eq!(run.record(obs("s", "active", T + H / 2)), Outcome::Applied);
    assert_eq!(
        run.transitions(),
        vec![tr(
            "s",
            Some("abandoned"),
            "active",
            Cause::Correction,
            T + H / 2
        )]
    );
}

#[test]
fn after_an_inference_a_live_status_with_an_old_deadline_is_late() {
    let mut run = Run::new(0);
    inferred_session(&mut run);
    // The deadline equals the inference time: not later, so late.
    let late = with_deadlines(obs("s", "active", T + H / 2), Some(T + 10 * H), Some(T + H));
    assert_eq!(run.record(late), Outcome::Late);
    assert!(run.take().is_empty());
    assert!(run.engine.session("s").unwrap().inferred);
}

#[test]
fn after_an_inference_an_earlier_end_is_a_correction_and_a_later_one_observed() {
    for (at, cause) in [
        (T + H / 2, Cause::Correction),
        (T + H, Cause::Observed),
        (T + 2 * H, Cause::Observed),
    ] {
        let mut run = Run::new(0);
        inferred_session(&mut run);
        run.record(obs("s", "ended", at));
        assert_eq!(
            run.transitions(),
            vec![tr("s", Some("abandoned"), "ended", cause, at)],
            "ended at {at}"
        );
    }
}

#[test]
fn after_an_inference_an_unknown_status_replaces_it() {
    let mut run = Run::new(0);
    inferred_session(&mut run);
    run.record(obs("s", "quarantined", T + 3 * H));
    assert_eq!(
        run.transitions(),
        vec![tr(
            "s",
            Some("abandoned"),
            "quarantined",
            Cause::Observed,
            T + 3 * H
        )]
    );
}

#[test]
fn in_state_time_is_never_negative() {
    let mut run = Run::new(0);
    inferred_session(&mut run);
    // Confirmed with an updated_at before the inference time, then ended before it too.
    run.record(with_deadlines(
        obs("s", "abandoned", T + H / 4),
        None,
        Some(T + H),
    ));
    run.record(obs("s", "removed", T + H / 2));
    let events = run.take();
    assert!(matches!(
        events.last(),
        Some(OwnedEvent::Transition {
            in_state_ms: Some(0),
            cause: Cause::Observed,
            ..
        })
    ));
}

#[test]
fn terminal_sessions_are_forgotten_after_retention_exactly() {
    let config = EngineConfig {
        allowed_lateness_ms: 0,
        terminal_retention_ms: 2 * H,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let mut run = Run::with(config);
    run.record(obs("s", "ended", T));
    run.record(obs("z", "active", T + 2 * H - 1));
    assert!(run.engine.session("s").is_some());
    run.record(obs("z", "active", T + 2 * H));
    assert!(run.engine.session("s").is_none());
    // Seen again: a first sighting.
    run.take();
    run.record(obs("s", "ended", T));
    assert_eq!(
        run.transitions(),
        vec![tr("s", None, "ended", Cause::Observed, T)]
    );
}

#[test]
fn inferred_terminal_sessions_are_forgotten_too() {
    let config = EngineConfig {
        allowed_lateness_ms: 0,
        terminal_retention_ms: H,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let mut run = Run::with(config);
    run.record(with_deadlines(obs("s", "active", T), Some(T + H), None));
    run.record(obs("z", "active", T + H));
    assert!(run.engine.session("s").unwrap().inferred);
    run.record(obs("z", "active", T + 2 * H));
    assert!(run.engine.session("s").is_none());
    assert_eq!(run.engine.len(), 1);
}

#[test]
fn live_sessions_are_never_forgotten() {
    let config = EngineConfig {
        allowed_lateness_ms: 0,
        terminal_retention_ms: 1,
        max_clock_skew_ms: 0,
        max_sessions: None,
    };
    let mut run = Run::with(config);
    run.record(obs("s", "active", T));
    run.record(obs("z", "active", T + 100 * H));
    assert!(run.engine.session("s").is_some());
}

#[test]
fn an_idle_partition_advances_with_the_wall_clock() {
    let mut run = Run::new(H);
    run.record(with_deadlines(obs("s", "active", T), Some(T + H), None));
    run.take();
    run.engine.advance_idle(T + 2 * H - 1, &mut run.events);
    assert!(run.take().is_empty());
    run.engine.advance_idle(T + 2 * H, &mut run.events);
    assert_eq!(
        run.transitions(),
        vec![tr("s", Some("active"), "expired", Cause::Inferred, T + H)]
    );
}

#[test]
fn a_future_event_time_raises_an_anomaly_and_does_not_move_the_watermark() {
    let config = EngineConfig {
        allowed_lateness_ms: 0,
        terminal_retention_ms: H,
        max_clock_skew_ms: 5 * 60_000,
        max_sessions: None,
    };
    let mut run = Run::with(config);
    let now = T;
    run.live_record(obs("a", "active", now + 5 * 60_000), Some(now));
    assert_eq!(
        run.engine.watermark(),
        Some(now + 5 * 60_000),
        "at the limit: accepted"
    );
    run.take();
    let outcome = run.live_record(obs("b", "active", now + H), Some(now));
    assert_eq!(outcome, Outcome::Applied, "still applied");
    assert_eq!(run.engine.watermark(), Some(now + 5 * 60_000));
    let events = run.take();
    assert!(matches!(
        &events[0],
        OwnedEvent::Anomaly { kind: AnomalyKind::FutureEventTime, status: None, at, .. } if *at == now + H
    ));
    assert!(matches!(
        &events[1],
        OwnedEvent::Transition { from: None, .. }
    ));
}

#[test]
fn a_zero_clock_skew_turns_the_future_check_off() {
    let config = EngineConfig {
        max_clock_skew_ms: 0,
        max_sessions: None,
        ..EngineConfig::default()
    };
    let mut run = Run::with(config);
    run.live_record(obs("a", "active", T + 1000 * H), Some(T));
    assert_eq!(run.take().len(), 1);
}

#[test]
fn inferred_events_carry_the_sessions_ids_and_impersonation() {
    let mut run = Run::new(0);
    let o = Observation {
        id: "sess_2g7np7Hrk0SN6kj5EDMLDaKNL0S",
        user_id: Some("user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"),
        client_id: None,
        impersonated: true,
        ..with_deadlines(obs("x", "active", T), Some(T + H), None)
    };
    run.record(o);
    run.record(obs("z", "active", T + H));
    let events = run.take();
    assert!(matches!(
        &events[2],
        OwnedEvent::Transition { session_id, user_id: Some(u), client_id: None, impersonated: true, cause: Cause::Inferred, source: None, .. }
            if session_id == "sess_2g7np7Hrk0SN6kj5EDMLDaKNL0S" && u == "user_2g7np7Hrk0SN6kj5EDMLDaKNL0S"
    ));
}

#[test]
fn live_impersonated_sessions_are_counted_through_every_change() {
    let mut run = Run::with(EngineConfig {
        allowed_lateness_ms: 0,
        terminal_retention_ms: H,
        ..EngineConfig::default()
    });
    let acting = |o: Observation<'static>| Observation {
        impersonated: true,
        ..o
    };
    run.record(acting(with_deadlines(
        obs("a", "active", T),
        Some(T + H),
        None,
    )));
    run.record(acting(obs("b", "active", T)));
    run.record(obs("c", "active", T));
    assert_eq!(run.engine.impersonated_live_sessions(), 2);
    // b's next snapshot comes without an actor: no longer an impersonation.
    run.record(obs("b", "pending", T + 1));
    assert_eq!(run.engine.impersonated_live_sessions(), 1);
    // a expires by inference: terminal sessions are not live.
    run.record(obs("c", "active", T + H));
    assert_eq!(run.engine.impersonated_live_sessions(), 0);
    // A restore replaces and adds states; a tombstone forgets one.
    let state = |status: &'static str, impersonated: bool| StateRecord {
        status,
        since: T,
        updated_at: T,
        created_at: Some(T),
        expire_at: None,
        abandon_at: None,
        user_id: None,
        client_id: None,
        impersonated,
        inferred: false,
    };
    run.engine.restore("c", &state("active", true));
    run.engine.restore("d", &state("active", true));
    assert_eq!(run.engine.impersonated_live_sessions(), 2);
    run.engine.restore("d", &state("ended", true));
    run.engine.forget("c");
    assert_eq!(run.engine.impersonated_live_sessions(), 0);
    run.engine.restore("e", &state("active", true));
    run.record(obs("e", "revoked", T + H + 1));
    assert_eq!(run.engine.impersonated_live_sessions(), 0);
}

#[test]
fn sessions_are_counted_by_status() {
    let mut run = Run::new(0);
    run.record(obs("a", "active", T));
    run.record(obs("b", "pending", T));
    run.record(obs("c", "weird", T));
    run.record(obs("a", "ended", T + 1));
    let counts: Vec<(&str, u64)> = run
        .engine
        .sessions_by_status()
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(counts, [("pending", 1), ("ended", 1), ("other", 1)]);
}

#[test]
fn a_retried_resurrection_applies_after_an_older_unknown_status_arrives() {
    // Documented order sensitivity (see tests/engine_props.rs): terminal → unknown → live
    // is allowed by rule 6, so the retry of a rejected live snapshot can apply.
    let mut run = Run::new(0);
    run.record(obs("s", "revoked", T));
    run.record(obs("s", "active", T + 2 * H)); // resurrection: rejected
    run.record(obs("s", "quarantined", T + H)); // older, but newer than the state
    run.take();
    run.record(obs("s", "active", T + 2 * H)); // the retry
    assert_eq!(
        run.transitions(),
        vec![tr(
            "s",
            Some("quarantined"),
            "active",
            Cause::Observed,
            T + 2 * H
        )]
    );
}

#[test]
fn an_unknown_status_between_can_make_the_same_inference_twice() {
    // Rule 3 applies an unknown status even when it is older than the inference, and rule 6
    // then lets the session go live again with its old deadline: the timer fires again.
    let mut run = Run::new(0);
    run.record(obs("z", "active", T + 10 * H));
    run.record(with_deadlines(obs("s", "active", T), None, Some(T + 5 * H)));
    run.record(with_deadlines(
        obs("s", "quarantined", T + H),
        None,
        Some(T + 5 * H),
    ));
    run.record(with_deadlines(
        obs("s", "active", T + 2 * H),
        None,
        Some(T + 5 * H),
    ));
    let inferred: Vec<_> = run
        .transitions()
        .into_iter()
        .filter(|t| t.3 == Cause::Inferred)
        .collect();
    let expected = tr("s", Some("active"), "abandoned", Cause::Inferred, T + 5 * H);
    assert_eq!(inferred, vec![expected.clone(), expected]);
}
