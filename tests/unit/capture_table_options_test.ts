/**
 * Debezium's table and record options as the capture reads and applies them, pure: the parsers
 * of tombstones.on.delete, skipped.operations, column.include.list / column.exclude.list,
 * message.key.columns and replica.identity.autoset.values, quoted names in --tables, and what the
 * encoder, the table shaping and the publication make of them. Each expectation names the Debezium
 * class it follows; tests/capture_debezium_tables_test.ts compares with the real connector.
 */
import assert from "node:assert/strict";
import { shapeTable } from "../../lib/capture_catalog.ts";
import {
  type ColumnSpec,
  DebeziumEncoder,
  type EncoderSettings,
  type TableSpec,
  topicOf,
} from "../../lib/capture_debezium.ts";
import type { ChangeSource, RowChange } from "../../lib/capture_reader.ts";
import { identityFor, publishOption } from "../../lib/capture_slot.ts";
import { ConfigError, loadCaptureConfig } from "../../lib/config.ts";
import { identityRules, messageKeyColumns, regexList, skippedOperations, tableList } from "../../lib/config_values.ts";
import { oneLineError } from "../_helpers.ts";

const FROM = "--x";
const SOURCE: ChangeSource = { tsUs: 1_751_537_472_123_456n, txId: 771, lsn: 22_000_040n, lastCommitLsn: 22_000_000n };
const col = (name: string, extra: Partial<ColumnSpec> = {}): ColumnSpec => ({
  name,
  typeOid: 23,
  typeName: "int4",
  typmod: -1,
  optional: true,
  key: false,
  ...extra,
});
/** `public.items (id int primary key, qty int, note text)`. */
const ITEMS: TableSpec = {
  schema: "public",
  table: "items",
  columns: [col("id", { optional: false, key: true }), col("qty"), col("note", { typeOid: 25, typeName: "text" })],
  keyColumns: ["id"],
};
const change = (op: RowChange["op"], before: RowChange["before"], after: RowChange["after"]): RowChange => ({
  op,
  before,
  after,
  source: SOURCE,
});
const encode = (settings: Partial<EncoderSettings>, spec: TableSpec, c: RowChange) =>
  new DebeziumEncoder({ prefix: "cdc", database: "db", version: "v", schemas: false, ...settings }).encode(spec, c, 0n);
const parse = (text: string | null) => text === null ? null : JSON.parse(text);

Deno.test("--tables takes double-quoted parts as PostgreSQL writes them, spaces, capitals, commas and quotes included", () => {
  assert.deepEqual(tableList('public."Order Items","MySchema"."T",plain,"a,b"."say ""hi"""', FROM), [
    { schema: "public", table: "Order Items" },
    { schema: "MySchema", table: "T" },
    { schema: "public", table: "plain" },
    { schema: "a,b", table: 'say "hi"' },
  ]);
  for (const bad of ['public."open', "public.two words", `"${"x".repeat(64)}"`, 'a."b"c']) {
    assert.throws(() => tableList(bad, FROM), ConfigError, bad);
  }
});

Deno.test("a topic name is the prefix, schema and table with every character Kafka refuses made _ (sanitizedTopicName)", () => {
  assert.equal(topicOf("cdc", "public", "Order Items"), "cdc.public.Order_Items");
  assert.equal(topicOf("cdc", "My-Schema", 'T"ä.x'), "cdc.My-Schema.T__.x");
});

Deno.test("skipped.operations is none or a comma list of c, u, d, t (CommonConnectorConfig.determineSkippedOperations)", () => {
  assert.deepEqual([...skippedOperations("t", FROM)], ["t"]);
  assert.deepEqual([...skippedOperations(" u, d ", FROM)], ["u", "d"]);
  assert.deepEqual([...skippedOperations("NONE", FROM)], []);
  assert.match(oneLineError(() => skippedOperations("u,x", FROM), ConfigError), /--x must be none or .*"x"/);
});

Deno.test("column lists and message.key.columns match whole fully-qualified names ignoring case, as Debezium's Predicates", () => {
  const [a, b] = regexList("public.items.note, public\\.t.*", FROM);
  assert.ok(a.test("PUBLIC.ITEMS.NOTE") && !a.test("public.items.notes"));
  assert.ok(b.test("public.t1.x") && !b.test("xpublic.t1.x"));
  const key = messageKeyColumns("public.items:qty, note; (.*).other:k", FROM);
  assert.deepEqual(key.map((r) => r.source), [
    "^(?:public.items.qty)$",
    "^(?:public.items.note)$",
    "^(?:(.*).other.k)$",
  ]);
  for (const bad of ["public.items", "public.items:", "a:b:c"]) {
    assert.throws(() => messageKeyColumns(bad, FROM), ConfigError, bad);
  }
  assert.throws(() => regexList("public.(", FROM), /invalid regular expression/);
});

Deno.test("replica.identity.autoset.values is <table regex>:<identity> items, none for no table (ReplicaIdentityMapper)", () => {
  const rules = identityRules("public.users:FULL, public.t.*:INDEX t_idx,x.y:default", FROM);
  assert.deepEqual(rules.map(({ identity, index }) => [identity, index]), [
    ["FULL", undefined],
    ["INDEX", "t_idx"],
    ["DEFAULT", undefined],
  ]);
  assert.deepEqual(identityRules("none", FROM), []);
  for (const bad of ["public.users", "public.users:PARTIAL", "public users:FULL"]) {
    assert.throws(() => identityRules(bad, FROM), ConfigError, bad);
  }
  assert.equal(identityFor(rules, { schema: "public", table: "users" })?.identity, "FULL");
  assert.equal(identityFor(rules, { schema: "public", table: "orders" }), undefined);
  const overlapping = identityRules("public.t1:FULL,public.t.*:DEFAULT", FROM);
  assert.throws(() => identityFor(overlapping, { schema: "public", table: "t1" }), /more than one item/);
});

Deno.test("the capture's defaults are Debezium's, except FULL on the contract's two tables; the column lists exclude each other", () => {
  const parsed = loadCaptureConfig([], {});
  assert.ok(!parsed.help);
  const { config } = parsed;
  assert.equal(config.tombstonesOnDelete, true);
  assert.deepEqual([...config.skippedOperations], ["t"]);
  assert.equal(config.columnIncludeList, undefined);
  assert.equal(config.messageKeyColumns, undefined);
  assert.deepEqual(config.replicaIdentityAutoset.map((r) => [r.table.source, r.identity]), [
    ["^(?:public.users)$", "FULL"],
    ["^(?:public.orders)$", "FULL"],
  ]);
  const both = ["--column-include-list", "a.b.c", "--column-exclude-list", "a.b.d"];
  assert.match(
    oneLineError(() => loadCaptureConfig(both, {}), ConfigError),
    /--column-exclude-list .* cannot be given/,
  );
  const fromEnv = loadCaptureConfig([], { CAPTURE_TOMBSTONES_ON_DELETE: "false", CAPTURE_SKIPPED_OPERATIONS: "none" });
  assert.ok(
    !fromEnv.help && fromEnv.config.tombstonesOnDelete === false && fromEnv.config.skippedOperations.size === 0,
  );
});

Deno.test("a publication publishes the operations skipped.operations leaves, everything for t alone (buildPublishOptionValue)", () => {
  assert.equal(publishOption(new Set(["t"])), "insert,update,delete,truncate");
  assert.equal(publishOption(new Set()), "insert,update,delete,truncate");
  assert.equal(publishOption(new Set(["u", "d"])), "insert,truncate");
  assert.equal(publishOption(new Set(["c", "t"])), "update,delete");
});

Deno.test("tombstones.on.delete=false drops the tombstones of a delete and of a key change's d (EventDispatcher)", () => {
  const off = { tombstonesOnDelete: false };
  assert.deepEqual(encode(off, ITEMS, change("d", ["1", "2", "a"], null)).map((r) => parse(String(r.value)).op), ["d"]);
  const moved = encode(off, ITEMS, change("u", ["1", "2", "a"], ["9", "2", "a"]));
  assert.deepEqual(moved.map((r) => [r.key, parse(String(r.value)).op]), [['{"id":1}', "d"], ['{"id":9}', "c"]]);
  assert.equal(encode({}, ITEMS, change("d", ["1", "2", "a"], null)).length, 2);
});

Deno.test("skipped.operations drops a skipped change whole, and of a key change the d (with its tombstone) or the c", () => {
  const keyChange = change("u", ["1", "2", "a"], ["9", "2", "a"]);
  const ops = (skipped: string[], c: RowChange) =>
    encode({ skippedOperations: new Set(skipped) }, ITEMS, c).map((r) => r.value && parse(String(r.value)).op);
  assert.deepEqual(ops(["u"], keyChange), []);
  assert.deepEqual(ops(["d"], keyChange), ["c"]);
  assert.deepEqual(ops(["c"], keyChange), ["d", null]);
  assert.deepEqual(ops(["c"], change("c", null, ["1", "2", "a"])), []);
  assert.deepEqual(ops(["c", "u"], change("r", null, ["1", "2", "a"])), ["r"]);
  assert.deepEqual(ops(["d"], change("d", ["1", "2", "a"], null)), []);
});

Deno.test("column filters leave columns out of the value only, a key column stays in the key (TableSchemaBuilder.create)", () => {
  const exclude = { columnExcludeList: regexList("public.items.(id|note)", FROM) };
  const [record] = encode({ shape: exclude }, ITEMS, change("c", null, ["1", "2", "a"]));
  assert.equal(record.key, '{"id":1}');
  assert.deepEqual(parse(String(record.value)).after, { qty: 2 });
  const include = { columnIncludeList: regexList("public.items.note", FROM) };
  const [withSchemas] = encode({ shape: include, schemas: true }, ITEMS, change("c", null, ["1", "2", "a"]));
  const value = parse(String(withSchemas.value));
  assert.deepEqual(value.payload.after, { note: "a" });
  assert.deepEqual(value.schema.fields[1].fields.map((f: { field: string }) => f.field), ["note"]);
  assert.deepEqual(parse(withSchemas.key).schema.fields.map((f: { field: string }) => f.field), ["id"]);
});

Deno.test("message.key.columns keys by the matched columns, pattern by pattern, else by the table's key (Key.CustomKeyMapper)", () => {
  const key = (text: string) => shapeTable(ITEMS, { messageKeyColumns: messageKeyColumns(text, FROM) }).keyColumns;
  assert.deepEqual(key("public.items:note,qty"), ["note", "qty"]);
  assert.deepEqual(key("public.item.*:q.*"), ["qty"]);
  assert.deepEqual(key("public.other:qty"), ["id"]);
  const shaped = shapeTable(ITEMS, { messageKeyColumns: messageKeyColumns("public.items:qty", FROM) });
  assert.deepEqual(shaped.columns.map((c) => c.key), [false, true, false]);
  const [record] = encode(
    { shape: { messageKeyColumns: messageKeyColumns("public.items:qty", FROM) } },
    ITEMS,
    change("c", null, ["1", "2", "a"]),
  );
  assert.equal(record.key, '{"qty":2}');
});

Deno.test("an unchanged TOASTed value takes the old row's under REPLICA IDENTITY FULL, a key change's c too, the placeholder without one", () => {
  // PostgresChangeRecordEmitter.columnValues: the old tuple's value when it has one, else the sentinel.
  const full = encode({}, ITEMS, change("u", ["1", "2", "long text"], ["1", "3", undefined]));
  assert.deepEqual(parse(String(full[0].value)).after, { id: 1, qty: 3, note: "long text" });
  const nullBefore = encode({}, ITEMS, change("u", ["1", "2", null], ["1", "3", undefined]));
  assert.equal(parse(String(nullBefore[0].value)).after.note, "__debezium_unavailable_value");
  const moved = encode({}, ITEMS, change("u", ["1", "2", "long text"], ["9", "2", undefined]));
  assert.deepEqual(parse(String(moved[2].value)).after, { id: 9, qty: 2, note: "long text" });
  const noBefore = encode({}, ITEMS, change("u", null, ["1", "3", undefined]));
  assert.equal(parse(String(noBefore[0].value)).after.note, "__debezium_unavailable_value");
});

Deno.test("a TRUNCATE is one op t record without key, before or after when skipped.operations leaves t out (Envelope.truncate)", () => {
  const encoder = (skipped: string[]) =>
    new DebeziumEncoder({
      prefix: "cdc",
      database: "db",
      version: "v",
      schemas: false,
      skippedOperations: new Set(skipped),
    });
  const [record, ...more] = encoder([]).truncate(ITEMS, SOURCE, 0n);
  assert.deepEqual(more, []);
  assert.equal(record.topic, "cdc.public.items");
  assert.equal(record.key, null);
  const value = parse(String(record.value));
  assert.deepEqual([value.before, value.after, value.op, value.source.lsn, value.source.txId], [
    null,
    null,
    "t",
    22000040,
    771,
  ]);
  assert.deepEqual(encoder(["t"]).truncate(ITEMS, SOURCE, 0n), []);
});
