/** The real services answer the way the project uses them: its Kafka client and publisher, its database pool. */
import assert from "node:assert/strict";
import { loadProduceConfig } from "../lib/config.ts";
import { createKafka, createTopic } from "../lib/kafka_admin.ts";
import { createLogger } from "../lib/log.ts";
import { createPublisher, writeWithRetry } from "../lib/kafka_producer.ts";
import { connectDatabase } from "../lib/database.ts";
import {
  ADMIN_DATABASE_URL,
  BROKERS,
  readTopic,
  ROOT,
  runServices,
  serverMajor,
  testKafka,
  topicSize,
  uniqueName,
} from "./_helpers.ts";

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

const adminUrl = new URL(ADMIN_DATABASE_URL);
Deno.test({
  name: "services up with a PG_VERSION other than the running server's is refused in one line naming both",
  // Only a server on this machine can be asked for by its port.
  ignore: !["localhost", "127.0.0.1"].includes(adminUrl.hostname),
  fn: async () => {
    const major = await serverMajor();
    const asked = major === 17 ? 16 : 17;
    const run = await runServices(["up", "postgres"], {
      PG_VERSION: String(asked),
      PG_PORT: adminUrl.port || "5432",
      CDC_DATA_DIR: `${ROOT}.data/${uniqueName("pgversion")}`,
    });
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr.trim(),
      new RegExp(
        `^services: error: the PostgreSQL on localhost:\\d+ is version ${major}, not PG_VERSION=${asked}: stop it or use another PG_PORT$`,
      ),
    );
  },
});

Deno.test("services up is idempotent: a second run reuses the running services", async () => {
  const run = await runServices(["up", "kafka", "postgres"]);
  assert.equal(run.code, 0, run.stderr);
  assert.doesNotMatch(run.stderr, /starting Kafka|starting PostgreSQL|initialising/);
  const status = await runServices(["status"]);
  assert.match(status.stdout, /^kafka .*(running|reachable)/m);
  assert.match(status.stdout, /^postgres .*(running|reachable)/m);
});

Deno.test("a checkout that did not start the broker resolves Kafka's Java tools and produces with ProducerPerformance", async () => {
  // A fresh checkout: its own scripts, no jars in its .cache, no services of its own.
  const checkout = `${await Deno.makeTempDir({ prefix: "cdc-checkout-" })}/`;
  const topic = uniqueName("java_tools");
  const admin = testKafka().admin();
  await admin.connect();
  try {
    await Deno.mkdir(`${checkout}scripts/kafka`, { recursive: true });
    await Deno.copyFile(`${ROOT}scripts/services.sh`, `${checkout}scripts/services.sh`);
    for await (const file of Deno.readDir(`${ROOT}scripts/kafka`)) {
      await Deno.copyFile(`${ROOT}scripts/kafka/${file.name}`, `${checkout}scripts/kafka/${file.name}`);
    }
    const env = { KAFKA_PORT: BROKERS[0].split(":")[1], CDC_DATA_DIR: `${checkout}.data` };
    const up = await runServices(["up", "kafka"], env, checkout);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, /reusing the Kafka already listening/);

    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const perf = await runServices(
      [
        "tool",
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        "500",
        "--record-size",
        "100",
        "--throughput",
        "-1",
        "--producer-props",
        `bootstrap.servers=${BROKERS.join(",")}`,
        "acks=all",
      ],
      env,
      checkout,
    );
    assert.equal(perf.code, 0, perf.stderr);
    assert.match(perf.stderr, /resolving Apache Kafka \S+ jars/);
    assert.match(perf.stdout, /^500 records sent/m);
    assert.equal(await topicSize(topic), 500);
  } finally {
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
    await Deno.remove(checkout, { recursive: true });
  }
});
