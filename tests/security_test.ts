/**
 * Security against real services: SASL/PLAIN and SCRAM against a real broker's SASL listener end
 * to end, refused Kafka and PostgreSQL logins as one line, and secrets absent from every output.
 */
import assert from "node:assert/strict";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
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
  runServices,
  seededEvents,
  startCommand,
  stopWithin,
  uniqueName,
  waitFor,
} from "./_helpers.ts";
import { assertNoSecrets, oneLine } from "./_output.ts";

/** The local dev credential scripts/services.sh gives the broker's SASL listener. */
const SASL_USER = "cdc";
const SASL_PASSWORD = "cdc-secret";

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
        oneLine(result, /SASL.*authentication failed/i, `produce (${format})`);
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
        oneLine(result, /password authentication failed/, `consume (${format})`);
        assertNoSecrets(result, secrets, `consume (${format})`);
      }
    });
  } finally {
    await db.drop();
    await broker.stop();
  }
});
