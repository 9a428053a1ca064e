/** A run's stats change only through their methods, and what they read back is what was counted. */
import assert from "node:assert/strict";
import { newCaptureStats, newConsumeStats, newProduceStats, SnapshotProgress } from "../../lib/stats.ts";

Deno.test("health starts down, follows markUp and markDown, and is read as a copy", () => {
  const stats = newConsumeStats();
  assert.deepEqual(stats.health(), { kafka: false, database: false });
  stats.markUp("kafka");
  stats.markUp("database");
  stats.markDown("database");
  const health = stats.health();
  assert.deepEqual(health, { kafka: true, database: false });
  assert.equal(stats.isUp("kafka"), true);
  health.database = true;
  assert.equal(stats.isUp("database"), false, "a copy written to leaves the stats as they were");
});

Deno.test("a consume run's counters add up per topic, and a new lag replaces the old one whole", () => {
  const stats = newConsumeStats();
  stats.countApplied("users", 3);
  stats.countApplied("users", 2);
  stats.countDeadLettered("orders", 1);
  stats.countBatch();
  stats.countRetry();
  stats.countRetry();
  stats.setLag({ "users:0": 4, "users:1": 1 });
  stats.setLag({ "users:1": 0 });
  assert.deepEqual(
    [stats.applied, stats.deadLettered, stats.batches, stats.retries, stats.lag],
    [{ users: 5 }, { orders: 1 }, 1, 2, { "users:1": 0 }],
  );
});

Deno.test("publishing runs count records per topic and retries; a capture also its changes, position and WAL", () => {
  const produce = newProduceStats();
  produce.countPublished("users", 10);
  produce.countSendRetry();
  assert.deepEqual([produce.published, produce.sendRetries, produce.health()], [{ users: 10 }, 1, { kafka: false }]);
  const capture = newCaptureStats();
  capture.countPublished("cdc.public.users", 1);
  capture.countCaptured("users.c", 2);
  capture.countCaptured("users.c", 1);
  capture.setAcknowledgedLsn(0x150n);
  assert.equal(capture.retainedWalBytes, null, "not measured yet");
  capture.setRetainedWal(4096);
  assert.deepEqual(
    [capture.published, capture.captured, capture.acknowledgedLsn, capture.retainedWalBytes],
    [{ "cdc.public.users": 1 }, { "users.c": 3 }, 0x150n, 4096],
  );
});

Deno.test("a snapshot's progress: rows of the estimate, rows/s and ETA; a second snapshot of a table adds to its total", () => {
  let now = 0;
  const progress = new SnapshotProgress(() => now);
  progress.start("public.items", 10_000);
  assert.equal(progress.running, true);
  assert.deepEqual(progress.figures()[0].etaS, null, "no ETA before a row");
  now = 2_000;
  progress.count("public.items", 4_000);
  assert.deepEqual(progress.figures(), [{
    table: "public.items",
    total: 4_000,
    rows: 4_000,
    estimate: 10_000,
    remaining: 6_000,
    rowsPerS: 2_000,
    etaS: 3,
    done: false,
  }]);
  progress.count("public.items", 7_000); // past the estimate: nothing remains, no negative
  assert.equal(progress.figures()[0].remaining, 0);
  progress.finish("public.items");
  assert.equal(progress.running, false);
  assert.equal(progress.figures()[0].etaS, null);
  progress.start("public.items", 100);
  progress.count("public.items", 10);
  assert.deepEqual([progress.figures()[0].rows, progress.figures()[0].total], [10, 11_010]);
});
