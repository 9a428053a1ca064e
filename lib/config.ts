/**
 * Configuration for both commands: docs/CONTRACT.md section 5. Every value comes from a default
 * written once here, then the environment, then a command-line flag, in that order.
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { PipelineError } from "./errors.ts";

/** Kafka SASL credentials, for brokers that ask for them. */
export interface SaslConfig {
  /** `plain`, `scram-sha-256` or `scram-sha-512`. */
  mechanism: "plain" | "scram-sha-256" | "scram-sha-512";
  /** SASL user name. */
  username: string;
  /** SASL password; never logged. */
  password: string;
}

/** Settings shared by the producer and the consumer. */
export interface CommonConfig {
  /** Bootstrap brokers. @default ["localhost:9092"] */
  brokers: string[];
  /** libpq URL of the database; `sslmode` is honoured. */
  databaseUrl: string;
  /** Topic of user events. @default "users" */
  usersTopic: string;
  /** Topic of order events. @default "orders" */
  ordersTopic: string;
  /** Partitions of the users topic when it is created. @default 3 */
  usersPartitions: number;
  /** Partitions of the orders topic when it is created. @default 5 */
  ordersPartitions: number;
  /** Replication factor of topics this project creates. @default 1 */
  replicationFactor: number;
  /** Consumer group id. @default "cdc-pipeline-sink" */
  consumerGroup: string;
  /** Connect to Kafka over TLS; implied by `kafkaTlsCa`. @default false */
  kafkaTls: boolean;
  /** PEM certificates of the CA(s) the brokers' certificates must chain to, instead of the system CAs. */
  kafkaTlsCa?: string;
  /** SASL credentials, when the broker needs them. */
  kafkaSasl?: SaslConfig;
  /** `human` lines or `json` lines on stderr. @default "human" */
  logFormat: "human" | "json";
  /** Port of the Prometheus `/metrics` and `/health` endpoint; off when absent. */
  metricsPort?: number;
}

/** Settings of `main_produce.ts`. */
export interface ProduceConfig extends CommonConfig {
  /** User events to generate. @default 1000 */
  users: number;
  /** Order events to generate. @default 2000 */
  orders: number;
  /** Events per Kafka send. @default 1000 */
  batchSize: number;
  /** Seed of a repeatable stream; absent means a new stream each run. */
  seed?: number;
  /** Print events as JSON lines instead of publishing. @default false */
  dryRun: boolean;
  /** Attempts per send before giving up. @default 8 */
  maxAttempts: number;
  /** First retry delay in milliseconds, doubled per attempt with jitter. @default 250 */
  retryBackoffMs: number;
}

/** Settings of `main_consume.ts`. */
export interface ConsumeConfig extends CommonConfig {
  /** Exit after the topics are drained and idle this many seconds; absent means run forever. */
  idleTimeoutS?: number;
  /** How long an order waits for its user before going to the DLQ. @default 30 */
  orderWaitS: number;
  /** Partitions applied at once, each in its own transaction. @default 8 */
  concurrency: number;
  /** Largest fetch per partition in bytes, which bounds a batch (and the consumer's memory). @default 262144 */
  maxBatchBytes: number;
  /** Empty the tables and the stored offsets first, then apply the topics from their first offset. @default false */
  rebuild: boolean;
  /**
   * Seconds a member may go silent before the group gives its partitions to another. It also
   * bounds the member's database transactions (lib/consumer.ts, consumerSessionParameters), so a
   * frozen member cannot hold its partitions' rows longer than that. @default 30
   */
  sessionTimeoutS: number;
}

/** Settings of `main_produce.ts capture` (docs/CONTRACT.md section 7). */
export interface CaptureConfig extends CommonConfig {
  /** Capture topics are `<prefix>.<schema>.<table>`; Debezium's logical name. @default "cdc" */
  topicPrefix: string;
  /** Tables captured, each with a primary key or REPLICA IDENTITY FULL. @default public.users, public.orders */
  tables: { schema: string; table: string }[];
  /** Durable logical replication slot. @default "cdc_slot" */
  slot: string;
  /** Publication of the captured tables. @default "cdc_pub" */
  publication: string;
  /** Most records per Kafka send (sends also stay within each topic's max.message.bytes). @default 2000 */
  batchSize: number;
  /** Drop the slot and publication, then exit. @default false */
  dropSlot: boolean;
  /** Create the slot anew and publish every row again, also when the slot was lost. @default false */
  newSnapshot: boolean;
  /** Records with their schemas (JsonConverter's schemas.enable); false writes payloads only. @default true */
  schemas: boolean;
  /** Compression of the capture's record batches. @default "gzip" */
  compression: "none" | "gzip";
  /** Sends in flight at once, each for its own keys: a key's records are only ever in one. @default 4 */
  inFlight: number;
  /** Record bytes unacknowledged at most before the capture reads on: bounds its memory. @default 8 MiB */
  inFlightBytes: number;
}

/** Defaults of docs/CONTRACT.md section 5, matching compose.yaml and scripts/services.sh. */
export const DEFAULTS = {
  brokers: "localhost:9092",
  databaseUrl: "postgres://postgres:postgres@localhost:5432/cdc_db",
  usersTopic: "users",
  ordersTopic: "orders",
  usersPartitions: 3,
  ordersPartitions: 5,
  replicationFactor: 1,
  consumerGroup: "cdc-pipeline-sink",
  users: 1000,
  orders: 2000,
  batchSize: 1000,
  maxAttempts: 8,
  retryBackoffMs: 250,
  orderWaitS: 30,
  concurrency: 8,
  sessionTimeoutS: 30,
  // 256 KiB (about 1,200 events) per partition: as fast as 1 MiB when draining a backlog, with
  // peak RSS 240 MB instead of 420 MB (deno task bench).
  maxBatchBytes: 262_144,
  captureTopicPrefix: "cdc",
  captureSlot: "cdc_slot",
  capturePublication: "cdc_pub",
  captureBatchSize: 2000,
  captureCompression: "gzip",
  captureInFlight: 4,
  captureInFlightBytes: 8 * 1024 * 1024,
  captureTables: "public.users,public.orders",
} as const;

/** A configuration value that breaks its rule; the message names the flag, rule and value. */
export class ConfigError extends PipelineError {}

/** The result of parsing a command line: either help was asked for, or a configuration. */
export type Parsed<T> = { help: true } | { help: false; config: T };

type Env = Record<string, string | undefined>;

/** The commands whose flags config.ts reads; `consume dlq` also reads the consume flags. */
export const COMMANDS = ["produce", "consume", "produce capture", "consume dlq"] as const;

/** A command whose flags {@linkcode readCommandLine} reads. */
export type CommandName = typeof COMMANDS[number];

/** One setting: its flag, env variable, default, help line and the commands that read it. */
export interface Setting {
  /** The flag, without `--`. */
  flag: string;
  /** The environment variable read when the flag is absent. */
  env?: string;
  /** A `string` flag takes a value; a `boolean` one is set by its presence. */
  type: "string" | "boolean";
  /** The default, as shown in `--help` and the README; absent when there is none or it is off. */
  default?: string | number;
  /** One line saying what it sets. */
  help: string;
  /** The commands that read it. */
  commands: readonly CommandName[];
}

const ALL = COMMANDS;
const CONSUMERS = ["consume", "consume dlq"] as const;

/**
 * Every setting of every command, in `--help` order. The loaders below read values through it
 * and check each against its rule; `--help` and the README's settings table
 * ({@linkcode settingsTable}) are rendered from it.
 */
export const SETTINGS: readonly Setting[] = [
  {
    flag: "brokers",
    env: "KAFKA_BROKERS",
    type: "string",
    default: DEFAULTS.brokers,
    help: "comma-separated bootstrap brokers",
    commands: ALL,
  },
  {
    flag: "database-url",
    env: "DATABASE_URL",
    type: "string",
    default: DEFAULTS.databaseUrl,
    help: "PostgreSQL URL (libpq form)",
    commands: ALL,
  },
  {
    flag: "users-topic",
    env: "USERS_TOPIC",
    type: "string",
    default: DEFAULTS.usersTopic,
    help: "topic of user events",
    commands: ALL,
  },
  {
    flag: "orders-topic",
    env: "ORDERS_TOPIC",
    type: "string",
    default: DEFAULTS.ordersTopic,
    help: "topic of order events",
    commands: ALL,
  },
  {
    flag: "users-partitions",
    env: "USERS_PARTITIONS",
    type: "string",
    default: DEFAULTS.usersPartitions,
    help: "partitions of a new users topic",
    commands: ALL,
  },
  {
    flag: "orders-partitions",
    env: "ORDERS_PARTITIONS",
    type: "string",
    default: DEFAULTS.ordersPartitions,
    help: "partitions of a new orders topic",
    commands: ALL,
  },
  {
    flag: "replication-factor",
    env: "REPLICATION_FACTOR",
    type: "string",
    default: DEFAULTS.replicationFactor,
    help: "replication of new topics",
    commands: ALL,
  },
  {
    flag: "group",
    env: "CONSUMER_GROUP",
    type: "string",
    default: DEFAULTS.consumerGroup,
    help: "consumer group id",
    commands: ALL,
  },
  { flag: "kafka-tls", env: "KAFKA_TLS", type: "boolean", help: "connect to Kafka over TLS", commands: ALL },
  {
    flag: "kafka-ca-file",
    env: "KAFKA_TLS_CA_FILE",
    type: "string",
    help: "PEM file of the brokers' CA (implies TLS)",
    commands: ALL,
  },
  {
    flag: "sasl-mechanism",
    env: "KAFKA_SASL_MECHANISM",
    type: "string",
    help: "plain, scram-sha-256 or scram-sha-512",
    commands: ALL,
  },
  { flag: "sasl-username", env: "KAFKA_SASL_USERNAME", type: "string", help: "SASL user", commands: ALL },
  {
    flag: "sasl-password",
    env: "KAFKA_SASL_PASSWORD",
    type: "string",
    help: "SASL password (prefer the env variable)",
    commands: ALL,
  },
  { flag: "log-format", env: "LOG_FORMAT", type: "string", default: "human", help: "human or json", commands: ALL },
  {
    flag: "metrics-port",
    env: "METRICS_PORT",
    type: "string",
    help: "serve /metrics and /health on this port",
    commands: ALL,
  },
  { flag: "help", type: "boolean", help: "show this help", commands: ALL },
  { flag: "users", type: "string", default: DEFAULTS.users, help: "user events to generate", commands: ["produce"] },
  { flag: "orders", type: "string", default: DEFAULTS.orders, help: "order events to generate", commands: ["produce"] },
  { flag: "batch-size", type: "string", default: DEFAULTS.batchSize, help: "events per send", commands: ["produce"] },
  { flag: "seed", type: "string", help: "seed for a repeatable stream", commands: ["produce"] },
  { flag: "dry-run", type: "boolean", help: "print events as JSON lines, publish nothing", commands: ["produce"] },
  {
    flag: "max-attempts",
    env: "PRODUCE_MAX_ATTEMPTS",
    type: "string",
    default: DEFAULTS.maxAttempts,
    help: "attempts per send",
    commands: ["produce"],
  },
  {
    flag: "retry-backoff-ms",
    env: "PRODUCE_RETRY_BACKOFF_MS",
    type: "string",
    default: DEFAULTS.retryBackoffMs,
    help: "first retry delay",
    commands: ["produce"],
  },
  {
    flag: "idle-timeout",
    env: "IDLE_TIMEOUT",
    type: "string",
    help: "exit once drained and idle this many seconds",
    commands: CONSUMERS,
  },
  {
    flag: "order-wait",
    env: "ORDER_WAIT_SECONDS",
    type: "string",
    default: DEFAULTS.orderWaitS,
    help: "seconds an order waits for its user",
    commands: CONSUMERS,
  },
  {
    flag: "concurrency",
    env: "CONSUMER_CONCURRENCY",
    type: "string",
    default: DEFAULTS.concurrency,
    help: "partitions applied at once",
    commands: CONSUMERS,
  },
  {
    flag: "max-batch-bytes",
    env: "MAX_BATCH_BYTES",
    type: "string",
    default: DEFAULTS.maxBatchBytes,
    help: "fetch bytes per partition",
    commands: CONSUMERS,
  },
  {
    flag: "session-timeout",
    env: "CONSUMER_SESSION_TIMEOUT",
    type: "string",
    default: DEFAULTS.sessionTimeoutS,
    help: "seconds before a silent member loses its partitions and its open transaction",
    commands: CONSUMERS,
  },
  {
    flag: "rebuild",
    type: "boolean",
    help: "empty users, orders and the stored offsets, then rebuild the tables from the start of the topics",
    commands: ["consume"],
  },
  {
    flag: "topic-prefix",
    env: "CAPTURE_TOPIC_PREFIX",
    type: "string",
    default: DEFAULTS.captureTopicPrefix,
    help: "capture topics are <prefix>.<schema>.<table>",
    commands: ["produce capture"],
  },
  {
    flag: "tables",
    env: "CAPTURE_TABLES",
    type: "string",
    default: DEFAULTS.captureTables,
    help: "tables to capture, comma-separated schema.table",
    commands: ["produce capture"],
  },
  {
    flag: "slot",
    env: "CAPTURE_SLOT",
    type: "string",
    default: DEFAULTS.captureSlot,
    help: "replication slot",
    commands: ["produce capture"],
  },
  {
    flag: "publication",
    env: "CAPTURE_PUBLICATION",
    type: "string",
    default: DEFAULTS.capturePublication,
    help: "publication of the captured tables",
    commands: ["produce capture"],
  },
  {
    flag: "batch-size",
    type: "string",
    default: DEFAULTS.captureBatchSize,
    help: "most records per send",
    commands: ["produce capture"],
  },
  {
    flag: "schemas",
    env: "CAPTURE_SCHEMAS",
    type: "string",
    default: "true",
    help: "true: records with schemas, as JsonConverter writes them by default; false: payloads only",
    commands: ["produce capture"],
  },
  {
    flag: "compression",
    env: "CAPTURE_COMPRESSION",
    type: "string",
    default: DEFAULTS.captureCompression,
    help: "compression of the record batches, none or gzip",
    commands: ["produce capture"],
  },
  {
    flag: "in-flight",
    env: "CAPTURE_IN_FLIGHT",
    type: "string",
    default: DEFAULTS.captureInFlight,
    help: "sends in flight at once, each for its own keys",
    commands: ["produce capture"],
  },
  {
    flag: "in-flight-bytes",
    env: "CAPTURE_IN_FLIGHT_BYTES",
    type: "string",
    default: DEFAULTS.captureInFlightBytes,
    help: "record bytes unacknowledged at most before reading on",
    commands: ["produce capture"],
  },
  {
    flag: "drop-slot",
    type: "boolean",
    help: "drop the slot and the publication, then exit",
    commands: ["produce capture"],
  },
  {
    flag: "new-snapshot",
    type: "boolean",
    help: "create the slot anew and publish every row again (after a lost slot or publication gap)",
    commands: ["produce capture"],
  },
  {
    flag: "topic",
    type: "string",
    help: "users or orders (or a configured topic name); default both",
    commands: ["consume dlq"],
  },
  { flag: "limit", type: "string", help: "list: print at most N records", commands: ["consume dlq"] },
  {
    flag: "dry-run",
    type: "boolean",
    help: "replay: print what would be replayed; publish and commit nothing",
    commands: ["consume dlq"],
  },
];

/** The settings of `command`, by flag. */
function settingsOf(command: CommandName): Record<string, Setting> {
  return Object.fromEntries(SETTINGS.filter((s) => s.commands.includes(command)).map((s) => [s.flag, s]));
}

/** The README's settings table: one row per setting, its env variable and flag, default, meaning and commands. */
export function settingsTable(): string {
  const rows = [
    "| env / flag | default | meaning | commands |",
    "| --- | --- | --- | --- |",
  ];
  for (const s of SETTINGS) {
    if (s.flag === "help") continue;
    const names = [s.env, `--${s.flag}`].filter(Boolean).map((n) => `\`${n}\``).join(" / ");
    const fallback = s.default === undefined ? "" : `\`${s.default}\``;
    const meaning = s.help.replaceAll("|", "\\|").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
    rows.push(`| ${names} | ${fallback} | ${meaning} | ${s.commands === ALL ? "all" : s.commands.join(", ")} |`);
  }
  return rows.join("\n");
}

/** What a command line holds before its flags, in its usage line. */
const POSITIONALS: Partial<Record<CommandName, string>> = { "consume dlq": "list|replay " };

/**
 * `args` with every negative number that follows a flag taking a value joined to it
 * (`--users -5` becomes `--users=-5`): node:util's parseArgs reads `-5` as an option and would
 * answer "ambiguous" instead of letting the flag's rule name what is wrong.
 */
export function joinNegativeValues(args: string[], takesValue: (flag: string) => boolean): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const flag = /^--([^=]+)$/.exec(args[i])?.[1];
    const next = args[i + 1];
    if (flag !== undefined && takesValue(flag) && next !== undefined && /^-[\d.]/.test(next)) {
      joined.push(`${args[i]}=${next}`);
      i++;
    } else joined.push(args[i]);
  }
  return joined;
}

function readValues(flags: Record<string, Setting>, args: string[], env: Env): Map<string, string | boolean> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [name, spec] of Object.entries(flags)) options[name] = { type: spec.type };
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, (flag) => flags[flag]?.type === "string"),
      options,
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new ConfigError((error as Error).message.split("\n")[0]);
  }
  const values = new Map<string, string | boolean>();
  for (const [name, spec] of Object.entries(flags)) {
    const fromFlag = (parsed.values as Record<string, string | boolean | undefined>)[name];
    const fromEnv = spec.env ? env[spec.env] : undefined;
    if (fromFlag !== undefined) values.set(name, fromFlag);
    else if (fromEnv !== undefined && fromEnv !== "") {
      values.set(name, spec.type === "boolean" ? ["1", "true", "yes"].includes(fromEnv.toLowerCase()) : fromEnv);
    }
  }
  return values;
}

function source(flags: Record<string, Setting>, name: string): string {
  const env = flags[name]?.env;
  return env ? `--${name} (or ${env})` : `--${name}`;
}

function integer(
  values: Map<string, string | boolean>,
  flags: Record<string, Setting>,
  name: string,
  fallback: number | undefined,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  const raw = values.get(name);
  if (raw === undefined) return fallback;
  const text = String(raw).trim();
  const value = Number(text);
  if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(`${source(flags, name)} must be ${integerRule(min, max)}: ${shownValue(text)}`);
  }
  return value;
}

/** The rule an integer setting breaks, in words: "a non-negative integer", "an integer in 1..256". */
export function integerRule(min: number, max = Number.MAX_SAFE_INTEGER): string {
  if (max !== Number.MAX_SAFE_INTEGER) return `an integer in ${min}..${max}`;
  if (min === 0) return "a non-negative integer";
  if (min === 1) return "a positive integer";
  return `an integer >= ${min}`;
}

/** A value as an error line shows it: a number as it is, anything else quoted so spaces and emptiness show. */
export function shownValue(text: string): string {
  return /^-?\d+(\.\d+)?$/.test(text) ? text : JSON.stringify(text);
}

function text(
  values: Map<string, string | boolean>,
  flags: Record<string, Setting>,
  name: string,
  fallback: string,
): string {
  const raw = values.get(name);
  if (raw === undefined) return fallback;
  const value = String(raw).trim();
  if (value === "") throw new ConfigError(`${source(flags, name)} must not be empty`);
  return value;
}

function choice<T extends string>(
  values: Map<string, string | boolean>,
  flags: Record<string, Setting>,
  name: string,
  allowed: T[],
  fallback: T,
): T {
  const value = text(values, flags, name, fallback).toLowerCase();
  if (!(allowed as string[]).includes(value)) {
    throw new ConfigError(`${source(flags, name)} must be one of ${allowed.join(", ")}: got ${JSON.stringify(value)}`);
  }
  return value as T;
}

function common(values: Map<string, string | boolean>, flags: Record<string, Setting>): CommonConfig {
  const brokerList = text(values, flags, "brokers", DEFAULTS.brokers);
  const brokers = brokerList.split(",").map((b) => b.trim()).filter(Boolean);
  if (brokers.length === 0) {
    throw new ConfigError(
      `${source(flags, "brokers")} must name at least one host:port: got ${JSON.stringify(brokerList)}`,
    );
  }
  for (const broker of brokers) {
    const port = Number(/^[^\s:/]+:(\d{1,5})$/.exec(broker)?.[1] ?? 0);
    if (port < 1 || port > 65_535) {
      throw new ConfigError(
        `${source(flags, "brokers")} must be host:port[,host:port...] with a port in 1..65535: got ${
          JSON.stringify(broker)
        }`,
      );
    }
  }
  const databaseUrl = checkedDatabaseUrl(text(values, flags, "database-url", DEFAULTS.databaseUrl), flags);
  const logFormat = text(values, flags, "log-format", "human");
  if (logFormat !== "human" && logFormat !== "json") {
    throw new ConfigError(`${source(flags, "log-format")} must be human or json: got ${JSON.stringify(logFormat)}`);
  }
  const mechanism = values.get("sasl-mechanism");
  let kafkaSasl: SaslConfig | undefined;
  if (mechanism !== undefined) {
    const m = String(mechanism).toLowerCase();
    if (m !== "plain" && m !== "scram-sha-256" && m !== "scram-sha-512") {
      throw new ConfigError(
        `${source(flags, "sasl-mechanism")} must be plain, scram-sha-256 or scram-sha-512: got ${JSON.stringify(m)}`,
      );
    }
    kafkaSasl = {
      mechanism: m,
      username: text(values, flags, "sasl-username", ""),
      password: String(values.get("sasl-password") ?? ""),
    };
    if (!kafkaSasl.username) {
      throw new ConfigError(`${source(flags, "sasl-username")} is required with a SASL mechanism`);
    }
    if (!kafkaSasl.password) {
      throw new ConfigError(`${source(flags, "sasl-password")} is required with a SASL mechanism`);
    }
  } else if (values.has("sasl-username") || values.has("sasl-password")) {
    throw new ConfigError(
      `SASL credentials need ${source(flags, "sasl-mechanism")}: plain, scram-sha-256 or scram-sha-512`,
    );
  }
  const kafkaTlsCa = readCaFile(values, flags);
  const usersTopic = text(values, flags, "users-topic", DEFAULTS.usersTopic);
  const ordersTopic = text(values, flags, "orders-topic", DEFAULTS.ordersTopic);
  if (usersTopic === ordersTopic) {
    throw new ConfigError(`the users and orders topics must differ: both are ${JSON.stringify(usersTopic)}`);
  }
  return {
    brokers,
    databaseUrl,
    usersTopic,
    ordersTopic,
    usersPartitions: integer(values, flags, "users-partitions", DEFAULTS.usersPartitions, 1, 10_000)!,
    ordersPartitions: integer(values, flags, "orders-partitions", DEFAULTS.ordersPartitions, 1, 10_000)!,
    replicationFactor: integer(values, flags, "replication-factor", DEFAULTS.replicationFactor, 1, 100)!,
    consumerGroup: text(values, flags, "group", DEFAULTS.consumerGroup),
    kafkaTls: values.get("kafka-tls") === true || kafkaTlsCa !== undefined,
    kafkaTlsCa,
    kafkaSasl,
    logFormat,
    metricsPort: integer(values, flags, "metrics-port", undefined, 0, 65_535),
  };
}

/**
 * `url` if it is a postgres:// URL that parses, else a ConfigError. The URL is checked here, where
 * the error is one line with the password masked, because every later parser (postgres.js, the
 * capture) would throw it whole, password included.
 */
function checkedDatabaseUrl(url: string, flags: Record<string, Setting>): string {
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new ConfigError(
      `${source(flags, "database-url")} must start with postgres:// or postgresql://: got ${
        JSON.stringify(redactUrl(url))
      }`,
    );
  }
  try {
    new URL(url);
  } catch {
    throw new ConfigError(
      `${source(flags, "database-url")} is not a valid URL (check the host, a port in 1..65535, and ` +
        `percent-encode special characters of the password): got ${JSON.stringify(redactUrl(url))}`,
    );
  }
  return url;
}

function readCaFile(values: Map<string, string | boolean>, flags: Record<string, Setting>): string | undefined {
  if (!values.has("kafka-ca-file")) return undefined;
  const path = text(values, flags, "kafka-ca-file", "");
  let pem: string;
  try {
    pem = readFileSync(path, "utf8");
  } catch (error) {
    throw new ConfigError(
      `${source(flags, "kafka-ca-file")} cannot be read: ${JSON.stringify(path)}: ${
        (error as Error).message.split("\n")[0]
      }`,
    );
  }
  if (!pem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError(
      `${source(flags, "kafka-ca-file")} must be a PEM file of certificates: got ${JSON.stringify(path)}`,
    );
  }
  return pem;
}

/** Reads the producer's configuration from the environment, then the flags in `args`. */
export function loadProduceConfig(args: string[], env: Env): Parsed<ProduceConfig> {
  const flags = settingsOf("produce");
  const values = readValues(flags, args, env);
  if (values.get("help") === true) return { help: true };
  return {
    help: false,
    config: {
      ...common(values, flags),
      users: integer(values, flags, "users", DEFAULTS.users, 0)!,
      orders: integer(values, flags, "orders", DEFAULTS.orders, 0)!,
      batchSize: integer(values, flags, "batch-size", DEFAULTS.batchSize, 1, 1_000_000)!,
      seed: integer(values, flags, "seed", undefined, 0, 2 ** 32 - 1),
      dryRun: values.get("dry-run") === true,
      maxAttempts: integer(values, flags, "max-attempts", DEFAULTS.maxAttempts, 1, 1000)!,
      retryBackoffMs: integer(values, flags, "retry-backoff-ms", DEFAULTS.retryBackoffMs, 1, 600_000)!,
    },
  };
}

/** Reads the consumer's configuration from the environment, then the flags in `args`. */
export function loadConsumeConfig(args: string[], env: Env): Parsed<ConsumeConfig> {
  const flags = settingsOf("consume");
  const values = readValues(flags, args, env);
  if (values.get("help") === true) return { help: true };
  return { help: false, config: consumeSettings(values, flags) };
}

function consumeSettings(values: Map<string, string | boolean>, flags: Record<string, Setting>): ConsumeConfig {
  return {
    ...common(values, flags),
    idleTimeoutS: integer(values, flags, "idle-timeout", undefined, 1, 86_400),
    orderWaitS: integer(values, flags, "order-wait", DEFAULTS.orderWaitS, 0, 86_400)!,
    concurrency: integer(values, flags, "concurrency", DEFAULTS.concurrency, 1, 256)!,
    maxBatchBytes: integer(values, flags, "max-batch-bytes", DEFAULTS.maxBatchBytes, 1024, 64 * 1_048_576)!,
    rebuild: values.get("rebuild") === true,
    // Kafka brokers accept 6..1800 s by default (group.min/max.session.timeout.ms).
    sessionTimeoutS: integer(values, flags, "session-timeout", DEFAULTS.sessionTimeoutS, 6, 1800)!,
  };
}

/** Settings of `main_consume.ts dlq`: the consumer's, and the action with its own flags. */
export interface DlqConfig extends ConsumeConfig {
  /** `list` prints the DLQ records, `replay` republishes them to their source topics. */
  action: "list" | "replay";
  /** `users`, `orders`, a configured topic or its DLQ; both when absent. */
  topic?: string;
  /** list: print at most this many records. */
  limit?: number;
  /** replay: print what would be replayed; publish and commit nothing. @default false */
  dryRun: boolean;
}

/** Reads `dlq list|replay` and its flags (its own and the consumer's) from the environment and `args`. */
export function loadDlqConfig(args: string[], env: Env): Parsed<DlqConfig> {
  const [action, ...rest] = args;
  if (action === undefined || action === "--help" || action === "help") return { help: true };
  if (action !== "list" && action !== "replay") {
    throw new ConfigError(`dlq needs an action, list or replay: got ${JSON.stringify(action)}`);
  }
  const flags = settingsOf("consume dlq");
  const values = readValues(flags, rest, env);
  if (values.get("help") === true) return { help: true };
  const dryRun = values.get("dry-run") === true;
  if (dryRun && action !== "replay") throw new ConfigError("--dry-run belongs to dlq replay");
  if (values.has("limit") && action !== "list") throw new ConfigError("--limit belongs to dlq list");
  return {
    help: false,
    config: {
      ...consumeSettings(values, flags),
      action,
      topic: values.has("topic") ? text(values, flags, "topic", "") : undefined,
      limit: integer(values, flags, "limit", undefined, 1),
      dryRun,
    },
  };
}

/**
 * Reads the capture's configuration from the environment, then the flags in `args`. The slot and
 * publication names go into replication commands, which take no parameters, so they are held to
 * PostgreSQL's slot name rule.
 */
export function loadCaptureConfig(args: string[], env: Env): Parsed<CaptureConfig> {
  const flags = settingsOf("produce capture");
  const values = readValues(flags, args, env);
  if (values.get("help") === true) return { help: true };
  const name = (flag: string, fallback: string) => {
    const value = text(values, flags, flag, fallback);
    if (!/^[a-z0-9_]{1,63}$/.test(value)) {
      throw new ConfigError(
        `${source(flags, flag)} must be 1..63 lower-case letters, digits or underscores: got ${JSON.stringify(value)}`,
      );
    }
    return value;
  };
  const topicPrefix = text(values, flags, "topic-prefix", DEFAULTS.captureTopicPrefix);
  if (!/^[a-zA-Z0-9._-]{1,200}$/.test(topicPrefix)) {
    throw new ConfigError(
      `${source(flags, "topic-prefix")} must be 1..200 of a-z A-Z 0-9 . _ -: got ${JSON.stringify(topicPrefix)}`,
    );
  }
  return {
    help: false,
    config: {
      ...common(values, flags),
      topicPrefix,
      slot: name("slot", DEFAULTS.captureSlot),
      publication: name("publication", DEFAULTS.capturePublication),
      batchSize: integer(values, flags, "batch-size", DEFAULTS.captureBatchSize, 1, 100_000)!,
      dropSlot: values.get("drop-slot") === true,
      newSnapshot: values.get("new-snapshot") === true,
      schemas: choice(values, flags, "schemas", ["true", "false"], "true") === "true",
      compression: choice(values, flags, "compression", ["none", "gzip"], DEFAULTS.captureCompression),
      inFlight: integer(values, flags, "in-flight", DEFAULTS.captureInFlight, 1, 64)!,
      inFlightBytes: integer(values, flags, "in-flight-bytes", DEFAULTS.captureInFlightBytes, 1_048_576)!,
      tables: captureTables(text(values, flags, "tables", DEFAULTS.captureTables), source(flags, "tables")),
    },
  };
}

/** Parses `schema.table,...` (a bare name is in `public`); names become topic names, so they are held to a-z A-Z 0-9 _. */
function captureTables(list: string, from: string): { schema: string; table: string }[] {
  const tables = list.split(",").map((item) => item.trim()).filter((item) => item !== "").map((item) => {
    const match = /^(?:([A-Za-z0-9_]{1,63})\.)?([A-Za-z0-9_]{1,63})$/.exec(item);
    if (!match) {
      throw new ConfigError(
        `${from} must list schema.table names of a-z A-Z 0-9 _, comma-separated: got ${JSON.stringify(item)}`,
      );
    }
    return { schema: match[1] ?? "public", table: match[2] };
  });
  if (!tables.length) throw new ConfigError(`${from} must name at least one table: got ${JSON.stringify(list)}`);
  return tables.filter((t, i) => tables.findIndex((u) => u.schema === t.schema && u.table === t.table) === i);
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
  print: { out: (line: string) => void; err: (line: string) => void } = { out: console.log, err: console.error },
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

/** The `--help` text of a command: usage line, then every flag with its env variable. */
export function helpText(command: CommandName, summary: string): string {
  const flags = settingsOf(command);
  const lines = [
    `usage: cdc-${command} ${POSITIONALS[command] ?? ""}[flags]`,
    "",
    summary,
    "",
    "flags (each also read from the env variable shown):",
  ];
  for (const [name, spec] of Object.entries(flags)) {
    const left = `  --${name}${spec.type === "string" ? " VALUE" : ""}`;
    const fallback = spec.default === undefined ? "" : ` (default ${spec.default})`;
    lines.push(`${left.padEnd(28)} ${spec.help}${fallback}${spec.env ? ` [${spec.env}]` : ""}`);
  }
  return lines.join("\n");
}

/** Hides the password of a URL (`postgres://user:***@host/db`, `?password=***`) so it can be logged. */
export function redactUrl(url: string): string {
  // Up to the last "@": a raw "@" in a password must not end the redaction early.
  return url.replace(/(\/\/[^:/@]*:)[^]*@(?=[^@]*$)/, "$1***@").replace(/([?&]password=)[^&#]*/gi, "$1***");
}

/** The host, port and database of a URL, without user or password, for log lines. */
export function databaseLocation(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`;
  } catch {
    return "(unparsable URL)";
  }
}
