/**
 * Configuration of every command (docs/CONTRACT.md section 5): the table of settings, each with
 * the commands that read it, and the loaders that read a command's settings from a default
 * written once here, then the environment, then a command-line flag, in that order. The rules of
 * single values are lib/config_values.ts'; `--help` and the command line's answers are
 * lib/command.ts'.
 * @module
 */
import { parseArgs } from "node:util";
import {
  brokerList,
  caFile,
  choice,
  ConfigError,
  databaseUrl,
  identityRules,
  integer,
  messageKeyColumns,
  oneTable,
  optional,
  type Parser,
  present,
  regexList,
  type SaslMechanism,
  saslMechanism,
  skippedOperations,
  slotName,
  tableList,
  text,
  topicPartitions,
  topicPrefix,
  trueOrFalse,
  verbatim,
} from "./config_values.ts";

// A loader throws ConfigError and CaptureConfig holds TableNames: callers of the loaders find both here.
export { ConfigError } from "./config_values.ts";
export type { IdentityRule, SkippableOperation, TableName } from "./config_values.ts";

/** Kafka SASL credentials, for brokers that ask for them. */
export interface SaslConfig {
  /** `plain`, `scram-sha-256` or `scram-sha-512`. */
  mechanism: SaslMechanism;
  /** SASL user name. */
  username: string;
  /** SASL password; never logged. */
  password: string;
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
  // 256 KiB (about 1,200 events) per partition drains a backlog as fast as 1 MiB does, in far
  // less memory (docs/PERFORMANCE.md).
  maxBatchBytes: 262_144,
  captureTopicPrefix: "cdc",
  captureSlot: "cdc_slot",
  capturePublication: "cdc_pub",
  captureBatchSize: 2000,
  captureCompression: "gzip",
  captureInFlight: 1,
  captureInFlightBytes: 4 * 1024 * 1024,
  // Debezium's incremental.snapshot.chunk.size default.
  captureSnapshotChunkSize: 1024,
  captureTables: "public.users,public.orders",
  // As the topics the capture reads from: orders' 5 partitions, users' 3 for every other table.
  captureTopicPartitions: "3,public.orders:5",
  // The contract's consumers read whole before-images (docs/CONTRACT.md section 7): FULL on its two tables only.
  captureReplicaIdentity: "public.users:FULL,public.orders:FULL",
} as const;

/** The result of parsing a command line: either help was asked for, or a configuration. */
export type Parsed<T> = { help: true } | { help: false; config: T };

type Env = Record<string, string | undefined>;

/** The commands, as their usage line names them after `cdc-`. */
export const COMMANDS = ["produce", "consume", "produce capture", "consume dlq"] as const;

/** A command whose settings the table lists. */
export type CommandName = typeof COMMANDS[number];

/** One setting: its flag, config field, env variable, default, rule, help line and the commands that read it. */
export interface Setting {
  /** The flag, without `--`. */
  flag: string;
  /** The config field it sets; the cross-field checks fold the SASL trio into `kafkaSasl`. */
  field: string;
  /** The environment variable read when the flag is absent. */
  env?: string;
  /**
   * The Debezium PostgreSQL connector property this setting carries over (`decimal.handling.mode`),
   * so a Debezium user's settings keep their meaning; its flag is the property with dashes for dots
   * and its env variable `CAPTURE_` and the property in upper snake case.
   */
  debezium?: string;
  /** A `string` flag takes a value; a `boolean` one is set by its presence. */
  type: "string" | "boolean";
  /** The default, as shown in `--help` and the README and given to `parse`; absent when there is none or it is off. */
  default?: string | number;
  /** Its rule: the raw value to the config field's value. */
  parse: Parser<unknown>;
  /** One line saying what it sets. */
  help: string;
  /** The commands that read it. */
  commands: readonly CommandName[];
}

const ALL = COMMANDS;

/**
 * Every setting of every command, in `--help` order, each with its config field, its rule and
 * exactly the commands that read it: another command refuses its flag and leaves its env variable
 * unread. The loaders read every command's settings through it, the config types are derived from
 * it, and `--help` and the README's settings table ({@linkcode settingsTable}) are rendered from it.
 */
export const SETTINGS = [
  {
    flag: "brokers",
    field: "brokers",
    parse: brokerList,
    env: "KAFKA_BROKERS",
    type: "string",
    default: DEFAULTS.brokers,
    help: "comma-separated bootstrap brokers",
    commands: ALL,
  },
  {
    flag: "database-url",
    field: "databaseUrl",
    parse: databaseUrl,
    env: "DATABASE_URL",
    type: "string",
    default: DEFAULTS.databaseUrl,
    help: "PostgreSQL URL (libpq form)",
    commands: ["consume", "produce capture"],
  },
  {
    flag: "users-topic",
    field: "usersTopic",
    parse: text,
    env: "USERS_TOPIC",
    type: "string",
    default: DEFAULTS.usersTopic,
    help: "topic of user events",
    commands: ["produce", "consume", "consume dlq"],
  },
  {
    flag: "orders-topic",
    field: "ordersTopic",
    parse: text,
    env: "ORDERS_TOPIC",
    type: "string",
    default: DEFAULTS.ordersTopic,
    help: "topic of order events",
    commands: ["produce", "consume", "consume dlq"],
  },
  {
    flag: "users-partitions",
    field: "usersPartitions",
    parse: integer(1, 10_000),
    env: "USERS_PARTITIONS",
    type: "string",
    default: DEFAULTS.usersPartitions,
    help: "partitions of a new users topic",
    commands: ["produce", "consume"],
  },
  {
    flag: "orders-partitions",
    field: "ordersPartitions",
    parse: integer(1, 10_000),
    env: "ORDERS_PARTITIONS",
    type: "string",
    default: DEFAULTS.ordersPartitions,
    help: "partitions of a new orders topic",
    commands: ["produce", "consume"],
  },
  {
    flag: "replication-factor",
    field: "replicationFactor",
    parse: integer(1, 100),
    env: "REPLICATION_FACTOR",
    type: "string",
    default: DEFAULTS.replicationFactor,
    help: "replication of new topics",
    commands: ["produce", "consume", "produce capture"],
  },
  {
    flag: "group",
    field: "consumerGroup",
    parse: text,
    env: "CONSUMER_GROUP",
    type: "string",
    default: DEFAULTS.consumerGroup,
    help: "consumer group id",
    commands: ["consume", "consume dlq"],
  },
  {
    flag: "kafka-tls",
    field: "kafkaTls",
    parse: present,
    env: "KAFKA_TLS",
    type: "boolean",
    help: "connect to Kafka over TLS",
    commands: ALL,
  },
  {
    flag: "kafka-ca-file",
    field: "kafkaTlsCa",
    parse: optional(caFile),
    env: "KAFKA_TLS_CA_FILE",
    type: "string",
    help: "PEM file of the brokers' CA (implies TLS)",
    commands: ALL,
  },
  {
    flag: "sasl-mechanism",
    field: "saslMechanism",
    parse: optional(saslMechanism),
    env: "KAFKA_SASL_MECHANISM",
    type: "string",
    help: "plain, scram-sha-256 or scram-sha-512",
    commands: ALL,
  },
  {
    flag: "sasl-username",
    field: "saslUsername",
    parse: optional(text),
    env: "KAFKA_SASL_USERNAME",
    type: "string",
    help: "SASL user",
    commands: ALL,
  },
  {
    flag: "sasl-password",
    field: "saslPassword",
    parse: optional(verbatim),
    env: "KAFKA_SASL_PASSWORD",
    type: "string",
    help: "SASL password (prefer the env variable)",
    commands: ALL,
  },
  {
    flag: "log-format",
    field: "logFormat",
    parse: choice(["human", "json"], "human or json"),
    env: "LOG_FORMAT",
    type: "string",
    default: "human",
    help: "human or json",
    commands: ALL,
  },
  {
    flag: "metrics-port",
    field: "metricsPort",
    parse: optional(integer(0, 65_535)),
    env: "METRICS_PORT",
    type: "string",
    help: "serve /metrics and /health on this port",
    commands: ["produce", "consume", "produce capture"],
  },
  { flag: "help", field: "help", parse: present, type: "boolean", help: "show this help", commands: ALL },
  {
    flag: "users",
    field: "users",
    parse: integer(0),
    type: "string",
    default: DEFAULTS.users,
    help: "user events to generate",
    commands: ["produce"],
  },
  {
    flag: "orders",
    field: "orders",
    parse: integer(0),
    type: "string",
    default: DEFAULTS.orders,
    help: "order events to generate",
    commands: ["produce"],
  },
  {
    flag: "batch-size",
    field: "batchSize",
    parse: integer(1, 1_000_000),
    type: "string",
    default: DEFAULTS.batchSize,
    help: "events per send",
    commands: ["produce"],
  },
  {
    flag: "seed",
    field: "seed",
    parse: optional(integer(0, 2 ** 32 - 1)),
    type: "string",
    help: "seed for a repeatable stream",
    commands: ["produce"],
  },
  {
    flag: "dry-run",
    field: "dryRun",
    parse: present,
    type: "boolean",
    help: "print events as JSON lines, publish nothing",
    commands: ["produce"],
  },
  {
    flag: "max-attempts",
    field: "maxAttempts",
    parse: integer(1, 1000),
    env: "PRODUCE_MAX_ATTEMPTS",
    type: "string",
    default: DEFAULTS.maxAttempts,
    help: "attempts per send",
    commands: ["produce"],
  },
  {
    flag: "retry-backoff-ms",
    field: "retryBackoffMs",
    parse: integer(1, 600_000),
    env: "PRODUCE_RETRY_BACKOFF_MS",
    type: "string",
    default: DEFAULTS.retryBackoffMs,
    help: "first retry delay",
    commands: ["produce"],
  },
  {
    flag: "idle-timeout",
    field: "idleTimeoutS",
    parse: optional(integer(1, 86_400)),
    env: "IDLE_TIMEOUT",
    type: "string",
    help: "exit once drained and idle this many seconds",
    commands: ["consume"],
  },
  {
    flag: "order-wait",
    field: "orderWaitS",
    parse: integer(0, 86_400),
    env: "ORDER_WAIT_SECONDS",
    type: "string",
    default: DEFAULTS.orderWaitS,
    help: "seconds an order waits for its user",
    commands: ["consume"],
  },
  {
    flag: "concurrency",
    field: "concurrency",
    parse: integer(1, 256),
    env: "CONSUMER_CONCURRENCY",
    type: "string",
    default: DEFAULTS.concurrency,
    help: "partitions applied at once",
    commands: ["consume"],
  },
  {
    flag: "max-batch-bytes",
    field: "maxBatchBytes",
    parse: integer(1024, 64 * 1_048_576),
    env: "MAX_BATCH_BYTES",
    type: "string",
    default: DEFAULTS.maxBatchBytes,
    help: "fetch bytes per partition",
    commands: ["consume"],
  },
  {
    flag: "session-timeout",
    field: "sessionTimeoutS",
    // Kafka brokers accept 6..1800 s by default (group.min/max.session.timeout.ms). It also bounds
    // the member's database transactions (lib/consumer.ts, consumerSessionParameters), so a frozen
    // member cannot hold its partitions' rows longer than that.
    parse: integer(6, 1800),
    env: "CONSUMER_SESSION_TIMEOUT",
    type: "string",
    default: DEFAULTS.sessionTimeoutS,
    help: "seconds before a silent member loses its partitions and its open transaction",
    commands: ["consume"],
  },
  {
    flag: "rebuild",
    field: "rebuild",
    parse: present,
    type: "boolean",
    help: "empty users, orders and the stored offsets, then rebuild the tables from the start of the topics",
    commands: ["consume"],
  },
  {
    flag: "topic-prefix",
    field: "topicPrefix",
    parse: topicPrefix,
    env: "CAPTURE_TOPIC_PREFIX",
    type: "string",
    default: DEFAULTS.captureTopicPrefix,
    help: "capture topics are <prefix>.<schema>.<table>",
    commands: ["produce capture"],
  },
  {
    flag: "tables",
    field: "tables",
    parse: tableList,
    env: "CAPTURE_TABLES",
    type: "string",
    default: DEFAULTS.captureTables,
    help: 'tables to capture, comma-separated schema.table (a part may be double-quoted: public."Order Items")',
    commands: ["produce capture"],
  },
  {
    flag: "topic-partitions",
    field: "topicPartitions",
    parse: topicPartitions,
    env: "CAPTURE_TOPIC_PARTITIONS",
    type: "string",
    default: DEFAULTS.captureTopicPartitions,
    help: "partitions of a new capture topic: a count, then schema.table:count for tables that differ",
    commands: ["produce capture"],
  },
  {
    flag: "slot",
    field: "slot",
    parse: slotName,
    env: "CAPTURE_SLOT",
    type: "string",
    default: DEFAULTS.captureSlot,
    help: "replication slot",
    commands: ["produce capture"],
  },
  {
    flag: "slot-failover",
    field: "slotFailover",
    debezium: "slot.failover",
    parse: trueOrFalse,
    env: "CAPTURE_SLOT_FAILOVER",
    type: "string",
    default: "false",
    help: "true: create the slot as a failover slot, kept on standbys across a promotion (PostgreSQL 17 and later)",
    commands: ["produce capture"],
  },
  {
    flag: "publication",
    field: "publication",
    parse: slotName,
    env: "CAPTURE_PUBLICATION",
    type: "string",
    default: DEFAULTS.capturePublication,
    help: "publication of the captured tables",
    commands: ["produce capture"],
  },
  {
    flag: "batch-size",
    field: "batchSize",
    parse: integer(1, 100_000),
    type: "string",
    default: DEFAULTS.captureBatchSize,
    help: "most records per send",
    commands: ["produce capture"],
  },
  {
    flag: "schemas",
    field: "schemas",
    parse: trueOrFalse,
    env: "CAPTURE_SCHEMAS",
    type: "string",
    default: "true",
    help: "true: records with schemas, as JsonConverter writes them by default; false: payloads only",
    commands: ["produce capture"],
  },
  {
    flag: "compression",
    field: "compression",
    parse: choice(["none", "gzip"]),
    env: "CAPTURE_COMPRESSION",
    type: "string",
    default: DEFAULTS.captureCompression,
    help: "compression of the record batches, none or gzip",
    commands: ["produce capture"],
  },
  {
    flag: "in-flight",
    field: "inFlight",
    parse: integer(1, 64),
    env: "CAPTURE_IN_FLIGHT",
    type: "string",
    default: DEFAULTS.captureInFlight,
    help: "sends in flight at once, each for its own keys",
    commands: ["produce capture"],
  },
  {
    flag: "in-flight-bytes",
    field: "inFlightBytes",
    parse: integer(1_048_576),
    env: "CAPTURE_IN_FLIGHT_BYTES",
    type: "string",
    default: DEFAULTS.captureInFlightBytes,
    help: "record bytes unacknowledged at most before reading on",
    commands: ["produce capture"],
  },
  {
    flag: "snapshot-chunk-size",
    field: "snapshotChunkSize",
    parse: integer(1, 1_000_000),
    env: "CAPTURE_SNAPSHOT_CHUNK_SIZE",
    type: "string",
    default: DEFAULTS.captureSnapshotChunkSize,
    help: "rows per chunk of an incremental snapshot (Debezium's incremental.snapshot.chunk.size)",
    commands: ["produce capture"],
  },
  {
    flag: "signal-table",
    field: "signalTable",
    parse: optional(oneTable),
    env: "CAPTURE_SIGNAL_TABLE",
    type: "string",
    help: "signal table in Debezium's format (Debezium's signal.data.collection); execute-snapshot and more",
    commands: ["produce capture"],
  },
  {
    flag: "drop-slot",
    field: "dropSlot",
    parse: present,
    type: "boolean",
    help: "drop the slot and the publication, then exit",
    commands: ["produce capture"],
  },
  {
    flag: "new-snapshot",
    field: "newSnapshot",
    parse: present,
    type: "boolean",
    help: "create the slot anew and publish every row again (after a lost slot or publication gap)",
    commands: ["produce capture"],
  },
  // Debezium's value options, under its property names (lib/capture_debezium_values.ts ValueOptions).
  {
    flag: "decimal-handling-mode",
    field: "decimalHandlingMode",
    debezium: "decimal.handling.mode",
    parse: choice(["precise", "double", "string"]),
    env: "CAPTURE_DECIMAL_HANDLING_MODE",
    type: "string",
    default: "precise",
    help: "numeric and money as precise (Decimal bytes), double or string, as Debezium writes them",
    commands: ["produce capture"],
  },
  {
    flag: "time-precision-mode",
    field: "timePrecisionMode",
    debezium: "time.precision.mode",
    parse: choice(["adaptive", "adaptive_time_microseconds", "connect"]),
    env: "CAPTURE_TIME_PRECISION_MODE",
    type: "string",
    default: "adaptive",
    help: "date and time types as adaptive, adaptive_time_microseconds or connect (Kafka Connect's, in millis)",
    commands: ["produce capture"],
  },
  {
    flag: "binary-handling-mode",
    field: "binaryHandlingMode",
    debezium: "binary.handling.mode",
    parse: choice(["bytes", "base64", "base64-url-safe", "hex"]),
    env: "CAPTURE_BINARY_HANDLING_MODE",
    type: "string",
    default: "bytes",
    help: "bytea as bytes, or a base64, base64-url-safe or hex string",
    commands: ["produce capture"],
  },
  {
    flag: "hstore-handling-mode",
    field: "hstoreHandlingMode",
    debezium: "hstore.handling.mode",
    parse: choice(["json", "map"]),
    env: "CAPTURE_HSTORE_HANDLING_MODE",
    type: "string",
    default: "json",
    help: "hstore as a json text or a map",
    commands: ["produce capture"],
  },
  {
    flag: "interval-handling-mode",
    field: "intervalHandlingMode",
    debezium: "interval.handling.mode",
    parse: choice(["numeric", "string"]),
    env: "CAPTURE_INTERVAL_HANDLING_MODE",
    type: "string",
    default: "numeric",
    help: "interval as numeric (microseconds) or string (ISO 8601)",
    commands: ["produce capture"],
  },
  {
    flag: "money-fraction-digits",
    field: "moneyFractionDigits",
    debezium: "money.fraction.digits",
    parse: integer(0, 1000),
    env: "CAPTURE_MONEY_FRACTION_DIGITS",
    type: "string",
    default: 2,
    help: "scale of money's Decimal with decimal.handling.mode=precise",
    commands: ["produce capture"],
  },
  {
    flag: "include-unknown-datatypes",
    field: "includeUnknownDatatypes",
    debezium: "include.unknown.datatypes",
    parse: trueOrFalse,
    env: "CAPTURE_INCLUDE_UNKNOWN_DATATYPES",
    type: "string",
    default: "false",
    help: "true: columns of types Debezium has no schema for as binary; false: left out",
    commands: ["produce capture"],
  },
  {
    flag: "tombstones-on-delete",
    field: "tombstonesOnDelete",
    debezium: "tombstones.on.delete",
    parse: trueOrFalse,
    env: "CAPTURE_TOMBSTONES_ON_DELETE",
    type: "string",
    default: "true",
    help: "true: a delete is followed by a tombstone (a null value under its key); false: no tombstones",
    commands: ["produce capture"],
  },
  {
    flag: "skipped-operations",
    field: "skippedOperations",
    debezium: "skipped.operations",
    parse: skippedOperations,
    env: "CAPTURE_SKIPPED_OPERATIONS",
    type: "string",
    default: "t",
    help: "operations not published: none, or a comma list of c (insert), u (update), d (delete), t (truncate)",
    commands: ["produce capture"],
  },
  {
    flag: "column-include-list",
    field: "columnIncludeList",
    debezium: "column.include.list",
    parse: optional(regexList),
    env: "CAPTURE_COLUMN_INCLUDE_LIST",
    type: "string",
    help: "regexes of schema.table.column, comma-separated: only the columns they match are in values",
    commands: ["produce capture"],
  },
  {
    flag: "column-exclude-list",
    field: "columnExcludeList",
    debezium: "column.exclude.list",
    parse: optional(regexList),
    env: "CAPTURE_COLUMN_EXCLUDE_LIST",
    type: "string",
    help: "regexes of schema.table.column, comma-separated: the columns they match are left out of values",
    commands: ["produce capture"],
  },
  {
    flag: "message-key-columns",
    field: "messageKeyColumns",
    debezium: "message.key.columns",
    parse: optional(messageKeyColumns),
    env: "CAPTURE_MESSAGE_KEY_COLUMNS",
    type: "string",
    help: "record keys other than the primary key: <table regex>:<column>,<column>;... (schema.table regexes)",
    commands: ["produce capture"],
  },
  {
    flag: "replica-identity-autoset-values",
    field: "replicaIdentityAutoset",
    debezium: "replica.identity.autoset.values",
    parse: identityRules,
    env: "CAPTURE_REPLICA_IDENTITY_AUTOSET_VALUES",
    type: "string",
    default: DEFAULTS.captureReplicaIdentity,
    help: "REPLICA IDENTITY set at start: <table regex>:<DEFAULT|FULL|NOTHING|INDEX name>,... or none",
    commands: ["produce capture"],
  },
  {
    flag: "topic",
    field: "topic",
    parse: optional(text),
    type: "string",
    help: "users or orders (or a configured topic name); default both",
    commands: ["consume dlq"],
  },
  {
    flag: "limit",
    field: "limit",
    parse: optional(integer(1)),
    type: "string",
    help: "list: print at most N records",
    commands: ["consume dlq"],
  },
  {
    flag: "dry-run",
    field: "dryRun",
    parse: present,
    type: "boolean",
    help: "replay: print what would be replayed; publish and commit nothing",
    commands: ["consume dlq"],
  },
] as const satisfies readonly Setting[];
type AnySetting = typeof SETTINGS[number];

/** The settings `command` reads; for a union of commands, those every one of them reads. */
type SettingsOf<C extends CommandName, S = AnySetting> = S extends { commands: readonly (infer K)[] }
  ? [C] extends [K] ? S
  : never
  : never;

/** A field per setting, typed by what its parser returns. */
type Fields<S extends AnySetting> = { [X in S as X["field"]]: ReturnType<X["parse"]> };

/** `T` with every field that may be `undefined` made optional, as one flat object type. */
type Optionals<T> = Flat<
  & { [K in keyof T as undefined extends T[K] ? never : K]: T[K] }
  & { [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined> }
>;
type Flat<T> = { [K in keyof T]: T[K] };

/** The fields the cross-field checks fold into `kafkaSasl`, and `help`, which is no configuration. */
type Folded = "saslMechanism" | "saslUsername" | "saslPassword" | "help";

/** The configuration `command`'s settings make, after the cross-field checks. */
type ConfigOf<C extends CommandName> = Flat<
  Optionals<Omit<Fields<SettingsOf<C>>, Folded>> & { kafkaSasl?: SaslConfig }
>;

/** Settings every command reads: the Kafka connection and the log format. */
export type CommonConfig = ConfigOf<CommandName>;

/** Settings of `main_produce.ts`. */
export type ProduceConfig = ConfigOf<"produce">;

/** Settings of `main_consume.ts`. */
export type ConsumeConfig = ConfigOf<"consume">;

/** Settings of `main_produce.ts capture` (docs/CONTRACT.md section 7). */
export type CaptureConfig = ConfigOf<"produce capture">;

/** Settings of `main_consume.ts dlq`, and the action its command line names. */
export type DlqConfig = Flat<ConfigOf<"consume dlq"> & { action: "list" | "replay" }>;

/** What the command's settings read as, one field per setting, before the cross-field checks. */
type Read<C extends CommandName> = Fields<SettingsOf<C>>;

/** The settings of `command`, in table order. */
export function settingsOf(command: CommandName): Setting[] {
  return (SETTINGS as readonly Setting[]).filter((s) => s.commands.includes(command));
}

/**
 * Reads `command`'s settings from `args`, then `env`, then the defaults, each through its parser;
 * `undefined` when `--help` is asked for, which no bad value may stop.
 */
function readSettings<C extends CommandName>(command: C, args: string[], env: Env): Read<C> | undefined {
  const settings = settingsOf(command);
  const values = readValues(settings, args, env);
  if (values.get("help") === true) return undefined;
  const refused = [...values.keys()].find((flag) => !settings.some((s) => s.flag === flag));
  // The line starts with cdc-<command>: the command's last word is enough to name it.
  if (refused !== undefined) throw new ConfigError(`${command.split(" ").at(-1)} does not take --${refused}`);
  const read: Record<string, unknown> = {};
  for (const s of settings) {
    const given = values.get(s.flag);
    const raw = given ?? ("default" in s ? String(s.default) : undefined);
    read[s.field] = s.parse(raw, source(s));
  }
  return read as Read<C>;
}

/** How an error line names where a setting's value came from: its flag and env variable. */
function source(setting: Pick<Setting, "flag" | "env">): string {
  return setting.env ? `--${setting.flag} (or ${setting.env})` : `--${setting.flag}`;
}

/** The rules that span settings of every command: TLS implied by a CA file, the SASL trio. */
function common<T extends Read<CommandName>>(read: T) {
  const { saslMechanism: mechanism, saslUsername: username, saslPassword: password, help: _, ...rest } = read;
  const named = (flag: string) => source(SETTINGS.find((s) => s.flag === flag)!);
  let kafkaSasl: SaslConfig | undefined;
  if (mechanism !== undefined) {
    if (!username) throw new ConfigError(`${named("sasl-username")} is required with a SASL mechanism`);
    if (!password) throw new ConfigError(`${named("sasl-password")} is required with a SASL mechanism`);
    kafkaSasl = { mechanism, username, password };
  } else if (username !== undefined || password !== undefined) {
    throw new ConfigError(`SASL credentials need ${named("sasl-mechanism")}: plain, scram-sha-256 or scram-sha-512`);
  }
  return { ...rest, kafkaTls: read.kafkaTls || read.kafkaTlsCa !== undefined, kafkaSasl };
}

/** `read`, once its users and orders topics are known to differ. */
function distinctTopics<T extends { usersTopic: string; ordersTopic: string }>(read: T): T {
  if (read.usersTopic === read.ordersTopic) {
    throw new ConfigError(`the users and orders topics must differ: both are ${JSON.stringify(read.usersTopic)}`);
  }
  return read;
}

/** Reads the producer's configuration from the environment, then the flags in `args`. */
export function loadProduceConfig(args: string[], env: Env): Parsed<ProduceConfig> {
  const read = readSettings("produce", args, env);
  return read ? { help: false, config: common(distinctTopics(read)) } : { help: true };
}

/** Reads the consumer's configuration from the environment, then the flags in `args`. */
export function loadConsumeConfig(args: string[], env: Env): Parsed<ConsumeConfig> {
  const read = readSettings("consume", args, env);
  return read ? { help: false, config: common(distinctTopics(read)) } : { help: true };
}

/** Reads `dlq list|replay` and its flags from the environment and `args`. */
export function loadDlqConfig(args: string[], env: Env): Parsed<DlqConfig> {
  const [action, ...rest] = args;
  if (action === undefined || action === "--help" || action === "help") return { help: true };
  if (action !== "list" && action !== "replay") {
    throw new ConfigError(`dlq needs an action, list or replay: got ${JSON.stringify(action)}`);
  }
  const read = readSettings("consume dlq", rest, env);
  if (!read) return { help: true };
  if (read.dryRun && action !== "replay") throw new ConfigError("--dry-run belongs to dlq replay");
  if (read.limit !== undefined && action !== "list") throw new ConfigError("--limit belongs to dlq list");
  return { help: false, config: { ...common(distinctTopics(read)), action } };
}

/** Reads the capture's configuration from the environment, then the flags in `args`. */
export function loadCaptureConfig(args: string[], env: Env): Parsed<CaptureConfig> {
  const read = readSettings("produce capture", args, env);
  if (read?.columnIncludeList && read.columnExcludeList) {
    // RelationalDatabaseConnectorConfig.validateExcludeList: one or the other.
    throw new ConfigError(
      `${source(SETTINGS.find((s) => s.flag === "column-exclude-list")!)} cannot be given with --column-include-list`,
    );
  }
  return read ? { help: false, config: common(read) } : { help: true };
}

/** The README's settings table: one row per setting, its env variable and flag, default, meaning and commands. */
export function settingsTable(): string {
  const rows = [
    "| env / flag | default | meaning | commands |",
    "| --- | --- | --- | --- |",
  ];
  for (const s of SETTINGS as readonly Setting[]) {
    if (s.flag === "help") continue;
    const names = [s.env, `--${s.flag}`, s.debezium].filter(Boolean).map((n) => `\`${n}\``).join(" / ");
    const fallback = s.default === undefined ? "" : `\`${s.default}\``;
    const meaning = s.help.replaceAll("|", "\\|").replaceAll("<", "&lt;").replaceAll(">", "&gt;");
    rows.push(`| ${names} | ${fallback} | ${meaning} | ${s.commands === ALL ? "all" : s.commands.join(", ")} |`);
  }
  return rows.join("\n");
}

/**
 * `args` with every negative number that follows a flag taking a value joined to it
 * (`--users -5` becomes `--users=-5`): node:util's parseArgs reads `-5` as an option and would
 * answer "ambiguous" instead of letting the flag's rule name what is wrong.
 */
function joinNegativeValues(args: string[], takesValue: (flag: string) => boolean): string[] {
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

/**
 * The raw value of each flag given, else of each of `settings`' env variables (booleans as
 * true-ish words). Every command's flags are known here, so that one a command does not take is
 * refused by name, not as unknown.
 */
function readValues(settings: readonly Setting[], args: string[], env: Env): Map<string, string | boolean> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const s of SETTINGS) options[s.flag] = { type: s.type };
  let parsed;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, (flag) => options[flag]?.type === "string"),
      options,
      strict: true,
      allowPositionals: false,
    });
  } catch (error) {
    throw new ConfigError((error as Error).message.split("\n")[0]);
  }
  const values = new Map(Object.entries(parsed.values as Record<string, string | boolean>));
  for (const s of settings) {
    const fromEnv = s.env ? env[s.env] : undefined;
    if (!values.has(s.flag) && fromEnv !== undefined && fromEnv !== "") {
      values.set(s.flag, s.type === "boolean" ? ["1", "true", "yes"].includes(fromEnv.toLowerCase()) : fromEnv);
    }
  }
  return values;
}
