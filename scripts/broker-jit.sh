# Sourced by the bench scripts: the broker JVM's JIT compiler threads (C1, C2) and their CPU,
# which is the broker warming up, not the cost of a write; it goes on well past the first
# million records (docs/benchmarks.md, session 20).

# CPU clock ticks of PID's JIT compiler threads so far (0 without a PID).
broker_jit_ticks() {
  local total=0 task comm
  [ -n "${1:-}" ] || { echo 0; return; }
  for task in /proc/"$1"/task/*; do
    read -r comm <"$task/comm" 2>/dev/null || continue
    case "$comm" in C1\ Compiler* | C2\ Compiler*)
      total=$((total + $(awk '{print $14 + $15}' "$task/stat" 2>/dev/null || echo 0))) ;;
    esac
  done
  echo "$total"
}
