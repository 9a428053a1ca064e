/**
 * `deno task produce`: generate User and Order events and publish them to Kafka, or print them
 * as JSON lines with `--dry-run`; `capture` streams the tables' changes to Kafka as Debezium
 * records (lib/capture.ts). Parses flags, builds the configuration and wires lib/.
 * @module
 */
import process from "node:process";
import { dropCapture, runCapture } from "./lib/capture.ts";
import { type CommandContext, type CommandDefinition, runCommand } from "./lib/command.ts";
import { type CaptureConfig, loadCaptureConfig, loadProduceConfig, type ProduceConfig } from "./lib/config.ts";
import { databaseLocation } from "./lib/config_values.ts";
import { captureMetrics, produceMetrics, withMetrics } from "./lib/metrics.ts";
import { type ProduceSummary, runProducer } from "./lib/producer.ts";
import { connectDatabase } from "./lib/database.ts";
import { ensureSchema } from "./lib/sink.ts";
import { newCaptureStats, newProduceStats } from "./lib/stats.ts";

const SUMMARY = "Generates User and Order events (users first, then their orders) and publishes them\n" +
  "to Kafka keyed by entity id, or prints them as JSON lines with --dry-run.\n" +
  "With --metrics-port, serves Prometheus metrics at /metrics and GET /health (200 when connected\n" +
  "to Kafka, else 503) while it runs; port 0 picks a free port.\n" +
  "  capture                    stream the tables' changes to Kafka (cdc-produce capture --help)\n" +
  "  --version                  print the version";

const CAPTURE_SUMMARY = "Streams every change of the --tables (default users and orders), in commit order,\n" +
  "to <prefix>.<schema>.<table> as the Debezium PostgreSQL connector writes them (JsonConverter,\n" +
  "with schemas unless --schemas false), through a durable logical replication slot. The first\n" +
  "start publishes the existing rows (op r) from the slot's snapshot; a restart resumes from the\n" +
  "slot. A lost slot or a table gone from the publication stops the run: --new-snapshot starts\n" +
  "over on purpose.\n" +
  "The slot keeps WAL on the server while the capture is stopped: --drop-slot removes it and the\n" +
  "publication. SIGINT/SIGTERM publish what is in hand, acknowledge it and exit 0.\n" +
  "With --metrics-port, serves /metrics (incl. the slot's retained WAL) and GET /health.";

/** --drop-slot: removes the slot and the publication; returns what was dropped. */
async function dropSlot(config: CaptureConfig): Promise<Record<string, unknown>> {
  const sql = connectDatabase(config.databaseUrl, 1);
  try {
    return { slot: config.slot, publication: config.publication, ...await dropCapture(sql, config) };
  } finally {
    await sql.end({ timeout: 5 }).catch(() => {});
  }
}

/** Serves metrics when asked, and streams the tables' changes to Kafka until stopped. */
async function capture(config: CaptureConfig, { logger, signal }: CommandContext): Promise<Record<string, unknown>> {
  if (config.dropSlot) return await dropSlot(config);
  logger.info("starting", {
    brokers: config.brokers.join(","),
    database: databaseLocation(config.databaseUrl),
    slot: config.slot,
    publication: config.publication,
    topics: config.tables.map((t) => `${config.topicPrefix}.${t.schema}.${t.table}`).join(","),
  });
  const stats = newCaptureStats();
  return await withMetrics(
    {
      port: config.metricsPort,
      metrics: () => captureMetrics(stats),
      health: () => stats.health(),
      details: () => ({ snapshots: stats.snapshots.figures() }),
      logger,
    },
    async (observer) => ({
      ...await runCapture(config, { logger, stats, observer, signal, ensureContractTables: ensureSchema }),
    }),
  );
}

/** Serves metrics when asked, and generates and publishes (or prints) the events. */
async function produce(config: ProduceConfig, { logger, signal }: CommandContext): Promise<ProduceSummary> {
  const stats = newProduceStats();
  return await withMetrics(
    { port: config.metricsPort, metrics: () => produceMetrics(stats), health: () => stats.health(), logger },
    (observer) => runProducer(config, { logger, stats, observer, signal }),
  );
}

const captureCommand: CommandDefinition<CaptureConfig, Record<string, unknown>> = {
  name: "produce capture",
  component: "capture",
  summary: CAPTURE_SUMMARY,
  load: loadCaptureConfig,
  onStop: "publishing what is in hand, acknowledging it, then exiting",
  survives: "postgres.js wrote to a connection that had just closed; the capture reconnects",
  run: capture,
};

const produceCommand: CommandDefinition<ProduceConfig, ProduceSummary> = {
  name: "produce",
  component: "produce",
  summary: SUMMARY,
  load: loadProduceConfig,
  onStop: "stopping after the batch in hand",
  run: produce,
  outcome: (summary) => ({
    message: summary.interrupted ? "interrupted" : "done",
    exitCode: summary.interrupted ? 130 : 0,
  }),
};

const args = process.argv.slice(2);
process.exitCode = args[0] === "capture"
  ? await runCommand(captureCommand, args.slice(1), process.env)
  : await runCommand(produceCommand, args, process.env);
process.exit();
