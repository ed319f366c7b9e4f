//! Exactly-once delivery (`delivery = "exactly_once"`): each batch's outputs, changelog
//! writes and input offsets go in one Kafka transaction. An aborted transaction asks the
//! pipeline to rewind (state restored from the read_committed changelog, input re-read from
//! the committed offsets); a fenced producer is replaced once, and one fenced again before a
//! rebalance of our own and within the transaction timeout means another live instance uses
//! the transactional id: the pipeline stops.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{Consumer, ConsumerGroupMetadata};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::outbox::{KeyScratch, Outbox};
use super::{Clients, Heartbeat};
use crate::config::Config;
use crate::kafka::sink::{self, OutgoingRef, OutputContext, SendAttempt};
use crate::metrics as m;

/// Bound on initialising transactions and on seeking back after an abort; a call that times
/// out is retried.
pub const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on one call of a batch's transaction (send offsets, commit, abort). A call that
/// times out is retriable and resumes where it stood, so a short bound costs nothing when
/// the broker answers, and lets a shutdown be seen between calls when it does not: one long
/// call would hold SIGTERM past `drain_timeout_ms` (measured: 13 s instead of 3).
const TRANSACTION_CALL_STEP: Duration = Duration::from_secs(1);

/// librdkafka's default `transaction.timeout.ms` is overridden to this (see
/// `sink::output_producer`) unless the `[kafka]` table sets it.
const DEFAULT_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(30);

/// A transaction neither committed nor aborted this many transaction timeouts after it
/// began is given up on: the coordinator aborts a transaction that outlives its timeout, so
/// it can no longer commit, and a producer still waiting on it is stuck (seen in CI and in
/// 1 of 16 runs here after a broker restart: librdkafka's coordinator connection never came
/// back, the same AddOffsetsToTxn timing out every 4 s for minutes). A replacement
/// producer fences it and the partitions rewind.
const STUCK_AFTER_TRANSACTION_TIMEOUTS: u32 = 2;

/// How a transaction ended.
#[derive(Debug)]
pub enum TransactionEnd {
    Committed,
    /// Aborted: nothing of it is visible; the batch must be derived again.
    Aborted,
    /// Neither committed nor aborted by the deadline: the producer is stuck and is replaced
    /// (a new producer's registration aborts what the old one left open).
    Stuck,
    /// The producer cannot go on (fenced by a newer instance with the same id, or a broken
    /// protocol state).
    Fatal(KafkaError),
}

/// What the pipeline must do after a batch.
#[derive(Debug)]
pub enum AfterBatch {
    Continue,
    /// Rewind the partitions the transaction touched to their last committed transaction.
    Rewind,
    /// Stop with this error.
    Stop(anyhow::Error),
}

/// The exactly-once mode's own state.
pub struct ExactlyOnce {
    /// When the transactional producer was last replaced after a fatal error, and whether
    /// the consumer has rebalanced since (see [`another_instance`]).
    last_replacement: Option<Instant>,
    rebalanced_since_replacement: bool,
    /// The producer's `transaction.timeout.ms`.
    transaction_timeout: Duration,
    /// Blocking transactional calls stop retrying once this is cancelled.
    shutdown: CancellationToken,
    /// Beaten by each retried call: retrying against a broker that is away is not a hang.
    heartbeat: Heartbeat,
    /// For each send's choice of changelog writes.
    latest_writes: KeyScratch,
}

/// Whether a fatal error of the transactional producer means another live instance uses its
/// transactional id. A first fatal error does not: the coordinator also fences a producer
/// whose transaction outlived `transaction.timeout.ms` (a broker away for longer), and a
/// replacement producer takes over. A replacement fenced in its turn, with no rebalance of
/// ours in between and sooner than a transaction can time out, was fenced by someone who
/// initialised the same id after it: another instance, which the replacement itself fenced a
/// moment ago (the two would go on fencing each other).
pub fn another_instance(
    last_replacement: Option<Instant>,
    rebalanced_since_replacement: bool,
    now: Instant,
    transaction_timeout: Duration,
) -> bool {
    last_replacement.is_some_and(|replaced| {
        !rebalanced_since_replacement && now.duration_since(replaced) < transaction_timeout
    })
}

/// The producer's `transaction.timeout.ms` as configured in `[kafka]` or
/// `[kafka.producer]`, or sessionflow's default.
fn transaction_timeout(config: &Config) -> Duration {
    config
        .kafka_producer
        .get("transaction.timeout.ms")
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map_or(DEFAULT_TRANSACTION_TIMEOUT, Duration::from_millis)
}

/// What librdkafka says of a failed transactional call, as the three flags of its error
/// (`None` for an error from outside the transactional API).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ErrorFlags {
    pub fatal: bool,
    pub requires_abort: bool,
    pub retriable: bool,
}

/// What to do after a failed transactional call.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    RetryCall,
    Abort,
    Fatal,
}

/// Fatal wins over abort, abort over retry; an error outside the transactional API, or one
/// that says nothing, aborts.
pub fn verdict(flags: Option<ErrorFlags>) -> Verdict {
    match flags {
        Some(f) if f.fatal => Verdict::Fatal,
        Some(f) if f.requires_abort => Verdict::Abort,
        Some(f) if f.retriable => Verdict::RetryCall,
        _ => Verdict::Abort,
    }
}

/// What to do after a failed transactional call: `None` is "retry the call".
pub fn classify(error: &KafkaError) -> Option<TransactionEnd> {
    let flags = match error {
        KafkaError::Transaction(e) => Some(ErrorFlags {
            fatal: e.is_fatal(),
            requires_abort: e.txn_requires_abort(),
            retriable: e.is_retriable(),
        }),
        _ => None,
    };
    match verdict(flags) {
        Verdict::Fatal => Some(TransactionEnd::Fatal(error.clone())),
        Verdict::Abort => Some(TransactionEnd::Aborted),
        Verdict::RetryCall => None,
    }
}

/// The next offset to read of each partition of a batch: what its transaction commits.
pub fn offsets_to_commit(input_topic: &str, next: &BTreeMap<i32, i64>) -> TopicPartitionList {
    let mut list = TopicPartitionList::new();
    for (&p, &o) in next {
        let _ = list.add_partition_offset(input_topic, p, Offset::Offset(o));
    }
    list
}

/// Start-up: registers the transactional id, which also aborts whatever a crashed
/// predecessor with the same id left open. A broker that does not answer is retried with a
/// logged reason. Returns false when shut down meanwhile.
pub async fn init_transactions(
    producer: &Arc<ThreadedProducer<OutputContext>>,
    config: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<bool> {
    loop {
        let attempt = producer.clone();
        let initialising = tokio::task::spawn_blocking(move || {
            attempt.init_transactions(TRANSACTION_CALL_TIMEOUT)
        });
        // A signal does not wait for the call (up to TRANSACTION_CALL_TIMEOUT against a
        // coordinator that does not answer): the blocking thread is left to the runtime's
        // bounded shutdown.
        let result = tokio::select! {
            joined = initialising => joined.context("initialising transactions")?,
            () = shutdown.cancelled() => return Ok(false),
        };
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

/// Sends the batch's input offsets to the open transaction and commits it, retrying calls
/// that time out or meet a broker that is away, until `shutdown`; aborts when the
/// transaction cannot commit. Blocking (librdkafka's transactional calls wait for the
/// coordinator).
fn finish_transaction(
    producer: &ThreadedProducer<OutputContext>,
    offsets: Option<(&TopicPartitionList, ConsumerGroupMetadata)>,
    retry: &Retry<'_>,
) -> TransactionEnd {
    let mut offsets = offsets.filter(|(list, _)| list.count() > 0);
    let failure = loop {
        retry.heartbeat.beat();
        if Instant::now() >= retry.deadline {
            break TransactionEnd::Stuck;
        }
        let result = match &offsets {
            Some((list, group)) => producer
                .send_offsets_to_transaction(list, group, TRANSACTION_CALL_STEP)
                .map(|()| offsets = None),
            None => {
                wait_delivered(producer, TRANSACTION_CALL_STEP);
                let committed = producer.commit_transaction(TRANSACTION_CALL_STEP);
                if committed.is_ok() {
                    return TransactionEnd::Committed;
                }
                committed
            }
        };
        if let Err(error) = result {
            match classify(&error) {
                None if retry.shutdown.is_cancelled() => {
                    tracing::warn!(%error, "Transaction not committed and shutting down: aborting it (its batch is read again after a restart).");
                    break TransactionEnd::Aborted;
                }
                None if timed_out(&error) => {
                    // The call waited its step: go on waiting, no backoff.
                    tracing::debug!(%error, "Transaction not committed yet; still waiting.");
                }
                None => {
                    tracing::warn!(%error, "Transaction not committed yet; retrying.");
                    std::thread::sleep(retry.backoff);
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
        TransactionEnd::Stuck => TransactionEnd::Stuck,
        _ => abort_transaction(producer, retry),
    }
}

/// Aborts the open transaction, retrying calls that time out, until `shutdown` or the
/// deadline (an open transaction left behind is aborted by the broker after
/// `transaction.timeout.ms`, or by the next producer with the same transactional id).
fn abort_transaction(
    producer: &ThreadedProducer<OutputContext>,
    retry: &Retry<'_>,
) -> TransactionEnd {
    loop {
        retry.heartbeat.beat();
        if Instant::now() >= retry.deadline {
            return TransactionEnd::Stuck;
        }
        match producer.abort_transaction(TRANSACTION_CALL_STEP) {
            Ok(()) => return TransactionEnd::Aborted,
            Err(error) => match classify(&error) {
                Some(TransactionEnd::Fatal(error)) => return TransactionEnd::Fatal(error),
                _ if retry.shutdown.is_cancelled() => {
                    tracing::warn!(%error, "Transaction not aborted and shutting down: the broker aborts it.");
                    return TransactionEnd::Aborted;
                }
                _ if timed_out(&error) => {
                    tracing::debug!(%error, "Transaction not aborted yet; still waiting.");
                }
                _ => {
                    tracing::warn!(%error, "Transaction not aborted yet; retrying.");
                    std::thread::sleep(retry.backoff);
                }
            },
        }
    }
}

/// Sends one message into the open transaction. A full local queue (a transaction of more
/// messages than the producer's queue holds, or a broker slow to take them) and a topic or
/// partition missing from the metadata (deleted, say) are waited out, beating the heartbeat,
/// until the transaction's deadline or shutdown. Then, or on any other refusal, the error
/// comes back and the transaction is aborted: a message left out of it must not commit with
/// its input's offsets.
async fn send_in_transaction(
    clients: &Clients,
    mut message: OutgoingRef<'_>,
    retry: &Retry<'_>,
) -> Result<(), KafkaError> {
    let mut headers = message.headers.take();
    loop {
        let (error, pause) = match sink::try_send(&clients.producer, &message, headers) {
            SendAttempt::Sent => return Ok(()),
            SendAttempt::QueueFull(back) => {
                headers = back;
                let full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
                (full, sink::QUEUE_FULL_PAUSE)
            }
            SendAttempt::Failed(error, back) if sink::missing_from_metadata(&error) => {
                clients
                    .delivery
                    .refused(&error, message.topic, message.opaque);
                headers = back;
                (error, retry.backoff)
            }
            SendAttempt::Failed(error, _) => return Err(error),
        };
        retry.heartbeat.beat();
        if retry.shutdown.is_cancelled() || Instant::now() + pause >= retry.deadline {
            return Err(error);
        }
        tokio::time::sleep(pause).await;
    }
}

/// How the blocking transactional calls of one transaction retry.
struct Retry<'a> {
    backoff: Duration,
    /// No call is retried once this is cancelled.
    shutdown: &'a CancellationToken,
    /// Beaten by each retried call.
    heartbeat: &'a Heartbeat,
    /// Past this the transaction is given up on (see [`STUCK_AFTER_TRANSACTION_TIMEOUTS`]).
    deadline: Instant,
}

/// A transactional call that ran out of its [`TRANSACTION_CALL_STEP`].
fn timed_out(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::OperationTimedOut)
}

fn count(outcome: &'static str) {
    metrics::counter!(m::TRANSACTIONS_TOTAL, "outcome" => outcome).increment(1);
}

impl ExactlyOnce {
    pub fn new(config: &Config, shutdown: CancellationToken, heartbeat: Heartbeat) -> Self {
        ExactlyOnce {
            last_replacement: None,
            rebalanced_since_replacement: false,
            transaction_timeout: transaction_timeout(config),
            shutdown,
            heartbeat,
            latest_writes: KeyScratch::default(),
        }
    }

    /// The consumer's assignment changed (a rebalance of our own).
    pub fn note_rebalance(&mut self) {
        self.rebalanced_since_replacement = true;
    }

    /// How the calls of a transaction begun at `began` retry.
    fn retry(&self, clients: &Clients, began: Instant) -> Retry<'_> {
        Retry {
            backoff: clients.config.retry_backoff,
            shutdown: &self.shutdown,
            heartbeat: &self.heartbeat,
            deadline: began + self.transaction_timeout * STUCK_AFTER_TRANSACTION_TIMEOUTS,
        }
    }

    /// Sends the outboxes and `offsets` (the next input offset of each partition of the
    /// batch) in one transaction: of a session's changelog writes, only the batch's last
    /// (`Outbox::latest_writes_only`).
    pub async fn send(
        &mut self,
        clients: &mut Clients,
        outboxes: &[Outbox],
        offsets: Option<TopicPartitionList>,
    ) -> AfterBatch {
        let began = Instant::now();
        if let Err(error) = clients.producer.begin_transaction() {
            return self.fail(clients, error, began);
        }
        // Fields, not `self.retry()`: the outboxes' filter borrows `latest_writes` meanwhile.
        let sending = Retry {
            backoff: clients.config.retry_backoff,
            shutdown: &self.shutdown,
            heartbeat: &self.heartbeat,
            deadline: began + self.transaction_timeout * STUCK_AFTER_TRANSACTION_TIMEOUTS,
        };
        let mut refused = None;
        'outboxes: for outbox in outboxes {
            let send = outbox.latest_writes_only(&mut self.latest_writes);
            for (message, _) in outbox.messages().iter().zip(send).filter(|(_, send)| *send) {
                let message = outbox.to_send(message, &clients.routes, 0);
                let sent = send_in_transaction(clients, message, &sending).await;
                if let Err(error) = sent {
                    refused = Some(error);
                    break 'outboxes;
                }
            }
        }
        if let Some(error) = refused {
            return self.fail(clients, error, began);
        }
        let group = clients.consumer.group_metadata();
        let offsets = match (offsets.as_ref(), group) {
            (Some(list), Some(group)) => Some((list, group)),
            (Some(list), None) if list.count() > 0 => {
                // Not in the group (yet): offsets cannot go with this transaction.
                return self.fail(
                    clients,
                    KafkaError::MessageProduction(RDKafkaErrorCode::State),
                    began,
                );
            }
            _ => None,
        };
        let retry = self.retry(clients, began);
        let producer = &clients.producer;
        let end = tokio::task::block_in_place(|| finish_transaction(producer, offsets, &retry));
        self.after(clients, end, began)
    }

    /// A transactional call failed outside commit: fatal errors replace the producer, others
    /// abort and rewind.
    fn fail(&mut self, clients: &mut Clients, error: KafkaError, began: Instant) -> AfterBatch {
        if let Some(TransactionEnd::Fatal(_)) = classify(&error) {
            return self.after(clients, TransactionEnd::Fatal(error), began);
        }
        tracing::warn!(%error, "Aborting the transaction.");
        let retry = self.retry(clients, began);
        let producer = &clients.producer;
        let aborted = tokio::task::block_in_place(|| abort_transaction(producer, &retry));
        self.after(clients, aborted, began)
    }

    /// Counts how the transaction begun at `began` ended and says what the pipeline does next.
    fn after(&mut self, clients: &mut Clients, end: TransactionEnd, began: Instant) -> AfterBatch {
        match end {
            TransactionEnd::Committed => {
                count(m::OUTCOME_COMMITTED);
                AfterBatch::Continue
            }
            TransactionEnd::Aborted => {
                count(m::OUTCOME_ABORTED);
                AfterBatch::Rewind
            }
            TransactionEnd::Fatal(error) => {
                if let Some(stop) = self.fenced_by_another_instance(clients, &error) {
                    return stop;
                }
                tracing::warn!(%error, "Transactional producer failed; replacing it and rewinding.");
                self.replace_producer(clients)
            }
            TransactionEnd::Stuck => {
                tracing::warn!(
                    waited_ms = began.elapsed().as_millis() as u64,
                    transaction_timeout_ms = self.transaction_timeout.as_millis() as u64,
                    "Transaction neither committed nor aborted within {STUCK_AFTER_TRANSACTION_TIMEOUTS} transaction timeouts (the coordinator aborts it): replacing the producer and rewinding."
                );
                self.replace_producer(clients)
            }
        }
    }

    /// A fatal transactional error. Usually the coordinator aborted a transaction that
    /// outlived `transaction.timeout.ms` (a broker away for longer) and bumped the producer
    /// epoch, and a replacement producer takes over. A replacement fenced in its turn means
    /// another live instance: stop.
    fn fenced_by_another_instance(
        &self,
        clients: &Clients,
        error: &KafkaError,
    ) -> Option<AfterBatch> {
        let now = Instant::now();
        if !another_instance(
            self.last_replacement,
            self.rebalanced_since_replacement,
            now,
            self.transaction_timeout,
        ) {
            return None;
        }
        let id = &clients.config.transactional_id;
        tracing::error!(%error, transactional_id = %id, "The transactional producer was fenced again right after its replacement, with no rebalance in between: another live instance uses this transactional id. Stopping; give every instance its own pipeline.transactional_id.");
        Some(AfterBatch::Stop(anyhow::Error::new(error.clone()).context(format!(
            "another live instance uses transactional id {id:?} (fenced again {} ms after the replacement producer fenced it, with no rebalance in between); give every instance its own pipeline.transactional_id",
            now.duration_since(self.last_replacement.unwrap_or(now)).as_millis()
        ))))
    }

    /// Replaces the transactional producer: the new one's registration fences the old one
    /// and aborts what it left open. Its registration is retried (beating the heartbeat)
    /// while the broker is away, until shutdown; then the partitions rewind.
    fn replace_producer(&mut self, clients: &mut Clients) -> AfterBatch {
        self.last_replacement = Some(Instant::now());
        self.rebalanced_since_replacement = false;
        count(m::OUTCOME_ABORTED);
        let config = &clients.config;
        let replacement = match sink::output_producer(
            &config.kafka_producer,
            clients.delivery.clone(),
            config.limits.max_record_bytes,
            Some(&config.transactional_id),
            clients.producer_batch_bytes,
        ) {
            Ok(producer) => producer,
            Err(error) => {
                return AfterBatch::Stop(
                    anyhow::Error::new(error).context("replacing the transactional producer"),
                )
            }
        };
        loop {
            self.heartbeat.beat();
            match tokio::task::block_in_place(|| {
                replacement.init_transactions(TRANSACTION_CALL_STEP)
            }) {
                Ok(()) => break,
                Err(error) if matches!(&error, KafkaError::Transaction(e) if e.is_retriable()) => {
                    if self.shutdown.is_cancelled() {
                        // Nothing is sent any more: the rewind and shutdown go on without
                        // a registered producer.
                        tracing::info!("Shutting down before the replacement producer registered.");
                        break;
                    }
                    if !timed_out(&error) {
                        tracing::warn!(%error, "Could not initialise the replacement producer's transactions yet; retrying.");
                        std::thread::sleep(config.retry_backoff);
                    }
                }
                Err(error) => {
                    return AfterBatch::Stop(
                        anyhow::Error::new(error).context("replacing the transactional producer"),
                    )
                }
            }
        }
        clients.producer = Arc::new(replacement);
        AfterBatch::Rewind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transaction_errors_are_classified_fatal_over_abort_over_retry() {
        let flags = |fatal, requires_abort, retriable| {
            Some(ErrorFlags {
                fatal,
                requires_abort,
                retriable,
            })
        };
        assert_eq!(verdict(flags(true, true, true)), Verdict::Fatal);
        assert_eq!(verdict(flags(false, true, true)), Verdict::Abort);
        assert_eq!(verdict(flags(false, false, true)), Verdict::RetryCall);
        assert_eq!(verdict(flags(false, false, false)), Verdict::Abort);
        assert_eq!(verdict(None), Verdict::Abort);
        // Errors outside the transactional API abort the transaction.
        let other = KafkaError::MessageProduction(RDKafkaErrorCode::State);
        assert!(matches!(classify(&other), Some(TransactionEnd::Aborted)));
    }

    #[test]
    fn only_a_replacement_fenced_again_soon_and_without_a_rebalance_is_another_instance() {
        let timeout = Duration::from_secs(30);
        let replaced = Instant::now();
        let soon = replaced + Duration::from_secs(2);
        // A first fatal error replaces the producer.
        assert!(!another_instance(None, false, soon, timeout));
        // Fenced again soon after the replacement, no rebalance: another instance.
        assert!(another_instance(Some(replaced), false, soon, timeout));
        // A rebalance of our own in between (an instance of ours restarted or joined).
        assert!(!another_instance(Some(replaced), true, soon, timeout));
        // Later than a transaction can live: the replacement's own transaction may have
        // timed out (a second long broker outage).
        let late = replaced + Duration::from_secs(31);
        assert!(!another_instance(Some(replaced), false, late, timeout));
    }

    #[test]
    fn offsets_to_commit_are_the_next_offset_of_each_partition() {
        let next = BTreeMap::from([(0, 17), (3, 4)]);
        let list = offsets_to_commit("in", &next);
        assert_eq!(list.count(), 2);
        assert_eq!(
            list.find_partition("in", 3).unwrap().offset(),
            Offset::Offset(4)
        );
    }
}
