/**
 * A table's TableSpec as Debezium sees it, built from the catalog (and a Relation message):
 * types, typmods, nullability, Debezium's defaults and keys.
 */
import assert from "node:assert/strict";
import { buildTableSpec, type CatalogTable } from "../../lib/capture_catalog.ts";
import { debeziumDefault } from "../../lib/capture_debezium_values.ts";
import type { Relation } from "../../lib/capture_pgoutput.ts";

const type = (oid: number, name: string, extra: Partial<CatalogTable["types"][0]> = {}) => ({
  oid,
  name,
  baseOid: oid,
  baseName: name,
  typmod: -1,
  enumValues: null,
  ...extra,
});

const ORDERS_CATALOG: CatalogTable = {
  columns: [
    { name: "id", typeOid: 2950, typmod: -1, notNull: true, defaultExpression: null },
    { name: "status", typeOid: 1043, typmod: 14, notNull: true, defaultExpression: "'PLACED'::character varying" },
    { name: "total_amount", typeOid: 1700, typmod: ((10 << 16) | 2) + 4, notNull: true, defaultExpression: "0" },
    { name: "placed_at", typeOid: 1184, typmod: -1, notNull: false, defaultExpression: "now()" },
    { name: "is_deleted", typeOid: 16, typmod: -1, notNull: false, defaultExpression: "false" },
  ],
  types: [
    type(2950, "uuid"),
    type(1043, "varchar"),
    type(1700, "numeric"),
    type(1184, "timestamptz"),
    type(16, "bool"),
  ],
  keyColumns: ["id"],
};

Deno.test("without a Relation the spec is the catalog's columns with nullability, Debezium's defaults and the key", () => {
  const spec = buildTableSpec("public", "orders", ORDERS_CATALOG);
  assert.deepEqual(spec, {
    schema: "public",
    table: "orders",
    keyColumns: ["id"],
    columns: [
      { name: "id", typeOid: 2950, typeName: "uuid", typmod: -1, optional: false, key: true },
      {
        name: "status",
        typeOid: 1043,
        typeName: "varchar",
        typmod: 14,
        optional: false,
        key: false,
        defaultValue: "PLACED",
      },
      {
        name: "total_amount",
        typeOid: 1700,
        typeName: "numeric",
        typmod: 655366,
        optional: false,
        key: false,
        defaultValue: 0n, // the unscaled value at scale 2
      },
      // PostgresDefaultValueConverter: a function call gives the type's placeholder, 1970-01-01 here.
      {
        name: "placed_at",
        typeOid: 1184,
        typeName: "timestamptz",
        typmod: -1,
        optional: true,
        key: false,
        defaultValue: "1970-01-01T00:00:00.000000Z",
      },
      {
        name: "is_deleted",
        typeOid: 16,
        typeName: "bool",
        typmod: -1,
        optional: true,
        key: false,
        defaultValue: false,
      },
    ],
  });
});

Deno.test("with a Relation its columns, order, type oids and typmods win; a column the catalog lacks is nullable", () => {
  const relation: Relation = {
    relationId: 1,
    schema: "public",
    table: "orders",
    replicaIdentity: "f",
    columns: [
      { name: "id", typeOid: 2950, typeMod: -1, key: true },
      { name: "total_amount", typeOid: 1700, typeMod: ((12 << 16) | 4) + 4, key: false },
      { name: "gone", typeOid: 25, typeMod: -1, key: false },
    ],
  };
  const catalog = { ...ORDERS_CATALOG, types: [...ORDERS_CATALOG.types, type(25, "text")] };
  const spec = buildTableSpec("public", "orders", catalog, relation);
  assert.deepEqual(spec.columns.map((c) => [c.name, c.typmod, c.optional, c.defaultValue]), [
    ["id", -1, false, undefined],
    ["total_amount", ((12 << 16) | 4) + 4, false, 0n],
    ["gone", -1, true, undefined],
  ]);
});

Deno.test("a key column the Relation does not carry is dropped from the key, as Debezium's retainAll does", () => {
  const relation: Relation = {
    relationId: 1,
    schema: "public",
    table: "orders",
    replicaIdentity: "d",
    columns: [{ name: "status", typeOid: 1043, typeMod: -1, key: false }],
  };
  assert.deepEqual(buildTableSpec("public", "orders", ORDERS_CATALOG, relation).keyColumns, []);
});

Deno.test("Debezium's default rules: literals, placeholders for calls, none for NULL, casts it cannot read, or a struct", () => {
  const facts = (typeOid: number, typeName: string, typmod = -1) => ({ typeOid, typeName, typmod });
  assert.equal(debeziumDefault(facts(23, "int4"), "int4", "nextval('t_id_seq'::regclass)"), 0);
  assert.equal(debeziumDefault(facts(23, "int4"), "int4", "'-1'::integer"), -1);
  assert.equal(debeziumDefault(facts(20, "int8"), "int8", "'9223372036854775807'::bigint"), "9223372036854775807");
  assert.equal(debeziumDefault(facts(25, "text"), "text", "'it''s'::text"), "it"); // LITERAL_DEFAULT_PATTERN is lazy
  assert.equal(debeziumDefault(facts(25, "text"), "text", "NULL::text"), undefined);
  assert.equal(
    debeziumDefault(facts(2950, "uuid"), "uuid", "gen_random_uuid()"),
    "00000000-0000-0000-0000-000000000000",
  );
  assert.equal(debeziumDefault(facts(1082, "date"), "date", "CURRENT_DATE"), 0);
  assert.equal(debeziumDefault(facts(1082, "date"), "date", "('now'::text)::date"), undefined);
  assert.equal(debeziumDefault(facts(1083, "time"), "time", "'10:00:00'::time without time zone"), 36_000_000_000);
  assert.equal(debeziumDefault(facts(1114, "timestamp"), "timestamp", "now()"), 0);
  assert.equal(debeziumDefault(facts(701, "float8"), "float8", "1.5"), 1.5);
  assert.equal(debeziumDefault(facts(1186, "interval"), "interval", "'1 day'::interval"), 86_400_000_000);
  assert.equal(debeziumDefault(facts(1700, "numeric"), "numeric", "5"), undefined); // VariableScaleDecimal: KAFKA-12694
  assert.equal(debeziumDefault(facts(17, "bytea"), "bytea", "'\\x00'::bytea"), undefined); // no mapper
  assert.equal(debeziumDefault(facts(25, "text"), "shortname", "'x'::shortname"), undefined); // a domain: no mapper
  assert.equal(
    debeziumDefault({ ...facts(90000, "mood"), enumValues: ["sad", "ok"] }, "mood", "'ok'::mood"),
    "ok",
  );
});
