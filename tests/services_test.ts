/** The real services answer: kafkajs against the broker, postgres.js against the database. */
import assert from "node:assert/strict";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import { ADMIN_DATABASE_URL, readTopic, ROOT, testKafka, uniqueName } from "./_helpers.ts";

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
