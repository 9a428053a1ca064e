/**
 * The capture's output, pure: Kafka records in the shape the Debezium PostgreSQL connector 3.6
 * writes through Kafka Connect's JsonConverter with schemas enabled (or, with `schemas: false`,
 * disabled: the payloads alone). Schemas are built from the
 * table as the database describes it (a `TableSpec`, see lib/capture_catalog.ts), following
 * Debezium's TableSchemaBuilder, SchemaFactory and Envelope, in JsonConverter's key order: type,
 * fields, optional, name, version, doc, parameters, default, field. Each spec's schemas are
 * serialized once; rows are written by concatenating pre-escaped JSON pieces.
 * @module
 */
import { EncodingError, UnencodableChangeError } from "./capture_errors.ts";
import type { TupleValues } from "./capture_pgoutput.ts";
import type { ChangeSource, RowChange } from "./capture_reader.ts";
import { type Codec, DEBEZIUM_VALUE_DEFAULTS, jsonString, type ValueOptions } from "./capture_debezium_values.ts";
import { codecFor, type ElementFacts } from "./capture_debezium_types.ts";
import { utf8Length } from "./utf8.ts";
import { type RecordShape, shapeTable } from "./capture_catalog.ts";

/** One column, from pgoutput's Relation message and the catalog. */
export interface ColumnSpec {
  /** Column name. */
  name: string;
  /** pg_type oid of the column's type (a domain's base type). */
  typeOid: number;
  /** pg_type name of that type, e.g. "int4", "numeric", "timestamptz", "_int4". */
  typeName: string;
  /** atttypmod (a domain's typtypmod), -1 when none. */
  typmod: number;
  /** Whether the column is nullable (!attnotnull). */
  optional: boolean;
  /** Part of the key: the primary key, or without one the first unique index (Debezium's rule). */
  key: boolean;
  /** The default Debezium reports, as the text the column's codec reads (see `debeziumDefault`). */
  defaultText?: string;
  /** The labels of an enum type, in sort order. */
  enumValues?: string[];
  /** An array type's element type. */
  element?: ElementFacts;
  /** Left out of the value by `column.include.list` or `column.exclude.list` (a key column stays in the key). */
  excluded?: boolean;
}

/** A captured table as Debezium sees it. */
export interface TableSpec {
  /** Schema name, e.g. "public". */
  schema: string;
  /** Table name, e.g. "users". */
  table: string;
  /** Columns in the order of the tuple values (Relation order; the snapshot uses the same order). */
  columns: ColumnSpec[];
  /** Key column names in key order (the primary key's); absent: the `key` columns in column order. */
  keyColumns?: string[];
}

/** Debezium's `source.snapshot` values (SnapshotRecord, lower case); absent means "false". */
export type SnapshotMarker =
  | "true"
  | "first"
  | "first_in_data_collection"
  | "last_in_data_collection"
  | "last"
  | "incremental";

/** Settings of the encoder, fixed for a run. */
export interface EncoderSettings {
  /** Topic prefix, also Debezium's logical name (`source.name`). */
  prefix: string;
  /** Database name (`source.db`). */
  database: string;
  /** What `source.version` says: this project's version, marked as not Debezium's. */
  version: string;
  /**
   * Whether records carry their schemas, as JsonConverter writes them with `schemas.enable=true`; false writes the
   * payloads alone, as with `schemas.enable=false`. @default true
   */
  schemas?: boolean;
  /** Debezium's value options (decimal.handling.mode...). @default DEBEZIUM_VALUE_DEFAULTS */
  values?: ValueOptions;
  /** Debezium's `tombstones.on.delete`: a delete is followed by a tombstone. @default true */
  tombstonesOnDelete?: boolean;
  /** Debezium's `skipped.operations` of c, u and d: changes (and records) of these operations are not written. */
  skippedOperations?: ReadonlySet<string>;
  /** Debezium's column filter and key columns. */
  shape?: RecordShape;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/**
 * A record value as UTF-8 bytes in three parts: the table's serialized schema before the payload and what closes it
 * after, both shared by every record of the table, and the change's own JSON between them. The schema is most of a
 * value's bytes; one string per record would cost a copy, a flattening and the collection of large strings that live
 * until Kafka acknowledges them (docs/PERFORMANCE.md). kafkajs writes the parts straight into its record batch
 * (lib/kafkajs_fixes.ts); `toString()` gives the whole JSON text.
 */
export class FramedJson {
  #byteLength = -1;

  /** Wraps `payload` in the shared `head` and `tail` bytes (both empty for a payload-only value). */
  constructor(readonly head: Uint8Array, readonly payload: string, readonly tail: Uint8Array) {}

  /** The value's length in UTF-8 bytes. */
  get byteLength(): number {
    if (this.#byteLength < 0) this.#byteLength = this.head.length + utf8Length(this.payload) + this.tail.length;
    return this.#byteLength;
  }

  /** Writes the value's bytes at `offset` of `target`, which has `byteLength` bytes free there. */
  writeInto(target: Uint8Array, offset: number): void {
    target.set(this.head, offset);
    const payloadAt = offset + this.head.length;
    const { written } = utf8.encodeInto(this.payload, target.subarray(payloadAt, offset + this.byteLength));
    target.set(this.tail, payloadAt + written);
  }

  /** The whole JSON text. */
  toString(): string {
    return fromUtf8.decode(this.head) + this.payload + fromUtf8.decode(this.tail);
  }
}

/** A Kafka record, ready to send: key JSON text and value (value `null` for a tombstone). */
export interface CaptureRecord {
  /** `<prefix>.<schema>.<table>`. */
  topic: string;
  /** The Debezium key JSON; `null` for a table without key. */
  key: string | null;
  /** The Debezium value, or `null` for a delete's tombstone. */
  value: FramedJson | null;
  /** Kafka headers: `__debezium.newkey` / `__debezium.oldkey` on a primary key change's records. */
  headers?: Record<string, string>;
}

interface CompiledColumn {
  readonly spec: ColumnSpec;
  readonly index: number;
  /** `"name":` with a leading comma for all but the first field. */
  readonly member: string;
  readonly codec: Codec;
  /** The default as a logical value of the codec, undefined without one. */
  readonly defaultValue: unknown;
  /** JSON of a NULL: the default (JsonConverter writes a null with a default as the default), else null or the fallback. */
  readonly nullJson: string;
  /** Whether a value Debezium's converter drops (left null) still passes Struct.validate: optional or with a default. */
  readonly droppable: boolean;
}

interface CompiledTable {
  readonly spec: TableSpec;
  readonly topic: string;
  readonly columns: CompiledColumn[];
  readonly keyColumns: CompiledColumn[];
  /** `{"schema":<key schema>,"payload":` (empty without schemas), or null without key. */
  readonly keyHead: string | null;
  /** `{"schema":<envelope schema>,"payload":` as UTF-8 (empty without schemas). */
  readonly valueHead: Uint8Array;
  /** `}` as UTF-8 after a value's payload with schemas (empty without). */
  readonly valueTail: Uint8Array;
  /** What closes a key: `}` after the payload with schemas, nothing without. */
  readonly keyTail: string;
  /** `,"schema":"<schema>","table":"<table>",` of the source block. */
  readonly sourceTable: string;
}

function fieldSchema(column: CompiledColumn): string {
  const { codec, spec, defaultValue } = column;
  const def = defaultValue === undefined ? "" : `,"default":${codec.render(defaultValue)}`;
  return `{${codec.type},"optional":${spec.optional}${codec.logical}${def},"field":${jsonString(spec.name)}}`;
}

const SOURCE_SCHEMA = `{"type":"struct","fields":[{"type":"string","optional":false,"field":"version"},` +
  `{"type":"string","optional":false,"field":"connector"},{"type":"string","optional":false,"field":"name"},` +
  `{"type":"int64","optional":false,"field":"ts_ms"},{"type":"string","optional":true,"name":"io.debezium.data.Enum",` +
  `"version":1,"parameters":{"allowed":"true,first,first_in_data_collection,last_in_data_collection,last,false,` +
  `incremental"},"default":"false","field":"snapshot"},{"type":"string","optional":false,"field":"db"},` +
  `{"type":"string","optional":true,"field":"sequence"},{"type":"int64","optional":true,"field":"ts_us"},` +
  `{"type":"int64","optional":true,"field":"ts_ns"},{"type":"string","optional":false,"field":"schema"},` +
  `{"type":"string","optional":false,"field":"table"},{"type":"int64","optional":true,"field":"txId"},` +
  `{"type":"int64","optional":true,"field":"lsn"},{"type":"int64","optional":true,"field":"xmin"},` +
  `{"type":"string","optional":true,"field":"origin"},{"type":"int64","optional":true,"field":"origin_lsn"}],` +
  `"optional":false,"name":"io.debezium.connector.postgresql.Source","version":1,"field":"source"}`;

const ENVELOPE_TAIL = `{"type":"struct","fields":[{"type":"string","optional":false,"field":"id"},` +
  `{"type":"int64","optional":false,"field":"total_order"},` +
  `{"type":"int64","optional":false,"field":"data_collection_order"}],"optional":true,"name":"event.block",` +
  `"version":1,"field":"transaction"},{"type":"string","optional":false,"field":"op"},` +
  `{"type":"int64","optional":true,"field":"ts_ms"},{"type":"int64","optional":true,"field":"ts_us"},` +
  `{"type":"int64","optional":true,"field":"ts_ns"}]`;

/**
 * The default of a column as its codec's logical value: none when the text cannot be read, or for a struct (Kafka
 * Connect drops a struct default, KAFKA-12694).
 */
function defaultOf(codec: Codec, text: string | undefined): unknown {
  if (text === undefined || codec.type.startsWith('"type":"struct"')) return undefined;
  return codec.value(text) ?? undefined;
}

/** The columns of the value and those only in the key, each with its tuple index; members count the value's only. */
function compileColumns(spec: TableSpec, options: ValueOptions): CompiledColumn[] {
  const columns: CompiledColumn[] = [];
  spec.columns.forEach((column, index) => {
    if (column.excluded && !column.key) return;
    const found = codecFor(column, options);
    if ("skipped" in found) return; // include.unknown.datatypes=false: Debezium leaves the column out
    if ("unsupported" in found) {
      throw new EncodingError(
        `${spec.schema}.${spec.table}.${column.name}: type ${column.typeName} is not supported by the capture ` +
          `(${found.unsupported}); leave the column out of the captured tables or change its type`,
      );
    }
    const { codec } = found;
    const defaultValue = defaultOf(codec, column.defaultText);
    const hasDefault = defaultValue !== undefined;
    const nullJson = hasDefault ? codec.render(defaultValue) : column.optional ? "null" : codec.render(codec.fallback); // JdbcValueConverters.convertValue: a required column's NULL gets the fallback
    const droppable = column.optional || hasDefault;
    columns.push({ spec: column, index, member: "", codec, defaultValue, nullJson, droppable });
  });
  let at = 0;
  return columns.map((c) => c.spec.excluded ? c : { ...c, member: `${at++ ? "," : ""}${jsonString(c.spec.name)}:` });
}

/**
 * The topic of a table, `<prefix>.<schema>.<table>` with every character Kafka refuses in a topic name made `_`
 * (Debezium's AbstractTopicNamingStrategy.sanitizedTopicName).
 */
export function topicOf(prefix: string, schema: string, table: string): string {
  return `${prefix}.${schema}.${table}`.replace(/[^A-Za-z0-9._-]/g, "_");
}

function keyColumnsOf(spec: TableSpec, columns: CompiledColumn[]): CompiledColumn[] {
  const names = spec.keyColumns ?? spec.columns.filter((c) => c.key).map((c) => c.name);
  return names.map((name, i) => {
    const column = columns.find((c) => c.spec.name === name);
    if (!column) throw new EncodingError(`${spec.schema}.${spec.table}: key column ${name} has no encodable type`);
    return { ...column, member: `${i ? "," : ""}${jsonString(name)}:` };
  });
}

function compile(settings: EncoderSettings, described: TableSpec): CompiledTable {
  const spec = settings.shape ? shapeTable(described, settings.shape) : described;
  const topic = topicOf(settings.prefix, spec.schema, spec.table);
  const compiled = compileColumns(spec, settings.values ?? DEBEZIUM_VALUE_DEFAULTS);
  const columns = compiled.filter((c) => !c.spec.excluded);
  const keyColumns = keyColumnsOf(spec, compiled);
  const fields = (list: CompiledColumn[]) => list.map(fieldSchema).join(",");
  const keySchema = `{"type":"struct","fields":[${fields(keyColumns)}],"optional":false,` +
    `"name":${jsonString(`${topic}.Key`)}}`;
  const row = (field: string) =>
    `{"type":"struct","fields":[${fields(columns)}],"optional":true,"name":${jsonString(`${topic}.Value`)},` +
    `"field":"${field}"}`;
  const envelope = `{"type":"struct","fields":[${row("before")},${row("after")},${SOURCE_SCHEMA},${ENVELOPE_TAIL},` +
    `"optional":false,"name":${jsonString(`${topic}.Envelope`)},"version":2}`;
  const schemas = settings.schemas ?? true;
  return {
    spec,
    topic,
    columns,
    keyColumns,
    keyHead: keyColumns.length ? (schemas ? `{"schema":${keySchema},"payload":` : "") : null,
    valueHead: utf8.encode(schemas ? `{"schema":${envelope},"payload":` : ""),
    valueTail: utf8.encode(schemas ? "}" : ""),
    keyTail: schemas ? "}" : "",
    sourceTable: `,"schema":${jsonString(spec.schema)},"table":${jsonString(spec.table)},`,
  };
}

/**
 * What a codec returns for a value Debezium's converter fails on (NaN in a Decimal): TableSchemaBuilder's default
 * event.converting.failure.handling.mode=warn leaves the field unset, which Struct.validate accepts only for an
 * optional field or one with a default, and JsonConverter writes as the default or null.
 */
const DEBEZIUM_NULL = null;

function encodeValue(table: CompiledTable, column: CompiledColumn, text: string | null | undefined, row: TupleValues) {
  if (text === null) return column.nullJson;
  const { codec, spec } = column;
  if (text === undefined) {
    if (codec.toast !== undefined) return codec.toast === null ? "null" : codec.render(codec.toast);
    // Debezium's converter gets its marker and fails on it: warn mode leaves the field unset, as for NaN.
    if (column.droppable) return column.nullJson;
    throw encodingError(table, spec, "an unchanged TOASTed value", row);
  }
  const value = codec.value(text);
  if (value === DEBEZIUM_NULL && column.droppable) return column.nullJson;
  if (value === undefined || value === DEBEZIUM_NULL) {
    throw encodingError(table, spec, JSON.stringify(text), row, value === DEBEZIUM_NULL ? codec.refusal : undefined);
  }
  return codec.render(value);
}

function encodingError(
  table: CompiledTable,
  column: ColumnSpec,
  what: string,
  row: TupleValues,
  refusal?: string,
): EncodingError {
  const key = table.keyColumns.map((c) => `${c.spec.name}=${row[c.index] ?? "null"}`).join(",") || "(no key)";
  return new EncodingError(
    `${table.spec.schema}.${table.spec.table}.${column.name}: ${column.typeName} value ${what} cannot be encoded ` +
      `as Debezium does (row key ${key})${refusal ? `: ${refusal}` : ""}`,
  );
}

function encodeRow(table: CompiledTable, columns: CompiledColumn[], row: TupleValues): string {
  let json = "{";
  for (const column of columns) json += column.member + encodeValue(table, column, row[column.index], row);
  return `${json}}`;
}

/**
 * An update's old and new rows. With REPLICA IDENTITY FULL the old row comes whole and most of its columns equal the
 * new row's: a column whose text did not change is encoded once for both.
 */
function encodeRowPair(table: CompiledTable, before: TupleValues, after: TupleValues): [string, string] {
  let beforeJson = "{";
  let afterJson = "{";
  for (const column of table.columns) {
    const old = before[column.index];
    const now = after[column.index];
    const value = encodeValue(table, column, old, before);
    beforeJson += column.member + value;
    afterJson += column.member + (now === old ? value : encodeValue(table, column, now, after));
  }
  return [`${beforeJson}}`, `${afterJson}}`];
}

/**
 * An update's new row with each unchanged TOASTed value (`undefined`) taken from the old row where that has it
 * (REPLICA IDENTITY FULL sends it whole), as PostgresChangeRecordEmitter does from its old values, also for the
 * `c` of a key change; only where the old row lacks it does Debezium's placeholder remain.
 */
function withToastFromOld(after: TupleValues, before: TupleValues): TupleValues {
  if (!after.includes(undefined)) return after;
  return after.map((value, i) => value === undefined && before[i] != null ? before[i] : value);
}

/** The envelope's `"ts_ms":…,"ts_us":…,"ts_ns":…` of a time in nanoseconds: one bigint to text, the coarser units cut from it. */
function envelopeTimes(nowNs: bigint): string {
  const ns = String(nowNs);
  if (nowNs < 1_000_000n) return `"ts_ms":${nowNs / 1_000_000n},"ts_us":${nowNs / 1000n},"ts_ns":${ns}`;
  return `"ts_ms":${ns.slice(0, -6)},"ts_us":${ns.slice(0, -3)},"ts_ns":${ns}`;
}

/** Encodes row changes as Debezium records; each spec's schemas are built and serialized once. */
export class DebeziumEncoder {
  // A new spec object (after a Relation message) gets new schemas; old ones are collected with their specs.
  #compiled = new WeakMap<TableSpec, CompiledTable>();
  readonly #sourceHead: string;
  /** `"db":"<database>",` of the source block. */
  readonly #database: string;
  #lastCommitTime: { us: bigint; ms: string; ns: string } | undefined;

  /** Creates an encoder for one run's settings. */
  constructor(readonly settings: EncoderSettings) {
    this.#sourceHead = `,"source":{"version":${jsonString(settings.version)},"connector":"postgresql",` +
      `"name":${jsonString(settings.prefix)},"ts_ms":`;
    this.#database = `"db":${jsonString(settings.database)},`;
  }

  /** The topic of a table: `<prefix>.<schema>.<table>` ({@linkcode topicOf}). */
  topic(spec: Pick<TableSpec, "schema" | "table">): string {
    return topicOf(this.settings.prefix, spec.schema, spec.table);
  }

  #table(spec: TableSpec): CompiledTable {
    let table = this.#compiled.get(spec);
    if (!table) this.#compiled.set(spec, table = compile(this.settings, spec));
    return table;
  }

  /**
   * Records of one change. An update that changes the key gives d + tombstone (old key) then c (new key), as
   * Debezium's RelationalChangeRecordEmitter does. A delete gives d + tombstone. nowNs: capture time in
   * nanoseconds since 1970 (envelope ts_ms/ts_us/ts_ns). A skipped operation gives no records: Debezium's
   * publication leaves its changes out, and its dispatcher drops each record of a skipped op, and that record's
   * tombstone (EventDispatcher); `tombstonesOnDelete: false` drops tombstones.
   */
  encode(spec: TableSpec, change: RowChange, nowNs: bigint): CaptureRecord[] {
    const skipped = this.settings.skippedOperations;
    if (skipped?.has(change.op)) return [];
    const tombstones = this.settings.tombstonesOnDelete ?? true;
    const table = this.#table(spec);
    const { op, before } = change;
    const after = op === "u" && before && change.after ? withToastFromOld(change.after, before) : change.after;
    const row = op === "d" ? before : after;
    if (!row) throw new EncodingError(`${spec.schema}.${spec.table}: a ${op} change has no row`);
    const key = this.#key(table, row);
    const source = this.#source(table, change.source);
    const envelope = (o: string, b: TupleValues | null, a: TupleValues | null) => {
      const [beforeJson, afterJson] = b && a
        ? encodeRowPair(table, b, a)
        : [b ? encodeRow(table, table.columns, b) : "null", a ? encodeRow(table, table.columns, a) : "null"];
      return new FramedJson(
        table.valueHead,
        `{"before":${beforeJson},"after":${afterJson}${source},"transaction":null,"op":"${o}",` +
          `${envelopeTimes(nowNs)}}`,
        table.valueTail,
      );
    };
    const { topic } = table;
    if (op === "d") {
      return [{ topic, key, value: envelope("d", before, null) }, ...(tombstones ? [{ topic, key, value: null }] : [])];
    }
    if (op === "u" && before) {
      const oldKey = this.#key(table, before);
      if (oldKey !== key) {
        // Headers travel with the records, the tombstone included (EventDispatcher copies them).
        const toNew = { "__debezium.newkey": key ?? "null" };
        const deleted = skipped?.has("d") ? [] : [
          { topic, key: oldKey, value: envelope("d", before, null), headers: toNew },
          ...(tombstones ? [{ topic, key: oldKey, value: null, headers: toNew }] : []),
        ];
        const created = skipped?.has("c")
          ? []
          : [{ topic, key, value: envelope("c", null, after), headers: { "__debezium.oldkey": oldKey ?? "null" } }];
        return [...deleted, ...created];
      }
    }
    return [{ topic, key, value: envelope(op, before, after) }];
  }

  /**
   * The record of a TRUNCATE of `spec`'s table, as Debezium writes one when `skipped.operations` leaves `t` out
   * (Envelope.truncate: op `t`, no before or after; a null key, whose schema EventDispatcher leaves null, which
   * JsonConverter writes as no key at all); none when `t` is skipped.
   */
  truncate(spec: TableSpec, source: ChangeSource, nowNs: bigint): CaptureRecord[] {
    if (this.settings.skippedOperations?.has("t") ?? true) return [];
    const table = this.#table(spec);
    const payload = `{"before":null,"after":null${this.#source(table, source)},"transaction":null,"op":"t",` +
      `${envelopeTimes(nowNs)}}`;
    return [{ topic: table.topic, key: null, value: new FramedJson(table.valueHead, payload, table.valueTail) }];
  }

  /** A commit time as the source block writes it; a transaction's changes (and a snapshot's rows) share one. */
  #commitTime(tsUs: bigint): { us: bigint; ms: string; ns: string } {
    if (this.#lastCommitTime?.us !== tsUs) {
      this.#lastCommitTime = { us: tsUs, ms: String(tsUs / 1000n), ns: String(tsUs * 1000n) };
    }
    return this.#lastCommitTime;
  }

  #key(table: CompiledTable, row: TupleValues): string | null {
    return table.keyHead === null ? null : `${table.keyHead}${encodeRow(table, table.keyColumns, row)}${table.keyTail}`;
  }

  #source(table: CompiledTable, source: ChangeSource): string {
    const { tsUs, lastCommitLsn } = source;
    const lsn = source.lsn === null ? "null" : String(source.lsn);
    // Debezium's SourceInfo.sequence: a JSON array of two strings, itself written as a JSON string.
    const sequence = `[${lastCommitLsn === null ? "null" : `\\"${lastCommitLsn}\\"`},` +
      `${source.lsn === null ? "null" : `\\"${lsn}\\"`}]`;
    const position = `"txId":${source.txId ?? "null"},"lsn":${lsn}`;
    const time = this.#commitTime(tsUs);
    return `${this.#sourceHead}${time.ms},"snapshot":"${source.snapshot ?? "false"}",` +
      `${this.#database}"sequence":"${sequence}","ts_us":${time.us},"ts_ns":${time.ns}` +
      `${table.sourceTable}${position},"xmin":null,"origin":null,"origin_lsn":null}`;
  }
}

/** The records of `change`; a value the encoder refuses stops the run with the change's LSN. */
export function encodeOrStop(encoder: DebeziumEncoder, spec: TableSpec, change: RowChange): CaptureRecord[] {
  try {
    return encoder.encode(spec, change, nowNs());
  } catch (error) {
    throw error instanceof EncodingError ? new UnencodableChangeError(error, change.source.lsn) : error;
  }
}

/** The time now in nanoseconds since 1970, to the microsecond (the clock's precision). */
export function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}
