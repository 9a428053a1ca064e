/**
 * Fault: the consumer is SIGKILLed at random moments while it drains a seeded workload and is
 * restarted each time. Only the consumer dies, so the shared services are used (fresh topics,
 * group and database).
 */
import assert from "node:assert/strict";
import { DLQ_HEADERS, dlqTopic } from "../../lib/consumer_dead_letter.ts";
import type { OrderEvent, UserEvent } from "../../lib/model.ts";
import {
  BROKERS,
  createTestDatabase,
  diffTables,
  killLeftovers,
  orderEvent,
  pipelineNames,
  produceWorkload,
  publishRaw,
  readTables,
  readWholeTopic,
  referenceState,
  type Running,
  seededEvents,
  startCommand,
  stopProcess,
  userEvent,
  waitFor,
} from "../_helpers.ts";
import {
  copyCommittedOffsets,
  faultSeed,
  report,
  seededRandom,
  SMALL_BATCHES,
  waitForCommitsBeyond,
  waitForDrain,
} from "./_faults.ts";

const USERS = 10_000;
const ORDERS = 20_000;
const KILLS = 5;
/** Updates and deletes of rows that never exist: rejections the DLQ must hold. */
const UNAPPLIABLE = 100;

function unappliable(): { users: UserEvent[]; orders: OrderEvent[] } {
  const users: UserEvent[] = [];
  const orders: OrderEvent[] = [];
  for (let i = 0; i < UNAPPLIABLE; i++) {
    const modified_at = `2025-06-01T00:00:${String(i % 60).padStart(2, "0")}Z`;
    if (i % 2) {
      users.push(userEvent(i % 4 === 1 ? "UPDATE" : "DELETE", crypto.randomUUID(), { name: "ghost", modified_at }));
    } else {
      orders.push(
        orderEvent(i % 4 === 0 ? "UPDATE" : "DELETE", crypto.randomUUID(), { order_status: "SHIPPED", modified_at }),
      );
    }
  }
  return { users, orders };
}

Deno.test("a consumer SIGKILLed at random moments and restarted converges to the reference state, and dead-letters every rejection at least once", async () => {
  const seed = faultSeed(Date.now() % 1_000_000);
  const random = seededRandom(seed);
  const db = await createTestDatabase();
  let consumer: Running | undefined;
  try {
    const env = pipelineNames(db.url);
    const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC];
    const ghosts = unappliable();
    const publishGhosts = async (from: number, to: number) => {
      const users = ghosts.users.slice(from, to), orders = ghosts.orders.slice(from, to);
      await publishRaw(env.USERS_TOPIC, 3, users.map((e) => ({ key: e.user_id, value: JSON.stringify(e) })));
      await publishRaw(env.ORDERS_TOPIC, 5, orders.map((e) => ({ key: e.order_id, value: JSON.stringify(e) })));
    };
    // A quarter before the workload, the rest after: rejections early and late in the log.
    await publishGhosts(0, UNAPPLIABLE / 4);
    await produceWorkload(env, { users: USERS, orders: ORDERS, seed });
    await publishGhosts(UNAPPLIABLE / 4, UNAPPLIABLE);

    // Small batches: many commits, so a kill lands between and inside them.
    const consumeArgs = SMALL_BATCHES;
    let group = env.CONSUMER_GROUP;
    consumer = startCommand("consume", consumeArgs, env);
    const kills: { afterCommitted: number; delayMs: number }[] = [];
    for (let kill = 1; kill <= KILLS; kill++) {
      // Kill k waits for k sixths of the log to be committed, never for all of it: a consumer
      // that drains faster than the kills come must not leave a kill waiting for progress that
      // cannot happen. The seeded delay puts the kill anywhere in the batches that follow.
      const threshold = Math.floor(((USERS + ORDERS + UNAPPLIABLE) * kill) / (KILLS + 1));
      const committed = await waitForCommitsBeyond(group, topics, BROKERS, threshold);
      const delayMs = Math.floor(random() * 300);
      await new Promise((r) => setTimeout(r, delayMs));
      const result = await stopProcess(consumer, "SIGKILL");
      assert.notEqual(result.code, 0, "the consumer died by SIGKILL, not by itself");
      kills.push({ afterCommitted: committed, delayMs });
      // The first restart rejoins the same group, as an operator's restart does, and waits out
      // the dead member's 30 s session (lib/consumer.ts fixes sessionTimeout). Later restarts
      // join a fresh group holding the dead one's committed offsets: the same starting point,
      // without that wait. A commit still in flight when the process died is at worst missed,
      // which only re-delivers more.
      if (kill > 1) group = await copyCommittedOffsets(group, topics, BROKERS);
      consumer = startCommand("consume", consumeArgs, { ...env, CONSUMER_GROUP: group });
    }
    // The last restart's group may hold offsets at the logs' ends already, so it shows no lag at once: its stop must
    // not come before it has even started (SIGTERM's default action would end it with 143, printing nothing).
    const last = consumer;
    await waitFor("the last restart to join its group", () => /joined group/.test(last.stderr()), 60_000);
    await waitForDrain(last, group, topics, BROKERS);
    const stopped = await stopProcess(last, "SIGTERM");
    assert.equal(stopped.code, 0, stopped.stderr);

    const { userEvents, orderEvents } = seededEvents(seed, USERS, ORDERS);
    const expected = referenceState([...ghosts.users, ...userEvents], [...ghosts.orders, ...orderEvents]);
    const actual = await readTables(db.sql);
    const mismatches = diffTables(expected, actual, 1_000_000);

    // A kill after the DLQ write but before the commit re-dead-letters on restart: the DLQ is
    // at-least-once, so each expected rejection must be there, duplicates are counted, not failed.
    const dlq = [
      ...await readWholeTopic(dlqTopic(env.USERS_TOPIC)),
      ...await readWholeTopic(dlqTopic(env.ORDERS_TOPIC)),
    ];
    const wanted = new Set(expected.rejectedValues);
    const seen = new Map<string, number>();
    for (const record of dlq) {
      const value = new TextDecoder().decode(record.value!);
      assert.ok(wanted.has(value), `unexpected DLQ record (${record.headers[DLQ_HEADERS.reason]}): ${value}`);
      seen.set(value, (seen.get(value) ?? 0) + 1);
    }
    const missing = [...wanted].filter((v) => !seen.has(v));
    const duplicates = [...seen.values()].reduce((sum, n) => sum + n - 1, 0);
    report("crash", {
      seed,
      events: USERS + ORDERS + UNAPPLIABLE,
      kills: kills.length,
      killPoints: kills.map((k) => `${k.afterCommitted}+${k.delayMs}ms`).join(","),
      rowsCompared: expected.users.size + expected.orders.size,
      mismatches: mismatches.length,
      expectedRejections: wanted.size,
      dlqRecords: dlq.length,
      dlqMissing: missing.length,
      dlqDuplicates: duplicates,
    });
    assert.deepEqual(mismatches, []);
    assert.equal(actual.users.size + actual.orders.size, expected.users.size + expected.orders.size);
    assert.deepEqual(missing, [], "every expected rejection is in the DLQ");
  } finally {
    await killLeftovers(consumer);
    await db.drop();
  }
});
