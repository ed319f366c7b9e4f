//! Fast takeover with static membership (`pipeline.group_instance_id`): `sessionflow run` is
//! killed with SIGKILL mid-stream and restarted at once with the same settings; the time
//! from the kill to the restarted instance committing input again is measured and printed,
//! with and without a `group.instance.id`, both with a 15 s `session.timeout.ms`. Without
//! it the group waits out the dead member's session; with it the restarted member takes its
//! partitions back as soon as it joins. The figures go to docs/benchmarks.md; the test
//! asserts only that processing resumes (no timed assertion; `kafka_crash` proves that a
//! kill -9 loses nothing).

mod common;

use std::time::{Duration, Instant};

use common::*;

const PARTITIONS: i32 = 2;

#[test]
fn a_killed_instance_restarted_takes_its_partitions_back_with_and_without_static_membership() {
    if bootstrap().is_none() {
        return;
    }
    let dynamic = takeover(false);
    let fixed = takeover(true);
    eprintln!(
        "takeover after kill -9 (session.timeout.ms 15000): without static membership {:.1} s, with group.instance.id {:.1} s",
        dynamic.as_secs_f64(),
        fixed.as_secs_f64()
    );
}

/// Kills a running instance, restarts it, and returns how long input waited.
fn takeover(static_membership: bool) -> Duration {
    let name = if static_membership {
        "static"
    } else {
        "dynamic"
    };
    let scenario = Scenario::new(&format!("takeover-{name}"), PARTITIONS).unwrap();
    let instance = format!("pipeline.group_instance_id={}", unique("instance"));
    let mut sets = vec![
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        "kafka.\"session.timeout.ms\"=\"15000\"",
    ];
    if static_membership {
        sets.push(&instance);
    }
    let total = 120_000;
    let mut generator = spawn_generator(&scenario.bootstrap, &scenario.input, total, 51, 2000);
    let mut run = scenario.start(&sets);
    scenario.wait_committed_beyond("progress before the kill", 4_000, Duration::from_secs(120));
    signal(run.child.id(), "KILL");
    let killed = Instant::now();
    let _ = run.child.wait();
    let at_kill = scenario.committed_total();
    let mut run = scenario.start(&sets);
    wait_for_run(
        &run,
        "the restarted instance committing input",
        Duration::from_secs(120),
        || scenario.committed_total() > at_kill,
    );
    let waited = killed.elapsed();
    eprintln!(
        "{name}: input committed again {:.1} s after the kill",
        waited.as_secs_f64()
    );
    let _ = generator.kill();
    let _ = generator.wait();
    let status = run.terminate();
    assert!(status.success(), "{}", run.log_text());
    waited
}
