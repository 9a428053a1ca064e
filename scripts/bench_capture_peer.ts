/**
 * The bench's capture-vs-Debezium section (issue 22): the Debezium PostgreSQL connector (Debezium
 * Engine, scripts/debezium/) and `deno task capture`, each running alone on one database, on two
 * workloads: one UPDATE of many `orders` rows (streaming, timed from its commit to the last record
 * out) and a first snapshot. For each: records/s, CPU seconds per 1,000 changes of the process
 * tree, of the walsender and of the other server processes serving it (from /proc, by pid), the
 * broker's CPU meanwhile, and peak RSS. Then the capture's CPU per change split by stage, the
 * in-process stages from scripts/capture_profile.ts.
 *
 * Both connectors see the same rows and the same change: the UPDATE is undone while no slot
 * exists, before the next connector's snapshot.
 * @module
 */
import os from "node:os";
import { type Admin, Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import type { Sql } from "../lib/database.ts";
import { ensureSchema } from "../lib/sink.ts";
import { brokerPids, processTree, procStats } from "./_proc.ts";
import { connectorProperties } from "./debezium/connector.ts";
import { databaseUrlFor, decode, round, sleep } from "./_util.ts";

/** What the section needs from the bench. */
export interface PeerOptions {
  /** The project's root folder, ending in `/`. */
  root: string;
  /** PostgreSQL URL of the server's admin database; the section makes its own database. */
  adminUrl: string;
  brokers: string[];
  /** Prefix of every name the section creates (database, slots, publications, topics). */
  run: string;
  /** Rows the streaming workload's single UPDATE changes. */
  updateRows: number;
  /** Rows (users and orders together) of the snapshot workload; the orders among them number at least `updateRows`. */
  snapshotRows: number;
  /** The `deno task capture` command line. */
  captureCommand: string[];
  /** Environment of the capture besides its database, slot, publication and prefix. */
  captureEnv: Record<string, string>;
  progress: (line: string) => void;
}

/** One connector on one workload. */
export interface PhaseResult {
  /** Records out: rows read, or rows changed. */
  records: number;
  /** Seconds from the first record (snapshot) or the commit (streaming) to the last record out. */
  seconds: number;
  recordsPerS: number;
  /** Seconds from the start of the process to its first record (snapshot) or to streaming (UPDATE). */
  startupS: number;
  /** CPU seconds per 1,000 changes over the timed span, per party. */
  cpuSPer1000: {
    /** The connector's process tree (Debezium: the JVM; the capture: deno). */
    process: number;
    /** The walsender of the connector's slot (decoding, pgoutput). */
    walsender: number;
    /** The connector's other PostgreSQL sessions (the snapshot's reads). */
    backends: number;
    /** The Kafka broker, if it runs on this machine (shared with other users of the broker). */
    broker: number | null;
  };
  /** Peak resident memory of the process tree, in MB (sampled VmRSS or VmHWM, the larger). */
  peakRssMb: number;
}

/** The section's report. */
export interface PeerReport {
  updateRows: number;
  snapshotRows: number;
  settings: { debezium: string; capture: string; timing: string };
  debezium: { streaming: PhaseResult; snapshot: PhaseResult };
  capture: { streaming: PhaseResult; snapshot: PhaseResult };
  /**
   * An incremental snapshot of the snapshot workload's rows (users and orders), asked for by one
   * `execute-snapshot` row of a signal table while each connector streams (issue 27).
   */
  incremental: { debezium: PhaseResult; capture: PhaseResult };
  /** The capture with `--schemas=false`, or null when its command line has no such flag. */
  captureSchemasFalse: { streaming: PhaseResult; snapshot: PhaseResult } | null;
  /** The load average over 1 minute before and after the section. */
  loadAverage1m: { before: number; after: number };
  /** Where the capture's CPU per change goes, in microseconds. */
  profile: CaptureProfile;
}

/** The capture's CPU per streamed change, split by stage, in microseconds. */
export interface CaptureProfile {
  /** Bytes of the record values the microbenchmarks use (an `orders` update with schemas). */
  meanValueBytes: number;
  /** Bytes of the same values without their schema, as JsonConverter writes with `schemas.enable=false`. */
  meanPayloadOnlyValueBytes: number;
  /** The capture's default compression of its batches, which the profile's sends use. */
  compression: string;
  /** Compressed over uncompressed bytes of a batch's records under gzip. */
  gzipRatio: number;
  /** The same for payload-only records. */
  gzipRatioPayloadOnly: number;
  cpuMicrosPerChange: {
    pgoutputDecode: number;
    debeziumEncode: number;
    /** DebeziumEncoder with `schemas: false` (the capture's `--schemas=false`). */
    debeziumEncodePayloadOnly: number;
    /** kafkajs' produce request encoding without compression, with these two parts: */
    kafkajsEncode: number;
    /** UTF-8 encoding of the key and value strings. */
    kafkajsUtf8: number;
    /** The record batches' CRC-32C over uncompressed records (kafkajs computes it in JavaScript). */
    kafkajsCrc32c: number;
    /** kafkajs' uncompressed encoding of payload-only records. */
    kafkajsEncodePayloadOnly: number;
    /** gzip of each batch's records alone (kafkajs' codec, node:zlib), with schemas and payload-only. */
    gzipBatches: number;
    gzipBatchesPayloadOnly: number;
    /** kafkajs sending to the broker (acks=all) as the capture does, gzip included: encoding, gzip, socket, responses. */
    kafkajsSend: number;
    kafkajsSendPayloadOnly: number;
    /** The capture process's CPU in the streaming run less decoding, encoding and kafkajs: stream reads, postgres.js, GC, the loop. */
    captureOther: number;
    /** The whole capture process in the streaming run. */
    captureProcess: number;
    /** The same with `--schemas=false`, or null when not run. */
    captureProcessPayloadOnly: number | null;
    captureOtherPayloadOnly: number | null;
    walsender: number;
    /** The broker during the capture's streaming run (the whole broker, shared). */
    broker: number | null;
    /** The broker during the microbenchmark's sends alone. */
    brokerDuringSendsOnly: number | null;
  };
}

/** The bench's own sessions are left out of the connectors' CPU by this name. */
const BENCH_APP = "cdc-bench";

/** Waits until `condition` holds, checking every `everyMs`; throws naming `what` after `timeoutS`. */
async function waitUntil(what: string, timeoutS: number, condition: () => Promise<boolean>, everyMs = 100) {
  const deadline = Date.now() + timeoutS * 1000;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutS} s`);
    await sleep(everyMs);
  }
}

type Party = "process" | "walsender" | "backends" | "broker";

/**
 * CPU of each party over a span, sampled every 200 ms so that a process ending within the span
 * keeps the CPU it used until its last sample; a process first seen after the start counts from 0.
 */
class CpuSpan {
  #seen = new Map<number, { party: Party; first: number; last: number }>();
  #sampling = true;
  #loop: Promise<void> | undefined;
  #started = false;

  constructor(readonly pids: () => Promise<Map<number, Party>>) {}

  async #sample() {
    const pids = await this.pids();
    await Promise.all([...pids].map(async ([pid, party]) => {
      const stats = await procStats(pid);
      if (!stats) return;
      const known = this.#seen.get(pid);
      if (known) known.last = stats.cpuS;
      else this.#seen.set(pid, { party, first: this.#started ? 0 : stats.cpuS, last: stats.cpuS });
    }));
  }

  /** Takes the starting values and samples until {@linkcode stop}. */
  async start(): Promise<void> {
    await this.#sample();
    this.#started = true;
    this.#loop = (async () => {
      while (this.#sampling) {
        await sleep(200);
        if (this.#sampling) await this.#sample();
      }
    })();
  }

  /** Takes the final values; returns CPU seconds per party. */
  async stop(): Promise<Record<Party, number>> {
    this.#sampling = false;
    await this.#loop;
    await this.#sample();
    const total: Record<Party, number> = { process: 0, walsender: 0, backends: 0, broker: 0 };
    for (const { party, first, last } of this.#seen.values()) total[party] += Math.max(0, last - first);
    return total;
  }
}

/** Samples the resident memory of a process tree until stopped; the peak, in bytes. */
function rssSampler(root: number): { stop: () => Promise<number> } {
  let sampling = true;
  let peak = 0;
  const sample = async () => {
    const stats = await Promise.all((await processTree(root)).map(procStats));
    const live = stats.filter((s) => s !== null);
    peak = Math.max(peak, live.reduce((sum, s) => sum + s.rssBytes, 0), ...live.map((s) => s.hwmBytes));
  };
  const loop = (async () => {
    while (sampling) {
      await sample();
      await sleep(200);
    }
  })();
  return {
    stop: async () => {
      await sample();
      sampling = false;
      await loop;
      return peak;
    },
  };
}

/** A connector under measurement: a process writing records somewhere we can count. */
interface Connector {
  pid: number;
  /** Records out so far. */
  count: () => Promise<number>;
  /** Its log so far, for errors. */
  log: () => string;
  exited: () => boolean;
  /** SIGTERM, then waits for a clean exit; throws when it does not exit 0. */
  stop: () => Promise<void>;
}

/** Starts `cmd` with `env`, stdout and stderr kept as its log. */
function spawnLogged(cmd: string[], env: Record<string, string>, cwd: string) {
  const child = new Deno.Command(cmd[0], { args: cmd.slice(1), env, cwd, stdout: "piped", stderr: "piped" }).spawn();
  let log = "";
  let exitCode: number | undefined;
  const reading = Promise.all([child.stdout, child.stderr].map(async (stream) => {
    for await (const chunk of stream) log = (log + decode(chunk)).slice(-20_000);
  }));
  const status = child.status.then(async (s) => {
    await reading;
    exitCode = s.code;
    return s.code;
  });
  return {
    pid: child.pid,
    log: () => log,
    exited: () => exitCode !== undefined,
    stop: async () => {
      if (exitCode === undefined) {
        try {
          child.kill("SIGTERM");
        } catch {
          // it had exited already
        }
      }
      const kill = setTimeout(() => child.kill("SIGKILL"), 60_000);
      const code = await status;
      clearTimeout(kill);
      if (code !== 0) throw new Error(`${cmd.at(-1)} exited ${code} when stopped: ${log.slice(-2000)}`);
    },
  };
}

/** Counts the lines of a file as it grows, reading only what was appended since the last count. */
function lineCounter(path: string): { count: () => Promise<number>; close: () => void } {
  let file: Deno.FsFile | undefined;
  let lines = 0;
  const buffer = new Uint8Array(1 << 20);
  return {
    count: async () => {
      file ??= await Deno.open(path, { read: true });
      for (;;) {
        const n = await file.read(buffer);
        if (!n) return lines;
        const read = buffer.subarray(0, n);
        for (let at = read.indexOf(10); at >= 0; at = read.indexOf(10, at + 1)) lines++;
      }
    },
    close: () => file?.close(),
  };
}

/** A connector's slot, publication and topic prefix. */
interface Names {
  slot: string;
  publication: string;
  prefix: string;
}

/** The section's database and clients, shared by its phases. */
interface Bed {
  options: PeerOptions;
  database: string;
  databaseUrl: string;
  /** The bench's own session on the section's database (left out of the connectors' CPU). */
  sql: postgres.Sql;
  kafkaAdmin: Admin;
  /** Folder of Debezium's configuration and output files. */
  dir: string;
  /** Seconds a wait may take: generous for a shared 2-core machine, 500 records/s at worst. */
  timeoutS: number;
  brokerIsLocal: boolean;
}

/** The section: data, both connectors on both workloads, the profile. */
export async function captureVsDebezium(options: PeerOptions): Promise<PeerReport> {
  const { run, updateRows, snapshotRows, progress } = options;
  if (snapshotRows - Math.round(snapshotRows * 0.2) < updateRows) {
    throw new RangeError(
      `the snapshot's orders (80% of ${snapshotRows} rows) must number at least the UPDATE's ${updateRows} rows`,
    );
  }
  const loadBefore = os.loadavg()[0];
  const database = `${run}_peer`;
  const admin = postgres(options.adminUrl, { max: 1, onnotice: () => {}, connection: { application_name: BENCH_APP } });
  await admin.unsafe(`create database ${database}`);
  await admin.end();
  const databaseUrl = databaseUrlFor(options.adminUrl, database);
  const kafkaAdmin = new Kafka({ clientId: BENCH_APP, brokers: options.brokers, logLevel: logLevel.NOTHING }).admin();
  const bed: Bed = {
    options,
    database,
    databaseUrl,
    sql: postgres(databaseUrl, { max: 1, onnotice: () => {}, connection: { application_name: BENCH_APP } }),
    kafkaAdmin,
    dir: await Deno.makeTempDir({ prefix: "cdc-bench-debezium-" }),
    timeoutS: Math.max(180, Math.max(snapshotRows, updateRows) / 500),
    brokerIsLocal: (await brokerPids(options.brokers)).length > 0,
  };
  try {
    await kafkaAdmin.connect();
    await loadRows(bed);
    const resolved = await new Deno.Command("bash", {
      args: [`${options.root}scripts/debezium/run.sh`, "resolve"],
      stdout: "null",
      stderr: "inherit",
    }).output();
    if (!resolved.success) throw new Error("scripts/debezium/run.sh resolve failed; see the lines above");
    const debezium = await debeziumRuns(bed);
    const capture = await captureRuns(bed, "", []);
    const incremental = await incrementalRuns(bed);
    const captureSchemasFalse = await hasSchemasFlag(options)
      ? await captureRuns(bed, "_noschema", ["--schemas=false"])
      : null;
    const profiled = Math.min(updateRows, 200_000);
    progress(`profiling the capture's stages on ${profiled} changes`);
    const profile = await profileCapture(options, capture.streaming, captureSchemasFalse?.streaming ?? null, profiled);
    return {
      updateRows,
      snapshotRows,
      settings: SETTINGS,
      debezium,
      capture,
      incremental,
      captureSchemasFalse,
      loadAverage1m: { before: round(loadBefore, 2), after: round(os.loadavg()[0], 2) },
      profile,
    };
  } finally {
    await kafkaAdmin.disconnect().catch(() => {});
    await bed.sql.end();
    await Deno.remove(bed.dir, { recursive: true }).catch(() => {});
  }
}

const SETTINGS = {
  debezium: "Debezium Engine with the PostgreSQL connector 3.6.1.Final (scripts/debezium/run.sh): pgoutput, " +
    "its own slot and filtered publication, JsonConverter with schemas, records written to a local file " +
    "(one JSON line each, flushed per engine batch), not to Kafka; JVM defaults (no heap or compiler flags)",
  capture: "deno task capture into Kafka, acks from all in-sync replicas, its own slot and publication",
  timing: "each connector runs alone on one database; streaming: one UPDATE of the orders (REPLICA IDENTITY " +
    "FULL), timed from its commit to the last record out, CPU from just before it; snapshot: a new slot's " +
    "first snapshot, timed and CPU from the first record to the last; incremental: an execute-snapshot signal " +
    "of users and orders while streaming (chunks of 1024, Debezium's default), timed and CPU from the signal's " +
    "commit to the last record (Debezium's count also holds its signal table's rows, about 2 a chunk); CPU from " +
    "/proc by pid",
};

/** Users (a fifth of the snapshot's rows) and orders, set-based; the tables as the consumer creates them. */
async function loadRows({ sql, options }: Bed): Promise<void> {
  const users = Math.round(options.snapshotRows * 0.2);
  const orders = options.snapshotRows - users;
  options.progress(`loading ${users} users and ${orders} orders`);
  await ensureSchema(sql as unknown as Sql);
  await sql`
    insert into users (id, name, dob, created_at)
    select md5('u' || i)::uuid, 'User number ' || i, date '1960-01-01' + i % 15000,
           timestamptz '2025-01-01' + i * interval '1 second'
    from generate_series(1, ${users}::int) i`;
  await sql`
    insert into orders (id, status, user_id, quantity, total_amount, placed_at)
    select md5('o' || i)::uuid, 'PLACED', md5('u' || (1 + i % ${users}::int))::uuid, 1 + i % 100,
           (i % 100000) / 100.0, timestamptz '2025-01-01' + i * interval '1 second'
    from generate_series(1, ${orders}::int) i`;
  // The capture sets it itself; set here, both connectors read the same WAL (the whole old row).
  await sql`alter table users replica identity full`;
  await sql`alter table orders replica identity full`;
  await sql`vacuum (analyze) users, orders`;
}

/** The orders the UPDATE changes: those placed in the first `updateRows` seconds of 2025. */
function changedOrders({ sql, options }: Bed) {
  return sql`placed_at <= timestamptz '2025-01-01' + ${options.updateRows}::int * interval '1 second'`;
}

/** Undoes the UPDATE while no slot exists, so the next connector starts from the same rows. */
async function undoUpdate(bed: Bed): Promise<void> {
  await bed.sql`update orders set status = 'PLACED', modified_at = null where ${changedOrders(bed)}`;
  await bed.sql`vacuum (analyze) orders`;
}

/** Drops a slot once its connector has let go of it (Debezium drops its own when it stops). */
async function dropSlot({ sql }: Bed, slot: string): Promise<void> {
  await waitUntil(`slot ${slot} released`, 60, async () => {
    const [row] = await sql`select active_pid from pg_replication_slots where slot_name = ${slot}`;
    return !row?.active_pid;
  });
  await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = ${slot}`;
}

/** The pids of a connector's process tree, its walsender, its other sessions, and the broker. */
function partiesOf({ sql, database, options }: Bed, root: number) {
  return async () => {
    const parties = new Map<number, Party>();
    for (const pid of await processTree(root)) parties.set(pid, "process");
    const sessions = await sql<{ pid: number; walsender: boolean }[]>`
      select pid, backend_type = 'walsender' as walsender from pg_stat_activity
      where datname = ${database} and application_name <> ${BENCH_APP} and pid <> pg_backend_pid()`;
    for (const { pid, walsender } of sessions) parties.set(pid, walsender ? "walsender" : "backends");
    for (const pid of await brokerPids(options.brokers)) parties.set(pid, "broker");
    return parties;
  };
}

function perThousand({ brokerIsLocal }: Bed, cpu: Record<Party, number>, records: number) {
  return {
    process: round((cpu.process * 1000) / records, 4),
    walsender: round((cpu.walsender * 1000) / records, 4),
    backends: round((cpu.backends * 1000) / records, 4),
    broker: brokerIsLocal ? round((cpu.broker * 1000) / records, 4) : null,
  };
}

/** Throws with the connector's log when it has exited before its phase ended. */
function checkAlive(connector: Connector): void {
  if (connector.exited()) throw new Error(`the connector exited: ${connector.log().slice(-2000)}`);
}

/** Waits until the connector's slot streams: a commit after its consistent point reaches it, whenever it gets to it. */
async function waitStreaming(bed: Bed, connector: Connector, slot: string): Promise<void> {
  await waitUntil(`slot ${slot} streaming`, bed.timeoutS, async () => {
    checkAlive(connector);
    const [row] = await bed.sql`select 1 from pg_replication_slots
      where slot_name = ${slot} and active_pid is not null and confirmed_flush_lsn is not null`;
    return row !== undefined;
  });
}

/**
 * Runs `act` (the workload's statement) and times the span from its end, with the connector's CPU
 * from just before it, until `records` more records are out: the phase's figures.
 */
async function timeRecords(
  bed: Bed,
  connector: Connector,
  records: number,
  what: string,
  act: () => Promise<void>,
): Promise<Omit<PhaseResult, "startupS" | "peakRssMb">> {
  const before = await connector.count();
  const cpu = new CpuSpan(partiesOf(bed, connector.pid));
  await cpu.start();
  await act();
  const actedAt = performance.now();
  await waitUntil(what, bed.timeoutS, async () => {
    checkAlive(connector);
    return (await connector.count()) >= before + records;
  });
  const seconds = (performance.now() - actedAt) / 1000;
  const used = await cpu.stop();
  return {
    records,
    seconds: round(seconds, 3),
    recordsPerS: Math.round(records / seconds),
    cpuSPer1000: perThousand(bed, used, records),
  };
}

/** The snapshot workload: a new slot's first snapshot, timed and CPU from the first record to the last. */
async function measureSnapshot(bed: Bed, start: () => Promise<Connector>): Promise<PhaseResult> {
  const { sql, timeoutS, options: { snapshotRows } } = bed;
  await sql`checkpoint`;
  const spawned = performance.now();
  const connector = await start();
  const memory = rssSampler(connector.pid);
  try {
    await waitUntil("the snapshot's first record", timeoutS, async () => {
      checkAlive(connector);
      return (await connector.count()) > 0;
    });
    const firstAt = performance.now();
    const cpu = new CpuSpan(partiesOf(bed, connector.pid));
    await cpu.start();
    await waitUntil(`all ${snapshotRows} snapshot records`, timeoutS, async () => {
      checkAlive(connector);
      return (await connector.count()) >= snapshotRows;
    });
    const lastAt = performance.now();
    const used = await cpu.stop();
    const seconds = (lastAt - firstAt) / 1000;
    return {
      records: snapshotRows,
      seconds: round(seconds, 3),
      recordsPerS: Math.round(snapshotRows / seconds),
      startupS: round((firstAt - spawned) / 1000, 2),
      cpuSPer1000: perThousand(bed, used, snapshotRows),
      peakRssMb: Math.round((await memory.stop()) / 2 ** 20),
    };
  } finally {
    await connector.stop();
    await memory.stop();
  }
}

/**
 * The streaming workload: once a one-row marker change came out (the connector streams), one
 * UPDATE of `updateRows` orders, timed from its commit to the last record; CPU from just before it.
 */
async function measureStreaming(bed: Bed, start: () => Promise<Connector>, slot: string): Promise<PhaseResult> {
  const { sql, timeoutS, options: { updateRows } } = bed;
  await sql`checkpoint`;
  const spawned = performance.now();
  const connector = await start();
  const memory = rssSampler(connector.pid);
  try {
    await waitStreaming(bed, connector, slot);
    await sql`update users set name = name where id = md5('u1')::uuid`;
    await waitUntil("the marker change's record", timeoutS, async () => {
      checkAlive(connector);
      return (await connector.count()) >= 1;
    });
    const streamingAt = performance.now();
    const timed = await timeRecords(bed, connector, updateRows, `the UPDATE's ${updateRows} records`, async () => {
      const result = await sql`update orders set status = 'SHIPPED', modified_at = now() where ${changedOrders(bed)}`;
      if (result.count !== updateRows) throw new Error(`the UPDATE changed ${result.count} rows, not ${updateRows}`);
    });
    const peakRssMb = Math.round((await memory.stop()) / 2 ** 20);
    return { ...timed, startupS: round((streamingAt - spawned) / 1000, 2), peakRssMb };
  } finally {
    await connector.stop();
    await memory.stop();
  }
}

/** Debezium on both workloads, a new slot each (dropped when it stops), the JVM as users run it. */
async function debeziumRuns(bed: Bed): Promise<{ streaming: PhaseResult; snapshot: PhaseResult }> {
  const { options: { run, snapshotRows, updateRows, progress } } = bed;
  const names = (phase: string) => ({
    slot: `${run}_dbz_${phase}`,
    publication: `${run}_dbz_pub`,
    prefix: `${run}_dbz`,
  });
  progress(`Debezium: first snapshot of ${snapshotRows} rows`);
  const snapshot = await measureSnapshot(bed, () => startDebezium(bed, names("snap"), "initial"));
  await dropSlot(bed, names("snap").slot);
  progress(`Debezium: ${snapshot.recordsPerS} rows/s; now one UPDATE of ${updateRows} rows`);
  const streaming = await measureStreaming(
    bed,
    () => startDebezium(bed, names("stream"), "no_data"),
    names("stream").slot,
  );
  await dropSlot(bed, names("stream").slot);
  progress(`Debezium: ${streaming.recordsPerS} changes/s`);
  return { streaming, snapshot };
}

/** Starts the Debezium Engine writing to a file of the bed's folder; counts that file's lines. */
async function startDebezium(
  bed: Bed,
  names: Names,
  mode: "initial" | "no_data",
  extra?: { tables: string[]; properties: Record<string, string> },
): Promise<Connector> {
  const properties = `${bed.dir}/${names.slot}.properties`;
  const output = `${bed.dir}/${names.slot}.jsonl`;
  await Deno.writeTextFile(
    properties,
    connectorProperties({
      ...names,
      name: `bench-${names.slot}`,
      databaseUrl: bed.databaseUrl,
      tables: ["public.users", "public.orders", ...extra?.tables ?? []],
      snapshotMode: mode,
      extra: extra?.properties,
    }),
  );
  await Deno.writeTextFile(output, "");
  const env = { ...Deno.env.toObject(), DEBEZIUM_JVM_OPTS: "", DEBEZIUM_FLUSH: "batch" };
  const process = spawnLogged(["bash", `${bed.options.root}scripts/debezium/run.sh`, properties, output], env, bed.dir);
  const lines = lineCounter(output);
  return {
    ...process,
    count: lines.count,
    stop: async () => {
      try {
        await process.stop();
      } finally {
        lines.close();
        await Deno.remove(output);
      }
    },
  };
}

/** The signal table both connectors read in the incremental phase, in Debezium's format. */
const SIGNAL_TABLE = "public.bench_signal";

/**
 * The incremental workload: once the connector streams and wrote `firstRecords` (the capture's
 * first snapshot of a new slot), one `execute-snapshot` of users and orders, timed and CPU from
 * the signal's commit to the last of their rows out.
 */
async function measureIncremental(
  bed: Bed,
  start: () => Promise<Connector>,
  slot: string,
  firstRecords: number,
): Promise<PhaseResult> {
  const { sql, timeoutS, options: { snapshotRows } } = bed;
  await sql`checkpoint`;
  const spawned = performance.now();
  const connector = await start();
  const memory = rssSampler(connector.pid);
  try {
    await waitStreaming(bed, connector, slot);
    const streamingAt = performance.now();
    await waitUntil(`the ${firstRecords} records before the signal`, timeoutS, async () => {
      checkAlive(connector);
      return (await connector.count()) >= firstRecords;
    });
    const what = `the incremental snapshot's ${snapshotRows} records`;
    const timed = await timeRecords(bed, connector, snapshotRows, what, async () => {
      await sql`insert into bench_signal values (${slot}, 'execute-snapshot',
        '{"data-collections": ["public.users", "public.orders"], "type": "incremental"}')`;
    });
    const peakRssMb = Math.round((await memory.stop()) / 2 ** 20);
    return { ...timed, startupS: round((streamingAt - spawned) / 1000, 2), peakRssMb };
  } finally {
    await connector.stop();
    await memory.stop();
  }
}

/** Both connectors' incremental snapshot of the snapshot workload, each on a new slot, through the same signal table. */
async function incrementalRuns(bed: Bed): Promise<PeerReport["incremental"]> {
  const { sql, options: { run, snapshotRows, progress } } = bed;
  await undoUpdate(bed);
  await sql`create table if not exists bench_signal (
    id varchar(42) primary key, type varchar(32) not null, data varchar(2048))`;
  const dbz = { slot: `${run}_dbz_incr`, publication: `${run}_dbz_incr_pub`, prefix: `${run}_dbz_incr` };
  progress(`Debezium: incremental snapshot of ${snapshotRows} rows`);
  const debezium = await measureIncremental(
    bed,
    () =>
      startDebezium(bed, dbz, "no_data", {
        tables: [SIGNAL_TABLE],
        properties: { "signal.data.collection": SIGNAL_TABLE },
      }),
    dbz.slot,
    0,
  );
  await dropSlot(bed, dbz.slot);
  progress(`Debezium: ${debezium.recordsPerS} rows/s`);
  const cap = { slot: `${run}_cap_incr`, publication: `${run}_cap_incr_pub`, prefix: `${run}_cap_incr` };
  progress(`capture: incremental snapshot of ${snapshotRows} rows (after its first snapshot)`);
  const capture = await measureIncremental(
    bed,
    () => startCapture(bed, cap, ["--signal-table", SIGNAL_TABLE]),
    cap.slot,
    snapshotRows,
  );
  await dropSlot(bed, cap.slot);
  progress(`capture: ${capture.recordsPerS} rows/s`);
  return { debezium, capture };
}

/**
 * The capture on both workloads, after undoing Debezium's UPDATE: the snapshot run creates its
 * slot, the streaming run resumes from it; the slot is dropped at the end.
 */
async function captureRuns(bed: Bed, variant: string, args: string[]) {
  const { options: { run, snapshotRows, updateRows, progress } } = bed;
  await undoUpdate(bed);
  const names = {
    slot: `${run}_cap${variant}`,
    publication: `${run}_cap${variant}_pub`,
    prefix: `${run}_cap${variant}`,
  };
  progress(`capture${args.length ? ` ${args.join(" ")}` : ""}: first snapshot of ${snapshotRows} rows`);
  const snapshot = await measureSnapshot(bed, () => startCapture(bed, names, args));
  progress(`capture: ${snapshot.recordsPerS} rows/s; now one UPDATE of ${updateRows} rows`);
  const streaming = await measureStreaming(bed, () => startCapture(bed, names, args), names.slot);
  progress(`capture: ${streaming.recordsPerS} changes/s`);
  await dropSlot(bed, names.slot);
  return { streaming, snapshot };
}

/** Starts `deno task capture`; counts the records its topics gained since (their end offsets). */
async function startCapture({ options, databaseUrl, kafkaAdmin }: Bed, names: Names, args: string[]) {
  const topics = [`${names.prefix}.public.users`, `${names.prefix}.public.orders`];
  // kafkajs retries a topic it does not know for seconds: offsets are asked only once both exist.
  let created = false;
  let last = 0;
  const total = async () => {
    created ||= topics.every(Set.prototype.has, new Set(await kafkaAdmin.listTopics()));
    if (!created) return 0;
    try {
      const offsets = await Promise.all(topics.map((topic) => kafkaAdmin.fetchTopicOffsets(topic)));
      last = offsets.flat().reduce((sum, { high }) => sum + Number(high), 0);
    } catch {
      // A partition without a leader yet: the last count stands.
    }
    return last;
  };
  const already = await total();
  const env = {
    ...options.captureEnv,
    DATABASE_URL: databaseUrl,
    CAPTURE_SLOT: names.slot,
    CAPTURE_PUBLICATION: names.publication,
    CAPTURE_TOPIC_PREFIX: names.prefix,
  };
  const process = spawnLogged([...options.captureCommand, ...args], env, options.root);
  return { ...process, count: async () => (await total()) - already };
}

/** Whether the capture's command line has `--schemas` (payload-only records), from its `--help`. */
async function hasSchemasFlag(options: PeerOptions): Promise<boolean> {
  const help = await new Deno.Command(options.captureCommand[0], {
    args: [...options.captureCommand.slice(1), "--help"],
    cwd: options.root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  return /--schemas\b/.test(decode(help.stdout) + decode(help.stderr));
}

/** Runs scripts/capture_profile.ts and sets its in-process stages beside the streaming run's out-of-process CPU. */
async function profileCapture(
  options: PeerOptions,
  streamed: PhaseResult,
  streamedPayloadOnly: PhaseResult | null,
  changes: number,
): Promise<CaptureProfile> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-run",
      "--allow-sys",
      `${options.root}scripts/capture_profile.ts`,
      "--changes",
      String(changes),
      "--topic",
      `${options.run}_profile`,
    ],
    cwd: options.root,
    env: { KAFKA_BROKERS: options.brokers.join(",") },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) throw new Error(`scripts/capture_profile.ts failed: ${decode(out.stderr).slice(-2000)}`);
  const measured = JSON.parse(decode(out.stdout));
  const stage = measured.cpuMicrosPerChange as Record<string, number>;
  const micros = (sPer1000: number | null) => (sPer1000 === null ? null : round(sPer1000 * 1000, 1));
  const captureProcess = micros(streamed.cpuSPer1000.process)!;
  const captureProcessPayloadOnly = streamedPayloadOnly && micros(streamedPayloadOnly.cpuSPer1000.process);
  return {
    meanValueBytes: measured.meanValueBytes,
    meanPayloadOnlyValueBytes: measured.meanPayloadOnlyValueBytes,
    compression: measured.compression,
    gzipRatio: measured.gzipRatio,
    gzipRatioPayloadOnly: measured.gzipRatioPayloadOnly,
    cpuMicrosPerChange: {
      pgoutputDecode: stage.pgoutputDecode,
      debeziumEncode: stage.debeziumEncode,
      debeziumEncodePayloadOnly: stage.debeziumEncodePayloadOnly,
      kafkajsEncode: stage.kafkajsEncode,
      kafkajsUtf8: stage.kafkajsUtf8,
      kafkajsCrc32c: stage.kafkajsCrc32c,
      kafkajsEncodePayloadOnly: stage.kafkajsEncodePayloadOnly,
      gzipBatches: stage.gzipBatches,
      gzipBatchesPayloadOnly: stage.gzipBatchesPayloadOnly,
      kafkajsSend: stage.kafkajsSend,
      kafkajsSendPayloadOnly: stage.kafkajsSendPayloadOnly,
      captureOther: round(
        Math.max(0, captureProcess - stage.pgoutputDecode - stage.debeziumEncode - stage.kafkajsSend),
        1,
      ),
      captureProcess,
      captureProcessPayloadOnly,
      captureOtherPayloadOnly: captureProcessPayloadOnly === null ? null : round(
        Math.max(
          0,
          captureProcessPayloadOnly - stage.pgoutputDecode - stage.debeziumEncodePayloadOnly -
            stage.kafkajsSendPayloadOnly,
        ),
        1,
      ),
      walsender: micros(streamed.cpuSPer1000.walsender)!,
      broker: micros(streamed.cpuSPer1000.broker),
      brokerDuringSendsOnly: measured.brokerCpuMicrosPerChangeDuringSend,
    },
  };
}

/** The capture's figures over Debezium's, from the same run (a CPU or memory ratio under 1 favours the capture). */
export function peerRatios(peer: PeerReport): Record<string, number | null> {
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
    ...incrementalRatios(peer.incremental),
    ...payloadOnlyRatios(peer),
  };
}

/** The incremental snapshot's ratios, capture over Debezium. */
function incrementalRatios({ capture, debezium }: PeerReport["incremental"]) {
  return {
    captureVsDebeziumIncrementalRecordsPerS: round(capture.recordsPerS / debezium.recordsPerS, 2),
    captureVsDebeziumIncrementalCpuPerChange: round(capture.cpuSPer1000.process / debezium.cpuSPer1000.process, 2),
    captureVsDebeziumIncrementalPeakRss: round(capture.peakRssMb / debezium.peakRssMb, 2),
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

/** Removes what the section may have left: slots first (a database holding one cannot be dropped), then the database and topics. */
export async function cleanUpPeer(adminUrl: string, brokers: string[], run: string): Promise<void> {
  const sql = postgres(adminUrl, { max: 1, onnotice: () => {}, connection: { application_name: BENCH_APP } });
  try {
    await sql`select pg_terminate_backend(active_pid) from pg_replication_slots
      where slot_name like ${`${run}\\_%`} and active_pid is not null`;
    await waitUntil("the section's slots released", 30, async () => {
      const rows = await sql`select 1 from pg_replication_slots where slot_name like ${`${run}\\_%`} and active`;
      return rows.length === 0;
    });
    await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name like ${`${run}\\_%`}`;
    await sql.unsafe(`drop database if exists ${run}_peer with (force)`);
  } finally {
    await sql.end();
  }
  const admin = new Kafka({ clientId: BENCH_APP, brokers, logLevel: logLevel.NOTHING }).admin();
  try {
    await admin.connect();
    const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${run}_cap`) || t === `${run}_profile`);
    if (topics.length) await admin.deleteTopics({ topics });
  } finally {
    await admin.disconnect().catch(() => {});
  }
}
