/**
 * Faults: PostgreSQL or Kafka goes away mid-run and comes back. These stop services, so they run
 * against the fault suite's own Kafka and PostgreSQL (tests/faults/_faults.ts), started once for this file.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import type { OrderEvent, UserEvent } from "../../lib/model.ts";
import {
  committedOffsets,
  createTestDatabase,
  diffTables,
  dlqSize,
  groupLag,
  killLeftovers,
  metricsAddress,
  pipelineNames,
  produceWorkload,
  type ReadRecord,
  readTables,
  readWholeTopic,
  referenceState,
  runCommand,
  type Running,
  seededEvents,
  startCommand,
  stopProcess,
  tally,
  topicSize,
  valuesOf,
  waitFor,
  workloadArgs,
} from "../_helpers.ts";
import {
  dlqReasons,
  FAULTS_BROKERS,
  FAULTS_DATABASE_URL,
  faultSeed,
  type HeldWrites,
  holdWrites,
  referenceOfWaves,
  report,
  services,
  SMALL_BATCHES,
  waitForCommitsBeyond,
  waitForDrain,
  waitForHeldBatch,
} from "./_faults.ts";

const SEED = faultSeed(31);

async function freshPipeline() {
  const db = await createTestDatabase(FAULTS_DATABASE_URL);
  const env = pipelineNames(db.url, FAULTS_BROKERS);
  return { db, env, topics: [env.USERS_TOPIC, env.ORDERS_TOPIC] };
}

/** A step that failed during its outage must not leave the next steps without the service it stopped. */
async function restoreServices() {
  await services("up", "kafka", "postgres");
}

/**
 * The consumer's lines while a batch it fetched waits for PostgreSQL (its step, or the read of its
 * partition's stored offset); an idle consumer's health check logs another line.
 */
const BATCH_WAITS = /waiting for PostgreSQL(; nothing is committed meanwhile| \(reading \S+'s stored offset\))/;
const BATCH_WAITS_ALL = new RegExp(BATCH_WAITS.source, "g");

/** The sum of the stored next offsets: how far the tables have applied the topics. */
async function appliedTotal(sql: postgres.Sql): Promise<number> {
  const [row] = await sql<{ total: number }[]>`select coalesce(sum(next_offset), 0)::int as total from cdc_offsets`;
  return row.total;
}

function eventsOf(records: ReadRecord[]) {
  return valuesOf(records).map((v) => JSON.parse(v));
}

Deno.test("outages of PostgreSQL and Kafka are waited out: nothing lost, the tables converge", async (t) => {
  await services("up", "kafka", "postgres");
  try {
    await t.step(
      "PostgreSQL stopped mid-drain, events published during the outage: the consumer waits with them in hand, commits nothing meanwhile, then converges",
      async () => {
        const { db, env, topics } = await freshPipeline();
        const runs: Running[] = [];
        try {
          // The second wave is published while PostgreSQL is down (Kafka is up): the consumer
          // fetches it but cannot apply it, so the outage strikes it mid-drain however fast it is.
          const before = { users: 2_000, orders: 4_000, seed: SEED };
          const during = { users: 2_000, orders: 4_000, seed: SEED + 100 };
          await produceWorkload(env, before);
          const consumer = startCommand("consume", [...SMALL_BATCHES, "--metrics-port", "0"], env);
          runs.push(consumer);
          const metricsUrl = await metricsAddress(consumer);
          const health = async () => {
            const response = await fetch(`${metricsUrl}/health`);
            return { status: response.status, body: await response.text() };
          };
          const committedBefore = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, FAULTS_BROKERS, 0);
          await services("down", "postgres");
          await produceWorkload(env, during);
          await waitFor(
            "the consumer to wait for PostgreSQL with a batch in hand",
            () => BATCH_WAITS.test(consumer.stderr()),
            30_000,
          ).catch((error) => {
            throw new Error(`${error.message}; the consumer's log ends with: ${consumer.stderr().slice(-3_000)}`);
          });
          // Kafka's committed offsets follow what PostgreSQL holds, within a second: once they have
          // caught up with what was applied before the outage, none may move while it lasts.
          const offsetsNow = async () =>
            JSON.stringify(await committedOffsets(env.CONSUMER_GROUP, topics, FAULTS_BROKERS));
          const baseline = await waitFor(
            "Kafka's advisory commits to catch up",
            async () => {
              const first = await offsetsNow();
              await new Promise((r) => setTimeout(r, 1_500));
              return first === await offsetsNow() ? first : undefined;
            },
            30_000,
            0,
          );
          const lagAtOutage = await groupLag(env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
          const outageStart = Date.now();
          let samples = 0, moved = 0, unhealthy = 0;
          while (Date.now() - outageStart < 6_000) {
            await new Promise((r) => setTimeout(r, 500));
            samples++;
            if (await offsetsNow() !== baseline) moved++;
            const { status, body } = await health();
            if (status === 503 && body.includes('"database":"down"')) unhealthy++;
          }
          const lagAtOutageEnd = await groupLag(env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
          await services("up", "postgres");
          await waitForDrain(consumer, env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
          // Drained and idle: the health check now rests on the consumer's own database ping.
          const healthAfter = await waitFor("/health to answer 200 again", async () => {
            const answer = await health();
            return answer.status === 200 ? answer : undefined;
          }, 30_000);
          const result = await stopProcess(consumer, "SIGTERM");
          assert.equal(result.code, 0, result.stderr);
          const expected = referenceOfWaves([before, during]);
          const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
          const dlq = await dlqSize(env, FAULTS_BROKERS);
          const waits = result.stderr.match(/waiting for PostgreSQL/g)?.length ?? 0;
          const heldBack = during.users + during.orders;
          report("database outage", {
            events: before.users + before.orders + heldBack,
            faults: `postgres stopped ~6s, ${heldBack} events published during it`,
            committedBeforeOutage: committedBefore,
            lagAtOutage,
            lagAtOutageEnd,
            batchWaitLines: result.stderr.match(BATCH_WAITS_ALL)?.length ?? 0,
            offsetSamplesDuringOutage: samples,
            samplesWhereOffsetsMoved: moved,
            healthSamples503: unhealthy,
            waitLogLines: waits,
            rowsCompared: expected.users.size + expected.orders.size,
            mismatches: mismatches.length,
            dlqRecords: dlq,
          });
          assert.ok(lagAtOutageEnd >= heldBack, "the consumer had the events published during the outage to apply");
          assert.equal(moved, 0, "the group's offsets stood still while PostgreSQL was down");
          assert.ok(unhealthy > 0, "/health answered 503 naming the database during the outage");
          assert.match(healthAfter!.body, /"database":"up"/);
          assert.deepEqual(mismatches, []);
          assert.equal(dlq, expected.rejected, "an outage dead-letters nothing");
        } finally {
          await killLeftovers(...runs);
          await restoreServices();
          await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
        }
      },
    );

    await t.step(
      "Kafka stopped mid-produce: the producer finishes or fails naming the cause, and a re-run completes the job",
      async () => {
        const { db, env } = await freshPipeline();
        const runs: Running[] = [];
        try {
          const users = 6_000, orders = 12_000;
          const args = workloadArgs({ users, orders, seed: SEED + 1 }, "--batch-size", "100");
          const producer = startCommand("produce", args, env);
          runs.push(producer);
          let producerExited = false;
          producer.done.then(() => (producerExited = true));
          const publishedBefore = await waitFor("the producer to publish something", async () => {
            const n = await topicSize(env.USERS_TOPIC, FAULTS_BROKERS);
            return n > 1_000 ? n : 0;
          }, 60_000);
          const stoppedMidProduce = !producerExited;
          await services("down", "kafka");
          await services("up", "kafka");
          const first = await producer.done;
          const firstLines = first.stderr.trim().split("\n");
          if (first.code !== 0) {
            assert.match(firstLines.at(-1)!, /failed: .*(Kafka|publish|connect|broker)/i, "a failure names its cause");
          }
          const firstRun = valuesOf([
            ...await readWholeTopic(env.USERS_TOPIC, 60_000, FAULTS_BROKERS),
            ...await readWholeTopic(env.ORDERS_TOPIC, 60_000, FAULTS_BROKERS),
          ]);
          const generated = seededEvents(SEED + 1, users, orders);
          const all = [...generated.userEvents, ...generated.orderEvents].map((e) => JSON.stringify(e));
          const firstCounts = tally(firstRun);
          const firstDuplicates = [...firstCounts.values()].reduce((s, n) => s + n - 1, 0);
          const firstLost = all.filter((v) => !firstCounts.has(v)).length;

          // The re-run republishes the same seeded stream; the log is then the first run's
          // records followed by all of them again, and the reference is the log as read back.
          const rerun = await runCommand("produce", args, env);
          assert.equal(rerun.code, 0, rerun.stderr);
          const userRecords = await readWholeTopic(env.USERS_TOPIC, 60_000, FAULTS_BROKERS);
          const orderRecords = await readWholeTopic(env.ORDERS_TOPIC, 60_000, FAULTS_BROKERS);
          const logCounts = tally(valuesOf([...userRecords, ...orderRecords]));
          const lostAfterRerun = all.filter((v) => !logCounts.has(v)).length;
          const consumed = await runCommand("consume", ["--idle-timeout", "2"], env);
          assert.equal(consumed.code, 0, consumed.stderr);
          const expected = referenceState(eventsOf(userRecords) as UserEvent[], eventsOf(orderRecords) as OrderEvent[]);
          const fromGenerated = referenceState(generated.userEvents, generated.orderEvents);
          const actual = await readTables(db.sql);
          const mismatches = diffTables(expected, actual, 1_000_000);
          report("broker outage mid-produce", {
            events: users + orders,
            faults: `kafka stopped and restarted after ${publishedBefore} user records`,
            stoppedMidProduce,
            firstRunExit: first.code,
            firstRunLastLine: firstLines.at(-1)!.slice(0, 160),
            firstRunRecords: firstRun.length,
            firstRunLost: firstLost,
            firstRunDuplicates: firstDuplicates,
            logRecordsAfterRerun: userRecords.length + orderRecords.length,
            lostAfterRerun,
            rowsCompared: expected.users.size + expected.orders.size,
            mismatches: mismatches.length,
          });
          assert.ok(stoppedMidProduce, "Kafka stopped while the producer was still publishing");
          // At-least-once: a batch whose acks the outage cut off is re-sent whole, so the log may
          // hold it twice (reported above); the tables below must not show it.
          if (first.code === 0) assert.equal(firstLost, 0, "a producer that exits 0 lost nothing");
          assert.equal(lostAfterRerun, 0, "after the re-run every generated event is in the log");
          assert.deepEqual(mismatches, []);
          assert.deepEqual(diffTables(fromGenerated, actual), [], "a duplicate suffix leaves the single run's state");
        } finally {
          await killLeftovers(...runs);
          await restoreServices();
          await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
        }
      },
    );

    // An outage longer than --order-wait once dead-lettered orders whose users were in the log;
    // their deadline now starts only after the users topic has caught up.
    await t.step({
      name: "Kafka stopped mid-consume, batches fetched but unapplied: the consumer reconnects and converges",
      fn: async () => {
        const { db, env, topics } = await freshPipeline();
        const runs: Running[] = [];
        let hold: HeldWrites | undefined;
        try {
          // The second wave is published while the tables are locked against writes: the consumer
          // fetches it but cannot apply it, so Kafka goes away while it holds unapplied batches.
          const before = { users: 2_000, orders: 4_000, seed: SEED + 2 };
          const held = { users: 2_000, orders: 4_000, seed: SEED + 102 };
          await produceWorkload(env, before);
          const consumer = startCommand("consume", SMALL_BATCHES, env);
          runs.push(consumer);
          const committedBefore = await waitForCommitsBeyond(env.CONSUMER_GROUP, topics, FAULTS_BROKERS, 0);
          hold = await holdWrites(db.url);
          await produceWorkload(env, held);
          const heldBatchesAtOutage = await waitForHeldBatch(db.sql);
          const logEnd = await topicSize(env.USERS_TOPIC, FAULTS_BROKERS) +
            await topicSize(env.ORDERS_TOPIC, FAULTS_BROKERS);
          const lagAtOutage = await groupLag(env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
          await services("down", "kafka");
          const unappliedAtOutage = logEnd - await appliedTotal(db.sql);
          // The batches in hand apply while Kafka is away; their offsets reach Kafka after it is back.
          await hold.release();
          await services("up", "kafka");
          await waitForDrain(consumer, env.CONSUMER_GROUP, topics, FAULTS_BROKERS);
          const result = await stopProcess(consumer, "SIGTERM");
          assert.equal(result.code, 0, result.stderr);
          const expected = referenceOfWaves([before, held]);
          const mismatches = diffTables(expected, await readTables(db.sql), 1_000_000);
          const dlq = await dlqSize(env, FAULTS_BROKERS);
          const heldBack = held.users + held.orders;
          report("broker outage mid-consume", {
            events: before.users + before.orders + heldBack,
            faults: `kafka stopped and restarted, ${heldBack} events fetched but held unapplied by a table lock`,
            committedBeforeOutage: committedBefore,
            lagAtOutage,
            unappliedAtOutage,
            heldBatchesAtOutage,
            kafkaWarnings: result.stderr.match(/WARN|warn/g)?.length ?? 0,
            dlqReasons: dlq > 0 ? await dlqReasons(env, FAULTS_BROKERS) : {},
            rowsCompared: expected.users.size + expected.orders.size,
            mismatches: mismatches.length,
            dlqRecords: dlq,
          });
          assert.ok(unappliedAtOutage >= heldBack, "the held events were not applied when Kafka went away");
          assert.deepEqual(mismatches, []);
          assert.equal(dlq, expected.rejected, "an outage dead-letters nothing");
        } finally {
          await hold?.release().catch((error) => console.error(`releasing the lock on the tables failed: ${error}`));
          await killLeftovers(...runs);
          await restoreServices();
          await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
        }
      },
    });
  } finally {
    await services("down", "kafka", "postgres");
  }
});
