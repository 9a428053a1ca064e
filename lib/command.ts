/**
 * The one skeleton of every command (produce, capture, consume, dlq): read the command line
 * (`--version`, `--help` rendered from lib/config.ts' settings, a bad value or a flag the command
 * does not take as one line with exit 2), build the logger, take the stop signal, run, log the
 * summary the run returns, and answer the exit code. A setting found unusable once running (a TLS
 * file of DATABASE_URL) is one line and exit 2 too; any other failure is one line and exit 1.
 * @module
 */
import { type CommandName, ConfigError, type Parsed, settingsOf } from "./config.ts";
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

/** What a command line asks for: a run with a configuration, or an exit once the answer is printed. */
export type CommandLine<T> = { config: T } | { exitCode: number };

/** What {@linkcode readCommandLine} needs to know about a command. */
export interface CommandSpec<T> {
  /** One paragraph on what the command does, shown in `--help`. */
  summary: string;
  /** The project's version, for `--version`. */
  version: string;
  /** Reads the command's configuration from its flags and environment. */
  load: (args: string[], env: Env) => Parsed<T>;
}

/**
 * Reads the flags of `cdc-<command>`: prints the version or the help (exit 0), or a bad value as
 * one line (exit 2), or returns the configuration to run with.
 */
export function readCommandLine<T>(
  command: CommandName,
  args: string[],
  env: Env,
  spec: CommandSpec<T>,
  print: CommandIo = { out: console.log, err: console.error },
): CommandLine<T> {
  if (args.includes("--version")) {
    print.out(`cdc-${command} ${spec.version}`);
    return { exitCode: 0 };
  }
  let parsed: Parsed<T>;
  try {
    parsed = spec.load(args, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    print.err(`cdc-${command}: ${error.message}`);
    return { exitCode: 2 };
  }
  if (parsed.help) {
    print.out(helpText(command, spec.summary));
    return { exitCode: 0 };
  }
  return { config: parsed.config };
}

/** What a command line holds before its flags, in its usage line. */
const POSITIONALS: Partial<Record<CommandName, string>> = { "consume dlq": "list|replay " };

/** The `--help` text of a command: usage line, then every flag it takes with its env variable. */
export function helpText(command: CommandName, summary: string): string {
  const lines = [
    `usage: cdc-${command} ${POSITIONALS[command] ?? ""}[flags]`,
    "",
    summary,
    "",
    "flags (each also read from the env variable shown):",
  ];
  for (const setting of settingsOf(command)) {
    const left = `  --${setting.flag}${setting.type === "string" ? " VALUE" : ""}`;
    const fallback = setting.default === undefined ? "" : ` (default ${setting.default})`;
    lines.push(`${left.padEnd(28)} ${setting.help}${fallback}${setting.env ? ` [${setting.env}]` : ""}`);
  }
  return lines.join("\n");
}
