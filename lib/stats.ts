/**
 * The counters of each command's run, read by progress lines, summaries and metrics, and the
 * one `Health` object that says which dependency is reachable. Metrics read the counters at
 * scrape time; durations reach them through an observer the run is given (lib/metrics.ts).
 * @module
 */

/** Whether each dependency of a run is reachable, as its clients last showed; `/health` and `cdc_connected` read it. */
export class Health<D extends string = string> {
  readonly #up: Record<string, boolean> = {};

  /** Creates the flags, every dependency down until it answers. */
  constructor(dependencies: readonly D[]) {
    for (const dependency of dependencies) this.#up[dependency] = false;
  }

  /** Records a sign of `dependency` working (`true`) or of its absence (`false`). */
  set(dependency: D, up: boolean): void {
    this.#up[dependency] = up;
  }

  /** Whether `dependency` is reachable. */
  isUp(dependency: D): boolean {
    return this.#up[dependency] === true;
  }

  /** Each dependency and whether it is reachable, as a copy. */
  snapshot(): Record<D, boolean> {
    return { ...this.#up } as Record<D, boolean>;
  }
}

/** Counters a partition batch fills: records applied and dead-lettered per topic, batches, waits, health. */
export interface BatchStats {
  /** Records applied to PostgreSQL, per topic. */
  applied: Record<string, number>;
  /** Records written to the DLQ, per source topic. */
  deadLettered: Record<string, number>;
  /** Batches committed. */
  batches: number;
  /** Waits for an outage or a missing user. */
  retries: number;
  /** Whether Kafka and PostgreSQL are reachable. */
  health: Health<"kafka" | "database">;
}

/** Counters of a consume run: a batch's, and the lag the monitor measures. */
export interface ConsumeStats extends BatchStats {
  /** Lag per `topic:partition` (lib/partition_key.ts; log end minus the offset stored in PostgreSQL), refreshed once a second. */
  lag: Record<string, number>;
}

/** Fresh counters for a consume run. */
export function newConsumeStats(): ConsumeStats {
  return {
    applied: {},
    deadLettered: {},
    batches: 0,
    retries: 0,
    lag: {},
    health: new Health(["kafka", "database"]),
  };
}

/** Counters of a publishing run; filled as Kafka acknowledges. */
export interface ProduceStats {
  /** Records acknowledged by Kafka, per topic. */
  published: Record<string, number>;
  /** Send attempts made again after a failure. */
  sendRetries: number;
  /** Whether Kafka is reachable. */
  health: Health<"kafka">;
}

/** Fresh counters for a produce run. */
export function newProduceStats(): ProduceStats {
  return { published: {}, sendRetries: 0, health: new Health(["kafka"]) };
}

/** Counters of a capture run: a publishing run's, and the changes, slot position and retained WAL. */
export interface CaptureStats {
  /** Records acknowledged by Kafka, per topic. */
  published: Record<string, number>;
  /** Send attempts made again after a failure. */
  sendRetries: number;
  /** Changes acknowledged by Kafka, per `table.op`. */
  captured: Record<string, number>;
  /** Whether Kafka and PostgreSQL's replication stream are reachable. */
  health: Health<"kafka" | "database">;
  /** The acknowledged slot position, as a byte offset. */
  acknowledgedLsn: bigint;
  /** WAL the slot retains on the server, in bytes; null until measured. */
  retainedWalBytes: number | null;
}

/** Fresh counters for a capture run. */
export function newCaptureStats(): CaptureStats {
  return {
    published: {},
    sendRetries: 0,
    captured: {},
    health: new Health(["kafka", "database"]),
    acknowledgedLsn: 0n,
    retainedWalBytes: null,
  };
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
