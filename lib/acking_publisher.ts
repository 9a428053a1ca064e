/**
 * Publishing the capture's records to Kafka, and the one owner of the position Kafka
 * acknowledged. Delivery: at-least-once, no gap. A position becomes acknowledged only when every
 * record added before it was acknowledged by Kafka, sends go one after another in the order the
 * records came, and the position only moves forward.
 * @module
 */
import { Buffer } from "node:buffer";
import type { TopicMessages } from "./publisher.ts";
import type { CaptureRecord } from "./debezium.ts";
import { RecordTooLargeError } from "./capture_errors.ts";
import type { Lsn } from "./pgoutput.ts";

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
  let bytes = RECORD_OVERHEAD + (record.key === null ? 0 : Buffer.byteLength(record.key)) +
    (record.value === null ? 0 : Buffer.byteLength(record.value));
  for (const [name, value] of Object.entries(record.headers ?? {})) {
    bytes += HEADER_OVERHEAD + Buffer.byteLength(name) + Buffer.byteLength(value);
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
  /** Called after each acknowledged send with its records and changes per `table.op`. */
  onAcknowledged?: (records: CaptureRecord[], changes: Map<string, number>) => void;
}

interface Added {
  record: CaptureRecord;
  bytes: number;
}

/** Publishes records in order and advances the acknowledged position past what Kafka acknowledged. */
export class AckingPublisher {
  #pending: Added[] = [];
  #pendingChanges = new Map<string, number>();
  /** Positions waiting for their records: `lsn` is acknowledged once record number `upTo` is. */
  #marks: { lsn: Lsn; upTo: number }[] = [];
  #added = 0;
  #handedOff = 0;
  #acknowledged = 0;
  #chain: Promise<void> = Promise.resolve();
  #failure: { error: unknown } | undefined;

  /** Publishes through `options`, advancing `position`. */
  constructor(readonly position: AcknowledgedPosition, readonly options: AckingPublisherOptions) {}

  /** Records waiting to be sent. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Records added and not yet acknowledged by Kafka: pending and in flight. */
  get unacknowledged(): number {
    return this.#added - this.#acknowledged;
  }

  /** Adds one change's records; a record over its topic's limit stops the run. */
  add(records: CaptureRecord[], table: string, op: string): void {
    for (const record of records) {
      const bytes = recordBytes(record);
      const limit = this.options.maxBytes(record.topic);
      if (bytes + BATCH_OVERHEAD > limit) throw new RecordTooLargeError(table, keyOf(record), bytes, limit);
      this.#pending.push({ record, bytes });
      this.#added++;
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

  /** Sends what is pending, in batches within the limits, after the sends before it; resolves once acknowledged. */
  flush(): Promise<void> {
    const batches = this.#split(this.#pending);
    const changes = this.#pendingChanges;
    this.#pending = [];
    this.#pendingChanges = new Map();
    this.#handedOff = this.#added;
    this.#chain = this.#chain.then(async () => {
      if (this.#failure) return;
      try {
        for (const batch of batches) {
          await this.options.send(byTopic(batch));
          this.#acknowledged += batch.length;
          this.options.onAcknowledged?.(batch, new Map());
          this.#advance();
        }
        this.options.onAcknowledged?.([], changes);
        this.#advance();
      } catch (error) {
        this.#failure = { error };
      }
    });
    return this.#chain.then(() => {
      if (this.#failure) throw this.#failure.error;
    });
  }

  /** Drops records received but not handed to Kafka: the server sends them again from the acknowledged position. */
  discard(): void {
    this.#pending = [];
    this.#pendingChanges = new Map();
    this.#added = this.#handedOff;
    this.#marks = this.#marks.filter((m) => m.upTo <= this.#handedOff);
  }

  #advance(): void {
    while (this.#marks.length && this.#marks[0].upTo <= this.#acknowledged) {
      this.position.advance(this.#marks.shift()!.lsn);
    }
  }

  #split(added: Added[]): CaptureRecord[][] {
    const batches: CaptureRecord[][] = [];
    let batch: CaptureRecord[] = [];
    let bytes = BATCH_OVERHEAD;
    let limit = Infinity;
    for (const { record, bytes: size } of added) {
      const topicLimit = this.options.maxBytes(record.topic);
      if (batch.length && (batch.length >= this.options.maxRecords || bytes + size > Math.min(limit, topicLimit))) {
        batches.push(batch);
        batch = [];
        bytes = BATCH_OVERHEAD;
        limit = Infinity;
      }
      batch.push(record);
      bytes += size;
      limit = Math.min(limit, topicLimit);
    }
    if (batch.length) batches.push(batch);
    return batches;
  }
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
