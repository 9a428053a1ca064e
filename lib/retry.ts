/**
 * Retrying with exponential backoff, jitter and a budget, stopped early by an AbortSignal. What
 * is worth retrying is the caller's predicate, built on lib/errors.ts.
 * @module
 */
import { describeError } from "./errors.ts";

/** A retry budget that ran out; `cause` is the last error. */
export class RetryError extends Error {
  /** Creates the error naming the attempts spent and the last cause. */
  constructor(what: string, attempts: number, cause: unknown) {
    super(`${what} failed after ${attempts} attempts: ${describeError(cause)}`, { cause });
    this.name = "RetryError";
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
  /** Waits, ending early when `signal` aborts; injected by tests. @default {@linkcode sleep} */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
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

/** Resolves after `ms` milliseconds, or as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
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
  } = options;
  if (!(maxAttempts >= 1)) throw new RangeError(`maxAttempts must be >= 1: current value is ${maxAttempts}`);
  for (let attempt = 1;; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (!isRetriable(error)) throw error;
      if (attempt >= maxAttempts || signal?.aborted) throw new RetryError(what, attempt, error);
      const delay = backoffDelay(attempt, baseMs, capMs, random);
      onRetry?.(error, attempt, delay);
      await wait(delay, signal);
      if (signal?.aborted) throw new RetryError(what, attempt, error);
    }
  }
}
