//! Exactly-once with a misconfigured pair (issue 4, fencing): a second instance starts with
//! the transactional id of a running one. Each one's producer fences the other's; the
//! pipeline replaces a fenced producer and rewinds, and when that keeps happening one
//! instance stops with an error (non-zero exit) while the other finishes the input. Nothing
//! a fenced producer wrote is visible: the read_committed output is exactly what `replay`
//! derives.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PARTITIONS: i32 = 4;

#[test]
fn two_instances_with_one_transactional_id_end_with_one_stopped_and_exact_output() {
    let Some(bootstrap) = bootstrap() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = unique("fence-in");
    let prefix = unique("fence-out");
    let group = unique("fence-group");
    create_topics(&bootstrap, &[&input], PARTITIONS);
    let shared_id = format!("pipeline.transactional_id={}", unique("shared"));
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"session.timeout.ms\"=\"6000\"",
        "delivery=\"exactly_once\"",
        shared_id.as_str(),
    ];
    let total: u64 = 150_000;
    let mut generator = spawn_generator(&bootstrap, &input, total, 16, 15_000);
    let mut first = start_run(&bootstrap, dir.path(), &group, &input, &prefix, &sets);
    wait_for_run(
        &first,
        "the first instance making progress",
        Duration::from_secs(120),
        || {
            committed(&bootstrap, &group, &input, PARTITIONS)
                .iter()
                .filter(|o| **o > 0)
                .sum::<i64>()
                > 20_000
        },
    );
    let mut second = start_run(&bootstrap, dir.path(), &group, &input, &prefix, &sets);

    let deadline = Instant::now() + Duration::from_secs(180);
    let (stopped, mut survivor) = loop {
        if let Some(status) = first.child.try_wait().unwrap() {
            break ((status, first.log_text()), second);
        }
        if let Some(status) = second.child.try_wait().unwrap() {
            break ((status, second.log_text()), first);
        }
        assert!(
            Instant::now() < deadline,
            "neither instance stopped:\n{}\n---\n{}",
            first.log_text(),
            second.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (status, log) = stopped;
    assert!(
        !status.success(),
        "the stopped instance exits non-zero: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(log.contains("fenced repeatedly"), "{log}");

    assert!(generator.wait().unwrap().success());
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    wait_for_run(
        &survivor,
        "the surviving instance committing everything",
        Duration::from_secs(300),
        || committed(&bootstrap, &group, &input, PARTITIONS) == ends,
    );
    assert!(survivor.terminate().success(), "{}", survivor.log_text());

    let records = read_all(&bootstrap, &input);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let transitions = read_all(&bootstrap, &format!("{prefix}.transitions"));
    assert_exactly_once(&expected, &transitions);
    let reason = log
        .lines()
        .rfind(|l| l.contains("error"))
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "fencing: one instance stopped ({status}: {reason}); the read_committed output equals replay exactly"
    );
}
