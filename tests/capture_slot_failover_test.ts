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
/** The reason a test of one side of version 17 skips on the other, in its name, so the output says it. */
const skipped = (skip: boolean, why: string) => skip ? ` (skipped on PostgreSQL ${MAJOR}: ${why})` : "";

/** A database with a table to capture, and the capture's settings with slot.failover=true. */
async function itemsWithFailoverAsked() {
  const db = await createTestDatabase();
  const names = captureNames();
  const env = { ...pipelineNames(db.url), ...names, CAPTURE_TABLES: "public.items", CAPTURE_SLOT_FAILOVER: "true" };
  await db.sql`create table items (id int primary key, v text not null)`;
  return { db, names, env };
}

Deno.test({
  name: "slot.failover=true creates the capture's slot with failover (PostgreSQL 17 and later)" +
    skipped(MAJOR < 17, "failover slots came with 17"),
  ignore: MAJOR < 17,
  fn: async () => {
    const { db, names, env } = await itemsWithFailoverAsked();
    let capture: Running | undefined;
    try {
      await db.sql`insert into items values (1, 'one')`;
      capture = await startCapture(env);
      const [slot] = await db.sql<{ failover: boolean }[]>`
        select failover from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT}`;
      assert.equal(slot?.failover, true, `the slot is ${JSON.stringify(slot)}`);
      assert.equal((await stopWithin(capture)).code, 0);
    } finally {
      await killLeftovers(capture);
      await dropCaptureAndDatabase(db, env);
    }
  },
});

Deno.test({
  name: "slot.failover=true on a server before PostgreSQL 17 stops the capture with one line naming the setting" +
    skipped(MAJOR >= 17, "this server has failover slots"),
  ignore: MAJOR >= 17,
  fn: async () => {
    const { db, names, env } = await itemsWithFailoverAsked();
    let capture: Running | undefined;
    try {
      capture = startCommand("produce", ["capture"], env);
      await assertStopsWithOneLine(
        capture,
        new RegExp(`slot\\.failover=true .* needs PostgreSQL 17 .* PostgreSQL ${MAJOR}\\.`),
      );
      const slots = await db.sql`select 1 from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT}`;
      assert.equal(slots.length, 0, "no slot is made without failover");
    } finally {
      await killLeftovers(capture);
      await dropCaptureAndDatabase(db, env);
    }
  },
});
