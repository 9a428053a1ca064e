#!/usr/bin/env bash
# Runs Debezium's JDBC sink connector under Kafka Connect standalone (connect-runtime of the
# Kafka release scripts/services.sh resolves), with a worker and a connector properties file.
#
#   scripts/connect/run.sh WORKER.properties CONNECTOR.properties   run it (SIGTERM stops it cleanly)
#   scripts/connect/run.sh resolve                                  only resolve the jars
#
# The worker's plugin.path must be .cache/jdbc-sink-<version>/plugin, which this script prints
# with `plugin-path`. CONNECT_JVM_OPTS, when set (even empty), replaces the JVM's flags; the
# default is what Kafka's bin/connect-standalone.sh and kafka-run-class.sh give it, so that the
# bench measures Connect as users run it.
#
# The first use resolves the connector's jars with Maven into its plugin folder (Maven Central
# through the machine's configured mirror, as scripts/debezium/ does), and Kafka's jars with
# scripts/services.sh tools; later uses reuse both.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/connect"
VERSION="$(sed -n 's:.*<debezium.jdbc.version>\(.*\)</debezium.jdbc.version>.*:\1:p' "$HERE/pom.xml")"
CACHE="$ROOT/.cache/jdbc-sink-${VERSION%.Final}"
PLUGIN="$CACHE/plugin/debezium-connector-jdbc"
KAFKA_VERSION="${KAFKA_VERSION:-$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")}"
KAFKA_LIBS="$ROOT/.cache/kafka-$KAFKA_VERSION/libs"

log() { printf 'connect: %s\n' "$*" >&2; }
die() { printf 'connect: error: %s\n' "$*" >&2; exit 1; }

resolve_jars() {
  [[ -f "$PLUGIN/.complete" ]] && return
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch debezium-connector-jdbc $VERSION"
  log "resolving debezium-connector-jdbc $VERSION jars with Maven into ${PLUGIN#"$ROOT"/} (once; later runs reuse them)"
  rm -rf "$PLUGIN"
  mkdir -p "$PLUGIN"
  # Kafka's own jars and Jackson's core come from the worker's class path, as in a Connect
  # distribution: a second jackson-databind in the plugin makes Hibernate's ServiceLoader find the
  # worker's Jackson modules as subtypes of the other copy ("BlackbirdModule not a subtype").
  mvn -B -f "$HERE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$PLUGIN" -DexcludeScope=provided \
    -DexcludeGroupIds=org.apache.kafka,com.fasterxml.jackson.core >"$CACHE/mvn.log" 2>&1 ||
    die "Maven could not resolve debezium-connector-jdbc $VERSION; see ${CACHE#"$ROOT"/}/mvn.log"
  touch "$PLUGIN/.complete"
  log "resolved $(find "$PLUGIN" -name '*.jar' | wc -l) jars"
}

[[ "${1:-}" == plugin-path ]] && { echo "$CACHE/plugin"; exit 0; }
resolve_jars
[[ -f "$KAFKA_LIBS/connect-runtime-$KAFKA_VERSION.jar" ]] || KAFKA_VERSION="$KAFKA_VERSION" "$ROOT/scripts/services.sh" tools
[[ "${1:-}" == resolve ]] && exit 0
[[ $# -eq 2 ]] || die "usage: scripts/connect/run.sh WORKER.properties CONNECTOR.properties (or: resolve, plugin-path)"
# Word splitting of the flags is wanted: they are separate arguments.
# shellcheck disable=SC2086
exec java -Duser.timezone=UTC ${CONNECT_JVM_OPTS--Xms256M -Xmx2G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
  -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15} -Djava.awt.headless=true \
  -Dlog4j2.configurationFile="$ROOT/scripts/kafka/tools-log4j2.yaml" \
  -cp "$KAFKA_LIBS/*" org.apache.kafka.connect.cli.ConnectStandalone "$1" "$2"
