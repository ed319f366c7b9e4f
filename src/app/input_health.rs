//! Input health: consumer errors classified, counted and logged with a rate limit, and input
//! partitions that stall (behind their end offset, their fetch position not moving) found,
//! so that an error that keeps a partition from progressing — an undecodable or corrupt
//! batch, an authorization failure, a broker away — cannot go unseen.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::kafka::source::FetchProgress;
use crate::log_limit::LogLimit;
use crate::metrics as m;

/// How often one error kind is logged.
const ERROR_LOG_PERIOD: Duration = Duration::from_secs(10);
/// How often a stalled partition is logged again.
const STALL_LOG_PERIOD: Duration = Duration::from_secs(60);
/// When a stall is logged if it does not make the instance not ready.
const STALL_LOG_AFTER: Duration = Duration::from_secs(60);

/// What kind of consumer error (the `kind` label of `sessionflow_input_errors_total`).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum InputErrorKind {
    /// A batch that cannot be decompressed or decoded.
    Undecodable,
    /// A record that fails its checks (CRC, size, format).
    Corrupt,
    /// Not allowed to read the topic or to use the group.
    Authorization,
    /// The topic or partition does not exist (any more).
    UnknownTopic,
    /// The broker or the network: librdkafka retries.
    Broker,
    Other,
}

impl InputErrorKind {
    pub const ALL: [InputErrorKind; 6] = [
        InputErrorKind::Undecodable,
        InputErrorKind::Corrupt,
        InputErrorKind::Authorization,
        InputErrorKind::UnknownTopic,
        InputErrorKind::Broker,
        InputErrorKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InputErrorKind::Undecodable => "undecodable",
            InputErrorKind::Corrupt => "corrupt",
            InputErrorKind::Authorization => "authorization",
            InputErrorKind::UnknownTopic => "unknown_topic",
            InputErrorKind::Broker => "broker",
            InputErrorKind::Other => "other",
        }
    }

    /// What the operator should look at, for the log line.
    pub fn advice(self) -> &'static str {
        match self {
            InputErrorKind::Undecodable => {
                "a producer wrote a batch this consumer cannot decode (codec, format)"
            }
            InputErrorKind::Corrupt => "a record on the input topic fails its checks",
            InputErrorKind::Authorization => {
                "the principal may not read the input topic or join the group (ACLs)"
            }
            InputErrorKind::UnknownTopic => "the input topic or a partition of it is missing",
            InputErrorKind::Broker => "the broker cannot be reached or refused the fetch",
            InputErrorKind::Other => "see the error",
        }
    }
}

/// The kind of a consumer error; `None` for what is not an error (end of partition).
pub fn classify(error: &KafkaError) -> Option<InputErrorKind> {
    use RDKafkaErrorCode as C;
    let code = match error {
        KafkaError::PartitionEOF(_) => return None,
        KafkaError::MessageConsumption(code) | KafkaError::MessageConsumptionFatal(code) => *code,
        _ => return Some(InputErrorKind::Other),
    };
    Some(match code {
        C::BadCompression | C::NotImplemented | C::UnsupportedCompressionType => {
            InputErrorKind::Undecodable
        }
        C::BadMessage | C::InvalidMessage | C::InvalidRecord => InputErrorKind::Corrupt,
        C::TopicAuthorizationFailed
        | C::GroupAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::Authentication
        | C::SaslAuthenticationFailed => InputErrorKind::Authorization,
        C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition => {
            InputErrorKind::UnknownTopic
        }
        C::BrokerTransportFailure
        | C::AllBrokersDown
        | C::RequestTimedOut
        | C::NetworkException
        | C::NotLeaderForPartition
        | C::LeaderNotAvailable
        | C::OperationTimedOut => InputErrorKind::Broker,
        _ => InputErrorKind::Other,
    })
}

/// Finds partitions that stall: behind their end offset while their fetch position stands
/// still. Fed once a tick from the statistics.
#[derive(Debug, Default)]
pub struct StallWatch {
    partitions: HashMap<i32, Watched>,
}

#[derive(Debug)]
struct Watched {
    next_offset: i64,
    /// Since when the partition has been behind without its fetch position moving.
    stalled_since: Option<Instant>,
}

impl StallWatch {
    /// Takes a partition's latest progress; returns how long it has stalled (zero while it
    /// moves or is caught up).
    pub fn observe(&mut self, partition: i32, progress: FetchProgress, now: Instant) -> Duration {
        let watched = self.partitions.entry(partition).or_insert(Watched {
            next_offset: progress.next_offset,
            stalled_since: None,
        });
        let moved = watched.next_offset != progress.next_offset;
        watched.next_offset = progress.next_offset;
        if moved || !progress.behind() {
            watched.stalled_since = None;
            return Duration::ZERO;
        }
        now.duration_since(*watched.stalled_since.get_or_insert(now))
    }

    /// A revoked partition.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

/// The input side's health, as the pipeline sees it: errors counted and logged, stalls
/// measured, exported and logged, and whether one lasts long enough to make the instance
/// not ready (`pipeline.input_stall_timeout_ms`).
pub struct InputHealth {
    topic: String,
    timeout: Option<Duration>,
    watch: StallWatch,
    /// Each error kind's log lines.
    error_log: HashMap<InputErrorKind, LogLimit>,
    /// The latest consumer error, for the stall log line.
    last_error: Option<(InputErrorKind, String)>,
    /// When each stalled partition was last logged.
    logged: HashMap<i32, Instant>,
    stalled: bool,
}

impl InputHealth {
    pub fn new(topic: &str, timeout: Option<Duration>) -> Self {
        for kind in InputErrorKind::ALL {
            metrics::counter!(m::INPUT_ERRORS_TOTAL, "topic" => topic.to_owned(), "kind" => kind.as_str())
                .increment(0);
        }
        InputHealth {
            topic: topic.to_owned(),
            timeout,
            watch: StallWatch::default(),
            error_log: HashMap::new(),
            last_error: None,
            logged: HashMap::new(),
            stalled: false,
        }
    }

    /// A consumer error: counted by kind, logged with a rate limit.
    pub fn consumer_error(&mut self, error: &KafkaError) {
        let Some(kind) = classify(error) else {
            return;
        };
        metrics::counter!(m::INPUT_ERRORS_TOTAL, "topic" => self.topic.clone(), "kind" => kind.as_str())
            .increment(1);
        let log = self
            .error_log
            .entry(kind)
            .or_insert_with(|| LogLimit::new(ERROR_LOG_PERIOD));
        if let Some(left_out) = log.allow(crate::clock::now_ms()) {
            tracing::warn!(%error, kind = kind.as_str(), left_out, topic = %self.topic, "Input consumer error ({}); librdkafka retries.", kind.advice());
        }
        self.last_error = Some((kind, error.to_string()));
    }

    /// Once a tick: each held partition's progress from the latest statistics. Exports how
    /// long each has stalled, logs stalls (once they last, then once a period), and decides
    /// whether one lasts past the timeout.
    pub fn check(
        &mut self,
        partitions: impl Iterator<Item = i32>,
        fetch: &HashMap<i32, FetchProgress>,
        now: Instant,
    ) {
        let log_after = self.timeout.unwrap_or(STALL_LOG_AFTER);
        self.stalled = false;
        for partition in partitions {
            let Some(&progress) = fetch.get(&partition) else {
                continue;
            };
            let stalled_for = self.watch.observe(partition, progress, now);
            metrics::gauge!(m::INPUT_STALLED_SECONDS, "topic" => self.topic.clone(), "partition" => partition.to_string())
                .set(stalled_for.as_secs_f64());
            if stalled_for.is_zero() {
                self.logged.remove(&partition);
                continue;
            }
            if self.timeout.is_some_and(|t| stalled_for >= t) {
                self.stalled = true;
            }
            let due = self
                .logged
                .get(&partition)
                .is_none_or(|last| now.duration_since(*last) >= STALL_LOG_PERIOD);
            if stalled_for >= log_after && due {
                self.logged.insert(partition, now);
                let (kind, error) = self
                    .last_error
                    .as_ref()
                    .map_or(("none", ""), |(k, e)| (k.as_str(), e.as_str()));
                tracing::error!(
                    topic = %self.topic,
                    partition,
                    stalled_seconds = stalled_for.as_secs(),
                    next_offset = progress.next_offset,
                    end_offset = progress.end_offset,
                    last_error_kind = kind,
                    last_error = error,
                    not_ready = self.timeout.is_some(),
                    "Input partition is not progressing: behind its end offset and its fetch position stands still (see docs/operations.md, failures)."
                );
            }
        }
    }

    /// Whether a partition has stalled for longer than `pipeline.input_stall_timeout_ms`.
    pub fn is_stalled(&self) -> bool {
        self.stalled
    }

    /// A revoked partition: no longer watched, its gauge back to 0.
    pub fn forget(&mut self, partition: i32) {
        self.watch.forget(partition);
        self.logged.remove(&partition);
        metrics::gauge!(m::INPUT_STALLED_SECONDS, "topic" => self.topic.clone(), "partition" => partition.to_string())
            .set(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_errors_are_classified_by_what_the_operator_must_do() {
        let kind = |code| classify(&KafkaError::MessageConsumption(code));
        assert_eq!(
            kind(RDKafkaErrorCode::BadCompression),
            Some(InputErrorKind::Undecodable)
        );
        assert_eq!(
            kind(RDKafkaErrorCode::InvalidMessage),
            Some(InputErrorKind::Corrupt)
        );
        assert_eq!(
            kind(RDKafkaErrorCode::TopicAuthorizationFailed),
            Some(InputErrorKind::Authorization)
        );
        assert_eq!(
            kind(RDKafkaErrorCode::UnknownTopicOrPartition),
            Some(InputErrorKind::UnknownTopic)
        );
        assert_eq!(
            kind(RDKafkaErrorCode::AllBrokersDown),
            Some(InputErrorKind::Broker)
        );
        assert_eq!(classify(&KafkaError::PartitionEOF(3)), None);
    }

    #[test]
    fn a_partition_stalls_only_while_behind_and_not_moving() {
        let mut watch = StallWatch::default();
        let t = Instant::now();
        let at = |s: u64| t + Duration::from_secs(s);
        let progress = |next_offset, end_offset| FetchProgress {
            next_offset,
            end_offset,
        };
        // Behind and moving: not stalled.
        assert_eq!(watch.observe(0, progress(10, 100), at(0)), Duration::ZERO);
        assert_eq!(watch.observe(0, progress(20, 100), at(1)), Duration::ZERO);
        // Behind and standing still: stalled since the first still tick.
        assert_eq!(watch.observe(0, progress(20, 100), at(2)), Duration::ZERO);
        assert_eq!(
            watch.observe(0, progress(20, 100), at(32)),
            Duration::from_secs(30)
        );
        // Moving again clears it.
        assert_eq!(watch.observe(0, progress(21, 100), at(33)), Duration::ZERO);
        // Caught up and quiet is not stalled, however long.
        assert_eq!(watch.observe(1, progress(50, 50), at(0)), Duration::ZERO);
        assert_eq!(watch.observe(1, progress(50, 50), at(600)), Duration::ZERO);
        // Never fetched from a non-empty partition: stalled; from an empty one: not.
        assert_eq!(watch.observe(2, progress(-1001, 7), at(0)), Duration::ZERO);
        assert_eq!(
            watch.observe(2, progress(-1001, 7), at(5)),
            Duration::from_secs(5)
        );
        assert_eq!(watch.observe(3, progress(-1001, 0), at(0)), Duration::ZERO);
        assert_eq!(watch.observe(3, progress(-1001, 0), at(9)), Duration::ZERO);
        // End unknown (no statistics yet): not stalled.
        assert_eq!(watch.observe(4, progress(5, -1), at(0)), Duration::ZERO);
        assert_eq!(watch.observe(4, progress(5, -1), at(9)), Duration::ZERO);
        watch.forget(0);
        assert_eq!(watch.observe(0, progress(21, 100), at(40)), Duration::ZERO);
    }
}
