/**
 * The consume command's run: wiring and the monitor loop (progress, lag, idle, health). What
 * happens to a partition batch, and the delivery semantics, are decided in
 * lib/partition_batch.ts: exactly-once effects in PostgreSQL, each batch applied in one
 * transaction with its partition's stored offset. Kafka's committed offsets follow once a second,
 * for lag tools only; on assignment each partition starts from the offset stored in PostgreSQL.
 * @module
 */
import type { Admin, Consumer, Kafka, Producer } from "kafkajs";
import type { ConsumeConfig } from "./config.ts";
import { dlqTopic } from "./dead_letter.ts";
import { createTopic, partitionPositions } from "./kafka_admin.ts";
import { createPublisher } from "./publisher.ts";
import type { Logger } from "./log.ts";
import { OrderWaits } from "./order_wait.ts";
import { AppliedPositions, PartitionBatches } from "./partition_batch.ts";
import { type ConsumeObserver, type ConsumeStats, newConsumeStats } from "./stats.ts";
import { classify, describeError, isKafkaJSError, TopicRecreatedError } from "./errors.ts";
import { OUTAGE, sleep, waitOut, type WaitOutOptions } from "./retry.ts";
import { ensureSchema, readStoredOffsets, resetForRebuild, type Sql, storedOffsetsWithin } from "./sink.ts";
import { parsePartitionKey, type PartitionKey, partitionKey } from "./partition_key.ts";

/** Options of {@linkcode runConsumer}. */
export interface ConsumerRunOptions {
  /** Kafka client. */
  kafka: Kafka;
  /** PostgreSQL pool. */
  sql: Sql;
  /** Where progress and warnings go. */
  logger: Logger;
  /** Counters to fill. @default fresh counters */
  stats?: ConsumeStats;
  /** Told of each committed batch (the metrics' histograms). */
  observer?: ConsumeObserver;
  /** Aborted when a stop is requested (SIGINT/SIGTERM): the batch in hand finishes, then the run ends. */
  signal: AbortSignal;
  /** Seconds between progress lines. @default 5 */
  progressEveryS?: number;
  /** Awaited before each batch transaction; tests hold a batch with it across a rebalance. */
  beforeApply?: (topic: string, partition: number) => Promise<void>;
}

/**
 * Settings of the consumer's database sessions that bound how long a member that stops answering
 * (SIGSTOP, a VM pause, a GC stall) can hold its partitions' rows. The group gives its partitions
 * to another member after the session timeout; by then PostgreSQL has ended its open transaction
 * (idle_in_transaction_session_timeout, the same length), releasing its row locks in cdc_offsets,
 * users and orders. A lock wait (the new owner's claim on cdc_offsets above all) gives up after a
 * third of it (lock_timeout), so the waiting member heartbeats and retries instead of being
 * evicted itself. The new owner applies within the session timeout, the rebalance, and one
 * retry's backoff. When the frozen member resumes, its transaction is gone: its retry heartbeats
 * first, learns of the rebalance and gives the batch up, or its claim finds the offset moved
 * (fenced); either way it re-reads the stored offsets and goes on.
 */
export function consumerSessionParameters(config: Pick<ConsumeConfig, "sessionTimeoutS">): Record<string, string> {
  const ms = config.sessionTimeoutS * 1000;
  return {
    idle_in_transaction_session_timeout: String(ms),
    lock_timeout: String(Math.max(1_000, Math.floor(ms / 3))),
  };
}

/** Why the run ended. */
export type StopReason = "signal" | "idle";

/**
 * Consumes both topics in one group until a stop is requested or, with `idleTimeoutS`, until
 * the topics are drained and idle; returns why it stopped. Throws, after closing every client,
 * on what is neither an outage nor a bad record: a refused login, a dropped table, a DLQ write
 * Kafka refuses, an error kafkajs will not retry.
 */
export async function runConsumer(config: ConsumeConfig, options: ConsumerRunOptions): Promise<StopReason> {
  return await new ConsumerRun(config, options).run();
}

/** The state of one consume run, shared by its start, its batches and its monitor loop. */
class ConsumerRun {
  readonly stats: ConsumeStats;
  readonly topics: string[];
  readonly admin: Admin;
  readonly publisher: Producer;
  readonly positions: AppliedPositions;
  readonly orderWaits: OrderWaits;
  consumer?: Consumer;
  /** Aborted when the run stops: a signal, the idle timeout, or a fatal error. Every wait ends on it. */
  readonly shutdown = new AbortController();
  fatal?: { error: unknown };
  stopReason: StopReason = "signal";
  lastActivity = Date.now();

  constructor(readonly config: ConsumeConfig, readonly options: ConsumerRunOptions) {
    this.stats = options.stats ?? newConsumeStats();
    this.topics = [config.usersTopic, config.ordersTopic];
    this.admin = options.kafka.admin();
    this.publisher = createPublisher(options.kafka);
    this.positions = new AppliedPositions(options.sql);
    this.orderWaits = new OrderWaits({
      waitS: config.orderWaitS,
      usersLogEnds: async () =>
        new Map((await this.admin.fetchTopicOffsets(config.usersTopic)).map((e) => [e.partition, BigInt(e.high)])),
      usersApplied: async () => {
        const stored = await readStoredOffsets(options.sql, [config.usersTopic]);
        return new Map([...stored].map(([key, next]) => [parsePartitionKey(key).partition, next]));
      },
    });
    if (options.signal.aborted) this.shutdown.abort();
    else options.signal.addEventListener("abort", () => this.shutdown.abort(), { once: true });
  }

  get stopping(): boolean {
    return this.shutdown.signal.aborted;
  }

  async run(): Promise<StopReason> {
    const { logger } = this.options;
    const started = Date.now();
    try {
      await this.start();
      await this.monitor();
    } catch (error) {
      // A stop requested while waiting for a dependency at start-up is a clean stop, not a failure.
      if (!this.stopping || this.fatal) throw error;
      logger.info("stopped before the consumer started");
    } finally {
      this.shutdown.abort();
      await this.consumer?.disconnect().catch((e) =>
        logger.warn("consumer disconnect failed", { error: describeError(e) })
      );
      await this.publisher.disconnect().catch(() => {});
      await this.admin.disconnect().catch(() => {});
      logger.info("consumer stopped", { runS: Math.round((Date.now() - started) / 1000) });
    }
    if (this.fatal) throw this.fatal.error;
    return this.stopReason;
  }

  /** Ends the run with `error`: neither an outage nor a bad record, so waiting would never end. */
  fail(error: unknown): void {
    this.fatal ??= { error };
    this.shutdown.abort();
  }

  /** Waits out an outage at start-up (forever, with backoff), giving up only on a stop or a fatal error. */
  waitingFor(what: string): WaitOutOptions {
    return {
      what,
      policy: OUTAGE,
      isRetriable: (error) => classify(error) === "outage",
      signal: this.shutdown.signal,
      onWait: (error, attempt, delayMs) => {
        this.stats.retries++;
        this.options.logger.warn(`waiting for ${what}`, { attempt, retryInMs: delayMs, error: describeError(error) });
      },
    };
  }

  /** Schema, topics, the DLQ producer, an optional rebuild, then the consumer group. */
  async start(): Promise<void> {
    const { config, options: { sql, logger } } = this;
    await waitOut(() =>
      ensureSchema(sql, {
        signal: this.shutdown.signal,
        onRetry: (error, attempt, retryInMs) => {
          this.stats.retries++;
          logger.warn("schema step met a deadlock or serialization failure; retrying", {
            attempt,
            retryInMs,
            error: describeError(error),
          });
        },
      }), this.waitingFor("PostgreSQL"));
    this.stats.health.set("database", true);
    await waitOut(async () => {
      await this.admin.connect();
      await createTopic(this.admin, config.usersTopic, config.usersPartitions, config.replicationFactor, logger);
      await createTopic(this.admin, config.ordersTopic, config.ordersPartitions, config.replicationFactor, logger);
      for (const topic of this.topics) {
        await createTopic(this.admin, dlqTopic(topic), 1, config.replicationFactor, logger);
      }
    }, this.waitingFor("Kafka"));
    await waitOut(() => this.publisher.connect(), this.waitingFor("Kafka (DLQ producer)"));
    if (config.rebuild) await this.rebuild();
    this.consumer = this.createConsumer();
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: this.topics, fromBeginning: true });
    const batches = new PartitionBatches({
      config,
      sql,
      publisher: this.publisher,
      positions: this.positions,
      orderWaits: this.orderWaits,
      stats: this.stats,
      observer: this.options.observer,
      logger,
      signal: this.shutdown.signal,
      seek: (topic, partition, offset) => this.consumer!.seek({ topic, partition, offset: offset.toString() }),
      beforeApply: this.options.beforeApply,
    });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: config.concurrency,
      eachBatch: async (payload) => {
        this.lastActivity = Date.now();
        await batches.handle(payload).catch((error) => {
          if (isKafkaJSError(error)) throw error; // a rebalance: kafkajs rejoins
          this.fail(error);
        });
      },
    });
  }

  /** Empties the tables and stores every partition's first offset, so the tables are rebuilt from the log. */
  async rebuild(): Promise<void> {
    const starts = [];
    for (const topic of this.topics) {
      for (const { partition, low } of await this.admin.fetchTopicOffsets(topic)) {
        starts.push({ topic, partition, nextOffset: BigInt(low) });
      }
    }
    await resetForRebuild(this.options.sql, this.config.consumerGroup, starts);
    this.options.logger.info(
      "rebuild: emptied users, orders and the stored offsets; applying the topics from the start",
      {
        partitions: starts.length,
      },
    );
  }

  createConsumer(): Consumer {
    const { config, stats, options: { kafka, logger } } = this;
    const consumer = kafka.consumer({
      groupId: config.consumerGroup,
      maxBytesPerPartition: config.maxBatchBytes,
      maxBytes: config.maxBatchBytes * 8,
      sessionTimeout: config.sessionTimeoutS * 1000,
      heartbeatInterval: Math.min(3_000, config.sessionTimeoutS * 100),
      maxWaitTimeInMs: 2_000,
      allowAutoTopicCreation: false,
      retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
    });
    // Health reads these flags: up on every sign of a working broker, down on every sign of none.
    consumer.on(consumer.events.CONNECT, () => stats.health.set("kafka", true));
    consumer.on(consumer.events.FETCH, () => stats.health.set("kafka", true));
    consumer.on(consumer.events.DISCONNECT, () => stats.health.set("kafka", false));
    consumer.on(consumer.events.STOP, () => stats.health.set("kafka", false));
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      stats.health.set("kafka", true);
      const assigned = Object.entries(event.payload.memberAssignment);
      logger.info("joined group", {
        group: config.consumerGroup,
        assigned: assigned.map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ") || "nothing",
      });
      this.startFromStoredOffsets(assigned).catch((error) => this.fail(error));
    });
    consumer.on(consumer.events.CRASH, (event) => {
      stats.health.set("kafka", false);
      if (event.payload.restart) {
        logger.warn("Kafka consumer crashed; it restarts by itself", { error: describeError(event.payload.error) });
      } else this.fail(event.payload.error); // kafkajs gave up: fetching has stopped, so the run must end
    });
    return consumer;
  }

  /**
   * On assignment: each partition starts from the offset stored in PostgreSQL (a seek), or, when
   * none is stored, from the group's committed offset, else the earliest. A stored offset past the
   * log's end means the topic was recreated: applying would skip the new records, so the run stops.
   */
  async startFromStoredOffsets(assigned: [string, number[]][]): Promise<void> {
    const mine = new Set(assigned.flatMap(([t, ps]) => ps.map((p) => partitionKey(t, p))));
    this.orderWaits.keepOnly(mine);
    this.positions.reassigned(mine);
    const stored = await readStoredOffsets(this.options.sql, this.topics);
    for (const [topic, partitions] of assigned) {
      const ends = new Map((await this.admin.fetchTopicOffsets(topic)).map((e) => [e.partition, BigInt(e.high)]));
      for (const partition of partitions) {
        const next = stored.get(partitionKey(topic, partition));
        if (next === undefined) continue;
        const end = ends.get(partition) ?? 0n;
        if (next > end) {
          throw new TopicRecreatedError(topic, partition, next, end);
        }
        this.consumer!.seek({ topic, partition, offset: next.toString() });
        // The group's committed offset follows, for lag tools, even when nothing is left to apply.
        this.positions.advanced(topic, partition, next);
      }
    }
  }

  /** Until stopped: progress lines, lag, health, Kafka's advisory commits, and the idle stop. */
  async monitor(): Promise<void> {
    const { config, stats, options: { sql, logger, progressEveryS = 5 } } = this;
    let lastProgress = Date.now();
    let lastApplied = 0;
    const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
    while (!this.stopping) {
      // Once a second while batches come; every 5 s after 10 s without one, so an idle consumer
      // costs well under 1% of a core. A new batch is taken at once either way (kafkajs fetches).
      const settled = Date.now() - this.lastActivity >= 10_000;
      await sleep(settled ? 5_000 : 1_000, this.shutdown.signal);
      if (this.stopping) break;
      const stored = await storedOffsetsWithin(sql, this.topics);
      // Batches report the database's state as they apply; between them, this read does.
      if (Date.now() - this.lastActivity >= 2_000) stats.health.set("database", stored !== undefined);
      await this.commitToKafka();
      const lag = stored && await this.measureLag(stored);
      if (lag) stats.lag = lag;
      const totalLag = lag ? total(lag) : -1;
      if (Date.now() - lastProgress >= progressEveryS * 1000) {
        const applied = total(stats.applied);
        logger.info("progress", {
          applied,
          deadLettered: total(stats.deadLettered),
          eventsPerS: Math.round((applied - lastApplied) / ((Date.now() - lastProgress) / 1000)),
          lag: totalLag,
        });
        lastApplied = applied;
        lastProgress = Date.now();
      }
      if (
        config.idleTimeoutS !== undefined && totalLag === 0 && this.orderWaits.size === 0 &&
        Date.now() - this.lastActivity >= config.idleTimeoutS * 1000
      ) {
        logger.info(`drained and idle for ${config.idleTimeoutS}s; stopping`);
        this.stopReason = "idle";
        this.shutdown.abort();
      }
    }
    await this.commitToKafka();
  }

  /** Commits the positions applied since the last call to Kafka: advisory, for lag tools; a failure is retried next time. */
  async commitToKafka(): Promise<void> {
    const positions = this.positions.takeUncommitted();
    if (positions.size === 0 || !this.consumer) return;
    const offsets = [...positions].map(([key, next]) => ({ ...parsePartitionKey(key), offset: next.toString() }));
    await this.consumer.commitOffsets(offsets).catch((error) => {
      this.positions.restoreUncommitted(positions);
      this.options.logger.debug("advisory offset commit to Kafka failed; retried in a second", {
        error: describeError(error),
      });
    });
  }

  /** Log end minus the offset stored in PostgreSQL, per `topic:partition`; undefined when Kafka is away. */
  async measureLag(stored: Map<PartitionKey, bigint>): Promise<Record<string, number> | undefined> {
    try {
      const positions = await partitionPositions(this.admin, this.topics, (key) => {
        const next = stored.get(key);
        return next === undefined ? undefined : Number(next);
      });
      return Object.fromEntries(positions.map((p) => [partitionKey(p.topic, p.partition), p.lag]));
    } catch (error) {
      if (classify(error) === "outage") this.stats.health.set("kafka", false);
      return undefined;
    }
  }
}
