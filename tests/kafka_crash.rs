//! Crashes lose nothing (SPEC section 6): `sessionflow run` is killed with SIGKILL three times
//! in the middle of a 200 000-record stream and restarted each time. Every event `replay`
//! derives per partition is in the output; every output event is one of those (a restarted
//! instance restores its state from the changelog, so it never re-derives a first sighting
//! or anything else anew); the only extras are exact duplicates of events in flight at a
//! kill, which are counted and reported.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;

const PARTITIONS: i32 = 4;

#[test]
fn three_kill_9s_mid_stream_lose_nothing_and_re_derive_nothing() {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = unique("crash-in");
    let prefix = unique("crash-out");
    let group = unique("crash-group");
    create_topics(&bootstrap, &[&input], PARTITIONS);
    let total: u64 = 200_000;
    // A killed member leaves the group only when its session times out: keep that short.
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"session.timeout.ms\"=\"6000\"",
    ];
    let mut run = start_run(&bootstrap, dir.path(), &group, &input, &prefix, &sets);
    let mut generator = spawn_generator(&bootstrap, &input, total, 14, 25000);
    let mut kills = 0;
    let mut restored_sessions = 0u64;
    for threshold in [30_000i64, 80_000, 130_000] {
        wait_until("progress before the kill", Duration::from_secs(180), || {
            committed(&bootstrap, &group, &input, PARTITIONS)
                .iter()
                .filter(|o| **o > 0)
                .sum::<i64>()
                > threshold
        });
        signal(run.child.id(), "KILL");
        let _ = run.child.wait();
        kills += 1;
        restored_sessions += restored_in(&run.log_text());
        run = start_run(&bootstrap, dir.path(), &group, &input, &prefix, &sets);
    }
    assert!(generator.wait().unwrap().success());
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    assert_eq!(ends.iter().sum::<i64>() as u64, total);
    wait_until(
        "everything committed after the last restart",
        Duration::from_secs(300),
        || committed(&bootstrap, &group, &input, PARTITIONS) == ends,
    );
    assert!(run.terminate().success(), "{}", run.log_text());
    restored_sessions += restored_in(&run.log_text());
    assert!(
        restored_sessions > 0,
        "restarted instances restored state from the changelog"
    );

    let records = read_all(&bootstrap, &input);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let transitions = read_all(&bootstrap, &format!("{prefix}.transitions"));
    let mut duplicates = 0;
    for p in 0..PARTITIONS {
        let mut want: HashMap<String, i64> = HashMap::new();
        for e in &expected.transitions[&p] {
            *want.entry(e.to_string()).or_default() += 1;
        }
        let mut got: HashMap<String, i64> = HashMap::new();
        for t in &transitions[&p] {
            *got.entry(t.json().to_string()).or_default() += 1;
        }
        for (event, n) in &want {
            let have = got.get(event).copied().unwrap_or(0);
            assert!(have >= *n, "partition {p}: missing {event}");
        }
        for (event, n) in &got {
            let w = want.get(event).copied().unwrap_or(0);
            if w == 0 {
                let session =
                    serde_json::from_str::<serde_json::Value>(event).unwrap()["session_id"].clone();
                let history = |events: Vec<serde_json::Value>| -> Vec<String> {
                    events
                        .into_iter()
                        .filter(|e| e["session_id"] == session)
                        .map(|e| e.to_string())
                        .collect()
                };
                let inputs: Vec<String> = records[&p]
                    .iter()
                    .filter(|r| r.key.as_deref() == session.as_str().map(str::as_bytes))
                    .map(|r| {
                        format!(
                            "{} {}",
                            r.offset,
                            String::from_utf8_lossy(r.value.as_deref().unwrap_or(b""))
                                .chars()
                                .take(400)
                                .collect::<String>()
                        )
                    })
                    .collect();
                panic!(
                    "partition {p}: re-derived an event replay never derives: {event}\nexpected:\n{}\ngot:\n{}\ninputs:\n{}",
                    history(expected.transitions[&p].clone()).join("\n"),
                    history(values(&transitions[&p])).join("\n"),
                    inputs.join("\n")
                );
            }
            duplicates += n - w;
        }
    }
    eprintln!(
        "{kills} kills: every expected transition present, none re-derived; {duplicates} duplicates of in-flight events; {restored_sessions} sessions restored"
    );
}

/// Sessions restored, summed over the log's restore lines.
fn restored_in(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("Restored partition state"))
        .filter_map(|l| {
            l.split("sessions=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}
