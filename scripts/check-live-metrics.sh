#!/usr/bin/env bash
# Scrapes a running `sessionflow demo` (embedded Kafka, generated traffic, its webhooks through
# the embedded ingest) once it has counted records and webhooks, and checks the exposition with
# `promtool check metrics` (names, types, help text).
#
#   scripts/check-live-metrics.sh [BINARY]     default target/release/sessionflow
#
# Environment: SESSIONFLOW_METRICS_CHECK_PORT (29464, below Linux's ephemeral port range); the
# demo's ingest listens on that port + 6.
set -euo pipefail
bin=${1:-target/release/sessionflow}
port=${SESSIONFLOW_METRICS_CHECK_PORT:-29464}
work=$(mktemp -d)
"$bin" demo --duration 300 --http-listen "127.0.0.1:$port" \
  --ingest-listen "127.0.0.1:$((port + 6))" >"$work/demo.out" 2>"$work/demo.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

scrape() {
  # Plain HTTP/1.0 through bash's /dev/tcp (no curl needed); the body after the blank line.
  (exec 3<>"/dev/tcp/127.0.0.1/$port" &&
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 &&
    sed '1,/^\r$/d' <&3) 2>/dev/null
}

# Records and webhooks counted, and librdkafka's statistics of the three clients exported (once
# a second).
counted() {
  grep -q '^sessionflow_records_total{outcome="applied"} [1-9]' "$work/metrics" &&
    grep -q '^sessionflow_ingest_requests_total{outcome="accepted"} [1-9]' "$work/metrics" &&
    grep -q '^sessionflow_kafka_broker_up{client="consumer",broker="[0-9]*"} 1' "$work/metrics" &&
    grep -q '^sessionflow_kafka_broker_up{client="producer",broker="[0-9]*"} 1' "$work/metrics" &&
    grep -q '^sessionflow_kafka_broker_up{client="ingest",broker="[0-9]*"} 1' "$work/metrics" &&
    grep -q '^sessionflow_kafka_fetch_queue_messages{' "$work/metrics"
}

for _ in $(seq 1 180); do
  scrape >"$work/metrics" || true
  counted && break
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "check-live-metrics: the demo exited:" >&2
    cat "$work/demo.err" >&2
    exit 1
  fi
  sleep 1
done
counted || {
  echo "check-live-metrics: no records or webhooks counted, or no librdkafka statistics, within 180 s" >&2
  exit 1
}
echo "check-live-metrics: $(grep -c '^# HELP' "$work/metrics") metrics with help text, $(grep -vc '^#' "$work/metrics") samples"
promtool check metrics <"$work/metrics"
