//! The consumer kit's example (docs/consuming.md): reads sessionflow's transitions topic from
//! the beginning to its current end, drops at-least-once duplicates by the idempotency key
//! `(session_id, from, to, at)`, keeps each session's last status and user, and prints one
//! JSON object: distinct transitions, duplicates dropped, live sessions in all and per user.
//! Usage: `cargo run --release --example live_sessions -- --brokers HOST:PORT [--topic T]`

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;

/// The fields of a `session.transition` (schemas/session.transition.v1.json) this consumer
/// uses; serde ignores the others, as the compatibility rule asks of readers.
#[derive(Deserialize)]
struct Transition {
    session_id: String,
    user_id: Option<String>,
    from: Option<String>,
    to: String,
    at: i64,
}

/// What is known of one session: its transitions applied so far (the idempotency keys
/// `(from, to, at)`; the session id is the map's key), and its last status and user.
#[derive(Default)]
struct Session {
    seen: HashSet<(Option<String>, String, i64)>,
    status: String,
    user_id: Option<String>,
}

/// The live sessions per user, built from the transitions in stream order.
#[derive(Default)]
struct LiveView {
    sessions: HashMap<String, Session>,
    transitions: u64,
    duplicates: u64,
}

impl LiveView {
    fn apply(&mut self, t: Transition) {
        let session = self.sessions.entry(t.session_id).or_default();
        if !session.seen.insert((t.from, t.to.clone(), t.at)) {
            self.duplicates += 1;
            return;
        }
        self.transitions += 1;
        session.status = t.to;
        session.user_id = t.user_id;
    }

    /// Live sessions per user id (`""` for sessions without one).
    fn live_per_user(&self) -> BTreeMap<&str, u64> {
        let mut per_user = BTreeMap::new();
        for session in self.sessions.values() {
            // Live statuses (SPEC section 1); terminal and unknown ones are not live.
            if matches!(session.status.as_str(), "active" | "pending") {
                *per_user
                    .entry(session.user_id.as_deref().unwrap_or(""))
                    .or_default() += 1;
            }
        }
        per_user
    }
}

struct Args {
    brokers: String,
    topic: String,
    /// `read_committed` for exactly-once deployments; the default reads everything.
    isolation: String,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        brokers: String::new(),
        topic: "clerk.session.transitions".into(),
        isolation: "read_uncommitted".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--brokers" => args.brokers = value,
            "--topic" => args.topic = value,
            "--isolation-level" => args.isolation = value,
            _ => bail!("unknown flag {flag} (--brokers, --topic, --isolation-level)"),
        }
    }
    if args.brokers.is_empty() {
        bail!("--brokers HOST:PORT is required");
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    // Partitions assigned, not subscribed: the view lives in memory, so it is rebuilt from
    // the start of the topic at every start and nothing is committed. (librdkafka wants a
    // group id for positions all the same; it is never joined.)
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", "sessionflow-live-sessions-example")
        .set("enable.auto.commit", "false")
        .set("isolation.level", &args.isolation)
        // End of partition is reported: under read_committed the last offset is a
        // transaction marker that the position may never pass.
        .set("enable.partition.eof", "true")
        .create()?;
    let timeout = Duration::from_secs(30);
    let metadata = consumer.fetch_metadata(Some(&args.topic), timeout)?;
    let Some(topic) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("topic {} not found", args.topic);
    };
    let mut assignment = TopicPartitionList::new();
    // The end of each partition now: the view is complete once every position reaches it.
    let mut ends = Vec::new();
    for partition in topic.partitions() {
        let (_, high) = consumer.fetch_watermarks(&args.topic, partition.id(), timeout)?;
        assignment.add_partition_offset(&args.topic, partition.id(), Offset::Beginning)?;
        ends.push((partition.id(), high));
    }
    consumer.assign(&assignment)?;

    let mut view = LiveView::default();
    let mut malformed = 0u64;
    let mut at_end: HashSet<i32> = HashSet::new();
    let started = Instant::now();
    loop {
        // One position call for every partition, not one each.
        let positions = consumer.position().ok();
        let caught_up = ends.iter().all(|&(partition, end)| {
            end == 0
                || at_end.contains(&partition)
                || positions
                    .as_ref()
                    .and_then(|list| list.find_partition(&args.topic, partition))
                    .and_then(|e| e.offset().to_raw())
                    .is_some_and(|p| p >= end)
        });
        if caught_up {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("not caught up with the topic's end offsets {ends:?} after 10 minutes");
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = match message {
            Ok(message) => message,
            Err(KafkaError::PartitionEOF(partition)) => {
                at_end.insert(partition);
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        match serde_json::from_slice::<Transition>(message.payload().unwrap_or_default()) {
            Ok(transition) => view.apply(transition),
            // A record that is not a transition is counted, not fatal: a reader of a shared
            // topic must not stop on one bad record.
            Err(_) => malformed += 1,
        }
    }
    let per_user = view.live_per_user();
    let summary = serde_json::json!({
        "transitions": view.transitions,
        "duplicates_dropped": view.duplicates,
        "malformed": malformed,
        "sessions": view.sessions.len(),
        "live_sessions": per_user.values().sum::<u64>(),
        "live_sessions_per_user": per_user,
    });
    println!("{summary}");
    Ok(())
}
