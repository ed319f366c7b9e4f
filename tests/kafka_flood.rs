//! Hostile input (issue 6): a topic of nothing but malformed records, written as fast as the
//! producer goes — broken JSON, random bytes, nesting beyond the depth limit, scalars, and
//! records over `max_record_bytes`. Every one reaches the dead-letter topic with its kind
//! (oversized values cut to the limit, their size in a header), every offset is committed,
//! the process stays healthy, and its memory stays flat: the resident size once the flood is
//! well under way bounds the resident size at its end.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

const PARTITIONS: i32 = 4;
const RECORDS: usize = 200_000;
const MAX_RECORD_BYTES: usize = 100_000;

/// The `i`th malformed record and the dead-letter kind it must get.
fn malformed(i: usize) -> (Vec<u8>, &'static str) {
    match i % 6 {
        0 => (
            format!("{{\"object\":\"session\",\"id\":\"sess_{i}\",\"status\":").into_bytes(),
            "invalid_json",
        ),
        1 => {
            let mut rng = fastrand::Rng::with_seed(i as u64);
            let len = rng.usize(50..2_000);
            // Bytes that are never valid JSON: they start with a control character.
            let mut bytes = vec![0x01];
            bytes.extend((1..len).map(|_| rng.u8(..)));
            (bytes, "invalid_json")
        }
        2 => {
            let depth = 500;
            let mut text = "[".repeat(depth);
            text.push_str(&"]".repeat(depth));
            (text.into_bytes(), "too_large")
        }
        3 => (i.to_string().into_bytes(), "invalid_shape"),
        4 if i % 600 == 4 => {
            let mut text = String::from("{\"object\":\"session\",\"padding\":\"");
            text.push_str(&"x".repeat(MAX_RECORD_BYTES + 50_000));
            text.push_str("\"}");
            (text.into_bytes(), "too_large")
        }
        4 => (
            format!("{{\"object\":\"session\",\"id\":\"sess_{i}\",\"status\":\"active\",\"updated_at\":\"later\"}}").into_bytes(),
            "wrong_type",
        ),
        _ => (
            format!("{{\"object\":\"session\",\"status\":\"active\",\"updated_at\":{i}}}")
                .into_bytes(),
            "missing_field",
        ),
    }
}

fn resident_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[test]
fn a_flood_of_malformed_records_keeps_memory_flat_and_dead_letters_everything() {
    let Some(scenario) = Scenario::new("flood", PARTITIONS) else {
        return;
    };
    let bootstrap = scenario.bootstrap.clone();
    let input = scenario.input.clone();
    let prefix = scenario.prefix.clone();
    let group = scenario.group.clone();
    let dir = &scenario.dir;
    let limit = format!("limits.max_record_bytes={MAX_RECORD_BYTES}");
    let mut run = start_run(
        &bootstrap,
        dir.path(),
        &group,
        &input,
        &prefix,
        &["lifecycle.idle_timeout_ms=0", &limit],
    );

    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    let mut expected_kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for i in 0..RECORDS {
        let (value, kind) = malformed(i);
        *expected_kinds.entry(kind).or_default() += 1;
        let key = format!("k{i}");
        send_when_queued(&producer, BaseRecord::to(&input).key(&key).payload(&value));
    }
    producer.flush(Duration::from_secs(60)).unwrap();

    // Resident size while the flood is processed: after a quarter of it, and at the end.
    let pid = run.child.id();
    let mut at_quarter = None;
    let mut peak_after_quarter = 0;
    let ends = end_offsets(&bootstrap, &input, PARTITIONS);
    // The first probe that fails ends the wait: its answer (`None`: refused, or no answer
    // within 30 s, long enough for a loaded machine) is reported with the run's log below.
    let mut failed_probe = None;
    wait_for_run(
        &run,
        "every offset committed",
        Duration::from_secs(300),
        || {
            let done: i64 = scenario.committed().iter().filter(|o| **o > 0).sum();
            let rss = resident_kib(pid).unwrap_or(0);
            if at_quarter.is_none() && done as usize >= RECORDS / 4 {
                at_quarter = Some(rss);
            }
            if at_quarter.is_some() {
                peak_after_quarter = peak_after_quarter.max(rss);
            }
            let probe = http_get_within(run.port, "/healthz", Duration::from_secs(30));
            if !probe
                .as_ref()
                .is_some_and(|r| r.starts_with("HTTP/1.0 200"))
            {
                failed_probe = Some(probe);
                return true;
            }
            scenario.committed() == ends
        },
    );
    if let Some(probe) = failed_probe {
        panic!(
            "/healthz answers during the flood; it answered {probe:?}, the run's exit: {:?}; its log ends:\n{}",
            run.child.try_wait(),
            log_tail(&run.log_text(), 40)
        );
    }
    let at_end = resident_kib(pid).unwrap();
    let at_quarter = at_quarter.expect("progress was sampled at a quarter");
    let metrics = run.metrics().unwrap();
    assert!(run.terminate().success(), "{}", run.log_text());

    let dead = read_all(&bootstrap, &format!("{prefix}.dlq"));
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut cut = 0;
    for record in dead.values().flatten() {
        *kinds
            .entry(record.headers["sessionflow-error-kind"].clone())
            .or_default() += 1;
        if let Some(original) = record.headers.get("sessionflow-original-bytes") {
            assert!(original.parse::<usize>().unwrap() > MAX_RECORD_BYTES);
            assert_eq!(record.value.as_ref().unwrap().len(), MAX_RECORD_BYTES);
            cut += 1;
        }
    }
    let expected_kinds: BTreeMap<String, usize> = expected_kinds
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    assert_eq!(
        kinds, expected_kinds,
        "every record dead-lettered with its kind"
    );
    assert!(
        cut > 0,
        "oversized records were dead-lettered, cut to the limit"
    );
    assert_eq!(
        metric_sum(
            &metrics,
            "sessionflow_records_total",
            &["outcome=\"invalid\""]
        ) as usize,
        RECORDS
    );
    eprintln!(
        "flood of {RECORDS} malformed records ({cut} oversized): resident {} MiB at a quarter, peak {} MiB after it, {} MiB at the end",
        at_quarter / 1024,
        peak_after_quarter / 1024,
        at_end / 1024
    );
    // Flat: what the process holds once the flood is under way (fetch buffers, producer
    // queue, allocator pools) bounds the rest of it; growth per record would show as
    // hundreds of MiB over the remaining 150 000 records.
    assert!(
        peak_after_quarter <= at_quarter + 64 * 1024,
        "memory grew during the flood: {at_quarter} KiB at a quarter, peak {peak_after_quarter} KiB after"
    );
}
