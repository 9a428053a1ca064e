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
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { DEFAULTS } from "../lib/config.ts";
import { ensureSchema } from "../lib/sink.ts";

const dash = Deno.args.indexOf("--");
const own = dash < 0 ? Deno.args : Deno.args.slice(0, dash);
const captureFlags = dash < 0 ? [] : Deno.args.slice(dash + 1);
const { values } = parseArgs({
  args: own,
  options: { mode: { type: "string", default: "stream" }, rows: { type: "string" }, root: { type: "string" } },
});
const mode = values.mode as "stream" | "snapshot";
const ROWS = Number(values.rows ?? (mode === "stream" ? 200_000 : 1_000_000));
const ADMIN_URL = Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl;
const BROKERS = (Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers).split(",");
const TICK = 50;
const CLK_TCK = 100;

const run = `cm_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e4)}`;
const dbUrl = (() => {
  const u = new URL(ADMIN_URL);
  u.pathname = `/${run}`;
  return u.toString();
})();
const topic = `${run}.public.orders`;

function tree(root: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parents.set(ppid, [...(parents.get(ppid) ?? []), Number(entry.name)]);
    } catch { /* gone */ }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) out.push(...(parents.get(out[i]) ?? []));
  return out;
}

function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14, 15)
    } catch { /* gone */ }
  }
  return ticks / CLK_TCK;
}

function peakRssMb(pids: number[]): number {
  let kb = 0;
  for (const pid of pids) {
    try {
      const m = Deno.readTextFileSync(`/proc/${pid}/status`).match(/VmHWM:\s+(\d+)/);
      if (m) kb = Math.max(kb, Number(m[1]));
    } catch { /* gone */ }
  }
  return Math.round(kb / 1024);
}

const admin = postgres(ADMIN_URL, { max: 1, onnotice: () => {} });
await admin.unsafe(`create database ${run}`);
const sql = postgres(dbUrl, { max: 2, onnotice: () => {} });
const kafka = new Kafka({ brokers: BROKERS, clientId: run, logLevel: logLevel.NOTHING });
const kadmin = kafka.admin();
await kadmin.connect();
let child: Deno.ChildProcess | undefined;
try {
  await ensureSchema(sql as never);
  await sql`insert into users (id, name, dob) values ('00000000-0000-0000-0000-000000000001', 'u', '2000-01-01')`;
  await sql`
    insert into orders (id, status, user_id, quantity, total_amount, placed_at, modified_at)
    select gen_random_uuid(), 'placed', '00000000-0000-0000-0000-000000000001', i % 100, (i % 10000) / 100.0,
           now(), now()
    from generate_series(1, ${ROWS}) i`;
  await sql`vacuum analyze orders`;

  const root = values.root ?? ".";
  const task = JSON.parse(Deno.readTextFileSync(`${root}/deno.json`)).tasks.capture as string;
  // The task's leading NAME=value words are its environment, then `deno` and its arguments.
  const words = task.split(" ");
  const taskEnv = Object.fromEntries(words.filter((w) => /^[A-Z_]+=/.test(w)).map((w) => w.split("=")));
  const args = [...words.slice(Object.keys(taskEnv).length + 1), ...captureFlags];
  const started = performance.now();
  child = new Deno.Command(`${Deno.cwd()}/scripts/deno`, {
    args,
    cwd: root,
    env: {
      DATABASE_URL: dbUrl,
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
    const dec = new TextDecoder();
    for await (const chunk of child!.stderr) log += dec.decode(chunk);
  })();
  const pid = child.pid;
  const endOffset = async () => {
    try {
      const offsets = await kadmin.fetchTopicOffsets(topic);
      return offsets.reduce((a, o) => a + Number(o.high), 0);
    } catch {
      return 0;
    }
  };
  let exited: Deno.CommandStatus | undefined;
  child.status.then((status) => exited = status);
  const waitFor = async (what: string, ok: () => Promise<boolean> | boolean, timeoutS = 900) => {
    const deadline = performance.now() + timeoutS * 1000;
    while (!(await ok())) {
      if (exited) throw new Error(`the capture exited (code ${exited.code}) before ${what}\n${log.slice(-3000)}`);
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}\n${log.slice(-3000)}`);
      await new Promise((r) => setTimeout(r, TICK));
    }
  };
  let result: Record<string, unknown>;
  if (mode === "snapshot") {
    const cpu0 = cpuSeconds(tree(pid));
    await waitFor("the snapshot", async () => (await endOffset()) >= ROWS);
    const s = (performance.now() - started) / 1000;
    const pids = tree(pid);
    const cpu = cpuSeconds(pids) - cpu0;
    result = { mode, rows: ROWS, seconds: +s.toFixed(2), rowsPerS: Math.round(ROWS / s) };
    result.cpuSPer1000 = +(cpu / ROWS * 1000).toFixed(4);
    result.peakRssMb = peakRssMb(pids);
  } else {
    await waitFor("the snapshot", async () => (await endOffset()) >= ROWS && log.includes("streaming from slot"));
    const pids = tree(pid);
    const cpu0 = cpuSeconds(pids);
    const peakBeforeUpdateMb = peakRssMb(pids);
    await sql`update orders set quantity = quantity + 1`;
    const t0 = performance.now();
    await waitFor("the update", async () => (await endOffset()) >= 2 * ROWS);
    const s = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(tree(pid)) - cpu0;
    result = { mode, rows: ROWS, seconds: +s.toFixed(2), recordsPerS: Math.round(ROWS / s) };
    result.cpuSPer1000 = +(cpu / ROWS * 1000).toFixed(4);
    result.peakRssMb = peakRssMb(tree(pid));
    result.peakBeforeUpdateMb = peakBeforeUpdateMb;
  }
  result.flags = captureFlags.join(" ");
  console.log(JSON.stringify(result));
} finally {
  if (child) {
    try {
      child.kill("SIGTERM");
    } catch { /* ended */ }
    await child.status;
  }
  await sql.end();
  await admin`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${run}`
    .catch(() => {});
  await admin.unsafe(`drop database if exists ${run} with (force)`).catch(() => {});
  await kadmin.deleteTopics({ topics: [topic] }).catch(() => {});
  await kadmin.disconnect();
  await admin.end();
}
