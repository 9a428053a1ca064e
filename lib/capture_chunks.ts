/**
 * Incremental snapshots in a running capture: signals from the signal table, chunks read in
 * primary-key order between a low and a high watermark written into the WAL, their rows published
 * as `op: "r"` with `source.snapshot: "incremental"` when the high watermark comes through the
 * stream, and the queue's position kept in `cdc_capture_state` once Kafka acknowledged the chunk.
 *
 * The watermarks are transactional logical decoding messages (`pg_logical_emit_message(true, ...)`,
 * PostgreSQL 14+, streamed with pgoutput's `messages` option), not rows of the signal table as
 * Debezium writes them: they need no table, so a capture without `--signal-table` can snapshot a
 * table added to `--tables`, and they leave no rows behind. The stream follower tells this module
 * what it reads ({@linkcode SnapshotObserver}); this module's reader runs beside it, over
 * PostgreSQL's side in lib/capture_chunk_store.ts.
 * @module
 */
import { type ChunkDatabase, type ChunkRange, type ChunkRead, WATERMARK_PREFIX } from "./capture_chunk_store.ts";
import { type DebeziumEncoder, encodeOrStop, type TableSpec } from "./capture_debezium.ts";
import { isCaptureOutage } from "./capture_errors.ts";
import {
  ChunkCheckpoints,
  ChunkWindow,
  keyText,
  type KeyValues,
  type QueueState,
  SnapshotQueue,
  type TablePosition,
} from "./capture_incremental.ts";
import type { Lsn, TupleValues } from "./capture_pgoutput.ts";
import type { AckingPublisher } from "./capture_publisher.ts";
import type { ChangeSource, RowChange } from "./capture_reader.ts";
import { readSignal, type Signal, type SignalRow } from "./capture_signals.ts";
import { qualified } from "./capture_slot.ts";
import type { TableName } from "./config.ts";
import { describeError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { SnapshotProgress } from "./stats.ts";
import { OUTAGE, sleep, waitOut } from "./retry.ts";

/** What the stream follower tells the incremental snapshot about what it reads. */
export interface SnapshotObserver {
  /** Whether `table` is the signal table: its rows are signals, never published. */
  isSignalTable(table: TableName): boolean;
  /** A row inserted into the signal table (its values in column order `id`, `type`, `data`). */
  signal(row: TupleValues): void;
  /** A change of a captured table, before it is published. */
  changed(spec: TableSpec, change: RowChange): void;
  /** A logical decoding message: the watermarks. */
  message(prefix: string, content: Uint8Array, source: ChangeSource): void;
  /** The end of a transaction: a chunk published in it is in Kafka once Kafka acknowledged `endLsn`. */
  committed(endLsn: Lsn): void;
  /** A stream starts (again) at the acknowledged position: what was not acknowledged comes again. */
  streamStarting(): void;
  /**
   * The position the slot may be confirmed at, given Kafka's `acknowledged` one: never past a
   * transaction whose signal or chunk moved the queue before that queue is kept in
   * `cdc_capture_state`, or a crash (or a stop) in between would lose the signal for good.
   */
  confirmable(acknowledged: Lsn): Lsn;
}

/** What {@linkcode IncrementalSnapshots} works with. */
export interface IncrementalOptions {
  /** The tables the capture streams; signals may name only these. */
  tables: TableName[];
  /** The signal table (`--signal-table`), if any. */
  signalTable: TableName | null;
  /** Rows per chunk (`incremental.snapshot.chunk.size`). */
  chunkSize: number;
  database: ChunkDatabase;
  encoder: DebeziumEncoder;
  publisher: AckingPublisher;
  logger: Logger;
  /** Where each table's snapshot stands: rows, estimate, rate (`/metrics`, `/health`, progress lines). */
  progress: SnapshotProgress;
  /** Ends the run with a failure waiting will not fix. */
  fail(error: unknown): void;
}

/**
 * Chunks read whose high watermark has not come through the stream yet, at most: one waiting for
 * it while the next is read hides the stream's latency, and memory holds two chunks.
 */
const CHUNKS_IN_FLIGHT = 2;

/** How long a chunk's read waits before it tries again to see a transaction committed but not yet visible. */
const UNSEEN_COMMIT_RETRY_MS = 5;

/** How long such waits go on before each warning line. */
const UNSEEN_COMMIT_WARN_MS = 10_000;

/** The queue with no table. */
const NO_SNAPSHOT: QueueState = Object.freeze({ current: null, waiting: [], paused: false });

/** A published queue waiting to be kept, and the position the slot is held at until it is: before the transaction that moved it. */
interface HeldQueue {
  queue: QueueState;
  heldAt: Lsn;
}

/** A chunk in flight: its window, its table's spec and key, and where it leaves its table once published. */
interface Chunk {
  window: ChunkWindow<TupleValues>;
  spec: TableSpec;
  key: number[];
  /** The table's largest key when its snapshot began. */
  until: KeyValues | null;
  /** The key of its last row; null when it read none. */
  lastKey: KeyValues | null;
  /** Whether it ends its table. */
  last: boolean;
  /** Set when a stop or a new stream drops it: its rows are never published, its position never kept. */
  dropped: boolean;
  /** Resolved once its high watermark came through the stream, or once it was dropped. */
  done: PromiseWithResolvers<void>;
}

/**
 * Signals, the queue of tables, the chunks in flight and the positions waiting for Kafka.
 *
 * Two queues are kept. `queue` is the reader's: it moves on as soon as a chunk is read. The
 * published one moves only with the stream, at a chunk's high watermark or a signal, so it never
 * stands ahead of what the topics have; it is the one kept in `cdc_capture_state` once Kafka
 * acknowledged the transaction that moved it, and the one a new stream starts again from.
 */
export class IncrementalSnapshots implements SnapshotObserver {
  readonly queue = new SnapshotQueue();
  /** The chunks whose high watermark has not come yet, oldest first, by id. */
  #chunks = new Map<string, Chunk>();
  /** The queue as the stream has published it. */
  #published: QueueState = NO_SNAPSHOT;
  /** Whether the transaction being streamed moved the published queue (a chunk closed, a signal). */
  #movedInTransaction = false;
  #checkpoints = new ChunkCheckpoints<HeldQueue>();
  /** The published queue at the acknowledged position: a new stream starts there again. */
  #kept: QueueState = NO_SNAPSHOT;
  /** An acknowledged queue not yet written to `cdc_capture_state`, and the position the slot is held at until it is. */
  #unsaved: HeldQueue | null = null;
  /** Where the slot is held while the transaction being streamed has moved the queue (its moves are not kept yet). */
  #heldInTransaction: Lsn | null = null;
  #wake = Promise.withResolvers<void>();
  #loaded = false;

  /** Incremental snapshots with `options`. */
  constructor(readonly options: IncrementalOptions) {}

  /** Whether `table` is the signal table. */
  isSignalTable(table: TableName): boolean {
    const { signalTable } = this.options;
    return signalTable !== null && qualified(signalTable) === qualified(table);
  }

  /** Acts on a signal row, in the reader's queue and the published one; one line for a signal ignored. */
  signal(values: TupleValues): void {
    const row: SignalRow = { id: values[0] ?? "", type: values[1] ?? "", data: values[2] ?? null };
    const signal = readSignal(row, this.options.tables);
    if (signal.type === "ignored") {
      if (signal.line) this.options.logger.warn(signal.line);
      return;
    }
    this.#publish((published) => applySignal(published, signal));
    const queuedBefore = this.queue.tables;
    this.options.logger.info(`signal ${signal.id}: ${applySignal(this.queue, signal)}`);
    const queued = (t: TableName) => this.queue.tables.some((q) => qualified(q) === qualified(t));
    for (const t of queuedBefore) if (!queued(t)) this.options.progress.finish(qualified(t));
    // Debezium clears the window of a table stopped.
    for (const chunk of this.#chunks.values()) if (!queued(chunk.window.table)) this.#dropChunk(chunk);
    this.#wake.resolve();
  }

  /** Queues `tables` for a snapshot (a table added to --tables); returns those queued. */
  request(tables: TableName[]): TableName[] {
    const requests = tables.map((table) => ({ table, filter: "" }));
    this.#publish((published) => void published.add(requests));
    const added = this.queue.add(requests);
    this.#wake.resolve();
    return added.map((r) => r.table);
  }

  /** Tells every chunk in flight of its table which key a streamed change touched, and in which transaction. */
  changed(spec: TableSpec, change: RowChange): void {
    const table = { schema: spec.schema, table: spec.table };
    const xid = change.source.txId;
    for (const chunk of this.#chunks.values()) {
      if (change.before) chunk.window.touched(table, chunk.key.map((i) => change.before![i] ?? null), xid);
      if (change.after) chunk.window.touched(table, chunk.key.map((i) => change.after![i] ?? null), xid);
    }
  }

  /** A watermark of a chunk in flight opens or closes its window; others (older runs, other slots) are left. */
  message(prefix: string, content: Uint8Array, source: ChangeSource): void {
    if (prefix !== WATERMARK_PREFIX) return;
    const [, id, mark] = /^(.*)-(open|close)$/.exec(new TextDecoder().decode(content)) ?? [];
    const chunk = this.#chunks.get(id);
    if (!chunk) return;
    if (mark === "open") return chunk.window.openWindow();
    const rows = chunk.window.close();
    const { encoder, publisher, progress, logger } = this.options;
    const table = { schema: chunk.spec.schema, table: chunk.spec.table };
    for (const after of rows) {
      // Debezium leaves an incremental read's lsn and txId null: the read belongs to no transaction of the WAL.
      const read = { ...source, lsn: null, txId: null, snapshot: "incremental" as const };
      const change: RowChange = { op: "r", before: null, after, source: read };
      publisher.add(encodeOrStop(encoder, chunk.spec, change), table, "r");
    }
    this.#publish((published) => publishChunk(published, table, chunk));
    const name = qualified(table);
    progress.count(name, rows.length);
    if (chunk.last) {
      progress.finish(name);
      logger.info(`incremental snapshot of ${name} done`, {
        rows: progress.figures().find((f) => f.table === name)?.rows,
      });
    }
    this.#chunks.delete(id);
    chunk.done.resolve();
  }

  /** The end of a transaction: when it moved the published queue, that queue is kept once Kafka acknowledged it. */
  committed(endLsn: Lsn): void {
    if (!this.#movedInTransaction) return;
    this.#checkpoints.add(endLsn, { queue: this.#published, heldAt: this.#heldInTransaction! });
    this.#movedInTransaction = false;
    this.#heldInTransaction = null;
  }

  /** A new stream replays from the acknowledged position: both queues go back to what Kafka has. */
  streamStarting(): void {
    this.#drop();
    this.#takeAcknowledged();
    this.#checkpoints = new ChunkCheckpoints<HeldQueue>();
    this.#published = this.#kept;
    this.#movedInTransaction = false;
    this.#heldInTransaction = null;
    this.queue.restore(this.#kept);
  }

  /** `acknowledged`, or the oldest position held for a queue not kept yet when that is before it. */
  confirmable(acknowledged: Lsn): Lsn {
    const held = this.#unsaved?.heldAt ?? this.#checkpoints.first?.heldAt ?? this.#heldInTransaction;
    return held !== null && held < acknowledged ? held : acknowledged;
  }

  /** Moves the published queue by `move`, in the transaction being streamed. */
  #publish(move: (published: SnapshotQueue) => unknown): void {
    const published = new SnapshotQueue();
    published.restore(this.#published);
    move(published);
    this.#published = published.state();
    // Nothing of this transaction is acknowledged yet, so the acknowledged position is before its commit.
    this.#heldInTransaction ??= this.options.publisher.acknowledgedLsn;
    this.#movedInTransaction = true;
  }

  /** The latest queue Kafka acknowledged becomes the one to keep; the slot stays held where its oldest unkept move was. */
  #takeAcknowledged(): void {
    const acknowledged = this.#checkpoints.acknowledged(this.options.publisher.acknowledgedLsn);
    if (!acknowledged) return;
    const { queue, heldAt } = acknowledged.position;
    this.#unsaved = { queue, heldAt: this.#unsaved?.heldAt ?? heldAt };
    this.#kept = queue;
  }

  /** Drops the chunks in flight, unpublished. */
  #drop(): void {
    for (const chunk of this.#chunks.values()) this.#dropChunk(chunk);
  }

  /** Drops one chunk in flight, unpublished: its watermarks will change nothing. */
  #dropChunk(chunk: Chunk): void {
    chunk.dropped = true;
    this.#chunks.delete(chunk.window.id);
    chunk.done.resolve();
  }

  /** Takes up the queue kept by an earlier run. */
  async #load(): Promise<void> {
    const state = await this.options.database.loadState();
    if (!state) return;
    this.queue.restore(state);
    this.#kept = this.#published = state;
    this.options.logger.info(`incremental snapshot to read: ${this.queue.tables.map(qualified).join(",")}`, {
      after: JSON.stringify(state.current?.after ?? null),
    });
  }

  /** Keeps the published queue as it stands after the last transaction Kafka acknowledged. */
  async keepAcknowledged(): Promise<void> {
    this.#takeAcknowledged();
    const unsaved = this.#unsaved;
    if (!unsaved) return;
    const { queue } = unsaved;
    const active = queue.current !== null || queue.waiting.length > 0;
    await this.options.database.keepState(active ? queue : null);
    if (this.#unsaved === unsaved) this.#unsaved = null;
  }

  /** Kafka acknowledged everything before `lsn`: a chunk's position waiting for it is kept at the next step. */
  acknowledgedTo(lsn: Lsn): void {
    if (this.#checkpoints.pending && this.#checkpoints.covers(lsn)) this.#wake.resolve();
  }

  /** Runs `following` (the stream's), reading chunks beside it until it ends; the first takes up the queue kept. */
  async during(following: () => Promise<void>): Promise<void> {
    if (!this.#loaded) await this.#load();
    this.#loaded = true;
    const stop = new AbortController();
    const reading = this.run(stop.signal);
    try {
      await following();
    } finally {
      stop.abort();
      await reading;
    }
  }

  /** Reads chunks while tables are queued, until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    // A stop ends the wait for work or for the chunk in flight's high watermark, which will not come.
    const onStop = () => (this.#wake.resolve(), this.#drop());
    signal.addEventListener("abort", onStop, { once: true });
    try {
      while (!signal.aborted) await this.#step(signal);
    } catch (error) {
      if (!signal.aborted) this.options.fail(error);
    } finally {
      signal.removeEventListener("abort", onStop);
      this.#drop();
    }
  }

  /** One step: wait for work, start a table, or read a chunk; PostgreSQL outages are waited out. */
  async #step(signal: AbortSignal): Promise<void> {
    await waitOut(() => this.keepAcknowledged(), this.#outage("keeping the snapshot's position", signal));
    if (!this.queue.reading) {
      this.#wake = Promise.withResolvers<void>();
      // A stop during the await above resolved the wake this one replaces.
      if (signal.aborted) return;
      return await this.#wake.promise;
    }
    const current = this.queue.current ?? (this.queue.startNext(), this.queue.current!);
    if (current.until === null) {
      return await waitOut(() => this.#bound(current), this.#outage("a table", signal));
    }
    await waitOut(() => this.#readChunk(current, signal), this.#outage("a snapshot chunk", signal));
  }

  /** Reads the largest key a table's snapshot reads up to; a table without a key cannot be read in chunks. */
  async #bound(position: TablePosition): Promise<void> {
    const { request } = position;
    const name = qualified(request.table);
    const spec = await this.options.database.tableSpec(request.table);
    const key = keyColumns(spec);
    if (this.queue.current !== position) return; // stopped meanwhile
    if (!key.length) {
      this.queue.stop([request.table]);
      return this.options.logger.warn(`incremental snapshot of ${name} skipped: it has no primary key to read it by`);
    }
    const until = await this.options.database.largestKey(spec, key, request.filter);
    const estimate = await this.options.database.estimateRows(request.table);
    if (this.queue.current !== position) return;
    this.options.progress.start(name, estimate);
    this.queue.bounded(request.table, until);
    if (until === null) this.options.progress.finish(name);
    if (until === null) this.options.logger.info(`incremental snapshot of ${name} done`, { rows: 0 });
    else this.options.logger.info(`incremental snapshot of ${name} begins`, { until: JSON.stringify(until) });
  }

  /**
   * Reads the chunk of the table at `position` between its watermarks. The next chunk is read while
   * this one's high watermark travels through the stream; at most {@linkcode CHUNKS_IN_FLIGHT} wait
   * for theirs. A stop or a new stream while it is read drops it: nothing of it moves the queue.
   */
  async #readChunk(position: TablePosition, signal: AbortSignal): Promise<void> {
    const { database, chunkSize } = this.options;
    const table = position.request.table;
    const spec = await database.tableSpec(table);
    // Stopped, or a new stream, meanwhile; a run stopped has dropped its chunks and would not drop this one.
    if (this.queue.current !== position || signal.aborted) return;
    const names = keyColumns(spec);
    const key = names.map((n) => spec.columns.findIndex((c) => c.name === n));
    const id = `${crypto.randomUUID()}`;
    const chunk: Chunk = {
      window: new ChunkWindow(id, table),
      spec,
      key,
      until: position.until,
      lastKey: null,
      last: false,
      dropped: false,
      done: Promise.withResolvers<void>(),
    };
    // Registered before its low watermark is written: the changes streamed from now on are told to its window.
    this.#chunks.set(id, chunk);
    try {
      await database.emitWatermark(`${id}-open`);
      if (chunk.dropped) return;
      const range = {
        after: position.after,
        until: position.until!,
        filter: position.request.filter,
        limit: chunkSize,
      };
      const read = await this.#readVisible(spec, names, range, chunk);
      if (!read) return;
      const { rows, snapshot } = read;
      chunk.window.fill(rows, (row) => key.map((i) => row[i] ?? null), snapshot);
      chunk.lastKey = rows.length ? key.map((i) => rows.at(-1)![i] ?? null) : null;
      chunk.last = chunk.lastKey === null || keyText(chunk.lastKey) === keyText(position.until!);
      await database.emitWatermark(`${id}-close`);
    } catch (error) {
      this.#dropChunk(chunk);
      throw error;
    }
    // The reader moves on once the high watermark is written; a failure before reads the chunk again.
    if (chunk.dropped) return;
    this.queue.chunkRead(table, chunk.lastKey);
    const oldest = this.#chunks.values().next().value;
    if (this.#chunks.size >= CHUNKS_IN_FLIGHT && oldest) await oldest.done.promise;
  }

  /**
   * Reads `chunk`'s rows once its read sees every transaction already committed, waiting a moment
   * between tries (a commit is visible microseconds after it is marked, or once a synchronous
   * standby answered); a wait past {@linkcode UNSEEN_COMMIT_WARN_MS} is one line every so often.
   * Null when the chunk was dropped meanwhile.
   */
  async #readVisible(spec: TableSpec, key: string[], range: ChunkRange, chunk: Chunk): Promise<ChunkRead | null> {
    const started = Date.now();
    let warned = started;
    for (;;) {
      const read = await this.options.database.readChunk(spec, key, range);
      if (chunk.dropped || read) return chunk.dropped ? null : read;
      if (Date.now() - warned >= UNSEEN_COMMIT_WARN_MS) {
        warned = Date.now();
        this.options.logger.warn(
          `incremental snapshot of ${
            qualified(spec)
          } waits for a transaction committed but not yet visible: is a synchronous standby answering?`,
          { waitedMs: warned - started },
        );
      }
      await sleep(UNSEEN_COMMIT_RETRY_MS);
    }
  }

  /** Waits out PostgreSQL outages while `what` is read, logging each wait. */
  #outage(what: string, signal: AbortSignal) {
    return {
      what,
      policy: OUTAGE,
      isRetriable: isCaptureOutage,
      signal,
      onWait: (error: unknown, attempt: number, delayMs: number) =>
        this.options.logger.warn(`incremental snapshot: waiting for PostgreSQL (${what}), retrying in ${delayMs} ms`, {
          attempt,
          error: describeError(error),
        }),
    };
  }
}

/** Applies `signal` to `queue`; returns what it did, in words for the signal's log line. */
function applySignal(queue: SnapshotQueue, signal: Exclude<Signal, { type: "ignored" }>): string {
  switch (signal.type) {
    case "execute-snapshot": {
      const added = queue.add(signal.requests).map((r) => qualified(r.table)).join(",");
      return added ? `incremental snapshot of ${added}` : "its tables are queued already";
    }
    case "stop-snapshot":
      return `stopped the snapshot of ${queue.stop(signal.tables).map(qualified).join(",") || "nothing"}`;
    case "pause-snapshot":
      return queue.pause() ? "paused" : "no snapshot to pause";
    case "resume-snapshot":
      return queue.unpause() ? "resumed" : "no paused snapshot";
  }
}

/**
 * Moves the published queue past `chunk` of `table`. The tables before it in the queue ended
 * without a chunk (empty, without a key): they leave it; the table starts if it had not.
 */
function publishChunk(published: SnapshotQueue, table: TableName, chunk: Chunk): void {
  const isTable = (t: TableName | undefined) => t !== undefined && qualified(t) === qualified(table);
  while (!isTable(published.current?.request.table) && published.tables.some(isTable)) {
    if (published.current) published.stop([published.current.request.table]);
    published.startNext();
  }
  if (!isTable(published.current?.request.table)) return;
  if (published.current!.until === null) published.bounded(table, chunk.until);
  published.chunkRead(table, chunk.lastKey);
}

/** The columns a table's chunks are ordered by: its key. */
function keyColumns(spec: TableSpec): string[] {
  return spec.keyColumns ?? spec.columns.filter((c) => c.key).map((c) => c.name);
}
