/**
 * Shared by the tests, each written once: isolated topics and databases per test, running and
 * stopping the real commands and scripts as subprocesses, free ports, reading topics back, event
 * builders, and an independent reference model of the final tables.
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type Admin, Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import { dlqTopic } from "../lib/consumer_dead_letter.ts";
import { generateEvents } from "../lib/generator.ts";
import { type PartitionPosition, partitionPositions } from "../lib/kafka_admin.ts";
import "../lib/kafkajs_fixes.ts";
import type { EventType, OrderEvent, UserEvent } from "../lib/model.ts";
import { normalizeTimestamp, toCents } from "../lib/model.ts";

/** Brokers and database of the local services (or the env's). */
export const BROKERS = (Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers).split(",");
/** The admin database URL; each test gets its own database beside it. */
export const ADMIN_DATABASE_URL = Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl;
/** The project's root folder. */
export const ROOT = new URL("..", import.meta.url).pathname;

/** A name no other test run uses. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
}

/** A kafkajs client for tests, quiet. */
export function testKafka(brokers = BROKERS): Kafka {
  return new Kafka({ clientId: "cdc-tests", brokers, logLevel: logLevel.NOTHING });
}

/** Runs `fn`, asserts it throws a `type` named as its class with a one-line message, and returns the message. */
export function oneLineError(fn: () => unknown, type: new (...args: never[]) => Error): string {
  let caught: unknown;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof type, `expected ${type.name}, got ${caught}`);
  assert.equal(caught.name, type.name);
  assert.ok(!caught.message.includes("\n"), `one-line message: ${caught.message}`);
  return caught.message;
}

/** Waits until `check` returns a truthy value, or throws naming `what` at the deadline. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T> | T,
  timeoutMs = 60_000,
  everyMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** A fresh database for one test; dropped by `drop()`. */
export async function createTestDatabase(
  adminUrl = ADMIN_DATABASE_URL,
): Promise<{ url: string; sql: postgres.Sql; drop: () => Promise<void> }> {
  const name = uniqueName("cdc_test");
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  await admin.end();
  const url = adminUrl.replace(/\/[^/?]*(\?|$)/, `/${name}$1`);
  const sql = postgres(url, { max: 2, onnotice: () => {} });
  return {
    url,
    sql,
    drop: async () => {
      await sql.end({ timeout: 5 });
      const admin2 = postgres(adminUrl, { max: 1, onnotice: () => {} });
      await admin2.unsafe(`drop database if exists ${name} with (force)`);
      await admin2.end();
    },
  };
}

/** The major version of the PostgreSQL at `adminUrl`, e.g. 17: tests of one major's features skip on the others. */
export async function serverMajor(adminUrl = ADMIN_DATABASE_URL): Promise<number> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await admin<{ num: number }[]>`select current_setting('server_version_num')::int as num`;
    return Math.floor(row.num / 10_000);
  } finally {
    await admin.end();
  }
}

/**
 * Which of the extensions `names` (contrib's hstore, citext, ltree; PostGIS) this server's build
 * cannot create, named in the test output with the server's version (unless `report` is false: a
 * test running several databases names them once), so that a test leaves out only their columns
 * and says why. Empty when every one is available.
 */
export async function missingExtensions(sql: postgres.Sql, names: string[], report = true): Promise<string[]> {
  const [{ version }] = await sql<{ version: string }[]>`select current_setting('server_version') as version`;
  const available = await sql<{ name: string }[]>`
    select name from pg_available_extensions where name = any(${names}::text[])`;
  const have = new Set(available.map((r) => r.name));
  const missing = names.filter((n) => !have.has(n));
  if (missing.length && report) {
    console.log(`PostgreSQL ${version.split(" ")[0]} lacks extension ${missing.join(", ")}: its columns are skipped`);
  }
  return missing;
}

/** Environment for a command run against test topics, group and database. */
export interface PipelineEnv {
  USERS_TOPIC: string;
  ORDERS_TOPIC: string;
  CONSUMER_GROUP: string;
  DATABASE_URL: string;
  KAFKA_BROKERS?: string;
  [name: string]: string | undefined;
}

/** Fresh topic and group names; with `brokers`, the commands talk to those instead of the shared broker. */
export function pipelineNames(databaseUrl: string, brokers?: string[]): PipelineEnv {
  const id = uniqueName("t");
  return {
    USERS_TOPIC: `${id}_users`,
    ORDERS_TOPIC: `${id}_orders`,
    CONSUMER_GROUP: `${id}_group`,
    DATABASE_URL: databaseUrl,
    ...(brokers ? { KAFKA_BROKERS: brokers.join(",") } : {}),
  };
}

/** The size and seed of a generated workload. */
export interface Workload {
  users: number;
  orders: number;
  seed: number;
}

/** The producer's flags for `workload`, then `extra`. */
export function workloadArgs(workload: Workload, ...extra: string[]): string[] {
  return ["--users", `${workload.users}`, "--orders", `${workload.orders}`, "--seed", `${workload.seed}`, ...extra];
}

/** Publishes `workload` with the real producer (or the binary in `binDir`), flags `args` added; throws unless it exits 0. */
export async function produceWorkload(
  env: PipelineEnv,
  workload: Workload,
  { args = [], binDir }: { args?: string[]; binDir?: string } = {},
): Promise<RunResult> {
  const produced = await runCommand("produce", workloadArgs(workload, ...args), env, binDir);
  if (produced.code !== 0) throw new Error(`the producer exited with ${produced.code}:\n${produced.stderr}`);
  return produced;
}

const PERMISSIONS = ["--allow-net", "--allow-env", "--allow-read", "--allow-sys"];

/** The command line of `main_<name>.ts` under Deno, or of the built binary in `binDir`. */
function commandLine(name: "produce" | "consume", args: string[], binDir?: string): string[] {
  if (binDir) return [`${binDir}/cdc-${name}`, ...args];
  return [Deno.execPath(), "run", ...PERMISSIONS, `${ROOT}main_${name}.ts`, ...args];
}

/** The outcome of a finished command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `program` to completion, in the project root unless `cwd` says otherwise; returns its exit code and output. */
export async function runProgram(
  program: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; signal?: AbortSignal } = {},
): Promise<RunResult> {
  const output = await new Deno.Command(program, {
    args,
    env: options.env,
    cwd: options.cwd ?? ROOT,
    signal: options.signal,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

/** Runs `main_<name>.ts` (or the binary in `binDir`) to completion with `env` added to the environment. */
export function runCommand(
  name: "produce" | "consume",
  args: string[],
  env: Record<string, string | undefined>,
  binDir?: string,
): Promise<RunResult> {
  const [cmd, ...rest] = commandLine(name, args, binDir);
  return runProgram(cmd, rest, { env: definedOnly(env) });
}

/** Runs `scripts/services.sh <args>` of the checkout at `root` with `env` added to the environment. */
export function runServices(args: string[], env: Record<string, string> = {}, root = ROOT): Promise<RunResult> {
  return runProgram("bash", [`${root}scripts/services.sh`, ...args], { env, cwd: root });
}

function definedOnly(env: Record<string, string | undefined>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined)) as Record<string, string>;
}

/** A running command whose stderr is collected as it arrives. */
export interface Running {
  process: Deno.ChildProcess;
  /** Everything written to stderr so far. */
  stderr: () => string;
  /** Resolves with the exit code and full output. */
  done: Promise<RunResult>;
}

/** Starts `main_<name>.ts` in the background, or the binary `cdc-<name>` in `binDir`. */
export function startCommand(
  name: "produce" | "consume",
  args: string[],
  env: Record<string, string | undefined>,
  binDir?: string,
): Running {
  const [cmd, ...rest] = commandLine(name, args, binDir);
  const child = new Deno.Command(cmd, {
    args: rest,
    env: definedOnly(env),
    stdout: "piped",
    stderr: "piped",
    cwd: ROOT,
  })
    .spawn();
  let err = "";
  let out = "";
  const decoder = new TextDecoder();
  const readErr = (async () => {
    for await (const chunk of child.stderr) err += decoder.decode(chunk, { stream: true });
  })();
  const readOut = (async () => {
    for await (const chunk of child.stdout) out += decoder.decode(chunk, { stream: true });
  })();
  const done = (async () => {
    const status = await child.status;
    await Promise.all([readErr, readOut]);
    return { code: status.code, stdout: out, stderr: err };
  })();
  return { process: child, stderr: () => err, done };
}

/** Sends `signal` to `running` (nothing if it has exited) and waits for it to exit; returns its exit code and output. */
export async function stopProcess(running: Running, signal: Deno.Signal = "SIGTERM"): Promise<RunResult> {
  try {
    running.process.kill(signal);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error; // it had exited already
  }
  return await running.done;
}

/** SIGTERM, then SIGKILL if `running` has not exited within `graceMs`: a stop that cannot hang a test. */
export async function stopWithin(running: Running, graceMs = 30_000): Promise<RunResult> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), graceMs));
  try {
    if (await Promise.race([stopProcess(running, "SIGTERM"), deadline]) === "late") {
      return await stopProcess(running, "SIGKILL");
    }
    return await running.done;
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILLs whichever of `runs` still run, so a failed test leaves no process behind. */
export async function killLeftovers(...runs: (Running | undefined)[]): Promise<void> {
  for (const run of runs) if (run) await stopProcess(run, "SIGKILL");
}

/** The base URL of the metrics server `running` started (`--metrics-port 0`), once its log names it. */
export function metricsAddress(running: Running, timeoutMs = 60_000): Promise<string> {
  return waitFor(
    "the metrics address in the log",
    () => /metrics on (http:\/\/127\.0\.0\.1:\d+)/.exec(running.stderr())?.[1] ?? "",
    timeoutMs,
  );
}

/** A local port nothing listens on now, chosen by the OS: connecting to it is refused until someone listens. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

/** The first of `count` consecutive local ports nothing listens on, for a service that takes a port and the next ones. */
export function freePortRange(count: number): number {
  const free = (port: number) => {
    try {
      Deno.listen({ hostname: "127.0.0.1", port }).close();
      return true;
    } catch {
      return false;
    }
  };
  for (;;) {
    const base = 20_000 + Math.floor(Math.random() * (12_000 - count));
    if (Array.from({ length: count }, (_, i) => base + i).every(free)) return base;
  }
}

/** Moves `groupId`'s committed offsets on `topics` back to their start, as an operator's reset does. */
export async function rewindGroup(groupId: string, topics: string[], brokers = BROKERS): Promise<void> {
  await withAdmin(brokers, async (admin) => {
    for (const topic of topics) await admin.resetOffsets({ groupId, topic, earliest: true });
  });
}

/** A record read back from a topic. */
export interface ReadRecord {
  partition: number;
  offset: string;
  key: string | null;
  value: Uint8Array | null;
  headers: Record<string, string>;
}

/** Reads `count` records from the start of `topic` (all partitions), or throws at the deadline. */
export async function readTopic(
  topic: string,
  count: number,
  timeoutMs = 60_000,
  brokers = BROKERS,
): Promise<ReadRecord[]> {
  const kafka = testKafka(brokers);
  const consumer = kafka.consumer({ groupId: uniqueName("reader"), maxWaitTimeInMs: 200 });
  const records: ReadRecord[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: ({ partition, message }) => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
        records.push({
          partition,
          offset: message.offset,
          key: message.key ? message.key.toString() : null,
          value: message.value ? new Uint8Array(message.value) : null,
          headers,
        });
        return Promise.resolve();
      },
    });
    await waitFor(`${count} records in ${topic} (have ${records.length})`, () => records.length >= count, timeoutMs);
  } finally {
    await consumer.disconnect();
  }
  return records;
}

/** Publishes raw values to a topic, keyed as given, and waits for the acks. */
export async function publishRaw(
  topic: string,
  partitions: number,
  messages: { key: string; value: string | Uint8Array }[],
  brokers = BROKERS,
) {
  const kafka = testKafka(brokers);
  const admin = kafka.admin();
  await admin.connect();
  const topics = await admin.listTopics();
  if (!topics.includes(topic)) {
    await admin.createTopics({ topics: [{ topic, numPartitions: partitions }], waitForLeaders: true });
  }
  await admin.disconnect();
  if (messages.length === 0) return;
  // Idempotent: a send kafkajs retries after a timeout on a busy machine would otherwise write its batch twice.
  const producer = kafka.producer({ allowAutoTopicCreation: false, idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  await producer.send({
    topic,
    acks: -1,
    messages: messages.map((m) => ({
      key: m.key,
      value: typeof m.value === "string" ? m.value : Buffer.from(m.value),
    })),
  });
  await producer.disconnect();
}

/** A user row as the tests compare it. */
export interface UserRow {
  name: string;
  dob: string;
  created_at: string | null;
  modified_at: string | null;
  is_deleted: boolean;
}

/** An order row as the tests compare it. */
export interface OrderRow {
  status: string;
  user_id: string;
  quantity: number;
  total_amount: string;
  placed_at: string | null;
  modified_at: string | null;
  is_deleted: boolean;
}

/** The tables' final state, keyed by id, timestamps in UTC with microseconds. */
export interface TableState {
  users: Map<string, UserRow>;
  orders: Map<string, OrderRow>;
}

/** Reads both tables. */
export async function readTables(sql: postgres.Sql): Promise<TableState> {
  const ts = (column: string) => `to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
  const users = await sql.unsafe(
    `select id::text, name, dob::text, ${ts("created_at")} as created_at, ${
      ts("modified_at")
    } as modified_at, is_deleted
     from users`,
  );
  const orders = await sql.unsafe(
    `select id::text, status, user_id::text, quantity, total_amount::text, ${ts("placed_at")} as placed_at,
            ${ts("modified_at")} as modified_at, is_deleted from orders`,
  );
  return {
    users: new Map(
      users.map((
        r,
      ) => [r.id, {
        name: r.name,
        dob: r.dob,
        created_at: r.created_at,
        modified_at: r.modified_at,
        is_deleted: r.is_deleted,
      }]),
    ),
    orders: new Map(orders.map((r) => [r.id, {
      status: r.status,
      user_id: r.user_id,
      quantity: r.quantity,
      total_amount: r.total_amount,
      placed_at: r.placed_at,
      modified_at: r.modified_at,
      is_deleted: r.is_deleted,
    }])),
  };
}

/**
 * The reference model: applies events one at a time, per key in log order, the way docs/CONTRACT.md
 * section 4 states them, independently of the sink's set-based code. Returns the expected
 * tables, how many events it expects in the DLQ, and those events as JSON (their wire form).
 */
export function referenceState(
  users: UserEvent[],
  orders: OrderEvent[],
): TableState & { rejected: number; rejectedValues: string[] } {
  const state: TableState = { users: new Map(), orders: new Map() };
  const rejectedValues: string[] = [];
  const reject = (e: UserEvent | OrderEvent) => rejectedValues.push(JSON.stringify(e));
  const t = (value: string | undefined) => (value === undefined ? null : normalizeTimestamp(value));
  for (const e of users) {
    const id = e.user_id.toLowerCase();
    const row = state.users.get(id);
    if (e.event_type === "CREATE") {
      state.users.set(id, {
        name: e.name!,
        dob: e.dob!,
        created_at: t(e.created_at),
        modified_at: row?.modified_at ?? null,
        is_deleted: row?.is_deleted ?? false,
      });
    } else if (!row) reject(e);
    else if (e.event_type === "UPDATE") {
      row.name = e.name!;
      row.modified_at = t(e.modified_at) ?? row.modified_at;
    } else {
      row.is_deleted = true;
      row.modified_at = t(e.modified_at) ?? row.modified_at;
    }
  }
  for (const e of orders) {
    const id = e.order_id.toLowerCase();
    const row = state.orders.get(id);
    if (e.event_type === "CREATE") {
      if (!state.users.has(e.user_id!.toLowerCase())) {
        reject(e);
        continue;
      }
      state.orders.set(id, {
        status: e.order_status,
        user_id: e.user_id!.toLowerCase(),
        quantity: e.quantity!,
        total_amount: toCents(e.order_total!)!,
        placed_at: t(e.placed_at),
        modified_at: row?.modified_at ?? null,
        is_deleted: row?.is_deleted ?? false,
      });
    } else if (!row) reject(e);
    else {
      row.status = e.order_status;
      row.modified_at = t(e.modified_at) ?? row.modified_at;
      if (e.event_type === "DELETE") row.is_deleted = true;
    }
  }
  for (const order of state.orders.values()) {
    if (state.users.get(order.user_id)?.is_deleted) order.is_deleted = true;
  }
  return { ...state, rejected: rejectedValues.length, rejectedValues };
}

/** Differences between two table states, as readable lines (empty when equal). */
export function diffTables(expected: TableState, actual: TableState, limit = 10): string[] {
  const lines: string[] = [];
  for (const table of ["users", "orders"] as const) {
    const want = expected[table] as Map<string, unknown>;
    const have = actual[table] as Map<string, unknown>;
    for (const [id, row] of want) {
      const got = have.get(id);
      if (!got) lines.push(`${table} ${id}: missing, expected ${JSON.stringify(row)}`);
      else if (JSON.stringify(got) !== JSON.stringify(row)) {
        lines.push(`${table} ${id}: expected ${JSON.stringify(row)}, got ${JSON.stringify(got)}`);
      }
    }
    for (const id of have.keys()) if (!want.has(id)) lines.push(`${table} ${id}: unexpected row`);
  }
  return lines.slice(0, limit).concat(lines.length > limit ? [`... and ${lines.length - limit} more`] : []);
}

/** A consumer group's committed positions on `topics`, as Kafka holds them (what lag tools show). */
async function groupPositions(admin: Admin, groupId: string, topics: string[]): Promise<PartitionPosition[]> {
  const committed = new Map<string, number>();
  for (const { topic, partitions } of await admin.fetchOffsets({ groupId, topics })) {
    for (const p of partitions) if (Number(p.offset) >= 0) committed.set(`${topic}:${p.partition}`, Number(p.offset));
  }
  return await partitionPositions(admin, topics, (key) => committed.get(key));
}

/** Total lag of `groupId` on `topics`, from Kafka's committed offsets (a partition without one lags from its start). */
export async function groupLag(groupId: string, topics: string[], brokers = BROKERS): Promise<number> {
  const positions = await withAdmin(brokers, (admin) => groupPositions(admin, groupId, topics));
  return positions.reduce((sum, p) => sum + p.lag, 0);
}

/** The group's committed offsets per `topic:partition` (absent while nothing is committed there). */
export async function committedOffsets(
  groupId: string,
  topics: string[],
  brokers = BROKERS,
): Promise<Record<string, number>> {
  const positions = await withAdmin(brokers, (admin) => groupPositions(admin, groupId, topics));
  return Object.fromEntries(
    positions.filter((p) => p.position !== undefined).map((p) => [`${p.topic}:${p.partition}`, p.position!]),
  );
}

async function withAdmin<T>(brokers: string[], use: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = testKafka(brokers).admin();
  await admin.connect();
  try {
    return await use(admin);
  } finally {
    await admin.disconnect();
  }
}

/** Records in `topic` now (high minus low watermark, over all partitions); 0 when it does not exist. */
export async function topicSize(topic: string, brokers = BROKERS): Promise<number> {
  return await withAdmin(brokers, async (admin) => {
    if (!(await admin.listTopics()).includes(topic)) return 0;
    const ends = await admin.fetchTopicOffsets(topic);
    return ends.reduce((sum, e) => sum + Number(e.high) - Number(e.low), 0);
  });
}

/** Records in the DLQ topics of `env`'s two topics now. */
export async function dlqSize(env: PipelineEnv, brokers = BROKERS): Promise<number> {
  return await topicSize(dlqTopic(env.USERS_TOPIC), brokers) + await topicSize(dlqTopic(env.ORDERS_TOPIC), brokers);
}

/** The values of `records` as text (a tombstone's as an empty string). */
export function valuesOf(records: ReadRecord[]): string[] {
  const decoder = new TextDecoder();
  return records.map((r) => r.value ? decoder.decode(r.value) : "");
}

/** How often each value occurs in `values`. */
export function tally(values: string[]): Map<string, number> {
  return values.reduce((counts, v) => counts.set(v, (counts.get(v) ?? 0) + 1), new Map<string, number>());
}

/** Reads every record `topic` holds now, sorted by partition, then offset (log order per key). */
export async function readWholeTopic(topic: string, timeoutMs = 60_000, brokers = BROKERS): Promise<ReadRecord[]> {
  const records = await readTopic(topic, await topicSize(topic, brokers), timeoutMs, brokers);
  return records.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
}

/** The timestamp the event builders put in every time field they fill. */
const EVENT_TIME = "2025-07-03T10:11:12Z";

/** A valid user event of `type`; `fields` replace or add fields (invalid ones too, for rejection tests). */
export function userEvent(type: EventType, userId: string, fields: Record<string, unknown> = {}): UserEvent {
  const typical = type === "CREATE"
    ? { name: "Ada Lovelace", dob: "1990-01-01", created_at: EVENT_TIME }
    : type === "UPDATE"
    ? { name: "Ada King", modified_at: EVENT_TIME }
    : { modified_at: EVENT_TIME };
  return { event_type: type, user_id: userId, ...typical, ...fields } as UserEvent;
}

/** A valid order event of `type`; a CREATE belongs to `fields.user_id`; `fields` replace or add fields. */
export function orderEvent(type: EventType, orderId: string, fields: Record<string, unknown> = {}): OrderEvent {
  const typical = type === "CREATE"
    ? { order_status: "PLACED", user_id: fields.user_id, quantity: 3, order_total: 10, placed_at: EVENT_TIME }
    : { order_status: type === "UPDATE" ? "SHIPPED" : "CANCELLED", modified_at: EVENT_TIME };
  return { event_type: type, order_id: orderId, ...typical, ...fields } as OrderEvent;
}

/** The events of a seeded generator run, split by topic, in generation order. */
export function seededEvents(seed: number, users: number, orders: number) {
  const userEvents: UserEvent[] = [];
  const orderEvents: OrderEvent[] = [];
  for (const event of generateEvents({ users, orders, seed })) {
    if (event.entity === "user") userEvents.push(event.value);
    else orderEvents.push(event.value);
  }
  return { userEvents, orderEvents };
}
