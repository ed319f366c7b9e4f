#!/usr/bin/env bash
# Webhooks per second and latency through `sessionflow ingest` against the HTTP floor, side by
# side in one run (docs/benchmarks.md):
#  0. warm-up: WARMUP webhooks through ingest, not measured (the broker's JVM compiles its
#     produce path over the first few hundred thousand records; measured cold, ingest paid for
#     the broker's JIT: 0.12x, and 0.43x once warm on the same machine), then, when this
#     script started the broker, a tenth as many at a time until its JIT compiler threads
#     are quiet;
#  1. ROUNDS rounds of: the floor (examples/http_floor.rs: the same HTTP stack and listener
#     answering 200 without verifying or writing), then `sessionflow ingest` (verify, write to
#     a 4-partition topic, answer on acknowledgement), EVENTS signed webhooks each from
#     `sessionflow generate --webhook` over CONNECTIONS keep-alive connections, as fast as it
#     goes, each after a tenth as many not measured; each round's ratio, and CPU per webhook of the server (and of the broker when this
#     script started it);
#  2. ingest again at half the best rate it reached: latency p50/p99 (request to 200).
# Uses SESSIONFLOW_TEST_BOOTSTRAP if set, else starts (and stops) its own broker.
# Usage: scripts/bench-ingest.sh [EVENTS] [CONNECTIONS] [ROUNDS] [WARMUP]
set -euo pipefail
cd "$(dirname "$0")/.."
events=${1:-60000}
connections=${2:-200}
rounds=${3:-2}
warmup=${4:-300000}
cargo build --release --quiet --examples
cargo build --release --quiet
bin=target/release/sessionflow
if [ -z "${SESSIONFLOW_TEST_BOOTSTRAP:-}" ]; then
  export SESSIONFLOW_KAFKA_DIR="${TMPDIR:-/tmp}/sessionflow-kafka-bench-ingest-$$"
  exec scripts/kafka-dev.sh run -- "$0" "$@"
fi
b=$SESSIONFLOW_TEST_BOOTSTRAP
broker_pid=$(cat "${SESSIONFLOW_KAFKA_DIR:-/nonexistent}/broker.pid" 2>/dev/null || true)
secret=whsec_YmVuY2htYXJrLXNlY3JldA==
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_http() { until curl -sf "127.0.0.1:$1$2" >/dev/null 2>&1; do sleep 0.2; done; }
# CPU ticks of a process (0 without a PID), and of the broker's JIT compiler threads alone:
# the broker warming up (scripts/proc-cpu.sh).
. scripts/proc-cpu.sh
jit_ticks() { broker_jit_ticks "$broker_pid"; }
per_webhook() { echo "$(ticks_to_seconds "$1") * 1000000 / $2" | bc -l; } # TICKS COUNT -> microseconds
post() { # PORT COUNT RATE(or empty) SEED
  local rate_flag=()
  [ -n "$3" ] && rate_flag=(--rate "$3")
  "$bin" generate --sessions $(($2 * 3)) --seed "$4" --records "$2" \
    --webhook "http://127.0.0.1:$1/webhooks/clerk" --secret "$secret" \
    --connections "$connections" "${rate_flag[@]}" 2>&1 | tail -1
}
rate_of() { sed 's/.*; \([0-9]*\)\/s,.*/\1/' <<<"$1"; }
# A measured load: prints the generator's line and the CPU per webhook of PID, of the broker
# (when this script started it) and of the generator (it shares the cores: the ratio of two
# servers' rates is (generator + floor) / (generator + ingest + broker) per webhook once the
# cores are the bound).
measure() { # NAME PORT PID SEED
  local s0 b0 line generator_cpu
  # A tenth as many webhooks first, not measured, so that each server is measured under way:
  # right after the other server's run, the first seconds cost more (the broker's own
  # share most; see docs/benchmarks.md, session 19).
  post "$2" $((events / 10)) "" $(($4 + 100)) >/dev/null
  s0=$(process_cpu_ticks "$3"); b0=$(process_cpu_ticks "$broker_pid"); j0=$(jit_ticks)
  generator_cpu=$(mktemp)
  line=$( { TIMEFORMAT='%3U %3S'; time post "$2" "$events" "" "$4"; } 2>"$generator_cpu")
  printf '%-8s %s\n' "$1" "$line" >&2
  printf '         CPU per webhook: %s %.1f us' "$1" \
    "$(per_webhook "$(($(process_cpu_ticks "$3") - s0))" "$events")" >&2
  [ -n "$broker_pid" ] && printf ', broker %.1f us (of which its JIT compiler %.1f us)' \
    "$(per_webhook "$(($(process_cpu_ticks "$broker_pid") - b0))" "$events")" \
    "$(per_webhook "$(($(jit_ticks) - j0))" "$events")" >&2
  printf ', generator %.1f us' \
    "$(awk -v n="$events" '{ print ($1 + $2) * 1000000 / n }' "$generator_cpu")" >&2
  rm -f "$generator_cpu"
  echo >&2
  rate_of "$line"
}

target/release/examples/http_floor 127.0.0.1:19480 &
floor_pid=$!
pids+=("$floor_pid")
until (exec 3<>/dev/tcp/127.0.0.1/19480) 2>/dev/null; do sleep 0.2; done
topic=bench-ingest-$$
scripts/kafka-dev.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create \
  --topic "$topic" --partitions 4 --replication-factor 1 >/dev/null
SESSIONFLOW__INGEST__SECRETS=$secret "$bin" ingest --listen 127.0.0.1:19481 \
  --set brokers="$b" --set topics.input="$topic" >/tmp/bench-ingest-$$.log 2>&1 &
ingest_pid=$!
pids+=("$ingest_pid")
wait_http 19481 /readyz

echo "== CPU: $(cpu_model)"
echo "== warm-up: $warmup webhooks through ingest (not measured)"
post 19481 "$warmup" "" 10
if [ -n "$broker_pid" ]; then
  # Then on until the broker's JIT is quiet (under 0.5 us per webhook over a tenth of the
  # warm-up, twice in a row: it compiles in bursts), at most forty more: measured while it
  # still compiles, the broker's share of a webhook varied 3x between identical rounds
  # (docs/benchmarks.md, session 20).
  quiet=0
  for chunk in $(seq 40); do
    j0=$(jit_ticks)
    post 19481 $((warmup / 10)) "" $((200 + chunk)) >/dev/null
    jit=$(per_webhook "$(($(jit_ticks) - j0))" $((warmup / 10)))
    printf '   and %d more: the broker JIT compiler %.1f us per webhook\n' $((warmup / 10)) "$jit"
    if [ "$(echo "$jit < 0.5" | bc -l)" = 1 ]; then quiet=$((quiet + 1)); else quiet=0; fi
    [ "$quiet" -ge 2 ] && break
  done
fi
echo "== $rounds rounds of $events webhooks over $connections connections, floor then ingest"
best=0
ratios=()
for round in $(seq "$rounds"); do
  floor=$(measure floor 19480 "$floor_pid" $((20 + round)))
  ingest=$(measure ingest 19481 "$ingest_pid" $((30 + round)))
  ratios+=("$(printf '%.2f' "$(echo "$ingest / ($floor + 0.000001)" | bc -l)")")
  printf "round %d: ingest / HTTP floor (webhooks/s): %sx\n" "$round" "${ratios[-1]}"
  [ "$ingest" -gt "$best" ] && best=$ingest
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
  printf "ingest / HTTP floor over %d rounds: median %.2fx, lowest %.2fx, highest %.2fx\n",
    NR, (NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2), r[1], r[NR] }'
half=$((best / 2))
echo "== sessionflow ingest at half its best rate ($half/s)"
post 19481 "$events" "$half" 13
