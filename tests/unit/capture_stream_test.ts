/**
 * The stream follower without services: a scripted replication stream, the users table's catalog
 * and a Kafka whose acknowledgements the test holds. A quiet stream's changes go out after the idle
 * interval, held acknowledgements stop the reading, a stop ends it through a keepalive, and a
 * failed send reaches the follower's caller as the send's own error.
 */
import assert from "node:assert/strict";
import { AckingPublisher, AcknowledgedPosition } from "../../lib/capture_publisher.ts";
import { DebeziumEncoder } from "../../lib/capture_debezium.ts";
import { TopicMissingError } from "../../lib/capture_errors.ts";
import { StreamFollower } from "../../lib/capture_stream.ts";
import { createLogger } from "../../lib/log.ts";
import { waitFor } from "../_helpers.ts";
import { HeldKafka, ScriptedStream, sentIds, usersCatalog, usersInserted, usersRelation } from "./_capture_parts.ts";

/** A follower of `stream` publishing to `kafka`, and what the test stops it with. */
function following(stream: ScriptedStream, kafka: HeldKafka, maxUnacknowledgedBytes?: number) {
  const stop = new AbortController();
  const publisher = new AckingPublisher(new AcknowledgedPosition(), {
    send: (messages) => kafka.send(messages),
    maxBytes: () => kafka.maxBytes(),
    maxRecords: 100,
    maxUnacknowledgedBytes,
  });
  const follower = new StreamFollower({
    config: { tables: [{ schema: "public", table: "users" }], publication: "pub" },
    statusEveryS: 3600,
    logger: createLogger({ component: "test", write: () => {} }),
    catalog: usersCatalog,
    encoder: new DebeziumEncoder({ prefix: "cdc", database: "db", version: "test" }),
    publisher,
    signal: stop.signal,
  });
  return { publisher, stop, followed: follower.follow(stream) };
}

/** Lets every timer and promise due now run, without waiting for anything in particular. */
async function settle(turns = 5): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

Deno.test("a change followed by no more frames is sent after the idle interval, and its commit confirmed once acknowledged", async () => {
  const stream = new ScriptedStream(0x120n);
  const kafka = new HeldKafka();
  stream.push(usersRelation(0x100n), ...usersInserted(1, 0x100n, [1]));
  const { publisher, stop, followed } = following(stream, kafka);
  await waitFor("the idle flush to send the change", () => kafka.sent.length === 1, 5_000, 5);
  assert.deepEqual(sentIds(kafka), [1]);
  assert.equal(publisher.acknowledgedLsn, 0n, "nothing is confirmed before Kafka acknowledges");
  kafka.acknowledge();
  await waitFor("the commit to be confirmed", () => publisher.acknowledgedLsn === 0x120n, 5_000, 5);
  await waitFor("the status update to follow", () => stream.statuses.at(-1)?.lsn === 0x120n, 5_000, 5);
  stop.abort();
  await followed;
});

Deno.test("sends held unacknowledged stop the follower reading until Kafka acknowledges them", async () => {
  const stream = new ScriptedStream(0x240n);
  const kafka = new HeldKafka();
  stream.push(usersRelation(0x100n), ...usersInserted(1, 0x100n, [1]), ...usersInserted(2, 0x220n, [2]));
  // A single record fills the bound: the first change is sent, and reading waits for its acknowledgement.
  const { publisher, stop, followed } = following(stream, kafka, 1);
  await waitFor("the first change to be sent", () => kafka.held === 1, 5_000, 5);
  await settle();
  assert.equal(stream.delivered, 3, "relation, begin, insert: reading stopped at the full publisher");
  assert.equal(stream.queued, 4, "commit, and the second transaction, wait in the stream");
  kafka.acknowledge();
  await waitFor("the second change to be sent", () => kafka.held === 1 && kafka.acknowledged === 1, 5_000, 5);
  kafka.acknowledge();
  await waitFor("the second commit to be confirmed", () => publisher.acknowledgedLsn === 0x240n, 5_000, 5);
  assert.equal(stream.queued, 0);
  assert.deepEqual(sentIds(kafka), [1, 2]);
  stop.abort();
  await followed;
});

Deno.test("a stop asks the quiet stream for a keepalive and ends the reading on it, without ending the stream", async () => {
  const stream = new ScriptedStream(0x120n);
  const kafka = new HeldKafka();
  stream.push(usersRelation(0x100n), ...usersInserted(1, 0x100n, [1]));
  const { stop, followed } = following(stream, kafka);
  await waitFor("the frames to be read", () => stream.delivered === 4, 5_000, 5);
  stop.abort();
  await followed;
  assert.deepEqual(stream.statuses.at(-1), { lsn: 0n, replyRequested: true });
  assert.equal(stream.delivered, 5, "the keepalive that answered the request was the last frame read");
  assert.equal(stream.ended, false, "ending the stream is the run's");
});

Deno.test("a failed send ends the following with the send's own error, the stream woken by a keepalive, not broken off", async () => {
  const stream = new ScriptedStream(0x120n);
  const failure = new TopicMissingError("cdc.public.users");
  const kafka = new HeldKafka(failure);
  stream.push(usersRelation(0x100n), ...usersInserted(1, 0x100n, [1]));
  const { publisher, followed } = following(stream, kafka);
  await assert.rejects(followed, (error) => {
    assert.equal(error, failure);
    return true;
  });
  assert.ok(stream.statuses.some((s) => s.replyRequested), "the follower asked for a keepalive to wake");
  assert.equal(stream.ended, false, "the stream is not ended to carry the failure");
  assert.equal(publisher.acknowledgedLsn, 0n);
});
