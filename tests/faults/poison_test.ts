/**
 * Fault: poison records. A seeded workload with 5% malformed records of every kind docs/CONTRACT.md
 * lists, mixed in; each must land in `<topic>.dlq` once with its reason and source headers, and
 * every good record must apply. Nothing is stopped, so the shared services are used.
 */
import assert from "node:assert/strict";
import { DLQ_HEADERS, dlqTopic } from "../../lib/consumer_dead_letter.ts";
import {
  createTestDatabase,
  diffTables,
  orderEvent,
  pipelineNames,
  publishRaw,
  readTables,
  readWholeTopic,
  referenceState,
  runCommand,
  seededEvents,
  userEvent,
} from "../_helpers.ts";
import { faultSeed, report, seededRandom } from "./_faults.ts";

const USERS = 2_000;
const ORDERS = 4_000;
const UUID = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b";
const TS = "2025-07-03T10:00:00Z";

/** One kind of malformed record: its topic, its bytes, and the DLQ reason it must earn. */
interface PoisonKind {
  kind: string;
  topic: "users" | "orders";
  value: () => string | Uint8Array;
  reason: RegExp;
}

const KINDS: PoisonKind[] = [
  { kind: "invalid JSON", topic: "users", value: () => `{"event_type":"CREATE","user_id":`, reason: /valid JSON/ },
  { kind: "not an object", topic: "orders", value: () => `[1,2,3]`, reason: /a JSON object/ },
  {
    kind: "wrong type (name)",
    topic: "users",
    value: () => JSON.stringify(userEvent("UPDATE", UUID, { name: 42, modified_at: TS })),
    reason: /name must be a string/,
  },
  {
    kind: "wrong type (quantity)",
    topic: "orders",
    value: () =>
      JSON.stringify(orderEvent("CREATE", UUID, { user_id: UUID, quantity: "3", order_total: 1, placed_at: TS })),
    reason: /quantity must be an integer/,
  },
  {
    kind: "unknown event_type",
    topic: "users",
    value: () => JSON.stringify(userEvent("UPDATE", UUID, { event_type: "UPSERT", name: "x", modified_at: TS })),
    reason: /event_type must be CREATE, UPDATE or DELETE: got "UPSERT"/,
  },
  {
    kind: "bad UUID",
    topic: "orders",
    value: () => JSON.stringify(orderEvent("DELETE", "not-a-uuid")),
    reason: /order_id must be a UUID/,
  },
  {
    kind: "bad date",
    topic: "users",
    value: () => JSON.stringify(userEvent("CREATE", UUID, { name: "x", dob: "2025-02-30", created_at: TS })),
    reason: /dob must be a calendar date/,
  },
  {
    kind: "bad timestamp",
    topic: "orders",
    value: () => JSON.stringify(orderEvent("UPDATE", UUID, { modified_at: "2025-13-01T00:00Z" })),
    reason: /modified_at must be an RFC 3339 timestamp/,
  },
  {
    kind: "name over 50 characters",
    topic: "users",
    value: () => JSON.stringify(userEvent("UPDATE", UUID, { name: "n".repeat(51), modified_at: TS })),
    reason: /name must be a string of 1\.\.50 characters \(it has 51\)/,
  },
  {
    kind: "amount beyond DECIMAL(10,2)",
    topic: "orders",
    value: () =>
      JSON.stringify(
        orderEvent("CREATE", UUID, { user_id: UUID, quantity: 1, order_total: 123456789.5, placed_at: TS }),
      ),
    reason: /order_total must be a non-negative amount that fits DECIMAL\(10,2\)/,
  },
  {
    kind: "key not the entity id",
    topic: "users",
    value: () => JSON.stringify(userEvent("CREATE", UUID, { name: "x", created_at: TS })),
    reason: /record key must be the event's user_id "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b": got "poison-\d+"/,
  },
  {
    kind: "invalid UTF-8",
    topic: "users",
    value: () => new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]),
    reason: /UTF-8/,
  },
];

const HUGE: PoisonKind = {
  kind: "2 MB record",
  topic: "users",
  value: () => JSON.stringify(userEvent("CREATE", UUID, { name: "y".repeat(2_000_000) })),
  reason: /name must be a string of 1\.\.50 characters/,
};

Deno.test("5% poison records of every malformed kind each land in the DLQ once with reason and source headers, and every good record applies", async () => {
  const seed = faultSeed(17);
  const random = seededRandom(seed);
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const topicName = { users: env.USERS_TOPIC, orders: env.ORDERS_TOPIC };
    const { userEvents, orderEvents } = seededEvents(seed, USERS, ORDERS);
    const good = USERS + ORDERS;
    const poisonCount = Math.ceil(good * 0.05 / 0.95);
    const poison = new Map<string, PoisonKind>();
    for (let i = 0; i < poisonCount; i++) poison.set(`poison-${i}`, i === 0 ? HUGE : KINDS[i % KINDS.length]);

    // Poison goes in at seeded random places between the good records, whose order is kept.
    const streams = {
      users: userEvents.map((e) => ({ key: e.user_id, value: JSON.stringify(e) as string | Uint8Array })),
      orders: orderEvents.map((e) => ({ key: e.order_id, value: JSON.stringify(e) as string | Uint8Array })),
    };
    for (const [key, kind] of poison) {
      const stream = streams[kind.topic];
      stream.splice(Math.floor(random() * (stream.length + 1)), 0, { key, value: kind.value() });
    }
    for (const topic of ["users", "orders"] as const) {
      const stream = streams[topic];
      for (let i = 0; i < stream.length; i += 1_000) {
        await publishRaw(topicName[topic], topic === "users" ? 3 : 5, stream.slice(i, i + 1_000));
      }
    }

    const consumed = await runCommand("consume", ["--idle-timeout", "2", "--order-wait", "5"], env);
    assert.equal(consumed.code, 0, consumed.stderr);

    const expected = referenceState(userEvents, orderEvents);
    const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
    const problems: string[] = [];
    let matched = 0;
    for (const topic of ["users", "orders"] as const) {
      const source = new Map(
        (await readWholeTopic(topicName[topic])).filter((r) => poison.has(r.key!)).map((r) => [r.key!, r]),
      );
      const dlq = await readWholeTopic(dlqTopic(topicName[topic]));
      const seen = new Set<string>();
      for (const record of dlq) {
        const key = record.key!;
        const kind = poison.get(key);
        const from = source.get(key);
        const h = record.headers;
        if (!kind || !from) problems.push(`${topic}.dlq holds a record that is not poison: key ${key}`);
        else if (seen.has(key)) problems.push(`${topic}.dlq holds ${key} (${kind.kind}) twice`);
        else if (!kind.reason.test(h[DLQ_HEADERS.reason] ?? "")) {
          problems.push(`${key} (${kind.kind}): reason ${JSON.stringify(h[DLQ_HEADERS.reason])} !~ ${kind.reason}`);
        } else if (
          h[DLQ_HEADERS.topic] !== topicName[topic] || h[DLQ_HEADERS.partition] !== String(from.partition) ||
          h[DLQ_HEADERS.offset] !== from.offset
        ) {
          problems.push(
            `${key} (${kind.kind}): headers ${JSON.stringify(h)} != source ${from.partition}/${from.offset}`,
          );
        } else if (record.value!.length !== from.value!.length) {
          problems.push(`${key} (${kind.kind}): the DLQ value is not the original bytes`);
        } else matched++;
        seen.add(key);
      }
      for (const key of source.keys()) if (!seen.has(key)) problems.push(`${key} (${poison.get(key)!.kind}) missing`);
    }
    report("poison", {
      seed,
      events: good + poisonCount,
      poison: poisonCount,
      kinds: KINDS.length + 1,
      dlqMatchedOneToOne: matched,
      dlqProblems: problems.length,
      rowsCompared: expected.users.size + expected.orders.size,
      mismatches: mismatches.length,
    });
    assert.deepEqual(problems.slice(0, 20), []);
    assert.equal(matched, poisonCount);
    assert.deepEqual(mismatches, []);
  } finally {
    await db.drop();
  }
});
