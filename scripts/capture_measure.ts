/**
 * Measures `deno task capture` alone on one workload, in a database and topics of its own:
 *
 * - `--mode stream`: `orders` of `--rows` rows (default 200,000), the capture started and its
 *   snapshot published, then one UPDATE of every row; timed from the commit to the last record in
 *   Kafka (the topic's end offsets);
 * - `--mode snapshot`: `orders` of `--rows` rows (default 1,000,000), timed from the capture's
 *   start to the last snapshot record in Kafka.
 *
 * CPU is user + system time of the capture's process tree during the timed part (/proc/<pid>/stat),
 * peak RSS the largest VmHWM of the tree. Flags after `--` go to the capture; `--root DIR` runs
 * the capture of another checkout (for a before/after comparison).
 * `deno run -A scripts/capture_measure.ts --mode stream [--rows N] [-- --schemas=false]` prints one JSON line.
 * @module
 */
import { parseArgs } from "node:util";
import { type Admin, Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import type { Sql } from "../lib/database.ts";
import { ensureSchema } from "../lib/sink.ts";
import { ownCpuSeconds, processTree, procStats } from "./_proc.ts";
import { databaseUrlFor, sleep } from "./_util.ts";

/** How often the end offsets and the capture's log are checked, in ms. */
const TICK = 50;

/** What to measure, and the capture flags to measure it with. */
interface MeasureOptions {
  mode: "stream" | "snapshot";
  rows: number;
  /** The checkout whose capture runs. */
  root: string;
  captureFlags: string[];
}

/** One measurement: its names, its clients and the capture under measurement. */
interface Bench {
  options: MeasureOptions;
  sql: postgres.Sql;
  topic: string;
  kafkaAdmin: Admin;
  capture: RunningCapture;
}

/** The capture's process: its pid, its log so far, and its exit once it has exited. */
interface RunningCapture {
  child: Deno.ChildProcess;
  log: () => string;
  exited: () => Deno.CommandStatus | undefined;
}

/** Reads the flags; those after `--` go to the capture. */
function parseOptions(args: string[]): MeasureOptions {
  const dash = args.indexOf("--");
  const { values } = parseArgs({
    args: dash < 0 ? args : args.slice(0, dash),
    options: { mode: { type: "string", default: "stream" }, rows: { type: "string" }, root: { type: "string" } },
  });
  const mode = values.mode as "stream" | "snapshot";
  return {
    mode,
    rows: Number(values.rows ?? (mode === "stream" ? 200_000 : 1_000_000)),
    root: values.root ?? ".",
    captureFlags: dash < 0 ? [] : args.slice(dash + 1),
  };
}

/** Peak resident memory of `pids` (the largest VmHWM), in MB. */
async function peakRssMb(pids: number[]): Promise<number> {
  const stats = await Promise.all(pids.map(procStats));
  return Math.round(Math.max(0, ...stats.map((s) => s?.hwmBytes ?? 0)) / 2 ** 20);
}

/** CPU seconds of the capture's process tree so far. */
async function treeCpuSeconds(pid: number): Promise<number> {
  return (await ownCpuSeconds(await processTree(pid))) ?? 0;
}

/** The contract's tables, one user, and `rows` orders of that user. */
async function loadOrders(sql: postgres.Sql, rows: number): Promise<void> {
  await ensureSchema(sql as unknown as Sql);
  await sql`insert into users (id, name, dob) values ('00000000-0000-0000-0000-000000000001', 'u', '2000-01-01')`;
  await sql`
    insert into orders (id, status, user_id, quantity, total_amount, placed_at, modified_at)
    select gen_random_uuid(), 'placed', '00000000-0000-0000-0000-000000000001', i % 100, (i % 10000) / 100.0,
           now(), now()
    from generate_series(1, ${rows}) i`;
  await sql`vacuum analyze orders`;
}

/** Starts the capture task of `options.root` on database `run` alone, with the capture flags. */
function startCapture(options: MeasureOptions, run: string, databaseUrl: string): RunningCapture {
  const task = JSON.parse(Deno.readTextFileSync(`${options.root}/deno.json`)).tasks.capture as string;
  // The task's leading NAME=value words are its environment, then `deno` and its arguments.
  const words = task.split(" ");
  const taskEnv = Object.fromEntries(words.filter((w) => /^[A-Z_]+=/.test(w)).map((w) => w.split("=")));
  const child = new Deno.Command(`${Deno.cwd()}/scripts/deno`, {
    args: [...words.slice(Object.keys(taskEnv).length + 1), ...options.captureFlags],
    cwd: options.root,
    env: {
      DATABASE_URL: databaseUrl,
      CAPTURE_TOPIC_PREFIX: run,
      CAPTURE_SLOT: run,
      CAPTURE_PUBLICATION: run,
      CAPTURE_TABLES: "public.orders",
      LOG_FORMAT: "json",
      ...taskEnv,
    },
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let log = "";
  (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) log += decoder.decode(chunk);
  })();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  return { child, log: () => log, exited: () => exited };
}

/** Records in the capture's topic so far (its partitions' end offsets). */
async function endOffset({ kafkaAdmin, topic }: Bench): Promise<number> {
  try {
    return (await kafkaAdmin.fetchTopicOffsets(topic)).reduce((a, o) => a + Number(o.high), 0);
  } catch {
    return 0;
  }
}

/** Waits until `ok` holds; throws with the capture's log if it exits first or after `timeoutS`. */
async function waitFor({ capture }: Bench, what: string, ok: () => Promise<boolean> | boolean, timeoutS = 900) {
  const deadline = performance.now() + timeoutS * 1000;
  while (!(await ok())) {
    const exited = capture.exited();
    if (exited) {
      throw new Error(`the capture exited (code ${exited.code}) before ${what}\n${capture.log().slice(-3000)}`);
    }
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}\n${capture.log().slice(-3000)}`);
    await sleep(TICK);
  }
}

/** The snapshot, from the capture's start (`started`) to its last record in Kafka. */
async function measureSnapshot(bench: Bench, started: number): Promise<Record<string, unknown>> {
  const { rows } = bench.options;
  const pid = bench.capture.child.pid;
  const cpu0 = await treeCpuSeconds(pid);
  await waitFor(bench, "the snapshot", async () => (await endOffset(bench)) >= rows);
  const s = (performance.now() - started) / 1000;
  const pids = await processTree(pid);
  const cpu = ((await ownCpuSeconds(pids)) ?? 0) - cpu0;
  return {
    mode: bench.options.mode,
    rows,
    seconds: +s.toFixed(2),
    rowsPerS: Math.round(rows / s),
    cpuSPer1000: +(cpu / rows * 1000).toFixed(4),
    peakRssMb: await peakRssMb(pids),
  };
}

/** One UPDATE of every row once the snapshot is out, from its commit to its last record in Kafka. */
async function measureStream(bench: Bench): Promise<Record<string, unknown>> {
  const { rows } = bench.options;
  const pid = bench.capture.child.pid;
  await waitFor(
    bench,
    "the snapshot",
    async () => (await endOffset(bench)) >= rows && bench.capture.log().includes("streaming from slot"),
  );
  const pids = await processTree(pid);
  const cpu0 = (await ownCpuSeconds(pids)) ?? 0;
  const peakBeforeUpdateMb = await peakRssMb(pids);
  await bench.sql`update orders set quantity = quantity + 1`;
  const t0 = performance.now();
  await waitFor(bench, "the update", async () => (await endOffset(bench)) >= 2 * rows);
  const s = (performance.now() - t0) / 1000;
  const cpu = (await treeCpuSeconds(pid)) - cpu0;
  return {
    mode: bench.options.mode,
    rows,
    seconds: +s.toFixed(2),
    recordsPerS: Math.round(rows / s),
    cpuSPer1000: +(cpu / rows * 1000).toFixed(4),
    peakRssMb: await peakRssMb(await processTree(pid)),
    peakBeforeUpdateMb,
  };
}

/** Loads the rows, runs the capture on them, prints the measurement; removes everything it made. */
async function main(args: string[]): Promise<void> {
  const options = parseOptions(args);
  const adminUrl = Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl;
  const brokers = (Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers).split(",");
  const run = `cm_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e4)}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${run}`);
  const databaseUrl = databaseUrlFor(adminUrl, run);
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} });
  const kafkaAdmin = new Kafka({ brokers, clientId: run, logLevel: logLevel.NOTHING }).admin();
  await kafkaAdmin.connect();
  const topic = `${run}.public.orders`;
  let capture: RunningCapture | undefined;
  try {
    await loadOrders(sql, options.rows);
    const started = performance.now();
    capture = startCapture(options, run, databaseUrl);
    const bench = { options, sql, topic, kafkaAdmin, capture };
    const result = options.mode === "snapshot" ? await measureSnapshot(bench, started) : await measureStream(bench);
    console.log(JSON.stringify({ ...result, flags: options.captureFlags.join(" ") }));
  } finally {
    if (capture) {
      try {
        capture.child.kill("SIGTERM");
      } catch { /* ended */ }
      await capture.child.status;
    }
    await sql.end();
    await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${run}`
      .catch(() => {});
    await admin.unsafe(`drop database if exists ${run} with (force)`).catch(() => {});
    await kafkaAdmin.deleteTopics({ topics: [topic] }).catch(() => {});
    await kafkaAdmin.disconnect();
    await admin.end();
  }
}

if (import.meta.main) await main(Deno.args);
