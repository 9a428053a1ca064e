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

/**
 * What a new cluster answers a group's first steps while it creates and loads its offsets topic
 * (the first coordinator lookup creates it): kafkajs retries the lookup, and restarts a consumer
 * whose join met the loading coordinator (the restart line names no cause; the crash line before
 * it does). Expected once, at start-up.
 */
const COORDINATOR_STARTING = {
  lookup: "The group coordinator is not available",
  crash: "Crash: KafkaJSProtocolError: The coordinator is loading and hence can't process requests for this group",
  restart: /^Restarting the consumer in \d+ms$/,
};

/** How long a client's groups may meet a coordinator still starting before that is a warning again. */
const COORDINATOR_START_UP_MS = 30_000;

/** One kafkajs log line, as kafkajs hands it to its log creator. */
export interface KafkaLogLine {
  namespace: string;
  level: logLevel;
  message: string;
  /** The `error` field kafkajs attaches, when it does. */
  error?: unknown;
}

/**
 * Our level for a kafkajs line: its errors are our warnings, except lines that retell a refused
 * login, and, while `startingUp` (no group of the client has joined yet, within its first 30 s),
 * the lines of a coordinator still starting (COORDINATOR_STARTING): once a group has
 * joined they are warnings again (a coordinator lost), and so are they when start-up lasts.
 * kafkajs' own warnings and everything below are debug.
 */
export function kafkaLogLevel(line: KafkaLogLine, startingUp: boolean): "warn" | "debug" {
  if (line.level !== logLevel.ERROR) return "debug";
  if (LOGIN_REFUSED_LOG.test(`kafkajs ${line.namespace}: ${line.message}${String(line.error ?? "")}`)) return "debug";
  const { namespace, message, error } = line;
  const coordinatorStarting = (namespace === "Connection" && message.startsWith("Response GroupCoordinator(") &&
    error === COORDINATOR_STARTING.lookup) ||
    (namespace === "Consumer" &&
      (message === COORDINATOR_STARTING.crash || COORDINATOR_STARTING.restart.test(message)));
  return coordinatorStarting && startingUp ? "debug" : "warn";
}

/** Whether `error` is a group coordinator still starting (kafkajs' GROUP_COORDINATOR_NOT_AVAILABLE, GROUP_LOAD_IN_PROGRESS). */
export function isCoordinatorStarting(error: unknown): boolean {
  const type = (error as { type?: unknown } | undefined)?.type;
  return type === "GROUP_COORDINATOR_NOT_AVAILABLE" || type === "GROUP_LOAD_IN_PROGRESS";
}

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

/** Creates a kafkajs client for `config`, logging through `logger` at {@linkcode kafkaLogLevel}'s levels. */
export function createKafka(config: CommonConfig, clientId: string, logger: Logger): Kafka {
  let groupJoined = false;
  const startUpEnds = Date.now() + COORDINATOR_START_UP_MS;
  const startingUp = () => !groupJoined && Date.now() < startUpEnds;
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
      if (kafkaLogLevel({ namespace, level, message, error: fields.error }, startingUp()) === "warn") {
        logger.warn(line, fields);
      } else logger.debug(line, fields);
    },
  };
  const kafka = new Kafka(options);
  // Every consumer made from this client says when its group has joined (kafkaLogLevel).
  const consumer = kafka.consumer.bind(kafka);
  kafka.consumer = (consumerConfig) => {
    const member = consumer(consumerConfig);
    member.on(member.events.GROUP_JOIN, () => (groupJoined = true));
    return member;
  };
  return kafka;
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
