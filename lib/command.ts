/**
 * The one skeleton of every command (produce, capture, consume, dlq): parse the command line
 * (`--version`, `--help`, a bad value as one line with exit 2), build the logger, take the stop
 * signal, run, log the summary the run returns, and answer the exit code. A setting found
 * unusable once running (a TLS file of DATABASE_URL) is one line and exit 2 too; any other
 * failure is one line and exit 1.
 * @module
 */
import { type CommandName, ConfigError, type Parsed, readCommandLine } from "./config.ts";
import { describeError } from "./errors.ts";
import { commandLogger, type Logger, routeProcessWarnings } from "./log.ts";
import { exitOnUncaught, stopSignal } from "./shutdown.ts";
import { VERSION } from "./version.ts";

type Env = Record<string, string | undefined>;

/** What a command's run is given besides its configuration. */
export interface CommandContext {
  /** Where progress and warnings go. */
  logger: Logger;
  /** Aborted on the first SIGINT or SIGTERM. */
  signal: AbortSignal;
  /** Writes one line to stdout (records, dry-run output). */
  out: (line: string) => void;
}

/** A command, as {@linkcode runCommand} runs it. */
export interface CommandDefinition<C, S> {
  /** The command line's name after `cdc-`: `produce`, `consume`, `produce capture`, `consume dlq`. */
  name: CommandName;
  /** The logger's component. */
  component: string;
  /** One paragraph on what the command does, shown in `--help`. */
  summary: string;
  /** Reads the configuration from the flags and the environment. */
  load: (args: string[], env: Env) => Parsed<C>;
  /** What the command does once asked to stop, for the log line. */
  onStop: string;
  /** When set, postgres.js' write to a just-closed connection is survived with this warning. */
  survives?: string;
  /** The run; returns its summary. */
  run: (config: C, context: CommandContext) => Promise<S>;
  /** The summary's log message and the exit code. @default "done", 0 */
  outcome?: (summary: S) => { message: string; exitCode: number };
}

/** Where a command writes besides its logger. */
export interface CommandIo {
  /** stdout. */
  out: (line: string) => void;
  /** stderr, for the command line's own answers. */
  err: (line: string) => void;
}

/** Runs `definition` on `args`: parse, config, logger, signal, run, summary; returns the exit code. */
export async function runCommand<C extends Parameters<typeof commandLogger>[1], S extends object>(
  definition: CommandDefinition<C, S>,
  args: string[],
  env: Env,
  io: CommandIo = { out: (line) => console.log(line), err: (line) => console.error(line) },
): Promise<number> {
  const { name, summary, load } = definition;
  const commandLine = readCommandLine(name, args, env, { summary, version: VERSION, load }, io);
  if ("exitCode" in commandLine) return commandLine.exitCode;
  const { config } = commandLine;
  const logger = commandLogger(definition.component, config, env);
  routeProcessWarnings(logger);
  if (definition.survives) exitOnUncaught(logger, definition.survives);
  const signal = stopSignal(logger, definition.onStop);
  try {
    const result = await definition.run(config, { logger, signal, out: io.out });
    const { message, exitCode } = definition.outcome?.(result) ?? { message: "done", exitCode: 0 };
    logger.info(message, { ...result } as Record<string, unknown>);
    return exitCode;
  } catch (error) {
    if (error instanceof ConfigError) {
      logger.error(`cdc-${name}: ${error.message}`);
      return 2;
    }
    logger.error(`failed: ${describeError(error)}`);
    return 1;
  }
}
