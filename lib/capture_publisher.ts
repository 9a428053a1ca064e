/**
 * Publishing the capture's records to Kafka, and the one owner of the position Kafka
 * acknowledged. Delivery: at-least-once, no gap. A position becomes acknowledged only when every
 * record added before it was acknowledged by Kafka, a key's records are sent one batch after
 * another in the order they came (several sends are in flight only for different keys), and the
 * position only moves forward.
 * @module
 */
import { utf8Length } from "./utf8.ts";
import type { TopicMessages } from "./kafka_producer.ts";
import type { CaptureRecord } from "./capture_debezium.ts";
import { RecordTooLargeError } from "./capture_errors.ts";
import type { Lsn } from "./capture_pgoutput.ts";

/** The slot position whose changes are all in Kafka; it only moves forward. */
export class AcknowledgedPosition {
  #lsn: Lsn;
  /** Starts at `lsn` (the slot's confirmed position, or 0 before there is a slot). */
  constructor(lsn: Lsn = 0n, readonly onAdvance?: (lsn: Lsn) => void) {
    this.#lsn = lsn;
  }
  /** The acknowledged position. */
  get lsn(): Lsn {
    return this.#lsn;
  }
  /** Moves to `lsn` when it is ahead; a position behind is ignored. */
  advance(lsn: Lsn): void {
    if (lsn <= this.#lsn) return;
    this.#lsn = lsn;
    this.onAdvance?.(lsn);
  }
}

/** Kafka's overhead of a record batch (v2 header) and, at most, of one record in it, in bytes. */
const BATCH_OVERHEAD = 61;
const RECORD_OVERHEAD = 32;

/** Kafka's overhead of one header in a record, at most (two varint lengths). */
const HEADER_OVERHEAD = 10;

/** The bytes one record takes in a record batch, at most. */
export function recordBytes(record: CaptureRecord): number {
  let bytes = RECORD_OVERHEAD + (record.key === null ? 0 : utf8Length(record.key)) +
    (record.value === null ? 0 : record.value.byteLength);
  for (const [name, value] of Object.entries(record.headers ?? {})) {
    bytes += HEADER_OVERHEAD + utf8Length(name) + utf8Length(value);
  }
  return bytes;
}

/** Options of {@linkcode AckingPublisher}. */
export interface AckingPublisherOptions {
  /** Sends one batch; resolves once Kafka acknowledged all of it. */
  send: (messages: TopicMessages[]) => Promise<void>;
  /** The largest record batch a topic accepts (its `max.message.bytes`). */
  maxBytes: (topic: string) => number;
  /** Most records per send. */
  maxRecords: number;
  /**
   * Record bytes let be unacknowledged before {@linkcode AckingPublisher.full} says to wait: what
   * bounds the capture's memory whatever the transaction size and the backlog (PostgreSQL holds
   * the rest; the walsender waits). A send goes once a quarter of it is pending. @default 4 MiB
   */
  maxUnacknowledgedBytes?: number;
  /**
   * Sends in flight at once. Each key belongs to one lane, whose sends go one after another, so a
   * key's records reach Kafka in order however many lanes send at once. @default 1
   */
  lanes?: number;
  /** Called after each acknowledged send with its records and changes per `table.op`. */
  onAcknowledged?: (records: CaptureRecord[], changes: Map<string, number>) => void;
}

interface Added {
  record: CaptureRecord;
  bytes: number;
  /** The record's number in the order records were added. */
  seq: number;
}

/** One lane's sends: a chain, and the first record number of each batch not yet acknowledged, oldest first. */
interface Lane {
  chain: Promise<void>;
  unacknowledged: number[];
}

/**
 * Publishes records in per-key order and advances the acknowledged position past what Kafka
 * acknowledged. With several lanes, batches of different lanes are in flight at once; a position
 * is acknowledged only once every record added before it was, whichever lane sent it.
 */
export class AckingPublisher {
  #pending: Added[] = [];
  #pendingChanges = new Map<string, number>();
  /** Positions waiting for their records: `lsn` is acknowledged once every record numbered below `upTo` is. */
  #marks: { lsn: Lsn; upTo: number }[] = [];
  #added = 0;
  #addedBytes = 0;
  #handedOff = 0;
  #handedOffBytes = 0;
  #acknowledged = 0;
  #acknowledgedBytes = 0;
  readonly #lanes: Lane[];
  readonly #maxUnacknowledgedBytes: number;
  #waiters: (() => void)[] = [];
  #failure: { error: unknown } | undefined;

  /** Publishes through `options`, advancing `position`. */
  constructor(readonly position: AcknowledgedPosition, readonly options: AckingPublisherOptions) {
    this.#maxUnacknowledgedBytes = options.maxUnacknowledgedBytes ?? 4 * 1024 * 1024;
    this.#lanes = Array.from({ length: Math.max(1, options.lanes ?? 1) }, () => ({
      chain: Promise.resolve(),
      unacknowledged: [],
    }));
  }

  /** Records waiting to be sent. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Records added and not yet acknowledged by Kafka: pending and in flight. */
  get unacknowledged(): number {
    return this.#added - this.#acknowledged;
  }

  /** Whether enough is pending for a send: `maxRecords` records, or a quarter of `maxUnacknowledgedBytes`. */
  get sendable(): boolean {
    return this.#pending.length >= this.options.maxRecords ||
      this.#addedBytes - this.#handedOffBytes >= this.#maxUnacknowledgedBytes / 4;
  }

  /** Whether `maxUnacknowledgedBytes` are unacknowledged: the caller waits with {@linkcode below} before reading on. */
  get full(): boolean {
    return this.unacknowledgedBytes >= this.#maxUnacknowledgedBytes;
  }

  /** Bytes of the records added and not yet acknowledged by Kafka (as {@linkcode recordBytes} counts them). */
  get unacknowledgedBytes(): number {
    return this.#addedBytes - this.#acknowledgedBytes;
  }

  /** Adds one change's records; a record over its topic's limit stops the run. */
  add(records: CaptureRecord[], table: string, op: string): void {
    for (const record of records) {
      const bytes = recordBytes(record);
      const limit = this.options.maxBytes(record.topic);
      if (bytes + BATCH_OVERHEAD > limit) throw new RecordTooLargeError(table, keyOf(record), bytes, limit);
      this.#pending.push({ record, bytes, seq: this.#added++ });
      this.#addedBytes += bytes;
    }
    const key = `${table}.${op}`;
    this.#pendingChanges.set(key, (this.#pendingChanges.get(key) ?? 0) + 1);
  }

  /** Everything added so far lies before `lsn`: it is acknowledged once they all are. */
  confirmableAt(lsn: Lsn): void {
    const last = this.#marks.at(-1);
    if (last && last.upTo === this.#added) last.lsn = lsn > last.lsn ? lsn : last.lsn;
    else this.#marks.push({ lsn, upTo: this.#added });
    this.#advance();
  }

  /**
   * Sends what is pending, each lane's records in batches within the limits after that lane's
   * earlier sends; resolves once all of it, and everything sent before, is acknowledged.
   */
  flush(): Promise<void> {
    const byLane: Added[][] = this.#lanes.map(() => []);
    for (const added of this.#pending) byLane[laneOf(added.record.key, this.#lanes.length)].push(added);
    const changes = this.#pendingChanges;
    this.#pending = [];
    this.#pendingChanges = new Map();
    this.#handedOff = this.#added;
    this.#handedOffBytes = this.#addedBytes;
    const sent = this.#lanes.map((lane, i) => {
      for (const batch of this.#split(byLane[i])) this.#sendInLane(lane, batch);
      return lane.chain;
    });
    return Promise.all(sent).then(() => {
      if (this.#failure) throw this.#failure.error;
      this.options.onAcknowledged?.([], changes);
    });
  }

  /** Resolves once fewer than `bytes` (by default `maxUnacknowledgedBytes`) are unacknowledged, or a send failed. */
  async below(bytes = this.#maxUnacknowledgedBytes - 1): Promise<void> {
    while (this.unacknowledgedBytes > bytes && !this.#failure && this.#handedOff > this.#acknowledged) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#failure) throw this.#failure.error;
  }

  /** Drops records received but not handed to Kafka: the server sends them again from the acknowledged position. */
  discard(): void {
    this.#pending = [];
    this.#pendingChanges = new Map();
    this.#added = this.#handedOff;
    this.#addedBytes = this.#handedOffBytes;
    this.#marks = this.#marks.filter((m) => m.upTo <= this.#handedOff);
  }

  #sendInLane(lane: Lane, batch: Added[]): void {
    lane.unacknowledged.push(batch[0].seq);
    lane.chain = lane.chain.then(async () => {
      if (this.#failure) return;
      try {
        const records = batch.map((a) => a.record);
        await this.options.send(byTopic(records));
        lane.unacknowledged.shift();
        this.#acknowledged += batch.length;
        for (const a of batch) this.#acknowledgedBytes += a.bytes;
        this.options.onAcknowledged?.(records, new Map());
        this.#advance();
      } catch (error) {
        this.#failure ??= { error };
      } finally {
        for (const wake of this.#waiters.splice(0)) wake();
      }
    });
  }

  /** Confirms every position whose records all lie below the first record not yet acknowledged in any lane. */
  #advance(): void {
    let firstUnacknowledged = this.#handedOff;
    for (const lane of this.#lanes) {
      if (lane.unacknowledged.length) firstUnacknowledged = Math.min(firstUnacknowledged, lane.unacknowledged[0]);
    }
    while (this.#marks.length && this.#marks[0].upTo <= firstUnacknowledged) {
      this.position.advance(this.#marks.shift()!.lsn);
    }
  }

  #split(added: Added[]): Added[][] {
    const batches: Added[][] = [];
    let batch: Added[] = [];
    let bytes = BATCH_OVERHEAD;
    let limit = Infinity;
    for (const entry of added) {
      const topicLimit = this.options.maxBytes(entry.record.topic);
      if (
        batch.length && (batch.length >= this.options.maxRecords || bytes + entry.bytes > Math.min(limit, topicLimit))
      ) {
        batches.push(batch);
        batch = [];
        bytes = BATCH_OVERHEAD;
        limit = Infinity;
      }
      batch.push(entry);
      bytes += entry.bytes;
      limit = Math.min(limit, topicLimit);
    }
    if (batch.length) batches.push(batch);
    return batches;
  }
}

/** The lane of a key: a hash of its end, where a key's values are (the schema before them is the table's). */
export function laneOf(key: string | null, lanes: number): number {
  if (key === null || lanes === 1) return 0;
  let hash = 0x811c9dc5;
  for (let i = Math.max(0, key.length - 96); i < key.length; i++) {
    hash = Math.imul(hash ^ key.charCodeAt(i), 0x01000193);
  }
  return (hash >>> 0) % lanes;
}

/** The key's payload, for messages: the key JSON without its schema. */
function keyOf(record: CaptureRecord): string {
  if (record.key === null) return "(none)";
  try {
    return JSON.stringify(JSON.parse(record.key).payload).slice(0, 200);
  } catch {
    return record.key.slice(0, 200);
  }
}

function byTopic(records: CaptureRecord[]): TopicMessages[] {
  const topics = new Map<string, TopicMessages>();
  for (const { topic, key, value, headers } of records) {
    let entry = topics.get(topic);
    if (!entry) topics.set(topic, entry = { topic, messages: [] });
    entry.messages.push(headers ? { key, value, headers } : { key, value });
  }
  return [...topics.values()];
}
