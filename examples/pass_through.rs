//! The floor of `scripts/bench-e2e.sh`: what Kafka itself costs for sessionflow's job. Consumes
//! the input like `sessionflow run` (same consumer settings, batches of 512), and per record
//! produces the messages sessionflow produced for that input — as many per record, of the
//! same mean size, to the same kinds of topics, on the record's partition, with sessionflow's
//! producer settings — without parsing anything; stores a batch's offsets (committed once a
//! second) once every message it caused is acknowledged, as at-least-once does.
//!
//! With `--transactional N` it is exactly-once's floor instead: a transactional producer, the
//! input read committed, and every N records (sessionflow's `pipeline.transaction_max_records`)
//! the consumed offsets sent to the transaction and the transaction committed.
//!
//! Usage: `pass_through [--transactional N] BROKERS INPUT PREFIX PROFILE...`, each PROFILE
//! `MESSAGES_PER_RECORD:MEAN_BYTES[:SOURCE]` for one output kind (topics `PREFIX.0`,
//! `PREFIX.1`, … are created with the input's partition count). Without SOURCE a message is
//! the input record's bytes repeated to the mean size (with its key); with SOURCE, a topic
//! sessionflow wrote for this input, its messages are read into memory before the run and
//! produced in turn, keys and bytes as they were (tombstones too): the same bytes, so the
//! same compression. Prints records per second from the first message to the last
//! acknowledgement and the process's CPU seconds; with `SESSIONFLOW_BENCH_BROKER_PID` set,
//! also the broker's CPU seconds, and its JIT compiler's, over the same span (reading the
//! sources excluded).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// Counts down a batch's outstanding messages as the broker acknowledges them.
struct Acks;

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<Arc<AtomicUsize>>;

    fn delivery(&self, result: &DeliveryResult<'_>, outstanding: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            eprintln!("pass-through: a delivery failed: {error}");
        }
        outstanding.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One output kind: messages per input record and their mean size.
struct Profile {
    per_record: f64,
    bytes: usize,
    /// Accumulated share of a message not yet produced (spreads fractions evenly).
    owed: f64,
    /// The messages to produce in turn, when read from a source topic.
    source: Vec<SourceMessage>,
    /// The next of `source`.
    next: usize,
}

/// A message read from a source topic: its key and payload.
type SourceMessage = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Every message of `topic` (all partitions, each in offset order), read from its start to
/// the end offsets it had when asked.
fn read_topic(brokers: &str, topic: &str) -> anyhow::Result<Vec<SourceMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("pass-through-source-{}", std::process::id()),
        )
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<i32, i64> = HashMap::new();
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
        if high > low {
            assignment.add_partition_offset(topic, p.id(), Offset::Offset(low))?;
            ends.insert(p.id(), high);
        }
    }
    consumer.assign(&assignment)?;
    let mut messages = Vec::new();
    let mut idle_polls = 0;
    while !ends.is_empty() {
        let Some(message) = consumer.poll(Duration::from_secs(1)) else {
            idle_polls += 1;
            anyhow::ensure!(
                idle_polls < 30,
                "{topic}: nothing to read for 30 s before its end"
            );
            continue;
        };
        let message = message?;
        idle_polls = 0;
        messages.push((
            message.key().map(<[u8]>::to_vec),
            message.payload().map(<[u8]>::to_vec),
        ));
        if ends.get(&message.partition()) == Some(&(message.offset() + 1)) {
            ends.remove(&message.partition());
        }
    }
    Ok(messages)
}

/// The broker's CPU seconds so far: the whole JVM's, and its JIT compiler threads', read by
/// `scripts/proc-cpu.sh` (the one reading of `/proc` the bench scripts share). The script is
/// found from the working directory, the checkout bench-e2e runs in (as its own
/// `. scripts/proc-cpu.sh`), not from where this example was built: checkouts sharing one
/// `target/` reuse each other's builds.
fn broker_cpu_seconds(pid: &str) -> anyhow::Result<(f64, f64)> {
    let script = "scripts/proc-cpu.sh";
    let read = std::process::Command::new("bash")
        .args([
            "-c",
            r#". "$1" && ticks_to_seconds "$(process_cpu_ticks "$2")" && ticks_to_seconds "$(broker_jit_ticks "$2")""#,
            "proc-cpu",
            script,
            pid,
        ])
        .output()?;
    anyhow::ensure!(
        read.status.success(),
        "{script} failed (run from the checkout, as scripts/bench-e2e.sh does): {read:?}"
    );
    let line = String::from_utf8(read.stdout)?;
    let numbers = line
        .split_whitespace()
        .map(str::parse::<f64>)
        .collect::<Result<Vec<_>, _>>()?;
    let [process, jit] = numbers[..] else {
        anyhow::bail!("{script}: expected two numbers, got {line:?}");
    };
    Ok((process, jit))
}

/// CPU seconds (user + system, all threads) this process used so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let transaction_records: Option<usize> = match args.first().map(String::as_str) {
        Some("--transactional") => {
            let n = args.get(1).and_then(|n| n.parse().ok());
            args.drain(..2.min(args.len()));
            Some(n.ok_or_else(|| anyhow::anyhow!("--transactional takes a record count"))?)
        }
        _ => None,
    };
    let [brokers, input, prefix, profiles @ ..] = args.as_slice() else {
        anyhow::bail!(
            "usage: pass_through [--transactional N] BROKERS INPUT PREFIX PER_RECORD:BYTES..."
        );
    };
    let mut outputs: Vec<Profile> = profiles
        .iter()
        .map(|p| {
            let mut fields = p.splitn(3, ':');
            let (Some(per_record), Some(bytes)) = (fields.next(), fields.next()) else {
                anyhow::bail!("a profile is PER_RECORD:BYTES[:SOURCE], not {p:?}");
            };
            let source = match fields.next() {
                Some(topic) => read_topic(brokers, topic)?,
                None => Vec::new(),
            };
            Ok(Profile {
                per_record: per_record.parse()?,
                bytes: bytes.parse::<f64>()? as usize,
                owed: 0.0,
                source,
                next: 0,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("pass-through-{}", std::process::id()))
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("max.partition.fetch.bytes", "10485760")
        .set("fetch.queue.backoff.ms", "10")
        .set(
            "isolation.level",
            if transaction_records.is_some() {
                "read_committed"
            } else {
                "read_uncommitted"
            },
        )
        .create()?;
    let metadata = consumer.fetch_metadata(Some(input), Duration::from_secs(10))?;
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut remaining: i64 = 0;
    for p in metadata.topics()[0].partitions() {
        let (low, high) = consumer.fetch_watermarks(input, p.id(), Duration::from_secs(10))?;
        remaining += high - low;
    }
    let total = remaining;
    let topics: Vec<String> = (0..outputs.len())
        .map(|i| format!("{prefix}.{i}"))
        .collect();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    admin.create_topics(&new, &AdminOptions::new()).await?;
    // sessionflow's output producer (kafka::sink::output_producer).
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("compression.type", "lz4")
        .set("linger.ms", "5");
    if transaction_records.is_some() {
        producer_config.set(
            "transactional.id",
            format!("pass-through-{}", std::process::id()),
        );
    }
    let producer: ThreadedProducer<Acks> = producer_config.create_with_context(Acks)?;
    consumer.subscribe(&[input])?;
    let transaction_call = Duration::from_secs(60);
    if transaction_records.is_some() {
        producer.init_transactions(transaction_call)?;
        producer.begin_transaction()?;
    }
    // Exactly-once: the records and next offsets of the open transaction.
    let mut in_transaction = 0usize;
    let mut transaction_offsets: HashMap<i32, i64> = HashMap::new();

    let broker_pid = std::env::var("SESSIONFLOW_BENCH_BROKER_PID").ok();
    let broker_before = broker_pid.as_deref().map(broker_cpu_seconds).transpose()?;
    let cpu_before = cpu_seconds();
    let mut started: Option<Instant> = None;
    let mut filler = Vec::new();
    // Batches in flight: their offsets to store, and their messages not yet acknowledged.
    let mut in_flight: VecDeque<(TopicPartitionList, Arc<AtomicUsize>)> = VecDeque::new();
    let mut produced: u64 = 0;
    // One stream for the run, as the pipeline's loop holds one.
    let mut messages = consumer.stream();
    while remaining > 0 || !in_flight.is_empty() {
        let mut batch = Vec::with_capacity(512);
        if remaining > 0 {
            batch.push(
                messages
                    .next()
                    .await
                    .ok_or_else(|| anyhow::anyhow!("the message stream ended"))??,
            );
            started.get_or_insert_with(Instant::now);
            while batch.len() < 512 {
                match messages.next().now_or_never().flatten() {
                    Some(Ok(m)) => batch.push(m),
                    _ => break,
                }
            }
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        remaining -= batch.len() as i64;
        let outstanding = Arc::new(AtomicUsize::new(0));
        let mut next_offsets: HashMap<i32, i64> = HashMap::new();
        for message in &batch {
            let payload = message.payload().unwrap_or_default();
            for (output, topic) in outputs.iter_mut().zip(&topics) {
                output.owed += output.per_record;
                while output.owed >= 1.0 {
                    output.owed -= 1.0;
                    let (key, bytes) = if output.source.is_empty() {
                        // The record's own bytes, repeated to the size: JSON, which
                        // compresses better than the derived events and the changelog's
                        // binary values do (docs/benchmarks.md, session 26).
                        filler.clear();
                        while filler.len() < output.bytes && !payload.is_empty() {
                            let take = (output.bytes - filler.len()).min(payload.len());
                            filler.extend_from_slice(&payload[..take]);
                        }
                        (message.key(), Some(&filler[..]))
                    } else {
                        let (key, bytes) = &output.source[output.next % output.source.len()];
                        output.next += 1;
                        (key.as_deref(), bytes.as_deref())
                    };
                    outstanding.fetch_add(1, Ordering::AcqRel);
                    let mut record =
                        BaseRecord::with_opaque_to(topic, Box::new(outstanding.clone()))
                            .partition(message.partition());
                    if let Some(bytes) = bytes {
                        record = record.payload(bytes);
                    }
                    if let Some(key) = key {
                        record = record.key(key);
                    }
                    let mut pending = record;
                    loop {
                        match producer.send(pending) {
                            Ok(()) => break,
                            Err((_, back)) => {
                                // Queue full: wait for acknowledgements, as sessionflow does.
                                pending = back;
                                std::thread::sleep(Duration::from_millis(1));
                            }
                        }
                    }
                    produced += 1;
                }
            }
            next_offsets.insert(message.partition(), message.offset() + 1);
        }
        if let Some(per_transaction) = transaction_records {
            in_transaction += batch.len();
            transaction_offsets.extend(&next_offsets);
            if in_transaction >= per_transaction || (remaining == 0 && in_transaction > 0) {
                let mut offsets = TopicPartitionList::new();
                for (&partition, &next) in &transaction_offsets {
                    offsets.add_partition_offset(input, partition, Offset::Offset(next))?;
                }
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| anyhow::anyhow!("no consumer group metadata"))?;
                producer.send_offsets_to_transaction(&offsets, &group, transaction_call)?;
                producer.commit_transaction(transaction_call)?;
                if remaining > 0 {
                    producer.begin_transaction()?;
                }
                in_transaction = 0;
                transaction_offsets.clear();
            }
            // The commit waited for every message: nothing is in flight.
            continue;
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in next_offsets {
            offsets.add_partition_offset(input, partition, Offset::Offset(next))?;
        }
        in_flight.push_back((offsets, outstanding));
        while in_flight
            .front()
            .is_some_and(|(_, left)| left.load(Ordering::Acquire) == 0)
        {
            if let Some((offsets, _)) = in_flight.pop_front() {
                if offsets.count() > 0 {
                    consumer.store_offsets(&offsets)?;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let cpu = cpu_seconds() - cpu_before;
    if let (Some(pid), Some((before, jit_before))) = (broker_pid.as_deref(), broker_before) {
        let (after, jit_after) = broker_cpu_seconds(pid)?;
        println!(
            "pass-through: broker {:.2} CPU-s, JIT {:.2} CPU-s",
            after - before,
            jit_after - jit_before
        );
    }
    println!(
        "pass-through: {total} records, {produced} messages produced in {secs:.2} s: {:.0} records/s, {cpu:.2} CPU-s",
        total as f64 / secs.max(1e-9)
    );
    Ok(())
}
