/** The DLQ tool against real Kafka and PostgreSQL: bad records dead-lettered, listed and replayed. */
import assert from "node:assert/strict";
import { DLQ_HEADERS, dlqTopic } from "../lib/consumer_dead_letter.ts";
import { REPLAYED_FROM_HEADER } from "../lib/consumer_dlq.ts";
import {
  createTestDatabase,
  pipelineNames,
  publishRaw,
  readTopic,
  ROOT,
  runCommand,
  testKafka,
  uniqueName,
} from "./_helpers.ts";

async function endOffsets(topics: string[]): Promise<Record<string, string>> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const ends: Record<string, string> = {};
    for (const topic of topics) {
      for (const { partition, high } of await admin.fetchTopicOffsets(topic)) ends[`${topic}:${partition}`] = high;
    }
    return ends;
  } finally {
    await admin.disconnect();
  }
}

Deno.test("every bad record lands in the DLQ with a reason and its source; dlq list shows each, replay republishes each exactly once", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const bad = Deno.readTextFileSync(`${ROOT}tests/fixtures/wire/bad.jsonl`).split("\n").filter((l) => l.length);
    const badUsers: { key: string; value: string | Uint8Array }[] = bad.filter((l) => !l.includes("order_id"))
      .map((value, i) => ({ key: `user-${i}`, value }));
    // An invalid UTF-8 value and a 2 MB value are answers too, not crashes.
    badUsers.push(
      { key: "bytes", value: new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]) },
      { key: "big", value: JSON.stringify({ event_type: "CREATE", user_id: "x", name: "y".repeat(2_000_000) }) },
    );
    const badOrders = bad.filter((l) => l.includes("order_id")).map((value, i) => ({ key: `order-${i}`, value }));
    const badCount = badUsers.length + badOrders.length;
    await publishRaw(env.USERS_TOPIC, 3, badUsers);
    await publishRaw(env.ORDERS_TOPIC, 5, badOrders);
    const consumed = await runCommand("consume", ["--idle-timeout", "1"], env);
    assert.equal(consumed.code, 0, consumed.stderr);
    const dlqTopics = [dlqTopic(env.USERS_TOPIC), dlqTopic(env.ORDERS_TOPIC)];
    const userDlq = await readTopic(dlqTopics[0], badUsers.length);
    const orderDlq = await readTopic(dlqTopics[1], badOrders.length);
    const inDlq = [...userDlq, ...orderDlq];
    assert.equal(inDlq.length, badCount);

    // Each carries a reason a person can read and the coordinates of its source record.
    const reasons = inDlq.map((r) => r.headers[DLQ_HEADERS.reason]);
    assert.deepEqual(reasons.filter((r) => !r), [], "every DLQ record has a reason");
    for (
      const pattern of [
        /user_id must be a UUID/,
        /event_type must be CREATE, UPDATE or DELETE: got "UPSERT"/,
        /dob must be a calendar date/,
        /quantity must be an integer/,
        /valid JSON/,
        /UTF-8/,
        /name must be a string of 1\.\.50 characters|user_id must be a UUID/,
      ]
    ) {
      assert.ok(reasons.some((r) => pattern.test(r)), `a DLQ reason matches ${pattern}: ${reasons.join(" | ")}`);
    }
    for (
      const [records, topic, partitions] of [[userDlq, env.USERS_TOPIC, 3], [orderDlq, env.ORDERS_TOPIC, 5]] as const
    ) {
      for (const record of records) {
        assert.equal(record.headers[DLQ_HEADERS.topic], topic);
        assert.ok(Number(record.headers[DLQ_HEADERS.partition]) < partitions, record.headers[DLQ_HEADERS.partition]);
        assert.match(record.headers[DLQ_HEADERS.offset], /^\d+$/);
      }
    }
    const original = userDlq.find((r) => r.key === "bytes");
    assert.deepEqual([...original!.value!], [0x7b, 0xff, 0xfe, 0x7d], "the DLQ keeps the original bytes");

    // list: one line per DLQ record, with the coordinates and reason its headers carry.
    const listed = await runCommand("consume", ["dlq", "list"], env);
    assert.equal(listed.code, 0, listed.stderr);
    const lines = listed.stdout.split("\n").filter((l) => l.length);
    assert.equal(lines.length, badCount, listed.stdout);
    for (const record of inDlq) {
      const h = record.headers;
      const source = `source=${h[DLQ_HEADERS.topic]}:${h[DLQ_HEADERS.partition]}:${h[DLQ_HEADERS.offset]}`;
      const line = lines.find((l) => l.startsWith(`${source} `));
      assert.ok(line, `a line for ${source} in:\n${listed.stdout}`);
      assert.ok(line.includes(`reason=${JSON.stringify(h[DLQ_HEADERS.reason])}`), line);
      assert.ok(line.includes(`failed_at=${h[DLQ_HEADERS.failedAt]}`), line);
      assert.ok(line.includes(`key="${record.key}"`), line);
    }
    const limited = await runCommand("consume", ["dlq", "list", "--topic", "orders", "--limit", "1"], env);
    assert.equal(limited.code, 0, limited.stderr);
    assert.equal(limited.stdout.split("\n").filter((l) => l.length).length, 1);
    assert.match(limited.stdout, new RegExp(`^source=${env.ORDERS_TOPIC}:`));

    // replay --dry-run: prints each record, publishes and commits nothing.
    const sources = [env.USERS_TOPIC, env.ORDERS_TOPIC];
    const before = await endOffsets([...sources, ...dlqTopics]);
    const dryRun = await runCommand("consume", ["dlq", "replay", "--dry-run"], env);
    assert.equal(dryRun.code, 0, dryRun.stderr);
    assert.equal(dryRun.stdout.split("\n").filter((l) => l.startsWith("would replay to ")).length, badCount);
    assert.match(dryRun.stdout, new RegExp(`would replay ${badCount} DLQ records`));
    assert.deepEqual(await endOffsets([...sources, ...dlqTopics]), before, "a dry run publishes nothing");

    // replay: exactly N records back to their source topics, with where they came from.
    const replayed = await runCommand("consume", ["dlq", "replay"], env);
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.match(replayed.stdout, new RegExp(`^replayed ${badCount} DLQ records`, "m"));
    const after = await endOffsets(sources);
    const added = Object.entries(after).reduce((sum, [key, high]) => sum + Number(high) - Number(before[key]), 0);
    assert.equal(added, badCount);
    const back = [
      ...await readTopic(env.USERS_TOPIC, badUsers.length * 2),
      ...await readTopic(env.ORDERS_TOPIC, badOrders.length * 2),
    ].filter((r) => r.headers[REPLAYED_FROM_HEADER] !== undefined);
    assert.equal(back.length, badCount);
    for (const record of inDlq) {
      const origin = back.find((r) =>
        r.headers[REPLAYED_FROM_HEADER] ===
          `${record.headers[DLQ_HEADERS.topic]}.dlq:${record.partition}:${record.offset}`
      );
      assert.ok(origin, `the record replayed from ${record.headers[DLQ_HEADERS.topic]}.dlq:${record.offset}`);
      assert.equal(origin.key, record.key);
      assert.deepEqual(origin.value, record.value);
      assert.deepEqual(
        Object.keys(origin.headers).filter((h) => h.startsWith("dlq.") && h !== REPLAYED_FROM_HEADER),
        [],
      );
    }

    // A second replay finds nothing new and publishes nothing.
    const again = await runCommand("consume", ["dlq", "replay"], env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^replayed 0 DLQ records/m);
    assert.deepEqual(await endOffsets(sources), after);

    // The replayed records are still bad: consuming them dead-letters them again, and only those
    // newly arrived DLQ records are replayed by the next run.
    const reconsumed = await runCommand("consume", ["--idle-timeout", "1"], env);
    assert.equal(reconsumed.code, 0, reconsumed.stderr);
    const third = await runCommand("consume", ["dlq", "replay", "--topic", "users"], env);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stdout, new RegExp(`^replayed ${badUsers.length} DLQ records \\(${env.USERS_TOPIC}: `, "m"));
  } finally {
    await db.drop();
  }
});

Deno.test("dlq list on topics that were never dead-lettered to prints nothing and exits at once", async () => {
  const env = pipelineNames("postgres://unused@localhost:5432/unused");
  await publishRaw(dlqTopic(env.USERS_TOPIC), 1, []);
  const listed = await runCommand("consume", ["dlq", "list", "--group", uniqueName("g")], env);
  assert.equal(listed.code, 0, listed.stderr);
  assert.equal(listed.stdout, "");
  assert.match(listed.stderr, /listed 0 DLQ records/);
});
