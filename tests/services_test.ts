/** The real services answer the way the project uses them: its Kafka client and publisher, its database pool. */
import assert from "node:assert/strict";
import { DEFAULTS, loadProduceConfig } from "../lib/config.ts";
import { createKafka, createTopic } from "../lib/kafka_admin.ts";
import { createPublisher, writeWithRetry } from "../lib/publisher.ts";
import { createLogger } from "../lib/log.ts";
import { connectDatabase } from "../lib/sink.ts";
import { ADMIN_DATABASE_URL, BROKERS, readTopic, ROOT, uniqueName } from "./_helpers.ts";

const quietLogger = createLogger({ component: "test", write: () => {} });

Deno.test("the project's publisher writes keyed records to a topic createTopic made on the real broker; they read back, one partition per key", async () => {
  const topic = uniqueName("roundtrip");
  const config = loadProduceConfig(["--brokers", BROKERS.join(",")], {});
  assert.ok(!config.help);
  const kafka = createKafka(config.config, "services-test", quietLogger);
  const admin = kafka.admin();
  await admin.connect();
  try {
    assert.equal(await createTopic(admin, topic, 3, 1, quietLogger), true);
    assert.equal(await createTopic(admin, topic, 3, 1, quietLogger), false, "a second call finds the topic");
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    assert.equal(metadata.topics[0].partitions.length, 3);
  } finally {
    await admin.disconnect();
  }
  const producer = createPublisher(kafka);
  await producer.connect();
  const sent = Array.from({ length: 30 }, (_, i) => ({ key: `key-${i % 7}`, value: JSON.stringify({ i }) }));
  try {
    await writeWithRetry(producer, [{ topic, messages: sent }], {
      maxAttempts: 3,
      backoffMs: 100,
      logger: quietLogger,
    });
  } finally {
    await producer.disconnect();
  }

  const records = await readTopic(topic, 30);
  assert.equal(records.length, 30);
  assert.deepEqual(
    records.map((r) => new TextDecoder().decode(r.value!)).sort(),
    sent.map((m) => m.value).sort(),
  );
  const partitionOfKey = new Map<string, number>();
  for (const r of records) {
    const seen = partitionOfKey.get(r.key!);
    if (seen !== undefined) assert.equal(r.partition, seen, `key ${r.key} landed in two partitions`);
    partitionOfKey.set(r.key!, r.partition);
  }
});

Deno.test("the real database, through connectDatabase, keeps timestamptz to the microsecond and has wal_level=logical", async () => {
  const sql = connectDatabase(ADMIN_DATABASE_URL, 1);
  try {
    const [row] = await sql.begin(async (tx) => {
      await tx`create temporary table roundtrip (id uuid primary key, at timestamptz) on commit drop`;
      // Bound as text, as the sink binds it: a timestamptz parameter goes through a JS Date (milliseconds).
      await tx`insert into roundtrip values (${"0e0c6d0f-93c5-4c4f-9d2f-6b7c43d1a001"}::text::uuid,
        ${"2025-07-03T10:11:12.123456+01:00"}::text::timestamptz)`;
      return await tx`select id, to_char(at at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') as at from roundtrip`;
    });
    assert.deepEqual({ ...row }, { id: "0e0c6d0f-93c5-4c4f-9d2f-6b7c43d1a001", at: "2025-07-03 09:11:12.123456" });
    const [settings] = await sql`select current_setting('wal_level') as wal_level,
      current_setting('application_name') as application_name`;
    assert.deepEqual({ ...settings }, { wal_level: "logical", application_name: "cdc-pipeline" });
  } finally {
    await sql.end();
  }
});

Deno.test("compose.yaml offers the services on the ports and credentials of the config defaults", async () => {
  const compose = await Deno.readTextFile(`${ROOT}compose.yaml`);
  const pom = await Deno.readTextFile(`${ROOT}scripts/kafka/pom.xml`);
  const kafkaVersion = /<kafka.version>(.+)<\/kafka.version>/.exec(pom)![1];
  const url = new URL(DEFAULTS.databaseUrl);
  const [, kafkaPort] = DEFAULTS.brokers.split(":");
  assert.match(compose, new RegExp(`image: apache/kafka:${kafkaVersion.replaceAll(".", "\\.")}\\n`));
  assert.match(compose, new RegExp(`- "${kafkaPort}:${kafkaPort}"`));
  const saslPort = Number(kafkaPort) + 2;
  assert.match(compose, new RegExp(`- "${saslPort}:${saslPort}"`));
  assert.match(
    compose,
    new RegExp(
      `KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://localhost:${kafkaPort},SASL_PLAINTEXT://localhost:${saslPort}\\n`,
    ),
  );
  assert.match(compose, new RegExp(`- "${url.port}:5432"`));
  assert.match(compose, new RegExp(`POSTGRES_USER: ${url.username}\\n`));
  assert.match(compose, new RegExp(`POSTGRES_PASSWORD: ${url.password}\\n`));
  assert.match(compose, new RegExp(`POSTGRES_DB: ${url.pathname.slice(1)}\\n`));
  assert.match(compose, /wal_level=logical/);
  assert.match(compose, /KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"/);
  const services = await Deno.readTextFile(`${ROOT}scripts/services.sh`);
  assert.match(services, new RegExp(`KAFKA_PORT="\\$\\{KAFKA_PORT:-${kafkaPort}\\}"`));
  assert.match(services, new RegExp(`PG_PORT="\\$\\{PG_PORT:-${url.port}\\}"`));
  assert.match(services, new RegExp(`PG_DB="\\$\\{PG_DB:-${url.pathname.slice(1)}\\}"`));
  // The same SASL dev credential in both: PLAIN in the listener's JAAS, SCRAM added at start.
  const [, user, secret] =
    /KAFKA_SASL_USER="\$\{KAFKA_SASL_USER:-(\w+)\}"\nKAFKA_SASL_SECRET="\$\{KAFKA_SASL_SECRET:-([^}]+)\}"/
      .exec(services)!;
  assert.match(compose, new RegExp(`PlainLoginModule required user_${user}="${secret}";`));
  assert.match(compose, new RegExp(`--entity-name ${user} --add-config "\\$\\$m=\\[password=${secret}\\]"`));
  assert.match(compose, /SASL_ENABLED_MECHANISMS: PLAIN,SCRAM-SHA-256,SCRAM-SHA-512\n/);
});

Deno.test("services up is idempotent: a second run reuses the running services", async () => {
  const run = await new Deno.Command("bash", {
    args: [`${ROOT}scripts/services.sh`, "up", "kafka", "postgres"],
    stderr: "piped",
  })
    .output();
  const stderr = new TextDecoder().decode(run.stderr);
  assert.equal(run.code, 0, stderr);
  assert.doesNotMatch(stderr, /starting Kafka|starting PostgreSQL|initialising/);
  const status = await new Deno.Command("bash", { args: [`${ROOT}scripts/services.sh`, "status"], stdout: "piped" })
    .output();
  const lines = new TextDecoder().decode(status.stdout);
  assert.match(lines, /^kafka .*(running|reachable)/m);
  assert.match(lines, /^postgres .*(running|reachable)/m);
});
