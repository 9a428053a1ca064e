/**
 * The consume run's Kafka consumer group: the kafkajs consumer with its event handlers (health,
 * assignment, crashes), the seek of each assigned partition to the offset stored in PostgreSQL,
 * the batches handed to lib/consumer_batch.ts, and Kafka's advisory offset commit.
 * @module
 */
import type { Admin, Consumer, Kafka } from "kafkajs";
import type { ConsumeConfig } from "./config.ts";
import { describeError, isKafkaJSError, TopicRecreatedError } from "./errors.ts";
import { isCoordinatorStarting } from "./kafka_admin.ts";
import type { Logger } from "./log.ts";
import type { OrderWaits } from "./consumer_order_wait.ts";
import { type AppliedPositions, databaseWait, type PartitionBatches } from "./consumer_batch.ts";
import { parsePartitionKey, type PartitionKey, partitionKey } from "./partition_key.ts";
import { RetryError, waitOut } from "./retry.ts";
import type { Sql } from "./database.ts";
import { readStoredOffsets } from "./sink.ts";
import type { ConsumeStats } from "./stats.ts";

/** What the group needs from the run it belongs to. */
export interface ConsumerGroupDeps {
  config: ConsumeConfig;
  kafka: Kafka;
  sql: Sql;
  admin: Admin;
  logger: Logger;
  stats: ConsumeStats;
  positions: AppliedPositions;
  orderWaits: OrderWaits;
  /** The users and orders topics. */
  topics: string[];
  /** Ends the run on a failure neither kafkajs nor waiting will get past. */
  fail: (error: unknown) => void;
  /** Aborted when the run stops: a wait for PostgreSQL on assignment ends. */
  signal: AbortSignal;
}

/** The consumer group member of one consume run. */
export class ConsumerGroup {
  /** The kafkajs consumer, its handlers installed. */
  readonly consumer: Consumer;
  /** When the last batch arrived (ms since the epoch): the monitor's idle clock. */
  lastActivity = Date.now();
  #batches?: PartitionBatches;
  /** The partitions of this member's last assignment (`topic:partition`). */
  #owned = new Set<PartitionKey>();

  /** Creates the member; nothing connects before {@linkcode ConsumerGroup.start}. */
  constructor(private readonly deps: ConsumerGroupDeps) {
    this.consumer = this.#create();
  }

  /** Joins the group and hands every fetched batch to `batches`; a failure that is not kafkajs' ends the run. */
  async start(batches: PartitionBatches): Promise<void> {
    this.#batches = batches;
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: this.deps.topics, fromBeginning: true });
    await this.consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.deps.config.concurrency,
      eachBatch: async (payload) => {
        this.lastActivity = Date.now();
        await batches.handle(payload).catch((error) => {
          if (isKafkaJSError(error)) throw error; // a rebalance: kafkajs rejoins
          this.deps.fail(error);
        });
      },
    });
  }

  /**
   * Whether the partition is in this member's last assignment: a batch fetched before a rebalance
   * that gave its partition to another member is dropped, not applied by two members in turn.
   */
  owns(topic: string, partition: number): boolean {
    return this.#owned.has(partitionKey(topic, partition));
  }

  /** Resolves once no batch is being applied behind the fetch. */
  async batchesSettled(): Promise<void> {
    await this.#batches?.settled();
  }

  /**
   * Moves the fetch position of a partition; nothing while kafkajs has no consumer group to move: once the run is
   * stopping, or between a crash of kafkajs' consumer and its restart (kafkajs then throws "Consumer group was not
   * initialized"). The restarted member's join seeks every partition to its stored offset anyway.
   */
  seek(topic: string, partition: number, offset: bigint): void {
    if (this.deps.signal.aborted) return;
    try {
      this.consumer.seek({ topic, partition, offset: offset.toString() });
    } catch (error) {
      if (!/Consumer group was not initialized/.test((error as Error).message)) throw error;
      this.deps.logger.debug("seek skipped: the Kafka consumer is restarting", { topic, partition });
    }
  }

  /** Commits the positions applied since the last call to Kafka: advisory, for lag tools; a failure is retried next time. */
  async commitToKafka(): Promise<void> {
    const positions = this.deps.positions.takeUncommitted();
    if (positions.size === 0) return;
    const offsets = [...positions].map(([key, next]) => ({ ...parsePartitionKey(key), offset: next.toString() }));
    await this.consumer.commitOffsets(offsets).catch((error) => {
      this.deps.positions.restoreUncommitted(positions);
      this.deps.logger.debug("advisory offset commit to Kafka failed; retried in a second", {
        error: describeError(error),
      });
    });
  }

  /** The kafkajs consumer, with the handlers that keep the health flag and seek on assignment. */
  #create(): Consumer {
    const { config, stats, kafka, logger, fail } = this.deps;
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
    // Health reads this flag: up on every sign of a working broker, down on every sign of none.
    consumer.on(consumer.events.CONNECT, () => stats.markUp("kafka"));
    consumer.on(consumer.events.FETCH, () => stats.markUp("kafka"));
    consumer.on(consumer.events.DISCONNECT, () => stats.markDown("kafka"));
    consumer.on(consumer.events.STOP, () => stats.markDown("kafka"));
    let joined = false;
    consumer.on(consumer.events.GROUP_JOIN, (event) => {
      joined = true;
      stats.markUp("kafka");
      const assigned = Object.entries(event.payload.memberAssignment);
      this.#owned = new Set(assigned.flatMap(([t, ps]) => ps.map((p) => partitionKey(t, p))));
      logger.info("joined group", {
        group: config.consumerGroup,
        assigned: assigned.map(([t, ps]) => `${t}[${ps.join(",")}]`).join(" ") || "nothing",
      });
      this.#startFromStoredOffsets(assigned).catch(fail);
    });
    consumer.on(consumer.events.CRASH, (event) => {
      stats.markDown("kafka");
      if (event.payload.restart) {
        // A new cluster's coordinator still loading at the first join is expected (lib/kafka_admin.ts kafkaLogLevel).
        const fields = { error: describeError(event.payload.error) };
        if (!joined && isCoordinatorStarting(event.payload.error)) {
          logger.debug("Kafka consumer crashed; it restarts by itself", fields);
        } else logger.warn("Kafka consumer crashed; it restarts by itself", fields);
      } else fail(event.payload.error); // kafkajs gave up: fetching has stopped, so the run must end
    });
    return consumer;
  }

  /**
   * On assignment: each partition starts from the offset stored in PostgreSQL (a seek), or, when
   * none is stored, from the group's committed offset, else the earliest. A stored offset past the
   * log's end means the topic was recreated: applying would skip the new records, so the run stops.
   */
  async #startFromStoredOffsets(assigned: [string, number[]][]): Promise<void> {
    const { positions, orderWaits, admin } = this.deps;
    const mine = this.#owned;
    // A batch still applied behind the fetch would move a stored offset after it is read here.
    await this.batchesSettled();
    orderWaits.keepOnly(mine);
    positions.reassigned(mine);
    const stored = await waitOut(
      () => readStoredOffsets(this.deps.sql, this.deps.topics),
      databaseWait("reading the stored offsets on assignment", this.deps),
    ).catch((error) => {
      if (error instanceof RetryError && this.deps.signal.aborted) return undefined; // stopping
      throw error;
    });
    if (!stored) return;
    for (const [topic, partitions] of assigned) {
      const ends = new Map((await admin.fetchTopicOffsets(topic)).map((e) => [e.partition, BigInt(e.high)]));
      // An assignment that came while stopping (a rebalance during the stop) is left to the next start.
      if (this.deps.signal.aborted) return;
      for (const partition of partitions) {
        const next = stored.get(partitionKey(topic, partition));
        if (next === undefined) continue;
        const end = ends.get(partition) ?? 0n;
        if (next > end) throw new TopicRecreatedError(topic, partition, next, end);
        this.seek(topic, partition, next);
        // The group's committed offset follows, for lag tools, even when nothing is left to apply.
        positions.advanced(topic, partition, next);
      }
    }
  }
}
