/**
 * Configuration for both commands: CONTRACT.md section 5. Every value comes from a default
 * written once here, then the environment, then a command-line flag, in that order.
 * @module
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

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
}

/** Settings of `main_produce.ts capture` (CONTRACT.md section 7). */
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

/** Defaults of CONTRACT.md section 5, matching compose.yaml and scripts/services.sh. */
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
export class ConfigError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** The result of parsing a command line: either help was asked for, or a configuration. */
export type Parsed<T> = { help: true } | { help: false; config: T };

type Env = Record<string, string | undefined>;

interface FlagSpec {
  env?: string;
  type: "string" | "boolean";
  help: string;
}

const COMMON_FLAGS: Record<string, FlagSpec> = {
  brokers: { env: "KAFKA_BROKERS", type: "string", help: "comma-separated bootstrap brokers" },
  "database-url": { env: "DATABASE_URL", type: "string", help: "PostgreSQL URL (libpq form)" },
  "users-topic": { env: "USERS_TOPIC", type: "string", help: "topic of user events" },
  "orders-topic": { env: "ORDERS_TOPIC", type: "string", help: "topic of order events" },
  "users-partitions": { env: "USERS_PARTITIONS", type: "string", help: "partitions of a new users topic" },
  "orders-partitions": { env: "ORDERS_PARTITIONS", type: "string", help: "partitions of a new orders topic" },
  "replication-factor": { env: "REPLICATION_FACTOR", type: "string", help: "replication of new topics" },
  group: { env: "CONSUMER_GROUP", type: "string", help: "consumer group id" },
  "kafka-tls": { env: "KAFKA_TLS", type: "boolean", help: "connect to Kafka over TLS" },
  "kafka-ca-file": { env: "KAFKA_TLS_CA_FILE", type: "string", help: "PEM file of the brokers' CA (implies TLS)" },
  "sasl-mechanism": { env: "KAFKA_SASL_MECHANISM", type: "string", help: "plain, scram-sha-256 or scram-sha-512" },
  "sasl-username": { env: "KAFKA_SASL_USERNAME", type: "string", help: "SASL user" },
  "sasl-password": { env: "KAFKA_SASL_PASSWORD", type: "string", help: "SASL password (prefer the env variable)" },
  "log-format": { env: "LOG_FORMAT", type: "string", help: "human or json" },
  "metrics-port": { env: "METRICS_PORT", type: "string", help: "serve /metrics and /health on this port" },
  help: { type: "boolean", help: "show this help" },
};

const PRODUCE_FLAGS: Record<string, FlagSpec> = {
  users: { type: "string", help: `user events to generate (default ${DEFAULTS.users})` },
  orders: { type: "string", help: `order events to generate (default ${DEFAULTS.orders})` },
  "batch-size": { type: "string", help: `events per send (default ${DEFAULTS.batchSize})` },
  seed: { type: "string", help: "seed for a repeatable stream" },
  "dry-run": { type: "boolean", help: "print events as JSON lines, publish nothing" },
  "max-attempts": {
    env: "PRODUCE_MAX_ATTEMPTS",
    type: "string",
    help: `attempts per send (default ${DEFAULTS.maxAttempts})`,
  },
  "retry-backoff-ms": {
    env: "PRODUCE_RETRY_BACKOFF_MS",
    type: "string",
    help: `first retry delay (default ${DEFAULTS.retryBackoffMs})`,
  },
};

const CONSUME_FLAGS: Record<string, FlagSpec> = {
  "idle-timeout": { env: "IDLE_TIMEOUT", type: "string", help: "exit once drained and idle this many seconds" },
  "order-wait": {
    env: "ORDER_WAIT_SECONDS",
    type: "string",
    help: `seconds an order waits for its user (default ${DEFAULTS.orderWaitS})`,
  },
  concurrency: {
    env: "CONSUMER_CONCURRENCY",
    type: "string",
    help: `partitions applied at once (default ${DEFAULTS.concurrency})`,
  },
  "max-batch-bytes": {
    env: "MAX_BATCH_BYTES",
    type: "string",
    help: `fetch bytes per partition (default ${DEFAULTS.maxBatchBytes})`,
  },
  rebuild: {
    type: "boolean",
    help: "empty users, orders and the stored offsets, then rebuild the tables from the start of the topics",
  },
};

const CAPTURE_FLAGS: Record<string, FlagSpec> = {
  "topic-prefix": {
    env: "CAPTURE_TOPIC_PREFIX",
    type: "string",
    help: `capture topics are <prefix>.<schema>.<table> (default ${DEFAULTS.captureTopicPrefix})`,
  },
  tables: {
    env: "CAPTURE_TABLES",
    type: "string",
    help: `tables to capture, comma-separated schema.table (default ${DEFAULTS.captureTables})`,
  },
  slot: { env: "CAPTURE_SLOT", type: "string", help: `replication slot (default ${DEFAULTS.captureSlot})` },
  publication: {
    env: "CAPTURE_PUBLICATION",
    type: "string",
    help: `publication of the captured tables (default ${DEFAULTS.capturePublication})`,
  },
  "batch-size": { type: "string", help: `most records per send (default ${DEFAULTS.captureBatchSize})` },
  schemas: {
    env: "CAPTURE_SCHEMAS",
    type: "string",
    help: "true: records with schemas, as JsonConverter writes them by default; false: payloads only (default true)",
  },
  compression: {
    env: "CAPTURE_COMPRESSION",
    type: "string",
    help: `compression of the record batches, none or gzip (default ${DEFAULTS.captureCompression})`,
  },
  "in-flight": {
    env: "CAPTURE_IN_FLIGHT",
    type: "string",
    help: `sends in flight at once, each for its own keys (default ${DEFAULTS.captureInFlight})`,
  },
  "in-flight-bytes": {
    env: "CAPTURE_IN_FLIGHT_BYTES",
    type: "string",
    help: `record bytes unacknowledged at most before reading on (default ${DEFAULTS.captureInFlightBytes})`,
  },
  "drop-slot": { type: "boolean", help: "drop the slot and the publication, then exit" },
  "new-snapshot": {
    type: "boolean",
    help: "create the slot anew and publish every row again (after a lost slot or publication gap)",
  },
};

/** Flags of each command line, for parsing and `--help`. */
const COMMAND_FLAGS = {
  produce: PRODUCE_FLAGS,
  consume: CONSUME_FLAGS,
  "produce capture": CAPTURE_FLAGS,
} as const;

/** A command whose flags {@linkcode readCommandLine} reads. */
export type CommandName = keyof typeof COMMAND_FLAGS;

function readValues(flags: Record<string, FlagSpec>, args: string[], env: Env): Map<string, string | boolean> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [name, spec] of Object.entries(flags)) options[name] = { type: spec.type };
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: false });
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

function source(flags: Record<string, FlagSpec>, name: string): string {
  const env = flags[name]?.env;
  return env ? `--${name} (or ${env})` : `--${name}`;
}

function integer(
  values: Map<string, string | boolean>,
  flags: Record<string, FlagSpec>,
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
    const rule = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in ${min}..${max}`;
    throw new ConfigError(`${source(flags, name)} must be ${rule}: got ${JSON.stringify(text)}`);
  }
  return value;
}

function text(
  values: Map<string, string | boolean>,
  flags: Record<string, FlagSpec>,
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
  flags: Record<string, FlagSpec>,
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

function common(values: Map<string, string | boolean>, flags: Record<string, FlagSpec>): CommonConfig {
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
  const databaseUrl = text(values, flags, "database-url", DEFAULTS.databaseUrl);
  if (!/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new ConfigError(
      `${source(flags, "database-url")} must start with postgres:// or postgresql://: got ${
        JSON.stringify(redactUrl(databaseUrl))
      }`,
    );
  }
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

function readCaFile(values: Map<string, string | boolean>, flags: Record<string, FlagSpec>): string | undefined {
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
  const flags = { ...COMMON_FLAGS, ...PRODUCE_FLAGS };
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
  const flags = { ...COMMON_FLAGS, ...CONSUME_FLAGS };
  const values = readValues(flags, args, env);
  if (values.get("help") === true) return { help: true };
  return {
    help: false,
    config: {
      ...common(values, flags),
      idleTimeoutS: integer(values, flags, "idle-timeout", undefined, 1, 86_400),
      orderWaitS: integer(values, flags, "order-wait", DEFAULTS.orderWaitS, 0, 86_400)!,
      concurrency: integer(values, flags, "concurrency", DEFAULTS.concurrency, 1, 256)!,
      maxBatchBytes: integer(values, flags, "max-batch-bytes", DEFAULTS.maxBatchBytes, 1024, 64 * 1_048_576)!,
      rebuild: values.get("rebuild") === true,
    },
  };
}

/**
 * Reads the capture's configuration from the environment, then the flags in `args`. The slot and
 * publication names go into replication commands, which take no parameters, so they are held to
 * PostgreSQL's slot name rule.
 */
export function loadCaptureConfig(args: string[], env: Env): Parsed<CaptureConfig> {
  const flags = { ...COMMON_FLAGS, ...CAPTURE_FLAGS };
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
  const flags = { ...COMMON_FLAGS, ...COMMAND_FLAGS[command] };
  const lines = [
    `usage: cdc-${command} [flags]`,
    "",
    summary,
    "",
    "flags (each also read from the env variable shown):",
  ];
  for (const [name, spec] of Object.entries(flags)) {
    const left = `  --${name}${spec.type === "string" ? " VALUE" : ""}`;
    lines.push(`${left.padEnd(28)} ${spec.help}${spec.env ? ` [${spec.env}]` : ""}`);
  }
  return lines.join("\n");
}

/** Hides the password of a URL (`postgres://user:***@host/db`) so it can be logged. */
export function redactUrl(url: string): string {
  // Up to the last "@": a raw "@" in a password must not end the redaction early.
  return url.replace(/(\/\/[^:/@]*:)[^]*@(?=[^@]*$)/, "$1***@");
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
