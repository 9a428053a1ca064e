#!/usr/bin/env bash
# `deno task demo`: the whole pipeline on local services. Starts Kafka and PostgreSQL (or
# reuses running ones), publishes a workload, consumes until drained, shows the tables.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
USERS="${DEMO_USERS:-10000}"
ORDERS="${DEMO_ORDERS:-20000}"
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
echo "demo: done. Services keep running: 'scripts/deno task services:down' stops them." >&2
