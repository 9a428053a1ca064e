/**
 * The consume command's run: its lifecycle (start, monitor loop, stop) and its summary. The
 * group member and its handlers are lib/consumer_group.ts', the monitor's tick
 * lib/consumer_monitor.ts'. What happens to a partition batch, and the delivery semantics, are
 * decided in lib/consumer_batch.ts: exactly-once effects in PostgreSQL, each batch applied in one
 * transaction with its partition's stored offset. Kafka's committed offsets follow once a second,
 * for lag tools only; on assignment each partition starts from the offset stored in PostgreSQL.
 * @module
 */
import type { Admin, Kafka, Producer } from "kafkajs";
import type { ConsumeConfig } from "./config.ts";
import { dlqTopic } from "./consumer_dead_letter.ts";
import { createTopic } from "./kafka_admin.ts";
import { SilentCloses } from "./kafka_listener.ts";
import { ConsumerGroup } from "./consumer_group.ts";
import { ConsumeMonitor, total } from "./consumer_monitor.ts";
import { createPublisher } from "./kafka_producer.ts";
import type { Logger } from "./log.ts";
import { OrderWaits } from "./consumer_order_wait.ts";
import { AppliedPositions, PartitionBatches } from "./consumer_batch.ts";
import { type ConsumeObserver, type ConsumeStats, newConsumeStats } from "./stats.ts";
import { classify, describeError } from "./errors.ts";
import { OUTAGE, sleep, waitOut, type WaitOutOptions } from "./retry.ts";
import type { Sql } from "./database.ts";
import { ensureSchema, readStoredOffsets, resetForRebuild } from "./sink.ts";
import { parsePartitionKey } from "./partition_key.ts";

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

/** What a consume run did, printed at exit. */
export interface ConsumeSummary {
  /** Why the run ended. */
  stoppedBy: StopReason;
  /** Records applied to PostgreSQL, per topic. */
  applied: Record<string, number>;
  /** Records written to the DLQ, per source topic. */
  deadLettered: Record<string, number>;
  /** Batches committed. */
  batches: number;
  /** Waits for an outage or a missing user. */
  retries: number;
  /** Wall time of the run in seconds. */
  elapsedS: number;
  /** Records applied per second over the run. */
  eventsPerS: number;
}

/**
 * Consumes both topics in one group until a stop is requested or, with `idleTimeoutS`, until
 * the topics are drained and idle; returns its summary. Throws, after closing every client,
 * on what is neither an outage nor a bad record: a refused login, a dropped table, a DLQ write
 * Kafka refuses, an error kafkajs will not retry.
 */
export async function runConsumer(config: ConsumeConfig, options: ConsumerRunOptions): Promise<ConsumeSummary> {
  const started = performance.now();
  const run = new ConsumerRun(config, options);
  const stoppedBy = await run.run();
  const elapsedS = (performance.now() - started) / 1000;
  const { applied, deadLettered, batches, retries } = run.stats;
  return {
    stoppedBy,
    applied: { ...applied },
    deadLettered: { ...deadLettered },
    batches,
    retries,
    elapsedS: Math.round(elapsedS * 1000) / 1000,
    eventsPerS: Math.round(total(applied) / Math.max(elapsedS, 1e-6)),
  };
}

/** The lifecycle of one consume run: start, the monitor loop, and the stop that closes every client. */
class ConsumerRun {
  readonly stats: ConsumeStats;
  readonly topics: string[];
  readonly admin: Admin;
  readonly publisher: Producer;
  readonly positions: AppliedPositions;
  readonly orderWaits: OrderWaits;
  /** Judges the failures of the waits for Kafka: a listener that closes every connection unanswered stops them. */
  readonly silentCloses: SilentCloses;
  group?: ConsumerGroup;
  /** Aborted when the run stops: a signal, the idle timeout, or a fatal error. Every wait ends on it. */
  readonly shutdown = new AbortController();
  fatal?: { error: unknown };
  stopReason: StopReason = "signal";

  constructor(readonly config: ConsumeConfig, readonly options: ConsumerRunOptions) {
    this.stats = options.stats ?? newConsumeStats();
    this.topics = [config.usersTopic, config.ordersTopic];
    this.admin = options.kafka.admin();
    this.publisher = createPublisher(options.kafka);
    this.silentCloses = new SilentCloses(config.brokers);
    this.silentCloses.hear(this.admin);
    this.silentCloses.hear(this.publisher);
    this.positions = new AppliedPositions((topics) => readStoredOffsets(options.sql, topics));
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
      // The batches applied behind the fetch finish their transactions first: the batch in hand ends committed or not.
      await this.group?.batchesSettled();
      await this.group?.consumer.disconnect().catch((e) =>
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
        this.stats.countRetry();
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
          this.stats.countRetry();
          logger.warn("schema step met a deadlock or serialization failure; retrying", {
            attempt,
            retryInMs,
            error: describeError(error),
          });
        },
      }), this.waitingFor("PostgreSQL"));
    this.stats.markUp("database");
    await waitOut(
      this.silentCloses.judged(async () => {
        await this.admin.connect();
        for (const [topic, partitions] of topicsToCreate(config)) {
          await createTopic(this.admin, topic, partitions, config.replicationFactor, logger);
        }
      }),
      this.waitingFor("Kafka"),
    );
    await waitOut(this.silentCloses.judged(() => this.publisher.connect()), this.waitingFor("Kafka (DLQ producer)"));
    if (config.rebuild) await rebuildFromLogStart(this.admin, sql, config, logger);
    const group = this.group = new ConsumerGroup({
      ...this.#parts(),
      kafka: this.options.kafka,
      fail: (e) => this.fail(e),
      signal: this.shutdown.signal,
    });
    await group.start(
      new PartitionBatches({
        ...this.#parts(),
        publisher: this.publisher,
        observer: this.options.observer,
        signal: this.shutdown.signal,
        seek: (topic, partition, offset) => group.seek(topic, partition, offset),
        owns: (topic, partition) => group.owns(topic, partition),
        beforeApply: this.options.beforeApply,
        fail: (e) => this.fail(e),
      }),
    );
  }

  /** The parts of the run its group, batches and monitor share. */
  #parts() {
    const { config, stats, admin, positions, orderWaits, topics, options: { sql, logger } } = this;
    return { config, stats, admin, positions, orderWaits, topics, sql, logger };
  }

  /** Until stopped: a monitor tick once a second (every 5 s when idle); a last advisory commit at the end. */
  async monitor(): Promise<void> {
    const group = this.group!;
    const monitor = new ConsumeMonitor({
      ...this.#parts(),
      group,
      progressEveryS: this.options.progressEveryS ?? 5,
      idle: () => {
        this.stopReason = "idle";
        this.shutdown.abort();
      },
    });
    while (await sleep(monitor.nextTickMs(), this.shutdown.signal)) await monitor.tick();
    await group.commitToKafka();
  }
}

/** The source topics and their DLQs, with the partitions each gets when created. */
function topicsToCreate(config: ConsumeConfig): [topic: string, partitions: number][] {
  return [
    [config.usersTopic, config.usersPartitions],
    [config.ordersTopic, config.ordersPartitions],
    [dlqTopic(config.usersTopic), 1],
    [dlqTopic(config.ordersTopic), 1],
  ];
}

/** Empties the tables and stores every partition's first offset, so the tables are rebuilt from the log. */
async function rebuildFromLogStart(admin: Admin, sql: Sql, config: ConsumeConfig, logger: Logger): Promise<void> {
  const starts = [];
  for (const topic of [config.usersTopic, config.ordersTopic]) {
    for (const { partition, low } of await admin.fetchTopicOffsets(topic)) {
      starts.push({ topic, partition, nextOffset: BigInt(low) });
    }
  }
  await resetForRebuild(sql, config.consumerGroup, starts);
  logger.info("rebuild: emptied users, orders and the stored offsets; applying the topics from the start", {
    partitions: starts.length,
  });
}
