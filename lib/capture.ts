/**
 * The capture command's run (docs/CONTRACT.md section 7): PostgreSQL logical replication of the
 * configured tables through a durable `pgoutput` slot, published to Kafka as Debezium records.
 * This file wires the rooms together and owns the run's lifecycle; each room is its own module:
 * the slot and publication (capture_slot.ts), the snapshot (capture_snapshot.ts), PostgreSQL's side
 * as the run uses it (capture_database.ts), Kafka's (capture_kafka.ts), the replication connection
 * (capture_replication.ts), the pure reading of its frames (capture_reader.ts), the following of
 * the stream (capture_stream.ts), the sizing of sends (capture_batches.ts) and the publisher, the
 * acknowledged position's one writer (capture_publisher.ts).
 *
 * Delivery: at-least-once, no gap. The slot's confirmed position is only ever a position before
 * which Kafka acknowledged every change from all in-sync replicas (`acks: -1`); a restart resumes
 * from the slot, so PostgreSQL re-sends every commit after it: duplicates, no gaps. What would
 * leave a gap (a lost slot, a table out of the publication) or never pass (a record over the
 * topic's limit, a value that cannot be encoded, a deleted topic, a refused login) stops the run
 * with one line.
 * @module
 */
import { AckingPublisher, AcknowledgedPosition } from "./capture_publisher.ts";
import { DebeziumEncoder } from "./capture_debezium.ts";
import type { ValueOptions } from "./capture_debezium_values.ts";
import { CaptureError, isCaptureOutage } from "./capture_errors.ts";
import { type CaptureDatabase, PostgresCapture } from "./capture_database.ts";
import { qualified } from "./capture_slot.ts";
import { CaptureKafka, type CaptureSink } from "./capture_kafka.ts";
import type { ReplicationConnection } from "./capture_replication.ts";
import { StreamFollower } from "./capture_stream.ts";
import { IncrementalSnapshots } from "./capture_chunks.ts";
import type { CaptureConfig } from "./config.ts";
import { classify, describeError } from "./errors.ts";
import type { Logger } from "./log.ts";
import { formatLsn, type Lsn } from "./capture_pgoutput.ts";
import { OUTAGE, RetryError, waitOut } from "./retry.ts";
import type { Sql } from "./database.ts";
import type { CaptureStats, SendObserver } from "./stats.ts";
import { VERSION } from "./version.ts";

export { CaptureError } from "./capture_errors.ts";
export { dropCapture } from "./capture_slot.ts";
export { snapshotMarker } from "./capture_snapshot.ts";

/** What a capture run did, printed at exit. */
export interface CaptureSummary {
  /** Changes published and acknowledged, per `table.op`. */
  captured: Record<string, number>;
  /** Changes in all. */
  total: number;
  /** Rows of the first snapshot published in this run (0 when resuming). */
  snapshotRows: number;
  /** The slot position acknowledged at exit. */
  acknowledgedLsn: string;
  /** WAL the slot retained at the last measurement, in bytes. */
  retainedWalBytes: number | null;
  /** Times the replication stream was opened again after an outage. */
  reconnects: number;
  /** Wall time in seconds. */
  elapsedS: number;
  /** Changes per second over the run. */
  changesPerS: number;
}

/** Options of {@linkcode runCapture}. */
export interface CaptureRunOptions {
  /** Where progress and errors go. */
  logger: Logger;
  /** Counters to fill. */
  stats: CaptureStats;
  /** Hears each acknowledged send's duration (the metrics' histogram). */
  observer?: SendObserver;
  /** Aborted once a stop was requested (SIGINT/SIGTERM): what is in hand is published and acknowledged. */
  signal: AbortSignal;
  /** Seconds between progress lines, slot measurements and publication checks. @default 5 */
  progressEveryS?: number;
  /** Seconds between status updates to PostgreSQL. @default 10 */
  statusEveryS?: number;
  /** Creates the contract's users and orders tables when they are captured and missing (the consumer's schema). */
  ensureContractTables?: (sql: Sql) => Promise<void>;
}

/** What a capture run works with: PostgreSQL's side and Kafka's; {@linkcode runCapture} gives it the real ones. */
export interface CaptureParts {
  database: CaptureDatabase;
  kafka: CaptureSink;
}

/** The whole capture: prepare, snapshot once, then stream until stopped, riding out outages. */
export async function runCapture(config: CaptureConfig, options: CaptureRunOptions): Promise<CaptureSummary> {
  const database = new PostgresCapture(config, options.ensureContractTables);
  const kafka = new CaptureKafka(config, options.logger, options.stats, options.observer);
  return await new CaptureRun(config, options, { database, kafka }).run();
}

/** The state of one capture run, shared by its start, its sessions and its timers. */
export class CaptureRun {
  readonly started = performance.now();
  readonly logger: Logger;
  readonly stats: CaptureStats;
  readonly signal: AbortSignal;
  readonly database: CaptureDatabase;
  readonly kafka: CaptureSink;
  readonly encoder: DebeziumEncoder;
  readonly publisher: AckingPublisher;
  /** Aborted 30 s after a stop: sends of what is in hand get that long to be acknowledged. */
  readonly sendsShutdown = new AbortController();
  readonly follower: StreamFollower;
  readonly snapshots: IncrementalSnapshots;
  readonly progressEveryS: number;
  newSnapshotPending: boolean;
  snapshotRows = 0;
  streamsOpened = 0;

  /** A run of `config` with `parts`; nothing connects before {@linkcode run}. */
  constructor(readonly config: CaptureConfig, options: CaptureRunOptions, parts: CaptureParts) {
    ({ logger: this.logger, stats: this.stats, signal: this.signal } = options);
    ({ database: this.database, kafka: this.kafka } = parts);
    this.progressEveryS = options.progressEveryS ?? 5;
    this.newSnapshotPending = config.newSnapshot;
    this.encoder = new DebeziumEncoder({
      prefix: config.topicPrefix,
      database: new URL(config.databaseUrl).pathname.slice(1) || "postgres",
      version: `${VERSION}-cdc-pipeline`,
      schemas: config.schemas,
      values: valueOptions(config),
      tombstonesOnDelete: config.tombstonesOnDelete,
      skippedOperations: config.skippedOperations,
      shape: config,
    });
    // The publisher is the acknowledged position's one writer; the run reads it through the publisher.
    const acknowledged = (lsn: Lsn) => (this.stats.setAcknowledgedLsn(lsn), this.snapshots.acknowledgedTo(lsn));
    this.publisher = new AckingPublisher(new AcknowledgedPosition(0n, acknowledged), {
      send: (messages) => this.kafka.send(messages, this.sendsShutdown.signal),
      maxBytes: (topic) => this.kafka.maxBytes(topic),
      maxRecords: config.batchSize,
      lanes: config.inFlight,
      maxUnacknowledgedBytes: config.inFlightBytes,
      onAcknowledged: (records, changes) => countAcknowledged(this.stats, records, changes),
    });
    this.snapshots = new IncrementalSnapshots({
      tables: config.tables,
      signalTable: config.signalTable ?? null,
      chunkSize: config.snapshotChunkSize,
      database: this.database.chunks(),
      encoder: this.encoder,
      publisher: this.publisher,
      logger: this.logger,
      progress: this.stats.snapshots,
      fail: (error) => this.follower.fail(error),
    });
    this.follower = new StreamFollower({
      config,
      snapshots: this.snapshots,
      statusEveryS: options.statusEveryS ?? 10,
      logger: this.logger,
      catalog: this.database,
      encoder: this.encoder,
      publisher: this.publisher,
      signal: this.signal,
    });
  }

  /** Runs until a stop or a failure that waiting will not fix; returns the summary. */
  async run(): Promise<CaptureSummary> {
    let sendsDeadline: ReturnType<typeof setTimeout> | undefined;
    const onStop = () => (sendsDeadline = setTimeout(() => this.sendsShutdown.abort(), 30_000));
    this.signal.addEventListener("abort", onStop, { once: true });
    const progressTimer = setInterval(() => this.progress().catch(() => {}), this.progressEveryS * 1000);
    try {
      await this.waitingFor("PostgreSQL", () => this.database.prepare(), isCaptureOutage);
      const topics = this.config.tables.map((t) => ({ topic: this.encoder.topic(t), ...t }));
      await this.waitingFor("Kafka", () => this.kafka.connect(topics), (e) => classify(e) === "outage");
      await this.waitingFor("PostgreSQL (replication)", () => this.replicate(), isCaptureOutage, true);
    } catch (error) {
      // A stop during a wait for Kafka or PostgreSQL ends the wait: what is not acknowledged comes again.
      if (!(this.signal.aborted && error instanceof RetryError)) throw error;
      this.logger.warn("stopped while waiting: changes after the last acknowledgement come again at the next start", {
        error: describeError(error),
      });
    } finally {
      this.signal.removeEventListener("abort", onStop);
      clearInterval(progressTimer);
      clearTimeout(sendsDeadline);
      await this.progress().catch(() => {});
      await this.kafka.disconnect();
      await this.database.end();
    }
    return summarize(this.stats, {
      elapsedS: (performance.now() - this.started) / 1000,
      snapshotRows: this.snapshotRows,
      reconnects: Math.max(0, this.streamsOpened - 1),
      acknowledgedLsn: this.publisher.acknowledgedLsn,
    });
  }

  /** Runs `fn`, waiting out the failures `isOutage` accepts until it succeeds or a stop ends the wait. */
  async waitingFor(
    what: string,
    fn: () => Promise<void>,
    isOutage: (error: unknown) => boolean,
    streaming = false,
  ): Promise<void> {
    await waitOut(fn, {
      what,
      policy: OUTAGE,
      isRetriable: isOutage,
      signal: this.signal,
      onWait: (error, attempt, delayMs) => {
        if (streaming) {
          // What was received but not handed to Kafka comes again from the acknowledged position.
          this.publisher.discard();
          this.stats.markDown("database");
        }
        this.logger.warn(`waiting for ${what}, retrying in ${delayMs} ms`, {
          attempt,
          error: describeError(error),
          acknowledgedLsn: formatLsn(this.publisher.acknowledgedLsn),
        });
      },
    });
  }

  /** One replication connection: a snapshot when the slot is new, then the stream until a stop. */
  async replicate(): Promise<void> {
    const { config, database } = this;
    const session = database.replication();
    try {
      const start = await database.decideStart(this.newSnapshotPending);
      if (start.start === "snapshot") {
        if (start.dropped) {
          this.logger.warn(`dropped slot ${config.slot} to start over`, { newSnapshot: this.newSnapshotPending });
        }
        if (!await this.snapshot(session)) return;
      }
      // Everything before the slot's confirmed position is in Kafka already.
      this.publisher.confirmableAt(await database.confirmedLsn());
      await session.start(config.slot, config.publication, this.publisher.acknowledgedLsn);
      this.stats.markUp("database");
      this.streamsOpened++;
      this.stats.setRetainedWal(await database.retainedWal());
      this.logger.info(`streaming from slot ${config.slot}`, {
        from: formatLsn(this.publisher.acknowledgedLsn),
        tables: config.tables.map(qualified).join(","),
        retainedWalBytes: this.stats.retainedWalBytes,
      });
      await this.snapshots.during(() => this.follower.follow(session));
      await this.publisher.flush();
      // A signal streamed just before the stop is kept before the slot is confirmed past it.
      await this.snapshots.keepAcknowledged().catch((error) =>
        this.logger.warn("could not keep the incremental snapshot's queue; the next start streams its signal again", {
          error: describeError(error),
        })
      );
      session.sendStatus(this.snapshots.confirmable(this.publisher.acknowledgedLsn));
    } catch (error) {
      // PostgreSQL refuses an invalidated slot with 55000 (object_not_in_prerequisite_state), in words that name
      // neither the changes lost nor the way out; the slot's state says both.
      if ((error as { code?: unknown } | null)?.code === "55000") await database.checkSlot();
      throw error;
    } finally {
      await session.end();
    }
  }

  /** Creates the slot and publishes its snapshot; false when a stop cut it short. */
  async snapshot(session: ReplicationConnection): Promise<boolean> {
    const { config, logger } = this;
    const { consistentPoint, snapshotName } = await session.createSlot(config.slot, { failover: config.slotFailover });
    logger.info(`created slot ${config.slot}: reading the first snapshot`, {
      consistentPoint: formatLsn(consistentPoint),
      failover: config.slotFailover,
      tables: config.tables.map(qualified).join(","),
    });
    // The exported snapshot lives until the replication connection's next command, so it is read
    // in full, and its rows acknowledged by Kafka, before START_REPLICATION.
    const { rows, complete } = await this.database.readSnapshot({
      snapshotName,
      consistentPoint,
      encoder: this.encoder,
      publisher: this.publisher,
      signal: this.signal,
      progress: this.stats.snapshots,
    });
    this.snapshotRows += rows;
    if (!complete) {
      logger.warn(`stopped during the first snapshot after ${rows} rows: the next start resumes after its checkpoint`);
      return false;
    }
    await this.database.recordSnapshotDone(consistentPoint);
    this.newSnapshotPending = false;
    // The snapshot's rows lie before its consistent point, and Kafka acknowledged them all (readSnapshot flushed).
    this.publisher.confirmableAt(consistentPoint);
    logger.info(`first snapshot published: ${rows} rows`);
    return true;
  }

  /** The progress line, the slot's retained WAL and, while streaming, the publication check. */
  async progress(): Promise<void> {
    const { stats } = this;
    stats.setRetainedWal(await this.database.retainedWal().catch(() => stats.retainedWalBytes));
    const total = Object.values(stats.captured).reduce((a, b) => a + b, 0);
    this.logger.info(`captured ${total} changes`, {
      changesPerS: Math.round(total / ((performance.now() - this.started) / 1000)),
      acknowledgedLsn: formatLsn(this.publisher.acknowledgedLsn),
      retainedWalBytes: stats.retainedWalBytes,
    });
    for (const f of stats.snapshots.figures().filter((f) => !f.done)) {
      this.logger.info(`snapshot of ${f.table}: ${f.rows} of about ${f.estimate} rows`, {
        rowsPerS: Math.round(f.rowsPerS),
        etaS: f.etaS,
      });
    }
    if (stats.isUp("database") && !this.signal.aborted) {
      await this.follower.checkPublication().catch((error) =>
        error instanceof CaptureError && this.follower.fail(error)
      );
    }
  }
}

/** Adds an acknowledged send's records and changes to the counters. */
/** Debezium's value options from the settings that carry them over. */
export function valueOptions(config: CaptureConfig): ValueOptions {
  return {
    decimal: config.decimalHandlingMode,
    time: config.timePrecisionMode,
    binary: config.binaryHandlingMode,
    hstore: config.hstoreHandlingMode,
    interval: config.intervalHandlingMode,
    moneyFractionDigits: config.moneyFractionDigits,
    includeUnknown: config.includeUnknownDatatypes,
  };
}

function countAcknowledged(stats: CaptureStats, records: { topic: string }[], changes: Map<string, number>): void {
  for (const [key, n] of changes) stats.countCaptured(key, n);
  for (const r of records) stats.countPublished(r.topic, 1);
}

/** The summary printed at exit. */
function summarize(
  stats: CaptureStats,
  run: { elapsedS: number; snapshotRows: number; reconnects: number; acknowledgedLsn: Lsn },
): CaptureSummary {
  const total = Object.values(stats.captured).reduce((a, b) => a + b, 0);
  return {
    captured: { ...stats.captured },
    total,
    snapshotRows: run.snapshotRows,
    acknowledgedLsn: formatLsn(run.acknowledgedLsn),
    retainedWalBytes: stats.retainedWalBytes,
    reconnects: run.reconnects,
    elapsedS: Math.round(run.elapsedS * 1000) / 1000,
    changesPerS: Math.round(total / Math.max(run.elapsedS, 1e-6)),
  };
}
