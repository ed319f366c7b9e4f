# Sourced by the bench scripts, examples/pass_through.rs and the parse bench, so that they
# all read the same way: the CPU a process used so far, from /proc, in clock ticks
# (`getconf CLK_TCK` a second); the same for the broker JVM's JIT compiler threads (C1, C2)
# alone, which is the broker warming up, not the cost of a write, and goes on well past the
# first million records (docs/benchmarks.md, session 20); and which CPU the figures come
# from.

# User plus system ticks from one /proc stat line (a process's or a thread's). The name in
# parentheses may hold spaces ("(C2 CompilerThre)"), so the fields are counted after its
# closing parenthesis: utime and stime, the 14th and 15th of the line, are the 12th and
# 13th there.
stat_cpu_ticks() {
  local fields
  read -ra fields <<<"${1##*)}"
  echo $((fields[11] + fields[12]))
}

# Ticks of process PID, all its threads (0 without a PID).
process_cpu_ticks() {
  local stat
  [ -n "${1:-}" ] || { echo 0; return; }
  stat=$(cat "/proc/$1/stat") || return 1
  stat_cpu_ticks "$stat"
}

# Ticks of PID's JIT compiler threads (0 without a PID). A thread that ended meanwhile is
# not counted.
broker_jit_ticks() {
  local total=0 task comm stat
  [ -n "${1:-}" ] || { echo 0; return; }
  for task in /proc/"$1"/task/*; do
    read -r comm <"$task/comm" 2>/dev/null || continue
    case "$comm" in C1\ Compiler* | C2\ Compiler*)
      stat=$(cat "$task/stat" 2>/dev/null) || continue
      total=$((total + $(stat_cpu_ticks "$stat"))) ;;
    esac
  done
  echo "$total"
}

# Busy ticks of the whole machine so far, all cores (the first line of /proc/stat: user,
# nice, system, irq, softirq and steal; not idle or iowait).
machine_busy_ticks() {
  local cpu user nice system idle iowait irq softirq steal rest
  read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
  echo $((user + nice + system + irq + softirq + steal))
}

# Seconds from ticks.
ticks_to_seconds() { echo "$1 / $(getconf CLK_TCK)" | bc -l; }

# The CPU the figures come from, as lscpu names it: "AMD EPYC, family 25 model 17, 2 cores".
# Machines of one kind differ (AMD and Intel, models with and without AVX-512), so every
# figure names it.
cpu_model() {
  LC_ALL=C lscpu | awk -F: '
    function value() { sub(/^[ \t]+/, "", $2); return $2 }
    /^Model name:/ { name = value() }
    /^CPU family:/ { family = value() }
    /^Model:/ { model = value() }
    END { printf "%s, family %s model %s", name, family, model }'
  echo ", $(nproc) cores"
}
