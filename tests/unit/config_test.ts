/**
 * Unit tests of configuration (lib/config.ts, lib/config_values.ts and the command line of
 * lib/command.ts): docs/CONTRACT.md section 5 defaults, the order default < environment < flag,
 * each command taking only the flags it reads, error messages a person can act on, and the help text.
 * @module
 */
import assert from "node:assert/strict";
import { helpText, readCommandLine } from "../../lib/command.ts";
import {
  type CaptureConfig,
  type CommandName,
  COMMANDS,
  ConfigError,
  type ConsumeConfig,
  DEFAULTS,
  type DlqConfig,
  loadCaptureConfig,
  loadConsumeConfig,
  loadDlqConfig,
  loadProduceConfig,
  type Parsed,
  type ProduceConfig,
  type Setting,
  SETTINGS,
} from "../../lib/config.ts";
import { databaseLocation, partitionsOf, redactUrl } from "../../lib/config_values.ts";
import { oneLineError } from "../_helpers.ts";

type Env = Record<string, string | undefined>;

function produce(args: string[] = [], env: Env = {}): ProduceConfig {
  const parsed = loadProduceConfig(args, env);
  assert.equal(parsed.help, false);
  if (parsed.help) throw new Error("unreachable");
  return parsed.config;
}

function consume(args: string[] = [], env: Env = {}): ConsumeConfig {
  const parsed = loadConsumeConfig(args, env);
  assert.equal(parsed.help, false);
  if (parsed.help) throw new Error("unreachable");
  return parsed.config;
}

/** Runs `fn`, asserts it throws a one-line ConfigError, and returns the message. */
function configError(fn: () => unknown): string {
  return oneLineError(fn, ConfigError);
}

/** What docs/CONTRACT.md section 5 promises, independent of the DEFAULTS constant. */
const CONTRACT_DEFAULTS = {
  brokers: ["localhost:9092"],
  databaseUrl: "postgres://postgres:postgres@localhost:5432/cdc_db",
  usersTopic: "users",
  ordersTopic: "orders",
  usersPartitions: 3,
  ordersPartitions: 5,
  replicationFactor: 1,
  consumerGroup: "cdc-pipeline-sink",
};

// ---- defaults -------------------------------------------------------------------------------

Deno.test("the producer's defaults are the contract's defaults, and it reads no database URL or group", () => {
  const config = produce();
  const { databaseUrl: _, consumerGroup: __, ...kafkaDefaults } = CONTRACT_DEFAULTS;
  for (const [key, value] of Object.entries(kafkaDefaults)) {
    assert.deepEqual(config[key as keyof ProduceConfig], value, key);
  }
  assert.ok(!("databaseUrl" in config) && !("consumerGroup" in config), Object.keys(config).join(","));
  assert.equal(config.kafkaTls, false);
  assert.equal(config.kafkaSasl, undefined);
  assert.equal(config.logFormat, "human");
  assert.equal(config.metricsPort, undefined);
  assert.equal(config.users, 1000);
  assert.equal(config.orders, 2000);
  assert.equal(config.batchSize, 1000);
  assert.equal(config.seed, undefined);
  assert.equal(config.dryRun, false);
  assert.equal(config.maxAttempts, 8);
  assert.equal(config.retryBackoffMs, 250);
});

Deno.test("the consumer's defaults are the contract's defaults", () => {
  const config = consume();
  for (const [key, value] of Object.entries(CONTRACT_DEFAULTS)) {
    assert.deepEqual(config[key as keyof ConsumeConfig], value, key);
  }
  assert.equal(config.kafkaTls, false);
  assert.equal(config.logFormat, "human");
  assert.equal(config.idleTimeoutS, undefined);
  assert.equal(config.orderWaitS, 30);
  assert.equal(config.concurrency, 8);
  assert.equal(config.maxBatchBytes, 262_144);
});

Deno.test("the DEFAULTS constant agrees with the contract", () => {
  assert.equal(DEFAULTS.brokers, "localhost:9092");
  assert.equal(DEFAULTS.databaseUrl, CONTRACT_DEFAULTS.databaseUrl);
  assert.equal(DEFAULTS.usersTopic, "users");
  assert.equal(DEFAULTS.ordersTopic, "orders");
  assert.equal(DEFAULTS.usersPartitions, 3);
  assert.equal(DEFAULTS.ordersPartitions, 5);
  assert.equal(DEFAULTS.replicationFactor, 1);
  assert.equal(DEFAULTS.consumerGroup, "cdc-pipeline-sink");
});

Deno.test("the real process environment is not read: only the env object passed in counts", () => {
  const real: Env = {
    ...ENV_OVERRIDES,
    PRODUCE_MAX_ATTEMPTS: "9",
    PRODUCE_RETRY_BACKOFF_MS: "70",
    IDLE_TIMEOUT: "11",
    ORDER_WAIT_SECONDS: "12",
    CONSUMER_CONCURRENCY: "3",
    MAX_BATCH_BYTES: "4096",
  };
  const before = { produce: produce([], {}), consume: consume([], {}) };
  assert.notDeepEqual(consume([], real), before.consume, "the values chosen differ from what an empty env gives");
  assert.notDeepEqual(produce([], real), before.produce, "the values chosen differ from what an empty env gives");
  const saved = Object.fromEntries(Object.keys(real).map((name) => [name, Deno.env.get(name)]));
  try {
    for (const [name, value] of Object.entries(real)) Deno.env.set(name, value!);
    assert.deepEqual({ produce: produce([], {}), consume: consume([], {}) }, before);
  } finally {
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) Deno.env.delete(name);
      else Deno.env.set(name, value);
    }
  }
});

// ---- default < env < flag -------------------------------------------------------------------

const ENV_OVERRIDES: Env = {
  KAFKA_BROKERS: "k1:9093, k2:9094",
  DATABASE_URL: "postgresql://app:pw@db.internal:6543/app_db?sslmode=require",
  USERS_TOPIC: "u-env",
  ORDERS_TOPIC: "o-env",
  USERS_PARTITIONS: "6",
  ORDERS_PARTITIONS: "10",
  REPLICATION_FACTOR: "3",
  CONSUMER_GROUP: "g-env",
  KAFKA_TLS: "true",
  LOG_FORMAT: "json",
  METRICS_PORT: "9464",
};

Deno.test("environment variables override every common default", () => {
  for (const config of [produce([], ENV_OVERRIDES), consume([], ENV_OVERRIDES)]) {
    assert.deepEqual(config.brokers, ["k1:9093", "k2:9094"]);
    assert.equal(config.usersTopic, "u-env");
    assert.equal(config.ordersTopic, "o-env");
    assert.equal(config.usersPartitions, 6);
    assert.equal(config.ordersPartitions, 10);
    assert.equal(config.replicationFactor, 3);
    assert.equal(config.kafkaTls, true);
    assert.equal(config.logFormat, "json");
    assert.equal(config.metricsPort, 9464);
  }
  const consumer = consume([], ENV_OVERRIDES);
  assert.equal(consumer.databaseUrl, "postgresql://app:pw@db.internal:6543/app_db?sslmode=require");
  assert.equal(consumer.consumerGroup, "g-env");
});

Deno.test("flags override the environment", () => {
  const consumerArgs = ["--database-url", "postgres://flag@h/flag_db", "--group", "g-flag"];
  const args = [
    "--brokers",
    "f1:1000",
    "--users-topic",
    "u-flag",
    "--orders-topic=o-flag",
    "--users-partitions",
    "7",
    "--orders-partitions",
    "11",
    "--replication-factor",
    "2",
    "--log-format",
    "human",
    "--metrics-port",
    "0",
  ];
  for (const config of [produce(args, ENV_OVERRIDES), consume([...args, ...consumerArgs], ENV_OVERRIDES)]) {
    assert.deepEqual(config.brokers, ["f1:1000"]);
    assert.equal(config.usersTopic, "u-flag");
    assert.equal(config.ordersTopic, "o-flag");
    assert.equal(config.usersPartitions, 7);
    assert.equal(config.ordersPartitions, 11);
    assert.equal(config.replicationFactor, 2);
    assert.equal(config.logFormat, "human");
    assert.equal(config.metricsPort, 0);
  }
  const consumer = consume([...args, ...consumerArgs], ENV_OVERRIDES);
  assert.equal(consumer.databaseUrl, "postgres://flag@h/flag_db");
  assert.equal(consumer.consumerGroup, "g-flag");
});

Deno.test("producer-only settings come from their env variables and flags, flags winning", () => {
  const env = { PRODUCE_MAX_ATTEMPTS: "3", PRODUCE_RETRY_BACKOFF_MS: "50" };
  const fromEnv = produce([], env);
  assert.equal(fromEnv.maxAttempts, 3);
  assert.equal(fromEnv.retryBackoffMs, 50);
  const fromFlags = produce(
    [
      "--max-attempts",
      "5",
      "--retry-backoff-ms",
      "10",
      "--users",
      "0",
      "--orders",
      "7",
      "--batch-size",
      "9",
      "--seed",
      "42",
      "--dry-run",
    ],
    env,
  );
  assert.equal(fromFlags.maxAttempts, 5);
  assert.equal(fromFlags.retryBackoffMs, 10);
  assert.equal(fromFlags.users, 0);
  assert.equal(fromFlags.orders, 7);
  assert.equal(fromFlags.batchSize, 9);
  assert.equal(fromFlags.seed, 42);
  assert.equal(fromFlags.dryRun, true);
});

Deno.test("consumer-only settings come from their env variables and flags, flags winning", () => {
  const env = { IDLE_TIMEOUT: "5", ORDER_WAIT_SECONDS: "0", CONSUMER_CONCURRENCY: "2", MAX_BATCH_BYTES: "2048" };
  const fromEnv = consume([], env);
  assert.equal(fromEnv.idleTimeoutS, 5);
  assert.equal(fromEnv.orderWaitS, 0);
  assert.equal(fromEnv.concurrency, 2);
  assert.equal(fromEnv.maxBatchBytes, 2048);
  const fromFlags = consume([
    "--idle-timeout",
    "9",
    "--order-wait",
    "60",
    "--concurrency",
    "16",
    "--max-batch-bytes",
    "4096",
  ], env);
  assert.equal(fromFlags.idleTimeoutS, 9);
  assert.equal(fromFlags.orderWaitS, 60);
  assert.equal(fromFlags.concurrency, 16);
  assert.equal(fromFlags.maxBatchBytes, 4096);
});

Deno.test("an empty environment variable counts as unset", () => {
  const config = consume([], { KAFKA_BROKERS: "", USERS_PARTITIONS: "", CONSUMER_GROUP: "" });
  assert.deepEqual(config.brokers, ["localhost:9092"]);
  assert.equal(config.usersPartitions, 3);
  assert.equal(config.consumerGroup, "cdc-pipeline-sink");
});

Deno.test("boolean env variables accept 1, true and yes in any case, and nothing else", () => {
  for (const yes of ["1", "true", "TRUE", "yes", "Yes"]) {
    assert.equal(consume([], { KAFKA_TLS: yes }).kafkaTls, true, yes);
  }
  for (const no of ["0", "false", "no", "off"]) assert.equal(consume([], { KAFKA_TLS: no }).kafkaTls, false, no);
  assert.equal(consume(["--kafka-tls"], { KAFKA_TLS: "false" }).kafkaTls, true);
});

Deno.test("integer values tolerate surrounding spaces", () => {
  assert.equal(consume([], { USERS_PARTITIONS: " 4 " }).usersPartitions, 4);
});

Deno.test("SASL settings are read, the mechanism case-insensitively", () => {
  const config = consume([], {
    KAFKA_SASL_MECHANISM: "SCRAM-SHA-512",
    KAFKA_SASL_USERNAME: "svc",
    KAFKA_SASL_PASSWORD: "s3cret-pass",
  });
  assert.deepEqual(config.kafkaSasl, { mechanism: "scram-sha-512", username: "svc", password: "s3cret-pass" });
  const flagged = produce(["--sasl-mechanism", "plain", "--sasl-username", "u", "--sasl-password", "p"]);
  assert.deepEqual(flagged.kafkaSasl, { mechanism: "plain", username: "u", password: "p" });
});

// ---- errors ---------------------------------------------------------------------------------

Deno.test("a non-numeric --users is a ConfigError naming the flag and the value", () => {
  const message = configError(() => loadProduceConfig(["--users", "abc"], {}));
  assert.match(message, /--users\b/);
  assert.match(message, /"abc"/);
  assert.match(message, /integer/);
});

Deno.test("USERS_PARTITIONS=0 is a ConfigError naming the flag, the env variable and the value", () => {
  const message = configError(() => loadConsumeConfig([], { USERS_PARTITIONS: "0" }));
  assert.match(message, /--users-partitions/);
  assert.match(message, /USERS_PARTITIONS/);
  assert.match(message, /: 0$/);
  assert.match(message, /1\.\.10000/);
});

Deno.test("a broker without a port is a ConfigError naming the flag, the env variable and the value", () => {
  const message = configError(() => loadProduceConfig(["--brokers", "nohost"], {}));
  assert.match(message, /--brokers/);
  assert.match(message, /KAFKA_BROKERS/);
  assert.match(message, /"nohost"/);
  assert.match(message, /host:port/);
  // The bad broker is named even when others in the list are fine.
  assert.match(configError(() => loadConsumeConfig([], { KAFKA_BROKERS: "a:1,b:x" })), /"b:x"/);
});

Deno.test("integer settings refuse fractions, exponents, signs and values out of range", () => {
  const cases: [string[], Env, RegExp][] = [
    [["--users", "1.5"], {}, /--users .*: 1\.5$/],
    [["--orders", "1e3"], {}, /--orders .*"1e3"/],
    [["--users=-1"], {}, /--users must be a non-negative integer: -1$/],
    [["--batch-size", "0"], {}, /--batch-size .*: 0$/],
    [["--seed", "4294967296"], {}, /--seed .*: 4294967296$/],
    [["--users", "99999999999999999999"], {}, /--users .*: 99999999999999999999$/],
    [[], { REPLICATION_FACTOR: "101" }, /--replication-factor \(or REPLICATION_FACTOR\) .*: 101$/],
    [[], { METRICS_PORT: "65536" }, /--metrics-port \(or METRICS_PORT\) .*: 65536$/],
    [[], { PRODUCE_MAX_ATTEMPTS: "0" }, /--max-attempts \(or PRODUCE_MAX_ATTEMPTS\) .*: 0$/],
    [[], { ORDERS_PARTITIONS: "five" }, /--orders-partitions \(or ORDERS_PARTITIONS\) .*"five"/],
  ];
  for (const [args, env, pattern] of cases) {
    assert.match(configError(() => loadProduceConfig(args, env)), pattern, `${args.join(" ")} ${JSON.stringify(env)}`);
  }
  assert.match(
    configError(() => loadConsumeConfig(["--concurrency", "0"], {})),
    /--concurrency \(or CONSUMER_CONCURRENCY\) .*: 0$/,
  );
  assert.match(configError(() => loadConsumeConfig([], { MAX_BATCH_BYTES: "100" })), /MAX_BATCH_BYTES.*: 100$/);
  assert.match(configError(() => loadConsumeConfig(["--idle-timeout", "0"], {})), /IDLE_TIMEOUT.*: 0$/);
});

Deno.test("the session timeout defaults to 30 s, is read from CONSUMER_SESSION_TIMEOUT or --session-timeout, and stays in Kafka's 6..1800 s", () => {
  assert.equal(consume().sessionTimeoutS, 30);
  assert.equal(consume([], { CONSUMER_SESSION_TIMEOUT: "12" }).sessionTimeoutS, 12);
  assert.equal(consume(["--session-timeout", "45"], { CONSUMER_SESSION_TIMEOUT: "12" }).sessionTimeoutS, 45);
  assert.match(
    configError(() => loadConsumeConfig(["--session-timeout", "5"], {})),
    /^--session-timeout \(or CONSUMER_SESSION_TIMEOUT\) must be an integer in 6\.\.1800: 5$/,
  );
});

Deno.test("a negative number after any numeric flag is refused by that flag's rule, not as an ambiguous option", () => {
  assert.equal(
    configError(() => loadProduceConfig(["--users", "-5"], {})),
    "--users must be a non-negative integer: -5",
  );
  const numeric: [(args: string[], env: Env) => unknown, string, RegExp][] = [
    [loadProduceConfig, "orders", /^--orders must be a non-negative integer: -5$/],
    [loadProduceConfig, "batch-size", /^--batch-size must be an integer in 1\.\.1000000: -5$/],
    [loadProduceConfig, "seed", /^--seed must be an integer in 0\.\.4294967295: -5$/],
    [
      loadProduceConfig,
      "max-attempts",
      /^--max-attempts \(or PRODUCE_MAX_ATTEMPTS\) must be an integer in 1\.\.1000: -5$/,
    ],
    [loadProduceConfig, "retry-backoff-ms", /^--retry-backoff-ms .* must be an integer in 1\.\.600000: -5$/],
    [loadProduceConfig, "users-partitions", /^--users-partitions .* must be an integer in 1\.\.10000: -5$/],
    [loadProduceConfig, "orders-partitions", /^--orders-partitions .* must be an integer in 1\.\.10000: -5$/],
    [loadProduceConfig, "replication-factor", /^--replication-factor .* must be an integer in 1\.\.100: -5$/],
    [loadProduceConfig, "metrics-port", /^--metrics-port .* must be an integer in 0\.\.65535: -5$/],
    [loadConsumeConfig, "idle-timeout", /^--idle-timeout .* must be an integer in 1\.\.86400: -5$/],
    [loadConsumeConfig, "order-wait", /^--order-wait .* must be an integer in 0\.\.86400: -5$/],
    [loadConsumeConfig, "concurrency", /^--concurrency .* must be an integer in 1\.\.256: -5$/],
    [loadConsumeConfig, "max-batch-bytes", /^--max-batch-bytes .* must be an integer in 1024\.\.67108864: -5$/],
    [loadConsumeConfig, "session-timeout", /^--session-timeout .* must be an integer in 6\.\.1800: -5$/],
    [loadCaptureConfig, "batch-size", /^--batch-size must be an integer in 1\.\.100000: -5$/],
  ];
  for (const [load, flag, pattern] of numeric) {
    assert.match(configError(() => load([`--${flag}`, "-5"], {})), pattern, flag);
  }
  // A fraction and a negative zero are refused by the rule too; a flag's later flags still parse.
  assert.match(configError(() => loadProduceConfig(["--users", "-0.5"], {})), /--users .*: -0\.5$/);
  const parsed = loadProduceConfig(["--users", "-0", "--orders", "3"], {});
  assert.ok(!parsed.help && parsed.config.users === 0 && parsed.config.orders === 3);
});

Deno.test("a database URL that is not postgres:// is refused without showing its password", () => {
  const message = configError(() => loadConsumeConfig([], { DATABASE_URL: "mysql://root:hunter22@db/x" }));
  assert.match(message, /--database-url \(or DATABASE_URL\)/);
  assert.match(message, /postgres:\/\//);
  assert.ok(!message.includes("hunter22"), message);
  assert.match(message, /mysql:\/\/root:\*\*\*@db\/x/);
});

Deno.test("an unknown log format or SASL mechanism is refused naming the value", () => {
  assert.match(
    configError(() => loadConsumeConfig([], { LOG_FORMAT: "xml" })),
    /--log-format \(or LOG_FORMAT\) must be human or json: got "xml"/,
  );
  assert.match(
    configError(() => loadConsumeConfig(["--sasl-mechanism", "gssapi", "--sasl-username", "u"], {})),
    /--sasl-mechanism \(or KAFKA_SASL_MECHANISM\) .*"gssapi"/,
  );
});

Deno.test("a SASL mechanism without a user name is refused", () => {
  const message = configError(() =>
    loadConsumeConfig([], { KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_PASSWORD: "pw1" })
  );
  assert.match(message, /--sasl-username \(or KAFKA_SASL_USERNAME\)/);
});

Deno.test("empty flag values are refused naming the flag", () => {
  assert.match(
    configError(() => loadConsumeConfig(["--group", ""], {})),
    /--group \(or CONSUMER_GROUP\) must not be empty/,
  );
  assert.match(configError(() => loadConsumeConfig(["--users-topic", "  "], {})), /--users-topic .*must not be empty/);
});

Deno.test("the same topic for users and orders is refused", () => {
  assert.match(configError(() => loadConsumeConfig(["--orders-topic", "users"], {})), /must differ.*"users"/);
});

Deno.test("an unknown flag is a ConfigError naming it", () => {
  assert.match(configError(() => loadProduceConfig(["--nope"], {})), /--nope/);
  assert.match(configError(() => loadConsumeConfig(["--nope=1"], {})), /--nope/);
  // Each command accepts only its own flags.
  assert.match(configError(() => loadProduceConfig(["--idle-timeout", "5"], {})), /--idle-timeout/);
  assert.match(configError(() => loadConsumeConfig(["--users", "5"], {})), /--users/);
});

/** Each command's loader; dlq's with its `list` action, which takes the flags every action does. */
const LOADERS: Record<CommandName, (args: string[], env: Env) => Parsed<unknown>> = {
  produce: loadProduceConfig,
  consume: loadConsumeConfig,
  "produce capture": loadCaptureConfig,
  "consume dlq": (args, env) => loadDlqConfig(["list", ...args], env),
};

Deno.test("each command refuses every flag that only other commands read, in one line naming the flag and the command", () => {
  for (const command of COMMANDS) {
    const own = (SETTINGS as readonly Setting[]).filter((s) => s.commands.includes(command)).map((s) => s.flag);
    const others = (SETTINGS as readonly Setting[]).filter((s) => !own.includes(s.flag));
    assert.ok(others.length > 0, `${command} has flags it does not take`);
    for (const setting of others) {
      const args = setting.type === "string" ? [`--${setting.flag}`, "x"] : [`--${setting.flag}`];
      assert.equal(
        configError(() => LOADERS[command](args, {})),
        `${command.split(" ").at(-1)} does not take --${setting.flag}`,
        `${command} ${args.join(" ")}`,
      );
    }
  }
});

Deno.test("a refused flag is one line and exit 2 on the command line, as other config errors", () => {
  const err: string[] = [];
  const spec = { summary: "", version: "0", load: loadCaptureConfig };
  const result = readCommandLine("produce capture", ["--group", "g"], {}, spec, {
    out: () => {},
    err: (l) => err.push(l),
  });
  assert.deepEqual(result, { exitCode: 2 });
  assert.deepEqual(err, ["cdc-produce capture: capture does not take --group"]);
});

Deno.test("an env variable a command does not read is not read: no error, no field", () => {
  const eventsOnly = { CONSUMER_GROUP: " ", USERS_TOPIC: "same", ORDERS_TOPIC: "same", USERS_PARTITIONS: "0" };
  const capture = loadCaptureConfig([], eventsOnly);
  assert.ok(!capture.help && !("consumerGroup" in capture.config) && !("usersTopic" in capture.config));
  const producer = produce([], { DATABASE_URL: "mysql://root:pw@db/x", CONSUMER_GROUP: " " });
  assert.ok(!("databaseUrl" in producer) && !("consumerGroup" in producer));
  const dlq = loadDlqConfig(["list"], { DATABASE_URL: "mysql://x", METRICS_PORT: "-1", IDLE_TIMEOUT: "0" });
  assert.ok(!dlq.help && !("databaseUrl" in dlq.config) && !("metricsPort" in dlq.config));
  // The commands that read them still check them.
  assert.match(configError(() => loadConsumeConfig([], { CONSUMER_GROUP: " " })), /^--group .* must not be empty$/);
  assert.match(configError(() => loadProduceConfig([], eventsOnly)), /must differ|USERS_PARTITIONS/);
});

Deno.test("positional arguments and flags missing their value are ConfigErrors", () => {
  configError(() => loadProduceConfig(["extra"], {}));
  assert.match(configError(() => loadProduceConfig(["--users"], {})), /--users/);
});

// ---- help -----------------------------------------------------------------------------------

Deno.test("--help returns {help: true} for both commands, even beside bad values", () => {
  assert.deepEqual(loadProduceConfig(["--help"], {}), { help: true });
  assert.deepEqual(loadConsumeConfig(["--help"], {}), { help: true });
  assert.deepEqual(loadConsumeConfig(["--help"], { USERS_PARTITIONS: "0" }), { help: true });
  assert.deepEqual(loadProduceConfig(["--users", "abc", "--help"], {}), { help: true });
  assert.deepEqual(loadCaptureConfig(["--group", "g", "--help"], {}), { help: true });
});

/** The flags both the producer and the consumer take. */
const COMMON_FLAGS: [string, string | undefined][] = [
  ["brokers", "KAFKA_BROKERS"],
  ["users-topic", "USERS_TOPIC"],
  ["orders-topic", "ORDERS_TOPIC"],
  ["users-partitions", "USERS_PARTITIONS"],
  ["orders-partitions", "ORDERS_PARTITIONS"],
  ["replication-factor", "REPLICATION_FACTOR"],
  ["kafka-tls", "KAFKA_TLS"],
  ["kafka-ca-file", "KAFKA_TLS_CA_FILE"],
  ["sasl-mechanism", "KAFKA_SASL_MECHANISM"],
  ["sasl-username", "KAFKA_SASL_USERNAME"],
  ["sasl-password", "KAFKA_SASL_PASSWORD"],
  ["log-format", "LOG_FORMAT"],
  ["metrics-port", "METRICS_PORT"],
  ["help", undefined],
];
const PRODUCE_ONLY: [string, string | undefined][] = [
  ["users", undefined],
  ["orders", undefined],
  ["batch-size", undefined],
  ["seed", undefined],
  ["dry-run", undefined],
  ["max-attempts", "PRODUCE_MAX_ATTEMPTS"],
  ["retry-backoff-ms", "PRODUCE_RETRY_BACKOFF_MS"],
];
const CONSUME_ONLY: [string, string | undefined][] = [
  ["database-url", "DATABASE_URL"],
  ["group", "CONSUMER_GROUP"],
  ["idle-timeout", "IDLE_TIMEOUT"],
  ["order-wait", "ORDER_WAIT_SECONDS"],
  ["concurrency", "CONSUMER_CONCURRENCY"],
  ["max-batch-bytes", "MAX_BATCH_BYTES"],
  ["session-timeout", "CONSUMER_SESSION_TIMEOUT"],
  ["rebuild", undefined],
];

function flagLines(text: string): Map<string, string> {
  const lines = new Map<string, string>();
  for (const line of text.split("\n")) {
    const m = /^\s+--([a-z-]+)\b/.exec(line);
    if (m) lines.set(m[1], line);
  }
  return lines;
}

Deno.test("the producer's help lists every flag it accepts, each with its env variable", () => {
  const text = helpText("produce", "Generate events and publish them.");
  assert.match(text, /^usage: cdc-produce \[flags\]/);
  assert.ok(text.includes("Generate events and publish them."));
  const lines = flagLines(text);
  assert.deepEqual([...lines.keys()].sort(), [...COMMON_FLAGS, ...PRODUCE_ONLY].map(([f]) => f).sort());
  for (const [flag, env] of [...COMMON_FLAGS, ...PRODUCE_ONLY]) {
    if (env) assert.ok(lines.get(flag)!.includes(`[${env}]`), `--${flag} shows ${env}`);
  }
});

Deno.test("the consumer's help lists every flag it accepts, each with its env variable", () => {
  const text = helpText("consume", "Apply events to PostgreSQL.");
  assert.match(text, /^usage: cdc-consume \[flags\]/);
  const lines = flagLines(text);
  assert.deepEqual([...lines.keys()].sort(), [...COMMON_FLAGS, ...CONSUME_ONLY].map(([f]) => f).sort());
  for (const [flag, env] of [...COMMON_FLAGS, ...CONSUME_ONLY]) {
    if (env) assert.ok(lines.get(flag)!.includes(`[${env}]`), `--${flag} shows ${env}`);
  }
});

/** A valid value for each string flag that is not a small integer. */
const VALID_VALUE: Record<string, string> = {
  "kafka-ca-file": new URL("../fixtures/tls/ca.pem", import.meta.url).pathname,
  brokers: "h:1",
  "database-url": "postgres://h/db",
  "log-format": "json",
  "users-topic": "u2",
  "orders-topic": "o2",
  group: "g2",
  "max-batch-bytes": "2048",
  "session-timeout": "10",
};

Deno.test("the capture's and dlq's help list exactly the flags they read", () => {
  const flags = (command: CommandName) => [...flagLines(helpText(command, "")).keys()];
  const kafka = ["brokers", "kafka-tls", "kafka-ca-file", "sasl-mechanism", "sasl-username", "sasl-password"];
  assert.deepEqual(
    flags("produce capture").sort(),
    [
      ...kafka,
      ...["database-url", "replication-factor", "log-format", "metrics-port", "help", "topic-prefix", "tables"],
      ...["topic-partitions", "slot", "publication", "batch-size", "schemas", "compression", "in-flight"],
      ...["in-flight-bytes", "drop-slot", "new-snapshot", "slot-failover"],
      ...["decimal-handling-mode", "time-precision-mode", "binary-handling-mode", "hstore-handling-mode"],
      ...["interval-handling-mode", "money-fraction-digits", "include-unknown-datatypes"],
      ...["tombstones-on-delete", "skipped-operations", "column-include-list", "column-exclude-list"],
      ...["message-key-columns", "replica-identity-autoset-values"],
      ...["snapshot-chunk-size", "signal-table"],
    ].sort(),
  );
  assert.deepEqual(
    flags("consume dlq").sort(),
    [...kafka, "users-topic", "orders-topic", "group", "log-format", "help", "topic", "limit", "dry-run"].sort(),
  );
});

Deno.test("every flag in the help is accepted by its command", () => {
  for (const [command, load] of [["produce", loadProduceConfig], ["consume", loadConsumeConfig]] as const) {
    for (const [flag, line] of flagLines(helpText(command, ""))) {
      if (flag === "help" || flag.startsWith("sasl-")) continue;
      // Boolean flags take no value; string flags get a valid one for their kind.
      const takesValue = line.includes(" VALUE");
      const value = VALID_VALUE[flag] ?? "2";
      const args = takesValue ? [`--${flag}`, value] : [`--${flag}`];
      assert.doesNotThrow(() => load(args, {}), `${command} --${flag}`);
    }
  }
});

// ---- URLs in logs ---------------------------------------------------------------------------

Deno.test("redactUrl hides the password and keeps everything else", () => {
  assert.equal(
    redactUrl("postgres://postgres:postgres@localhost:5432/cdc_db"),
    "postgres://postgres:***@localhost:5432/cdc_db",
  );
  assert.equal(
    redactUrl("postgresql://app:s3cr%2Ft@db.internal:6543/app?sslmode=require"),
    "postgresql://app:***@db.internal:6543/app?sslmode=require",
  );
  assert.equal(redactUrl("postgres://app@db/x"), "postgres://app@db/x");
  assert.equal(redactUrl("postgres://db:5432/x"), "postgres://db:5432/x");
});

Deno.test("databaseLocation gives host, port and database without user or password", () => {
  const location = databaseLocation("postgres://alice:s3cret@db.internal:6543/app_db?sslmode=require");
  assert.equal(location, "db.internal:6543/app_db");
  assert.ok(!location.includes("alice") && !location.includes("s3cret"));
  assert.equal(databaseLocation(DEFAULTS.databaseUrl), "localhost:5432/cdc_db");
  assert.equal(databaseLocation("postgres://bob:pw@db/x"), "db:5432/x");
  assert.equal(databaseLocation("not a url"), "(unparsable URL)");
});

Deno.test({
  name: "a broker list with no broker in it is refused",
  fn: () => {
    assert.match(configError(() => loadConsumeConfig(["--brokers", ","], {})), /--brokers/);
    assert.match(configError(() => loadConsumeConfig([], { KAFKA_BROKERS: " , " })), /KAFKA_BROKERS/);
  },
});

Deno.test({
  name: "a broker port above 65535 is refused",
  fn: () => {
    assert.match(configError(() => loadConsumeConfig(["--brokers", "kafka:99999"], {})), /"kafka:99999"/);
  },
});

Deno.test({
  name: "redactUrl hides the password when the user name is empty or the password holds a raw @",
  fn: () => {
    assert.ok(!redactUrl("postgres://:hunter22@db/x").includes("hunter22"));
    assert.ok(!redactUrl("postgres://app:hun@ter22@db/x").includes("ter22"));
  },
});

Deno.test("readCommandLine answers --version and --help, prints a bad flag as one line with exit 2, else returns the config", () => {
  const spec = { summary: "Publishes things.", version: "9.9.9", load: loadProduceConfig };
  const run = (args: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const result = readCommandLine("produce", args, {}, spec, { out: (l) => out.push(l), err: (l) => err.push(l) });
    return { result, out, err };
  };
  const version = run(["--version"]);
  assert.deepEqual(version.result, { exitCode: 0 });
  assert.deepEqual(version.out, ["cdc-produce 9.9.9"]);
  const help = run(["--help"]);
  assert.deepEqual(help.result, { exitCode: 0 });
  assert.match(help.out[0], /^usage: cdc-produce \[flags\]\n\nPublishes things\./);
  const bad = run(["--users", "many"]);
  assert.deepEqual(bad.result, { exitCode: 2 });
  assert.deepEqual(bad.out, []);
  assert.deepEqual(bad.err, ['cdc-produce: --users must be a non-negative integer: "many"']);
  const good = run(["--users", "5"]);
  assert.ok("config" in good.result && good.result.config.users === 5);
  assert.deepEqual([...good.out, ...good.err], []);
});

Deno.test("the capture's defaults are the contract's: prefix cdc, slot cdc_slot, publication cdc_pub", () => {
  const parsed = loadCaptureConfig([], {});
  assert.equal(parsed.help, false);
  if (parsed.help) return;
  const { topicPrefix, slot, publication, batchSize, dropSlot } = parsed.config;
  assert.deepEqual({ topicPrefix, slot, publication, batchSize, dropSlot }, {
    topicPrefix: "cdc",
    slot: "cdc_slot",
    publication: "cdc_pub",
    batchSize: DEFAULTS.captureBatchSize,
    dropSlot: false,
  });
});

Deno.test("capture settings come from CAPTURE_* variables and flags, flags winning", () => {
  const env = { CAPTURE_TOPIC_PREFIX: "dbz", CAPTURE_SLOT: "env_slot", CAPTURE_PUBLICATION: "env_pub" };
  const parsed = loadCaptureConfig(["--slot", "flag_slot", "--drop-slot"], env);
  if (parsed.help) throw new Error("unreachable");
  assert.equal(parsed.config.topicPrefix, "dbz");
  assert.equal(parsed.config.slot, "flag_slot");
  assert.equal(parsed.config.publication, "env_pub");
  assert.equal(parsed.config.dropSlot, true);
});

Deno.test("incremental snapshots: chunks of 1024 rows by default as Debezium's, no signal table unless one is named", () => {
  const parsed = loadCaptureConfig([], {});
  if (parsed.help) throw new Error("unreachable");
  assert.equal(parsed.config.snapshotChunkSize, 1024);
  assert.equal(parsed.config.signalTable, undefined);
  const set = loadCaptureConfig(["--snapshot-chunk-size", "5000"], { CAPTURE_SIGNAL_TABLE: "ops.dbz_signal" });
  if (set.help) throw new Error("unreachable");
  assert.equal(set.config.snapshotChunkSize, 5000);
  assert.deepEqual(set.config.signalTable, { schema: "ops", table: "dbz_signal" });
  const bare = loadCaptureConfig(["--signal-table", "signals"], {});
  assert.deepEqual(!bare.help && bare.config.signalTable, { schema: "public", table: "signals" });
  assert.throws(() => loadCaptureConfig(["--snapshot-chunk-size", "0"], {}), /--snapshot-chunk-size .*got "0"|0/);
  assert.throws(
    () => loadCaptureConfig([], { CAPTURE_SIGNAL_TABLE: "a.b.c" }),
    (e: Error) => e instanceof ConfigError && /CAPTURE_SIGNAL_TABLE.*schema\.table.*"a\.b\.c"/.test(e.message),
  );
});

Deno.test("a slot or publication name a replication command cannot carry is refused, naming the rule", () => {
  assert.throws(
    () => loadCaptureConfig([], { CAPTURE_SLOT: "Slot-1" }),
    (e: Error) =>
      e instanceof ConfigError &&
      e.message === '--slot (or CAPTURE_SLOT) must be 1..63 lower-case letters, digits or underscores: got "Slot-1"',
  );
  assert.throws(() => loadCaptureConfig(["--publication", "p'; drop"], {}), /--publication .* got "p'; drop"/);
  assert.throws(() => loadCaptureConfig(["--topic-prefix", "a b"], {}), /--topic-prefix .* got "a b"/);
});

Deno.test("cdc-produce capture --help lists the capture flags with their variables", () => {
  const help = helpText("produce capture", "summary");
  assert.match(help, /^usage: cdc-produce capture \[flags\]/);
  assert.match(help, /--slot VALUE .*\[CAPTURE_SLOT\]/);
  assert.match(help, /--publication VALUE .*\[CAPTURE_PUBLICATION\]/);
  assert.match(help, /--topic-prefix VALUE .*\[CAPTURE_TOPIC_PREFIX\]/);
  assert.match(help, /--drop-slot/);
});

Deno.test("every setting in the table names its config field and has a parser", () => {
  for (const s of SETTINGS as readonly Setting[]) {
    assert.match(s.field, /^[a-z][A-Za-z]*$/, `--${s.flag} has a camelCase field`);
    assert.equal(typeof s.parse, "function", `--${s.flag} has a parser`);
  }
});

Deno.test("every command's --help lists exactly the table's settings for that command, in table order", () => {
  for (const command of COMMANDS) {
    const listed = helpText(command, "").split("\n").flatMap((line) => /^ {2}--([a-z-]+)/.exec(line)?.[1] ?? []);
    const table = (SETTINGS as readonly Setting[]).filter((s) => s.commands.includes(command)).map((s) => s.flag);
    assert.deepEqual(listed, table, command);
  }
});

/** True when A and B are the same type (not just assignable one way). */
type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false;

Deno.test("the config types derived from the table keep choices as literal unions and unset settings optional", () => {
  const checks: [
    Same<ProduceConfig["logFormat"], "human" | "json">,
    Same<CaptureConfig["compression"], "none" | "gzip">,
    Same<Pick<ProduceConfig, "seed">, { seed?: number }>,
    Same<
      Pick<ConsumeConfig, "kafkaSasl">,
      { kafkaSasl?: { mechanism: "plain" | "scram-sha-256" | "scram-sha-512"; username: string; password: string } }
    >,
    "consumerGroup" extends keyof CaptureConfig | keyof ProduceConfig ? false : true,
    "databaseUrl" | "metricsPort" extends keyof DlqConfig ? false : true,
  ] = [true, true, true, true, true, true];
  assert.deepEqual(checks, [true, true, true, true, true, true]);
});

Deno.test("capture topics get 5 partitions for public.orders and 3 for any other table by default, as the source topics", () => {
  const parsed = loadCaptureConfig([], {});
  if (parsed.help) throw new Error("unreachable");
  const { topicPartitions } = parsed.config;
  assert.deepEqual(topicPartitions, { count: 3, tables: [{ schema: "public", table: "orders", partitions: 5 }] });
  assert.equal(partitionsOf(topicPartitions, { schema: "public", table: "orders" }), 5);
  assert.equal(partitionsOf(topicPartitions, { schema: "public", table: "users" }), 3);
  assert.equal(partitionsOf(topicPartitions, { schema: "shop", table: "orders" }), 3);
});

Deno.test("--topic-partitions is read from CAPTURE_TOPIC_PARTITIONS or the flag, flag winning, bare names in public", () => {
  const load = (args: string[], env: Env) => {
    const parsed = loadCaptureConfig(args, env);
    if (parsed.help) throw new Error("unreachable");
    return parsed.config.topicPartitions;
  };
  assert.deepEqual(load([], { CAPTURE_TOPIC_PARTITIONS: "6" }), { count: 6, tables: [] });
  assert.deepEqual(load(["--topic-partitions", " items:2 , 1 ,shop.orders:12"], { CAPTURE_TOPIC_PARTITIONS: "6" }), {
    count: 1,
    tables: [{ schema: "public", table: "items", partitions: 2 }, { schema: "shop", table: "orders", partitions: 12 }],
  });
  // USERS_PARTITIONS and ORDERS_PARTITIONS are the event topics': the capture neither reads nor refuses them.
  assert.deepEqual(load([], { ORDERS_PARTITIONS: "9", USERS_PARTITIONS: "0" }).count, 3);
});

Deno.test("a --topic-partitions value without exactly one bare count, with a bad name, count or a table twice is refused naming it", () => {
  const from = "--topic-partitions (or CAPTURE_TOPIC_PARTITIONS)";
  const cases: [string, string][] = [
    [
      "public.orders:5",
      `${from} must give one count for the tables it does not name (e.g. 3,public.orders:5): got "public.orders:5"`,
    ],
    ["3,4", `${from} must give one count for the tables it does not name (e.g. 3,public.orders:5): got "3,4"`],
    ["3,bad-name:2", `${from} must be a count, then schema.table:count items: got "bad-name:2"`],
    ["3,a:b:2", `${from} must be a count, then schema.table:count items: got "a:b:2"`],
    ["3,orders:2,public.orders:4", `${from} names public.orders twice: got "3,orders:2,public.orders:4"`],
    ["0", `${from} must be an integer in 1..10000: 0`],
    ["3,orders:x", `${from} must be an integer in 1..10000: "x"`],
    [" , ", `${from} must give one count for the tables it does not name (e.g. 3,public.orders:5): got ","`],
  ];
  for (const [value, message] of cases) {
    assert.equal(configError(() => loadCaptureConfig([], { CAPTURE_TOPIC_PARTITIONS: value })), message, value);
  }
});

Deno.test("a setting that carries a Debezium property over is named after it: flag with dashes, env CAPTURE_ in upper snake case", () => {
  for (const s of SETTINGS as readonly Setting[]) {
    if (!s.debezium) continue;
    assert.equal(s.flag, s.debezium.replaceAll(".", "-"), s.debezium);
    assert.equal(s.env, `CAPTURE_${s.debezium.replaceAll(".", "_").replaceAll("-", "_").toUpperCase()}`, s.debezium);
    assert.deepEqual(s.commands, ["produce capture"], s.debezium);
  }
});

Deno.test("slot.failover is false by default, true from its flag or env, and another value is refused naming the setting", () => {
  const load = (args: string[], env: Record<string, string> = {}) => {
    const parsed = loadCaptureConfig(args, env);
    assert.equal(parsed.help, false);
    return parsed.config.slotFailover;
  };
  assert.equal(load([]), false);
  assert.equal(load(["--slot-failover", "true"]), true);
  assert.equal(load([], { CAPTURE_SLOT_FAILOVER: "true" }), true);
  assert.equal(load(["--slot-failover", "false"], { CAPTURE_SLOT_FAILOVER: "true" }), false);
  assert.equal(
    configError(() => loadCaptureConfig([], { CAPTURE_SLOT_FAILOVER: "yes" })),
    '--slot-failover (or CAPTURE_SLOT_FAILOVER) must be one of true, false: got "yes"',
  );
});
