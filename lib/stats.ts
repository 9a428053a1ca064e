/**
 * The counters of each command's run, read by progress lines, summaries and metrics, and the
 * health flags that say which dependency is reachable. Each run's stats are one object that
 * changes only through its own methods: the run's parts count and mark through them, and
 * everything else (metrics at scrape time, summaries, `/health`) reads. Durations reach the
 * metrics through an observer the run is given (lib/metrics.ts).
 * @module
 */
/** Adds `n` to `counts[key]`. */
function add(counts: Record<string, number>, key: string, n: number): void {
  counts[key] = (counts[key] ?? 0) + n;
}

/** What every run's stats hold: whether each of its dependencies is reachable, as its clients last showed. */
export class RunStats<D extends string = string> {
  readonly #up: Record<string, boolean> = {};

  /** Creates the flags, every dependency down until it answers. */
  constructor(dependencies: readonly D[]) {
    for (const dependency of dependencies) this.#up[dependency] = false;
  }

  /** Records a sign of `dependency` working. */
  markUp(dependency: D): void {
    this.#up[dependency] = true;
  }

  /** Records a sign of `dependency`'s absence. */
  markDown(dependency: D): void {
    this.#up[dependency] = false;
  }

  /** Whether `dependency` is reachable. */
  isUp(dependency: D): boolean {
    return this.#up[dependency] === true;
  }

  /** Each dependency and whether it is reachable, as a copy: what `/health` and `cdc_connected` read. */
  health(): Record<D, boolean> {
    return { ...this.#up } as Record<D, boolean>;
  }
}

/** Counters of a consume run: records applied and dead-lettered per topic, batches, waits, lag; and health. */
export class ConsumeStats extends RunStats<"kafka" | "database"> {
  readonly #applied: Record<string, number> = {};
  readonly #deadLettered: Record<string, number> = {};
  #batches = 0;
  #retries = 0;
  #lag: Record<string, number> = {};

  /** Fresh counters, Kafka and PostgreSQL down until they answer. */
  constructor() {
    super(["kafka", "database"]);
  }

  /** Records applied to PostgreSQL, per topic. */
  get applied(): Readonly<Record<string, number>> {
    return this.#applied;
  }

  /** Records written to the DLQ, per source topic. */
  get deadLettered(): Readonly<Record<string, number>> {
    return this.#deadLettered;
  }

  /** Batches committed. */
  get batches(): number {
    return this.#batches;
  }

  /** Waits for an outage or a missing user. */
  get retries(): number {
    return this.#retries;
  }

  /** Lag per `topic:partition` (lib/partition_key.ts; log end minus the offset stored in PostgreSQL). */
  get lag(): Readonly<Record<string, number>> {
    return this.#lag;
  }

  /** Counts `n` records of `topic` applied. */
  countApplied(topic: string, n: number): void {
    add(this.#applied, topic, n);
  }

  /** Counts `n` records of `topic` dead-lettered. */
  countDeadLettered(topic: string, n: number): void {
    add(this.#deadLettered, topic, n);
  }

  /** Counts one committed batch. */
  countBatch(): void {
    this.#batches++;
  }

  /** Counts one wait for an outage or a missing user. */
  countRetry(): void {
    this.#retries++;
  }

  /** Replaces the lag with the one just measured: a partition no longer in it is no longer reported. */
  setLag(lag: Record<string, number>): void {
    this.#lag = lag;
  }
}

/** Fresh counters for a consume run. */
export function newConsumeStats(): ConsumeStats {
  return new ConsumeStats();
}

/** Counters of a run that publishes to Kafka (produce, capture), filled as Kafka acknowledges; and health. */
export class PublishStats<D extends string = string> extends RunStats<D> {
  readonly #published: Record<string, number> = {};
  #sendRetries = 0;

  /** Records acknowledged by Kafka, per topic. */
  get published(): Readonly<Record<string, number>> {
    return this.#published;
  }

  /** Send attempts made again after a failure. */
  get sendRetries(): number {
    return this.#sendRetries;
  }

  /** Counts `n` records of `topic` acknowledged by Kafka. */
  countPublished(topic: string, n: number): void {
    add(this.#published, topic, n);
  }

  /** Counts one send attempted again after a failure. */
  countSendRetry(): void {
    this.#sendRetries++;
  }
}

/** Counters of a produce run. */
export class ProduceStats extends PublishStats<"kafka"> {
  /** Fresh counters, Kafka down until it answers. */
  constructor() {
    super(["kafka"]);
  }
}

/** Fresh counters for a produce run. */
export function newProduceStats(): ProduceStats {
  return new ProduceStats();
}

/** Where one table's snapshot stands, as progress lines, `/metrics` and `/health` show it. */
export interface SnapshotFigures {
  /** `schema.table`. */
  table: string;
  /** Rows published by its snapshots in this run, all snapshots together (the metric's counter). */
  total: number;
  /** Rows published by its current (or last) snapshot. */
  rows: number;
  /** The rows expected: an exact count, or PostgreSQL's estimate (`pg_class.reltuples`). */
  estimate: number;
  /** Rows left against the estimate; 0 once done. */
  remaining: number;
  /** Rows per second since the snapshot began. */
  rowsPerS: number;
  /** Seconds left at that rate; null when unknown (no row yet) or done. */
  etaS: number | null;
  /** Whether the snapshot ended. */
  done: boolean;
}

/** The snapshots of a capture run (first and incremental), per table: rows against the estimate, rate and ETA. */
export class SnapshotProgress {
  readonly #tables = new Map<
    string,
    { total: number; rows: number; estimate: number; startedMs: number; done: boolean }
  >();

  /** Progress read against `now` (milliseconds). */
  constructor(readonly now: () => number = () => performance.now()) {}

  /** A snapshot of `table` begins, `estimate` rows expected. */
  start(table: string, estimate: number): void {
    const total = this.#tables.get(table)?.total ?? 0;
    this.#tables.set(table, { total, rows: 0, estimate: Math.max(0, estimate), startedMs: this.now(), done: false });
  }

  /** `n` rows of `table`'s snapshot were published. */
  count(table: string, n: number): void {
    if (!this.#tables.has(table)) this.start(table, 0);
    const figures = this.#tables.get(table)!;
    figures.rows += n;
    figures.total += n;
  }

  /** `table`'s snapshot ended (read to its end, or stopped). */
  finish(table: string): void {
    const figures = this.#tables.get(table);
    if (figures) figures.done = true;
  }

  /** Whether a snapshot is running. */
  get running(): boolean {
    return [...this.#tables.values()].some((f) => !f.done);
  }

  /** Every table's figures, now. */
  figures(): SnapshotFigures[] {
    const now = this.now();
    return [...this.#tables].map(([table, f]) => {
      const rowsPerS = f.rows / Math.max((now - f.startedMs) / 1000, 1e-3);
      const remaining = f.done ? 0 : Math.max(0, f.estimate - f.rows);
      const etaS = f.done || f.rows === 0 ? null : Math.round(remaining / rowsPerS);
      return { table, total: f.total, rows: f.rows, estimate: f.estimate, remaining, rowsPerS, etaS, done: f.done };
    });
  }
}

/** Counters of a capture run: a publishing run's, and the changes, slot position and retained WAL. */
export class CaptureStats extends PublishStats<"kafka" | "database"> {
  readonly #captured: Record<string, number> = {};
  /** The snapshots' progress: rows against the estimate, rate, ETA. */
  readonly snapshots = new SnapshotProgress();
  #acknowledgedLsn = 0n;
  #retainedWalBytes: number | null = null;

  /** Fresh counters, Kafka and PostgreSQL's replication stream down until they answer. */
  constructor() {
    super(["kafka", "database"]);
  }

  /** Changes acknowledged by Kafka, per `table.op`. */
  get captured(): Readonly<Record<string, number>> {
    return this.#captured;
  }

  /** The acknowledged slot position, as a byte offset. */
  get acknowledgedLsn(): bigint {
    return this.#acknowledgedLsn;
  }

  /** WAL the slot retains on the server, in bytes; null until measured. */
  get retainedWalBytes(): number | null {
    return this.#retainedWalBytes;
  }

  /** Counts `n` changes of `key` (`table.op`) acknowledged by Kafka. */
  countCaptured(key: string, n: number): void {
    add(this.#captured, key, n);
  }

  /** Takes the slot position acknowledged now. */
  setAcknowledgedLsn(lsn: bigint): void {
    this.#acknowledgedLsn = lsn;
  }

  /** Takes the slot's retained WAL as just measured (null: no slot to measure). */
  setRetainedWal(bytes: number | null): void {
    this.#retainedWalBytes = bytes;
  }
}

/** Fresh counters for a capture run. */
export function newCaptureStats(): CaptureStats {
  return new CaptureStats();
}

/** What a consume run reports as it goes, beyond its counters: each committed batch. */
export interface ConsumeObserver {
  /** A partition batch committed `size` records (applied or dead-lettered) after `applyMs` in PostgreSQL. */
  batchCommitted(size: number, applyMs: number): void;
}

/** What a publishing run reports as it goes, beyond its counters: each acknowledged send. */
export interface SendObserver {
  /** One batch was acknowledged `sendMs` after it was sent, retries included. */
  batchSent(sendMs: number): void;
}
