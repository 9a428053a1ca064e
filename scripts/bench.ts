/**
 * `deno task bench [--quick] [--events N] [--capture-update-rows N] [--capture-snapshot-rows N]
 * [--only capture-peer] [--jdbc-sink | --no-jdbc-sink]`: throughput and memory of the pipeline,
 * each figure next to a reference measured in the same run (Kafka's Java producer perf tool, the Go original's
 * one-event-per-transaction design, PostgreSQL COPY, the Debezium connector beside the capture,
 * Kafka Connect with Debezium's JDBC sink beside the consumer: off for `--quick` unless `--jdbc-sink`),
 * printed as one JSON document on stdout; progress goes to stderr. Sets up its own topics, groups
 * and database, and removes them afterwards, also when a phase fails or the run is interrupted.
 * `--only capture-peer` runs the capture-vs-Debezium section alone (scripts/bench_capture_peer.ts).
 *
 * This entry reads the flags and runs the phases in order; each phase lives in its own module.
 * @module
 */
import postgres from "postgres";
import { captureVsDebezium, type PeerReport } from "./bench_capture_peer.ts";
import { captureWhileConsuming } from "./bench_capture.ts";
import { jdbcSinkPeer } from "./bench_consumer_peer.ts";
import { consumePhase, idleConsumersPhase, oneEventPerTransaction } from "./bench_consumer.ts";
import { copySameRows } from "./bench_copy.ts";
import { type BenchFlags, parseBenchFlags } from "./bench_flags.ts";
import { taskCommand } from "./bench_measure.ts";
import { javaProducerPerf, kafkajsEncodeOnly, meanRecordBytes, producePhase } from "./bench_producer.ts";
import { fullReport, peerOnlyReport } from "./bench_report.ts";
import { type BenchRun, cleanUpRun, createBenchRun, progress, timed } from "./bench_run.ts";
import { standalonePhases } from "./bench_standalone.ts";

/** The capture-vs-Debezium section (scripts/bench_capture_peer.ts) on the run's names and sizes. */
function capturePeer(run: BenchRun): Promise<PeerReport> {
  return timed(
    `the capture beside Debezium: one UPDATE of ${run.peerUpdateRows} orders, a first snapshot of ${run.peerSnapshotRows} rows`,
    async () =>
      captureVsDebezium({
        root: run.root,
        adminUrl: run.adminUrl,
        brokers: run.brokers,
        run: run.name,
        updateRows: run.peerUpdateRows,
        snapshotRows: run.peerSnapshotRows,
        captureCommand: await taskCommand(run.root, "capture", []),
        captureEnv: { ...run.env, KAFKA_BROKERS: run.brokers.join(",") },
        progress,
      }),
  );
}

/** Every phase of the bench, in order; the document of their figures. */
async function fullBench(run: BenchRun, pgVersion: string): Promise<Record<string, unknown>> {
  const setup = postgres(run.adminUrl, { max: 1, onnotice: () => {} });
  await setup.unsafe(`create database ${run.name}`);
  await setup.unsafe(`create database ${run.name}_binary`);
  await setup.end();
  const produce = await producePhase(run);
  const consume = await consumePhase(run);
  const capture = await timed(
    "the capture streaming the changes while the consumer applies the backlog again",
    () => captureWhileConsuming(run),
  );
  progress(`capture: ${capture.changesPerS} changes/s, slot WAL at the end ${capture.slotRetainedWalBytesAtEnd} bytes`);
  // The capture's topics hold the changes of the rows the consumer applied: the sink applies them.
  const jdbcSink = run.jdbcSink
    ? await timed("Kafka Connect with Debezium's JDBC sink applying the capture's topics", () => jdbcSinkPeer(run))
    : null;
  if (jdbcSink) progress(`JDBC sink: ${jdbcSink.warmRecordsPerS} records/s warm, peak RSS ${jdbcSink.peakRssMb} MB`);
  const baselineEventsPerS = await timed(
    `the original's design (one event per transaction and offset commit) on ${run.baselineEvents} events`,
    () => oneEventPerTransaction(run),
  );
  const recordBytes = meanRecordBytes(run);
  const javaRecordsPerS = await timed(
    `Kafka's Java ProducerPerformance, ${run.events} records of ${recordBytes} bytes`,
    () => javaProducerPerf(run, run.events, recordBytes),
  );
  const copy = await timed("COPY of the same rows", () => copySameRows(run.env.DATABASE_URL));
  const encodeOnlyEvents = Math.min(run.events, 200_000);
  const kafkajsEncodeOnlyEventsPerS = await timed(
    `kafkajs encoding alone (no network) of ${encodeOnlyEvents} events`,
    () => kafkajsEncodeOnly(run, encodeOnlyEvents),
  );
  const standalone = await standalonePhases(run);
  const idleCpuPercent = await idleConsumersPhase(run);
  const peer = await capturePeer(run);
  return fullReport(run, pgVersion, {
    produce,
    consume,
    capture,
    jdbcSink,
    baselineEventsPerS,
    meanRecordBytes: recordBytes,
    javaRecordsPerS,
    copy,
    kafkajsEncodeOnlyEventsPerS,
    standalone,
    idleCpuPercent,
    peer,
  });
}

/** The PostgreSQL server's version, as the report states it. */
async function serverVersion(adminUrl: string): Promise<string> {
  const setup = postgres(adminUrl, { max: 1, onnotice: () => {} });
  const [{ version }] = await setup`select current_setting('server_version') as version`;
  await setup.end();
  return version;
}

/** Runs the bench the flags ask for, prints its document, removes what it created; the exit code. */
async function runBench(flags: BenchFlags): Promise<number> {
  const run = await createBenchRun(flags, new URL("..", import.meta.url).pathname);
  let cleaning: Promise<void> | undefined;
  Deno.addSignalListener("SIGINT", async () => {
    progress("interrupted: cleaning up");
    await (cleaning ??= cleanUpRun(run));
    Deno.exit(130);
  });
  try {
    const pgVersion = await serverVersion(run.adminUrl);
    const report = flags.onlyPeer
      ? peerOnlyReport(run, pgVersion, await capturePeer(run))
      : await fullBench(run, pgVersion);
    console.log(JSON.stringify(report, null, 2));
    return 0;
  } catch (error) {
    progress(`failed: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    progress("cleaning up");
    await (cleaning ??= cleanUpRun(run));
  }
}

/** Reads the flags (exit 2 with one line when one is wrong) and runs the bench. */
async function main(args: string[]): Promise<number> {
  let flags: BenchFlags;
  try {
    flags = parseBenchFlags(args);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.error(`bench: ${error.message}`);
    return 2;
  }
  return await runBench(flags);
}

if (import.meta.main) Deno.exit(await main(Deno.args));
