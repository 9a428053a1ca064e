/**
 * The consumer's peer in the bench: Kafka Connect standalone with Debezium's JDBC sink
 * (scripts/connect/) applying the capture phase's topics (the same rows the consumer applied, as
 * change records) into a fresh database: upsert, deletes enabled, the primary key from the record
 * key, tables created by the sink. Its rate once warm, CPU per record of its process and of its
 * PostgreSQL backends, and peak RSS, next to the consumer's.
 * @module
 */
import postgres from "postgres";
import { ownCpuSeconds, postgresPids, procStats } from "./_proc.ts";
import { spawnCommand } from "./bench_measure.ts";
import type { BenchRun } from "./bench_run.ts";
import { databaseUrlFor, decode, round, sleep } from "./_util.ts";
import os from "node:os";

/** The sink's figures on the capture's topics. */
export interface JdbcSinkReport {
  /** Change records in the capture's topics, all applied. */
  records: number;
  /** Seconds from the JVM's start to the first row in the sink's database: start-up, excluded from the rates. */
  startupS: number;
  /** Records/s from the first row written to the last record applied. */
  recordsPerS: number;
  /** Records/s over the second half of the records: the warm rate the targets compare. */
  warmRecordsPerS: number;
  /**
   * CPU µs per record over the second half: of the JVM; of every PostgreSQL process on this
   * machine, as the bench counts the consumer's; of the sink's own backends alone.
   */
  cpuMicrosPerRecord: { process: number; postgres: number; postgresBackends: number };
  peakRssMb: number;
  /** Rows of the capture's tables and of the sink's copy of them, which must be equal. */
  rows: { source: RowCounts; sink: RowCounts };
  loadAverage1m: { before: number; after: number };
  settings: string;
}

type RowCounts = { users: number; orders: number };

/** One sample of the sink's progress: records applied (offsets committed), JVM and backend CPU seconds. */
interface Sample {
  at: number;
  applied: number;
  processCpuS: number;
  postgresCpuS: number;
  backendsCpuS: number;
}

/** The sink database's name, and its connector's name (its consumer group is `connect-<name>`). */
export function jdbcSinkNames(run: { name: string }): { db: string; connector: string; group: string } {
  return { db: `${run.name}_sink`, connector: `${run.name}_sink`, group: `connect-${run.name}_sink` };
}

/** The worker's and the connector's properties files, written into `dir`. */
async function writeProperties(run: BenchRun, dir: string, pluginPath: string): Promise<[string, string]> {
  const names = jdbcSinkNames(run);
  const url = new URL(databaseUrlFor(run.adminUrl, names.db));
  const worker = {
    "bootstrap.servers": run.brokers.join(","),
    "key.converter": "org.apache.kafka.connect.json.JsonConverter",
    "value.converter": "org.apache.kafka.connect.json.JsonConverter",
    "key.converter.schemas.enable": "true",
    "value.converter.schemas.enable": "true",
    "offset.storage.file.filename": `${dir}/connect.offsets`,
    // The bench reads the sink's progress from its committed offsets: committed often, they lag little.
    "offset.flush.interval.ms": "500",
    "plugin.path": pluginPath,
    "listeners": "http://127.0.0.1:0",
  };
  const connector = {
    "name": names.connector,
    "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
    "tasks.max": "1",
    "topics": run.capture.topics.join(","),
    "connection.url": `jdbc:postgresql://${url.hostname}:${url.port || 5432}${url.pathname}`,
    "connection.username": decodeURIComponent(url.username),
    "connection.password": decodeURIComponent(url.password),
    "insert.mode": "upsert",
    "delete.enabled": "true",
    "primary.key.mode": "record_key",
    "schema.evolution": "basic",
    "collection.name.format": "${source.table}",
  };
  const text = (props: Record<string, string>) => Object.entries(props).map(([k, v]) => `${k}=${v}\n`).join("");
  await Deno.writeTextFile(`${dir}/worker.properties`, text(worker));
  await Deno.writeTextFile(`${dir}/connector.properties`, text(connector));
  return [`${dir}/worker.properties`, `${dir}/connector.properties`];
}

/** Users and orders rows of the database at `databaseUrl`; zeros while the sink has not created its tables. */
async function rowCounts(sql: postgres.Sql): Promise<RowCounts> {
  const [row] = await sql`
    select (select count(*) from users)::int as users, (select count(*) from orders)::int as orders`
    .catch(() => [{ users: 0, orders: 0 }]);
  return { users: row.users, orders: row.orders };
}

/** Reads how many records of the capture's topics the sink's consumer group has committed, of how many. */
function committedReader(run: BenchRun, group: string) {
  const admin = run.kafka.admin();
  const connected = admin.connect();
  return {
    read: async (): Promise<{ applied: number; total: number }> => {
      await connected;
      let applied = 0;
      let total = 0;
      for (const topic of run.capture.topics) {
        const ends = new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p]));
        const [{ partitions }] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
        for (const { partition, offset } of partitions) {
          const { low, high } = ends.get(partition)!;
          total += Number(high) - Number(low);
          applied += Math.max(0, Math.min(Number(offset), Number(high)) - Number(low));
        }
      }
      return { applied, total };
    },
    close: () => admin.disconnect(),
  };
}

/** CPU seconds so far of every PostgreSQL process here, and of the sink's backends (the sessions on its database). */
async function postgresCpuS(admin: postgres.Sql, db: string): Promise<{ postgresCpuS: number; backendsCpuS: number }> {
  const backends = (await admin`select pid from pg_stat_activity where datname = ${db}`).map((r) => Number(r.pid));
  return {
    postgresCpuS: (await ownCpuSeconds(await postgresPids())) ?? 0,
    backendsCpuS: (await ownCpuSeconds(backends)) ?? 0,
  };
}

/**
 * Samples the sink every 250 ms from its first row in `sink` until every record of the capture's
 * topics is committed; the JVM's peak RSS along the way. A deadline of the run's phase timeout
 * stops the wait with one line.
 */
async function follow(run: BenchRun, pid: number, sink: postgres.Sql, admin: postgres.Sql, log: () => string) {
  const names = jdbcSinkNames(run);
  const progress = committedReader(run, names.group);
  const started = performance.now();
  const deadline = started + run.phaseTimeoutS * 1000;
  const samples: Sample[] = [];
  let peakBytes = 0;
  let firstRowAt = 0;
  try {
    for (;;) {
      if (performance.now() > deadline) {
        throw new Error(
          `the JDBC sink did not apply the capture's topics in ${run.phaseTimeoutS} s: ${log().slice(-2000)}`,
        );
      }
      // The worker outlives a failed task: its log says so, with the exception on the next line.
      const failed = /Task threw an uncaught and unrecoverable exception.*\n(.*)/.exec(log());
      if (failed) throw new Error(`the JDBC sink's task failed (see scripts/connect/run.sh): ${failed[1]}`);
      const stats = await procStats(pid);
      if (!stats) throw new Error(`the JDBC sink's JVM exited: ${log().slice(-2000)}`);
      peakBytes = Math.max(peakBytes, stats.rssBytes);
      if (!firstRowAt) {
        const rows = await rowCounts(sink);
        if (rows.users + rows.orders > 0) firstRowAt = performance.now();
      }
      if (firstRowAt) {
        const { applied, total } = await progress.read();
        samples.push({
          at: performance.now(),
          applied,
          processCpuS: stats.ownCpuS,
          ...await postgresCpuS(admin, names.db),
        });
        if (total > 0 && applied >= total) {
          return { samples, startupS: (firstRowAt - started) / 1000, firstRowAt, total, peakBytes };
        }
      }
      await sleep(250);
    }
  } finally {
    await progress.close();
  }
}

/** Rate and CPU per record from the samples: from the first row to the end, and over the second half. */
function rates(samples: Sample[], firstRowAt: number, total: number) {
  const last = samples.at(-1)!;
  // A sample before the last one, so that the second half spans at least one interval.
  const half = samples.find((s) => s.applied >= total / 2 && s !== last) ?? samples[0];
  const records = last.applied - half.applied;
  const perRecord = (seconds: number) => round((seconds * 1e6) / Math.max(records, 1), 1);
  return {
    recordsPerS: Math.round(total / Math.max((last.at - firstRowAt) / 1000, 1e-3)),
    warmRecordsPerS: Math.round(records / Math.max((last.at - half.at) / 1000, 1e-3)),
    cpuMicrosPerRecord: {
      process: perRecord(last.processCpuS - half.processCpuS),
      postgres: perRecord(last.postgresCpuS - half.postgresCpuS),
      postgresBackends: perRecord(last.backendsCpuS - half.backendsCpuS),
    },
  };
}

/**
 * Kafka Connect with Debezium's JDBC sink applying the capture phase's topics into a fresh
 * database; run after the capture phase, whose topics hold the changes of the rows the consumer
 * applied. Checks that the sink's tables end with the source's row counts.
 */
export async function jdbcSinkPeer(run: BenchRun): Promise<JdbcSinkReport> {
  const names = jdbcSinkNames(run);
  const admin = postgres(run.adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${names.db}`);
  const sink = postgres(databaseUrlFor(run.adminUrl, names.db), { max: 1, onnotice: () => {} });
  const source = postgres(databaseUrlFor(run.adminUrl, run.capture.db), { max: 1, onnotice: () => {} });
  const dir = await Deno.makeTempDir({ prefix: "cdc-bench-connect-" });
  const script = `${run.root}scripts/connect/run.sh`;
  const pluginPath = decode(
    (await new Deno.Command(script, { args: ["plugin-path"], stdout: "piped" }).output()).stdout,
  ).trim();
  const resolved = await new Deno.Command(script, { args: ["resolve"], stderr: "inherit" }).output();
  if (!resolved.success) {
    throw new Error("scripts/connect/run.sh could not resolve Kafka Connect and the JDBC sink's jars");
  }
  const loadBefore = os.loadavg()[0];
  const child = spawnCommand(run.root, [script, ...await writeProperties(run, dir, pluginPath)], {});
  let log = "";
  const reader = (async () => {
    for await (const chunk of child.stderr) log = (log + decode(chunk)).slice(-20_000);
  })();
  try {
    const followed = await follow(run, child.pid, sink, admin, () => log);
    const report: JdbcSinkReport = {
      records: followed.total,
      startupS: round(followed.startupS, 1),
      ...rates(followed.samples, followed.firstRowAt, followed.total),
      peakRssMb: Math.round(followed.peakBytes / 2 ** 20),
      rows: { source: await rowCounts(source), sink: await rowCounts(sink) },
      loadAverage1m: { before: round(loadBefore, 2), after: round(os.loadavg()[0], 2) },
      settings:
        "Kafka Connect standalone (connect-runtime of the bench's Kafka), debezium-connector-jdbc 3.6.0.Final, " +
        "JsonConverter with schemas, insert.mode=upsert, delete.enabled=true, primary.key.mode=record_key, " +
        "schema.evolution=basic, the JVM flags of Kafka's bin/connect-standalone.sh (-Xms256M -Xmx2G, G1)",
    };
    const { source: from, sink: to } = report.rows;
    if (from.users !== to.users || from.orders !== to.orders) {
      throw new Error(`the JDBC sink's tables do not match the source's: ${JSON.stringify(report.rows)}`);
    }
    return report;
  } finally {
    try {
      child.kill("SIGTERM");
    } catch {
      // it had exited already
    }
    await child.status;
    await reader;
    await Promise.all([sink.end(), source.end(), admin.end()]);
    await Deno.remove(dir, { recursive: true });
  }
}
