//! librdkafka's statistics as Prometheus series: a chosen few per broker, per input partition
//! and per client, set once per statistics interval from the clients' stats callbacks.

use rdkafka::statistics::{Broker, Statistics};

use crate::metrics as m;

/// Which of sessionflow's clients a statistics report came from: the `client` label.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ClientRole {
    /// The input consumer (a group member).
    Consumer,
    /// The output producer.
    Producer,
    /// `sessionflow ingest`'s producer (beside the pipeline's in `sessionflow demo`).
    Ingest,
}

impl ClientRole {
    pub fn label(self) -> &'static str {
        match self {
            ClientRole::Consumer => "consumer",
            ClientRole::Producer => "producer",
            ClientRole::Ingest => "ingest",
        }
    }
}

/// What the input consumer's report adds: its topic (for the fetch queues) and its group.
#[derive(Copy, Clone, Debug)]
pub struct InputScope<'a> {
    pub topic: &'a str,
    pub group: &'a str,
}

/// Exports one statistics report. Brokers are the cluster's (bootstrap entries and
/// librdkafka's logical coordinator handles are left out: they have no node id of their own).
/// librdkafka's counters restart from zero with a new client (a replaced producer): the
/// series then reset, as Prometheus counters may.
pub fn export(role: ClientRole, statistics: &Statistics, input: Option<InputScope<'_>>) {
    let client = role.label();
    for broker in statistics.brokers.values() {
        if broker.nodeid < 0 || broker.source == "logical" {
            continue;
        }
        export_broker(client, broker);
    }
    match (role, input) {
        (ClientRole::Producer | ClientRole::Ingest, _) => {
            metrics::gauge!(m::KAFKA_PRODUCER_QUEUE_MESSAGES, "client" => client)
                .set(statistics.msg_cnt as f64);
            metrics::gauge!(m::KAFKA_PRODUCER_QUEUE_BYTES, "client" => client)
                .set(statistics.msg_size as f64);
        }
        (ClientRole::Consumer, Some(input)) => {
            if let Some(topic) = statistics.topics.get(input.topic) {
                for (&partition, stats) in &topic.partitions {
                    // Only the partitions this instance fetches (-1 is librdkafka's
                    // unassigned-messages partition).
                    if partition >= 0 && stats.fetch_state != "none" {
                        metrics::gauge!(
                            m::KAFKA_FETCH_QUEUE_MESSAGES,
                            "topic" => input.topic.to_owned(),
                            "partition" => partition.to_string()
                        )
                        .set(stats.fetchq_cnt as f64);
                    }
                }
            }
            if let Some(group) = &statistics.cgrp {
                metrics::counter!(m::KAFKA_REBALANCES_TOTAL, "group" => input.group.to_owned())
                    .absolute(group.rebalance_cnt.max(0) as u64);
            }
        }
        (ClientRole::Consumer, None) => {}
    }
}

fn export_broker(client: &'static str, broker: &Broker) {
    let id = broker.nodeid.to_string();
    let labels = [("client", client.to_owned()), ("broker", id)];
    metrics::gauge!(m::KAFKA_BROKER_UP, &labels).set(f64::from(u8::from(broker.state == "UP")));
    if let Some(rtt) = &broker.rtt {
        // Microseconds; 0 with no request in the interval.
        metrics::gauge!(m::KAFKA_BROKER_RTT_AVG_SECONDS, &labels).set(rtt.avg as f64 / 1e6);
        metrics::gauge!(m::KAFKA_BROKER_RTT_P99_SECONDS, &labels).set(rtt.p99 as f64 / 1e6);
    }
    metrics::gauge!(m::KAFKA_BROKER_REQUESTS_IN_FLIGHT, &labels).set(broker.waitresp_cnt as f64);
    metrics::gauge!(m::KAFKA_BROKER_REQUESTS_QUEUED, &labels).set(broker.outbuf_cnt as f64);
    metrics::counter!(m::KAFKA_BROKER_REQUEST_TIMEOUTS_TOTAL, &labels)
        .absolute(broker.req_timeouts);
    if let Some(disconnects) = broker.disconnects {
        metrics::counter!(m::KAFKA_BROKER_DISCONNECTS_TOTAL, &labels)
            .absolute(disconnects.max(0) as u64);
    }
    for (direction, errors) in [("transmit", broker.txerrs), ("receive", broker.rxerrs)] {
        let [client_label, broker_label] = labels.clone();
        metrics::counter!(
            m::KAFKA_BROKER_ERRORS_TOTAL,
            &[
                client_label,
                broker_label,
                ("direction", direction.to_owned())
            ]
        )
        .absolute(errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as librdkafka writes it (trimmed to what is exported), from a consumer with
    /// one broker, librdkafka's bootstrap and coordinator handles, and two partitions.
    const REPORT: &str = r#"{
      "name": "c#consumer-1", "client_id": "c", "type": "consumer", "ts": 1, "time": 1,
      "age": 1, "replyq": 0, "msg_cnt": 0, "msg_size": 0, "msg_max": 0, "msg_size_max": 0,
      "simple_cnt": 0, "metadata_cache_cnt": 1, "tx": 1, "tx_bytes": 1, "rx": 1,
      "rx_bytes": 1, "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 5, "rxmsg_bytes": 50,
      "brokers": {
        "127.0.0.1:9092/1": {"name": "127.0.0.1:9092/1", "nodeid": 1, "nodename": "127.0.0.1:9092",
          "source": "learned", "state": "UP", "stateage": 1, "outbuf_cnt": 2, "outbuf_msg_cnt": 0,
          "waitresp_cnt": 3, "waitresp_msg_cnt": 0, "tx": 10, "txbytes": 100, "txerrs": 1,
          "txretries": 0, "txidle": 0, "req_timeouts": 4, "rx": 10, "rxbytes": 100, "rxerrs": 2,
          "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0,
          "wakeups": 1, "connects": 1, "disconnects": 5, "req": {}, "toppars": {},
          "rtt": {"min": 100, "max": 9000, "avg": 1500, "sum": 3000, "cnt": 2, "stddev": 1,
            "hdrsize": 1, "p50": 1000, "p75": 1000, "p90": 9000, "p95": 9000, "p99": 9000,
            "p99_99": 9000, "outofrange": 0}},
        "127.0.0.1:9092/bootstrap": {"name": "127.0.0.1:9092/bootstrap", "nodeid": -1,
          "nodename": "127.0.0.1:9092", "source": "configured", "state": "INIT", "stateage": 1,
          "outbuf_cnt": 0, "outbuf_msg_cnt": 0, "waitresp_cnt": 0, "waitresp_msg_cnt": 0,
          "tx": 0, "txbytes": 0, "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0,
          "rx": 0, "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0,
          "zbuf_grow": 0, "buf_grow": 0, "req": {}, "toppars": {}},
        "GroupCoordinator/1": {"name": "GroupCoordinator/1", "nodeid": 1, "nodename": "127.0.0.1:9092",
          "source": "logical", "state": "UP", "stateage": 1, "outbuf_cnt": 0, "outbuf_msg_cnt": 0,
          "waitresp_cnt": 0, "waitresp_msg_cnt": 0, "tx": 0, "txbytes": 0, "txerrs": 0,
          "txretries": 0, "txidle": 0, "req_timeouts": 0, "rx": 0, "rxbytes": 0, "rxerrs": 0,
          "rxcorriderrs": 0, "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0,
          "req": {}, "toppars": {}}
      },
      "topics": {"in": {"topic": "in", "age": 1, "metadata_age": 1, "batchsize": {"min": 0,
        "max": 0, "avg": 0, "sum": 0, "cnt": 0, "stddev": 0, "hdrsize": 0, "p50": 0, "p75": 0,
        "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0}, "batchcnt": {"min": 0,
        "max": 0, "avg": 0, "sum": 0, "cnt": 0, "stddev": 0, "hdrsize": 0, "p50": 0, "p75": 0,
        "p90": 0, "p95": 0, "p99": 0, "p99_99": 0, "outofrange": 0},
        "partitions": {
          "0": {"partition": 0, "broker": 1, "leader": 1, "desired": true, "unknown": false,
            "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
            "fetchq_cnt": 7, "fetchq_size": 700, "fetch_state": "active", "query_offset": 0,
            "next_offset": 10, "app_offset": 3, "stored_offset": 3, "committed_offset": 0,
            "eof_offset": -1, "lo_offset": 0, "hi_offset": 10, "ls_offset": 10,
            "consumer_lag": 10, "consumer_lag_stored": 7, "txmsgs": 0, "txbytes": 0,
            "rxmsgs": 10, "rxbytes": 100, "msgs": 10, "rx_ver_drops": 0, "msgs_inflight": 0,
            "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0},
          "1": {"partition": 1, "broker": 1, "leader": 1, "desired": false, "unknown": false,
            "msgq_cnt": 0, "msgq_bytes": 0, "xmit_msgq_cnt": 0, "xmit_msgq_bytes": 0,
            "fetchq_cnt": 0, "fetchq_size": 0, "fetch_state": "none", "query_offset": 0,
            "next_offset": 0, "app_offset": -1001, "stored_offset": -1001,
            "committed_offset": -1001, "eof_offset": -1001, "lo_offset": -1, "hi_offset": -1,
            "ls_offset": -1, "consumer_lag": -1, "consumer_lag_stored": -1, "txmsgs": 0,
            "txbytes": 0, "rxmsgs": 0, "rxbytes": 0, "msgs": 0, "rx_ver_drops": 0,
            "msgs_inflight": 0, "next_ack_seq": 0, "next_err_seq": 0, "acked_msgid": 0}}}},
      "cgrp": {"state": "up", "stateage": 1, "join_state": "steady", "rebalance_age": 1,
        "rebalance_cnt": 2, "rebalance_reason": "", "assignment_size": 1}
    }"#;

    #[test]
    fn a_consumer_report_becomes_broker_partition_and_group_series() {
        let statistics: Statistics = serde_json::from_str(REPORT).unwrap();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            export(
                ClientRole::Consumer,
                &statistics,
                Some(InputScope {
                    topic: "in",
                    group: "g",
                }),
            );
        });
        let text = handle.render();
        let has = |line: &str| {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        };
        has(r#"sessionflow_kafka_broker_up{client="consumer",broker="1"} 1"#);
        has(r#"sessionflow_kafka_broker_rtt_avg_seconds{client="consumer",broker="1"} 0.0015"#);
        has(r#"sessionflow_kafka_broker_rtt_p99_seconds{client="consumer",broker="1"} 0.009"#);
        has(r#"sessionflow_kafka_broker_requests_in_flight{client="consumer",broker="1"} 3"#);
        has(r#"sessionflow_kafka_broker_requests_queued{client="consumer",broker="1"} 2"#);
        has(r#"sessionflow_kafka_broker_request_timeouts_total{client="consumer",broker="1"} 4"#);
        has(r#"sessionflow_kafka_broker_disconnects_total{client="consumer",broker="1"} 5"#);
        has(
            r#"sessionflow_kafka_broker_errors_total{client="consumer",broker="1",direction="transmit"} 1"#,
        );
        has(
            r#"sessionflow_kafka_broker_errors_total{client="consumer",broker="1",direction="receive"} 2"#,
        );
        has(r#"sessionflow_kafka_fetch_queue_messages{topic="in",partition="0"} 7"#);
        has(r#"sessionflow_kafka_rebalances_total{group="g"} 2"#);
        // Not the bootstrap or coordinator handles, not a partition this client does not fetch.
        assert!(!text.contains(r#"broker="-1""#), "{text}");
        assert_eq!(
            text.matches("sessionflow_kafka_broker_up{").count(),
            1,
            "{text}"
        );
        assert!(!text.contains(r#"partition="1""#), "{text}");
        assert!(!text.contains("producer_queue"), "{text}");
    }

    #[test]
    fn each_producer_reports_its_own_queue() {
        let statistics: Statistics = serde_json::from_str(REPORT).unwrap();
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            export(ClientRole::Producer, &statistics, None);
            export(ClientRole::Ingest, &statistics, None);
        });
        let text = handle.render();
        for client in ["producer", "ingest"] {
            for line in [
                format!(r#"sessionflow_kafka_producer_queue_messages{{client="{client}"}} 0"#),
                format!(r#"sessionflow_kafka_producer_queue_bytes{{client="{client}"}} 0"#),
                format!(r#"sessionflow_kafka_broker_up{{client="{client}",broker="1"}} 1"#),
            ] {
                assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
            }
        }
    }
}
