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
  produceWorkload,
  readTables,
  type Running,
  startCommand,
  stopProcess,
  waitFor,
  type Workload,
} from "../_helpers.ts";
import {
  dlqReasons,
  faultSeed,
  type HeldWrites,
  holdWrites,
  referenceOfWaves,
  report,
  sessionsNamed,
  SMALL_BATCHES,
  waitForCommitsBeyond,
  waitForDrain,
  waitForHeldBatch,
} from "./_faults.ts";

/**
 * The SIGKILLed member's partitions stall until its session ends: 10 s (the broker's minimum is
 * 6 s) keeps the test fast and well inside the default 30 s an order waits for its user.
 */
const SESSION_TIMEOUT_S = 10;

Deno.test("consumers joining, leaving (SIGTERM) and dying (SIGKILL) while members hold unapplied batches reach the same state as one consumer", async () => {
  const seed = faultSeed(23);
  // One wave to start on, then one published before each membership change: each is its own
  // seeded workload, so the expected state is exactly that of the four published in turn.
  const waves: Workload[] = [0, 1, 2, 3].map((i) => ({ users: 2_000, orders: 4_000, seed: seed + i }));
  const db = await createTestDatabase();
  const runs: Running[] = [];
  let hold: HeldWrites | undefined;
  try {
    const env = pipelineNames(db.url);
    const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC];
    const consumer = (name: string) => {
      const run = startCommand("consume", [...SMALL_BATCHES, "--session-timeout", `${SESSION_TIMEOUT_S}`], {
        ...env,
        DATABASE_URL: sessionsNamed(db.url, name),
      });
      runs.push(run);
      return run;
    };
    let published = 0;
    const publish = async (wave: Workload) => {
      await produceWorkload(env, wave);
      published += wave.users + wave.orders;
    };
    const lagAt: Record<string, number> = {};
    const heldAt: Record<string, number> = {};
    /**
     * Locks the tables, publishes the next wave and waits until `member` holds a batch of it that
     * it cannot apply: the fault that follows strikes mid-drain by construction, at a lag of at
     * least the wave.
     */
    const backlogFor = async (fault: string, member: string, wave: Workload) => {
      hold = await holdWrites(db.url);
      await publish(wave);
      heldAt[fault] = await waitForHeldBatch(db.sql, member);
    };

    const first = consumer("member-1");
    await publish(waves[0]);
    let committed = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, 0);

    await backlogFor("join", "member-1", waves[1]);
    const second = consumer("member-2");
    const third = consumer("member-3");
    // The first member's held batch times out on the lock (a third of the session), finds the
    // group rebalancing and rejoins: the joins complete with the backlog still unapplied.
    await waitFor(
      "the second and third consumers to join the group",
      () => /joined group/.test(second.stderr()) && /joined group/.test(third.stderr()),
      90_000,
    ).catch((error) => {
      const tails = [first, second, third].map((run, i) => `consumer ${i + 1}:\n${run.stderr().slice(-3000)}`);
      throw new Error(`${error.message}\n${tails.join("\n")}`);
    });
    lagAt.join = await groupLag(env.CONSUMER_GROUP, topics);
    await hold!.release();
    committed = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, committed, 90_000, published);

    await backlogFor("sigterm", "member-2", waves[2]);
    lagAt.sigterm = await groupLag(env.CONSUMER_GROUP, topics);
    second.process.kill("SIGTERM");
    // Released only now, so the leaving member is told to stop with its batch in hand.
    await hold!.release();
    const left = await second.done;
    assert.equal(left.code, 0, left.stderr);
    committed = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, committed, 90_000, published);

    await backlogFor("sigkill", "member-3", waves[3]);
    lagAt.sigkill = await groupLag(env.CONSUMER_GROUP, topics);
    const killed = await stopProcess(third, "SIGKILL");
    assert.notEqual(killed.code, 0);
    await hold!.release();

    await waitForDrain(first, env.CONSUMER_GROUP, topics, BROKERS);
    const last = await stopProcess(first, "SIGTERM");
    assert.equal(last.code, 0, last.stderr);

    const expected = referenceOfWaves(waves);
    const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
    const dlq = await dlqSize(env);
    const joins = (log: string) => log.match(/joined group/g)?.length ?? 0;
    report("rebalance", {
      seed,
      events: published,
      faults: "2 joins, 1 SIGTERM, 1 SIGKILL, each after a wave of 6000 held unapplied by a table lock",
      lagAtFault: lagAt,
      heldBatchesOfFaultedMember: heldAt,
      groupJoinsSeen: { first: joins(last.stderr), second: joins(left.stderr), third: joins(killed.stderr) },
      rowsCompared: expected.users.size + expected.orders.size,
      mismatches: mismatches.length,
      dlqRecords: dlq,
      dlqReasons: dlq > 0 ? await dlqReasons(env, BROKERS) : {},
    });
    for (const [fault, wave] of [["join", waves[1]], ["sigterm", waves[2]], ["sigkill", waves[3]]] as const) {
      assert.ok(lagAt[fault] >= wave.users + wave.orders, `the ${fault} struck with the wave before it unapplied`);
    }
    assert.deepEqual(mismatches, []);
    assert.equal(dlq, expected.rejected);
  } finally {
    await hold?.release().catch((error) => console.error(`releasing the lock on the tables failed: ${error}`));
    await killLeftovers(...runs);
    await db.drop();
  }
});
