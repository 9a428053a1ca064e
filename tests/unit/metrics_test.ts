/** /metrics and /health as served from a run's stats, on a loopback port of the test's own. */
import assert from "node:assert/strict";
import { createLogger } from "../../lib/log.ts";
import { captureMetrics, consumeMetrics, healthResponse, produceMetrics, withMetrics } from "../../lib/metrics.ts";
import { newCaptureStats, newConsumeStats, newProduceStats } from "../../lib/stats.ts";
import { freePort, waitFor } from "../_helpers.ts";
import { sampleValue, scrape } from "../_metrics.ts";

const quietLogger = createLogger({ component: "test", write: () => {} });

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

Deno.test("a capture's snapshots show in /metrics (rows published, rows remaining per table) and in /health", async () => {
  const stats = newCaptureStats();
  stats.snapshots.start("public.items", 1000);
  stats.snapshots.count("public.items", 300);
  stats.markUp("kafka");
  stats.markUp("database");
  const port = freePort();
  await withMetrics(
    {
      port,
      metrics: () => captureMetrics(stats),
      health: () => stats.health(),
      details: () => ({ snapshots: stats.snapshots.figures() }),
      logger: quietLogger,
    },
    async () => {
      const text = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
      assert.match(text, /^cdc_snapshot_rows_total\{table="public\.items"\} 300$/m);
      assert.match(text, /^cdc_snapshot_remaining_rows\{table="public\.items"\} 700$/m);
      const health = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.json());
      assert.equal(health.status, "ok");
      assert.deepEqual(
        health.snapshots.map((f: Record<string, unknown>) => [f.table, f.rows, f.estimate, f.remaining, f.done]),
        [["public.items", 300, 1000, 700, false]],
      );
    },
  );
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
