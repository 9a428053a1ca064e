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
# PostgreSQL versions: the whole run is on 15 (Debian's), the fault suite beside the rest; then,
# unless TEST_PATHS narrows the run, the capture tests (every tests/capture*_test.ts, the Debezium
# comparison among them, less the outage and incremental snapshot tests, see below) and the
# consumer's exactly-once test run again on each other major of PG_VERSIONS (default
# "15 14 16 17 18"), each against its own server (scripts/services.sh with PG_VERSION) on
# PG_PORT + major - 11, with the same Kafka. `PG_VERSIONS=15 deno task test` runs 15 alone. Each run
# starts with a line `PostgreSQL 17 run starts` and ends with a line `PostgreSQL 17 run: N passed, N failed`;
# any failed run fails the whole. No line is framed in `==`: CI's reader takes such a line for pytest's
# closing line, and one without pytest's counts for a run that executed no test.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PG_VERSIONS="${PG_VERSIONS:-15 14 16 17 18}"
# Not exported: services.sh reads an asked PG_PORT as "start one here" even when DATABASE_URL names another host.
pg_port="${PG_PORT:-5432}"
version_port() { echo $((pg_port + $1 - 11)); }
others=()
for v in $PG_VERSIONS; do
  case "$v" in
    15) ;;
    14 | 16 | 17 | 18) [[ -n "${TEST_PATHS:-}" ]] || others+=("$v") ;;
    *) echo "test: PG_VERSIONS names $v: use 14, 15, 16, 17 and 18 (e.g. PG_VERSIONS=\"15 17\")" >&2; exit 2 ;;
  esac
done
started=()
port_open "${KAFKA_PORT:-9092}" || started+=(kafka)
port_open "$pg_port" || started+=(postgres)
versions_started=()
for v in "${others[@]}"; do port_open "$(version_port "$v")" || versions_started+=("$v"); done
stop_started() {
  # A server still starting would outlive its `down`; the fault suite stops its own services.
  [[ "${versions_up:-0}" == 0 ]] || wait "$versions_up" 2>/dev/null || true
  [[ "${faults_run:-0}" == 0 ]] || wait "$faults_run" 2>/dev/null || true
  if [[ ${#started[@]} -gt 0 ]]; then scripts/services.sh down "${started[@]}" || true; fi
  for v in "${versions_started[@]}"; do PG_VERSION="$v" PG_PORT="$(version_port "$v")" scripts/services.sh down postgres || true; done
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

# The other versions' servers install and start while the run on 15 goes on; their log is shown
# before their runs.
versions_log="$(mktemp)"
versions_up=0
if [[ ${#others[@]} -gt 0 ]]; then
  (for v in "${others[@]}"; do PG_VERSION="$v" PG_PORT="$(version_port "$v")" scripts/services.sh up postgres || exit 1; done) \
    >"$versions_log" 2>&1 &
  versions_up=$!
fi

failed_runs=()
# run_labelled LABEL PATHS...: one `deno test` run (DATABASE_URL as the caller's environment has it),
# its summary line after it; false when it failed, and a run that ends without deno's summary counts
# as one failure.
run_labelled() {
  local label="$1" out summary status passed failed
  shift
  out="$(mktemp)"
  echo "PostgreSQL $label run starts"
  set +e
  deno test --allow-net --allow-env --allow-read --allow-write --allow-run --allow-sys ${args[@]+"${args[@]}"} "$@" 2>&1 |
    tee "$out"
  status=${PIPESTATUS[0]}
  set -e
  summary="$(sed 's/\x1b\[[0-9;]*m//g' "$out" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1 || true)"
  rm -f "$out"
  passed="$(sed -n 's/.*| \([0-9]\+\) passed.*/\1/p' <<<"$summary")"
  failed="$(sed -n 's/.*| \([0-9]\+\) failed.*/\1/p' <<<"$summary")"
  [[ -n "$passed" ]] || { passed=0; failed=1; }
  echo "PostgreSQL ${label%% *} run: $passed passed, ${failed:-0} failed"
  [[ "$status" == 0 && "${failed:-0}" == 0 ]]
}

args=("$@")
runs_dir="$(mktemp -d)"
faults_run=0
if [[ " $PG_VERSIONS " == *" 15 "* && -n "${TEST_PATHS:-}" ]]; then
  # shellcheck disable=SC2086 # TEST_PATHS may name several paths
  run_labelled "15 ($TEST_PATHS)" $TEST_PATHS || failed_runs+=(15)
elif [[ " $PG_VERSIONS " == *" 15 "* ]]; then
  # The fault suite starts and breaks services of its own (tests/faults/_faults.ts) and spends its 12
  # minutes mostly waiting out the outages it makes, so it runs beside the rest rather than after it;
  # its output is shown whole once it ends.
  run_labelled "15 (the fault suite)" tests/faults/ >"$runs_dir/faults.log" 2>&1 &
  faults_run=$!
  run_labelled "15 (every test but the fault suite)" tests/*_test.ts tests/unit/ || failed_runs+=(15)
  # It ends first (about 9 minutes against 13), and is shown before the other versions' runs.
  wait "$faults_run" || failed_runs+=("15 (the fault suite)")
  faults_run=0
  cat "$runs_dir/faults.log"
fi
if [[ "$versions_up" != 0 ]]; then
  wait "$versions_up" || { cat "$versions_log"; echo "test: starting the other PostgreSQL versions failed" >&2; exit 1; }
  cat "$versions_log"
fi
# Left out on the other versions, to keep CI under 30 minutes: tests/capture_outage_test.ts cuts the capture's
# connections at a TCP relay, which behaves the same whatever the server's version (about 100 s a version), and
# tests/capture_incremental_test.ts kills and resumes snapshots (about 80 s a version), whose only version-dependent
# part, the watermarks as logical decoding messages, tests/capture_debezium_incremental_test.ts runs on every version.
per_version=()
for f in tests/capture*_test.ts tests/exactly_once_test.ts; do
  case "$f" in tests/capture_outage_test.ts | tests/capture_incremental_test.ts) ;; *) per_version+=("$f") ;; esac
done
# PG_PARALLEL versions run at once (default 2): a version's run waits on Kafka and on its server far
# more than it computes (about 40 CPU seconds in 160 s), so two at a time halve what they add. Each
# run's output is shown whole once it ends.
parallel="${PG_PARALLEL:-2}"
for ((i = 0; i < ${#others[@]}; i += parallel)); do
  batch=("${others[@]:i:parallel}")
  pids=()
  for v in "${batch[@]}"; do
    DATABASE_URL="postgres://postgres:${PG_PASSWORD:-postgres}@localhost:$(version_port "$v")/${PG_DB:-cdc_db}" \
      run_labelled "$v" "${per_version[@]}" >"$runs_dir/$v.log" 2>&1 &
    pids+=($!)
  done
  for j in "${!batch[@]}"; do
    wait "${pids[j]}" || failed_runs+=("${batch[j]}")
    cat "$runs_dir/${batch[j]}.log"
  done
done
rm -rf "$runs_dir"
rm -f "$versions_log"
if [[ ${#failed_runs[@]} -gt 0 ]]; then
  echo "test: failed on PostgreSQL ${failed_runs[*]}" >&2
  exit 1
fi
