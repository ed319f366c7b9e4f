# Sourced by the bench scripts: the broker JVM's JIT compiler threads (C1, C2) and their CPU,
# which is the broker warming up, not the cost of a write; it goes on well past the first
# million records (docs/benchmarks.md, session 20).

# CPU clock ticks of PID's JIT compiler threads so far (0 without a PID).
broker_jit_ticks() {
  local total=0 task comm stat fields
  [ -n "${1:-}" ] || { echo 0; return; }
  for task in /proc/"$1"/task/*; do
    read -r comm <"$task/comm" 2>/dev/null || continue
    case "$comm" in C1\ Compiler* | C2\ Compiler*)
      # The names hold a space ("(C2 CompilerThre)"), so the fields are counted after the
      # name's closing parenthesis: utime and stime, the 14th and 15th of the line, are the
      # 12th and 13th there. A thread that ended meanwhile is not counted.
      stat=$(cat "$task/stat" 2>/dev/null) || continue
      read -ra fields <<<"${stat##*)}"
      total=$((total + fields[11] + fields[12])) ;;
    esac
  done
  echo "$total"
}
