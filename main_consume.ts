/**
 * `deno task consume`: apply User and Order events from Kafka to PostgreSQL until stopped, or
 * until drained and idle with `--idle-timeout`; `dlq list|replay` inspects and replays the
 * dead-letter topics (lib/consumer_dlq.ts). Parses flags, builds the configuration and wires lib/.
 * @module
 */
import process from "node:process";
import { type CommandContext, type CommandDefinition, runCommand } from "./lib/command.ts";
import { type ConsumeConfig, loadConsumeConfig } from "./lib/config.ts";
import { databaseLocation } from "./lib/config_values.ts";
import { consumerSessionParameters, type ConsumeSummary, runConsumer } from "./lib/consumer.ts";
import { dlqCommand } from "./lib/consumer_dlq.ts";
import { createKafka } from "./lib/kafka_admin.ts";
import { consumeMetrics, withMetrics } from "./lib/metrics.ts";
import { connectDatabase } from "./lib/database.ts";
import { newConsumeStats } from "./lib/stats.ts";

const SUMMARY = "Reads the users and orders topics in one consumer group and applies the events to\n" +
  "PostgreSQL exactly once: each partition batch is one transaction that also advances the\n" +
  "partition's offset stored in PostgreSQL (table cdc_offsets); bad records go to <topic>.dlq.\n" +
  "--rebuild empties the tables and the stored offsets and applies the topics from the start.\n" +
  "SIGINT/SIGTERM finish the batch in hand, commit, disconnect and exit 0.\n" +
  "With --metrics-port, serves Prometheus metrics at /metrics and GET /health (200 when connected\n" +
  "to Kafka and PostgreSQL, else 503 naming what is down); port 0 picks a free port.\n" +
  "  dlq list|replay            inspect or replay the DLQ topics (cdc-consume dlq --help)\n" +
  "  --version                  print the version";

/** Connects the pool and Kafka, serves metrics when asked, and runs the consumer until it stops. */
async function consume(config: ConsumeConfig, { logger, signal }: CommandContext): Promise<ConsumeSummary> {
  logger.info("starting", {
    brokers: config.brokers.join(","),
    database: databaseLocation(config.databaseUrl),
    topics: `${config.usersTopic},${config.ordersTopic}`,
    group: config.consumerGroup,
  });
  const sql = connectDatabase(config.databaseUrl, config.concurrency + 2, {
    connection: consumerSessionParameters(config),
  });
  const stats = newConsumeStats();
  const kafka = createKafka(config, "cdc-consume", logger);
  try {
    return await withMetrics(
      { port: config.metricsPort, metrics: () => consumeMetrics(stats), health: () => stats.health(), logger },
      (observer) => runConsumer(config, { kafka, sql, logger, stats, observer, signal }),
    );
  } finally {
    // With PostgreSQL away, what is queued on the pool can only wait for it: nothing is left to finish.
    await sql.end({ timeout: stats.isUp("database") ? 5 : 0 }).catch(() => {});
  }
}

const consumeCommand: CommandDefinition<ConsumeConfig, ConsumeSummary> = {
  name: "consume",
  component: "consume",
  summary: SUMMARY,
  load: loadConsumeConfig,
  onStop: "finishing the batch in hand, then exiting",
  survives: "postgres.js wrote to a connection that had just closed; its query failed and is retried",
  run: consume,
};

const args = process.argv.slice(2);
process.exitCode = args[0] === "dlq"
  ? await runCommand(dlqCommand, args.slice(1), process.env)
  : await runCommand(consumeCommand, args, process.env);
process.exit();
