/**
 * Kafka plumbing shared by the commands: the client (TLS, SASL, logs routed to our logger),
 * topic administration and partition positions. Sends retried within a budget are lib/kafka_producer.ts'.
 * @module
 */
import { type Admin, Kafka, type KafkaConfig, logLevel } from "kafkajs";
import type { CommonConfig } from "./config.ts";
import type { Logger } from "./log.ts";
import "./kafkajs_fixes.ts";
import { type PartitionKey, partitionKey } from "./partition_key.ts";

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

/** Where a reader stands on one partition: its next offset and how far behind the log's end it is. */
export interface PartitionPosition {
  topic: string;
  partition: number;
  /** The reader's next offset; undefined while it has none (then it reads from the log's start). */
  position?: number;
  /** Records between the reader's next offset (or the log's start) and the log's end. */
  lag: number;
}

/**
 * The position and lag of a reader on every partition of `topics`; `positionOf` gives its next
 * offset per `topic:partition`. One meaning everywhere: no position reads from the log's start.
 */
export async function partitionPositions(
  admin: Admin,
  topics: string[],
  positionOf: (key: PartitionKey) => number | undefined,
): Promise<PartitionPosition[]> {
  const positions: PartitionPosition[] = [];
  for (const topic of topics) {
    for (const { partition, low, high } of await admin.fetchTopicOffsets(topic)) {
      const position = positionOf(partitionKey(topic, partition));
      const from = Math.max(position ?? 0, Number(low));
      positions.push({ topic, partition, position, lag: Math.max(0, Number(high) - from) });
    }
  }
  return positions;
}
