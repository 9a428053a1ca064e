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
import { type ChunkDatabase, WATERMARK_PREFIX } from "./capture_chunk_store.ts";
import { type DebeziumEncoder, encodeOrStop, type TableSpec } from "./capture_debezium.ts";
import { isCaptureOutage } from "./capture_errors.ts";
import { ChunkCheckpoints, ChunkWindow, type QueueState, SnapshotQueue } from "./capture_incremental.ts";
import type { Lsn, TupleValues } from "./capture_pgoutput.ts";
import type { AckingPublisher } from "./capture_publisher.ts";
import type { ChangeSource, RowChange } from "./capture_reader.ts";
import { readSignal, type SignalRow, type SnapshotRequest } from "./capture_signals.ts";
import { qualified } from "./capture_slot.ts";
import type { TableName } from "./config.ts";
import { describeError } from "./errors.ts";
import type { Logger } from "./log.ts";
import type { SnapshotProgress } from "./stats.ts";
import { OUTAGE, waitOut } from "./retry.ts";

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

/** The queue with no table. */
const NO_SNAPSHOT: QueueState = Object.freeze({ current: null, waiting: [], paused: false });

/** The chunk in flight: its window, its table's spec and key, and the queue as it stands once it is in Kafka. */
interface Chunk {
  window: ChunkWindow<TupleValues>;
  spec: TableSpec;
  key: number[];
  after: QueueState;
  /** Resolved once its high watermark came through the stream, or once it was dropped. */
  done: PromiseWithResolvers<void>;
}

/** Signals, the queue of tables, the chunk in flight and the positions waiting for Kafka. */
export class IncrementalSnapshots implements SnapshotObserver {
  readonly queue = new SnapshotQueue();
  /** The chunks whose high watermark has not come yet, oldest first, by id. */
  #chunks = new Map<string, Chunk>();
  /** The chunk whose high watermark came, until its transaction's commit. */
  #closing: Chunk | null = null;
  #checkpoints = new ChunkCheckpoints<QueueState>();
  /**
   * The queue as it stood at the acknowledged position: a new stream starts there again, and the
   * signals after it come again with the stream.
   */
  #kept: QueueState = NO_SNAPSHOT;
  #wake = Promise.withResolvers<void>();
  #loaded = false;

  /** Incremental snapshots with `options`. */
  constructor(readonly options: IncrementalOptions) {}

  /** Whether `table` is the signal table. */
  isSignalTable(table: TableName): boolean {
    const { signalTable } = this.options;
    return signalTable !== null && qualified(signalTable) === qualified(table);
  }

  /** Acts on a signal row; one line for a signal ignored. */
  signal(values: TupleValues): void {
    const row: SignalRow = { id: values[0] ?? "", type: values[1] ?? "", data: values[2] ?? null };
    const signal = readSignal(row, this.options.tables);
    const { logger } = this.options;
    switch (signal.type) {
      case "ignored":
        if (signal.line) logger.warn(signal.line);
        return;
      case "execute-snapshot": {
        const added = this.queue.add(signal.requests).map((r) => qualified(r.table)).join(",");
        logger.info(
          `signal ${signal.id}: ${added ? `incremental snapshot of ${added}` : "its tables are queued already"}`,
        );
        break;
      }
      case "stop-snapshot": {
        const stopped = this.queue.stop(signal.tables);
        for (const t of stopped) this.options.progress.finish(qualified(t));
        // Debezium clears the window of a table stopped.
        for (const chunk of this.#chunks.values()) {
          if (!this.queue.tables.some((t) => qualified(t) === qualified(chunk.window.table))) this.#dropChunk(chunk);
        }
        logger.info(`signal ${signal.id}: stopped the snapshot of ${stopped.map(qualified).join(",") || "nothing"}`);
        break;
      }
      case "pause-snapshot":
        logger.info(`signal ${signal.id}: ${this.queue.pause() ? "paused" : "no snapshot to pause"}`);
        break;
      case "resume-snapshot":
        logger.info(`signal ${signal.id}: ${this.queue.unpause() ? "resumed" : "no paused snapshot"}`);
    }
    this.#wake.resolve();
  }

  /** Queues `tables` for a snapshot (a table added to --tables); returns those queued. */
  request(tables: TableName[]): TableName[] {
    const added = this.queue.add(tables.map((table) => ({ table, filter: "" })));
    this.#wake.resolve();
    return added.map((r) => r.table);
  }

  /** Marks the keys a streamed change touches in every open window of its table. */
  changed(spec: TableSpec, change: RowChange): void {
    const table = { schema: spec.schema, table: spec.table };
    for (const chunk of this.#chunks.values()) {
      if (!chunk.window.open) continue;
      if (change.before) chunk.window.touched(table, chunk.key.map((i) => change.before![i] ?? null));
      if (change.after) chunk.window.touched(table, chunk.key.map((i) => change.after![i] ?? null));
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
    const { encoder, publisher } = this.options;
    const table = { schema: chunk.spec.schema, table: chunk.spec.table };
    for (const after of rows) {
      // Debezium leaves an incremental read's lsn and txId null: the read belongs to no transaction of the WAL.
      const read = { ...source, lsn: null, txId: null, snapshot: "incremental" as const };
      const change: RowChange = { op: "r", before: null, after, source: read };
      publisher.add(encodeOrStop(encoder, chunk.spec, change), table, "r");
    }
    const name = qualified(table);
    const { progress, logger } = this.options;
    progress.count(name, rows.length);
    if (!chunk.after.current || qualified(chunk.after.current.request.table) !== name) {
      progress.finish(name);
      logger.info(`incremental snapshot of ${name} done`, {
        rows: progress.figures().find((f) => f.table === name)?.rows,
      });
    }
    this.#chunks.delete(id);
    this.#closing = chunk;
  }

  /** The commit of a high watermark's transaction: the chunk's position waits for Kafka's acknowledgement. */
  committed(endLsn: Lsn): void {
    if (!this.#closing) return;
    this.#checkpoints.add(endLsn, this.#closing.after);
    this.#closing.done.resolve();
    this.#closing = null;
  }

  /** A new stream replays from the acknowledged position: the queue goes back to what Kafka has. */
  streamStarting(): void {
    this.#drop();
    this.#checkpoints = new ChunkCheckpoints<QueueState>();
    this.queue.restore(this.#kept);
  }

  /** Drops the chunks in flight, unpublished. */
  #drop(): void {
    for (const chunk of this.#chunks.values()) this.#dropChunk(chunk);
    this.#closing?.done.resolve();
    this.#closing = null;
  }

  /** Drops one chunk in flight, unpublished: its watermarks will change nothing. */
  #dropChunk(chunk: Chunk): void {
    this.#chunks.delete(chunk.window.id);
    chunk.done.resolve();
  }

  /** Takes up the queue kept by an earlier run. */
  async #load(): Promise<void> {
    const state = await this.options.database.loadState();
    if (!state) return;
    this.queue.restore(state);
    this.#kept = state;
    this.options.logger.info(`incremental snapshot to read: ${this.queue.tables.map(qualified).join(",")}`, {
      after: JSON.stringify(state.current?.after ?? null),
    });
  }

  /** Keeps the queue as it stands after the last chunk Kafka acknowledged. */
  async keepAcknowledged(): Promise<void> {
    const acknowledged = this.#checkpoints.acknowledged(this.options.publisher.acknowledgedLsn);
    if (!acknowledged) return;
    const state = acknowledged.position;
    const active = state.current !== null || state.waiting.length > 0;
    await this.options.database.keepState(active ? state : null);
    this.#kept = state;
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
      return await this.#wake.promise;
    }
    const current = this.queue.current ?? (this.queue.startNext(), this.queue.current!);
    if (current.until === null) {
      return await waitOut(() => this.#bound(current.request), this.#outage("a table", signal));
    }
    await waitOut(() => this.#readChunk(current.request.table), this.#outage("a snapshot chunk", signal));
  }

  /** Reads the largest key a table's snapshot reads up to; a table without a key cannot be read in chunks. */
  async #bound(request: SnapshotRequest): Promise<void> {
    const name = qualified(request.table);
    const spec = await this.options.database.tableSpec(request.table);
    const key = keyColumns(spec);
    if (!key.length) {
      this.queue.stop([request.table]);
      return this.options.logger.warn(`incremental snapshot of ${name} skipped: it has no primary key to read it by`);
    }
    const until = await this.options.database.largestKey(spec, key, request.filter);
    this.options.progress.start(name, await this.options.database.estimateRows(request.table));
    this.queue.bounded(request.table, until);
    if (until === null) this.options.progress.finish(name);
    if (until === null) this.options.logger.info(`incremental snapshot of ${name} done`, { rows: 0 });
    else this.options.logger.info(`incremental snapshot of ${name} begins`, { until: JSON.stringify(until) });
  }

  /**
   * Reads one chunk of `table` between its watermarks. The next chunk is read while this one's high
   * watermark travels through the stream; at most {@linkcode CHUNKS_IN_FLIGHT} wait for theirs.
   */
  async #readChunk(table: TableName): Promise<void> {
    const { database, chunkSize } = this.options;
    const position = this.queue.current!;
    const spec = await database.tableSpec(table);
    const names = keyColumns(spec);
    const key = names.map((n) => spec.columns.findIndex((c) => c.name === n));
    const id = `${crypto.randomUUID()}`;
    const chunk: Chunk = {
      window: new ChunkWindow(id, table),
      spec,
      key,
      after: this.queue.state(),
      done: Promise.withResolvers<void>(),
    };
    this.#chunks.set(id, chunk);
    try {
      await database.emitWatermark(`${id}-open`);
      const range = {
        after: position.after,
        until: position.until!,
        filter: position.request.filter,
        limit: chunkSize,
      };
      const rows = await database.readChunk(spec, names, range);
      chunk.window.fill(rows, (row) => key.map((i) => row[i] ?? null));
      const lastKey = rows.length ? key.map((i) => rows.at(-1)![i] ?? null) : null;
      // The queue moves on once the high watermark is written; a failure before reads the chunk again.
      const next = new SnapshotQueue();
      next.restore(this.queue.state());
      next.chunkRead(table, lastKey);
      chunk.after = next.state();
      await database.emitWatermark(`${id}-close`);
      this.queue.chunkRead(table, lastKey);
    } catch (error) {
      this.#dropChunk(chunk);
      throw error;
    }
    const oldest = this.#chunks.values().next().value;
    if (this.#chunks.size >= CHUNKS_IN_FLIGHT && oldest) await oldest.done.promise;
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

/** The columns a table's chunks are ordered by: its key. */
function keyColumns(spec: TableSpec): string[] {
  return spec.keyColumns ?? spec.columns.filter((c) => c.key).map((c) => c.name);
}
