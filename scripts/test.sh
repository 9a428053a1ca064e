#!/usr/bin/env bash
# `deno task test`: starts the local services that are not already running, runs every test,
# then stops exactly the services it started. Extra arguments go to `deno test`; TEST_PATHS
# narrows the run (`deno task test:faults` sets it to tests/faults/).
# The tests come in tiers, all under tests/: tests/unit/ needs no service and no network, nor
# runs a command that does (`deno task test:unit` runs it alone, without this script); the rest
# of tests/ needs the local Kafka and PostgreSQL; tests/faults/ starts and breaks its own.
# test:unit allows the network only to the listeners its metrics tests open (127.0.0.1, and
# 0.0.0.0, where lib/metrics.ts listens by default) and points KAFKA_BROKERS and DATABASE_URL at
# a closed port: a unit test that reaches for a service, itself or through a command, fails
# instead of quietly using the one running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=()
port_open "${KAFKA_PORT:-9092}" || started+=(kafka)
port_open "${PG_PORT:-5432}" || started+=(postgres)
stop_started() {
  if [[ ${#started[@]} -gt 0 ]]; then scripts/services.sh down "${started[@]}" || true; fi
  # The fault suite's own services (ports as in tests/faults/_faults.ts, FAULTS_* overriding),
  # left behind only when a fault test was interrupted before its finally.
  CDC_DATA_DIR="${FAULTS_DATA_DIR:-$ROOT/.data/faults}" KAFKA_PORT="${FAULTS_KAFKA_PORT:-28092}" \
    PG_PORT="${FAULTS_PG_PORT:-25432}" \
    scripts/services.sh down kafka postgres cluster >/dev/null 2>&1 || true
  # Likewise the Kafka 3.9 broker of tests/kafka39_test.ts.
  CDC_DATA_DIR="$ROOT/.data/kafka39" KAFKA_PORT=29092 KAFKA_VERSION=3.9.1 \
    scripts/services.sh down kafka >/dev/null 2>&1 || true
}
trap stop_started EXIT
scripts/services.sh up kafka postgres
deno test --allow-net --allow-env --allow-read --allow-write --allow-run --allow-sys "$@" ${TEST_PATHS:-tests/}
