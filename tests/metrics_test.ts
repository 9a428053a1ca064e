/** Metrics rendering (pure), then /metrics and /health of the real consumer against real Kafka and PostgreSQL. */
import assert from "node:assert/strict";
import { newConsumeStats } from "../lib/consumer.ts";
import { loadProduceConfig } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { consumeMetrics, healthResponse, produceMetrics, Registry } from "../lib/metrics.ts";
import { newProduceStats, runProducer } from "../lib/producer.ts";
import { generateEvents } from "../lib/generator.ts";
import type { OrderEvent, UserEvent } from "../lib/model.ts";
import { createTestDatabase, pipelineNames, referenceState, runCommand, startCommand, waitFor } from "./_helpers.ts";

function seededEvents(seed: number, users: number, orders: number): [UserEvent[], OrderEvent[]] {
  const userEvents: UserEvent[] = [];
  const orderEvents: OrderEvent[] = [];
  for (const event of generateEvents({ users, orders, seed })) {
    if (event.entity === "user") userEvents.push(event.value);
    else orderEvents.push(event.value);
  }
  return [userEvents, orderEvents];
}

Deno.test("a registry renders counters, gauges and histograms in Prometheus text format 0.0.4", () => {
  const registry = new Registry();
  const applied = registry.counter({ name: "applied_total", help: "Records applied." });
  applied.inc({ topic: "users" });
  applied.inc({ topic: "users" }, 2);
  applied.inc({ topic: 'we"ird\\\n' });
  registry.counter({
    name: "collected_total",
    help: "Read at scrape time.",
    collect: () => [{ labels: {}, value: 7 }],
  });
  const lag = registry.gauge({ name: "lag", help: "Lag\nper partition." });
  lag.set({ topic: "orders", partition: "1" }, 5);
  lag.set({ partition: "1", topic: "orders" }, 0);
  const latency = registry.histogram({ name: "latency_seconds", help: "Latency.", buckets: [0.1, 1] });
  latency.observe(0.05);
  latency.observe(0.5);
  latency.observe(3);
  registry.histogram({ name: "unobserved", help: "Nothing yet.", buckets: [1] });
  assert.equal(
    registry.render(),
    [
      "# HELP applied_total Records applied.",
      "# TYPE applied_total counter",
      'applied_total{topic="users"} 3',
      'applied_total{topic="we\\"ird\\\\\\n"} 1',
      "# HELP collected_total Read at scrape time.",
      "# TYPE collected_total counter",
      "collected_total 7",
      "# HELP lag Lag\\nper partition.",
      "# TYPE lag gauge",
      'lag{topic="orders",partition="1"} 0',
      "# HELP latency_seconds Latency.",
      "# TYPE latency_seconds histogram",
      'latency_seconds_bucket{le="0.1"} 1',
      'latency_seconds_bucket{le="1"} 2',
      'latency_seconds_bucket{le="+Inf"} 3',
      "latency_seconds_sum 3.55",
      "latency_seconds_count 3",
      "# HELP unobserved Nothing yet.",
      "# TYPE unobserved histogram",
      "",
    ].join("\n"),
  );
});

Deno.test("a registry refuses bad names, falling counters, unsorted buckets and duplicates", () => {
  const registry = new Registry();
  assert.throws(() => registry.counter({ name: "bad-name", help: "x" }), /metric name must match/);
  const counter = registry.counter({ name: "ok_total", help: "x" });
  assert.throws(() => counter.inc({}, -1), /can only go up: got -1/);
  assert.throws(() => counter.inc({ "bad-label": "x" }), /label name must match/);
  assert.throws(() => registry.gauge({ name: "ok_total", help: "x" }), /registered twice/);
  assert.throws(() => registry.histogram({ name: "h", help: "x", buckets: [1, 1] }), /strictly ascending/);
});

Deno.test("consumer metrics read the run's counters and split lag keys into topic and partition labels", () => {
  const stats = newConsumeStats();
  const registry = consumeMetrics(stats);
  stats.applied["a:b"] = 4;
  stats.deadLettered.users = 1;
  stats.retries = 2;
  stats.lag = { "a:b:3": 9 };
  stats.connected.kafka = true;
  stats.onBatch?.(40, 12);
  const text = registry.render();
  assert.match(text, /^cdc_records_applied_total\{topic="a:b"\} 4$/m);
  assert.match(text, /^cdc_records_dead_lettered_total\{topic="users"\} 1$/m);
  assert.match(text, /^cdc_retries_total 2$/m);
  assert.match(text, /^cdc_consumer_lag\{topic="a:b",partition="3"\} 9$/m);
  assert.match(text, /^cdc_connected\{dependency="kafka"\} 1$/m);
  assert.match(text, /^cdc_connected\{dependency="database"\} 0$/m);
  assert.match(text, /^cdc_batch_size_records_bucket\{le="50"\} 1$/m);
  assert.match(text, /^cdc_batch_size_records_bucket\{le="10"\} 0$/m);
  assert.match(text, /^cdc_apply_duration_seconds_sum 0.012$/m);
  assert.ok(newProduceStats().connected.kafka === false);
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

function metricsUrl(stderr: string): string | undefined {
  return /metrics on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr)?.[1];
}

function sampleValue(text: string, line: RegExp): number {
  const m = line.exec(text);
  return m ? Number(m[1]) : NaN;
}

Deno.test("a running consumer's /metrics counts what it applied, its lag reaches 0, and /health is 200", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const produced = await runCommand("produce", ["--users", "200", "--orders", "400", "--seed", "21"], env);
    assert.equal(produced.code, 0, produced.stderr);
    const consumer = startCommand("consume", ["--metrics-port", "0", "--log-format", "json"], env);
    try {
      const url = await waitFor("the metrics address in the log", () => metricsUrl(consumer.stderr()));
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
      const expected = referenceState(...seededEvents(21, 200, 400));
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
      const health = await fetch(`${url}/health`);
      assert.equal(health.status, 200);
      assert.deepEqual(await health.json(), { status: "ok", kafka: "up", database: "up" });
      assert.equal(await fetch(`${url}/nothing`).then(async (r) => (await r.body?.cancel(), r.status)), 404);
    } finally {
      consumer.process.kill("SIGTERM");
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
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const env = pipelineNames(`postgres://postgres:postgres@127.0.0.1:${closedPort}/cdc_db`);
  const consumer = startCommand("consume", ["--metrics-port", "0"], env);
  try {
    const url = await waitFor("the metrics address in the log", () => metricsUrl(consumer.stderr()));
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
    consumer.process.kill("SIGTERM");
  }
  const result = await consumer.done;
  assert.equal(result.code, 0, `SIGTERM while waiting for PostgreSQL is a clean stop:\n${result.stderr}`);
});

Deno.test("producer metrics count the records Kafka acknowledged per topic and time each send", async () => {
  const env = pipelineNames("postgres://unused@localhost:5432/unused");
  const config = loadProduceConfig(["--users", "300", "--orders", "600", "--seed", "5", "--batch-size", "100"], env);
  assert.ok(!config.help);
  const stats = newProduceStats();
  const registry = produceMetrics(stats);
  const lines: string[] = [];
  const logger = createLogger({ component: "produce", write: (line) => lines.push(line) });
  const summary = await runProducer(config.config, { logger, stats });
  assert.equal(summary.total, 900);
  const text = registry.render();
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
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const closedPort = (listener.addr as Deno.NetAddr).port;
  listener.close();
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
  const url = await waitFor("the metrics address in the log", () => metricsUrl(producer.stderr()));
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 503);
  assert.deepEqual(await health.json(), { status: "unavailable", down: ["kafka"], kafka: "down" });
  const result = await producer.done;
  assert.equal(result.code, 1, "the retry budget is spent");
  const lines = result.stderr.split("\n").filter((l) => l.length > 0);
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), `not a JSON line: ${line}`);
  assert.ok(lines.some((l) => JSON.parse(l).level === "error"), "the failure is logged as a JSON line");
});
