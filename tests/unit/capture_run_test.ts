/**
 * The capture run without services: PostgreSQL's side is a slot that resumes with a scripted
 * replication stream, Kafka's acknowledgements are held by the test. A stop publishes what is in
 * hand and acknowledges to the slot exactly what Kafka acknowledged; a failed send ends the run
 * with the send's own, typed error; a slot PostgreSQL refuses ends it with the slot's state.
 */
import assert from "node:assert/strict";
import { CaptureRun, type CaptureSummary } from "../../lib/capture.ts";
import { SlotInvalidatedError, TopicMissingError } from "../../lib/capture_errors.ts";
import { type CaptureConfig, loadCaptureConfig } from "../../lib/config.ts";
import { createLogger } from "../../lib/log.ts";
import { newCaptureStats } from "../../lib/stats.ts";
import { waitFor } from "../_helpers.ts";
import {
  HeldKafka,
  ResumingDatabase,
  ScriptedStream,
  sentIds,
  usersInserted,
  usersRelation,
} from "./_capture_parts.ts";

const CONFIG: CaptureConfig = (() => {
  const parsed = loadCaptureConfig(["--tables", "public.users"], {});
  assert.ok(!parsed.help);
  return parsed.config;
})();

/** A run over `stream` (its slot confirmed at 0x100, unless `database` says otherwise) and `kafka`, started; the test stops it with `stop`. */
function started(stream: ScriptedStream, kafka: HeldKafka, database = new ResumingDatabase(stream, 0x100n)) {
  const stop = new AbortController();
  const stats = newCaptureStats();
  const run = new CaptureRun(CONFIG, {
    logger: createLogger({ component: "test", write: () => {} }),
    stats,
    signal: stop.signal,
    progressEveryS: 3600,
    statusEveryS: 3600,
  }, { database, kafka });
  let summary: CaptureSummary | undefined;
  const done = run.run().then((s) => (summary = s));
  return { stop, stats, database, done, summary: () => summary };
}

Deno.test("a stop publishes what is in hand and acknowledges to the slot exactly what Kafka acknowledged", async () => {
  const stream = new ScriptedStream(0x240n);
  const kafka = new HeldKafka();
  stream.push(usersRelation(0x100n), ...usersInserted(1, 0x100n, [1, 2]));
  const { stop, stats, database, done, summary } = started(stream, kafka);
  await waitFor("the idle flush to send the first transaction", () => kafka.held === 1, 5_000, 5);
  assert.equal(stream.startedFrom, 0x100n, "the stream starts at the slot's confirmed position");
  stream.push(...usersInserted(2, 0x220n, [3]));
  await waitFor("the second transaction to be read", () => stream.delivered === 8, 5_000, 5);
  stop.abort();
  await waitFor("the stop to reach the stream", () => stream.statuses.some((s) => s.replyRequested), 5_000, 5);
  assert.equal(stats.acknowledgedLsn, 0x100n, "nothing Kafka holds unacknowledged is confirmed");
  kafka.acknowledge();
  await waitFor("the change in hand to be sent", () => kafka.held === 1 && kafka.acknowledged === 1, 5_000, 5);
  assert.equal(stats.acknowledgedLsn, 0x120n, "the first commit: what Kafka acknowledged so far");
  assert.equal(summary(), undefined, "the run waits for Kafka's last acknowledgement");
  kafka.acknowledge();
  await done;
  assert.deepEqual(sentIds(kafka), [1, 2, 3]);
  assert.equal(summary()?.acknowledgedLsn, "0/240", "the second commit's end: everything before it acknowledged");
  assert.deepEqual(summary()?.captured, { "users.c": 3 });
  assert.equal(stats.acknowledgedLsn, 0x240n);
  assert.deepEqual(stream.statuses.at(-1), { lsn: 0x240n, replyRequested: false }, "the slot is told at the end");
  assert.ok(stream.ended && database.ended && kafka.disconnected, "the run closes its stream and clients");
});

Deno.test("a failed send ends the run with the send's own error, typed, nothing past the slot's position confirmed", async () => {
  const stream = new ScriptedStream(0x120n);
  const failure = new TopicMissingError("cdc.public.users");
  const kafka = new HeldKafka(failure);
  stream.push(usersRelation(0x100n), ...usersInserted(1, 0x100n, [1]));
  const { stats, database, done } = started(stream, kafka);
  await assert.rejects(done, (error) => {
    assert.ok(error instanceof TopicMissingError);
    assert.equal(error, failure);
    return true;
  });
  assert.ok(stream.statuses.some((s) => s.replyRequested), "the failure woke the stream with a keepalive request");
  assert.equal(stats.acknowledgedLsn, 0x100n);
  assert.ok(stream.ended && database.ended && kafka.disconnected, "the run closes its stream and clients");
});

Deno.test("START_REPLICATION refused with 55000 ends the run with the slot's invalidation when the slot says so, else with the server's error", async () => {
  const refused = Object.assign(new Error('cannot read from logical replication slot "cdc_slot"'), { code: "55000" });
  const invalidated = new SlotInvalidatedError("cdc_slot", "wal_removed", "0/100", {
    name: "max_slot_wal_keep_size",
    value: "1MB",
  });
  for (const [slotInvalidated, expected] of [[true, invalidated], [false, refused]] as const) {
    const stream = new ScriptedStream(0x100n);
    stream.start = () => Promise.reject(refused);
    const database = new ResumingDatabase(stream, 0x100n);
    database.checkSlot = () => slotInvalidated ? Promise.reject(invalidated) : Promise.resolve();
    const { done } = started(stream, new HeldKafka(), database);
    await assert.rejects(done, (error) => error === expected);
    assert.ok(stream.ended && database.ended, "the run closes its stream and its pool");
  }
});
