//! The output side: the producer and its delivery context, the retry queue that keeps
//! failed messages, the topic handle that keeps the changelog's writes from timing out,
//! sending with backoff on a full local queue, and the packing of a record's ticket into
//! each message's opaque.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{c_char, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::client::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};

use super::offsets::{OffsetTracker, Phase, Ticket};
use super::{base_config, client_error, lock, set_default, KafkaSetupError};
use crate::log_limit::LogLimit;

/// The phase bit of an opaque (set for changelog writes).
const CHANGELOG_BIT: u64 = 1 << 47;
const SEQ_MASK: u64 = CHANGELOG_BIT - 1;

/// Packs a ticket and its phase into the producer's per-message opaque without allocating:
/// 16 bits of partition, 1 bit of phase, 47 bits of sequence number.
pub fn ticket_to_opaque((partition, seq): Ticket, phase: Phase) -> usize {
    let bit = if phase == Phase::Changelog {
        CHANGELOG_BIT
    } else {
        0
    };
    ((partition as u64 & 0xffff) << 48 | bit | (seq & SEQ_MASK)) as usize
}

pub fn opaque_to_ticket(opaque: usize) -> (Ticket, Phase) {
    let raw = opaque as u64;
    let phase = if raw & CHANGELOG_BIT != 0 {
        Phase::Changelog
    } else {
        Phase::Output
    };
    (((raw >> 48) as i32, raw & SEQ_MASK), phase)
}

/// A message whose delivery failed, kept for another try: nothing is dropped.
#[derive(Debug)]
pub struct RetryMessage {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Option<OwnedHeaders>,
    pub opaque: usize,
    /// The broker refused it for its size (`MSG_SIZE_TOO_LARGE`): sent again unchanged it
    /// would be refused again.
    pub refused_for_size: bool,
}

/// What delivery reports update: the offset tracker and the retry queue.
pub struct DeliveryState {
    pub tracker: Mutex<OffsetTracker>,
    pub retries: Mutex<VecDeque<RetryMessage>>,
    pub delivery_errors: AtomicU64,
    /// The warnings for failed deliveries, derived events and dead letters in one, changelog
    /// writes in the other (exactly-once tells them apart by no opaque: all in the first):
    /// with the broker away every queued message fails alike (an abort purges a whole
    /// transaction's), and a line each would bury the log.
    failure_warnings: [LogLimit; 2],
    /// The same for sends librdkafka refused outright (the topic gone, say), split alike:
    /// every retry tick sends each waiting message again, and each fails again at once.
    send_failure_warnings: [LogLimit; 2],
}

/// How often a failed delivery of one kind is logged while failures go on.
const FAILURE_WARNING_EVERY: Duration = Duration::from_secs(10);

impl DeliveryState {
    pub fn new() -> Arc<Self> {
        Arc::new(DeliveryState {
            tracker: Mutex::new(OffsetTracker::default()),
            retries: Mutex::new(VecDeque::new()),
            delivery_errors: AtomicU64::new(0),
            failure_warnings: [(); 2].map(|()| LogLimit::new(FAILURE_WARNING_EVERY)),
            send_failure_warnings: [(); 2].map(|()| LogLimit::new(FAILURE_WARNING_EVERY)),
        })
    }

    /// Whether a failed delivery of `phase` is logged now: `Some(failures held back since the
    /// last line)`.
    fn warn_failure(&self, phase: Phase) -> Option<u64> {
        Self::allow_for(&self.failure_warnings, phase)
    }

    /// Whether a refused send of `phase` is logged now, as [`DeliveryState::warn_failure`].
    fn warn_send_failure(&self, phase: Phase) -> Option<u64> {
        Self::allow_for(&self.send_failure_warnings, phase)
    }

    /// Counts and logs (rate-limited) a send refused outright: the message with `opaque`,
    /// to `topic`, waits for a retry.
    pub fn refused(&self, error: &KafkaError, topic: &str, opaque: usize) {
        self.delivery_errors.fetch_add(1, Ordering::Relaxed);
        let (_, phase) = opaque_to_ticket(opaque);
        if let Some(held_back) = self.warn_send_failure(phase) {
            tracing::warn!(%error, topic, held_back, "Could not send an output; retrying later.");
        }
    }

    fn allow_for(limits: &[LogLimit; 2], phase: Phase) -> Option<u64> {
        let kind = usize::from(phase == Phase::Changelog);
        limits[kind].allow(crate::clock::now_ms())
    }
}

/// Producer context: acknowledged outputs complete their record's ticket; failed ones are
/// queued for retry with their original bytes. A transactional producer's failed message
/// makes its transaction abort instead (the batch is then derived again from restored
/// state), so it is only counted.
pub struct OutputContext {
    pub state: Arc<DeliveryState>,
    pub transactional: bool,
}

impl ClientContext for OutputContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
    }

    fn stats(&self, statistics: rdkafka::statistics::Statistics) {
        super::stats::export(super::stats::ClientRole::Producer, &statistics, None);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error.");
    }
}

impl ProducerContext for OutputContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, opaque: usize) {
        match result {
            Ok(_) => {
                let (ticket, phase) = opaque_to_ticket(opaque);
                lock(&self.state.tracker).delivered(ticket, phase);
            }
            Err((error, message)) => {
                self.state.delivery_errors.fetch_add(1, Ordering::Relaxed);
                let (_, phase) = opaque_to_ticket(opaque);
                let warning = self.state.warn_failure(phase);
                if self.transactional {
                    if let Some(held_back) = warning {
                        tracing::warn!(%error, topic = message.topic(), held_back, "Output delivery failed; its transaction will be aborted.");
                    }
                    return;
                }
                if let Some(held_back) = warning {
                    tracing::warn!(%error, topic = message.topic(), held_back, "Output delivery failed; it will be retried.");
                }
                let headers = message.headers().map(|h| {
                    h.iter().fold(OwnedHeaders::new(), |acc, header| {
                        acc.insert(Header {
                            key: header.key,
                            value: header.value,
                        })
                    })
                });
                let mut retry = OutgoingRef {
                    topic: message.topic(),
                    partition: message.partition(),
                    key: message.key(),
                    payload: message.payload(),
                    headers: None,
                    opaque,
                }
                .to_retry(headers);
                retry.refused_for_size = matches!(
                    error,
                    KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge)
                );
                lock(&self.state.retries).push_back(retry);
            }
        }
    }
}

/// The output producer: idempotent, lz4. At-least-once: deliveries retried by librdkafka
/// without a local timeout (a broker that is down makes outputs wait, never fail by time).
/// Exactly-once (`transactional_id` given): a transactional producer, whose messages time out
/// with their transaction (librdkafka requires `message.timeout.ms` <=
/// `transaction.timeout.ms`). `batch_bytes`: the smallest `max.message.bytes` of the
/// output topics, when it is below librdkafka's 1 MB `batch.size`: the broker applies that
/// limit to a whole batch, and librdkafka does not split a refused one.
pub fn output_producer(
    properties: &BTreeMap<String, String>,
    state: Arc<DeliveryState>,
    max_record_bytes: usize,
    transactional_id: Option<&str>,
    batch_bytes: Option<usize>,
) -> Result<ThreadedProducer<OutputContext>, KafkaSetupError> {
    let mut config = base_config(properties);
    set_default(&mut config, "enable.idempotence", "true");
    set_default(&mut config, "compression.type", "lz4");
    set_default(&mut config, "linger.ms", "5");
    // librdkafka's statistics once a second, exported by `kafka::stats`.
    set_default(&mut config, "statistics.interval.ms", "1000");
    if let Some(id) = transactional_id {
        set_default(&mut config, "transactional.id", id);
        // A crashed instance's open transaction holds back read_committed readers until the
        // broker aborts it (or the instance restarts with the same id): keep that short.
        set_default(&mut config, "transaction.timeout.ms", "30000");
    } else {
        set_default(&mut config, "message.timeout.ms", "0");
    }
    let max_message = max_message_bytes(max_record_bytes);
    set_default(&mut config, "message.max.bytes", &max_message.to_string());
    if let Some(bytes) = batch_bytes.filter(|&b| b < LIBRDKAFKA_BATCH_SIZE) {
        // Room for the batch's own framing.
        let batch = bytes.saturating_sub(BATCH_FRAMING).max(1);
        set_default(&mut config, "batch.size", &batch.to_string());
    }
    config
        .create_with_context(OutputContext {
            state,
            transactional: transactional_id.is_some(),
        })
        .map_err(|source| client_error("producer", source))
}

/// The producer's handle on one topic whose messages never time out in librdkafka's queue,
/// whatever `message.timeout.ms` says for the others: they are delivered, or fail only when
/// the broker refuses them. At-least-once keeps the changelog this way, because librdkafka
/// goes on writing a partition's later messages after timing out an earlier one, so a
/// timed-out changelog write sent again would land behind later writes of its partition (an
/// older state of a session after a newer one, or a progress record before a write it
/// claims). librdkafka keeps the configuration a topic's first handle was made with, and
/// sending by name finds that handle: so this must be made before anything is sent to the
/// topic, and kept while the producer sends to it.
pub struct UntimedTopic {
    handle: NonNull<rdkafka::bindings::rd_kafka_topic_t>,
    /// A topic handle must be destroyed before its client: this keeps the client.
    _client: Arc<ThreadedProducer<OutputContext>>,
}

// librdkafka's topic handles may be used and destroyed from any thread.
unsafe impl Send for UntimedTopic {}
unsafe impl Sync for UntimedTopic {}

impl UntimedTopic {
    pub fn new(
        producer: &Arc<ThreadedProducer<OutputContext>>,
        topic: &str,
    ) -> Result<Self, KafkaSetupError> {
        use rdkafka::bindings as rd;
        let refused = |detail: String| KafkaSetupError::Client {
            role: "producer",
            detail: format!("topic {topic:?} without a message timeout: {detail}"),
        };
        let name = CString::new(topic).map_err(|e| refused(e.to_string()))?;
        let client = producer.client().native_ptr();
        let mut error = [0 as c_char; 512];
        // SAFETY: `client` is a live client, kept alive by the producer held below until the
        // handle is destroyed; `conf` is freed here on failure, else owned by
        // `rd_kafka_topic_new` (which frees it on failure too); the strings outlive the calls.
        let handle = unsafe {
            let conf = rd::rd_kafka_default_topic_conf_dup(client);
            let set = rd::rd_kafka_topic_conf_set(
                conf,
                c"message.timeout.ms".as_ptr(),
                c"0".as_ptr(),
                error.as_mut_ptr(),
                error.len(),
            );
            if set != rd::rd_kafka_conf_res_t::RD_KAFKA_CONF_OK {
                rd::rd_kafka_topic_conf_destroy(conf);
                let detail = CStr::from_ptr(error.as_ptr())
                    .to_string_lossy()
                    .into_owned();
                return Err(refused(detail));
            }
            rd::rd_kafka_topic_new(client, name.as_ptr(), conf)
        };
        let handle =
            NonNull::new(handle).ok_or_else(|| refused("librdkafka made no handle".to_owned()))?;
        Ok(UntimedTopic {
            handle,
            _client: producer.clone(),
        })
    }
}

impl Drop for UntimedTopic {
    fn drop(&mut self) {
        // SAFETY: the handle was made by `rd_kafka_topic_new` and is destroyed once, while
        // `self._client` still keeps its client (fields drop after this).
        unsafe { rdkafka::bindings::rd_kafka_topic_destroy(self.handle.as_ptr()) };
    }
}

/// librdkafka's default `batch.size`.
const LIBRDKAFKA_BATCH_SIZE: usize = 1_000_000;

/// A record batch's framing beyond its records (header, CRC, producer id and epoch).
const BATCH_FRAMING: usize = 256;

/// The largest output message: a dead letter carries an input record of up to
/// `max_record_bytes`, plus its key and headers.
pub fn max_message_bytes(max_record_bytes: usize) -> usize {
    (max_record_bytes + 64 * 1024).max(1_000_000)
}

/// librdkafka's "unassigned partition": the producer's partitioner picks one from the key.
pub const ANY_PARTITION: i32 = -1;

/// One output message, borrowed.
pub struct OutgoingRef<'a> {
    pub topic: &'a str,
    /// A partition, or [`ANY_PARTITION`].
    pub partition: i32,
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub headers: Option<OwnedHeaders>,
    pub opaque: usize,
}

impl OutgoingRef<'_> {
    /// An owned copy, kept for a later send.
    pub fn to_retry(&self, headers: Option<OwnedHeaders>) -> RetryMessage {
        RetryMessage {
            topic: self.topic.to_owned(),
            partition: self.partition,
            key: self.key.map(<[u8]>::to_vec),
            payload: self.payload.map(<[u8]>::to_vec),
            headers,
            opaque: self.opaque,
            refused_for_size: false,
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

/// What one call of [`try_send`] did.
pub enum SendAttempt {
    Sent,
    /// The local queue is full (the broker is slow or away): try again later, with these
    /// headers.
    QueueFull(Option<OwnedHeaders>),
    /// Refused for another reason; the headers come back for a retry copy.
    Failed(KafkaError, Option<OwnedHeaders>),
}

/// How long a full queue is waited out between attempts.
pub const QUEUE_FULL_PAUSE: Duration = Duration::from_millis(5);

/// A send refused because the topic or partition is not in the producer's metadata (deleted,
/// or not created yet): it may pass once the topic is back.
pub fn missing_from_metadata(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::UnknownTopic | RDKafkaErrorCode::UnknownPartition)
    )
}

/// How often a full queue is mentioned in the log while it lasts.
const QUEUE_FULL_WARNING_EVERY: Duration = Duration::from_secs(5);

/// One send, as librdkafka takes or refuses it.
pub fn try_send<C: ProducerContext<DeliveryOpaque = usize>>(
    producer: &ThreadedProducer<C>,
    message: &OutgoingRef<'_>,
    headers: Option<OwnedHeaders>,
) -> SendAttempt {
    let mut record: BaseRecord<'_, [u8], [u8], usize> =
        BaseRecord::with_opaque_to(message.topic, message.opaque).partition(message.partition);
    if let Some(key) = message.key {
        record = record.key(key);
    }
    if let Some(payload) = message.payload {
        record = record.payload(payload);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    match producer.send(record) {
        Ok(()) => SendAttempt::Sent,
        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
            SendAttempt::QueueFull(record.headers)
        }
        Err((error, record)) => SendAttempt::Failed(error, record.headers),
    }
}

fn warn_queue_full(waited: Duration) {
    if waited >= QUEUE_FULL_WARNING_EVERY
        && waited.as_millis() % QUEUE_FULL_WARNING_EVERY.as_millis() < QUEUE_FULL_PAUSE.as_millis()
    {
        tracing::warn!(
            waited_ms = waited.as_millis() as u64,
            "Producer queue full; waiting for the broker."
        );
    }
}

/// Sends one at-least-once message (its opaque is its ticket); a full local queue means the
/// broker is slow or down: wait and retry. Any other send error queues a copy for retry, so
/// nothing is dropped — unless its partition was revoked while it waited (the revocation's
/// drain gave up on it): then it goes with the partition, whose next owner derives it again
/// from the committed offset, and a late changelog write cannot land over the next owner's.
pub async fn send_with_backoff(
    producer: &ThreadedProducer<OutputContext>,
    message: OutgoingRef<'_>,
    backoff: Duration,
    delivery: &DeliveryState,
) {
    if let Err(refused) = send_or_refuse(producer, message, backoff, delivery).await {
        let Refused {
            error,
            message,
            headers,
        } = *refused;
        delivery.refused(&error, message.topic, message.opaque);
        lock(&delivery.retries).push_back(message.to_retry(headers));
    }
}

/// A send librdkafka refused outright (not for a full queue): the message and its headers
/// back, for a retry.
pub struct Refused<'a> {
    pub error: KafkaError,
    pub message: OutgoingRef<'a>,
    pub headers: Option<OwnedHeaders>,
}

/// [`send_with_backoff`]'s send: waits out a full queue (or drops the message of a revoked
/// partition), and hands a refusal back instead of queueing a retry.
pub async fn send_or_refuse<'a>(
    producer: &ThreadedProducer<OutputContext>,
    mut message: OutgoingRef<'a>,
    backoff: Duration,
    delivery: &DeliveryState,
) -> Result<(), Box<Refused<'a>>> {
    let mut waited = Duration::ZERO;
    let mut headers = message.headers.take();
    loop {
        match try_send(producer, &message, headers) {
            SendAttempt::Sent => return Ok(()),
            SendAttempt::QueueFull(back) => {
                headers = back;
                warn_queue_full(waited);
                let pause = QUEUE_FULL_PAUSE.min(backoff);
                tokio::time::sleep(pause).await;
                waited += pause;
                let (ticket, _) = opaque_to_ticket(message.opaque);
                if !lock(&delivery.tracker).is_current(ticket) {
                    tracing::debug!(partition = ticket.0, topic = %message.topic, "Partition revoked while its output waited for the queue; not sent.");
                    return Ok(());
                }
            }
            SendAttempt::Failed(error, back) => {
                return Err(Box::new(Refused {
                    error,
                    message,
                    headers: back,
                }))
            }
        }
    }
}

/// Sends one message from a plain thread (the load generator), waiting out a full queue;
/// any other error is returned.
pub fn send_blocking<C: ProducerContext<DeliveryOpaque = usize>>(
    producer: &ThreadedProducer<C>,
    mut message: OutgoingRef<'_>,
) -> Result<(), KafkaError> {
    let mut waited = Duration::ZERO;
    let mut headers = message.headers.take();
    loop {
        match try_send(producer, &message, headers) {
            SendAttempt::Sent => return Ok(()),
            SendAttempt::QueueFull(back) => {
                headers = back;
                warn_queue_full(waited);
                std::thread::sleep(QUEUE_FULL_PAUSE);
                waited += QUEUE_FULL_PAUSE;
            }
            SendAttempt::Failed(error, _) => return Err(error),
        }
    }
}

/// Context of the load generator's producer: failed deliveries are counted and logged.
#[derive(Default)]
pub struct LoadContext {
    pub delivery_errors: AtomicU64,
}

impl ClientContext for LoadContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        super::forward_log(level, facility, message);
    }
}

impl ProducerContext for LoadContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: usize) {
        if let Err((error, _)) = result {
            if self.delivery_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(%error, "A generated record was not delivered.");
            }
        }
    }
}

/// The load generator's producer (`generate --brokers`, the demo): idempotent, compressed
/// with `compression` (lz4 by default), like the producers that feed sessionflow.
pub fn load_producer(
    brokers: &str,
    compression: &str,
) -> Result<ThreadedProducer<LoadContext>, KafkaSetupError> {
    let mut properties = BTreeMap::new();
    properties.insert("bootstrap.servers".to_owned(), brokers.to_owned());
    let mut config = base_config(&properties);
    for (key, value) in [
        ("enable.idempotence", "true"),
        ("compression.type", compression),
        ("linger.ms", "5"),
        ("message.max.bytes", "2000000"),
    ] {
        config.set(key, value);
    }
    config
        .create_with_context(LoadContext::default())
        .map_err(|source| client_error("load producer", source))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output producer whose every connection is refused (nothing listens there), with
    /// one more property.
    fn producer_without_broker(
        state: &Arc<DeliveryState>,
        (key, value): (&str, &str),
    ) -> ThreadedProducer<OutputContext> {
        let properties = BTreeMap::from([
            ("bootstrap.servers".to_owned(), "127.0.0.1:1".to_owned()),
            (key.to_owned(), value.to_owned()),
        ]);
        output_producer(&properties, state.clone(), 1000, None, None).unwrap()
    }

    /// Both messages wait for a broker that never answers; only the one of the topic without
    /// an untimed handle fails by `message.timeout.ms`. The changelog message is sent first,
    /// so without its handle it would time out no later than the output.
    #[test]
    fn an_untimed_topics_messages_wait_while_the_others_time_out() {
        let state = DeliveryState::new();
        let producer = Arc::new(producer_without_broker(
            &state,
            ("message.timeout.ms", "100"),
        ));
        let _untimed = UntimedTopic::new(&producer, "changelog").unwrap();
        for (seq, topic) in [(1, "changelog"), (2, "outputs")] {
            let message = OutgoingRef {
                topic,
                partition: 0,
                key: Some(b"k"),
                payload: Some(b"v"),
                headers: None,
                opaque: ticket_to_opaque((0, seq), Phase::Output),
            };
            send_blocking(&producer, message).unwrap();
        }
        let failed_topics = || -> Vec<String> {
            lock(&state.retries)
                .iter()
                .map(|m| m.topic.clone())
                .collect()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while failed_topics().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the output never timed out"
            );
            let _ = producer.flush(Duration::from_millis(100));
        }
        // Give a changelog failure reported in the same round its chance to be seen.
        let _ = producer.flush(Duration::from_millis(500));
        assert_eq!(failed_topics(), ["outputs"]);
        assert_eq!(producer.in_flight_count(), 1, "the changelog message waits");
    }

    /// A send waiting for room in a full queue gives up once its partition is revoked (the
    /// revocation's drain gave up on it first); before, it waited for the broker and then
    /// wrote a revoked partition's output or changelog write behind the next owner's.
    #[test]
    fn a_send_waiting_for_a_full_queue_is_dropped_once_its_partition_is_revoked() {
        let state = DeliveryState::new();
        // No broker: the one message the queue holds never leaves it.
        let producer = producer_without_broker(&state, ("queue.buffering.max.messages", "1"));
        let ticket = lock(&state.tracker).register(0, Some(0), 2, 0);
        let message = || OutgoingRef {
            topic: "outputs",
            partition: 0,
            key: Some(b"k"),
            payload: Some(b"v"),
            headers: None,
            opaque: ticket_to_opaque(ticket, Phase::Output),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            send_with_backoff(&producer, message(), Duration::from_millis(10), &state).await;
            let waiting =
                send_with_backoff(&producer, message(), Duration::from_millis(10), &state);
            tokio::pin!(waiting);
            assert!(
                tokio::time::timeout(Duration::from_millis(300), &mut waiting)
                    .await
                    .is_err(),
                "a held partition's send waits for room"
            );
            lock(&state.tracker).remove(0);
            tokio::time::timeout(Duration::from_secs(60), waiting)
                .await
                .expect("the revoked partition's send gave up");
        });
        assert!(lock(&state.retries).is_empty(), "nor kept for a retry");
    }

    #[test]
    fn tickets_round_trip_through_the_opaque() {
        for ticket in [(0, 0), (3, 12345), (65_535, (1 << 47) - 1)] {
            for phase in [Phase::Output, Phase::Changelog] {
                assert_eq!(
                    opaque_to_ticket(ticket_to_opaque(ticket, phase)),
                    (ticket, phase)
                );
            }
        }
    }
}
