/**
 * A bridge to the encoder of the time (lib/debezium.ts with the contract's two tables) behind the
 * interface the capture is written against (TableSpec from the catalog, `readTableSpec`, an
 * encoder taking any TableSpec). The integrator deletes this file once lib/debezium.ts and
 * lib/capture_catalog.ts provide these names, and imports them from there.
 * @module
 */
import type postgres from "postgres";
import {
  type CaptureRecord as LegacyRecord,
  type ChangeSource,
  type ColumnKind,
  DebeziumEncoder as LegacyEncoder,
  type EncoderSettings,
  EncodingError,
  type RowChange,
  type SnapshotMarker,
  type TableSpec as LegacySpec,
} from "./debezium.ts";
import type { Relation } from "./pgoutput.ts";

export { EncodingError };
export type { ChangeSource, RowChange, SnapshotMarker };

/** One column, from pgoutput's Relation message and the catalog. */
export interface ColumnSpec {
  name: string;
  typeOid: number;
  typeName: string;
  typmod: number;
  optional: boolean;
  key: boolean;
  defaultValue?: unknown;
}

/** A captured table as Debezium sees it. */
export interface TableSpec {
  schema: string;
  table: string;
  columns: ColumnSpec[];
}

/** A Kafka record, ready to send; `key` is null only for a table without key. */
export interface CaptureRecord {
  topic: string;
  key: string | null;
  value: string | null;
}

interface CatalogColumn {
  name: string;
  type_oid: number;
  type_name: string;
  typmod: number;
  not_null: boolean;
  key: boolean;
  default_expr: string | null;
}

/** Reads a table's columns from the catalog; with `relation`, its column list and order come from it. */
export async function readTableSpec(
  sql: postgres.Sql,
  schema: string,
  table: string,
  relation?: Relation,
): Promise<TableSpec> {
  const rows = await sql<CatalogColumn[]>`
    select a.attname as name, a.atttypid::int as type_oid, t.typname as type_name, a.atttypmod as typmod,
           a.attnotnull as not_null, coalesce(a.attnum = any(i.indkey), false) as key,
           pg_get_expr(d.adbin, d.adrelid) as default_expr
    from pg_attribute a
    join pg_type t on t.oid = a.atttypid
    left join pg_index i on i.indrelid = a.attrelid and i.indisprimary
    left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid = (quote_ident(${schema}) || '.' || quote_ident(${table}))::regclass
      and a.attnum > 0 and not a.attisdropped
    order by a.attnum`;
  const byName = new Map(rows.map((r) => [r.name, r]));
  const names = relation ? relation.columns.map((c) => c.name) : rows.map((r) => r.name);
  // A column the catalog no longer has (dropped since the Relation was written) is named by its type OID.
  const oids = relation?.columns.filter((c) => !byName.has(c.name)).map((c) => c.typeOid) ?? [];
  const typeNames = new Map(
    oids.length
      ? (await sql<
        { oid: number; name: string }[]
      >`select oid::int, typname as name from pg_type where oid = any(${oids}::oid[])`)
        .map((t) => [t.oid, t.name])
      : [],
  );
  return {
    schema,
    table,
    columns: names.map((name, i) => {
      const row = byName.get(name);
      const wire = relation?.columns[i];
      return {
        name,
        typeOid: wire?.typeOid ?? row?.type_oid ?? 0,
        typeName: row?.type_name ?? typeNames.get(wire?.typeOid ?? 0) ?? "unknown",
        typmod: wire?.typeMod ?? row?.typmod ?? -1,
        optional: !(row?.not_null ?? false),
        key: row?.key ?? false,
        defaultValue: row?.type_name === "bool" && /^(true|false)$/.test(row.default_expr ?? "")
          ? row.default_expr === "true"
          : undefined,
      };
    }),
  };
}

const KINDS: Record<string, ColumnKind> = {
  uuid: "uuid",
  varchar: "varchar",
  text: "varchar",
  date: "date",
  timestamptz: "timestamptz",
  int4: "int4",
  numeric: "numeric",
  bool: "bool",
};

/** The legacy encoder's spec of `spec`: its kinds only, the key as the first column. */
function legacySpec(spec: TableSpec): LegacySpec {
  if (!spec.columns[0]?.key || spec.columns.filter((c) => c.key).length !== 1) {
    throw new EncodingError(`${spec.schema}.${spec.table}: this encoder needs a one-column key in the first column`);
  }
  return {
    table: spec.table as LegacySpec["table"],
    columns: spec.columns.map((c) => {
      const kind = KINDS[c.typeName];
      if (!kind) throw new EncodingError(`${spec.table}.${c.name}: type ${c.typeName} is not encoded yet`);
      const numeric = kind === "numeric" && c.typmod >= 4
        ? { precision: ((c.typmod - 4) >> 16) & 0xffff, scale: (c.typmod - 4) & 0xffff }
        : undefined;
      if (kind === "numeric" && !numeric) throw new EncodingError(`${spec.table}.${c.name}: unconstrained numeric`);
      return { name: c.name, kind, optional: c.optional, numeric, defaultValue: c.defaultValue as boolean | undefined };
    }),
  };
}

/** The encoder with the interface of the coming lib/debezium.ts. */
export class DebeziumEncoder {
  // The legacy encoder caches schemas by table name: one per spec, as a Relation makes a new spec.
  #legacy = new WeakMap<TableSpec, { spec: LegacySpec; encoder: LegacyEncoder }>();
  /** Creates an encoder for one run's settings. */
  constructor(readonly settings: EncoderSettings) {}
  /** `<prefix>.<schema>.<table>`. */
  topic(spec: TableSpec): string {
    return `${this.settings.prefix}.${spec.schema}.${spec.table}`;
  }
  /** Records of one change; `nowNs` is the capture time in nanoseconds since 1970. */
  encode(spec: TableSpec, change: RowChange, nowNs: bigint): CaptureRecord[] {
    let legacy = this.#legacy.get(spec);
    if (!legacy) this.#legacy.set(spec, legacy = { spec: legacySpec(spec), encoder: new LegacyEncoder(this.settings) });
    const topic = this.topic(spec);
    return legacy.encoder.encode(legacy.spec, change, nowNs / 1000n).map((r: LegacyRecord) => ({ ...r, topic }));
  }
}
