//! Scale-out and rebalance (SPEC section 6): one instance starts, a second joins mid-stream,
//! the first stops (SIGTERM) later. Partitions move with their state: every event `replay`
//! derives is in the union of the outputs, nothing is derived anew, and the instances that
//! took partitions over restored them from the changelog rather than starting empty. In
//! exactly-once mode the read_committed union is exactly what `replay` derives. Also with
//! `pipeline.workers = 2`.

mod common;

use std::time::Duration;

use common::*;

const PARTITIONS: i32 = 4;

#[test]
fn partitions_move_between_instances_with_their_state() {
    rebalance("at_least_once", None);
}

#[test]
fn exactly_once_output_is_exact_across_a_rebalance() {
    rebalance("exactly_once", None);
}

#[test]
fn partitions_move_with_their_state_between_instances_with_two_workers() {
    rebalance("at_least_once", Some("pipeline.workers=2"));
}

fn rebalance(delivery: &str, extra_set: Option<&str>) {
    let Some(scenario) = Scenario::new("rebalance", PARTITIONS) else {
        return;
    };
    let bootstrap = scenario.bootstrap.clone();
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let group = scenario.group.clone();
    let dir = &scenario.dir;
    let delivery_set = format!("delivery=\"{delivery}\"");
    // Two instances at once: two transactional ids.
    let first_id = format!("pipeline.transactional_id={}", unique("first"));
    let second_id = format!("pipeline.transactional_id={}", unique("second"));
    let total: u64 = 150_000;
    let mut sets = vec![
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"session.timeout.ms\"=\"6000\"",
        delivery_set.as_str(),
    ];
    sets.extend(extra_set);
    let with_id = |id: &str| -> Vec<String> {
        sets.iter()
            .map(|s| s.to_string())
            .chain([id.to_owned()])
            .collect()
    };
    let (first_sets, second_sets) = (with_id(&first_id), with_id(&second_id));
    let first_sets: Vec<&str> = first_sets.iter().map(String::as_str).collect();
    let second_sets: Vec<&str> = second_sets.iter().map(String::as_str).collect();
    let mut first = scenario.start(&first_sets);
    let mut generator = spawn_generator(&bootstrap, &input, total, 15, 20_000);
    scenario.wait_committed_beyond(
        "the first instance making progress",
        30_000,
        Duration::from_secs(120),
    );
    let mut second = start_run(
        &bootstrap,
        dir.path(),
        &group,
        &input,
        &prefix,
        &second_sets,
    );
    // Its first assignment is empty (cooperative-sticky: the first instance gives partitions
    // up in a rebalance of its own, a heartbeat later). Stopping the first instance before
    // the second has restored what it took over would test nothing: the first commits
    // everything on its way out once the input ends, and the second could be stopped before
    // any partition reached it.
    wait_for_run(
        &second,
        "the second instance restoring partitions it took over from the first",
        Duration::from_secs(120),
        || restored_sessions(&second.log_text()) > 0,
    );
    scenario.wait_committed_beyond(
        "more progress with two instances",
        80_000,
        Duration::from_secs(120),
    );
    let status = first.terminate();
    assert!(status.success(), "{}", first.log_text());
    assert!(generator.wait().unwrap().success());
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    wait_until(
        "everything committed by the second instance",
        Duration::from_secs(300),
        || scenario.committed() == ends,
    );
    let second_log = second.log_text();
    assert!(second.terminate().success(), "{second_log}");

    let records = read_all(&bootstrap, &input);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let transitions = read_all(&bootstrap, &format!("{prefix}.transitions"));
    if delivery == "exactly_once" {
        assert_exactly_once(&expected, &transitions);
        eprintln!("exactly-once rebalance: read_committed output equals replay exactly");
        return;
    }
    let duplicates = assert_at_least_once(&expected, &transitions, &records);
    eprintln!(
        "rebalance: every expected transition present, none derived anew; {duplicates} duplicates"
    );
}
