//! Every compression codec Kafka producers use (gzip, snappy, lz4, zstd), on the input and on
//! the outputs, against the real broker: the live output equals what `replay` derives. A
//! build without one of them would stall a partition on its first compressed batch.

mod common;

use std::time::Duration;

use common::*;

const PARTITIONS: i32 = 2;
const RECORDS: u64 = 20_000;

#[test]
fn gzip_input_and_output() {
    codec("gzip");
}

#[test]
fn snappy_input_and_output() {
    codec("snappy");
}

#[test]
fn lz4_input_and_output() {
    codec("lz4");
}

#[test]
fn zstd_input_and_output() {
    codec("zstd");
}

fn codec(codec: &str) {
    let Some(scenario) = Scenario::new(&format!("codec-{codec}"), PARTITIONS) else {
        return;
    };
    generate_compressed_into(&scenario.bootstrap, &scenario.input, RECORDS, 31, codec);
    let compression = format!("kafka.\"compression.type\"=\"{codec}\"");
    let mut run = scenario.start(&[
        "lifecycle.idle_timeout_ms=0",
        "lifecycle.max_clock_skew_ms=0",
        compression.as_str(),
    ]);
    let ends = scenario.end_offsets();
    wait_for_run(
        &run,
        "every input offset committed",
        Duration::from_secs(180),
        || scenario.committed() == ends,
    );
    let status = run.terminate();
    let log = run.log_text();
    assert!(status.success(), "{log}");
    assert!(!log.contains("Not implemented"), "{codec}: {log}");

    let input = read_all(&scenario.bootstrap, &scenario.input);
    let expected = expected_from_replay(&input, &scenario.input, scenario.dir.path(), &[]);
    let transitions = read_all(
        &scenario.bootstrap,
        &format!("{}.transitions", scenario.prefix),
    );
    assert_exactly_once(&expected, &transitions);
    let dead: usize = read_all(&scenario.bootstrap, &format!("{}.dlq", scenario.prefix))
        .values()
        .map(Vec::len)
        .sum();
    let expected_dead: usize = expected.dead_letters.values().map(Vec::len).sum();
    assert_eq!(dead, expected_dead, "{codec}: dead letters");
}
