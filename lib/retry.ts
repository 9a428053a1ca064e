/**
 * The consumer's one error taxonomy and the retry loop built on it. A failure either belongs to
 * a record (it goes to the DLQ), is transient (retry the transaction at once), is an outage
 * (wait with backoff, commit nothing, never dead-letter), or is fatal (stop the run with one
 * line: waiting would never end). Decided by SQLSTATE classes, socket codes and Kafka error
 * types, never by message text.
 * @module
 */

/** What a failure means for the record that met it, and for the run. */
export type FailureKind = "record" | "transient" | "outage" | "fatal";

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
  /** Stops waiting when it returns false (shutdown); the last error is thrown. */
  keepGoing?: () => boolean;
  /** Source of jitter in [0, 1). @default Math.random */
  random?: () => number;
  /** Waits; injected by tests. @default setTimeout */
  sleep?: (ms: number) => Promise<void>;
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

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
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
    keepGoing = () => true,
    random = Math.random,
    sleep: wait = sleep,
  } = options;
  if (!(maxAttempts >= 1)) throw new RangeError(`maxAttempts must be >= 1: current value is ${maxAttempts}`);
  for (let attempt = 1;; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (!isRetriable(error)) throw error;
      if (attempt >= maxAttempts || !keepGoing()) throw new RetryError(what, attempt, error);
      const delay = backoffDelay(attempt, baseMs, capMs, random);
      onRetry?.(error, attempt, delay);
      await wait(delay);
      if (!keepGoing()) throw new RetryError(what, attempt, error);
    }
  }
}

const SOCKET_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
]);

/** SQLSTATE classes and codes of a server that is away, overloaded or going down: waited out. */
const OUTAGE_SQLSTATE = /^(08|53|57P)|^25006$/;

/**
 * Classifies a PostgreSQL failure. Outages are the socket errors and SQLSTATE class 08
 * (connection), 53 (resources), 57P (shutdown) and 25006 (read-only); 40001 and 40P01
 * (serialization, deadlock) are transient; class 22 (data) and 23 (integrity) belong to the
 * record. Everything else is fatal: a dropped table (42P01), a refused login (28P01), a missing
 * database (3D000), an error with no code at all (a bug of ours) will not pass by waiting.
 */
export function classifyDatabaseError(error: unknown): FailureKind {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string") return "fatal";
  if (SOCKET_CODES.has(code)) return "outage";
  if (!/^[0-9A-Z]{5}$/.test(code)) return "fatal";
  if (OUTAGE_SQLSTATE.test(code)) return "outage";
  if (code === "40001" || code === "40P01") return "transient";
  if (code.startsWith("22") || code.startsWith("23")) return "record";
  return "fatal";
}

/** Whether a Kafka failure is worth waiting out (connection, timeout, leadership, retriable). */
export function isKafkaOutage(error: unknown): boolean {
  const e = error as { name?: string; retriable?: boolean; type?: string; cause?: unknown } | null;
  if (!e) return false;
  if (isKafkaAuthError(error)) return false;
  if (e.retriable === true) return true;
  if (
    e.name === "KafkaJSConnectionError" || e.name === "KafkaJSRequestTimeoutError" ||
    e.name === "KafkaJSNumberOfRetriesExceeded" || e.name === "KafkaJSConnectionClosedError" ||
    e.name === "KafkaJSBrokerNotFound" || e.name === "KafkaJSLockTimeout" || e.name === "KafkaJSMetadataNotLoaded" ||
    e.name === "KafkaJSTopicMetadataNotLoaded" || e.name === "KafkaJSStaleTopicMetadataAssignment"
  ) return true;
  return e.cause !== undefined && isKafkaOutage(e.cause);
}

/** Whether `error` is one of kafkajs' own errors (they all carry a `KafkaJS` name). */
export function isKafkaJSError(error: unknown): boolean {
  const name = (error as { name?: unknown } | null)?.name;
  return typeof name === "string" && name.startsWith("KafkaJS");
}

/** Whether a Kafka failure is a refused login (SASL), which waiting will not fix. */
export function isKafkaAuthError(error: unknown): boolean {
  const e = error as { name?: string; type?: string } | null;
  return e?.name === "KafkaJSSASLAuthenticationError" || e?.type === "SASL_AUTHENTICATION_FAILED" ||
    e?.type === "TOPIC_AUTHORIZATION_FAILED" || e?.type === "GROUP_AUTHORIZATION_FAILED";
}

/** A one-line description of an error: its name or code, then its first message line. */
export function describeError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  const label = typeof code === "string" && code ? `${error.name} ${code}` : error.name;
  const message = (error.message || "").split("\n")[0];
  const cause = error.cause instanceof Error && error.name === "KafkaJSNumberOfRetriesExceeded"
    ? `: ${describeError(error.cause)}`
    : "";
  return `${label}: ${message}${cause}`;
}
