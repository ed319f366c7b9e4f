//! The live batch step's own work per record, without a broker: generated records (the
//! traffic `scripts/bench-e2e.sh` loads: a third as many sessions as records, spread over
//! four partitions by key) are parsed, applied to their partition's engine and written into
//! an outbox (derived events and changelog writes, encoded), in batches of 4 096 records,
//! the outbox cleared between batches. Each iteration starts from empty engines and applies
//! the whole stream, so the engines grow to their full size in every iteration alike.
//!
//! `SESSIONFLOW_LIVE_APPLY_RECORDS` sets how many records (default 1 000 000). What this
//! leaves out is librdkafka's (consuming, sending) and the send's own bookkeeping.

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use sessionflow::app::outbox::{DeadLetterLimits, Outbox};
use sessionflow::app::{apply_value, InputRecord};
use sessionflow::engine::{Engine, EngineConfig};
use sessionflow::generate::{GenerateOptions, Generator};
use sessionflow::model::Source;
use sessionflow::parse::{Limits, Parser};
use sessionflow::stats::Stats;

/// The binary's allocator (src/main.rs), so that the engines' blocks sit where they do live:
/// in mimalloc's arenas, which it asks the kernel to back with transparent huge pages. On the
/// C allocator (4 KiB pages under `madvise`-mode huge pages) the same step measured 1.14-1.21x
/// slower (docs/benchmarks.md, session 27).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: usize = 4;
/// `pipeline.batch_size`'s default.
const BATCH: usize = 4096;

/// The generated records, their bytes in one buffer.
struct Records {
    bytes: Vec<u8>,
    /// (partition, end of the record in `bytes`).
    ends: Vec<(i32, usize)>,
}

impl Records {
    fn generate(records: usize) -> Records {
        let mut generator = Generator::new(GenerateOptions::new(records as u64 / 3, 7));
        let (mut value, mut key) = (Vec::new(), Vec::new());
        let mut out = Records {
            bytes: Vec::new(),
            ends: Vec::with_capacity(records),
        };
        let by_key = BuildHasherDefault::<DefaultHasher>::default();
        while out.ends.len() < records && generator.next_record(&mut value, &mut key) {
            let partition = (by_key.hash_one(&key) % PARTITIONS as u64) as i32;
            out.bytes.extend_from_slice(&value);
            out.ends.push((partition, out.bytes.len()));
        }
        out
    }

    fn iter(&self) -> impl Iterator<Item = (i32, &[u8])> + '_ {
        let mut start = 0;
        self.ends.iter().map(move |&(partition, end)| {
            let record = &self.bytes[start..end];
            start = end;
            (partition, record)
        })
    }
}

/// Applies every record with the live loop's batch step (`app::apply_value`), returning the
/// outputs written.
fn apply_all(records: &Records, outbox: &mut Outbox, parser: &mut Parser) -> usize {
    // As bench-e2e runs it: the future-event-time check off (historical event times).
    let config = EngineConfig {
        max_clock_skew_ms: 0,
        ..EngineConfig::default()
    };
    let wall_clock = sessionflow::clock::now_ms();
    let mut engines: Vec<Engine> = (0..PARTITIONS).map(|_| Engine::new(config)).collect();
    let mut stats = Stats::new();
    let mut outputs = 0;
    let mut in_batch = 0;
    outbox.clear();
    for (offset, (partition, record)) in records.iter().enumerate() {
        let source = Source {
            topic: "input",
            partition,
            offset: offset as i64,
        };
        let input = InputRecord {
            source,
            key: None,
            value: record,
        };
        let engine = &mut engines[partition as usize];
        apply_value(engine, parser, outbox, &mut stats, input, wall_clock);
        outbox.close_record(partition, Some(offset as i64));
        in_batch += 1;
        if in_batch == BATCH {
            outputs += outbox.messages().len();
            outbox.clear();
            in_batch = 0;
        }
    }
    outputs + outbox.messages().len()
}

fn bench(c: &mut Criterion) {
    let count: usize = std::env::var("SESSIONFLOW_LIVE_APPLY_RECORDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let records = Records::generate(count);
    let limits = Limits::default();
    let mut outbox = Outbox::new(DeadLetterLimits {
        max_record_bytes: limits.max_record_bytes,
        topic_max_message_bytes: None,
    });
    let mut parser = Parser::new(limits);
    let outputs = apply_all(&records, &mut outbox, &mut parser);
    println!(
        "live_apply: {} records, {} MB, {:.2} outputs per record",
        records.ends.len(),
        records.bytes.len() >> 20,
        outputs as f64 / records.ends.len() as f64
    );
    let mut group = c.benchmark_group("live_apply");
    group.throughput(Throughput::Elements(records.ends.len() as u64));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(1));
    group.bench_function("batch_step", |b| {
        b.iter_custom(|iterations| {
            let mut took = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                black_box(apply_all(&records, &mut outbox, &mut parser));
                took += start.elapsed();
            }
            took
        })
    });
    group.finish();
}

criterion_group!(live_apply, bench);
criterion_main!(live_apply);
