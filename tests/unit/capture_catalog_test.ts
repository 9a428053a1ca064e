/**
 * A table's TableSpec as Debezium sees it, built from the catalog (and a Relation message):
 * types, typmods, nullability, Debezium's defaults and keys.
 */
import assert from "node:assert/strict";
import { buildTableSpec, type CatalogTable } from "../../lib/capture_catalog.ts";
import { debeziumDefault } from "../../lib/capture_debezium_values.ts";
import type { Relation } from "../../lib/capture_pgoutput.ts";
import { catalogType } from "./_capture_parts.ts";

const type = catalogType;

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
        defaultText: "PLACED",
      },
      {
        name: "total_amount",
        typeOid: 1700,
        typeName: "numeric",
        typmod: 655366,
        optional: false,
        key: false,
        defaultText: "0", // the encoder reads it at the column's scale
      },
      // PostgresDefaultValueConverter: a function call gives the type's placeholder, 1970-01-01 here.
      {
        name: "placed_at",
        typeOid: 1184,
        typeName: "timestamptz",
        typmod: -1,
        optional: true,
        key: false,
        defaultText: "1970-01-01 00:00:00+00",
      },
      {
        name: "is_deleted",
        typeOid: 16,
        typeName: "bool",
        typmod: -1,
        optional: true,
        key: false,
        defaultText: "f",
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
  assert.deepEqual(spec.columns.map((c) => [c.name, c.typmod, c.optional, c.defaultText]), [
    ["id", -1, false, undefined],
    ["total_amount", ((12 << 16) | 4) + 4, false, "0"],
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

Deno.test("Debezium's default rules give the codec's text: literals, placeholders for calls, none for NULL or casts it cannot read", () => {
  assert.equal(debeziumDefault("int4", "nextval('t_id_seq'::regclass)"), "0");
  assert.equal(debeziumDefault("int4", "'-1'::integer"), "-1");
  assert.equal(debeziumDefault("int8", "'9223372036854775807'::bigint"), "9223372036854775807");
  assert.equal(debeziumDefault("text", "'it''s'::text"), "it"); // LITERAL_DEFAULT_PATTERN is lazy
  assert.equal(debeziumDefault("text", "NULL::text"), undefined);
  assert.equal(debeziumDefault("uuid", "gen_random_uuid()"), "00000000-0000-0000-0000-000000000000");
  assert.equal(debeziumDefault("date", "CURRENT_DATE"), "1970-01-01");
  assert.equal(debeziumDefault("date", "('now'::text)::date"), "now"); // which no codec reads: no default
  assert.equal(debeziumDefault("time", "'10:00'::time without time zone"), "10:00:00");
  assert.equal(debeziumDefault("timestamp", "now()"), "1970-01-01 00:00:00");
  assert.equal(debeziumDefault("float8", "1.5"), "1.5");
  assert.equal(debeziumDefault("interval", "'1 day'::interval"), "1 day");
  assert.equal(debeziumDefault("bool", "true"), "t");
  assert.equal(debeziumDefault("bytea", "'\\x00'::bytea"), undefined); // no mapper
  assert.equal(debeziumDefault("shortname", "'x'::shortname"), undefined); // a domain: no mapper
  assert.equal(debeziumDefault("mood", "'ok'::mood", true), "ok");
});
