/**
 * The Debezium encoding against hand-checked JSON: what the Debezium PostgreSQL connector 3.6
 * writes through JsonConverter (schemas enabled) for the same rows, key order included.
 */
import assert from "node:assert/strict";
import { checkRelation, snapshotMarker } from "../lib/capture.ts";
import {
  CAPTURED_TABLES,
  type ChangeSource,
  DebeziumEncoder,
  decimalBase64,
  epochDays,
  zonedTimestamp,
} from "../lib/debezium.ts";

const encoder = new DebeziumEncoder({ prefix: "cdc", database: "cdc_db", version: "0.1.0-cdc-pipeline" });
const NOW_US = 1_751_537_473_000_123n;
const STREAMED: ChangeSource = {
  tsUs: 1_751_537_472_123_456n,
  txId: 771,
  lsn: 22_000_040n,
  lastCommitLsn: 22_000_000n,
};
const USER_ID = "6f1c0a4e-8a55-4f0b-9d7c-2f6a1b9e0c11";
const ORDER_ID = "0c9d8e7f-1a2b-4c3d-8e4f-5a6b7c8d9e0f";

const USER_KEY = `{"schema":{"type":"struct","fields":[{"type":"string","optional":false,` +
  `"name":"io.debezium.data.Uuid","version":1,"field":"id"}],"optional":false,"name":"cdc.public.users.Key"},` +
  `"payload":{"id":"${USER_ID}"}}`;

const USER_ROW_FIELDS = `[{"type":"string","optional":false,"name":"io.debezium.data.Uuid","version":1,"field":"id"},` +
  `{"type":"string","optional":false,"field":"name"},` +
  `{"type":"int32","optional":false,"name":"io.debezium.time.Date","version":1,"field":"dob"},` +
  `{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"created_at"},` +
  `{"type":"string","optional":true,"name":"io.debezium.time.ZonedTimestamp","version":1,"field":"modified_at"},` +
  `{"type":"boolean","optional":true,"default":false,"field":"is_deleted"}]`;

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

const source = (table: string, snapshot = "false", txId = "771", sequence = '"[\\"22000000\\",\\"22000040\\"]"') =>
  `{"version":"0.1.0-cdc-pipeline","connector":"postgresql","name":"cdc","ts_ms":1751537472123,` +
  `"snapshot":"${snapshot}","db":"cdc_db","sequence":${sequence},"ts_us":1751537472123456,` +
  `"ts_ns":1751537472123456000,"schema":"public","table":"${table}","txId":${txId},"lsn":22000040,"xmin":null,` +
  `"origin":null,"origin_lsn":null}`;
const TAIL = `"transaction":null,"OP","ts_ms":1751537473000,"ts_us":1751537473000123,"ts_ns":1751537473000123000}`;
const tail = (op: string) => TAIL.replace('"OP"', `"op":"${op}"`);

const ann = [USER_ID, "Ann Lee", "1990-02-03", "2025-07-03 10:11:12.123456+00", null, "f"];
const annJson = `{"id":"${USER_ID}","name":"Ann Lee","dob":7338,"created_at":"2025-07-03T10:11:12.123456Z",` +
  `"modified_at":null,"is_deleted":false}`;
const annSmith = [USER_ID, "Ann Smith", "1990-02-03", "2025-07-03 10:11:12.123456+00", "2025-07-03 12:00:00.5+02", "f"];
const annSmithJson = `{"id":"${USER_ID}","name":"Ann Smith","dob":7338,"created_at":"2025-07-03T10:11:12.123456Z",` +
  `"modified_at":"2025-07-03T10:00:00.500000Z","is_deleted":false}`;

Deno.test("a users insert is Debezium's create event: key, envelope schema and payload byte for byte", () => {
  const records = encoder.encode(
    CAPTURED_TABLES.users,
    { op: "c", before: null, after: ann, source: STREAMED },
    NOW_US,
  );
  assert.equal(records.length, 1);
  assert.equal(records[0].topic, "cdc.public.users");
  assert.equal(records[0].key, USER_KEY);
  assert.equal(
    records[0].value,
    `{"schema":${USER_VALUE_SCHEMA},"payload":{"before":null,"after":${annJson},"source":${source("users")},` +
      `${tail("c")}}`,
  );
  assert.doesNotThrow(() => JSON.parse(records[0].value!), "the value is JSON");
});

Deno.test("a users update carries the old row as before (REPLICA IDENTITY FULL) and the new row as after", () => {
  const [record] = encoder.encode(
    CAPTURED_TABLES.users,
    { op: "u", before: ann, after: annSmith, source: STREAMED },
    NOW_US,
  );
  assert.equal(
    JSON.stringify(JSON.parse(record.value!).payload),
    `{"before":${annJson},"after":${annSmithJson},"source":${source("users")},${tail("u")}`,
  );
});

Deno.test("a users delete is a delete event followed by a tombstone with the same key", () => {
  const records = encoder.encode(
    CAPTURED_TABLES.users,
    { op: "d", before: annSmith, after: null, source: STREAMED },
    NOW_US,
  );
  assert.equal(records.length, 2);
  assert.equal(
    JSON.stringify(JSON.parse(records[0].value!).payload),
    `{"before":${annSmithJson},"after":null,"source":${source("users")},${tail("d")}`,
  );
  assert.deepEqual(records[1], { topic: "cdc.public.users", key: USER_KEY, value: null });
});

const order = [ORDER_ID, "PLACED", USER_ID, "3", "12.34", "2025-07-03 10:11:12+00", null, "f"];
const orderJson = (status: string, modified: string | null, deleted: boolean) =>
  `{"id":"${ORDER_ID}","status":"${status}","user_id":"${USER_ID}","quantity":3,"total_amount":"BNI=",` +
  `"placed_at":"2025-07-03T10:11:12.000000Z","modified_at":${modified},"is_deleted":${deleted}}`;

Deno.test("orders insert, update and delete: Decimal as base64 with scale 2 and precision 10, int32 quantity", () => {
  const spec = CAPTURED_TABLES.orders;
  const shipped = [...order.slice(0, 1), "SHIPPED", ...order.slice(2, 6), "2025-07-04 08:00:00+00", "f"];
  const cancelled = [...order.slice(0, 1), "CANCELLED", ...order.slice(2, 6), "2025-07-05 08:00:00+00", "t"];
  const [created] = encoder.encode(spec, { op: "c", before: null, after: order, source: STREAMED }, NOW_US);
  const [updated] = encoder.encode(spec, { op: "u", before: order, after: shipped, source: STREAMED }, NOW_US);
  const [deleted, tombstone] = encoder.encode(
    spec,
    { op: "d", before: cancelled, after: null, source: STREAMED },
    NOW_US,
  );
  const payload = (value: string | null) => JSON.stringify(JSON.parse(value!).payload);
  assert.equal(
    payload(created.value),
    `{"before":null,"after":${orderJson("PLACED", "null", false)},"source":${source("orders")},${tail("c")}`,
  );
  assert.equal(
    payload(updated.value),
    `{"before":${orderJson("PLACED", "null", false)},` +
      `"after":${orderJson("SHIPPED", '"2025-07-04T08:00:00.000000Z"', false)},"source":${source("orders")},${
        tail("u")
      }`,
  );
  assert.equal(
    payload(deleted.value),
    `{"before":${orderJson("CANCELLED", '"2025-07-05T08:00:00.000000Z"', true)},"after":null,` +
      `"source":${source("orders")},${tail("d")}`,
  );
  assert.equal(tombstone.value, null);
  const schema = JSON.parse(created.value!).schema;
  assert.equal(schema.name, "cdc.public.orders.Envelope");
  assert.deepEqual(schema.fields[1].fields[4], {
    type: "bytes",
    optional: false,
    name: "org.apache.kafka.connect.data.Decimal",
    version: 1,
    parameters: { scale: "2", "connect.decimal.precision": "10" },
    field: "total_amount",
  });
  assert.equal(JSON.parse(created.key).schema.name, "cdc.public.orders.Key");
});

Deno.test("a snapshot row is op r with source.snapshot set, no txId, and the slot's consistent point as lsn", () => {
  const [record] = encoder.encode(CAPTURED_TABLES.users, {
    op: "r",
    before: null,
    after: ann,
    source: { ...STREAMED, snapshot: "first", txId: null, lastCommitLsn: null },
  }, NOW_US);
  assert.equal(
    JSON.stringify(JSON.parse(record.value!).payload),
    `{"before":null,"after":${annJson},"source":${source("users", "first", "null", '"[null,\\"22000040\\"]"')},${
      tail("r")
    }`,
  );
});

Deno.test("snapshot markers: first, first and last per table, last, true between", () => {
  // 2 users then 3 orders
  const markers = [[0, 0, 2], [1, 1, 2], [2, 0, 3], [3, 1, 3], [4, 2, 3]].map(([overall, index, inTable]) =>
    snapshotMarker(overall, 5, index, inTable)
  );
  assert.deepEqual(markers, ["first", "last_in_data_collection", "first_in_data_collection", "true", "last"]);
});

Deno.test("numeric values become big-endian two's-complement unscaled bytes, as Java's BigInteger writes them", () => {
  assert.equal(decimalBase64("12.34", 2), "BNI="); // 1234 = 0x04D2
  assert.equal(decimalBase64("0.00", 2), "AA=="); // 0 = 0x00
  assert.equal(decimalBase64("1.28", 2), "AIA="); // 128 = 0x0080: a sign byte keeps it positive
  assert.equal(decimalBase64("-1.00", 2), "nA=="); // -100 = 0x9C
  assert.equal(decimalBase64("-1.28", 2), "gA=="); // -128 = 0x80, one byte
  assert.equal(decimalBase64("-1.29", 2), "/38="); // -129 = 0xFF7F
  assert.equal(decimalBase64("12.3", 2), "BM4="); // 1230 = 0x04CE
  assert.equal(decimalBase64("99999999.99", 2), "AlQL4/8="); // 9999999999 = 0x02540BE3FF
  assert.equal(decimalBase64("1.234", 2), null, "more digits than the scale is refused");
  assert.equal(decimalBase64("NaN", 2), null);
});

Deno.test("dates become days since 1970 and timestamptz an ISO-8601 UTC string with six fraction digits", () => {
  assert.equal(epochDays("1970-01-01"), 0);
  assert.equal(epochDays("2025-07-03"), 20_272);
  assert.equal(epochDays("1969-12-31"), -1);
  assert.equal(zonedTimestamp("2025-07-03 10:11:12.123456+00"), "2025-07-03T10:11:12.123456Z");
  assert.equal(zonedTimestamp("2025-07-03 10:11:12+00"), "2025-07-03T10:11:12.000000Z");
  assert.equal(zonedTimestamp("2025-07-03 10:11:12.1234+02"), "2025-07-03T08:11:12.123400Z");
  assert.equal(zonedTimestamp("2025-07-03 00:30:00-05:30"), "2025-07-03T06:00:00.000000Z");
  assert.equal(zonedTimestamp("infinity"), null);
});

Deno.test("a value the encoder cannot represent stops with a line naming table, column and value", () => {
  const bad = [...ann];
  bad[2] = "infinity";
  assert.throws(
    () => encoder.encode(CAPTURED_TABLES.users, { op: "c", before: null, after: bad, source: STREAMED }, NOW_US),
    /users\.dob: date value "infinity" cannot be encoded/,
  );
});

Deno.test("a table whose columns differ from the contract's is refused, naming both column lists", () => {
  const columns = CAPTURED_TABLES.users.columns.map((c, i) => ({
    name: c.name,
    typeOid: i === 2
      ? 25
      : { uuid: 2950, varchar: 1043, date: 1082, timestamptz: 1184, int4: 23, numeric: 1700, bool: 16 }[c.kind],
    typeMod: -1,
    key: i === 0,
  }));
  const relation = { relationId: 1, schema: "public", table: "users", replicaIdentity: "f", columns };
  assert.throws(() => checkRelation(relation), /table users has columns .*dob:25.*the capture encodes .*dob:1082/);
  assert.equal(
    checkRelation({ ...relation, columns: columns.map((c, i) => (i === 2 ? { ...c, typeOid: 1082 } : c)) }).table,
    "users",
  );
});
