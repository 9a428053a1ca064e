/**
 * The bench's consumer phases: a consumer draining a backlog into PostgreSQL (measured until the
 * offsets stored there reach the logs' ends), an idle consumer's CPU, and the reference in the
 * same run: the Go original's design, one event per transaction and per offset commit.
 * @module
 */
import postgres from "postgres";
import { partitionPositions } from "../lib/kafka_admin.ts";
import { type OrderChange, parseOrderEvent, parseUserEvent, type UserChange } from "../lib/model.ts";
import { procStats } from "./_proc.ts";
import { measure, type Measured, spawnCommand, taskCommand } from "./bench_measure.ts";
import { type BenchRun, type PipelineEnv, progress, timed } from "./bench_run.ts";
import { decode, round, sleep } from "./_util.ts";

/** The consumer's drain of the run's backlog: its measure, its summary's dead letters, the rows it left. */
export interface ConsumePhase {
  measured: Measured;
  deadLettered: Record<string, unknown>;
  rows: { users: number; orders: number };
  /** PostgreSQL's time per statement of the drain; null when pg_stat_statements is not loaded. */
  statements: StatementCost[] | null;
}

/** One statement's server-side cost during the drain, from pg_stat_statements. */
export interface StatementCost {
  /** The statement's text, its whitespace folded, cut at 100 characters. */
  statement: string;
  calls: number;
  /** Execution time (wall time in the server, lock waits included) per event of the run. */
  microsPerEvent: number;
  /** Rows it returned or wrote per call. */
  rowsPerCall: number;
}

/**
 * Server-side cost of each statement run in `databaseUrl`'s database (made fresh for the run, so
 * everything pg_stat_statements holds for it is the drain's), costliest first; null when the
 * server does not load pg_stat_statements (a cluster made before scripts/services.sh preloaded it).
 */
async function statementCosts(databaseUrl: string, events: number): Promise<StatementCost[] | null> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [{ loaded }] = await sql`
      select 'pg_stat_statements' = any(string_to_array(current_setting('shared_preload_libraries'), ', ')) as loaded`;
    if (!loaded) return null;
    await sql`create extension if not exists pg_stat_statements`;
    const rows = await sql<{ statement: string; calls: string; ms: number; rows: string }[]>`
      select left(regexp_replace(query, '[[:space:]]+', ' ', 'g'), 100) as statement, calls::text,
        total_exec_time as ms, rows::text
      from pg_stat_statements where dbid = (select oid from pg_database where datname = current_database())
        and query !~* '^[[:space:]]*(create|drop|alter)'
      order by total_exec_time desc limit 12`;
    return rows.map((r) => ({
      statement: r.statement,
      calls: Number(r.calls),
      microsPerEvent: round((r.ms * 1000) / events, 2),
      rowsPerCall: round(Number(r.rows) / Number(r.calls), 1),
    }));
  } finally {
    await sql.end();
  }
}

/**
 * Records of `topics` the tables in `databaseUrl` have not applied: the log's end minus the
 * offsets stored in PostgreSQL, which the consumer advances in the transaction that applies.
 */
function storedLag(run: BenchRun, databaseUrl: string, topics: string[]) {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const admin = run.kafka.admin();
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

/** Drains `environment`'s topics into its database with `cmd`, measured until the stored offsets reach the logs' ends. */
export async function drain(run: BenchRun, cmd: string[], environment: PipelineEnv): Promise<Measured> {
  const backlog = storedLag(run, environment.DATABASE_URL, [environment.USERS_TOPIC, environment.ORDERS_TOPIC]);
  try {
    return await measure(run, cmd, async () => (await backlog.lag().catch(() => 1)) === 0, environment);
  } finally {
    await backlog.close();
  }
}

/** `deno task consume` draining the run's backlog into its database; then the rows it holds. */
export async function consumePhase(run: BenchRun): Promise<ConsumePhase> {
  const measured = await timed(
    "draining the backlog into PostgreSQL with the consumer",
    async () => drain(run, await taskCommand(run.root, "consume", []), run.env),
  );
  progress(`consumer: ${Math.round(run.events / measured.seconds)} events/s, peak RSS ${measured.peakRssMb} MB`);
  const summary = measured.stderr.split("\n").filter((l) => l.startsWith("{") && l.includes('"done"'))
    .map((l) => JSON.parse(l)).at(-1);
  const check = postgres(run.env.DATABASE_URL, { max: 1, onnotice: () => {} });
  const [{ users, orders }] =
    await check`select (select count(*) from users) as users, (select count(*) from orders) as orders`;
  await check.end();
  return {
    measured,
    deadLettered: summary?.deadLettered ?? {},
    rows: { users: Number(users), orders: Number(orders) },
    statements: await statementCosts(run.env.DATABASE_URL, run.events),
  };
}

/**
 * Share of one core a consumer uses with nothing to consume: started on drained topics, measured
 * from /proc over the run's idle window once it has joined its group and settled, then stopped.
 */
async function idleCpuPercent(run: BenchRun, cmd: string[], environment: PipelineEnv): Promise<number> {
  const child = spawnCommand(run.root, cmd, environment);
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
    const before = await ownCpu(child.pid);
    const started = performance.now();
    await sleep(run.idleWindowS * 1000);
    const after = await ownCpu(child.pid);
    return round((100 * (after - before)) / ((performance.now() - started) / 1000), 2);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reader;
  }
}

/** CPU of an idle `deno task consume` and of an idle standalone consumer, each over the run's idle window. */
export async function idleConsumersPhase(run: BenchRun): Promise<{ consumer: number; standaloneConsumer: number }> {
  const idleCpu = {
    consumer: await timed(
      `CPU of an idle consumer (deno task consume) over ${run.idleWindowS} s`,
      async () => idleCpuPercent(run, await taskCommand(run.root, "consume", []), run.env),
    ),
    standaloneConsumer: await timed(
      `CPU of an idle standalone consumer over ${run.idleWindowS} s`,
      () => idleCpuPercent(run, [`${run.root}dist/cdc-consume`], run.binaryEnv),
    ),
  };
  progress(`idle consumer: ${idleCpu.consumer}% of a core, standalone ${idleCpu.standaloneConsumer}%`);
  return idleCpu;
}

/** The process's own CPU seconds, or a one-line error when it is gone. */
async function ownCpu(pid: number): Promise<number> {
  const stats = await procStats(pid);
  if (!stats) throw new Error(`the idle consumer (pid ${pid}) exited`);
  return stats.ownCpuS;
}

/** The Go original's design: one event per statement and transaction, one offset commit per message. */
export async function oneEventPerTransaction(run: BenchRun): Promise<number> {
  const events = run.baselineEvents;
  const sql = postgres(run.env.DATABASE_URL, { max: 2, onnotice: () => {} });
  await sql`create table baseline_users (like users including defaults)`;
  await sql`alter table baseline_users add primary key (id)`;
  await sql`create table baseline_orders (like orders including defaults)`;
  await sql`alter table baseline_orders add primary key (id)`;
  const consumer = run.kafka.consumer({ groupId: run.baselineGroup, maxWaitTimeInMs: 100 });
  await consumer.connect();
  await consumer.subscribe({ topics: [run.env.USERS_TOPIC, run.env.ORDERS_TOPIC], fromBeginning: true });
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
        if (topic === run.env.USERS_TOPIC) await applyUser(tx, parseUserEvent(message.value));
        else await applyOrder(tx, parseOrderEvent(message.value));
      });
      await consumer.commitOffsets([{ topic, partition, offset: (BigInt(message.offset) + 1n).toString() }]);
      if (++done === events) finish();
    },
  });
  const timeout = setTimeout(() => finish(), run.phaseTimeoutS * 1000);
  await finished;
  clearTimeout(timeout);
  if (done < events) throw new Error(`the one-event-per-transaction baseline applied only ${done}/${events} events`);
  const rate = events / ((performance.now() - started) / 1000);
  await consumer.disconnect();
  await sql.end();
  return rate;
}

/** One user event as the Go original applied it: one statement. */
async function applyUser(tx: postgres.TransactionSql, u: UserChange): Promise<void> {
  if (u.type === "CREATE") {
    await tx`insert into baseline_users (id, name, dob, created_at) values (${u.id}, ${u.name!}, ${u.dob!}, ${
      u.createdAt ?? null
    }) on conflict (id) do nothing`;
  } else {
    await tx`update baseline_users set name = coalesce(${u.name ?? null}, name), modified_at = ${
      u.modifiedAt ?? null
    }, is_deleted = is_deleted or ${u.type === "DELETE"} where id = ${u.id}`;
  }
}

/** One order event as the Go original applied it: one statement. */
async function applyOrder(tx: postgres.TransactionSql, o: OrderChange): Promise<void> {
  if (o.type === "CREATE") {
    await tx`insert into baseline_orders (id, status, user_id, quantity, total_amount, placed_at) values (${o.id}, ${o.status}, ${o
      .userId!}, ${o.quantity!}, ${o.total!}, ${o.placedAt ?? null}) on conflict (id) do nothing`;
  } else {
    await tx`update baseline_orders set status = ${o.status}, modified_at = ${
      o.modifiedAt ?? null
    }, is_deleted = is_deleted or ${o.type === "DELETE"} where id = ${o.id}`;
  }
}
