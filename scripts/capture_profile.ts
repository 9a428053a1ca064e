/**
 * The in-process part of the capture's CPU per change, measured one stage at a time on the
 * change `deno task bench` streams (an UPDATE of an `orders` row under REPLICA IDENTITY FULL):
 *
 * - pgoutput decoding: XLogData frames holding Update messages, through decodeFrame and decodePgOutput;
 * - Debezium encoding: those changes through DebeziumEncoder.encode (JsonConverter, schemas on), and
 *   apart with `schemas: false` (payload-only records, the capture's `--schemas=false`);
 * - kafkajs encoding: the records, grouped by partition in sends of the capture's batch size, as
 *   one produce request each (records, batches, CRC), with no network; apart, two of its parts
 *   (UTF-8 encoding of the strings, the batches' CRC-32C) and the same encoding of payload-only
 *   records (what JsonConverter writes with `schemas.enable=false`) and the gzip compression of
 *   each batch's records, with and without schemas (kafkajs' codec: node:zlib at its default level);
 * - kafkajs sending: the same sends to a real topic with acks from all replicas, compressed as the
 *   capture compresses by default (gzip), as the capture's producer sends them (encoding, gzip,
 *   socket, responses); the broker's CPU meanwhile is read from /proc when the broker runs on this
 *   machine. The payload-only records are sent the same way apart.
 *
 * `deno run -A scripts/capture_profile.ts [--changes N] [--batch N] [--topic T]` prints one JSON
 * document: CPU microseconds per change of each stage (user + system of this process, GC and
 * compiler threads included) and the records' sizes. Used by scripts/bench.ts; runnable alone.
 * @module
 */
import { Buffer } from "node:buffer";
import { createRequire } from "node:module";
import process from "node:process";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import { CompressionTypes, Kafka, logLevel } from "kafkajs";
import { DEFAULTS } from "../lib/config.ts";
// The capture encodes with the project's kafkajs fixes in place (lib/kafka_admin.ts imports them).
import "../lib/kafkajs_fixes.ts";
import {
  type CaptureRecord,
  type ColumnSpec,
  DebeziumEncoder,
  type FramedJson,
  type TableSpec,
} from "../lib/capture_debezium.ts";
import type { RowChange } from "../lib/capture_reader.ts";
import { decodeFrame, decodePgOutput, type TupleValues } from "../lib/capture_pgoutput.ts";
import { partitionOf } from "../lib/partitioner.ts";
import { createPublisher, writeWithRetry } from "../lib/kafka_producer.ts";
import { createLogger } from "../lib/log.ts";
import { brokerPids, procStats } from "./_proc.ts";

/** Distinct changes cycled through: enough that no stage sees the same strings twice in a row. */
const DISTINCT = 2_000;
const ORDERS_PARTITIONS = DEFAULTS.ordersPartitions;

/** What to profile: changes per stage, records per send, and the topic the sends go to. */
interface ProfileOptions {
  changes: number;
  batch: number;
  topic: string;
  brokers: string[];
}

/** A record as AckingPublisher hands it to kafkajs: the key a string, the value a FramedJson. */
type Outgoing = { key: string; value: FramedJson };

/** The changes every stage works on, built once. */
interface Fixtures {
  frames: Uint8Array[];
  encoder: DebeziumEncoder;
  payloadOnlyEncoder: DebeziumEncoder;
  change: (i: number) => RowChange;
  records: CaptureRecord[];
  /** The capture's messages. */
  messages: Outgoing[];
  /** The same records as the capture writes them with `--schemas=false`: the payloads alone. */
  payloadOnly: Outgoing[];
  /** All distinct records' bytes in one buffer: the CRC's cost is linear in the bytes. */
  allBytes: Buffer;
  allPayloadOnlyBytes: Buffer;
}

/** Reads the flags; throws a RangeError naming a flag that is not a positive integer. */
function parseOptions(args: string[]): ProfileOptions {
  const { values } = parseArgs({
    args: args.filter((a) => a !== "--"),
    options: { changes: { type: "string" }, batch: { type: "string" }, topic: { type: "string" } },
  });
  const changes = Number(values.changes ?? 200_000);
  const batch = Number(values.batch ?? DEFAULTS.captureBatchSize);
  for (const [flag, value] of [["--changes", changes], ["--batch", batch]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${flag} must be a positive integer: got ${value}`);
  }
  return {
    changes,
    batch,
    topic: values.topic ?? `capture_profile_${Date.now().toString(36)}`,
    brokers: (Deno.env.get("KAFKA_BROKERS") ?? DEFAULTS.brokers).split(","),
  };
}

/** CPU microseconds (user + system) this process spends in `run`, per change. */
async function cpuMicrosPerChange(changes: number, run: () => unknown): Promise<number> {
  const before = process.cpuUsage();
  await run();
  const used = process.cpuUsage(before);
  return Math.round(((used.user + used.system) / changes) * 100) / 100;
}

const utf8 = new TextEncoder();

/** One pgoutput tuple ('t' columns, 'n' for SQL NULL). */
function tupleBytes(values: (string | null)[]): number[] {
  const out = [values.length >> 8, values.length & 0xff];
  for (const value of values) {
    if (value === null) {
      out.push("n".charCodeAt(0));
      continue;
    }
    const bytes = utf8.encode(value);
    out.push("t".charCodeAt(0), (bytes.length >>> 24) & 0xff, (bytes.length >>> 16) & 0xff);
    out.push((bytes.length >>> 8) & 0xff, bytes.length & 0xff, ...bytes);
  }
  return out;
}

/** An XLogData frame holding the Update of an order: PLACED -> SHIPPED, modified_at set, old row in full. */
function updateFrame(i: number): Uint8Array {
  // Random ids and times as in real rows, so that compression meets real entropy.
  const id = crypto.randomUUID();
  const user = crypto.randomUUID();
  const placedAt = new Date(Date.UTC(2025, 0, 1) + Math.floor(Math.random() * 3e10)).toISOString()
    .replace("T", " ").replace("Z", "+00");
  const total = (Math.random() * 10_000).toFixed(2);
  const before = [id, "PLACED", user, String(1 + (i % 100)), total, placedAt, null, "f"];
  const modifiedAt = `2026-11-30 15:00:${String(i % 60).padStart(2, "0")}.${
    String(i * 7919 % 1e6).padStart(6, "0")
  }+00`;
  const after = [...before.slice(0, 6), modifiedAt, "f"];
  after[1] = "SHIPPED";
  const message = [
    "U".charCodeAt(0),
    0,
    0,
    0x40,
    0x01,
    "O".charCodeAt(0),
    ...tupleBytes(before),
    "N".charCodeAt(0),
    ...tupleBytes(after),
  ];
  const frame = new Uint8Array(25 + message.length);
  const view = new DataView(frame.buffer);
  frame[0] = "w".charCodeAt(0);
  view.setBigUint64(1, BigInt(0x1_0000_0000 + i * 200));
  view.setBigUint64(9, BigInt(0x1_0000_0000 + i * 200));
  view.setBigInt64(17, 0n);
  frame.set(message, 25);
  return frame;
}

/** The before and after tuples of an Update frame. */
function decodeUpdate(frame: Uint8Array): { before: TupleValues; after: TupleValues } {
  const xlog = decodeFrame(frame);
  if (xlog.type !== "xlog") throw new Error("capture_profile built a frame that is not XLogData: fix updateFrame");
  const message = decodePgOutput(xlog.data);
  if (message.tag !== "update" || !message.before) throw new Error("capture_profile: the frame is not a full Update");
  return { before: message.before, after: message.after };
}

const column = (name: string, typeOid: number, typeName: string, extra: Partial<ColumnSpec> = {}): ColumnSpec => ({
  name,
  typeOid,
  typeName,
  typmod: -1,
  optional: true,
  key: false,
  ...extra,
});
/** The orders table as lib/sink.ts creates it and readTableSpec reads it. */
const ORDERS_SPEC: TableSpec = {
  schema: "public",
  table: "orders",
  columns: [
    column("id", 2950, "uuid", { optional: false, key: true }),
    column("status", 1043, "varchar", { typmod: 14, optional: false }),
    column("user_id", 2950, "uuid", { optional: false }),
    column("quantity", 23, "int4", { optional: false }),
    column("total_amount", 1700, "numeric", { typmod: ((10 << 16) | 2) + 4, optional: false }),
    column("placed_at", 1184, "timestamptz"),
    column("modified_at", 1184, "timestamptz"),
    column("is_deleted", 16, "bool", { defaultText: "f" }),
  ],
  keyColumns: ["id"],
};

/** DISTINCT update frames, their changes, and those changes encoded with and without schemas. */
function buildFixtures(): Fixtures {
  const frames = Array.from({ length: DISTINCT }, (_, i) => updateFrame(i));
  const decoded = frames.map(decodeUpdate);
  const encoder = new DebeziumEncoder({ prefix: "bench", database: "bench", version: "bench" });
  const payloadOnlyEncoder = new DebeziumEncoder({
    prefix: "bench",
    database: "bench",
    version: "bench",
    schemas: false,
  });
  const change = (i: number): RowChange => ({
    op: "u",
    before: decoded[i % DISTINCT].before,
    after: decoded[i % DISTINCT].after,
    source: { tsUs: 1_764_514_800_000_000n, txId: 1234, lsn: BigInt(0x1_0000_0000 + i * 200), lastCommitLsn: null },
  });
  const records = Array.from({ length: DISTINCT }, (_, i) => encoder.encode(ORDERS_SPEC, change(i), 1_000n)[0]);
  const messages = records.map(({ key, value }) => ({ key: key!, value: value! }));
  const payloadOnly = Array.from(
    { length: DISTINCT },
    (_, i) => payloadOnlyEncoder.encode(ORDERS_SPEC, change(i), 1_000n)[0],
  ).map(({ key, value }) => ({ key: key!, value: value! }));
  const bytesOf = (list: Outgoing[]) =>
    Buffer.concat(list.flatMap(({ key, value }) => [Buffer.from(key), Buffer.from(String(value))]));
  return {
    frames,
    encoder,
    payloadOnlyEncoder,
    change,
    records,
    messages,
    payloadOnly,
    allBytes: bytesOf(messages),
    allPayloadOnlyBytes: bytesOf(payloadOnly),
  };
}

/** The bytes of about the first `n` records (`n` up to DISTINCT) of `all`. */
function firstRecords(n: number, all: Buffer): Buffer {
  return all.subarray(0, Math.round((all.length * Math.min(n, DISTINCT)) / DISTINCT));
}

/** The in-process stages, each a run over `changes` changes. */
function stagesOf({ changes, batch, topic }: ProfileOptions, fixtures: Fixtures): Record<string, () => unknown> {
  const { frames, encoder, payloadOnlyEncoder, change, messages, payloadOnly, allBytes } = fixtures;
  const require = createRequire(import.meta.url);
  const produceRequest = require("kafkajs/src/protocol/requests/produce/v7/request.js");
  const crc32C = require("kafkajs/src/protocol/recordBatch/crc32C/index.js");
  const scratch = new Uint8Array(64 * 1024);
  // kafkajs' gzip codec is node:zlib's gzip at its default level, over each batch's records.
  const gzipBatches = (all: Buffer) => {
    for (let done = 0; done < changes; done += batch) gzipSync(firstRecords(Math.min(batch, changes - done), all));
  };
  // kafkajs' encoding of a list's records, grouped by partition, in produce requests of `batch` records.
  const kafkajsEncode = async (list: Outgoing[]) => {
    for (let sent = 0; sent < changes; sent += batch) {
      const perPartition: Record<number, Outgoing[]> = {};
      for (let i = sent; i < Math.min(changes, sent + batch); i++) {
        const message = list[i % DISTINCT];
        (perPartition[partitionOf(message.key, ORDERS_PARTITIONS)] ??= []).push(message);
      }
      const partitions = Object.entries(perPartition).map(([partition, messages]) => ({
        partition: Number(partition),
        messages,
      }));
      await produceRequest({ acks: -1, timeout: 30_000, topicData: [{ topic, partitions }] }).encode();
    }
  };
  return {
    pgoutputDecode: () => {
      for (let i = 0; i < changes; i++) {
        const frame = decodeFrame(frames[i % DISTINCT]);
        if (frame.type === "xlog") decodePgOutput(frame.data);
      }
    },
    debeziumEncode: () => {
      for (let i = 0; i < changes; i++) encoder.encode(ORDERS_SPEC, change(i), BigInt(i) * 1_000n);
    },
    debeziumEncodePayloadOnly: () => {
      for (let i = 0; i < changes; i++) payloadOnlyEncoder.encode(ORDERS_SPEC, change(i), BigInt(i) * 1_000n);
    },
    kafkajsEncode: () => kafkajsEncode(messages),
    kafkajsUtf8: () => {
      for (let i = 0; i < changes; i++) {
        const { key, value } = messages[i % DISTINCT];
        utf8.encodeInto(key, scratch);
        value.writeInto(scratch, 0);
      }
    },
    kafkajsCrc32c: () => {
      for (let done = 0; done < changes; done += DISTINCT) {
        crc32C(firstRecords(Math.min(DISTINCT, changes - done), allBytes));
      }
    },
    kafkajsEncodePayloadOnly: () => kafkajsEncode(payloadOnly),
    gzipBatches: () => gzipBatches(allBytes),
    gzipBatchesPayloadOnly: () => gzipBatches(fixtures.allPayloadOnlyBytes),
  };
}

/** The broker's CPU seconds so far, from /proc, or null when it runs elsewhere. */
async function brokerCpuSeconds(brokers: string[]): Promise<number | null> {
  const pids = await brokerPids(brokers);
  if (pids.length === 0) return null;
  return (await Promise.all(pids.map(procStats))).reduce((sum, stats) => sum + (stats?.cpuS ?? 0), 0);
}

/** kafkajs sending the records (acks=all, the capture's compression), with and without schemas; the broker's CPU. */
async function measureSends(options: ProfileOptions, fixtures: Fixtures, perChange: Record<string, number>) {
  const { changes, batch, topic } = options;
  const kafka = new Kafka({ clientId: "cdc-capture-profile", brokers: options.brokers, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  const producer = createPublisher(kafka);
  try {
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: ORDERS_PARTITIONS }], waitForLeaders: true });
    await producer.connect();
    const compression = DEFAULTS.captureCompression === "gzip" ? CompressionTypes.GZIP : CompressionTypes.None;
    const logger = createLogger({ component: "capture-profile" });
    const send = async (list: Outgoing[]) => {
      for (let sent = 0; sent < changes; sent += batch) {
        const messages = [];
        for (let i = sent; i < Math.min(changes, sent + batch); i++) messages.push(list[i % DISTINCT]);
        await writeWithRetry(producer, [{ topic, messages }], { maxAttempts: 1, backoffMs: 0, logger, compression });
      }
    };
    const brokerBefore = await brokerCpuSeconds(options.brokers);
    perChange.kafkajsSend = await cpuMicrosPerChange(changes, () => send(fixtures.messages));
    const brokerAfter = await brokerCpuSeconds(options.brokers);
    perChange.kafkajsSendPayloadOnly = await cpuMicrosPerChange(changes, () => send(fixtures.payloadOnly));
    if (brokerBefore === null || brokerAfter === null) return null;
    return Math.round(((brokerAfter - brokerBefore) * 1e6 / changes) * 100) / 100;
  } finally {
    await producer.disconnect().catch(() => {});
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect().catch(() => {});
  }
}

/** Compressed over uncompressed bytes of one batch's records under gzip. */
function gzipRatio(batch: number, all: Buffer): number {
  return Math.round((gzipSync(firstRecords(batch, all)).length / firstRecords(batch, all).length) * 1000) / 1000;
}

/** Profiles every stage and prints the JSON document. */
async function main(args: string[]): Promise<number> {
  let options: ProfileOptions;
  try {
    options = parseOptions(args);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error;
    console.error(`capture_profile: ${error.message}`);
    return 2;
  }
  const fixtures = buildFixtures();
  const perChange: Record<string, number> = {};
  // A warm-up pass per stage, so each measures steady state, not the JIT.
  for (const [name, run] of Object.entries(stagesOf(options, fixtures))) {
    await run();
    perChange[name] = await cpuMicrosPerChange(options.changes, run);
  }
  const brokerMicrosPerChange = await measureSends(options, fixtures, perChange);
  const mean = (list: number[]) => Math.round(list.reduce((a, b) => a + b, 0) / list.length);
  console.log(JSON.stringify({
    changes: options.changes,
    batch: options.batch,
    meanFrameBytes: mean(fixtures.frames.map((f) => f.length)),
    meanKeyBytes: mean(fixtures.messages.map((m) => m.key.length)),
    meanValueBytes: mean(fixtures.records.map((r) => r.value!.byteLength)),
    meanPayloadOnlyValueBytes: mean(fixtures.payloadOnly.map((r) => r.value.byteLength)),
    compression: DEFAULTS.captureCompression,
    gzipRatio: gzipRatio(options.batch, fixtures.allBytes),
    gzipRatioPayloadOnly: gzipRatio(options.batch, fixtures.allPayloadOnlyBytes),
    cpuMicrosPerChange: perChange,
    brokerCpuMicrosPerChangeDuringSend: brokerMicrosPerChange,
  }));
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
