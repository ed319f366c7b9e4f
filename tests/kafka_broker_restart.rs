//! A broker restart in the middle of the stream (its own test binary: it restarts the broker
//! the other Kafka tests share, and cargo runs test binaries one at a time). The processor
//! stays up, catches up, and the output is complete: every expected event present, none
//! derived anew, duplicates only from records in flight, counted and reported. In
//! exactly-once mode, transactions the restart breaks are aborted and their batches derived
//! again from restored state: the read_committed output is exactly what `replay` derives.

mod common;

use std::time::Duration;

use common::*;

const PARTITIONS: i32 = 4;

#[test]
fn a_broker_restart_mid_stream_loses_nothing() {
    broker_restart("at_least_once");
}

#[test]
fn exactly_once_output_is_exact_across_a_broker_restart() {
    broker_restart("exactly_once");
}

/// One restart at a time: the two tests of this binary restart the same broker.
static ONE_RESTART_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn broker_restart(delivery: &str) {
    let _alone = ONE_RESTART_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(scenario) = Scenario::new("restart", PARTITIONS) else {
        return;
    };
    let bootstrap = scenario.bootstrap.clone();
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let dir = &scenario.dir;
    let delivery_set = format!("delivery=\"{delivery}\"");
    let exactly_once = delivery == "exactly_once";
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka-dev.sh");
    let total: u64 = 100_000;
    let sets = [
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        delivery_set.as_str(),
        // Exactly-once: the broker stays down longer than a transaction may stay open, so
        // open transactions fail and must be aborted and their batches derived again.
        "kafka.\"transaction.timeout.ms\"=\"4000\"",
    ];
    let mut run = scenario.start(&sets);
    let mut generator = spawn_generator(&bootstrap, &input, total, 13, 20000);
    scenario.wait_committed_beyond("some progress", 10_000, Duration::from_secs(120));
    let restart = std::process::Command::new("bash")
        .arg(script)
        .arg("restart")
        .env(
            "SESSIONFLOW_KAFKA_DOWN_SECONDS",
            if exactly_once { "8" } else { "0" },
        )
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the processor stayed up through the restart"
    );
    assert!(
        generator.wait().unwrap().success(),
        "the generator rode out the restart"
    );
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    assert_eq!(ends.iter().sum::<i64>() as u64, total);
    wait_for_run(
        &run,
        "caught up after the restart",
        Duration::from_secs(240),
        || scenario.committed() == ends,
    );
    let log = run.log_text();
    assert!(run.terminate().success(), "{log}");

    let records = read_all(&bootstrap, &input);
    let expected = expected_from_replay(&records, &input, dir.path(), &[]);
    let transitions = read_all(&bootstrap, &format!("{prefix}.transitions"));
    if exactly_once {
        assert_exactly_once(&expected, &transitions);
        let rewinds = log
            .matches("Rewound to the last committed transaction")
            .count();
        let replaced = log.matches("replacing it and rewinding").count();
        let stuck = log.matches("neither committed nor aborted").count();
        eprintln!(
            "exactly-once broker restart: read_committed output equals replay exactly; {rewinds} rewinds after aborted transactions ({replaced} with a new producer after a fatal error, {stuck} after a stuck transaction)"
        );
        return;
    }
    let duplicates = assert_at_least_once(&expected, &transitions, &records);
    eprintln!(
        "broker restart: all expected transitions present, none derived anew; {duplicates} duplicates (at-least-once)"
    );
}
