/**
 * Faults of the capture: SIGKILLed several times, PostgreSQL restarted and Kafka stopped while
 * the consumer applies a seeded workload. In each, every committed change (recorded by an audit
 * trigger) is in the capture topics, in commit order per key, ending on the final row;
 * duplicates are counted, gaps fail the test. Then a slot PostgreSQL invalidated under
 * `max_slot_wal_keep_size`, a server setting, which is why it is here. Runs against the fault
 * suite's own services.
 */
import assert from "node:assert/strict";
import {
  createTestDatabase,
  groupLag,
  killLeftovers,
  type PipelineEnv,
  pipelineNames,
  produceWorkload,
  type Running,
  startCommand,
  stopProcess,
  topicSize,
  waitFor,
} from "../_helpers.ts";
import {
  assertStopsWithOneLine,
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

/** Writes WAL past the slot's limit, switching segments and checkpointing, until PostgreSQL invalidates `slot`. */
async function invalidateSlot(db: Awaited<ReturnType<typeof createTestDatabase>>, slot: string): Promise<void> {
  await db.sql`create table if not exists wal_filler (id bigserial primary key, filler text)`;
  // The slot may show 'unreserved' first: a checkpoint removes the segments it needs, and only then is it lost.
  await waitFor(
    `slot ${slot} to be invalidated`,
    async () => {
      await db.sql`insert into wal_filler (filler) select repeat(md5(g::text), 4) from generate_series(1, 20000) g`;
      await db.sql`select pg_switch_wal()`;
      await db.sql`checkpoint`;
      const [row] = await db.sql`select wal_status from pg_replication_slots where slot_name = ${slot}`;
      return row?.wal_status === "lost";
    },
    120_000,
    0,
  );
}

Deno.test("a slot invalidated by max_slot_wal_keep_size stops the capture with one line naming the setting and --new-snapshot, which recovers", async () => {
  await services("up", "kafka", "postgres");
  const db = await createTestDatabase(FAULTS_DATABASE_URL);
  const names = captureNames();
  const env: PipelineEnv = { ...pipelineNames(db.url, FAULTS_BROKERS), ...names };
  const runs: Running[] = [];
  try {
    const first = await startCapture(env);
    runs.push(first);
    assert.equal((await stopProcess(first)).code, 0, "the slot exists and its snapshot reached Kafka");
    await db.sql`alter system set max_slot_wal_keep_size = '1MB'`;
    await db.sql`select pg_reload_conf()`;
    await db.sql`insert into users (id, name, dob) values (gen_random_uuid(), 'made before the loss', '2000-01-01')`;
    await invalidateSlot(db, names.CAPTURE_SLOT);

    const stopped = startCommand("produce", ["capture"], env);
    runs.push(stopped);
    await assertStopsWithOneLine(
      stopped,
      new RegExp(
        `slot ${names.CAPTURE_SLOT} was invalidated by PostgreSQL \\(wal_removed, max_slot_wal_keep_size = 1MB\\): ` +
          `changes made since its confirmed position [0-9A-F]+/[0-9A-F]+ may be lost; run with --new-snapshot to ` +
          `replace it and publish every row anew, and raise max_slot_wal_keep_size so that it does not happen again$`,
      ),
    );

    await db.sql`alter system reset max_slot_wal_keep_size`;
    await db.sql`select pg_reload_conf()`;
    const recovered = await startCapture(env, ["--new-snapshot"]);
    runs.push(recovered);
    const result = await stopProcess(recovered);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /first snapshot published: 1 rows/, "a new slot and snapshot, on purpose");
  } finally {
    await db.sql`alter system reset max_slot_wal_keep_size`.catch(() => {});
    await db.sql`select pg_reload_conf()`.catch(() => {});
    await killLeftovers(...runs);
    await dropCaptureAndDatabase(db, env);
    await services("down", "kafka", "postgres");
  }
});
