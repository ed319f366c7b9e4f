//! Parse throughput: sessionflow's real parse path (`Parser::parse`: the on-demand scan
//! over each record's bytes in place, shape classification, validation, the observations;
//! the simd-json tape for what the scan leaves, which copies the record into its mutable
//! buffer) against serde_json and sonic_rs deserialising into an equivalent borrowed struct
//! with serde derive (same fields, same types, same shape dispatch and validation), each
//! parsing the same N records. `simd_json_tape_only` times the tape path's floor alone.

use std::borrow::Cow;
use std::fmt;
use std::hint::black_box;

use criterion::{criterion_group, BenchmarkId, Criterion, Throughput};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sessionflow::generate::{GenerateOptions, Generator};
use sessionflow::parse::{Parser, StageOne};

/// Records per iteration, for every function alike (the replay batch size).
const N: usize = 64;

/// A fixture, compacted. Read from the working directory, the checkout `cargo bench` runs
/// in (the package root), not the one the binary was built in: checkouts sharing one
/// `target/` reuse each other's builds.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!("tests/fixtures/{name}");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run from the checkout, as cargo bench does)"));
    let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    serde_json::to_vec(&value).unwrap()
}

// ---- The serde baseline: the same record model, validated the same way. ----

#[derive(Deserialize)]
struct SessionDoc<'a> {
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    updated_at: Option<i64>,
    created_at: Option<i64>,
    expire_at: Option<i64>,
    abandon_at: Option<i64>,
    last_active_at: Option<i64>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    actor: Option<ActorDoc>,
}

/// `actor` must be an object (its contents are not needed).
struct ActorDoc;

impl<'de> Deserialize<'de> for ActorDoc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ActorDoc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ActorDoc, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(ActorDoc)
            }
        }
        d.deserialize_map(V)
    }
}

/// A top-level object: a Session, a webhook envelope or a paginated list.
#[derive(Deserialize)]
struct RecordDoc<'a> {
    #[serde(borrow)]
    object: Option<Cow<'a, str>>,
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<DataDoc<'a>>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    updated_at: Option<i64>,
    created_at: Option<i64>,
    expire_at: Option<i64>,
    abandon_at: Option<i64>,
    last_active_at: Option<i64>,
    #[serde(borrow)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    client_id: Option<Cow<'a, str>>,
    actor: Option<ActorDoc>,
}

/// `data`: a Session (webhook) or an array of Sessions (list), dispatched without buffering.
enum DataDoc<'a> {
    One(SessionDoc<'a>),
    Many(Vec<SessionDoc<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for DataDoc<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = DataDoc<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a session or an array")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DataDoc<'a>, A::Error> {
                SessionDoc::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(DataDoc::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<DataDoc<'a>, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(DataDoc::Many)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The whole record: an object or a bare array of Sessions.
// Boxing the large variant would add an allocation per record to the baseline.
#[allow(clippy::large_enum_variant)]
enum TopDoc<'a> {
    Object(RecordDoc<'a>),
    List(Vec<SessionDoc<'a>>),
}

impl<'de: 'a, 'a> Deserialize<'de> for TopDoc<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = TopDoc<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or an array")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TopDoc<'a>, A::Error> {
                RecordDoc::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TopDoc::Object)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TopDoc<'a>, A::Error> {
                Vec::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(TopDoc::List)
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// The observation the baseline produces, like sessionflow's.
struct Obs<'a> {
    id: Cow<'a, str>,
    status: Cow<'a, str>,
    updated_at: i64,
    created_at: Option<i64>,
    expire_at: Option<i64>,
    abandon_at: Option<i64>,
    user_id: Option<Cow<'a, str>>,
    client_id: Option<Cow<'a, str>>,
    impersonated: bool,
}

fn time(v: Option<i64>) -> Result<Option<i64>, ()> {
    match v {
        Some(v) if v < 0 => Err(()),
        Some(v) if v < 100_000_000_000 => Ok(Some(v * 1000)),
        v => Ok(v),
    }
}

fn session<'a>(s: SessionDoc<'a>) -> Result<Obs<'a>, ()> {
    let is_session = match s.object.as_deref() {
        Some("session") => true,
        Some(_) => false,
        None => s.id.is_some() && s.status.is_some(),
    };
    if !is_session {
        return Err(());
    }
    let id = s.id.filter(|id| !id.is_empty()).ok_or(())?;
    let _ = time(s.last_active_at)?;
    Ok(Obs {
        id,
        status: s.status.ok_or(())?,
        updated_at: time(s.updated_at)?.ok_or(())?,
        created_at: time(s.created_at)?,
        expire_at: time(s.expire_at)?,
        abandon_at: time(s.abandon_at)?,
        user_id: s.user_id,
        client_id: s.client_id,
        impersonated: s.actor.is_some(),
    })
}

/// Classifies and validates like SPEC section 1; returns a checksum of the observations.
fn observe(top: TopDoc<'_>) -> Result<u64, ()> {
    let sum = |obs: Vec<Obs<'_>>| obs.iter().map(checksum).sum();
    match top {
        TopDoc::List(items) => items
            .into_iter()
            .map(session)
            .collect::<Result<Vec<_>, _>>()
            .map(sum),
        TopDoc::Object(r) => match r.object.as_deref() {
            Some("event") => match (r.kind.as_deref(), r.data) {
                (Some(k), Some(DataDoc::One(s))) if k.starts_with("session.") => {
                    session(s).map(|o| checksum(&o))
                }
                (Some(k), _) if !k.starts_with("session.") => Ok(0),
                _ => Err(()),
            },
            Some("session") | None
                if r.id.is_some() && r.status.is_some() || r.object.is_some() =>
            {
                let s = SessionDoc {
                    object: r.object,
                    id: r.id,
                    status: r.status,
                    updated_at: r.updated_at,
                    created_at: r.created_at,
                    expire_at: r.expire_at,
                    abandon_at: r.abandon_at,
                    last_active_at: r.last_active_at,
                    user_id: r.user_id,
                    client_id: r.client_id,
                    actor: r.actor,
                };
                session(s).map(|o| checksum(&o))
            }
            Some(_) => Ok(0),
            None => match r.data {
                Some(DataDoc::Many(items)) => items
                    .into_iter()
                    .map(session)
                    .collect::<Result<Vec<_>, _>>()
                    .map(sum),
                _ => Err(()),
            },
        },
    }
}

fn checksum(o: &Obs<'_>) -> u64 {
    o.updated_at as u64
        ^ o.created_at.unwrap_or(0) as u64
        ^ o.expire_at.unwrap_or(0) as u64
        ^ o.abandon_at.unwrap_or(0) as u64
        ^ (o.id.len()
            + o.status.len()
            + o.user_id.as_ref().map_or(0, |u| u.len())
            + o.client_id.as_ref().map_or(0, |c| c.len())) as u64
        ^ o.impersonated as u64
}

fn serde_json_parse(records: &[Vec<u8>]) -> u64 {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice::<TopDoc<'_>>(r)
                .map_err(|_| ())
                .and_then(observe)
                .unwrap_or(1)
        })
        .sum()
}

fn sonic_rs_parse(records: &[Vec<u8>]) -> u64 {
    records
        .iter()
        .map(|r| {
            sonic_rs::from_slice::<TopDoc<'_>>(r)
                .map_err(|_| ())
                .and_then(observe)
                .unwrap_or(1)
        })
        .sum()
}

fn sessionflow_parse(parser: &mut Parser, records: &[Vec<u8>]) -> u64 {
    let mut sum = 0;
    for record in records {
        parser.parse(record, |result| {
            sum += match result {
                Ok(parsed) => parsed
                    .observations()
                    .map(|o| {
                        o.updated_at as u64
                            ^ o.created_at.unwrap_or(0) as u64
                            ^ o.expire_at.unwrap_or(0) as u64
                            ^ o.abandon_at.unwrap_or(0) as u64
                            ^ (o.id.len()
                                + o.status.len()
                                + o.user_id.map_or(0, str::len)
                                + o.client_id.map_or(0, str::len))
                                as u64
                            ^ o.impersonated as u64
                    })
                    .sum(),
                Err(_) => 1,
            }
        });
    }
    sum
}

/// The floor under sessionflow's path: simd-json building the tape of the same batch, with
/// no classification or validation. Not a competitor; it shows how much of sessionflow's
/// time is simd-json itself.
struct TapeOnly {
    pristine: Vec<u8>,
    buffer: Vec<u8>,
    len: usize,
    buffers: simd_json::Buffers,
    tape: simd_json::Tape<'static>,
}

impl TapeOnly {
    fn new(records: &[Vec<u8>]) -> Option<TapeOnly> {
        let mut pristine = b"[".to_vec();
        for r in records {
            pristine.extend_from_slice(r);
            pristine.extend_from_slice(b",\"~\",");
        }
        let len = pristine.len();
        pristine[len - 1] = b']';
        let mut probe = pristine.clone();
        // Only meaningful when the whole batch is valid JSON (no fallback).
        simd_json::to_tape(&mut probe).ok()?;
        let mut buffer = pristine.clone();
        buffer.resize(len + simd_json::INPUT_PADDING, b' ');
        Some(TapeOnly {
            pristine,
            buffer,
            len,
            buffers: simd_json::Buffers::new(len),
            tape: simd_json::Tape(Vec::new()),
        })
    }

    fn run(&mut self) -> usize {
        self.buffer[..self.len].copy_from_slice(&self.pristine);
        let mut tape = std::mem::replace(&mut self.tape, simd_json::Tape(Vec::new())).reset();
        let ok =
            simd_json::fill_tape_padded(&mut self.buffer, self.len, &mut self.buffers, &mut tape)
                .is_ok();
        let nodes = tape.0.len() * usize::from(ok);
        self.tape = tape.reset();
        nodes
    }
}

fn group(c: &mut Criterion, name: &str, records: Vec<Vec<u8>>) {
    let bytes: usize = records.iter().map(Vec::len).sum();
    let mut parser = Parser::default();
    // All three must agree before they are timed.
    let expected = serde_json_parse(&records);
    assert_eq!(
        sonic_rs_parse(&records),
        expected,
        "{name}: sonic_rs disagrees"
    );
    assert_eq!(
        sessionflow_parse(&mut parser, &records),
        expected,
        "{name}: sessionflow disagrees"
    );
    // Which of the parser's two paths the records took (docs/benchmarks.md quotes it).
    eprintln!(
        "{name}: {} records, {:?}, stage one {:?}",
        records.len(),
        parser.path_stats(),
        parser.stage_one()
    );

    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function(BenchmarkId::from_parameter("sessionflow"), |b| {
        b.iter(|| black_box(sessionflow_parse(&mut parser, black_box(&records))))
    });
    g.bench_function(BenchmarkId::from_parameter("serde_json"), |b| {
        b.iter(|| black_box(serde_json_parse(black_box(&records))))
    });
    g.bench_function(BenchmarkId::from_parameter("sonic_rs"), |b| {
        b.iter(|| black_box(sonic_rs_parse(black_box(&records))))
    });
    // The scan with each narrower stage-one kernel this CPU runs (`sessionflow` above runs
    // the widest), to show what the kernel is worth within the same run.
    let widest = parser.stage_one();
    for kernel in StageOne::available() {
        if kernel == widest || kernel == StageOne::Portable {
            continue;
        }
        let mut forced = Parser::default().with_stage_one(kernel);
        let id = format!("sessionflow_{kernel:?}").to_lowercase();
        g.bench_function(BenchmarkId::from_parameter(id), |b| {
            b.iter(|| black_box(sessionflow_parse(&mut forced, black_box(&records))))
        });
    }
    if let Some(mut floor) = TapeOnly::new(&records) {
        g.bench_function(BenchmarkId::from_parameter("simd_json_tape_only"), |b| {
            b.iter(|| black_box(floor.run()))
        });
    }
    g.finish();
}

fn generated(count: usize) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GenerateOptions::new(count as u64, 42));
    let (mut out, mut key) = (Vec::new(), Vec::new());
    let mut records = Vec::with_capacity(count);
    while records.len() < count && generator.next_record(&mut out, &mut key) {
        records.push(out.clone());
    }
    records
}

/// The three inputs, by group name.
fn inputs() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    vec![
        ("parse_raw_session", vec![fixture("session_raw.json"); N]),
        (
            "parse_webhook_envelope",
            vec![fixture("session_created_webhook.json"); N],
        ),
        ("parse_batch_mixed", generated(1000)),
    ]
}

fn benches(c: &mut Criterion) {
    for (name, records) in inputs() {
        group(c, name, records);
    }
}

/// The alternated measurement (`SESSIONFLOW_PARSE_ROUNDS=R cargo bench --bench parse`): R
/// rounds of sessionflow (once per stage-one kernel), serde_json and sonic_rs one after
/// the other on each input, each timing ~20 MB of records, and per input the median of the
/// rounds' ratios. On a shared, noisy host a burst slows whichever function criterion
/// happens to be timing; here it falls on all of one round alike.
fn alternated(rounds: usize) {
    fn per_iteration(iterations: usize, mut parse: impl FnMut() -> u64) -> f64 {
        let start = std::time::Instant::now();
        let mut sum = 0u64;
        for _ in 0..iterations {
            sum = sum.wrapping_add(black_box(parse()));
        }
        black_box(sum);
        start.elapsed().as_secs_f64() * 1e6 / iterations as f64
    }
    fn median(mut values: Vec<f64>) -> f64 {
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    }
    println!("CPU: {}", cpu_model());
    // The widest kernel first (the one this CPU uses), then each narrower one, in every
    // round: what a CPU without AVX-512 (or without AVX2) would get against the same
    // serde_json and sonic_rs timings.
    let mut kernels: Vec<StageOne> = StageOne::available()
        .into_iter()
        .filter(|&k| k != StageOne::Portable)
        .rev()
        .collect();
    if kernels.is_empty() {
        kernels.push(StageOne::Portable);
    }
    for (name, records) in inputs() {
        let mut parsers: Vec<Parser> = kernels
            .iter()
            .map(|&k| Parser::default().with_stage_one(k))
            .collect();
        let bytes: usize = records.iter().map(Vec::len).sum();
        let iterations = (20_000_000 / bytes).max(3);
        let mut ours = vec![Vec::new(); parsers.len()];
        let (mut serde_times, mut sonic_times) = (Vec::new(), Vec::new());
        for _ in 0..rounds.max(1) {
            for (parser, times) in parsers.iter_mut().zip(&mut ours) {
                times.push(per_iteration(iterations, || {
                    sessionflow_parse(parser, &records)
                }));
            }
            serde_times.push(per_iteration(iterations, || serde_json_parse(&records)));
            sonic_times.push(per_iteration(iterations, || sonic_rs_parse(&records)));
        }
        for (kernel, times) in kernels.iter().zip(&ours) {
            let ratio =
                |other: &[f64]| median(other.iter().zip(times).map(|(o, s)| o / s).collect());
            println!(
                "{name}: sessionflow {:.1} µs, serde_json {:.1} µs ({:.2}x), sonic_rs {:.1} µs ({:.2}x), \
                 medians of {} rounds, stage one {kernel:?}",
                median(times.clone()),
                median(serde_times.clone()),
                ratio(&serde_times),
                median(sonic_times.clone()),
                ratio(&sonic_times),
                rounds.max(1),
            );
        }
    }
}

criterion_group!(parse, benches);

/// The CPU the figures come from, named as the bench scripts name it (`cpu_model` in
/// `scripts/proc-cpu.sh`, read from the checkout as the fixtures are): "AMD EPYC, family 25
/// model 17, 2 cores". Machines of one kind differ, so every figure names it.
fn cpu_model() -> String {
    let named = std::process::Command::new("bash")
        .args(["-c", ". scripts/proc-cpu.sh && cpu_model"])
        .output();
    match named {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        other => {
            panic!("scripts/proc-cpu.sh: {other:?} (run from the checkout, as cargo bench does)")
        }
    }
}

/// A fixed amount of work for instruction counting (`SESSIONFLOW_PARSE_COUNT=N`, under
/// `valgrind --tool=cachegrind`): sessionflow's parse only, N passes over each input with
/// the kernel `SESSIONFLOW_PARSE_KERNEL` names (default: the widest), of the groups whose
/// name contains `SESSIONFLOW_PARSE_GROUP` (default: all).
fn counted(passes: usize) {
    let kernel = match std::env::var("SESSIONFLOW_PARSE_KERNEL").as_deref() {
        Ok(name) => *StageOne::available()
            .iter()
            .find(|k| format!("{k:?}").eq_ignore_ascii_case(name))
            .unwrap_or_else(|| panic!("SESSIONFLOW_PARSE_KERNEL: {name} does not run here")),
        Err(_) => StageOne::detect(),
    };
    let only = std::env::var("SESSIONFLOW_PARSE_GROUP").unwrap_or_default();
    for (name, records) in inputs().into_iter().filter(|(n, _)| n.contains(&only)) {
        let mut parser = Parser::default().with_stage_one(kernel);
        let mut sum = 0u64;
        for _ in 0..passes {
            sum = sum.wrapping_add(black_box(sessionflow_parse(&mut parser, &records)));
        }
        println!("{name}: {passes} passes, stage one {kernel:?}, checksum {sum}");
    }
}

fn main() {
    if let Ok(passes) = std::env::var("SESSIONFLOW_PARSE_COUNT") {
        return counted(passes.parse().expect("SESSIONFLOW_PARSE_COUNT: a count"));
    }
    match std::env::var("SESSIONFLOW_PARSE_ROUNDS").map(|r| r.parse::<usize>()) {
        Ok(Ok(rounds)) => alternated(rounds),
        Ok(Err(e)) => panic!("SESSIONFLOW_PARSE_ROUNDS: {e}"),
        Err(_) => {
            parse();
            Criterion::default().configure_from_args().final_summary();
        }
    }
}
