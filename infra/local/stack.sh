#!/usr/bin/env bash
# Local Vigil infrastructure for tests and the demo: Apache Kafka (KRaft, one node), Redis and Mosquitto (MQTT).
#
#   infra/local/stack.sh up|down|status|env [kafka|redis|mosquitto]
#
# Everything lives under $VIGIL_STATE_DIR (default: <repo>/.state). Processes are tracked by pid
# file and stopped only through it. `up` is idempotent; readiness is checked with a timeout and a
# failure points at the log file. `env` prints the settings that reach the stack (source it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
STATE=${VIGIL_STATE_DIR:-$ROOT/.state}
KAFKA_VERSION=3.9.1
KAFKA_PORT=${VIGIL_LOCAL_KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${VIGIL_LOCAL_KAFKA_CONTROLLER_PORT:-9093}
REDIS_PORT=${VIGIL_LOCAL_REDIS_PORT:-6390}
MQTT_PORT=${VIGIL_LOCAL_MQTT_PORT:-1884}
MQTT_USER=vigil
READY_TIMEOUT=${VIGIL_LOCAL_READY_TIMEOUT:-90}
KAFKA_LIB=$ROOT/infra/local/kafka/target/lib

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# --- process bookkeeping ---------------------------------------------------------------------------
pid_alive() { local f=$1; [[ -f $f ]] && kill -0 "$(cat "$f")" 2>/dev/null; }

stop_pidfile() {  # stop_pidfile NAME PIDFILE
  local name=$1 f=$2 pid
  if ! pid_alive "$f"; then rm -f "$f"; log "$name: not running"; return 0; fi
  pid=$(cat "$f")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$name: still running after 30 s, sending KILL"; kill -KILL "$pid"; fi
  rm -f "$f"; log "$name: stopped (pid $pid)"
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- Kafka -----------------------------------------------------------------------------------------
kafka_install() {
  [[ -f $KAFKA_LIB/kafka_2.13-$KAFKA_VERSION.jar ]] && return 0
  command -v java >/dev/null || die "java not found: install a JDK 17 (apt-get install openjdk-17-jre-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  log "kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central"
  mvn -q -B -f "$ROOT/infra/local/kafka/pom.xml" dependency:copy-dependencies \
    || die "kafka: Maven could not resolve the broker jars (see the output above)"
}

kafka_config() {
  local dir=$STATE/kafka
  mkdir -p "$dir/data" "$dir/logs"
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=24
log.segment.bytes=67108864
PROPS
  cat >"$dir/log4j.properties" <<PROPS
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=$dir/logs/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=2
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
PROPS
}

kafka_java() { java -Xms256m -Xmx768m -Dlog4j.configuration="file:$STATE/kafka/log4j.properties" -cp "$KAFKA_LIB/*" "$@"; }

kafka_ready() {  # the broker answers a metadata request
  timeout 20 java -cp "$KAFKA_LIB/*" -Dlog4j.configuration="file:$STATE/kafka/log4j.properties" \
    kafka.admin.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1
}

kafka_up() {
  local dir=$STATE/kafka pidf=$STATE/kafka/kafka.pid
  if pid_alive "$pidf"; then log "kafka: already running (pid $(cat "$pidf")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  port_busy "$KAFKA_PORT" && die "kafka: port $KAFKA_PORT is taken by another process; set VIGIL_LOCAL_KAFKA_PORT"
  kafka_install
  kafka_config
  if [[ ! -f $dir/data/meta.properties ]]; then
    log "kafka: formatting KRaft storage in $dir/data"
    kafka_java kafka.tools.StorageTool format -t "$(kafka_java kafka.tools.StorageTool random-uuid)" \
      -c "$dir/server.properties" >"$dir/logs/format.log" 2>&1 || die "kafka: storage format failed, see $dir/logs/format.log"
  fi
  log "kafka: starting $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT"
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Dlog4j.configuration="file:$dir/log4j.properties" \
    -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$pidf"
  local t0=$SECONDS
  until kafka_ready; do
    pid_alive "$pidf" || die "kafka: exited during start-up, see $dir/logs/server.log and $dir/logs/stdout.log"
    (( SECONDS - t0 > READY_TIMEOUT )) && die "kafka: not ready after ${READY_TIMEOUT}s, see $dir/logs/server.log"
    sleep 1
  done
  log "kafka: ready after $((SECONDS - t0)) s"
}

# --- Redis -----------------------------------------------------------------------------------------
redis_install() {
  command -v redis-server >/dev/null && return 0
  log "redis: installing Debian's redis-server package"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null \
    || die "redis: apt-get install redis-server failed"
}

redis_password_file() {
  local f=$STATE/redis/password
  if [[ ! -s $f ]]; then
    mkdir -p "$STATE/redis"; umask 077
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f"
  fi
  echo "$f"
}

redis_cli() { REDISCLI_AUTH=$(cat "$(redis_password_file)") redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

redis_up() {
  local dir=$STATE/redis pidf=$STATE/redis/redis.pid
  if pid_alive "$pidf"; then log "redis: already running (pid $(cat "$pidf")) on 127.0.0.1:$REDIS_PORT"; return 0; fi
  port_busy "$REDIS_PORT" && die "redis: port $REDIS_PORT is taken by another process; set VIGIL_LOCAL_REDIS_PORT"
  redis_install
  mkdir -p "$dir/data"
  local pw; pw=$(cat "$(redis_password_file)")
  ( umask 077; cat >"$dir/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
dir $dir/data
logfile $dir/redis.log
requirepass $pw
appendonly yes
appendfsync everysec
save ""
maxmemory-policy noeviction
CONF
  )
  log "redis: starting on 127.0.0.1:$REDIS_PORT (AUTH on, AOF every second)"
  nohup redis-server "$dir/redis.conf" >/dev/null 2>&1 &
  echo $! >"$pidf"
  local t0=$SECONDS
  until [[ $(redis_cli ping 2>/dev/null) == PONG ]]; do
    pid_alive "$pidf" || die "redis: exited during start-up, see $dir/redis.log"
    (( SECONDS - t0 > READY_TIMEOUT )) && die "redis: no PONG after ${READY_TIMEOUT}s, see $dir/redis.log"
    sleep 0.2
  done
  log "redis: ready"
}

# --- mosquitto (MQTT broker for vigil notify) -------------------------------------------------------
mosquitto_bin() { command -v mosquitto || { [[ -x /usr/sbin/mosquitto ]] && echo /usr/sbin/mosquitto; } || true; }

mosquitto_install() {
  [[ -n $(mosquitto_bin) ]] && command -v mosquitto_passwd >/dev/null && return 0
  log "mosquitto: installing Debian's mosquitto package"
  local sudo=; [[ $(id -u) -ne 0 ]] && sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq mosquitto >/dev/null \
    || die "mosquitto: apt-get install mosquitto failed"
}

mqtt_password_file() {  # the plain password of user $MQTT_USER (clients read it); the broker gets a hashed copy
  local f=$STATE/mosquitto/password
  if [[ ! -s $f ]]; then
    mkdir -p "$STATE/mosquitto"; umask 077
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$f"
  fi
  echo "$f"
}

mosquitto_up() {
  local dir=$STATE/mosquitto pidf=$STATE/mosquitto/mosquitto.pid
  if pid_alive "$pidf"; then log "mosquitto: already running (pid $(cat "$pidf")) on 127.0.0.1:$MQTT_PORT"; return 0; fi
  port_busy "$MQTT_PORT" && die "mosquitto: port $MQTT_PORT is taken by another process; set VIGIL_LOCAL_MQTT_PORT"
  mosquitto_install
  mkdir -p "$dir/data"
  local pw; pw=$(cat "$(mqtt_password_file)")
  ( umask 077; : >"$dir/passwd"; mosquitto_passwd -b "$dir/passwd" "$MQTT_USER" "$pw" 2>/dev/null
    cat >"$dir/mosquitto.conf" <<CONF
listener $MQTT_PORT 127.0.0.1
user $(id -un)
allow_anonymous false
password_file $dir/passwd
persistence true
persistence_location $dir/data/
log_dest file $dir/mosquitto.log
CONF
  )
  log "mosquitto: starting on 127.0.0.1:$MQTT_PORT (password auth, no anonymous)"
  nohup "$(mosquitto_bin)" -c "$dir/mosquitto.conf" >/dev/null 2>&1 &
  echo $! >"$pidf"
  local t0=$SECONDS
  until port_busy "$MQTT_PORT"; do
    pid_alive "$pidf" || die "mosquitto: exited during start-up, see $dir/mosquitto.log"
    (( SECONDS - t0 > READY_TIMEOUT )) && die "mosquitto: port closed after ${READY_TIMEOUT}s, see $dir/mosquitto.log"
    sleep 0.2
  done
  log "mosquitto: ready"
}

# --- commands --------------------------------------------------------------------------------------
print_env() {
  cat <<ENV
export VIGIL_KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export VIGIL_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export VIGIL_REDIS_PASSWORD_FILE=$(redis_password_file)
export VIGIL_NOTIFY_MQTT_HOST=127.0.0.1
export VIGIL_NOTIFY_MQTT_PORT=$MQTT_PORT
export VIGIL_NOTIFY_MQTT_USERNAME=$MQTT_USER
export VIGIL_NOTIFY_MQTT_PASSWORD_FILE=$(mqtt_password_file)
ENV
}

status() {
  local rc=0
  if pid_alive "$STATE/kafka/kafka.pid" && kafka_ready; then
    log "kafka: up (pid $(cat "$STATE/kafka/kafka.pid")) 127.0.0.1:$KAFKA_PORT"
  else log "kafka: DOWN (start with: make up)"; rc=1; fi
  if pid_alive "$STATE/redis/redis.pid" && [[ $(redis_cli ping 2>/dev/null) == PONG ]]; then
    log "redis: up (pid $(cat "$STATE/redis/redis.pid")) 127.0.0.1:$REDIS_PORT"
  else log "redis: DOWN (start with: make up)"; rc=1; fi
  if pid_alive "$STATE/mosquitto/mosquitto.pid" && port_busy "$MQTT_PORT"; then
    log "mosquitto: up (pid $(cat "$STATE/mosquitto/mosquitto.pid")) 127.0.0.1:$MQTT_PORT"
  else log "mosquitto: DOWN (start with: infra/local/stack.sh up)"; rc=1; fi
  return $rc
}

cmd=${1:-status}; what=${2:-all}
mkdir -p "$STATE"
case $cmd in
  up)
    [[ $what == all || $what == kafka ]] && kafka_up
    [[ $what == all || $what == redis ]] && redis_up
    [[ $what == all || $what == mosquitto ]] && mosquitto_up
    print_env >"$STATE/local.env"; log "settings for clients: source $STATE/local.env" ;;
  down)
    [[ $what == all || $what == mosquitto ]] && stop_pidfile mosquitto "$STATE/mosquitto/mosquitto.pid"
    [[ $what == all || $what == redis ]] && stop_pidfile redis "$STATE/redis/redis.pid"
    [[ $what == all || $what == kafka ]] && stop_pidfile kafka "$STATE/kafka/kafka.pid"
    true ;;
  status) status ;;
  env) print_env ;;
  install) kafka_install; redis_install; mosquitto_install ;;
  *) die "usage: $0 up|down|status|env|install [kafka|redis|mosquitto]" ;;
esac
