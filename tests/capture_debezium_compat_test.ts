/**
 * The capture against the real Debezium PostgreSQL connector 3.6.1.Final (Debezium Engine,
 * pgoutput, JsonConverter with schemas): both read one database, each with its own slot and
 * publication and the same topic prefix, through a snapshot and the same changes; every leaf of
 * every key and value must be equal, schemas included, except the differences docs/CAPTURE.md lists
 * under "### Differences from Debezium".
 *
 * DEBEZIUM_COMPAT_SKIP=edge,ddl (a development aid) leaves out the edge values or the schema
 * changes, so the rest can be compared while the capture still stops on them;
 * DEBEZIUM_COMPAT_KEEP=1 keeps the temporary folder with Debezium's configuration and records.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import type { Sql } from "../lib/database.ts";
import { ensureSchema } from "../lib/sink.ts";
import {
  createTestDatabase,
  pipelineNames,
  ROOT,
  type Running,
  startCommand,
  stopProcess,
  testKafka,
  topicSize,
  uniqueName,
  waitFor,
} from "./_helpers.ts";
import {
  commitBothConnectorsSee,
  compareOutputs,
  type ConnectorRecord,
  type Difference,
  dropReleasedSlots,
  followTopics,
  formatDifference,
  groupByPath,
  hasKey,
  knownDifferences,
  readPrefixTopics,
  resolveDebezium,
  type RunningDebezium,
  startDebezium,
  type TopicFollower,
} from "./_debezium.ts";

const SKIP = new Set((Deno.env.get("DEBEZIUM_COMPAT_SKIP") ?? "").split(",").filter(Boolean));
const TABLES = ["public.users", "public.orders", "public.all_types"];
/** Most unexpected differences printed; the rest are counted. */
const PRINT_LIMIT = 50;

/** Fixed ids, so a difference's key says which row of the workload it is. */
const id = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, "0")}`;
const U1 = id(1), U2 = id(2), U3 = id(3), U4 = id(4), U4B = id(40), U5 = id(5), U6 = id(6), U7 = id(7), U8 = id(8);
const O1 = id(101), O2 = id(102), O3 = id(103), O4 = id(104), O5 = id(105);
/** A user and its order deleted under REPLICA IDENTITY DEFAULT. */
const U9 = id(9), O6 = id(106);
/** A user inserted after each phase: once both outputs hold it, they hold the whole phase. */
const phaseMarker = (phase: number) => id(900 + phase);

/** A table with a column of every type the capture must encode as Debezium does (issue 19, item 2). */
async function createAllTypes(sql: postgres.Sql) {
  await sql`
    create table all_types (
      id bigint primary key,
      c_smallint smallint,
      c_integer integer,
      c_bigint bigint,
      c_numeric_12_4 numeric(12,4),
      c_numeric_14_2 numeric(14,2),
      c_numeric numeric,
      c_real real,
      c_double double precision,
      c_text text,
      c_varchar varchar(20),
      c_char char(5),
      c_boolean boolean,
      c_date date,
      c_time time,
      c_time3 time(3),
      c_timestamp timestamp,
      c_timestamp3 timestamp(3),
      c_timestamptz timestamptz,
      c_uuid uuid,
      c_json json,
      c_jsonb jsonb,
      c_bytea bytea,
      c_required text not null default 'required'
    )`;
  for (const table of ["users", "orders", "all_types"]) {
    // The capture sets FULL on its tables; set here on all, so both connectors see the same identity from the start.
    await sql`alter table ${sql(table)} replica identity full`;
  }
}

/** Ordinary values of every type. */
async function insertTypicalRow(sql: postgres.Sql, rowId: number) {
  await sql`
    insert into all_types values (${rowId}, 12, 345678, 9007199254740993, 12345678.9012, 123456789012.34,
      3.14159265358979323846264338327950288, 1.5, 2.718281828459045, 'text: "quoted" \\ back, tab	end',
      'varchar', 'ab', true, '2024-02-29', '13:14:15.123456', '13:14:15.123', '2024-02-29 13:14:15.123456',
      '2024-02-29 13:14:15.123', '2024-02-29 13:14:15.123456+02', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
      '{"b": 1,  "a": [true, null]}', '{"b": 1, "a": [true, null]}', '\\x00ff10', 'set')`;
}

/** The rows that exist before either connector starts: both must read them in their snapshot. */
async function insertSnapshotRows(sql: postgres.Sql) {
  await sql`
    insert into users (id, name, dob, created_at, modified_at, is_deleted) values
      (${U1}, 'Ada Lovelace', '1815-12-10', '2024-01-02 03:04:05.123456+00', '2024-01-02 03:04:05.123456+00', false),
      (${U2}, 'Grace Hopper', '1906-12-09', '2024-02-03 04:05:06+00', null, false),
      (${U4}, 'Key Changer', '1990-01-01', '2024-03-04 05:06:07.5+00', '2024-03-04 05:06:07.5+00', false),
      (${U5}, 'Deleted Later', '2000-02-29', '2024-04-05 06:07:08+00', null, null)`;
  await sql`
    insert into orders (id, status, user_id, quantity, total_amount, placed_at, modified_at, is_deleted) values
      (${O1}, 'created', ${U1}, 1, 12.34, '2024-05-06 07:08:09.1+00', '2024-05-06 07:08:09.1+00', false),
      (${O2}, 'paid', ${U2}, 3, 99999999.99, '2024-05-07 07:08:09+00', null, false)`;
  await insertTypicalRow(sql, 1);
  await sql`insert into all_types (id) values (2)`;
  if (!SKIP.has("edge")) {
    await sql`insert into users (id, name, dob, created_at, modified_at) values
      (${U6}, 'Before Christ', '0044-03-15 BC', 'infinity', '-infinity')`;
    await sql`insert into all_types (id, c_date, c_timestamp, c_timestamptz, c_numeric) values
      (3, '0044-03-15 BC', '-infinity', 'infinity', 'NaN')`;
  }
}

/** Inserts, updates, the soft-delete cascade, hard deletes, a multi-row transaction, a key change, NULLs, unicode. */
async function changeRows(sql: postgres.Sql) {
  await sql`insert into users (id, name, dob, created_at, modified_at) values
    (${U3}, 'Zoë Ünïcødé 東京 🚀 ‮rtl', '1970-01-01', '2024-06-07 08:09:10.654321+00', '2024-06-07 08:09:10.654321+00')`;
  await sql`insert into orders (id, status, user_id, quantity, total_amount, placed_at, modified_at) values
    (${O3}, 'created', ${U3}, 0, 0, now(), now())`;
  await sql`update users set name = 'Ada King', modified_at = '2024-07-08 09:10:11.000001+00' where id = ${U1}`;
  await sql`update orders set status = 'shipped', total_amount = -0.01, quantity = -2147483647 where id = ${O1}`;
  await sql.begin(async (tx) => {
    await tx`insert into orders (id, status, user_id, quantity, total_amount, placed_at, modified_at) values
      (${O4}, 'created', ${U1}, 2147483647, 0.01, '2024-08-09 10:11:12+00', null),
      (${O5}, 'created', ${U1}, 5, 55.5, '2024-08-09 10:11:12+00', null)`;
    await tx`update orders set quantity = quantity - 1 where user_id = ${U1} and id <> ${O4}`;
  });
  // The consumer's delete of a user: is_deleted on the user, and the trigger marks the user's orders.
  await sql`update users set is_deleted = true, modified_at = '2024-09-10 11:12:13+00' where id = ${U2}`;
  await sql`delete from orders where id = ${O3}`;
  await sql`delete from users where id = ${U5}`;
  await sql`update users set id = ${U4B}, name = 'Key Changed' where id = ${U4}`;
  await sql`update users set created_at = null, modified_at = null, is_deleted = null where id = ${U3}`;
  await sql`update all_types set c_smallint = null, c_integer = null, c_bigint = null, c_numeric_12_4 = null,
    c_numeric_14_2 = null, c_numeric = null, c_real = null, c_double = null, c_text = null, c_varchar = null,
    c_char = null, c_boolean = null, c_date = null, c_time = null, c_time3 = null, c_timestamp = null,
    c_timestamp3 = null, c_timestamptz = null, c_uuid = null, c_json = null, c_jsonb = null, c_bytea = null
    where id = 1`;
  await insertTypicalRow(sql, 4);
  await sql`
    insert into all_types values (5, -32768, -2147483648, -9223372036854775808, -99999999.9999, -0.01,
      -0.000000000000000000001, -3.4028235e38, 1.7976931348623157e308, '', '', '', false, '1970-01-01',
      '00:00:00', '23:59:59.999', '1970-01-01 00:00:00', '1969-12-31 23:59:59.999', '1970-01-01 00:00:00+00',
      '00000000-0000-0000-0000-000000000000', '[]', '{}', '\\x', '')`;
  await sql`update all_types set c_numeric = 0, c_numeric_12_4 = 0, c_numeric_14_2 = 0, c_real = 0, c_double = -0.0,
    c_smallint = 32767, c_bigint = 9223372036854775807, c_text = 'ünïcødé 東京 🚀' where id = 5`;
  await sql`delete from all_types where id = 2`;
}

/**
 * Deletes under REPLICA IDENTITY DEFAULT: PostgreSQL sends the old row's key alone, and each column it lacks comes as
 * Debezium writes a NULL there (null, the column's default, or its type's fallback in a NOT NULL column: `""`, 0, the
 * epoch day, a zero decimal). FULL again after, as the capture keeps it.
 */
async function deleteByKeyOnly(sql: postgres.Sql) {
  await sql`insert into users (id, name, dob, created_at) values (${U9}, 'Key Only', '1999-09-09', now())`;
  await sql`insert into orders (id, status, user_id, quantity, total_amount, placed_at) values
    (${O6}, 'created', ${U9}, 3, 33.33, now())`;
  await insertTypicalRow(sql, 8);
  const tables = ["users", "orders", "all_types"];
  for (const table of tables) await sql`alter table ${sql(table)} replica identity default`;
  await sql`delete from orders where id = ${O6}`;
  await sql`delete from users where id = ${U9}`;
  await sql`delete from all_types where id = 8`;
  for (const table of tables) await sql`alter table ${sql(table)} replica identity full`;
}

/** The values at the ends of the ranges: infinities, BC and far-future dates and times, 24:00, NaN. */
async function changeEdgeRows(sql: postgres.Sql) {
  await sql`insert into users (id, name, dob, created_at, modified_at) values
    (${U8}, 'Far Future', '5874897-12-31', '294276-12-31 23:59:59.999999+00', 'infinity')`;
  await sql`update users set dob = '4713-01-01 BC', created_at = '-infinity', modified_at = 'infinity' where id = ${U6}`;
  await sql`
    insert into all_types (id, c_date, c_time, c_time3, c_timestamp, c_timestamp3, c_timestamptz, c_numeric) values
      (6, '0044-03-15 BC', '24:00:00', '24:00:00', 'infinity', '0044-03-15 12:34:56.789 BC', '-infinity', 'NaN'),
      (7, '5874897-12-31', '23:59:59.999999', '00:00:00.001', '262142-12-31 23:59:59.999999',
        '4713-01-01 00:00:00 BC', '294276-12-31 23:59:59.999999+00', 1e100)`;
  await sql`update all_types set c_date = 'infinity', c_timestamptz = '0001-01-01 00:00:00 BC' where id = 3`;
}

/** ADD COLUMN, then changes that carry the new column (one with the default, one set). */
async function addColumns(sql: postgres.Sql) {
  await sql`alter table users add column nickname varchar(20) default 'none'`;
  await sql`insert into users (id, name, dob, nickname) values (${U7}, 'After Add Column', '2001-01-01', 'nick')`;
  await sql`update users set nickname = 'countess' where id = ${U1}`;
  await sql`alter table all_types add column c_added integer not null default 7`;
  await sql`update all_types set c_text = 'after add column' where id = 4`;
}

/** DROP COLUMN, then a change without it. */
async function dropColumn(sql: postgres.Sql) {
  await sql`alter table orders drop column placed_at`;
  await sql`update orders set status = 'done' where id = ${O4}`;
}

/** DROP NOT NULL, then a NULL in that column. */
async function dropNotNull(sql: postgres.Sql) {
  await sql`alter table users alter column name drop not null`;
  await sql`update users set name = null where id = ${U1}`;
}

/**
 * The changes after the snapshot, in phases; both outputs catch up after each. A connector reads
 * the catalog when a table's Relation message changes, so each schema change is its own phase:
 * otherwise what a schema says would depend on how far behind the connector was when it looked.
 * DEBEZIUM_COMPAT_SKIP names the groups to leave out.
 */
const PHASES: { group: string; apply: (sql: postgres.Sql) => Promise<void> }[] = [
  { group: "dml", apply: changeRows },
  { group: "dml", apply: deleteByKeyOnly },
  { group: "edge", apply: changeEdgeRows },
  { group: "ddl", apply: addColumns },
  { group: "ddl", apply: dropColumn },
  { group: "ddl", apply: dropNotNull },
].filter((phase) => !SKIP.has(phase.group));

/** The two connectors on one test database, and the capture's topics followed as they fill. */
class SideBySide {
  readonly prefix = uniqueName("compat").toLowerCase();
  readonly slots = [`${this.prefix}_ours`, `${this.prefix}_dbz`];
  readonly usersTopic = `${this.prefix}.public.users`;
  capture?: Running;
  captureExit?: number;
  debezium?: RunningDebezium;
  follower?: TopicFollower;
  followed: string[] = [];

  constructor(readonly db: { url: string; sql: postgres.Sql }, readonly dir: string) {}

  /** Starts Debezium and the capture, each with its own slot and publication, the same prefix. */
  async start() {
    this.debezium = await startDebezium({
      databaseUrl: this.db.url,
      prefix: this.prefix,
      slot: this.slots[1],
      publication: `${this.prefix}_dbz_pub`,
      tables: TABLES,
      dir: this.dir,
    });
    this.capture = startCommand("produce", ["capture"], {
      ...pipelineNames(this.db.url),
      CAPTURE_TOPIC_PREFIX: this.prefix,
      CAPTURE_SLOT: this.slots[0],
      CAPTURE_PUBLICATION: `${this.prefix}_ours_pub`,
      CAPTURE_TABLES: TABLES.join(","),
    });
    this.capture.done.then((result) => this.captureExit = result.code);
  }

  /** One line per connector that exited, with the end of its log; empty while both run. */
  exits(): string {
    const lines: string[] = [];
    if (this.captureExit !== undefined) {
      lines.push(`the capture exited with ${this.captureExit}:\n${this.capture!.stderr().slice(-1500)}`);
    }
    const code = this.debezium!.exited();
    if (code !== undefined) lines.push(`Debezium exited with ${code}:\n${this.debezium!.stderr().slice(-3000)}`);
    return lines.join("\n");
  }

  /** Waits for `check`; at the deadline, the error carries the end of both connectors' logs. */
  async waitFor(what: string, check: () => Promise<boolean>) {
    await waitFor(what, check, 90_000, 250).catch((error) => {
      const logs = `the capture's log:\n${this.capture?.stderr().slice(-1500)}\n` +
        `Debezium's log:\n${this.debezium?.stderr().slice(-3000)}`;
      throw new Error(`${error.message}\n${logs}`);
    });
  }

  /** Whether the capture has exited: from then on only Debezium is waited for, to show all it writes. */
  captureGone(): boolean {
    return this.captureExit !== undefined;
  }

  /** Waits until both slots exist and both snapshots are out, then follows the capture's topics. */
  async waitForSnapshots() {
    const [{ users }] = await this.db.sql`select count(*)::int as users from users`;
    await this.waitFor(
      "both slots, Debezium's last snapshot record and the capture's snapshot of users",
      async () => {
        if (this.debezium!.exited() !== undefined) return true;
        const slots = await this.db.sql<{ slot_name: string }[]>`
        select slot_name from pg_replication_slots where slot_name in ${this.db.sql(this.slots)}`;
        const has = (slot: string) => slots.some((s) => s.slot_name === slot);
        const last = (await this.debezium!.records()).some((r) => r.value?.includes('"snapshot":"last"'));
        const ours = this.captureGone() || (has(this.slots[0]) && await topicSize(this.usersTopic) >= users);
        return has(this.slots[1]) && last && ours;
      },
    );
    if (this.debezium!.exited() !== undefined) assert.fail(`Debezium stopped during its snapshot:\n${this.exits()}`);
    const admin = testKafka().admin();
    await admin.connect();
    this.followed = (await admin.listTopics()).filter((t) => t.startsWith(`${this.prefix}.`));
    await admin.disconnect();
    // A capture that stopped before making its topics leaves nothing to follow.
    if (this.followed.length > 0) this.follower = await followTopics(this.followed);
  }

  /** Inserts phase `phase`'s marker user and waits until both outputs hold it (Debezium's alone once the capture exited). */
  async waitForPhase(phase: number) {
    const marker = phaseMarker(phase);
    await this.db.sql`insert into users (id, name, dob) values (${marker}, ${`end of phase ${phase}`}, '2000-01-01')`;
    const holds = (records: ConnectorRecord[]) =>
      records.some((r) => r.topic === this.usersTopic && hasKey(r, "id", marker));
    await this.waitFor(
      `phase ${phase}'s marker in both outputs`,
      async () => {
        if (this.debezium!.exited() !== undefined) return true;
        if (!holds(await this.debezium!.records())) return false;
        return this.captureGone() || (holds(this.follower?.records() ?? []) && await this.caughtUp());
      },
    );
    if (this.debezium!.exited() !== undefined) assert.fail(`Debezium stopped during phase ${phase}:\n${this.exits()}`);
  }

  /** Whether the follower has read every record its topics hold. */
  async caughtUp(): Promise<boolean> {
    for (const topic of this.followed) {
      const read = (this.follower?.records() ?? []).filter((r) => r.topic === topic).length;
      if (read < await topicSize(topic)) return false;
    }
    return true;
  }

  /** The capture's records: the followed topics' from the follower, any topic made later read whole. */
  async captureRecords(): Promise<ConnectorRecord[]> {
    return [...this.follower?.records() ?? [], ...await readPrefixTopics(this.prefix, this.followed)];
  }

  /** Stops both (SIGTERM), then drops the slots they leave, so the database can be dropped. */
  async stop() {
    await this.follower?.stop().catch(() => {});
    if (this.capture) await stopProcess(this.capture);
    const code = await this.debezium?.stop();
    if (code) console.error(`Debezium exited with ${code} when stopped:\n${this.debezium!.stderr().slice(-3000)}`);
    await dropReleasedSlots(this.db.sql, this.slots);
  }
}

/** The unexpected differences as the failure message: at most PRINT_LIMIT lines, then a count. */
function failureLines(unexpected: Difference[]): string {
  const lines = unexpected.slice(0, PRINT_LIMIT).map(formatDifference);
  if (unexpected.length > PRINT_LIMIT) lines.push(`... and ${unexpected.length - PRINT_LIMIT} more`);
  return lines.join("\n");
}

Deno.test("the capture writes what Debezium 3.6.1 writes for the same snapshot and changes, except docs/CAPTURE.md's listed differences", async () => {
  const started = Date.now();
  await resolveDebezium();
  const known = knownDifferences(await Deno.readTextFile(`${ROOT}docs/CAPTURE.md`));
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: "debezium-compat-" });
  const run = new SideBySide(db, dir);
  try {
    await ensureSchema(db.sql as unknown as Sql);
    await createAllTypes(db.sql);
    await insertSnapshotRows(db.sql);
    await run.start();
    await run.waitForSnapshots();
    await commitBothConnectorsSee(db.sql);
    for (const [i, phase] of PHASES.entries()) {
      await phase.apply(db.sql);
      await run.waitForPhase(i);
    }

    const ours = await run.captureRecords();
    const theirs = await run.debezium!.records();
    const differences = compareOutputs(ours, theirs);
    const unexpected = differences.filter((d) => !known.some((k) => k.matches(d)));
    console.log(
      `    ${ours.length} records from the capture, ${theirs.length} from Debezium, ${differences.length} differences ` +
        `(${unexpected.length} not listed in docs/CAPTURE.md), ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    if (unexpected.length > 0) console.log(`    by path:\n      ${groupByPath(unexpected).join("\n      ")}`);
    if (run.exits()) assert.fail(`the capture stopped before the end of the workload:\n${run.exits()}`);
    if (unexpected.length > 0) {
      assert.fail(
        `differences from Debezium that docs/CAPTURE.md's "Differences from Debezium" does not list:\n${
          failureLines(unexpected)
        }`,
      );
    }
    if (SKIP.size === 0) {
      // An item another test shows (its reason names the test) is that test's to check.
      const unused = known.filter((k) => !k.reason.includes("_test.ts") && !differences.some((d) => k.matches(d)))
        .map((k) => k.pattern);
      assert.deepEqual(unused, [], "docs/CAPTURE.md lists differences no record shows: remove them");
    }
  } finally {
    await run.stop().catch((error) => console.error(`stopping the connectors failed: ${error}`));
    await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
    if (!Deno.env.get("DEBEZIUM_COMPAT_KEEP")) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
