/**
 * Logging to stderr, as human lines or JSON lines, with every known secret masked before a
 * line is written, whatever the caller passed in.
 * @module
 */
import process from "node:process";

/** Severity of a log line. */
export type Level = "debug" | "info" | "warn" | "error";

/** Fields attached to a log line. */
export type Fields = Record<string, unknown>;

/** A logger with one method per level. */
export interface Logger {
  /** Detail for debugging; hidden unless LOG_LEVEL=debug. */
  debug(message: string, fields?: Fields): void;
  /** Normal progress. */
  info(message: string, fields?: Fields): void;
  /** Something is wrong but being handled (waiting, retrying). */
  warn(message: string, fields?: Fields): void;
  /** Something failed. */
  error(message: string, fields?: Fields): void;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** `human` or `json`. @default "human" */
  format?: "human" | "json";
  /** Name of the component, first on each line. */
  component: string;
  /** Strings that must never be written (passwords); each becomes `***`. */
  secrets?: string[];
  /** Lowest level written. @default "info" */
  level?: Level;
  /** Where lines go. @default stderr */
  write?: (line: string) => void;
  /** Time of a line. @default the system clock */
  now?: () => Date;
}

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Creates a logger that masks `secrets` in every line it writes. */
export function createLogger(options: LoggerOptions): Logger {
  const {
    format = "human",
    component,
    level = "info",
    write = (line: string) => process.stderr.write(line + "\n"),
    now = () => new Date(),
  } = options;
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 3);
  const mask = (text: string) => maskUrlCredentials(secrets.reduce((t, secret) => t.split(secret).join("***"), text));
  // Masking runs on the raw strings, before JSON escaping could change how a secret is spelled,
  // and once more on the finished line for anything serialised some other way.
  const masked = (_key: string, value: unknown): unknown =>
    typeof value === "bigint" ? value.toString() : typeof value === "string" ? mask(value) : value;
  const emit = (lvl: Level, message: string, fields: Fields = {}) => {
    if (ORDER[lvl] < ORDER[level]) return;
    let line: string;
    if (format === "json") {
      const entries = Object.entries(fields).map(([k, v]) => [mask(k), v]);
      line = JSON.stringify(
        { ts: now().toISOString(), level: lvl, component, msg: message, ...Object.fromEntries(entries) },
        masked,
      );
    } else {
      const extra = Object.entries(fields).map(([k, v]) =>
        `${k}=${typeof v === "string" ? v : JSON.stringify(v, masked)}`
      );
      line = [now().toISOString(), lvl.toUpperCase().padEnd(5), `${component}:`, message, ...extra].join(" ");
    }
    write(mask(line));
  };
  return {
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

/** The logger of a command run: the configured format, its secrets masked, debug lines with LOG_LEVEL=debug. */
export function commandLogger(
  component: string,
  config: { logFormat: "human" | "json"; databaseUrl?: string; kafkaSasl?: { password: string } },
  env: Record<string, string | undefined>,
): Logger {
  return createLogger({
    component,
    format: config.logFormat,
    secrets: secretsOf(config),
    level: env.LOG_LEVEL === "debug" ? "debug" : "info",
  });
}

/**
 * `text` with the password of every URL in it (`scheme://user:***@`) and every `password=` value
 * masked: the net under the named secrets, for URLs a library quotes in its own errors.
 */
export function maskUrlCredentials(text: string): string {
  return text.replace(/(\b[a-z][a-z0-9+.-]*:\/\/[^\s:/@'"]*:)[^\s/@'"]+@/gi, "$1***@")
    .replace(/(\bpassword=)[^\s&'"]+/gi, "$1***");
}

/** The secrets found in a configuration: the database password (every spelling) and the SASL password. */
export function secretsOf(config: { databaseUrl?: string; kafkaSasl?: { password: string } }): string[] {
  const found: string[] = [];
  const { databaseUrl = "" } = config;
  let url: URL | undefined;
  try {
    url = new URL(databaseUrl);
  } catch {
    // An unparsable URL still names its password: between "user:" and the last "@".
    const raw = /^[a-z]+:\/\/[^:/@]*:([^]*)@[^@]*$/i.exec(databaseUrl)?.[1];
    if (raw) found.push(raw);
  }
  if (url?.password) found.push(url.password);
  const param = /[?&]password=([^&#]*)/i.exec(databaseUrl)?.[1];
  if (param) found.push(param);
  if (config.kafkaSasl?.password) found.push(config.kafkaSasl.password);
  // Lines may show a password raw, percent-encoded or decoded.
  const secrets = new Set<string>();
  for (const secret of found) {
    secrets.add(secret);
    secrets.add(encodeURIComponent(secret));
    try {
      secrets.add(decodeURIComponent(secret));
    } catch {
      // not percent-encoded
    }
  }
  return [...secrets].filter(Boolean).sort((a, b) => b.length - a.length);
}

/**
 * Routes process warnings to `logger`, so they are log lines like the rest. kafkajs 2.2.4's
 * negative timer, once a TimeoutNegativeWarning per run, is gone with lib/kafkajs_fixes.ts.
 */
export function routeProcessWarnings(logger: Logger): void {
  process.removeAllListeners("warning");
  process.on("warning", (warning) => logger.warn(`${warning.name}: ${warning.message}`));
}
