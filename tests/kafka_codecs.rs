//! Every compression codec Kafka producers use (gzip, snappy, lz4, zstd), on the input and on
//! the outputs, against the real broker: the live output equals what `replay` derives. A
//! build without one of them would stall a partition on its first compressed batch.

mod common;

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
    let log = scenario.run_to_end(&[compression.as_str()]);
    assert!(!log.contains("Not implemented"), "{codec}: {log}");

    let output = scenario.against_replay();
    output.assert_exactly_once();
    let dead: usize = read_all(&scenario.bootstrap, &format!("{}.dlq", scenario.prefix))
        .values()
        .map(Vec::len)
        .sum();
    let expected_dead: usize = output.expected.dead_letters.values().map(Vec::len).sum();
    assert_eq!(dead, expected_dead, "{codec}: dead letters");
}
