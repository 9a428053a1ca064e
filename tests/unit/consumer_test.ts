/** The consumer's PostgreSQL session settings, derived from its configuration, and its record of applied positions. */
import assert from "node:assert/strict";
import { consumerSessionParameters } from "../../lib/consumer.ts";
import { AppliedPositions, UnansweredError } from "../../lib/consumer_batch.ts";
import { classify } from "../../lib/errors.ts";
import type { PartitionKey } from "../../lib/partition_key.ts";

Deno.test("the consumer's sessions end a transaction idle for the session timeout and give up a lock wait after a third of it", () => {
  assert.deepEqual(consumerSessionParameters({ sessionTimeoutS: 30 }), {
    idle_in_transaction_session_timeout: "30000",
    lock_timeout: "10000",
  });
  assert.deepEqual(consumerSessionParameters({ sessionTimeoutS: 10 }), {
    idle_in_transaction_session_timeout: "10000",
    lock_timeout: "3333",
  });
});

Deno.test("work PostgreSQL never answered is an outage of PostgreSQL, waited out, naming what it was", () => {
  const error = new UnansweredError("the transaction of orders:3 at offset 120", 60_000);
  assert.equal(classify(error), "outage");
  assert.match(error.message, /orders:3 at offset 120 got no answer from PostgreSQL in 60 s/);
});

/** A reader of stored offsets that answers only when the test says so, as PostgreSQL did when the batch committed. */
function heldReads() {
  const pending: ((stored: Map<PartitionKey, bigint>) => void)[] = [];
  const read = () => new Promise<Map<PartitionKey, bigint>>((resolve) => pending.push(resolve));
  return { read, answer: (stored: Map<PartitionKey, bigint>) => pending.shift()!(stored) };
}

Deno.test("a stored offset read before a batch's commit and answered after it does not move the known position back", async () => {
  const reads = heldReads();
  const positions = new AppliedPositions(reads.read);
  const asked = positions.of("orders", 1);
  positions.advanced("orders", 1, 2236n);
  reads.answer(new Map([["orders:1", 2192n]]));
  assert.equal(await asked, 2236n);
  assert.equal(await positions.of("orders", 1), 2236n);
});

Deno.test("a position read on assignment before a batch's commit neither moves the known position back nor Kafka's advisory offset", async () => {
  const positions = new AppliedPositions(() => Promise.resolve(new Map<PartitionKey, bigint>()));
  positions.reassigned(new Set(["orders:1"]));
  positions.advanced("orders", 1, 2236n);
  positions.advanced("orders", 1, 2192n);
  assert.equal(await positions.of("orders", 1), 2236n);
  assert.deepEqual(positions.takeUncommitted(), new Map([["orders:1", 2236n]]));
});

Deno.test("after a fencing the partition's position is read again, and a further stored offset replaces the known one", async () => {
  const positions = new AppliedPositions(() => Promise.resolve(new Map<PartitionKey, bigint>([["orders:3", 2070n]])));
  positions.advanced("orders", 3, 38n);
  positions.forget("orders:3");
  assert.equal(await positions.of("orders", 3), 2070n);
  positions.advanced("orders", 3, 2070n);
  assert.deepEqual(positions.takeUncommitted(), new Map([["orders:3", 2070n]]));
});
