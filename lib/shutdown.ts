/**
 * Process-level wiring of the commands: the one stop signal every command takes (an AbortSignal
 * aborted on the first SIGINT or SIGTERM), and uncaught errors, of which exactly one is survived.
 * @module
 */
import process from "node:process";
import type { Logger } from "./log.ts";
import { describeError } from "./errors.ts";
import { isClosedConnectionWrite } from "./database.ts";

/**
 * The command's stop: aborted on the first SIGINT or SIGTERM, after logging it with what the
 * command does next. The only place that listens to those signals.
 */
export function stopSignal(logger: Logger, next: string): AbortSignal {
  const stop = new AbortController();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, () => {
      if (stop.signal.aborted) return;
      logger.info(`${signal} received: ${next}`);
      stop.abort();
    });
  }
  return stop.signal;
}

/**
 * Survives postgres.js' write to a connection that has just closed (lib/database.ts,
 * isClosedConnectionWrite), logging `survived`; any other uncaught error ends the run with exit 1.
 */
export function exitOnUncaught(logger: Logger, survived: string): void {
  process.on("uncaughtException", (error) => {
    if (isClosedConnectionWrite(error)) {
      logger.warn(survived, { error: describeError(error) });
      return;
    }
    logger.error(`failed: uncaught ${describeError(error)}`);
    process.exit(1);
  });
}
