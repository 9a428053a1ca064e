/**
 * Sizing and cutting the capture's sends: each record's bytes as Kafka counts them in a record
 * batch, the check against its topic's `max.message.bytes`, the records waiting to be sent
 * (numbered in the order they came, with the changes they carry per `table.op`), and the split of
 * records into sends within the limits. What is in flight and acknowledged is the publisher's
 * (lib/capture_publisher.ts).
 * @module
 */
import { utf8Length } from "./utf8.ts";
import type { TopicMessages } from "./kafka_producer.ts";
import type { CaptureRecord } from "./capture_debezium.ts";
import { RecordTooLargeError } from "./capture_errors.ts";
import { qualified } from "./capture_slot.ts";
import type { TableName } from "./config.ts";

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

/** The limits a send keeps to. */
export interface SendLimits {
  /** The largest record batch a topic accepts (its `max.message.bytes`). */
  maxBytes: (topic: string) => number;
  /** Most records per send. */
  maxRecords: number;
}

/** A record with its size, numbered in the order records were added. */
export interface SizedRecord {
  record: CaptureRecord;
  bytes: number;
  seq: number;
}

/** A number of records and their bytes. */
export interface Tally {
  records: number;
  bytes: number;
}

/** Records taken for sending, and the changes they carry per `table.op`. */
export interface Taken {
  records: SizedRecord[];
  changes: Map<string, number>;
}

/** The records added and not yet taken for sending, sized, checked against their topic's limit, and numbered. */
export class PendingRecords {
  #records: SizedRecord[] = [];
  #changes = new Map<string, number>();
  readonly #added: Tally = { records: 0, bytes: 0 };
  readonly #taken: Tally = { records: 0, bytes: 0 };

  /** Sizes records against `limits`. */
  constructor(readonly limits: SendLimits) {}

  /** Records waiting to be taken. */
  get length(): number {
    return this.#records.length;
  }

  /** Bytes of the records waiting to be taken. */
  get bytes(): number {
    return this.#added.bytes - this.#taken.bytes;
  }

  /** Every record added (less those discarded), and its bytes: the next record's number is `records`. */
  get added(): Readonly<Tally> {
    return this.#added;
  }

  /** Every record taken for sending, and its bytes. */
  get taken(): Readonly<Tally> {
    return this.#taken;
  }

  /** Adds one change's records of `table`; a record over its topic's limit stops the run (RecordTooLargeError). */
  add(records: CaptureRecord[], table: TableName, op: string): void {
    for (const record of records) {
      const bytes = recordBytes(record);
      const limit = this.limits.maxBytes(record.topic);
      if (bytes + BATCH_OVERHEAD > limit) throw new RecordTooLargeError(qualified(table), keyOf(record), bytes, limit);
      this.#records.push({ record, bytes, seq: this.#added.records++ });
      this.#added.bytes += bytes;
    }
    const key = `${table.table}.${op}`;
    this.#changes.set(key, (this.#changes.get(key) ?? 0) + 1);
  }

  /** Takes every waiting record for sending. */
  take(): Taken {
    const taken = { records: this.#records, changes: this.#changes };
    this.#records = [];
    this.#changes = new Map();
    Object.assign(this.#taken, this.#added);
    return taken;
  }

  /** Drops the waiting records, and their numbers: the next record added gets the first of them. */
  discard(): void {
    this.#records = [];
    this.#changes = new Map();
    Object.assign(this.#added, this.#taken);
  }
}

/** Cuts `records` into sends in their order, each within `maxRecords` and the byte limit of every topic in it. */
export function splitSends(records: SizedRecord[], limits: SendLimits): SizedRecord[][] {
  const sends: SizedRecord[][] = [];
  let send: SizedRecord[] = [];
  let bytes = BATCH_OVERHEAD;
  let limit = Infinity;
  for (const entry of records) {
    const topicLimit = limits.maxBytes(entry.record.topic);
    if (send.length && (send.length >= limits.maxRecords || bytes + entry.bytes > Math.min(limit, topicLimit))) {
      sends.push(send);
      send = [];
      bytes = BATCH_OVERHEAD;
      limit = Infinity;
    }
    send.push(entry);
    bytes += entry.bytes;
    limit = Math.min(limit, topicLimit);
  }
  if (send.length) sends.push(send);
  return sends;
}

/** One send's records grouped by topic, as kafkajs' sendBatch takes them. */
export function byTopic(records: CaptureRecord[]): TopicMessages[] {
  const topics = new Map<string, TopicMessages>();
  for (const { topic, key, value, headers } of records) {
    let entry = topics.get(topic);
    if (!entry) topics.set(topic, entry = { topic, messages: [] });
    entry.messages.push(headers ? { key, value, headers } : { key, value });
  }
  return [...topics.values()];
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
