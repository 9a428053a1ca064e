/**
 * PostgreSQL's side of the incremental snapshots (lib/capture_chunks.ts): a table's largest key and
 * its chunks in key order, the watermarks written into the WAL, the queue kept in
 * `cdc_capture_state`, the tables new to `--tables` queued at start, the signal table readied, and a
 * first snapshot killed midway turned into an incremental one.
 * @module
 */
import { readTableSpec } from "./capture_catalog.ts";
import type { TableSpec } from "./capture_debezium.ts";
import { type KeyValues, type QueueState, type ReadSnapshot, SnapshotQueue } from "./capture_incremental.ts";
import type { TupleValues } from "./capture_pgoutput.ts";
import { ensureStateTable, qualified, recordSnapshotDone, slotState } from "./capture_slot.ts";
import { snapshotCheckpoint } from "./capture_snapshot.ts";
import type { CaptureConfig, TableName } from "./config.ts";
import type { Sql } from "./database.ts";
import type postgres from "postgres";

/** The prefix of the capture's watermark messages in the WAL. */
export const WATERMARK_PREFIX = "cdc-pipeline.watermark";

/** PostgreSQL's side of the incremental snapshot. */
export interface ChunkDatabase {
  /** The table's spec as the catalog describes it now. */
  tableSpec(table: TableName): Promise<TableSpec>;
  /** The table's largest key among the rows `filter` keeps; null when there is none. */
  largestKey(spec: TableSpec, key: string[], filter: string): Promise<KeyValues | null>;
  /**
   * Up to `limit` rows (values in spec order, text) with keys after `after` up to `until`, in key
   * order, and the snapshot that read them; null instead when that snapshot missed a transaction
   * already committed (see {@linkcode PostgresChunks.readChunk}).
   */
  readChunk(spec: TableSpec, key: string[], range: ChunkRange): Promise<ChunkRead | null>;
  /** PostgreSQL's estimate of the table's rows (`pg_class.reltuples`; 0 when never analysed). */
  estimateRows(table: TableName): Promise<number>;
  /** Writes a watermark into the WAL, in a transaction of its own. */
  emitWatermark(content: string): Promise<void>;
  /** The queue kept at the last acknowledged chunk; null when none. */
  loadState(): Promise<QueueState | null>;
  /** Keeps the queue (null: no snapshot left). */
  keepState(state: QueueState | null): Promise<void>;
}

/** Which rows a chunk reads. */
export interface ChunkRange {
  /** Keys after this one (null: from the first). */
  after: KeyValues | null;
  /** Keys up to this one. */
  until: KeyValues;
  /** Debezium's `additional-conditions` filter ("" when none). */
  filter: string;
  /** Rows at most. */
  limit: number;
}

/** A chunk's rows and the snapshot that read them. */
export interface ChunkRead {
  rows: TupleValues[];
  snapshot: ReadSnapshot;
}

const utf8 = new TextDecoder();

/** Fragments separated by commas, for a list postgres.js cannot build itself (values, `desc` per column). */
function commas(tx: Sql, fragments: postgres.Fragment[]): postgres.Fragment[] {
  return fragments.map((f, i) => (i ? tx`, ${f}` : f));
}

/** Raw rows as text values. */
function texts(rows: (Uint8Array | null)[][]): TupleValues[] {
  return rows.map((row) => row.map((v) => (v === null ? null : utf8.decode(v))));
}

/** A 64-bit xid (xid8, as text) cut to the 32 bits pgoutput's messages carry. */
function streamXid(xid8: string): number {
  return Number(BigInt(xid8) & 0xffffffffn);
}

/** The incremental snapshot's columns of the capture's state table: the queue kept, and the tables streamed. */
async function ensureStateColumns(sql: Sql): Promise<void> {
  await ensureStateTable(sql);
  await sql`
    alter table cdc_capture_state
      add column if not exists incremental_snapshot jsonb,
      add column if not exists streamed_tables text[]`;
}

/** Records that the slot streams `tables` (`schema.table`), after its first snapshot. */
export async function recordStreamedTables(sql: Sql, slot: string, tables: TableName[]): Promise<void> {
  await ensureStateColumns(sql);
  await sql`update cdc_capture_state set streamed_tables = ${tables.map(qualified)} where slot_name = ${slot}`;
}

/**
 * Adds the configured tables this slot never streamed to the publication and queues an
 * incremental snapshot of each, so that the other tables are not read again. A configured table
 * that was streamed and is now out of the publication is left to the publication check, which
 * stops the run: the deletes made while it was out cannot be recovered. A slot whose tables were
 * not recorded (a state row older than this) records the publication's tables and adds none.
 * Returns the tables added.
 */
export async function addNewTables(sql: Sql, config: Pick<CaptureConfig, "slot" | "publication" | "tables">) {
  await ensureStateColumns(sql);
  return await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${config.publication}))`;
    const [state] = await tx<{ streamed: string[] | null; queue: QueueState | null }[]>`
      select streamed_tables as streamed, incremental_snapshot as queue from cdc_capture_state
      where slot_name = ${config.slot} for update`;
    const [publication] = await tx`select 1 from pg_publication where pubname = ${config.publication}`;
    // No state yet: the first snapshot reads every table. No publication: the publication check stops the run.
    if (!state || !publication) return [];
    const inPublication = await tx<{ name: string }[]>`
      select schemaname || '.' || tablename as name from pg_publication_tables where pubname = ${config.publication}`;
    const present = new Set(inPublication.map((r) => r.name));
    if (state.streamed === null) {
      await tx`update cdc_capture_state set streamed_tables = ${[...present]} where slot_name = ${config.slot}`;
      return [];
    }
    const added = config.tables.filter((t) => !present.has(qualified(t)) && !state.streamed!.includes(qualified(t)));
    if (!added.length) return [];
    for (const t of added) {
      await tx`alter publication ${tx(config.publication)} add table ${tx(t.schema)}.${tx(t.table)}`;
    }
    const queue = new SnapshotQueue();
    if (state.queue) queue.restore(state.queue);
    queue.add(added.map((table) => ({ table, filter: "" })));
    await tx`
      update cdc_capture_state
      set streamed_tables = ${[...state.streamed, ...added.map(qualified)]}, incremental_snapshot = ${
      tx.json(queue.state() as never)
    }
      where slot_name = ${config.slot}`;
    return added;
  });
}

/**
 * Turns a first snapshot killed midway into an incremental one: when `slot` exists, is valid, its
 * first snapshot never completed and a checkpoint of it was kept for the same tables, the slot is
 * recorded as streaming from its consistent point and the rows after the checkpoint are queued
 * for an incremental snapshot; the rows Kafka acknowledged are not read again. Otherwise a stale
 * checkpoint is dropped and the first snapshot starts over. Returns whether it resumed.
 */
export async function resumeFirstSnapshot(
  sql: Sql,
  config: Pick<CaptureConfig, "slot" | "tables">,
): Promise<boolean> {
  const kept = await snapshotCheckpoint(sql, config.slot);
  if (!kept) return false;
  const slot = await slotState(sql, config.slot);
  const sameTables = kept.tables.join(",") === config.tables.map(qualified).join(",");
  if (!slot.exists || slot.snapshotDone || slot.invalidated !== null || slot.activePid || !sameTables) {
    if (!slot.activePid) await snapshotCheckpoint(sql, config.slot, true);
    return false;
  }
  const [current, ...waiting] = config.tables.slice(kept.table).map((table) => ({ table, filter: "" }));
  const queue: QueueState = { current: { request: current, after: kept.lastKey, until: null }, waiting, paused: false };
  await ensureStateColumns(sql);
  await sql.begin(async (tx) => {
    await recordSnapshotDone(tx as unknown as Sql, config.slot, kept.consistentPoint);
    await tx`
      update cdc_capture_state
      set streamed_tables = ${config.tables.map(qualified)}, incremental_snapshot = ${tx.json(queue as never)}
      where slot_name = ${config.slot}`;
    await snapshotCheckpoint(tx as unknown as Sql, config.slot, true);
  });
  return true;
}

/**
 * Creates the signal table with Debezium's columns when it is missing, and adds it to the
 * publication: its inserts reach the capture through the stream, in order with the changes.
 */
export async function prepareSignalTable(sql: Sql, publication: string, table: TableName): Promise<void> {
  await sql`
    create table if not exists ${sql(table.schema)}.${sql(table.table)} (
      id varchar(42) primary key, type varchar(32) not null, data varchar(2048))`;
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${publication}))`;
    const [present] = await tx`
      select 1 from pg_publication_tables
      where pubname = ${publication} and schemaname = ${table.schema} and tablename = ${table.table}`;
    if (!present) await tx`alter publication ${tx(publication)} add table ${tx(table.schema)}.${tx(table.table)}`;
  });
}

/** {@linkcode ChunkDatabase} over a pool; the state is a column of the capture's state table. */
export class PostgresChunks implements ChunkDatabase {
  /** Works over `sql` for `slot`. */
  constructor(readonly sql: Sql, readonly slot: string) {}

  /** The table's spec from the catalog. */
  tableSpec(table: TableName): Promise<TableSpec> {
    return readTableSpec(this.sql, table.schema, table.table);
  }

  /** The largest key among the rows the filter keeps. */
  async largestKey(spec: TableSpec, key: string[], filter: string): Promise<KeyValues | null> {
    // The filter is SQL by definition (Debezium's additional-conditions), written by someone who may write the
    // signal table; it runs in a read-only transaction, so it can read but never change anything.
    const rows = await this.sql.begin(
      "read only",
      (tx) =>
        tx`select ${tx(key)} from ${tx(spec.schema)}.${tx(spec.table)}
         where ${filter ? tx.unsafe(filter) : tx`true`}
         order by ${commas(tx as unknown as Sql, key.map((k) => tx`${tx(k)} desc`))} limit 1`.raw(),
    );
    return (texts(rows as unknown as (Uint8Array | null)[][])[0] as KeyValues | undefined) ?? null;
  }

  /**
   * A chunk's rows in key order, values in spec order as text, and the transactions the read saw:
   * the snapshot is taken by the transaction's first statement and the rows read in the same one.
   * A transaction is marked committed (pg_xact_status) before it becomes visible, and waits between
   * the two for a synchronous standby's answer; one caught there is in the WAL, so it may have been
   * streamed before the chunk's window began, and the read does not see it: such a read is given up
   * (null), to be made again once the transaction is visible.
   */
  async readChunk(spec: TableSpec, key: string[], range: ChunkRange): Promise<ChunkRead | null> {
    const columns = spec.columns.map((c) => c.name);
    const keyList = (tx: Sql) => commas(tx, key.map((k) => tx`${tx(k)}`));
    const values = (tx: Sql, keyValues: KeyValues) => commas(tx, keyValues.map((v) => tx`${v as string}`));
    // Read only: the filter is SQL by definition (Debezium's additional-conditions), see largestKey.
    return await this.sql.begin("isolation level repeatable read read only", async (transaction) => {
      const tx = transaction as unknown as Sql;
      const [seen] = await tx<{ xmax: string; running: string[]; committedUnseen: boolean }[]>`
        select pg_snapshot_xmax(s)::text as xmax, array(select pg_snapshot_xip(s)::text) as running,
          exists(select from pg_snapshot_xip(s) x where pg_xact_status(x) = 'committed') as "committedUnseen"
        from pg_current_snapshot() s`;
      if (seen.committedUnseen) return null;
      const rows = await tx`select ${tx(columns)} from ${tx(spec.schema)}.${tx(spec.table)}
         where ${range.after ? tx`(${keyList(tx)}) > (${values(tx, range.after)}) and` : tx``}
           (${keyList(tx)}) <= (${values(tx, range.until)})
           and ${range.filter ? tx.unsafe(range.filter) : tx`true`}
         order by ${keyList(tx)} limit ${range.limit}`.raw();
      const snapshot = { xmax: streamXid(seen.xmax), running: new Set(seen.running.map(streamXid)) };
      return { rows: texts(rows as unknown as (Uint8Array | null)[][]), snapshot };
    });
  }

  /** `pg_class.reltuples` of the table; a table never analysed (-1 on PostgreSQL 14+, 0 before) is counted. */
  async estimateRows(table: TableName): Promise<number> {
    const [row] = await this.sql<{ n: number | null }[]>`
      select reltuples::float8 as n from pg_class where oid = to_regclass(${`"${table.schema}"."${table.table}"`})`;
    if ((row?.n ?? 0) > 0) return Math.round(row.n!);
    const [counted] = await this.sql<{ n: number }[]>`
      select count(*)::float8 as n from ${this.sql(table.schema)}.${this.sql(table.table)}`;
    return counted.n;
  }

  /** A transactional logical decoding message with the capture's watermark prefix. */
  async emitWatermark(content: string): Promise<void> {
    await this.sql`select pg_logical_emit_message(true, ${WATERMARK_PREFIX}::text, ${content}::text)`;
  }

  /** The queue kept in `cdc_capture_state.incremental_snapshot`. */
  async loadState(): Promise<QueueState | null> {
    await ensureStateColumns(this.sql);
    const [row] = await this.sql<{ state: QueueState | null }[]>`
      select incremental_snapshot as state from cdc_capture_state where slot_name = ${this.slot}`;
    return row?.state ?? null;
  }

  /** Keeps the queue in the slot's state row. */
  async keepState(state: QueueState | null): Promise<void> {
    await this.sql`
      update cdc_capture_state set incremental_snapshot = ${state === null ? null : this.sql.json(state as never)}
      where slot_name = ${this.slot}`;
  }
}
