import assert from "node:assert/strict";
import { DEFAULTS } from "../lib/config.ts";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { ROOT } from "./_helpers.ts";

Deno.test("the quick bench prints one JSON document with every figure, ratio and target, and cleans up", async () => {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-env",
      "--allow-read",
      "--allow-run",
      "--allow-sys",
      "scripts/bench.ts",
      "--quick",
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, stderr);
  const report = JSON.parse(new TextDecoder().decode(out.stdout));

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
  // The capture streamed the changes of the consumer's second drain, and its slot was read at the end.
  for (const key of ["changes", "changesPerS", "peakRssMb", "consumerEventsPerSWithCapture"]) {
    assert.ok(report.capture[key] > 0, `capture.${key} = ${report.capture[key]}`);
  }
  assert.equal(typeof report.capture.slotRetainedWalBytesAtEnd, "number");
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
    "idleConsumerCpuPercent",
    "idleStandaloneConsumerCpuPercent",
    "producerPeakRssMb",
    "standaloneProducerPeakRssMb",
    "consumerPeakRssMb",
    "standaloneConsumerPeakRssMb",
  ];
  for (const key of targets) {
    const target = report.targets[key];
    assert.ok(target, `targets.${key}`);
    assert.equal(typeof target.met, "boolean", `targets.${key}.met`);
    assert.ok((target.min ?? target.max) > 0, `targets.${key} has a bound`);
  }
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
});
