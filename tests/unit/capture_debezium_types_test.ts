/**
 * The types beyond the built-in scalars and Debezium's value options, against exact JSON: what the
 * Debezium PostgreSQL connector 3.6.1 writes for the same text (tests/capture_debezium_types_test.ts
 * checks the same against the real engine). Each expectation names the Debezium class it follows.
 */
import assert from "node:assert/strict";
import { type ColumnSpec, DebeziumEncoder, type TableSpec } from "../../lib/capture_debezium.ts";
import { buildTableSpec } from "../../lib/capture_catalog.ts";
import { EncodingError } from "../../lib/capture_errors.ts";
import { decodePgOutput } from "../../lib/capture_pgoutput.ts";
import type { ChangeSource } from "../../lib/capture_reader.ts";
import { arrayElements, hashMapOrder, hstorePairs } from "../../lib/capture_debezium_types.ts";
import { DEBEZIUM_VALUE_DEFAULTS, unscaledBase64, type ValueOptions } from "../../lib/capture_debezium_values.ts";
import { insert, relation } from "./_frames.ts";
import { catalogType, col } from "./_capture_parts.ts";

const SOURCE: ChangeSource = { tsUs: 1_751_537_472_123_456n, txId: 771, lsn: 22_000_040n, lastCommitLsn: 22_000_000n };
const PLACEHOLDER = "__debezium_unavailable_value";

/** One column's schema field and value JSON, under `options`; `undefined` text: an unchanged TOASTed value. */
function one(
  column: ColumnSpec,
  text: string | null | undefined,
  options: Partial<ValueOptions> = {},
): { field: string; value: string } {
  const encoder = new DebeziumEncoder({
    prefix: "cdc",
    database: "db",
    version: "v",
    values: { ...DEBEZIUM_VALUE_DEFAULTS, ...options },
  });
  const spec: TableSpec = {
    schema: "public",
    table: "t",
    columns: [col("id", 23, "int4", { optional: false, key: true }), column],
    keyColumns: ["id"],
  };
  const [record] = encoder.encode(spec, { op: "c", before: null, after: ["1", text], source: SOURCE }, 0n);
  const json = String(record.value);
  const parsed = JSON.parse(json);
  const fields = parsed.schema.fields[1].fields;
  const after = json.slice(json.indexOf('"after":{"id":1') + 15, json.indexOf(',"source":'));
  const value = after.startsWith(",") ? after.slice(after.indexOf(":") + 1, -1) : "(left out)";
  return { field: fields.length > 1 ? JSON.stringify(fields.at(-1)) : "(left out)", value };
}

const valueOf = (column: ColumnSpec, text: string | null | undefined, options: Partial<ValueOptions> = {}) =>
  one(column, text, options).value;
const element = (typeOid: number, typeName: string, extra = {}) => ({ typeOid, typeName, domain: false, ...extra });
const array = (oid: number, name: string, elem: ReturnType<typeof element>, typmod = -1) =>
  col("c", oid, `_${name}`, { element: elem, typmod });

// ---- arrays ----------------------------------------------------------------------------------------------

Deno.test("array_out's text: quoted elements with escapes, NULL, empty, lower bounds; more dimensions refused", () => {
  assert.deepEqual(arrayElements(`{1,NULL,"NULL","a \\"b\\" \\\\c",""}`), ["1", null, "NULL", 'a "b" \\c', ""]);
  assert.deepEqual(arrayElements("{}"), []);
  assert.deepEqual(arrayElements("[0:1]={7,8}"), ["7", "8"]);
  assert.equal(arrayElements("{{1,2},{3,4}}"), undefined);
  assert.equal(arrayElements("1,2"), undefined);
});

Deno.test("a multi-dimensional array is a null per sub-array, as Debezium's element converters fail on them", () => {
  assert.equal(valueOf(array(1007, "int4", element(23, "int4")), "{{1,2},{3,4},{5,6}}"), "[null,null,null]");
  assert.equal(valueOf(array(1009, "text", element(25, "text")), '[0:1][1:1]={{"}{"},{x}}'), "[null,null]");
});

Deno.test("an int4[] is an array of optional int32, NULL elements null, an empty array []", () => {
  assert.deepEqual(one(array(1007, "int4", element(23, "int4")), "{1,NULL,-2147483648}"), {
    field: '{"type":"array","items":{"type":"int32","optional":true},"optional":true,"field":"c"}',
    value: "[1,null,-2147483648]",
  });
  assert.equal(valueOf(array(1007, "int4", element(23, "int4")), "{}"), "[]");
  assert.equal(valueOf(array(1007, "int4", element(23, "int4")), null), "null");
});

Deno.test("array elements take the array's typmod: numeric(10,2)[] Decimal items, time[] MicroTime in millis", () => {
  const numeric = array(1231, "numeric", element(1700, "numeric"), ((10 << 16) | 2) + 4);
  assert.deepEqual(one(numeric, "{1.50,NULL}"), {
    field: '{"type":"array","items":{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal",' +
      '"version":1,"parameters":{"scale":"2","connect.decimal.precision":"10"}},"optional":true,"field":"c"}',
    value: `["${unscaledBase64(150n)}",null]`,
  });
  // pgjdbc reads time elements as java.sql.Time: milliseconds; timetz ones whole seconds, shifted to UTC.
  assert.equal(valueOf(array(1183, "time", element(1083, "time")), "{13:14:15.123456}"), "[47655123000]");
  assert.equal(valueOf(array(1270, "timetz", element(1266, "timetz")), '{"13:14:15.123456+02"}'), '["11:14:15Z"]');
  assert.equal(valueOf(array(1182, "date", element(1082, "date")), "{infinity,-infinity}"), "[-622191234,-625821272]");
});

Deno.test("enum[] items are required Enums; bytea[] follows binary.handling.mode; text-like elements as they are", () => {
  const mood = element(90001, "mood", { enumValues: ["sad", "ok"] });
  assert.deepEqual(one(array(90002, "mood", mood), "{ok,NULL}"), {
    field: '{"type":"array","items":{"type":"string","optional":false,"name":"io.debezium.data.Enum","version":1,' +
      '"parameters":{"allowed":"sad,ok"}},"optional":true,"field":"c"}',
    value: '["ok",null]',
  });
  assert.equal(valueOf(array(1001, "bytea", element(17, "bytea")), '{"\\\\x00ff",NULL}'), '["AP8=",null]');
  assert.equal(valueOf(array(1001, "bytea", element(17, "bytea")), '{"\\\\x00ff"}', { binary: "hex" }), '["00ff"]');
  assert.equal(valueOf(array(1009, "text", element(25, "text")), '{"a b",ünï}'), '["a b","ünï"]');
});

Deno.test("arrays Debezium has no schema for are left out; bit[] stops; unknown elements are bytes with include.unknown", () => {
  assert.equal(one(array(1187, "interval", element(1186, "interval")), "{1 day}").field, "(left out)");
  assert.equal(one(array(791, "money", element(790, "money")), "{$1.00}").field, "(left out)");
  const domain = element(90003, "d_text", { domain: true });
  assert.equal(one(array(90004, "d_text", domain), "{a}").field, "(left out)");
  assert.deepEqual(one(array(90004, "d_text", domain), "{a}", { includeUnknown: true }), {
    field: '{"type":"array","items":{"type":"bytes","optional":false},"optional":true,"field":"c"}',
    value: "null",
  });
  // bit(n)[]: Debezium's schema is the element's (Bits) and it writes null there; a required column stops.
  assert.deepEqual(one(array(1561, "bit", element(1560, "bit"), 3), "{101}"), {
    field: '{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","version":1,"parameters":{"length":"3"},' +
      '"field":"c"}',
    value: "null",
  });
  assert.throws(
    () => one({ ...array(1561, "bit", element(1560, "bit"), 3), optional: false }, "{101}"),
    /bit\[\] is not an array/,
  );
  const lsn = array(3221, "pg_lsn", element(3220, "pg_lsn"));
  assert.equal(one(lsn, "{0/1}").field, "(left out)");
  assert.deepEqual(one(lsn, "{0/1}", { includeUnknown: true }), {
    field: '{"type":"array","items":{"type":"bytes","optional":false},"optional":true,"field":"c"}',
    value: `["${btoa("0/1")}"]`,
  });
});

Deno.test("an unchanged TOASTed array is UnchangedToastedPlaceholder's list for its element type", () => {
  assert.equal(valueOf(array(1009, "text", element(25, "text")), undefined), `["${PLACEHOLDER}"]`);
  const bytes = [...PLACEHOLDER].map((c) => c.charCodeAt(0)).join(",");
  assert.equal(valueOf(array(1007, "int4", element(23, "int4")), undefined), `[${bytes}]`);
  assert.equal(valueOf(array(1016, "int8", element(20, "int8")), undefined), `[${bytes}]`);
  assert.equal(
    valueOf(array(2951, "uuid", element(2950, "uuid")), undefined),
    '["b68a35a7-17ad-35b3-af2a-ae46edb4545a"]',
  );
  assert.equal(valueOf(array(1001, "bytea", element(17, "bytea")), undefined), `["${btoa(PLACEHOLDER)}"]`);
  // Other element types get the placeholder text where Connect wants a list: warn mode leaves the field null.
  assert.equal(valueOf(array(1005, "int2", element(21, "int2")), undefined), "null");
  assert.equal(valueOf(array(1001, "bytea", element(17, "bytea")), undefined, { binary: "hex" }), "null");
  assert.equal(valueOf(array(1182, "date", element(1082, "date")), undefined, { time: "connect" }), "null");
  assert.throws(() => one({ ...array(1005, "int2", element(21, "int2")), optional: false }, undefined), EncodingError);
});

// ---- money, bit, point, text-like types -----------------------------------------------------------------------

Deno.test("money: Decimal at money.fraction.digits (HALF_UP), float64 with double, the plain decimal with string", () => {
  assert.deepEqual(one(col("c", 790, "money"), "$1,234.57"), {
    field: '{"type":"bytes","optional":true,"name":"org.apache.kafka.connect.data.Decimal","version":1,' +
      '"parameters":{"scale":"2"},"field":"c"}',
    value: `"${unscaledBase64(123457n)}"`,
  });
  assert.equal(valueOf(col("c", 790, "money"), "-$0.50", { moneyFractionDigits: 3 }), `"${unscaledBase64(-500n)}"`);
  assert.equal(valueOf(col("c", 790, "money"), "$0.05", { moneyFractionDigits: 1 }), `"${unscaledBase64(1n)}"`);
  assert.equal(valueOf(col("c", 790, "money"), "($1,000.25)", { decimal: "double" }), "-1000.25");
  assert.deepEqual(one(col("c", 790, "money"), "-$92,233,720,368,547,758.08", { decimal: "string" }), {
    field: '{"type":"string","optional":true,"field":"c"}',
    value: '"-92233720368547758.08"',
  });
  assert.equal(valueOf(col("c", 790, "money", { optional: false }), null, { decimal: "string" }), '"0.00"');
});

Deno.test("bit(1) and varbit(1) are booleans; bit(n) and varbit are Bits, the last character bit 0, little-endian", () => {
  assert.deepEqual(one(col("c", 1560, "bit", { typmod: 1 }), "1"), {
    field: '{"type":"boolean","optional":true,"field":"c"}',
    value: "true",
  });
  assert.equal(valueOf(col("c", 1562, "varbit", { typmod: 1 }), "0"), "false");
  assert.deepEqual(one(col("c", 1560, "bit", { typmod: 5 }), "10110"), {
    field: '{"type":"bytes","optional":true,"name":"io.debezium.data.Bits","version":1,"parameters":{"length":"5"},' +
      '"field":"c"}',
    value: `"${btoa("\x16")}"`,
  });
  // BitSet.toByteArray: as many bytes as the highest set bit needs, none for no bit set.
  assert.equal(valueOf(col("c", 1562, "varbit"), "1011000000110"), `"${btoa("\x06\x16")}"`);
  assert.equal(valueOf(col("c", 1560, "bit", { typmod: 5 }), "00000"), '""');
  assert.match(one(col("c", 1562, "varbit"), "1").field, /"length":"2147483647"/);
});

Deno.test("point is a Point struct: x, y, the WKB of a 2D point, no SRID", () => {
  const wkb = (x: number, y: number) => {
    const bytes = new Uint8Array(21);
    const view = new DataView(bytes.buffer);
    view.setUint8(0, 1);
    view.setUint32(1, 1, true);
    view.setFloat64(5, x, true);
    view.setFloat64(13, y, true);
    return btoa(String.fromCharCode(...bytes));
  };
  assert.deepEqual(one(col("c", 600, "point"), "(1.5,-2.25)"), {
    field: '{"type":"struct","fields":[{"type":"double","optional":false,"field":"x"},{"type":"double","optional":' +
      'false,"field":"y"},{"type":"bytes","optional":true,"field":"wkb"},{"type":"int32","optional":true,' +
      '"field":"srid"}],"optional":true,"name":"io.debezium.data.geometry.Point","version":1,"doc":"Geometry (POINT)",' +
      '"field":"c"}',
    value: `{"x":1.5,"y":-2.25,"wkb":"${wkb(1.5, -2.25)}","srid":null}`,
  });
  assert.equal(
    valueOf(col("c", 600, "point"), "(1e+300,-0)"),
    `{"x":1.0E300,"y":-0.0,"wkb":"${wkb(1e300, -0)}","srid":null}`,
  );
});

Deno.test("tsvector, xml, citext, ltree and isbn are strings, named where Debezium names them; TOASTed: the placeholder", () => {
  const field = (c: ColumnSpec) => one(c, "x").field;
  assert.equal(
    field(col("c", 3614, "tsvector")),
    '{"type":"string","optional":true,"name":"io.debezium.data.Tsvector","version":1,"field":"c"}',
  );
  assert.equal(
    field(col("c", 142, "xml")),
    '{"type":"string","optional":true,"name":"io.debezium.data.Xml","version":1,"field":"c"}',
  );
  assert.equal(field(col("c", 90010, "citext")), '{"type":"string","optional":true,"field":"c"}');
  assert.equal(field(col("c", 90011, "isbn")), '{"type":"string","optional":true,"field":"c"}');
  assert.equal(
    field(col("c", 90012, "ltree")),
    '{"type":"string","optional":true,"name":"io.debezium.data.Ltree","version":1,"field":"c"}',
  );
  assert.equal(valueOf(col("c", 3614, "tsvector"), "'a' 'cat':2"), `"'a' 'cat':2"`);
  assert.equal(valueOf(col("c", 90010, "citext"), undefined), `"${PLACEHOLDER}"`);
});

// ---- hstore ------------------------------------------------------------------------------------------------

Deno.test("hstore's text as pgjdbc's HStoreConverter reads it, and a HashMap's iteration order", () => {
  assert.deepEqual(hstorePairs('"a"=>"1", "b c"=>NULL, "x\\"y"=>"\\\\z"'), [["a", "1"], ["b c", null], ['x"y', "\\z"]]);
  assert.deepEqual(hstorePairs(""), []);
  assert.equal(hstorePairs('"a"=>1'), undefined);
  // String.hashCode: "a" 97, "key" 106079, "b c" 96386: buckets 1, 15, 2 of 16.
  const hash = (s: string) => [...s].reduce((h, c) => (Math.imul(h, 31) + c.charCodeAt(0)) | 0, 0);
  assert.deepEqual(hashMapOrder([["key", 1], ["b c", 2], ["a", 3]], hash).map(([k]) => k), ["a", "b c", "key"]);
  // Past 12 entries a HashMap doubles to 32 buckets: 16 leaves bucket 0 for 16, 31 stays last (bucket 31).
  const keys = Array.from({ length: 13 }, (_, i) => [i === 12 ? 31 : i + 5, i] as [number, number]);
  assert.deepEqual(hashMapOrder(keys, (k) => k).map(([k]) => k).slice(-2), [16, 31]);
});

Deno.test("hstore: a Json text with hstore.handling.mode=json, a map with map; both in HashMap order", () => {
  const text = '"key"=>"value", "x\\"y"=>"\\\\z", "a"=>"1", "b c"=>NULL';
  assert.deepEqual(one(col("c", 90020, "hstore"), text), {
    field: '{"type":"string","optional":true,"name":"io.debezium.data.Json","version":1,"field":"c"}',
    value: JSON.stringify('{"a":"1","b c":null,"key":"value","x\\"y":"\\\\z"}'),
  });
  assert.deepEqual(one(col("c", 90020, "hstore"), text, { hstore: "map" }), {
    field: '{"type":"map","keys":{"type":"string","optional":false},"values":{"type":"string","optional":true},' +
      '"optional":true,"field":"c"}',
    value: '{"a":"1","b c":null,"key":"value","x\\"y":"\\\\z"}',
  });
  assert.equal(valueOf(col("c", 90020, "hstore"), undefined, { hstore: "map" }), `{"${PLACEHOLDER}":"${PLACEHOLDER}"}`);
  assert.equal(valueOf(col("c", 90020, "hstore"), undefined), JSON.stringify(`{"${PLACEHOLDER}":"${PLACEHOLDER}"}`));
});

// ---- PostGIS -------------------------------------------------------------------------------------------------

Deno.test("geometry and geography: the EWKB as wkb, the SRID when its flag is set", () => {
  const withSrid = "0101000020E6100000000000000000F03F0000000000000040"; // SRID=4326;POINT(1 2)
  const plainPoint = "0101000000000000000000F03F0000000000000040";
  const b64 = (hex: string) => btoa(String.fromCharCode(...hex.match(/../g)!.map((h) => parseInt(h, 16))));
  assert.deepEqual(one(col("c", 90030, "geometry"), withSrid), {
    field: '{"type":"struct","fields":[{"type":"bytes","optional":false,"field":"wkb"},{"type":"int32","optional":' +
      'true,"field":"srid"}],"optional":true,"name":"io.debezium.data.geometry.Geometry","version":1,' +
      '"doc":"Geometry","field":"c"}',
    value: `{"wkb":"${b64(withSrid)}","srid":4326}`,
  });
  assert.equal(valueOf(col("c", 90031, "geography"), plainPoint), `{"wkb":"${b64(plainPoint)}","srid":null}`);
  assert.match(one(col("c", 90031, "geography"), plainPoint).field, /"name":"io.debezium.data.geometry.Geography"/);
  assert.throws(() => one(col("c", 90030, "geometry"), "POINT(1 2)"), EncodingError);
});

// ---- pgvector, from pgoutput frames -------------------------------------------------------------------------

Deno.test("pgvector's vector, halfvec and sparsevec from a pgoutput Insert: DoubleVector, FloatVector, SparseDoubleVector", () => {
  const [VECTOR, HALFVEC, SPARSEVEC] = [91000, 91001, 91002];
  const decoded = decodePgOutput(relation(16400, "public", "items", [
    ["id", 23, -1, true],
    ["v", VECTOR, 3, false],
    ["h", HALFVEC, 2, false],
    ["s", SPARSEVEC, 5, false],
  ]));
  assert.equal(decoded.tag, "relation");
  const rel = decoded.tag === "relation" ? decoded.relation : undefined;
  const change = decodePgOutput(insert(16400, ["1", "[1,2.5,-3e-7]", "[0.1,65504]", "{3:1,1:0.5}/5"]));
  assert.equal(change.tag, "insert");
  const spec = buildTableSpec("public", "items", {
    columns: [],
    types: [
      catalogType(23, "int4"),
      catalogType(VECTOR, "vector"),
      catalogType(HALFVEC, "halfvec"),
      catalogType(SPARSEVEC, "sparsevec"),
    ],
    keyColumns: ["id"],
  }, rel);
  const encoder = new DebeziumEncoder({ prefix: "cdc", database: "db", version: "v" });
  const values = change.tag === "insert" ? change.after : [];
  const [record] = encoder.encode(spec, { op: "c", before: null, after: values, source: SOURCE }, 0n);
  const { schema, payload } = JSON.parse(String(record.value));
  const fields = schema.fields[1].fields.slice(1).map((f: unknown) => JSON.stringify(f));
  assert.deepEqual(fields, [
    '{"type":"array","items":{"type":"double","optional":false},"optional":true,' +
    '"name":"io.debezium.data.DoubleVector","version":1,"field":"v"}',
    '{"type":"array","items":{"type":"float","optional":false},"optional":true,' +
    '"name":"io.debezium.data.FloatVector","version":1,"field":"h"}',
    '{"type":"struct","fields":[{"type":"int16","optional":false,"field":"dimensions"},{"type":"map","keys":' +
    '{"type":"int16","optional":false},"values":{"type":"double","optional":false},"optional":false,' +
    '"field":"vector"}],"optional":true,"name":"io.debezium.data.SparseDoubleVector","version":1,' +
    '"doc":"Sparse double vector","field":"s"}',
  ]);
  const json = String(record.value);
  assert.match(
    json,
    /"v":\[1\.0,2\.5,-3\.0E-7\],"h":\[0\.1,65504\.0\],"s":\{"dimensions":5,"vector":\[\[1,0\.5\],\[3,1\.0\]\]\}/,
  );
  assert.equal(payload.after.id, 1);
});

// ---- value options --------------------------------------------------------------------------------------------

Deno.test("decimal.handling.mode: double writes float64 (NaN too), string the plain text at the scale (NAN...)", () => {
  const n10_3 = col("c", 1700, "numeric", { typmod: ((10 << 16) | 3) + 4 });
  assert.deepEqual(one(n10_3, "12345.678", { decimal: "double" }), {
    field: '{"type":"double","optional":true,"field":"c"}',
    value: "12345.678",
  });
  assert.equal(valueOf(col("c", 1700, "numeric"), "NaN", { decimal: "double" }), '"NaN"');
  assert.deepEqual(one(n10_3, "-1.5", { decimal: "string" }), {
    field: '{"type":"string","optional":true,"field":"c"}',
    value: '"-1.500"',
  });
  assert.equal(valueOf(col("c", 1700, "numeric"), "Infinity", { decimal: "string" }), '"POSITIVE_INFINITY"');
  assert.equal(valueOf(col("c", 1700, "numeric"), "0.000001", { decimal: "string" }), '"0.000001"');
});

Deno.test("decimal.handling.mode=precise cannot write NaN in a required column: the error names the setting", () => {
  assert.throws(
    () => one(col("c", 1700, "numeric", { optional: false }), "NaN"),
    (e) => e instanceof EncodingError && /--decimal-handling-mode double or string/.test(e.message),
  );
});

Deno.test("time.precision.mode: connect writes Kafka Connect's Date, Time and Timestamp in millis", () => {
  const connect = { time: "connect" } as const;
  assert.deepEqual(one(col("c", 1083, "time"), "13:14:15.123456", connect), {
    field: '{"type":"int32","optional":true,"name":"org.apache.kafka.connect.data.Time","version":1,"field":"c"}',
    value: "47655123",
  });
  assert.deepEqual(one(col("c", 1114, "timestamp"), "2024-02-29 13:14:15.123456", connect), {
    field: '{"type":"int64","optional":true,"name":"org.apache.kafka.connect.data.Timestamp","version":1,' +
      '"field":"c"}',
    value: "1709212455123",
  });
  assert.match(one(col("c", 1082, "date"), "1970-01-02", connect).field, /org\.apache\.kafka\.connect\.data\.Date/);
});

Deno.test("time.precision.mode=adaptive_time_microseconds: every time is MicroTime, timestamps as adaptive", () => {
  const micro = { time: "adaptive_time_microseconds" } as const;
  assert.deepEqual(one(col("c", 1083, "time", { typmod: 3 }), "13:14:15.123", micro), {
    field: '{"type":"int64","optional":true,"name":"io.debezium.time.MicroTime","version":1,"field":"c"}',
    value: "47655123000",
  });
  assert.match(
    one(col("c", 1114, "timestamp", { typmod: 3 }), "1970-01-01 00:00:01", micro).field,
    /io\.debezium\.time\.Timestamp"/,
  );
});

Deno.test("binary.handling.mode: base64, base64-url-safe (padded) and hex strings; TOASTed: null, null, the text", () => {
  const bytea = col("c", 17, "bytea");
  assert.deepEqual(one(bytea, "\\xfbff10", { binary: "base64" }), {
    field: '{"type":"string","optional":true,"field":"c"}',
    value: '"+/8Q"',
  });
  assert.equal(valueOf(bytea, "\\xfbff", { binary: "base64-url-safe" }), '"-_8="');
  assert.equal(valueOf(bytea, "\\x00FF10", { binary: "hex" }), '"00ff10"');
  assert.equal(valueOf(bytea, undefined, { binary: "base64" }), "null");
  assert.equal(valueOf(bytea, undefined, { binary: "hex" }), `"${PLACEHOLDER}"`);
});

Deno.test("interval.handling.mode=string: io.debezium.time.Interval, ISO 8601 of PGInterval's fields", () => {
  assert.deepEqual(one(col("c", 1186, "interval"), "1 year 2 mons -3 days +04:05:06.5", { interval: "string" }), {
    field: '{"type":"string","optional":true,"name":"io.debezium.time.Interval","version":1,"field":"c"}',
    value: '"P1Y2M-3DT4H5M6.5S"',
  });
  assert.equal(
    valueOf(col("c", 1186, "interval"), "-00:00:00.000001", { interval: "string" }),
    '"P0Y0M0DT0H0M-0.000001S"',
  );
  assert.equal(valueOf(col("c", 1186, "interval"), "00:01:00", { interval: "string" }), '"P0Y0M0DT0H1M0S"');
});

Deno.test("include.unknown.datatypes=true writes a type Debezium does not know as the binary of its text", () => {
  assert.deepEqual(one(col("c", 3220, "pg_lsn"), "0/16B3748", { includeUnknown: true }), {
    field: '{"type":"bytes","optional":true,"field":"c"}',
    value: `"${btoa("0/16B3748")}"`,
  });
  assert.equal(valueOf(col("c", 3220, "pg_lsn"), "0/1", { includeUnknown: true, binary: "hex" }), '"302f31"');
});

Deno.test("a column default is read by the codec of the run's options: decimal, time and interval modes", () => {
  const n = col("c", 1700, "numeric", { typmod: ((10 << 16) | 2) + 4, defaultText: "1.5" });
  assert.match(one(n, null).field, new RegExp(`"default":"${unscaledBase64(150n)}"`));
  assert.match(one(n, null, { decimal: "double" }).field, /"default":1\.5,/);
  assert.match(one(n, null, { decimal: "string" }).field, /"default":"1\.50",/);
  // VariableScaleDecimal is a struct: Connect drops its default (KAFKA-12694); with string it stays.
  const variable = col("c", 1700, "numeric", { defaultText: "5" });
  assert.doesNotMatch(one(variable, null).field, /default/);
  assert.match(one(variable, null, { decimal: "string" }).field, /"default":"5"/);
  const interval = col("c", 1186, "interval", { defaultText: "1 day" });
  assert.match(one(interval, null, { interval: "string" }).field, /"default":"P0Y0M1DT0H0M0S"/);
  assert.equal(one(interval, null, { interval: "string" }).value, '"P0Y0M1DT0H0M0S"');
});
