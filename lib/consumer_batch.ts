/**
 * One partition batch, start to end: validate, apply with its offset, dead-letter, advance.
 *
 * Delivery semantics, decided here: exactly-once effects in PostgreSQL. Each step is one
 * transaction that claims the partition's stored offset (cdc_offsets), applies the valid records,
 * writes the rejected ones to the DLQ (acknowledged by Kafka before the commit), and advances the
 * stored offset with a compare-and-set. Records below the stored offset are skipped, so
 * re-delivery (a crash, a rebalance, a restart, another group reading from the start) changes no
 * row and dead-letters nothing again. A member that lost the partition fails the compare-and-set
 * and drops its batch (fencing). The DLQ is at-least-once: a crash between its acknowledgement
 * and the commit writes a record there twice, with the same source coordinates.
 * @module
 */
import type { EachBatchPayload, KafkaMessage, Producer } from "kafkajs";
import type { ConsumeConfig } from "./config.ts";
import { type DeadLetter, writeDeadLetters } from "./consumer_dead_letter.ts";
import type { Logger } from "./log.ts";
import {
  checkRecordKey,
  InvalidEventError,
  type OrderChange,
  parseOrderEvent,
  parseUserEvent,
  type UserChange,
} from "./model.ts";
import type { OrderWaits, WaitDecision } from "./consumer_order_wait.ts";
import type { ConsumeObserver, ConsumeStats } from "./stats.ts";
import {
  classify,
  dependencyOf,
  describeError,
  isGroupMembershipLost,
  isKafkaJSError,
  PipelineError,
} from "./errors.ts";
import { FIRST_ATTEMPT_GRACE_MS, OUTAGE, RetryError, waitOut, type WaitOutOptions, withinDeadline } from "./retry.ts";
import type { Sql } from "./database.ts";
import {
  advanceOffset,
  applyChanges,
  type ApplyOutcome,
  claimOffset,
  endSession,
  FencedError,
  type PartitionOffset,
  planChanges,
  stuckClaimHolders,
} from "./sink.ts";
import { type PartitionKey, partitionKey } from "./partition_key.ts";

/**
 * The next offset to apply per `topic:partition` as this member knows it; null when nothing is
 * stored yet. A stored offset only moves forward, so a position never goes back: a read of
 * PostgreSQL that started before one of this member's batches committed, and is answered after
 * it, would otherwise put the older offset back, and the partition's next claim would fence the
 * member by its own commit.
 */
export class AppliedPositions {
  #known = new Map<PartitionKey, bigint | null>();
  #uncommitted = new Map<PartitionKey, bigint>();

  /** Creates the map over `readStored`, which reads the stored next offsets of `topics` from cdc_offsets. */
  constructor(private readonly readStored: (topics: string[]) => Promise<Map<PartitionKey, bigint>>) {}

  /** The stored next offset of the partition, read from PostgreSQL the first time it is asked for. */
  async of(topic: string, partition: number): Promise<bigint | null> {
    const key = partitionKey(topic, partition);
    if (!this.#known.has(key)) {
      const stored = (await this.readStored([topic])).get(key) ?? null;
      const known = this.#known.get(key);
      if (known === undefined || known === null || (stored !== null && stored > known)) this.#known.set(key, stored);
    }
    return this.#known.get(key)!;
  }

  /**
   * Records that the tables now hold everything of the partition below `next`; nothing when this
   * member already knows of a further position (`next` was read before that one was committed).
   */
  advanced(topic: string, partition: number, next: bigint): void {
    const key = partitionKey(topic, partition);
    const known = this.#known.get(key);
    if (known !== undefined && known !== null && next < known) return;
    this.#known.set(key, next);
    const pending = this.#uncommitted.get(key);
    if (pending === undefined || next >= pending) this.#uncommitted.set(key, next);
  }

  /** Forgets what is known of partition `key` (after a fencing): its next batch reads PostgreSQL again. */
  forget(key: PartitionKey): void {
    this.#known.delete(key);
  }

  /** After a rebalance: every partition is read from PostgreSQL again; only `mine` are committed to Kafka. */
  reassigned(mine: Set<PartitionKey>): void {
    this.#known.clear();
    for (const key of this.#uncommitted.keys()) if (!mine.has(key)) this.#uncommitted.delete(key);
  }

  /** Positions advanced since the last call, for Kafka's advisory offset commit. */
  takeUncommitted(): Map<PartitionKey, bigint> {
    const taken = this.#uncommitted;
    this.#uncommitted = new Map();
    return taken;
  }

  /** Puts back positions whose commit failed, unless a newer one was recorded since. */
  restoreUncommitted(positions: Map<PartitionKey, bigint>): void {
    for (const [key, next] of positions) if (!this.#uncommitted.has(key)) this.#uncommitted.set(key, next);
  }
}

/** What a partition batch needs from the consumer that runs it. */
export interface PartitionBatchDeps {
  config: ConsumeConfig;
  sql: Sql;
  /** Producer for the DLQ. */
  publisher: Producer;
  positions: AppliedPositions;
  orderWaits: OrderWaits;
  stats: ConsumeStats;
  /** Told of each committed batch (the metrics' histograms). */
  observer?: ConsumeObserver;
  logger: Logger;
  /** Aborted when the run stops: waits end at once and no new step starts. */
  signal: AbortSignal;
  /** Moves the consumer's fetch position of a partition (after a fencing or a gap). */
  seek: (topic: string, partition: number, offset: bigint) => void;
  /** Whether the partition is in this member's last assignment (after a rebalance, maybe not). */
  owns: (topic: string, partition: number) => boolean;
  /** Awaited before each transaction; tests hold a batch with it across a rebalance. */
  beforeApply?: (topic: string, partition: number) => Promise<void>;
  /** Ends the run on an error of a batch applied behind the fetch that is neither an outage nor a bad record. */
  fail: (error: unknown) => void;
}

/** SQLSTATE of a lock wait that outlasted lock_timeout. */
const LOCK_TIMEOUT = "55P03";

/** A record and what validation made of it. */
interface Validated {
  valid: { message: KafkaMessage; change: UserChange | OrderChange }[];
  invalid: DeadLetter[];
}

/** What one committed step did. */
interface StepResult {
  /** First offset not done: everything below is applied or dead-lettered. */
  next: bigint;
  applied: number;
  deadLettered: DeadLetter[];
  applyMs: number;
  /** The order that blocks the partition, and when to look again. */
  blocked?: { offset: string; userId: string; retryInMs: number; deadlineCounting: boolean };
}

/** How a batch applied behind the fetch ended: whole, or short of its end with the first offset it left. */
type BatchEnd = { complete: true } | { complete: false; resumeAt?: bigint };

const INCOMPLETE: BatchEnd = { complete: false };

/**
 * Runs partition batches for the consumer: `handle` is kafkajs' eachBatch. It throws kafkajs'
 * own errors (a rebalance announced by the heartbeat) for kafkajs to handle; a batch applied
 * behind the fetch ends the run through `fail` on anything else: outages and bad records never
 * leave it.
 *
 * Pipelined: kafkajs fetches again only once every batch of its last fetch is handled, so
 * `handle` parses its batch, waits for the partition's previous batch to commit, starts this
 * one's transaction and returns without waiting for it. The next fetch, and the parsing of its
 * batches, overlap the transactions in PostgreSQL. A partition has at most one batch in
 * PostgreSQL and one waiting; at most `concurrency` batches apply at once. The fetch position
 * moves to the batch's end at once; a batch that stops short (an order waiting for its user, a
 * fencing, a stop) sends the fetch back to the stored offset, and the batch fetched ahead of it
 * is dropped unapplied.
 */
export class PartitionBatches {
  #gapsSought = new Map<PartitionKey, bigint>();
  /** Per partition, the batch applied behind the fetch: the partition's next batch waits for its end. */
  #behind = new Map<PartitionKey, Promise<BatchEnd>>();
  /** Batches applying now: at most `concurrency` (the pool has a connection for each). */
  #applying = 0;
  #waitingForSlot: (() => void)[] = [];

  /** Creates the handler over its dependencies. */
  constructor(private readonly deps: PartitionBatchDeps) {}

  /**
   * kafkajs' eachBatch: parses the batch, starts applying it once the partition's previous batch
   * ended whole, then heartbeats. kafkajs itself heartbeats only after an empty fetch, so while
   * fetches keep returning records this is how the member learns of a rebalance; the heartbeat
   * throws it.
   */
  async handle(payload: EachBatchPayload): Promise<void> {
    const { batch } = payload;
    const key = partitionKey(batch.topic, batch.partition);
    const validated = validate(
      batch.topic === this.deps.config.usersTopic ? parseUserEvent : parseOrderEvent,
      batch.messages,
    );
    const previous = this.#behind.get(key);
    if (previous !== undefined) {
      const end = await previous;
      if (this.#behind.get(key) === previous) this.#behind.delete(key);
      if (!end.complete) {
        this.deps.logger.debug("a batch fetched ahead of one that stopped short is dropped", {
          topic: batch.topic,
          partition: batch.partition,
          offset: batch.firstOffset(),
        });
        return;
      }
    }
    await this.#slot();
    if (!payload.isRunning() || payload.isStale() || this.deps.signal.aborted) return this.#release();
    this.#behind.set(key, this.#applyBehind(payload, validated).finally(() => this.#release()));
    payload.resolveOffset(batch.lastOffset());
    await payload.heartbeat();
  }

  /** Waits until fewer than `concurrency` batches apply, and takes a place among them. */
  async #slot(): Promise<void> {
    while (this.#applying >= this.deps.config.concurrency) {
      await new Promise<void>((resolve) => this.#waitingForSlot.push(resolve));
    }
    this.#applying++;
  }

  #release(): void {
    this.#applying--;
    this.#waitingForSlot.shift()?.();
  }

  /** Resolves once every batch applied behind the fetch has ended: before a stop closes the clients, or a rebalance reads the stored offsets. */
  async settled(): Promise<void> {
    await Promise.all(this.#behind.values());
  }

  /**
   * Applies the batch; its end, never an error: what the run cannot wait out ends it through
   * `fail`. A batch that stops short sends the fetch back to the stored offset (where it stopped,
   * when nothing is stored yet): the fetch position already moved past it.
   */
  async #applyBehind(payload: EachBatchPayload, validated: Validated): Promise<BatchEnd> {
    let end: BatchEnd;
    try {
      end = await this.#apply(payload, validated);
    } catch (error) {
      // A rebalance (kafkajs' error) is learnt by kafkajs from the next heartbeat, and rejoined.
      if (!isKafkaJSError(error) && !(error instanceof RetryError && this.deps.signal.aborted)) this.deps.fail(error);
      end = INCOMPLETE;
    }
    if (!end.complete) await this.#sendBack(payload.batch.topic, payload.batch.partition, end.resumeAt);
    return end;
  }

  /**
   * Moves the partition's fetch back to its stored offset, or to `resumeAt` when none is stored;
   * nothing when stopping, or when the partition is another member's now.
   */
  async #sendBack(topic: string, partition: number, resumeAt: bigint | undefined): Promise<void> {
    if (this.deps.signal.aborted || !this.deps.owns(topic, partition)) return;
    try {
      const to = (await this.#position(topic, partition)) ?? resumeAt;
      if (to !== undefined) this.deps.seek(topic, partition, to);
    } catch (error) {
      if (!(error instanceof RetryError && this.deps.signal.aborted)) this.deps.fail(error);
    }
  }

  /** Applies the batch step by step until it is done (complete), or blocked, stale or stopping. */
  async #apply(payload: EachBatchPayload, validated: Validated): Promise<BatchEnd> {
    const { batch, heartbeat, pause, isRunning, isStale } = payload;
    const { topic, partition } = batch;
    const key = partitionKey(topic, partition);
    const batchEnd = BigInt(batch.lastOffset()) + 1n;
    let messages = await this.#unapplied(topic, partition, batch.messages);
    if (messages === undefined) return INCOMPLETE;
    while (messages.length > 0) {
      if (!isRunning() || isStale() || this.deps.signal.aborted) {
        return { complete: false, resumeAt: BigInt(messages[0].offset) };
      }
      const start = (await this.#position(topic, partition)) ?? BigInt(messages[0].offset);
      const step = await this.#stepWithRetries(
        topic,
        partition,
        start,
        messages,
        from(validated, start),
        batchEnd,
        heartbeat,
      );
      if (!step) return { complete: false, resumeAt: BigInt(messages[0].offset) };
      if (step.next > start) {
        this.deps.positions.advanced(topic, partition, step.next);
        this.#count(topic, partition, step);
      }
      if (step.blocked) {
        this.#pauseFor(topic, partition, step.blocked, pause);
        return { complete: false, resumeAt: step.next };
      }
      this.deps.orderWaits.forget(key);
      messages = messages.filter((m) => BigInt(m.offset) >= step.next);
      await heartbeat(); // between the steps of a long batch too
    }
    return { complete: true };
  }

  /** The partition's stored position; reading it waits out an outage of PostgreSQL as a step does. */
  async #position(topic: string, partition: number): Promise<bigint | null> {
    const what = `reading ${partitionKey(topic, partition)}'s stored offset`;
    return await waitOut(
      () => answered(this.deps.positions.of(topic, partition), what, this.deps.config),
      databaseWait(what, this.deps),
    );
  }

  /**
   * The batch's records the tables have not seen, or undefined when the batch starts past the
   * stored offset: then the consumer is sent back there (once; a gap that remains is the log's).
   */
  async #unapplied(topic: string, partition: number, messages: KafkaMessage[]): Promise<KafkaMessage[] | undefined> {
    const stored = await this.#position(topic, partition);
    if (stored === null || messages.length === 0) return messages;
    const unapplied = messages.filter((m) => BigInt(m.offset) >= stored);
    const first = unapplied.length > 0 ? BigInt(unapplied[0].offset) : undefined;
    const key = partitionKey(topic, partition);
    if (first !== undefined && first > stored && this.#gapsSought.get(key) !== stored) {
      this.#gapsSought.set(key, stored);
      this.deps.seek(topic, partition, stored);
      return undefined;
    }
    if (first !== undefined && first > stored) {
      this.deps.logger.warn("records are missing from the log (retention or compaction); going on", {
        topic,
        partition,
        from: stored.toString(),
        to: (first - 1n).toString(),
      });
    }
    return unapplied;
  }

  /**
   * One step, retried until it commits: outages (PostgreSQL, or Kafka for the DLQ) and transient
   * errors (serialization failure, deadlock) with backoff, forever; undefined when the run stops
   * meanwhile or another member applied the partition (fenced). Anything else is thrown.
   */
  async #stepWithRetries(
    topic: string,
    partition: number,
    start: bigint,
    messages: KafkaMessage[],
    validated: Validated,
    batchEnd: bigint,
    heartbeat: () => Promise<void>,
  ): Promise<StepResult | undefined> {
    const { stats, logger, signal } = this.deps;
    try {
      const step = await waitOut(async () => {
        await stillMember(topic, partition, heartbeat);
        await this.deps.beforeApply?.(topic, partition);
        // A batch fetched, or retried, across a rebalance that gave the partition away: the new owner
        // applies it from the stored offset. (Its claim would fence one of the two; this spares both.)
        if (!this.deps.owns(topic, partition)) throw new PartitionMovedError(topic, partition);
        return await this.#step(topic, partition, start, messages, validated, batchEnd).catch(async (error) => {
          if ((error as { code?: unknown }).code === LOCK_TIMEOUT) await this.#endStuckClaimHolders();
          throw error;
        });
      }, {
        what: `applying ${partitionKey(topic, partition)}`,
        policy: OUTAGE,
        signal,
        // The batch's effects and its offset commit together: a step abandoned at a stop is applied again later.
        firstAttemptGraceMs: FIRST_ATTEMPT_GRACE_MS,
        isRetriable: (error) => waitedFor(error) !== undefined,
        onWait: (error, attempt, delayMs) => {
          const what = waitedFor(error)!;
          stats.markDown(what === "PostgreSQL" ? "database" : "kafka");
          stats.countRetry();
          logger.warn(`waiting for ${what}; nothing is committed meanwhile`, {
            attempt,
            retryInMs: delayMs,
            error: describeError(error),
          });
        },
      });
      stats.markUp("database");
      return step;
    } catch (error) {
      if (error instanceof MembershipLostError) {
        logger.warn(`${error.message}; batch given up, the group is rejoined`, { topic, partition });
        throw error.cause; // kafkajs rejoins, and the new assignment starts from the stored offsets
      }
      if (error instanceof FencedError) {
        await this.#fenced(topic, partition, error);
        return undefined;
      }
      if (error instanceof PartitionMovedError) {
        logger.info(`${error.message}; batch dropped`, { topic, partition });
        return undefined;
      }
      if (error instanceof RetryError && signal.aborted) return undefined;
      throw error;
    }
  }

  /**
   * One transaction: claim the offset, apply, dead-letter (acked by Kafka), advance the offset. A
   * record PostgreSQL refuses (SQLSTATE class 22 or 23) rolls it back whole; it runs again with a
   * savepoint per half, which isolates that record for the DLQ.
   */
  async #step(
    topic: string,
    partition: number,
    start: bigint,
    messages: KafkaMessage[],
    validated: Validated,
    batchEnd: bigint,
  ): Promise<StepResult> {
    try {
      return await this.#transaction({ topic, partition, nextOffset: start }, messages, validated, batchEnd, false);
    } catch (error) {
      if (classify(error) !== "record") throw error;
      return await this.#transaction({ topic, partition, nextOffset: start }, messages, validated, batchEnd, true);
    }
  }

  /**
   * The step's transaction. Without `isolate` it takes two round trips between BEGIN and COMMIT,
   * PostgreSQL never waiting on this process within one: the claim goes out with the batch's reads,
   * the writes with the offset's advance. With `isolate` the savepoints wait for the claim.
   */
  async #transaction(
    claimed: PartitionOffset,
    messages: KafkaMessage[],
    { valid, invalid }: Validated,
    batchEnd: bigint,
    isolate: boolean,
  ): Promise<StepResult> {
    const { topic, partition, nextOffset: start } = claimed;
    const changes = valid.map((v) => v.change) as UserChange[] | OrderChange[];
    const transaction = this.deps.sql.begin(async (tx) => {
      const started = performance.now();
      const claim = claimOffset(tx, this.deps.config.consumerGroup, claimed);
      const [, planned] = isolate
        ? [await claim, { outcome: await applyChanges(tx, changes), writes: [] }]
        : await allSettledOrFirstError([claim, planChanges(tx, changes)] as const);
      const decide = (offset: string) => this.deps.orderWaits.decide(partitionKey(topic, partition), offset);
      const step = await settle(
        messages,
        { valid, invalid },
        planned.outcome,
        batchEnd,
        decide,
        this.deps.config.orderWaitS,
      );
      const advance = step.next > start ? advanceOffset(tx, claimed, step.next) : undefined;
      await allSettledOrFirstError([Promise.all(planned.writes), advance] as const);
      const applyMs = performance.now() - started;
      // After the writes: a record they refuse sends the step round again, which would dead-letter these twice.
      await writeDeadLetters(this.deps.publisher, topic, partition, step.deadLettered, new Date());
      return { ...step, applyMs };
    }) as Promise<StepResult>;
    return await answered(
      transaction,
      `the transaction of ${partitionKey(topic, partition)} at offset ${start}`,
      this.deps.config,
    );
  }

  /**
   * After a lock wait past lock_timeout: ends the sessions of members frozen mid-statement for longer
   * than the session timeout, which PostgreSQL leaves holding their claims (lib/sink.ts,
   * stuckClaimHolders). The group gave their partitions away by then, as PostgreSQL ends the
   * transaction of a member frozen between statements. A lookup that fails is the retry's to wait out.
   */
  async #endStuckClaimHolders(): Promise<void> {
    const { sql, config, logger } = this.deps;
    const holders = await stuckClaimHolders(sql, config.sessionTimeoutS).catch(() => []);
    for (const { pid, silentS, application, client } of holders) {
      const fields = { pid, silentS, application, client: client ?? "local" };
      const what = "a PostgreSQL session holding claimed offsets, its client silent mid-statement past the session " +
        "timeout (a frozen member)";
      try {
        await endSession(sql, pid);
        logger.warn(`ended ${what}`, fields);
      } catch (error) {
        logger.warn(
          `cannot end ${what}: ${describeError(error)}; end it with select pg_terminate_backend(${pid})`,
          fields,
        );
      }
    }
  }

  #count(topic: string, partition: number, step: StepResult): void {
    const { stats, logger } = this.deps;
    stats.countApplied(topic, step.applied);
    stats.countBatch();
    this.deps.observer?.batchCommitted(step.applied + step.deadLettered.length, step.applyMs);
    if (step.deadLettered.length === 0) return;
    stats.countDeadLettered(topic, step.deadLettered.length);
    for (const { message, reason } of step.deadLettered) {
      logger.warn("dead-lettered", { topic, partition, offset: message.offset, reason });
    }
  }

  #pauseFor(
    topic: string,
    partition: number,
    blocked: NonNullable<StepResult["blocked"]>,
    pause: EachBatchPayload["pause"],
  ): void {
    this.deps.stats.countRetry();
    this.deps.logger.info("order waits for its user; partition paused", {
      topic,
      partition,
      offset: blocked.offset,
      user: blocked.userId,
      deadline: blocked.deadlineCounting ? "counting" : "not started: the users topic is behind",
      retryInMs: blocked.retryInMs,
    });
    const resume = pause();
    setTimeout(resume, blocked.retryInMs);
  }

  /** Drops the batch of a partition another member applied, and sends the fetch back to the stored offset. */
  async #fenced(topic: string, partition: number, error: FencedError): Promise<void> {
    this.deps.logger.warn(`fenced: ${error.message}; batch dropped`, { topic, partition });
    this.deps.positions.forget(partitionKey(topic, partition));
    const stored = await this.deps.positions.of(topic, partition).catch(() => null);
    if (stored === null) return;
    this.deps.seek(topic, partition, stored);
    // The tables hold everything below `stored`, whoever applied it (this member too, when a commit's answer was
    // lost in an outage): Kafka's advisory offset follows, or an idle partition would show that lag for ever.
    this.deps.positions.advanced(topic, partition, stored);
  }
}

/** The group's last assignment gave the partition of the batch in hand to another member. */
export class PartitionMovedError extends PipelineError {
  /** Names the partition whose batch is dropped. */
  constructor(readonly topic: string, readonly partition: number) {
    super(`${partitionKey(topic, partition)} was assigned to another member at the last rebalance`);
  }
}

/** The group rebalanced without this member: the batch in hand of the partition belongs to another now. */
export class MembershipLostError extends PipelineError {
  /** Names the partition whose batch is given up, keeping Kafka's answer as `cause`. */
  constructor(readonly topic: string, readonly partition: number, cause: unknown) {
    super(`the group rebalanced: ${describeError(cause)}`, { cause });
  }
}

/**
 * Heartbeats before each transaction (kafkajs sends one only once its interval has passed, so
 * this is free between batches) and throws MembershipLostError when the group has moved on: a member
 * that was frozen past its session learns it here, before it could apply a partition that is no
 * longer its own. A heartbeat Kafka does not answer (an outage) is no reason to stop applying.
 */
async function stillMember(topic: string, partition: number, heartbeat: () => Promise<void>): Promise<void> {
  try {
    await heartbeat();
  } catch (error) {
    if (isGroupMembershipLost(error)) throw new MembershipLostError(topic, partition, error);
  }
}

/**
 * How a read of PostgreSQL outside a step waits out an outage: the step's policy, its line, the
 * health flag; `signal` ends the wait with a RetryError.
 */
export function databaseWait(
  what: string,
  deps: { stats: ConsumeStats; logger: Logger; signal: AbortSignal },
): WaitOutOptions {
  return {
    what,
    policy: OUTAGE,
    signal: deps.signal,
    firstAttemptGraceMs: FIRST_ATTEMPT_GRACE_MS,
    isRetriable: (error) => waitedFor(error) === "PostgreSQL",
    onWait: (error, attempt, delayMs) => {
      deps.stats.markDown("database");
      deps.stats.countRetry();
      deps.logger.warn(`waiting for PostgreSQL (${what})`, {
        attempt,
        retryInMs: delayMs,
        error: describeError(error),
      });
    },
  };
}

/**
 * Waits for every one of `promises` (so no statement of a transaction is still in flight when it
 * ends) and returns their values; throws the first one's error, in array order, that failed.
 */
async function allSettledOrFirstError<T extends readonly unknown[]>(
  promises: T,
): Promise<{ -readonly [K in keyof T]: Awaited<T[K]> }> {
  const results = await Promise.allSettled(promises);
  for (const result of results) if (result.status === "rejected") throw result.reason;
  return results.map((r) => (r as PromiseFulfilledResult<unknown>).value) as {
    -readonly [K in keyof T]: Awaited<T[K]>;
  };
}

/**
 * `work`, or UnansweredError once it goes without an answer past PostgreSQL's own limits on a batch's
 * transaction (lock_timeout, idle_in_transaction_session_timeout: the session timeout), with room
 * for a slow machine: only a query postgres.js lost goes that long.
 */
async function answered<T>(work: Promise<T>, what: string, config: Pick<ConsumeConfig, "sessionTimeoutS">): Promise<T> {
  const ms = Math.max(60_000, 2 * config.sessionTimeoutS * 1000);
  const result = await withinDeadline(work, ms, () => new UnansweredError(what, ms));
  if (result instanceof UnansweredError) throw result;
  return result;
}

/**
 * Work PostgreSQL never answered: postgres.js 3.4.9 can lose a query written to a connection that
 * has just closed (lib/database.ts, isClosedConnectionWrite), and its promise then never settles.
 * It is waited out as an outage (its code), on another connection of the pool. A transaction given
 * up on cannot commit later (its connection is gone); if it could, the next attempt's claim would
 * wait for it and find the offset moved: nothing applies twice.
 */
export class UnansweredError extends PipelineError {
  readonly code = "ETIMEDOUT";

  /** `what` went `ms` without an answer. */
  constructor(what: string, ms: number) {
    super(`${what} got no answer from PostgreSQL in ${ms / 1000} s (a query lost on a closed connection); made again`);
  }
}

/** What a failed step waits for before it is tried again; undefined when waiting will not help. */
function waitedFor(error: unknown): "PostgreSQL" | "Kafka (DLQ)" | undefined {
  if (error instanceof FencedError || error instanceof MembershipLostError || error instanceof PartitionMovedError) {
    return undefined;
  }
  const kind = classify(error);
  if (dependencyOf(error) === "kafka") return kind === "outage" ? "Kafka (DLQ)" : undefined;
  return kind === "outage" || kind === "transient" ? "PostgreSQL" : undefined;
}

/** Parses every record and checks its key; the ones that break the contract are bound for the DLQ with the reason. */
function validate(
  parse: (value: KafkaMessage["value"]) => UserChange | OrderChange,
  messages: KafkaMessage[],
): Validated {
  const validated: Validated = { valid: [], invalid: [] };
  for (const message of messages) {
    try {
      const change = parse(message.value);
      checkRecordKey(message.key, change);
      validated.valid.push({ message, change });
    } catch (error) {
      if (!(error instanceof InvalidEventError)) throw error;
      validated.invalid.push({ message, reason: error.message });
    }
  }
  return validated;
}

/** The records of `validated` at or after `start`: a step's share of its batch, parsed once. */
function from(validated: Validated, start: bigint): Validated {
  const atOrAfter = (message: KafkaMessage) => BigInt(message.offset) >= start;
  const { valid, invalid } = validated;
  if ((valid.length === 0 || atOrAfter(valid[0].message)) && (invalid.length === 0 || atOrAfter(invalid[0].message))) {
    return validated;
  }
  return { valid: valid.filter((v) => atOrAfter(v.message)), invalid: invalid.filter((d) => atOrAfter(d.message)) };
}

/**
 * Where the step ends and what goes to the DLQ: everything before a blocked order, or the whole
 * batch. `decide` says whether the blocking order has waited `orderWaitS` for its user.
 */
async function settle(
  messages: KafkaMessage[],
  { valid, invalid }: Validated,
  outcome: ApplyOutcome,
  batchEnd: bigint,
  decide: (offset: string) => Promise<WaitDecision>,
  orderWaitS: number,
): Promise<Omit<StepResult, "applyMs">> {
  const rejected = outcome.rejected.map((r) => ({ message: valid[r.index].message, reason: r.reason }));
  let next = batchEnd;
  let blocked: StepResult["blocked"];
  if (outcome.blocked) {
    const { message, change } = valid[outcome.blocked.index];
    const { userId } = outcome.blocked;
    const decision = await decide(message.offset);
    if (decision.expired) {
      rejected.push({
        message,
        reason: `user ${userId} of order ${change.id} did not exist after waiting ${orderWaitS}s`,
      });
      next = BigInt(message.offset) + 1n;
    } else {
      next = BigInt(message.offset);
      blocked = { offset: message.offset, userId, ...decision };
    }
  }
  const deadLettered = [...invalid.filter((d) => BigInt(d.message.offset) < next), ...rejected]
    .sort((a, b) => (BigInt(a.message.offset) < BigInt(b.message.offset) ? -1 : 1));
  const done = messages.filter((m) => BigInt(m.offset) < next).length;
  return { next, applied: done - deadLettered.length, deadLettered, blocked };
}
