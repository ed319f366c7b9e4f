//! Engine throughput: observations per second against 10 000 and 1 000 000 sessions held.
//! Each observation refreshes an existing live session (a newer `updated_at` and a later
//! `abandon_at`, so its timer is re-armed), the commonest thing Clerk traffic does, followed
//! by the per-record timer check.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sessionflow::engine::{Engine, EngineConfig, EventSink};
use sessionflow::generate::clerk_id;
use sessionflow::model::{DerivedEvent, Observation, Source};

const T: i64 = 1_764_000_000_000;
const DAY: i64 = 86_400_000;
const BATCH: u64 = 1000;

struct Count(u64);

impl EventSink for Count {
    fn emit(&mut self, _: &DerivedEvent<'_>) {
        self.0 += 1;
    }
}

fn id(prefix: &str, n: u64) -> String {
    let mut buf = String::new();
    clerk_id(&mut buf, prefix, n);
    buf
}

fn observation<'a>(id: &'a str, user: &'a str, updated_at: i64) -> Observation<'a> {
    Observation {
        id,
        status: "active",
        updated_at,
        created_at: Some(T),
        expire_at: Some(T + 7 * DAY),
        abandon_at: Some(updated_at + 30 * DAY),
        user_id: Some(user),
        client_id: None,
        impersonated: false,
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_refresh");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    for sessions in [10_000u64, 1_000_000] {
        let ids: Vec<String> = (0..sessions).map(|i| id("sess_", i)).collect();
        let users: Vec<String> = (0..sessions).map(|i| id("user_", i)).collect();
        let mut engine = Engine::new(EngineConfig::default());
        let mut sink = Count(0);
        let source = Source {
            topic: "-",
            partition: 0,
            offset: 0,
        };
        for (i, (id, user)) in ids.iter().zip(&users).enumerate() {
            engine.apply(
                &observation(id, user, T + i as i64),
                source,
                None,
                &mut sink,
            );
        }
        engine.finish_record(&mut sink);
        assert_eq!(engine.len() as u64, sessions);
        let mut clock = T + sessions as i64;
        let mut next = 0u64;
        group.bench_function(BenchmarkId::from_parameter(sessions), |b| {
            b.iter(|| {
                for _ in 0..BATCH {
                    // A fixed stride visits sessions in a cache-unfriendly order.
                    next = (next + 7_919) % sessions;
                    clock += 1;
                    let i = next as usize;
                    let o = observation(&ids[i], &users[i], clock);
                    black_box(engine.apply(&o, source, None, &mut sink));
                    engine.finish_record(&mut sink);
                }
            })
        });
        assert_eq!(engine.len() as u64, sessions, "refreshes only");
    }
    group.finish();
}

criterion_group!(engine, bench);
criterion_main!(engine);
