/**
 * The consume command's run. Delivery semantics, decided here: at-least-once from Kafka,
 * effectively-once in PostgreSQL. For each partition batch: validate, apply in one transaction,
 * dead-letter what cannot be applied (acked by Kafka), and only then commit the offset. A crash
 * anywhere re-delivers a suffix of the log, which the idempotent sink absorbs.
 * @module
 */
import type { Consumer, EachBatchPayload, IHeaders, Kafka, KafkaMessage, Producer } from "kafkajs";
import type { ConsumeConfig } from "./config.ts";
import { createPublisher, createTopic } from "./kafka_admin.ts";
import type { Logger } from "./log.ts";
import { InvalidEventError, type OrderChange, parseOrderEvent, parseUserEvent, type UserChange } from "./model.ts";
import {
  backoffDelay,
  classifyDatabaseError,
  describeError,
  isDatabaseAuthError,
  isKafkaOutage,
  retry,
  sleep,
} from "./retry.ts";
import { applyBatch, databaseAnswers, ensureSchema, type Sql } from "./sink.ts";

/** Header names on DLQ records. */
export const DLQ_HEADERS = {
  reason: "dlq.reason",
  topic: "dlq.source.topic",
  partition: "dlq.source.partition",
  offset: "dlq.source.offset",
  failedAt: "dlq.failed.at",
} as const;

/** Counters of a consume run, for progress lines, metrics and the exit summary. */
export interface ConsumeStats {
  /** Records applied to PostgreSQL, per topic. */
  applied: Record<string, number>;
  /** Records written to the DLQ, per source topic. */
  deadLettered: Record<string, number>;
  /** Batches committed. */
  batches: number;
  /** Waits for an outage or a missing user. */
  retries: number;
  /** Sizes of committed batches and their apply times, for the histograms. */
  onBatch?: (size: number, applyMs: number) => void;
  /** Lag per `topic:partition`, refreshed once a second. */
  lag: Record<string, number>;
  /** Whether Kafka and PostgreSQL are connected. */
  connected: { kafka: boolean; database: boolean };
}

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
  /** Resolves when a stop was requested (SIGINT/SIGTERM). */
  stopRequested: Promise<void>;
  /** Seconds between progress lines. @default 5 */
  progressEveryS?: number;
}

/** Fresh counters for a consume run. */
export function newConsumeStats(): ConsumeStats {
  return {
    applied: {},
    deadLettered: {},
    batches: 0,
    retries: 0,
    lag: {},
    connected: { kafka: false, database: false },
  };
}

/** The DLQ topic of a source topic. */
export function dlqTopic(topic: string): string {
  return `${topic}.dlq`;
}

/** A record bound for the DLQ, with why. */
interface DeadLetter {
  message: KafkaMessage;
  reason: string;
}

/** A partition paused on an order whose user is not there yet. */
interface Waiting {
  /** Offset of the waiting order. */
  offset: string;
  /** When the order-wait deadline started counting; undefined until the users topic caught up. */
  since?: number;
  /** Retries so far, for the backoff. */
  attempt: number;
  /** End offsets of the users partitions when the order first blocked; undefined until known. */
  usersEnds?: Map<number, number>;
}

/** Why the run ended. */
export type StopReason = "signal" | "idle";

/**
 * Consumes both topics in one group until a stop is requested or, with `idleTimeoutS`, until
 * the topics are drained and idle; returns why it stopped. Throws on a refused login, or when
 * kafkajs stops the consumer on an error it will not retry.
 */
export async function runConsumer(config: ConsumeConfig, options: ConsumerRunOptions): Promise<StopReason> {
  const { kafka, sql, logger, progressEveryS = 5 } = options;
  const stats = options.stats ?? newConsumeStats();
  let stopping = false;
  let stopReason: StopReason = "signal";
  const stopped = options.stopRequested.then(() => {
    stopping = true;
  });
  const keepGoing = () => !stopping;
  const waitOutage = (what: string) => ({
    what,
    maxAttempts: Infinity,
    baseMs: 500,
    capMs: 10_000,
    keepGoing,
    sleep: (ms: number) => Promise.race([sleep(ms), stopped]),
    onRetry: (error: unknown, attempt: number, delayMs: number) => {
      stats.retries++;
      logger.warn(`waiting for ${what}`, { attempt, retryInMs: delayMs, error: describeError(error) });
    },
  });

  const topics = [config.usersTopic, config.ordersTopic];
  const admin = kafka.admin();
  const dlqProducer: Producer = createPublisher(kafka);
  try {
    await startDependencies();
  } catch (error) {
    // A stop requested while waiting for a dependency at start-up is a clean stop, not a failure.
    if (!stopping) throw error;
    await dlqProducer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    logger.info("stopped before the consumer started");
    return "signal";
  }

  async function startDependencies() {
    await retry(async () => {
      try {
        await ensureSchema(sql);
      } catch (error) {
        if (isDatabaseAuthError(error)) throw Object.assign(error as Error, { fatal: true });
        throw error;
      }
    }, { ...waitOutage("PostgreSQL"), isRetriable: (e) => !(e as { fatal?: boolean }).fatal });
    stats.connected.database = true;
    await retry(async () => {
      await admin.connect();
      await createTopic(admin, config.usersTopic, config.usersPartitions, config.replicationFactor, logger);
      await createTopic(admin, config.ordersTopic, config.ordersPartitions, config.replicationFactor, logger);
      for (const topic of topics) await createTopic(admin, dlqTopic(topic), 1, config.replicationFactor, logger);
    }, { ...waitOutage("Kafka"), isRetriable: isKafkaOutage });
    await retry(() => dlqProducer.connect(), { ...waitOutage("Kafka (DLQ producer)"), isRetriable: isKafkaOutage });
  }
  const waiting = new Map<string, Waiting>();
  const consumer: Consumer = kafka.consumer({
    groupId: config.consumerGroup,
    maxBytesPerPartition: config.maxBatchBytes,
    maxBytes: config.maxBatchBytes * 8,
    sessionTimeout: 30_000,
    heartbeatInterval: 3_000,
    maxWaitTimeInMs: 500,
    allowAutoTopicCreation: false,
    retry: { retries: 10, initialRetryTime: 300, maxRetryTime: 10_000 },
  });
  // Health reads these flags: up on every sign of a working broker, down on every sign of none.
  consumer.on(consumer.events.CONNECT, () => (stats.connected.kafka = true));
  consumer.on(consumer.events.FETCH, () => (stats.connected.kafka = true));
  consumer.on(consumer.events.DISCONNECT, () => (stats.connected.kafka = false));
  consumer.on(consumer.events.STOP, () => (stats.connected.kafka = false));
  consumer.on(consumer.events.GROUP_JOIN, (event) => {
    stats.connected.kafka = true;
    // A partition that moved to another member no longer waits here (nor holds off --idle-timeout).
    const mine = new Set(
      Object.entries(event.payload.memberAssignment).flatMap(([t, ps]) => ps.map((p) => `${t}:${p}`)),
    );
    for (const key of waiting.keys()) if (!mine.has(key)) waiting.delete(key);
    const assigned = Object.entries(event.payload.memberAssignment).map(([t, ps]) => `${t}[${ps.join(",")}]`);
    logger.info("joined group", { group: config.consumerGroup, assigned: assigned.join(" ") || "nothing" });
  });
  let fatal: unknown;
  consumer.on(consumer.events.CRASH, (event) => {
    stats.connected.kafka = false;
    if (event.payload.restart) {
      logger.warn("Kafka consumer crashed; it restarts by itself", { error: describeError(event.payload.error) });
      return;
    }
    // kafkajs gives up on errors it deems non-retriable; fetching has stopped, so the run must end.
    fatal = event.payload.error;
    stopping = true;
  });

  /** The group's committed offset per `topic:partition`, refreshed with the lag once a second. */
  let committed: Record<string, number> = {};

  /**
   * The wait state of the order at `offset` in partition `key`. Its deadline counts only once
   * the group has applied every user that was in the users topic when the order first blocked:
   * an order must not be dead-lettered because the users topic is behind (a Kafka outage, a
   * rebalance, a dead member whose session has not ended), only because its user never came.
   */
  const orderWait = async (key: string, offset: string): Promise<Waiting> => {
    const previous = waiting.get(key);
    const wait: Waiting = previous?.offset === offset
      ? { ...previous, attempt: previous.attempt + 1 }
      : { offset, attempt: 1 };
    if (!wait.usersEnds) {
      wait.usersEnds = await admin.fetchTopicOffsets(config.usersTopic)
        .then((ends) => new Map(ends.map((end) => [end.partition, Number(end.high)])))
        .catch(() => undefined);
    }
    if (wait.since === undefined && wait.usersEnds) {
      const caughtUp = [...wait.usersEnds].every(([partition, end]) =>
        (committed[`${config.usersTopic}:${partition}`] ?? -1) >= end
      );
      if (caughtUp) wait.since = Date.now();
    }
    waiting.set(key, wait);
    return wait;
  };
  let lastActivity = Date.now();

  const deadLetter = async (topic: string, partition: number, letters: DeadLetter[]) => {
    if (letters.length === 0) return;
    const failedAt = new Date().toISOString();
    const messages = letters.map(({ message, reason }) => ({
      key: message.key,
      value: message.value,
      headers: {
        ...(message.headers as IHeaders | undefined),
        [DLQ_HEADERS.reason]: reason,
        [DLQ_HEADERS.topic]: topic,
        [DLQ_HEADERS.partition]: String(partition),
        [DLQ_HEADERS.offset]: message.offset,
        [DLQ_HEADERS.failedAt]: failedAt,
      },
    }));
    await retry(() => dlqProducer.send({ topic: dlqTopic(topic), messages, acks: -1 }), {
      ...waitOutage(`Kafka (DLQ ${dlqTopic(topic)})`),
      isRetriable: isKafkaOutage,
    });
    stats.deadLettered[topic] = (stats.deadLettered[topic] ?? 0) + letters.length;
    for (const { message, reason } of letters) {
      logger.warn("dead-lettered", { topic, partition, offset: message.offset, reason });
    }
  };

  /** Applies validated changes, waiting out database outages; undefined when stopping. */
  const applyWaiting = async (changes: UserChange[] | OrderChange[], heartbeat: () => Promise<void>) => {
    for (let attempt = 1;; attempt++) {
      try {
        const started = performance.now();
        const outcome = await applyBatch(sql, changes);
        stats.connected.database = true;
        return { outcome, applyMs: performance.now() - started };
      } catch (error) {
        stats.connected.database = classifyDatabaseError(error) !== "outage";
        if (!keepGoing()) return undefined;
        const delayMs = backoffDelay(attempt, 500, 10_000);
        stats.retries++;
        logger.warn("waiting for PostgreSQL; nothing is committed meanwhile", {
          attempt,
          retryInMs: delayMs,
          error: describeError(error),
        });
        await Promise.race([sleep(delayMs), stopped]);
        await heartbeat().catch(() => {});
        if (!keepGoing()) return undefined;
      }
    }
  };

  const eachBatch = async (payload: EachBatchPayload) => {
    const { batch, resolveOffset, heartbeat, commitOffsetsIfNecessary, pause, isRunning, isStale } = payload;
    const { topic, partition } = batch;
    const parse = topic === config.usersTopic ? parseUserEvent : parseOrderEvent;
    const key = `${topic}:${partition}`;
    let messages = batch.messages;
    while (messages.length > 0 && isRunning() && !isStale() && keepGoing()) {
      lastActivity = Date.now();
      const valid: { message: KafkaMessage; change: UserChange | OrderChange }[] = [];
      const invalid: DeadLetter[] = [];
      for (const message of messages) {
        try {
          valid.push({ message, change: parse(message.value) });
        } catch (error) {
          if (!(error instanceof InvalidEventError)) throw error;
          invalid.push({ message, reason: error.message });
        }
      }
      const applied = await applyWaiting(valid.map((v) => v.change) as UserChange[] | OrderChange[], heartbeat);
      if (!applied) return; // stopping: nothing committed, the batch is re-delivered
      const { outcome, applyMs } = applied;
      const rejected: DeadLetter[] = outcome.rejected.map((r) => ({
        message: valid[r.index].message,
        reason: r.reason,
      }));
      let blockedMessage = outcome.blocked ? valid[outcome.blocked.index].message : undefined;
      let expired: DeadLetter | undefined;
      let wait: Waiting | undefined;
      if (blockedMessage && outcome.blocked) {
        wait = await orderWait(key, blockedMessage.offset);
        if (wait.since !== undefined && Date.now() - wait.since >= config.orderWaitS * 1000) {
          expired = {
            message: blockedMessage,
            reason: `user ${outcome.blocked.userId} of order ${
              valid[outcome.blocked.index].change.id
            } did not exist after waiting ${config.orderWaitS}s`,
          };
          blockedMessage = undefined;
        }
      }
      // Everything before the boundary is done: applied, or bound for the DLQ.
      const boundary = blockedMessage
        ? BigInt(blockedMessage.offset)
        : BigInt((expired ?? { message: messages[messages.length - 1] }).message.offset) + 1n;
      const letters = [
        ...invalid.filter((d) => BigInt(d.message.offset) < boundary),
        ...rejected,
        ...(expired ? [expired] : []),
      ].sort((a, b) => (BigInt(a.message.offset) < BigInt(b.message.offset) ? -1 : 1));
      try {
        await deadLetter(topic, partition, letters);
      } catch (error) {
        if (!keepGoing()) return; // stopping while Kafka is away: nothing committed
        throw error;
      }
      const done = messages.filter((m) => BigInt(m.offset) < boundary);
      if (done.length > 0) {
        // Commit after the effect: the transaction and the DLQ writes are durable by now.
        await commitOffsetsIfNecessary({
          topics: [{ topic, partitions: [{ partition, offset: boundary.toString() }] }],
        });
        resolveOffset(done[done.length - 1].offset);
        const appliedCount = done.length - letters.length;
        stats.applied[topic] = (stats.applied[topic] ?? 0) + appliedCount;
        stats.batches++;
        stats.onBatch?.(done.length, applyMs);
      }
      if (blockedMessage && outcome.blocked && wait) {
        const backoffMs = backoffDelay(wait.attempt, 200, 5_000);
        const delayMs = wait.since === undefined
          ? backoffMs
          : Math.min(Math.max(0, wait.since + config.orderWaitS * 1000 - Date.now()) + 10, backoffMs);
        stats.retries++;
        logger.info("order waits for its user; partition paused", {
          topic,
          partition,
          offset: blockedMessage.offset,
          user: outcome.blocked.userId,
          deadline: wait.since === undefined ? "not started: the users topic is behind" : "counting",
          retryInMs: delayMs,
        });
        const resume = pause();
        setTimeout(resume, delayMs);
        return;
      }
      waiting.delete(key);
      messages = messages.filter((m) => BigInt(m.offset) >= boundary);
      await heartbeat().catch(() => {});
    }
  };

  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    partitionsConsumedConcurrently: config.concurrency,
    eachBatch,
  });

  const started = Date.now();
  let lastProgress = Date.now();
  let lastApplied = 0;
  const total = () => Object.values(stats.applied).reduce((a, b) => a + b, 0);
  const totalDlq = () => Object.values(stats.deadLettered).reduce((a, b) => a + b, 0);
  try {
    while (!stopping) {
      await Promise.race([sleep(1000), stopped]);
      if (stopping) break;
      // Batches report the database's state as they apply; between them, a ping keeps /health true.
      if (Date.now() - lastActivity >= 2_000) stats.connected.database = await databaseAnswers(sql);
      const positions = await measurePositions(admin, config.consumerGroup, topics).catch((error) => {
        if (isKafkaOutage(error)) stats.connected.kafka = false;
        return undefined;
      });
      const lag = positions?.lag;
      if (positions) {
        stats.lag = positions.lag;
        committed = positions.committed;
      }
      const totalLag = lag ? Object.values(lag).reduce((a, b) => a + b, 0) : -1;
      if (Date.now() - lastProgress >= progressEveryS * 1000) {
        const applied = total();
        logger.info("progress", {
          applied,
          deadLettered: totalDlq(),
          eventsPerS: Math.round((applied - lastApplied) / ((Date.now() - lastProgress) / 1000)),
          lag: totalLag,
        });
        lastApplied = applied;
        lastProgress = Date.now();
      }
      if (
        config.idleTimeoutS !== undefined && totalLag === 0 && waiting.size === 0 &&
        Date.now() - lastActivity >= config.idleTimeoutS * 1000
      ) {
        logger.info(`drained and idle for ${config.idleTimeoutS}s; stopping`);
        stopReason = "idle";
        stopping = true;
      }
    }
  } finally {
    stopping = true;
    await consumer.disconnect().catch((e) => logger.warn("consumer disconnect failed", { error: describeError(e) }));
    await dlqProducer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    logger.info("consumer stopped", { runS: Math.round((Date.now() - started) / 1000) });
  }
  if (fatal !== undefined) throw fatal;
  return stopReason;
}

/** Where a group stands per `topic:partition`: its committed offset (at least the log start) and its lag. */
export interface GroupPositions {
  /** Committed offset, raised to the partition's first offset when lower or absent. */
  committed: Record<string, number>;
  /** High watermark minus the committed offset. */
  lag: Record<string, number>;
}

/** Reads the group's committed offsets and the partitions' high watermarks for `topics`. */
export async function measurePositions(
  admin: ReturnType<Kafka["admin"]>,
  groupId: string,
  topics: string[],
): Promise<GroupPositions> {
  const positions: GroupPositions = { committed: {}, lag: {} };
  const offsets = await admin.fetchOffsets({ groupId, topics });
  for (const topic of topics) {
    const ends = await admin.fetchTopicOffsets(topic);
    const byPartition = new Map(
      (offsets.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]),
    );
    for (const end of ends) {
      const at = Math.max(0, byPartition.get(end.partition) ?? -1, Number(end.low));
      positions.committed[`${topic}:${end.partition}`] = at;
      positions.lag[`${topic}:${end.partition}`] = Math.max(0, Number(end.high) - at);
    }
  }
  return positions;
}
