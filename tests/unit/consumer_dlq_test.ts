/** The DLQ tool's pure parts: how a record prints, how it is replayed, and its argument rules. */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { loadConsumeConfig, loadDlqConfig } from "../../lib/config.ts";
import { DLQ_HEADERS } from "../../lib/consumer_dead_letter.ts";
import { dlqTopicsOf, formatDlqRecord, REPLAYED_FROM_HEADER, replayMessage } from "../../lib/consumer_dlq.ts";

const dlqRecord = {
  dlqTopic: "users.dlq",
  partition: 0,
  offset: "7",
  message: {
    key: Buffer.from("k1"),
    value: Buffer.from('{"event_type":"UPSERT"}\n'),
    timestamp: "0",
    attributes: 0,
    offset: "7",
    headers: {
      trace: Buffer.from("abc"),
      [DLQ_HEADERS.reason]: Buffer.from('event_type must be CREATE, UPDATE or DELETE: got "UPSERT"'),
      [DLQ_HEADERS.topic]: Buffer.from("users"),
      [DLQ_HEADERS.partition]: Buffer.from("2"),
      [DLQ_HEADERS.offset]: Buffer.from("41"),
      [DLQ_HEADERS.failedAt]: Buffer.from("2025-07-03T10:11:12.000Z"),
      [REPLAYED_FROM_HEADER]: Buffer.from("users.dlq:0:1"),
    },
  },
};

Deno.test("a DLQ record prints on one line with its source coordinates, failed-at, reason, key and value", () => {
  assert.equal(
    formatDlqRecord(dlqRecord),
    'source=users:2:41 failed_at=2025-07-03T10:11:12.000Z reason="event_type must be CREATE, UPDATE or DELETE: ' +
      'got \\"UPSERT\\"" key="k1" value={"event_type":"UPSERT"} dlq=users.dlq:0:7',
  );
  const long = { ...dlqRecord, message: { ...dlqRecord.message, value: Buffer.from("x".repeat(500)) } };
  assert.match(formatDlqRecord(long), / value=x{77}\.\.\. \(500 bytes\) dlq=/);
});

Deno.test("a replayed record keeps key, value and other headers, drops the DLQ headers and says where it came from", () => {
  const message = replayMessage(dlqRecord);
  assert.equal(message.key, dlqRecord.message.key);
  assert.equal(message.value, dlqRecord.message.value);
  assert.deepEqual(Object.keys(message.headers!).sort(), ["dlq.replayed.from", "trace"]);
  assert.equal(message.headers![REPLAYED_FROM_HEADER], "users.dlq:0:7");
});

Deno.test("dlq arguments: an action is required, each flag belongs to its action, the rest are consume flags", () => {
  const load = (args: string[]) => loadDlqConfig(args, {});
  const own = (args: string[]) => {
    const parsed = load(args);
    assert.ok(!parsed.help);
    const { action, topic, limit, dryRun, brokers } = parsed.config;
    return { action, topic, limit, dryRun, brokers };
  };
  assert.deepEqual(load([]), { help: true });
  assert.deepEqual(load(["list", "--help"]), { help: true });
  assert.deepEqual(own(["list", "--brokers", "b:1", "--topic=orders", "--limit", "3"]), {
    action: "list",
    topic: "orders",
    limit: 3,
    dryRun: false,
    brokers: ["b:1"],
  });
  assert.deepEqual(own(["replay", "--dry-run", "--topic", "users"]), {
    action: "replay",
    topic: "users",
    limit: undefined,
    dryRun: true,
    brokers: ["localhost:9092"],
  });
  assert.throws(() => load(["purge"]), /dlq needs an action, list or replay: got "purge"/);
  assert.throws(() => load(["list", "--dry-run"]), /--dry-run belongs to dlq replay/);
  assert.throws(() => load(["replay", "--limit", "2"]), /--limit belongs to dlq list/);
  assert.throws(() => load(["list", "--limit", "0"]), /--limit must be a positive integer: 0$/);
  assert.throws(() => load(["list", "--limit", "-5"]), /--limit must be a positive integer: -5$/);
  assert.throws(() => load(["list", "--topic"]), /--topic/);
  // Rebuilding the tables is the consumer's; the DLQ tool must not accept it and ignore it.
  assert.throws(() => load(["replay", "--rebuild"]), /rebuild/);
  const parsed = loadConsumeConfig([], { USERS_TOPIC: "u1", ORDERS_TOPIC: "o1" });
  assert.ok(!parsed.help);
  assert.deepEqual(dlqTopicsOf(parsed.config, undefined), ["u1.dlq", "o1.dlq"]);
  assert.deepEqual(dlqTopicsOf(parsed.config, "orders"), ["o1.dlq"]);
  assert.deepEqual(dlqTopicsOf(parsed.config, "u1.dlq"), ["u1.dlq"]);
  assert.throws(() => dlqTopicsOf(parsed.config, "payments"), /--topic must be users or orders \(or u1 or o1\)/);
});
