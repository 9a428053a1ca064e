/**
 * Fault: the group rebalances mid-drain. A second and a third consumer join, one leaves with
 * SIGTERM and one is SIGKILLed; the final state must be the one consumer's. Only consumers
 * die, so the shared services are used.
 */
import assert from "node:assert/strict";
import {
  BROKERS,
  createTestDatabase,
  diffTables,
  dlqSize,
  groupLag,
  killLeftovers,
  pipelineNames,
  readTables,
  referenceState,
  type Running,
  seededEvents,
  startCommand,
  stopProcess,
  waitFor,
  workloadArgs,
} from "../_helpers.ts";
import { dlqReasons, faultSeed, report, SMALL_BATCHES, waitForCommitsBeyond, waitForDrain } from "./_faults.ts";

const USERS = 8_000;
const ORDERS = 16_000;

Deno.test("consumers joining, leaving (SIGTERM) and dying (SIGKILL) mid-drain reach the same state as one consumer", async () => {
  const seed = faultSeed(23);
  const db = await createTestDatabase();
  const runs: Running[] = [];
  try {
    const env = pipelineNames(db.url);
    const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC];
    // The default 30 s order wait: the SIGKILLed member's partitions stall until its session ends,
    // and orders waiting for users in them must not expire meanwhile.
    const consumeArgs = SMALL_BATCHES;
    const first = startCommand("consume", consumeArgs, env);
    runs.push(first);
    // Publishing while the group consumes keeps the drain going through every membership change.
    const producer = startCommand(
      "produce",
      workloadArgs({ users: USERS, orders: ORDERS, seed }, "--batch-size", "100"),
      env,
    );
    runs.push(producer);
    const lagAt: Record<string, number> = {};
    let committed = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, 0);

    const second = startCommand("consume", consumeArgs, env);
    const third = startCommand("consume", consumeArgs, env);
    runs.push(second, third);
    lagAt.join = await groupLag(env.CONSUMER_GROUP, topics);
    await waitFor(
      "the second and third consumers to join the group",
      () => /joined group/.test(second.stderr()) && /joined group/.test(third.stderr()),
      90_000,
    ).catch((error) => {
      const tails = [first, second, third].map((run, i) => `consumer ${i + 1}:\n${run.stderr().slice(-3000)}`);
      throw new Error(`${error.message}\n${tails.join("\n")}`);
    });
    // A drain that finished already is progress too: the group cannot commit beyond the whole log.
    committed = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, committed, 90_000, USERS + ORDERS);

    lagAt.sigterm = await groupLag(env.CONSUMER_GROUP, topics);
    const left = await stopProcess(second, "SIGTERM");
    assert.equal(left.code, 0, left.stderr);
    // A drain that finished already is progress too: the group cannot commit beyond the whole log.
    committed = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, committed, 90_000, USERS + ORDERS);

    lagAt.sigkill = await groupLag(env.CONSUMER_GROUP, topics);
    const killed = await stopProcess(third, "SIGKILL");
    assert.notEqual(killed.code, 0);

    const produced = await producer.done;
    assert.equal(produced.code, 0, produced.stderr);
    await waitForDrain(first, env.CONSUMER_GROUP, topics, BROKERS);
    const last = await stopProcess(first, "SIGTERM");
    assert.equal(last.code, 0, last.stderr);

    const { userEvents, orderEvents } = seededEvents(seed, USERS, ORDERS);
    const expected = referenceState(userEvents, orderEvents);
    const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
    const dlq = await dlqSize(env);
    const joins = (log: string) => log.match(/joined group/g)?.length ?? 0;
    report("rebalance", {
      seed,
      events: USERS + ORDERS,
      faults: "2 joins, 1 SIGTERM, 1 SIGKILL",
      lagAtFault: lagAt,
      groupJoinsSeen: { first: joins(last.stderr), second: joins(left.stderr), third: joins(killed.stderr) },
      rowsCompared: expected.users.size + expected.orders.size,
      mismatches: mismatches.length,
      dlqRecords: dlq,
      dlqReasons: dlq > 0 ? await dlqReasons(env, BROKERS) : {},
    });
    assert.deepEqual(mismatches, []);
    assert.equal(dlq, expected.rejected);
  } finally {
    await killLeftovers(...runs);
    await db.drop();
  }
});
