/**
 * The capture against real Kafka and PostgreSQL: the first snapshot and the stream meet with no
 * gap and no overlap while a writer keeps changing rows, a restart resumes from the slot, the
 * metrics show the slot's WAL, and --drop-slot removes slot and publication. Then what must never
 * be a silent gap or stall: a lost slot, a table out of the publication, records over the topic's
 * size limit, a deleted topic and a refused SASL handshake; and any table given with --tables,
 * following ALTER TABLE.
 */
import assert from "node:assert/strict";
import {
  BROKERS,
  createTestDatabase,
  killLeftovers,
  metricsAddress,
  type PipelineEnv,
  pipelineNames,
  produceWorkload,
  readWholeTopic,
  runCommand,
  type Running,
  startCommand,
  stopProcess,
  testKafka,
  waitFor,
} from "./_helpers.ts";
import {
  assertStopsWithOneLine,
  type CaptureCheck,
  captureNames,
  checkCaptured,
  dropCaptureAndDatabase,
  installAudit,
  settleCapture,
  startCapture,
} from "./_capture.ts";

/** Waits until the topics hold every audited change and end on the final rows. */
async function waitForCapture(
  db: { sql: Parameters<typeof checkCaptured>[0] },
  prefix: string,
  capture: Running,
): Promise<CaptureCheck> {
  const check = await settleCapture(db.sql, prefix, BROKERS, 90_000);
  if (check.gaps.length === 0 && check.finalMismatches.length === 0) return check;
  throw new Error(
    `the capture topics do not hold every audited change after 90 s\n${JSON.stringify(check, null, 1)}\n` +
      `capture log:\n${capture.stderr().slice(-3000)}`,
  );
}

Deno.test("capture: a snapshot then the stream with no gap or overlap, a restart resumes, --drop-slot cleans up", async () => {
  const db = await createTestDatabase();
  const names = captureNames();
  const env: PipelineEnv = { ...pipelineNames(db.url), ...names };
  const runs: Running[] = [];
  let writing = true;
  try {
    await installAudit(db.sql);
    await produceWorkload(env, { users: 300, orders: 600, seed: 5 });
    const consume = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(consume.code, 0, consume.stderr);
    const [probe] = await db.sql<{ id: string }[]>`select id::text from users order by id limit 1`;

    // One row changes in its own transaction every few milliseconds while the slot and its snapshot are made.
    let probeWrites = 0;
    const writer = (async () => {
      while (writing) {
        await db.sql`update users set name = ${`probe-${++probeWrites}`}, modified_at = now() where id = ${probe.id}`;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const capture = await startCapture(env, ["--metrics-port", "0"]);
    runs.push(capture);
    const atStream = probeWrites;
    await waitFor("50 more probe writes", () => probeWrites > atStream + 50, 30_000, 50);
    writing = false;
    await writer;
    const first = await waitForCapture(db, names.CAPTURE_TOPIC_PREFIX, capture);
    assert.match(capture.stderr(), /first snapshot published: \d+ rows/);
    assert.equal(first.duplicates, 0, "no change is both read by the snapshot and streamed");

    const metricsUrl = await metricsAddress(capture);
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.match(metrics, /^cdc_capture_slot_retained_wal_bytes \d+/m);
    assert.match(metrics, /^cdc_capture_changes_total\{table="users",op="r"\} [1-9]/m);
    const health = await fetch(`${metricsUrl}/health`);
    assert.equal(health.status, 200, await health.text());

    const stopped = await stopProcess(capture);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stderr, /INFO {2}capture: done .*snapshotRows=\d+/);

    // Changes made while the capture is down come when it returns, from the slot, without a new snapshot.
    await produceWorkload(env, { users: 200, orders: 400, seed: 6 });
    assert.equal((await runCommand("consume", ["--idle-timeout", "2"], env)).code, 0);
    const again = startCommand("produce", ["capture"], env);
    runs.push(again);
    const second = await waitForCapture(db, names.CAPTURE_TOPIC_PREFIX, again);
    const resumed = await stopProcess(again);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.doesNotMatch(resumed.stderr, /created slot/, "the restart resumes from the slot");
    assert.match(resumed.stderr, /snapshotRows=0/);
    assert.equal(second.duplicates, 0, "a SIGTERM acknowledged everything it published");
    assert.ok(second.auditedChanges > first.auditedChanges);
    console.log(
      `    audited ${second.auditedChanges} changes, ${second.events} events, ${probeWrites} probe writes, ` +
        `duplicates ${second.duplicates}`,
    );

    const dropped = await runCommand("produce", ["capture", "--drop-slot"], env);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.match(dropped.stderr, /slotDropped=true publicationDropped=true/);
    const [left] = await db.sql`
      select (select count(*) from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT})::int as slots,
             (select count(*) from pg_publication where pubname = ${names.CAPTURE_PUBLICATION})::int as publications`;
    assert.deepEqual({ ...left }, { slots: 0, publications: 0 });
  } finally {
    writing = false;
    await cleanUp(db, env, runs);
  }
});

// ---- never a silent gap or stall --------------------------------------------------------------

/** A database with a small captured table `items` and fresh capture names; `extra` columns are SQL. */
async function itemsCapture(extra = "") {
  const db = await createTestDatabase();
  const names = captureNames();
  const env: PipelineEnv = { ...pipelineNames(db.url), ...names, CAPTURE_TABLES: "public.items" };
  await db.sql.unsafe(`create table items (id integer primary key, name text not null${extra})`);
  const topic = `${names.CAPTURE_TOPIC_PREFIX}.public.items`;
  return { db, names, env, topic };
}

/** The ids of a capture topic's records with a value, in log order, with their op. */
async function capturedOps(topic: string): Promise<string[]> {
  const records = await readWholeTopic(topic, 30_000, BROKERS);
  return records.filter((r) => r.value !== null).map((r) => {
    const { payload } = JSON.parse(new TextDecoder().decode(r.value!));
    return `${payload.op}:${(payload.after ?? payload.before).id}`;
  });
}

/** Terminates the walsender holding `slot` until the slot can be dropped, then drops it. */
async function dropSlotUnderCapture(sql: Parameters<typeof checkCaptured>[0], slot: string) {
  await waitFor(
    "the slot to be dropped",
    async () => {
      await sql`select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = ${slot} and active_pid is not null`;
      try {
        await sql`select pg_drop_replication_slot(${slot})`;
        return true;
      } catch {
        return false;
      }
    },
    30_000,
    20,
  );
}

/** Kills what still runs, then drops the slot, publication and database. */
async function cleanUp(db: { drop: () => Promise<void> }, env: PipelineEnv, runs: Running[]) {
  await killLeftovers(...runs);
  await dropCaptureAndDatabase(db, env);
}

Deno.test("a slot dropped under a running capture stops it with one line naming --new-snapshot, which recovers every row", async () => {
  const { db, names, env, topic } = await itemsCapture();
  const runs: Running[] = [];
  try {
    await db.sql`insert into items values (1, 'one')`;
    const capture = await startCapture(env);
    runs.push(capture);
    await db.sql`insert into items values (2, 'two')`;
    await waitFor("the insert in Kafka", async () => (await capturedOps(topic)).includes("c:2"), 30_000, 250);

    await dropSlotUnderCapture(db.sql, names.CAPTURE_SLOT);
    await db.sql`delete from items where id = 1`; // made while there is no slot: its d record is lost
    await db.sql`insert into items values (3, 'three')`;
    await assertStopsWithOneLine(
      capture,
      /slot \S+ is missing although this capture streamed from it: changes made while there was no slot may be lost; run with --new-snapshot/,
    );
    const [slots] = await db
      .sql`select count(*)::int as n from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT}`;
    assert.equal(slots.n, 0, "no silent new slot");
    const again = runCommand("produce", ["capture"], env);
    assert.equal((await again).code, 1, "a restart without the flag stops again");

    const recovered = await startCapture(env, ["--new-snapshot"]);
    runs.push(recovered);
    await waitFor(
      "the new snapshot in Kafka",
      async () => {
        const ops = await capturedOps(topic);
        return ops.includes("r:2") && ops.includes("r:3");
      },
      30_000,
      250,
    );
    assert.match(recovered.stderr(), /first snapshot published: 2 rows/);
    const stopped = await stopProcess(recovered);
    assert.equal(stopped.code, 0, stopped.stderr);
    const resumed = await startCapture(env);
    runs.push(resumed);
    assert.doesNotMatch(
      (await stopProcess(resumed)).stderr,
      /created slot/,
      "the flag takes one snapshot, then it resumes",
    );
  } finally {
    await cleanUp(db, env, runs);
  }
});

Deno.test("a table taken out of the publication stops the capture with one line naming it; --new-snapshot adds it back", async () => {
  const { db, names, env, topic } = await itemsCapture();
  const runs: Running[] = [];
  try {
    const capture = await startCapture(env);
    runs.push(capture);
    await db.sql.unsafe(`alter publication ${names.CAPTURE_PUBLICATION} drop table items`);
    await db.sql`insert into items values (1, 'made while out of the publication')`;
    await assertStopsWithOneLine(
      capture,
      /table public\.items is not in publication \S+: .*--new-snapshot.*execute-snapshot/,
    );
    const restart = await runCommand("produce", ["capture"], env);
    assert.equal(restart.code, 1, "a restart stops on the same gap");
    assert.match(restart.stderr, /table public\.items is not in publication/);

    const recovered = await startCapture(env, ["--new-snapshot"]);
    runs.push(recovered);
    const [member] = await db.sql`
      select count(*)::int as n from pg_publication_tables where pubname = ${names.CAPTURE_PUBLICATION} and tablename = 'items'`;
    assert.equal(member.n, 1, "added back");
    await db.sql`insert into items values (2, 'after')`;
    await waitFor(
      "the snapshot and the stream",
      async () => {
        const ops = await capturedOps(topic);
        return ops.includes("r:1") && ops.includes("c:2");
      },
      30_000,
      250,
    );
  } finally {
    await cleanUp(db, env, runs);
  }
});

Deno.test("a snapshot row that cannot be encoded stops the capture at once with one line naming table, column and key, wherever the cursor stands", async () => {
  const { db, env } = await itemsCapture(", amount numeric(10,2) not null");
  const runs: Running[] = [];
  try {
    // The bad row first and 5,000 after it: the snapshot stops while the cursor's next batch is already asked for.
    await db.sql`insert into items values (0, 'bad', 'NaN')`;
    await db.sql`insert into items select g, 'ok', 1 from generate_series(1, 5000) g`;
    const capture = startCommand("produce", ["capture"], env);
    runs.push(capture);
    await assertStopsWithOneLine(
      capture,
      /public\.items\.amount: numeric value "NaN" cannot be encoded as Debezium does \(row key id=0\)/,
      30_000,
    );
  } finally {
    await cleanUp(db, env, runs);
  }
});

Deno.test("sends stay within the topic's max.message.bytes, delivering every wide row; one record over it stops the run naming table, key and size", async () => {
  const { db, env, topic } = await itemsCapture();
  const runs: Running[] = [];
  const admin = testKafka().admin();
  try {
    await admin.connect();
    await admin.createTopics({
      topics: [{ topic, numPartitions: 1, configEntries: [{ name: "max.message.bytes", value: "65536" }] }],
      waitForLeaders: true,
    });
    // 3.2 KB rows that do not compress: 200 of them are ten times the topic's limit.
    const wide = (i: number) =>
      db.sql`
      insert into items select g, (select string_agg(md5(g::text || ':' || n), '') from generate_series(1, 100) n)
      from generate_series(${i}::int, ${i + 99}::int) g`;
    await wide(1);
    await wide(101);
    const capture = await startCapture(env);
    runs.push(capture);
    await wide(201); // one transaction of 100 wide rows, streamed
    await waitFor("every wide row in Kafka", async () => (await capturedOps(topic)).length === 300, 60_000, 500);
    const ops = await capturedOps(topic);
    assert.equal(ops.filter((o) => o.startsWith("r:")).length, 200);
    assert.equal(new Set(ops).size, 300);
    assert.doesNotMatch(capture.stderr(), /send failed/);

    await db.sql`insert into items values (999, repeat(md5('x'), 2500))`;
    await assertStopsWithOneLine(
      capture,
      /a record of public\.items with key \{"id":999\} is \d{5,} bytes, over its topic's max\.message\.bytes 65536/,
    );
  } finally {
    await admin.disconnect();
    await cleanUp(db, env, runs);
  }
});

Deno.test("a capture topic deleted while the capture runs stops it with one line naming the topic; other tables than the contract's create none of its tables", async () => {
  const { db, env, topic } = await itemsCapture();
  const runs: Running[] = [];
  const admin = testKafka().admin();
  try {
    const capture = await startCapture(env);
    runs.push(capture);
    await admin.connect();
    await admin.deleteTopics({ topics: [topic] });
    await db.sql`insert into items values (1, 'one')`;
    await assertStopsWithOneLine(capture, new RegExp(`topic ${topic.replaceAll(".", "\\.")} no longer exists`));
    const [contract] = await db.sql`select to_regclass('public.users') is null as absent`;
    assert.equal(contract.absent, true, "a capture of other tables creates no users or orders table");
  } finally {
    await admin.disconnect();
    await cleanUp(db, env, runs);
  }
});

Deno.test("a third table given with --tables is captured, and ADD COLUMN, DROP NOT NULL and DROP COLUMN carry on with the new schema", async () => {
  const { db, names, env, topic } = await itemsCapture();
  const runs: Running[] = [];
  env.CAPTURE_TABLES = "public.users,public.orders,public.items";
  try {
    await db.sql`insert into items values (1, 'one')`;
    const capture = await startCapture(env);
    runs.push(capture);
    const values = async () =>
      (await readWholeTopic(topic, 30_000, BROKERS)).filter((r) => r.value !== null)
        .map((r) => JSON.parse(new TextDecoder().decode(r.value!)));
    // The schema is read from the catalog when the Relation arrives, as Debezium does: each ALTER
    // waits until the change before it is captured.
    const captured = (n: number) =>
      waitFor(`${n} changes of items`, async () => (await values()).length === n, 30_000, 250).catch((error) => {
        throw new Error(`${error.message}\n${capture.stderr().slice(-3000)}`);
      });
    await db.sql`insert into items values (2, 'two')`;
    await captured(2);
    await db.sql`alter table items add column note text`;
    await db.sql`insert into items values (3, 'three', 'a note')`;
    await captured(3);
    await db.sql`alter table items alter column name drop not null`;
    await db.sql`insert into items values (4, null, 'no name')`;
    await captured(4);
    await db.sql`alter table items drop column note`;
    await db.sql`insert into items values (5, 'five')`;
    await captured(5);
    // Three partitions: the records are put in id order, which is the order they were made in here.
    const [r1, c2, c3, c4, c5] = (await values()).sort((a, b) =>
      Number(a.payload.after.id) - Number(b.payload.after.id)
    );
    const fields = (v: { schema: { fields: { field: string; fields: { field: string; optional: boolean }[] }[] } }) =>
      v.schema.fields[1].fields.map((f) => `${f.field}${f.optional ? "?" : ""}`).join(",");
    assert.deepEqual([r1.payload.op, c2.payload.op], ["r", "c"]);
    assert.ok(Number.isInteger(r1.payload.source.txId) && r1.payload.source.txId > 0, "the snapshot transaction's id");
    assert.ok(c2.payload.source.txId > r1.payload.source.txId, "streamed after the snapshot transaction began");
    assert.equal(fields(c2), "id,name");
    assert.equal(fields(c3), "id,name,note?");
    assert.equal(c3.payload.after.note, "a note");
    assert.equal(fields(c4), "id,name?,note?");
    assert.equal(c4.payload.after.name, null);
    assert.equal(fields(c5), "id,name?");
    assert.equal(c5.payload.after.name, "five");
    assert.match(capture.stderr(), new RegExp(`${names.CAPTURE_TOPIC_PREFIX}\\.public\\.items`));
    const stopped = await stopProcess(capture);
    assert.equal(stopped.code, 0, stopped.stderr);
  } finally {
    await cleanUp(db, env, runs);
  }
});

Deno.test("SASL settings aimed at a plaintext listener stop the capture at once with one line", async () => {
  const { db, env } = await itemsCapture();
  try {
    const started = Date.now();
    const run = startCommand("produce", ["capture"], {
      ...env,
      KAFKA_SASL_MECHANISM: "plain",
      KAFKA_SASL_USERNAME: "cdc",
      KAFKA_SASL_PASSWORD: "not-used",
    });
    await assertStopsWithOneLine(run, /ILLEGAL_SASL_STATE|SASL/);
    assert.ok(Date.now() - started < 30_000, "no waiting");
  } finally {
    await cleanUp(db, env, []);
  }
});
