import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Partitioners } from "kafkajs";
import { entityId } from "../../lib/generator.ts";
import { keyHashPartitioner, murmur2 } from "../../lib/partitioner.ts";

const metadata = (n: number) =>
  Array.from({ length: n }, (_, partitionId) => ({
    partitionId,
    leader: 1,
    partitionErrorCode: 0,
    replicas: [1],
    isr: [1],
  }));

Deno.test("keys land on the same partitions as with kafkajs' DefaultPartitioner (the Java client's)", () => {
  const ours = keyHashPartitioner();
  const theirs = Partitioners.DefaultPartitioner();
  const keys = [
    ...Array.from({ length: 2000 }, (_, i) => entityId(7, i % 2 ? "user" : "order", i)),
    "",
    "a",
    "ab",
    "abc",
    "abcd",
    "naïve ключ 🚀",
  ];
  for (const partitions of [1, 3, 5, 8, 13]) {
    for (const key of keys) {
      for (const k of [key, Buffer.from(key)]) {
        const args = { topic: "t", partitionMetadata: metadata(partitions), message: { key: k, value: "v" } };
        assert.equal(ours(args), theirs(args), `key ${JSON.stringify(key)} over ${partitions} partitions`);
      }
    }
  }
});

Deno.test("murmur2 matches the Java client's published values", () => {
  // From Kafka's UtilsTest.testMurmur2.
  const cases: [string, number][] = [
    ["21", -973932308],
    ["foobar", -790332482],
    ["a-little-bit-long-string", -985981536],
    ["a-little-bit-longer-string", -1486304829],
    ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971],
  ];
  for (const [key, hash] of cases) assert.equal(murmur2(new TextEncoder().encode(key)), hash, key);
});

Deno.test("an explicit partition wins and keyless records go round robin", () => {
  const pick = keyHashPartitioner();
  const partitionMetadata = metadata(3);
  assert.equal(pick({ topic: "t", partitionMetadata, message: { key: "x", value: "v", partition: 2 } }), 2);
  const keyless = [0, 1, 2, 3].map(() => pick({ topic: "t", partitionMetadata, message: { value: "v" } }));
  assert.deepEqual(keyless, [0, 1, 2, 0]);
});
