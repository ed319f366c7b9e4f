//! Crashes lose nothing (SPEC section 6): `sessionflow run` is killed with SIGKILL three times
//! in the middle of a 200 000-record stream and restarted each time. Every event `replay`
//! derives per partition is in the output; every output event is one of those (a restarted
//! instance restores its state from the changelog, so it never re-derives a first sighting
//! or anything else anew); the only extras are exact duplicates of events in flight at a
//! kill, which are counted and reported. In exactly-once mode the read_committed output is
//! exactly what `replay` derives: nothing missing, nothing twice; also with two processing
//! threads (`pipeline.workers = 2`; a batch that mixes partitions is spread).

mod common;

use std::time::Duration;

use common::*;

const PARTITIONS: i32 = 4;

#[test]
fn three_kill_9s_mid_stream_lose_nothing_and_re_derive_nothing() {
    three_kill_9s("at_least_once", &[]);
}

#[test]
fn exactly_once_output_is_exact_across_three_kill_9s() {
    three_kill_9s("exactly_once", &[]);
}

#[test]
fn exactly_once_output_is_exact_across_three_kill_9s_with_two_workers() {
    three_kill_9s("exactly_once", &["pipeline.workers=2"]);
}

fn three_kill_9s(delivery: &str, extra_sets: &[&str]) {
    let Some(scenario) = Scenario::new("crash", PARTITIONS) else {
        return;
    };
    let bootstrap = scenario.bootstrap.clone();
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let dir = &scenario.dir;
    let delivery_set = format!("delivery=\"{delivery}\"");
    let total: u64 = 200_000;
    // A killed member leaves the group only when its session times out: keep that short.
    let mut sets = vec![
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"session.timeout.ms\"=\"6000\"",
        delivery_set.as_str(),
    ];
    sets.extend(extra_sets);
    let mut run = scenario.start(&sets);
    let mut generator = spawn_generator(&bootstrap, &input, total, 14, 25000);
    let mut kills = 0;
    let mut restored = 0u64;
    for threshold in [30_000i64, 80_000, 130_000] {
        scenario.wait_committed_beyond(
            "progress before the kill",
            threshold,
            Duration::from_secs(180),
        );
        signal(run.child.id(), "KILL");
        let _ = run.child.wait();
        kills += 1;
        restored += restored_sessions(&run.log_text());
        run = scenario.start(&sets);
    }
    assert!(generator.wait().unwrap().success());
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    assert_eq!(ends.iter().sum::<i64>() as u64, total);
    wait_until(
        "everything committed after the last restart",
        Duration::from_secs(300),
        || scenario.committed() == ends,
    );
    assert!(run.terminate().success(), "{}", run.log_text());
    restored += restored_sessions(&run.log_text());
    assert!(
        restored > 0,
        "restarted instances restored state from the changelog"
    );

    let records = read_all(&bootstrap, &input);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let transitions = read_all(&bootstrap, &format!("{prefix}.transitions"));
    if delivery == "exactly_once" {
        assert_exactly_once(&expected, &transitions);
        let anomalies = read_all(&bootstrap, &format!("{prefix}.anomalies"));
        for (p, events) in &expected.anomalies {
            assert_eq!(&values(&anomalies[p]), events, "partition {p} anomalies");
        }
        let dead: usize = read_all(&bootstrap, &format!("{prefix}.dlq"))
            .values()
            .map(Vec::len)
            .sum();
        assert_eq!(
            dead,
            expected.dead_letters.values().map(Vec::len).sum::<usize>()
        );
        eprintln!(
            "exactly-once, {kills} kills: read_committed output equals replay exactly; {restored} sessions restored"
        );
        return;
    }
    let duplicates = assert_at_least_once(&expected, &transitions, &records);
    eprintln!(
        "{kills} kills: every expected transition present, none re-derived; {duplicates} duplicates of in-flight events; {restored} sessions restored"
    );
}
