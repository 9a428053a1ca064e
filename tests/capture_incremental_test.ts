/**
 * Incremental snapshots against real Kafka and PostgreSQL, asked for through the signal table in
 * Debezium's format: a table snapshotted while a writer updates, deletes and inserts ends on its
 * topic equal to the table, key for key; pause-snapshot and stop-snapshot do what they say; a
 * signal the capture cannot carry out is one line naming its id, and the capture goes on.
 */
import assert from "node:assert/strict";
import {
  BROKERS,
  createTestDatabase,
  killLeftovers,
  type PipelineEnv,
  pipelineNames,
  readWholeTopic,
  type Running,
  startCommand,
  stopProcess,
  stopWithin,
  waitFor,
} from "./_helpers.ts";
import { captureNames, dropCaptureAndDatabase, startCapture } from "./_capture.ts";

/** A database with `items` of `rows` rows, a capture of it with a signal table, and its topic. */
async function itemsWithSignals(rows: number) {
  const db = await createTestDatabase();
  const names = captureNames();
  const env: PipelineEnv = {
    ...pipelineNames(db.url),
    ...names,
    CAPTURE_TABLES: "public.items",
    CAPTURE_SIGNAL_TABLE: "public.dbz_signal",
  };
  await db.sql`create table items (id integer primary key, name text not null, n integer not null)`;
  await db.sql`insert into items select i, 'item ' || i, 0 from generate_series(1, ${rows}) i`;
  const topic = `${names.CAPTURE_TOPIC_PREFIX}.public.items`;
  let signals = 0;
  const signal = (type: string, data: unknown) =>
    db.sql`insert into dbz_signal values (${`sig-${++signals}`}, ${type}, ${
      typeof data === "string" ? data : JSON.stringify(data)
    })`;
  return { db, env, topic, signal };
}

/** The last key of the incremental snapshot's position kept in the capture's state row (0 when none). */
async function keptAfter(db: { sql: Awaited<ReturnType<typeof createTestDatabase>>["sql"] }, env: PipelineEnv) {
  const [row] = await db.sql<{ kept: { current: { after: string[] | null } | null } | null }[]>`
    select incremental_snapshot as kept from cdc_capture_state where slot_name = ${env.CAPTURE_SLOT!}`;
  return Number(row?.kept?.current?.after?.[0] ?? 0);
}

/**
 * Starts a capture reading chunks of 100 rows, signals an incremental snapshot of `items`, and
 * waits until the position kept in the state row passed a tenth of its `rows`.
 */
async function snapshotPastTenth(
  db: Awaited<ReturnType<typeof itemsWithSignals>>["db"],
  env: PipelineEnv,
  signal: Awaited<ReturnType<typeof itemsWithSignals>>["signal"],
  runs: Running[],
  rows: number,
): Promise<Running> {
  const capture = await startCapture(env, ["--snapshot-chunk-size", "100"]);
  runs.push(capture);
  await signal("execute-snapshot", { "data-collections": ["public.items"] });
  await waitFor(
    "a kept position past a tenth of the table",
    async () => (await keptAfter(db, env)) >= rows / 10,
    120_000,
    20,
  )
    .catch((error) => {
      throw new Error(`${error.message}\n${capture.stderr().slice(-3000)}`);
    });
  return capture;
}

/**
 * Waits for `capture`'s incremental snapshot of `items` to end, stops the writer, then waits for
 * the topic to end equal to the table; a failure names the keys that differ with their records.
 */
async function snapshotEndsEqualToTable(
  capture: Running,
  db: Awaited<ReturnType<typeof itemsWithSignals>>["db"],
  topic: string,
  changes: ReturnType<typeof writer>,
): Promise<{ made: number; table: Map<number, string> }> {
  const log = () => capture.stderr().slice(-3000);
  await waitFor(
    "the incremental snapshot to end",
    () => /incremental snapshot of public\.items done/.test(capture.stderr()),
    120_000,
    250,
  )
    .catch((error) => {
      throw new Error(`${error.message}\n${log()}`);
    });
  const made = await changes.stop();
  const table = await tableState(db.sql);
  let last: string[] = [];
  await waitFor(
    "the topic to end equal to the table",
    async () => {
      last = differences(await records(topic), table);
      return last.length === 0;
    },
    60_000,
    1_000,
  ).catch(() => {
    throw new Error(`keys that differ: ${last.join("; ")}\n${log()}`);
  });
  return { made, table };
}

/** Each record of the topic with a value: its op, `source.snapshot` and row. */
async function records(topic: string) {
  return (await readWholeTopic(topic, 60_000, BROKERS)).map((r) => {
    const key = JSON.parse(r.key!).payload.id as number;
    if (r.value === null) return { key, op: "tombstone", snapshot: null, after: null };
    const { payload } = JSON.parse(new TextDecoder().decode(r.value));
    return { key, op: payload.op as string, snapshot: payload.source.snapshot as string, after: payload.after };
  });
}

/** The last state of every key on the topic (null: deleted), by key. */
function finalState(list: Awaited<ReturnType<typeof records>>): Map<number, string | null> {
  const state = new Map<number, string | null>();
  for (const r of list) state.set(r.key, r.after ? `${r.after.name}|${r.after.n}` : null);
  for (const [key, value] of state) if (value === null) state.delete(key);
  return state;
}

/** The table's rows as `finalState` writes them. */
async function tableState(sql: Awaited<ReturnType<typeof createTestDatabase>>["sql"]): Promise<Map<number, string>> {
  const rows = await sql<{ id: number; name: string; n: number }[]>`select id, name, n from items order by id`;
  return new Map(rows.map((r) => [r.id, `${r.name}|${r.n}`]));
}

/**
 * Keys whose last state on the topic differs from the table's, at most `limit`, each with its
 * records on the topic in order (op, `source.snapshot`, row), so that a failure shows the race.
 */
function differences(list: Awaited<ReturnType<typeof records>>, table: Map<number, string>, limit = 10): string[] {
  const topic = finalState(list);
  const out: string[] = [];
  for (const key of new Set([...topic.keys(), ...table.keys()])) {
    if (topic.get(key) === table.get(key)) continue;
    const history = list.filter((r) => r.key === key).map((r) =>
      `${r.op}${r.snapshot && r.snapshot !== "false" ? `(${r.snapshot})` : ""} ${
        r.after ? `${r.after.name}|${r.after.n}` : "-"
      }`
    );
    out.push(`${key}: topic ${topic.get(key)} table ${table.get(key)}; records: ${history.join(", ")}`);
    if (out.length >= limit) break;
  }
  return out;
}

/** Updates, deletes and inserts rows of `items` until stopped; returns how many transactions it made. */
function writer(sql: Awaited<ReturnType<typeof createTestDatabase>>["sql"], rows: number) {
  let stop = false;
  let next = rows + 1;
  const done = (async () => {
    let made = 0;
    while (!stop) {
      const id = 1 + Math.floor(Math.random() * rows);
      const pick = made % 3;
      if (pick === 0) await sql`update items set n = n + 1, name = 'updated ' || id where id in (${id}, ${id + 7})`;
      else if (pick === 1) await sql`delete from items where id = ${id}`;
      else await sql`insert into items values (${next++}, 'new', 1), (${id}, 'back', 2) on conflict (id) do nothing`;
      made++;
    }
    return made;
  })();
  return { stop: () => (stop = true, done) };
}

Deno.test("an execute-snapshot of a table under updates, deletes and inserts ends on its topic equal to the table, key for key", async () => {
  const rows = 20_000;
  const { db, env, topic, signal } = await itemsWithSignals(rows);
  const runs: Running[] = [];
  try {
    const capture = await startCapture(env, ["--snapshot-chunk-size", "500"]);
    runs.push(capture);
    const changes = writer(db.sql, rows);
    await signal("execute-snapshot", { "data-collections": ["public\\.it.*"], type: "incremental" });
    const { made, table } = await snapshotEndsEqualToTable(capture, db, topic, changes);
    const all = await records(topic);
    const incremental = all.filter((r) => r.op === "r" && r.snapshot === "incremental");
    assert.ok(made > 50, `the writer made ${made} transactions during the snapshot`);
    // Every row read by a chunk and not touched in its window is published once; touched ones come from the stream.
    assert.ok(incremental.length > table.size * 0.5, `${incremental.length} incremental reads of ${table.size} rows`);
    assert.ok(incremental.length <= rows + made * 2, `${incremental.length} incremental reads`);
    assert.equal(new Set(incremental.map((r) => r.key)).size, incremental.length, "each key read once");
    assert.equal(all.filter((r) => r.op === "r" && r.snapshot !== "incremental").length, rows, "the first snapshot");
    const stopped = await stopWithin(capture);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
});

Deno.test("a table added to --tables later is snapshotted alone, under writes, and ends on its topic equal to the table", async () => {
  const rows = 20_000;
  const { db, env, topic } = await itemsWithSignals(rows);
  const runs: Running[] = [];
  env.CAPTURE_TABLES = "public.others";
  delete env.CAPTURE_SIGNAL_TABLE;
  try {
    await db.sql`create table others (id integer primary key, note text)`;
    await db.sql`insert into others select i, 'o' from generate_series(1, 50) i`;
    const first = await startCapture(env);
    runs.push(first);
    const firstStopped = await stopWithin(first);
    assert.equal(firstStopped.code, 0, firstStopped.stderr.slice(-3000));
    env.CAPTURE_TABLES = "public.others,public.items";
    const second = await startCapture(env, ["--snapshot-chunk-size", "500"]);
    runs.push(second);
    const changes = writer(db.sql, rows);
    const { made } = await snapshotEndsEqualToTable(second, db, topic, changes);
    assert.ok(made > 50, `the writer made ${made} transactions during the snapshot`);
    assert.doesNotMatch(second.stderr(), /created slot|first snapshot/, "no new slot, no first snapshot");
    const others = (await readWholeTopic(topic.replace(/items$/, "others"), 30_000, BROKERS)).length;
    assert.equal(others, 50, "the other table is not read again");
    const stopped = await stopWithin(second);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
});

Deno.test("pause-snapshot holds the chunks until resume-snapshot, stop-snapshot ends the snapshot, bad signals are one line each", async () => {
  // Enough chunks of 10 that the snapshot cannot end before the pause reaches it.
  const rows = 100_000;
  const { db, env, topic, signal } = await itemsWithSignals(rows);
  const runs: Running[] = [];
  const incremental = async () => (await records(topic)).filter((r) => r.snapshot === "incremental").length;
  /** A streamed change of a key beyond the table's, seen on the topic: everything published before it is in. */
  let marker = rows + 1000;
  const streamed = async () => {
    const id = ++marker;
    await db.sql`insert into items values (${id}, 'marker', 0)`;
    await waitFor(
      `marker ${id} on the topic`,
      async () => (await records(topic)).some((r) => r.key === id),
      60_000,
      250,
    );
  };
  try {
    const capture = await startCapture(env, ["--snapshot-chunk-size", "10"]);
    runs.push(capture);
    const logged = (what: string, line: RegExp) =>
      waitFor(what, () => line.test(capture.stderr()), 30_000, 100).catch((error) => {
        throw new Error(`${error.message}\n${capture.stderr().slice(-3000)}`);
      });
    await signal("execute-snapshot", "{not json");
    await signal("execute-snapshot", { "data-collections": ["public.ghosts"] });
    await signal("execute-snapshot", { "data-collections": ["public.items"] });
    await waitFor("a first chunk", async () => (await incremental()) >= 10, 60_000, 250);
    await signal("pause-snapshot", {});
    await logged("the pause", /signal sig-4: paused/);
    await streamed();
    const paused = await incremental();
    await streamed();
    await streamed();
    assert.ok((await incremental()) <= paused + 10, "at most the chunk in flight after the pause");
    assert.ok(paused < rows, `${paused} rows read before the pause`);
    await signal("resume-snapshot", {});
    await logged("the resume", /signal sig-5: resumed/);
    await waitFor("more chunks", async () => (await incremental()) > paused + 50, 60_000, 250);
    // Stopped while paused, so that the snapshot cannot end on its own first on a fast machine.
    await signal("pause-snapshot", {});
    await signal("stop-snapshot", { "data-collections": ["public.items"], type: "incremental" });
    await logged("the stop", /signal sig-7: stopped the snapshot of public\.items/);
    await signal("resume-snapshot", {});
    await logged("the resume", /signal sig-8: no paused snapshot/);
    await streamed();
    const stoppedAt = await incremental();
    await streamed();
    await streamed();
    assert.ok((await incremental()) <= stoppedAt + 10, "at most the chunk in flight after the stop");
    assert.ok(stoppedAt < rows, `${stoppedAt} rows read before the stop`);
    assert.doesNotMatch(capture.stderr(), /incremental snapshot of public\.items done/);
    const warnings = capture.stderr().split("\n").filter((l) => /signal sig-[12] /.test(l));
    assert.equal(warnings.length, 2, capture.stderr().slice(-3000));
    assert.match(warnings[0], /sig-1 \(execute-snapshot\) has data that is not JSON/);
    assert.match(warnings[1], /sig-2 \(execute-snapshot\) names "public\.ghosts", which matches no table/);
    const stopped = await stopWithin(capture);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
});

Deno.test("an incremental snapshot whose replication stream breaks midway goes back to the last acknowledged chunk and reads every row", async () => {
  const rows = 100_000;
  const { db, env, topic, signal } = await itemsWithSignals(rows);
  const runs: Running[] = [];
  const incremental = async () => (await records(topic)).filter((r) => r.snapshot === "incremental");
  try {
    const capture = await snapshotPastTenth(db, env, signal, runs, rows);
    // The walsender ends: the capture waits, reconnects and streams again from the acknowledged position.
    await db.sql`select pg_terminate_backend(active_pid) from pg_replication_slots
      where slot_name = ${env.CAPTURE_SLOT!} and active_pid is not null`;
    await waitFor(
      "the snapshot to end",
      () => /incremental snapshot of public\.items done/.test(capture.stderr()),
      120_000,
      250,
    )
      .catch((error) => {
        throw new Error(`${error.message}\n${capture.stderr().slice(-3000)}`);
      });
    const log = capture.stderr();
    const broke = log.search(/waiting for PostgreSQL/);
    assert.ok(
      broke >= 0 && broke < log.search(/incremental snapshot of public\.items done/),
      "the stream broke midway",
    );
    const keys = new Set((await incremental()).map((r) => r.key));
    assert.equal(keys.size, rows, "every row read");
    const stopped = await stopWithin(capture);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
});

Deno.test("an incremental snapshot killed midway (SIGKILL) resumes after the last chunk Kafka acknowledged", async () => {
  const rows = 100_000;
  const { db, env, topic, signal } = await itemsWithSignals(rows);
  const runs: Running[] = [];
  const incremental = async () => (await records(topic)).filter((r) => r.snapshot === "incremental");
  try {
    // The kill comes once the kept position passed a tenth of the table, read from the state row.
    const first = await snapshotPastTenth(db, env, signal, runs, rows);
    await stopProcess(first, "SIGKILL");
    assert.ok((await keptAfter(db, env)) < rows, "killed midway");
    const before = (await incremental()).length;
    const second = await startCapture(env, ["--snapshot-chunk-size", "100"]);
    runs.push(second);
    await waitFor(
      "the snapshot to end",
      () => /incremental snapshot of public\.items done/.test(second.stderr()),
      120_000,
      250,
    )
      .catch((error) => {
        throw new Error(`${error.message}\n${second.stderr().slice(-3000)}`);
      });
    assert.match(second.stderr(), /incremental snapshot to read: public\.items after=\["\d+"\]/);
    const reads = await incremental();
    const keys = new Set(reads.map((r) => r.key));
    assert.equal(keys.size, rows, "every row read");
    const duplicates = reads.length - keys.size;
    // Only chunks published but not yet acknowledged (or not yet kept) at the kill come again.
    assert.ok(duplicates < before / 2, `${duplicates} reads again after ${before} before the kill`);
    console.log(
      `incremental snapshot killed at ${before} of ${rows} reads: ${duplicates} read again after the restart`,
    );
    const stopped = await stopWithin(second);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
});

Deno.test("a first snapshot of 300,000 rows killed midway (SIGKILL) resumes after its checkpoint: every row, few duplicates", async () => {
  const rows = 300_000;
  const { db, env, topic } = await itemsWithSignals(rows);
  delete env.CAPTURE_SIGNAL_TABLE;
  const runs: Running[] = [];
  try {
    const first = startCommand("produce", ["capture"], env);
    runs.push(first);
    const checkpoint = async () => {
      const [row] = await db.sql<{ key: string[] }[]>`
        select last_key as key from cdc_capture_snapshot_checkpoint where slot_name = ${env.CAPTURE_SLOT!}`
        .catch(() => []);
      return row ? Number(row.key[0]) : 0;
    };
    await waitFor("a checkpoint past 80,000 rows", async () => (await checkpoint()) >= 80_000, 120_000, 50)
      .catch((error) => {
        throw new Error(`${error.message}\n${first.stderr().slice(-3000)}`);
      });
    await stopProcess(first, "SIGKILL");
    const before = (await readWholeTopic(topic, 60_000, BROKERS)).length;
    const second = await startCapture(env);
    runs.push(second);
    await waitFor(
      "the rest of the snapshot",
      () => /incremental snapshot of public\.items done/.test(second.stderr()),
      180_000,
      250,
    )
      .catch((error) => {
        throw new Error(`${error.message}\n${second.stderr().slice(-3000)}`);
      });
    assert.doesNotMatch(second.stderr(), /created slot/, "the slot is kept");
    let all: Awaited<ReturnType<typeof records>> = [];
    await waitFor(
      "every row on the topic",
      async () => {
        all = await records(topic);
        return new Set(all.map((r) => r.key)).size === rows;
      },
      60_000,
      1_000,
    );
    const duplicates = all.length - rows;
    console.log(
      `first snapshot killed with ${before} of ${rows} rows on the topic: ${duplicates} duplicates after the restart`,
    );
    // A restart from zero would publish every row again: `before` duplicates.
    assert.ok(duplicates < before / 4, `${duplicates} duplicates, ${before} rows on the topic at the kill`);
    const stopped = await stopWithin(second);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
});
