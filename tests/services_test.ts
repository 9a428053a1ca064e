/** The real services answer: kafkajs against the broker, postgres.js against the database. */
import assert from "node:assert/strict";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import {
  ADMIN_DATABASE_URL,
  BROKERS,
  readTopic,
  ROOT,
  runServices,
  testKafka,
  topicSize,
  uniqueName,
} from "./_helpers.ts";

Deno.test("kafkajs creates a topic on the real broker, writes keyed records and reads them back", async () => {
  const topic = uniqueName("roundtrip");
  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  try {
    assert.equal(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true }), true);
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    assert.equal(metadata.topics[0].partitions.length, 3);
  } finally {
    await admin.disconnect();
  }
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const sent = Array.from({ length: 30 }, (_, i) => ({ key: `key-${i % 7}`, value: JSON.stringify({ i }) }));
  await producer.send({ topic, acks: -1, messages: sent });
  await producer.disconnect();

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

Deno.test("postgres.js round-trips rows through the real database with unnest", async () => {
  const sql = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql.begin(async (tx) => {
      await tx`create temporary table roundtrip (id int, label text, at timestamptz) on commit drop`;
      await tx`insert into roundtrip select * from unnest(${tx.array([1, 2])}::int[], ${tx.array(["a", "b"])}::text[],
        ${tx.array(["2025-07-03T09:11:12.123456Z", "2025-07-03T10:11:12Z"])}::timestamptz[])`;
      return await tx`select id, label, to_char(at at time zone 'UTC', 'HH24:MI:SS.US') as at from roundtrip order by id`;
    });
    assert.deepEqual(rows.map((r) => [r.id, r.label, r.at]), [[1, "a", "09:11:12.123456"], [
      2,
      "b",
      "10:11:12.000000",
    ]]);
    const [{ wal_level }] = await sql`select current_setting('wal_level') as wal_level`;
    assert.equal(wal_level, "logical");
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
  const run = await runServices(["up", "kafka", "postgres"]);
  assert.equal(run.code, 0, run.stderr);
  assert.doesNotMatch(run.stderr, /starting Kafka|starting PostgreSQL|initialising/);
  const status = await runServices(["status"]);
  assert.match(status.stdout, /^kafka .*(running|reachable)/m);
  assert.match(status.stdout, /^postgres .*(running|reachable)/m);
});

Deno.test("services up starts nothing for a Kafka and a PostgreSQL on another host, named by KAFKA_BROKERS and DATABASE_URL", async () => {
  const dataDir = `${ROOT}.data/${uniqueName("remote")}`;
  const run = await runServices(["up", "kafka", "postgres"], {
    KAFKA_BROKERS: "kafka-1.example.invalid:9092,kafka-2.example.invalid:9092",
    DATABASE_URL: "postgres://cdc:secret@db.example.invalid:5432/cdc_db?sslmode=require",
    // Empty, as when unset: a port given here would ask for a local service.
    KAFKA_PORT: "",
    PG_PORT: "",
    CDC_DATA_DIR: dataDir,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /using the Kafka on kafka-1\.example\.invalid that KAFKA_BROKERS names/);
  assert.match(run.stderr, /using the PostgreSQL on db\.example\.invalid that DATABASE_URL names/);
  assert.doesNotMatch(run.stderr, /starting|reusing|secret/);
  await assert.rejects(Deno.stat(dataDir), Deno.errors.NotFound);
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
