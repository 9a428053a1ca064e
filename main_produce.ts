/**
 * `deno task produce`: generate User and Order events and publish them to Kafka, or print them
 * as JSON lines with `--dry-run`; `capture` streams the tables' changes to Kafka as Debezium
 * records (lib/capture.ts). Parses flags, builds the configuration and wires lib/.
 * @module
 */
import process from "node:process";
import { dropCapture, newCaptureStats, runCapture } from "./lib/capture.ts";
import { ConfigError, databaseLocation, loadCaptureConfig, loadProduceConfig, readCommandLine } from "./lib/config.ts";
import { describeError } from "./lib/errors.ts";
import { commandLogger, type Logger, routeProcessWarnings } from "./lib/log.ts";
import { captureMetrics, type MetricsServer, produceMetrics, serveMetrics } from "./lib/metrics.ts";
import { runProducer } from "./lib/producer.ts";
import { newProduceStats, type SendObserver } from "./lib/stats.ts";
import { exitOnUncaught, stopSignal } from "./lib/shutdown.ts";
import { connectDatabase } from "./lib/sink.ts";
import { VERSION } from "./lib/version.ts";

const SUMMARY = "Generates User and Order events (users first, then their orders) and publishes them\n" +
  "to Kafka keyed by entity id, or prints them as JSON lines with --dry-run.\n" +
  "With --metrics-port, serves Prometheus metrics at /metrics and GET /health (200 when connected\n" +
  "to Kafka, else 503) while it runs; port 0 picks a free port.\n" +
  "  capture                    stream the tables' changes to Kafka (cdc-produce capture --help)\n" +
  "  --version                  print the version";

const CAPTURE_SUMMARY = "Streams every change of the --tables (default users and orders), in commit order,\n" +
  "to <prefix>.<schema>.<table> as the Debezium PostgreSQL connector writes them (JsonConverter,\n" +
  "schemas enabled), through a durable logical replication slot. The first start publishes the\n" +
  "existing rows (op r) from the slot's snapshot; a restart resumes from the slot. A lost slot or a\n" +
  "table gone from the publication stops the run: --new-snapshot starts over on purpose.\n" +
  "The slot keeps WAL on the server while the capture is stopped: --drop-slot removes it and the\n" +
  "publication. SIGINT/SIGTERM publish what is in hand, acknowledge it and exit 0.\n" +
  "With --metrics-port, serves /metrics (incl. the slot's retained WAL) and GET /health.";

/** A setting found unusable once the run started (a TLS file of DATABASE_URL): one line, exit 2. */
function settingFailed(logger: Logger, error: unknown): number {
  if (!(error instanceof ConfigError)) throw error;
  logger.error(`cdc-produce capture: ${error.message}`);
  return 2;
}

async function capture(args: string[]): Promise<number> {
  const commandLine = readCommandLine("produce capture", args, process.env, {
    summary: CAPTURE_SUMMARY,
    version: VERSION,
    load: loadCaptureConfig,
  });
  if ("exitCode" in commandLine) return commandLine.exitCode;
  const config = commandLine.config;
  const logger = commandLogger("capture", config, process.env);
  routeProcessWarnings(logger);
  exitOnUncaught(logger, "postgres.js wrote to a connection that had just closed; the capture reconnects");
  if (config.dropSlot) {
    let sql;
    try {
      sql = connectDatabase(config.databaseUrl, 1);
    } catch (error) {
      return settingFailed(logger, error);
    }
    try {
      const dropped = await dropCapture(sql, config);
      logger.info("done", { slot: config.slot, publication: config.publication, ...dropped });
      return 0;
    } catch (error) {
      logger.error(`failed: ${describeError(error)}`);
      return 1;
    } finally {
      await sql.end({ timeout: 5 }).catch(() => {});
    }
  }
  const signal = stopSignal(logger, "publishing what is in hand, acknowledging it, then exiting");
  logger.info("starting", {
    brokers: config.brokers.join(","),
    database: databaseLocation(config.databaseUrl),
    slot: config.slot,
    publication: config.publication,
    topics: config.tables.map((t) => `${config.topicPrefix}.${t.schema}.${t.table}`).join(","),
  });
  const stats = newCaptureStats();
  let metrics: MetricsServer | undefined;
  try {
    if (config.metricsPort !== undefined) {
      const run = captureMetrics(stats);
      // The capture still reports its sends through the onSend hook, until it takes an observer.
      stats.onSend = (sendMs) => run.observer.batchSent(sendMs);
      metrics = await serveMetrics({
        port: config.metricsPort,
        registry: run.registry,
        health: () => ({ ...stats.connected }),
        logger,
      });
    }
    const summary = await runCapture(config, { logger, stats, signal });
    logger.info("done", { ...summary });
    return 0;
  } catch (error) {
    if (error instanceof ConfigError) return settingFailed(logger, error);
    logger.error(`failed: ${describeError(error)}`);
    return 1;
  } finally {
    await metrics?.close();
  }
}

async function main(args: string[]): Promise<number> {
  if (args[0] === "capture") return await capture(args.slice(1));
  const commandLine = readCommandLine("produce", args, process.env, {
    summary: SUMMARY,
    version: VERSION,
    load: loadProduceConfig,
  });
  if ("exitCode" in commandLine) return commandLine.exitCode;
  const config = commandLine.config;
  const logger = commandLogger("produce", config, process.env);
  routeProcessWarnings(logger);
  const signal = stopSignal(logger, "stopping after the batch in hand");
  const stats = newProduceStats();
  let metrics: MetricsServer | undefined;
  let observer: SendObserver | undefined;
  try {
    if (config.metricsPort !== undefined) {
      const run = produceMetrics(stats);
      observer = run.observer;
      metrics = await serveMetrics({
        port: config.metricsPort,
        registry: run.registry,
        health: () => stats.health.snapshot(),
        logger,
      });
    }
    const summary = await runProducer(config, { logger, stats, observer, signal });
    logger.info(summary.interrupted ? "interrupted" : "done", { ...summary });
    return summary.interrupted ? 130 : 0;
  } catch (error) {
    logger.error(`failed: ${describeError(error)}`);
    return 1;
  } finally {
    await metrics?.close();
  }
}

process.exitCode = await main(process.argv.slice(2));
process.exit();
