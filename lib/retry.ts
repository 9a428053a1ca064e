/**
 * Retrying with exponential backoff, jitter and a budget, stopped early by an AbortSignal, and
 * the named backoff policies every wait of the project uses ({@linkcode waitOut}). What is worth
 * retrying is the caller's predicate, built on lib/errors.ts' classify().
 *
 * Waits end one way on a stop: {@linkcode sleep} resolves `false` when the signal aborted (true
 * when the time passed), and {@linkcode retry} / {@linkcode waitOut} throw a RetryError whose
 * `cause` is the last failure.
 * @module
 */
import { DEFAULTS } from "./config.ts";
import { describeError, PipelineError } from "./errors.ts";

/** How long to wait between attempts, and how many to make. */
export interface BackoffPolicy {
  /** First delay in milliseconds, doubled per attempt with jitter. */
  readonly baseMs: number;
  /** Largest delay in milliseconds. */
  readonly capMs: number;
  /** Attempts before giving up; Infinity waits until the signal aborts. */
  readonly maxAttempts: number;
}

/** A dependency that is away (PostgreSQL, Kafka): waited out forever, 0.5 s doubling to 10 s. */
export const OUTAGE: BackoffPolicy = Object.freeze({ baseMs: 500, capMs: 10_000, maxAttempts: Infinity });

/** A transaction that met another (deadlock, serialization failure): tried again soon, forever. */
export const TRANSIENT: BackoffPolicy = Object.freeze({ baseMs: 100, capMs: 2_000, maxAttempts: Infinity });

/** A send to Kafka: a budget of attempts, then the error (the producer's flags may set its own). */
export const SEND: BackoffPolicy = Object.freeze({
  baseMs: DEFAULTS.retryBackoffMs,
  capMs: 10_000,
  maxAttempts: DEFAULTS.maxAttempts,
});

/** A retry budget that ran out; `cause` is the last error. */
export class RetryError extends PipelineError {
  /** Creates the error naming the attempts spent and the last cause. */
  constructor(readonly what: string, readonly attempts: number, cause: unknown) {
    super(`${what} failed after ${attempts} attempts: ${describeError(cause)}`, { cause });
  }
}

/** Options of {@linkcode retry}. */
export interface RetryOptions {
  /** What is being attempted, for messages ("sending to users"). */
  what: string;
  /** Attempts before giving up; Infinity waits forever. @default 8 */
  maxAttempts?: number;
  /** First delay in milliseconds, doubled per attempt. @default 250 */
  baseMs?: number;
  /** Largest delay in milliseconds. @default 10000 */
  capMs?: number;
  /** Whether an error is worth another attempt. @default every error */
  isRetriable?: (error: unknown) => boolean;
  /** Called before each wait, with the attempt that failed and the delay chosen. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Aborted on shutdown: a wait ends at once and the last error is thrown as a RetryError. */
  signal?: AbortSignal;
  /** Source of jitter in [0, 1). @default Math.random */
  random?: () => number;
  /**
   * Lets a stop abandon an attempt in flight: the first after this many milliseconds, later ones at
   * once. Only where abandoning loses nothing. @default attempts are never abandoned
   */
  firstAttemptGraceMs?: number;
  /** Waits, ending early when `signal` aborts; injected by tests. @default {@linkcode sleep} */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<unknown>;
}

/** Exponential backoff with "equal jitter": half the step fixed, half random, capped. */
export function backoffDelay(
  attempt: number,
  baseMs: number,
  capMs: number,
  random: () => number = Math.random,
): number {
  const step = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(step / 2 + random() * (step / 2));
}

/** Resolves `true` after `ms` milliseconds, or `false` as soon as `signal` aborts (at once if it has). */
export function sleep(ms: number, signal?: AbortSignal): Promise<boolean> {
  if (signal?.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (elapsed: boolean) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", aborted);
      resolve(elapsed);
    };
    const aborted = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

/**
 * `work`'s result, or `late()`'s value once `ms` pass without one. Work given up on is left to
 * settle unobserved: its later failure is not an unhandled rejection.
 */
export async function withinDeadline<T, L>(work: Promise<T>, ms: number, late: () => L): Promise<T | L> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<L>((resolve) => (timer = setTimeout(() => resolve(late()), ms)));
  work.catch(() => {});
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `fn` until it succeeds, the error is not retriable, or the budget is spent. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const {
    what,
    maxAttempts = 8,
    baseMs = 250,
    capMs = 10_000,
    isRetriable = () => true,
    onRetry,
    signal,
    random = Math.random,
    sleep: wait = sleep,
    firstAttemptGraceMs,
  } = options;
  if (!(maxAttempts >= 1)) throw new RangeError(`maxAttempts must be >= 1: current value is ${maxAttempts}`);
  let lastError: unknown;
  for (let attempt = 1;; attempt++) {
    try {
      // An attempt can hang on a dependency that went away (postgres.js waits out its own reconnect
      // backoff, up to 20 s). Where the caller allows it, a stop abandons the attempt: at once while
      // waiting out a failure, after the grace for the first attempt, the work in hand.
      if (!signal || firstAttemptGraceMs === undefined) return await fn(attempt);
      return await untilAborted(fn(attempt), signal, attempt === 1 ? firstAttemptGraceMs : 0);
    } catch (error) {
      if (error === ABANDONED) throw new RetryError(what, attempt, lastError ?? new Error("stopped in flight"));
      lastError = error;
      if (!isRetriable(error)) throw error;
      if (attempt >= maxAttempts || signal?.aborted) throw new RetryError(what, attempt, error);
      const delay = backoffDelay(attempt, baseMs, capMs, random);
      onRetry?.(error, attempt, delay);
      await wait(delay, signal);
      if (signal?.aborted) throw new RetryError(what, attempt, error);
    }
  }
}

/**
 * How long a stop lets a first attempt in flight finish before abandoning it, where abandoning
 * loses nothing (a read; a transaction whose effect and offset commit together).
 */
export const FIRST_ATTEMPT_GRACE_MS = 2_000;

/** What an abandoned attempt rejects with: never seen outside {@linkcode retry}. */
const ABANDONED = Symbol("abandoned");

/**
 * `work`, or a rejection with {@linkcode ABANDONED} once `signal` has been aborted for `graceMs`
 * (counted from the call when it already is); `work`'s own outcome is then dropped.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal, graceMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const abandon = () => {
      work.catch(() => {});
      reject(ABANDONED);
    };
    const aborted = () => (timer = setTimeout(abandon, graceMs));
    if (signal.aborted) aborted();
    else signal.addEventListener("abort", aborted, { once: true });
    work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal.removeEventListener("abort", aborted);
    });
  });
}

/** Options of {@linkcode waitOut}. */
export interface WaitOutOptions {
  /** What is waited for, for messages ("PostgreSQL"). */
  what: string;
  /** The numbers of the wait: {@linkcode OUTAGE}, {@linkcode TRANSIENT}, {@linkcode SEND} or a send budget. */
  policy: BackoffPolicy;
  /** Whether a failure is waited out; any other is thrown at once. */
  isRetriable: (error: unknown) => boolean;
  /** Aborted on shutdown: the wait ends and the last failure is thrown as a RetryError. */
  signal?: AbortSignal;
  /** Called before each wait, with the failure, the attempt that failed and the delay chosen. */
  onWait?: (error: unknown, attempt: number, delayMs: number) => void;
  /** Lets a stop abandon an attempt in flight (see {@linkcode RetryOptions}). @default never */
  firstAttemptGraceMs?: number;
}

/** Runs `fn` until it succeeds, waiting between attempts as `policy` says while `isRetriable` holds. */
export async function waitOut<T>(fn: (attempt: number) => Promise<T>, options: WaitOutOptions): Promise<T> {
  const { policy, onWait, ...rest } = options;
  return await retry(fn, { ...rest, ...policy, onRetry: onWait });
}
