/**
 * PostgreSQL lost mid-step, at each step where the capture talks to it: the slot query, the
 * catalog read, the first snapshot's cursor and the replication stream (issue 28 item 0). The
 * connections go through a relay that cuts them all when the step's statement passes and then
 * refuses connections for a while, as a stopped server would; the real PostgreSQL and Kafka do
 * the rest. Each cut is waited out, nothing escapes as an uncaught error, and the topic ends
 * equal to the table.
 */
import assert from "node:assert/strict";
import { captureNames, dropCaptureAndDatabase } from "./_capture.ts";
import { ConnectionCutter } from "./_cutter.ts";
import {
  createTestDatabase,
  killLeftovers,
  pipelineNames,
  readWholeTopic,
  type Running,
  startCommand,
  stopProcess,
  waitFor,
} from "./_helpers.ts";

const ROWS = 10_000;

/** The last value of `v` per key on the topic; null where the last record deletes the row. */
async function topicState(topic: string): Promise<Map<number, string | null>> {
  const state = new Map<number, string | null>();
  for (const record of await readWholeTopic(topic)) {
    const id = JSON.parse(record.key!).payload.id as number;
    if (record.value === null) {
      state.set(id, null);
      continue;
    }
    const { op, after } = JSON.parse(new TextDecoder().decode(record.value)).payload;
    state.set(id, op === "d" ? null : after.v);
  }
  return state;
}

/** Keys whose last record on the topic differs from the table's row (at most `limit`). */
async function differences(sql: Parameters<typeof tableState>[0], topic: string, limit = 5): Promise<string[]> {
  const [table, topicRows] = await Promise.all([tableState(sql), topicState(topic)]);
  const keys = new Set([...table.keys(), ...[...topicRows].filter(([, v]) => v !== null).map(([k]) => k)]);
  return [...keys].filter((k) => (table.get(k) ?? null) !== (topicRows.get(k) ?? null)).slice(0, limit)
    .map((k) => `id ${k}: table ${table.get(k) ?? "(none)"}, topic ${topicRows.get(k) ?? "(none)"}`);
}

async function tableState(sql: Awaited<ReturnType<typeof createTestDatabase>>["sql"]): Promise<Map<number, string>> {
  const rows = await sql<{ id: number; v: string }[]>`select id, v from items`;
  return new Map(rows.map((r) => [r.id, r.v]));
}

Deno.test("PostgreSQL lost at the slot query, the catalog read, the snapshot cursor and the stream: each is waited out and the topic ends equal to the table", async () => {
  const db = await createTestDatabase();
  const target = new URL(db.url);
  const cutter = ConnectionCutter.start({ hostname: target.hostname, port: Number(target.port || 5432) });
  const runs: Running[] = [];
  const names = captureNames();
  const relayed = new URL(db.url);
  relayed.hostname = "127.0.0.1";
  relayed.port = String(cutter.port);
  const env = { ...pipelineNames(relayed.href), ...names, CAPTURE_TABLES: "public.items" };
  try {
    await db.sql`create table items (id int primary key, v text not null)`;
    await db.sql`insert into items select g, repeat('x', 100) || g from generate_series(1, ${ROWS}::int) g`;
    cutter.arm(
      { name: "slot query", statement: "pg_replication_slots" },
      { name: "catalog read", statement: "pg_attribute" },
      { name: "snapshot cursor", statement: `"v" from "public"."items"`, afterServerBytes: 300_000 },
      // Armed before the stream starts: the cut comes once the updates below are streaming.
      { name: "replication stream", statement: "START_REPLICATION", afterServerBytes: 200_000 },
    );
    const capture = startCommand("produce", ["capture"], env);
    runs.push(capture);
    const topic = `${names.CAPTURE_TOPIC_PREFIX}.public.items`;
    await waitFor(
      "the capture to stream after three cuts",
      () => /streaming from slot/.test(capture.stderr()),
      120_000,
    );
    assert.deepEqual([...cutter.fired].sort(), ["catalog read", "slot query", "snapshot cursor"]);

    // Streamed in several transactions so the cut lands mid-stream with more to come after it.
    for (let from = 1; from <= ROWS; from += 2_000) {
      await db.sql`update items set v = v || 'u' where id between ${from} and ${from + 1_999}`;
    }
    await waitFor("the stream's cut", () => cutter.fired.includes("replication stream"), 60_000);
    await db.sql`delete from items where id % 97 = 0`;
    await db.sql`insert into items select g, 'new ' || g from generate_series(${ROWS + 1}::int, ${ROWS + 500}::int) g`;

    let diff: string[] = [];
    await waitFor(
      "the topic to equal the table",
      async () => (diff = await differences(db.sql, topic)).length === 0,
      120_000,
    )
      .catch((error) => assert.fail(`${error.message}; first differences: ${diff.join("; ")}`));
    const result = await stopProcess(capture, "SIGTERM");
    const waits = result.stderr.match(/waiting for PostgreSQL/g)?.length ?? 0;
    console.log(`    cuts fired: ${cutter.fired.join(", ")}; wait lines: ${waits}`);
    assert.equal(result.code, 0, result.stderr.slice(-3000));
    assert.doesNotMatch(result.stderr, /uncaught|ERROR/);
    assert.ok(waits >= 4, `each of the 4 cuts was waited out with a line saying so (saw ${waits})`);
  } finally {
    await killLeftovers(...runs);
    cutter.close();
    await dropCaptureAndDatabase(db, { ...env, DATABASE_URL: db.url });
  }
});
