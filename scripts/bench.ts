/**
 * `deno task bench [--quick] [--events N] [--capture-update-rows N] [--capture-snapshot-rows N]
 * [--only capture-peer]`: throughput and memory of the pipeline, each figure next to a reference
 * measured in the same run (Kafka's Java producer perf tool, the Go original's
 * one-event-per-transaction design, PostgreSQL COPY, the Debezium connector beside the capture),
 * printed as one JSON document on stdout; progress goes to stderr. Sets up its own topics, groups
 * and database, and removes them afterwards, also when a phase fails or the run is interrupted.
 * `--only capture-peer` runs the capture-vs-Debezium section alone (scripts/bench_capture_peer.ts).
 * @module
 */
import { createRequire } from "node:module";
import { dlqTopic } from "../lib/consumer_dead_letter.ts";
import os from "node:os";
import { parseArgs } from "node:util";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import { partitionPositions } from "../lib/kafka_admin.ts";
import { generateEvents } from "../lib/generator.ts";
import { parseOrderEvent, parseUserEvent } from "../lib/model.ts";
import { murmur2 } from "../lib/partitioner.ts";
import { captureVsDebezium, cleanUpPeer, type PeerReport } from "./bench_capture_peer.ts";

const { values } = parseArgs({
  args: Deno.args.filter((a) => a !== "--"),
  options: {
    quick: { type: "boolean" },
    events: { type: "string" },
    "capture-update-rows": { type: "string" },
    "capture-snapshot-rows": { type: "string" },
    only: { type: "string" },
  },
});
const QUICK = Boolean(values.quick);
/** Reads an integer flag of at least `min`, or exits naming the flag, the rule and the value. */
function integerFlag(name: "events" | "capture-update-rows" | "capture-snapshot-rows", fallback: number, min: number) {
  const value = Number(values[name] ?? fallback);
  if (!Number.isInteger(value) || value < min) {
    console.error(`bench: --${name} must be an integer of at least ${min}: got ${values[name]}`);
    Deno.exit(2);
  }
  return value;
}
const EVENTS = integerFlag("events", QUICK ? 20_000 : 1_000_000, 1000);
/** Rows of the capture-vs-Debezium section's UPDATE, and of its first snapshot (users and orders). */
const PEER_UPDATE_ROWS = integerFlag("capture-update-rows", QUICK ? 20_000 : 200_000, 100);
const PEER_SNAPSHOT_ROWS = integerFlag("capture-snapshot-rows", QUICK ? 50_000 : 1_000_000, 100);
if (values.only !== undefined && values.only !== "capture-peer") {
  console.error(`bench: --only must be capture-peer (the one section that runs alone): got ${values.only}`);
  Deno.exit(2);
}
if (PEER_UPDATE_ROWS > PEER_SNAPSHOT_ROWS - Math.round(PEER_SNAPSHOT_ROWS * 0.2)) {
  console.error(
    `bench: --capture-update-rows must be at most the orders among --capture-snapshot-rows (80%): got ` +
      `${PEER_UPDATE_ROWS} and ${PEER_SNAPSHOT_ROWS}`,
  );
  Deno.exit(2);
}
const ONLY_PEER = values.only === "capture-peer";
const BASELINE_EVENTS = Math.min(EVENTS, QUICK ? 2_000 : 10_000);
/** Seconds a phase may take before the run gives up; generous for a noisy shared machine. */
const PHASE_TIMEOUT_S = Math.max(120, EVENTS / 2_000);
const ROOT = new URL("..", import.meta.url).pathname;
const SERVICES = `${ROOT}scripts/services.sh`;
const BROKERS = Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers;
const ADMIN_URL = Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl;
const RUN = `bench_${Date.now().toString(36)}`;
const DB_URL = ADMIN_URL.replace(/\/[^/?]*(\?|$)/, `/${RUN}$1`);
const SEED = 1;
const USERS = Math.round(EVENTS * 0.4);
const ORDERS = EVENTS - USERS;
/** Events per producer send, the best measured on the 2-core reference machine. */
const PRODUCE_BATCH = 1_000;
const env = {
  USERS_TOPIC: `${RUN}_users`,
  ORDERS_TOPIC: `${RUN}_orders`,
  CONSUMER_GROUP: `${RUN}_group`,
  DATABASE_URL: DB_URL,
  LOG_FORMAT: "json",
};
const TOPICS = [env.USERS_TOPIC, env.ORDERS_TOPIC];
const BINARY_TOPICS = [`${RUN}_binary_users`, `${RUN}_binary_orders`];
/** The standalone binaries' run: their own topics (filled by the binary producer), group and database. */
const BINARY_DB = `${RUN}_binary`;
const binaryEnv = {
  ...env,
  USERS_TOPIC: BINARY_TOPICS[0],
  ORDERS_TOPIC: BINARY_TOPICS[1],
  CONSUMER_GROUP: `${RUN}_binary_group`,
  DATABASE_URL: ADMIN_URL.replace(/\/[^/?]*(\?|$)/, `/${BINARY_DB}$1`),
};
/** Seconds over which an idle consumer's CPU is measured. */
const IDLE_WINDOW_S = QUICK ? 10 : 30;
const JAVA_TOPIC = `${RUN}_java`;
const BASELINE_GROUP = `${RUN}_baseline`;
const kafka = new Kafka({ clientId: "cdc-bench", brokers: BROKERS.split(","), logLevel: logLevel.NOTHING });
const progress = (line: string) => console.error(`bench: ${line}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (value: number, digits = 0) => Math.round(value * 10 ** digits) / 10 ** digits;

interface Measured {
  seconds: number;
  peakRssMb: number;
  stderr: string;
  /** CPU seconds of the command itself, of PostgreSQL's and Kafka's processes, and of the whole machine. */
  cpu: CpuShares;
}

/** CPU seconds (user + system) spent during a phase, per party. */
interface CpuShares {
  command: number;
  postgres: number | null;
  kafka: number | null;
  machineBusy: number;
  machineTotal: number;
}

const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const commandOutput = async (cmd: string, args: string[]) =>
  decode((await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output()).stdout).trim();
const CLOCK_TICKS = Number(await commandOutput("getconf", ["CLK_TCK"])) || 100;
const PAGE_BYTES = Number(await commandOutput("getconf", ["PAGESIZE"])) || 4096;

/**
 * Resident bytes and CPU seconds of each live process among `pids`, from /proc (read with cat:
 * Deno reads /proc only with --allow-all).
 */
async function processStats(pids: number[]): Promise<{ rssBytes: number; cpuSeconds: number }[]> {
  if (pids.length === 0) return [];
  const text = await commandOutput("cat", pids.map((pid) => `/proc/${pid}/stat`));
  return text.split("\n").filter(Boolean).map((line) => {
    // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15, rss 24.
    const fields = line.slice(line.lastIndexOf(")") + 2).split(" ");
    return {
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS,
      rssBytes: Number(fields[21]) * PAGE_BYTES,
    };
  });
}

/**
 * Pids of the PostgreSQL and Kafka server processes visible from here; none when they run
 * elsewhere (another host, a Docker Desktop VM), and their CPU is then reported as null.
 */
async function servicePids(): Promise<{ postgres: number[]; kafka: number[] }> {
  const pids = async (args: string[]) => (await commandOutput("pgrep", args)).split("\n").filter(Boolean).map(Number);
  return { postgres: await pids(["-x", "postgres"]), kafka: await pids(["-f", "kafka\\.Kafka"]) };
}

/** CPU seconds used so far by the services and the machine's busy and total core-seconds. */
async function cpuSnapshot(): Promise<{ postgres: number | null; kafka: number | null; busy: number; total: number }> {
  const pids = await servicePids();
  const sum = async (list: number[]) =>
    list.length ? (await processStats(list)).reduce((total, p) => total + p.cpuSeconds, 0) : null;
  const [cpuLine] = (await commandOutput("cat", ["/proc/stat"])).split("\n");
  const ticks = cpuLine.split(/\s+/).slice(1).map(Number);
  const idle = ticks[3] + ticks[4];
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  return {
    postgres: await sum(pids.postgres),
    kafka: await sum(pids.kafka),
    busy: (total - idle) / CLOCK_TICKS,
    total: total / CLOCK_TICKS,
  };
}

/**
 * CPU spent between two snapshots; a service counts only if it runs on this machine. A server
 * process that exits between them takes its share along, so phases snapshot before stopping.
 */
function cpuBetween(
  before: Awaited<ReturnType<typeof cpuSnapshot>>,
  after: Awaited<ReturnType<typeof cpuSnapshot>>,
  command: number,
): CpuShares {
  const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : Math.max(0, b - a));
  return {
    command,
    postgres: diff(before.postgres, after.postgres),
    kafka: diff(before.kafka, after.kafka),
    machineBusy: after.busy - before.busy,
    machineTotal: after.total - before.total,
  };
}

/** Starts `cmd` in the project's root with `environment`; stderr is piped for its log, stdout dropped. */
function spawnCommand(cmd: string[], environment: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(cmd[0], { args: cmd.slice(1), env: environment, stdout: "null", stderr: "piped", cwd: ROOT })
    .spawn();
}

/**
 * Runs a command, sampling its resident memory until it exits (or, with `until`, until the
 * condition holds, then stops it with SIGTERM and waits for its clean exit).
 */
async function measure(
  cmd: string[],
  until?: () => Promise<boolean>,
  environment: Record<string, string> = env,
): Promise<Measured> {
  const cpuBefore = await cpuSnapshot();
  const started = performance.now();
  const child = spawnCommand(cmd, environment);
  const deadline = setTimeout(() => child.kill("SIGKILL"), PHASE_TIMEOUT_S * 1000);
  let peakBytes = 0;
  let commandCpu = 0;
  let exited = false;
  let stderr = "";
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr = (stderr + decoder.decode(chunk)).slice(-8000);
  })();
  const sampler = (async () => {
    while (!exited) {
      const [stats] = await processStats([child.pid]);
      if (stats) {
        peakBytes = Math.max(peakBytes, stats.rssBytes);
        commandCpu = stats.cpuSeconds;
      }
      await sleep(100);
    }
  })();
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let seconds = 0;
  let cpuAfter: Awaited<ReturnType<typeof cpuSnapshot>> | undefined;
  if (until) {
    while (!exited && !(await until())) await sleep(100);
    seconds = (performance.now() - started) / 1000;
    // Before the stop: the command's database sessions end with it, and their CPU with them.
    cpuAfter = await cpuSnapshot();
    const [stats] = await processStats([child.pid]);
    if (stats) commandCpu = stats.cpuSeconds;
    if (!exited) child.kill("SIGTERM");
  }
  const { success, code } = await status;
  if (!until) {
    seconds = (performance.now() - started) / 1000;
    cpuAfter = await cpuSnapshot();
  }
  clearTimeout(deadline);
  await Promise.all([sampler, reader]);
  if (!success) throw new Error(`${cmd.slice(-3).join(" ")} exited ${code}: ${stderr.slice(-2000)}`);
  return {
    seconds,
    peakRssMb: Math.round(peakBytes / 2 ** 20),
    stderr,
    cpu: cpuBetween(cpuBefore, cpuAfter!, commandCpu),
  };
}

/**
 * The command line of `deno task <task>` (flags and leading `NAME=value` settings included, so the
 * bench measures what users run); settings go through env(1), which execs deno under the same pid.
 */
async function taskCommand(task: "produce" | "consume" | "capture", args: string[]): Promise<string[]> {
  const tasks = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks as Record<string, string>;
  const words = tasks[task].split(/\s+/);
  const settings = words.slice(0, words.findIndex((word) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(word)));
  const [deno, ...rest] = words.slice(settings.length);
  if (deno !== "deno") throw new Error(`deno.json task ${task} does not start with deno: ${tasks[task]}`);
  const command = [Deno.execPath(), ...rest.map((word) => (word.endsWith(".ts") ? `${ROOT}${word}` : word)), ...args];
  return settings.length ? ["env", ...settings, ...command] : command;
}

/**
 * Records of `topics` the tables in `databaseUrl` have not applied: the log's end minus the
 * offsets stored in PostgreSQL, which the consumer advances in the transaction that applies.
 */
function storedLag(databaseUrl: string, topics: string[]): { lag: () => Promise<number>; close: () => Promise<void> } {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const admin = kafka.admin();
  const connected = admin.connect();
  return {
    lag: async () => {
      await connected;
      const rows = await sql<{ key: string; next: string }[]>`
        select topic || ':' || partition as key, next_offset::text as next from cdc_offsets`.catch(() => []);
      const stored = new Map(rows.map((r) => [r.key, Number(r.next)]));
      return (await partitionPositions(admin, topics, (key) => stored.get(key))).reduce((sum, p) => sum + p.lag, 0);
    },
    close: async () => {
      await sql.end();
      await admin.disconnect();
    },
  };
}

/** Drains `topics` into `databaseUrl` with `cmd`, measured until the stored offsets reach the logs' ends. */
async function drain(cmd: string[], environment: Record<string, string>): Promise<Measured> {
  const backlog = storedLag(environment.DATABASE_URL, [environment.USERS_TOPIC, environment.ORDERS_TOPIC]);
  try {
    return await measure(cmd, async () => (await backlog.lag().catch(() => 1)) === 0, environment);
  } finally {
    await backlog.close();
  }
}

/**
 * Share of one core a consumer uses with nothing to consume: started on drained topics, measured
 * from /proc over IDLE_WINDOW_S once it has joined its group and settled, then stopped.
 */
async function idleCpuPercent(cmd: string[], environment: Record<string, string>): Promise<number> {
  const child = spawnCommand(cmd, environment);
  let log = "";
  const reader = (async () => {
    for await (const chunk of child.stderr) log = (log + decode(chunk)).slice(-8000);
  })();
  try {
    const joinedBy = Date.now() + 60_000;
    while (!/joined group/.test(log)) {
      if (Date.now() > joinedBy) throw new Error(`the idle consumer did not join its group: ${log.slice(-2000)}`);
      await sleep(100);
    }
    await sleep(3_000);
    const [before] = await processStats([child.pid]);
    const started = performance.now();
    await sleep(IDLE_WINDOW_S * 1000);
    const [after] = await processStats([child.pid]);
    return round((100 * (after.cpuSeconds - before.cpuSeconds)) / ((performance.now() - started) / 1000), 2);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reader;
  }
}

/** Mean bytes (key + value) of the run's records, from a 1% sample of the same seeded stream shape. */
function meanRecordBytes(): number {
  const scale = Math.max(1, Math.round(EVENTS / 100));
  const sample = generateEvents({
    users: Math.round(scale * 0.4),
    orders: scale - Math.round(scale * 0.4),
    seed: SEED,
  });
  let bytes = 0;
  let count = 0;
  for (const event of sample) {
    bytes += event.key.length + JSON.stringify(event.value).length;
    count++;
  }
  return Math.round(bytes / count);
}

/**
 * What kafkajs alone costs the producer: grouping by partition and encoding produce requests
 * (records, batches, CRC) for `events` of the run's stream, in sends of PRODUCE_BATCH, with no
 * network and the events already generated and serialised. No producer on kafkajs can beat this
 * rate on one core of this machine.
 */
async function kafkajsEncodeOnly(events: number): Promise<number> {
  const require = createRequire(import.meta.url);
  const groupMessagesPerPartition = require("kafkajs/src/producer/groupMessagesPerPartition.js");
  const createTopicData = require("kafkajs/src/producer/createTopicData.js");
  const produceRequest = require("kafkajs/src/protocol/requests/produce/v7/request.js");
  const encoder = new TextEncoder();
  const partitioner = ({ partitionMetadata, message }: { partitionMetadata: unknown[]; message: { key: string } }) =>
    (murmur2(encoder.encode(message.key)) & 0x7fffffff) % partitionMetadata.length;
  const metadata = {
    [env.USERS_TOPIC]: Array.from({ length: DEFAULTS.usersPartitions }, (_, partitionId) => ({ partitionId })),
    [env.ORDERS_TOPIC]: Array.from({ length: DEFAULTS.ordersPartitions }, (_, partitionId) => ({ partitionId })),
  };
  let encodingMs = 0;
  const encode = async (batch: { topic: string; messages: { key: string; value: string }[] }[]) => {
    const started = performance.now();
    const topicData = createTopicData(batch.map(({ topic, messages }) => {
      const messagesPerPartition = groupMessagesPerPartition({
        topic,
        partitionMetadata: metadata[topic],
        messages,
        partitioner,
      });
      return { topic, partitions: Object.keys(messagesPerPartition).map(Number), messagesPerPartition };
    }));
    await produceRequest({ acks: -1, timeout: 30_000, topicData }).encode();
    encodingMs += performance.now() - started;
  };
  const users = Math.round(events * 0.4);
  let batch = { user: [] as { key: string; value: string }[], order: [] as { key: string; value: string }[] };
  let inBatch = 0;
  const flush = async () => {
    await encode([
      { topic: env.USERS_TOPIC, messages: batch.user },
      { topic: env.ORDERS_TOPIC, messages: batch.order },
    ].filter((t) => t.messages.length > 0));
    batch = { user: [], order: [] };
    inBatch = 0;
  };
  for (const event of generateEvents({ users, orders: events - users, seed: SEED })) {
    batch[event.entity].push({ key: event.key, value: JSON.stringify(event.value) });
    if (++inBatch === PRODUCE_BATCH) await flush();
  }
  if (inBatch > 0) await flush();
  return events / (encodingMs / 1000);
}

/** Kafka's own Java producer with its default settings plus acks=all, same record count and size. */
async function javaProducerPerf(records: number, recordSize: number): Promise<number> {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: JAVA_TOPIC, numPartitions: 8 }], waitForLeaders: true });
  await admin.disconnect();
  // The broker may have been started elsewhere (another checkout, docker compose), so the
  // tools' jars are resolved here, outside the phase's time limit.
  const resolved = await new Deno.Command("bash", { args: [SERVICES, "tools"], stdout: "null", stderr: "inherit" })
    .output();
  if (!resolved.success) throw new Error(`scripts/services.sh tools could not resolve Kafka ${KAFKA_VERSION}'s tools`);
  const out = await new Deno.Command("timeout", {
    args: [
      String(PHASE_TIMEOUT_S),
      "bash",
      SERVICES,
      "tool",
      "org.apache.kafka.tools.ProducerPerformance",
      "--topic",
      JAVA_TOPIC,
      "--num-records",
      String(records),
      "--record-size",
      String(recordSize),
      "--throughput",
      "-1",
      "--producer-props",
      `bootstrap.servers=${BROKERS}`,
      "acks=all",
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
  await sql`create table baseline_users (like users including defaults)`;
  await sql`alter table baseline_users add primary key (id)`;
  await sql`create table baseline_orders (like orders including defaults)`;
  await sql`alter table baseline_orders add primary key (id)`;
  const consumer = kafka.consumer({ groupId: BASELINE_GROUP, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: TOPICS, fromBeginning: true });
  let done = 0;
  let started = 0;
  let finish!: () => void;
  const finished = new Promise<void>((r) => (finish = r));
  await consumer.run({
    autoCommit: false,
    eachMessage: async ({ topic, partition, message }) => {
      if (done >= events) return;
      started ||= performance.now();
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
  const timeout = setTimeout(() => finish(), PHASE_TIMEOUT_S * 1000);
  await finished;
  clearTimeout(timeout);
  if (done < events) throw new Error(`the one-event-per-transaction baseline applied only ${done}/${events} events`);
  const rate = events / ((performance.now() - started) / 1000);
  await consumer.disconnect();
  await sql.end();
  return rate;
}

/** Loads the consumer's final rows into empty twin tables with COPY; returns seconds and rows. */
async function copySameRows(): Promise<{ seconds: number; rows: number }> {
  const sql = postgres(DB_URL, { max: 1, onnotice: () => {} });
  const users = await sql`select id, name, dob::text, created_at::text, modified_at::text, is_deleted from users`;
  const orders =
    await sql`select id, status, user_id, quantity, total_amount::text, placed_at::text, modified_at::text, is_deleted from orders`;
  // Same columns, keys and indexes; no triggers or foreign keys, which COPY would not need either.
  await sql`create table copy_users (like users including all)`;
  await sql`create table copy_orders (like orders including all)`;
  const escape: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };
  const field = (v: unknown) => (v === null ? "\\N" : String(v).replace(/[\\\t\n\r]/g, (c) => escape[c]));
  const tsv = (rows: Record<string, unknown>[]) =>
    rows.map((r) => Object.values(r).map(field).join("\t")).join("\n") + "\n";
  const texts = [["copy_users", tsv(users)], ["copy_orders", tsv(orders)]] as const;
  const started = performance.now();
  for (const [table, text] of texts) {
    const writable = await sql.unsafe(`copy ${table} from stdin`).writable();
    await new Promise<void>((resolve, reject) => {
      writable.on("error", reject);
      writable.on("finish", resolve);
      writable.end(text);
    });
  }
  const seconds = (performance.now() - started) / 1000;
  const [{ n }] = await sql`select (select count(*) from copy_users) + (select count(*) from copy_orders) as n`;
  await sql.end();
  if (Number(n) !== users.length + orders.length) {
    throw new Error(`COPY loaded ${n} of ${users.length + orders.length}`);
  }
  return { seconds, rows: users.length + orders.length };
}

/** The capture phase's own database, consumer group, slot and publication; its topics are `<RUN>.public.*`. */
const CAPTURE = { db: `${RUN}_capture`, group: `${RUN}_capture_group`, slot: `${RUN}_slot`, publication: `${RUN}_pub` };
const CAPTURE_TOPICS = [`${RUN}.public.users`, `${RUN}.public.orders`];

/**
 * The capture while the consumer applies the backlog: the consumer drains the same topics again
 * into a second database (its own group) while `deno task capture` streams that database's
 * changes. Changes/s is over the time from the capture's first to its last published change; the
 * slot's WAL is read once the capture has published everything.
 */
async function captureWhileConsuming() {
  const setup = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await setup.unsafe(`create database ${CAPTURE.db}`);
  await setup.end();
  const captureEnv = {
    ...env,
    DATABASE_URL: ADMIN_URL.replace(/\/[^/?]*(\?|$)/, `/${CAPTURE.db}$1`),
    CONSUMER_GROUP: CAPTURE.group,
    CAPTURE_TOPIC_PREFIX: RUN,
    CAPTURE_SLOT: CAPTURE.slot,
    CAPTURE_PUBLICATION: CAPTURE.publication,
    METRICS_PORT: "0",
  };
  const cmd = await taskCommand("capture", []);
  const capture = spawnCommand(cmd, captureEnv);
  let log = "";
  const reader = (async () => {
    for await (const chunk of capture.stderr) log = (log + decode(chunk)).slice(-20_000);
  })();
  let polling = true;
  try {
    const streamingBy = Date.now() + 60_000;
    while (!/streaming from slot/.test(log)) {
      if (Date.now() > streamingBy) throw new Error(`the capture did not start streaming: ${log.slice(-2000)}`);
      await sleep(100);
    }
    const metricsUrl = /metrics on (http:\/\/127\.0\.0\.1:\d+)/.exec(log)![1];
    let changes = 0, firstAt = 0, lastAt = 0, peakBytes = 0;
    const poller = (async () => {
      while (polling) {
        const text = await (await fetch(`${metricsUrl}/metrics`)).text().catch(() => "");
        const total = [...text.matchAll(/^cdc_capture_changes_total\{[^}]*\} (\d+)/gm)]
          .reduce((sum, m) => sum + Number(m[1]), 0);
        if (total > changes) {
          if (changes === 0) firstAt = performance.now();
          changes = total;
          lastAt = performance.now();
        }
        const [stats] = await processStats([capture.pid]);
        if (stats) peakBytes = Math.max(peakBytes, stats.rssBytes);
        await sleep(250);
      }
    })();
    const consume = await drain(await taskCommand("consume", []), captureEnv);
    const consumerDone = performance.now();
    // Caught up: no new change published for 3 s after the consumer finished.
    while (performance.now() - Math.max(lastAt, consumerDone) < 3_000) await sleep(250);
    polling = false;
    await poller;
    const check = postgres(captureEnv.DATABASE_URL, { max: 1, onnotice: () => {} });
    const [slot] = await check`
      select (pg_current_wal_lsn() - restart_lsn)::float8 as retained,
             (pg_current_wal_lsn() - confirmed_flush_lsn)::float8 as unconfirmed
      from pg_replication_slots where slot_name = ${CAPTURE.slot}`;
    await check.end();
    const seconds = (lastAt - firstAt) / 1000;
    return {
      changes,
      changesPerS: Math.round(changes / Math.max(seconds, 1e-3)),
      seconds: round(seconds, 3),
      finishedAfterConsumerS: round(Math.max(0, lastAt - consumerDone) / 1000, 1),
      peakRssMb: Math.round(peakBytes / 2 ** 20),
      slotRetainedWalBytesAtEnd: Number(slot.retained),
      slotUnconfirmedWalBytesAtEnd: Number(slot.unconfirmed),
      consumerEventsPerSWithCapture: Math.round(EVENTS / consume.seconds),
    };
  } finally {
    polling = false;
    try {
      capture.kill("SIGTERM");
    } catch {
      // it had exited already
    }
    await capture.status;
    await reader;
  }
}

/** Removes everything the run created: databases, slots, topics (with DLQs) and consumer groups. */
async function cleanUp(): Promise<void> {
  await cleanUpPeer(ADMIN_URL, BROKERS.split(","), RUN).catch((e) => progress(`removing the Debezium section: ${e}`));
  const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  for (const db of [RUN, BINARY_DB]) {
    await admin.unsafe(`drop database if exists ${db} with (force)`).catch((e) => progress(`drop database: ${e}`));
  }
  // A database with a replication slot cannot be dropped: the slot goes first.
  await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${CAPTURE.slot}`
    .catch((e) => progress(`drop slot: ${e}`));
  await admin.unsafe(`drop database if exists ${CAPTURE.db} with (force)`)
    .catch((e) => progress(`drop database: ${e}`));
  await admin.end();
  const kafkaAdmin = kafka.admin();
  try {
    await kafkaAdmin.connect();
    const existing = new Set(await kafkaAdmin.listTopics());
    const topics = [...TOPICS, ...BINARY_TOPICS].flatMap((t) => [t, dlqTopic(t)]).concat(JAVA_TOPIC, CAPTURE_TOPICS)
      .filter((t) => existing.has(t));
    if (topics.length) await kafkaAdmin.deleteTopics({ topics });
    const groups = (await kafkaAdmin.listGroups()).groups.map((g) => g.groupId)
      .filter((g) => [env.CONSUMER_GROUP, binaryEnv.CONSUMER_GROUP, BASELINE_GROUP, CAPTURE.group].includes(g));
    // A group whose last member just left can still answer "not empty" for a while.
    for (const group of groups) {
      for (let attempt = 1;; attempt++) {
        try {
          await kafkaAdmin.deleteGroups([group]);
          break;
        } catch (error) {
          const why = (error as { groups?: { error?: { type?: string } }[] }).groups?.[0]?.error?.type;
          if (why === "GROUP_ID_NOT_FOUND") break;
          if (attempt === 15) throw new Error(`deleting group ${group}: ${why ?? error}`);
          await sleep(1000);
        }
      }
    }
  } catch (error) {
    progress(`removing topics and groups: ${error}`);
  } finally {
    await kafkaAdmin.disconnect().catch(() => {});
  }
}

const pom = await Deno.readTextFile(`${ROOT}scripts/kafka/pom.xml`);
/** The Kafka release of the Java tools, as scripts/services.sh picks it. */
const KAFKA_VERSION = Deno.env.get("KAFKA_VERSION") || /<kafka.version>(.+)<\/kafka.version>/.exec(pom)![1];
const timed = async <T>(phase: string, run: () => Promise<T>): Promise<T> => {
  progress(`${phase}...`);
  const started = performance.now();
  const result = await run();
  progress(`${phase}: ${round((performance.now() - started) / 1000, 1)} s`);
  return result;
};

let cleaning: Promise<void> | undefined;
Deno.addSignalListener("SIGINT", async () => {
  progress("interrupted: cleaning up");
  await (cleaning ??= cleanUp());
  Deno.exit(130);
});

/** The capture-vs-Debezium section (scripts/bench_capture_peer.ts) on the run's names and sizes. */
function capturePeer(): Promise<PeerReport> {
  return timed(
    `the capture beside Debezium: one UPDATE of ${PEER_UPDATE_ROWS} orders, a first snapshot of ${PEER_SNAPSHOT_ROWS} rows`,
    async () =>
      captureVsDebezium({
        root: ROOT,
        adminUrl: ADMIN_URL,
        brokers: BROKERS.split(","),
        run: RUN,
        updateRows: PEER_UPDATE_ROWS,
        snapshotRows: PEER_SNAPSHOT_ROWS,
        captureCommand: await taskCommand("capture", []),
        captureEnv: { ...env, KAFKA_BROKERS: BROKERS },
        progress,
      }),
  );
}

/** The capture's figures over Debezium's, from the same run (a CPU or memory ratio under 1 favours the capture). */
function peerRatios(peer: PeerReport) {
  const { capture, debezium } = peer;
  return {
    captureVsDebeziumStreamingRecordsPerS: round(capture.streaming.recordsPerS / debezium.streaming.recordsPerS, 2),
    captureVsDebeziumSnapshotRecordsPerS: round(capture.snapshot.recordsPerS / debezium.snapshot.recordsPerS, 2),
    captureVsDebeziumStreamingCpuPerChange: round(
      capture.streaming.cpuSPer1000.process / debezium.streaming.cpuSPer1000.process,
      2,
    ),
    captureVsDebeziumSnapshotCpuPerChange: round(
      capture.snapshot.cpuSPer1000.process / debezium.snapshot.cpuSPer1000.process,
      2,
    ),
    captureVsDebeziumStreamingPeakRss: round(capture.streaming.peakRssMb / debezium.streaming.peakRssMb, 2),
    captureVsDebeziumSnapshotPeakRss: round(capture.snapshot.peakRssMb / debezium.snapshot.peakRssMb, 2),
    ...payloadOnlyRatios(peer),
  };
}

/** The same ratios for the capture with `--schemas=false` (null when its command line lacks the flag). */
function payloadOnlyRatios({ captureSchemasFalse: capture, debezium }: PeerReport) {
  const ratio = (pick: (phase: PeerReport["debezium"]) => number) =>
    capture === null ? null : round(pick(capture) / pick(debezium), 2);
  return {
    captureSchemasFalseVsDebeziumStreamingRecordsPerS: ratio((p) => p.streaming.recordsPerS),
    captureSchemasFalseVsDebeziumSnapshotRecordsPerS: ratio((p) => p.snapshot.recordsPerS),
    captureSchemasFalseVsDebeziumStreamingCpuPerChange: ratio((p) => p.streaming.cpuSPer1000.process),
    captureSchemasFalseVsDebeziumSnapshotCpuPerChange: ratio((p) => p.snapshot.cpuSPer1000.process),
    captureSchemasFalseVsDebeziumStreamingPeakRss: ratio((p) => p.streaming.peakRssMb),
    captureSchemasFalseVsDebeziumSnapshotPeakRss: ratio((p) => p.snapshot.peakRssMb),
  };
}

const atLeast = (value: number, min: number) => ({ value, min, met: value >= min });
const atMost = (value: number, max: number) => ({ value, max, met: value <= max });

/** Issue 22's targets for the capture, on this machine. */
function peerTargets(peer: PeerReport, ratios: ReturnType<typeof peerRatios>) {
  const { streaming, snapshot } = peer.capture;
  return {
    captureStreamingVsDebezium: atLeast(ratios.captureVsDebeziumStreamingRecordsPerS, 2),
    captureSnapshotVsDebezium: atLeast(ratios.captureVsDebeziumSnapshotRecordsPerS, 2),
    captureCpuSPer1000Changes: atMost(Math.max(streaming.cpuSPer1000.process, snapshot.cpuSPer1000.process), 0.05),
    capturePeakRssMb: atMost(Math.max(streaming.peakRssMb, snapshot.peakRssMb), 150),
  };
}

/** The machine the figures belong to; the load average says how much else ran on it. */
function machine() {
  return {
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? "unknown",
    memoryGb: round(os.totalmem() / 2 ** 30, 1),
    os: `${os.type()} ${os.release()}`,
    loadAverage1m: round(os.loadavg()[0], 2),
  };
}

/** `--only capture-peer`: the capture-vs-Debezium section alone, with the machine and versions. */
async function peerOnly(pgVersion: string): Promise<void> {
  const peer = await capturePeer();
  const ratios = peerRatios(peer);
  console.log(JSON.stringify(
    {
      run: RUN,
      quick: QUICK,
      only: "capture-peer",
      machine: machine(),
      versions: { deno: Deno.version.deno, kafka: KAFKA_VERSION, postgres: pgVersion },
      captureVsDebezium: peer,
      ratios,
      targets: peerTargets(peer, ratios),
    },
    null,
    2,
  ));
}

/** Every phase of the bench, then the one JSON document. */
async function fullBench(pgVersion: string): Promise<void> {
  const setup = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  await setup.unsafe(`create database ${RUN}`);
  await setup.unsafe(`create database ${BINARY_DB}`);
  await setup.end();

  const produceArgs = [
    "--users",
    String(USERS),
    "--orders",
    String(ORDERS),
    "--batch-size",
    String(PRODUCE_BATCH),
    "--seed",
    String(SEED),
  ];
  const produce = await timed(
    `producing ${EVENTS} events (${USERS} users, ${ORDERS} orders)`,
    async () => measure(await taskCommand("produce", produceArgs)),
  );
  const producerRate = EVENTS / produce.seconds;
  progress(`producer: ${Math.round(producerRate)} events/s, peak RSS ${produce.peakRssMb} MB`);

  const consume = await timed(
    "draining the backlog into PostgreSQL with the consumer",
    async () => drain(await taskCommand("consume", []), env),
  );
  const consumerRate = EVENTS / consume.seconds;
  progress(`consumer: ${Math.round(consumerRate)} events/s, peak RSS ${consume.peakRssMb} MB`);
  const summary = consume.stderr.split("\n").filter((l) => l.startsWith("{") && l.includes('"done"'))
    .map((l) => JSON.parse(l)).at(-1);
  const check = postgres(DB_URL, { max: 1, onnotice: () => {} });
  const [{ users, orders }] =
    await check`select (select count(*) from users) as users, (select count(*) from orders) as orders`;
  await check.end();

  const capture = await timed(
    "the capture streaming the changes while the consumer applies the backlog again",
    captureWhileConsuming,
  );
  progress(`capture: ${capture.changesPerS} changes/s, slot WAL at the end ${capture.slotRetainedWalBytesAtEnd} bytes`);

  const baselineRate = await timed(
    `the original's design (one event per transaction and offset commit) on ${BASELINE_EVENTS} events`,
    () => oneEventPerTransaction(BASELINE_EVENTS),
  );
  const recordBytes = meanRecordBytes();
  const javaRate = await timed(
    `Kafka's Java ProducerPerformance, ${EVENTS} records of ${recordBytes} bytes`,
    () => javaProducerPerf(EVENTS, recordBytes),
  );
  const copy = await timed("COPY of the same rows", copySameRows);
  const encodeOnlyEvents = Math.min(EVENTS, 200_000);
  const encodeOnlyRate = await timed(
    `kafkajs encoding alone (no network) of ${encodeOnlyEvents} events`,
    () => kafkajsEncodeOnly(encodeOnlyEvents),
  );
  await timed("building the standalone binaries (deno task build)", async () => {
    const built = await new Deno.Command("deno", {
      args: ["task", "build"],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    })
      .output();
    if (!built.success) throw new Error(`deno task build failed: ${decode(built.stderr)}`);
  });
  const binaryProduce = await timed(`producing ${EVENTS} events with the standalone binary (Bun)`, () =>
    measure(
      [`${ROOT}dist/cdc-produce`, ...produceArgs],
      undefined,
      { ...env, USERS_TOPIC: BINARY_TOPICS[0], ORDERS_TOPIC: BINARY_TOPICS[1] },
    ));
  const binaryRate = EVENTS / binaryProduce.seconds;
  progress(`standalone producer: ${Math.round(binaryRate)} events/s, peak RSS ${binaryProduce.peakRssMb} MB`);
  const binaryConsume = await timed(
    "draining that backlog into PostgreSQL with the standalone consumer (Bun)",
    () => drain([`${ROOT}dist/cdc-consume`], binaryEnv),
  );
  const binaryConsumerRate = EVENTS / binaryConsume.seconds;
  progress(`standalone consumer: ${Math.round(binaryConsumerRate)} events/s, peak RSS ${binaryConsume.peakRssMb} MB`);
  const idleCpu = {
    consumer: await timed(
      `CPU of an idle consumer (deno task consume) over ${IDLE_WINDOW_S} s`,
      async () => idleCpuPercent(await taskCommand("consume", []), env),
    ),
    standaloneConsumer: await timed(
      `CPU of an idle standalone consumer over ${IDLE_WINDOW_S} s`,
      () => idleCpuPercent([`${ROOT}dist/cdc-consume`], binaryEnv),
    ),
  };
  progress(`idle consumer: ${idleCpu.consumer}% of a core, standalone ${idleCpu.standaloneConsumer}%`);
  const peer = await capturePeer();

  const ratios = {
    consumerVsOneEventPerTx: round(consumerRate / baselineRate, 1),
    producerVsJavaPerfTool: round(producerRate / javaRate, 2),
    consumerVsCopy: round(copy.seconds / consume.seconds, 3),
    ...peerRatios(peer),
  };
  const figures = {
    producerEventsPerS: Math.round(producerRate),
    producerSeconds: round(produce.seconds, 3),
    producerPeakRssMb: produce.peakRssMb,
    consumerEventsPerS: Math.round(consumerRate),
    consumerSeconds: round(consume.seconds, 3),
    consumerPeakRssMb: consume.peakRssMb,
    baselineOneEventPerTxEventsPerS: Math.round(baselineRate),
    javaProducerPerfRecordsPerS: Math.round(javaRate),
    copyRowsPerS: Math.round(copy.rows / copy.seconds),
    copySeconds: round(copy.seconds, 3),
    standaloneProducerEventsPerS: Math.round(binaryRate),
    standaloneProducerPeakRssMb: binaryProduce.peakRssMb,
    standaloneConsumerEventsPerS: Math.round(binaryConsumerRate),
    standaloneConsumerSeconds: round(binaryConsume.seconds, 3),
    standaloneConsumerPeakRssMb: binaryConsume.peakRssMb,
    idleConsumerCpuPercent: idleCpu.consumer,
    idleStandaloneConsumerCpuPercent: idleCpu.standaloneConsumer,
  };
  const perEvent = (seconds: number | null) => (seconds === null ? null : round((seconds * 1e6) / EVENTS, 1));
  /** Where one phase's CPU went, and the rate this machine's cores would allow at that cost. */
  const profileOf = (measured: Measured, command: string) => {
    const micros = {
      [command]: perEvent(measured.cpu.command),
      postgres: perEvent(measured.cpu.postgres),
      kafka: perEvent(measured.cpu.kafka),
    };
    const total = Object.values(micros).reduce((sum: number, value) => sum + (value ?? 0), 0);
    return {
      cpuMicrosPerEvent: micros,
      machineBusyShare: round(measured.cpu.machineBusy / measured.cpu.machineTotal, 2),
      ceilingEventsPerS: Math.round((os.cpus().length * 1e6) / total),
    };
  };
  const profile = {
    producer: profileOf(produce, "producer"),
    consumer: profileOf(consume, "consumer"),
    kafkajsEncodeOnlyEventsPerS: Math.round(encodeOnlyRate),
    producerVsKafkajsEncodeOnly: round(producerRate / encodeOnlyRate, 2),
    standaloneProducer: profileOf(binaryProduce, "producer"),
    standaloneConsumer: profileOf(binaryConsume, "consumer"),
  };
  console.log(JSON.stringify(
    {
      run: RUN,
      events: EVENTS,
      quick: QUICK,
      baselineEvents: BASELINE_EVENTS,
      meanRecordBytes: recordBytes,
      rowsAfterConsume: { users: Number(users), orders: Number(orders) },
      consumerDeadLettered: summary?.deadLettered ?? {},
      machine: machine(),
      versions: { deno: Deno.version.deno, kafka: KAFKA_VERSION, postgres: pgVersion },
      settings: {
        producer: `deno task produce: acks=all, one request in flight, ${PRODUCE_BATCH} events per send`,
        javaProducerPerf: `Kafka ${KAFKA_VERSION} producer defaults with acks=all`,
        consumer: "deno task consume with the defaults of lib/config.ts",
        standaloneProducer: "dist/cdc-produce from deno task build (Bun runtime), same arguments",
        profile: "CPU seconds per event of each process during the phase, from /proc; ceiling = cores / CPU per event",
      },
      figures,
      capture: {
        ...capture,
        settings: "deno task capture (acks=all) on a second database that the consumer fills from the same backlog",
      },
      captureVsDebezium: peer,
      ratios,
      profile,
      targets: {
        producerEventsPerS: atLeast(figures.producerEventsPerS, 100_000),
        standaloneProducerEventsPerS: atLeast(figures.standaloneProducerEventsPerS, 100_000),
        consumerEventsPerS: atLeast(figures.consumerEventsPerS, 50_000),
        standaloneConsumerEventsPerS: atLeast(figures.standaloneConsumerEventsPerS, 50_000),
        consumerVsOneEventPerTx: atLeast(ratios.consumerVsOneEventPerTx, 30),
        producerVsJavaPerfTool: atLeast(ratios.producerVsJavaPerfTool, 0.5),
        consumerVsCopy: atLeast(ratios.consumerVsCopy, 0.4),
        idleConsumerCpuPercent: atMost(figures.idleConsumerCpuPercent, 1),
        idleStandaloneConsumerCpuPercent: atMost(figures.idleStandaloneConsumerCpuPercent, 1),
        producerPeakRssMb: atMost(figures.producerPeakRssMb, 300),
        standaloneProducerPeakRssMb: atMost(figures.standaloneProducerPeakRssMb, 300),
        consumerPeakRssMb: atMost(figures.consumerPeakRssMb, 300),
        standaloneConsumerPeakRssMb: atMost(figures.standaloneConsumerPeakRssMb, 300),
        ...peerTargets(peer, ratios),
      },
    },
    null,
    2,
  ));
}

let exitCode = 0;
try {
  const setup = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
  const [{ version: pgVersion }] = await setup`select current_setting('server_version') as version`;
  await setup.end();
  await (ONLY_PEER ? peerOnly(pgVersion) : fullBench(pgVersion));
} catch (error) {
  progress(`failed: ${error instanceof Error ? error.message : error}`);
  exitCode = 1;
} finally {
  progress("cleaning up");
  await (cleaning ??= cleanUp());
}
Deno.exit(exitCode);
