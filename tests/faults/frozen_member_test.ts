/**
 * Faults of liveness in the group: a member frozen (SIGSTOP) inside its batch transaction for
 * longer than the session timeout, a member joining while that transaction is open, and ten
 * members joining mid-drain at once. Only consumers are stopped, so the shared services are used.
 */
import assert from "node:assert/strict";
import {
  BROKERS,
  createTestDatabase,
  diffTables,
  dlqSize,
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
import { faultSeed, report, SMALL_BATCHES, waitForCommitsBeyond, waitForDrain } from "./_faults.ts";

/** Short enough to keep the test fast; the broker's minimum is 6 s. */
const SESSION_TIMEOUT_S = 10;

/** The sum of the stored next offsets: how far the tables have applied the topics. */
async function appliedTotal(sql: Awaited<ReturnType<typeof createTestDatabase>>["sql"]): Promise<number> {
  const [row] = await sql<{ total: number }[]>`select coalesce(sum(next_offset), 0)::int as total from cdc_offsets`;
  return row.total;
}

/**
 * Stops `consumer` with SIGSTOP at a moment its batch transaction is open, having claimed a
 * partition's row in cdc_offsets: PostgreSQL then shows one of its sessions idle in transaction
 * holding a lock on cdc_offsets. Returns the attempts it took.
 */
async function freezeInsideBatch(
  consumer: Running,
  sql: Awaited<ReturnType<typeof createTestDatabase>>["sql"],
): Promise<number> {
  for (let attempt = 1; attempt <= 200; attempt++) {
    consumer.process.kill("SIGSTOP");
    const inBatch = await waitFor(
      "a session idle in a transaction",
      async () => {
        const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from pg_stat_activity a join pg_locks l on l.pid = a.pid
        where a.datname = current_database() and a.application_name = 'cdc-pipeline'
          and a.state = 'idle in transaction' and l.relation = 'cdc_offsets'::regclass`;
        return row.n > 0 ? true : undefined;
      },
      300,
      50,
    ).catch(() => false);
    if (inBatch) return attempt;
    const before = await appliedTotal(sql);
    consumer.process.kill("SIGCONT");
    // Let it commit at least once more, so the next try catches another moment of its work.
    await waitFor("the consumer to apply again", async () => (await appliedTotal(sql)) > before, 30_000, 20);
  }
  throw new Error("the consumer was never caught inside a batch transaction in 200 attempts");
}

Deno.test("a member frozen inside its batch past the session timeout: the new owner applies during the freeze, a member joins meanwhile, the resumed member rejoins without fencing it, and the tables equal the reference", async () => {
  const seed = faultSeed(29);
  const [users, orders] = [6_000, 12_000];
  const db = await createTestDatabase();
  const runs: Running[] = [];
  try {
    const env = pipelineNames(db.url);
    const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC];
    // Small batches: the drain takes many transactions, so one can be caught open; publishing
    // while the group consumes keeps the member busy through the freeze attempts.
    const consumeArgs = [
      "--max-batch-bytes",
      "4096",
      "--concurrency",
      "2",
      "--session-timeout",
      `${SESSION_TIMEOUT_S}`,
    ];
    const frozen = startCommand("consume", consumeArgs, env);
    runs.push(frozen);
    const producer = startCommand("produce", workloadArgs({ users, orders, seed }, "--batch-size", "200"), env);
    runs.push(producer);
    await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, 0);
    const attempts = await freezeInsideBatch(frozen, db.sql);
    const frozenAt = performance.now();
    const appliedAtFreeze = await appliedTotal(db.sql);

    // Joins while the frozen member's transaction is open: its schema step must not wait on it.
    const owner = startCommand("consume", consumeArgs, env);
    runs.push(owner);
    await waitFor("the new member to join the group", () => /joined group/.test(owner.stderr()), 60_000);
    const joinedS = (performance.now() - frozenAt) / 1000;
    await waitFor(
      "the new owner to apply while the member is frozen",
      async () => {
        if (!/joined group/.test(owner.stderr())) return false;
        return (await appliedTotal(db.sql)) > appliedAtFreeze;
      },
      60_000,
      250,
    ).catch((error) => {
      throw new Error(`${error.message}\nnew owner's log:\n${owner.stderr().slice(-3000)}`);
    });
    const progressS = (performance.now() - frozenAt) / 1000;
    // Frozen well past the session timeout, while the new owner keeps applying.
    await waitFor(
      "more progress during the freeze",
      async () =>
        performance.now() - frozenAt > (SESSION_TIMEOUT_S + 5) * 1000 &&
        (await appliedTotal(db.sql)) > appliedAtFreeze + 200,
    );
    const appliedDuringFreeze = (await appliedTotal(db.sql)) - appliedAtFreeze;
    const frozenS = (performance.now() - frozenAt) / 1000;
    const ownerLogBeforeResume = owner.stderr().length;
    frozen.process.kill("SIGCONT");
    // It was dropped from the group while frozen: it must find that out and join again.
    await waitFor(
      "the resumed member to rejoin",
      () => (frozen.stderr().match(/joined group/g)?.length ?? 0) >= 2,
      60_000,
    )
      .catch((error) => {
        throw new Error(`${error.message}\nresumed member's log:\n${frozen.stderr().slice(-3000)}`);
      });

    const published = await producer.done;
    assert.equal(published.code, 0, published.stderr);
    await waitForDrain(owner, env.CONSUMER_GROUP, topics, BROKERS);
    const resumed = await stopProcess(frozen, "SIGTERM");
    const stayed = await stopProcess(owner, "SIGTERM");
    assert.equal(resumed.code, 0, resumed.stderr.slice(-3000));
    assert.equal(stayed.code, 0, stayed.stderr.slice(-3000));

    const { userEvents, orderEvents } = seededEvents(seed, users, orders);
    const expected = referenceState(userEvents, orderEvents);
    const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
    const dlq = await dlqSize(env);
    const count = (log: string, pattern: RegExp) => log.match(pattern)?.length ?? 0;
    const fencedOwner = count(stayed.stderr.slice(ownerLogBeforeResume), /fenced/g);
    report("frozen member", {
      seed,
      events: users + orders,
      sessionTimeoutS: SESSION_TIMEOUT_S,
      freezeAttempts: attempts,
      newMemberJoinedAfterS: Math.round(joinedS * 10) / 10,
      newOwnerAppliedAfterS: Math.round(progressS * 10) / 10,
      frozenForS: Math.round(frozenS * 10) / 10,
      appliedDuringFreeze,
      resumedMemberGaveUp: resumed.stderr.split("\n").filter((l) => /fenced|rebalanc|waiting for PostgreSQL/.test(l))
        .map((l) => l.replace(/^\S+ \S+\s+consume: /, "").slice(0, 160)),
      resumedMemberJoins: count(resumed.stderr, /joined group/g),
      newOwnerFencedAfterResume: fencedOwner,
      mismatches: mismatches.length,
      dlqRecords: dlq,
    });
    // The bound: the session timeout for the group to move the partitions (PostgreSQL ends the
    // frozen transaction within the same time, the two overlap), the lock timeout of a claim
    // that started just before, and slack for a rebalance and a retry's backoff on a busy machine.
    const boundS = SESSION_TIMEOUT_S + SESSION_TIMEOUT_S / 3 + 15;
    assert.ok(progressS < boundS, `the new owner applied only after ${progressS} s, not within ${boundS} s`);
    // Its held batch is given up (the heartbeat before its retry reports the rebalance) or fenced
    // (its claim finds the offset moved); it commits it only if its partition came back to it
    // unchanged, which applies nothing twice either.
    assert.doesNotMatch(resumed.stderr, /failed:/);
    assert.equal(fencedOwner, 0, `the new owner was fenced after the resume:\n${stayed.stderr.slice(-3000)}`);
    assert.doesNotMatch(resumed.stderr + stayed.stderr, /40P01|deadlock|failed:/);
    assert.deepEqual(mismatches, []);
    assert.equal(dlq, expected.rejected);
  } finally {
    for (const run of runs) {
      try {
        run.process.kill("SIGCONT");
      } catch {
        // it has exited
      }
    }
    await killLeftovers(...runs);
    await db.drop();
  }
});

Deno.test("ten consumers joining mid-drain at once all join and stop cleanly, none dies on the schema step, and the tables equal the reference", async () => {
  const seed = faultSeed(31);
  const [users, orders] = [4_000, 8_000];
  const db = await createTestDatabase();
  const runs: Running[] = [];
  try {
    const env = pipelineNames(db.url);
    const topics = [env.USERS_TOPIC, env.ORDERS_TOPIC];
    const consumeArgs = SMALL_BATCHES;
    const first = startCommand("consume", consumeArgs, env);
    runs.push(first);
    const producer = startCommand("produce", workloadArgs({ users, orders, seed }, "--batch-size", "100"), env);
    runs.push(producer);
    await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, BROKERS, 0);
    const joiners = Array.from({ length: 10 }, () => startCommand("consume", consumeArgs, env));
    runs.push(...joiners);
    await waitFor("all ten to join the group", () => joiners.every((j) => /joined group/.test(j.stderr())), 120_000)
      .catch((error) => {
        const tails = joiners.map((j, i) => `joiner ${i + 1}:\n${j.stderr().slice(-1500)}`);
        throw new Error(`${error.message}\n${tails.join("\n")}`);
      });
    const produced = await producer.done;
    assert.equal(produced.code, 0, produced.stderr);
    await waitForDrain(first, env.CONSUMER_GROUP, topics, BROKERS, 180_000);
    const results = await Promise.all([first, ...joiners].map((run) => stopProcess(run, "SIGTERM")));
    const exits = results.map((r) => r.code);
    const { userEvents, orderEvents } = seededEvents(seed, users, orders);
    const expected = referenceState(userEvents, orderEvents);
    const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
    report("ten joins", { seed, events: users + orders, exits, mismatches: mismatches.length });
    for (const [i, result] of results.entries()) {
      assert.equal(result.code, 0, `consumer ${i}: ${result.stderr.slice(-3000)}`);
      assert.doesNotMatch(result.stderr, /40P01|deadlock/, `consumer ${i}`);
    }
    assert.deepEqual(mismatches, []);
  } finally {
    await killLeftovers(...runs);
    await db.drop();
  }
});
