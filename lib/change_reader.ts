/**
 * The capture's reading of the replication stream, pure: CopyData payloads in; relations, row
 * changes with their `source` (xid, commit time, LSN), commit boundaries and the positions that
 * may be confirmed out. It knows nothing of Kafka or PostgreSQL connections: the session feeds
 * it frames, and the acking publisher (lib/acking_publisher.ts) confirms a position only once
 * Kafka acknowledged every record before it.
 * @module
 */
import type { ChangeSource, RowChange } from "./debezium.ts";
import {
  decodeFrame,
  decodePgOutput,
  type Lsn,
  type PgOutputMessage,
  pgTimeToUnixMicros,
  type Relation,
} from "./pgoutput.ts";

/** What one frame of the stream means for the capture. */
export type StreamEvent =
  /** A table's description: sent before its first change, and again after its columns change. */
  | { type: "relation"; relation: Relation }
  /** A row change of the relation `relationId`; `lsn` is where it is in the WAL. */
  | { type: "change"; relationId: number; change: RowChange; lsn: Lsn }
  /** The end of a transaction: once its changes are acknowledged, `endLsn` may be confirmed. */
  | { type: "commit"; endLsn: Lsn }
  /** A TRUNCATE of these relations (Debezium publishes none by default). */
  | { type: "truncate"; relationIds: number[] }
  /**
   * A keepalive. Between transactions, everything before `confirmable` was sent, so once the
   * changes received so far are acknowledged it may be confirmed (null inside a transaction).
   */
  | { type: "keepalive"; confirmable: Lsn | null; replyRequested: boolean }
  /** A message the capture has no use for (Origin, Type, logical decoding Message). */
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
        return { type: "truncate", relationIds: message.relationIds };
      case "skipped":
        return { type: "skipped" };
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
    const source: ChangeSource = {
      tsUs: this.#tx?.commitUs ?? 0n,
      txId: this.#tx?.xid ?? null,
      lsn,
      lastCommitLsn: this.#lastCommitLsn,
    };
    return { type: "change", relationId, change: { op, before, after, source }, lsn };
  }
}
