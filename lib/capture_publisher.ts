/**
 * Publishing the capture's records to Kafka, and the one writer of the position Kafka
 * acknowledged. Delivery: at-least-once, no gap. A position becomes acknowledged only when every
 * record added before it was acknowledged by Kafka, a key's records are sent one batch after
 * another in the order they came (several sends are in flight only for different keys), and the
 * position only moves forward. Sizing the records and cutting them into sends is
 * lib/capture_batches.ts'; this module holds the lanes, the acknowledgements and the back-pressure.
 * @module
 */
import { byTopic, PendingRecords, type SizedRecord, splitSends, type Tally } from "./capture_batches.ts";
import type { TopicMessages } from "./kafka_producer.ts";
import type { CaptureRecord } from "./capture_debezium.ts";
import type { Lsn } from "./capture_pgoutput.ts";
import type { TableName } from "./config.ts";

/**
 * The slot position whose changes are all in Kafka; it only moves forward. It has one writer:
 * the {@linkcode AckingPublisher} it is given to, which advances it only from its acknowledgement
 * path, once Kafka acknowledged every record added before a position marked confirmable
 * ({@linkcode AckingPublisher.confirmableAt}). Every position reaches it that way, so none can pass
 * a record still in flight: a commit's end and a quiet keepalive from the stream, the snapshot's
 * consistent point after its rows, and the slot's confirmed position when a stream starts
 * (everything before it is in Kafka already; marked like the rest, it may only wait behind sends in
 * flight). Everything else reads it: through the publisher, and `onAdvance` (the run's stats).
 */
export class AcknowledgedPosition {
  #lsn: Lsn;
  /** Starts at `lsn` (0 before there is a slot); `onAdvance` hears each move. */
  constructor(lsn: Lsn = 0n, readonly onAdvance?: (lsn: Lsn) => void) {
    this.#lsn = lsn;
  }
  /** The acknowledged position. */
  get lsn(): Lsn {
    return this.#lsn;
  }
  /** Moves to `lsn` when it is ahead; a position behind is ignored. Called by the publisher alone. */
  advance(lsn: Lsn): void {
    if (lsn <= this.#lsn) return;
    this.#lsn = lsn;
    this.onAdvance?.(lsn);
  }
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

/** One lane's sends: a chain, and the first record number of each batch not yet acknowledged, oldest first. */
interface Lane {
  chain: Promise<void>;
  unacknowledged: number[];
}

/** A position waiting for its records: `lsn` is acknowledged once every record numbered below `upTo` is. */
interface Mark {
  lsn: Lsn;
  upTo: number;
}

/**
 * Publishes records in per-key order and advances the acknowledged position past what Kafka
 * acknowledged. With several lanes, batches of different lanes are in flight at once; a position
 * is acknowledged only once every record added before it was, whichever lane sent it. Reading
 * waits on it ({@linkcode full}, {@linkcode below}) while too many bytes are unacknowledged.
 */
export class AckingPublisher {
  readonly #position: AcknowledgedPosition;
  readonly #pending: PendingRecords;
  readonly #lanes: Lane[];
  #marks: Mark[] = [];
  readonly #acknowledged: Tally = { records: 0, bytes: 0 };
  readonly #maxUnacknowledgedBytes: number;
  #waiters: (() => void)[] = [];
  #failure: { error: unknown } | undefined;

  /** Publishes through `options`, the one writer of `position`. */
  constructor(position: AcknowledgedPosition, readonly options: AckingPublisherOptions) {
    this.#position = position;
    this.#pending = new PendingRecords(options);
    this.#maxUnacknowledgedBytes = options.maxUnacknowledgedBytes ?? 4 * 1024 * 1024;
    this.#lanes = Array.from({ length: Math.max(1, options.lanes ?? 1) }, () => ({
      chain: Promise.resolve(),
      unacknowledged: [],
    }));
  }

  /** The acknowledged position: every change before it is in Kafka. */
  get acknowledgedLsn(): Lsn {
    return this.#position.lsn;
  }

  /** Records waiting to be sent. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Records added and not yet acknowledged by Kafka: pending and in flight. */
  get unacknowledged(): number {
    return this.#pending.added.records - this.#acknowledged.records;
  }

  /** Whether enough is pending for a send: `maxRecords` records, or a quarter of `maxUnacknowledgedBytes`. */
  get sendable(): boolean {
    return this.#pending.length >= this.options.maxRecords || this.#pending.bytes >= this.#maxUnacknowledgedBytes / 4;
  }

  /** Whether `maxUnacknowledgedBytes` are unacknowledged: the caller waits with {@linkcode below} before reading on. */
  get full(): boolean {
    return this.unacknowledgedBytes >= this.#maxUnacknowledgedBytes;
  }

  /** Bytes of the records added and not yet acknowledged by Kafka (as lib/capture_batches.ts' recordBytes counts them). */
  get unacknowledgedBytes(): number {
    return this.#pending.added.bytes - this.#acknowledged.bytes;
  }

  /** Adds one change's records of `table`; a record over its topic's limit stops the run. */
  add(records: CaptureRecord[], table: TableName, op: string): void {
    this.#pending.add(records, table, op);
  }

  /** Everything added so far lies before `lsn`: it is acknowledged once they all are. */
  confirmableAt(lsn: Lsn): void {
    const last = this.#marks.at(-1);
    const upTo = this.#pending.added.records;
    if (last && last.upTo === upTo) last.lsn = lsn > last.lsn ? lsn : last.lsn;
    else this.#marks.push({ lsn, upTo });
    this.#advance();
  }

  /**
   * Sends what is pending, each lane's records in batches within the limits after that lane's
   * earlier sends; resolves once all of it, and everything sent before, is acknowledged.
   */
  flush(): Promise<void> {
    const { records, changes } = this.#pending.take();
    const byLane: SizedRecord[][] = this.#lanes.map(() => []);
    for (const sized of records) byLane[laneOf(sized.record.key, this.#lanes.length)].push(sized);
    const sent = this.#lanes.map((lane, i) => {
      for (const batch of splitSends(byLane[i], this.options)) this.#sendInLane(lane, batch);
      return lane.chain;
    });
    return Promise.all(sent).then(() => {
      if (this.#failure) throw this.#failure.error;
      this.options.onAcknowledged?.([], changes);
    });
  }

  /** Resolves once fewer than `bytes` (by default `maxUnacknowledgedBytes`) are unacknowledged, or a send failed. */
  async below(bytes = this.#maxUnacknowledgedBytes - 1): Promise<void> {
    while (
      this.unacknowledgedBytes > bytes && !this.#failure && this.#pending.taken.records > this.#acknowledged.records
    ) {
      await new Promise<void>((resolve) => this.#waiters.push(resolve));
    }
    if (this.#failure) throw this.#failure.error;
  }

  /** Drops records received but not handed to Kafka: the server sends them again from the acknowledged position. */
  discard(): void {
    this.#pending.discard();
    this.#marks = this.#marks.filter((m) => m.upTo <= this.#pending.taken.records);
  }

  #sendInLane(lane: Lane, batch: SizedRecord[]): void {
    lane.unacknowledged.push(batch[0].seq);
    lane.chain = lane.chain.then(async () => {
      if (this.#failure) return;
      try {
        const records = batch.map((a) => a.record);
        await this.options.send(byTopic(records));
        lane.unacknowledged.shift();
        this.#acknowledged.records += batch.length;
        for (const a of batch) this.#acknowledged.bytes += a.bytes;
        this.options.onAcknowledged?.(records, new Map());
        this.#advance();
      } catch (error) {
        this.#failure ??= { error };
      } finally {
        for (const wake of this.#waiters.splice(0)) wake();
      }
    });
  }

  /**
   * The acknowledgement path, the position's one writer: confirms every position whose records
   * all lie below the first record not yet acknowledged in any lane.
   */
  #advance(): void {
    let firstUnacknowledged = this.#pending.taken.records;
    for (const lane of this.#lanes) {
      if (lane.unacknowledged.length) firstUnacknowledged = Math.min(firstUnacknowledged, lane.unacknowledged[0]);
    }
    while (this.#marks.length && this.#marks[0].upTo <= firstUnacknowledged) {
      this.#position.advance(this.#marks.shift()!.lsn);
    }
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
