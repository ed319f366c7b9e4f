#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, broker and controller in one JVM, 127.0.0.1)
# from Maven Central jars, for development and CI. See docs/kafka-dev.md.
#
#   scripts/kafka-dev.sh start            start a fresh broker, print its bootstrap address
#   scripts/kafka-dev.sh stop             stop it (by PID) and delete its data
#   scripts/kafka-dev.sh restart          stop and start again, keeping its data
#                                         (down for SESSIONFLOW_KAFKA_DOWN_SECONDS, default 0)
#   scripts/kafka-dev.sh run -- CMD ...   start, run CMD with SESSIONFLOW_TEST_BOOTSTRAP set,
#                                         always stop; exits with CMD's status
#   scripts/kafka-dev.sh tool CLASS ARGS  run one of Kafka's command-line tools from the cached
#                                         jars, e.g. kafka.admin.ConfigCommand
#
# Environment: KAFKA_VERSION (4.1.1), KAFKA_PORT (29092; the controller uses +1, the SASL_SSL
# listener +2, the PROXIED listener +3, the test proxy +4), SESSIONFLOW_KAFKA_DIR
# (/tmp/sessionflow-kafka), SESSIONFLOW_CACHE (~/.cache/sessionflow).
#
# The default ports lie below Linux's ephemeral range (ip_local_port_range, 32768-60999 by
# default): a port inside it can be taken as the local end of any outgoing connection, and the
# test proxy binds +4 long after the broker started (a CI run once failed on exactly that).
#
# The PROXIED listener (PLAINTEXT on KAFKA_PORT+3) advertises KAFKA_PORT+4, where nothing
# listens until a test starts its fault-injection proxy there (tests/common/proxy.rs) and
# forwards to KAFKA_PORT+3: clients bootstrapped at +4 then reach the broker only through
# the proxy, metadata included. `run` exports SESSIONFLOW_TEST_PROXY_LISTEN (+4) and
# SESSIONFLOW_TEST_PROXY_UPSTREAM (+3).
#
# Next to the PLAINTEXT listener the broker has a SASL_SSL one (PLAIN, SCRAM-SHA-256,
# SCRAM-SHA-512; user "sessionflow" with a password generated per fresh start). Its files are
# in $SESSIONFLOW_KAFKA_DIR/tls: ca.pem (the CA that signed the broker's certificate),
# untrusted-ca.pem (a CA that signed nothing here), sasl-password. `run` exports them to CMD as
# SESSIONFLOW_TEST_SECURE_BOOTSTRAP, SESSIONFLOW_TEST_CA, SESSIONFLOW_TEST_UNTRUSTED_CA,
# SESSIONFLOW_TEST_SASL_USER and SESSIONFLOW_TEST_SASL_PASSWORD_FILE.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version=${KAFKA_VERSION:-4.1.1}
port=${KAFKA_PORT:-29092}
controller_port=$((port + 1))
secure_port=$((port + 2))
proxied_port=$((port + 3))
proxy_port=$((port + 4))
dir=${SESSIONFLOW_KAFKA_DIR:-/tmp/sessionflow-kafka}
cache=${SESSIONFLOW_CACHE:-$HOME/.cache/sessionflow}/kafka-$version
libs=$cache/libs
bootstrap=127.0.0.1:$port
secure_bootstrap=127.0.0.1:$secure_port
tls=$dir/tls
sasl_user=sessionflow

log() { echo "kafka-dev: $*" >&2; }

resolve_jars() {
  if [ -d "$libs" ] && ls "$libs"/kafka_2.13-*.jar "$libs"/kafka-tools-"$version".jar >/dev/null 2>&1; then
    return
  fi
  log "resolving Kafka $version jars from Maven Central into $libs"
  mvn -q -B -f "$here/kafka/pom.xml" -Dkafka.version="$version" \
    dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$libs"
}

java_cp() { echo "$libs/*"; }

# A CA, the broker's certificate (127.0.0.1 and localhost) signed by it in a PKCS12 keystore,
# a second CA that signed nothing, and the SASL password: all new for every fresh broker.
write_tls() {
  mkdir -p "$tls"
  chmod 700 "$tls"
  local store_password
  store_password=$(openssl rand -hex 16)
  openssl rand -hex 16 > "$tls/sasl-password"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sessionflow-dev-ca" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sessionflow-untrusted-ca" \
    -keyout "$tls/untrusted-ca.key" -out "$tls/untrusted-ca.pem" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$tls/broker.key" -out "$tls/broker.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$tls/san.ext"
  openssl x509 -req -in "$tls/broker.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
    -CAcreateserial -days 2 -extfile "$tls/san.ext" -out "$tls/broker.pem" 2>/dev/null
  openssl pkcs12 -export -in "$tls/broker.pem" -inkey "$tls/broker.key" -certfile "$tls/ca.pem" \
    -name broker -passout "pass:$store_password" -out "$tls/broker.p12"
  echo "$store_password" > "$tls/store-password"
}

write_config() {
  mkdir -p "$dir/data"
  write_tls
  local store_password sasl_password
  store_password=$(cat "$tls/store-password")
  sasl_password=$(cat "$tls/sasl-password")
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_SSL://127.0.0.1:$secure_port,PROXIED://127.0.0.1:$proxied_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_SSL://127.0.0.1:$secure_port,PROXIED://127.0.0.1:$proxy_port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,PROXIED:PLAINTEXT
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$sasl_password";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$tls/broker.p12
ssl.keystore.password=$store_password
ssl.key.password=$store_password
ssl.client.auth=none
log.dirs=$dir/data
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.cleaner.dedupe.buffer.size=2097152
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
PROPS
  cat > "$dir/log4j2.properties" <<'PROPS'
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
PROPS
  sed -e 's/rootLogger.level = INFO/rootLogger.level = WARN/' \
      -e 's/appender.out.type = Console/appender.out.type = Console\nappender.out.target = SYSTEM_ERR/' \
      "$dir/log4j2.properties" > "$dir/tools-log4j2.properties"
}

running_pid() {
  local pid
  pid=$(cat "$dir/broker.pid" 2>/dev/null) || return 1
  # Only ever signal our own broker: the PID must still be a kafka.Kafka JVM.
  if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka.Kafka'; then
    echo "$pid"
    return 0
  fi
  return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/${1:-$port}") 2>/dev/null; }

# Every port this broker and its test proxy use must be free (on a restart a test's proxy may
# already listen on its own), and should not be one the kernel hands out as the local end of
# outgoing connections.
check_ports() {
  local format=$1 p low high ports=("$port" "$controller_port" "$secure_port" "$proxied_port")
  [ "$format" = fresh ] && ports+=("$proxy_port")
  for p in "${ports[@]}"; do
    if port_open "$p"; then
      log "port $p is taken by another process; set KAFKA_PORT"
      return 1
    fi
  done
  if read -r low high </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null &&
    [ "$proxy_port" -ge "$low" ] && [ "$port" -le "$high" ]; then
    log "warning: ports $port-$proxy_port overlap the ephemeral range $low-$high;" \
      "an outgoing connection can take one of them (choose KAFKA_PORT below $((low - 4)))"
  fi
}

start_broker() {
  local format=$1
  resolve_jars
  if running_pid >/dev/null; then
    log "already running (PID $(running_pid)) at $bootstrap"
    echo "$bootstrap"
    return 0
  fi
  check_ports "$format" || return 1
  if [ "$format" = fresh ]; then
    rm -rf "$dir"
    write_config
    local id
    id=$(java -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" -cp "$(java_cp)" \
      kafka.tools.StorageTool random-uuid)
    java -Dlog4j2.configurationFile="$dir/tools-log4j2.properties" -cp "$(java_cp)" \
      kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" \
      --add-scram "SCRAM-SHA-256=[name=$sasl_user,password=$(cat "$tls/sasl-password")]" \
      --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$(cat "$tls/sasl-password")]" \
      >"$dir/format.log" 2>&1 ||
      { cat "$dir/format.log" >&2; return 1; }
  fi
  nohup java -Xms256m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$dir" \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" \
    -cp "$(java_cp)" kafka.Kafka "$dir/server.properties" >>"$dir/broker.log" 2>&1 &
  local pid=$!
  echo "$pid" > "$dir/broker.pid"
  local waited=0
  # The PLAINTEXT port opens only once the broker is unfenced and serving.
  until port_open; do
    # kill -0, not running_pid: right after the fork the child is not yet the JVM.
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker exited during start-up; last log lines:"
      tail -n 40 "$dir/broker.log" >&2
      return 1
    fi
    if [ "$waited" -ge 120 ]; then
      log "broker not ready after 120 s; last log lines:"
      tail -n 40 "$dir/broker.log" >&2
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "broker ready at $bootstrap, SASL_SSL at $secure_bootstrap (PID $(cat "$dir/broker.pid"), dir $dir, ${waited}s)"
  echo "$bootstrap"
}

stop_broker() {
  local keep=$1 pid
  if pid=$(running_pid); then
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 30 ]; do
      sleep 1
      waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "broker did not stop in 30 s; killing PID $pid"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "broker stopped (PID $pid)"
  fi
  rm -f "$dir/broker.pid"
  if [ "$keep" = discard ]; then
    rm -rf "$dir"
  fi
}

case "${1:-}" in
  start) start_broker fresh ;;
  stop) stop_broker discard ;;
  restart)
    stop_broker keep
    # Tests keep the broker away longer than a transaction may stay open.
    sleep "${SESSIONFLOW_KAFKA_DOWN_SECONDS:-0}"
    start_broker keep
    ;;
  run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || { log "usage: $0 run -- CMD ..."; exit 2; }
    start_broker fresh >/dev/null
    trap 'stop_broker discard' EXIT
    status=0
    SESSIONFLOW_TEST_BOOTSTRAP=$bootstrap \
      SESSIONFLOW_TEST_PROXY_LISTEN=127.0.0.1:$proxy_port \
      SESSIONFLOW_TEST_PROXY_UPSTREAM=127.0.0.1:$proxied_port \
      SESSIONFLOW_TEST_SECURE_BOOTSTRAP=$secure_bootstrap \
      SESSIONFLOW_TEST_CA=$tls/ca.pem \
      SESSIONFLOW_TEST_UNTRUSTED_CA=$tls/untrusted-ca.pem \
      SESSIONFLOW_TEST_SASL_USER=$sasl_user \
      SESSIONFLOW_TEST_SASL_PASSWORD_FILE=$tls/sasl-password \
      "$@" || status=$?
    exit "$status"
    ;;
  tool)
    shift
    [ $# -gt 0 ] || { log "usage: $0 tool CLASS ARGS ..."; exit 2; }
    resolve_jars
    logging=()
    [ -f "$dir/tools-log4j2.properties" ] && logging=(-Dlog4j2.configurationFile="$dir/tools-log4j2.properties")
    exec java "${logging[@]}" -cp "$(java_cp)" "$@"
    ;;
  *)
    sed -n '2,16p' "$0" >&2
    exit 2
    ;;
esac
