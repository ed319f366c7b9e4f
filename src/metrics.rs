//! Every metric sessionflow exports (SPEC section 7): names as constants, described once at
//! start-up, and the Prometheus recorder that `/metrics` renders. Label values always come
//! from closed sets (statuses, causes, kinds, partition numbers), never from input text.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::engine::Engine;
use crate::model::{AnomalyKind, Cause, Outcome};
use crate::parse::ErrorKind;
use crate::stats::Stats;

pub const RECORDS_TOTAL: &str = "sessionflow_records_total";
pub const TRANSITIONS_TOTAL: &str = "sessionflow_transitions_total";
pub const ANOMALIES_TOTAL: &str = "sessionflow_anomalies_total";
pub const DEAD_LETTERS_TOTAL: &str = "sessionflow_dead_letters_total";
pub const SESSIONS: &str = "sessionflow_sessions";
pub const SESSION_LIFETIME_SECONDS: &str = "sessionflow_session_lifetime_seconds";
pub const EVENT_LAG_SECONDS: &str = "sessionflow_event_lag_seconds";
/// Beyond the SPEC's table: input record timestamp to the acknowledgement of its outputs
/// (per batch and partition, its oldest record).
pub const PROCESSING_LATENCY_SECONDS: &str = "sessionflow_processing_latency_seconds";
/// Beyond the SPEC's table: one batch step, from its first record read to its outputs sent
/// (exactly-once: its transaction committed).
pub const BATCH_DURATION_SECONDS: &str = "sessionflow_batch_duration_seconds";
/// Beyond the SPEC's table: input records each processing thread (`pipeline.workers`) took,
/// by `worker`: how evenly the partitions spread.
pub const WORKER_RECORDS_TOTAL: &str = "sessionflow_worker_records_total";
pub const WATERMARK_LAG_SECONDS: &str = "sessionflow_watermark_lag_seconds";
pub const CONSUMER_LAG_RECORDS: &str = "sessionflow_consumer_lag_records";
pub const STATE_RESTORE_SECONDS: &str = "sessionflow_state_restore_seconds";
pub const STATE_RESTORED_SESSIONS_TOTAL: &str = "sessionflow_state_restored_sessions_total";
pub const BUILD_INFO: &str = "sessionflow_build_info";
/// Beyond the SPEC's table: output deliveries that failed and sends refused, each retried.
pub const DELIVERY_ERRORS_TOTAL: &str = "sessionflow_delivery_errors_total";
/// Beyond the SPEC's table: 1 while `/readyz` answers 200 (for alerting).
pub const READY: &str = "sessionflow_ready";

/// Beyond the SPEC's table: exactly-once transactions by outcome (committed, aborted).
pub const TRANSACTIONS_TOTAL: &str = "sessionflow_transactions_total";

/// Beyond the SPEC's table: failed attempts at reading a state changelog partition (each
/// is retried; the partition is not processed meanwhile).
pub const STATE_RESTORE_RETRIES_TOTAL: &str = "sessionflow_state_restore_retries_total";
/// Beyond the SPEC's table: changelog records that could not be read, by `action`.
pub const STATE_CORRUPT_RECORDS_TOTAL: &str = "sessionflow_state_corrupt_records_total";
/// Beyond the SPEC's table: consumer errors on the input topic, by `topic` and `kind`
/// (librdkafka's Rust binding reports a failed fetch without its partition).
pub const INPUT_ERRORS_TOTAL: &str = "sessionflow_input_errors_total";
/// Beyond the SPEC's table: how long an input partition has been behind its end offset with
/// its fetch position standing still, by `topic` and `partition` (0 while it progresses).
pub const INPUT_STALLED_SECONDS: &str = "sessionflow_input_stalled_seconds";
/// Beyond the SPEC's table: distinct unknown status texts interned in state, all partitions
/// (each is reclaimed once no session holds it).
pub const UNKNOWN_STATUSES: &str = "sessionflow_unknown_statuses";
/// Beyond the SPEC's table: sessions in a non-terminal status whose latest state came with
/// an `actor` (an impersonation), all partitions.
pub const IMPERSONATED_SESSIONS: &str = "sessionflow_impersonated_sessions";

/// Beyond the SPEC's table: librdkafka's statistics (`statistics.interval.ms`, every second),
/// a chosen few, labelled by `client` (`consumer`: the input consumer; `producer`: the output
/// producer) and, per broker, `broker` (its node id). Exported by `kafka::stats`.
pub const KAFKA_BROKER_UP: &str = "sessionflow_kafka_broker_up";
pub const KAFKA_BROKER_RTT_AVG_SECONDS: &str = "sessionflow_kafka_broker_rtt_avg_seconds";
pub const KAFKA_BROKER_RTT_P99_SECONDS: &str = "sessionflow_kafka_broker_rtt_p99_seconds";
pub const KAFKA_BROKER_REQUESTS_IN_FLIGHT: &str = "sessionflow_kafka_broker_requests_in_flight";
pub const KAFKA_BROKER_REQUESTS_QUEUED: &str = "sessionflow_kafka_broker_requests_queued";
pub const KAFKA_BROKER_REQUEST_TIMEOUTS_TOTAL: &str =
    "sessionflow_kafka_broker_request_timeouts_total";
pub const KAFKA_BROKER_ERRORS_TOTAL: &str = "sessionflow_kafka_broker_errors_total";
pub const KAFKA_BROKER_DISCONNECTS_TOTAL: &str = "sessionflow_kafka_broker_disconnects_total";
pub const KAFKA_PRODUCER_QUEUE_MESSAGES: &str = "sessionflow_kafka_producer_queue_messages";
pub const KAFKA_PRODUCER_QUEUE_BYTES: &str = "sessionflow_kafka_producer_queue_bytes";
pub const KAFKA_FETCH_QUEUE_MESSAGES: &str = "sessionflow_kafka_fetch_queue_messages";
pub const KAFKA_REBALANCES_TOTAL: &str = "sessionflow_kafka_rebalances_total";
/// Beyond the SPEC's table: offset commits of the input consumer (automatic and explicit), by
/// `outcome` (`committed`, `failed`), from librdkafka's commit callback.
pub const KAFKA_COMMITS_TOTAL: &str = "sessionflow_kafka_commits_total";

/// `sessionflow ingest`: webhook requests by `outcome` (see `ingest::Outcome`).
pub const INGEST_REQUESTS_TOTAL: &str = "sessionflow_ingest_requests_total";
/// `sessionflow ingest`: requests refused with 401, by `reason`.
pub const INGEST_REFUSALS_TOTAL: &str = "sessionflow_ingest_refusals_total";
/// `sessionflow ingest`: a webhook's write, from send to the broker's acknowledgement.
pub const INGEST_WRITE_SECONDS: &str = "sessionflow_ingest_write_seconds";
/// `sessionflow ingest`: requests being handled.
pub const INGEST_REQUESTS_IN_FLIGHT: &str = "sessionflow_ingest_requests_in_flight";

/// `action` label values of [`STATE_CORRUPT_RECORDS_TOTAL`].
pub const ACTION_STOPPED: &str = "stopped";
pub const ACTION_SKIPPED: &str = "skipped";

/// `outcome` label values of [`RECORDS_TOTAL`] beyond the observation outcomes.
pub const OUTCOME_IGNORED: &str = "ignored";
pub const OUTCOME_INVALID: &str = "invalid";
/// `outcome` label values of [`TRANSACTIONS_TOTAL`].
pub const OUTCOME_COMMITTED: &str = "committed";
pub const OUTCOME_ABORTED: &str = "aborted";
/// `outcome` label value of [`KAFKA_COMMITS_TOTAL`] beside [`OUTCOME_COMMITTED`].
pub const OUTCOME_FAILED: &str = "failed";

/// Every metric name of the pipeline (`run`, `demo`), for checks (dashboards, alerts, docs)
/// against the code; `ingest`'s own are in [`INGEST`].
pub const ALL: [&str; 37] = [
    RECORDS_TOTAL,
    TRANSITIONS_TOTAL,
    ANOMALIES_TOTAL,
    DEAD_LETTERS_TOTAL,
    SESSIONS,
    SESSION_LIFETIME_SECONDS,
    EVENT_LAG_SECONDS,
    WATERMARK_LAG_SECONDS,
    CONSUMER_LAG_RECORDS,
    STATE_RESTORE_SECONDS,
    STATE_RESTORED_SESSIONS_TOTAL,
    BUILD_INFO,
    DELIVERY_ERRORS_TOTAL,
    READY,
    TRANSACTIONS_TOTAL,
    STATE_RESTORE_RETRIES_TOTAL,
    STATE_CORRUPT_RECORDS_TOTAL,
    INPUT_ERRORS_TOTAL,
    INPUT_STALLED_SECONDS,
    UNKNOWN_STATUSES,
    PROCESSING_LATENCY_SECONDS,
    BATCH_DURATION_SECONDS,
    WORKER_RECORDS_TOTAL,
    IMPERSONATED_SESSIONS,
    KAFKA_BROKER_UP,
    KAFKA_BROKER_RTT_AVG_SECONDS,
    KAFKA_BROKER_RTT_P99_SECONDS,
    KAFKA_BROKER_REQUESTS_IN_FLIGHT,
    KAFKA_BROKER_REQUESTS_QUEUED,
    KAFKA_BROKER_REQUEST_TIMEOUTS_TOTAL,
    KAFKA_BROKER_ERRORS_TOTAL,
    KAFKA_BROKER_DISCONNECTS_TOTAL,
    KAFKA_PRODUCER_QUEUE_MESSAGES,
    KAFKA_PRODUCER_QUEUE_BYTES,
    KAFKA_FETCH_QUEUE_MESSAGES,
    KAFKA_REBALANCES_TOTAL,
    KAFKA_COMMITS_TOTAL,
];

/// The metrics only `sessionflow ingest` exports (beside the librdkafka and process series).
pub const INGEST: [&str; 4] = [
    INGEST_REQUESTS_TOTAL,
    INGEST_REFUSALS_TOTAL,
    INGEST_WRITE_SECONDS,
    INGEST_REQUESTS_IN_FLIGHT,
];

/// Whether `name` is a metric sessionflow exports (`run` or `ingest`).
pub fn is_declared(name: &str) -> bool {
    ALL.contains(&name) || INGEST.contains(&name)
}

/// Installs the global Prometheus recorder for the pipeline (`run`, `demo`): every metric
/// described, the pipeline's series created at zero. Per-partition gauges that stop being
/// updated (a revoked partition) disappear after `idle`.
pub fn install(idle: Duration) -> anyhow::Result<PrometheusHandle> {
    let handle = install_recorder(idle)?;
    register();
    Ok(handle)
}

/// Installs the global Prometheus recorder for `sessionflow ingest`: its own series only (it
/// registers them itself), none of the pipeline's.
pub fn install_for_ingest(idle: Duration) -> anyhow::Result<PrometheusHandle> {
    install_recorder(idle)
}

fn install_recorder(idle: Duration) -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .idle_timeout(metrics_util::MetricKindMask::GAUGE, Some(idle))
        .set_buckets_for_metric(
            Matcher::Full(SESSION_LIFETIME_SECONDS.into()),
            &[
                60.0, 600.0, 3600.0, 14400.0, 86400.0, 259200.0, 604800.0, 2592000.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(EVENT_LAG_SECONDS.into()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                3600.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(PROCESSING_LATENCY_SECONDS.into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                60.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(BATCH_DURATION_SECONDS.into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(INGEST_WRITE_SECONDS.into()),
            &[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full(STATE_RESTORE_SECONDS.into()),
            &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0],
        )?
        .install_recorder()?;
    describe();
    set_build_info();
    process_collector().describe();
    collect_process_metrics();
    Ok(handle)
}

/// The standard process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_open_fds`, `process_threads`, …), from the `metrics-process` crate.
fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: std::sync::OnceLock<metrics_process::Collector> = std::sync::OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads the process metrics now (from /proc): called before every scrape is rendered.
pub fn collect_process_metrics() {
    process_collector().collect();
}

/// Sets the build-info gauge. The recorder drops gauges not set for `idle`, so the pipeline
/// sets it again with every export, and ingest with every scrape (a scrape must always find
/// it).
pub fn set_build_info() {
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Creates every series whose labels are known up front, at zero, so that `/metrics` shows
/// every metric from the start (a counter that never moved is otherwise absent).
fn register() {
    use crate::model::{AnomalyKind, Outcome, KNOWN_STATUSES};
    use crate::parse::ErrorKind;
    for outcome in Outcome::ALL
        .iter()
        .map(|o| o.as_str())
        .chain(["ignored", "invalid"])
    {
        metrics::counter!(RECORDS_TOTAL, "outcome" => outcome).increment(0);
    }
    for kind in AnomalyKind::ALL {
        metrics::counter!(ANOMALIES_TOTAL, "kind" => kind.as_str()).increment(0);
    }
    for kind in ErrorKind::ALL {
        metrics::counter!(DEAD_LETTERS_TOTAL, "kind" => kind.as_str()).increment(0);
    }
    metrics::counter!(TRANSITIONS_TOTAL, "from" => "none", "to" => "active", "cause" => "observed")
        .increment(0);
    for status in KNOWN_STATUSES.iter().copied().chain(["other"]) {
        metrics::gauge!(SESSIONS, "status" => status).set(0.0);
    }
    metrics::gauge!(UNKNOWN_STATUSES).set(0.0);
    metrics::gauge!(IMPERSONATED_SESSIONS).set(0.0);
    for outcome in [OUTCOME_COMMITTED, OUTCOME_FAILED] {
        metrics::counter!(KAFKA_COMMITS_TOTAL, "outcome" => outcome).increment(0);
    }
    metrics::counter!(STATE_RESTORED_SESSIONS_TOTAL).increment(0);
    metrics::counter!(DELIVERY_ERRORS_TOTAL).increment(0);
    metrics::counter!(STATE_RESTORE_RETRIES_TOTAL).increment(0);
    for action in [ACTION_STOPPED, ACTION_SKIPPED] {
        metrics::counter!(STATE_CORRUPT_RECORDS_TOTAL, "action" => action).increment(0);
    }
    metrics::gauge!(READY).set(0.0);
    for outcome in [OUTCOME_COMMITTED, OUTCOME_ABORTED] {
        metrics::counter!(TRANSACTIONS_TOTAL, "outcome" => outcome).increment(0);
    }
    // Histograms appear with their first sample; these are the zero-information samples
    // that keep the series present without skewing them: none. They are described above.
    let _ = (
        metrics::histogram!(SESSION_LIFETIME_SECONDS, "end" => "ended"),
        metrics::histogram!(EVENT_LAG_SECONDS),
        metrics::histogram!(STATE_RESTORE_SECONDS),
    );
}

fn describe() {
    describe_counter!(RECORDS_TOTAL, Unit::Count, "Input observations by outcome (applied, duplicate, stale, late) and records by outcome (ignored, invalid).");
    describe_counter!(
        TRANSITIONS_TOTAL,
        Unit::Count,
        "Derived session transitions by from, to and cause."
    );
    describe_counter!(ANOMALIES_TOTAL, Unit::Count, "Derived anomalies by kind.");
    describe_counter!(
        DEAD_LETTERS_TOTAL,
        Unit::Count,
        "Invalid records sent to the dead-letter topic, by kind."
    );
    describe_gauge!(SESSIONS, Unit::Count, "Sessions held in state, by status.");
    describe_histogram!(
        SESSION_LIFETIME_SECONDS,
        Unit::Seconds,
        "Session age on entering a terminal status, by terminal status."
    );
    describe_histogram!(
        EVENT_LAG_SECONDS,
        Unit::Seconds,
        "Wall clock minus event time when processed (newest event time of each batch)."
    );
    describe_histogram!(
        PROCESSING_LATENCY_SECONDS,
        Unit::Seconds,
        "Input record timestamp to the broker's acknowledgement of everything it caused (per batch and partition, its oldest record)."
    );
    describe_histogram!(
        BATCH_DURATION_SECONDS,
        Unit::Seconds,
        "One batch step: parse, apply and send (exactly-once: up to its transaction committed)."
    );
    describe_counter!(
        WORKER_RECORDS_TOTAL,
        Unit::Count,
        "Input records parsed and applied by each processing thread (pipeline.workers), by worker."
    );
    describe_gauge!(
        WATERMARK_LAG_SECONDS,
        Unit::Seconds,
        "Wall clock minus the partition's watermark."
    );
    describe_gauge!(
        CONSUMER_LAG_RECORDS,
        Unit::Count,
        "Records between the consumer's position and the partition's end offset (the high watermark; the last stable offset under exactly-once), per assigned partition."
    );
    describe_histogram!(
        STATE_RESTORE_SECONDS,
        Unit::Seconds,
        "Time to restore a partition's state from its changelog."
    );
    describe_counter!(
        STATE_RESTORED_SESSIONS_TOTAL,
        Unit::Count,
        "Sessions restored from changelogs."
    );
    describe_gauge!(
        BUILD_INFO,
        Unit::Count,
        "Always 1; the version label names the running build."
    );
    describe_counter!(
        STATE_RESTORE_RETRIES_TOTAL,
        Unit::Count,
        "Failed attempts at reading a state changelog partition; each is retried."
    );
    describe_counter!(
        STATE_CORRUPT_RECORDS_TOTAL,
        Unit::Count,
        "Unreadable state changelog records, by action (stopped the partition, or skipped)."
    );
    describe_gauge!(
        READY,
        Unit::Count,
        "1 while /readyz answers 200: every assigned partition restored, none stopped, no input partition stalled."
    );
    describe_counter!(
        INPUT_ERRORS_TOTAL,
        Unit::Count,
        "Consumer errors reading the input topic, by topic and kind (undecodable, corrupt, authorization, unknown_topic, broker, other)."
    );
    describe_gauge!(
        INPUT_STALLED_SECONDS,
        Unit::Seconds,
        "How long an assigned input partition has been behind its end offset with its fetch position standing still (0 while it progresses)."
    );
    describe_gauge!(
        UNKNOWN_STATUSES,
        Unit::Count,
        "Distinct unknown status texts held in state, all partitions; each is reclaimed once no session holds it."
    );
    describe_counter!(
        DELIVERY_ERRORS_TOTAL,
        Unit::Count,
        "Output deliveries that failed, and sends librdkafka refused (queued for retry, or ending their transaction)."
    );
    describe_gauge!(
        IMPERSONATED_SESSIONS,
        Unit::Count,
        "Sessions in a non-terminal status whose latest state came with an actor (impersonations), all partitions."
    );
    describe_gauge!(
        KAFKA_BROKER_UP,
        Unit::Count,
        "1 while the client's connection to the broker is up (librdkafka statistics), by client and broker."
    );
    describe_gauge!(
        KAFKA_BROKER_RTT_AVG_SECONDS,
        Unit::Seconds,
        "Mean request round trip to the broker over the last statistics interval, by client and broker."
    );
    describe_gauge!(
        KAFKA_BROKER_RTT_P99_SECONDS,
        Unit::Seconds,
        "99th percentile of the request round trip to the broker over the last statistics interval, by client and broker."
    );
    describe_gauge!(
        KAFKA_BROKER_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "Requests sent to the broker and awaiting its response, by client and broker."
    );
    describe_gauge!(
        KAFKA_BROKER_REQUESTS_QUEUED,
        Unit::Count,
        "Requests waiting to be sent to the broker, by client and broker."
    );
    describe_counter!(
        KAFKA_BROKER_REQUEST_TIMEOUTS_TOTAL,
        Unit::Count,
        "Requests to the broker that timed out, by client and broker."
    );
    describe_counter!(
        KAFKA_BROKER_ERRORS_TOTAL,
        Unit::Count,
        "Transmission and receive errors on the broker connection, by client, broker and direction (transmit, receive)."
    );
    describe_counter!(
        KAFKA_BROKER_DISCONNECTS_TOTAL,
        Unit::Count,
        "Disconnections from the broker, by client and broker."
    );
    describe_gauge!(
        KAFKA_PRODUCER_QUEUE_MESSAGES,
        Unit::Count,
        "Messages in the output producer's local queue, not yet acknowledged by a broker."
    );
    describe_gauge!(
        KAFKA_PRODUCER_QUEUE_BYTES,
        Unit::Bytes,
        "Bytes of the messages in the output producer's local queue."
    );
    describe_gauge!(
        KAFKA_FETCH_QUEUE_MESSAGES,
        Unit::Count,
        "Messages fetched from the broker and waiting in the input consumer's local queue, by topic and partition."
    );
    describe_counter!(
        KAFKA_REBALANCES_TOTAL,
        Unit::Count,
        "Consumer group rebalances (assignments and revocations) of the input consumer, by group."
    );
    describe_counter!(
        KAFKA_COMMITS_TOTAL,
        Unit::Count,
        "Offset commits of the input consumer (automatic and explicit), by outcome (committed, failed)."
    );
    describe_counter!(
        INGEST_REQUESTS_TOTAL,
        Unit::Count,
        "sessionflow ingest: webhook requests by outcome (accepted, duplicate, refused, too_large, unsupported_media_type, bad_request, timeout, unavailable, busy)."
    );
    describe_counter!(
        INGEST_REFUSALS_TOTAL,
        Unit::Count,
        "sessionflow ingest: requests refused with 401, by reason."
    );
    describe_histogram!(
        INGEST_WRITE_SECONDS,
        Unit::Seconds,
        "sessionflow ingest: a webhook's write, from send to the broker's acknowledgement."
    );
    describe_gauge!(
        INGEST_REQUESTS_IN_FLIGHT,
        Unit::Count,
        "sessionflow ingest: webhook requests being handled."
    );
    describe_counter!(
        TRANSACTIONS_TOTAL,
        Unit::Count,
        "Exactly-once transactions by outcome: committed, or aborted (state restored and the batch derived again)."
    );
}

/// Exports the growth of the pipeline's plain counters ([`Stats`]) to the recorder: the
/// counters are kept on the hot path without touching the recorder, and the difference since
/// the last export is added once a second.
#[derive(Default)]
pub struct CounterExport {
    exported: Stats,
    exported_delivery_errors: u64,
}

impl CounterExport {
    pub fn new() -> Self {
        CounterExport {
            exported: Stats::new(),
            exported_delivery_errors: 0,
        }
    }

    /// Adds what `now` and `delivery_errors` grew by since the last call.
    pub fn export(&mut self, now: &Stats, delivery_errors: u64) {
        let before = &self.exported;
        let add = |delta: u64, counter: metrics::Counter| {
            if delta > 0 {
                counter.increment(delta);
            }
        };
        for outcome in Outcome::ALL {
            add(
                now.outcome(outcome) - before.outcome(outcome),
                metrics::counter!(RECORDS_TOTAL, "outcome" => outcome.as_str()),
            );
        }
        add(
            now.ignored - before.ignored,
            metrics::counter!(RECORDS_TOTAL, "outcome" => OUTCOME_IGNORED),
        );
        add(
            now.invalid_total() - before.invalid_total(),
            metrics::counter!(RECORDS_TOTAL, "outcome" => OUTCOME_INVALID),
        );
        for kind in ErrorKind::ALL {
            add(
                now.invalid_of(kind) - before.invalid_of(kind),
                metrics::counter!(DEAD_LETTERS_TOTAL, "kind" => kind.as_str()),
            );
        }
        let previous: HashMap<(&str, &str, Cause), u64> = before
            .transition_counts()
            .map(|(f, t, c, n)| ((f, t, c), n))
            .collect();
        for (from, to, cause, n) in now.transition_counts() {
            add(
                n - previous.get(&(from, to, cause)).copied().unwrap_or(0),
                metrics::counter!(TRANSITIONS_TOTAL, "from" => from, "to" => to, "cause" => cause.as_str()),
            );
        }
        for kind in AnomalyKind::ALL {
            add(
                now.anomalies[kind as usize] - before.anomalies[kind as usize],
                metrics::counter!(ANOMALIES_TOTAL, "kind" => kind.as_str()),
            );
        }
        self.exported = now.clone();
        if delivery_errors > self.exported_delivery_errors {
            metrics::counter!(DELIVERY_ERRORS_TOTAL)
                .increment(delivery_errors - self.exported_delivery_errors);
            self.exported_delivery_errors = delivery_errors;
        }
    }
}

/// What the per-partition gauges showed, summed.
/// The input topic and consumer group, as labels of the lag gauge.
#[derive(Copy, Clone, Debug)]
pub struct InputLabels<'a> {
    pub topic: &'a str,
    pub group: &'a str,
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct GaugeTotals {
    pub sessions_held: u64,
    /// Records between the consumer's position and the end offsets of the assigned
    /// partitions.
    pub consumer_lag: i64,
}

/// Sets the session, watermark-lag and consumer-lag gauges from the assigned partitions'
/// engines and the consumer's latest per-partition lag (`-1`: unknown).
pub fn export_gauges<'a>(
    partitions: impl Iterator<Item = (i32, &'a Engine)>,
    input: InputLabels<'_>,
    lag: &HashMap<i32, i64>,
    wall_clock_ms: i64,
) -> GaugeTotals {
    set_build_info();
    let mut by_status: HashMap<&str, u64> = HashMap::new();
    let mut totals = GaugeTotals::default();
    let mut unknown_statuses = 0;
    let mut impersonated = 0;
    for (partition, engine) in partitions {
        unknown_statuses += engine.unknown_statuses();
        impersonated += engine.impersonated_live_sessions();
        for (status, n) in engine.sessions_by_status() {
            *by_status.entry(status).or_default() += n;
        }
        if let Some(w) = engine.watermark() {
            metrics::gauge!(WATERMARK_LAG_SECONDS, "partition" => partition.to_string())
                .set((wall_clock_ms - w) as f64 / 1000.0);
        }
        if let Some(&l) = lag.get(&partition).filter(|&&l| l >= 0) {
            totals.consumer_lag += l;
            metrics::gauge!(
                CONSUMER_LAG_RECORDS,
                "topic" => input.topic.to_owned(),
                "group" => input.group.to_owned(),
                "partition" => partition.to_string()
            )
            .set(l as f64);
        }
    }
    metrics::gauge!(UNKNOWN_STATUSES).set(unknown_statuses as f64);
    metrics::gauge!(IMPERSONATED_SESSIONS).set(impersonated as f64);
    totals.sessions_held = by_status.values().sum();
    for (status, n) in by_status {
        metrics::gauge!(SESSIONS, "status" => status).set(n as f64);
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Anomaly, DerivedEvent};

    /// Every anomaly kind, counted and exported (an array sized by hand once missed a new
    /// kind and the first export of a live run panicked).
    #[test]
    fn every_anomaly_kind_is_counted_and_exported() {
        let mut stats = Stats::new();
        for kind in AnomalyKind::ALL {
            stats.count_event(&DerivedEvent::Anomaly(Anomaly {
                kind,
                session_id: "sess_1",
                user_id: None,
                status: None,
                observed: "active",
                at: 0,
                source: None,
            }));
        }
        assert_eq!(stats.anomalies_total(), AnomalyKind::ALL.len() as u64);
        let mut export = CounterExport::new();
        export.export(&stats, 0);
        export.export(&stats, 0);
    }
}
