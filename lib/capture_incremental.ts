/**
 * Incremental snapshots as DBLog and Debezium make them, pure: the tables queued for a snapshot
 * and the position in the one being read (its last key read, the key it ends at), the window of a
 * chunk between its low and high watermark, and the chunks whose records Kafka acknowledged.
 *
 * A chunk is read in primary-key order between two watermarks written into the WAL. A streamed
 * change that touches a key inside that window is newer than the chunk's read of it, so the key
 * is dropped from the chunk; what is left is published at the high watermark, after every change
 * before it. For every key the topic therefore ends with the table's current row.
 * @module
 */
import type { Lsn } from "./capture_pgoutput.ts";
import type { SnapshotRequest } from "./capture_signals.ts";
import type { TableName } from "./config.ts";
import { qualified } from "./capture_slot.ts";

/** A key's values in PostgreSQL's text form, in key-column order. */
export type KeyValues = (string | null)[];

/** Where a table's incremental snapshot stands: the last key published, the last key to read. */
export interface TablePosition {
  /** The table, with its `additional-conditions` filter. */
  request: SnapshotRequest;
  /** The key of the last row read by the last chunk; null before the first chunk. */
  after: KeyValues | null;
  /** The table's largest key when its snapshot began; rows inserted after come through the stream. */
  until: KeyValues | null;
}

/** The text that identifies a key in a window: the same for a chunk's row and a streamed change's key. */
export function keyText(key: KeyValues): string {
  return JSON.stringify(key);
}

/** A {@linkcode SnapshotQueue} as the capture's state keeps it (JSON). */
export interface QueueState {
  /** The table being read and where it stands. */
  current: TablePosition | null;
  /** The tables asked for after it, in order. */
  waiting: SnapshotRequest[];
  /** Whether a pause-snapshot holds the reading. */
  paused: boolean;
}

/**
 * Which transactions a chunk's read saw: PostgreSQL's snapshot of the read (`pg_current_snapshot()`),
 * its xids cut to the 32 bits the stream carries.
 */
export interface ReadSnapshot {
  /** Every transaction at or after this one was not visible to the read. */
  xmax: number;
  /** The transactions running when the read began: not visible to it either. */
  running: Set<number>;
}

/** Whether the read of `snapshot` saw transaction `xid`'s effects; a change without an xid counts as unseen. */
export function readSaw(snapshot: ReadSnapshot, xid: number | null): boolean {
  if (xid === null) return false;
  // xids wrap around at 2^32: xid is at or after xmax when it is less than 2^31 ahead of it.
  const atOrAfterXmax = ((xid - snapshot.xmax) >>> 0) < 0x80000000;
  return !atOrAfterXmax && !snapshot.running.has(xid);
}

/**
 * One chunk between its watermarks. The follower tells the window of every change of its table from
 * the moment the chunk is registered, before its low watermark is written; the reader hands the
 * chunk's rows in, with the snapshot that read them, before it writes the high watermark; at the
 * high watermark the rows come out but those whose key a change newer than the read touched.
 *
 * Newer is decided two ways. A change inside the window (after the low watermark) is newer, as in
 * DBLog. A change before the low watermark is newer when the read did not see its transaction: a
 * transaction's commit is in the WAL before it becomes visible, so one committing just before the
 * low watermark can still be invisible to the read that follows it, and its change, streamed before
 * the window opened, would otherwise be overwritten by the stale row read. Rows and keys are held for
 * one chunk only.
 */
export class ChunkWindow<Row> {
  #open = false;
  #touched = new Set<string>();
  /** Keys touched before the low watermark, with the transactions that touched them. */
  #early = new Map<string, (number | null)[]>();
  #rows: { rows: Row[]; keyOf: (row: Row) => KeyValues; snapshot: ReadSnapshot } | null = null;

  /** Creates the window of chunk `id` of `table`. */
  constructor(readonly id: string, readonly table: TableName) {}

  /** Whether the low watermark went by and the high one not yet. */
  get open(): boolean {
    return this.#open;
  }

  /** The low watermark went by: changes from now on are newer than the chunk's read. */
  openWindow(): void {
    this.#open = true;
  }

  /** A streamed change of `table` in transaction `xid` touched the key `key`. */
  touched(table: TableName, key: KeyValues, xid: number | null): void {
    if (qualified(table) !== qualified(this.table)) return;
    const text = keyText(key);
    if (this.#open) return void this.#touched.add(text);
    const xids = this.#early.get(text);
    if (xids) xids.push(xid);
    else this.#early.set(text, [xid]);
  }

  /** The chunk's rows, read after the low watermark was written in `snapshot`; `keyOf` gives a row's key. */
  fill(rows: Row[], keyOf: (row: Row) => KeyValues, snapshot: ReadSnapshot): void {
    this.#rows = { rows, keyOf, snapshot };
  }

  /** The high watermark went by: the rows no change newer than the read touched, in key order. */
  close(): Row[] {
    if (!this.#open) throw new Error(`chunk ${this.id}: its high watermark came before its low one`);
    if (!this.#rows) throw new Error(`chunk ${this.id}: its high watermark came before its rows were read`);
    const { rows, keyOf, snapshot } = this.#rows;
    const newer = new Set(this.#touched);
    for (const [key, xids] of this.#early) if (xids.some((xid) => !readSaw(snapshot, xid))) newer.add(key);
    // Keys are compared only when the stream touched some: a quiet table's chunk goes out as read.
    const left = newer.size ? rows.filter((row) => !newer.has(keyText(keyOf(row)))) : rows;
    this.#open = false;
    this.#rows = null;
    this.#touched.clear();
    this.#early.clear();
    return left;
  }
}

/**
 * The tables waiting for an incremental snapshot, the one being read and where it stands, and
 * whether reading is paused. Tables run one after another in the order they were asked for, as
 * Debezium queues them; a table asked for again while queued is not queued twice.
 */
export class SnapshotQueue {
  #current: TablePosition | null = null;
  #waiting: SnapshotRequest[] = [];
  #paused = false;

  /** The table being read and where it stands; null when none. */
  get current(): TablePosition | null {
    return this.#current;
  }

  /** Whether reading is paused (pause-snapshot). */
  get paused(): boolean {
    return this.#paused;
  }

  /** Whether a chunk is to be read now: a table is queued and reading is not paused. */
  get reading(): boolean {
    return !this.#paused && (this.#current !== null || this.#waiting.length > 0);
  }

  /** The tables queued, the current one first. */
  get tables(): TableName[] {
    return [...(this.#current ? [this.#current.request.table] : []), ...this.#waiting.map((r) => r.table)];
  }

  /** Queues `requests` after those waiting; returns those queued (a table already queued is not). */
  add(requests: SnapshotRequest[]): SnapshotRequest[] {
    const added = requests.filter((r) => !this.tables.some((t) => qualified(t) === qualified(r.table)));
    this.#waiting.push(...added);
    return added;
  }

  /** Where the queue stands, to keep in the capture's state once the chunk read last is in Kafka. */
  state(): QueueState {
    return { current: this.#current, waiting: [...this.#waiting], paused: this.#paused };
  }

  /** Takes up a queue kept by {@linkcode state} (after a restart). */
  restore(state: QueueState): void {
    this.#current = state.current;
    this.#waiting = [...state.waiting];
    this.#paused = state.paused;
  }

  /** Starts the next waiting table when none is being read; returns it, or null when none starts. */
  startNext(): SnapshotRequest | null {
    if (this.#current) return null;
    const next = this.#waiting.shift();
    if (next) this.#current = { request: next, after: null, until: null };
    return next ?? null;
  }

  /** `table`'s largest key, read when its snapshot begins; null means it is empty, so it is done. */
  bounded(table: TableName, until: KeyValues | null): void {
    if (!this.#isCurrent(table)) return;
    this.#current = until === null ? null : { ...this.#current!, until };
  }

  /**
   * A chunk of `table` was read up to `lastKey`: null (no row) or the table's largest key means the
   * table is done. A table stopped while its chunk was read is left stopped.
   */
  chunkRead(table: TableName, lastKey: KeyValues | null): void {
    if (!this.#isCurrent(table)) return;
    const until = this.#current!.until;
    const done = lastKey === null || (until !== null && keyText(lastKey) === keyText(until));
    this.#current = done ? null : { ...this.#current!, after: lastKey };
  }

  #isCurrent(table: TableName): boolean {
    return this.#current !== null && qualified(this.#current.request.table) === qualified(table);
  }

  /** Stops `tables` (all when null); returns those that were queued. */
  stop(tables: TableName[] | null): TableName[] {
    const stopping = (t: TableName) => tables === null || tables.some((s) => qualified(s) === qualified(t));
    const stopped = this.tables.filter(stopping);
    this.#waiting = this.#waiting.filter((r) => !stopping(r.table));
    if (this.#current && stopping(this.#current.request.table)) this.#current = null;
    if (!this.tables.length) this.#paused = false;
    return stopped;
  }

  /** Pauses reading after the chunk in hand; returns whether a snapshot was running and is now paused. */
  pause(): boolean {
    if (this.#paused || !this.tables.length) return false;
    this.#paused = true;
    return true;
  }

  /** Resumes reading; returns whether it was paused. */
  unpause(): boolean {
    const was = this.#paused;
    this.#paused = false;
    return was;
  }
}

/**
 * Positions to keep once Kafka acknowledged the chunk before them: each chunk's position waits
 * here with the end LSN of its high watermark's commit, the last record it published. Only the
 * latest position the acknowledged LSN passed is kept, so a restart resumes after the last chunk
 * Kafka has, and re-reads at most the chunks in flight.
 */
export class ChunkCheckpoints<Position> {
  #pending: { endLsn: Lsn; position: Position }[] = [];

  /** How many chunks wait for Kafka. */
  get pending(): number {
    return this.#pending.length;
  }

  /** The position of the oldest chunk waiting for Kafka, if any. */
  get first(): Position | undefined {
    return this.#pending[0]?.position;
  }

  /** The chunk whose records end at `endLsn` leaves the snapshot at `position` once acknowledged. */
  add(endLsn: Lsn, position: Position): void {
    this.#pending.push({ endLsn, position });
  }

  /** Whether Kafka's acknowledging everything before `lsn` lets a position be kept. */
  covers(lsn: Lsn): boolean {
    return this.#pending.length > 0 && this.#pending[0].endLsn <= lsn;
  }

  /** Kafka acknowledged everything before `lsn`: the latest position that may now be kept, if any. */
  acknowledged(lsn: Lsn): { position: Position } | null {
    let latest: { position: Position } | null = null;
    while (this.#pending.length && this.#pending[0].endLsn <= lsn) {
      latest = { position: this.#pending.shift()!.position };
    }
    return latest;
  }
}
