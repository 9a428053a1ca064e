/**
 * The capture's output, pure: Kafka records in the shape the Debezium PostgreSQL connector 3.6
 * writes through Kafka Connect's JsonConverter with schemas enabled (CONTRACT.md section 7).
 * Schemas follow Debezium's builders (TableSchemaBuilder, SchemaFactory, PostgresValueConverter)
 * and JsonConverter's key order: type, fields, optional, name, version, parameters, default,
 * field. Values arrive in PostgreSQL's text form (pgoutput or a raw snapshot row).
 * @module
 */
import type { TupleValues } from "./pgoutput.ts";

/** How a column is encoded; each maps to one PostgreSQL type. */
export type ColumnKind = "uuid" | "varchar" | "date" | "timestamptz" | "int4" | "numeric" | "bool";

/** One column of a captured table, as Debezium describes it. */
export interface ColumnSpec {
  /** Column name. */
  name: string;
  /** Encoding. */
  kind: ColumnKind;
  /** Whether the column is nullable. */
  optional: boolean;
  /** The column's default, when it has one Debezium reports (`is_deleted default false`). */
  defaultValue?: boolean;
  /** Precision and scale of a numeric column. */
  numeric?: { precision: number; scale: number };
}

/** A captured table: its columns in attribute order; the first is the primary key `id`. */
export interface TableSpec {
  /** Table name. */
  table: "users" | "orders";
  /** Columns, in attribute order. */
  columns: ColumnSpec[];
}

/** Type OIDs of the kinds, to check a Relation message against the spec. */
export const TYPE_OIDS: Record<ColumnKind, number> = {
  uuid: 2950,
  varchar: 1043,
  date: 1082,
  timestamptz: 1184,
  int4: 23,
  numeric: 1700,
  bool: 16,
};

/** The two tables of CONTRACT.md section 3, as lib/sink.ts's ensureSchema creates them. */
export const CAPTURED_TABLES: Record<"users" | "orders", TableSpec> = {
  users: {
    table: "users",
    columns: [
      { name: "id", kind: "uuid", optional: false },
      { name: "name", kind: "varchar", optional: false },
      { name: "dob", kind: "date", optional: false },
      { name: "created_at", kind: "timestamptz", optional: true },
      { name: "modified_at", kind: "timestamptz", optional: true },
      { name: "is_deleted", kind: "bool", optional: true, defaultValue: false },
    ],
  },
  orders: {
    table: "orders",
    columns: [
      { name: "id", kind: "uuid", optional: false },
      { name: "status", kind: "varchar", optional: false },
      { name: "user_id", kind: "uuid", optional: false },
      { name: "quantity", kind: "int4", optional: false },
      { name: "total_amount", kind: "numeric", optional: false, numeric: { precision: 10, scale: 2 } },
      { name: "placed_at", kind: "timestamptz", optional: true },
      { name: "modified_at", kind: "timestamptz", optional: true },
      { name: "is_deleted", kind: "bool", optional: true, defaultValue: false },
    ],
  },
};

/** A value that cannot be encoded; names the table, column and value. */
export class EncodingError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "EncodingError";
  }
}

/** Debezium's `source.snapshot` values (SnapshotRecord, lower case); absent means "false". */
export type SnapshotMarker = "true" | "first" | "first_in_data_collection" | "last_in_data_collection" | "last";

/** Where a change comes from: Debezium's `source` block, less what the encoder adds itself. */
export interface ChangeSource {
  /** Commit time (streaming) or read time (snapshot), microseconds since 1970. */
  tsUs: bigint;
  /** Snapshot marker, for `op: "r"` records; absent while streaming. */
  snapshot?: SnapshotMarker;
  /** Transaction id. */
  txId: number | null;
  /** LSN of the change (streaming) or the slot's consistent point (snapshot). */
  lsn: bigint | null;
  /** End LSN of the last commit before this change's transaction, for `sequence`. */
  lastCommitLsn: bigint | null;
}

/** One row change, values in text form, in the spec's column order. */
export interface RowChange {
  /** `r` snapshot read, `c` insert, `u` update, `d` delete. */
  op: "r" | "c" | "u" | "d";
  /** Row before the change (update, delete), when the replica identity gives it. */
  before: TupleValues | null;
  /** Row after the change (read, insert, update). */
  after: TupleValues | null;
  /** Where it comes from. */
  source: ChangeSource;
}

/** Settings of the encoder, fixed for a run. */
export interface EncoderSettings {
  /** Topic prefix, also Debezium's logical name (`source.name`). */
  prefix: string;
  /** Database name (`source.db`). */
  database: string;
  /** What `source.version` says: this project's version, marked as not Debezium's. */
  version: string;
}

/** A Kafka record, ready to send: key and value JSON text (value `null` for a tombstone). */
export interface CaptureRecord {
  /** `<prefix>.public.<table>`. */
  topic: string;
  /** The Debezium key JSON. */
  key: string;
  /** The Debezium value JSON, or `null` for a delete's tombstone. */
  value: string | null;
}

type JsonSchema = Record<string, unknown>;

// Placeholders holding a NUL, which no PostgreSQL text value can contain.
const TS_NS_SOURCE = "\u0000source.ts_ns";
const TS_NS_EVENT = "\u0000ts_ns";

function fieldSchema(column: ColumnSpec): JsonSchema {
  const optional = column.optional;
  switch (column.kind) {
    case "uuid":
      return { type: "string", optional, name: "io.debezium.data.Uuid", version: 1, field: column.name };
    case "varchar":
      return { type: "string", optional, field: column.name };
    case "date":
      return { type: "int32", optional, name: "io.debezium.time.Date", version: 1, field: column.name };
    case "timestamptz":
      return { type: "string", optional, name: "io.debezium.time.ZonedTimestamp", version: 1, field: column.name };
    case "int4":
      return { type: "int32", optional, field: column.name };
    case "numeric":
      return {
        type: "bytes",
        optional,
        name: "org.apache.kafka.connect.data.Decimal",
        version: 1,
        parameters: {
          scale: String(column.numeric!.scale),
          "connect.decimal.precision": String(column.numeric!.precision),
        },
        field: column.name,
      };
    case "bool":
      return column.defaultValue === undefined
        ? { type: "boolean", optional, field: column.name }
        : { type: "boolean", optional, default: column.defaultValue, field: column.name };
  }
}

const SNAPSHOT_ALLOWED = "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental";

function sourceSchema(): JsonSchema {
  const f = (type: string, optional: boolean, field: string) => ({ type, optional, field });
  return {
    type: "struct",
    fields: [
      f("string", false, "version"),
      f("string", false, "connector"),
      f("string", false, "name"),
      f("int64", false, "ts_ms"),
      {
        type: "string",
        optional: true,
        name: "io.debezium.data.Enum",
        version: 1,
        parameters: { allowed: SNAPSHOT_ALLOWED },
        default: "false",
        field: "snapshot",
      },
      f("string", false, "db"),
      f("string", true, "sequence"),
      f("int64", true, "ts_us"),
      f("int64", true, "ts_ns"),
      f("string", false, "schema"),
      f("string", false, "table"),
      f("int64", true, "txId"),
      f("int64", true, "lsn"),
      f("int64", true, "xmin"),
      f("string", true, "origin"),
      f("int64", true, "origin_lsn"),
    ],
    optional: false,
    name: "io.debezium.connector.postgresql.Source",
    version: 1,
    field: "source",
  };
}

/** The key schema of a table: `{id}`, named `<prefix>.public.<table>.Key`. */
export function keySchema(prefix: string, spec: TableSpec): JsonSchema {
  return {
    type: "struct",
    fields: [fieldSchema(spec.columns[0])],
    optional: false,
    name: `${prefix}.public.${spec.table}.Key`,
  };
}

/** The envelope schema of a table's values, named `<prefix>.public.<table>.Envelope`. */
export function valueSchema(prefix: string, spec: TableSpec): JsonSchema {
  const row = (field: string) => ({
    type: "struct",
    fields: spec.columns.map(fieldSchema),
    optional: true,
    name: `${prefix}.public.${spec.table}.Value`,
    field,
  });
  const f = (type: string, optional: boolean, field: string) => ({ type, optional, field });
  return {
    type: "struct",
    fields: [
      row("before"),
      row("after"),
      sourceSchema(),
      {
        type: "struct",
        fields: [
          f("string", false, "id"),
          f("int64", false, "total_order"),
          f("int64", false, "data_collection_order"),
        ],
        optional: true,
        name: "event.block",
        version: 1,
        field: "transaction",
      },
      f("string", false, "op"),
      f("int64", true, "ts_ms"),
      f("int64", true, "ts_us"),
      f("int64", true, "ts_ns"),
    ],
    optional: false,
    name: `${prefix}.public.${spec.table}.Envelope`,
    version: 2,
  };
}

const DAY_MS = 86_400_000;
const TIMESTAMP = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?$/;

/** `date` text (`YYYY-MM-DD`) as Debezium's io.debezium.time.Date: days since 1970-01-01. */
export function epochDays(text: string): number | null {
  const match = /^(\d{4})-(\d\d)-(\d\d)$/.exec(text);
  if (!match) return null;
  return Date.UTC(Number(match[1]), Number(match[2]) - 1, Number(match[3])) / DAY_MS;
}

/**
 * `timestamptz` text (`2025-07-03 10:11:12.1234+02`) as Debezium's ZonedTimestamp: ISO-8601
 * in UTC with exactly six fraction digits, the column's scale (`2025-07-03T08:11:12.123400Z`).
 */
export function zonedTimestamp(text: string): string | null {
  const m = TIMESTAMP.exec(text);
  if (!m) return null;
  const offsetS = (m[8] === "-" ? -1 : 1) * (Number(m[9]) * 3600 + Number(m[10] ?? 0) * 60 + Number(m[11] ?? 0));
  const utcMs = Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])) -
    offsetS * 1000;
  return `${new Date(utcMs).toISOString().slice(0, 19)}.${(m[7] ?? "").padEnd(6, "0")}Z`;
}

/**
 * `numeric` text as Kafka Connect's Decimal: base64 of the big-endian two's-complement unscaled
 * value, as Java's BigInteger.toByteArray writes it (12.34 at scale 2 -> 1234 -> 04 D2 -> "BNI=").
 */
export function decimalBase64(text: string, scale: number): string | null {
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m || (m[3] ?? "").length > scale) return null;
  const unscaled = BigInt(`${m[1]}${m[2]}${(m[3] ?? "").padEnd(scale, "0")}`);
  let bytes = 1;
  while (unscaled >= 1n << BigInt(8 * bytes - 1) || unscaled < -(1n << BigInt(8 * bytes - 1))) bytes++;
  let twos = unscaled < 0n ? (1n << BigInt(8 * bytes)) + unscaled : unscaled;
  const out = new Uint8Array(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = Number(twos & 0xffn);
    twos >>= 8n;
  }
  return btoa(String.fromCharCode(...out));
}

function encodeValue(column: ColumnSpec, text: string | null | undefined, where: string): unknown {
  if (text === undefined) {
    // Unchanged TOASTed values never occur in these tables (no column is TOASTable).
    throw new EncodingError(`${where}.${column.name}: an unchanged TOASTed value cannot be encoded`);
  }
  if (text === null) return column.defaultValue ?? null; // JsonConverter writes a null with a default as the default
  let value: unknown;
  switch (column.kind) {
    case "uuid":
    case "varchar":
      return text;
    case "int4":
      value = /^-?\d+$/.test(text) ? Number(text) : null;
      break;
    case "bool":
      value = text === "t" ? true : text === "f" ? false : null;
      break;
    case "date":
      value = epochDays(text);
      break;
    case "timestamptz":
      value = zonedTimestamp(text);
      break;
    case "numeric":
      value = decimalBase64(text, column.numeric!.scale);
      break;
  }
  if (value === null) {
    throw new EncodingError(`${where}.${column.name}: ${column.kind} value ${JSON.stringify(text)} cannot be encoded`);
  }
  return value;
}

function encodeRow(spec: TableSpec, values: TupleValues | null): Record<string, unknown> | null {
  if (!values) return null;
  const row: Record<string, unknown> = {};
  spec.columns.forEach((column, i) => (row[column.name] = encodeValue(column, values[i], spec.table)));
  return row;
}

/** Caches each table's schema JSON, which is the same on every record. */
export class DebeziumEncoder {
  #keySchemas = new Map<string, string>();
  #valueSchemas = new Map<string, string>();

  /** Creates an encoder for one run's settings. */
  constructor(readonly settings: EncoderSettings) {}

  /** The topic of a table: `<prefix>.public.<table>`. */
  topic(spec: TableSpec): string {
    return `${this.settings.prefix}.public.${spec.table}`;
  }

  /** The key JSON of the row with primary key `id`. */
  key(spec: TableSpec, id: string): string {
    let schema = this.#keySchemas.get(spec.table);
    if (!schema) this.#keySchemas.set(spec.table, schema = JSON.stringify(keySchema(this.settings.prefix, spec)));
    return `{"schema":${schema},"payload":${JSON.stringify({ id })}}`;
  }

  /** The records of one change: its event, and for a delete the tombstone after it. */
  encode(spec: TableSpec, change: RowChange, nowUs: bigint): CaptureRecord[] {
    const keyRow = change.after ?? change.before;
    const id = keyRow?.[0];
    if (typeof id !== "string") throw new EncodingError(`${spec.table}: a ${change.op} change has no id`);
    let schema = this.#valueSchemas.get(spec.table);
    if (!schema) this.#valueSchemas.set(spec.table, schema = JSON.stringify(valueSchema(this.settings.prefix, spec)));
    const { source } = change;
    const payload = {
      before: encodeRow(spec, change.before),
      after: encodeRow(spec, change.after),
      source: {
        version: this.settings.version,
        connector: "postgresql",
        name: this.settings.prefix,
        ts_ms: Number(source.tsUs / 1000n),
        snapshot: source.snapshot ?? "false",
        db: this.settings.database,
        sequence: JSON.stringify([
          source.lastCommitLsn === null ? null : String(source.lastCommitLsn),
          source.lsn === null ? null : String(source.lsn),
        ]),
        ts_us: Number(source.tsUs),
        ts_ns: TS_NS_SOURCE,
        schema: "public",
        table: spec.table,
        txId: source.txId,
        lsn: source.lsn === null ? null : Number(source.lsn),
        xmin: null,
        origin: null,
        origin_lsn: null,
      },
      transaction: null,
      op: change.op,
      ts_ms: Number(nowUs / 1000n),
      ts_us: Number(nowUs),
      ts_ns: TS_NS_EVENT,
    };
    // Nanoseconds since 1970 pass 2^53: written as exact digits, not as a rounded double.
    const payloadJson = JSON.stringify(payload)
      .replace(JSON.stringify(TS_NS_SOURCE), `${source.tsUs}000`)
      .replace(JSON.stringify(TS_NS_EVENT), `${nowUs}000`);
    const topic = this.topic(spec);
    const key = this.key(spec, id);
    const records: CaptureRecord[] = [{ topic, key, value: `{"schema":${schema},"payload":${payloadJson}}` }];
    if (change.op === "d") records.push({ topic, key, value: null });
    return records;
  }
}
