//! Latency probe of `scripts/bench-e2e.sh`: tails a transitions topic from its end while
//! input is produced, notes when each derived event became readable, then looks up the
//! timestamp of the input record each event names in its `source` (the broker's append time:
//! `bench-e2e.sh` sets the input topic to LogAppendTime; same machine clock), and prints p50/p99/max of (readable − appended): over all events, and over
//! those whose input was appended after the first second (the steady state).
//! Usage: `cargo run --release --example e2e_latency -- BROKERS INPUT_TOPIC OUTPUT_TOPIC SECONDS`

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn consumer(brokers: &str) -> anyhow::Result<BaseConsumer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("latency-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()?)
}

fn assign_all(c: &BaseConsumer, topic: &str, from_end: bool) -> anyhow::Result<()> {
    let metadata = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        list.add_partition_offset(
            topic,
            p.id(),
            Offset::Offset(if from_end { high } else { low }),
        )?;
    }
    c.assign(&list)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (brokers, input, output) = (&args[0], &args[1], &args[2]);
    let seconds: u64 = args[3].parse()?;
    let tail = consumer(brokers)?;
    assign_all(&tail, output, true)?;
    // (input partition, input offset) -> when its derived event became readable.
    let mut readable: HashMap<(i32, i64), i64> = HashMap::new();
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        if let Some(Ok(m)) = tail.poll(Duration::from_millis(50)) {
            let at = now_ms();
            let event: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or(b"{}"))?;
            if let (Some(p), Some(o)) = (
                event["source"]["partition"].as_i64(),
                event["source"]["offset"].as_i64(),
            ) {
                readable.entry((p as i32, o)).or_insert(at);
            }
        }
    }
    // Append times of the input records.
    let reader = consumer(brokers)?;
    assign_all(&reader, input, false)?;
    let mut appended: HashMap<(i32, i64), i64> = HashMap::new();
    let mut idle = 0;
    while idle < 20 {
        match reader.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                idle = 0;
                if let Some(ts) = m.timestamp().to_millis() {
                    appended.insert((m.partition(), m.offset()), ts);
                }
            }
            _ => idle += 1,
        }
    }
    // (append time, latency) of every derived event matched to its input record.
    let matched: Vec<(i64, i64)> = readable
        .iter()
        .filter_map(|(k, at)| appended.get(k).map(|ts| (*ts, at - ts)))
        .collect();
    anyhow::ensure!(
        !matched.is_empty(),
        "no derived event matched an input record"
    );
    let first = matched.iter().map(|(ts, _)| *ts).min().unwrap_or(0);
    report("all", matched.iter().map(|(_, l)| *l).collect());
    // The first second holds the start-up of the input: the idle consumer's first fetches
    // and the producer's first writes (a few hundred milliseconds, once).
    report(
        "after the first second",
        matched
            .iter()
            .filter(|(ts, _)| *ts >= first + 1000)
            .map(|(_, l)| *l)
            .collect(),
    );
    Ok(())
}

fn report(what: &str, mut latencies: Vec<i64>) {
    if latencies.is_empty() {
        println!("latency append -> derived event readable ({what}): no events");
        return;
    }
    latencies.sort_unstable();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    println!(
        "latency append -> derived event readable ({what}) over {} events: p50 {} ms, p99 {} ms, max {} ms",
        latencies.len(),
        pick(0.50),
        pick(0.99),
        latencies[latencies.len() - 1]
    );
}
