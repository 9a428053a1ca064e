/**
 * Telling a Kafka listener the client cannot speak to from a broker that is away. A client without
 * the SASL settings of a SASL listener, or without TLS at a TLS listener, has every connection
 * accepted, then closed: a SASL listener answers ApiVersions (allowed before authentication) and
 * closes at the next request; a TLS listener closes at the first bytes that are no TLS handshake.
 * kafkajs reports both as a closed connection, as it does a broker going down, so only persistence
 * tells them apart: a restarting broker closes connections for moments, then refuses them, then
 * answers, and each of those ends the run of closes. Closes with no answer between them, unbroken
 * for {@linkcode SILENT_CLOSES_MS}, stop the wait with one line naming the likely cause.
 * @module
 */
import type { RequestEvent } from "kafkajs";
import { PipelineError } from "./errors.ts";

/** How long connections must keep being closed unanswered before the listener, not an outage, is blamed. */
export const SILENT_CLOSES_MS = 30_000;

/** Requests a SASL listener answers before authentication: an answer to them does not show the client is understood. */
const BEFORE_AUTHENTICATION = new Set(["ApiVersions", "SaslHandshake"]);

/** Connections accepted and closed unanswered at every attempt: a listener that needs SASL or TLS settings the client lacks. */
export class KafkaListenerError extends PipelineError {
  /** Names the brokers, how long and how often they closed the connection, and the settings to check; `cause` is the last close. */
  constructor(brokers: string[], lastedMs: number, attempts: number, cause: unknown) {
    super(
      `Kafka at ${brokers.join(",")} accepted the connection and closed it unanswered at ${attempts} attempts ` +
        `over ${Math.round(lastedMs / 1000)} s: likely a SASL or TLS listener; set KAFKA_SASL_MECHANISM, ` +
        `KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or KAFKA_TLS=true, as the listener requires`,
      { cause },
    );
  }
}

/** Whether `error`, or an error that caused it, is a connection the broker closed or reset once accepted. */
export function isClosedConnection(error: unknown): boolean {
  const e = error as { name?: unknown; code?: unknown; cause?: unknown } | null;
  if (e === null || typeof e !== "object") return false;
  if (e.name === "KafkaJSConnectionClosedError") return true;
  if (e.name === "KafkaJSConnectionError" && e.code === "ECONNRESET") return true;
  return isClosedConnection(e.cause);
}

/** A kafkajs admin, producer or consumer, as far as its request events go. */
type Instrumented = {
  events: { REQUEST: string };
  on(eventName: string, listener: (event: RequestEvent) => void): unknown;
};

/**
 * One client's run of connections closed unanswered, fed the answers its Kafka clients get and the
 * failures of its Kafka waits; `now` is injected by tests.
 */
export class SilentCloses {
  /** When the unbroken run of closes began. */
  #since?: number;
  /** Failures in the run. */
  #count = 0;
  /** Whether a request was answered since the last failure. */
  #answered = false;

  /** A tracker for a client of `brokers`. */
  constructor(readonly brokers: string[], readonly now: () => number = Date.now) {}

  /** Hears every answer `client` gets: any but those a SASL listener gives before authentication ends a run. */
  hear(client: Instrumented): void {
    client.on(client.events.REQUEST, (event: RequestEvent) => {
      if (!BEFORE_AUTHENTICATION.has(event.payload.apiName)) this.answered();
    });
  }

  /** A request was answered: the listener understands this client. */
  answered(): void {
    this.#answered = true;
    this.#since = undefined;
    this.#count = 0;
  }

  /**
   * Takes a failed attempt's error and returns what to throw: a {@linkcode KafkaListenerError} once
   * closes with no answer between them have lasted {@linkcode SILENT_CLOSES_MS}, or when a wait's
   * last attempt (`lastOf` its attempts) ends a run as long as the wait; else `error` itself. A
   * close just after an answer is a connection that worked (a broker going down), any other failure
   * (refused, a timeout) an outage: neither counts, and both end the run.
   */
  failed(error: unknown, lastOf?: number): unknown {
    const silent = !this.#answered && isClosedConnection(error);
    this.#answered = false;
    if (!silent) {
      this.#since = undefined;
      this.#count = 0;
      return error;
    }
    const now = this.now();
    this.#since ??= now;
    this.#count++;
    const lasted = now - this.#since;
    if (lasted < SILENT_CLOSES_MS && (lastOf === undefined || this.#count < lastOf)) return error;
    return new KafkaListenerError(this.brokers, lasted, this.#count, error);
  }

  /** `fn` as the attempts of a wait of at most `maxAttempts` (retry, waitOut), each failure judged by {@linkcode failed}. */
  judged<T>(fn: () => Promise<T>, maxAttempts = Infinity): (attempt: number) => Promise<T> {
    return async (attempt) => {
      try {
        return await fn();
      } catch (error) {
        throw this.failed(error, attempt >= maxAttempts ? attempt : undefined);
      }
    };
  }
}
