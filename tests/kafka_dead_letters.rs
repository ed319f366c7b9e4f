//! Dead letters always land (SPEC section 1): a dead-letter topic made outside sessionflow
//! with a `max.message.bytes` of 2 KiB, and malformed records of 5 000 incompressible bytes.
//! Each dead letter keeps its key and the first bytes of its value that the topic accepts,
//! with `sessionflow-original-bytes` giving the whole size; every input offset commits. In
//! exactly-once mode too (a refused message would abort its transaction for good).

mod common;

use std::time::Duration;

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: i32 = 2;
const MALFORMED: usize = 60;
const VALUE_BYTES: usize = 5_000;
const TOPIC_LIMIT: &str = "2048";

#[test]
fn dead_letters_fit_a_small_dead_letter_topic_at_least_once() {
    small_dead_letter_topic("at_least_once");
}

#[test]
fn dead_letters_fit_a_small_dead_letter_topic_exactly_once() {
    small_dead_letter_topic("exactly_once");
}

/// A malformed record (an unterminated JSON string) of `VALUE_BYTES` bytes that does not
/// compress: printable characters from a fixed-seed generator.
fn malformed(i: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ i as u64;
    let mut value = b"{\"id\":\"".to_vec();
    while value.len() < VALUE_BYTES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Printable ASCII without the quote and the backslash.
        let c = b'#' + (state % 57) as u8;
        value.push(c);
    }
    value
}

fn small_dead_letter_topic(delivery: &str) {
    let Some(scenario) = Scenario::new(&format!("dlq-{delivery}"), PARTITIONS) else {
        return;
    };
    let dead_letters = format!("{}.dlq", scenario.prefix);
    create_topics_with(
        &scenario.bootstrap,
        &[&dead_letters],
        PARTITIONS,
        &[("max.message.bytes", TOPIC_LIMIT)],
    );
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &scenario.bootstrap)
        .create()
        .unwrap();
    let values: Vec<Vec<u8>> = (0..MALFORMED).map(malformed).collect();
    for (i, value) in values.iter().enumerate() {
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to(&scenario.input).key(&key).payload(value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    generate_into(&scenario.bootstrap, &scenario.input, 2_000, 41);

    let delivery_set = format!("delivery=\"{delivery}\"");
    scenario.run_to_end(&[delivery_set.as_str()]);

    let dead = read_all(&scenario.bootstrap, &dead_letters);
    let cut: Vec<&Record> = dead
        .values()
        .flatten()
        .filter(|r| r.key.as_deref().is_some_and(|k| k.starts_with(b"k")))
        .collect();
    assert_eq!(
        cut.len(),
        MALFORMED,
        "every malformed record dead-lettered once"
    );
    let schemas = common::schemas::Schemas::load();
    for record in cut {
        schemas.check_dead_letter_headers(&record.headers);
        let i: usize = std::str::from_utf8(&record.key.as_ref().unwrap()[1..])
            .unwrap()
            .parse()
            .unwrap();
        let value = record.value.as_deref().unwrap_or(b"");
        assert!(
            value.len() < 2048 && !value.is_empty(),
            "cut to fit: {} bytes",
            value.len()
        );
        assert_eq!(
            value,
            &values[i][..value.len()],
            "the first bytes, unchanged"
        );
        assert_eq!(
            record
                .headers
                .get("sessionflow-original-bytes")
                .map(String::as_str),
            Some(VALUE_BYTES.to_string().as_str())
        );
        assert_eq!(
            record
                .headers
                .get("sessionflow-error-kind")
                .map(String::as_str),
            Some("invalid_json")
        );
    }
}
