/**
 * `deno task consume`: apply User and Order events from Kafka to PostgreSQL until stopped, or
 * until drained and idle with `--idle-timeout`; `dlq list|replay` inspects and replays the
 * dead-letter topics (lib/dlq_command.ts). Parses flags, builds the configuration and wires lib/.
 * @module
 */
import process from "node:process";
import { ConfigError, databaseLocation, loadConsumeConfig, readCommandLine } from "./lib/config.ts";
import { consumerSessionParameters, runConsumer } from "./lib/consumer.ts";
import { type ConsumeObserver, newConsumeStats } from "./lib/stats.ts";
import { runDlqCommand } from "./lib/dlq_command.ts";
import { createKafka } from "./lib/kafka_admin.ts";
import { commandLogger, routeProcessWarnings } from "./lib/log.ts";
import { consumeMetrics, type MetricsServer, serveMetrics } from "./lib/metrics.ts";
import { describeError } from "./lib/errors.ts";
import { exitOnUncaught, stopSignal } from "./lib/shutdown.ts";
import { connectDatabase, type Sql } from "./lib/sink.ts";
import { VERSION } from "./lib/version.ts";

const SUMMARY = "Reads the users and orders topics in one consumer group and applies the events to\n" +
  "PostgreSQL exactly once: each partition batch is one transaction that also advances the\n" +
  "partition's offset stored in PostgreSQL (table cdc_offsets); bad records go to <topic>.dlq.\n" +
  "--rebuild empties the tables and the stored offsets and applies the topics from the start.\n" +
  "SIGINT/SIGTERM finish the batch in hand, commit, disconnect and exit 0.\n" +
  "With --metrics-port, serves Prometheus metrics at /metrics and GET /health (200 when connected\n" +
  "to Kafka and PostgreSQL, else 503 naming what is down); port 0 picks a free port.\n" +
  "  dlq list|replay            inspect or replay the DLQ topics (cdc-consume dlq --help)\n" +
  "  --version                  print the version";

async function main(args: string[]): Promise<number> {
  if (args[0] === "dlq") return await runDlqCommand(args.slice(1), process.env, { out: (line) => console.log(line) });
  const commandLine = readCommandLine("consume", args, process.env, {
    summary: SUMMARY,
    version: VERSION,
    load: loadConsumeConfig,
  });
  if ("exitCode" in commandLine) return commandLine.exitCode;
  const config = commandLine.config;
  const logger = commandLogger("consume", config, process.env);
  routeProcessWarnings(logger);
  exitOnUncaught(logger, "postgres.js wrote to a connection that had just closed; its query failed and is retried");
  const signal = stopSignal(logger, "finishing the batch in hand, then exiting");
  logger.info("starting", {
    brokers: config.brokers.join(","),
    database: databaseLocation(config.databaseUrl),
    topics: `${config.usersTopic},${config.ordersTopic}`,
    group: config.consumerGroup,
  });
  let sql: Sql;
  try {
    sql = connectDatabase(config.databaseUrl, config.concurrency + 2, {
      connection: consumerSessionParameters(config),
    });
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    logger.error(`cdc-consume: ${error.message}`);
    return 2;
  }
  const stats = newConsumeStats();
  const kafka = createKafka(config, "cdc-consume", logger);
  let metrics: MetricsServer | undefined;
  let observer: ConsumeObserver | undefined;
  try {
    if (config.metricsPort !== undefined) {
      const run = consumeMetrics(stats);
      observer = run.observer;
      metrics = await serveMetrics({
        port: config.metricsPort,
        registry: run.registry,
        health: () => stats.health.snapshot(),
        logger,
      });
    }
    const summary = await runConsumer(config, { kafka, sql, logger, stats, observer, signal });
    logger.info("done", { ...summary });
    return 0;
  } catch (error) {
    logger.error(`failed: ${describeError(error)}`);
    return 1;
  } finally {
    await metrics?.close();
    await sql.end({ timeout: 5 }).catch(() => {});
  }
}

process.exitCode = await main(process.argv.slice(2));
process.exit();
