#!/usr/bin/env bash
# A real single-node Apache Kafka broker (KRaft, combined broker + controller) on 127.0.0.1 for
# development and tests, run from Kafka's own jars (jvm/kafka-broker.pom.xml, version pinned as
# KAFKA_VERSION in lakehouse/versions.py). No download outside Maven, no container.
#
#   scripts/kafka.sh install [--print-libs]   resolve the jars into the cache (idempotent)
#   scripts/kafka.sh up [--port N] [--controller-port N] [--data-dir D] [--timeout S]
#   scripts/kafka.sh down [--data-dir D] [--timeout S]
#   scripts/kafka.sh status [--data-dir D]
#   scripts/kafka.sh prepare --port N --controller-port N --data-dir D
#                            [--listen IP] [--advertise HOST:PORT] [--pods IP:PORT]
#                            [--sasl-ssl IP:PORT] [--extra-config FILE]
#       write the configuration and format the storage of D, then print the broker's java
#       command line, one argument per line, without starting it (lakehouse.testing.kafka_broker
#       starts the process itself so that it owns it). --listen/--advertise: the address of the
#       PLAINTEXT listener and the one clients are told (default 127.0.0.1:N for both); --pods:
#       a second listener PODS for the test cluster's pods (scripts/cluster.sh), advertised as
#       itself and used between brokers; --sasl-ssl: a SASL_SSL listener, advertised as itself,
#       whose keystore and SASL settings come with --extra-config (lines added to
#       server.properties).
#
# Cache: $LAKEHOUSE_CACHE_DIR/kafka/<version>/libs/*.jar, plus a stamp of the pom they came from.
# Data dir (default .lakehouse/kafka): server.properties, log4j2.properties, kraft/ (log.dirs,
# metadata), broker.log, broker.pid. Environment: KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m),
# KAFKA_JVM_PERFORMANCE_OPTS (default: G1 with short pauses), KAFKA_JVM_OPTS (extra options).
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"

KAFKA_VERSION=$(sed -n 's/^KAFKA_VERSION *= *"\([^"]*\)".*/\1/p' "$REPO_ROOT/lakehouse/versions.py")
[ -n "$KAFKA_VERSION" ] || die "cannot read KAFKA_VERSION from lakehouse/versions.py"
POM="$REPO_ROOT/jvm/kafka-broker.pom.xml"
KAFKA_HOME="$LAKEHOUSE_CACHE_DIR/kafka/$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
STAMP="$KAFKA_HOME/installed"   # line 1: sha256 of the pom; line 2: StorageTool main class

DEFAULT_PORT=9092
DEFAULT_DATA_DIR="$REPO_ROOT/.lakehouse/kafka"

require_kafka_java() {
  command -v java >/dev/null 2>&1 \
    || die "java not found: the Kafka $KAFKA_VERSION broker needs a Java 17 or 21 runtime (e.g. 'apt-get install openjdk-17-jdk-headless') on PATH."
  require_java
}

usage() { sed -n '5,20s/^# \{0,1\}//p' "$0" >&2; exit 2; }

pom_sha() { sha256sum "$POM" | cut -c1-64; }

installed() { [ -f "$STAMP" ] && [ "$(head -1 "$STAMP")" = "$(pom_sha)" ] && [ -d "$LIBS" ]; }

require_installed() {
  installed && return 0
  if [ -d "$LIBS" ]; then
    die "the Kafka $KAFKA_VERSION jars in $LIBS come from an older jvm/kafka-broker.pom.xml: run 'scripts/kafka.sh install'."
  fi
  die "Kafka $KAFKA_VERSION broker jars not found in $LIBS: run 'scripts/kafka.sh install' (needs Java and Maven)."
}

cmd_install() {
  local print_libs=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --print-libs) print_libs=1 ;;
      *) usage ;;
    esac
    shift
  done
  if ! installed; then
    require_kafka_java
    require_maven
    mkdir -p "$LAKEHOUSE_CACHE_DIR/kafka"
    # One install at a time; a second caller waits, then finds the work done.
    exec 9>"$LAKEHOUSE_CACHE_DIR/kafka/.install.lock"
    flock 9
    if ! installed; then
      say "resolving Apache Kafka $KAFKA_VERSION broker jars into $LIBS"
      local tmp
      tmp=$(mktemp -d "$LAKEHOUSE_CACHE_DIR/kafka/.tmp-$KAFKA_VERSION.XXXXXX")
      trap 'rm -rf "$tmp"' EXIT
      mvn -B -q -Dstyle.color=never -s "$REPO_ROOT/jvm/maven-settings.xml" -f "$POM" \
        -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" \
        > "$tmp/mvn.log" 2>&1 \
        || { cat "$tmp/mvn.log" >&2
             die "Maven could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see above)."; }
      rm -f "$tmp/mvn.log"
      [ -f "$tmp/libs/kafka_2.13-$KAFKA_VERSION.jar" ] \
        || die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is not in the copied jars."
      # The storage tool moved between Kafka versions: record the main class this version has.
      local tool="" jar
      for jar in "$tmp"/libs/kafka*.jar; do
        if unzip -qql "$jar" kafka/tools/StorageTool.class >/dev/null 2>&1; then
          tool=kafka.tools.StorageTool; break
        elif unzip -qql "$jar" org/apache/kafka/tools/StorageTool.class >/dev/null 2>&1; then
          tool=org.apache.kafka.tools.StorageTool; break
        fi
      done
      [ -n "$tool" ] || die "no StorageTool class in the Kafka $KAFKA_VERSION jars."
      printf '%s\n%s\n' "$(pom_sha)" "$tool" > "$tmp/installed"
      chmod 755 "$tmp"  # mktemp made it private
      rm -rf "$KAFKA_HOME"
      mv -T "$tmp" "$KAFKA_HOME"
      trap - EXIT
      local jars=("$LIBS"/*.jar)
      say "Kafka $KAFKA_VERSION: ${#jars[@]} jars, $(du -sh "$LIBS" | cut -f1)"
    fi
    exec 9>&-
  fi
  if [ "$print_libs" = 1 ]; then echo "$LIBS"; fi
  return 0
}

# --- broker state in a data dir ----------------------------------------------------------------

pid_of() {  # prints the pid of the broker of data dir $1 if it is running
  local pidfile="$1/broker.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # Guard against a recycled pid: it must be our kafka.Kafka with this data dir's config.
  tr '\0' '\n' < "/proc/$pid/cmdline" | grep -xF "$1/server.properties" >/dev/null || return 1
  echo "$pid"
}

port_of() { sed -n 's#^listeners=PLAINTEXT://127\.0\.0\.1:\([0-9]*\),.*#\1#p' "$1/server.properties" 2>/dev/null; }

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

java_cmd() {  # the broker's java command line, one argument per line
  local d="$1"
  local heap="${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}"
  printf '%s\n' java
  # shellcheck disable=SC2086  # word splitting of option strings is intended
  printf '%s\n' $heap \
    ${KAFKA_JVM_PERFORMANCE_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExplicitGCInvokesConcurrent} \
    -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-}
  printf '%s\n' "-Dlog4j2.configurationFile=$d/log4j2.properties" -cp "$LIBS/*" kafka.Kafka \
    "$d/server.properties"
}

cmd_prepare() {
  local port="" cport="" d="" quiet=0 listen=127.0.0.1 advertise="" pods="" sasl_ssl="" extra=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="${2:?}"; shift ;;
      --listen) listen="${2:?}"; shift ;;
      --advertise) advertise="${2:?}"; shift ;;
      --pods) pods="${2:?}"; shift ;;
      --sasl-ssl) sasl_ssl="${2:?}"; shift ;;
      --extra-config) extra="${2:?}"; shift ;;
      --controller-port) cport="${2:?}"; shift ;;
      --data-dir) d="${2:?}"; shift ;;
      --quiet) quiet=1 ;;
      *) usage ;;
    esac
    shift
  done
  if [ -z "$port" ] || [ -z "$cport" ] || [ -z "$d" ]; then usage; fi
  [[ "$port" =~ ^[0-9]+$ && "$cport" =~ ^[0-9]+$ ]] || die "ports must be numbers"
  [ "$port" != "$cport" ] || die "the broker and controller ports must differ"
  require_installed
  require_kafka_java
  mkdir -p "$d"
  d=$(cd "$d" && pwd)
  if pid=$(pid_of "$d"); then die "a broker (pid $pid) is running on $d: stop it first."; fi
  local listeners="PLAINTEXT://$listen:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://${advertise:-$listen:$port}" inter=PLAINTEXT
  local protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "$pods" ]; then
    listeners="$listeners,PODS://$pods"; advertised="$advertised,PODS://$pods"; inter=PODS
    protocols="$protocols,PODS:PLAINTEXT"
  fi
  if [ -n "$sasl_ssl" ]; then
    listeners="$listeners,SASL_SSL://$sasl_ssl"; advertised="$advertised,SASL_SSL://$sasl_ssl"
    protocols="$protocols,SASL_SSL:SASL_SSL"
  fi
  if [ -n "$extra" ] && [ ! -f "$extra" ]; then die "--extra-config $extra: no such file"; fi

  cat > "$d/server.properties" <<EOF
# Generated by scripts/kafka.sh; rewritten on every start.
# Single node, KRaft combined mode (loopback only unless --listen/--pods say otherwise).
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protocols
controller.listener.names=CONTROLLER
inter.broker.listener.name=$inter
log.dirs=$d/kraft

# One replica of everything, including the internal topics.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=5
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=5
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

num.partitions=3
auto.create.topics.enable=false
delete.topic.enable=true
group.initial.rebalance.delay.ms=0

# Small footprint: two cores on the machines this runs on.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.retention.hours=168
log.segment.bytes=134217728
EOF
  if [ -n "$extra" ]; then
    { echo; echo "# From $extra"; cat "$extra"; } >> "$d/server.properties"
  fi

  cat > "$d/log4j2.properties" <<'EOF'
# Generated by scripts/kafka.sh. The broker logs to standard output (broker.log); the root level
# can be changed with KAFKA_JVM_OPTS=-Dkafka.log.level=DEBUG.
status = warn
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:kafka.log.level:-INFO}
rootLogger.appenderRef.out.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = WARN
EOF

  if [ ! -f "$d/kraft/meta.properties" ]; then
    local tool cluster_id
    tool=$(sed -n 2p "$STAMP")
    # A cluster id is 16 random bytes in url-safe base64 without padding (22 characters); one
    # starting with '-' would read as an option.
    cluster_id=-
    while [ "${cluster_id:0:1}" = - ]; do
      cluster_id=$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | cut -c1-22)
    done
    [ "$quiet" = 1 ] || say "formatting $d/kraft (cluster id $cluster_id)"
    java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
      "-Dlog4j2.configurationFile=$d/log4j2.properties" -Dkafka.log.level=WARN -cp "$LIBS/*" "$tool" \
      format --cluster-id "$cluster_id" --config "$d/server.properties" > "$d/format.log" 2>&1 \
      || { cat "$d/format.log" >&2; die "formatting the Kafka storage in $d/kraft failed."; }
  fi
  java_cmd "$d"
}

cmd_up() {
  local port="$DEFAULT_PORT" cport="" d="$DEFAULT_DATA_DIR" timeout=60
  while [ $# -gt 0 ]; do
    case "$1" in
      --port) port="${2:?}"; shift ;;
      --controller-port) cport="${2:?}"; shift ;;
      --data-dir) d="${2:?}"; shift ;;
      --timeout) timeout="${2:?}"; shift ;;
      *) usage ;;
    esac
    shift
  done
  [[ "$port" =~ ^[0-9]+$ ]] || die "--port must be a number"
  cport="${cport:-$((port + 1))}"
  mkdir -p "$d"
  d=$(cd "$d" && pwd)

  local pid
  if pid=$(pid_of "$d"); then
    local running
    running=$(port_of "$d")
    [ "$running" = "$port" ] \
      || die "a broker (pid $pid) already runs on $d at port $running: 'scripts/kafka.sh down' first."
    say "Kafka already running (pid $pid) on 127.0.0.1:$port"
    echo "127.0.0.1:$port"
    return 0
  fi
  port_answers "$port" && die "port $port on 127.0.0.1 is already in use (another broker?): pick one with --port."
  port_answers "$cport" && die "controller port $cport on 127.0.0.1 is already in use: pick one with --controller-port."

  cmd_install
  local -a cmd
  mapfile -t cmd < <(cmd_prepare --port "$port" --controller-port "$cport" --data-dir "$d"; echo "rc=$?")
  [ "${#cmd[@]}" -gt 1 ] && [ "${cmd[-1]}" = "rc=0" ] || exit 1
  unset 'cmd[-1]'

  [ -f "$d/broker.log" ] && mv -f "$d/broker.log" "$d/broker.log.1"
  rm -f "$d/broker.pid"
  local started=$SECONDS
  pid=""
  # Own session, detached from this shell; the process writes its own pid before becoming java.
  # shellcheck disable=SC2016  # expanded by the inner shell
  setsid bash -c 'echo $$ > "$0"; exec "$@"' "$d/broker.pid" "${cmd[@]}" \
    > "$d/broker.log" 2>&1 < /dev/null &
  say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$port (controller $cport), data in $d"
  while :; do
    if grep -q 'Kafka Server started' "$d/broker.log" 2>/dev/null && port_answers "$port"; then
      break
    fi
    if [ -z "$pid" ] && [ -s "$d/broker.pid" ]; then pid=$(cat "$d/broker.pid"); fi
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$d/broker.log" >&2
      die "the broker exited during start-up (log: $d/broker.log)."
    fi
    if [ $((SECONDS - started)) -ge "$timeout" ]; then
      tail -n 40 "$d/broker.log" >&2
      cmd_down --data-dir "$d" >/dev/null 2>&1 || true
      die "the broker did not answer on 127.0.0.1:$port within ${timeout}s (log: $d/broker.log)."
    fi
    sleep 0.2
  done
  say "Kafka up in $((SECONDS - started))s (pid $(cat "$d/broker.pid")): bootstrap servers 127.0.0.1:$port, log $d/broker.log"
  echo "127.0.0.1:$port"
}

cmd_down() {
  local d="$DEFAULT_DATA_DIR" timeout=30
  while [ $# -gt 0 ]; do
    case "$1" in
      --data-dir) d="${2:?}"; shift ;;
      --timeout) timeout="${2:?}"; shift ;;
      *) usage ;;
    esac
    shift
  done
  [ -d "$d" ] || { say "Kafka not running (no $d)"; return 0; }
  d=$(cd "$d" && pwd)
  local pid
  if ! pid=$(pid_of "$d"); then
    rm -f "$d/broker.pid"
    say "Kafka not running"
    return 0
  fi
  say "stopping Kafka (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "Kafka did not stop within ${timeout}s: killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$d/broker.pid"
  say "Kafka stopped"
}

cmd_status() {
  local d="$DEFAULT_DATA_DIR"
  while [ $# -gt 0 ]; do
    case "$1" in
      --data-dir) d="${2:?}"; shift ;;
      *) usage ;;
    esac
    shift
  done
  local pid port
  if [ -d "$d" ] && d=$(cd "$d" && pwd) && pid=$(pid_of "$d"); then
    port=$(port_of "$d")
    if port_answers "$port"; then
      echo "Kafka $KAFKA_VERSION running (pid $pid): bootstrap servers 127.0.0.1:$port, data $d, log $d/broker.log"
      return 0
    fi
    echo "Kafka process $pid is alive but 127.0.0.1:$port does not answer (log: $d/broker.log)"
    return 1
  fi
  if installed; then
    echo "Kafka $KAFKA_VERSION not running (jars installed in $LIBS)"
  else
    echo "Kafka $KAFKA_VERSION not running (jars not installed: scripts/kafka.sh install)"
  fi
  return 3
}

[ $# -ge 1 ] || usage
sub="$1"; shift
case "$sub" in
  install) cmd_install "$@" ;;
  prepare) cmd_prepare "$@" ;;
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  status) cmd_status "$@" ;;
  -h|--help|help) usage ;;
  *) usage ;;
esac
