/**
 * The capture's PostgreSQL side as its run uses it: the database readied, how a replication
 * connection starts, the slot's position and retained WAL, the first snapshot, the replication
 * connections, and the catalog that the stream's Relation messages are read against.
 * {@linkcode PostgresCapture} does it over one pool and lib/capture_slot.ts' statements; tests give
 * the run their own.
 * @module
 */
import { readTableSpec } from "./capture_catalog.ts";
import type { TableSpec } from "./capture_debezium.ts";
import { formatLsn, type Lsn, parseLsn, type Relation } from "./capture_pgoutput.ts";
import { type ReplicationConnection, ReplicationSession } from "./capture_replication.ts";
import {
  configuredAncestor,
  decideStart,
  missingFromPublication,
  prepareDatabase,
  qualified,
  recordSnapshotDone,
  refuseLostSlot,
  retainedWal,
  slotState,
} from "./capture_slot.ts";
import { keepSnapshotCheckpoint, readSnapshot, snapshotCheckpoint, type SnapshotOptions } from "./capture_snapshot.ts";
import {
  addNewTables,
  type ChunkDatabase,
  PostgresChunks,
  prepareSignalTable,
  recordStreamedTables,
  resumeFirstSnapshot,
} from "./capture_chunk_store.ts";
import type { FollowerCatalog } from "./capture_stream.ts";
import type { CaptureConfig, TableName } from "./config.ts";
import { connectDatabase, type Sql } from "./database.ts";

/** How a replication connection starts: from the slot, or with a new slot and its snapshot (`dropped`: over an old one). */
export type StartDecision = { start: "resume" } | { start: "snapshot"; dropped: boolean };

/** What a capture run reads and writes in PostgreSQL. */
export interface CaptureDatabase extends FollowerCatalog {
  /** Readies the database: the tables, the state table, their identity, the publication; a lost slot is refused. */
  prepare(): Promise<void>;
  /** How the next replication connection starts; drops the slot when it starts over. */
  decideStart(newSnapshot: boolean): Promise<StartDecision>;
  /** Throws SlotLostError or SlotInvalidatedError when the slot this capture streamed from is missing or invalidated. */
  checkSlot(): Promise<void>;
  /** The slot's confirmed position: everything before it is in Kafka (0 without a slot). */
  confirmedLsn(): Promise<Lsn>;
  /** WAL the slot retains on the server, in bytes; null without a slot. */
  retainedWal(): Promise<number | null>;
  /** A new replication connection. */
  replication(): ReplicationConnection;
  /** Reads the first snapshot of the configured tables and hands its rows to the publisher. */
  readSnapshot(options: Omit<SnapshotOptions, "tables">): Promise<{ rows: number; complete: boolean }>;
  /** Records that the slot's first snapshot, read at `consistentPoint`, reached Kafka. */
  recordSnapshotDone(consistentPoint: Lsn): Promise<void>;
  /** What the incremental snapshots read and write (lib/capture_chunk_store.ts). */
  chunks(): ChunkDatabase;
  /** Closes its connections. */
  end(): Promise<void>;
}

/** The capture's PostgreSQL side over one pool of two connections, and a replication connection of its own. */
export class PostgresCapture implements CaptureDatabase {
  readonly sql: Sql;

  /** Connects (lazily) to `config.databaseUrl`; `ensureContractTables` creates the consumer's tables when captured. */
  constructor(readonly config: CaptureConfig, readonly ensureContractTables?: (sql: Sql) => Promise<void>) {
    this.sql = connectDatabase(config.databaseUrl, 2);
  }

  /** Readies the database (lib/capture_slot.ts' prepareDatabase). */
  async prepare(): Promise<void> {
    // Tables new to --tables join the publication first, and are queued for an incremental snapshot.
    await addNewTables(this.sql, this.config);
    await prepareDatabase(this.sql, this.config, this.ensureContractTables);
    if (this.config.signalTable) await prepareSignalTable(this.sql, this.config.publication, this.config.signalTable);
  }

  /** The incremental snapshots' statements over the same pool. */
  chunks(): ChunkDatabase {
    return new PostgresChunks(this.sql, this.config.slot);
  }

  /** How the next replication connection starts (lib/capture_slot.ts' decideStart). */
  async decideStart(newSnapshot: boolean): Promise<StartDecision> {
    // A first snapshot killed midway resumes incrementally after its checkpoint (lib/capture_chunk_store.ts).
    if (!newSnapshot) await resumeFirstSnapshot(this.sql, this.config);
    return await decideStart(this.sql, this.config.slot, newSnapshot);
  }

  /** Refuses a missing or invalidated slot (lib/capture_slot.ts' refuseLostSlot). */
  async checkSlot(): Promise<void> {
    await refuseLostSlot(this.sql, this.config.slot, await slotState(this.sql, this.config.slot));
  }

  /** The slot's confirmed position, 0 without a slot. */
  async confirmedLsn(): Promise<Lsn> {
    const state = await slotState(this.sql, this.config.slot);
    return parseLsn(state.confirmed ?? "0/0");
  }

  /** WAL the slot retains, in bytes. */
  retainedWal(): Promise<number | null> {
    return retainedWal(this.sql, this.config.slot);
  }

  /** A replication connection to the same database, with the same TLS settings. */
  replication(): ReplicationConnection {
    return new ReplicationSession(this.config.databaseUrl);
  }

  /** Reads the first snapshot (lib/capture_snapshot.ts). */
  async readSnapshot(options: Omit<SnapshotOptions, "tables">): Promise<{ rows: number; complete: boolean }> {
    const { slot, tables } = this.config;
    await snapshotCheckpoint(this.sql, slot, true);
    const at = { consistentPoint: formatLsn(options.consistentPoint), tables: tables.map(qualified) };
    return await readSnapshot(this.sql, {
      ...options,
      tables,
      checkpoint: (table, lastKey) => keepSnapshotCheckpoint(this.sql, slot, { ...at, table, lastKey }),
    });
  }

  /** Records the first snapshot as done. */
  async recordSnapshotDone(consistentPoint: Lsn): Promise<void> {
    await recordSnapshotDone(this.sql, this.config.slot, formatLsn(consistentPoint));
    await recordStreamedTables(this.sql, this.config.slot, this.config.tables);
    await snapshotCheckpoint(this.sql, this.config.slot, true);
  }

  /** The table's spec from the catalog, with the Relation message's columns (lib/capture_catalog.ts). */
  tableSpec(relation: Relation): Promise<TableSpec> {
    return readTableSpec(this.sql, relation.schema, relation.table, relation);
  }

  /** The configured tables missing from the publication. */
  missingFromPublication(): Promise<TableName[]> {
    return missingFromPublication(this.sql, this.config.publication, this.config.tables);
  }

  /** The configured partitioned table above the relation (lib/capture_slot.ts' configuredAncestor). */
  configuredAncestor(relation: Relation): Promise<TableName | null> {
    return configuredAncestor(this.sql, relation.relationId, this.config.tables);
  }

  /** Closes the pool, waiting at most 5 s for queries in flight. */
  async end(): Promise<void> {
    await this.sql.end({ timeout: 5 }).catch(() => {});
  }
}
