/**
 * The first snapshot: the rows of every captured table as they were at the slot's consistent
 * point, read in the snapshot the slot exported and published as `op: "r"` records. The stream
 * then starts at that point, so the two meet with no gap and no overlap.
 * @module
 */
import { readTableSpec } from "./capture_catalog.ts";
import { type DebeziumEncoder, encodeOrStop, type SnapshotMarker, type TableSpec } from "./capture_debezium.ts";
import type { RowChange } from "./capture_reader.ts";
import type { AckingPublisher } from "./capture_publisher.ts";
import type { TableName } from "./config.ts";
import type { Lsn } from "./capture_pgoutput.ts";
import type { Sql } from "./database.ts";
import type { KeyValues } from "./capture_incremental.ts";
import type { SnapshotProgress } from "./stats.ts";
import { qualified } from "./capture_slot.ts";

/** What {@linkcode readSnapshot} needs. */
export interface SnapshotOptions {
  /** The name the slot's creation exported (`CREATE_REPLICATION_SLOT ... EXPORT_SNAPSHOT`). */
  snapshotName: string;
  /** The slot's consistent point: every snapshot record's `source.lsn`. */
  consistentPoint: Lsn;
  tables: TableName[];
  encoder: DebeziumEncoder;
  publisher: AckingPublisher;
  /** Aborted on a stop: the snapshot ends after the batch in hand, incomplete. */
  signal: AbortSignal;
  /**
   * Keeps where the snapshot stands, about every second: every row up to `lastKey` of the
   * `table`-th table (and every row of the tables before it) is in Kafka. Rows are read in key
   * order, so a crash resumes after that key (lib/capture_chunks.ts' resumeFirstSnapshot).
   */
  checkpoint?: (table: number, lastKey: KeyValues) => Promise<void>;
  /** Where each table's snapshot stands (rows of its count, rate): progress lines, `/metrics`, `/health`. */
  progress?: SnapshotProgress;
}

/** Seconds between the first snapshot's checkpoints. */
const CHECKPOINT_EVERY_MS = 1_000;

const utf8 = new TextDecoder();

/**
 * Reads every table in the exported snapshot and hands its rows to the publisher; resolves once
 * Kafka acknowledged them. Records carry the snapshot transaction's id as `source.txId`, as
 * Debezium's do (`txid_current()` inside the snapshot transaction).
 */
export async function readSnapshot(sql: Sql, options: SnapshotOptions): Promise<{ rows: number; complete: boolean }> {
  if (!/^[0-9A-F-]+$/.test(options.snapshotName)) throw new Error(`unexpected snapshot name ${options.snapshotName}`);
  let rows = 0;
  let complete = true;
  // postgres.js rejects sql.begin() as soon as the connection closes (an outage), while the function
  // given to it may still hold rows in hand: `abandoned` tells that function to publish nothing more.
  const abandoned = new AbortController();
  const reading = { ...options, abandoned: abandoned.signal };
  await sql.begin("isolation level repeatable read read only", async (tx) => {
    // SET TRANSACTION SNAPSHOT takes no parameter; the name was checked above.
    await tx.unsafe(`set transaction snapshot '${options.snapshotName}'`);
    await tx`set local datestyle to iso`;
    await tx`set local timezone to 'UTC'`;
    const [{ txid, read_us }] = await tx<{ txid: string; read_us: string }[]>`
      select txid_current()::text as txid, (extract(epoch from clock_timestamp()) * 1000000)::bigint::text as read_us`;
    const specs: TableSpec[] = [];
    const counts: number[] = [];
    for (const t of options.tables) {
      specs.push(await readTableSpec(tx as unknown as Sql, t.schema, t.table));
      const [{ n }] = await tx<{ n: number }[]>`select count(*)::int as n from ${tx(t.schema)}.${tx(t.table)}`;
      counts.push(n);
    }
    const source = { counts, txId: Number(txid), tsUs: BigInt(read_us) };
    for (let i = 0; i < specs.length && complete; i++) {
      options.progress?.start(qualified(options.tables[i]), counts[i]);
      const read = await readTable(tx as unknown as Sql, specs[i], i, source, reading);
      rows += read.rows;
      complete = read.complete;
      if (complete) options.progress?.finish(qualified(options.tables[i]));
    }
  }).finally(() => abandoned.abort());
  await options.publisher.flush();
  return { rows, complete };
}

/** Reads one table's rows with a cursor; stops after a batch when the signal aborts. */
async function readTable(
  tx: Sql,
  spec: TableSpec,
  tableIndex: number,
  snapshot: { counts: number[]; txId: number; tsUs: bigint },
  options: SnapshotOptions & { abandoned: AbortSignal },
): Promise<{ rows: number; complete: boolean }> {
  const { encoder, publisher, consistentPoint, abandoned } = options;
  const columns = spec.columns.map((c) => c.name);
  const keyNames = spec.keyColumns ?? spec.columns.filter((c) => c.key).map((c) => c.name);
  const key = keyNames.map((n) => columns.indexOf(n));
  let index = 0;
  let checkpointAt = performance.now();
  // In key order, so that a checkpoint's last key says which rows are in Kafka; a table without a key cannot resume.
  const order = key.length ? tx`order by ${tx(keyNames)}` : tx``;
  const batches = tx`select ${tx(columns)} from ${tx(spec.schema)}.${tx(spec.table)} ${order}`.raw().cursor(1000)
    [Symbol.asyncIterator]();
  // The next batch is asked for before this one is encoded, so PostgreSQL reads it meanwhile. Until it is
  // awaited, its failure (the connection closed) is marked handled: it is thrown where it is awaited.
  const ahead = () => {
    const read = batches.next();
    read.catch(() => {});
    return read;
  };
  let next = ahead();
  let batch = await next;
  try {
    for (; !batch.done && !abandoned.aborted; batch = await next) {
      next = ahead();
      for (const raw of batch.value as unknown as (Uint8Array | null)[][]) {
        const change: RowChange = {
          op: "r",
          before: null,
          after: raw.map((v) => (v === null ? null : utf8.decode(v))),
          source: {
            tsUs: snapshot.tsUs,
            snapshot: snapshotMarker(snapshot.counts, tableIndex, index),
            txId: snapshot.txId,
            lsn: consistentPoint,
            lastCommitLsn: null,
          },
        };
        publisher.add(encodeOrStop(encoder, spec, change), spec, "r");
        index++;
      }
      options.progress?.count(qualified(spec), (batch.value as unknown[]).length);
      // A failed send is thrown by below() or the last flush; sends overlap reading within the bound.
      if (publisher.sendable) publisher.flush().catch(() => {});
      if (publisher.full) await publisher.below();
      if (options.checkpoint && key.length && performance.now() - checkpointAt >= CHECKPOINT_EVERY_MS) {
        const last = (batch.value as unknown as (Uint8Array | null)[][]).at(-1)!;
        await publisher.flush();
        await options.checkpoint(tableIndex, key.map((i) => utf8.decode(last[i]!)));
        checkpointAt = performance.now();
      }
      if (options.signal.aborted) return { rows: index, complete: false };
    }
    return { rows: index, complete: !abandoned.aborted };
  } finally {
    // Left early (a stop, a value that cannot be encoded): the batch asked for ahead is awaited, then the cursor
    // closed; a suspended cursor would hold the transaction's connection, and its rollback, for ever. An abandoned
    // transaction's connection is gone: there is nothing to close.
    if (!batch.done && !abandoned.aborted && !(await next.then((read) => read.done, () => true))) {
      batches.return?.();
    }
  }
}

/**
 * Debezium's `source.snapshot` of row `row` of the `table`-th table, given each table's row count in snapshot order
 * (RelationalSnapshotChangeEventSource's SnapshotMarkerResolver): the first table's first row is "first", a table's
 * last row "last_in_data_collection" (before its first row's "first_in_data_collection", so a one-row table's row
 * is the former), and the snapshot's last row "last" even when the tables after it are empty (EventDispatcher's
 * buffering receiver marks the last record it holds). An empty first table leaves no row "first", as in Debezium.
 */
export function snapshotMarker(counts: number[], table: number, row: number): SnapshotMarker {
  const lastInTable = row === counts[table] - 1;
  if (lastInTable && counts.slice(table + 1).every((n) => n === 0)) return "last";
  if (row === 0 && table === 0) return "first";
  if (lastInTable) return "last_in_data_collection";
  if (row === 0) return "first_in_data_collection";
  return "true";
}

/** Where a first snapshot killed midway stood: every row up to `lastKey` of `tables[table]` is in Kafka. */
export interface SnapshotCheckpoint {
  /** The slot's consistent point, where its stream starts. */
  consistentPoint: string;
  /** The tables the snapshot read, in order (`schema.table`). */
  tables: string[];
  /** The index of the table being read. */
  table: number;
  /** Its last key in Kafka. */
  lastKey: KeyValues;
}

/** The first snapshot's checkpoints: one row per slot while its first snapshot is read. */
export async function ensureSnapshotCheckpoints(sql: Sql): Promise<void> {
  await sql`
    create table if not exists cdc_capture_snapshot_checkpoint (
      slot_name text primary key,
      consistent_point pg_lsn not null,
      tables text[] not null,
      table_index integer not null,
      last_key jsonb not null,
      kept_at timestamptz not null default now()
    )`;
}

/** Keeps the first snapshot's checkpoint of `slot`. */
export async function keepSnapshotCheckpoint(sql: Sql, slot: string, at: SnapshotCheckpoint): Promise<void> {
  await sql`
    insert into cdc_capture_snapshot_checkpoint (slot_name, consistent_point, tables, table_index, last_key)
    values (${slot}, ${at.consistentPoint}, ${at.tables}, ${at.table}, ${sql.json(at.lastKey)})
    on conflict (slot_name) do update set consistent_point = excluded.consistent_point, tables = excluded.tables,
      table_index = excluded.table_index, last_key = excluded.last_key, kept_at = now()`;
}

/** The checkpoint of `slot`'s first snapshot, if one was kept; `forget` deletes it. */
export async function snapshotCheckpoint(sql: Sql, slot: string, forget = false): Promise<SnapshotCheckpoint | null> {
  await ensureSnapshotCheckpoints(sql);
  const [row] = forget
    ? await sql<SnapshotCheckpoint[]>`
      delete from cdc_capture_snapshot_checkpoint where slot_name = ${slot}
      returning consistent_point::text as "consistentPoint", tables, table_index as table, last_key as "lastKey"`
    : await sql<SnapshotCheckpoint[]>`
      select consistent_point::text as "consistentPoint", tables, table_index as table, last_key as "lastKey"
      from cdc_capture_snapshot_checkpoint where slot_name = ${slot}`;
  return row ?? null;
}
