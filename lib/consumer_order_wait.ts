/**
 * The policy for an order whose user is not in PostgreSQL yet (docs/CONTRACT.md invariant 5): its
 * partition pauses and retries with backoff until the user exists, or until `--order-wait`
 * seconds have passed since the group applied every user that was in the users topic when the
 * order blocked. An order is dead-lettered because its user never came, never because the users
 * topic is behind (a Kafka outage, a rebalance, a dead member whose session has not ended).
 * @module
 */
import { backoffDelay } from "./retry.ts";
import type { PartitionKey } from "./partition_key.ts";

/** Where the users topic stands, per partition. */
export type UsersPositions = Map<number, bigint>;

/** Options of {@linkcode OrderWaits}. */
export interface OrderWaitOptions {
  /** How long an order waits once the users topic has caught up, in seconds. */
  waitS: number;
  /** End offsets (high watermarks) of the users partitions now; may throw when Kafka is away. */
  usersLogEnds: () => Promise<UsersPositions>;
  /** Next offsets the tables have applied, per users partition (absent: none yet). */
  usersApplied: () => Promise<UsersPositions>;
  /** Milliseconds since the epoch. @default Date.now */
  now?: () => number;
  /** Source of jitter in [0, 1). @default Math.random */
  random?: () => number;
}

/** What to do with a blocked order now. */
export interface WaitDecision {
  /** The deadline has passed: dead-letter the order and go on. */
  expired: boolean;
  /** Otherwise, retry the partition after this many milliseconds. */
  retryInMs: number;
  /** Whether the deadline counts yet (it starts once the users topic has caught up). */
  deadlineCounting: boolean;
  /** Retries of this order so far. */
  attempt: number;
}

interface Wait {
  offset: string;
  attempt: number;
  usersEnds?: UsersPositions;
  since?: number;
}

/** Backoff of a blocked partition: from 200 ms, doubled per retry, at most 5 s. */
const RETRY_BASE_MS = 200;
const RETRY_CAP_MS = 5_000;

/** The wait state of every partition that holds a blocked order, keyed `topic:partition`. */
export class OrderWaits {
  #waits = new Map<PartitionKey, Wait>();
  #options: Required<OrderWaitOptions>;

  /** Creates the policy; `options` gives the deadline, the clock and where positions come from. */
  constructor(options: OrderWaitOptions) {
    this.#options = { now: Date.now, random: Math.random, ...options };
  }

  /** Partitions holding a blocked order. */
  get size(): number {
    return this.#waits.size;
  }

  /** Decides for the order at `offset` that blocks partition `key`: dead-letter it, or retry after a delay. */
  async decide(key: PartitionKey, offset: string): Promise<WaitDecision> {
    const { waitS, now, random } = this.#options;
    const previous = this.#waits.get(key);
    const wait: Wait = previous?.offset === offset
      ? { ...previous, attempt: previous.attempt + 1 }
      : { offset, attempt: 1 };
    this.#waits.set(key, wait);
    wait.usersEnds ??= await this.#options.usersLogEnds().catch(() => undefined);
    if (wait.since === undefined && wait.usersEnds && await this.#usersCaughtUp(wait.usersEnds)) wait.since = now();
    const backoffMs = backoffDelay(wait.attempt, RETRY_BASE_MS, RETRY_CAP_MS, random);
    if (wait.since === undefined) {
      return { expired: false, retryInMs: backoffMs, deadlineCounting: false, attempt: wait.attempt };
    }
    const leftMs = wait.since + waitS * 1000 - now();
    return {
      expired: leftMs <= 0,
      // Wake just after the deadline rather than up to a whole backoff step past it.
      retryInMs: Math.min(Math.max(0, leftMs) + 10, backoffMs),
      deadlineCounting: true,
      attempt: wait.attempt,
    };
  }

  /** Forgets the wait of partition `key` (its order applied or was dead-lettered). */
  forget(key: PartitionKey): void {
    this.#waits.delete(key);
  }

  /** Keeps only the waits of `assigned` partitions: the others moved to another member. */
  keepOnly(assigned: ReadonlySet<string>): void {
    for (const key of this.#waits.keys()) if (!assigned.has(key)) this.#waits.delete(key);
  }

  async #usersCaughtUp(ends: UsersPositions): Promise<boolean> {
    const applied = await this.#options.usersApplied().catch(() => undefined);
    if (!applied) return false;
    return [...ends].every(([partition, end]) => (applied.get(partition) ?? 0n) >= end);
  }
}
