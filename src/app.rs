//! The live pipeline (`sessionflow run`): start-up, one select loop, and the batch step. A
//! batch of input records goes through the same parser, `apply` and engine as `replay` (one
//! engine per assigned partition) into the outbox; the delivery mode then sends it:
//! at-least-once stores input offsets only once everything they caused is acknowledged,
//! exactly-once sends each batch in one transaction (SPEC section 6).
//!
//! Beside this file: `startup` (topics, clients, the delivery mode), `outbox` (a batch's
//! outputs and where they go), `at_least_once` and `exactly_once` (the two delivery modes),
//! `assignment` (partitions coming and going: rebalances, restores, rewinds), `backpressure`
//! (input paused while failed writes wait), `restore` (state from the changelog),
//! `input_health` (stalled input), `handles` (what the host sees: readiness, heartbeat,
//! status).
//!
//! Shutdown order (SIGTERM/SIGINT, bounded by `drain_timeout_ms`): stop polling → the step
//! being sent finishes (at-least-once sends beside the loop) → send what waits for retry →
//! flush the producer → store and commit offsets → leave the group.

mod assignment;
pub mod at_least_once;
mod backpressure;
pub mod exactly_once;
mod handles;
pub mod input_health;
mod lanes;
mod latency;
pub mod outbox;
pub mod restore;
mod startup;

pub use self::handles::{Handles, Heartbeat, PipelineStatus};
pub use self::lanes::{apply_value, InputRecord};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{Producer, ThreadedProducer};
use tokio_util::sync::CancellationToken;

use self::at_least_once::{AtLeastOnce, Overlapped};
use self::backpressure::InputHold;
use self::exactly_once::{AfterBatch, ExactlyOnce};
use self::input_health::InputHealth;
use self::lanes::{BatchClock, Lanes, PartitionState};
use self::latency::PendingLatency;
use self::outbox::{Outbox, Routes};
use crate::apply;
use crate::clock::now_ms;
use crate::config::Config;
use crate::kafka::lock;
use crate::kafka::sink::{self, DeliveryState, OutgoingRef, OutputContext};
use crate::kafka::source::InputContext;
use crate::metrics::{self as m, CounterExport};
use crate::stats::Stats;

/// How often gauges, counters, idle partitions and retries are looked at.
const TICK: Duration = Duration::from_secs(1);

/// The clients and routes every part of the live pipeline sends through.
pub struct Clients {
    pub config: Config,
    pub consumer: Arc<StreamConsumer<InputContext>>,
    /// Replaced when a transactional producer is fenced (exactly-once).
    pub producer: Arc<ThreadedProducer<OutputContext>>,
    pub delivery: Arc<DeliveryState>,
    pub routes: Routes,
    /// The producer's batch bound (see `sink::output_producer`), for a replacement producer.
    pub producer_batch_bytes: Option<usize>,
}

impl Clients {
    /// Sends one message (see `sink::send_with_backoff`).
    pub async fn send(&self, message: OutgoingRef<'_>) {
        sink::send_with_backoff(
            &self.producer,
            message,
            self.config.retry_backoff,
            &self.delivery,
        )
        .await;
    }
}

/// The delivery mode, with its own state.
enum Mode {
    AtLeastOnce(Overlapped),
    ExactlyOnce(ExactlyOnce),
}

impl Mode {
    /// The most records in one batch: exactly-once pays a few milliseconds of coordinator
    /// round trips per transaction, so its batch takes all that is ready, up to a bound.
    fn batch_limit(&self, config: &Config) -> usize {
        match self {
            Mode::AtLeastOnce(_) => config.batch_size,
            Mode::ExactlyOnce(_) => config.transaction_max_records,
        }
    }
}

/// The running pipeline.
struct Pipeline {
    /// Shared with at-least-once's running send; exactly-once, which sends on the loop,
    /// holds the only reference and may replace its producer (`Arc::get_mut` in `dispatch`).
    clients: Arc<Clients>,
    mode: Mode,
    partitions: HashMap<i32, PartitionState>,
    stats: Stats,
    counters: CounterExport,
    /// The processing lanes (`pipeline.workers`), with the outboxes the batch step fills.
    lanes: Lanes,
    handles: Handles,
    /// Partitions whose changelog holds a corrupt record (`state.on_corrupt = "stop"`):
    /// paused, not processed, and the instance not ready while any is.
    stopped: BTreeSet<i32>,
    shutdown: CancellationToken,
    /// Set when the pipeline cannot go on (a transactional id used by another instance).
    fatal: Option<anyhow::Error>,
    input_health: InputHealth,
    /// At-least-once: input partitions paused while writes wait for a retry.
    hold: InputHold,
    /// Set by a shutdown whose drain was cut short: the clients are not closed (see
    /// `shut_down`).
    leave_unclosed: bool,
    /// Batches waiting for their outputs' acknowledgement (the processing latency).
    latency: PendingLatency,
}

/// Runs until `shutdown` is cancelled. Errors are start-up problems (configuration, topics,
/// clients) and a fatal exactly-once failure.
pub async fn run(
    config: Config,
    shutdown: CancellationToken,
    handles: Handles,
) -> anyhow::Result<()> {
    let Some(mut pipeline) = startup::start(config, &shutdown, handles).await? else {
        return Ok(());
    };
    pipeline.run_loop(shutdown).await;
    pipeline.shut_down().await;
    if pipeline.leave_unclosed {
        // One reference never released: the consumer is not closed when the pipeline drops.
        std::mem::forget(Arc::clone(&pipeline.clients.consumer));
    }
    match pipeline.fatal {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

impl Pipeline {
    async fn run_loop(&mut self, shutdown: CancellationToken) {
        let consumer = self.clients.consumer.clone();
        // One stream for the whole run: each `StreamConsumer::recv` makes a stream of its
        // own, registering and removing a waker (two locks) for every message.
        let mut messages = consumer.stream();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.update_readiness();
        while self.fatal.is_none() {
            self.handles.heartbeat.beat();
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    self.apply_changes(&mut Vec::new()).await;
                    self.on_tick().await;
                    continue;
                }
                message = messages.next() => message,
            };
            let first = match first {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    self.input_health.consumer_error(&error);
                    tokio::time::sleep(self.clients.config.retry_backoff).await;
                    continue;
                }
                None => {
                    // rdkafka's streams never end; were one to, the pipeline stops, loudly.
                    self.fatal = Some(anyhow::anyhow!("the input consumer's message stream ended"));
                    break;
                }
            };
            let limit = self.mode.batch_limit(&self.clients.config);
            let mut batch = Vec::with_capacity(limit.min(65_536));
            batch.push(first);
            while batch.len() < limit {
                match messages.next().now_or_never().flatten() {
                    Some(Ok(message)) => batch.push(message),
                    Some(Err(error)) => {
                        self.input_health.consumer_error(&error);
                        break;
                    }
                    None => break,
                }
            }
            self.apply_changes(&mut batch).await;
            self.process(&batch).await;
            drop(batch);
            self.store_offsets();
            self.hold_input_while_retries_wait(false);
        }
    }

    /// The batch step: parses and applies each record (spread over the lanes), with the
    /// progress records of the partitions it touched, then sends what it caused.
    async fn process(&mut self, batch: &[BorrowedMessage<'_>]) {
        if batch.is_empty() {
            return;
        }
        let wall_clock = now_ms();
        let received = Instant::now();
        self.lanes.apply_batch(
            batch,
            &mut self.partitions,
            &mut self.stats,
            &self.clients.routes.input_topic,
            BatchClock {
                wall_clock,
                received,
            },
        );
        // The next offset to read of each partition of the batch.
        let mut next_offsets: BTreeMap<i32, i64> = BTreeMap::new();
        // The oldest record timestamp of each partition of the batch.
        let mut oldest: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let next = next_offsets.entry(message.partition()).or_default();
            *next = (*next).max(message.offset() + 1);
            if let Some(at) = message.timestamp().to_millis() {
                let first = oldest.entry(message.partition()).or_insert(at);
                *first = (*first).min(at);
            }
        }
        for (&p, &next) in &next_offsets {
            if let Some(&at) = oldest.get(&p) {
                self.latency.note_batch(p, next, at);
            }
        }
        // Event lag, sampled once per batch per partition: wall clock minus the newest event
        // time the partition has seen.
        for state in self.partitions.values() {
            if let Some(event_time) = state.engine.max_event_time() {
                metrics::histogram!(m::EVENT_LAG_SECONDS)
                    .record((wall_clock - event_time).max(0) as f64 / 1000.0);
            }
        }
        self.dispatch(&next_offsets).await;
        metrics::histogram!(m::BATCH_DURATION_SECONDS).record(received.elapsed().as_secs_f64());
    }

    /// Sends the outboxes in the delivery mode's way; `next_offsets` (the next input offset of
    /// each partition of the batch) go with an exactly-once transaction.
    async fn dispatch(&mut self, next_offsets: &BTreeMap<i32, i64>) {
        match &mut self.mode {
            Mode::AtLeastOnce(alo) => alo.start(&self.clients, &mut self.lanes).await,
            Mode::ExactlyOnce(eos) => {
                let offsets =
                    exactly_once::offsets_to_commit(&self.clients.routes.input_topic, next_offsets);
                let clients = Arc::get_mut(&mut self.clients)
                    .expect("exactly-once shares its clients with no task");
                match eos
                    .send(clients, self.lanes.outboxes(), Some(offsets))
                    .await
                {
                    AfterBatch::Continue => {
                        let now = now_ms();
                        for (&p, &next) in next_offsets {
                            self.latency.acknowledged(p, next, now);
                        }
                    }
                    AfterBatch::Rewind => {
                        let touched = touched_partitions(next_offsets, self.lanes.outboxes());
                        self.rewind(touched);
                    }
                    AfterBatch::Stop(error) => self.fatal = Some(error),
                }
            }
        }
    }

    /// At-least-once: hands committable offsets to the consumer (exactly-once commits them
    /// with its transactions).
    fn store_offsets(&mut self) {
        if let Mode::AtLeastOnce(_) = self.mode {
            let partitions = &self.partitions;
            let stored = AtLeastOnce::store_offsets(&self.clients, |p| partitions.contains_key(&p));
            let now = now_ms();
            for (p, next) in stored {
                self.latency.acknowledged(p, next, now);
            }
        }
    }

    /// Once a second: retries, idle partitions, offsets and metrics.
    async fn on_tick(&mut self) {
        if let Mode::AtLeastOnce(alo) = &mut self.mode {
            alo.settled().await.on_tick(&self.clients).await;
        }
        self.advance_idle_partitions().await;
        self.store_offsets();
        self.hold_input_while_retries_wait(true);
        let fetch = lock(&self.clients.consumer.context().fetch).clone();
        let hold = &self.hold;
        let watched = self.partitions.keys().copied().filter(|&p| !hold.holds(p));
        self.input_health.check(watched, &fetch, Instant::now());
        self.update_readiness();
        self.export_metrics();
    }

    /// SPEC section 3: a caught-up partition that read nothing for `idle_timeout_ms`
    /// advances its watermark (`Engine::advance_idle`).
    async fn advance_idle_partitions(&mut self) {
        let Some(idle_timeout) = self.clients.config.idle_timeout else {
            return;
        };
        let lag = lock(&self.clients.consumer.context().lag).clone();
        let now = Instant::now();
        let wall_clock = now_ms();
        self.lanes.clear();
        let outbox = self.lanes.loop_outbox();
        for (&partition, state) in &mut self.partitions {
            let caught_up = lag.get(&partition).is_some_and(|&l| l == 0);
            if caught_up && now.duration_since(state.last_message) >= idle_timeout {
                apply::advance_idle(
                    &mut state.engine,
                    wall_clock,
                    &mut self.stats,
                    &mut outbox.partition(partition),
                );
                outbox.close_record(partition, None);
                state.queue_progress(partition, outbox);
            }
        }
        outbox.drop_empty_records();
        if !outbox.is_empty() {
            self.dispatch(&BTreeMap::new()).await;
        }
    }

    /// Counters grow by what was counted since the last export; gauges are set; the status
    /// for status lines is refreshed.
    fn export_metrics(&mut self) {
        let delivery_errors = self
            .clients
            .delivery
            .delivery_errors
            .load(Ordering::Relaxed);
        self.counters.export(&self.stats, delivery_errors);
        let lag = lock(&self.clients.consumer.context().lag).clone();
        let config = &self.clients.config;
        let totals = m::export_gauges(
            self.partitions.iter().map(|(&p, s)| (p, &s.engine)),
            m::InputLabels {
                topic: &config.topics.input,
                group: &config.group_id,
            },
            &lag,
            now_ms(),
        );
        let ready = self.handles.ready.load(Ordering::Relaxed);
        metrics::gauge!(m::READY).set(f64::from(u8::from(ready)));
        let mut status = lock(&self.handles.status);
        status.stats = self.stats.clone();
        status.sessions_held = totals.sessions_held;
        status.consumer_lag = totals.consumer_lag;
        status.partitions = self.partitions.len();
    }

    /// Bounded drain: retries, producer flush, final offsets, group leave.
    async fn shut_down(&mut self) {
        self.handles.ready.store(false, Ordering::Relaxed);
        let deadline = Instant::now() + self.clients.config.drain_timeout;
        tracing::info!(
            in_flight = lock(&self.clients.delivery.tracker).in_flight(),
            "Shutting down: draining outputs."
        );
        let drained = match &mut self.mode {
            Mode::AtLeastOnce(alo) => alo.settled().await.drain(&self.clients, deadline).await,
            Mode::ExactlyOnce(_) => {
                // Every batch's transaction has ended: nothing should be outstanding.
                let remaining = deadline.saturating_duration_since(Instant::now());
                let flushed = self.clients.producer.flush(remaining);
                if let Err(error) = &flushed {
                    tracing::warn!(%error, "Outputs not all acknowledged within drain_timeout_ms.");
                }
                flushed.is_ok()
            }
        };
        metrics::gauge!(m::READY).set(0.0);
        if let Mode::AtLeastOnce(_) = self.mode {
            if drained {
                AtLeastOnce::commit_final(&self.clients);
            } else {
                AtLeastOnce::commit_final_unacknowledged(&self.clients);
            }
        }
        // Closing the consumer leaves the group and commits, waiting for a coordinator that
        // may be away: after a drain cut short it is left to the process's exit instead
        // (the group then drops the member after session.timeout.ms, or at once when static
        // membership brings the same instance back).
        self.leave_unclosed = !drained;
        self.export_metrics();
        self.clients.consumer.unsubscribe();
        tracing::info!(records = self.stats.records, "Stopped.");
    }
}

/// The partitions an exactly-once transaction changed: those with records in its batch, and
/// those whose idle advance it carries. Each batch is one transaction, and every state change
/// of a partition queues its progress record into it (an idle advance that moved no
/// watermark changed nothing), so every other partition is as its last commit left it.
fn touched_partitions(next_offsets: &BTreeMap<i32, i64>, outboxes: &[Outbox]) -> BTreeSet<i32> {
    let recorded = outboxes
        .iter()
        .flat_map(|outbox| outbox.records().map(|(record, _)| record.partition));
    next_offsets.keys().copied().chain(recorded).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::outbox::DeadLetterLimits;
    use crate::changelog::Progress;

    #[test]
    fn a_transaction_touches_its_batchs_partitions_and_those_its_idle_advances_moved() {
        let mut idle = Outbox::new(DeadLetterLimits {
            max_record_bytes: 1024,
            topic_max_message_bytes: None,
        });
        let moved = Progress {
            watermark: Some(1_000),
            ..Progress::default()
        };
        idle.queue_progress(2, moved, &mut Progress::default());
        // Partition 3's watermark did not move: no progress record, no change.
        idle.queue_progress(3, Progress::default(), &mut Progress::default());
        let next_offsets = BTreeMap::from([(0, 5), (1, 9)]);
        assert_eq!(
            touched_partitions(&next_offsets, &[idle]),
            BTreeSet::from([0, 1, 2])
        );
    }
}
