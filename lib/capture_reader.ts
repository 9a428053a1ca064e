/**
 * The capture's reading of the replication stream, pure: CopyData payloads in; relations, row
 * changes with their `source` (xid, commit time, LSN), commit boundaries and the positions that
 * may be confirmed out. It knows nothing of Kafka or PostgreSQL connections: the session feeds
 * it frames, and the acking publisher (lib/capture_publisher.ts) confirms a position only once
 * Kafka acknowledged every record before it.
 * @module
 */
import type { SnapshotMarker } from "./capture_debezium.ts";
import {
  decodeFrame,
  decodePgOutput,
  type Lsn,
  type PgOutputMessage,
  pgTimeToUnixMicros,
  type Relation,
  type TupleValues,
} from "./capture_pgoutput.ts";

/** Where a change comes from: Debezium's `source` block, less what the encoder adds itself. */
export interface ChangeSource {
  /** Commit time (streaming) or read time (snapshot), microseconds since 1970. */
  tsUs: bigint;
  /** Snapshot marker, for `op: "r"` records; absent while streaming. */
  snapshot?: SnapshotMarker;
  /** Transaction id: the streamed transaction's xid, or the snapshot transaction's txid. */
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

/** What one frame of the stream means for the capture. */
export type StreamEvent =
  /** A table's description: sent before its first change, and again after its columns change. */
  | { type: "relation"; relation: Relation }
  /** A row change of the relation `relationId`; `lsn` is where it is in the WAL. */
  | { type: "change"; relationId: number; change: RowChange; lsn: Lsn }
  /** The end of a transaction: once its changes are acknowledged, `endLsn` may be confirmed. */
  | { type: "commit"; endLsn: Lsn }
  /** A TRUNCATE of these relations (Debezium publishes none by default); `source` as a change's. */
  | { type: "truncate"; relationIds: number[]; source: ChangeSource }
  /**
   * A keepalive. Between transactions, everything before `confirmable` was sent, so once the
   * changes received so far are acknowledged it may be confirmed (null inside a transaction).
   */
  | { type: "keepalive"; confirmable: Lsn | null; replyRequested: boolean }
  /** A logical decoding Message (`pg_logical_emit_message`): the incremental snapshot's watermarks among them. */
  | { type: "message"; prefix: string; content: Uint8Array; source: ChangeSource }
  /** A message the capture has no use for (Origin, Type). */
  | { type: "skipped" };

/** Reads a replication stream's frames in order; holds the open transaction's xid and commit time. */
export class ChangeReader {
  #tx: { xid: number; commitUs: bigint } | null = null;
  #lastCommitLsn: Lsn | null = null;

  /** Whether a transaction's Begin was read and its Commit not yet. */
  get inTransaction(): boolean {
    return this.#tx !== null;
  }

  /** Reads one CopyData payload of the stream (XLogData or keepalive). */
  read(payload: Uint8Array): StreamEvent {
    const frame = decodeFrame(payload);
    if (frame.type === "keepalive") {
      return { type: "keepalive", confirmable: this.#tx ? null : frame.walEnd, replyRequested: frame.replyRequested };
    }
    return this.#message(decodePgOutput(frame.data), frame.walStart);
  }

  #message(message: PgOutputMessage, lsn: Lsn): StreamEvent {
    switch (message.tag) {
      case "begin":
        this.#tx = { xid: message.xid, commitUs: pgTimeToUnixMicros(message.commitTime) };
        return { type: "skipped" };
      case "commit":
        this.#tx = null;
        this.#lastCommitLsn = message.endLsn;
        return { type: "commit", endLsn: message.endLsn };
      case "relation":
        return { type: "relation", relation: message.relation };
      case "truncate":
        return { type: "truncate", relationIds: message.relationIds, source: this.#source(lsn) };
      case "skipped":
        return { type: "skipped" };
      case "message":
        return { type: "message", prefix: message.prefix, content: message.content, source: this.#source(lsn) };
      case "insert":
        return this.#change(message.relationId, "c", null, message.after, lsn);
      case "update":
        return this.#change(message.relationId, "u", message.before, message.after, lsn);
      case "delete":
        return this.#change(message.relationId, "d", message.before, null, lsn);
    }
  }

  #change(
    relationId: number,
    op: RowChange["op"],
    before: RowChange["before"],
    after: RowChange["after"],
    lsn: Lsn,
  ): StreamEvent {
    return { type: "change", relationId, change: { op, before, after, source: this.#source(lsn) }, lsn };
  }

  /** The source of what is at `lsn` in the open transaction. */
  #source(lsn: Lsn): ChangeSource {
    return { tsUs: this.#tx?.commitUs ?? 0n, txId: this.#tx?.xid ?? null, lsn, lastCommitLsn: this.#lastCommitLsn };
  }
}
