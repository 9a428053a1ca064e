/** The producer against the real broker: counts, keys, partitions, stops and retries. */
import assert from "node:assert/strict";
import * as net from "node:net";
import { loadProduceConfig } from "../lib/config.ts";
import { createLogger } from "../lib/log.ts";
import { parseOrderEvent, parseUserEvent } from "../lib/model.ts";
import { generateEvents } from "../lib/generator.ts";
import { partitionOf } from "../lib/partitioner.ts";
import { runProducer } from "../lib/producer.ts";
import {
  BROKERS,
  freePort,
  readTopic,
  readWholeTopic,
  runCommand,
  startCommand,
  testKafka,
  uniqueName,
  waitFor,
} from "./_helpers.ts";

async function topicSizes(topic: string): Promise<{ partitions: number; records: number }> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return { partitions: offsets.length, records: offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0) };
  } finally {
    await admin.disconnect();
  }
}

Deno.test("produce --users 10000 --orders 20000 publishes exactly those counts, keyed by entity id", async () => {
  const id = uniqueName("p");
  const env = { USERS_TOPIC: `${id}_users`, ORDERS_TOPIC: `${id}_orders` };
  const run = await runCommand("produce", ["--users", "10000", "--orders", "20000", "--seed", "3"], env);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /done .*total=30000/);
  assert.deepEqual(await topicSizes(env.USERS_TOPIC), { partitions: 3, records: 10_000 });
  assert.deepEqual(await topicSizes(env.ORDERS_TOPIC), { partitions: 5, records: 20_000 });

  const users = await readTopic(env.USERS_TOPIC, 10_000);
  const partitionOf = new Map<string, number>();
  for (const record of users) {
    const change = parseUserEvent(record.value);
    assert.equal(record.key, change.id, "the key is the user id");
    const seen = partitionOf.get(record.key!);
    if (seen !== undefined) assert.equal(record.partition, seen, "one key, one partition");
    partitionOf.set(record.key!, record.partition);
  }
  const orders = await readTopic(env.ORDERS_TOPIC, 20_000);
  for (const record of orders) assert.equal(record.key, parseOrderEvent(record.value).id, "the key is the order id");
  assert.equal(new Set(orders.map((r) => r.partition)).size, 5, "orders spread over all partitions");
});

Deno.test("an unreachable broker gives a one-line error and a non-zero exit within the retry budget", async () => {
  const started = Date.now();
  const run = await runCommand("produce", ["--max-attempts", "2", "--retry-backoff-ms", "100"], {
    KAFKA_BROKERS: "localhost:1",
    USERS_TOPIC: uniqueName("never"),
  });
  assert.equal(run.code, 1);
  const last = run.stderr.trimEnd().split("\n").at(-1)!;
  assert.match(last, /ERROR .*failed: RetryError: preparing topics on localhost:1 failed after 2 attempts/);
  assert.ok(Date.now() - started < 60_000, "gave up within the budget");
});

Deno.test("a broker that is not there yet, then is: the producer retries and publishes everything", async () => {
  // The bootstrap address refuses connections until the test opens a proxy to the real broker.
  const port = freePort();
  const id = uniqueName("late");
  const env = { KAFKA_BROKERS: `localhost:${port}`, USERS_TOPIC: `${id}_users`, ORDERS_TOPIC: `${id}_orders` };
  const producer = startCommand("produce", [
    "--users",
    "300",
    "--orders",
    "300",
    "--max-attempts",
    "30",
    "--retry-backoff-ms",
    "200",
  ], env);
  // The broker "arrives" only once the producer has met its absence and said it retries.
  await waitFor("the producer to retry", () => /not ready, retrying/.test(producer.stderr()), 30_000);
  const [brokerHost, brokerPort] = BROKERS[0].split(":");
  const sockets = new Set<net.Socket>();
  const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(brokerPort), brokerHost);
    sockets.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(port, "127.0.0.1", () => resolve()));
  const result = await producer.done;
  for (const s of sockets) s.destroy();
  proxy.close();
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stderr, /not ready, retrying/);
  assert.deepEqual(await topicSizes(env.USERS_TOPIC), { partitions: 3, records: 300 });
  assert.deepEqual(await topicSizes(env.ORDERS_TOPIC), { partitions: 5, records: 300 });
});

Deno.test("a stop request ends the run after the batch in hand: interrupted, and the summary counts what Kafka holds", async () => {
  const id = uniqueName("p");
  const env = { USERS_TOPIC: `${id}_users`, ORDERS_TOPIC: `${id}_orders` };
  const config = loadProduceConfig(
    ["--users", "20000", "--orders", "20000", "--seed", "4", "--batch-size", "1000"],
    env,
  );
  assert.ok(!config.help);
  let checks = 0;
  // The producer looks at its signal once after each batch: the third look finds it aborted.
  const signal = {
    get aborted() {
      return ++checks >= 3;
    },
  } as AbortSignal;
  const summary = await runProducer(config.config, {
    logger: createLogger({ component: "test", write: () => {} }),
    signal,
  });
  assert.equal(summary.interrupted, true);
  assert.equal(summary.total, 3_000, "three batches of 1000 sent, the third being the one in hand");
  assert.equal(Object.values(summary.published).reduce((a, b) => a + b, 0), 3_000);
  assert.deepEqual(await topicSizes(env.USERS_TOPIC), { partitions: 3, records: 3_000 });
  assert.deepEqual(await topicSizes(env.ORDERS_TOPIC), { partitions: 5, records: 0 });
});

Deno.test("each partition holds exactly the stream's events of its keys, in stream order, across both producer lanes", async () => {
  const id = uniqueName("p");
  const env = { USERS_TOPIC: `${id}_users`, ORDERS_TOPIC: `${id}_orders` };
  const args = ["--users", "3000", "--orders", "6000", "--seed", "9", "--batch-size", "100"];
  const run = await runCommand("produce", args, env);
  assert.equal(run.code, 0, run.stderr);
  const expected = new Map<string, string[]>();
  for (const event of generateEvents({ users: 3000, orders: 6000, seed: 9 })) {
    const [topic, partitions] = event.entity === "user" ? [env.USERS_TOPIC, 3] : [env.ORDERS_TOPIC, 5];
    const where = `${topic}/${partitionOf(event.key, partitions)}`;
    expected.set(where, [...expected.get(where) ?? [], JSON.stringify(event.value)]);
  }
  const actual = new Map<string, string[]>();
  for (const topic of [env.USERS_TOPIC, env.ORDERS_TOPIC]) {
    for (const record of await readWholeTopic(topic)) {
      const where = `${topic}/${record.partition}`;
      actual.set(where, [...actual.get(where) ?? [], new TextDecoder().decode(record.value!)]);
    }
  }
  assert.equal(actual.size, 8, "every partition of both topics got records");
  for (const [where, values] of expected) assert.deepEqual(actual.get(where), values, where);
});
