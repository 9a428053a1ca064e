/**
 * Unit tests of lib/partition_key.ts: a key made from a topic and partition reads back as them.
 * @module
 */
import assert from "node:assert/strict";
import { parsePartitionKey, partitionKey } from "../../lib/partition_key.ts";

Deno.test("a partition key reads back as its topic and partition, also when the topic holds a colon", () => {
  assert.equal(partitionKey("orders", 3), "orders:3");
  assert.deepEqual(parsePartitionKey(partitionKey("orders", 3)), { topic: "orders", partition: 3 });
  assert.deepEqual(parsePartitionKey(partitionKey("a:b", 12)), { topic: "a:b", partition: 12 });
});

Deno.test("a string that is not topic:partition is refused, naming the value", () => {
  for (const bad of ["orders", "orders:", ":3", "orders:x", "orders:-1"]) {
    assert.throws(
      () => parsePartitionKey(bad),
      (e) => e instanceof RangeError && e.message.includes(JSON.stringify(bad)),
    );
  }
});
