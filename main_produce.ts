/**
 * `deno task produce`: generate User and Order events and publish them to Kafka, or print them
 * as JSON lines with `--dry-run`. Parses flags, builds the configuration and wires lib/.
 * @module
 */
import process from "node:process";
import { loadProduceConfig, readCommandLine } from "./lib/config.ts";
import { commandLogger, routeProcessWarnings } from "./lib/log.ts";
import { type MetricsServer, produceMetrics, serveMetrics } from "./lib/metrics.ts";
import { newProduceStats, runProducer } from "./lib/producer.ts";
import { describeError } from "./lib/errors.ts";
import { VERSION } from "./lib/version.ts";

const SUMMARY = "Generates User and Order events (users first, then their orders) and publishes them\n" +
  "to Kafka keyed by entity id, or prints them as JSON lines with --dry-run.\n" +
  "With --metrics-port, serves Prometheus metrics at /metrics and GET /health (200 when connected\n" +
  "to Kafka, else 503) while it runs; port 0 picks a free port.\n" +
  "  --version                  print the version";

async function main(args: string[]): Promise<number> {
  const commandLine = readCommandLine("produce", args, process.env, {
    summary: SUMMARY,
    version: VERSION,
    load: loadProduceConfig,
  });
  if ("exitCode" in commandLine) return commandLine.exitCode;
  const config = commandLine.config;
  const logger = commandLogger("produce", config, process.env);
  routeProcessWarnings(logger);
  let stop = false;
  const onSignal = (signal: string) => {
    logger.warn(`${signal} received: stopping after the batch in hand`);
    stop = true;
  };
  process.on("SIGINT", () => onSignal("SIGINT"));
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  const stats = newProduceStats();
  let metrics: MetricsServer | undefined;
  try {
    if (config.metricsPort !== undefined) {
      metrics = await serveMetrics({
        port: config.metricsPort,
        registry: produceMetrics(stats),
        health: () => ({ ...stats.connected }),
        logger,
      });
    }
    const summary = await runProducer(config, { logger, stats, stopRequested: () => stop });
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
