/**
 * The capture command's run (CONTRACT.md section 7): PostgreSQL logical replication of the
 * configured tables through a durable `pgoutput` slot, published to Kafka as Debezium records.
 * This file wires the rooms together and owns the run's lifecycle; each room is its own module:
 * the slot and publication (capture_slot.ts), the snapshot (capture_snapshot.ts), the replication
 * connection (replication_session.ts), the pure reading of its frames (change_reader.ts) and the
 * publisher that owns the acknowledged position (acking_publisher.ts).
 *
 * Delivery: at-least-once, no gap. The slot's confirmed position is only ever a position before
 * which Kafka acknowledged every change from all in-sync replicas (`acks: -1`); a restart resumes
 * from the slot, so PostgreSQL re-sends every commit after it: duplicates, no gaps. What would
 * leave a gap (a lost slot, a table out of the publication) or never pass (a record over the
 * topic's limit, a value that cannot be encoded, a deleted topic, a refused login) stops the run
 * with one line.
 * @module
 */
import type { Admin, Producer } from "kafkajs";
import { AckingPublisher, AcknowledgedPosition } from "./acking_publisher.ts";
import { DebeziumEncoder, readTableSpec, type TableSpec } from "./capture_adapter.ts";
import {
  CaptureError,
  encodeOrStop,
  isCaptureOutage,
  PublicationGapError,
  SlotLostError,
  StreamEndedError,
  TopicMissingError,
} from "./capture_errors.ts";
import {
  decideStart,
  ensurePublication,
  ensureStateTable,
  missingFromPublication,
  prepareTables,
  qualified,
  recordSnapshotDone,
  retainedWal,
  slotState,
  type TableName,
} from "./capture_slot.ts";
import { readSnapshot } from "./capture_snapshot.ts";
import { ChangeReader, type StreamEvent } from "./change_reader.ts";
import type { CaptureConfig } from "./config.ts";
import { describeError, isKafkaOutage } from "./errors.ts";
import { createKafka, createTopic } from "./kafka_admin.ts";
import type { Logger } from "./log.ts";
import { formatLsn, type Lsn, parseLsn, type Relation } from "./pgoutput.ts";
import type { ProduceStats } from "./producer.ts";
import { createPublisher, type TopicMessages, writeWithRetry } from "./publisher.ts";
import { retry, RetryError, type RetryOptions, sleep } from "./retry.ts";
import { ReplicationSession } from "./replication_session.ts";
import { connectDatabase, ensureSchema, type Sql } from "./sink.ts";
import { VERSION } from "./version.ts";

export { CaptureError } from "./capture_errors.ts";
export { dropCapture } from "./capture_slot.ts";
export { snapshotMarker } from "./capture_snapshot.ts";

/** Counters of a capture run, for metrics, health and the summary. */
export interface CaptureStats extends ProduceStats {
  /** Changes acknowledged by Kafka, per `table.op`. */
  captured: Record<string, number>;
  /** Whether the capture is connected to Kafka and streaming from PostgreSQL. */
  connected: { kafka: boolean; database: boolean };
  /** The acknowledged slot position, as the publisher's AcknowledgedPosition last reported it. */
  acknowledgedLsn: Lsn;
  /** WAL the slot retains on the server, in bytes; null until measured. */
  retainedWalBytes: number | null;
}

/** Fresh counters for a capture run. */
export function newCaptureStats(): CaptureStats {
  return {
    published: {},
    sendRetries: 0,
    captured: {},
    connected: { kafka: false, database: false },
    acknowledgedLsn: 0n,
    retainedWalBytes: null,
  };
}

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
  /** Aborted once a stop was requested (SIGINT/SIGTERM): what is in hand is published and acknowledged. */
  signal: AbortSignal;
  /** Seconds between progress lines, slot measurements and publication checks. @default 5 */
  progressEveryS?: number;
  /** Seconds between status updates to PostgreSQL. @default 10 */
  statusEveryS?: number;
}

/** The whole capture: prepare, snapshot once, then stream until stopped, riding out outages. */
export async function runCapture(config: CaptureConfig, options: CaptureRunOptions): Promise<CaptureSummary> {
  return await new CaptureRun(config, options).run();
}

/** Whether a Kafka failure says the topic (or partition) is unknown to the broker. */
function isUnknownTopic(error: unknown): boolean {
  const e = error as { type?: string; cause?: unknown } | null;
  return !!e && (e.type === "UNKNOWN_TOPIC_OR_PARTITION" || isUnknownTopic(e.cause));
}

/** The state of one capture run, shared by its start, its sessions and its timers. */
class CaptureRun {
  readonly started = performance.now();
  readonly logger: Logger;
  readonly stats: CaptureStats;
  readonly signal: AbortSignal;
  readonly sql: Sql;
  readonly admin: Admin;
  readonly producer: Producer;
  readonly encoder: DebeziumEncoder;
  readonly position: AcknowledgedPosition;
  readonly publisher: AckingPublisher;
  /** Aborted 30 s after a stop: sends of what is in hand get that long to be acknowledged. */
  readonly sendsShutdown = new AbortController();
  /** Each topic's `max.message.bytes`. */
  readonly maxBytes = new Map<string, number>();
  /** The spec of each relation the stream described; null for a table the capture does not capture. */
  readonly specs = new Map<number, TableSpec | null>();
  readonly progressEveryS: number;
  readonly statusEveryS: number;
  session: ReplicationSession | undefined;
  newSnapshotPending: boolean;
  snapshotRows = 0;
  streamsOpened = 0;

  constructor(readonly config: CaptureConfig, options: CaptureRunOptions) {
    ({ logger: this.logger, stats: this.stats, signal: this.signal } = options);
    this.progressEveryS = options.progressEveryS ?? 5;
    this.statusEveryS = options.statusEveryS ?? 10;
    this.newSnapshotPending = config.newSnapshot;
    const database = new URL(config.databaseUrl).pathname.slice(1) || "postgres";
    this.encoder = new DebeziumEncoder({ prefix: config.topicPrefix, database, version: `${VERSION}-cdc-pipeline` });
    this.sql = connectDatabase(config.databaseUrl, 2);
    const kafka = createKafka(config, "cdc-capture", this.logger);
    this.admin = kafka.admin();
    this.producer = createPublisher(kafka);
    this.producer.on(this.producer.events.CONNECT, () => (this.stats.connected.kafka = true));
    this.producer.on(this.producer.events.DISCONNECT, () => (this.stats.connected.kafka = false));
    this.position = new AcknowledgedPosition(0n, (lsn) => (this.stats.acknowledgedLsn = lsn));
    this.publisher = new AckingPublisher(this.position, {
      send: (messages) => this.send(messages),
      maxBytes: (topic) => this.maxBytes.get(topic) ?? 1_048_588,
      maxRecords: config.batchSize,
      onAcknowledged: (records, changes) => this.count(records, changes),
    });
  }

  /** Runs until a stop or a failure that waiting will not fix; returns the summary. */
  async run(): Promise<CaptureSummary> {
    let sendsDeadline: ReturnType<typeof setTimeout> | undefined;
    const onStop = () => (sendsDeadline = setTimeout(() => this.sendsShutdown.abort(), 30_000));
    this.signal.addEventListener("abort", onStop, { once: true });
    const progressTimer = setInterval(() => this.progress().catch(() => {}), this.progressEveryS * 1000);
    try {
      await retry(() => this.prepareDatabase(), this.waitingFor("PostgreSQL", isCaptureOutage));
      await retry(() => this.prepareKafka(), this.waitingFor("Kafka", isKafkaOutage));
      await retry(() => this.replicate(), this.waitingFor("PostgreSQL (replication)", isCaptureOutage, true));
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
      await this.producer.disconnect().catch(() => {});
      await this.admin.disconnect().catch(() => {});
      await this.sql.end({ timeout: 5 }).catch(() => {});
    }
    return this.summary();
  }

  /** Retry options that wait out an outage forever, giving up only on a stop or another failure. */
  waitingFor(what: string, isOutage: (error: unknown) => boolean, streaming = false): RetryOptions {
    return {
      what,
      maxAttempts: Infinity,
      baseMs: 500,
      capMs: 10_000,
      isRetriable: isOutage,
      signal: this.signal,
      onRetry: (error, attempt, delayMs) => {
        if (streaming) {
          // What was received but not handed to Kafka comes again from the acknowledged position.
          this.publisher.discard();
          this.stats.connected.database = false;
        }
        this.logger.warn(`waiting for ${what}, retrying in ${delayMs} ms`, {
          attempt,
          error: describeError(error),
          acknowledgedLsn: formatLsn(this.position.lsn),
        });
      },
    };
  }

  /** The tables and their identity, the capture's state table, a lost slot, and the publication. */
  async prepareDatabase(): Promise<void> {
    const { sql, config } = this;
    await ensureSchema(sql);
    await ensureStateTable(sql);
    await prepareTables(sql, config.tables);
    const state = await slotState(sql, config.slot);
    if (!state.exists && state.snapshotDone && !config.newSnapshot) throw new SlotLostError(config.slot);
    await ensurePublication(sql, config.publication, config.tables, config.newSnapshot || !state.snapshotDone);
  }

  /** The topics (created when missing), their size limits, and the producer. */
  async prepareKafka(): Promise<void> {
    const { admin, config, logger } = this;
    await admin.connect();
    for (const table of config.tables) {
      const partitions = table.table === "orders" ? config.ordersPartitions : config.usersPartitions;
      await createTopic(admin, this.topicOf(table), partitions, config.replicationFactor, logger);
    }
    await this.readMaxBytes(config.tables.map((t) => this.topicOf(t)));
    await this.producer.connect();
  }

  topicOf(table: TableName): string {
    return this.encoder.topic({ ...table, columns: [] });
  }

  /** Reads each topic's `max.message.bytes`, falling back to the broker's `message.max.bytes`. */
  async readMaxBytes(topics: string[]): Promise<void> {
    const described = await this.admin.describeConfigs({
      resources: topics.map((name) => ({ type: 2, name, configNames: ["max.message.bytes"] })),
      includeSynonyms: false,
    }).catch(() => undefined);
    for (const resource of described?.resources ?? []) {
      const value = Number(resource.configEntries.find((e) => e.configName === "max.message.bytes")?.configValue);
      if (value > 0) this.maxBytes.set(resource.resourceName, value);
    }
    const missing = topics.filter((t) => !this.maxBytes.has(t));
    if (!missing.length) return;
    const { brokers } = await this.admin.describeCluster();
    const broker = await this.admin.describeConfigs({
      resources: [{ type: 4, name: String(brokers[0].nodeId), configNames: ["message.max.bytes"] }],
      includeSynonyms: false,
    });
    const value = Number(broker.resources[0]?.configEntries[0]?.configValue);
    for (const topic of missing) this.maxBytes.set(topic, value > 0 ? value : 1_048_588);
  }

  /** One replication connection: a snapshot when the slot is new, then the stream until a stop. */
  async replicate(): Promise<void> {
    const { config, sql } = this;
    const session = this.session = new ReplicationSession(config.databaseUrl);
    try {
      if (await decideStart(sql, config.slot, this.newSnapshotPending) === "snapshot") {
        if (!await this.snapshot(session)) return;
      }
      const state = await slotState(sql, config.slot);
      this.position.advance(parseLsn(state.confirmed ?? "0/0"));
      await session.start(config.slot, config.publication, this.position.lsn);
      this.stats.connected.database = true;
      this.streamsOpened++;
      this.stats.retainedWalBytes = await retainedWal(sql, config.slot);
      this.logger.info(`streaming from slot ${config.slot}`, {
        from: formatLsn(this.position.lsn),
        tables: config.tables.map(qualified).join(","),
        retainedWalBytes: this.stats.retainedWalBytes,
      });
      await this.follow(session);
      await this.publisher.flush();
      session.sendStatus(this.position.lsn);
    } finally {
      this.session = undefined;
      await session.end();
    }
  }

  /** Creates the slot and publishes its snapshot; false when a stop cut it short. */
  async snapshot(session: ReplicationSession): Promise<boolean> {
    const { config, logger } = this;
    const { consistentPoint, snapshotName } = await session.createSlot(config.slot);
    logger.info(`created slot ${config.slot}: reading the first snapshot`, {
      consistentPoint: formatLsn(consistentPoint),
      tables: config.tables.map(qualified).join(","),
    });
    // The exported snapshot lives until the replication connection's next command, so it is read
    // in full, and its rows acknowledged by Kafka, before START_REPLICATION.
    const { rows, complete } = await readSnapshot(this.sql, {
      snapshotName,
      consistentPoint,
      tables: config.tables,
      encoder: this.encoder,
      publisher: this.publisher,
      batchSize: config.batchSize,
      signal: this.signal,
    });
    this.snapshotRows += rows;
    if (!complete) {
      logger.warn(`stopped during the first snapshot after ${rows} rows: the next start takes it again`);
      return false;
    }
    await recordSnapshotDone(this.sql, config.slot, formatLsn(consistentPoint));
    this.newSnapshotPending = false;
    this.position.advance(consistentPoint);
    logger.info(`first snapshot published: ${rows} rows`);
    return true;
  }

  /** Reads the stream until a stop; publishes changes and confirms what Kafka acknowledged. */
  async follow(session: ReplicationSession): Promise<void> {
    const reader = new ChangeReader();
    const sendStatus = () => session.sendStatus(this.position.lsn);
    const statusTimer = setInterval(sendStatus, this.statusEveryS * 1000);
    // A stop wakes a quiet stream by asking the server for a keepalive; racing every read against
    // the stop instead would keep every message alive in that promise's reactions.
    let wakeTimer: ReturnType<typeof setTimeout> | undefined;
    const onStop = () => {
      session.sendStatus(this.position.lsn, true);
      wakeTimer = setTimeout(() => session.destroy(new StreamEndedError()), 10_000);
    };
    this.signal.addEventListener("abort", onStop, { once: true });
    let idleFlush: ReturnType<typeof setTimeout> | undefined;
    const flushInBackground = () => this.publisher.flush().then(sendStatus, (error) => this.fail(error));
    try {
      while (!this.signal.aborted) {
        await this.apply(reader.read(await session.next()), sendStatus);
        // One batch is sent while the next is read; reading waits while two batches' worth is
        // unacknowledged, so memory stays bounded and PostgreSQL holds the rest (the walsender waits).
        if (this.publisher.pending >= this.config.batchSize) flushInBackground();
        if (this.publisher.unacknowledged >= 2 * this.config.batchSize) {
          await this.publisher.flush();
          sendStatus();
        } else if (this.publisher.pending > 0 && !idleFlush) {
          // A quiet stream still gets its changes out (and acknowledged) within 50 ms.
          idleFlush = setTimeout(() => {
            idleFlush = undefined;
            flushInBackground();
          }, 50);
        }
      }
    } finally {
      this.signal.removeEventListener("abort", onStop);
      clearInterval(statusTimer);
      clearTimeout(idleFlush);
      clearTimeout(wakeTimer);
    }
  }

  /** Acts on one event of the stream. */
  async apply(event: StreamEvent, sendStatus: () => void): Promise<void> {
    switch (event.type) {
      case "relation":
        return await this.describe(event.relation);
      case "change": {
        const spec = this.specs.get(event.relationId);
        if (spec === undefined) {
          throw new CaptureError(`a change refers to relation ${event.relationId}, which the stream never described`);
        }
        if (spec) this.publisher.add(encodeOrStop(this.encoder, spec, event.change), spec.table, event.change.op);
        return;
      }
      case "commit":
        return this.publisher.confirmableAt(event.endLsn);
      case "keepalive":
        if (event.confirmable !== null) this.publisher.confirmableAt(event.confirmable);
        if (event.replyRequested) sendStatus();
        return;
      case "truncate":
        // Debezium's default (skipped.operations=t) publishes no truncate events either.
        this.logger.warn("a TRUNCATE of a captured table was skipped, as Debezium does by default");
    }
  }

  /**
   * A Relation message: the table's schema is read again from the catalog, as Debezium does, so
   * ADD COLUMN, DROP COLUMN, a type change or DROP NOT NULL carry on with the new schema. A table
   * the capture was not asked for means the publication changed: it is checked.
   */
  async describe(relation: Relation): Promise<void> {
    const name = { schema: relation.schema, table: relation.table };
    const configured = this.config.tables.some((t) => qualified(t) === qualified(name));
    if (!configured) {
      if (!this.specs.has(relation.relationId)) {
        this.logger.warn(`publication ${this.config.publication} sends ${qualified(name)}, not in --tables: skipped`);
      }
      this.specs.set(relation.relationId, null);
    } else {
      this.specs.set(relation.relationId, await readTableSpec(this.sql, name.schema, name.table, relation));
    }
    await this.checkPublication();
  }

  /** Stops the run when a configured table left the publication (PublicationGapError). */
  async checkPublication(): Promise<void> {
    const [missing] = await missingFromPublication(this.sql, this.config.publication, this.config.tables);
    if (missing) throw new PublicationGapError(qualified(missing), this.config.publication);
  }

  /** Ends the run with `error` (a failed send in the background): the stream breaks off with it. */
  fail(error: unknown): void {
    this.session?.destroy(error instanceof Error ? error : new Error(String(error)));
  }

  /** Sends one batch, waiting out Kafka outages; a deleted topic or a refused login stops the run. */
  async send(messages: TopicMessages[]): Promise<void> {
    const started = performance.now();
    const options = {
      maxAttempts: Infinity,
      backoffMs: 500,
      logger: this.logger,
      signal: this.sendsShutdown.signal,
      onRetry: () => this.stats.sendRetries++,
      isRetriable: (error: unknown) => isKafkaOutage(error) && !isUnknownTopic(error),
    };
    for (let attempt = 1;; attempt++) {
      try {
        await writeWithRetry(this.producer, messages, options);
        break;
      } catch (error) {
        if (!isUnknownTopic(error) || this.sendsShutdown.signal.aborted) throw error;
        const topics = await this.admin.listTopics().catch(() => undefined);
        const gone = messages.find((m) => topics && !topics.includes(m.topic));
        if (gone) throw new TopicMissingError(gone.topic);
        this.stats.sendRetries++;
        this.logger.warn("send failed: the broker does not know the topic yet, retrying", { attempt });
        await sleep(500, this.sendsShutdown.signal);
      }
    }
    this.stats.onSend?.(performance.now() - started);
  }

  count(records: { topic: string }[], changes: Map<string, number>): void {
    for (const [key, n] of changes) this.stats.captured[key] = (this.stats.captured[key] ?? 0) + n;
    for (const r of records) this.stats.published[r.topic] = (this.stats.published[r.topic] ?? 0) + 1;
  }

  /** The progress line, the slot's retained WAL and, while streaming, the publication check. */
  async progress(): Promise<void> {
    const { stats } = this;
    stats.retainedWalBytes = await retainedWal(this.sql, this.config.slot).catch(() => stats.retainedWalBytes);
    const total = Object.values(stats.captured).reduce((a, b) => a + b, 0);
    this.logger.info(`captured ${total} changes`, {
      changesPerS: Math.round(total / ((performance.now() - this.started) / 1000)),
      acknowledgedLsn: formatLsn(this.position.lsn),
      retainedWalBytes: stats.retainedWalBytes,
    });
    if (this.session && stats.connected.database && !this.signal.aborted) {
      await this.checkPublication().catch((error) => error instanceof CaptureError && this.fail(error));
    }
  }

  summary(): CaptureSummary {
    const elapsedS = (performance.now() - this.started) / 1000;
    const total = Object.values(this.stats.captured).reduce((a, b) => a + b, 0);
    return {
      captured: this.stats.captured,
      total,
      snapshotRows: this.snapshotRows,
      acknowledgedLsn: formatLsn(this.position.lsn),
      retainedWalBytes: this.stats.retainedWalBytes,
      reconnects: Math.max(0, this.streamsOpened - 1),
      elapsedS: Math.round(elapsedS * 1000) / 1000,
      changesPerS: Math.round(total / Math.max(elapsedS, 1e-6)),
    };
  }
}
