/**
 * The capture against the real Debezium PostgreSQL connector 3.6.1.Final for every column type
 * Debezium encodes (arrays, money, bit/varbit, point, tsvector, xml, interval, domains, the
 * contrib types hstore/citext/ltree/isn and PostGIS where the server has them) and every value of its
 * value options: four runs, each Debezium and the capture side by side on a database of its own
 * with the same options, through a snapshot, inserts, NULLs, edge values and an update that leaves
 * TOASTed values unchanged. Every leaf of every record must be equal, except what docs/CAPTURE.md's
 * "### Differences from Debezium" lists. A contrib or extension the server lacks is named in the
 * output and only its columns are left out.
 *
 * DEBEZIUM_TYPES_RUNS=defaults,a (a development aid) runs only the named runs.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import {
  createTestDatabase,
  missingExtensions,
  pipelineNames,
  ROOT,
  type Running,
  startCommand,
  stopProcess,
  topicSize,
  uniqueName,
  waitFor,
} from "./_helpers.ts";
import {
  commitBothConnectorsSee,
  compareOutputs,
  type ConnectorRecord,
  type Difference,
  followTopics,
  formatDifference,
  groupByPath,
  knownDifferences,
  readConnectorTopic,
  resolveDebezium,
  type RunningDebezium,
  startDebezium,
  type TopicFollower,
} from "./_debezium.ts";

/** One run: Debezium's properties, which are the capture's settings under the same names. */
interface OptionRun {
  name: string;
  options: Record<string, string>;
}

/** Every value of every option at least once, in as few runs as binary.handling.mode's four values allow. */
const ALL_RUNS: OptionRun[] = [
  { name: "defaults", options: {} },
  {
    name: "a",
    options: {
      "decimal.handling.mode": "string",
      "time.precision.mode": "connect",
      "binary.handling.mode": "base64",
      "hstore.handling.mode": "map",
      "interval.handling.mode": "string",
      "money.fraction.digits": "3",
      "include.unknown.datatypes": "true",
    },
  },
  {
    name: "b",
    options: {
      "decimal.handling.mode": "double",
      "time.precision.mode": "adaptive_time_microseconds",
      "binary.handling.mode": "hex",
    },
  },
  { name: "c", options: { "binary.handling.mode": "base64-url-safe" } },
];
const ONLY = Deno.env.get("DEBEZIUM_TYPES_RUNS")?.split(",");
const RUNS = ALL_RUNS.filter((run) => !ONLY || ONLY.includes(run.name));

/** The capture's env variable of a Debezium property (lib/config.ts' rule). */
const envOf = (property: string) => `CAPTURE_${property.replaceAll(".", "_").replaceAll("-", "_").toUpperCase()}`;

/** Columns every server has: name and type. */
const BASE_COLUMNS: [string, string][] = [
  ["c_money", "money"],
  ["c_bit1", "bit(1)"],
  ["c_bit5", "bit(5)"],
  ["c_varbit", "varbit"],
  ["c_varbit8", "varbit(8)"],
  ["c_point", "point"],
  ["c_tsvector", "tsvector"],
  ["c_xml", "xml"],
  ["c_interval", "interval"],
  ["c_numeric", "numeric"],
  ["c_numeric_10_3", "numeric(10,3)"],
  ["c_bytea", "bytea"],
  ["c_date", "date"],
  ["c_time", "time"],
  ["c_time3", "time(3)"],
  ["c_timestamp", "timestamp"],
  ["c_lsn", "pg_lsn"],
  ["a_int2", "int2[]"],
  ["a_int4", "int4[]"],
  ["a_int8", "int8[]"],
  ["a_text", "text[]"],
  ["a_varchar", "varchar(10)[]"],
  ["a_bpchar", "char(3)[]"],
  ["a_numeric", "numeric[]"],
  ["a_numeric_10_2", "numeric(10,2)[]"],
  ["a_float4", "real[]"],
  ["a_float8", "float8[]"],
  ["a_bool", "bool[]"],
  ["a_date", "date[]"],
  ["a_time", "time[]"],
  ["a_timetz", "timetz[]"],
  ["a_timestamp", "timestamp[]"],
  ["a_timestamptz", "timestamptz[]"],
  ["a_uuid", "uuid[]"],
  ["a_json", "json[]"],
  ["a_jsonb", "jsonb[]"],
  ["a_bytea", "bytea[]"],
  ["a_inet", "inet[]"],
  ["a_mood", "mood[]"],
  ["a_interval", "interval[]"],
  ["a_money", "money[]"],
  ["a_lsn", "pg_lsn[]"],
  ["a_bit", "bit(3)[]"],
  ["a_dtext", "d_text[]"],
  ["a_multi", "int4[]"],
  ["d_text", "d_text"],
  ["d_int", "d_int"],
  ["d_numeric", "d_numeric"],
  ["d_bit5", "d_bit5"],
  ["d_point", "d_point"],
  ["d_money", "d_money"],
  ["t_text", "text"],
  ["t_int4", "int4[]"],
  ["t_text_arr", "text[]"],
  ["t_bytea", "bytea"],
  ["t_uuid", "uuid[]"],
  ["t_jsonb", "jsonb"],
  ["t_xml", "xml"],
  ["t_int8", "int8[]"],
  ["t_date", "date[]"],
  ["t_varchar", "varchar[]"],
  ["t_jsonb_arr", "jsonb[]"],
  ["t_tsvector", "tsvector"],
  ["t_int2", "int2[]"],
  ["t_numeric_arr", "numeric[]"],
  ["t_bytea_arr", "bytea[]"],
  ["t_varbit", "varbit"],
  ["t_float8_arr", "float8[]"],
  // Defaults in the schema, written under each run's options.
  ["f_numeric", "numeric(10,2) default 1.5"],
  ["f_time", "time default '10:00'"],
  ["f_interval", "interval default '1 day 02:00:00.5'"],
  ["f_date", "date not null default current_date"],
];

/** Columns of an extension, made only where the server has it. */
const EXTENSION_COLUMNS: Record<string, [string, string][]> = {
  hstore: [["e_hstore", "hstore"], ["a_hstore", "hstore[]"], ["t_hstore", "hstore"], ["d_hstore", "d_hstore"]],
  citext: [["e_citext", "citext"], ["a_citext", "citext[]"], ["d_citext", "d_citext"], ["t_citext", "citext"]],
  ltree: [["e_ltree", "ltree"], ["a_ltree", "ltree[]"], ["t_ltree", "ltree"], ["d_ltree", "d_ltree"]],
  isn: [["e_isbn", "isbn"]],
  postgis: [["e_geometry", "geometry"], ["e_geography", "geography"], ["t_geometry", "geometry"]],
};

const DOMAINS = [
  "create domain d_text as text",
  "create domain d_int as integer check (value > 0)",
  "create domain d_numeric as numeric(8,2)",
  "create domain d_bit5 as bit(5)",
  "create domain d_point as point",
  "create domain d_money as money",
];

/** A value per column of a typical row, as SQL literals. */
const TYPICAL: Record<string, string> = {
  c_money: "'1234.567'",
  c_bit1: "B'1'",
  c_bit5: "B'10110'",
  c_varbit: "B'1011000000110'",
  c_varbit8: "B'101'",
  c_point: "'(1.5,-2.25)'",
  c_tsvector: "'a fat cat sat on a mat'",
  c_xml: "'<a x=\"1\">text &amp; more</a>'",
  c_interval: "'1 year 2 mons -3 days 04:05:06.5'",
  c_numeric: "'12345.678'",
  c_numeric_10_3: "'-1.5'",
  c_bytea: "'\\x00ff10'",
  c_date: "'2024-02-29'",
  c_time: "'13:14:15.123456'",
  c_time3: "'13:14:15.123'",
  c_timestamp: "'2024-02-29 13:14:15.123456'",
  c_lsn: "'0/16B3748'",
  a_int2: "'{1,-2,NULL}'",
  a_int4: "'{2147483647,NULL,-1}'",
  a_int8: "'{9007199254740993}'",
  a_text: `'{"a b","c\\"d",NULL,"NULL",ünï,""}'`,
  a_varchar: "'{x,yy}'",
  a_bpchar: "'{a,bc}'",
  a_numeric: "'{1.50,-2,NULL}'",
  a_numeric_10_2: "'{1.5,2}'",
  a_float4: "'{1.5,NULL,-0.1}'",
  a_float8: "'{2.718281828459045,1e300}'",
  a_bool: "'{t,f,NULL}'",
  a_date: "'{2024-02-29,1970-01-01}'",
  a_time: "'{13:14:15.123456}'",
  a_timetz: "'{13:14:15.123456+02}'",
  a_timestamp: "'{2024-02-29 13:14:15.123456}'",
  a_timestamptz: "'{2024-02-29 13:14:15.123456+02}'",
  a_uuid: "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",
  a_json: `array['{"b": 1}', '[]']::json[]`,
  a_jsonb: `array['{"b": 1}']::jsonb[]`,
  a_bytea: "array['\\x00ff'::bytea, null]",
  a_inet: "'{10.0.0.1/8,::1}'",
  a_mood: "'{ok,sad}'",
  a_interval: "'{1 day}'",
  a_money: "'{1.00}'",
  a_lsn: "'{0/1}'",
  a_bit: "'{101,011}'",
  a_dtext: "'{x,NULL}'",
  a_multi: "'{{1,2},{3,4}}'",
  d_text: "'domain text'",
  d_int: "42",
  d_numeric: "'12.5'",
  d_bit5: "B'00001'",
  d_point: "'(0,0)'",
  d_money: "'-0.5'",
  t_text: "'short'",
  t_int4: "'{1}'",
  t_text_arr: "'{a}'",
  t_bytea: "'\\x01'",
  t_uuid: "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'",
  e_hstore: `'a=>1, "b c"=>NULL, "x\\"y"=>"\\\\z", key=>value'`,
  a_hstore: "array['a=>1'::hstore, null]",
  t_hstore: "'a=>1'",
  e_citext: "'MiXeD'",
  a_citext: "'{A,b}'",
  d_citext: "'Dom'",
  e_ltree: "'top.science.astronomy'",
  a_ltree: "'{a.b,c}'",
  e_geometry: "'SRID=4326;POINT(1 2)'",
  e_geography: "'SRID=4326;LINESTRING(0 0, 1 1)'",
  t_jsonb: `'{"k": "v"}'`,
  t_xml: "'<x/>'",
  d_hstore: "'k=>v'",
  d_ltree: "'a.b'",
  e_isbn: "'978-0-393-04002-9'",
  t_citext: "'c'",
};

/** Edge values: empty arrays, the ends of ranges, special numbers. */
const EDGE: Record<string, string> = {
  c_money: "'-92233720368547758.08'",
  c_bit1: "B'0'",
  c_bit5: "B'00000'",
  c_varbit: "B''",
  c_point: "'(1e300,-0)'",
  c_tsvector: "''",
  c_interval: "'-178000000 years'",
  c_numeric: "'NaN'",
  c_numeric_10_3: "'0'",
  c_bytea: "'\\x'",
  c_time: "'24:00:00'",
  c_date: "'-infinity'",
  c_timestamp: "'infinity'",
  a_int2: "'{}'",
  a_text: "'{}'",
  a_numeric: "'{}'",
  a_float8: "'{NaN,Infinity,-Infinity}'",
  a_date: "'{infinity,-infinity}'",
  a_timestamptz: "'{infinity}'",
  a_bytea: "'{}'",
  e_hstore: "''",
  a_ltree: "'{}'",
  e_geometry: "'POINT EMPTY'",
};

/** Numeric's other special values. */
const SPECIAL: Record<string, string> = { c_numeric: "'Infinity'", c_numeric_10_3: "'NaN'", d_numeric: "'-0.005'" };

/** A text of `n` md5 digests: large and barely compressible, so PostgreSQL stores it out of line (TOAST). */
const big = (n: number) => `(select string_agg(md5(i::text), '') from generate_series(1, ${n}) i)`;

/** The TOASTed values: each column's value is moved out of line. */
const TOASTED: Record<string, string> = {
  t_text: big(300),
  t_int4: "(select array_agg(i) from generate_series(1, 3000) i)",
  t_text_arr: `(select array_agg(md5(i::text)) from generate_series(1, 300) i)`,
  t_bytea: `(select decode(string_agg(md5(i::text), ''), 'hex') from generate_series(1, 300) i)`,
  t_uuid: `(select array_agg(md5(i::text)::uuid) from generate_series(1, 300) i)`,
  t_hstore: `(select hstore(array_agg(md5(i::text)), array_agg(md5((i + 1)::text))) from generate_series(1, 300) i)`,
  t_jsonb: `(select jsonb_object_agg(md5(i::text), md5((i + 1)::text)) from generate_series(1, 300) i)`,
  t_xml: `(select ('<x>' || string_agg(md5(i::text), '') || '</x>')::xml from generate_series(1, 300) i)`,
  t_citext: big(300),
  t_int8: "(select array_agg(i::bigint * 1000003) from generate_series(1, 3000) i)",
  t_date: "(select array_agg('2000-01-01'::date + i * 7) from generate_series(1, 3000) i)",
  t_varchar: "(select array_agg(md5(i::text)::varchar) from generate_series(1, 300) i)",
  t_jsonb_arr: "(select array_agg(jsonb_build_object('k', md5(i::text))) from generate_series(1, 300) i)",
  t_tsvector: "(select string_agg(md5(i::text), ' ') from generate_series(1, 300) i)::tsvector",
  t_int2: "(select array_agg((i % 4000 * 7)::int2) from generate_series(1, 5000) i)",
  t_numeric_arr: "(select array_agg(i::numeric * 1.37) from generate_series(1, 3000) i)",
  t_bytea_arr: "(select array_agg(decode(md5(i::text), 'hex')) from generate_series(1, 300) i)",
  t_varbit:
    "(select string_agg(case when random() < 0.5 then '1' else '0' end, '') from generate_series(1, 40000))::varbit",
  t_float8_arr: "(select array_agg(random()) from generate_series(1, 3000) i)",
  t_geometry: "(select st_makeline(array_agg(st_makepoint(random(), random()))) from generate_series(1, 1000))",
  t_ltree: "(select string_agg(md5(i::text), '.') from generate_series(1, 300) i)::ltree",
};

/** The extensions the server has, created in the database; a missing one is named in the output when `log`. */
async function createExtensions(sql: postgres.Sql, log: boolean): Promise<string[]> {
  const names = Object.keys(EXTENSION_COLUMNS);
  const missing = await missingExtensions(sql, names, log);
  const present = names.filter((name) => !missing.includes(name));
  for (const name of present) await sql.unsafe(`create extension if not exists ${name}`);
  return present;
}

/** The types table with the columns this server can have. */
async function createTable(sql: postgres.Sql, extensions: string[]): Promise<string[]> {
  await sql`create type mood as enum ('sad', 'ok', 'happy')`;
  for (const ddl of DOMAINS) await sql.unsafe(ddl);
  if (extensions.includes("citext")) await sql`create domain d_citext as citext`;
  if (extensions.includes("hstore")) await sql`create domain d_hstore as hstore`;
  if (extensions.includes("ltree")) await sql`create domain d_ltree as ltree`;
  const columns = [...BASE_COLUMNS, ...extensions.flatMap((e) => EXTENSION_COLUMNS[e])];
  const definitions = columns.map(([name, type]) => `${name} ${type}`).join(", ");
  await sql.unsafe(`create table types (id integer primary key, ${definitions})`);
  await sql`alter table types replica identity full`;
  return columns.map(([name]) => name);
}

/** Inserts row `id` with `values` (column -> SQL literal) for the columns this table has. */
async function insertRow(sql: postgres.Sql, columns: string[], id: number, values: Record<string, string>) {
  const names = columns.filter((c) => values[c] !== undefined);
  const literals = names.map((c) => values[c]);
  await sql.unsafe(
    `insert into types (id${names.map((n) => `, ${n}`).join("")}) values (${id}${
      literals.map((l) => `, ${l}`).join("")
    })`,
  );
}

/** The changes after the snapshot: rows typical, NULL and edge; TOASTed values, then an update leaving them unchanged. */
async function changeRows(sql: postgres.Sql, columns: string[]) {
  await insertRow(sql, columns, 2, TYPICAL);
  await insertRow(sql, columns, 3, {});
  await insertRow(sql, columns, 4, EDGE);
  await insertRow(sql, columns, 5, TOASTED);
  await insertRow(sql, columns, 6, SPECIAL);
  // REPLICA IDENTITY DEFAULT: the update's old row is not sent, and the new row marks the TOASTed values unchanged.
  await sql`alter table types replica identity default`;
  await sql`update types set c_money = 1 where id = 5`;
  await sql`alter table types replica identity full`;
  await sql`update types set c_numeric = 1, a_int4 = '{7}' where id = 2`;
  await sql`delete from types where id = 3`;
}

/** Whether a record's key is `{"id": id}`. */
const keyIs = (record: ConnectorRecord, id: number) => record.key?.endsWith(`"payload":{"id":${id}}}`) ?? false;

/** One run's two connectors on a database of its own, the capture's topic followed. */
class TypesRun {
  readonly prefix = uniqueName("types").toLowerCase();
  readonly topic = `${this.prefix}.public.types`;
  readonly slots = [`${this.prefix}_ours`, `${this.prefix}_dbz`];
  capture?: Running;
  debezium?: RunningDebezium;
  follower?: TopicFollower;
  captureExit?: number;

  constructor(readonly run: OptionRun, readonly db: { url: string; sql: postgres.Sql }, readonly dir: string) {}

  async start() {
    this.debezium = await startDebezium({
      databaseUrl: this.db.url,
      prefix: this.prefix,
      slot: this.slots[1],
      publication: `${this.prefix}_dbz_pub`,
      tables: ["public.types"],
      dir: this.dir,
      extra: this.run.options,
    });
    const settings = Object.fromEntries(Object.entries(this.run.options).map(([k, v]) => [envOf(k), v]));
    this.capture = startCommand("produce", ["capture"], {
      ...pipelineNames(this.db.url),
      CAPTURE_TOPIC_PREFIX: this.prefix,
      CAPTURE_SLOT: this.slots[0],
      CAPTURE_PUBLICATION: `${this.prefix}_ours_pub`,
      CAPTURE_TABLES: "public.types",
      ...settings,
    });
    this.capture.done.then((result) => this.captureExit = result.code);
  }

  /** Both connectors' logs' ends, for a failure. */
  logs(): string {
    return `the capture (${this.run.name}):\n${this.capture?.stderr().slice(-1500)}\n` +
      `Debezium (${this.run.name}):\n${this.debezium?.stderr().slice(-3000)}`;
  }

  async waitFor(what: string, check: () => Promise<boolean>) {
    await waitFor(`${this.run.name}: ${what}`, check, 120_000, 250).catch((error) => {
      throw new Error(`${error.message}\n${this.logs()}`);
    });
  }

  /** Whether Debezium's output holds the record of `id` whose value has `text`. */
  async debeziumHas(id: number, text: string): Promise<boolean> {
    return (await this.debezium!.records()).some((r) => keyIs(r, id) && r.value?.includes(text));
  }

  async waitForSnapshots() {
    await this.waitFor("both snapshots", async () => {
      if (this.debezium!.exited() !== undefined) return true;
      const ours = this.captureExit !== undefined || await topicSize(this.topic).catch(() => 0) >= 1;
      return ours && await this.debeziumHas(1, '"snapshot":"last"');
    });
    assert.equal(this.debezium!.exited(), undefined, `Debezium stopped in its snapshot:\n${this.logs()}`);
    if (this.captureExit === undefined) this.follower = await followTopics([this.topic]);
  }

  /** Inserts the end marker row and waits until both outputs hold it. */
  async waitForEnd() {
    await this.db.sql`insert into types (id) values (999)`;
    await this.waitFor("the end marker in both outputs", async () => {
      if (this.debezium!.exited() !== undefined) return true;
      if (!await this.debeziumHas(999, '"op":"c"')) return false;
      const ours = this.follower?.records() ?? [];
      return this.captureExit !== undefined || ours.some((r) => keyIs(r, 999));
    });
  }

  async stop() {
    await this.follower?.stop().catch(() => {});
    if (this.capture) await stopProcess(this.capture);
    await this.debezium?.stop();
    const sql = this.db.sql;
    await waitFor(`${this.run.name}: the connectors' slots to be released`, async () => {
      const [row] = await sql`
        select count(*)::int as active from pg_replication_slots where slot_name in ${sql(this.slots)} and active`;
      return row.active === 0;
    }, 30_000);
    await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots
      where slot_name in ${sql(this.slots)}`;
  }
}

/** One run from start to its differences (those docs/CAPTURE.md does not list). */
async function runOne(run: OptionRun, known: ReturnType<typeof knownDifferences>, log: boolean) {
  const db = await createTestDatabase();
  const dir = await Deno.makeTempDir({ prefix: `debezium-types-${run.name}-` });
  const side = new TypesRun(run, db, dir);
  try {
    const extensions = await createExtensions(db.sql, log);
    const columns = await createTable(db.sql, extensions);
    await insertRow(db.sql, columns, 1, TYPICAL);
    await side.start();
    await side.waitForSnapshots();
    await commitBothConnectorsSee(db.sql);
    await changeRows(db.sql, columns);
    await side.waitForEnd();
    // The whole topic, not the follower's records: it may see the marker before a record of another partition.
    const ours: ConnectorRecord[] = side.follower ? await readConnectorTopic(side.topic) : [];
    const theirs = await side.debezium!.records();
    const differences = compareOutputs(ours, theirs);
    const unexpected = differences.filter((d) => !known.some((k) => k.matches(d)));
    console.log(
      `    run ${run.name}: ${ours.length} records from the capture, ${theirs.length} from Debezium, ` +
        `${differences.length} differences (${unexpected.length} not listed)`,
    );
    const stopped = side.captureExit !== undefined ? `the capture exited:\n${side.capture!.stderr().slice(-1500)}` : "";
    return { run, differences, unexpected, stopped };
  } finally {
    await side.stop().catch((error) => console.error(`${run.name}: stopping the connectors failed: ${error}`));
    await db.drop().catch((error) => console.error(`${run.name}: dropping the test database failed: ${error}`));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("the capture writes every type as Debezium 3.6.1 does, under every value of its value options", async () => {
  const started = Date.now();
  await resolveDebezium();
  const known = knownDifferences(await Deno.readTextFile(`${ROOT}docs/CAPTURE.md`));
  const results = await Promise.all(RUNS.map((run, i) => runOne(run, known, i === 0)));
  console.log(`    ${RUNS.length} runs in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  const failures: string[] = [];
  for (const { run, unexpected, stopped } of results) {
    if (stopped) failures.push(`run ${run.name}: ${stopped}`);
    if (unexpected.length === 0) continue;
    console.log(`    run ${run.name} by path:\n      ${groupByPath(unexpected).join("\n      ")}`);
    failures.push(...unexpected.slice(0, 20).map((d: Difference) => `run ${run.name}: ${formatDifference(d)}`));
  }
  if (failures.length) {
    assert.fail(`differences from Debezium that docs/CAPTURE.md does not list:\n${failures.join("\n")}`);
  }
});
