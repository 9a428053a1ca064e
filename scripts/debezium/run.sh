#!/usr/bin/env bash
# Runs the Debezium PostgreSQL connector as the Debezium Engine (scripts/debezium/DebeziumToFile.java)
# with the connector configuration in a properties file, writing its records to a file as JSON lines.
#
#   scripts/debezium/run.sh CONNECTOR.properties OUTPUT.jsonl   run it (SIGTERM stops it cleanly)
#   scripts/debezium/run.sh resolve                             only resolve the jars and compile
#
# DEBEZIUM_JVM_OPTS, when set (even empty), replaces the JVM's sizing and compiler flags: the
# defaults below start fast for tests; the bench sets it empty to measure the JVM as users run it.
# DEBEZIUM_FLUSH=batch flushes the output once per batch of the engine instead of once per record.
#
# The first use resolves the jars with Maven into .cache/debezium-<version>/libs (Maven Central
# through the machine's configured mirror, as scripts/services.sh does for Kafka) and compiles
# the program there with javac; later uses reuse both.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/scripts/debezium"
VERSION="$(sed -n 's:.*<debezium.version>\(.*\)</debezium.version>.*:\1:p' "$HERE/pom.xml")"
CACHE="$ROOT/.cache/debezium-${VERSION%.Final}"
LIBS="$CACHE/libs"

log() { printf 'debezium: %s\n' "$*" >&2; }
die() { printf 'debezium: error: %s\n' "$*" >&2; exit 1; }

resolve_jars() {
  [[ -f "$LIBS/.complete" ]] && return
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch Debezium $VERSION"
  log "resolving Debezium $VERSION jars with Maven into ${LIBS#"$ROOT"/} (once; later runs reuse them)"
  rm -rf "$LIBS"
  mkdir -p "$LIBS"
  # Maven's own output goes to the log; stderr gets a line every 50 files downloaded.
  if ! mvn -B -f "$HERE/pom.xml" dependency:copy-dependencies -DoutputDirectory="$LIBS" 2>&1 |
    tee "$CACHE/mvn.log" |
    awk '/^\[INFO\] Downloaded from/ && ++n % 50 == 0 { printf "debezium: %d files downloaded\n", n > "/dev/stderr" }'; then
    die "Maven could not resolve Debezium $VERSION; see ${CACHE#"$ROOT"/}/mvn.log"
  fi
  touch "$LIBS/.complete"
  log "resolved $(find "$LIBS" -name '*.jar' | wc -l) jars"
}

# The classes are compiled once per version of the source, into a folder named by its hash.
compile() {
  local hash
  hash="$(sha256sum "$HERE/DebeziumToFile.java" | cut -c1-12)"
  CLASSES="$CACHE/classes-$hash"
  [[ -f "$CLASSES/DebeziumToFile.class" ]] && return
  command -v javac >/dev/null || die "javac not found: a JDK 17 or later is needed to compile scripts/debezium/DebeziumToFile.java"
  log "compiling DebeziumToFile.java into ${CLASSES#"$ROOT"/}"
  local tmp="$CLASSES.tmp.$$"
  mkdir -p "$tmp"
  # javac's output (it warns about sun.misc.Signal, which the program uses on purpose) goes to a log.
  javac -d "$tmp" -cp "$LIBS/*" "$HERE/DebeziumToFile.java" >"$CACHE/javac.log" 2>&1 ||
    die "javac could not compile DebeziumToFile.java; see ${CACHE#"$ROOT"/}/javac.log"
  rm -rf "$CLASSES"
  mv "$tmp" "$CLASSES"
}

resolve_jars
compile
[[ "${1:-}" == resolve ]] && exit 0
[[ $# -eq 2 ]] || die "usage: scripts/debezium/run.sh CONNECTOR.properties OUTPUT.jsonl (or: resolve)"
# Pinned to UTC, so that nothing Debezium writes can depend on the zone of the machine running the test.
# Word splitting of the flags is wanted: they are separate arguments.
# shellcheck disable=SC2086
exec java -Duser.timezone=UTC ${DEBEZIUM_JVM_OPTS--Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1} \
  -Djava.awt.headless=true -Ddebezium.flush="${DEBEZIUM_FLUSH:-record}" \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=info -Dorg.slf4j.simpleLogger.log.org.apache.kafka=warn \
  -Dorg.slf4j.simpleLogger.logFile=System.err \
  -cp "$LIBS/*:$CLASSES" DebeziumToFile "$1" "$2"
