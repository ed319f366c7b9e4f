//! The consumer kit's example (`examples/live_sessions.rs`, docs/consuming.md) against a real
//! broker: over the transitions `sessionflow run` wrote, with at-least-once duplicates added
//! (the same records written again to their partitions, as a redelivery after a crash
//! writes them), its distinct transitions and live sessions per user equal what `replay`
//! derives from the same input, and it drops exactly the duplicates.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use common::*;

const PARTITIONS: i32 = 2;
/// Records of each partition's tail written a second time.
const REDELIVERED: usize = 400;

/// The example's executable, built by `cargo test` beside the test executables.
fn example_binary() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let profile_dir = deps.parent().unwrap().parent().unwrap();
    let binary = profile_dir.join("examples").join("live_sessions");
    assert!(
        binary.exists(),
        "{} is missing: `cargo test` builds it, a run of one test target does not (cargo build --release --examples)",
        binary.display()
    );
    binary
}

#[test]
fn the_example_consumer_counts_what_replay_derives_and_drops_duplicates() {
    let Some(scenario) = Scenario::new("consumer-kit", PARTITIONS) else {
        return;
    };
    generate_into(&scenario.bootstrap, &scenario.input, 40_000, 71);
    scenario.run_to_end(&[]);
    let topic = format!("{}.transitions", scenario.prefix);
    let written = read_all(&scenario.bootstrap, &topic);

    // A redelivery: each partition's last records again, same key, value and partition.
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &scenario.bootstrap)
        .create()
        .unwrap();
    let mut redelivered = 0;
    runtime().block_on(async {
        for (&partition, records) in &written {
            for record in records.iter().rev().take(REDELIVERED).rev() {
                let mut headers = OwnedHeaders::new();
                for (key, value) in &record.headers {
                    headers = headers.insert(Header {
                        key,
                        value: Some(value),
                    });
                }
                let message = FutureRecord::to(&topic)
                    .partition(partition)
                    .key(record.key.as_deref().unwrap_or_default())
                    .payload(record.value.as_deref().unwrap_or_default())
                    .headers(headers);
                producer
                    .send(message, Duration::from_secs(30))
                    .await
                    .unwrap();
                redelivered += 1;
            }
        }
    });

    let output = Command::new(example_binary())
        .args(["--brokers", &scenario.bootstrap, "--topic", &topic])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", example_binary().display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();

    let input = read_all(&scenario.bootstrap, &scenario.input);
    let expected = expected_from_replay(&input, &scenario.input, scenario.dir.path(), &[]);
    let (distinct, live_per_user) = what_replay_implies(&expected.transitions);
    let on_topic: usize = written.values().map(Vec::len).sum::<usize>() + redelivered;

    assert_eq!(summary["malformed"], 0, "{summary}");
    assert_eq!(summary["transitions"], distinct, "{summary}");
    assert_eq!(
        summary["duplicates_dropped"],
        on_topic - distinct,
        "every record beyond the distinct transitions is dropped: {summary}"
    );
    assert!(summary["duplicates_dropped"].as_u64().unwrap() >= redelivered as u64);
    let got: BTreeMap<String, u64> =
        serde_json::from_value(summary["live_sessions_per_user"].clone()).unwrap();
    assert!(
        got.len() > 100,
        "a real workload: {} users with live sessions",
        got.len()
    );
    assert_eq!(got, live_per_user, "live sessions per user");
    eprintln!(
        "consumer kit: {distinct} distinct transitions, {} duplicates dropped ({redelivered} redelivered), {} live sessions of {} users",
        summary["duplicates_dropped"],
        summary["live_sessions"],
        got.len()
    );
}

/// From the transitions `replay` derives, per partition in order: how many are distinct by
/// the idempotency key `(session_id, from, to, at)`, and the live sessions per user (each
/// session's last status and user decide).
fn what_replay_implies(transitions: &BTreeMap<i32, Vec<Value>>) -> (usize, BTreeMap<String, u64>) {
    let mut keys = HashSet::new();
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    for events in transitions.values() {
        for t in events {
            let session = t["session_id"].as_str().unwrap().to_string();
            let key = (
                session.clone(),
                t["from"].to_string(),
                t["to"].to_string(),
                t["at"].as_i64(),
            );
            if keys.insert(key) {
                let user = t["user_id"].as_str().unwrap_or_default().to_string();
                last.insert(session, (t["to"].as_str().unwrap().to_string(), user));
            }
        }
    }
    let mut per_user = BTreeMap::new();
    for (status, user) in last.values() {
        if status == "active" || status == "pending" {
            *per_user.entry(user.clone()).or_default() += 1;
        }
    }
    (keys.len(), per_user)
}
