/**
 * `deno task bench [--quick] [--events N]`: throughput and memory of the pipeline, each figure
 * next to a reference measured in the same run (Kafka's Java producer perf tool, the Go
 * original's one-event-per-transaction design, PostgreSQL COPY), printed as one JSON document.
 * Sets up its own topics and database and drops the database afterwards.
 * @module
 */
import os from "node:os";
import process from "node:process";
import { parseArgs } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { parseOrderEvent, parseUserEvent } from "../lib/model.ts";

process.removeAllListeners("warning"); // kafkajs 2.2.4's negative timers

const { values } = parseArgs({
  args: Deno.args,
  options: { quick: { type: "boolean" }, events: { type: "string" } },
});
const EVENTS = Number(values.events ?? (values.quick ? 20_000 : 1_000_000));
const BASELINE_EVENTS = Math.min(EVENTS, values.quick ? 2_000 : 20_000);
const ROOT = new URL("..", import.meta.url).pathname;
const BROKERS = Deno.env.get("KAFKA_BROKERS") ?? "localhost:9092";
const ADMIN_URL = Deno.env.get("DATABASE_URL") ?? "postgres://postgres:postgres@localhost:5432/cdc_db";
const RUN = `bench_${Date.now().toString(36)}`;
const DB_URL = ADMIN_URL.replace(/\/[^/?]*(\?|$)/, `/${RUN}$1`);
/** About the mean size of a generated event's JSON. */
const RECORD_BYTES = 200;
const USERS = Math.round(EVENTS * 0.4);
const ORDERS = EVENTS - USERS;
const env = {
  USERS_TOPIC: `${RUN}_users`,
  ORDERS_TOPIC: `${RUN}_orders`,
  CONSUMER_GROUP: `${RUN}_group`,
  DATABASE_URL: DB_URL,
};
const kafka = new Kafka({ clientId: "cdc-bench", brokers: BROKERS.split(","), logLevel: logLevel.NOTHING });
const progress = (line: string) => console.error(`bench: ${line}`);

interface Measured {
  seconds: number;
  peakRssMb: number;
}

/** Runs a command, sampling its resident memory until it exits. */
async function measure(
  cmd: string[],
  extraEnv: Record<string, string>,
  until?: () => Promise<boolean>,
): Promise<Measured> {
  const started = performance.now();
  const child = new Deno.Command(cmd[0], {
    args: cmd.slice(1),
    env: extraEnv,
    stdout: "null",
    stderr: "piped",
    cwd: ROOT,
  }).spawn();
  let peakKb = 0;
  let finished = false;
  let stderr = "";
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr = (stderr + decoder.decode(chunk)).slice(-4000);
  })();
  const sampler = (async () => {
    while (!finished) {
      try {
        const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
        peakKb = Math.max(peakKb, Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0));
      } catch { /* exited */ }
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  let seconds = 0;
  if (until) {
    while (!(await until())) await new Promise((r) => setTimeout(r, 100));
    seconds = (performance.now() - started) / 1000;
    child.kill("SIGTERM");
  }
  const status = await child.status;
  if (!until) seconds = (performance.now() - started) / 1000;
  finished = true;
  await Promise.all([sampler, reader]);
  if (!status.success) throw new Error(`${cmd.join(" ")} exited ${status.code}: ${stderr}`);
  return { seconds, peakRssMb: Math.round(peakKb / 1024) };
}

const denoRun = (script: string, args: string[]) => [
  Deno.execPath(),
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-sys",
  `${ROOT}${script}`,
  ...args,
];

async function groupLag(groupId: string, topics: string[]): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let lag = 0;
    const committed = await admin.fetchOffsets({ groupId, topics });
    for (const topic of topics) {
      const at = new Map(
        (committed.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]),
      );
      for (const end of await admin.fetchTopicOffsets(topic)) {
        lag += Number(end.high) - Math.max(0, at.get(end.partition) ?? 0);
      }
    }
    return lag;
  } finally {
    await admin.disconnect();
  }
}

/** Kafka's own Java producer, same record count, size and acks, from the Maven-resolved jars. */
async function javaProducerPerf(records: number, recordSize: number): Promise<number> {
  const pom = await Deno.readTextFile(`${ROOT}scripts/kafka/pom.xml`);
  const version = /<kafka.version>(.+)<\/kafka.version>/.exec(pom)![1];
  const topic = `${RUN}_java`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 5 }], waitForLeaders: true });
  await admin.disconnect();
  const out = await new Deno.Command("java", {
    args: [
      "-Xmx512m",
      "-cp",
      `${ROOT}.cache/kafka-${version}/libs/*`,
      `-Dlog4j.configuration=file:${ROOT}scripts/kafka/log4j.properties`,
      "org.apache.kafka.tools.ProducerPerformance",
      "--topic",
      topic,
      "--num-records",
      String(records),
      "--record-size",
      String(recordSize),
      "--throughput",
      "-1",
      "--producer-props",
      `bootstrap.servers=${BROKERS}`,
      "acks=all",
      "enable.idempotence=true",
      "linger.ms=5",
      "batch.size=262144",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  const m = /([\d.]+) records\/sec/.exec(text.trim().split("\n").at(-1) ?? "");
  if (!m) throw new Error(`ProducerPerformance printed no rate: ${text}${new TextDecoder().decode(out.stderr)}`);
  return Number(m[1]);
}

/** The Go original's design: one event per statement and transaction, one offset commit per message. */
async function oneEventPerTransaction(events: number): Promise<number> {
  const sql = postgres(DB_URL, { max: 2, onnotice: () => {} });
  await sql`create table if not exists baseline_users (id uuid primary key, name varchar(50), dob date, created_at timestamptz, modified_at timestamptz, is_deleted boolean default false)`;
  await sql`create table if not exists baseline_orders (id uuid primary key, status varchar(10), user_id uuid, quantity int, total_amount numeric(10,2), placed_at timestamptz, modified_at timestamptz, is_deleted boolean default false)`;
  const consumer = kafka.consumer({ groupId: `${RUN}_baseline`, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [env.USERS_TOPIC, env.ORDERS_TOPIC], fromBeginning: true });
  let done = 0;
  const started = performance.now();
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      if (done >= events) return;
      await sql.begin(async (tx) => {
        if (topic === env.USERS_TOPIC) {
          const u = parseUserEvent(message.value);
          if (u.type === "CREATE") {
            await tx`insert into baseline_users (id, name, dob, created_at) values (${u.id}, ${u.name!}, ${u.dob!}, ${
              u.createdAt ?? null
            }) on conflict (id) do nothing`;
          } else {
            await tx`update baseline_users set name = coalesce(${u.name ?? null}, name), modified_at = ${
              u.modifiedAt ?? null
            }, is_deleted = is_deleted or ${u.type === "DELETE"} where id = ${u.id}`;
          }
        } else {
          const o = parseOrderEvent(message.value);
          if (o.type === "CREATE") {
            await tx`insert into baseline_orders (id, status, user_id, quantity, total_amount, placed_at) values (${o.id}, ${o.status}, ${o
              .userId!}, ${o.quantity!}, ${o.total!}, ${o.placedAt ?? null}) on conflict (id) do nothing`;
          } else {
            await tx`update baseline_orders set status = ${o.status}, modified_at = ${
              o.modifiedAt ?? null
            }, is_deleted = is_deleted or ${o.type === "DELETE"} where id = ${o.id}`;
          }
        }
      });
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      if (++done === events) finish();
    },
  });
  await finished;
  const rate = events / ((performance.now() - started) / 1000);
  await consumer.disconnect();
  await sql.end();
  return rate;
}

/** Loads the consumer's final rows into empty twin tables with COPY; returns seconds. */
async function copySameRows(): Promise<{ seconds: number; rows: number }> {
  const sql = postgres(DB_URL, { max: 1, onnotice: () => {} });
  const users = await sql`select id, name, dob::text, created_at::text, modified_at::text, is_deleted from users`;
  const orders =
    await sql`select id, status, user_id, quantity, total_amount::text, placed_at::text, modified_at::text, is_deleted from orders`;
  await sql`create table copy_users (like users including all)`;
  await sql`create table copy_orders (like orders including all)`;
  const field = (
    v: unknown,
  ) => (v === null ? "\\N" : String(v).replace(/[\\\t\n]/g, (c) => (c === "\t" ? "\\t" : c === "\n" ? "\\n" : "\\\\")));
  const tsv = (rows: Record<string, unknown>[]) =>
    rows.map((r) => Object.values(r).map(field).join("\t")).join("\n") + "\n";
  const usersText = tsv(users);
  const ordersText = tsv(orders);
  const started = performance.now();
  for (const [table, text] of [["copy_users", usersText], ["copy_orders", ordersText]] as const) {
    const writable = await sql.unsafe(`copy ${table} from stdin`).writable();
    await new Promise<void>((resolve, reject) => {
      writable.on("error", reject);
      writable.end(text, resolve);
    });
    await new Promise((r) => writable.on("finish", r).on("close", r));
  }
  const seconds = (performance.now() - started) / 1000;
  await sql.end();
  return { seconds, rows: users.length + orders.length };
}

const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
await admin.unsafe(`create database ${RUN}`);
try {
  progress(`producing ${EVENTS} events (${USERS} users, ${ORDERS} orders)`);
  const produce = await measure(
    denoRun("main_produce.ts", [
      "--users",
      String(USERS),
      "--orders",
      String(ORDERS),
      "--batch-size",
      "5000",
      "--seed",
      "1",
    ]),
    env,
  );
  const producerRate = EVENTS / produce.seconds;

  progress("draining the backlog with the consumer");
  const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC];
  const consume = await measure(
    denoRun("main_consume.ts", []),
    env,
    async () => (await groupLag(env.CONSUMER_GROUP, topics).catch(() => 1)) === 0,
  );
  const consumerRate = EVENTS / consume.seconds;

  progress(`the original's design on ${BASELINE_EVENTS} events`);
  const baselineRate = await oneEventPerTransaction(BASELINE_EVENTS);

  progress("Kafka's Java producer perf tool");
  const javaRate = await javaProducerPerf(EVENTS, RECORD_BYTES);

  progress("COPY of the same rows");
  const copy = await copySameRows();

  const [{ version: pgVersion }] = await admin`select current_setting('server_version') as version`;
  const pom = await Deno.readTextFile(`${ROOT}scripts/kafka/pom.xml`);
  console.log(JSON.stringify(
    {
      events: EVENTS,
      quick: Boolean(values.quick),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model,
        memoryGb: Math.round(os.totalmem() / 2 ** 30),
        os: `${os.type()} ${os.release()}`,
      },
      versions: {
        deno: Deno.version.deno,
        kafka: /<kafka.version>(.+)<\/kafka.version>/.exec(pom)![1],
        postgres: pgVersion,
      },
      figures: {
        producerEventsPerS: Math.round(producerRate),
        producerPeakRssMb: produce.peakRssMb,
        consumerEventsPerS: Math.round(consumerRate),
        consumerPeakRssMb: consume.peakRssMb,
        baselineOneEventPerTxEventsPerS: Math.round(baselineRate),
        javaProducerPerfRecordsPerS: Math.round(javaRate),
        copyRowsPerS: Math.round(copy.rows / copy.seconds),
        copySeconds: Math.round(copy.seconds * 1000) / 1000,
        consumerSeconds: Math.round(consume.seconds * 1000) / 1000,
      },
      ratios: {
        consumerVsOneEventPerTx: Math.round((consumerRate / baselineRate) * 10) / 10,
        producerVsJavaPerfTool: Math.round((producerRate / javaRate) * 100) / 100,
        consumerVsCopy: Math.round((copy.seconds / consume.seconds) * 100) / 100,
      },
      targets: {
        producerEventsPerS: 100_000,
        consumerEventsPerS: 50_000,
        consumerVsOneEventPerTx: 30,
        producerPeakRssMb: 200,
        consumerPeakRssMb: 300,
      },
    },
    null,
    2,
  ));
} finally {
  await admin.unsafe(`drop database if exists ${RUN} with (force)`);
  await admin.end();
}
process.exit(0);
