#!/usr/bin/env bash
# End-to-end throughput and latency on a real local broker (docs/benchmarks.md):
#  1. RECORDS (default 1 000 000) generated records pre-loaded into a 4-partition topic;
#  2. in the same run: a consume-only rdkafka loop over it; `sessionflow run` (fresh group,
#     changelog on; after one such run unmeasured, to warm the broker up) at-least-once until
#     every record is handed to the pipeline; the
#     pass-through loop (examples/pass_through.rs: per record the messages sessionflow
#     produced for this input, measured on its outputs, same sizes and producer settings,
#     no processing: what Kafka costs for the job), and that again with the run's own
#     messages as its bytes; `sessionflow run` exactly-once, and the
#     pass-through again with what that run produced (read committed: exactly-once writes
#     fewer changelog messages), plain and transactional (exactly-once's floor). Each with
#     records/s and CPU-s per million records, its own and the broker's: a table, and each
#     run's ratios to the pass-through of its outputs;
#  3. latency at a steady RATE (default 20 000 records/s) for SECONDS (default 15): broker
#     append time of each input record (its topic set to LogAppendTime) to its derived event
#     being readable; and sessionflow's own CPU per million records at that rate.
# Uses SESSIONFLOW_TEST_BOOTSTRAP if set, else starts (and stops) its own broker.
# SESSIONFLOW_BENCH_SETS adds flags to every sessionflow run, the latency one included
# (e.g. "--set pipeline.batch_size=512").
# SESSIONFLOW_BENCH_ROUNDS=R (default 3) runs at-least-once and its pass-through R times in
# turn (fresh group and outputs each round; even rounds run the pass-throughs first) and
# prints each round's ratios and their median: on a shared host a burst then falls on one
# round, not on one side of the only ratio.
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
broker_pid=$(cat "${SESSIONFLOW_KAFKA_DIR:-/tmp/sessionflow-kafka}/broker.pid")
# CPU seconds (user + system, all threads) of a process so far, and of the broker JVM's JIT
# compiler threads alone (scripts/proc-cpu.sh).
. scripts/proc-cpu.sh
cpu_of() { ticks_to_seconds "$(process_cpu_ticks "$1")"; }
jit_of() { ticks_to_seconds "$(broker_jit_ticks "$1")"; }

# Waits until the machine is quiet before a measured run: at most a tenth of a core busy
# over half a second, for at most 60 s. A run can leave work behind on the broker or in the
# kernel that would fall on the next one (session 31: each run right after a sessionflow run
# was the slower one of its kind, docs/benchmarks.md). Prints what the wait took.
settle() { # WHAT
  local tck started busy broker before after waited=0
  tck=$(getconf CLK_TCK)
  started=$(date +%s%N)
  busy=$(machine_busy_ticks)
  broker=$(process_cpu_ticks "$broker_pid")
  while ((waited < 120)); do
    before=$(machine_busy_ticks)
    sleep 0.5
    after=$(machine_busy_ticks)
    waited=$((waited + 1))
    ((after - before > tck / 20)) || break
  done
  printf "settled before %s: %.1f s, machine %.2f CPU-s (broker %.2f)\n" "$1" \
    "$(echo "($(date +%s%N) - $started) / 1000000000" | bc -l)" \
    "$(ticks_to_seconds $(($(machine_busy_ticks) - busy)))" \
    "$(ticks_to_seconds $(($(process_cpu_ticks "$broker_pid") - broker)))"
}
echo "== CPU: $(cpu_model)"
echo "== pre-loading $records records into $input (4 partitions, made with Kafka's own tool)"
scripts/kafka-dev.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$b" --create \
  --topic "$input" --partitions 4 --replication-factor 1 >/dev/null
"$bin" generate --sessions $((records / 3)) --seed 7 --records "$records" --brokers "$b" --topic "$input" 2>/dev/null
bytes_info=$(target/release/examples/consume_only "$b" "$input")
echo "$bytes_info (warm-up read)"

# Records/s of an example's line "…: N records/s", and its own CPU-s (pass-through prints it).
rate_of() { sed 's/.*: \([0-9]*\) records\/s.*/\1/' <<<"$1"; }
settle "consume-only"
echo "== consume-only rdkafka loop"
broker_before=$(cpu_of "$broker_pid"); jit_before=$(jit_of "$broker_pid")
baseline=$(target/release/examples/consume_only "$b" "$input")
broker_after=$(cpu_of "$broker_pid")
echo "$baseline"
echo "consume-only broker-cpu $(echo "$broker_after - $broker_before" | bc -l)" >"$work/cpu-consume-only"
echo "$(jit_of "$broker_pid") - $jit_before" | bc -l >"$work/jit-consume-only"

# Throughput of `sessionflow run` in one delivery mode (fresh group and outputs): the records
# from the first scrape of /metrics (every 20 ms) showing past 10% of the input handed to the
# pipeline (`sessionflow_worker_records_total`: input records, not observations, counted as
# each batch is taken, so group joins and start-up are left out) to the end of the last batch
# step (its `sessionflow_batch_duration_seconds` count seen changing for the last time;
# exactly-once's step ends with its commit). sessionflow's and the broker's CPU are read at
# the first scrape and once the steps have stopped for 250 ms (the last batch's sends in).
# librdkafka's statistics (the consumer lag) come once a second: a window between two of
# them could not time a run shorter than a few seconds (issue 15 measured 300 000 records).
measure_run() { # DELIVERY PORT [ROUND SUFFIX]
  local delivery=$1 port=$2 round=${3:-}
  local group=bench-group-$delivery$round-$run_id
  settle "sessionflow run ($delivery$round)"
  echo "== sessionflow run ($delivery$round, changelog on, idle and future checks off for historical data)"
  "$bin" run --brokers "$b" --group-id "$group" --input-topic "$input" --http-listen 127.0.0.1:$port \
    --set delivery="\"$delivery\"" \
    --set topics.create_topics=true --set topics.transitions=bench-t-$delivery$round-$run_id \
    --set topics.anomalies=bench-a-$delivery$round-$run_id --set topics.dead_letters=bench-d-$delivery$round-$run_id \
    --set lifecycle.idle_timeout_ms=0 --set lifecycle.max_clock_skew_ms=0 \
    ${SESSIONFLOW_BENCH_SETS:-} >"$work/run-$delivery$round.log" 2>&1 &
  local run_pid=$!
  pids+=("$run_pid")
  python3 - "$records" "$port" "$run_pid" "$broker_pid" "$work/rate-$delivery$round" "$work/cpu-$delivery$round" <<'PY'
import subprocess, sys, time, urllib.request
total, port, run_pid, broker_pid = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
url = f"http://127.0.0.1:{port}/metrics"
def cpu_seconds():
    """CPU seconds so far of sessionflow, the broker, and the broker's JIT compiler threads,
    read in one go by scripts/proc-cpu.sh (as cpu_of and jit_of)."""
    line = subprocess.check_output(
        ["bash", "-c", '. scripts/proc-cpu.sh; for ticks in "$(process_cpu_ticks "$1")" '
         '"$(process_cpu_ticks "$2")" "$(broker_jit_ticks "$2")"; do ticks_to_seconds "$ticks"; '
         'done', "proc-cpu", run_pid, broker_pid])
    return tuple(float(seconds) for seconds in line.split())
def scrape():
    """Input records handed to the pipeline, summed over its workers, and batch steps
    finished; (None, None) while /metrics does not answer."""
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        try:
            with open(f"/proc/{run_pid}/stat") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            state = "gone"
        if state in ("Z", "gone"):
            sys.exit("sessionflow run exited before it had handed over every record")
        return None, None
    def total_of(prefix):
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(prefix))
    return (total_of("sessionflow_worker_records_total{"),
            total_of("sessionflow_batch_duration_seconds_count"))
first = None
steps_seen, last_step_at = None, None
while True:
    done, steps = scrape()
    now = time.monotonic()
    if done is not None:
        if steps != steps_seen:
            steps_seen, last_step_at = steps, now
        if first is None and done >= total * 0.1:
            first = (now, done, *cpu_seconds())
        # Bounded: steps taken while idle (none with the idle checks off) would not end it.
        if first is not None and done >= total and (now - last_step_at >= 0.25 or
                                                    now - first[0] > 600):
            end = (now, done, *cpu_seconds())
            break
    time.sleep(0.02)
secs, n = last_step_at - first[0], total - first[1]
if secs <= 0 or n <= 0:
    sys.exit(f"sessionflow: too few records after the first scrape ({n:.0f} in {secs:.2f} s); run more")
rate = n / secs
own, broker = (end[2] - first[2]) / n * 1e6, (end[3] - first[3]) / n * 1e6
broker_jit = (end[4] - first[4]) / n * 1e6
print(f"sessionflow: {n:.0f} records in {secs:.3f} s to the last batch step: {rate:.0f} records/s; "
      f"CPU-s per million records: sessionflow {own:.1f}, broker {broker:.1f} "
      f"(its JIT compiler {broker_jit:.1f})")
open(sys.argv[5], "w").write(f"{rate:.0f}\n")
open(sys.argv[6], "w").write(f"{own:.2f} {broker:.2f} {broker_jit:.2f}\n")
PY
  kill -TERM "$run_pid"; wait "$run_pid" || true
  local base_rate
  base_rate=$(rate_of "$baseline")
  printf "ratio sessionflow (%s) / consume-only: %.2fx\n" "$delivery$round" \
    "$(echo "$(cat "$work/rate-$delivery$round") / ($base_rate + 0.000001)" | bc -l)"
}
# First an unmeasured run: the broker's JIT compiles the write paths of sessionflow's topics
# (the compacted changelog's among them) on their first use, which cost the first measured
# run alone up to 0.4 CPU-s of its 1 s window on 300 000 records (the JIT column: 1.6 CPU-s per
# million in the first round, 0.1-0.7 in the next four; session 29, docs/benchmarks.md).
measure_run at_least_once 19999 -warm-up
measure_run at_least_once 19999

# What a sessionflow run produced for this input, per input record: messages and mean size on
# each output (transitions, anomalies, dead letters, the state changelog), as the pass-through's
# profile (DELIVERY [committed]: exactly-once's outputs are read committed, markers not counted).
profile_of() {
  profile=()
  profile_bytes=()
  local topic line n bytes
  for topic in bench-t-$1-$run_id bench-a-$1-$run_id bench-d-$1-$run_id bench-group-$1-$run_id.state; do
    line=$(target/release/examples/consume_only "$b" "$topic" ${2:-})
    n=$(sed 's/consume-only: \([0-9]*\) records.*/\1/' <<<"$line")
    bytes=$(sed 's/.*records, \([0-9]*\) bytes.*/\1/' <<<"$line")
    profile+=("$(echo "$n / $records" | bc -l):$(echo "$bytes / ($n + 0.000001)" | bc -l)")
    profile_bytes+=("${profile[-1]}:$topic")
    echo "output $topic: $n messages, $bytes bytes"
  done
}
# The pass-through of the outputs of a run (profile_of first), saved as NAME; FLAGS go to the
# pass-through (--transactional N: exactly-once's floor, N records per transaction).
pass_through() { # NAME [FLAGS...]
  local name=$1
  shift
  settle "pass-through $name"
  echo "== pass-through $name ${*:-} (the same messages per record, sizes and producer settings; no processing)"
  # The broker's CPU (and its JIT compiler's) over the pass-through's measured span, as the
  # pass-through reads it (reading a SOURCE beforehand is not the job's cost).
  passthrough=$(SESSIONFLOW_BENCH_BROKER_PID=$broker_pid target/release/examples/pass_through \
    "$@" "$b" "$input" "bench-pass-$name-$run_id" "${profile[@]}")
  echo "$passthrough"
  grep -v '^pass-through: broker' <<<"$passthrough" >"$work/pass-through-$name"
  local broker_line='^pass-through: broker \([0-9.]*\) CPU-s, JIT \([0-9.]*\) CPU-s$'
  echo "pass-through broker-cpu $(sed -n "s/$broker_line/\1/p" <<<"$passthrough")" \
    >"$work/cpu-pass-through-$name"
  sed -n "s/$broker_line/\2/p" <<<"$passthrough" >"$work/jit-pass-through-$name"
}
# The pass-through once more with the run's own messages for bytes (PROFILE:SOURCE, read
# before it starts): the same bytes, so the same compression, as sessionflow's outputs. The
# first one's stand-ins compress differently (the changelog's binary values take 1.7x their
# stand-ins' room on disk), and the two floors differ (docs/benchmarks.md, session 26).
pass_through_own_bytes() { # NAME
  local stand_in=("${profile[@]}")
  profile=("${profile_bytes[@]}")
  pass_through "$1"
  profile=("${stand_in[@]}")
}
profile_of at_least_once
pass_through at_least_once
pass_through_own_bytes at_least_once-own-bytes
rounds=${SESSIONFLOW_BENCH_ROUNDS:-3}
# Even rounds run the pass-throughs first, so that a drift over the run (the broker's logs
# growing, its JIT, the host's load) does not fall on one side of every ratio.
for round in $(seq 2 "$rounds"); do
  if ((round % 2 == 1)); then
    measure_run at_least_once 19999 "-round$round"
  fi
  pass_through "at_least_once-round$round"
  pass_through_own_bytes "at_least_once-own-bytes-round$round"
  if ((round % 2 == 0)); then
    measure_run at_least_once 19999 "-round$round"
  fi
done

measure_run exactly_once 19997
profile_of exactly_once committed
pass_through exactly_once
# pipeline.transaction_max_records' default (a SESSIONFLOW_BENCH_SETS changing it is not followed).
pass_through exactly_once_transactional --transactional 10000
printf "ratio exactly-once / at-least-once: %.2fx\n" \
  "$(echo "$(cat "$work/rate-exactly_once") / $(cat "$work/rate-at_least_once")" | bc -l)"

# One table: records/s and CPU-s per million records, ours and the broker's.
python3 - "$records" "$baseline" "$work" "$rounds" <<'PY'
import re, statistics, sys
records, baseline, work, rounds = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
def rate(line): return float(re.search(r"([0-9]+) records/s", line).group(1))
def broker(name): return float(open(f"{work}/cpu-{name}").read().split()[-1]) / records * 1e6
def broker_jit(name): return float(open(f"{work}/jit-{name}").read()) / records * 1e6
def own_cpu(line): return float(re.search(r"([0-9.]+) CPU-s", line).group(1)) / records * 1e6
rows = [("consume-only", rate(baseline), own_cpu(baseline), broker("consume-only"),
         broker_jit("consume-only"))]
floors = {}
for name, label in (("at_least_once", "pass-through of at_least_once's outputs"),
                    ("at_least_once-own-bytes",
                     "pass-through of at_least_once's outputs, their own bytes"),
                    ("exactly_once", "pass-through of exactly_once's outputs"),
                    ("exactly_once_transactional",
                     "pass-through of exactly_once's outputs, transactional")):
    line = open(f"{work}/pass-through-{name}").read()
    floors[name] = (rate(line), own_cpu(line), broker(f"pass-through-{name}"))
    rows.append((label, *floors[name], broker_jit(f"pass-through-{name}")))
runs = {}
for mode in ("at_least_once", "exactly_once"):
    own, brk, brk_jit = (float(x) for x in open(f"{work}/cpu-{mode}").read().split())
    runs[mode] = (float(open(f"{work}/rate-{mode}").read()), own, brk)
    rows.append((f"sessionflow {mode}", *runs[mode], brk_jit))
print("| run | records/s | own CPU-s per million records | broker CPU-s per million | of which the broker's JIT compiler |")
print("| --- | --- | --- | --- | --- |")
for name, r, own, brk, brk_jit in rows:
    print(f"| {name} | {r:.0f} | {own:.1f} | {brk:.1f} | {brk_jit:.1f} |")
for mode, floor in (("at_least_once", "at_least_once"),
                    ("at_least_once", "at_least_once-own-bytes"),
                    ("exactly_once", "exactly_once"),
                    ("exactly_once", "exactly_once_transactional")):
    (r, own, brk), pt = runs[mode], floors[floor]
    print(f"sessionflow {mode} / pass-through {floor}: {r / pt[0]:.2f}x records/s, "
          f"{own / pt[1]:.2f}x own CPU, {brk / pt[2]:.2f}x broker CPU")
if rounds > 1:
    for floor, what in (("at_least_once", "pass-through"),
                        ("at_least_once-own-bytes", "pass-through with its own bytes")):
        ratios = []
        for round in range(1, rounds + 1):
            suffix = "" if round == 1 else f"-round{round}"
            r = float(open(f"{work}/rate-at_least_once{suffix}").read())
            own = float(open(f"{work}/cpu-at_least_once{suffix}").read().split()[0])
            line = open(f"{work}/pass-through-{floor}{suffix}").read()
            ratios.append(r / rate(line))
            print(f"round {round}: sessionflow at_least_once {r:.0f} records/s, own {own:.1f} "
                  f"CPU-s/M; {what} {rate(line):.0f}, own {own_cpu(line):.1f}: "
                  f"{ratios[-1]:.2f}x records/s, {own / own_cpu(line):.2f}x own CPU")
        print(f"at_least_once / its {what} over {rounds} alternated rounds: median "
              f"{statistics.median(ratios):.2f}x, lowest {min(ratios):.2f}x, "
              f"highest {max(ratios):.2f}x")
PY

echo "== latency at $rate records/s for $seconds s"
lat_in=bench-lat-in-$run_id
"$bin" run --brokers "$b" --group-id "bench-lat-$run_id" --input-topic "$lat_in" --http-listen 127.0.0.1:19998 \
  --set topics.create_topics=true --set topics.create_partitions=4 --set topics.transitions=bench-lat-t-$run_id \
  --set topics.anomalies=bench-lat-a-$run_id --set topics.dead_letters=bench-lat-d-$run_id \
  --set lifecycle.idle_timeout_ms=0 --set lifecycle.max_clock_skew_ms=0 \
  ${SESSIONFLOW_BENCH_SETS:-} >"$work/lat.log" 2>&1 &
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
# At a steady rate a batch step holds the few records that arrived since the last one, and
# its fixed costs (wake-ups, progress records, sends) fall on fewer records than in the
# throughput runs above: the CPU per record differs. Read from the generator's start to the
# probe's end, whose last seconds are idle (about 1% of a core idle, docs/benchmarks.md).
own_before=$(cpu_of "$lat_pid")
"$bin" generate --sessions $((rate * seconds / 3)) --seed 8 --records $((rate * seconds)) --rate "$rate" \
  --brokers "$b" --topic "$lat_in" 2>/dev/null
wait "$probe_pid"
own_after=$(cpu_of "$lat_pid")
cat "$work/latency.txt"
printf "sessionflow at %s records/s: %.1f CPU-s per million records (its own)\n" "$rate" \
  "$(echo "($own_after - $own_before) * 1000000 / ($rate * $seconds)" | bc -l)"
kill -TERM "$lat_pid"; wait "$lat_pid" || true
