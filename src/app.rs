//! The live pipeline (`sessionflow run`): one select loop that consumes input batches, runs
//! them through the same parser, driver and engine as `replay` (one engine per assigned
//! partition), produces derived events and dead letters, and stores input offsets only once
//! everything they caused is acknowledged (at-least-once, SPEC section 6).
//!
//! Exactly-once (`delivery = "exactly_once"`): each batch's outputs, changelog writes and input
//! offsets go in one Kafka transaction. An aborted transaction rewinds the assigned partitions
//! (state restored from the read_committed changelog, input re-read from the committed
//! offsets); a fatal one (fenced by a newer instance) stops the process with an error.
//!
//! Shutdown order (SIGTERM/SIGINT, bounded by `drain_timeout_ms`): stop polling → send what
//! waits for retry → flush the producer → store and commit offsets → leave the group.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::changelog;
use crate::config::{Config, Delivery};
use crate::driver::{self, Stats};
use crate::engine::{Engine, EventSink, StateRecord};
use crate::kafka::{
    self, AssignmentChange, DeliveryState, InputContext, OutputContext, Phase, RetryMessage,
};
use crate::metrics as m;
use crate::model::{Cause, DerivedEvent, Outcome, Source, StatusCode};
use crate::output::write_event;
use crate::parse::{ErrorKind, ParseError, Parser};
use rdkafka::consumer::ConsumerGroupMetadata;

/// How often gauges, counters, idle partitions and retries are looked at.
const TICK: Duration = Duration::from_secs(1);

/// Bound on one transactional call (init, send offsets, commit, abort); a call that times out
/// is retried.
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Which output topic a message goes to.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Output {
    Transitions,
    Anomalies,
    DeadLetters,
    /// The state changelog (SPEC section 6).
    Changelog,
}

/// One output message, its bytes in the outbox's arena.
struct Outgoing {
    output: Output,
    partition: i32,
    key: Option<(usize, usize)>,
    payload: Option<(usize, usize)>,
    /// Dead letters: error kind, reason, source offset, and the original size when the value
    /// was cut to `max_record_bytes`.
    dead_letter: Option<(ErrorKind, String, i64, Option<usize>)>,
}

/// The outputs of the records of one batch, and which record caused which.
#[derive(Default)]
struct Outbox {
    arena: Vec<u8>,
    messages: Vec<Outgoing>,
    /// (partition, input offset or None for idle firing, number of messages).
    records: Vec<(i32, Option<i64>, u32)>,
    /// Messages already attributed to a closed record.
    closed: usize,
    /// The partition of the record being applied.
    partition: i32,
    /// Dead-letter values are cut to this many bytes (`limits.max_record_bytes`).
    dead_letter_limit: usize,
}

impl Outbox {
    fn clear(&mut self) {
        self.arena.clear();
        self.messages.clear();
        self.records.clear();
        self.closed = 0;
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> (usize, usize) {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        (start, self.arena.len())
    }

    /// Closes the current record: every message since the last close is its.
    /// Queues a partition's progress record when it moved since the last one written. It is
    /// released after every earlier record of the partition, so `applied_through` holds.
    fn watermark(&mut self, partition: i32, state: &mut PartitionState) {
        let now = changelog::Progress {
            watermark: state.engine.watermark(),
            max_event_time: state.engine.max_event_time(),
            applied_through: state.last_offset,
        };
        if now == state.written {
            return;
        }
        state.written = now;
        let key = self.push_bytes(changelog::WATERMARK_KEY);
        let start = self.arena.len();
        changelog::encode_watermark(&mut self.arena, &now);
        let payload = (start, self.arena.len());
        self.messages.push(Outgoing {
            output: Output::Changelog,
            partition,
            key: Some(key),
            payload: Some(payload),
            dead_letter: None,
        });
        self.close_record(partition, None);
    }

    fn close_record(&mut self, partition: i32, offset: Option<i64>) {
        let count = (self.messages.len() - self.closed) as u32;
        self.closed = self.messages.len();
        self.records.push((partition, offset, count));
    }

    /// A dead letter keeps the record's key and value bytes. A value beyond
    /// `max_record_bytes` (a `too_large` record) is cut to that size, and the header
    /// `sessionflow-original-bytes` gives its size: the whole of it may exceed what the
    /// producer and the broker accept, and a dead letter that can never be written would
    /// block its partition's offsets for good.
    fn dead_letter(&mut self, message: &BorrowedMessage<'_>, error: &ParseError) {
        let key = message.key().map(|k| self.push_bytes(k));
        let value = message.payload();
        let cut = value
            .filter(|v| v.len() > self.dead_letter_limit)
            .map(<[u8]>::len);
        let payload = value.map(|p| self.push_bytes(&p[..p.len().min(self.dead_letter_limit)]));
        self.messages.push(Outgoing {
            output: Output::DeadLetters,
            partition: message.partition(),
            key,
            payload,
            dead_letter: Some((error.kind, error.to_string(), message.offset(), cut)),
        });
    }
}

impl EventSink for Outbox {
    fn wants_state(&self) -> bool {
        true
    }

    fn state_changed(&mut self, session_id: &str, state: Option<&StateRecord<'_>>) {
        let key = self.push_bytes(session_id.as_bytes());
        let payload = state.map(|s| {
            let start = self.arena.len();
            changelog::encode_state(&mut self.arena, s);
            (start, self.arena.len())
        });
        self.messages.push(Outgoing {
            output: Output::Changelog,
            partition: self.partition,
            key: Some(key),
            payload,
            dead_letter: None,
        });
    }

    fn emit(&mut self, event: &DerivedEvent<'_>) {
        let (output, session_id) = match event {
            DerivedEvent::Transition(t) => {
                if let (Some(age), Some(code)) = (t.session_age_ms, StatusCode::known(t.to)) {
                    if code.is_terminal() {
                        metrics::histogram!(m::SESSION_LIFETIME_SECONDS, "end" => code.label())
                            .record(age.max(0) as f64 / 1000.0);
                    }
                }
                (Output::Transitions, t.session_id)
            }
            DerivedEvent::Anomaly(a) => (Output::Anomalies, a.session_id),
        };
        let key = self.push_bytes(session_id.as_bytes());
        let start = self.arena.len();
        write_event(&mut self.arena, event);
        let payload = (start, self.arena.len());
        self.messages.push(Outgoing {
            output,
            partition: self.partition,
            key: Some(key),
            payload: Some(payload),
            dead_letter: None,
        });
    }
}

/// State of one assigned partition.
struct PartitionState {
    engine: Engine,
    last_message: Instant,
    /// The offset of the last record applied.
    last_offset: Option<i64>,
    /// Input up to here is already in the restored state: skipped, not applied again.
    skip_through: Option<i64>,
    /// The progress record last queued for the changelog.
    written: changelog::Progress,
}

impl PartitionState {
    fn new(engine: Engine, restored: changelog::Progress) -> Self {
        PartitionState {
            engine,
            last_message: Instant::now(),
            last_offset: restored.applied_through,
            skip_through: restored.applied_through,
            written: restored,
        }
    }
}

/// The running pipeline.
struct Pipeline {
    config: Config,
    consumer: Arc<StreamConsumer<InputContext>>,
    producer: Arc<ThreadedProducer<OutputContext>>,
    delivery: Arc<DeliveryState>,
    parser: Parser,
    partitions: HashMap<i32, PartitionState>,
    stats: Stats,
    exported: Stats,
    exported_delivery_errors: u64,
    outbox: Outbox,
    /// Partition counts of the output topics (transitions, anomalies, dead letters,
    /// changelog).
    output_partitions: [i32; 4],
    ready: Arc<AtomicBool>,
    progress: Arc<std::sync::Mutex<Progress>>,
    /// Changelog writes waiting for their record's outputs to be acknowledged.
    stash: HashMap<kafka::Ticket, Vec<RetryMessage>>,
    /// Exactly-once: batches go through transactions.
    transactional: bool,
    /// Set when the pipeline cannot go on (a fenced transactional producer).
    fatal: Option<anyhow::Error>,
    /// When the transactional producer was last replaced (see `replace_producer`).
    producer_replacements: Vec<Instant>,
}

/// What the pipeline has done so far, refreshed once a second (for status lines).
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub stats: Stats,
    pub sessions_held: u64,
    /// Records behind the high watermarks of the assigned partitions.
    pub consumer_lag: i64,
}

/// Handles the pipeline shares with its host: readiness for `/readyz` and progress.
#[derive(Clone, Default)]
pub struct Shared {
    pub ready: Arc<AtomicBool>,
    pub progress: Arc<std::sync::Mutex<Progress>>,
}

/// Runs until `shutdown` is cancelled. Errors are start-up problems (configuration, topics,
/// clients).
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    shared: Shared,
) -> anyhow::Result<()> {
    let ready = shared.ready.clone();
    let transactional = config.delivery == Delivery::ExactlyOnce;
    let topics = &config.topics;
    let create = topics
        .create
        .then_some((topics.create_partitions, topics.create_replication_factor));
    let outputs = [
        topics.transitions.as_str(),
        topics.anomalies.as_str(),
        topics.dead_letters.as_str(),
    ];
    let counts = tokio::select! {
        counts = kafka::ensure_topics(
            &config.kafka,
            &topics.input,
            &outputs,
            create,
            kafka::max_message_bytes(config.limits.max_record_bytes),
        )
            => counts.context("checking topics")?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let input_partitions = counts[&topics.input];
    kafka::ensure_changelog(
        &config.kafka,
        &topics.changelog,
        input_partitions,
        topics.create_replication_factor,
    )
    .await
    .context("checking the state changelog")?;
    let output_partitions = [
        counts[&topics.transitions],
        counts[&topics.anomalies],
        counts[&topics.dead_letters],
        input_partitions,
    ];

    let delivery = DeliveryState::new();
    let producer = Arc::new(kafka::output_producer(
        &config.kafka,
        delivery.clone(),
        config.limits.max_record_bytes,
        transactional.then_some(config.transactional_id.as_str()),
    )?);
    if transactional && !init_transactions(&producer, &config, &shutdown).await? {
        return Ok(());
    }
    let context = InputContext {
        topic: topics.input.clone(),
        changes: Default::default(),
        lag: Default::default(),
        delivery: delivery.clone(),
        drain: Default::default(),
    };
    let mut consumer_config = kafka::base_config(&config.kafka);
    // Exactly-once: offsets are committed by the transactions, and input written by
    // transactional producers is read only once committed.
    let (auto_commit, isolation) = if transactional {
        ("false", "read_committed")
    } else {
        ("true", "read_uncommitted")
    };
    for (key, value) in [
        ("group.id", config.group_id.as_str()),
        ("enable.auto.commit", auto_commit),
        ("isolation.level", isolation),
        ("auto.commit.interval.ms", "1000"),
        ("enable.auto.offset.store", "false"),
        ("auto.offset.reset", "earliest"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("statistics.interval.ms", "1000"),
        // Larger fetches keep the local queue full while the broker also takes our writes
        // (measured: about 1.5x the throughput of the 1 MiB default, docs/benchmarks.md).
        ("max.partition.fetch.bytes", "10485760"),
        // When the local queue is over its limits, librdkafka waits this long before it
        // fetches again (default 1 s): a pipeline that drains the queue in less than that
        // then waits for input with nothing to do (measured: the loop idle about a third of
        // the time, and 1.9x the throughput at 10 ms, docs/benchmarks.md).
        ("fetch.queue.backoff.ms", "10"),
    ] {
        if consumer_config.get(key).is_none() || key == "group.id" {
            consumer_config.set(key, value);
        }
    }
    let consumer: StreamConsumer<InputContext> = consumer_config
        .create_with_context(context)
        .map_err(|e| kafka::client_error("consumer", e))?;
    let consumer = Arc::new(consumer);
    // Exactly-once has nothing to drain on revocation: each batch's transaction has ended
    // before the consumer is polled again.
    if !transactional {
        let producer = producer.clone();
        let timeout = config.drain_timeout;
        let drain: Box<dyn Fn() + Send + Sync> = Box::new(move || {
            if let Err(error) = producer.flush(timeout) {
                tracing::warn!(%error, "Outputs not all acknowledged within drain_timeout_ms.");
            }
        });
        if let Ok(mut slot) = consumer.context().drain.lock() {
            *slot = Some(drain);
        }
    }
    consumer
        .subscribe(&[&topics.input])
        .context("subscribing to the input topic")?;
    tracing::info!(topic = %topics.input, group = %config.group_id, "Consuming.");

    let dead_letter_limit = config.limits.max_record_bytes;
    let mut pipeline = Pipeline {
        parser: Parser::new(config.limits),
        config,
        consumer,
        producer,
        delivery,
        partitions: HashMap::new(),
        stats: Stats::new(),
        exported: Stats::new(),
        exported_delivery_errors: 0,
        outbox: Outbox {
            dead_letter_limit,
            ..Outbox::default()
        },
        output_partitions,
        ready,
        progress: shared.progress,
        stash: HashMap::new(),
        transactional,
        fatal: None,
        producer_replacements: Vec::new(),
    };
    pipeline.run_loop(shutdown).await;
    pipeline.shut_down().await;
    match pipeline.fatal {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// Exactly-once start-up: registers the transactional id, which also aborts whatever a
/// crashed predecessor with the same id left open. A broker that does not answer is retried
/// with a logged reason. Returns false when shut down meanwhile.
async fn init_transactions(
    producer: &Arc<ThreadedProducer<OutputContext>>,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    loop {
        let attempt = producer.clone();
        let result = tokio::task::spawn_blocking(move || {
            attempt.init_transactions(TRANSACTION_CALL_TIMEOUT)
        })
        .await
        .context("initialising transactions")?;
        match result {
            Ok(()) => {
                tracing::info!(transactional_id = %config.transactional_id, "Transactions initialised (exactly-once).");
                return Ok(true);
            }
            Err(KafkaError::Transaction(error)) if error.is_retriable() => {
                tracing::warn!(%error, "Could not initialise transactions yet; retrying.");
            }
            Err(error) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "initialising transactions for transactional.id {:?}",
                    config.transactional_id
                )))
            }
        }
        tokio::select! {
            () = tokio::time::sleep(config.retry_backoff) => {}
            () = shutdown.cancelled() => return Ok(false),
        }
    }
}

/// Waits until the producer holds no undelivered message (bounded). commit_transaction
/// flushes by itself, but its flush polls for delivery reports that the threaded producer's
/// own thread takes, and so waits out its 100 ms poll timeout on every commit (measured:
/// 101 ms per commit, a tenth of that when the reports are awaited here first).
fn wait_delivered(producer: &ThreadedProducer<OutputContext>, bound: Duration) {
    let deadline = Instant::now() + bound;
    while producer.in_flight_count() > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// How a transaction ended.
enum TransactionEnd {
    Committed,
    /// Aborted: nothing of it is visible; the batch must be derived again.
    Aborted,
    /// The producer cannot go on (fenced by a newer instance with the same id, or a broken
    /// protocol state).
    Fatal(KafkaError),
}

/// What to do after a failed transactional call.
fn classify(error: &KafkaError) -> Option<TransactionEnd> {
    match error {
        KafkaError::Transaction(e) if e.is_fatal() => Some(TransactionEnd::Fatal(error.clone())),
        KafkaError::Transaction(e) if e.txn_requires_abort() => Some(TransactionEnd::Aborted),
        KafkaError::Transaction(e) if e.is_retriable() => None,
        _ => Some(TransactionEnd::Aborted),
    }
}

/// Sends the batch's input offsets to the open transaction and commits it, retrying calls
/// that time out or meet a broker that is away; aborts when the transaction cannot commit.
/// Blocking (librdkafka's transactional calls wait for the coordinator).
fn finish_transaction(
    producer: &ThreadedProducer<OutputContext>,
    offsets: Option<(&TopicPartitionList, ConsumerGroupMetadata)>,
    backoff: Duration,
) -> TransactionEnd {
    let mut offsets = offsets.filter(|(list, _)| list.count() > 0);
    let failure = loop {
        let result = match &offsets {
            Some((list, group)) => producer
                .send_offsets_to_transaction(list, group, TRANSACTION_CALL_TIMEOUT)
                .map(|()| offsets = None),
            None => {
                wait_delivered(producer, TRANSACTION_CALL_TIMEOUT);
                let committed = producer.commit_transaction(TRANSACTION_CALL_TIMEOUT);
                if committed.is_ok() {
                    return TransactionEnd::Committed;
                }
                committed
            }
        };
        if let Err(error) = result {
            match classify(&error) {
                None => {
                    tracing::warn!(%error, "Transaction not committed yet; retrying.");
                    std::thread::sleep(backoff);
                }
                Some(end) => {
                    tracing::warn!(%error, "Transaction cannot commit.");
                    break end;
                }
            }
        }
    };
    match failure {
        TransactionEnd::Fatal(error) => TransactionEnd::Fatal(error),
        _ => loop {
            match producer.abort_transaction(TRANSACTION_CALL_TIMEOUT) {
                Ok(()) => return TransactionEnd::Aborted,
                Err(error) => match classify(&error) {
                    Some(TransactionEnd::Fatal(error)) => return TransactionEnd::Fatal(error),
                    _ => {
                        tracing::warn!(%error, "Transaction not aborted yet; retrying.");
                        std::thread::sleep(backoff);
                    }
                },
            }
        },
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Pipeline {
    async fn run_loop(&mut self, shutdown: CancellationToken) {
        let consumer = self.consumer.clone();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.fatal.is_some() {
                break;
            }
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.apply_changes(&mut Vec::new());
                    self.on_tick().await;
                    continue;
                }
                message = consumer.recv() => message,
            };
            // Exactly-once: one transaction per batch, and each costs a few milliseconds of
            // coordinator round trips, so its batch takes all that is ready, up to a bound.
            let limit = if self.transactional {
                self.config.transaction_max_records
            } else {
                self.config.batch_size
            };
            let mut batch = Vec::with_capacity(limit.min(65_536));
            match first {
                Ok(message) => batch.push(message),
                Err(error) => {
                    tracing::warn!(%error, "Consumer error; retrying.");
                    tokio::time::sleep(self.config.retry_backoff).await;
                    continue;
                }
            }
            while batch.len() < limit {
                match consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(message),
                    Some(Err(error)) => {
                        tracing::warn!(%error, "Consumer error.");
                        break;
                    }
                    None => break,
                }
            }
            self.apply_changes(&mut batch);
            self.process(&batch).await;
            drop(batch);
            self.store_offsets();
        }
    }

    /// Takes the rebalances seen by the consumer: revoked partitions lose their engine (their
    /// outputs were drained and committed in the callback) and their not yet processed
    /// messages (uncommitted, so the next owner reads them); assigned ones get a fresh engine.
    fn apply_changes(&mut self, batch: &mut Vec<BorrowedMessage<'_>>) {
        let changes = match self.consumer.context().changes.lock() {
            Ok(mut changes) => std::mem::take(&mut *changes),
            Err(_) => return,
        };
        for change in changes {
            match change {
                AssignmentChange::Revoked(partitions) => {
                    for p in &partitions {
                        self.partitions.remove(p);
                    }
                    // Their unwritten changelog writes go with them: the records are not
                    // committed, so the next owner re-derives them.
                    self.stash
                        .retain(|ticket, _| !partitions.contains(&ticket.0));
                    batch.retain(|m| !partitions.contains(&m.partition()));
                }
                AssignmentChange::Assigned(partitions) => {
                    // Not ready while restoring: no input of these partitions is processed
                    // before their state is back.
                    self.ready.store(false, Ordering::Relaxed);
                    let new: Vec<i32> = partitions
                        .into_iter()
                        .filter(|p| !self.partitions.contains_key(p))
                        .collect();
                    self.restore(&new);
                }
            }
        }
        self.ready
            .store(!self.partitions.is_empty(), Ordering::Relaxed);
    }

    /// Restores partitions from their changelog. Exactly-once: first waits until their
    /// committed offsets are stable (no transaction of a previous owner still open on them),
    /// so that the read_committed changelog holds everything up to those offsets. Returns
    /// the committed offsets (exactly-once only).
    fn restore(&mut self, partitions: &[i32]) -> Option<TopicPartitionList> {
        if partitions.is_empty() {
            return None;
        }
        let committed = if self.transactional {
            let mut list = TopicPartitionList::new();
            for &p in partitions {
                list.add_partition(&self.config.topics.input, p);
            }
            match self
                .consumer
                .committed_offsets(list, TRANSACTION_CALL_TIMEOUT)
            {
                Ok(list) => Some(list),
                Err(error) => {
                    tracing::warn!(%error, "Could not read committed offsets before restoring.");
                    None
                }
            }
        } else {
            None
        };
        for &p in partitions {
            let (engine, progress) = restore_partition(&self.config, p);
            self.partitions
                .insert(p, PartitionState::new(engine, progress));
        }
        committed
    }

    /// Exactly-once, after an aborted transaction: every assigned partition goes back to its
    /// last committed transaction — state from the changelog, input from the committed
    /// offset — and the aborted batch is read and derived again.
    fn rewind(&mut self) {
        self.ready.store(false, Ordering::Relaxed);
        let partitions: Vec<i32> = self.partitions.keys().copied().collect();
        self.partitions.clear();
        if let Ok(mut retries) = self.delivery.retries.lock() {
            retries.clear();
        }
        let committed = self.restore(&partitions);
        let mut seek = TopicPartitionList::new();
        for &p in &partitions {
            let offset = committed
                .as_ref()
                .and_then(|list| list.find_partition(&self.config.topics.input, p))
                .map(|e| e.offset())
                .filter(|o| matches!(o, Offset::Offset(_)))
                .unwrap_or(Offset::Beginning);
            let _ = seek.add_partition_offset(&self.config.topics.input, p, offset);
        }
        match self
            .consumer
            .seek_partitions(seek, TRANSACTION_CALL_TIMEOUT)
        {
            Ok(_) => tracing::info!(
                ?partitions,
                "Rewound to the last committed transaction after an abort."
            ),
            Err(error) => {
                self.fatal = Some(
                    anyhow::Error::new(error).context("seeking back after an aborted transaction"),
                );
            }
        }
        self.ready
            .store(!self.partitions.is_empty(), Ordering::Relaxed);
    }

    /// Sends the outbox: at-least-once through the offset tracker, exactly-once in one
    /// transaction with `offsets` (the next input offset of each partition of the batch).
    async fn dispatch(&mut self, offsets: Option<TopicPartitionList>) {
        if !self.transactional {
            self.send_outbox().await;
            return;
        }
        if let Err(error) = self.producer.begin_transaction() {
            self.fail_transaction(error);
            return;
        }
        let topics = &self.config.topics;
        for message in &self.outbox.messages {
            let outgoing = self.outgoing(topics, message, 0);
            self.send(outgoing).await;
        }
        let group = self.consumer.group_metadata();
        let offsets = match (offsets.as_ref(), group) {
            (Some(list), Some(group)) => Some((list, group)),
            (Some(list), None) if list.count() > 0 => {
                // Not in the group (yet): offsets cannot go with this transaction.
                self.fail_transaction(KafkaError::MessageProduction(RDKafkaErrorCode::State));
                return;
            }
            _ => None,
        };
        let producer = &self.producer;
        let backoff = self.config.retry_backoff;
        let end = tokio::task::block_in_place(|| finish_transaction(producer, offsets, backoff));
        match end {
            TransactionEnd::Committed => {
                metrics::counter!(m::TRANSACTIONS_TOTAL, "outcome" => "committed").increment(1);
            }
            TransactionEnd::Aborted => {
                metrics::counter!(m::TRANSACTIONS_TOTAL, "outcome" => "aborted").increment(1);
                self.rewind();
            }
            TransactionEnd::Fatal(error) => self.fail_transaction(error),
        }
    }

    /// A transactional call failed outside commit: fatal errors stop the pipeline, others
    /// abort and rewind.
    fn fail_transaction(&mut self, error: KafkaError) {
        if let Some(TransactionEnd::Fatal(_)) = classify(&error) {
            self.replace_producer(error);
            return;
        }
        tracing::warn!(%error, "Aborting the transaction.");
        let _ = self.producer.abort_transaction(TRANSACTION_CALL_TIMEOUT);
        metrics::counter!(m::TRANSACTIONS_TOTAL, "outcome" => "aborted").increment(1);
        self.rewind();
    }

    /// A fatal transactional error. Usually the coordinator aborted a transaction that
    /// outlived `transaction.timeout.ms` (a broker away for longer) and bumped the producer
    /// epoch: a new producer with the same id takes over, and the partitions rewind. If that
    /// keeps happening, another live instance uses the same transactional id: stop.
    fn replace_producer(&mut self, error: KafkaError) {
        let now = Instant::now();
        self.producer_replacements
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        self.producer_replacements.push(now);
        if self.producer_replacements.len() > 3 {
            tracing::error!(%error, "Transactional producer fenced repeatedly: another instance uses transactional id {:?}; stopping.", self.config.transactional_id);
            self.fatal = Some(anyhow::Error::new(error).context(format!(
                "the transactional producer was fenced repeatedly (is transactional id {:?} used by another instance?)",
                self.config.transactional_id
            )));
            return;
        }
        tracing::warn!(%error, "Transactional producer failed; replacing it and rewinding.");
        metrics::counter!(m::TRANSACTIONS_TOTAL, "outcome" => "aborted").increment(1);
        let replaced = kafka::output_producer(
            &self.config.kafka,
            self.delivery.clone(),
            self.config.limits.max_record_bytes,
            Some(&self.config.transactional_id),
        )
        .map_err(anyhow::Error::new)
        .and_then(|producer| {
            let mut attempts = 0;
            loop {
                attempts += 1;
                match tokio::task::block_in_place(|| {
                    producer.init_transactions(TRANSACTION_CALL_TIMEOUT)
                }) {
                    Ok(()) => return Ok(producer),
                    Err(KafkaError::Transaction(e)) if e.is_retriable() && attempts < 10 => {
                        tracing::warn!(error = %e, "Could not initialise transactions yet; retrying.");
                        std::thread::sleep(self.config.retry_backoff);
                    }
                    Err(e) => return Err(anyhow::Error::new(e)),
                }
            }
        });
        match replaced {
            Ok(producer) => {
                self.producer = Arc::new(producer);
                self.rewind();
            }
            Err(error) => {
                self.fatal = Some(error.context("replacing the transactional producer"));
            }
        }
    }

    /// Sends one message with the pipeline's producer (see `send_with_backoff`).
    async fn send(&self, message: OutgoingRef<'_>) {
        send_with_backoff(
            &self.producer,
            message,
            self.config.retry_backoff,
            &self.delivery,
        )
        .await;
    }

    /// One outbox message as the producer takes it: topic and partition of its output.
    fn outgoing<'a>(
        &'a self,
        topics: &'a crate::config::Topics,
        message: &'a Outgoing,
        opaque: usize,
    ) -> OutgoingRef<'a> {
        let arena = &self.outbox.arena;
        let bytes = |range: Option<(usize, usize)>| range.map(|(s, e)| &arena[s..e]);
        let (topic, partitions) = match message.output {
            Output::Transitions => (&topics.transitions, self.output_partitions[0]),
            Output::Anomalies => (&topics.anomalies, self.output_partitions[1]),
            Output::DeadLetters => (&topics.dead_letters, self.output_partitions[2]),
            Output::Changelog => (&topics.changelog, self.output_partitions[3]),
        };
        OutgoingRef {
            topic,
            // Co-partitioned: output partition p holds what input partition p caused.
            partition: message.partition % partitions.max(1),
            key: bytes(message.key),
            payload: bytes(message.payload),
            headers: message
                .dead_letter
                .as_ref()
                .map(|(kind, reason, offset, original_bytes)| {
                    let headers = dead_letter_headers(
                        kind.as_str(),
                        reason,
                        &topics.input,
                        message.partition,
                        *offset,
                    );
                    match original_bytes {
                        Some(n) => headers.insert(Header {
                            key: "sessionflow-original-bytes",
                            value: Some(&n.to_string()),
                        }),
                        None => headers,
                    }
                }),
            opaque,
        }
    }

    /// Parses and applies one batch, then sends what it caused.
    async fn process(&mut self, batch: &[BorrowedMessage<'_>]) {
        if batch.is_empty() {
            return;
        }
        self.outbox.clear();
        let wall_clock = now_ms();
        let received = Instant::now();
        let payloads: Vec<&[u8]> = batch.iter().map(|m| m.payload().unwrap_or(b"")).collect();
        let topic = self.config.topics.input.clone();
        let (partitions, stats, outbox, engine_config) = (
            &mut self.partitions,
            &mut self.stats,
            &mut self.outbox,
            self.config.engine,
        );
        self.parser.parse_batch(&payloads, |i, result| {
            let message = &batch[i];
            let partition = message.partition();
            let state = partitions.entry(partition).or_insert_with(|| {
                PartitionState::new(Engine::new(engine_config), changelog::Progress::default())
            });
            state.last_message = received;
            outbox.partition = partition;
            if state
                .skip_through
                .is_some_and(|through| message.offset() <= through)
            {
                // Already applied before a restart: its outputs were acknowledged and its
                // state written. Applying it again against newer state could derive anew.
                outbox.close_record(partition, Some(message.offset()));
                return;
            }
            state.last_offset = Some(message.offset());
            let result = if message.payload().is_none() {
                Err(ParseError::no_value())
            } else {
                result
            };
            match result {
                Ok(parsed) => {
                    let source = Source {
                        topic: &topic,
                        partition,
                        offset: message.offset(),
                    };
                    driver::apply_record(
                        &mut state.engine,
                        &parsed,
                        source,
                        Some(wall_clock),
                        stats,
                        outbox,
                    );
                }
                Err(error) => {
                    stats.count_invalid(&error);
                    outbox.dead_letter(message, &error);
                }
            }
            outbox.close_record(partition, Some(message.offset()));
        });
        // Watermark records of the partitions this batch touched.
        let touched: std::collections::BTreeSet<i32> =
            batch.iter().map(|m| m.partition()).collect();
        for p in touched {
            if let Some(state) = self.partitions.get_mut(&p) {
                self.outbox.watermark(p, state);
            }
        }
        let mut offsets = None;
        if self.transactional {
            // The next offset to read of each partition: what the transaction commits.
            let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
            for m in batch {
                let o = next.entry(m.partition()).or_default();
                *o = (*o).max(m.offset() + 1);
            }
            let mut list = TopicPartitionList::new();
            for (p, o) in next {
                let _ = list.add_partition_offset(&topic, p, Offset::Offset(o));
            }
            offsets = Some(list);
        }
        // Event lag, sampled once per batch per partition: wall clock minus the newest event
        // time the partition has seen.
        for state in self.partitions.values() {
            if let Some(event_time) = state.engine.max_event_time() {
                metrics::histogram!(m::EVENT_LAG_SECONDS)
                    .record((wall_clock - event_time).max(0) as f64 / 1000.0);
            }
        }
        self.dispatch(offsets).await;
    }

    /// Registers the outbox's records with the tracker (one lock), sends their derived
    /// messages straight from the outbox's arena (librdkafka copies them), and stashes their
    /// changelog writes until the tracker releases them (see `kafka::offsets`).
    async fn send_outbox(&mut self) {
        let mut tickets = Vec::with_capacity(self.outbox.records.len());
        let mut first = 0;
        if let Ok(mut tracker) = self.delivery.tracker.lock() {
            for &(partition, offset, count) in &self.outbox.records {
                let messages = &self.outbox.messages[first..first + count as usize];
                let changelog = messages
                    .iter()
                    .filter(|m| m.output == Output::Changelog)
                    .count() as u32;
                let ticket = tracker.register(partition, offset, count - changelog, changelog);
                tickets.push((ticket, first, count as usize));
                first += count as usize;
            }
        }
        let topics = &self.config.topics;
        for (ticket, first, count) in tickets {
            for message in &self.outbox.messages[first..first + count] {
                if message.output == Output::Changelog {
                    let write = self.outgoing(
                        topics,
                        message,
                        kafka::ticket_to_opaque(ticket, Phase::Changelog),
                    );
                    let write = write.to_retry(None);
                    self.stash.entry(ticket).or_default().push(write);
                    continue;
                }
                let outgoing = self.outgoing(
                    topics,
                    message,
                    kafka::ticket_to_opaque(ticket, Phase::Output),
                );
                self.send(outgoing).await;
            }
        }
        self.release_changelog().await;
    }

    /// Sends the changelog writes of records whose outputs are all acknowledged.
    async fn release_changelog(&mut self) {
        let released = match self.delivery.tracker.lock() {
            Ok(mut tracker) => tracker.take_releasable(),
            Err(_) => return,
        };
        for ticket in released {
            let Some(messages) = self.stash.remove(&ticket) else {
                continue;
            };
            for message in &messages {
                let outgoing = OutgoingRef::from(message);
                self.send(outgoing).await;
            }
        }
    }

    /// Hands committable offsets to the consumer; auto-commit sends them in batches.
    fn store_offsets(&mut self) {
        let moved = match self.delivery.tracker.lock() {
            Ok(mut tracker) => tracker.take_committable(),
            Err(_) => return,
        };
        if moved.is_empty() {
            return;
        }
        let mut list = TopicPartitionList::new();
        for (partition, offset) in moved {
            if self.partitions.contains_key(&partition) {
                let _ = list.add_partition_offset(
                    &self.config.topics.input,
                    partition,
                    Offset::Offset(offset),
                );
            }
        }
        if let Err(error) = self.consumer.store_offsets(&list) {
            tracing::debug!(%error, "Could not store offsets (partition revoked meanwhile?).");
        }
    }

    /// Once a second: retries, idle partitions, offsets and metrics.
    async fn on_tick(&mut self) {
        if !self.transactional {
            self.send_retries().await;
            self.release_changelog().await;
        }
        self.advance_idle_partitions().await;
        self.store_offsets();
        self.export_metrics();
    }

    async fn send_retries(&mut self) {
        let retries: Vec<RetryMessage> = match self.delivery.retries.lock() {
            Ok(mut queue) => queue.drain(..).collect(),
            Err(_) => return,
        };
        for retry in &retries {
            self.send(OutgoingRef::from(retry)).await;
        }
    }

    /// SPEC section 3: a caught-up partition that read nothing for `idle_timeout_ms`
    /// advances its watermark to `now − allowed_lateness`.
    async fn advance_idle_partitions(&mut self) {
        let Some(idle_timeout) = self.config.idle_timeout else {
            return;
        };
        let lag = self
            .consumer
            .context()
            .lag
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let now = Instant::now();
        let wall_clock = now_ms();
        self.outbox.clear();
        for (&partition, state) in &mut self.partitions {
            let caught_up = lag.get(&partition).is_some_and(|&l| l == 0);
            if caught_up && now.duration_since(state.last_message) >= idle_timeout {
                self.outbox.partition = partition;
                driver::advance_watermark(
                    &mut state.engine,
                    wall_clock.saturating_sub(self.config.engine.allowed_lateness_ms),
                    &mut self.stats,
                    &mut self.outbox,
                );
                self.outbox.close_record(partition, None);
                self.outbox.watermark(partition, state);
            }
        }
        self.outbox.records.retain(|r| r.2 > 0);
        if !self.outbox.records.is_empty() {
            self.dispatch(None).await;
        }
    }

    /// Counters grow by what the driver counted since the last export.
    fn export_metrics(&mut self) {
        let (now, before) = (&self.stats, &self.exported);
        for outcome in Outcome::ALL {
            let delta = now.outcome(outcome) - before.outcome(outcome);
            if delta > 0 {
                metrics::counter!(m::RECORDS_TOTAL, "outcome" => outcome.as_str()).increment(delta);
            }
        }
        let ignored = now.ignored - before.ignored;
        if ignored > 0 {
            metrics::counter!(m::RECORDS_TOTAL, "outcome" => "ignored").increment(ignored);
        }
        let invalid = now.invalid_total() - before.invalid_total();
        if invalid > 0 {
            metrics::counter!(m::RECORDS_TOTAL, "outcome" => "invalid").increment(invalid);
        }
        for kind in ErrorKind::ALL {
            let delta = now.invalid_of(kind) - before.invalid_of(kind);
            if delta > 0 {
                metrics::counter!(m::DEAD_LETTERS_TOTAL, "kind" => kind.as_str()).increment(delta);
            }
        }
        let previous: HashMap<(&str, &str, Cause), u64> = before
            .transition_counts()
            .map(|(f, t, c, n)| ((f, t, c), n))
            .collect();
        for (from, to, cause, n) in now.transition_counts() {
            let delta = n - previous.get(&(from, to, cause)).copied().unwrap_or(0);
            if delta > 0 {
                metrics::counter!(m::TRANSITIONS_TOTAL, "from" => from, "to" => to, "cause" => cause.as_str())
                    .increment(delta);
            }
        }
        for kind in crate::model::AnomalyKind::ALL {
            let delta = now.anomalies[kind as usize] - before.anomalies[kind as usize];
            if delta > 0 {
                metrics::counter!(m::ANOMALIES_TOTAL, "kind" => kind.as_str()).increment(delta);
            }
        }
        self.exported = self.stats.clone();
        let errors = self.delivery.delivery_errors.load(Ordering::Relaxed);
        if errors > self.exported_delivery_errors {
            metrics::counter!(m::DELIVERY_ERRORS_TOTAL)
                .increment(errors - self.exported_delivery_errors);
            self.exported_delivery_errors = errors;
        }

        let mut by_status: HashMap<&str, u64> = HashMap::new();
        let wall_clock = now_ms();
        for (partition, state) in &self.partitions {
            for (status, n) in state.engine.sessions_by_status() {
                *by_status.entry(status).or_default() += n;
            }
            if let Some(w) = state.engine.watermark() {
                metrics::gauge!(m::WATERMARK_LAG_SECONDS, "partition" => partition.to_string())
                    .set((wall_clock - w) as f64 / 1000.0);
            }
        }
        let sessions_held: u64 = by_status.values().sum();
        for (status, n) in by_status {
            metrics::gauge!(m::SESSIONS, "status" => status).set(n as f64);
        }
        let mut consumer_lag = 0;
        if let Ok(lag) = self.consumer.context().lag.lock() {
            for partition in self.partitions.keys() {
                if let Some(&l) = lag.get(partition) {
                    if l >= 0 {
                        consumer_lag += l;
                        metrics::gauge!(m::CONSUMER_LAG_RECORDS, "partition" => partition.to_string())
                            .set(l as f64);
                    }
                }
            }
        }
        metrics::gauge!(m::READY).set(f64::from(u8::from(self.ready.load(Ordering::Relaxed))));
        self.publish_progress(sessions_held, consumer_lag);
    }

    /// Publishes progress for status lines (called with the metrics export).
    fn publish_progress(&self, sessions_held: u64, consumer_lag: i64) {
        if let Ok(mut progress) = self.progress.lock() {
            progress.stats = self.stats.clone();
            progress.sessions_held = sessions_held;
            progress.consumer_lag = consumer_lag;
        }
    }

    /// Bounded drain: retries, producer flush, final offsets, group leave.
    async fn shut_down(&mut self) {
        self.ready.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + self.config.drain_timeout;
        tracing::info!(
            in_flight = self.in_flight(),
            "Shutting down: draining outputs."
        );
        loop {
            self.send_retries().await;
            self.release_changelog().await;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let flushed = self.producer.flush(remaining.min(Duration::from_secs(1)));
            let retries_left = self.delivery.retries.lock().map(|q| q.len()).unwrap_or(0);
            let releasable = self
                .delivery
                .tracker
                .lock()
                .map(|t| t.has_releasable())
                .unwrap_or(false);
            if flushed.is_ok() && retries_left == 0 && !releasable {
                break;
            }
            if remaining.is_zero() {
                tracing::warn!(
                    in_flight = self.in_flight(),
                    "Drain timeout: outputs not acknowledged are re-derived after restart."
                );
                break;
            }
        }
        metrics::gauge!(m::READY).set(0.0);
        kafka::store_and_commit(
            self.consumer.as_ref(),
            &self.config.topics.input,
            &self.delivery,
            None,
        );
        self.export_metrics();
        self.consumer.unsubscribe();
        tracing::info!(records = self.stats.records, "Stopped.");
    }

    fn in_flight(&self) -> usize {
        self.delivery
            .tracker
            .lock()
            .map(|t| t.in_flight())
            .unwrap_or(0)
    }
}

/// Rebuilds a partition's engine from its changelog partition (SPEC section 6): state
/// values, tombstones and the watermark record, in offset order, up to the end offset seen
/// at the start. An unreadable changelog is logged and the partition starts empty.
pub fn restore_partition(config: &Config, partition: i32) -> (Engine, changelog::Progress) {
    let started = Instant::now();
    let mut engine = Engine::new(config.engine);
    let mut progress = changelog::Progress::default();
    match read_changelog(config, partition, &mut engine, &mut progress) {
        Ok(records) => {
            let elapsed = started.elapsed();
            metrics::histogram!(m::STATE_RESTORE_SECONDS).record(elapsed.as_secs_f64());
            metrics::counter!(m::STATE_RESTORED_SESSIONS_TOTAL).increment(engine.len() as u64);
            tracing::info!(
                partition,
                records,
                sessions = engine.len(),
                elapsed_ms = elapsed.as_millis() as u64,
                "Restored partition state from the changelog."
            );
        }
        Err(error) => {
            tracing::error!(partition, error = %format!("{error:#}"), "Could not restore partition state; starting empty.");
            engine = Engine::new(config.engine);
            progress = changelog::Progress::default();
        }
    }
    (engine, progress)
}

fn read_changelog(
    config: &Config,
    partition: i32,
    engine: &mut Engine,
    progress: &mut changelog::Progress,
) -> anyhow::Result<u64> {
    use rdkafka::consumer::BaseConsumer;
    let topic = &config.topics.changelog;
    let mut client = kafka::base_config(&config.kafka);
    client.set("enable.auto.commit", "false");
    client.set("group.id", format!("{}.restore", config.group_id));
    client.set("max.partition.fetch.bytes", "10485760");
    // Only committed transactions (exactly-once); the end is then the last stable offset,
    // which the partition-EOF event marks (aborted records and transaction markers keep
    // the last offset read below the high watermark).
    client.set("isolation.level", "read_committed");
    client.set("enable.partition.eof", "true");
    let consumer: BaseConsumer = client
        .create()
        .map_err(|e| kafka::client_error("restore consumer", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .context("reading changelog offsets")?;
    if high <= low {
        return Ok(0);
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(low))?;
    consumer.assign(&list)?;
    let mut records = 0;
    let mut next = low;
    let deadline = Instant::now() + Duration::from_secs(300);
    while next < high {
        anyhow::ensure!(
            Instant::now() < deadline,
            "restore did not reach offset {high} in 300 s"
        );
        let message = match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(message) => message.context("reading the changelog")?,
        };
        next = message.offset() + 1;
        records += 1;
        let key = message.key().unwrap_or(b"");
        if key == changelog::WATERMARK_KEY {
            if let Some(value) = message.payload() {
                let restored = changelog::decode_watermark(value)?;
                engine.restore_watermark(restored.watermark, restored.max_event_time);
                *progress = restored;
            }
            continue;
        }
        let Ok(id) = std::str::from_utf8(key) else {
            continue;
        };
        match message.payload() {
            None => engine.forget(id),
            Some(value) => match changelog::decode_state(value) {
                Ok(state) => engine.restore(id, &state),
                Err(error) => {
                    tracing::warn!(partition, %error, "Skipping an unreadable changelog record.")
                }
            },
        }
    }
    Ok(records)
}

/// The SPEC section 1 headers of a dead letter.
fn dead_letter_headers(
    kind: &str,
    reason: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    let partition = partition.to_string();
    let offset = offset.to_string();
    OwnedHeaders::new()
        .insert(Header {
            key: "sessionflow-error-kind",
            value: Some(kind),
        })
        .insert(Header {
            key: "sessionflow-error",
            value: Some(reason),
        })
        .insert(Header {
            key: "sessionflow-source-topic",
            value: Some(topic),
        })
        .insert(Header {
            key: "sessionflow-source-partition",
            value: Some(&partition),
        })
        .insert(Header {
            key: "sessionflow-source-offset",
            value: Some(&offset),
        })
}

/// One output message, borrowed.
struct OutgoingRef<'a> {
    topic: &'a str,
    partition: i32,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    headers: Option<OwnedHeaders>,
    opaque: usize,
}

impl OutgoingRef<'_> {
    /// An owned copy, kept for a later send.
    fn to_retry(&self, headers: Option<OwnedHeaders>) -> RetryMessage {
        RetryMessage {
            topic: self.topic.to_owned(),
            partition: self.partition,
            key: self.key.map(<[u8]>::to_vec),
            payload: self.payload.map(<[u8]>::to_vec),
            headers,
            opaque: self.opaque,
        }
    }
}

impl<'a> From<&'a RetryMessage> for OutgoingRef<'a> {
    fn from(message: &'a RetryMessage) -> Self {
        OutgoingRef {
            topic: &message.topic,
            partition: message.partition,
            key: message.key.as_deref(),
            payload: message.payload.as_deref(),
            headers: message.headers.clone(),
            opaque: message.opaque,
        }
    }
}

/// Sends one message; a full local queue means the broker is slow or down: wait and retry.
/// Any other send error queues a copy for retry, so nothing is dropped.
async fn send_with_backoff(
    producer: &ThreadedProducer<OutputContext>,
    mut message: OutgoingRef<'_>,
    backoff: Duration,
    delivery: &DeliveryState,
) {
    let mut waited = Duration::ZERO;
    let mut headers = message.headers.take();
    loop {
        let mut record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(message.topic, message.opaque).partition(message.partition);
        if let Some(key) = message.key {
            record = record.key(key);
        }
        if let Some(payload) = message.payload {
            record = record.payload(payload);
        }
        if let Some(h) = headers.take() {
            record = record.headers(h);
        }
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                headers = record.headers;
                if waited >= Duration::from_secs(5) && waited.as_millis() % 5000 < 10 {
                    tracing::warn!(
                        waited_ms = waited.as_millis() as u64,
                        "Producer queue full; waiting for the broker."
                    );
                }
                let pause = Duration::from_millis(5).min(backoff);
                tokio::time::sleep(pause).await;
                waited += pause;
            }
            Err((error, record)) => {
                tracing::warn!(%error, topic = %message.topic, "Could not send an output; retrying later.");
                delivery.delivery_errors.fetch_add(1, Ordering::Relaxed);
                let retry = message.to_retry(record.headers);
                if let Ok(mut retries) = delivery.retries.lock() {
                    retries.push_back(retry);
                }
                return;
            }
        }
    }
}
