#!/usr/bin/env bash
# Replay throughput, file to file, one thread: generates RECORDS records (default 1 000 000,
# seed 1), replays them RUNS times (default 5) and prints each run's summary, the median and
# best MB/s, CPU seconds and peak RSS. Usage: scripts/bench-replay.sh [RECORDS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
records=${1:-1000000}
runs=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --release --quiet
bin=target/release/sessionflow
"$bin" generate --sessions $((records / 3)) --seed 1 --records "$records" --output "$work/in.ndjson"
echo "input: $(wc -l < "$work/in.ndjson") records, $(stat -c %s "$work/in.ndjson") bytes"
for i in $(seq "$runs"); do
  /usr/bin/time -f "process wall %e s, cpu %U+%S s, peak RSS %M KiB" "$bin" replay --input "$work/in.ndjson" \
    --output "$work/out.ndjson" --dlq "$work/dlq.ndjson" 2> "$work/run.txt"
  grep -o 'replay: .*' "$work/run.txt" | sed 's/.*; \([0-9.]* s\), \([0-9]* records\/s\), \([0-9.]* MB\/s\)/\1, \2, \3/' | tr '\n' ' '
  tail -n 1 "$work/run.txt"
  rm -f "$work/out.ndjson" "$work/dlq.ndjson"
done | tee "$work/runs.txt"
bytes=$(stat -c %s "$work/in.ndjson")
# MB/s from the whole process's wall time (start-up, mapping, flush and exit included).
sed 's/.*process wall \([0-9.]*\) s.*/\1/' "$work/runs.txt" | awk -v b="$bytes" '{print b / $1 / 1e6}' | sort -n |
  awk '{a[NR]=$1} END {printf "process wall time: median %.1f MB/s, best %.1f MB/s over %d runs\n", a[int((NR+1)/2)], a[NR], NR}'
