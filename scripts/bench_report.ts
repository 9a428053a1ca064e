/**
 * The bench's JSON document: the machine and versions, each phase's figures, the ratios to the
 * references measured in the same run, where each phase's CPU went, and the targets evaluated.
 * @module
 */
import os from "node:os";
import { peerRatios, type PeerReport } from "./bench_capture_peer.ts";
import type { CapturePhase } from "./bench_capture.ts";
import type { ConsumePhase } from "./bench_consumer.ts";
import type { JdbcSinkReport } from "./bench_consumer_peer.ts";
import type { Measured } from "./bench_measure.ts";
import type { BenchRun } from "./bench_run.ts";
import type { StandalonePhases } from "./bench_standalone.ts";
import { evaluateTargets, TARGETS } from "./bench_targets.ts";
import { round } from "./_util.ts";

/** Everything a full run measured. */
export interface PipelineMeasures {
  produce: Measured;
  consume: ConsumePhase;
  capture: CapturePhase;
  /** Kafka Connect with Debezium's JDBC sink on the capture's topics; null when skipped (`--quick`). */
  jdbcSink: JdbcSinkReport | null;
  baselineEventsPerS: number;
  meanRecordBytes: number;
  javaRecordsPerS: number;
  copy: { seconds: number; rows: number };
  kafkajsEncodeOnlyEventsPerS: number;
  standalone: StandalonePhases;
  idleCpuPercent: { consumer: number; standaloneConsumer: number };
  peer: PeerReport;
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

/** The runtimes and servers the figures were measured on. */
function versions(run: BenchRun, pgVersion: string) {
  return { deno: Deno.version.deno, kafka: run.kafkaVersion, postgres: pgVersion };
}

/** `--only capture-peer`'s document: the capture-vs-Debezium section alone, with the machine and versions. */
export function peerOnlyReport(run: BenchRun, pgVersion: string, peer: PeerReport): Record<string, unknown> {
  const report = {
    run: run.name,
    quick: run.quick,
    only: "capture-peer",
    machine: machine(),
    versions: versions(run, pgVersion),
    captureVsDebezium: peer,
    ratios: peerRatios(peer),
  };
  return { ...report, targets: evaluateTargets(report, TARGETS.filter((t) => t.section === "capture-peer")) };
}

/** The full run's document. */
export function fullReport(run: BenchRun, pgVersion: string, measures: PipelineMeasures): Record<string, unknown> {
  const report = {
    run: run.name,
    events: run.events,
    quick: run.quick,
    baselineEvents: run.baselineEvents,
    meanRecordBytes: measures.meanRecordBytes,
    rowsAfterConsume: measures.consume.rows,
    consumerDeadLettered: measures.consume.deadLettered,
    machine: machine(),
    versions: versions(run, pgVersion),
    settings: {
      producer: `deno task produce: acks=all, one request in flight, ${run.produceBatch} events per send`,
      javaProducerPerf: `Kafka ${run.kafkaVersion} producer defaults with acks=all`,
      consumer: "deno task consume with the defaults of lib/config.ts",
      standaloneProducer: "dist/cdc-produce from deno task build (Bun runtime), same arguments",
      profile: "CPU seconds per event of each process during the phase, from /proc; ceiling = cores / CPU per event",
    },
    figures: figures(run, measures),
    capture: {
      ...measures.capture,
      settings: "deno task capture (acks=all) on a second database that the consumer fills from the same backlog",
    },
    captureVsDebezium: measures.peer,
    consumerVsJdbcSink: consumerVsJdbcSink(run, measures),
    ratios: ratios(run, measures),
    profile: profile(run, measures),
  };
  const targets = TARGETS.filter((t) => t.section !== "jdbc-sink" || measures.jdbcSink);
  return { ...report, targets: evaluateTargets(report, targets) };
}

/** Each phase's rate, duration and peak memory. */
function figures({ events }: BenchRun, m: PipelineMeasures) {
  return {
    producerEventsPerS: Math.round(events / m.produce.seconds),
    producerSeconds: round(m.produce.seconds, 3),
    producerPeakRssMb: m.produce.peakRssMb,
    consumerEventsPerS: Math.round(events / m.consume.measured.seconds),
    consumerSeconds: round(m.consume.measured.seconds, 3),
    consumerPeakRssMb: m.consume.measured.peakRssMb,
    baselineOneEventPerTxEventsPerS: Math.round(m.baselineEventsPerS),
    javaProducerPerfRecordsPerS: Math.round(m.javaRecordsPerS),
    copyRowsPerS: Math.round(m.copy.rows / m.copy.seconds),
    copySeconds: round(m.copy.seconds, 3),
    standaloneProducerEventsPerS: Math.round(events / m.standalone.produce.seconds),
    standaloneProducerPeakRssMb: m.standalone.produce.peakRssMb,
    standaloneConsumerEventsPerS: Math.round(events / m.standalone.consume.seconds),
    standaloneConsumerSeconds: round(m.standalone.consume.seconds, 3),
    standaloneConsumerPeakRssMb: m.standalone.consume.peakRssMb,
    idleConsumerCpuPercent: m.idleCpuPercent.consumer,
    idleStandaloneConsumerCpuPercent: m.idleCpuPercent.standaloneConsumer,
  };
}

/** The consumer's rate and CPU per event (whole drain: its process, all PostgreSQL processes here). */
function consumerCost({ events }: BenchRun, m: PipelineMeasures) {
  const { seconds, cpu, peakRssMb } = m.consume.measured;
  const micros = (s: number | null) => round(((s ?? 0) * 1e6) / events, 1);
  return {
    recordsPerS: Math.round(events / seconds),
    cpuMicrosPerRecord: { process: micros(cpu.command), postgres: micros(cpu.postgres) },
    peakRssMb,
  };
}

/** The JDBC sink's figures beside the consumer's; null when the sink was skipped. */
function consumerVsJdbcSink(run: BenchRun, m: PipelineMeasures) {
  return m.jdbcSink && { consumer: consumerCost(run, m), jdbcSink: m.jdbcSink };
}

/** The consumer over the JDBC sink: rate (warm) and CPU per record (process + PostgreSQL); none when skipped. */
function jdbcSinkRatios(run: BenchRun, m: PipelineMeasures) {
  if (!m.jdbcSink) return {};
  const consumer = consumerCost(run, m);
  const total = ({ process, postgres }: { process: number; postgres: number }) => process + postgres;
  return {
    consumerVsJdbcSinkRate: round(consumer.recordsPerS / m.jdbcSink.warmRecordsPerS, 2),
    consumerVsJdbcSinkCpuPerRecord: round(total(consumer.cpuMicrosPerRecord) / total(m.jdbcSink.cpuMicrosPerRecord), 3),
    consumerVsJdbcSinkPeakRss: round(consumer.peakRssMb / m.jdbcSink.peakRssMb, 2),
  };
}

/** Our figures over the references measured in the same run. */
function ratios(run: BenchRun, m: PipelineMeasures) {
  const { events } = run;
  return {
    ...jdbcSinkRatios(run, m),
    consumerVsOneEventPerTx: round(events / m.consume.measured.seconds / m.baselineEventsPerS, 1),
    producerVsJavaPerfTool: round(events / m.produce.seconds / m.javaRecordsPerS, 2),
    consumerVsCopy: round(m.copy.seconds / m.consume.measured.seconds, 3),
    ...peerRatios(m.peer),
  };
}

/** Where each phase's CPU went, per event and per process. */
function profile({ events }: BenchRun, m: PipelineMeasures) {
  const perEvent = (seconds: number | null) => (seconds === null ? null : round((seconds * 1e6) / events, 1));
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
  const producerRate = events / m.produce.seconds;
  const consumer = profileOf(m.consume.measured, "consumer");
  return {
    producer: profileOf(m.produce, "producer"),
    consumer,
    consumerVsCeiling: round(events / m.consume.measured.seconds / consumer.ceilingEventsPerS, 2),
    consumerStatements: m.consume.statements,
    kafkajsEncodeOnlyEventsPerS: Math.round(m.kafkajsEncodeOnlyEventsPerS),
    producerVsKafkajsEncodeOnly: round(producerRate / m.kafkajsEncodeOnlyEventsPerS, 2),
    standaloneProducer: profileOf(m.standalone.produce, "producer"),
    standaloneConsumer: profileOf(m.standalone.consume, "consumer"),
  };
}
