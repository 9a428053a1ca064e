/**
 * The Debezium encoding against exact JSON: what the Debezium PostgreSQL connector 3.6.1 writes
 * through JsonConverter (schemas enabled, its defaults) for the same rows, key order included.
 * Expected values are derived from Debezium's source; each names the class it follows.
 */
import assert from "node:assert/strict";
import { type ColumnSpec, DebeziumEncoder, type FramedJson, type TableSpec } from "../../lib/capture_debezium.ts";
import { EncodingError } from "../../lib/capture_errors.ts";
import type { ChangeSource } from "../../lib/capture_reader.ts";
import { DEBEZIUM_VALUE_DEFAULTS, javaDouble, javaFloat, unscaledBase64 } from "../../lib/capture_debezium_values.ts";
import { codecFor } from "../../lib/capture_debezium_types.ts";
import { snapshotMarker } from "../../lib/capture_snapshot.ts";
import { col } from "./_capture_parts.ts";

const encoder = new DebeziumEncoder({ prefix: "cdc", database: "cdc_db", version: "0.1.0-cdc-pipeline" });
const NOW_NS = 1_751_537_473_000_123_456n;
const STREAMED: ChangeSource = {
  tsUs: 1_751_537_472_123_456n,
  txId: 771,
  lsn: 22_000_040n,
  lastCommitLsn: 22_000_000n,
};
const USER_ID = "6f1c0a4e-8a55-4f0b-9d7c-2f6a1b9e0c11";
const OTHER_ID = "0c9d8e7f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";

/** The users table as lib/sink.ts creates it, as readTableSpec reads it. */
const USERS: TableSpec = {
  schema: "public",
  table: "users",
  columns: [
    col("id", 2950, "uuid", { optional: false, key: true }),
    col("name", 1043, "varchar", { typmod: 54, optional: false }),
    col("dob", 1082, "date", { optional: false }),
    col("created_at", 1184, "timestamptz"),
    col("modified_at", 1184, "timestamptz"),
    col("is_deleted", 16, "bool", { defaultText: "f" }),
  ],
  keyColumns: ["id"],
};

const USER_KEY = `{"schema":{"type":"struct","fields":[{"type":"string","optional":false,` +
  `"name":"io.debezium.data.Uuid","version":1,"field":"id"}],"optional":false,"name":"cdc.public.users.Key"},` +
  `"payload":{"id":"${USER_ID}"}}`;

const USER_ROW_FIELDS = `[{"type":"string","optional":false,"name":"io.debezium.data.Uuid","version":1,"field":"id"},` +
  `{"type":"string","optional":false,"field":"name"},` +
  `{"type":"int32","optional":false,"name":"io.debezium.time.Date","version":1,"field":"dob"},` +
  `{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"created_at"},` +
  `{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"modified_at"},` +
  `{"type":"boolean","optional":true,"default":false,"field":"is_deleted"}]`;

// PostgresSourceInfoStructMaker on SchemaFactory.sourceInfoSchemaBuilder; Envelope version 2.
const USER_VALUE_SCHEMA = `{"type":"struct","fields":[` +
  `{"type":"struct","fields":${USER_ROW_FIELDS},"optional":true,"name":"cdc.public.users.Value","field":"before"},` +
  `{"type":"struct","fields":${USER_ROW_FIELDS},"optional":true,"name":"cdc.public.users.Value","field":"after"},` +
  `{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},` +
  `{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},` +
  `{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum",` +
  `"version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,` +
  `incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},` +
  `{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},` +
  `{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},` +
  `{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},` +
  `{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"},` +
  `{"type":"string","optional":true,"field":"origin"},{"type":"int64","optional":true,"field":"origin_lsn"}],` +
  `"optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"},` +
  `{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},` +
  `{"type":"int64","optional":false,"field":"total_order"},` +
  `{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block",` +
  `"version":1,"field":"transaction"},{"type":"string","optional":false,"field":"op"},` +
  `{"type":"int64","optional":true,"field":"ts_ms"},{"type":"int64","optional":true,"field":"ts_us"},` +
  `{"type":"int64","optional":true,"field":"ts_ns"}],"optional":false,"name":"cdc.public.users.Envelope","version":2}`;

// AbstractSourceInfoStructMaker: ts_us = epochSecond * 1e6 + nano / 1000, ts_ns = epochSecond * 1e9 + nano.
const source = (table: string, snapshot = "false", txId = "771", sequence = '"[\\"22000000\\",\\"22000040\\"]"') =>
  `{"version":"0.1.0-cdc-pipeline","connector":"postgresql","name":"cdc","ts_ms":1751537472123,` +
  `"snapshot":"${snapshot}","db":"cdc_db","sequence":${sequence},"ts_us":1751537472123456,` +
  `"ts_ns":1751537472123456000,"schema":"public","table":"${table}","txId":${txId},"lsn":22000040,"xmin":null,` +
  `"origin":null,"origin_lsn":null}`;
// Envelope: ts_ms/ts_us/ts_ns from the capture clock, in nanoseconds here.
const tail = (op: string) =>
  `"transaction":null,"op":"${op}","ts_ms":1751537473000,"ts_us":1751537473000123,"ts_ns":1751537473000123456}`;

const ann = [USER_ID, "Ann Lee", "1990-02-03", "2025-07-03 10:11:12.123456+00", null, "f"];
const annJson = `{"id":"${USER_ID}","name":"Ann Lee","dob":7338,"created_at":"2025-07-03T10:11:12.123456Z",` +
  `"modified_at":null,"is_deleted":false}`;
const annSmith = [USER_ID, "Ann Smith", "1990-02-03", "2025-07-03 10:11:12.123456+00", "2025-07-03 12:00:00.5+02", "f"];
const annSmithJson = `{"id":"${USER_ID}","name":"Ann Smith","dob":7338,"created_at":"2025-07-03T10:11:12.123456Z",` +
  `"modified_at":"2025-07-03T10:00:00.500000Z","is_deleted":false}`;
// The payload as written (JSON.parse would round the nanosecond numbers).
const payload = (value: FramedJson | null) => String(value).slice(String(value).indexOf('},"payload":') + 12, -1);

Deno.test("a users insert is Debezium's create event: key, envelope schema and payload byte for byte", () => {
  const records = encoder.encode(USERS, { op: "c", before: null, after: ann, source: STREAMED }, NOW_NS);
  assert.equal(records.length, 1);
  assert.equal(records[0].topic, "cdc.public.users");
  assert.equal(records[0].key, USER_KEY);
  assert.equal(
    String(records[0].value),
    `{"schema":${USER_VALUE_SCHEMA},"payload":{"before":null,"after":${annJson},"source":${source("users")},` +
      `${tail("c")}}`,
  );
});

Deno.test("a users update carries the old row as before (REPLICA IDENTITY FULL) and the new row as after", () => {
  const [record] = encoder.encode(USERS, { op: "u", before: ann, after: annSmith, source: STREAMED }, NOW_NS);
  assert.equal(
    payload(record.value),
    `{"before":${annJson},"after":${annSmithJson},"source":${source("users")},${tail("u")}`,
  );
});

Deno.test("an update without an old tuple (default replica identity, key unchanged) has before null", () => {
  const [record] = encoder.encode(USERS, { op: "u", before: null, after: annSmith, source: STREAMED }, NOW_NS);
  assert.equal(
    payload(record.value),
    `{"before":null,"after":${annSmithJson},"source":${source("users")},${tail("u")}`,
  );
});

Deno.test("a users delete is a delete event followed by a tombstone with the same key", () => {
  const records = encoder.encode(USERS, { op: "d", before: annSmith, after: null, source: STREAMED }, NOW_NS);
  assert.equal(records.length, 2);
  assert.equal(
    payload(records[0].value),
    `{"before":${annSmithJson},"after":null,"source":${source("users")},${tail("d")}`,
  );
  assert.deepEqual(records[1], { topic: "cdc.public.users", key: USER_KEY, value: null });
});

Deno.test("a delete under REPLICA IDENTITY DEFAULT (the old key alone) writes each column the key lacks as Debezium does: null, the default, or the type's fallback where NOT NULL", () => {
  // PgOutputMessageDecoder reads the 'K' tuple's other columns ('n') as null, and JdbcValueConverters.convertValue
  // gives a required column its schema default, else its type's fallback: "" and day 0 here, as Debezium 3.6.1 wrote
  // in tests/capture_debezium_compat_test.ts' deleteByKeyOnly phase.
  const keyOnly = [USER_ID, null, null, null, null, null];
  const records = encoder.encode(USERS, { op: "d", before: keyOnly, after: null, source: STREAMED }, NOW_NS);
  assert.equal(records[0].key, USER_KEY);
  assert.equal(
    payload(records[0].value),
    `{"before":{"id":"${USER_ID}","name":"","dob":0,"created_at":null,"modified_at":null,"is_deleted":false},` +
      `"after":null,"source":${source("users")},${tail("d")}`,
  );
  assert.deepEqual(records[1], { topic: "cdc.public.users", key: USER_KEY, value: null });
});

Deno.test("a primary key change is d and tombstone for the old key, then c for the new key, with the key headers", () => {
  // RelationalChangeRecordEmitter.emitUpdateAsPrimaryKeyChangeRecord; EventDispatcher copies headers to the tombstone.
  const moved = [OTHER_ID, ...annSmith.slice(1)];
  const records = encoder.encode(USERS, { op: "u", before: annSmith, after: moved, source: STREAMED }, NOW_NS);
  const newKey = USER_KEY.replace(USER_ID, OTHER_ID);
  assert.deepEqual(records.map((r) => [r.key, r.headers]), [
    [USER_KEY, { "__debezium.newkey": newKey }],
    [USER_KEY, { "__debezium.newkey": newKey }],
    [newKey, { "__debezium.oldkey": USER_KEY }],
  ]);
  assert.equal(
    payload(records[0].value),
    `{"before":${annSmithJson},"after":null,"source":${source("users")},${tail("d")}`,
  );
  assert.equal(records[1].value, null);
  assert.equal(
    payload(records[2].value),
    `{"before":null,"after":${annSmithJson.replace(USER_ID, OTHER_ID)},"source":${source("users")},${tail("c")}`,
  );
});

Deno.test("a snapshot row is op r with source.snapshot set, the snapshot's txId, and the consistent point as lsn", () => {
  const [record] = encoder.encode(USERS, {
    op: "r",
    before: null,
    after: ann,
    source: { ...STREAMED, snapshot: "first", txId: 770, lastCommitLsn: null },
  }, NOW_NS);
  assert.equal(
    payload(record.value),
    `{"before":null,"after":${annJson},"source":${source("users", "first", "770", '"[null,\\"22000040\\"]"')},${
      tail("r")
    }`,
  );
});

Deno.test("nanosecond times past 2^53 are written as exact digits", () => {
  const [record] = encoder.encode(USERS, {
    op: "c",
    before: null,
    after: ann,
    source: { ...STREAMED, tsUs: 9_007_199_254_740_993n },
  }, 9_007_199_254_740_993_001n);
  assert.match(String(record.value), /"ts_us":9007199254740993,"ts_ns":9007199254740993000,/);
  assert.match(String(record.value), /"ts_ms":9007199254740,"ts_us":9007199254740993,"ts_ns":9007199254740993001\}\}$/);
});

Deno.test("the schema JSON is built once per spec object and rebuilt for a new spec after a Relation message", () => {
  const before = String(
    encoder.encode(USERS, { op: "c", before: null, after: ann, source: STREAMED }, NOW_NS)[0].value,
  );
  const widened: TableSpec = { ...USERS, columns: [...USERS.columns, col("nickname", 25, "text")] };
  const after = encoder.encode(widened, { op: "c", before: null, after: [...ann, "annie"], source: STREAMED }, NOW_NS);
  assert.ok(!before.includes('"field":"nickname"'));
  assert.match(String(after[0].value), /\{"type":"string","optional":true,"field":"nickname"\}\],"optional":true/);
  assert.match(String(after[0].value), /"is_deleted":false,"nickname":"annie"\}/);
});

/** One column table `t` of the given column, keyed by `id int4`; returns the encoded after-value JSON of `text`. */
function one(column: ColumnSpec, text: string | null | undefined): { field: string; value: string } {
  const spec: TableSpec = {
    schema: "public",
    table: "t",
    columns: [col("id", 23, "int4", { optional: false, key: true }), column],
    keyColumns: ["id"],
  };
  const [record] = encoder.encode(spec, { op: "c", before: null, after: ["1", text], source: STREAMED }, NOW_NS);
  const json = String(record.value);
  const fields = JSON.parse(json).schema.fields[1].fields;
  const rest = json.slice(json.indexOf('"after":{"id":1') + 15, json.indexOf(',"source":'));
  return { field: JSON.stringify(fields.at(-1)), value: rest.slice(rest.indexOf(":") + 1, -1) };
}

Deno.test("integers: int2 int16, int4 int32, int8 int64 with all 19 digits exact, oid int64", () => {
  assert.deepEqual(one(col("c", 21, "int2"), "-32768"), {
    field: '{"type":"int16","optional":true,"field":"c"}',
    value: "-32768",
  });
  assert.deepEqual(one(col("c", 23, "int4"), "2147483647"), {
    field: '{"type":"int32","optional":true,"field":"c"}',
    value: "2147483647",
  });
  assert.deepEqual(one(col("c", 20, "int8"), "-9223372036854775808"), {
    field: '{"type":"int64","optional":true,"field":"c"}',
    value: "-9223372036854775808",
  });
  assert.equal(one(col("c", 26, "oid"), "4294967295").value, "4294967295");
});

const NUMERIC_14_2 = ((14 << 16) | 2) + 4;
const NUMERIC_12_4 = ((12 << 16) | 4) + 4;

Deno.test("constrained numeric is Connect's Decimal with scale and connect.decimal.precision from the typmod", () => {
  // PostgresValueConverter.numericSchema -> SpecialValueDecimal.builder(PRECISE, precision, scale).
  assert.deepEqual(one(col("c", 1700, "numeric", { typmod: NUMERIC_14_2 }), "123456789012.34"), {
    field: '{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,' +
      '"parameters":{"scale":"2","connect.decimal.precision":"14"},"field":"c"}',
    value: `"${unscaledBase64(12345678901234n)}"`,
  });
  assert.equal(one(col("c", 1700, "numeric", { typmod: NUMERIC_12_4 }), "-1.5000").value, '"xWg="'); // -15000 = C5 68
  assert.equal(one(col("c", 1700, "numeric", { typmod: NUMERIC_12_4 }), "12.34").value, '"AeII"'); // 123400 = 01 E2 08
});

Deno.test("unscaled values are big-endian two's complement, as Java's BigInteger.toByteArray writes them", () => {
  assert.equal(unscaledBase64(1234n), "BNI="); // 04 D2
  assert.equal(unscaledBase64(0n), "AA==");
  assert.equal(unscaledBase64(128n), "AIA="); // 00 80: a sign byte keeps it positive
  assert.equal(unscaledBase64(-100n), "nA=="); // 9C
  assert.equal(unscaledBase64(-128n), "gA=="); // 80, one byte
  assert.equal(unscaledBase64(-129n), "/38="); // FF 7F
  assert.equal(unscaledBase64(9999999999n), "AlQL4/8="); // 02 54 0B E3 FF
  assert.equal(unscaledBase64(-(2n ** 64n)), "/wAAAAAAAAAA");
});

Deno.test("unconstrained numeric is VariableScaleDecimal {scale, value}, trailing zeros stripped", () => {
  // PostgresValueConverter.convertDecimal: stripTrailingZeros, setScale(0) when negative; SchemaFactory's struct.
  assert.deepEqual(one(col("c", 1700, "numeric"), "12.3400"), {
    field: '{"type":"struct","fields":[{"type":"int32","optional":false,"field":"scale"},' +
      '{"type":"bytes","optional":false,"field":"value"}],"optional":true,' +
      '"name":"io.debezium.data.VariableScaleDecimal","version":1,"doc":"Variable scaled decimal","field":"c"}',
    value: '{"scale":2,"value":"BNI="}',
  });
  assert.equal(one(col("c", 1700, "numeric"), "1200").value, '{"scale":0,"value":"BLA="}');
  assert.equal(one(col("c", 1700, "numeric"), "0.000").value, '{"scale":0,"value":"AA=="}');
  assert.equal(one(col("c", 1700, "numeric"), "-0.5").value, '{"scale":1,"value":"+w=="}');
  assert.equal(
    one(col("c", 1700, "numeric"), "123456789012345678901234567890.123456789").value,
    `{"scale":9,"value":"${unscaledBase64(123456789012345678901234567890123456789n)}"}`,
  );
});

Deno.test("numeric NaN and infinities: null (or the default) where Connect allows it, else EncodingError naming the key", () => {
  // SpecialValueDecimal.fromLogical throws in precise mode; TableSchemaBuilder's warn mode leaves the field null.
  assert.equal(one(col("c", 1700, "numeric"), "NaN").value, "null");
  assert.equal(one(col("c", 1700, "numeric", { typmod: NUMERIC_14_2 }), "Infinity").value, "null");
  assert.equal(
    one(col("c", 1700, "numeric", { typmod: NUMERIC_14_2, optional: false, defaultText: "0.05" }), "NaN").value,
    '"BQ=="',
  );
  assert.throws(
    () => one(col("c", 1700, "numeric", { typmod: NUMERIC_14_2, optional: false }), "-Infinity"),
    (e) => e instanceof EncodingError && /public\.t\.c: numeric value "-Infinity" .*row key id=1/.test(e.message),
  );
});

Deno.test("real and double precision as Java's Float/Double.toString, NaN and infinities quoted as Jackson writes them", () => {
  const f4 = (text: string) => one(col("c", 700, "float4"), text).value;
  const f8 = (text: string) => one(col("c", 701, "float8"), text).value;
  assert.equal(one(col("c", 700, "float4"), "1").field, '{"type":"float","optional":true,"field":"c"}');
  assert.equal(one(col("c", 701, "float8"), "1").field, '{"type":"double","optional":true,"field":"c"}');
  assert.deepEqual(["3.14", "1", "0.1", "1e+10", "0.333333343", "NaN", "Infinity"].map(f4), [
    "3.14",
    "1.0",
    "0.1",
    "1.0E10",
    "0.33333334",
    '"NaN"',
    '"Infinity"',
  ]);
  assert.deepEqual(["0.1", "100", "12345678", "1e-05", "0.001", "-0", "-Infinity", "1.7976931348623157e+308"].map(f8), [
    "0.1",
    "100.0",
    "1.2345678E7",
    "1.0E-5",
    "0.001",
    "-0.0",
    '"-Infinity"',
    "1.7976931348623157E308",
  ]);
  assert.equal(javaDouble(2e23), "2.0E23"); // JDK 19+ shortest digits
  assert.equal(javaFloat(1e-4), "1.0E-4");
});

Deno.test("text, varchar(n), char(n), boolean, uuid, json and jsonb as Debezium names them", () => {
  assert.deepEqual(one(col("c", 25, "text"), 'héllo \u0001 "q"'), {
    field: '{"type":"string","optional":true,"field":"c"}',
    value: '"héllo \\u0001 \\"q\\""',
  });
  assert.equal(one(col("c", 25, "text"), "\u001f\\u001f").value, '"\\u001F\\\\u001f"'); // Jackson's upper-case hex
  assert.equal(one(col("c", 1043, "varchar", { typmod: 14 }), "ten chars!").value, '"ten chars!"');
  assert.equal(one(col("c", 1042, "bpchar", { typmod: 9 }), "ab   ").value, '"ab   "'); // blank-padded as PostgreSQL sends it
  assert.equal(one(col("c", 1042, "bpchar", { typmod: 9 }), "é").value, '"é    "'); // the snapshot's ::text trims the blanks
  assert.equal(one(col("c", 16, "bool"), "false").value, "false"); // the snapshot's bool::text
  assert.deepEqual(one(col("c", 16, "bool"), "t"), {
    field: '{"type":"boolean","optional":true,"field":"c"}',
    value: "true",
  });
  assert.equal(
    one(col("c", 2950, "uuid"), USER_ID).field,
    '{"type":"string","optional":true,"name":"io.debezium.data.Uuid","version":1,"field":"c"}',
  );
  assert.deepEqual(one(col("c", 3802, "jsonb"), '{"a": [1, 2]}'), {
    field: '{"type":"string","optional":true,"name":"io.debezium.data.Json","version":1,"field":"c"}',
    value: '"{\\"a\\": [1, 2]}"',
  });
  assert.equal(one(col("c", 114, "json"), "[]").value, '"[]"');
});

Deno.test("bytea is Connect bytes, written as base64 (binary.handling.mode=bytes)", () => {
  assert.deepEqual(one(col("c", 17, "bytea"), "\\x00ff10"), {
    field: '{"type":"bytes","optional":true,"field":"c"}',
    value: '"AP8Q"',
  });
  assert.equal(one(col("c", 17, "bytea"), "\\x").value, '""');
});

Deno.test("date: days since 1970 as a Java int, BC and far-future dates, infinity as Debezium's wrapped far dates", () => {
  const date = (text: string) => one(col("c", 1082, "date"), text).value;
  assert.equal(
    one(col("c", 1082, "date"), "1970-01-01").field,
    '{"type":"int32","optional":true,"name":"io.debezium.time.Date","version":1,"field":"c"}',
  );
  assert.deepEqual(
    ["1970-01-01", "2025-07-03", "1969-12-31", "0044-03-15 BC", "0001-01-01 BC", "5874897-12-31"].map(date),
    [
      "0",
      "20272",
      "-1",
      "-735160",
      "-719528",
      "2145042905",
    ],
  );
  // POSITIVE/NEGATIVE_INFINITY_LOCAL_DATE (-5877611-06-21/22) through Date.toEpochDay's int cast.
  assert.deepEqual(["infinity", "-infinity"].map(date), ["-2147472692", "-2147472691"]);
});

Deno.test("time is MicroTime (24:00:00 included), time(0..3) is Time in milliseconds; timetz is ZonedTime in UTC", () => {
  assert.deepEqual(one(col("c", 1083, "time"), "13:51:30"), {
    field: '{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"c"}',
    value: "49890000000",
  });
  assert.equal(one(col("c", 1083, "time"), "24:00:00").value, "86400000000");
  assert.deepEqual(one(col("c", 1083, "time", { typmod: 3 }), "13:51:30.123"), {
    field: '{"type":"int32","optional":true,"name":"io.debezium.time.Time","version":1,"field":"c"}',
    value: "49890123",
  });
  // AbstractRecordsProducerTest: '13:51:30.123789+02:00'::TIMETZ -> "11:51:30.123789Z", .123+02 -> "11:51:30.123Z".
  assert.deepEqual(one(col("c", 1266, "timetz"), "13:51:30.123789+02"), {
    field: '{"type":"string","optional":true,"name":"io.debezium.time.ZonedTime","version":1,"field":"c"}',
    value: '"11:51:30.123789Z"',
  });
  assert.equal(one(col("c", 1266, "timetz"), "13:51:30.123+02").value, '"11:51:30.123Z"');
  assert.equal(one(col("c", 1266, "timetz"), "01:00:00+02").value, '"23:00:00Z"');
});

Deno.test("interval is MicroDuration: months of 365.25 / 12 days, in microseconds (interval.handling.mode=numeric)", () => {
  assert.equal(
    one(col("c", 1186, "interval"), "1 day").field,
    '{"type":"int64","optional":true,"name":"io.debezium.time.MicroDuration","version":1,"field":"c"}',
  );
  // AbstractRecordsProducerTest: 'P1Y2M3DT4H5M6.78S' is MicroDuration.durationMicros(1, 2, 3, 4, 5, 6, 780000, 365.25 / 12).
  const javaMicros = Math.trunc(((((14 * (365.25 / 12) + 3) * 24 + 4) * 60 + 5) * 60 + 6) * 1e6 + 780000);
  assert.equal(one(col("c", 1186, "interval"), "1 year 2 mons 3 days 04:05:06.78").value, String(javaMicros));
  assert.equal(one(col("c", 1186, "interval"), "-1 days +02:00:00").value, "-79200000000");
  assert.equal(one(col("c", 1186, "interval"), "-03:00:00.5").value, "-10800500000");
  assert.equal(one(col("c", 1186, "interval"), "00:00:00").value, "0");
});

Deno.test("timestamp is MicroTimestamp (Timestamp in ms at precision <= 3), infinity as pgjdbc's bounds, BC exact", () => {
  const ts = (text: string, typmod = -1) => one(col("c", 1114, "timestamp", { typmod }), text);
  assert.deepEqual(ts("2016-11-04 13:51:30.123456"), {
    field: '{"type":"int64","optional":true,"name":"io.debezium.time.MicroTimestamp","version":1,"field":"c"}',
    value: "1478267490123456",
  });
  assert.deepEqual(ts("2016-11-04 13:51:30.124", 3), {
    field: '{"type":"int64","optional":true,"name":"io.debezium.time.Timestamp","version":1,"field":"c"}',
    value: "1478267490124",
  });
  // AbstractRecordsProducerTest: ts_pinf/ts_ninf = PGStatement.DATE_POSITIVE/NEGATIVE_INFINITY; ts_min below.
  assert.equal(ts("infinity").value, "9223372036825200000");
  assert.equal(ts("-infinity").value, "-9223372036832400000");
  assert.equal(ts("4713-12-31 23:59:59.999999 BC").value, "-210831897600000001");
  assert.equal(ts("294247-01-01 23:59:59.999999").value, "9223371331199999999"); // ts_max
});

Deno.test("timestamptz is ZonedTimestamp in UTC with the column's fraction digits; infinity, BC and far years", () => {
  const tz = (text: string, typmod = -1) => one(col("c", 1184, "timestamptz", { typmod }), text).value;
  assert.equal(
    one(col("c", 1184, "timestamptz"), "infinity").field,
    '{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"c"}',
  );
  assert.deepEqual(
    [
      "2016-11-04 13:51:30.123456+02",
      "2025-07-03 00:30:00-05:30",
      "21016-11-04 13:51:30.123456+07",
      "21016-11-04 13:51:30+07",
      "4714-12-31 23:59:59.999999+00 BC",
      "0044-03-15 12:00:00+00:53:28 BC",
      "infinity",
      "-infinity",
    ].map((t) => tz(t)),
    [
      '"2016-11-04T11:51:30.123456Z"',
      '"2025-07-03T06:00:00.000000Z"',
      '"+21016-11-04T06:51:30.123456Z"',
      '"+21016-11-04T06:51:30.000000Z"',
      '"-4713-12-31T23:59:59.999999Z"',
      '"-0043-03-15T11:06:32.000000Z"',
      '"infinity"',
      '"-infinity"',
    ],
  );
  assert.equal(tz("2025-07-03 10:11:12.5+00", 3), '"2025-07-03T10:11:12.500Z"');
  assert.equal(tz("2025-07-03 10:11:12+00", 0), '"2025-07-03T10:11:12Z"'); // width 0: ISO_OFFSET_DATE_TIME
});

Deno.test("a UTC timestamptz text (the capture's sessions) encodes as the same instant written in another offset", () => {
  const tz = (text: string, typmod = -1) => one(col("c", 1184, "timestamptz", { typmod }), text).value;
  const instants = [
    ["2025-07-03 10:11:12.123456+00", "2025-07-03 12:11:12.123456+02"],
    ["2025-07-03 10:11:12.5+00", "2025-07-03 05:41:12.5-04:30"],
    ["2025-07-03 10:11:12+00", "2025-07-03 11:11:12+01"],
    ["2024-02-29 23:59:59.000001+00", "2024-03-01 00:59:59.000001+01"],
    ["0044-03-15 12:00:00.12+00", "0044-03-15 13:00:00.12+01"],
  ];
  for (const typmod of [-1, 0, 1, 3, 6]) {
    for (const [utc, offset] of instants) assert.equal(tz(utc, typmod), tz(offset, typmod), `${utc} (${typmod})`);
  }
  assert.equal(tz("2025-07-03 10:11:12.120000+00", 0), '"2025-07-03T10:11:12.12Z"');
});

Deno.test("a NULL is null in a nullable column, the default where the column has one, the fallback in a required one", () => {
  assert.equal(one(col("c", 23, "int4"), null).value, "null");
  // JsonConverter writes a null with a schema default as the default.
  assert.deepEqual(one(col("c", 23, "int4", { defaultText: "7" }), null), {
    field: '{"type":"int32","optional":true,"default":7,"field":"c"}',
    value: "7",
  });
  // JdbcValueConverters.convertValue: a required column's NULL (a key-only old tuple) is the type's fallback.
  assert.equal(one(col("c", 1043, "varchar", { optional: false }), null).value, '""');
  assert.equal(one(col("c", 1184, "timestamptz", { optional: false }), null).value, '"1970-01-01T00:00:00Z"');
  assert.equal(one(col("c", 1700, "numeric", { optional: false, typmod: NUMERIC_14_2 }), null).value, '"AA=="');
});

Deno.test("an unchanged TOASTed text is Debezium's placeholder; one it cannot place null, or an EncodingError if required", () => {
  assert.equal(one(col("c", 25, "text"), undefined).value, '"__debezium_unavailable_value"');
  assert.equal(one(col("c", 17, "bytea"), undefined).value, `"${btoa("__debezium_unavailable_value")}"`);
  assert.equal(one(col("c", 1700, "numeric"), undefined).value, "null");
  assert.throws(
    () => one(col("c", 1700, "numeric", { optional: false }), undefined),
    /public\.t\.c: numeric value an unchanged TOASTed/,
  );
});

Deno.test("columns of types Debezium leaves out are left out; a type it cannot write stops with a line", () => {
  const { field, value } = one(col("c", 3220, "pg_lsn"), "0/16B3748");
  assert.equal(field, '{"type":"int32","optional":false,"field":"id"}'); // only the id field is left
  assert.equal(value, ""); // "id":1 and nothing after it
  assert.deepEqual(codecFor({ typeOid: 3220, typeName: "pg_lsn", typmod: -1 }, DEBEZIUM_VALUE_DEFAULTS), {
    skipped: true,
  });
  // numeric(5,-2) (PostgreSQL 15): its scale is negative, which Connect's Decimal schema cannot say.
  const negative = col("c", 1700, "numeric", { typmod: ((5 << 16) | (-2 & 0x7ff)) + 4 });
  assert.throws(() => one(negative, "1200"), /type numeric is not supported .*negative scale/);
});

Deno.test("an enum is io.debezium.data.Enum with its labels as the allowed parameter", () => {
  assert.deepEqual(one(col("c", 90000, "mood", { enumValues: ["sad", "ok", "happy"] }), "ok"), {
    field: '{"type":"string","optional":true,"name":"io.debezium.data.Enum","version":1,' +
      '"parameters":{"allowed":"sad,ok,happy"},"field":"c"}',
    value: '"ok"',
  });
});

Deno.test("a value that cannot be encoded stops with a line naming table, column, value and the row's key", () => {
  assert.throws(
    () =>
      encoder.encode(USERS, {
        op: "c",
        before: null,
        after: [USER_ID, "x", "03/02/1990", null, null, "f"],
        source: STREAMED,
      }, NOW_NS),
    (e) =>
      e instanceof EncodingError &&
      e.message ===
        `public.users.dob: date value "03/02/1990" cannot be encoded as Debezium does (row key id=${USER_ID})`,
  );
});

Deno.test("a table without primary key or unique index has null keys, also on its tombstones", () => {
  const spec: TableSpec = { schema: "public", table: "log", columns: [col("line", 25, "text")], keyColumns: [] };
  const records = encoder.encode(spec, { op: "d", before: ["x"], after: null, source: STREAMED }, NOW_NS);
  assert.deepEqual(records.map((r) => [r.key, r.value === null]), [[null, false], [null, true]]);
});

Deno.test("a composite key follows the primary key's column order and its schema carries defaults", () => {
  const spec: TableSpec = {
    schema: "s",
    table: "pairs",
    columns: [
      col("a", 23, "int4", { optional: false, key: true, defaultText: "0" }),
      col("b", 25, "text", { optional: false, key: true }),
    ],
    keyColumns: ["b", "a"],
  };
  const [record] = encoder.encode(spec, { op: "c", before: null, after: ["5", "x"], source: STREAMED }, NOW_NS);
  assert.equal(record.topic, "cdc.s.pairs");
  assert.equal(
    record.key,
    '{"schema":{"type":"struct","fields":[{"type":"string","optional":false,"field":"b"},' +
      '{"type":"int32","optional":false,"default":0,"field":"a"}],"optional":false,"name":"cdc.s.pairs.Key"},' +
      '"payload":{"b":"x","a":5}}',
  );
});

Deno.test("snapshot markers follow Debezium's SnapshotMarkerResolver per table, the snapshot's last row always last", () => {
  const markers = (counts: number[]) =>
    counts.map((n, t) => Array.from({ length: n }, (_, r) => snapshotMarker(counts, t, r)));
  // The compat test's tables as Debezium 3.6.1 marked them: users 5 rows, orders 2, all_types 3.
  assert.deepEqual(markers([5, 2, 3]), [
    ["first", "true", "true", "true", "last_in_data_collection"],
    ["first_in_data_collection", "last_in_data_collection"],
    ["first_in_data_collection", "true", "last"],
  ]);
  // A one-row table's row is its last before its first; a lone row is the snapshot's last.
  assert.deepEqual(markers([2, 1, 2]), [["first", "last_in_data_collection"], ["last_in_data_collection"], [
    "first_in_data_collection",
    "last",
  ]]);
  assert.deepEqual(markers([1]), [["last"]]);
  // An empty first table leaves no "first"; an empty last table moves "last" to the row before it.
  assert.deepEqual(markers([0, 2, 2, 0]), [[], ["first_in_data_collection", "last_in_data_collection"], [
    "first_in_data_collection",
    "last",
  ], []]);
});

Deno.test("without schemas, key and value are the payloads alone, as JsonConverter writes them with schemas.enable=false", () => {
  const bare = new DebeziumEncoder({
    prefix: "cdc",
    database: "cdc_db",
    version: "0.1.0-cdc-pipeline",
    schemas: false,
  });
  const changes = [
    { op: "c" as const, before: null, after: ann, source: STREAMED },
    { op: "u" as const, before: ann, after: annSmith, source: STREAMED },
    { op: "d" as const, before: annSmith, after: null, source: STREAMED },
    { op: "u" as const, before: ann, after: [OTHER_ID, ...ann.slice(1)], source: STREAMED },
  ];
  for (const change of changes) {
    const full = encoder.encode(USERS, change, NOW_NS);
    const payloads = bare.encode(USERS, change, NOW_NS);
    assert.equal(payloads.length, full.length);
    payloads.forEach((record, i) => {
      // Text, not parsed JSON: ts_ns is past a double's precision. With schemas the payload closes the record.
      assert.ok(full[i].key!.endsWith(`,"payload":${record.key}}`), `key ${record.key}`);
      if (full[i].value === null) assert.equal(record.value, null);
      else assert.ok(String(full[i].value).endsWith(`,"payload":${record.value}}`), `value ${record.value}`);
      assert.ok(record.key!.startsWith('{"id":'), "the key is the key's payload");
      assert.ok(!String(record.value).includes('"schema":{'), "no schema in the value");
    });
  }
});
