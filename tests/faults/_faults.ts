/**
 * Shared by the fault tests: the suite's own Kafka and PostgreSQL (and 3-broker cluster), which
 * the tests stop and kill on purpose, never the shared services at 9092/5432; a seeded random
 * source for fault timing; waits on the group's progress; and one report line per scenario.
 * @module
 */
import postgres from "postgres";
import { DLQ_HEADERS, dlqTopic } from "../../lib/consumer_dead_letter.ts";
import type { OrderEvent, UserEvent } from "../../lib/model.ts";
import {
  committedOffsets,
  groupLag,
  type PipelineEnv,
  readWholeTopic,
  referenceState,
  ROOT,
  type Running,
  type RunResult,
  runServices,
  seededEvents,
  testKafka,
  uniqueName,
  waitFor,
  type Workload,
} from "../_helpers.ts";

/** Where the fault suite's services keep their data, beside the shared services' `.data/`. */
export const FAULTS_DATA_DIR = Deno.env.get("FAULTS_DATA_DIR") ?? `${ROOT}.data/faults`;
/** Port of the suite's own single Kafka broker (its KRaft controller listens on the next port). */
export const FAULTS_KAFKA_PORT = Number(Deno.env.get("FAULTS_KAFKA_PORT") ?? 28092);
/** Port of the suite's own PostgreSQL. */
export const FAULTS_PG_PORT = Number(Deno.env.get("FAULTS_PG_PORT") ?? 25432);
/** Bootstrap brokers of the suite's own single broker. */
export const FAULTS_BROKERS = [`localhost:${FAULTS_KAFKA_PORT}`];
/** Admin database URL of the suite's own PostgreSQL. */
export const FAULTS_DATABASE_URL = `postgres://postgres:postgres@localhost:${FAULTS_PG_PORT}/cdc_db`;
/** Bootstrap brokers of the 3-broker cluster that `scripts/services.sh up cluster` starts. */
export const CLUSTER_BROKERS = ["localhost:9192", "localhost:9194", "localhost:9196"];

const SERVICES_ENV = {
  CDC_DATA_DIR: FAULTS_DATA_DIR,
  KAFKA_PORT: String(FAULTS_KAFKA_PORT),
  PG_PORT: String(FAULTS_PG_PORT),
};

/** Runs `scripts/services.sh <args>` against the fault suite's own services; throws with its stderr on failure. */
export async function services(...args: string[]): Promise<void> {
  const run = await runServices(args, SERVICES_ENV);
  const stderr = run.stderr.trim();
  if (run.code !== 0) throw new Error(`scripts/services.sh ${args.join(" ")} failed: ${stderr}`);
  console.log(stderr.split("\n").map((l) => `    ${l}`).join("\n"));
  if (args[0] === "up" && /reusing/.test(stderr)) {
    // Another run's service on our port: stopping it would break that run, and stopping ours would not.
    throw new Error(`scripts/services.sh ${args.join(" ")} found a service it did not start: ${stderr}`);
  }
}

/** SIGKILLs broker `node` (1..3) of the fault suite's cluster, as a power cut would, and waits until it is gone. */
export async function killClusterNode(node: number): Promise<number> {
  const pid = Number(Deno.readTextFileSync(`${FAULTS_DATA_DIR}/kafka-cluster/node${node}/pid`).trim());
  Deno.kill(pid, "SIGKILL");
  // `start-node` skips a broker whose pid is alive, so the restart must not race the kill.
  await waitFor(
    `broker ${node} (pid ${pid}) to die`,
    () => {
      try {
        return Deno.readTextFileSync(`/proc/${pid}/stat`).split(" ")[2] === "Z";
      } catch {
        return true;
      }
    },
    30_000,
    100,
  );
  return pid;
}

/** Partitions of `__consumer_offsets` in the suite's brokers (scripts/services.sh, offsets.topic.num.partitions). */
const OFFSETS_PARTITIONS = 10;

/** Java's String.hashCode, which Kafka hashes a group id with to place it in `__consumer_offsets`. */
function javaHashCode(text: string): number {
  let hash = 0;
  for (let i = 0; i < text.length; i++) hash = (Math.imul(31, hash) + text.charCodeAt(i)) | 0;
  return hash;
}

/**
 * The node id of `groupId`'s coordinator: the leader of its `__consumer_offsets` partition
 * (Kafka's `Utils.abs(groupId.hashCode()) % partitions`), so a test can strike it on purpose
 * instead of depending on where Kafka placed it.
 */
export async function groupCoordinatorNode(groupId: string, brokers: string[]): Promise<number> {
  const hash = javaHashCode(groupId);
  const partition = (hash === -2147483648 ? 0 : Math.abs(hash)) % OFFSETS_PARTITIONS;
  const admin = testKafka(brokers).admin();
  await admin.connect();
  try {
    const { topics } = await admin.fetchTopicMetadata({ topics: ["__consumer_offsets"] });
    const leader = topics[0].partitions.find((p) => p.partitionId === partition)?.leader;
    if (leader === undefined || leader < 0) throw new Error(`__consumer_offsets-${partition} has no leader`);
    return leader;
  } finally {
    await admin.disconnect();
  }
}

/** The seed of a scenario: FAULTS_SEED when set, to repeat a failed run, else the scenario's `fallback`. */
export function faultSeed(fallback: number): number {
  return Number(Deno.env.get("FAULTS_SEED") ?? fallback);
}

/** Consumer flags for small batches in two lanes: many commits, so a fault lands between and inside them. */
export const SMALL_BATCHES = ["--max-batch-bytes", "8192", "--concurrency", "2"];

/** A seeded source of floats in [0, 1), so a failing run's fault timing can be repeated. */
export { mulberry32 as seededRandom } from "../../lib/generator.ts";

/** Sum of the group's committed offsets over `topics`: how far the group has got. */
export async function committedTotal(groupId: string, topics: string[], brokers: string[]): Promise<number> {
  const offsets = await committedOffsets(groupId, topics, brokers);
  return Object.values(offsets).reduce((a, b) => a + b, 0);
}

/** Creates a fresh group holding `groupId`'s committed offsets on `topics`; returns its id. */
export async function copyCommittedOffsets(groupId: string, topics: string[], brokers: string[]): Promise<string> {
  const copy = uniqueName("t_group");
  const offsets = await committedOffsets(groupId, topics, brokers);
  const admin = testKafka(brokers).admin();
  await admin.connect();
  try {
    for (const topic of topics) {
      const partitions = Object.entries(offsets)
        .filter(([key]) => key.startsWith(`${topic}:`))
        .map(([key, offset]) => ({ partition: Number(key.slice(topic.length + 1)), offset: String(offset) }));
      if (partitions.length) await admin.setOffsets({ groupId: copy, topic, partitions });
    }
  } finally {
    await admin.disconnect();
  }
  return copy;
}

/** Waits until the group has committed more than `beyond` records in all, or `all` of them (a drain already done), or fails at the deadline. */
export function waitForCommitsBeyond(
  groupId: string,
  topics: string[],
  brokers: string[],
  beyond: number,
  timeoutMs = 90_000,
  all = Infinity,
): Promise<number> {
  return waitFor(
    `group ${groupId} to commit beyond ${beyond}${all < Infinity ? ` (or all ${all})` : ""}`,
    async () => {
      const total = await committedTotal(groupId, topics, brokers);
      return total > beyond || total >= all ? total : 0;
    },
    timeoutMs,
    250,
  );
}

/** Waits until the group's lag on `topics` is 0; fails early, with its log, if `consumer` exits meanwhile. */
export async function waitForDrain(
  consumer: Running,
  groupId: string,
  topics: string[],
  brokers: string[],
  timeoutMs = 120_000,
): Promise<void> {
  let exited: RunResult | undefined;
  consumer.done.then((result) => (exited = result));
  const check = async () => {
    if (exited) throw new Error(`the consumer exited with ${exited.code}`);
    return (await groupLag(groupId, topics, brokers)) === 0;
  };
  await waitFor(`group ${groupId} to drain ${topics.join(", ")}`, check, timeoutMs, 500).catch(async (error) => {
    if (exited) {
      throw new Error(`the consumer exited with ${exited.code} before draining:\n${exited.stderr.slice(-3000)}`);
    }
    const lagging = await lagDetail(groupId, topics, brokers).catch((e) => `unknown (${e})`);
    throw new Error(`${error.message}\nlagging: ${lagging}\nconsumer log tail:\n${consumer.stderr().slice(-3000)}`);
  });
}

/** The partitions where the group lags, as `topic:partition committed/high`, for failure messages. */
async function lagDetail(groupId: string, topics: string[], brokers: string[]): Promise<string> {
  const committed = await committedOffsets(groupId, topics, brokers);
  const admin = testKafka(brokers).admin();
  await admin.connect();
  try {
    const lines: string[] = [];
    for (const topic of topics) {
      for (const end of await admin.fetchTopicOffsets(topic)) {
        const at = committed[`${topic}:${end.partition}`] ?? -1;
        if (at < Number(end.high)) lines.push(`${topic}:${end.partition} ${at}/${end.high}`);
      }
    }
    return lines.join(", ") || "none";
  } finally {
    await admin.disconnect();
  }
}

/** DLQ reasons with ids blanked, counted, so a report line shows why records were dead-lettered. */
export async function dlqReasons(env: PipelineEnv, brokers: string[]): Promise<Record<string, number>> {
  const reasons: Record<string, number> = {};
  for (const topic of [env.USERS_TOPIC, env.ORDERS_TOPIC]) {
    for (const record of await readWholeTopic(dlqTopic(topic), 60_000, brokers)) {
      const reason = (record.headers[DLQ_HEADERS.reason] ?? "").replace(/[0-9a-f-]{36}/g, "<id>");
      reasons[reason] = (reasons[reason] ?? 0) + 1;
    }
  }
  return reasons;
}

/** Prints one scenario's outcome as a line a person reads in the test log. */
export function report(scenario: string, fields: Record<string, unknown>): void {
  const parts = Object.entries(fields).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  console.log(`[faults] ${scenario}: ${parts.join(" ")}`);
}

/**
 * The expected state after `waves` were published one after another: each wave is a seeded
 * workload of its own (its orders reference its own users), so the waves' events, users before
 * orders, are one stream to the reference. Throws if two waves share an entity id, which would
 * make their order in the log matter.
 */
export function referenceOfWaves(waves: Workload[]): ReturnType<typeof referenceState> {
  const users: UserEvent[] = [], orders: OrderEvent[] = [];
  const waveOf = new Map<string, number>();
  for (const [i, wave] of waves.entries()) {
    const events = seededEvents(wave.seed, wave.users, wave.orders);
    for (const id of [...events.userEvents.map((e) => e.user_id), ...events.orderEvents.map((e) => e.order_id)]) {
      const other = waveOf.get(id) ?? i;
      if (other !== i) throw new Error(`waves ${other} and ${i} share id ${id}: give them other seeds`);
      waveOf.set(id, i);
    }
    users.push(...events.userEvents);
    orders.push(...events.orderEvents);
  }
  return referenceState(users, orders);
}

/** A held lock on the tables; `release()` ends it (again: nothing). */
export interface HeldWrites {
  release: () => Promise<void>;
}

/**
 * Locks users and orders in SHARE mode until `release()`: reads go on, every batch transaction
 * blocks at its first write. A backlog published meanwhile is then fetched but cannot be applied,
 * so a fault started now strikes members with records in hand, however fast they are.
 */
export async function holdWrites(databaseUrl: string): Promise<HeldWrites> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  let locked!: () => void;
  const isLocked = new Promise<void>((resolve) => (locked = resolve));
  const holding = sql.begin(async (tx) => {
    await tx`lock table users, orders in share mode`;
    locked();
    await released;
  });
  try {
    await Promise.race([isLocked, holding]);
  } catch (error) {
    await sql.end({ timeout: 5 });
    throw error;
  }
  let ended: Promise<void> | undefined;
  return {
    release: () =>
      ended ??= (async () => {
        release();
        await holding.finally(() => sql.end({ timeout: 5 }));
      })(),
  };
}

/**
 * `databaseUrl` naming its sessions `name` in pg_stat_activity (libpq's application_name
 * parameter), so {@linkcode heldBatches} can tell the members of a group apart.
 */
export function sessionsNamed(databaseUrl: string, name: string): string {
  const url = new URL(databaseUrl);
  url.searchParams.set("application_name", name);
  return url.href;
}

/**
 * How many database sessions named `name` wait for a lock on users or orders, that of
 * {@linkcode holdWrites}: each is a batch a consumer fetched and is applying, uncommitted. `sql`
 * is any session of the same database.
 */
export async function heldBatches(sql: postgres.Sql, name = "cdc-pipeline"): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(distinct a.pid)::int as n from pg_stat_activity a join pg_locks l on l.pid = a.pid
    where a.datname = current_database() and a.application_name = ${name} and not l.granted
      and l.relation in ('users'::regclass, 'orders'::regclass)`;
  return row.n;
}

/** Waits until the consumer whose sessions are named `name` has a batch in hand that {@linkcode holdWrites} stops; returns how many. */
export function waitForHeldBatch(sql: postgres.Sql, name = "cdc-pipeline", timeoutMs = 60_000): Promise<number> {
  return waitFor(`the consumer ${name} to hold a batch it cannot apply`, () => heldBatches(sql, name), timeoutMs, 100);
}
