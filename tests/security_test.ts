/**
 * Security basics: SASL/PLAIN against a real broker's SASL listener end to end, refused logins
 * as one line, secrets absent from every output, and the TLS options both clients receive.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { ConfigError, loadConsumeConfig, loadProduceConfig } from "../lib/config.ts";
import { redactUrl } from "../lib/config_values.ts";
import { kafkaSecurityOptions } from "../lib/kafka_admin.ts";
import { connectDatabase } from "../lib/database.ts";
import {
  ADMIN_DATABASE_URL,
  BROKERS,
  createTestDatabase,
  diffTables,
  freePortRange,
  metricsAddress,
  pipelineNames,
  produceWorkload,
  readTables,
  referenceState,
  ROOT,
  runCommand,
  type RunResult,
  runServices,
  seededEvents,
  startCommand,
  stopWithin,
  uniqueName,
  waitFor,
} from "./_helpers.ts";

/** The local dev credential scripts/services.sh gives the broker's SASL listener. */
const SASL_USER = "cdc";
const SASL_PASSWORD = "cdc-secret";
const CA_FILE = `${ROOT}tests/fixtures/tls/ca.pem`;

// ---- option mapping (no services) -----------------------------------------------------------

Deno.test("Kafka TLS is off by default, on with --kafka-tls, and trusts only the given CA with a CA file", () => {
  const load = (args: string[], env: Record<string, string> = {}) => {
    const parsed = loadProduceConfig(args, env);
    assert.ok(!parsed.help);
    return parsed.config;
  };
  assert.deepEqual(kafkaSecurityOptions(load([])), { ssl: false });
  assert.deepEqual(kafkaSecurityOptions(load([], { KAFKA_TLS: "true" })), { ssl: true });
  const withCa = load([], { KAFKA_TLS_CA_FILE: CA_FILE });
  assert.equal(withCa.kafkaTls, true);
  assert.deepEqual(kafkaSecurityOptions(withCa), { ssl: { ca: [Deno.readTextFileSync(CA_FILE)] } });
  assert.deepEqual(
    kafkaSecurityOptions(
      load(["--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "u"], { KAFKA_SASL_PASSWORD: "p" }),
    ),
    { ssl: false, sasl: { mechanism: "scram-sha-512", username: "u", password: "p" } },
  );
});

Deno.test("an unreadable or non-PEM CA file and half-given SASL credentials are one-line configuration errors", () => {
  const cases: [Record<string, string>, RegExp][] = [
    [
      { KAFKA_TLS_CA_FILE: `${ROOT}tests/fixtures/tls/missing.pem` },
      /KAFKA_TLS_CA_FILE\) cannot be read: ".*missing\.pem"/,
    ],
    [{ KAFKA_TLS_CA_FILE: `${ROOT}deno.json` }, /KAFKA_TLS_CA_FILE\) must be a PEM file of certificates/],
    [{ KAFKA_SASL_USERNAME: "u", KAFKA_SASL_PASSWORD: "p" }, /SASL credentials need --sasl-mechanism/],
    [{ KAFKA_SASL_MECHANISM: "plain", KAFKA_SASL_USERNAME: "u" }, /KAFKA_SASL_PASSWORD\) is required/],
  ];
  for (const [env, message] of cases) {
    assert.throws(() => loadConsumeConfig([], env), (error: Error) => {
      assert.ok(error instanceof ConfigError, `${JSON.stringify(env)}: ${error}`);
      assert.match(error.message, message);
      assert.doesNotMatch(error.message, /\n|"p"/);
      return true;
    });
  }
});

Deno.test("sslmode in DATABASE_URL reaches the PostgreSQL client and is not sent as a server setting", async () => {
  for (const [mode, ssl] of [["require", "require"], ["verify-full", "verify-full"], ["disable", false]] as const) {
    const sql = connectDatabase(`postgres://u:p@db.example:5432/app?sslmode=${mode}`, 1) as unknown as postgres.Sql;
    assert.equal(sql.options.ssl, ssl, mode);
    assert.equal((sql.options.connection as Record<string, unknown>).sslmode, undefined);
    await sql.end();
  }
});

// ---- unparsable settings, through the real commands --------------------------------------------

Deno.test("an unparsable DATABASE_URL: consume and capture, which read it, each exit 2 with one line and no password in any spelling", async () => {
  const urls: [string, string][] = [
    ["postgres://user:Secret@localhost:99999/db", "Secret"],
    ["postgres://user:S3cr%40t%2Fx@localhost:99999/db", "S3cr@t/x"],
    ["postgresql://app:p@ss w0rd@[::1/db?sslmode=require", "p@ss w0rd"],
    ["postgres://app@db:5432:5432/x?password=Hunter%2042", "Hunter 42"],
  ];
  const commands: ["produce" | "consume", string[]][] = [
    ["consume", ["--idle-timeout", "1"]],
    ["produce", ["capture"]],
  ];
  const runs = urls.flatMap(([url, secret]) =>
    commands.map(async ([name, args]) => {
      const what = `${[name, ...args].join(" ")} with ${JSON.stringify(redactUrl(url))}`;
      const result = await runCommand(name, args, { DATABASE_URL: url, KAFKA_BROKERS: BROKERS.join(",") });
      assert.equal(result.code, 2, `${what}: exit ${result.code}\n${result.stderr}`);
      const lines = result.stderr.trim().split("\n");
      assert.equal(lines.length, 1, `${what}: one line in\n${result.stderr}`);
      assert.match(lines[0], /DATABASE_URL\) (is not a valid URL|must)/, what);
      assertNoSecrets(result, [secret, encodeURIComponent(secret)], what);
      assert.ok(!/Secret|S3cr|p@ss|Hunter/.test(result.stderr), `${what}: ${result.stderr}`);
    })
  );
  await Promise.all(runs);
});

// ---- real broker with a SASL listener ---------------------------------------------------------

/** Whether `brokers` accept the local dev SASL/PLAIN credential. */
async function acceptsSasl(brokers: string[]): Promise<boolean> {
  const admin = new Kafka({
    clientId: "cdc-tests",
    brokers,
    sasl: { mechanism: "plain", username: SASL_USER, password: SASL_PASSWORD },
    connectionTimeout: 2_000,
    retry: { retries: 0 },
    logLevel: logLevel.NOTHING,
  }).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => {});
  }
}

async function services(action: "up" | "down", env: Record<string, string>): Promise<void> {
  const run = await runServices([action, "kafka"], env);
  assert.equal(run.code, 0, run.stderr);
}

/**
 * The SASL listener of the test broker (its port + 2), or, when that broker predates the SASL
 * listener, a broker of our own on free ports, stopped and removed by `stop()`.
 */
async function saslBroker(): Promise<{ brokers: string; stop: () => Promise<void> }> {
  const [host, port] = BROKERS[0].split(":");
  const shared = `${host}:${Number(port) + 2}`;
  if (await acceptsSasl([shared])) return { brokers: shared, stop: () => Promise.resolve() };
  const base = freePortRange(3);
  const dataDir = `${ROOT}.data/${uniqueName("security")}`;
  const env = { CDC_DATA_DIR: dataDir, KAFKA_PORT: String(base) };
  const stop = async () => {
    await services("down", env);
    await Deno.remove(dataDir, { recursive: true });
  };
  try {
    await services("up", env);
  } catch (error) {
    await stop().catch(() => {});
    throw error;
  }
  return { brokers: `localhost:${base + 2}`, stop };
}

/** A PostgreSQL role with a password of its own, owning a fresh database, dropped by `drop()`. */
async function databaseWithOwnRole(password: string) {
  const db = await createTestDatabase();
  const role = uniqueName("cdc_role");
  const admin = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create role ${role} login password '${password.replaceAll("'", "''")}'`);
  const name = new URL(db.url).pathname.slice(1);
  await admin.unsafe(`alter database ${name} owner to ${role}`);
  await admin.end();
  const url = new URL(db.url);
  url.username = role;
  url.password = encodeURIComponent(password);
  return {
    ...db,
    url: url.href,
    urlWithPassword: (other: string) => Object.assign(new URL(url.href), { password: encodeURIComponent(other) }).href,
    drop: async () => {
      await db.drop();
      const admin2 = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} });
      await admin2.unsafe(`drop role if exists ${role}`);
      await admin2.end();
    },
  };
}

/** Every spelling of `secret` a log line could carry: raw, URL-encoded, JSON-escaped. */
function spellings(secret: string): string[] {
  return [...new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1)])];
}

function assertNoSecrets(result: RunResult, secrets: string[], what: string): void {
  for (const secret of secrets) {
    for (const spelling of spellings(secret)) {
      assert.ok(!result.stdout.includes(spelling), `${what}: stdout shows ${JSON.stringify(spelling)}`);
      assert.ok(!result.stderr.includes(spelling), `${what}: stderr shows ${JSON.stringify(spelling)}`);
    }
  }
}

function assertOneLineFailure(result: RunResult, reason: RegExp, what: string): void {
  assert.notEqual(result.code, 0, `${what} exited 0`);
  const failures = result.stderr.split("\n").filter((line) => reason.test(line));
  assert.equal(failures.length, 1, `${what}: one line naming the failure in:\n${result.stderr}`);
  assert.doesNotMatch(result.stderr, /^\s+at /m, `${what}: a stack trace in:\n${result.stderr}`);
}

Deno.test("SASL/PLAIN and SCRAM end to end; refused Kafka and PostgreSQL logins are one line; no password is ever printed", async (t) => {
  const broker = await saslBroker();
  const pgPassword = `Pg s3cret/@%${crypto.randomUUID().slice(0, 8)}`;
  const wrongKafka = `wrong-${crypto.randomUUID().slice(0, 8)}`;
  const wrongPg = `Bad p@ss/${crypto.randomUUID().slice(0, 8)}`;
  const secrets = [SASL_PASSWORD, pgPassword, wrongKafka, wrongPg];
  const db = await databaseWithOwnRole(pgPassword);
  try {
    const env = {
      ...pipelineNames(db.url),
      KAFKA_BROKERS: broker.brokers,
      KAFKA_SASL_MECHANISM: "plain",
      KAFKA_SASL_USERNAME: SASL_USER,
      KAFKA_SASL_PASSWORD: SASL_PASSWORD,
    };

    await t.step("a seeded workload goes through the SASL listener into PostgreSQL as the reference says", async () => {
      const produced = await produceWorkload(env, { users: 200, orders: 400, seed: 5 });
      assertNoSecrets(produced, secrets, "produce");
      const { userEvents, orderEvents } = seededEvents(5, 200, 400);
      const expected = referenceState(userEvents, orderEvents);
      const consumer = startCommand("consume", ["--metrics-port", "0", "--log-format", "json"], env);
      let scraped = "";
      try {
        const url = await metricsAddress(consumer);
        await waitFor(
          "the tables to reach the reference state",
          async () => diffTables(expected, await readTables(db.sql)).length === 0,
        );
        for (const path of ["/metrics", "/health"]) scraped += await (await fetch(`${url}${path}`)).text();
      } finally {
        await stopWithin(consumer);
      }
      const consumed = await consumer.done;
      assert.equal(consumed.code, 0, consumed.stderr);
      assert.match(scraped, /cdc_records_applied_total/);
      assertNoSecrets({ ...consumed, stdout: consumed.stdout + scraped }, secrets, "consume and its /metrics");
      assert.ok(expected.orders.size > 100);
    });

    await t.step("SCRAM-SHA-256 and SCRAM-SHA-512 logins publish too", async () => {
      for (const mechanism of ["scram-sha-256", "scram-sha-512"]) {
        const result = await runCommand("produce", ["--users", "5", "--orders", "5"], {
          ...env,
          KAFKA_SASL_MECHANISM: mechanism,
        });
        assert.equal(result.code, 0, `${mechanism}: ${result.stderr}`);
        assertNoSecrets(result, secrets, mechanism);
      }
    });

    await t.step("a wrong SASL password: produce exits at once with one line naming the failed login", async () => {
      for (const format of ["human", "json"]) {
        const result = await runCommand(
          "produce",
          ["--users", "5", "--orders", "5", "--log-format", format, "--max-attempts", "20"],
          { ...env, KAFKA_SASL_PASSWORD: wrongKafka },
        );
        assertOneLineFailure(result, /SASL.*authentication failed/i, `produce (${format})`);
        assert.equal(result.stderr.trim().split("\n").length, 1, result.stderr);
        assert.doesNotMatch(result.stderr, /retrying/);
        assertNoSecrets(result, secrets, `produce (${format})`);
      }
    });

    await t.step("a wrong PostgreSQL password: consume exits with one line naming the failed login", async () => {
      for (const format of ["human", "json"]) {
        const result = await runCommand(
          "consume",
          ["--idle-timeout", "2", "--log-format", format],
          { ...env, DATABASE_URL: db.urlWithPassword(wrongPg) },
        );
        assertOneLineFailure(result, /password authentication failed/, `consume (${format})`);
        assertNoSecrets(result, secrets, `consume (${format})`);
      }
    });
  } finally {
    await db.drop();
    await broker.stop();
  }
});
