/**
 * Process-level wiring of the long-running commands (consume, capture): the stop signals, and
 * uncaught errors, of which exactly one is survived.
 * @module
 */
import process from "node:process";
import type { Logger } from "./log.ts";
import { describeError } from "./errors.ts";
import { isClosedConnectionWrite } from "./sink.ts";

/** Resolves on the first SIGINT or SIGTERM, after logging it with what the command does next. */
export function stopOnSignal(logger: Logger, next: string): Promise<void> {
  return new Promise((resolve) => {
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
      process.on(signal, () => {
        logger.info(`${signal} received: ${next}`);
        resolve();
      });
    }
  });
}

/**
 * Survives postgres.js' write to a connection that has just closed (lib/sink.ts,
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
