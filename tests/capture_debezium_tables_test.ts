/**
 * Tables as teams have them, and Debezium's table and record options, against the real Debezium
 * PostgreSQL connector 3.6.1.Final: a table keyed by its REPLICA IDENTITY USING INDEX, a quoted
 * name with a space and capitals, a partitioned table (published through its root), and an
 * unchanged TOASTed value under REPLICA IDENTITY DEFAULT and FULL. Two runs, side by side on one
 * database, each a capture and a Debezium Engine given the same Debezium properties: every option
 * value is exercised by one of them. Every leaf of every record must be equal except the
 * differences docs/CAPTURE.md lists under "### Differences from Debezium". Then the capture alone:
 * --new-snapshot over a publication that already holds the tables, and a partition's changes
 * decoded before publish_via_partition_root was set, which must reach the root's topic.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { type Setting, SETTINGS } from "../lib/config.ts";
import {
  createTestDatabase,
  pipelineNames,
  readWholeTopic,
  ROOT,
  runCommand,
  type Running,
  stopProcess,
  uniqueName,
  waitFor,
} from "./_helpers.ts";
import { captureNames, startCapture } from "./_capture.ts";
import {
  compareOutputs,
  type ConnectorRecord,
  dropReleasedSlots,
  formatDifference,
  hasKey,
  knownDifferences,
  readPrefixTopics,
  resolveDebezium,
  type RunningDebezium,
  startDebezium,
} from "./_debezium.ts";

const TABLES = [
  "public.markers",
  "public.by_index",
  'public."Order Items"',
  "public.meas",
  "public.toast_default",
  "public.toast_full",
];

/** The tables as Debezium's table.include.list matches them (regular expressions of `schema.table`). */
const INCLUDE_LIST = TABLES.map((t) => t.replaceAll('"', ""));

/** Two runs whose Debezium properties, given to both connectors, exercise every value of the options. */
const RUNS: { name: string; properties: Record<string, string> }[] = [
  {
    name: "a",
    properties: {
      "tombstones.on.delete": "false",
      "skipped.operations": "none",
      "column.exclude.list": "public.toast_full.excluded_note,public.Order Items.Note",
      "message.key.columns": "public.meas:id",
      "replica.identity.autoset.values": "public.toast_full:FULL",
    },
  },
  {
    name: "b",
    properties: {
      "skipped.operations": "u,d",
      "column.include.list": "public.by_index.*,public.meas.*,public.Order Items.id,public.toast_.*.(id|short)",
    },
  },
];

/** The capture's environment for Debezium properties: each through the setting that carries it over. */
function captureEnv(properties: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(properties).map(([property, value]) => {
      const setting = (SETTINGS as readonly Setting[]).find((s) => s.debezium === property);
      if (!setting?.env) throw new Error(`no setting carries Debezium's ${property} over`);
      return [setting.env, value];
    }),
  );
}

/** A value of 20,000 characters kept out of line (STORAGE EXTERNAL): an update that leaves it is unchanged TOAST. */
const BIG = "(select string_agg(md5(i::text), '') from generate_series(1, 625) i)";

async function createTables(sql: postgres.Sql) {
  await sql.unsafe(`
    create table markers (id text primary key);
    create table by_index (code text not null, label text, n int);
    create unique index by_index_code on by_index (code);
    alter table by_index replica identity using index by_index_code;
    create table "Order Items" (id int primary key, "Note" text, qty int);
    create table meas (id int not null, at date not null, v numeric(6,2), primary key (id, at)) partition by range (at);
    create table meas_2024 partition of meas for values from ('2024-01-01') to ('2025-01-01');
    create table meas_2025 partition of meas for values from ('2025-01-01') to ('2026-01-01');
    create table toast_default (id int primary key, short int, big text, excluded_note text);
    create table toast_full (id int primary key, short int, big text, excluded_note text);
    alter table toast_default alter column big set storage external;
    alter table toast_full alter column big set storage external;
    insert into by_index values ('a', 'first', 1), ('b', 'second', 2);
    insert into "Order Items" values (1, 'one', 1), (2, 'two', 2);
    insert into meas values (1, '2024-03-01', 1.5), (2, '2025-03-01', 2.5);
    insert into toast_default values (1, 1, ${BIG}, 'x');
    insert into toast_full values (1, 1, ${BIG}, 'x');
  `);
}

/** Every kind of change on every table, each statement its own transaction. */
async function changeRows(sql: postgres.Sql) {
  for (
    const statement of [
      "insert into by_index values ('c', 'third', 3)",
      "update by_index set n = 30 where code = 'c'",
      "update by_index set code = 'c2' where code = 'c'",
      "delete from by_index where code = 'b'",
      `insert into "Order Items" values (3, 'three', 3)`,
      `update "Order Items" set qty = 33 where id = 3`,
      `update "Order Items" set id = 4 where id = 3`,
      `delete from "Order Items" where id = 1`,
      "insert into meas values (3, '2024-06-01', 3.5)",
      "update meas set v = 4.5 where id = 3",
      "update meas set at = '2025-06-01' where id = 3",
      "delete from meas where id = 1",
      "update toast_default set short = 2 where id = 1",
      "update toast_full set short = 2 where id = 1",
      "update toast_full set id = 5 where id = 1",
      `insert into toast_full values (2, 1, ${BIG}, 'y')`,
      "delete from toast_full where id = 2",
      "truncate by_index",
    ]
  ) await sql.unsafe(statement);
}

/** One run: a capture and a Debezium Engine with the same properties, each with its own slot and publication. */
class Run {
  readonly prefix: string;
  readonly slots: [string, string];
  capture?: Running;
  debezium?: RunningDebezium;

  constructor(readonly spec: (typeof RUNS)[number], readonly dbUrl: string, readonly dir: string) {
    this.prefix = uniqueName(`tables_${spec.name}`).toLowerCase();
    this.slots = [`${this.prefix}_ours`, `${this.prefix}_dbz`];
  }

  async start() {
    await Deno.mkdir(this.dir, { recursive: true });
    this.debezium = await startDebezium({
      databaseUrl: this.dbUrl,
      prefix: this.prefix,
      slot: this.slots[1],
      publication: `${this.prefix}_dbz_pub`,
      tables: INCLUDE_LIST,
      dir: this.dir,
      extra: { ...this.spec.properties, "publish.via.partition.root": "true" },
    });
    // The changes must come after Debezium's snapshot, in its stream, as they come in the capture's.
    await waitFor(
      `run ${this.spec.name}: Debezium's snapshot`,
      async () => {
        if (this.debezium!.exited() !== undefined) {
          throw new Error(
            `Debezium exited:\n${this.debezium!.stderr().slice(-3000)}`,
          );
        }
        return (await this.debezium!.records()).some((r) => r.value?.includes('"snapshot":"last"'));
      },
      120_000,
      250,
    );
    this.capture = await startCapture({
      ...pipelineNames(this.dbUrl),
      CAPTURE_TOPIC_PREFIX: this.prefix,
      CAPTURE_SLOT: this.slots[0],
      CAPTURE_PUBLICATION: `${this.prefix}_ours_pub`,
      CAPTURE_TABLES: TABLES.join(","),
      ...captureEnv(this.spec.properties),
    });
  }

  /** Both connectors' records once Debezium's hold marker 1 and our slot confirmed past `lsn` (all of it in Kafka). */
  async outputs(sql: postgres.Sql, lsn: string): Promise<{ ours: ConnectorRecord[]; theirs: ConnectorRecord[] }> {
    const markers = `${this.prefix}.public.markers`;
    let state = "";
    await waitFor(
      `run ${this.spec.name}: both connectors past the workload`,
      async () => {
        if (this.debezium!.exited() !== undefined) throw new Error("Debezium exited");
        const [slot] = await sql<{ past: boolean }[]>`
        select confirmed_flush_lsn >= ${lsn}::pg_lsn as past from pg_replication_slots where slot_name = ${
          this.slots[0]
        }`;
        const marked = (await this.debezium!.records()).some((r) => r.topic === markers && hasKey(r, "id", "end"));
        state = `capture's slot past ${lsn}: ${slot?.past}, Debezium's marker: ${marked}`;
        return slot?.past && marked;
      },
      90_000,
      250,
    ).catch((error) => {
      throw new Error(
        `${error.message} (${state})\ncapture:\n${this.capture!.stderr().slice(-1500)}\nDebezium:\n${
          this.debezium!.stderr().slice(-3000)
        }`,
      );
    });
    return { ours: await readPrefixTopics(this.prefix), theirs: await this.debezium!.records() };
  }

  async stop(sql: postgres.Sql) {
    if (this.capture) await stopProcess(this.capture);
    await this.debezium?.stop();
    await dropReleasedSlots(sql, this.slots);
  }
}

Deno.test("USING INDEX, quoted, partitioned and TOASTed tables and Debezium's table options give what Debezium 3.6.1 writes", async () => {
  const started = Date.now();
  await resolveDebezium();
  const known = knownDifferences(await Deno.readTextFile(`${ROOT}docs/CAPTURE.md`));
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: "debezium-tables-" });
  const runs = RUNS.map((spec) => new Run(spec, db.url, `${dir}/${spec.name}`));
  try {
    await createTables(db.sql);
    await Promise.all(runs.map((run) => run.start()));
    const identities = await db.sql<{ relname: string; relreplident: string }[]>`
      select relname, relreplident from pg_class where relname in ('by_index', 'Order Items', 'toast_default', 'toast_full')
      order by relname`;
    // Only replica.identity.autoset.values changes an identity: toast_full to FULL, the others as their owner left them.
    assert.deepEqual(identities.map((r) => `${r.relname}:${r.relreplident}`), [
      "Order Items:d",
      "by_index:i",
      "toast_default:d",
      "toast_full:f",
    ]);
    await changeRows(db.sql);
    // The marker's commit ends after `lsn`: a slot confirmed past it has every change of the workload in Kafka.
    const [{ lsn }] = await db.sql`select pg_current_wal_lsn()::text as lsn`;
    await db.sql`insert into markers values ('end')`;
    const unexpected: string[] = [];
    const shown = new Set<string>();
    for (const run of runs) {
      const { ours, theirs } = await run.outputs(db.sql, lsn);
      assert.ok(!ours.some((r) => /\.meas_20/.test(r.topic)), "a partition's changes went to a topic of its own");
      const all = compareOutputs(ours, theirs);
      for (const k of known) if (all.some((d) => k.matches(d))) shown.add(k.pattern);
      const differences = all.filter((d) => !known.some((k) => k.matches(d)));
      console.log(`    run ${run.spec.name}: ${ours.length} records from the capture, ${theirs.length} from Debezium`);
      unexpected.push(...differences.map((d) => `run ${run.spec.name}: ${formatDifference(d)}`));
    }
    console.log(`    ${((Date.now() - started) / 1000).toFixed(1)} s`);
    assert.deepEqual(unexpected, [], "differences from Debezium that docs/CAPTURE.md does not list");
    const ours = known.filter((k) => k.reason.includes("capture_debezium_tables_test.ts")).map((k) => k.pattern);
    assert.deepEqual(
      ours.filter((p) => !shown.has(p)),
      [],
      "docs/CAPTURE.md lists differences this test does not show",
    );
  } finally {
    for (const run of runs) await run.stop(db.sql).catch((error) => console.error(`stopping run failed: ${error}`));
    await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
    if (!Deno.env.get("DEBEZIUM_COMPAT_KEEP")) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

/** The `id`s of the after-images a capture topic holds, sorted (tombstones and deletes left out). */
async function idsIn(topic: string): Promise<number[]> {
  const decoder = new TextDecoder();
  return (await readWholeTopic(topic)).flatMap((r) => {
    const after = r.value && JSON.parse(decoder.decode(r.value)).payload.after;
    return after ? [after.id as number] : [];
  }).sort((a, b) => a - b);
}

Deno.test("--new-snapshot takes a publication that already holds a partitioned table, its partitions' changes reach the table's topic, and only the tables replica.identity.autoset.values names change identity", async () => {
  const db = await createTestDatabase();
  // `.` for the space: Debezium's table patterns of replica.identity.autoset.values hold no blank.
  const root = {
    ...pipelineNames(db.url),
    ...captureNames(),
    CAPTURE_TABLES: 'public.meas,public."Order Items"',
    CAPTURE_REPLICA_IDENTITY_AUTOSET_VALUES: "public.Order.Items:FULL,public.users:FULL",
  };
  const alone = {
    ...pipelineNames(db.url),
    ...captureNames(),
    CAPTURE_TABLES: "public.meas_2024",
    CAPTURE_REPLICA_IDENTITY_AUTOSET_VALUES: "public.meas_2024:INDEX meas_2024_pkey",
  };
  const runs: Running[] = [];
  try {
    await db.sql.unsafe(`
      create table meas (id int not null, at date not null, primary key (id, at)) partition by range (at);
      create table meas_2024 partition of meas for values from ('2024-01-01') to ('2025-01-01');
      create table "Order Items" (id int primary key);
      insert into meas values (1, '2024-03-01');
      insert into "Order Items" values (1);
      create publication ${root.CAPTURE_PUBLICATION} for table meas, "Order Items";`);
    runs.push(await startCapture(root, ["--new-snapshot"]), await startCapture(alone));
    const [pub] = await db.sql`select pubviaroot from pg_publication where pubname = ${root.CAPTURE_PUBLICATION}`;
    assert.equal(pub.pubviaroot, true);
    const identities = await db.sql`
      select relname, relreplident from pg_class where relname in ('meas', 'meas_2024', 'Order Items') order by relname`;
    assert.deepEqual(identities.map((r) => `${r.relname}:${r.relreplident}`), [
      "Order Items:f",
      "meas:d",
      "meas_2024:i",
    ]);
    await db.sql`insert into meas values (2, '2024-04-01')`;
    const meas = `${root.CAPTURE_TOPIC_PREFIX}.public.meas`;
    await waitFor(
      "the snapshot row and the streamed insert on the root's topic",
      async () => (await idsIn(meas)).length >= 2,
    );
    // A partition listed alone keeps its own topic.
    const partition = `${alone.CAPTURE_TOPIC_PREFIX}.public.meas_2024`;
    await waitFor("both rows on the partition's own topic", async () => (await idsIn(partition)).length >= 2);
    assert.deepEqual(await idsIn(partition), [1, 2]);

    // Changes decoded while the publication published partitions as themselves come under the partition's name.
    await stopProcess(runs.shift()!);
    await db.sql`alter publication ${db.sql(root.CAPTURE_PUBLICATION)} set (publish_via_partition_root = false)`;
    await db.sql`insert into meas values (3, '2024-05-01')`;
    await db.sql`update meas set at = '2024-06-01' where id = 3`;
    runs.unshift(await startCapture(root));
    await waitFor("the changes made meanwhile on the root's topic", async () => (await idsIn(meas)).length >= 4);
    assert.deepEqual(await idsIn(meas), [1, 2, 3, 3]);
    assert.doesNotMatch(runs[0].stderr(), /WARN|ERROR/);
  } finally {
    for (const run of runs) await stopProcess(run);
    for (const env of [root, alone]) {
      await runCommand("produce", ["capture", "--drop-slot"], env).catch(() => {});
    }
    await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
  }
});
