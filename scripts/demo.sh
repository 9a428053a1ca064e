#!/usr/bin/env bash
# `deno task demo`: the whole product on local services. Starts Kafka and PostgreSQL (or reuses
# running ones), publishes a workload, consumes until drained, shows the tables, then runs the
# capture until its first snapshot of users and orders is in Kafka, stops it (SIGTERM: its exit
# summary) and prints one of its Debezium records.
#
# The capture runs on a slot and publication of the demo's own, with --new-snapshot (a run cut
# short leaves its slot behind; the next one starts over from it) and is dropped at the end, so
# the demo runs again and again and no slot is left holding WAL on the server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
USERS="${DEMO_USERS:-10000}"
ORDERS="${DEMO_ORDERS:-20000}"
CAPTURE_FLAGS=(--slot cdc_demo_slot --publication cdc_demo_pub)
CAPTURE_DEADLINE_S=120
scripts/services.sh up kafka postgres
echo "demo: publishing $USERS user and $ORDERS order events" >&2
deno task -q produce --users "$USERS" --orders "$ORDERS"
echo "demo: consuming until the topics are drained" >&2
deno task -q consume --idle-timeout 3
DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@localhost:5432/cdc_db}"
if command -v psql >/dev/null; then
  psql "$DATABASE_URL" -P pager=off \
    -c "select 'users' as table, count(*) as rows, count(*) filter (where is_deleted) as deleted from users
        union all select 'orders', count(*), count(*) filter (where is_deleted) from orders" \
    -c "select id, name, dob, created_at, modified_at, is_deleted from users order by created_at desc limit 3" \
    -c "select id, status, user_id, quantity, total_amount, placed_at, is_deleted from orders order by placed_at desc limit 3"
fi

echo "demo: capturing the tables as Debezium records until the first snapshot is in Kafka" >&2
capture_log="$(mktemp)"
deno task -q capture "${CAPTURE_FLAGS[@]}" --new-snapshot 2>"$capture_log" &
capture_pid=$!
trap 'kill -TERM "$capture_pid" 2>/dev/null || true; rm -f "$capture_log"' EXIT
deadline=$((SECONDS + CAPTURE_DEADLINE_S))
until grep -q "first snapshot published" "$capture_log"; do
  if ! kill -0 "$capture_pid" 2>/dev/null || ((SECONDS >= deadline)); then
    cat "$capture_log" >&2
    echo "demo: error: the capture did not publish its first snapshot within ${CAPTURE_DEADLINE_S}s" >&2
    exit 1
  fi
  sleep 0.2
done
kill -TERM "$capture_pid"
capture_status=0
wait "$capture_pid" || capture_status=$?
cat "$capture_log" >&2
if ((capture_status != 0)); then
  echo "demo: error: the capture exited with $capture_status" >&2
  exit 1
fi

echo "demo: one Debezium record, the newest in the capture's users topic" >&2
deno run --allow-net --allow-env --allow-read --allow-sys scripts/demo_record.ts "${CAPTURE_FLAGS[@]}"

# The server may still count the slot as in use for a moment after the capture's exit.
deadline=$((SECONDS + 30))
until drop_output="$(deno task -q capture "${CAPTURE_FLAGS[@]}" --drop-slot 2>&1)"; do
  if ((SECONDS >= deadline)); then
    echo "$drop_output" >&2
    exit 1
  fi
  sleep 0.5
done
echo "$drop_output" >&2
echo "demo: done. Services keep running: 'scripts/deno task services:down' stops them." >&2
