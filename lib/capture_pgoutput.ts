/**
 * PostgreSQL's streaming replication protocol as the capture needs it, pure: the CopyData
 * frames of a logical replication stream (XLogData 'w', primary keepalive 'k'), the pgoutput
 * messages inside XLogData (protocol version 1: Begin, Commit, Relation, Insert, Update, Delete,
 * Truncate, and the logical decoding Message of `pg_logical_emit_message`, which carries the
 * incremental snapshot's watermarks; Origin and Type are recognised and skipped), the Standby Status Update the
 * client sends back, and LSN text. Column values stay in PostgreSQL's text form.
 * @module
 */

/** A log sequence number, a byte position in the WAL. */
export type Lsn = bigint;

/** A frame of the replication stream's CopyData sub-protocol. */
export type ReplicationFrame =
  | { type: "xlog"; walStart: Lsn; walEnd: Lsn; sendTime: bigint; data: Uint8Array }
  | { type: "keepalive"; walEnd: Lsn; sendTime: bigint; replyRequested: boolean };

/** One column of a relation, as the Relation message describes it. */
export interface RelationColumn {
  /** Column name. */
  name: string;
  /** OID of the column's type. */
  typeOid: number;
  /** Type modifier (`-1` when none). */
  typeMod: number;
  /** Whether the column is part of the replica identity (the key). */
  key: boolean;
}

/** A table, as the Relation message describes it; changes refer to it by `relationId`. */
export interface Relation {
  /** OID of the table. */
  relationId: number;
  /** Schema name (`public`). */
  schema: string;
  /** Table name. */
  table: string;
  /** Replica identity: `d` default, `n` nothing, `f` full, `i` index. */
  replicaIdentity: string;
  /** The columns, in attribute order. */
  columns: RelationColumn[];
}

/** A row's values in text form; `null` is SQL NULL, `undefined` an unchanged TOASTed value. */
export type TupleValues = (string | null | undefined)[];

/** A decoded pgoutput message. */
export type PgOutputMessage =
  | { tag: "begin"; finalLsn: Lsn; commitTime: bigint; xid: number }
  | { tag: "commit"; commitLsn: Lsn; endLsn: Lsn; commitTime: bigint }
  | { tag: "relation"; relation: Relation }
  | { tag: "insert"; relationId: number; after: TupleValues }
  | { tag: "update"; relationId: number; before: TupleValues | null; keyOnly: boolean; after: TupleValues }
  | { tag: "delete"; relationId: number; before: TupleValues; keyOnly: boolean }
  | { tag: "truncate"; relationIds: number[] }
  | { tag: "message"; transactional: boolean; lsn: Lsn; prefix: string; content: Uint8Array }
  | { tag: "skipped"; kind: string };

/** A protocol frame or message that does not parse; names what and where. */
export class ProtocolError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ProtocolError";
  }
}

/** Microseconds between 1970-01-01 and PostgreSQL's epoch, 2000-01-01. */
export const PG_EPOCH_OFFSET_US = 946_684_800_000_000n;

const decoder = new TextDecoder("utf-8", { fatal: true });

class Reader {
  #view: DataView;
  #at = 0;
  constructor(readonly bytes: Uint8Array, readonly what: string) {
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  #need(n: number) {
    if (this.#at + n > this.bytes.length) {
      throw new ProtocolError(
        `${this.what} is truncated: needs ${n} bytes at offset ${this.#at} of ${this.bytes.length}`,
      );
    }
  }
  byte(): number {
    this.#need(1);
    return this.bytes[this.#at++];
  }
  int16(): number {
    this.#need(2);
    const value = this.#view.getInt16(this.#at);
    this.#at += 2;
    return value;
  }
  int32(): number {
    this.#need(4);
    const value = this.#view.getInt32(this.#at);
    this.#at += 4;
    return value;
  }
  uint32(): number {
    this.#need(4);
    const value = this.#view.getUint32(this.#at);
    this.#at += 4;
    return value;
  }
  int64(): bigint {
    this.#need(8);
    const value = this.#view.getBigInt64(this.#at);
    this.#at += 8;
    return value;
  }
  uint64(): bigint {
    this.#need(8);
    const value = this.#view.getBigUint64(this.#at);
    this.#at += 8;
    return value;
  }
  cstring(): string {
    const end = this.bytes.indexOf(0, this.#at);
    if (end < 0) throw new ProtocolError(`${this.what} has an unterminated string at offset ${this.#at}`);
    const text = decoder.decode(this.bytes.subarray(this.#at, end));
    this.#at = end + 1;
    return text;
  }
  text(length: number): string {
    this.#need(length);
    const text = decoder.decode(this.bytes.subarray(this.#at, this.#at + length));
    this.#at += length;
    return text;
  }
  take(length: number): Uint8Array {
    this.#need(length);
    const bytes = this.bytes.subarray(this.#at, this.#at + length);
    this.#at += length;
    return bytes;
  }
  rest(): Uint8Array {
    const rest = this.bytes.subarray(this.#at);
    this.#at = this.bytes.length;
    return rest;
  }
}

/** Decodes one CopyData payload of a replication stream: XLogData or a primary keepalive. */
export function decodeFrame(bytes: Uint8Array): ReplicationFrame {
  const r = new Reader(bytes, "replication frame");
  const kind = String.fromCharCode(r.byte());
  if (kind === "w") {
    const walStart = r.uint64();
    const walEnd = r.uint64();
    const sendTime = r.int64();
    return { type: "xlog", walStart, walEnd, sendTime, data: r.rest() };
  }
  if (kind === "k") {
    const walEnd = r.uint64();
    const sendTime = r.int64();
    return { type: "keepalive", walEnd, sendTime, replyRequested: r.byte() === 1 };
  }
  throw new ProtocolError(`replication frame has unknown type ${JSON.stringify(kind)} (expected "w" or "k")`);
}

function tuple(r: Reader): TupleValues {
  const count = r.int16();
  const values: TupleValues = new Array(count);
  for (let i = 0; i < count; i++) {
    const kind = String.fromCharCode(r.byte());
    if (kind === "n") values[i] = null;
    else if (kind === "u") values[i] = undefined;
    else if (kind === "t") values[i] = r.text(r.int32());
    else throw new ProtocolError(`pgoutput tuple column ${i} has unknown kind ${JSON.stringify(kind)}`);
  }
  return values;
}

/** Decodes one pgoutput message (protocol version 1), the payload of an XLogData frame. */
export function decodePgOutput(bytes: Uint8Array): PgOutputMessage {
  const r = new Reader(bytes, "pgoutput message");
  const tag = String.fromCharCode(r.byte());
  switch (tag) {
    case "B":
      return { tag: "begin", finalLsn: r.uint64(), commitTime: r.int64(), xid: r.uint32() };
    case "C": {
      r.byte(); // flags, unused
      return { tag: "commit", commitLsn: r.uint64(), endLsn: r.uint64(), commitTime: r.int64() };
    }
    case "R": {
      const relationId = r.uint32();
      const schema = r.cstring();
      const table = r.cstring();
      const replicaIdentity = String.fromCharCode(r.byte());
      const count = r.int16();
      const columns: RelationColumn[] = [];
      for (let i = 0; i < count; i++) {
        const key = (r.byte() & 1) === 1;
        columns.push({ key, name: r.cstring(), typeOid: r.uint32(), typeMod: r.int32() });
      }
      return { tag: "relation", relation: { relationId, schema, table, replicaIdentity, columns } };
    }
    case "I": {
      const relationId = r.uint32();
      expectKind(r, "N", "insert");
      return { tag: "insert", relationId, after: tuple(r) };
    }
    case "U": {
      const relationId = r.uint32();
      let kind = String.fromCharCode(r.byte());
      let before: TupleValues | null = null;
      let keyOnly = false;
      if (kind === "K" || kind === "O") {
        keyOnly = kind === "K";
        before = tuple(r);
        kind = String.fromCharCode(r.byte());
      }
      if (kind !== "N") throw new ProtocolError(`pgoutput update has ${JSON.stringify(kind)} where "N" belongs`);
      return { tag: "update", relationId, before, keyOnly, after: tuple(r) };
    }
    case "D": {
      const relationId = r.uint32();
      const kind = String.fromCharCode(r.byte());
      if (kind !== "K" && kind !== "O") {
        throw new ProtocolError(`pgoutput delete has ${JSON.stringify(kind)} where "K" or "O" belongs`);
      }
      return { tag: "delete", relationId, before: tuple(r), keyOnly: kind === "K" };
    }
    case "T": {
      const count = r.int32();
      r.byte(); // options (CASCADE, RESTART IDENTITY)
      const relationIds: number[] = [];
      for (let i = 0; i < count; i++) relationIds.push(r.uint32());
      return { tag: "truncate", relationIds };
    }
    case "M": {
      // Sent with the `messages` option (PostgreSQL 14+); no xid field outside streamed in-progress transactions.
      const transactional = (r.byte() & 1) === 1;
      const lsn = r.uint64();
      const prefix = r.cstring();
      // The content stays bytes: another application's messages need not be UTF-8.
      return { tag: "message", transactional, lsn, prefix, content: r.take(r.int32()) };
    }
    case "O":
    case "Y":
      return { tag: "skipped", kind: tag };
    default:
      throw new ProtocolError(`pgoutput message has unknown tag ${JSON.stringify(tag)}`);
  }
}

function expectKind(r: Reader, want: string, what: string) {
  const kind = String.fromCharCode(r.byte());
  if (kind !== want) throw new ProtocolError(`pgoutput ${what} has ${JSON.stringify(kind)} where "${want}" belongs`);
}

/**
 * The Standby Status Update ('r') telling the server that everything up to `lsn` is written,
 * flushed and applied: the slot's confirmed position. `nowUs` is microseconds since 1970.
 */
export function standbyStatusUpdate(lsn: Lsn, nowUs: bigint, replyRequested = false): Uint8Array {
  const bytes = new Uint8Array(34);
  const view = new DataView(bytes.buffer);
  bytes[0] = "r".charCodeAt(0);
  view.setBigUint64(1, lsn);
  view.setBigUint64(9, lsn);
  view.setBigUint64(17, lsn);
  view.setBigInt64(25, nowUs - PG_EPOCH_OFFSET_US);
  bytes[33] = replyRequested ? 1 : 0;
  return bytes;
}

/** Parses PostgreSQL's LSN text `X/Y` (two hex numbers). */
export function parseLsn(text: string): Lsn {
  const match = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text);
  if (!match) throw new ProtocolError(`LSN must be two hex numbers as X/Y: got ${JSON.stringify(text)}`);
  return (BigInt(`0x${match[1]}`) << 32n) | BigInt(`0x${match[2]}`);
}

/** Writes an LSN as PostgreSQL does: `X/Y`, upper-case hex. */
export function formatLsn(lsn: Lsn): string {
  return `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`;
}

/** Microseconds since 1970 of a PostgreSQL timestamp (microseconds since 2000). */
export function pgTimeToUnixMicros(pgTime: bigint): bigint {
  return pgTime + PG_EPOCH_OFFSET_US;
}
