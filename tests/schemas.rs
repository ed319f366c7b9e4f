//! The published JSON Schemas (`schemas/`, docs/consuming.md) hold to the code: every event
//! and dead-letter line of every worked example, of a large generated replay and of random
//! input validates against them, and carries no field they do not declare. The dead-letter
//! topic's headers are checked against the real broker in `kafka_dead_letters` and
//! `kafka_live`. Also `sessionflow schema`, the CLI that prints them.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use serde_json::Value;

use common::schemas::Schemas;
use sessionflow::engine::EngineConfig;
use sessionflow::parse::Limits;
use sessionflow::replay::{replay_bytes, ReplayOptions};

const BIN: &str = env!("CARGO_BIN_EXE_sessionflow");

/// What a run of checks saw, to show the checks covered every closed value.
#[derive(Default)]
struct Seen {
    events: u64,
    dead_letters: u64,
    values: BTreeSet<String>,
}

impl Seen {
    fn event(&mut self, schemas: &Schemas, line: &[u8]) {
        let event: Value = serde_json::from_slice(line).unwrap();
        let kind = schemas.check_event(&event);
        self.events += 1;
        self.values.insert(kind.to_string());
        for field in ["cause", "kind"] {
            if let Some(v) = event[field].as_str() {
                self.values.insert(format!("{field}={v}"));
            }
        }
        if event["from"].is_null() && kind == "session.transition" {
            self.values.insert("first sighting".into());
        }
    }

    fn dead_letter(&mut self, schemas: &Schemas, line: &[u8]) {
        let dead_letter: Value = serde_json::from_slice(line).unwrap();
        schemas.replay_dead_letter.check(&dead_letter);
        self.dead_letters += 1;
        self.values.insert(format!(
            "dead letter {}",
            dead_letter["kind"].as_str().unwrap()
        ));
    }

    fn lines(&mut self, schemas: &Schemas, events: &[u8], dead_letters: &[u8]) {
        for line in events.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.event(schemas, line);
        }
        for line in dead_letters
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            self.dead_letter(schemas, line);
        }
    }
}

fn example_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for group in ["examples", "scenarios"] {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data")
            .join(group);
        for entry in fs::read_dir(&root).unwrap() {
            let path = entry.unwrap().path();
            if path.join("input.ndjson").exists() {
                dirs.push(path);
            }
        }
    }
    dirs.sort();
    dirs
}

/// `sessionflow replay` of `input` with `args`; returns (events, dead-letter lines).
fn replay_cli(input: &Path, args: &[String], work: &Path) -> (Vec<u8>, Vec<u8>) {
    let (output, dlq) = (work.join("out.ndjson"), work.join("dlq.ndjson"));
    let status = Command::new(BIN)
        .arg("replay")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&output)
        .arg("--dlq")
        .arg(&dlq)
        .args(args)
        .status()
        .unwrap();
    assert!(status.success());
    (fs::read(output).unwrap(), fs::read(dlq).unwrap())
}

#[test]
fn every_worked_example_validates_golden_and_as_replayed() {
    let schemas = Schemas::load();
    let work = tempfile::tempdir().unwrap();
    let mut seen = Seen::default();
    for dir in example_dirs() {
        let args: Vec<String> = fs::read_to_string(dir.join("args"))
            .unwrap_or_default()
            .split_whitespace()
            .map(String::from)
            .collect();
        let (events, dead_letters) = replay_cli(&dir.join("input.ndjson"), &args, work.path());
        seen.lines(&schemas, &events, &dead_letters);
        // The golden files too: they are what the SPEC's readers see.
        seen.lines(
            &schemas,
            &fs::read(dir.join("expected.ndjson")).unwrap(),
            b"",
        );
    }
    for value in [
        "session.transition",
        "session.anomaly",
        "cause=observed",
        "cause=inferred",
        "cause=correction",
        "kind=resurrection",
        "first sighting",
        "dead letter invalid_json",
        "dead letter invalid_value",
    ] {
        assert!(
            seen.values.contains(value),
            "the examples cover {value}: {:?}",
            seen.values
        );
    }
    eprintln!(
        "worked examples: {} events and {} dead-letter lines valid; seen {:?}",
        seen.events, seen.dead_letters, seen.values
    );
}

/// 200 000 generated records (the generator's Clerk traffic: snapshots, webhooks, lists, a
/// share of broken records) through `sessionflow replay`.
#[test]
fn a_large_generated_replay_validates() {
    let schemas = Schemas::load();
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("input.ndjson");
    let status = Command::new(BIN)
        .args(["generate", "--sessions", "60000", "--seed", "17"])
        .args(["--records", "200000", "--output"])
        .arg(&input)
        .status()
        .unwrap();
    assert!(status.success());
    // Broken records of each kind the generator does not make, at the end.
    let mut text = fs::read(&input).unwrap();
    for broken in [
        &b"{\"id\":\"sess_x\",\"status\":\"active\""[..],
        b"[1,2]",
        b"{\"object\":\"session\",\"id\":\"sess_x\",\"status\":\"active\"}",
        b"{\"id\":7,\"status\":\"active\",\"updated_at\":1}",
        b"{\"id\":\"sess_x\",\"status\":\"active\",\"updated_at\":-1}",
    ] {
        text.extend_from_slice(broken);
        text.push(b'\n');
    }
    fs::write(&input, text).unwrap();
    let (events, dead_letters) = replay_cli(&input, &[], work.path());
    let mut seen = Seen::default();
    seen.lines(&schemas, &events, &dead_letters);
    assert!(seen.events > 100_000, "{} events", seen.events);
    for kind in [
        "invalid_json",
        "invalid_shape",
        "missing_field",
        "wrong_type",
        "invalid_value",
    ] {
        assert!(
            seen.values.contains(&format!("dead letter {kind}")),
            "{kind}: {:?}",
            seen.values
        );
    }
    eprintln!(
        "generated replay: {} events and {} dead-letter lines valid",
        seen.events, seen.dead_letters
    );
}

const T: i64 = 1_764_000_000_000;

/// One random input line: a Session, a webhook envelope or a list of them with random field
/// values (known, unknown and escaped statuses and ids, seconds and milliseconds, nulls), or
/// a broken record.
fn record() -> impl Strategy<Value = String> {
    let id = prop::sample::select(vec![
        "sess_a".to_string(),
        "sess_b".into(),
        "sess_\"quoted\\".into(),
        "sess_é\u{1}".into(),
        "x".repeat(256),
        "x".repeat(257),
        String::new(),
    ]);
    let status = prop::sample::select(vec![
        "active".to_string(),
        "pending".into(),
        "ended".into(),
        "removed".into(),
        "revoked".into(),
        "replaced".into(),
        "expired".into(),
        "abandoned".into(),
        "quarantined".into(),
        "tab\there".into(),
        "s".repeat(64),
        "s".repeat(65),
    ]);
    let time = prop_oneof![
        (0..600i64).prop_map(|m| Value::from(T + m * 60_000)),
        (0..600i64).prop_map(|m| Value::from(T / 1000 + m * 60)),
        Just(Value::Null),
        Just(Value::from(-5)),
        Just(Value::from(1.5)),
    ];
    let session = (
        id,
        status,
        time.clone(),
        prop::option::of(time.clone()),
        prop::option::of(time.clone()),
        prop::option::of(time),
        prop::option::of(prop::sample::select(vec!["user_1", "user_2", "u\"3"])),
        any::<bool>(),
    )
        .prop_map(
            |(id, status, updated_at, created_at, expire_at, abandon_at, user_id, actor)| {
                let mut s = serde_json::json!({
                    "object": "session", "id": id, "status": status, "updated_at": updated_at,
                    "client_id": "client_1", "last_active_at": null,
                });
                for (key, value) in [
                    ("created_at", created_at),
                    ("expire_at", expire_at),
                    ("abandon_at", abandon_at),
                ] {
                    if let Some(v) = value {
                        s[key] = v;
                    }
                }
                if let Some(user) = user_id {
                    s["user_id"] = user.into();
                }
                if actor {
                    s["actor"] = serde_json::json!({"sub": "user_admin"});
                }
                s
            },
        );
    prop_oneof![
        6 => session.clone().prop_map(|s| s.to_string()),
        2 => session.clone().prop_map(|s| {
            serde_json::json!({"object": "event", "type": "session.updated", "data": s})
                .to_string()
        }),
        1 => prop::collection::vec(session, 1..3).prop_map(|v| Value::from(v).to_string()),
        1 => prop::sample::select(vec![
            "{".to_string(),
            "[]".into(),
            "{\"object\":\"user\",\"id\":\"user_1\"}".into(),
            "{\"object\":\"event\",\"data\":{}}".into(),
            "{\"id\":\"sess_a\",\"status\":3,\"updated_at\":1}".into(),
            "\"\\ud800\"".into(),
        ]),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever the input, what replay writes validates: events and dead-letter lines.
    #[test]
    fn events_derived_from_random_input_validate(
        lines in prop::collection::vec(record(), 1..40),
        lateness in prop::sample::select(vec![0i64, 300_000]),
        retention in prop::sample::select(vec![0i64, 86_400_000]),
    ) {
        let schemas = Schemas::load();
        let input = lines.join("\n");
        let options = ReplayOptions {
            engine: EngineConfig {
                allowed_lateness_ms: lateness,
                terminal_retention_ms: retention,
                max_clock_skew_ms: 0,
                max_sessions: None,
            },
            until_ms: None,
            limits: Limits::default(),
        };
        let (mut events, mut dead_letters) = (Vec::new(), Vec::new());
        replay_bytes(input.as_bytes(), &mut events, &mut dead_letters, &options).unwrap();
        Seen::default().lines(&schemas, &events, &dead_letters);
    }
}

#[test]
fn the_schema_command_lists_and_prints_the_published_schemas() {
    let list = Command::new(BIN).arg("schema").output().unwrap();
    assert!(list.status.success());
    let listed = String::from_utf8(list.stdout).unwrap();
    for published in sessionflow::schema::SCHEMAS {
        assert!(listed.contains(published.name), "{listed}");
        let printed = Command::new(BIN)
            .args(["schema", published.name])
            .output()
            .unwrap();
        assert!(printed.status.success());
        let file = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("schemas")
            .join(format!("{}.v1.json", published.name));
        assert_eq!(
            printed.stdout,
            fs::read(file).unwrap(),
            "{}",
            published.name
        );
    }
    let unknown = Command::new(BIN)
        .args(["schema", "session.nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2), "a usage error");
    let message = String::from_utf8_lossy(&unknown.stderr);
    assert!(message.contains("session.transition"), "{message}");
}
