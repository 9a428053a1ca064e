/**
 * `slot.failover` (Debezium's property) on the PostgreSQL under test: on 17 and later the capture
 * creates its slot with failover, so that standbys syncing slots keep it across a promotion; on an
 * older server, which has no such slot, it stops with one line naming the setting and the version.
 * The per-version runs of `deno task test` run it on every PostgreSQL CI tests.
 */
import assert from "node:assert/strict";
import { assertStopsWithOneLine, captureNames, dropCaptureAndDatabase, startCapture } from "./_capture.ts";
import {
  createTestDatabase,
  killLeftovers,
  pipelineNames,
  type Running,
  serverMajor,
  startCommand,
  stopWithin,
} from "./_helpers.ts";

const MAJOR = await serverMajor();

/** A database with a table to capture, and the capture's settings with slot.failover=true. */
async function itemsWithFailoverAsked() {
  const db = await createTestDatabase();
  const names = captureNames();
  const env = { ...pipelineNames(db.url), ...names, CAPTURE_TABLES: "public.items", CAPTURE_SLOT_FAILOVER: "true" };
  await db.sql`create table items (id int primary key, v text not null)`;
  return { db, names, env };
}

/** On 17 and later: the capture's slot is made with failover, and the capture stops cleanly. */
async function assertFailoverSlotMade(
  { db, names, env }: Awaited<ReturnType<typeof itemsWithFailoverAsked>>,
  running: { capture?: Running },
): Promise<void> {
  await db.sql`insert into items values (1, 'one')`;
  const capture = running.capture = await startCapture(env);
  const [slot] = await db.sql<{ failover: boolean }[]>`
    select failover from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT}`;
  assert.equal(slot?.failover, true, `the slot is ${JSON.stringify(slot)}`);
  assert.equal((await stopWithin(capture)).code, 0);
}

/** Before 17: the capture stops with one line naming the setting and the server's version, and makes no slot. */
async function assertRefusedBefore17(
  { db, names, env }: Awaited<ReturnType<typeof itemsWithFailoverAsked>>,
  running: { capture?: Running },
): Promise<void> {
  const capture = running.capture = startCommand("produce", ["capture"], env);
  await assertStopsWithOneLine(
    capture,
    new RegExp(`slot\\.failover=true .* needs PostgreSQL 17 .* PostgreSQL ${MAJOR}\\.`),
  );
  const slots = await db.sql`select 1 from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT}`;
  assert.equal(slots.length, 0, "no slot is made without failover");
}

// One test whichever the server: each per-version run asserts the side its server is on, and no run reports a
// test it skipped.
Deno.test(
  `slot.failover=true on PostgreSQL ${MAJOR} ` +
    (MAJOR >= 17
      ? "creates the capture's slot with failover"
      : "stops the capture with one line naming the setting (failover slots came with 17)"),
  async () => {
    const parts = await itemsWithFailoverAsked();
    const running: { capture?: Running } = {};
    try {
      await (MAJOR >= 17 ? assertFailoverSlotMade(parts, running) : assertRefusedBefore17(parts, running));
    } finally {
      await killLeftovers(running.capture);
      await dropCaptureAndDatabase(parts.db, parts.env);
    }
  },
);
