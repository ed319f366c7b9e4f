//! One transactional id, one instance (SPEC section 6, exactly-once): a second live instance
//! started with the first one's `pipeline.transactional_id` is detected — one of the two stops
//! with an error naming the id, the other goes on — and the read_committed output stays
//! exactly what `replay` derives.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PARTITIONS: i32 = 4;

#[test]
fn a_second_instance_with_the_same_transactional_id_is_detected_and_stopped() {
    let Some(scenario) = Scenario::new("fencing", PARTITIONS) else {
        return;
    };
    let shared_id = format!("pipeline.transactional_id={}", unique("shared"));
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"session.timeout.ms\"=\"6000\"",
        "delivery=\"exactly_once\"",
        shared_id.as_str(),
    ];
    let first = scenario.start(&sets);
    // Input keeps arriving for the whole test: a fenced producer shows only on a transaction.
    let mut generator = spawn_generator(&scenario.bootstrap, &scenario.input, 240_000, 23, 4_000);
    scenario.wait_committed_beyond(
        "the first instance making progress",
        10_000,
        Duration::from_secs(120),
    );
    let second = scenario.start(&sets);

    let deadline = Instant::now() + Duration::from_secs(240);
    let (mut runs, mut stopped_index) = ([first, second], None);
    while stopped_index.is_none() {
        for (i, run) in runs.iter_mut().enumerate() {
            if run.child.try_wait().unwrap().is_some() {
                stopped_index = Some(i);
            }
        }
        assert!(
            Instant::now() < deadline,
            "neither instance stopped within 240 s; first:\n{}\nsecond:\n{}",
            runs[0].log_text(),
            runs[1].log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let stopped_index = stopped_index.unwrap();
    let [first, second] = runs;
    let (mut stopped, mut survivor) = if stopped_index == 0 {
        (first, second)
    } else {
        (second, first)
    };
    let status = stopped.child.wait().unwrap();
    let stopped_log = stopped.log_text();
    assert!(
        !status.success(),
        "the stopped instance exits with an error"
    );
    assert!(
        stopped_log.contains("another live instance uses transactional id"),
        "the error names the cause: {stopped_log}"
    );
    assert!(
        survivor.child.try_wait().unwrap().is_none(),
        "the other instance goes on: {}",
        survivor.log_text()
    );

    assert!(generator.wait().unwrap().success());
    scenario.wait_all_committed(
        &survivor,
        "the remaining instance committing every input offset",
        Duration::from_secs(300),
    );
    let survivor_status = survivor.terminate();
    assert!(survivor_status.success(), "{}", survivor.log_text());

    scenario.against_replay().assert_exactly_once();
    eprintln!(
        "fencing: the {} instance stopped; read_committed output equals replay exactly",
        if stopped_index == 0 {
            "first"
        } else {
            "second"
        }
    );
}
