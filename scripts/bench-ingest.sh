#!/usr/bin/env bash
# Webhooks per second and latency through `sessionflow ingest` against the HTTP floor, side by
# side in one run (docs/benchmarks.md):
#  1. the floor: examples/http_floor.rs (the same HTTP stack and listener answering 200 without
#     verifying or writing), EVENTS signed webhooks from `sessionflow generate --webhook` over
#     CONNECTIONS keep-alive connections, as fast as it goes;
#  2. `sessionflow ingest` (verify, write to a 4-partition topic, answer on acknowledgement),
#     the same load;
#  3. ingest again at half the rate it reached: latency p50/p99 (request to 200).
# Uses SESSIONFLOW_TEST_BOOTSTRAP if set, else starts (and stops) its own broker.
# Usage: scripts/bench-ingest.sh [EVENTS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-20000}
connections=${2:-50}
cargo build --release --quiet --examples
cargo build --release --quiet
bin=target/release/sessionflow
if [ -z "${SESSIONFLOW_TEST_BOOTSTRAP:-}" ]; then
  export SESSIONFLOW_KAFKA_DIR="${TMPDIR:-/tmp}/sessionflow-kafka-bench-ingest-$$"
  exec scripts/kafka-dev.sh run -- "$0" "$@"
fi
b=$SESSIONFLOW_TEST_BOOTSTRAP
secret=whsec_YmVuY2htYXJrLXNlY3JldA==
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_http() { until curl -sf "127.0.0.1:$1$2" >/dev/null 2>&1; do sleep 0.2; done; }
post() { # PORT RATE(or empty) SEED
  local rate_flag=()
  [ -n "$2" ] && rate_flag=(--rate "$2")
  "$bin" generate --sessions $((events * 3)) --seed "$3" --records "$events" \
    --webhook "http://127.0.0.1:$1/webhooks/clerk" --secret "$secret" \
    --connections "$connections" "${rate_flag[@]}" 2>&1 | tail -1
}
rate_of() { sed 's/.*; \([0-9]*\)\/s,.*/\1/' <<<"$1"; }

echo "== HTTP floor: $events webhooks over $connections connections"
target/release/examples/http_floor 127.0.0.1:19480 &
pids+=($!)
until (exec 3<>/dev/tcp/127.0.0.1/19480) 2>/dev/null; do sleep 0.2; done
floor=$(post 19480 "" 11)
echo "$floor"

topic=bench-ingest-$$
scripts/kafka-dev.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create \
  --topic "$topic" --partitions 4 --replication-factor 1 >/dev/null
echo "== sessionflow ingest: the same load"
SESSIONFLOW__INGEST__SECRETS=$secret "$bin" ingest --listen 127.0.0.1:19481 \
  --set brokers="$b" --set topics.input="$topic" >/tmp/bench-ingest-$$.log 2>&1 &
pids+=($!)
wait_http 19481 /readyz
ingest=$(post 19481 "" 12)
echo "$ingest"
half=$(( $(rate_of "$ingest") / 2 ))
echo "== sessionflow ingest at half that rate ($half/s)"
post 19481 "$half" 13
printf "ratio ingest / HTTP floor (webhooks/s): %.2fx\n" \
  "$(echo "$(rate_of "$ingest") / ($(rate_of "$floor") + 0.000001)" | bc -l)"
