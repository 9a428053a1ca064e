/**
 * A table's TableSpec read from a real PostgreSQL: types, typmods, nullability, defaults, keys,
 * domains and enums, and rows read as `::text` encoded to the values Debezium 3.6.1 writes.
 */
import assert from "node:assert/strict";
import { readTableSpec } from "../lib/capture_catalog.ts";
import { DebeziumEncoder, type TableSpec } from "../lib/capture_debezium.ts";
import { createTestDatabase } from "./_helpers.ts";

const DDL = [
  `create type mood as enum ('sad', 'ok', 'happy')`,
  `create domain money2 as numeric(12,2)`,
  `create table every_type (
     id serial primary key,
     i2 smallint, i4 integer not null default 7, i8 bigint, n14 numeric(14,2) default 1.5, n numeric,
     r real, d double precision, t text default 'x', v varchar(20) not null default 'PLACED', c char(3),
     b boolean default false, dt date, tm time, tmtz timetz, ts timestamp(3), tstz timestamptz default now(),
     u uuid default gen_random_uuid(), j json, jb jsonb, by bytea, m mood default 'ok', dom money2, lsn pg_lsn
   )`,
  `create table pairs (a int not null, b text not null, primary key (b, a))`,
  `create table uniq (x int, y text not null)`,
  `create unique index uniq_z on uniq (x)`,
  `create unique index uniq_a on uniq (y)`,
  `create unique index uniq_0 on uniq (lower(y))`,
];

Deno.test("readTableSpec reads types, typmods, nullability, defaults, domains, enums and keys from PostgreSQL", async () => {
  const db = await createTestDatabase();
  try {
    for (const statement of DDL) await db.sql.unsafe(statement);
    const spec = await readTableSpec(db.sql, "public", "every_type");
    const byName = Object.fromEntries(spec.columns.map((c) => [c.name, c]));
    assert.deepEqual(spec.keyColumns, ["id"]);
    assert.deepEqual(
      [byName.id.defaultText, byName.i4.defaultText, byName.n14.defaultText, byName.v.defaultText],
      ["0", "7", "1.5", "PLACED"],
    );
    assert.deepEqual([byName.i4.optional, byName.v.optional, byName.i2.optional], [false, false, true]);
    assert.deepEqual([byName.n14.typmod, byName.v.typmod, byName.ts.typmod, byName.tstz.typmod], [917510, 24, 3, -1]);
    assert.deepEqual([byName.m.typeName, byName.m.enumValues, byName.m.defaultText], [
      "mood",
      ["sad", "ok", "happy"],
      "ok",
    ]);
    // A domain is its base type with the domain's typmod; Debezium has no default mapper for the domain's name.
    assert.deepEqual([byName.dom.typeOid, byName.dom.typeName, byName.dom.typmod], [
      1700,
      "numeric",
      ((12 << 16) | 2) + 4,
    ]);
    assert.equal(byName.tstz.defaultText, "1970-01-01 00:00:00+00");
    assert.equal(byName.u.defaultText, "00000000-0000-0000-0000-000000000000");
    assert.deepEqual((await readTableSpec(db.sql, "public", "pairs")).keyColumns, ["b", "a"]);
    // No primary key: the first unique index by name (pgjdbc's getIndexInfo order) without expressions.
    assert.deepEqual((await readTableSpec(db.sql, "public", "uniq")).keyColumns, ["y"]);
    await assert.rejects(readTableSpec(db.sql, "public", "missing"), /table public\.missing does not exist/);
  } finally {
    await db.drop();
  }
});

Deno.test("rows read as ::text from PostgreSQL encode to Debezium's values, edge values included", async () => {
  const db = await createTestDatabase();
  try {
    for (const statement of DDL) await db.sql.unsafe(statement);
    await db.sql.unsafe(
      `insert into every_type (i2, i8, n14, n, r, d, t, c, b, dt, tm, tmtz, ts, tstz, u, j, jb, by, m, dom, lsn)
      values (-32768, 9223372036854775807, -12.5, 'NaN', 'Infinity', 1e-5, E'a\\u0001', 'ab', true, '0044-03-15 BC',
              '24:00:00', '13:51:30.123+02', 'infinity', '-infinity', '6f1c0a4e-8a55-4f0b-9d7c-2f6a1b9e0c11',
              '{"a": 1}', '{"b": [1, 2]}', '\\x00ff', 'happy', 1.5, '0/16B3748'),
             (null, null, null, 1200, 3.14, '-0', null, null, null, 'infinity', '13:51:30.5', null, '2016-11-04 13:51:30.1239',
              '4714-12-31 23:59:59.999999+00 BC', null, null, null, null, null, null, null)`,
    );
    const spec = await readTableSpec(db.sql, "public", "every_type");
    const names = spec.columns.map((c) => c.name);
    const list = names.reduce(
      (acc, name, i) => db.sql`${acc}${i ? db.sql`, ` : db.sql``}${db.sql(name)}::text`,
      db.sql``,
    );
    const rows = await db.sql.begin(async (tx) => {
      await tx`set local timezone = 'UTC'`;
      return await tx`select ${list} from every_type order by id`;
    });
    const encoder = new DebeziumEncoder({ prefix: "cdc", database: "db", version: "v" });
    const source = { tsUs: 0n, txId: 1, lsn: 1n, lastCommitLsn: null, snapshot: "true" as const };
    const afters = rows.map((row) => {
      const after = names.map((n) => row[n] as string | null);
      const value = String(encoder.encode(spec, { op: "r", before: null, after, source }, 0n)[0].value);
      return value.slice(value.indexOf(',"after":') + 9, value.indexOf(',"source":'));
    });
    assert.equal(
      afters[0],
      '{"id":1,"i2":-32768,"i4":7,"i8":9223372036854775807,"n14":"+x4=","n":null,"r":"Infinity","d":1.0E-5,' +
        '"t":"a\\u0001","v":"PLACED","c":"ab ","b":true,"dt":-735160,"tm":86400000000,"tmtz":"11:51:30.123Z",' +
        '"ts":9223372036825200,"tstz":"-infinity","u":"6f1c0a4e-8a55-4f0b-9d7c-2f6a1b9e0c11","j":"{\\"a\\": 1}",' +
        '"jb":"{\\"b\\": [1, 2]}","by":"AP8=","m":"happy","dom":"AJY="}',
    );
    // NULLs in columns with a default are written as the default (JsonConverter); pg_lsn is left out.
    assert.equal(
      afters[1],
      '{"id":2,"i2":null,"i4":7,"i8":null,"n14":"AJY=","n":{"scale":0,"value":"BLA="},"r":3.14,"d":-0.0,"t":"x",' +
        '"v":"PLACED","c":null,"b":false,"dt":-2147472692,"tm":49890500000,"tmtz":null,"ts":1478267490124,' +
        '"tstz":"-4713-12-31T23:59:59.999999Z","u":"00000000-0000-0000-0000-000000000000","j":null,"jb":null,' +
        '"by":null,"m":"ok","dom":null}',
    );
  } finally {
    await db.drop();
  }
});

Deno.test("a spec read after ALTER TABLE carries the new column and the dropped NOT NULL", async () => {
  const db = await createTestDatabase();
  try {
    await db.sql`create table users (id uuid primary key, name varchar(50) not null)`;
    const before: TableSpec = await readTableSpec(db.sql, "public", "users");
    await db.sql`alter table users alter column name drop not null, add column nickname text`;
    const after = await readTableSpec(db.sql, "public", "users");
    assert.deepEqual(before.columns.map((c) => [c.name, c.optional]), [["id", false], ["name", false]]);
    assert.deepEqual(after.columns.map((c) => [c.name, c.optional]), [["id", false], ["name", true], [
      "nickname",
      true,
    ]]);
  } finally {
    await db.drop();
  }
});
