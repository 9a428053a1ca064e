/**
 * The capture's side of Kafka: its topics (created when missing), each topic's size limit as the
 * broker enforces it, and the producer whose sends wait out outages but stop on what no wait
 * fixes: a deleted topic, a refused login or SASL handshake (lib/errors.ts' classify(), as the
 * consumer decides), a listener that closes every connection unanswered (lib/kafka_listener.ts).
 * @module
 */
import { type Admin, CompressionTypes, type Producer } from "kafkajs";
import { TopicMissingError } from "./capture_errors.ts";
import type { CaptureConfig, TableName } from "./config.ts";
import { partitionsOf } from "./config_values.ts";
import { classify } from "./errors.ts";
import { createKafka, createTopic } from "./kafka_admin.ts";
import { SilentCloses } from "./kafka_listener.ts";
import type { Logger } from "./log.ts";
import { createPublisher, type TopicMessages, writeWithRetry } from "./kafka_producer.ts";
import { sleep } from "./retry.ts";
import type { PublishStats, SendObserver } from "./stats.ts";

/** Kafka's stock `message.max.bytes`, when the broker does not say. */
const KAFKA_DEFAULT_MAX_BYTES = 1_048_588;

/** Whether a Kafka failure says the topic (or partition) is unknown to the broker. */
export function isUnknownTopic(error: unknown): boolean {
  const e = error as { type?: string; cause?: unknown } | null;
  return !!e && (e.type === "UNKNOWN_TOPIC_OR_PARTITION" || isUnknownTopic(e.cause));
}

/** What a capture run needs of Kafka (tests give the run their own). */
export interface CaptureSink {
  /** Creates the topics that are missing, reads their limits and connects. */
  connect(topics: { topic: string; table: string }[]): Promise<void>;
  /** The largest record batch `topic` accepts: its `max.message.bytes`. */
  maxBytes(topic: string): number;
  /** Sends one batch; resolves once Kafka acknowledged it; `signal` ends its waits for an outage. */
  send(messages: TopicMessages[], signal: AbortSignal): Promise<void>;
  /** Disconnects. */
  disconnect(): Promise<void>;
}

/** The capture's Kafka clients, topics and their limits. */
export class CaptureKafka implements CaptureSink {
  readonly admin: Admin;
  readonly producer: Producer;
  /** Judges connect's and the sends' failures: a listener that closes every connection unanswered stops them. */
  readonly silentCloses: SilentCloses;
  readonly #maxBytes = new Map<string, number>();

  /** Creates the clients; `observer` hears each acknowledged send's duration. */
  constructor(
    readonly config: CaptureConfig,
    readonly logger: Logger,
    readonly stats: PublishStats<"kafka">,
    readonly observer?: SendObserver,
  ) {
    const kafka = createKafka(config, "cdc-capture", logger);
    this.admin = kafka.admin();
    // The publisher's lanes never have two sends of one key in flight (lib/capture_publisher.ts).
    this.producer = createPublisher(kafka, { maxInFlightRequests: config.inFlight });
    this.producer.on(this.producer.events.CONNECT, () => stats.markUp("kafka"));
    this.producer.on(this.producer.events.DISCONNECT, () => stats.markDown("kafka"));
    this.silentCloses = new SilentCloses(config.brokers);
    this.silentCloses.hear(this.admin);
    this.silentCloses.hear(this.producer);
  }

  /**
   * Creates the tables' topics that are missing, each with the partitions --topic-partitions
   * gives its table, reads their limits and connects the producer.
   */
  async connect(topics: (TableName & { topic: string })[]): Promise<void> {
    const { config } = this;
    try {
      await this.admin.connect();
      for (const { topic, ...table } of topics) {
        const partitions = partitionsOf(config.topicPartitions, table);
        await createTopic(this.admin, topic, partitions, config.replicationFactor, this.logger);
      }
      await this.readMaxBytes(topics.map((t) => t.topic));
      await this.producer.connect();
    } catch (error) {
      throw this.silentCloses.failed(error);
    }
  }

  /** The largest record batch `topic` accepts: its `max.message.bytes`. */
  maxBytes(topic: string): number {
    return this.#maxBytes.get(topic) ?? KAFKA_DEFAULT_MAX_BYTES;
  }

  /** Reads each topic's `max.message.bytes`, falling back to the broker's `message.max.bytes`. */
  async readMaxBytes(topics: string[]): Promise<void> {
    const described = await this.admin.describeConfigs({
      resources: topics.map((name) => ({ type: 2, name, configNames: ["max.message.bytes"] })),
      includeSynonyms: false,
    }).catch(() => undefined);
    for (const resource of described?.resources ?? []) {
      const value = Number(resource.configEntries.find((e) => e.configName === "max.message.bytes")?.configValue);
      if (value > 0) this.#maxBytes.set(resource.resourceName, value);
    }
    const missing = topics.filter((t) => !this.#maxBytes.has(t));
    if (!missing.length) return;
    const { brokers } = await this.admin.describeCluster();
    const broker = await this.admin.describeConfigs({
      resources: [{ type: 4, name: String(brokers[0].nodeId), configNames: ["message.max.bytes"] }],
      includeSynonyms: false,
    });
    const value = Number(broker.resources[0]?.configEntries[0]?.configValue);
    for (const topic of missing) this.#maxBytes.set(topic, value > 0 ? value : KAFKA_DEFAULT_MAX_BYTES);
  }

  /**
   * Sends one batch, waiting out Kafka outages until `signal` aborts (30 s after a stop); a
   * deleted topic or a refused login stops the run.
   */
  async send(messages: TopicMessages[], signal: AbortSignal): Promise<void> {
    const started = performance.now();
    const options = {
      maxAttempts: Infinity,
      backoffMs: 500,
      logger: this.logger,
      signal,
      onRetry: () => this.stats.countSendRetry(),
      isRetriable: (error: unknown) => classify(error) === "outage" && !isUnknownTopic(error),
      compression: this.config.compression === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None,
      silentCloses: this.silentCloses,
    };
    for (let attempt = 1;; attempt++) {
      try {
        await writeWithRetry(this.producer, messages, options);
        break;
      } catch (error) {
        if (!isUnknownTopic(error) || signal.aborted) throw error;
        // Unknown right after a leader moved, or deleted: only the topic list tells them apart.
        const topics = await this.admin.listTopics().catch(() => undefined);
        const gone = messages.find((m) => topics && !topics.includes(m.topic));
        if (gone) throw new TopicMissingError(gone.topic);
        this.stats.countSendRetry();
        this.logger.warn("send failed: the broker does not know the topic yet, retrying", { attempt });
        if (!await sleep(500, signal)) throw error;
      }
    }
    this.observer?.batchSent(performance.now() - started);
  }

  /** Disconnects both clients. */
  async disconnect(): Promise<void> {
    await this.producer.disconnect().catch(() => {});
    await this.admin.disconnect().catch(() => {});
  }
}
