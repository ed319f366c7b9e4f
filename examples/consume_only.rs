//! The baseline of `scripts/bench-e2e.sh`: a consume-only rdkafka loop over a topic (the same
//! consumer settings and batch draining as `sessionflow run`, no parsing, no producing).
//! Joins a fresh group, reads every partition to its end offset, prints records per second
//! from the first message to the last (group join excluded, as for sessionflow's figure) and
//! the CPU seconds the process used.
//! With `committed` after the topic it reads `read_committed` (a transactional topic, whose
//! commit markers take offsets but are not messages) and ends once every partition's position
//! reached its end offset; the count is then of messages, not offsets.
//! Usage: `cargo run --release --example consume_only -- BROKERS TOPIC [committed]`

use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::Offset;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (brokers, topic) = (args.next().expect("BROKERS"), args.next().expect("TOPIC"));
    let committed = args.next().as_deref() == Some("committed");
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set(
            "isolation.level",
            if committed {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .set("group.id", format!("consume-only-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10))?;
    let mut remaining: i64 = 0;
    let mut ends = Vec::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(&topic, p.id(), Duration::from_secs(10))?;
        remaining += high - low;
        ends.push((p.id(), high));
    }
    consumer.subscribe(&[&topic])?;
    let mut total: i64 = 0;
    let mut bytes: u64 = 0;
    let mut started: Option<Instant> = None;
    // One stream for the run, as the pipeline's loop holds one.
    let mut messages = consumer.stream();
    while if committed {
        !at_ends(&consumer, &topic, &ends)?
    } else {
        remaining > total
    } {
        // Read committed, the last offsets may be markers: look at the positions again.
        let Ok(Some(message)) =
            tokio::time::timeout(Duration::from_millis(200), messages.next()).await
        else {
            continue;
        };
        let message = message?;
        started.get_or_insert_with(Instant::now);
        bytes += message.payload().map_or(0, <[u8]>::len) as u64;
        total += 1;
        // Drain what is ready, like the pipeline's batches (512).
        for _ in 0..511 {
            match messages.next().now_or_never().flatten() {
                Some(Ok(m)) => {
                    bytes += m.payload().map_or(0, <[u8]>::len) as u64;
                    total += 1;
                }
                _ => break,
            }
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let cpu = [usage.ru_utime, usage.ru_stime]
        .iter()
        .map(|t| t.tv_sec as f64 + t.tv_usec as f64 / 1e6)
        .sum::<f64>();
    println!(
        "consume-only: {total} records, {bytes} bytes in {secs:.2} s: {:.0} records/s, {cpu:.2} CPU-s",
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}

/// Whether every partition's position reached its end offset (`ends`).
fn at_ends(consumer: &StreamConsumer, topic: &str, ends: &[(i32, i64)]) -> anyhow::Result<bool> {
    let positions = consumer.position()?;
    Ok(ends.iter().all(|&(partition, end)| {
        end == 0
            || matches!(
                positions.find_partition(topic, partition).map(|p| p.offset()),
                Some(Offset::Offset(at)) if at >= end
            )
    }))
}
