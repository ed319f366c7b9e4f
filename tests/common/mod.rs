//! Helpers for tests against a real Kafka broker (started by `scripts/kafka-dev.sh run --`,
//! which sets SESSIONFLOW_TEST_BOOTSTRAP). Without a broker the tests say so and pass, except
//! under CI=true, where a missing broker fails them.

#![allow(dead_code)]

pub mod proxy;
pub mod restore_kit;
pub mod schemas;
pub mod trickle;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message, ToBytes};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_sessionflow");

/// The broker's address, or `None` (with a message) when no broker is configured.
pub fn bootstrap() -> Option<String> {
    match std::env::var("SESSIONFLOW_TEST_BOOTSTRAP") {
        Ok(b) if !b.is_empty() => Some(b),
        _ => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but no Kafka broker: run the tests through scripts/kafka-dev.sh run --"
            );
            eprintln!("SKIPPED: no Kafka broker configured (SESSIONFLOW_TEST_BOOTSTRAP); run through scripts/kafka-dev.sh run --");
            None
        }
    }
}

/// The broker's SASL_SSL listener and its files (exported by `scripts/kafka-dev.sh run`).
pub struct Secure {
    pub bootstrap: String,
    pub ca: String,
    pub untrusted_ca: String,
    pub user: String,
    pub password_file: String,
}

impl Secure {
    pub fn password(&self) -> String {
        std::fs::read_to_string(&self.password_file)
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `--set` overrides for SASL_SSL with `mechanism`, trusting `ca`.
    pub fn sets(&self, mechanism: &str, ca: &str) -> Vec<String> {
        vec![
            "kafka.\"security.protocol\"=SASL_SSL".into(),
            format!("kafka.\"sasl.mechanism\"={mechanism}"),
            format!("kafka.\"sasl.username\"={}", self.user),
            format!("kafka.\"ssl.ca.location\"={ca}"),
        ]
    }
}

pub fn secure() -> Option<Secure> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let found = (|| {
        Some(Secure {
            bootstrap: var("SESSIONFLOW_TEST_SECURE_BOOTSTRAP")?,
            ca: var("SESSIONFLOW_TEST_CA")?,
            untrusted_ca: var("SESSIONFLOW_TEST_UNTRUSTED_CA")?,
            user: var("SESSIONFLOW_TEST_SASL_USER")?,
            password_file: var("SESSIONFLOW_TEST_SASL_PASSWORD_FILE")?,
        })
    })();
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but no SASL_SSL listener: run the tests through scripts/kafka-dev.sh run --"
        );
        eprintln!(
            "SKIPPED: no SASL_SSL listener configured; run through scripts/kafka-dev.sh run --"
        );
    }
    found
}

/// A name unique to this test run.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn create_topics(bootstrap: &str, topics: &[&str], partitions: i32) {
    create_topics_with(bootstrap, topics, partitions, &[]);
}

/// [`create_topics`] with topic configuration entries (`max.message.bytes`, say).
pub fn create_topics_with(
    bootstrap: &str,
    topics: &[&str],
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            configs.iter().fold(
                NewTopic::new(t, partitions, TopicReplication::Fixed(1)),
                |topic, (key, value)| topic.set(key, value),
            )
        })
        .collect();
    let results = runtime()
        .block_on(admin.create_topics(&new, &AdminOptions::new()))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Deletes `topics` (as `kafka-topics --delete` does).
pub fn delete_topics(bootstrap: &str, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = runtime()
        .block_on(admin.delete_topics(topics, &AdminOptions::new()))
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// Raises `topic`'s partition count to `total` (as `kafka-topics --alter --partitions` does).
pub fn add_partitions(bootstrap: &str, topic: &str, total: usize) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    let results = runtime()
        .block_on(
            admin.create_partitions(&[NewPartitions::new(topic, total)], &AdminOptions::new()),
        )
        .unwrap();
    for r in results {
        r.unwrap();
    }
}

/// One record read back.
#[derive(Clone, Debug)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn json(&self) -> Value {
        serde_json::from_slice(self.value.as_deref().unwrap_or(b"null")).unwrap()
    }
}

/// Every record of `topic`, per partition in offset order, read with read_committed.
pub fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<i32, Vec<Record>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        // Transactional topics end in a commit marker, not a record: the end of a partition
        // is where the EOF event comes.
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut ends = HashMap::new();
    let mut list = TopicPartitionList::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .unwrap();
        ends.insert(p, high);
        if high > low {
            list.add_partition_offset(topic, p, Offset::Offset(low))
                .unwrap();
        }
    }
    let mut out: BTreeMap<i32, Vec<Record>> = partitions.iter().map(|&p| (p, Vec::new())).collect();
    if list.count() == 0 {
        return out;
    }
    consumer.assign(&list).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut at_end = std::collections::HashSet::new();
    let done = |out: &BTreeMap<i32, Vec<Record>>, at_end: &std::collections::HashSet<i32>| {
        partitions.iter().all(|p| {
            if at_end.contains(p) {
                return true;
            }
            let end = ends[p];
            out[p]
                .last()
                .map_or(end == 0 || list.find_partition(topic, *p).is_none(), |r| {
                    r.offset + 1 >= end
                })
        })
    };
    while !done(&out, &at_end) {
        assert!(Instant::now() < deadline, "timed out reading {topic}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let m = match message {
                Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                    at_end.insert(p);
                    continue;
                }
                other => other.unwrap(),
            };
            let mut headers = BTreeMap::new();
            if let Some(h) = m.headers() {
                for header in h.iter() {
                    headers.insert(
                        header.key.to_owned(),
                        String::from_utf8_lossy(header.value.unwrap_or(b"")).into_owned(),
                    );
                }
            }
            out.get_mut(&m.partition()).unwrap().push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        }
    }
    out
}

/// Committed offsets of `group` on `topic`'s partitions (-1 where none).
pub fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition(topic, p);
    }
    // A new group's coordinator may still be loading: retry transient errors.
    let mut attempts = 0;
    let committed = loop {
        match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(committed) => break committed,
            Err(error) if attempts < 40 => {
                attempts += 1;
                eprintln!("committed offsets not available yet ({error}); retrying");
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(error) => panic!("committed offsets of {group}: {error}"),
        }
    };
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).unwrap().offset() {
                Offset::Offset(o) => o,
                _ => -1,
            },
        )
        .collect()
}

/// End offsets of `topic`'s partitions.
pub fn end_offsets(bootstrap: &str, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap()
                .1
        })
        .collect()
}

/// `sessionflow generate` for `records` records over `sessions` sessions (NDJSON on standard
/// output unless more flags say otherwise).
pub fn generate_records_command(records: u64, sessions: u64, seed: u64) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(["generate", "--sessions", &sessions.to_string()])
        .args([
            "--seed",
            &seed.to_string(),
            "--records",
            &records.to_string(),
        ])
        .stderr(Stdio::null());
    command
}

/// The NDJSON of [`generate_records_command`]: `records` records, one a line.
pub fn generated_ndjson(records: u64, sessions: u64, seed: u64) -> Vec<u8> {
    let output = generate_records_command(records, sessions, seed)
        .output()
        .expect("sessionflow generate runs");
    assert!(output.status.success());
    output.stdout
}

/// [`generate_records_command`] sending to `topic` (`--brokers`).
fn generate_command(
    bootstrap: &str,
    topic: &str,
    records: u64,
    sessions: u64,
    seed: u64,
) -> Command {
    let mut command = generate_records_command(records, sessions, seed);
    command.args(["--brokers", bootstrap, "--topic", topic]);
    command
}

/// Sends `record`, waiting while the producer's local queue is full: it drains as the broker
/// acknowledges. Bounded: a queue that stays full for a minute fails the test.
pub fn send_when_queued<K, P>(
    producer: &ThreadedProducer<DefaultProducerContext>,
    mut record: BaseRecord<'_, K, P>,
) where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err((error, returned)) = producer.send(record) {
        assert!(Instant::now() < deadline, "input not taken: {error}");
        record = returned;
        producer.poll(Duration::from_millis(10));
    }
}

/// Sends generated records as fast as the broker takes them, and waits.
pub fn generate_into(bootstrap: &str, topic: &str, records: u64, seed: u64) {
    generate_compressed_into(bootstrap, topic, records, seed, "lz4");
}

/// [`generate_into`] over `sessions` sessions (instead of one for every three records).
pub fn generate_sessions_into(
    bootstrap: &str,
    topic: &str,
    records: u64,
    sessions: u64,
    seed: u64,
) {
    let status = generate_command(bootstrap, topic, records, sessions, seed)
        .status()
        .unwrap();
    assert!(status.success());
}

/// [`generate_into`] with the producer's `compression.type` set to `codec`.
pub fn generate_compressed_into(
    bootstrap: &str,
    topic: &str,
    records: u64,
    seed: u64,
    codec: &str,
) {
    let status = generate_command(bootstrap, topic, records, records / 3, seed)
        .args(["--compression", codec])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Starts sending `records` generated records at `rate` records/s (so that input keeps
/// arriving while the processor runs).
pub fn spawn_generator(bootstrap: &str, topic: &str, records: u64, seed: u64, rate: u64) -> Child {
    generate_command(bootstrap, topic, records, records / 3, seed)
        .args(["--rate", &rate.to_string()])
        .spawn()
        .unwrap()
}

/// What one "Restored partition state" line of a `sessionflow run` log says.
#[derive(Debug)]
pub struct RestoreLogged {
    pub partition: i32,
    pub sessions: u64,
    /// The input offset the restored progress record covers, when there was one.
    pub applied_through: Option<i64>,
}

/// Every restore a `sessionflow run` log records, in order.
pub fn restores_logged(log: &str) -> Vec<RestoreLogged> {
    let field = |line: &str, name: &str| -> Option<i64> {
        line.split(&format!(" {name}="))
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    log.lines()
        .filter(|l| l.contains("Restored partition state"))
        .map(|line| RestoreLogged {
            partition: field(line, "partition").expect("partition logged") as i32,
            sessions: field(line, "sessions").expect("sessions logged") as u64,
            applied_through: field(line, "applied_through"),
        })
        .collect()
}

/// Sessions restored according to a `sessionflow run` log (all its restores).
pub fn restored_sessions(log: &str) -> u64 {
    restores_logged(log).iter().map(|r| r.sessions).sum()
}

/// At-least-once, checked per partition: every transition `replay` derives is in the output,
/// and every output transition is one of those (the only extras are exact duplicates).
/// Returns the number of duplicates. On an event derived anew, panics with the session's
/// expected and actual history and its input records.
pub fn assert_at_least_once(
    expected: &Expected,
    transitions: &BTreeMap<i32, Vec<Record>>,
    input: &BTreeMap<i32, Vec<Record>>,
) -> i64 {
    let mut duplicates = 0;
    for (&p, expected_events) in &expected.transitions {
        let mut want: HashMap<String, i64> = HashMap::new();
        for e in expected_events {
            *want.entry(e.to_string()).or_default() += 1;
        }
        let mut got: HashMap<String, i64> = HashMap::new();
        for t in &transitions[&p] {
            *got.entry(t.json().to_string()).or_default() += 1;
        }
        for (event, n) in &want {
            let have = got.get(event).copied().unwrap_or(0);
            assert!(have >= *n, "partition {p}: missing {event}");
        }
        for (event, n) in &got {
            let w = want.get(event).copied().unwrap_or(0);
            if w == 0 {
                let session = serde_json::from_str::<Value>(event).unwrap()["session_id"].clone();
                let history = |events: &[Value]| -> Vec<String> {
                    events
                        .iter()
                        .filter(|e| e["session_id"] == session)
                        .map(Value::to_string)
                        .collect()
                };
                let inputs: Vec<String> = input[&p]
                    .iter()
                    .filter(|r| r.key.as_deref() == session.as_str().map(str::as_bytes))
                    .map(|r| {
                        let text = String::from_utf8_lossy(r.value.as_deref().unwrap_or(b""));
                        format!(
                            "{} {}",
                            r.offset,
                            text.chars().take(400).collect::<String>()
                        )
                    })
                    .collect();
                panic!(
                    "partition {p}: derived an event replay never derives: {event}\nexpected:\n{}\ngot:\n{}\ninputs:\n{}",
                    history(expected_events).join("\n"),
                    history(&values(&transitions[&p])).join("\n"),
                    inputs.join("\n")
                );
            }
            duplicates += n - w;
        }
    }
    duplicates
}

/// Exactly-once: the read_committed output of every partition is exactly what `replay`
/// derives, in the same order — nothing missing, nothing twice.
pub fn assert_exactly_once(expected: &Expected, transitions: &BTreeMap<i32, Vec<Record>>) {
    for (&p, expected_events) in &expected.transitions {
        let got = values(&transitions[&p]);
        if &got != expected_events {
            let first = got
                .iter()
                .zip(expected_events)
                .position(|(g, e)| g != e)
                .unwrap_or(got.len().min(expected_events.len()));
            panic!(
                "partition {p}: {} events read, {} expected; first difference at {first}: got {:?}, expected {:?}",
                got.len(),
                expected_events.len(),
                got.get(first).map(Value::to_string),
                expected_events.get(first).map(Value::to_string),
            );
        }
    }
}

/// A running `sessionflow run`, its stderr in a file.
pub struct Running {
    pub child: Child,
    pub port: u16,
    pub log: std::path::PathBuf,
}

impl Running {
    pub fn metrics(&self) -> Option<String> {
        http_get(self.port, "/metrics")
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "sessionflow did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// Starts `sessionflow run` against `bootstrap` with `--set` overrides.
pub fn start_run(
    bootstrap: &str,
    dir: &Path,
    group: &str,
    input: &str,
    prefix: &str,
    sets: &[&str],
) -> Running {
    start_run_env(bootstrap, dir, group, input, prefix, sets, &[])
}

/// [`start_run`] with extra environment variables (they win over `RUST_LOG=info`, itself
/// replaced by `SESSIONFLOW_TEST_RUST_LOG` when set).
pub fn start_run_env(
    bootstrap: &str,
    dir: &Path,
    group: &str,
    input: &str,
    prefix: &str,
    sets: &[&str],
    env: &[(&str, &str)],
) -> Running {
    // SESSIONFLOW_TEST_KEEP_LOGS=DIR keeps every run's log there (the scenario's directory
    // goes with the test), for a failure that needs more than the tail the test prints.
    let log_dir = std::env::var_os("SESSIONFLOW_TEST_KEEP_LOGS").map_or(dir.to_owned(), Into::into);
    let log = log_dir.join(format!("{}.log", unique("run")));
    let mut command = Command::new(BIN);
    command
        .arg("run")
        .args([
            "--brokers",
            bootstrap,
            "--group-id",
            group,
            "--input-topic",
            input,
        ])
        // Port 0: the run binds a port of its own and logs it, so no other process can take
        // a port picked here before the run binds it.
        .args(["--http-listen", "127.0.0.1:0"])
        .args(["--set", &format!("topics.transitions={prefix}.transitions")])
        .args(["--set", &format!("topics.anomalies={prefix}.anomalies")])
        .args(["--set", &format!("topics.dead_letters={prefix}.dlq")])
        .args(["--set", "topics.create_topics=true"]);
    for set in sets {
        command.args(["--set", set]);
    }
    let child = command
        .env(
            "RUST_LOG",
            std::env::var("SESSIONFLOW_TEST_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Running::once_listening(child, log, "Serving /metrics, /healthz and /readyz.")
}

impl Running {
    /// A just-started process given `127.0.0.1:0`, once it listens: its port is read from the
    /// log line containing `serving` (both `run` and `ingest` bind their listener before
    /// anything slow starts, so this waits for the process alone). Panics with the log if the
    /// process exits first or does not listen within a minute.
    pub fn once_listening(child: Child, log: std::path::PathBuf, serving: &str) -> Running {
        let mut running = Running {
            child,
            port: 0,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let log = running.log_text();
            let port = log
                .lines()
                .find(|line| line.contains(serving))
                .and_then(|line| line.split_once("listen=127.0.0.1:"))
                .and_then(|(_, rest)| rest.split_whitespace().next()?.parse().ok());
            if let Some(port) = port {
                running.port = port;
                return running;
            }
            let exited = running.child.try_wait().unwrap();
            if exited.is_some() || Instant::now() >= deadline {
                panic!(
                    "the process did not listen (exit: {exited:?}); its log ends:\n{}",
                    log_tail(&log, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A plain HTTP/1.0 GET on localhost; `None` while nothing listens, or without an answer
/// within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    http_get_within(port, path, Duration::from_secs(5))
}

/// [`http_get`] that waits up to `timeout` for the answer.
pub fn http_get_within(port: u16, path: &str, timeout: Duration) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Sum of a metric's samples whose line contains every `labels` fragment.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.starts_with(name)
                && (l.as_bytes().get(name.len()) == Some(&b'{')
                    || l.as_bytes().get(name.len()) == Some(&b' '))
        })
        .filter(|l| labels.iter().all(|f| l.contains(f)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Like [`wait_until`], with the tail of `run`'s log in the failure message.
pub fn wait_for_run(run: &Running, what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    wait(what, timeout, condition, || {
        let log = run.log_text();
        format!(
            "; sessionflow's log ends (repeated lines collapsed):\n{}",
            log_tail(&log, 40)
        )
    });
}

/// The last `lines` lines of a log, each run of lines that differ only in their timestamp
/// shown once with its count: a flood of one warning (thousands of failed deliveries) must
/// not hide what came before it.
pub fn log_tail(log: &str, lines: usize) -> String {
    // (first line of the run, the run's message without its timestamp, lines in the run)
    let mut runs: Vec<(&str, &str, usize)> = Vec::new();
    for line in log.lines() {
        let message = line.split_once(' ').map_or(line, |(_, rest)| rest);
        match runs.last_mut() {
            Some((_, last, count)) if *last == message => *count += 1,
            _ => runs.push((line, message, 1)),
        }
    }
    let start = runs.len().saturating_sub(lines);
    runs[start..]
        .iter()
        .map(|(line, _, count)| match count {
            1 => (*line).to_owned(),
            n => format!("{line}  [and {} more like it]", n - 1),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn wait_until(what: &str, timeout: Duration, condition: impl FnMut() -> bool) {
    wait(what, timeout, condition, String::new);
}

/// Polls `condition` every 250 ms; on timeout panics naming `what`, then `detail()`.
fn wait(
    what: &str,
    timeout: Duration,
    mut condition: impl FnMut() -> bool,
    detail: impl FnOnce() -> String,
) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}{}", detail());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// What `sessionflow replay` derives from each input partition, with sources rewritten to
/// the Kafka topic, partition and offsets of the records: (transitions, anomalies, dead-letter
/// offsets) per partition.
pub struct Expected {
    pub transitions: BTreeMap<i32, Vec<Value>>,
    pub anomalies: BTreeMap<i32, Vec<Value>>,
    pub dead_letters: BTreeMap<i32, Vec<i64>>,
    pub observations: u64,
    pub ignored: u64,
}

pub fn expected_from_replay(
    input: &BTreeMap<i32, Vec<Record>>,
    topic: &str,
    dir: &Path,
    extra: &[&str],
) -> Expected {
    let mut expected = Expected {
        transitions: BTreeMap::new(),
        anomalies: BTreeMap::new(),
        dead_letters: BTreeMap::new(),
        observations: 0,
        ignored: 0,
    };
    for (&partition, records) in input {
        let path = dir.join(format!("p{partition}.ndjson"));
        let mut text = Vec::new();
        for r in records {
            // One record a line: generated records never contain a raw newline.
            text.extend_from_slice(r.value.as_deref().unwrap_or(b""));
            text.push(b'\n');
        }
        std::fs::write(&path, text).unwrap();
        let dlq = dir.join(format!("p{partition}.dlq"));
        let out = Command::new(BIN)
            .args(["replay", "--until-ms", "0"])
            .args(extra)
            .arg("--input")
            .arg(&path)
            .arg("--dlq")
            .arg(&dlq)
            .output()
            .unwrap();
        assert!(out.status.success());
        let summary = String::from_utf8_lossy(&out.stderr);
        expected.observations += number_before(&summary, " observations");
        expected.ignored += number_before(&summary, " ignored");
        let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
        let fix = |mut v: Value| {
            if let Some(source) = v.get_mut("source").filter(|s| !s.is_null()) {
                let line = source["offset"].as_i64().unwrap() as usize;
                *source = serde_json::json!({"topic": topic, "partition": partition, "offset": offsets[line]});
            }
            v
        };
        let (mut transitions, mut anomalies) = (Vec::new(), Vec::new());
        for line in String::from_utf8(out.stdout).unwrap().lines() {
            let v = fix(serde_json::from_str(line).unwrap());
            if v["type"] == "session.transition" {
                transitions.push(v);
            } else {
                anomalies.push(v);
            }
        }
        expected.transitions.insert(partition, transitions);
        expected.anomalies.insert(partition, anomalies);
        let dead: Vec<i64> = std::fs::read_to_string(&dlq)
            .unwrap()
            .lines()
            .map(|l| {
                offsets[serde_json::from_str::<Value>(l).unwrap()["line"]
                    .as_u64()
                    .unwrap() as usize]
            })
            .collect();
        expected.dead_letters.insert(partition, dead);
    }
    expected
}

fn number_before(text: &str, marker: &str) -> u64 {
    let at = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {text}"));
    text[..at]
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

pub fn values(records: &[Record]) -> Vec<Value> {
    records.iter().map(Record::json).collect()
}

/// One Kafka test's world: the broker, an input topic of its own (created), an output topic
/// prefix, a consumer group and a directory for logs. `None` when no broker is configured
/// (see [`bootstrap`]).
pub struct Scenario {
    pub bootstrap: String,
    pub input: String,
    pub prefix: String,
    pub group: String,
    pub partitions: i32,
    pub dir: tempfile::TempDir,
}

impl Scenario {
    pub fn new(name: &str, partitions: i32) -> Option<Scenario> {
        let bootstrap = bootstrap()?;
        let scenario = Scenario {
            input: unique(&format!("{name}-in")),
            prefix: unique(&format!("{name}-out")),
            group: unique(&format!("{name}-group")),
            partitions,
            dir: tempfile::tempdir().unwrap(),
            bootstrap,
        };
        create_topics(&scenario.bootstrap, &[&scenario.input], partitions);
        Some(scenario)
    }

    /// Starts `sessionflow run` on this scenario's topics and group.
    pub fn start(&self, sets: &[&str]) -> Running {
        self.start_env(sets, &[])
    }

    /// [`Scenario::start`] through another bootstrap address (the fault proxy's, or the
    /// SASL_SSL listener's); the scenario's helpers still use the plain one.
    pub fn start_via(&self, bootstrap: &str, sets: &[&str], env: &[(&str, &str)]) -> Running {
        start_run_env(
            bootstrap,
            self.dir.path(),
            &self.group,
            &self.input,
            &self.prefix,
            sets,
            env,
        )
    }

    /// [`Scenario::start`] with extra environment variables.
    pub fn start_env(&self, sets: &[&str], env: &[(&str, &str)]) -> Running {
        self.start_via(&self.bootstrap, sets, env)
    }

    /// The group's committed input offset of each partition.
    pub fn committed(&self) -> Vec<i64> {
        committed(&self.bootstrap, &self.group, &self.input, self.partitions)
    }

    /// Input records committed so far, over all partitions (partitions with no commit yet
    /// count 0).
    pub fn committed_total(&self) -> i64 {
        self.committed().iter().filter(|o| **o > 0).sum()
    }

    /// Waits (bounded by `timeout`) until more than `records` input records are committed.
    pub fn wait_committed_beyond(&self, what: &str, records: i64, timeout: Duration) {
        wait_until(what, timeout, || self.committed_total() > records);
    }

    /// Runs `sessionflow run` with `sets` (idle advance and the future check off, for
    /// generated historical input) until every input offset present now is committed, stops
    /// it with SIGTERM, asserts a clean exit and returns its log.
    pub fn run_to_end(&self, sets: &[&str]) -> String {
        let mut all = vec![
            "lifecycle.idle_timeout_ms=0",
            "lifecycle.max_clock_skew_ms=0",
        ];
        all.extend_from_slice(sets);
        let run = self.start(&all);
        self.finish(
            run,
            "every input offset committed",
            Duration::from_secs(180),
        )
    }

    /// Waits (bounded by `timeout`) until the group has committed every input offset present
    /// now, stops `run` with SIGTERM, asserts a clean exit and returns its log.
    pub fn finish(&self, mut run: Running, what: &str, timeout: Duration) -> String {
        self.wait_all_committed(&run, what, timeout);
        let status = run.terminate();
        let log = run.log_text();
        assert!(status.success(), "{}", log_tail(&log, 40));
        log
    }

    /// Waits (bounded by `timeout`, `run`'s log in the failure) until the group has committed
    /// every input offset present now.
    pub fn wait_all_committed(&self, run: &Running, what: &str, timeout: Duration) {
        let ends = self.end_offsets();
        wait_for_run(run, what, timeout, || self.committed() == ends);
    }

    /// The input topic's end offsets.
    pub fn end_offsets(&self) -> Vec<i64> {
        end_offsets(&self.bootstrap, &self.input, self.partitions)
    }

    /// The input as it stands now, what `replay` derives from it, and the transitions
    /// sessionflow wrote (read_committed): what a test holds the output against.
    pub fn against_replay(&self) -> AgainstReplay {
        let input = read_all(&self.bootstrap, &self.input);
        let expected = expected_from_replay(&input, &self.input, self.dir.path(), &[]);
        let transitions = read_all(&self.bootstrap, &format!("{}.transitions", self.prefix));
        AgainstReplay {
            input,
            expected,
            transitions,
        }
    }
}

/// See [`Scenario::against_replay`].
pub struct AgainstReplay {
    pub input: BTreeMap<i32, Vec<Record>>,
    pub expected: Expected,
    pub transitions: BTreeMap<i32, Vec<Record>>,
}

impl AgainstReplay {
    /// See [`assert_exactly_once`].
    pub fn assert_exactly_once(&self) {
        assert_exactly_once(&self.expected, &self.transitions);
    }

    /// See [`assert_at_least_once`]; returns the duplicates.
    pub fn assert_at_least_once(&self) -> i64 {
        assert_at_least_once(&self.expected, &self.transitions, &self.input)
    }
}
