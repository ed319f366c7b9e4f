#!/usr/bin/env bash
# End-to-end throughput and latency on a real local broker (docs/benchmarks.md):
#  1. RECORDS (default 1 000 000) generated records pre-loaded into a 4-partition topic;
#  2. a consume-only rdkafka loop over it, then `sessionflow run` (fresh group) in
#     at-least-once and in exactly-once mode until every record is counted, in the same run:
#     the ratios;
#  3. latency at a steady RATE (default 20 000 records/s) for SECONDS (default 15): broker
#     append time of each input record (its topic set to LogAppendTime) to its derived event
#     being readable.
# Uses SESSIONFLOW_TEST_BOOTSTRAP if set, else starts (and stops) its own broker.
# SESSIONFLOW_BENCH_SETS adds flags to both runs (e.g. "--set pipeline.batch_size=4096").
# Usage: scripts/bench-e2e.sh [RECORDS] [RATE] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
rate=${2:-20000}
seconds=${3:-15}
cargo build --release --quiet --examples
cargo build --release --quiet
# SESSIONFLOW_BENCH_BIN: another build to measure (an older commit, side by side).
bin=${SESSIONFLOW_BENCH_BIN:-target/release/sessionflow}
if [ -z "${SESSIONFLOW_TEST_BOOTSTRAP:-}" ]; then
  export SESSIONFLOW_KAFKA_DIR="${TMPDIR:-/tmp}/sessionflow-kafka-bench-$$"
  exec scripts/kafka-dev.sh run -- "$0" "$@"
fi
b=$SESSIONFLOW_TEST_BOOTSTRAP
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
run_id=$$

input=bench-in-$run_id
echo "== pre-loading $records records into $input (4 partitions)"
"$bin" run --brokers "$b" --group-id "bench-create-$run_id" --input-topic "$input" \
  --set topics.create_topics=true --set topics.create_partitions=4 \
  --set topics.transitions=bench-create-t-$run_id --set topics.anomalies=bench-create-a-$run_id \
  --set topics.dead_letters=bench-create-d-$run_id --http-listen 127.0.0.1:0 >"$work/create.log" 2>&1 &
create_pid=$!
sleep 5
kill -TERM "$create_pid"; wait "$create_pid" || true
"$bin" generate --sessions $((records / 3)) --seed 7 --records "$records" --brokers "$b" --topic "$input" 2>/dev/null
bytes_info=$(target/release/examples/consume_only "$b" "$input")
echo "$bytes_info (warm-up read)"

echo "== consume-only rdkafka loop"
baseline=$(target/release/examples/consume_only "$b" "$input")
echo "$baseline"

# Throughput of `sessionflow run` in one delivery mode (fresh group and outputs), measured
# between two moments the counters were exported (once a second): the first export past 10%
# of the input and the export that reaches all of it.
measure_run() {
  local delivery=$1 port=$2
  local group=bench-group-$delivery-$run_id
  echo "== sessionflow run ($delivery, changelog on, idle and future checks off for historical data)"
  "$bin" run --brokers "$b" --group-id "$group" --input-topic "$input" --http-listen 127.0.0.1:$port \
    --set delivery="\"$delivery\"" \
    --set topics.create_topics=true --set topics.transitions=bench-t-$delivery-$run_id \
    --set topics.anomalies=bench-a-$delivery-$run_id --set topics.dead_letters=bench-d-$delivery-$run_id \
    --set lifecycle.idle_timeout_ms=0 --set lifecycle.max_clock_skew_ms=0 \
    ${SESSIONFLOW_BENCH_SETS:-} >"$work/run-$delivery.log" 2>&1 &
  local run_pid=$!
  pids+=("$run_pid")
  python3 - "$records" "$port" <<'PY'
import sys, time, urllib.request
total = int(sys.argv[1])
url = f"http://127.0.0.1:{sys.argv[2]}/metrics"
def count():
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith("sessionflow_records_total{"))
first = None
last = None
while True:
    c = count()
    now = time.monotonic()
    if c is not None and c != last:
        last = c
        if first is None and c >= total * 0.1:
            first = (now, c)
        if c >= total:
            break
    time.sleep(0.02)
(t0, c0) = first
rate = (c - c0) / (now - t0)
print(f"sessionflow: {int(c - c0)} records in {now - t0:.2f} s between exports: {rate:.0f} records/s")
open("/tmp/sessionflow-bench-rate", "w").write(f"{rate:.0f}\n")
PY
  kill -TERM "$run_pid"; wait "$run_pid" || true
  local sf_rate base_rate
  sf_rate=$(cat /tmp/sessionflow-bench-rate)
  base_rate=$(echo "$baseline" | sed 's/.*: \([0-9]*\) records\/s/\1/')
  printf "ratio sessionflow (%s) / consume-only: %.2fx\n" "$delivery" "$(echo "$sf_rate / $base_rate" | bc -l)"
  echo "$sf_rate" > "$work/rate-$delivery"
}
measure_run at_least_once 19999
measure_run exactly_once 19997
printf "ratio exactly-once / at-least-once: %.2fx\n" \
  "$(echo "$(cat "$work/rate-exactly_once") / $(cat "$work/rate-at_least_once")" | bc -l)"

echo "== latency at $rate records/s for $seconds s"
lat_in=bench-lat-in-$run_id
"$bin" run --brokers "$b" --group-id "bench-lat-$run_id" --input-topic "$lat_in" --http-listen 127.0.0.1:19998 \
  --set topics.create_topics=true --set topics.create_partitions=4 --set topics.transitions=bench-lat-t-$run_id \
  --set topics.anomalies=bench-lat-a-$run_id --set topics.dead_letters=bench-lat-d-$run_id \
  --set lifecycle.idle_timeout_ms=0 --set lifecycle.max_clock_skew_ms=0 >"$work/lat.log" 2>&1 &
lat_pid=$!
pids+=("$lat_pid")
until curl -sf 127.0.0.1:19998/readyz >/dev/null; do sleep 0.2; done
# The input's timestamps become the broker's append time: the generator's CreateTime would
# also count its own producer's start-up (measured: ~600 ms on the first records).
scripts/kafka-dev.sh tool kafka.admin.ConfigCommand --bootstrap-server "$b" --alter \
  --entity-type topics --entity-name "$lat_in" --add-config message.timestamp.type=LogAppendTime
target/release/examples/e2e_latency "$b" "$lat_in" "bench-lat-t-$run_id" $((seconds + 5)) > "$work/latency.txt" &
probe_pid=$!
sleep 2
"$bin" generate --sessions $((rate * seconds / 3)) --seed 8 --records $((rate * seconds)) --rate "$rate" \
  --brokers "$b" --topic "$lat_in" 2>/dev/null
wait "$probe_pid"
cat "$work/latency.txt"
kill -TERM "$lat_pid"; wait "$lat_pid" || true
