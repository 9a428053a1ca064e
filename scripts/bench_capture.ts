/**
 * The bench's capture phase: `deno task capture` streaming the changes of a second database while
 * the consumer drains the run's backlog into it again.
 * @module
 */
import postgres from "postgres";
import { procStats } from "./_proc.ts";
import { spawnCommand, taskCommand } from "./bench_measure.ts";
import { drain } from "./bench_consumer.ts";
import type { BenchRun, PipelineEnv } from "./bench_run.ts";
import { databaseUrlFor, decode, round, sleep } from "./_util.ts";

/** The capture phase's figures. */
export interface CapturePhase {
  changes: number;
  changesPerS: number;
  seconds: number;
  finishedAfterConsumerS: number;
  peakRssMb: number;
  slotRetainedWalBytesAtEnd: number;
  slotUnconfirmedWalBytesAtEnd: number;
  consumerEventsPerSWithCapture: number;
}

/** What the poller saw: changes published (from the capture's metrics), when, and the capture's peak RSS. */
interface Published {
  changes: number;
  firstAt: number;
  lastAt: number;
  peakBytes: number;
}

/** Reads the capture's published changes from its metrics and its RSS from /proc every 250 ms, until stopped. */
function pollCapture(metricsUrl: string, pid: number) {
  const seen: Published = { changes: 0, firstAt: 0, lastAt: 0, peakBytes: 0 };
  let polling = true;
  const loop = (async () => {
    while (polling) {
      const text = await (await fetch(`${metricsUrl}/metrics`)).text().catch(() => "");
      const total = [...text.matchAll(/^cdc_capture_changes_total\{[^}]*\} (\d+)/gm)]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      if (total > seen.changes) {
        if (seen.changes === 0) seen.firstAt = performance.now();
        seen.changes = total;
        seen.lastAt = performance.now();
      }
      const stats = await procStats(pid);
      if (stats) seen.peakBytes = Math.max(seen.peakBytes, stats.rssBytes);
      await sleep(250);
    }
  })();
  return {
    seen,
    stop: async () => {
      polling = false;
      await loop;
    },
  };
}

/** The capture's environment: the capture database, its own group, slot, publication and topic prefix. */
function captureEnv(run: BenchRun): PipelineEnv {
  return {
    ...run.env,
    DATABASE_URL: databaseUrlFor(run.adminUrl, run.capture.db),
    CONSUMER_GROUP: run.capture.group,
    CAPTURE_TOPIC_PREFIX: run.name,
    CAPTURE_SLOT: run.capture.slot,
    CAPTURE_PUBLICATION: run.capture.publication,
    METRICS_PORT: "0",
  };
}

/** WAL the capture's slot holds back and has not confirmed, in bytes. */
async function slotWal(databaseUrl: string, slotName: string) {
  const check = postgres(databaseUrl, { max: 1, onnotice: () => {} });
  const [slot] = await check`
    select (pg_current_wal_lsn() - restart_lsn)::float8 as retained,
           (pg_current_wal_lsn() - confirmed_flush_lsn)::float8 as unconfirmed
    from pg_replication_slots where slot_name = ${slotName}`;
  await check.end();
  return { retained: Number(slot.retained), unconfirmed: Number(slot.unconfirmed) };
}

/**
 * The capture while the consumer applies the backlog: the consumer drains the same topics again
 * into a second database (its own group) while `deno task capture` streams that database's
 * changes. Changes/s is over the time from the capture's first to its last published change; the
 * slot's WAL is read once the capture has published everything.
 */
export async function captureWhileConsuming(run: BenchRun): Promise<CapturePhase> {
  const setup = postgres(run.adminUrl, { max: 1, onnotice: () => {} });
  await setup.unsafe(`create database ${run.capture.db}`);
  await setup.end();
  const env = captureEnv(run);
  const capture = spawnCommand(run.root, await taskCommand(run.root, "capture", []), env);
  let log = "";
  const reader = (async () => {
    for await (const chunk of capture.stderr) log = (log + decode(chunk)).slice(-20_000);
  })();
  let poller: ReturnType<typeof pollCapture> | undefined;
  try {
    const streamingBy = Date.now() + 60_000;
    while (!/streaming from slot/.test(log)) {
      if (Date.now() > streamingBy) throw new Error(`the capture did not start streaming: ${log.slice(-2000)}`);
      await sleep(100);
    }
    poller = pollCapture(/metrics on (http:\/\/127\.0\.0\.1:\d+)/.exec(log)![1], capture.pid);
    const consume = await drain(run, await taskCommand(run.root, "consume", []), env);
    const consumerDone = performance.now();
    const { seen } = poller;
    // Caught up: no new change published for 3 s after the consumer finished.
    while (performance.now() - Math.max(seen.lastAt, consumerDone) < 3_000) await sleep(250);
    await poller.stop();
    const slot = await slotWal(env.DATABASE_URL, run.capture.slot);
    const seconds = (seen.lastAt - seen.firstAt) / 1000;
    return {
      changes: seen.changes,
      changesPerS: Math.round(seen.changes / Math.max(seconds, 1e-3)),
      seconds: round(seconds, 3),
      finishedAfterConsumerS: round(Math.max(0, seen.lastAt - consumerDone) / 1000, 1),
      peakRssMb: Math.round(seen.peakBytes / 2 ** 20),
      slotRetainedWalBytesAtEnd: slot.retained,
      slotUnconfirmedWalBytesAtEnd: slot.unconfirmed,
      consumerEventsPerSWithCapture: Math.round(run.events / consume.seconds),
    };
  } finally {
    // Not awaited: a poll in flight ends on its own once the capture is stopped.
    poller?.stop().catch(() => {});
    try {
      capture.kill("SIGTERM");
    } catch {
      // it had exited already
    }
    await capture.status;
    await reader;
  }
}
