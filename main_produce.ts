/**
 * `deno task produce`: generate User and Order events and publish them to Kafka, or print them
 * as JSON lines with `--dry-run`. Parses flags, builds the configuration and wires lib/.
 * @module
 */
import process from "node:process";
import { ConfigError, helpText, loadProduceConfig } from "./lib/config.ts";
import { routeProcessWarnings } from "./lib/kafka_admin.ts";
import { createLogger, secretsOf } from "./lib/log.ts";
import { type MetricsServer, produceMetrics, serveMetrics } from "./lib/metrics.ts";
import { newProduceStats, runProducer } from "./lib/producer.ts";
import { describeError } from "./lib/retry.ts";
import { VERSION } from "./lib/version.ts";

const SUMMARY = "Generates User and Order events (users first, then their orders) and publishes them\n" +
  "to Kafka keyed by entity id, or prints them as JSON lines with --dry-run.\n" +
  "With --metrics-port, serves Prometheus metrics at /metrics and GET /health (200 when connected\n" +
  "to Kafka, else 503) while it runs; port 0 picks a free port.\n" +
  "  --version                  print the version";

async function main(args: string[]): Promise<number> {
  if (args.includes("--version")) {
    console.log(`cdc-produce ${VERSION}`);
    return 0;
  }
  let parsed;
  try {
    parsed = loadProduceConfig(args, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`cdc-produce: ${error.message}`);
      return 2;
    }
    throw error;
  }
  if (parsed.help) {
    console.log(helpText("produce", SUMMARY));
    return 0;
  }
  const config = parsed.config;
  const logger = createLogger({
    component: "produce",
    format: config.logFormat,
    secrets: secretsOf(config),
    level: process.env.LOG_LEVEL === "debug" ? "debug" : "info",
  });
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
