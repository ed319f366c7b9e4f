#!/usr/bin/env bash
# Replay throughput, file to file, one thread: generates RECORDS records (default 1 000 000,
# seed 1), replays them RUNS times (default 5) and prints each run's summary, the median and
# best MB/s, CPU seconds and peak RSS. Each run also validates the same file's lines with
# sonic-rs and nothing else (examples/json_floor.rs, the JSON floor), so that replay's median
# is given as a ratio of the floor's, measured in the same run.
# Usage: scripts/bench-replay.sh [RECORDS] [RUNS]
#
# Side by side: SESSIONFLOW_BENCH_BINS="OLD NEW" replays with each binary in turn, run by run
# (interleaved, so that both see the same machine), and prints each one's median. Build an
# older commit into another work tree for OLD, e.g.
#   git worktree add /tmp/old REV && (cd /tmp/old && cargo build --release) &&
#   SESSIONFLOW_BENCH_BINS="/tmp/old/target/release/sessionflow target/release/sessionflow" \
#     scripts/bench-replay.sh
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
runs=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
cargo build --release --quiet --example json_floor
bins=${SESSIONFLOW_BENCH_BINS:-target/release/sessionflow}
first_bin=${bins%% *}
"$first_bin" generate --sessions $((records / 3)) --seed 1 --records "$records" --output "$work/in.ndjson"
bytes=$(stat -c %s "$work/in.ndjson")
. scripts/proc-cpu.sh
echo "CPU: $(cpu_model)"
echo "input: $(wc -l < "$work/in.ndjson") records, $bytes bytes"
n=0
for bin in $bins; do
  n=$((n + 1))
  : > "$work/runs-$n.txt"
done
: > "$work/floor.txt"
for i in $(seq "$runs"); do
  /usr/bin/time -f "process wall %e s" target/release/examples/json_floor "$work/in.ndjson" 2> "$work/run.txt"
  echo "$(head -n 1 "$work/run.txt") $(tail -n 1 "$work/run.txt")" | tee -a "$work/floor.txt" | sed 's|^|floor: |'
  n=0
  for bin in $bins; do
    n=$((n + 1))
    /usr/bin/time -f "process wall %e s, cpu %U+%S s, peak RSS %M KiB" "$bin" replay --input "$work/in.ndjson" \
      --output "$work/out.ndjson" --dlq "$work/dlq.ndjson" 2> "$work/run.txt"
    line=$(grep -o 'replay: .*' "$work/run.txt" | sed 's/.*; \([0-9.]* s\), \([0-9]* records\/s\), \([0-9.]* MB\/s\)/\1, \2, \3/' | tr '\n' ' ')
    echo "$line$(tail -n 1 "$work/run.txt")" | tee -a "$work/runs-$n.txt" | sed "s|^|$bin: |"
    rm -f "$work/out.ndjson" "$work/dlq.ndjson"
  done
done
n=0
for bin in $bins; do
  n=$((n + 1))
  # MB/s from the whole process's wall time (start-up, mapping, flush and exit included).
  sed 's/.*process wall \([0-9.]*\) s.*/\1/' "$work/runs-$n.txt" | awk -v b="$bytes" '{print b / $1 / 1e6}' | sort -n |
    awk -v bin="$bin" '{a[NR]=$1} END {printf "%s: process wall time: median %.1f MB/s, best %.1f MB/s over %d runs\n", bin, a[int((NR+1)/2)], a[NR], NR}'
done
median_mbs() { sed 's/.*process wall \([0-9.]*\) s.*/\1/' "$1" | awk -v b="$bytes" '{print b / $1 / 1e6}' | sort -n |
  awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
floor=$(median_mbs "$work/floor.txt")
# The floor reads the whole file first (replay maps it): its parsing alone, a higher bar.
parsing=$(sed 's/.*(\([0-9.]*\) MB\/s parsing alone).*/\1/' "$work/floor.txt" | sort -n |
  awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "JSON floor (sonic-rs validating each line, nothing else): process wall time median $floor MB/s, its parsing alone $parsing MB/s"
n=0
for bin in $bins; do
  n=$((n + 1))
  replay=$(median_mbs "$work/runs-$n.txt")
  printf "%s: replay / JSON floor: %.2fx (process wall medians), %.2fx (against its parsing alone)\n" "$bin" \
    "$(echo "$replay / $floor" | bc -l)" "$(echo "$replay / $parsing" | bc -l)"
done
