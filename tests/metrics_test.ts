/** /metrics and /health as served: from a run's stats, then of the real commands against real Kafka and PostgreSQL. */
import assert from "node:assert/strict";
import { loadProduceConfig } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import {
  captureMetrics,
  consumeMetrics,
  healthResponse,
  produceMetrics,
  serveMetrics,
  withMetrics,
} from "../lib/metrics.ts";
import type { Registry } from "prom-client";
import { runProducer } from "../lib/producer.ts";
import { newCaptureStats, newConsumeStats, newProduceStats } from "../lib/stats.ts";
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

const quietLogger = createLogger({ component: "test", write: () => {} });

/** Serves `registry` on a free port, as the commands do, and returns the text of one GET /metrics. */
async function scrape(registry: Registry): Promise<{ text: string; contentType: string | null }> {
  const server = await serveMetrics({ port: 0, host: "127.0.0.1", registry, health: () => ({}), logger: quietLogger });
  try {
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    return { text: await response.text(), contentType: response.headers.get("content-type") };
  } finally {
    await server.close();
  }
}

function sampleValue(text: string, line: RegExp): number {
  const m = line.exec(text);
  return m ? Number(m[1]) : NaN;
}

Deno.test("the consumer's /metrics reads the run's counters at scrape time and splits lag keys into topic and partition labels", async () => {
  const stats = newConsumeStats();
  const { registry, observer } = consumeMetrics(stats);
  stats.countApplied("a:b", 4);
  stats.countDeadLettered("users", 1);
  stats.countRetry();
  stats.countRetry();
  stats.setLag({ "a:b:3": 9 });
  stats.markUp("kafka");
  observer.batchCommitted(40, 12);
  const { text, contentType } = await scrape(registry);
  assert.equal(contentType, "text/plain; version=0.0.4; charset=utf-8");
  assert.match(text, /^# TYPE cdc_records_applied_total counter$/m);
  assert.match(text, /^cdc_records_applied_total\{topic="a:b"\} 4$/m);
  assert.match(text, /^cdc_records_dead_lettered_total\{topic="users"\} 1$/m);
  assert.match(text, /^cdc_retries_total 2$/m);
  assert.match(text, /^cdc_batches_total 0$/m);
  assert.match(text, /^# TYPE cdc_consumer_lag gauge$/m);
  assert.match(text, /^cdc_consumer_lag\{topic="a:b",partition="3"\} 9$/m);
  assert.match(text, /^cdc_connected\{dependency="kafka"\} 1$/m);
  assert.match(text, /^cdc_connected\{dependency="database"\} 0$/m);
  assert.match(text, /^cdc_batch_size_records_bucket\{le="50"\} 1$/m);
  assert.match(text, /^cdc_batch_size_records_bucket\{le="10"\} 0$/m);
  assert.match(text, /^cdc_apply_duration_seconds_sum 0.012$/m);
  stats.countApplied("a:b", 6);
  stats.setLag({});
  const later = (await scrape(registry)).text;
  assert.match(later, /^cdc_records_applied_total\{topic="a:b"\} 10$/m, "a scrape reads the stats' current total");
  assert.doesNotMatch(later, /^cdc_consumer_lag\{/m, "a partition no longer in the stats is no longer reported");
});

Deno.test("/metrics of both commands carries the default process metrics: CPU seconds, resident memory, event-loop lag, heap", async () => {
  for (const { registry } of [consumeMetrics(newConsumeStats()), produceMetrics(newProduceStats())]) {
    const text = await waitFor(
      "the event-loop delay histogram to have samples",
      async () => {
        const { text } = await scrape(registry);
        return sampleValue(text, /^nodejs_eventloop_lag_p50_seconds (\S+)$/m) > 0 ? text : "";
      },
      10_000,
      50,
    );
    assert.ok(sampleValue(text, /^process_cpu_seconds_total (\S+)$/m) > 0);
    assert.ok(sampleValue(text, /^process_resident_memory_bytes (\S+)$/m) > 10_000_000);
    assert.ok(sampleValue(text, /^nodejs_heap_size_used_bytes (\S+)$/m) > 0);
    assert.match(text, /^nodejs_eventloop_lag_seconds \S+$/m);
    assert.match(text, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
    assert.doesNotMatch(text, /^process_open_fds 0$/m, "no descriptor count where /proc/self cannot be read");
  }
});

Deno.test("health is 200 only when every dependency is up, and 503 names what is down", () => {
  assert.deepEqual(healthResponse({ kafka: true, database: true }), {
    status: 200,
    body: '{"status":"ok","kafka":"up","database":"up"}',
  });
  assert.deepEqual(healthResponse({ kafka: true, database: false }), {
    status: 503,
    body: '{"status":"unavailable","down":["database"],"kafka":"up","database":"down"}',
  });
});

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

Deno.test("withMetrics serves a capture's /health and cdc_connected from its stats' health flags only while the work runs", async () => {
  const stats = newCaptureStats();
  const port = freePort();
  const health = () => stats.health();
  const served = await withMetrics(
    { port, metrics: () => captureMetrics(stats), health, logger: quietLogger },
    async (observer) => {
      assert.ok(observer, "a port gives the work the run's observer");
      const down = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(down.status, 503);
      assert.deepEqual((await down.json()).down, ["kafka", "database"]);
      stats.markUp("kafka");
      stats.markUp("database");
      const up = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(up.status, 200);
      await up.body?.cancel();
      const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      assert.match(text, /^cdc_connected\{dependency="database"\} 1$/m);
      return "done";
    },
  );
  assert.equal(served, "done");
  await assert.rejects(fetch(`http://127.0.0.1:${port}/health`), "the endpoint closes when the work ends");
  assert.equal(
    await withMetrics({ metrics: () => captureMetrics(stats), health, logger: quietLogger }, (o) => Promise.resolve(o)),
    undefined,
  );
});
