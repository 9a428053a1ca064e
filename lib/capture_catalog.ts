/**
 * A captured table as Debezium sees it, read from the catalog: the columns of pgoutput's Relation
 * message (or of pg_attribute for the snapshot), each with its base type, typmod, nullability and
 * the default Debezium reports, and the key: the primary key, or without one the first unique index
 * by name (PgOutputMessageDecoder.handleRelationMessage, JdbcConnection.readTableUniqueIndices).
 * @module
 */
import type postgres from "postgres";
import type { ColumnSpec, TableSpec } from "./capture_debezium.ts";
import { debeziumDefault } from "./capture_debezium_values.ts";
import type { ElementFacts } from "./capture_debezium_types.ts";
import type { Relation } from "./capture_pgoutput.ts";

/** A column as pg_attribute and pg_attrdef describe it. */
export interface CatalogColumn {
  /** attname. */
  name: string;
  /** atttypid. */
  typeOid: number;
  /** atttypmod. */
  typmod: number;
  /** attnotnull. */
  notNull: boolean;
  /** pg_get_expr of the column's pg_attrdef entry, null without default. */
  defaultExpression: string | null;
}

/** A type as pg_type describes it, a domain resolved to its base type. */
export interface CatalogType {
  /** The type's own oid (a domain's, for a domain). */
  oid: number;
  /** The type's own name, which Debezium's default mappers look up. */
  name: string;
  /** The base type's oid (the type itself unless it is a domain). */
  baseOid: number;
  /** The base type's name. */
  baseName: string;
  /** The first typmod a domain chain declares, -1 when none. */
  typmod: number;
  /** An enum's labels in sort order, null for other types. */
  enumValues: string[] | null;
  /** An array type's element type, null for other types. */
  element?: ElementFacts | null;
}

/** What readTableSpec read, before it becomes a TableSpec. */
export interface CatalogTable {
  /** The table's columns in attribute order. */
  columns: CatalogColumn[];
  /** The types of the columns (and of the Relation's columns). */
  types: CatalogType[];
  /** The key: primary key columns in key order, else the first unique index's; empty without either. */
  keyColumns: string[];
}

/** The TableSpec of a table from what the catalog says, with the Relation message's columns when given. */
export function buildTableSpec(schema: string, table: string, catalog: CatalogTable, relation?: Relation): TableSpec {
  const byName = new Map(catalog.columns.map((c) => [c.name, c]));
  const types = new Map(catalog.types.map((t) => [t.oid, t]));
  const source = relation
    ? relation.columns.map((c) => ({ name: c.name, typeOid: c.typeOid, typmod: c.typeMod }))
    : catalog.columns;
  const names = new Set(source.map((c) => c.name));
  // A key column the Relation does not carry is one from a later DDL (Debezium's retainAll).
  const keyColumns = catalog.keyColumns.filter((name) => names.has(name));
  const columns = source.map(({ name, typeOid, typmod }): ColumnSpec => {
    const type = types.get(typeOid);
    if (!type) throw new Error(`${schema}.${table}.${name}: type oid ${typeOid} is not in pg_type; retry the read`);
    const attribute = byName.get(name);
    const facts = {
      typeOid: type.baseOid,
      typeName: type.baseName,
      typmod: typmod >= 0 ? typmod : type.typmod,
      ...(type.enumValues ? { enumValues: type.enumValues } : {}),
      ...(type.element ? { element: type.element } : {}),
    };
    // A column the catalog no longer has is nullable and without default, as Debezium assumes then.
    const expression = attribute?.defaultExpression ?? null;
    const defaultText = expression === null ? undefined : debeziumDefault(type.name, expression, !!type.enumValues);
    return {
      name,
      ...facts,
      optional: !(attribute?.notNull ?? false),
      key: keyColumns.includes(name),
      ...(defaultText === undefined ? {} : { defaultText }),
    };
  });
  return { schema, table, columns, keyColumns };
}

/**
 * Reads a table's columns from the catalog (pg_attribute, pg_type, pg_attrdef, pg_index) and builds its TableSpec.
 * With `relation` (from a pgoutput Relation message) the column list, order, type oids and typmods come from it
 * and the catalog adds nullability, defaults and keys; without it (snapshot), everything comes from the catalog.
 */
export async function readTableSpec(
  sql: postgres.Sql,
  schema: string,
  table: string,
  relation?: Relation,
): Promise<TableSpec> {
  const columns = await sql<CatalogColumn[]>`
    select a.attname as name, a.atttypid::int as "typeOid", a.atttypmod as typmod, a.attnotnull as "notNull",
           pg_get_expr(d.adbin, d.adrelid) as "defaultExpression"
    from pg_attribute a
    join pg_class c on c.oid = a.attrelid
    join pg_namespace n on n.oid = c.relnamespace
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where n.nspname = ${schema} and c.relname = ${table} and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
  if (!columns.length && !relation) {
    throw new Error(`table ${schema}.${table} does not exist or has no columns; create it or remove it from --tables`);
  }
  const oids = [...new Set([...columns, ...(relation?.columns ?? [])].map((c) => c.typeOid))];
  const [types, keys] = await Promise.all([readTypes(sql, oids), readKey(sql, schema, table)]);
  return buildTableSpec(schema, table, { columns: [...columns], types, keyColumns: keys }, relation);
}

async function readTypes(sql: postgres.Sql, oids: number[]): Promise<CatalogType[]> {
  // Each type with its domain chain down to the base type; the first typmod a domain declares wins.
  const rows = await sql<CatalogType[]>`
    with recursive chain as (
      select t.oid as start, t.oid, t.typbasetype, t.typtypmod, 0 as depth
      from pg_type t where t.oid = any(${oids}::oid[])
      union all
      select chain.start, b.oid, b.typbasetype, b.typtypmod, chain.depth + 1
      from chain join pg_type b on b.oid = chain.typbasetype
      where chain.typbasetype <> 0
    )
    select s.oid::int as oid, s.typname as name, base.oid::int as "baseOid", base.typname as "baseName",
           coalesce((select c.typtypmod from chain c
                     where c.start = s.oid and c.typtypmod <> -1 order by c.depth limit 1), -1) as typmod,
           (select array_agg(e.enumlabel::text order by e.enumsortorder) from pg_enum e where e.enumtypid = base.oid)
             as "enumValues",
           case when base.typcategory = 'A' then json_build_object(
             'typeOid', elem.oid::int, 'typeName', elem.typname, 'domain', elem.typtype = 'd',
             'enumValues', (select array_agg(e.enumlabel::text order by e.enumsortorder)
                            from pg_enum e where e.enumtypid = elem.oid)) end as element
    from pg_type s
    join chain last on last.start = s.oid and last.typbasetype = 0
    join pg_type base on base.oid = last.oid
    left join pg_type elem on elem.oid = base.typelem and base.typcategory = 'A'
    where s.oid = any(${oids}::oid[])`;
  return [...rows];
}

async function readKey(sql: postgres.Sql, schema: string, table: string): Promise<string[]> {
  const indexes = await sql<{ primary: boolean; columns: string[] }[]>`
    select i.indisprimary as primary,
           array(select a.attname::text
                 from unnest(i.indkey::int2[]) with ordinality k(attnum, position)
                 join pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
                 order by k.position) as columns
    from pg_index i
    join pg_class ic on ic.oid = i.indexrelid
    join pg_class c on c.oid = i.indrelid
    join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${schema} and c.relname = ${table} and i.indisunique
      and not (0 = any(i.indkey::int2[])) -- PostgresConnection.isTableUniqueIndexIncluded skips expression indexes
    order by i.indisprimary desc, ic.relname
    limit 1`;
  return indexes[0]?.columns ?? [];
}

/** Debezium's options that shape a table's records: the columns its values hold and the columns of its key. */
export interface RecordShape {
  /** `column.include.list`: only the columns matched (as `schema.table.column`) are in values. */
  columnIncludeList?: RegExp[];
  /** `column.exclude.list`: the columns matched are left out of values. */
  columnExcludeList?: RegExp[];
  /** `message.key.columns`: the key is the columns matched, in pattern order, else the table's key. */
  messageKeyColumns?: RegExp[];
}

/**
 * `spec` as Debezium's options shape it: TableSchemaBuilder.create keys records by the key mapper's
 * columns (Key.CustomKeyMapper: each pattern's matches in column order, else the primary key) and
 * leaves the columns the filter refuses out of the value only, so a key column may be out of the value.
 */
export function shapeTable(spec: TableSpec, shape: RecordShape): TableSpec {
  const { columnIncludeList: include, columnExcludeList: exclude, messageKeyColumns: keyPatterns } = shape;
  const full = (column: string) => `${spec.schema}.${spec.table}.${column}`;
  const inValue = (column: string) =>
    include ? include.some((p) => p.test(full(column))) : !exclude?.some((p) => p.test(full(column)));
  const mapped = (keyPatterns ?? []).flatMap((p) =>
    spec.columns.filter((c) => p.test(full(c.name))).map((c) => c.name)
  );
  const keyColumns = mapped.length ? mapped : spec.keyColumns ?? spec.columns.filter((c) => c.key).map((c) => c.name);
  const columns = spec.columns.map((c) => ({
    ...c,
    key: keyColumns.includes(c.name),
    ...(inValue(c.name) ? {} : { excluded: true }),
  }));
  return { ...spec, columns, keyColumns };
}
