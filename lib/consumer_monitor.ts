/**
 * The consume run's monitor, one tick at a time: the database's health between batches, Kafka's
 * advisory commit, the lag per partition, progress lines, and the idle stop.
 * @module
 */
import type { Admin } from "kafkajs";
import type { ConsumeConfig } from "./config.ts";
import type { ConsumerGroup } from "./consumer_group.ts";
import { classify } from "./errors.ts";
import { partitionPositions } from "./kafka_admin.ts";
import type { Logger } from "./log.ts";
import type { OrderWaits } from "./consumer_order_wait.ts";
import { type PartitionKey, partitionKey } from "./partition_key.ts";
import type { Sql } from "./database.ts";
import { storedOffsetsWithin } from "./sink.ts";
import type { ConsumeStats } from "./stats.ts";

/** What the monitor reads and tells. */
export interface ConsumeMonitorDeps {
  config: ConsumeConfig;
  sql: Sql;
  admin: Admin;
  logger: Logger;
  stats: ConsumeStats;
  orderWaits: OrderWaits;
  group: ConsumerGroup;
  /** The users and orders topics. */
  topics: string[];
  /** Seconds between progress lines. */
  progressEveryS: number;
  /** Called once the topics are drained and idle past `config.idleTimeoutS`. */
  idle: () => void;
}

/** The sum of per-topic or per-partition counts. */
export function total(counts: Readonly<Record<string, number>>): number {
  return Object.values(counts).reduce((a, b) => a + b, 0);
}

/** The monitor of one consume run. */
export class ConsumeMonitor {
  #lastProgress = Date.now();
  #lastApplied = 0;

  /** Creates the monitor over the run's parts. */
  constructor(private readonly deps: ConsumeMonitorDeps) {}

  /**
   * Milliseconds to the next tick: once a second while batches come; every 5 s after 10 s
   * without one, so an idle consumer costs well under 1% of a core. A new batch is taken at once
   * either way (kafkajs fetches).
   */
  nextTickMs(): number {
    return Date.now() - this.deps.group.lastActivity >= 10_000 ? 5_000 : 1_000;
  }

  /** One look: health, the advisory commit, lag, a progress line when due, and the idle stop. */
  async tick(): Promise<void> {
    const { sql, topics, stats, group } = this.deps;
    const stored = await storedOffsetsWithin(sql, topics);
    // Batches report the database's state as they apply; between them, this read does.
    if (Date.now() - group.lastActivity >= 2_000) this.#databaseAnswered(stored !== undefined);
    await group.commitToKafka();
    const lag = stored && await this.#measureLag(stored);
    if (lag) stats.setLag(lag);
    const totalLag = lag ? total(lag) : -1;
    this.#progress(totalLag);
    this.#stopWhenIdle(totalLag);
  }

  /** Records the idle health check's answer; a change is logged, so an outage between batches is never silent. */
  #databaseAnswered(up: boolean): void {
    const { stats, logger } = this.deps;
    const wasUp = stats.isUp("database");
    if (up) stats.markUp("database");
    else stats.markDown("database");
    if (wasUp && !up) {
      logger.warn(
        "waiting for PostgreSQL: the stored offsets cannot be read between batches; nothing is committed meanwhile",
      );
    } else if (!wasUp && up) {
      logger.info("PostgreSQL answers again");
    }
  }

  #progress(totalLag: number): void {
    const { stats, logger, progressEveryS } = this.deps;
    if (Date.now() - this.#lastProgress < progressEveryS * 1000) return;
    const applied = total(stats.applied);
    logger.info("progress", {
      applied,
      deadLettered: total(stats.deadLettered),
      eventsPerS: Math.round((applied - this.#lastApplied) / ((Date.now() - this.#lastProgress) / 1000)),
      lag: totalLag,
    });
    this.#lastApplied = applied;
    this.#lastProgress = Date.now();
  }

  #stopWhenIdle(totalLag: number): void {
    const { config, orderWaits, group, logger } = this.deps;
    if (
      config.idleTimeoutS !== undefined && totalLag === 0 && orderWaits.size === 0 &&
      Date.now() - group.lastActivity >= config.idleTimeoutS * 1000
    ) {
      logger.info(`drained and idle for ${config.idleTimeoutS}s; stopping`);
      this.deps.idle();
    }
  }

  /** Log end minus the offset stored in PostgreSQL, per partition; undefined when Kafka is away. */
  async #measureLag(stored: Map<PartitionKey, bigint>): Promise<Record<string, number> | undefined> {
    try {
      const positions = await partitionPositions(this.deps.admin, this.deps.topics, (key) => {
        const next = stored.get(key);
        return next === undefined ? undefined : Number(next);
      });
      return Object.fromEntries(positions.map((p) => [partitionKey(p.topic, p.partition), p.lag]));
    } catch (error) {
      if (classify(error) === "outage") this.deps.stats.markDown("kafka");
      return undefined;
    }
  }
}
