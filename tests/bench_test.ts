import assert from "node:assert/strict";
import { DEFAULTS } from "../lib/config.ts";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { bench } from "./_bench.ts";

Deno.test("the quick bench prints one JSON document with every figure, ratio and target, and cleans up", async () => {
  const out = await bench("--quick");
  assert.equal(out.code, 0, out.stderr);
  const report = JSON.parse(out.stdout);

  assert.equal(report.quick, true);
  assert.ok(report.events > 0);
  for (const key of ["cpus", "memoryGb"]) assert.ok(report.machine[key] > 0, `machine.${key}`);
  assert.match(report.machine.os, /\S/);
  for (const key of ["deno", "kafka", "postgres"]) assert.match(report.versions[key], /^\d+\.\d+/, `versions.${key}`);
  const figures = [
    "producerEventsPerS",
    "producerSeconds",
    "producerPeakRssMb",
    "consumerEventsPerS",
    "consumerSeconds",
    "consumerPeakRssMb",
    "baselineOneEventPerTxEventsPerS",
    "javaProducerPerfRecordsPerS",
    "copyRowsPerS",
    "copySeconds",
    "standaloneProducerEventsPerS",
    "standaloneProducerPeakRssMb",
    "standaloneConsumerEventsPerS",
    "standaloneConsumerSeconds",
    "standaloneConsumerPeakRssMb",
  ];
  for (const key of figures) {
    assert.equal(typeof report.figures[key], "number", `figures.${key}`);
    assert.ok(report.figures[key] > 0, `figures.${key} = ${report.figures[key]}`);
  }
  // An idle consumer's share of a core: measured, possibly 0 over a short quiet window.
  for (const key of ["idleConsumerCpuPercent", "idleStandaloneConsumerCpuPercent"]) {
    assert.ok(report.figures[key] >= 0 && report.figures[key] < 100, `figures.${key} = ${report.figures[key]}`);
  }
  for (const key of ["consumerVsOneEventPerTx", "producerVsJavaPerfTool", "consumerVsCopy"]) {
    assert.ok(report.ratios[key] > 0, `ratios.${key} = ${report.ratios[key]}`);
  }
  // Where each phase's CPU went: the command's own share is always measured (from /proc).
  for (
    const [phase, command] of [
      ["producer", "producer"],
      ["consumer", "consumer"],
      ["standaloneProducer", "producer"],
      ["standaloneConsumer", "consumer"],
    ]
  ) {
    const profile = report.profile[phase];
    assert.ok(profile.cpuMicrosPerEvent[command] > 0, `profile.${phase}.cpuMicrosPerEvent.${command}`);
    assert.ok(profile.machineBusyShare > 0 && profile.machineBusyShare <= 1, `profile.${phase}.machineBusyShare`);
    assert.ok(profile.ceilingEventsPerS > 0, `profile.${phase}.ceilingEventsPerS`);
  }
  // The consumer's share of its own ceiling, and PostgreSQL's cost per statement of the drain.
  assert.ok(report.profile.consumerVsCeiling > 0, `profile.consumerVsCeiling = ${report.profile.consumerVsCeiling}`);
  // A server this suite reuses may not preload pg_stat_statements (scripts/services.sh starts its own with it).
  if (await preloads("pg_stat_statements")) {
    assert.ok(
      report.profile.consumerStatements?.some((s: { statement: string; calls: number }) =>
        /^insert into orders/.test(s.statement) && s.calls > 0
      ),
      "profile.consumerStatements lists the orders' insert",
    );
  } else {
    assert.equal(report.profile.consumerStatements, null, "without pg_stat_statements the profile says so with null");
    console.log("    the PostgreSQL in use does not preload pg_stat_statements: no per-statement profile");
  }
  // The capture streamed the changes of the consumer's second drain, and its slot was read at the end.
  for (const key of ["changes", "changesPerS", "peakRssMb", "consumerEventsPerSWithCapture"]) {
    assert.ok(report.capture[key] > 0, `capture.${key} = ${report.capture[key]}`);
  }
  assert.equal(typeof report.capture.slotRetainedWalBytesAtEnd, "number");
  checkCaptureVsDebezium(report);
  assert.ok(report.profile.kafkajsEncodeOnlyEventsPerS > 0);
  assert.ok(report.profile.producerVsKafkajsEncodeOnly > 0);
  const targets = [
    "producerEventsPerS",
    "standaloneProducerEventsPerS",
    "consumerEventsPerS",
    "standaloneConsumerEventsPerS",
    "consumerVsOneEventPerTx",
    "producerVsJavaPerfTool",
    "consumerVsCopy",
    "consumerVsCeiling",
    "consumerMachineBusyShare",
    "consumerMicrosPerEvent",
    "consumerPostgresMicrosPerEvent",
    "idleConsumerCpuPercent",
    "idleStandaloneConsumerCpuPercent",
    "producerPeakRssMb",
    "standaloneProducerPeakRssMb",
    "consumerPeakRssMb",
    "standaloneConsumerPeakRssMb",
    "captureStreamingVsDebezium",
    "captureSnapshotVsDebezium",
    "captureCpuSPer1000Changes",
    "capturePeakRssMb",
  ];
  for (const key of targets) {
    const target = report.targets[key];
    assert.ok(target, `targets.${key}`);
    assert.equal(typeof target.met, "boolean", `targets.${key}.met`);
    assert.ok((target.min ?? target.max) > 0, `targets.${key} has a bound`);
  }
  // --quick skips the JDBC sink (a JVM, --jdbc-sink runs it): no section, no ratios, no targets of it.
  assert.equal(report.consumerVsJdbcSink, null);
  assert.equal(report.ratios.consumerVsJdbcSinkRate, undefined);
  assert.equal(report.targets.consumerVsJdbcSinkRate, undefined);
  // Every event applied: the drained tables hold rows, and nothing valid went to the DLQ.
  assert.ok(report.rowsAfterConsume.users > 0 && report.rowsAfterConsume.orders > 0);
  assert.deepEqual(report.consumerDeadLettered, {});

  // Cleaned up: its database and topics are gone.
  const sql = postgres(Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl, {
    max: 1,
    onnotice: () => {},
  });
  const left = await sql`select datname from pg_database where datname like ${report.run + "%"}`;
  await sql.end();
  assert.deepEqual([...left], []);
  const admin = new Kafka({
    brokers: (Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers).split(","),
    logLevel: logLevel.NOTHING,
  })
    .admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${report.run}_`));
  await admin.disconnect();
  assert.deepEqual(topics, []);
  const slots = await leftSlots(report.run);
  assert.deepEqual(slots, []);
});

/** Replication slots left behind by the run named `run`. */
async function leftSlots(run: string): Promise<string[]> {
  const sql = postgres(Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl, { max: 1, onnotice: () => {} });
  const rows = await sql<{ slot_name: string }[]>`
    select slot_name from pg_replication_slots where starts_with(slot_name, ${run + "_"})`;
  await sql.end();
  return rows.map((r) => r.slot_name);
}

const round2 = (value: number) => Math.round(value * 100) / 100;

/**
 * The capture and Debezium each measured on both workloads (records, rate, CPU per 1,000 changes
 * by party, peak RSS), the ratios computed from those very figures, and the capture's profile.
 */
function checkCaptureVsDebezium(report: any) {
  const peer = report.captureVsDebezium;
  assert.ok(peer, "captureVsDebezium");
  assert.ok(peer.updateRows > 0 && peer.snapshotRows >= peer.updateRows);
  assert.match(peer.settings.debezium, /3\.6\.1\.Final.*local file/);
  assert.match(peer.settings.capture, /acks/);
  // The capture has --schemas=false: the section runs it on both workloads too.
  assert.notEqual(peer.captureSchemasFalse, null, "captureVsDebezium.captureSchemasFalse");
  const phases = [["debezium", peer.debezium], ["capture", peer.capture], [
    "captureSchemasFalse",
    peer.captureSchemasFalse,
  ]];
  for (const [name, connector] of phases) {
    for (const workload of ["streaming", "snapshot"]) {
      const phase = connector[workload];
      const where = `captureVsDebezium.${name}.${workload}`;
      assert.equal(phase.records, workload === "streaming" ? peer.updateRows : peer.snapshotRows, `${where}.records`);
      for (const key of ["seconds", "recordsPerS", "peakRssMb"]) assert.ok(phase[key] > 0, `${where}.${key}`);
      assert.ok(phase.startupS >= 0, `${where}.startupS`);
      assert.ok(Math.abs(phase.recordsPerS - phase.records / phase.seconds) <= 0.01 * phase.recordsPerS + 1, where);
      assert.ok(phase.cpuSPer1000.process > 0, `${where}.cpuSPer1000.process`);
      for (const party of ["walsender", "backends"]) assert.ok(phase.cpuSPer1000[party] >= 0, `${where}.${party}`);
      assert.ok(phase.cpuSPer1000.broker === null || phase.cpuSPer1000.broker >= 0, `${where}.broker`);
    }
    // Decoding thousands of changes takes the walsender several clock ticks: its pid was found.
    assert.ok(connector.streaming.cpuSPer1000.walsender > 0, `captureVsDebezium.${name}.streaming.walsender`);
  }
  const { capture, debezium } = peer;
  assert.deepEqual(
    {
      streaming: report.ratios.captureVsDebeziumStreamingRecordsPerS,
      snapshot: report.ratios.captureVsDebeziumSnapshotRecordsPerS,
      streamingCpu: report.ratios.captureVsDebeziumStreamingCpuPerChange,
      snapshotCpu: report.ratios.captureVsDebeziumSnapshotCpuPerChange,
      streamingRss: report.ratios.captureVsDebeziumStreamingPeakRss,
      snapshotRss: report.ratios.captureVsDebeziumSnapshotPeakRss,
    },
    {
      streaming: round2(capture.streaming.recordsPerS / debezium.streaming.recordsPerS),
      snapshot: round2(capture.snapshot.recordsPerS / debezium.snapshot.recordsPerS),
      streamingCpu: round2(capture.streaming.cpuSPer1000.process / debezium.streaming.cpuSPer1000.process),
      snapshotCpu: round2(capture.snapshot.cpuSPer1000.process / debezium.snapshot.cpuSPer1000.process),
      streamingRss: round2(capture.streaming.peakRssMb / debezium.streaming.peakRssMb),
      snapshotRss: round2(capture.snapshot.peakRssMb / debezium.snapshot.peakRssMb),
    },
  );
  checkPayloadOnlyRatios(report);
  for (const key of ["before", "after"]) assert.ok(peer.loadAverage1m[key] >= 0, `loadAverage1m.${key}`);
  // The profile: each in-process stage measured; the capture's whole CPU per change is the streaming run's.
  const micros = peer.profile.cpuMicrosPerChange;
  const measuredStages = [
    "pgoutputDecode",
    "debeziumEncode",
    "kafkajsEncode",
    "kafkajsUtf8",
    "kafkajsCrc32c",
    "kafkajsEncodePayloadOnly",
    "debeziumEncodePayloadOnly",
    "gzipBatches",
    "gzipBatchesPayloadOnly",
    "kafkajsSend",
    "kafkajsSendPayloadOnly",
    "captureProcess",
    "walsender",
  ];
  for (const key of measuredStages) {
    assert.ok(micros[key] > 0, `profile.cpuMicrosPerChange.${key} = ${micros[key]}`);
  }
  assert.ok(micros.captureOther >= 0, "profile.captureOther");
  const payloadOnly = peer.captureSchemasFalse;
  assert.equal(
    micros.captureProcessPayloadOnly,
    Math.round(payloadOnly.streaming.cpuSPer1000.process * 1000 * 10) / 10,
  );
  assert.ok(micros.captureOtherPayloadOnly >= 0, "profile.captureOtherPayloadOnly");
  assert.equal(micros.captureProcess, Math.round(capture.streaming.cpuSPer1000.process * 1000 * 10) / 10);
  assert.ok(peer.profile.meanValueBytes > peer.profile.meanPayloadOnlyValueBytes);
  assert.ok(peer.profile.meanPayloadOnlyValueBytes > 0);
  for (const key of ["gzipRatio", "gzipRatioPayloadOnly"]) {
    assert.ok(peer.profile[key] > 0 && peer.profile[key] < 1, `profile.${key}`);
  }
  assert.equal(peer.profile.compression, "gzip");
}

/** The capture with `--schemas=false` beside Debezium: ratios computed from the same run's figures. */
function checkPayloadOnlyRatios(report: any) {
  const { captureSchemasFalse: capture, debezium } = report.captureVsDebezium;
  const figures: [string, (phase: any) => number][] = [
    ["StreamingRecordsPerS", (p) => p.streaming.recordsPerS],
    ["SnapshotRecordsPerS", (p) => p.snapshot.recordsPerS],
    ["StreamingCpuPerChange", (p) => p.streaming.cpuSPer1000.process],
    ["SnapshotCpuPerChange", (p) => p.snapshot.cpuSPer1000.process],
    ["StreamingPeakRss", (p) => p.streaming.peakRssMb],
    ["SnapshotPeakRss", (p) => p.snapshot.peakRssMb],
  ];
  for (const [name, pick] of figures) {
    const key = `captureSchemasFalseVsDebezium${name}`;
    assert.ok(key in report.ratios, `ratios.${key}`);
    assert.equal(report.ratios[key], round2(pick(capture) / pick(debezium)), `ratios.${key}`);
  }
}

/** Whether the server under test loads `library` at start (shared_preload_libraries). */
async function preloads(library: string): Promise<boolean> {
  const sql = postgres(Deno.env.get("DATABASE_URL") ?? DEFAULTS.databaseUrl, { max: 1, onnotice: () => {} });
  try {
    const [{ loaded }] = await sql<{ loaded: boolean }[]>`
      select ${library} = any(string_to_array(current_setting('shared_preload_libraries'), ', ')) as loaded`;
    return loaded;
  } finally {
    await sql.end();
  }
}
