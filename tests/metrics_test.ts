/**
 * /metrics and /health of the real commands: against real Kafka and PostgreSQL, and with a
 * dependency that does not answer.
 */
import assert from "node:assert/strict";
import { loadProduceConfig } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { produceMetrics } from "../lib/metrics.ts";
import { runProducer } from "../lib/producer.ts";
import { newProduceStats } from "../lib/stats.ts";
import {
  createTestDatabase,
  freePort,
  metricsAddress,
  pipelineNames,
  produceWorkload,
  referenceState,
  seededEvents,
  startCommand,
  stopWithin,
  waitFor,
} from "./_helpers.ts";
import { sampleValue, scrape } from "./_metrics.ts";

const quietLogger = createLogger({ component: "test", write: () => {} });

Deno.test("a running consumer's /metrics counts what it applied, its lag reaches 0, and /health is 200", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    await produceWorkload(env, { users: 200, orders: 400, seed: 21 });
    const consumer = startCommand("consume", ["--metrics-port", "0", "--log-format", "json"], env);
    try {
      const url = await metricsAddress(consumer);
      const drained = await waitFor("the lag gauges to reach 0 on every partition", async () => {
        const text = await (await fetch(`${url}/metrics`)).text();
        const lags = [...text.matchAll(/^cdc_consumer_lag\{[^}]*\} (\d+)$/gm)].map((m) => Number(m[1]));
        return lags.length === 3 + 5 && lags.every((l) => l === 0) ? text : "";
      });
      const rows =
        (await db.sql`select (select count(*) from users)::int as u, (select count(*) from orders)::int as o`)[0];
      const applied =
        sampleValue(drained, new RegExp(`^cdc_records_applied_total\\{topic="${env.USERS_TOPIC}"\\} (\\d+)$`, "m")) +
        sampleValue(drained, new RegExp(`^cdc_records_applied_total\\{topic="${env.ORDERS_TOPIC}"\\} (\\d+)$`, "m"));
      const deadLettered = [...drained.matchAll(/^cdc_records_dead_lettered_total\{[^}]*\} (\d+)$/gm)]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      const { userEvents, orderEvents } = seededEvents(21, 200, 400);
      const expected = referenceState(userEvents, orderEvents);
      assert.equal(
        applied,
        600 - expected.rejected,
        "the applied counter equals the events the reference model applies",
      );
      assert.equal(deadLettered, expected.rejected);
      assert.ok(rows.u > 0 && rows.o > 0);
      assert.ok(sampleValue(drained, /^cdc_batch_size_records_count (\d+)$/m) > 0);
      assert.ok(sampleValue(drained, /^cdc_apply_duration_seconds_count (\d+)$/m) > 0);
      assert.equal(sampleValue(drained, /^cdc_batch_size_records_sum (\d+)$/m), 600);
      assert.ok(sampleValue(drained, /^process_cpu_seconds_total (\S+)$/m) > 0, "the process' CPU seconds");
      assert.ok(sampleValue(drained, /^process_resident_memory_bytes (\S+)$/m) > 0, "its resident memory");
      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: "ok", kafka: "up", database: "up" });
      assert.equal(await fetch(`${url}/nothing`).then(async (r) => (await r.body?.cancel(), r.status)), 404);
    } finally {
      await stopWithin(consumer);
    }
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr);
    // The final summary applied count matches what /metrics said, and every stderr line is JSON.
    const lines = result.stderr.split("\n").filter((l) => l.length > 0);
    for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
    const done = lines.map((l) => JSON.parse(l)).find((l) => l.msg === "done");
    assert.equal(
      Object.values(done.applied as Record<string, number>).reduce((a, b) => a + b, 0) +
        Object.values(done.deadLettered as Record<string, number>).reduce((a, b) => a + b, 0),
      600,
    );
  } finally {
    await db.drop();
  }
});

Deno.test("a consumer whose database does not answer reports /health 503 naming the database, and stops cleanly on SIGTERM", async () => {
  const closedPort = freePort();
  const env = pipelineNames(`postgres://postgres:postgres@127.0.0.1:${closedPort}/cdc_db`);
  const consumer = startCommand("consume", ["--metrics-port", "0"], env);
  try {
    const url = await metricsAddress(consumer);
    await waitFor(
      "the consumer to log that it waits for PostgreSQL",
      () => /waiting for PostgreSQL/.test(consumer.stderr()),
    );
    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 503);
    const body = await health.json();
    assert.equal(body.status, "unavailable");
    assert.equal(body.database, "down");
    assert.ok(body.down.includes("database"));
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(metrics, /^cdc_connected\{dependency="database"\} 0$/m);
    assert.ok(sampleValue(metrics, /^cdc_retries_total (\d+)$/m) >= 1);
  } finally {
    await stopWithin(consumer);
  }
  const result = await consumer.done;
  assert.equal(result.code, 0, `SIGTERM while waiting for PostgreSQL is a clean stop:\n${result.stderr}`);
});

Deno.test("producer metrics count the records Kafka acknowledged per topic and time each send", async () => {
  const env = pipelineNames("postgres://unused@localhost:5432/unused");
  const config = loadProduceConfig(["--users", "300", "--orders", "600", "--seed", "5", "--batch-size", "100"], env);
  assert.ok(!config.help);
  const stats = newProduceStats();
  const { registry, observer } = produceMetrics(stats);
  const summary = await runProducer(config.config, { logger: quietLogger, stats, observer });
  assert.equal(summary.total, 900);
  const { text } = await scrape(registry);
  const published = (topic: string) =>
    sampleValue(text, new RegExp(`^cdc_records_published_total\\{topic="${topic}"\\} (\\d+)$`, "m"));
  const perTopic = (topic: string) =>
    Object.entries(summary.published).filter(([k]) => k.startsWith(`${topic}.`)).reduce((a, [, n]) => a + n, 0);
  assert.equal(published(env.USERS_TOPIC), perTopic(env.USERS_TOPIC));
  assert.equal(published(env.ORDERS_TOPIC), perTopic(env.ORDERS_TOPIC));
  assert.equal(published(env.USERS_TOPIC) + published(env.ORDERS_TOPIC), 900);
  assert.equal(sampleValue(text, /^cdc_send_duration_seconds_count (\d+)$/m), 9);
  assert.equal(sampleValue(text, /^cdc_send_retries_total (\d+)$/m), 0);
});

Deno.test("a producer that cannot reach Kafka reports /health 503 naming kafka, in JSON log lines only", async () => {
  const closedPort = freePort();
  const env = {
    ...pipelineNames("postgres://unused@localhost:5432/unused"),
    KAFKA_BROKERS: `127.0.0.1:${closedPort}`,
  };
  const producer = startCommand("produce", [
    "--users",
    "10",
    "--orders",
    "10",
    "--max-attempts",
    "3",
    "--retry-backoff-ms",
    "1000",
    "--metrics-port",
    "0",
    "--log-format",
    "json",
  ], env);
  const url = await metricsAddress(producer);
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 503);
  assert.deepEqual(await health.json(), { status: "unavailable", down: ["kafka"], kafka: "down" });
  const result = await producer.done;
  assert.equal(result.code, 1, "the retry budget is spent");
  const lines = result.stderr.split("\n").filter((l) => l.length > 0);
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
  assert.ok(lines.some((l) => JSON.parse(l).level === "error"), "the failure is logged as a JSON line");
});
