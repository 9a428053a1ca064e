/**
 * The change reader on replication frames built byte by byte, and the acking publisher it feeds:
 * commit boundaries, the position that may be confirmed only once Kafka acknowledged what came
 * before it, Relation messages mid-stream, a key change, and sends split by bytes.
 */
import assert from "node:assert/strict";
import { AckingPublisher, AcknowledgedPosition } from "../../lib/capture_publisher.ts";
import { recordBytes } from "../../lib/capture_batches.ts";
import { type CaptureRecord, type DebeziumEncoder, encodeOrStop, FramedJson } from "../../lib/capture_debezium.ts";
import { EncodingError, RecordTooLargeError, UnencodableChangeError } from "../../lib/capture_errors.ts";
import { ChangeReader, type StreamEvent } from "../../lib/capture_reader.ts";
import { PG_EPOCH_OFFSET_US } from "../../lib/capture_pgoutput.ts";
import type { TopicMessages } from "../../lib/kafka_producer.ts";
import { begin, commit, del, insert, keepalive, message, relation, update, xlog } from "./_frames.ts";

const USERS: [string, number, number, boolean][] = [["id", 23, -1, true], ["name", 1043, -1, false]];
/** The table the publisher is told each change is of. */
const USERS_TABLE = { schema: "public", table: "users" };

/** A send that resolves only when the test says so, recording what it was given. */
function controlledSend() {
  const sent: TopicMessages[][] = [];
  const waiting: (() => void)[] = [];
  return {
    sent,
    send: (messages: TopicMessages[]) => {
      sent.push(messages);
      return new Promise<void>((resolve) => waiting.push(resolve));
    },
    /** Acknowledges the oldest send not yet acknowledged, and lets the publisher see it. */
    async acknowledge() {
      while (!waiting.length) await new Promise((r) => setTimeout(r, 1));
      waiting.shift()!();
      await new Promise((r) => setTimeout(r, 1));
    },
  };
}

/** A payload-only value of `text`. */
function framed(text: string): FramedJson {
  return new FramedJson(new Uint8Array(), text, new Uint8Array());
}

function record(key: string, bytes = 10): CaptureRecord {
  return { topic: "t", key, value: framed("v".repeat(bytes)) };
}

/** Reads frames and feeds changes and boundaries to the publisher, as the capture does. */
function feed(reader: ChangeReader, publisher: AckingPublisher, frames: Uint8Array[]): StreamEvent[] {
  const events = frames.map((f) => reader.read(f));
  for (const event of events) {
    if (event.type === "change") publisher.add([record(String(event.change.after?.[0] ?? "x"))], USERS_TABLE, "c");
    if (event.type === "commit") publisher.confirmableAt(event.endLsn);
    if (event.type === "keepalive" && event.confirmable !== null) publisher.confirmableAt(event.confirmable);
  }
  return events;
}

Deno.test("a transaction's changes carry its xid, commit time and LSNs, and its commit is a boundary at its end LSN", () => {
  const reader = new ChangeReader();
  const events = [
    xlog(0x100n, relation(7, "public", "users", USERS)),
    xlog(0x100n, begin(901, 5_000_000n)),
    xlog(0x110n, insert(7, ["1", "Ann"])),
    xlog(0x120n, insert(7, ["2", "Bo"])),
    xlog(0x130n, commit(0x130n, 0x140n)),
    xlog(0x150n, begin(902, 6_000_000n)),
    xlog(0x160n, del(7, ["1", null])),
    xlog(0x170n, commit(0x170n, 0x180n)),
  ].map((f) => reader.read(f));
  const changes = events.filter((e) => e.type === "change");
  assert.deepEqual(changes.map((e) => e.type === "change" && [e.change.op, e.change.source.txId, e.lsn]), [
    ["c", 901, 0x110n],
    ["c", 901, 0x120n],
    ["d", 902, 0x160n],
  ]);
  const first = changes[0].type === "change" ? changes[0].change : undefined;
  assert.equal(first?.source.tsUs, PG_EPOCH_OFFSET_US + 5_000_000n);
  assert.equal(first?.source.lastCommitLsn, null);
  const third = changes[2].type === "change" ? changes[2].change : undefined;
  assert.equal(third?.source.lastCommitLsn, 0x140n, "sequence names the previous commit's end");
  assert.deepEqual(third?.before, ["1", null]);
  assert.deepEqual(events.filter((e) => e.type === "commit"), [
    { type: "commit", endLsn: 0x140n },
    { type: "commit", endLsn: 0x180n },
  ]);
  assert.equal(reader.inTransaction, false);
});

Deno.test("a transactional logical decoding Message carries its prefix, content and its transaction's source", () => {
  const reader = new ChangeReader();
  reader.read(xlog(0x200n, begin(905, 7_000_000n)));
  const event = reader.read(xlog(0x210n, message("cdc-pipeline", "c1:open")));
  assert.equal(event.type, "message");
  if (event.type !== "message") return;
  assert.equal(event.prefix, "cdc-pipeline");
  assert.equal(new TextDecoder().decode(event.content), "c1:open");
  assert.deepEqual(event.source, {
    tsUs: PG_EPOCH_OFFSET_US + 7_000_000n,
    txId: 905,
    lsn: 0x210n,
    lastCommitLsn: null,
  });
});

Deno.test("a commit's end LSN is acknowledged only after Kafka acknowledged every record before it", async () => {
  const kafka = controlledSend();
  const position = new AcknowledgedPosition(0x10n);
  const publisher = new AckingPublisher(position, { send: kafka.send, maxBytes: () => 1_000_000, maxRecords: 100 });
  const reader = new ChangeReader();
  feed(reader, publisher, [
    xlog(0x100n, relation(7, "public", "users", USERS)),
    xlog(0x100n, begin(1, 0n)),
    xlog(0x110n, insert(7, ["1", "Ann"])),
    xlog(0x120n, commit(0x120n, 0x130n)),
  ]);
  const firstFlush = publisher.flush();
  feed(reader, publisher, [xlog(0x140n, begin(2, 0n)), xlog(0x150n, insert(7, ["2", "Bo"]))]);
  assert.equal(position.lsn, 0x10n, "nothing is acknowledged while the first send is in flight");
  const secondFlush = publisher.flush();
  await kafka.acknowledge();
  await firstFlush;
  assert.equal(position.lsn, 0x130n, "the first commit, whose record Kafka acknowledged");
  feed(reader, publisher, [xlog(0x160n, commit(0x160n, 0x170n))]);
  assert.equal(position.lsn, 0x130n, "the second commit's record is still in flight");
  await kafka.acknowledge();
  await secondFlush;
  assert.equal(position.lsn, 0x170n);
  assert.equal(publisher.unacknowledged, 0);
});

Deno.test("a keepalive between transactions becomes acknowledged once what came before is; inside one it never does", async () => {
  const kafka = controlledSend();
  const position = new AcknowledgedPosition();
  const publisher = new AckingPublisher(position, { send: kafka.send, maxBytes: () => 1_000_000, maxRecords: 100 });
  const reader = new ChangeReader();
  const events = feed(reader, publisher, [
    xlog(0x100n, relation(7, "public", "users", USERS)),
    xlog(0x100n, begin(1, 0n)),
    xlog(0x110n, insert(7, ["1", "Ann"])),
    keepalive(0x900n, true),
  ]);
  assert.deepEqual(events.at(-1), { type: "keepalive", confirmable: null, replyRequested: true });
  feed(reader, publisher, [xlog(0x120n, commit(0x120n, 0x130n)), keepalive(0x200n)]);
  assert.equal(position.lsn, 0n, "the commit's record is not acknowledged yet");
  const flushed = publisher.flush();
  await kafka.acknowledge();
  await flushed;
  assert.equal(position.lsn, 0x200n, "the server's position, with nothing before it left to publish");
  feed(reader, publisher, [keepalive(0x300n)]);
  assert.equal(position.lsn, 0x300n, "a quiet stream keeps moving");
});

Deno.test("a Relation mid-stream describes the new columns, and the changes after it carry them", () => {
  const reader = new ChangeReader();
  const before = reader.read(xlog(0x100n, relation(7, "public", "users", USERS)));
  reader.read(xlog(0x100n, begin(1, 0n)));
  const old = reader.read(xlog(0x110n, insert(7, ["1", "Ann"])));
  reader.read(xlog(0x120n, commit(0x120n, 0x130n)));
  const widened = reader.read(
    xlog(0x140n, relation(7, "public", "users", [...USERS, ["email", 25, -1, false]])),
  );
  reader.read(xlog(0x140n, begin(2, 0n)));
  const wide = reader.read(xlog(0x150n, insert(7, ["2", "Bo", "bo@example.com"])));
  assert.equal(before.type === "relation" && before.relation.columns.length, 2);
  assert.deepEqual(
    widened.type === "relation" && widened.relation.columns.map((c) => [c.name, c.typeOid]),
    [["id", 23], ["name", 1043], ["email", 25]],
  );
  assert.deepEqual(old.type === "change" && old.change.after, ["1", "Ann"]);
  assert.deepEqual(wide.type === "change" && wide.change.after, ["2", "Bo", "bo@example.com"]);
});

Deno.test("an update whose key changed carries the old key as before and the new row as after", () => {
  const reader = new ChangeReader();
  reader.read(xlog(0x100n, relation(7, "public", "users", USERS)));
  reader.read(xlog(0x100n, begin(1, 0n)));
  const changed = reader.read(xlog(0x110n, update(7, ["2", "Ann"], ["1", null])));
  const same = reader.read(xlog(0x120n, update(7, ["2", "Annie"])));
  assert.ok(changed.type === "change" && same.type === "change");
  assert.equal(changed.change.op, "u");
  assert.deepEqual(changed.change.before, ["1", null], "pgoutput's old key tuple");
  assert.deepEqual(changed.change.after, ["2", "Ann"]);
  assert.equal(same.change.before, null, "no old tuple when the key stayed");
});

Deno.test("the acknowledged position never moves back", () => {
  const seen: bigint[] = [];
  const position = new AcknowledgedPosition(0x50n, (lsn) => seen.push(lsn));
  position.advance(0x40n);
  position.advance(0x60n);
  position.advance(0x60n);
  position.advance(0x55n);
  assert.equal(position.lsn, 0x60n);
  assert.deepEqual(seen, [0x60n]);
});

Deno.test("sends are split so that no batch passes its topic's byte limit, and every record goes out once, in order", async () => {
  const sent: TopicMessages[][] = [];
  const limit = 1_000;
  const publisher = new AckingPublisher(new AcknowledgedPosition(), {
    send: (messages) => (sent.push(messages), Promise.resolve()),
    maxBytes: () => limit,
    maxRecords: 100,
  });
  const records = Array.from({ length: 25 }, (_, i) => record(`k${i}`, 200));
  for (const r of records) publisher.add([r], USERS_TABLE, "c");
  await publisher.flush();
  const batches = sent.map((batch) => batch.flatMap((t) => t.messages));
  assert.ok(batches.length > 1, `split into ${batches.length} sends`);
  for (const batch of batches) {
    const bytes = 61 +
      batch.reduce((n, m) => n + recordBytes({ topic: "t", key: m.key as string, value: m.value as FramedJson }), 0);
    assert.ok(bytes <= limit, `a send of ${bytes} bytes`);
  }
  assert.deepEqual(batches.flat().map((m) => m.key), records.map((r) => r.key));
});

Deno.test("a record over its topic's limit stops the run naming the table, key and size", () => {
  const publisher = new AckingPublisher(new AcknowledgedPosition(), {
    send: () => Promise.resolve(),
    maxBytes: () => 65_536,
    maxRecords: 100,
  });
  const wide = { topic: "t", key: '{"schema":{},"payload":{"id":42}}', value: framed("x".repeat(70_000)) };
  assert.throws(() => publisher.add([wide], USERS_TABLE, "c"), (error: Error) => {
    assert.ok(error instanceof RecordTooLargeError);
    assert.match(
      error.message,
      /a record of public\.users with key \{"id":42\} is 700\d\d bytes, over .*max\.message\.bytes 65536/,
    );
    return true;
  });
});

Deno.test("records dropped after a broken stream never move the position; those already handed to Kafka still do", async () => {
  const kafka = controlledSend();
  const position = new AcknowledgedPosition();
  const publisher = new AckingPublisher(position, { send: kafka.send, maxBytes: () => 1_000_000, maxRecords: 100 });
  publisher.add([record("a")], USERS_TABLE, "c");
  publisher.confirmableAt(0x100n);
  const flushed = publisher.flush();
  publisher.add([record("b")], USERS_TABLE, "c");
  publisher.confirmableAt(0x200n);
  publisher.discard();
  assert.equal(publisher.pending, 0);
  await kafka.acknowledge();
  await flushed;
  assert.equal(position.lsn, 0x100n, "the dropped commit comes again from the slot");
  assert.equal(publisher.unacknowledged, 0);
});

Deno.test("a value the encoder refuses stops the run with the encoder's line and the change's LSN", () => {
  const encoder = {
    encode: () => {
      throw new EncodingError(`public.items.born: value "5874897-12-31" of key {"id":7} cannot be encoded`);
    },
  } as unknown as DebeziumEncoder;
  const spec = { schema: "public", table: "items", columns: [] };
  const change = {
    op: "c" as const,
    before: null,
    after: ["7"],
    source: { tsUs: 0n, txId: 1, lsn: 0x1_0000_0010n, lastCommitLsn: null },
  };
  assert.throws(() => encodeOrStop(encoder, spec, change), (error: Error) => {
    assert.ok(error instanceof UnencodableChangeError);
    assert.equal(
      error.message,
      `public.items.born: value "5874897-12-31" of key {"id":7} cannot be encoded at LSN 1/10`,
    );
    return true;
  });
});

Deno.test("a record's headers (the key-change headers) reach Kafka with it and count in its bytes", async () => {
  const sent: TopicMessages[][] = [];
  const publisher = new AckingPublisher(new AcknowledgedPosition(), {
    send: (messages) => (sent.push(messages), Promise.resolve()),
    maxBytes: () => 1_000_000,
    maxRecords: 100,
  });
  const moved = { ...record("old"), headers: { "__debezium.newkey": "new" } };
  publisher.add([moved, record("plain")], USERS_TABLE, "u");
  await publisher.flush();
  const messages = sent.flat().flatMap((t) => t.messages);
  assert.deepEqual(messages.map((m) => m.headers), [{ "__debezium.newkey": "new" }, undefined]);
  assert.ok(recordBytes(moved) > recordBytes(record("old")) + "__debezium.newkey".length);
});

Deno.test("with several sends in flight, each key's records reach Kafka in the order they were added", async () => {
  const landed: string[] = [];
  let inFlight = 0;
  let mostInFlight = 0;
  const publisher = new AckingPublisher(new AcknowledgedPosition(), {
    // Sends finish out of order: a later send may be acknowledged before an earlier one.
    send: async (messages) => {
      mostInFlight = Math.max(mostInFlight, ++inFlight);
      await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 5)));
      for (const t of messages) for (const m of t.messages) landed.push(`${m.key}:${m.value}`);
      inFlight--;
    },
    maxBytes: () => 1_000_000,
    maxRecords: 7,
    lanes: 4,
  });
  const keys = Array.from({ length: 20 }, (_, i) => `key-${i}`);
  for (let version = 0; version < 10; version++) {
    for (const key of keys) publisher.add([{ topic: "t", key, value: framed(String(version)) }], USERS_TABLE, "u");
    if (version % 3 === 0) publisher.flush().catch(() => {});
  }
  await publisher.flush();
  assert.ok(mostInFlight > 1, `at most ${mostInFlight} sends were in flight`);
  for (const key of keys) {
    const versions = landed.filter((l) => l.startsWith(`${key}:`)).map((l) => Number(l.split(":")[1]));
    assert.deepEqual(versions, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], `order of ${key}`);
  }
});

Deno.test("with several sends in flight, a commit is confirmed only once every one of its records is acknowledged", async () => {
  const kafka = controlledSend();
  const position = new AcknowledgedPosition();
  const publisher = new AckingPublisher(position, {
    send: kafka.send,
    maxBytes: () => 1_000_000,
    maxRecords: 100,
    lanes: 2,
  });
  // Keys that land in both lanes, so the transaction's records travel in two sends at once.
  const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
  for (const key of keys) publisher.add([record(key)], USERS_TABLE, "c");
  publisher.confirmableAt(100n);
  const flushed = publisher.flush();
  while (kafka.sent.length < 2) await new Promise((r) => setTimeout(r, 1));
  assert.equal(kafka.sent.length, 2, "both lanes send at once");
  await kafka.acknowledge();
  assert.equal(position.lsn, 0n, "one send of the commit's records is still in flight");
  await kafka.acknowledge();
  await flushed;
  assert.equal(position.lsn, 100n);
  assert.equal(publisher.unacknowledged, 0);
  assert.equal(publisher.unacknowledgedBytes, 0);
});

Deno.test("a failed send in one lane stops the confirmations and is thrown by the flush, whatever the other lanes did", async () => {
  const position = new AcknowledgedPosition();
  let sends = 0;
  const publisher = new AckingPublisher(position, {
    send: () => (++sends === 1 ? Promise.reject(new Error("broker gone")) : Promise.resolve()),
    maxBytes: () => 1_000_000,
    maxRecords: 1,
    lanes: 3,
  });
  for (let i = 0; i < 9; i++) publisher.add([record(`k${i}`)], USERS_TABLE, "c");
  publisher.confirmableAt(50n);
  await assert.rejects(publisher.flush(), /broker gone/);
  await assert.rejects(publisher.below(0), /broker gone/);
  assert.equal(position.lsn, 0n);
});
