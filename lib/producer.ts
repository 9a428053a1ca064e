/**
 * The produce command's run: generate the event stream, then print it (dry run) or publish it
 * in batches keyed by entity id, with progress lines and a summary.
 * @module
 */
import process from "node:process";
import type { Admin, Message, Producer } from "kafkajs";
import type { ProduceConfig } from "./config.ts";
import { describeError, isKafkaAuthError } from "./errors.ts";
import {
  type EventBatch,
  generateInWorker,
  type GenerationStats,
  newStats,
  randomSeed,
} from "./producer_event_batches.ts";
import { createKafka, createTopic } from "./kafka_admin.ts";
import { SilentCloses } from "./kafka_listener.ts";
import type { Logger } from "./log.ts";
import { partitionOf } from "./partitioner.ts";
import { createPublisher, type TopicMessages, writeWithRetry } from "./kafka_producer.ts";
import { SEND, waitOut } from "./retry.ts";
import { newProduceStats, type ProduceStats, type SendObserver } from "./stats.ts";

/** What a produce run did, printed at exit. */
export interface ProduceSummary {
  /** Events per topic and type, e.g. `users.CREATE`. */
  published: Record<string, number>;
  /** Events in all. */
  total: number;
  /** Users created in the run. */
  usersCreated: number;
  /** Distinct users that orders were placed for. */
  usersOrderedFor: number;
  /** Seed of the stream (repeat it with `--seed`). */
  seed: number;
  /** Wall time of the run in seconds. */
  elapsedS: number;
  /** Events per second over the run. */
  eventsPerS: number;
  /** Whether the run stopped early on SIGINT/SIGTERM. */
  interrupted: boolean;
}

/** Options of {@linkcode runProducer}. */
export interface ProducerRunOptions {
  /** Where progress and errors go. */
  logger: Logger;
  /** Writes dry-run output; resolves once the chunk is taken. @default stdout */
  writeOut?: (chunk: string) => Promise<void>;
  /** Aborted when a stop is requested (SIGINT/SIGTERM): the run ends after the batch in hand. */
  signal?: AbortSignal;
  /** Seconds between progress lines. @default 5 */
  progressEveryS?: number;
  /** Counters to fill. @default fresh counters */
  stats?: ProduceStats;
  /** Told of each acknowledged send (the metrics' histogram). */
  observer?: SendObserver;
}

/** Writes to stdout, waiting for the pipe to drain when it is full. */
export function writeStdout(chunk: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (process.stdout.write(chunk, (error) => (error ? reject(error) : undefined))) resolve();
    else process.stdout.once("drain", resolve);
  });
}

/** The state of one produce run that printing and publishing share: counts, the stop, progress lines. */
class ProduceRun {
  readonly generation: GenerationStats = newStats();
  readonly topicOf: { user: string; order: string };
  readonly started = performance.now();
  done = 0;
  interrupted = false;
  #lastProgress = this.started;

  constructor(readonly config: ProduceConfig, readonly options: ProducerRunOptions) {
    this.topicOf = { user: config.usersTopic, order: config.ordersTopic };
  }

  /** Takes a batch's generation counts; true when a stop was asked for, so the run ends after this batch. */
  tookBatch(batch: EventBatch): boolean {
    Object.assign(this.generation, batch.stats);
    this.interrupted = this.options.signal?.aborted === true;
    return this.interrupted;
  }

  /** Counts records done and logs a progress line when one is due. */
  advanced(count: number): void {
    this.done += count;
    const now = performance.now();
    if (now - this.#lastProgress < (this.options.progressEveryS ?? 5) * 1000) return;
    this.#lastProgress = now;
    const rate = Math.round(this.done / ((now - this.started) / 1000));
    const total = this.config.users + this.config.orders;
    this.options.logger.info(`${this.config.dryRun ? "printed" : "published"} ${this.done}/${total} events`, {
      eventsPerS: rate,
    });
  }
}

/** Generates and publishes (or prints) the configured events. */
export async function runProducer(config: ProduceConfig, options: ProducerRunOptions): Promise<ProduceSummary> {
  const seed = config.seed ?? randomSeed();
  const run = new ProduceRun(config, options);
  const batches = generateInWorker({
    users: config.users,
    orders: config.orders,
    seed,
    systemClock: config.seed === undefined,
    batchSize: config.batchSize,
  });
  if (config.dryRun) {
    const writeOut = options.writeOut ?? writeStdout;
    for await (const batch of batches) {
      await writeOut(batch.values + "\n");
      run.advanced(batch.count);
      if (run.tookBatch(batch)) break;
    }
  } else await publish(run, batches);
  return summarize(run.generation, seed, run.done, run.started, run.interrupted, run.topicOf);
}

/** Creates the topics when missing; returns the partition count of each. */
async function prepareTopics(admin: Admin, config: ProduceConfig, logger: Logger) {
  await admin.connect();
  await createTopic(admin, config.usersTopic, config.usersPartitions, config.replicationFactor, logger);
  await createTopic(admin, config.ordersTopic, config.ordersPartitions, config.replicationFactor, logger);
  const { topics } = await admin.fetchTopicMetadata({ topics: [config.usersTopic, config.ordersTopic] });
  const count = (topic: string) => topics.find((t) => t.name === topic)?.partitions.length ?? 0;
  return { user: count(config.usersTopic), order: count(config.ordersTopic) };
}

/** Publishes the generated batches over the {@linkcode LANES}, each send acknowledged by all in-sync replicas. */
async function publish(run: ProduceRun, batches: AsyncIterable<EventBatch>): Promise<void> {
  const { config, options: { logger, observer } } = run;
  const produceStats = run.options.stats ?? newProduceStats();
  const kafka = createKafka(config, "cdc-produce", logger);
  const admin = kafka.admin();
  const lanes: Lane[] = Array.from(
    { length: LANES },
    () => ({ producer: createPublisher(kafka), inFlight: Promise.resolve() }),
  );
  const silentCloses = new SilentCloses(config.brokers);
  for (const client of [admin, ...lanes.map((lane) => lane.producer)]) silentCloses.hear(client);
  const waitForKafka = kafkaWait(config, logger, silentCloses);
  try {
    const partitions = await waitForKafka("preparing topics on", () => prepareTopics(admin, config, logger));
    await admin.disconnect();
    let connectedLanes = 0;
    for (const { producer } of lanes) {
      // Kafka is up only while every lane is connected.
      producer.on(producer.events.CONNECT, () => {
        if (++connectedLanes === LANES) produceStats.markUp("kafka");
        else produceStats.markDown("kafka");
      });
      producer.on(producer.events.DISCONNECT, () => {
        connectedLanes--;
        produceStats.markDown("kafka");
      });
      await waitForKafka("connecting to", () => producer.connect());
    }
    const writeOptions = {
      maxAttempts: config.maxAttempts,
      backoffMs: config.retryBackoffMs,
      logger,
      onRetry: () => produceStats.countSendRetry(),
      silentCloses,
    };
    const send = (lane: Lane, topicMessages: TopicMessages[]) =>
      writeWithRetry(lane.producer, topicMessages, writeOptions).then(() => {
        for (const { topic, messages } of topicMessages) {
          produceStats.countPublished(topic, messages.length);
          run.advanced(messages.length);
        }
      }, (error) => {
        lane.failure = { error };
      });
    let batchAcked: Promise<void> = Promise.resolve();
    for await (const batch of batches) {
      const perLane = splitByLane(batch, run.topicOf, partitions);
      let sendStarted = 0;
      const sends: Promise<void>[] = [];
      for (let i = 0; i < LANES; i++) {
        await settle(lanes[i]);
        if (perLane[i].length === 0) continue;
        if (sends.length === 0) sendStarted = performance.now();
        sends.push(lanes[i].inFlight = send(lanes[i], perLane[i]));
      }
      batchAcked = Promise.all(sends).then(() => {
        if (lanes.every((lane) => !lane.failure)) observer?.batchSent(performance.now() - sendStarted);
      });
      if (run.tookBatch(batch)) break;
    }
    for (const lane of lanes) await settle(lane);
    await batchAcked;
  } finally {
    await Promise.all(lanes.map((lane) => lane.inFlight));
    await Promise.all(lanes.map((lane) => lane.producer.disconnect().catch(() => {})));
    await admin.disconnect().catch(() => {});
  }
}

/**
 * The produce run's waits for Kafka at start-up (`what` names the step, the brokers follow): its
 * retry budget, a refused login not retried, each failure judged by `silentCloses`.
 */
function kafkaWait(config: ProduceConfig, logger: Logger, silentCloses: SilentCloses) {
  const brokers = config.brokers.join(",");
  return <T>(what: string, fn: () => Promise<T>): Promise<T> =>
    waitOut(silentCloses.judged(fn, config.maxAttempts), {
      what: `${what} ${brokers}`,
      policy: { ...SEND, maxAttempts: config.maxAttempts, baseMs: config.retryBackoffMs },
      isRetriable: (error) => !isKafkaAuthError(error),
      onWait: (error, attempt, delayMs) =>
        logger.warn(`Kafka at ${brokers} not ready, retrying in ${delayMs} ms`, {
          attempt,
          of: config.maxAttempts,
          error: describeError(error),
        }),
    });
}

/**
 * Producers that each own alternate partitions, each with its own connection and one send in
 * flight. A key's partition belongs to one lane, whose batches go out one at a time and are re-sent
 * whole on failure: per-key order holds, while one lane's request waits for its acks the main
 * thread encodes the other's.
 */
const LANES = 2;

/** One of the {@linkcode LANES}: its producer, its send in flight, and how that send failed. */
interface Lane {
  producer: Producer;
  inFlight: Promise<void>;
  failure?: { error: unknown };
}

/** Waits for the lane's send in flight; throws what made it fail. */
async function settle(lane: Lane): Promise<void> {
  await lane.inFlight;
  if (lane.failure) throw lane.failure.error;
}

/**
 * The batch's records per lane and topic, each with its key's partition (the partitioner's, for
 * the partition counts of the run's start). The partitions of both topics, users' first, are dealt
 * to the lanes in turn.
 */
function splitByLane(
  batch: EventBatch,
  topicOf: { user: string; order: string },
  partitions: { user: number; order: number },
): TopicMessages[][] {
  const values = batch.values.split("\n");
  const keys = batch.keys.split("\n");
  const lanes = Array.from({ length: LANES }, () => ({ user: [] as Message[], order: [] as Message[] }));
  for (let i = 0; i < values.length; i++) {
    const entity = i < batch.users ? "user" : "order";
    const partition = partitionOf(keys[i], partitions[entity]);
    const lane = (entity === "user" ? partition : partitions.user + partition) % LANES;
    lanes[lane][entity].push({ key: keys[i], value: values[i], partition });
  }
  return lanes.map(({ user, order }) => {
    const topics: TopicMessages[] = [];
    if (user.length) topics.push({ topic: topicOf.user, messages: user });
    if (order.length) topics.push({ topic: topicOf.order, messages: order });
    return topics;
  });
}

function summarize(
  stats: GenerationStats,
  seed: number,
  done: number,
  started: number,
  interrupted: boolean,
  topicOf: { user: string; order: string },
): ProduceSummary {
  const elapsedS = (performance.now() - started) / 1000;
  const published: Record<string, number> = {};
  for (const [key, count] of Object.entries(stats.byType)) {
    const [entity, type] = key.split(".") as ["user" | "order", string];
    published[`${topicOf[entity]}.${type}`] = count;
  }
  return {
    published,
    total: done,
    usersCreated: stats.usersCreated,
    usersOrderedFor: stats.usersOrderedFor,
    seed,
    elapsedS: Math.round(elapsedS * 1000) / 1000,
    eventsPerS: Math.round(done / Math.max(elapsedS, 1e-6)),
    interrupted,
  };
}
