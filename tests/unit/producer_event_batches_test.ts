/**
 * The worker that generates the producer's events (lib/producer_event_batches.ts,
 * lib/producer_generator_worker.ts): the same stream as the generator, in batches, with its counts and
 * its errors.
 * @module
 */
import assert from "node:assert/strict";
import { type EventBatch, generateInWorker, newStats } from "../../lib/producer_event_batches.ts";
import { generateEvents } from "../../lib/generator.ts";
import { runProgram } from "../_helpers.ts";

async function collect(options: Parameters<typeof generateInWorker>[0]): Promise<EventBatch[]> {
  const batches: EventBatch[] = [];
  for await (const batch of generateInWorker(options)) batches.push(batch);
  return batches;
}

Deno.test("the worker's batches carry generateEvents' stream: same keys, same JSON, users first, same counts", async () => {
  const options = { users: 1_234, orders: 2_345, seed: 11, systemClock: false, batchSize: 500 };
  const batches = await collect(options);
  const stats = newStats();
  const expected = [...generateEvents(options, stats)];
  assert.deepEqual(batches.map((b) => b.count), [500, 500, 500, 500, 500, 500, 500, 79]);
  const values = batches.flatMap((b) => b.values.split("\n"));
  const keys = batches.flatMap((b) => b.keys.split("\n"));
  assert.deepEqual(values, expected.map((e) => JSON.stringify(e.value)));
  assert.deepEqual(keys, expected.map((e) => e.key));
  const entities = batches.flatMap((b) => Array.from({ length: b.count }, (_, i) => i < b.users ? "user" : "order"));
  assert.deepEqual(entities, expected.map((e) => e.entity));
  assert.deepEqual(batches.at(-1)!.stats, stats);
  assert.equal(batches[0].stats.byType["order.CREATE"], undefined, "each batch counts the stream up to its end");
});

Deno.test("breaking off the batches early ends the worker: the process exits instead of waiting on it", async () => {
  const script = `
    import { generateInWorker } from "./lib/producer_event_batches.ts";
    for await (const batch of generateInWorker({ users: 100000, orders: 100000, seed: 5, systemClock: false, batchSize: 1000 })) {
      console.log(batch.count);
      break;
    }`;
  const output = await runProgram(Deno.execPath(), ["eval", "--ext=ts", script], {
    signal: AbortSignal.timeout(20_000),
  });
  assert.equal(output.code, 0, "the process ended on its own: " + output.stderr);
  assert.equal(output.stdout, "1000\n");
});

Deno.test("a generator error in the worker reaches the caller with its message", async () => {
  await assert.rejects(
    collect({ users: 0, orders: 5, seed: 1, systemClock: false, batchSize: 100 }),
    /orders need users: at least one user CREATE must come first/,
  );
});

Deno.test("without a seed's clock, the worker stamps events with the system time", async () => {
  const before = Date.now();
  const [batch] = await collect({ users: 10, orders: 0, seed: 1, systemClock: true, batchSize: 10 });
  const stamp = Date.parse(JSON.parse(batch.values.split("\n")[0]).created_at);
  assert.ok(Math.abs(stamp - before) < 60_000, `${new Date(stamp).toISOString()} is now`);
});
