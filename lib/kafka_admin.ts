/**
 * Kafka plumbing shared by both commands: the client (TLS, SASL, logs routed to our logger),
 * topic administration, and sends retried within a budget.
 * @module
 */
import process from "node:process";
import { type Admin, Kafka, type KafkaConfig, logLevel, type Message, type Producer } from "kafkajs";
import type { CommonConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import { keyHashPartitioner } from "./partitioner.ts";
import { describeError, isKafkaAuthError, retry } from "./retry.ts";

/**
 * kafkajs lines that retell a refused login: a login is never retried and the command reports
 * the refusal as its one failure line, so these are kept for LOG_LEVEL=debug only.
 */
const LOGIN_REFUSED_LOG = /SaslAuthenticate|SASL [\w -]{1,30} authentication failed/;

/** The kafkajs `ssl` and `sasl` options of `config`: TLS trusting the system CAs or the given CA, SASL. */
export function kafkaSecurityOptions(
  config: Pick<CommonConfig, "kafkaTls" | "kafkaTlsCa" | "kafkaSasl">,
): Pick<KafkaConfig, "ssl" | "sasl"> {
  const options: Pick<KafkaConfig, "ssl" | "sasl"> = {
    ssl: config.kafkaTlsCa === undefined ? config.kafkaTls : { ca: [config.kafkaTlsCa] },
  };
  if (config.kafkaSasl) {
    const { mechanism, username, password } = config.kafkaSasl;
    options.sasl = { mechanism, username, password } as KafkaConfig["sasl"];
  }
  return options;
}

/** Creates a kafkajs client for `config`, logging through `logger`. */
export function createKafka(config: CommonConfig, clientId: string, logger: Logger): Kafka {
  const options: KafkaConfig = {
    clientId,
    brokers: config.brokers,
    ...kafkaSecurityOptions(config),
    connectionTimeout: 3_000,
    requestTimeout: 30_000,
    retry: { retries: 3, initialRetryTime: 200, maxRetryTime: 5_000 },
    logLevel: logLevel.WARN,
    logCreator: () => ({ namespace, level, log }) => {
      const { message, ...fields } = log;
      delete (fields as Record<string, unknown>).timestamp;
      delete (fields as Record<string, unknown>).logger;
      delete (fields as Record<string, unknown>).stack;
      const line = `kafkajs ${namespace}: ${message}`;
      if (level === logLevel.ERROR && !LOGIN_REFUSED_LOG.test(line + String(fields.error ?? ""))) {
        logger.warn(line, fields);
      } else logger.debug(line, fields);
    },
  };
  return new Kafka(options);
}

/**
 * Routes process warnings to `logger`, dropping the TimeoutNegativeWarning that kafkajs 2.2.4
 * triggers on every connection (a negative timer it schedules by design; harmless).
 */
export function routeProcessWarnings(logger: Logger): void {
  process.removeAllListeners("warning");
  process.on("warning", (warning) => {
    if (warning.name !== "TimeoutNegativeWarning") logger.warn(`${warning.name}: ${warning.message}`);
  });
}

/** Whether `topic` exists on the cluster. */
export async function topicExists(admin: Admin, topic: string): Promise<boolean> {
  const topics = await admin.listTopics();
  return topics.includes(topic);
}

/**
 * Creates `topic` unless it exists, and waits for its partitions' leaders. Safe when two
 * processes race to create it: the loser sees the winner's topic. Returns true when this call
 * created it.
 */
export async function createTopic(
  admin: Admin,
  topic: string,
  partitions: number,
  replicationFactor: number,
  logger: Logger,
): Promise<boolean> {
  if (await topicExists(admin, topic)) {
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    const existing = metadata.topics[0]?.partitions.length ?? 0;
    if (existing !== partitions) {
      logger.warn(`topic ${topic} exists with ${existing} partitions; keeping it (wanted ${partitions})`);
    }
    return false;
  }
  try {
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: partitions, replicationFactor }],
      waitForLeaders: true,
    });
    if (created) logger.info(`created topic ${topic}`, { partitions, replicationFactor });
    return created;
  } catch (error) {
    if ((error as { type?: string }).type === "TOPIC_ALREADY_EXISTS" || hasTopicExists(error)) return false;
    throw error;
  }
}

function hasTopicExists(error: unknown): boolean {
  const errors = (error as { errors?: { type?: string }[] }).errors;
  return Array.isArray(errors) && errors.length > 0 && errors.every((e) => e.type === "TOPIC_ALREADY_EXISTS");
}

/** Records for one topic, as one element of a batch send. */
export interface TopicMessages {
  topic: string;
  messages: Message[];
}

/**
 * A producer whose sends are retried by {@linkcode writeWithRetry} only, whole batch at a time,
 * one request in flight (per-key order), keyed by the Java-compatible murmur2 partitioner.
 *
 * Delivery: at-least-once, never lost. kafkajs 2.2.4's own send retry skips every broker that
 * answered an earlier attempt even when partitions failed over to it, so it can report success
 * with records missing (the cluster fault test saw 34 of 6,000 lost and 33 doubled). Its
 * idempotent producer cannot run without that retry, so idempotence is off and a failed batch
 * is re-sent whole: a partial write then appears twice in the log, which the consumer's
 * idempotent apply absorbs.
 */
export function createPublisher(kafka: Kafka): Producer {
  return kafka.producer({
    idempotent: false,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
    retry: { retries: 0 },
    createPartitioner: keyHashPartitioner,
  });
}

/** Options of {@linkcode writeWithRetry}. */
export interface WriteRetryOptions {
  /** Attempts before giving up. */
  maxAttempts: number;
  /** First delay in milliseconds, doubled per attempt with jitter. */
  backoffMs: number;
  /** Logger for the retries. */
  logger: Logger;
  /** Called once per failed attempt that is retried, for the metrics. */
  onRetry?: () => void;
  /** Stops retrying when it returns false (shutdown). @default always true */
  keepGoing?: () => boolean;
}

/**
 * Sends one batch with acks from all in-sync replicas, retrying transient failures (leader
 * elections, a broker that is not up yet) with backoff; throws RetryError once the budget is
 * spent, or at once for a refused login.
 */
export async function writeWithRetry(
  producer: Producer,
  topicMessages: TopicMessages[],
  options: WriteRetryOptions,
): Promise<void> {
  await retry(() => producer.sendBatch({ topicMessages, acks: -1 }), {
    what: `publishing ${topicMessages.map((t) => `${t.messages.length} records to ${t.topic}`).join(" and ")}`,
    maxAttempts: options.maxAttempts,
    baseMs: options.backoffMs,
    isRetriable: (error) => !isKafkaAuthError(error),
    keepGoing: options.keepGoing,
    onRetry: (error, attempt, delayMs) => {
      options.onRetry?.();
      options.logger.warn(`send failed, retrying in ${delayMs} ms`, {
        attempt,
        of: options.maxAttempts,
        error: describeError(error),
      });
    },
  });
}
