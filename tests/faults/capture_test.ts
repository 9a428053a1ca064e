/**
 * Faults of the capture: SIGKILLed several times, PostgreSQL restarted and Kafka stopped while
 * the consumer applies a seeded workload. In each, every committed change (recorded by an audit
 * trigger) is in the capture topics, in commit order per key, ending on the final row;
 * duplicates are counted, gaps fail the test. Runs against the fault suite's own services.
 */
import assert from "node:assert/strict";
import {
  createTestDatabase,
  groupLag,
  killLeftovers,
  pipelineNames,
  produceWorkload,
  type Running,
  startCommand,
  stopProcess,
  topicSize,
  waitFor,
} from "../_helpers.ts";
import {
  type CaptureCheck,
  captureNames,
  dropCaptureAndDatabase,
  installAudit,
  settleCapture,
  startCapture,
} from "../_capture.ts";
import {
  FAULTS_BROKERS,
  FAULTS_DATABASE_URL,
  faultSeed,
  report,
  seededRandom,
  services,
  waitForCommitsBeyond,
  waitForDrain,
} from "./_faults.ts";

const SEED = faultSeed(41);
// Small batches: many transactions, so the faults land while the consumer is still applying.
const CONSUME_ARGS = ["--max-batch-bytes", "1024", "--concurrency", "1"];
const USERS = 4_000, ORDERS = 8_000;
/** SIGKILLs of the capture in the first step, and its workload as a multiple of the others'. */
const KILLS = 3, SIGKILL_SCALE = 8;

/** A database with the audit trigger, a seeded workload in Kafka, and fresh capture names. */
async function prepare(seed: number, users = USERS, orders = ORDERS) {
  const db = await createTestDatabase(FAULTS_DATABASE_URL);
  const names = captureNames();
  const env = { ...pipelineNames(db.url, FAULTS_BROKERS), ...names };
  await installAudit(db.sql);
  await produceWorkload(env, { users, orders, seed });
  return { db, env, names, topics: [env.USERS_TOPIC, env.ORDERS_TOPIC] };
}

async function capturedRecords(prefix: string): Promise<number> {
  return await topicSize(`${prefix}.public.users`, FAULTS_BROKERS) +
    await topicSize(`${prefix}.public.orders`, FAULTS_BROKERS);
}

function assertComplete(check: CaptureCheck, capture: string) {
  assert.deepEqual(check.gaps, [], "every committed change is in the topics, in commit order per key");
  assert.deepEqual(check.finalMismatches, [], "the last event of each key equals the final row");
  assert.ok(check.auditedChanges > USERS, `the workload changed rows (audited ${check.auditedChanges})`);
  assert.match(capture, /INFO {2}capture: done /, "the last capture exits with its summary");
}

/**
 * Stops `service` once the capture has published 1,000 records while the consumer applies, waits
 * for the capture to log `waitLine`, starts the service again, and checks the topics once the
 * consumer drained. Returns the capture's exit.
 */
async function outageMidStream(seed: number, service: "postgres" | "kafka", waitLine: RegExp) {
  const { db, env, names, topics } = await prepare(seed);
  const runs: Running[] = [];
  try {
    const capture = await startCapture(env);
    runs.push(capture);
    const consumer = startCommand("consume", CONSUME_ARGS, env);
    runs.push(consumer);
    await waitFor(
      "1,000 captured records",
      async () => (await capturedRecords(names.CAPTURE_TOPIC_PREFIX)) > 1_000,
      60_000,
      100,
    );
    await services("down", service);
    if (service === "kafka") {
      // Without Kafka the consumer applies nothing, and a capture that had caught up would have
      // nothing to send: a change made here must wait for Kafka in the capture's hands.
      await db.sql`update users set name = 'outage ' || left(name, 40)
        where id in (select id from users order by id limit 5)`;
    }
    await waitFor(`the capture to log ${waitLine}`, () => waitLine.test(capture.stderr()), 60_000);
    await services("up", service);
    await waitForDrain(consumer, env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
    assert.equal((await stopProcess(consumer, "SIGTERM")).code, 0);
    const check = await settleCapture(db.sql, names.CAPTURE_TOPIC_PREFIX, FAULTS_BROKERS);
    const result = await stopProcess(capture, "SIGTERM");
    report(`${service} stopped and started mid-stream`, {
      events: USERS + ORDERS,
      waitLines: result.stderr.match(new RegExp(waitLine, "g"))?.length ?? 0,
      reconnects: /reconnects=(\d+)/.exec(result.stderr)?.[1],
      auditedChanges: check.auditedChanges,
      captureEvents: check.events,
      duplicates: check.duplicates,
      gaps: check.gaps.length,
      finalMismatches: check.finalMismatches.length,
    });
    assert.equal(result.code, 0, result.stderr);
    assertComplete(check, result.stderr);
    return result;
  } finally {
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
  }
}

Deno.test("capture faults: SIGKILLs, a PostgreSQL restart and a Kafka stop lose no change", async (t) => {
  await services("up", "kafka", "postgres");
  try {
    await t.step("the capture SIGKILLed three times while the consumer applies: no change lost", async () => {
      // A larger workload: each restart of a SIGKILLed capture takes about 6 s on 2 busy cores (the killed
      // walsender lets go of the slot, the new one backs off), while the consumer applies 36,000 events in 15 s.
      const { db, env, names, topics } = await prepare(SEED, SIGKILL_SCALE * USERS, SIGKILL_SCALE * ORDERS);
      const runs: (Running | undefined)[] = [];
      try {
        const random = seededRandom(SEED);
        let capture = await startCapture(env);
        runs.push(capture);
        const consumer = startCommand("consume", CONSUME_ARGS, env);
        runs.push(consumer);
        await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, FAULTS_BROKERS, 0);
        // Kill k of KILLS comes once the consumer applied k/(KILLS+1) of the workload, so each lands while a
        // quarter of it is still to apply whatever the two processes' speeds; a restarted capture first
        // publishes 50..250 records, so each kill lands mid-stream too.
        const workload = (await Promise.all(topics.map((topic) => topicSize(topic, FAULTS_BROKERS))))
          .reduce((a, b) => a + b, 0);
        let kills = 0;
        const lagAtKills: number[] = [];
        for (; kills < KILLS; kills++) {
          const before = await capturedRecords(names.CAPTURE_TOPIC_PREFIX);
          const more = 50 + Math.floor(random() * 200);
          const lagAtMost = Math.floor(workload * (1 - (kills + 1) / (KILLS + 1)));
          await waitFor(
            `${more} more captured records and the consumer past ${kills + 1}/${KILLS + 1} of the workload`,
            async () =>
              (await capturedRecords(names.CAPTURE_TOPIC_PREFIX)) > before + more &&
              (await groupLag(env.CONSUMER_GROUP, topics, FAULTS_BROKERS)) <= lagAtMost,
            120_000,
            100,
          );
          await stopProcess(capture, "SIGKILL");
          lagAtKills.push(await groupLag(env.CONSUMER_GROUP, topics, FAULTS_BROKERS));
          // The consumer goes on while the capture is down: those changes wait in the slot.
          await new Promise((r) => setTimeout(r, 100 + random() * 400));
          capture = await startCapture(env);
          runs.push(capture);
        }
        await waitForDrain(consumer, env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
        assert.equal((await stopProcess(consumer, "SIGTERM")).code, 0);
        const check = await settleCapture(db.sql, names.CAPTURE_TOPIC_PREFIX, FAULTS_BROKERS);
        const last = await stopProcess(capture, "SIGTERM");
        report("capture SIGKILLed", {
          events: SIGKILL_SCALE * (USERS + ORDERS),
          kills,
          workload,
          consumerLagAtKills: lagAtKills,
          auditedChanges: check.auditedChanges,
          captureEvents: check.events,
          duplicates: check.duplicates,
          gaps: check.gaps.length,
          finalMismatches: check.finalMismatches.length,
        });
        assert.equal(last.code, 0, last.stderr);
        assert.ok(lagAtKills.every((lag) => lag > 0), "every kill came while the consumer was still applying");
        assertComplete(check, last.stderr);
        assert.doesNotMatch(last.stderr, /created slot/, "a restart resumes from the slot, it takes no new snapshot");
      } finally {
        await killLeftovers(...runs);
        await dropCaptureAndDatabase(db, env);
      }
    });

    await t.step(
      "PostgreSQL restarted mid-stream: the capture waits, resumes from the slot, loses nothing",
      async () => {
        const result = await outageMidStream(SEED + 1, "postgres", /waiting for PostgreSQL/);
        assert.match(result.stderr, /reconnects=[1-9]/, "the capture opened the stream again");
      },
    );

    await t.step(
      "Kafka stopped mid-stream: the capture waits, acknowledges nothing unsent, loses nothing",
      async () => {
        await outageMidStream(SEED + 2, "kafka", /send failed, retrying/);
      },
    );
  } finally {
    await services("down", "kafka", "postgres");
  }
});
