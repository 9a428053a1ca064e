/**
 * The kafkajs fixes do what they say: RequestQueue's timers, a fetch from a dead leader that asks
 * for fresh metadata, requests that follow a moved group coordinator, a restarted consumer that
 * rejoins as the member it was, a request to an unconnected broker failing as a connection error, and records encoded without a Buffer per varint under Deno and in
 * a Bun-built binary.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import Broker from "kafkajs/src/broker/index.js";
import ConsumerGroup from "kafkajs/src/consumer/consumerGroup.js";
import OffsetManager from "kafkajs/src/consumer/offsetManager/index.js";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { KAFKAJS_FIX, REFUSED_FETCH_PAUSE_MS, REQUEST_TIMEOUT_SWEEP_MS } from "../../lib/kafkajs_fixes.ts";
import { ROOT, runProgram, waitFor } from "../_helpers.ts";

const FIXTURE = "tests/fixtures/record_encoding.ts";

const quiet = { debug() {}, info() {}, warn() {}, error() {} };

function idleQueue(requestTimeout = 30_000, enforceRequestTimeout = false) {
  return new RequestQueue({
    maxInFlightRequests: 1,
    requestTimeout,
    enforceRequestTimeout,
    clientId: "test",
    broker: "nowhere:9092",
    logger: quiet,
  });
}

function request(correlationId: number, onSent: () => void, onAnswer: () => void) {
  return {
    entry: { correlationId, apiName: "Test", apiKey: 0, apiVersion: 0, resolve: onAnswer, reject: onAnswer },
    expectResponse: true,
    sendRequest: onSent,
  };
}

Deno.test("importing the Kafka client patches RequestQueue's pending-request check and request-timeout sweep", () => {
  assert.equal(RequestQueue.prototype.scheduleCheckPendingRequests[KAFKAJS_FIX], "tulios/kafkajs#1556");
  assert.equal(RequestQueue.prototype.scheduleRequestTimeoutCheck[KAFKAJS_FIX], "idle request-timeout sweep");
});

Deno.test("a fetch refused by a dead leader asks for fresh metadata after a pause and goes on, where kafkajs 2.2.4 throws until the consumer restarts", async () => {
  let refreshed = 0;
  const group = Object.create(ConsumerGroup.prototype);
  group.cluster = { refreshMetadata: () => (refreshed++, Promise.resolve()) };
  const refused = Object.assign(new Error("Connection error: connect ECONNREFUSED 127.0.0.1:9194"), {
    name: "KafkaJSConnectionError",
  });
  const started = performance.now();
  await group.recoverFromFetch(refused);
  assert.equal(refreshed, 1, "metadata asked for again");
  assert.ok(performance.now() - started >= REFUSED_FETCH_PAUSE_MS - 5, "after the pause");
  const other = Object.assign(new Error("boom"), { name: "KafkaJSNonRetriableError" });
  await assert.rejects(group.recoverFromFetch(other), /boom/, "other errors keep kafkajs' own handling");
  assert.equal(ConsumerGroup.prototype.recoverFromFetch[KAFKAJS_FIX], "tulios/kafkajs#132");
});

/** A kafkajs ConsumerGroup of group "g" over `cluster`, subscribed to nothing, logging nothing. */
function consumerGroupOf(cluster: object) {
  const logger = { ...quiet, namespace: () => quiet };
  return new ConsumerGroup({
    cluster,
    groupId: "g",
    topics: [],
    assigners: [],
    logger,
    instrumentationEmitter: { emit() {} },
  });
}

Deno.test("a heartbeat and an offset request that find the group's coordinator dead go to the coordinator the cluster names now", async () => {
  const gone = () =>
    Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9196"), { name: "KafkaJSConnectionError" });
  const live = { name: "live", heartbeat: () => Promise.resolve(), isConnected: () => true };
  const dead = { name: "dead", heartbeat: () => Promise.reject(gone()), isConnected: () => false };
  const asked: string[] = [];
  const cluster = {
    refreshMetadata: () => (asked.push("metadata"), Promise.resolve()),
    findGroupCoordinator: (
      { groupId }: { groupId: string },
    ) => (asked.push(`coordinator of ${groupId}`), Promise.resolve(live)),
    findBroker: () => Promise.reject(gone()),
  };
  const offsets = Object.assign(Object.create(OffsetManager.prototype), { cluster, groupId: "g", coordinator: dead });
  const group = consumerGroupOf(cluster);
  Object.assign(group, { coordinator: dead, offsetManager: offsets, memberId: "m", generationId: 1, lastRequest: 0 });
  await group.heartbeat({ interval: 0 });
  assert.equal(group.coordinator, live, "the heartbeat went to the coordinator found again");
  assert.equal(offsets.coordinator, live, "offset requests follow it");
  offsets.coordinator = dead;
  assert.equal(await offsets.getCoordinator(), live);
  assert.deepEqual(asked, ["metadata", "coordinator of g", "metadata", "coordinator of g"]);
});

/** A coordinator that records the member id of each JoinGroup and fails LeaveGroup while `leaveFails`. */
function recordingCoordinator() {
  const joinedAs: string[] = [];
  const state = { leaveFails: true };
  const coordinator = {
    joinGroup: ({ memberId }: { memberId: string }) => {
      joinedAs.push(memberId);
      const id = memberId || `member-${joinedAs.length}`;
      return Promise.resolve({ generationId: 1, leaderId: "another", memberId: id, members: [], groupProtocol: "x" });
    },
    syncGroup: () => Promise.resolve({ memberAssignment: Buffer.alloc(0) }),
    leaveGroup: () =>
      state.leaveFails
        ? Promise.reject(Object.assign(new Error("connect ECONNREFUSED"), { name: "KafkaJSConnectionError" }))
        : Promise.resolve(),
  };
  return { coordinator, joinedAs, state };
}

Deno.test("a consumer restarted after a crash whose LeaveGroup failed rejoins as the member it was, where kafkajs 2.2.4 joins anew and the group waits a session timeout for the old member", async () => {
  const { coordinator, joinedAs, state } = recordingCoordinator();
  const cluster = {
    findGroupCoordinator: () => Promise.resolve(coordinator),
    committedOffsets: () => ({}),
  };
  const newGroup = () => consumerGroupOf(cluster);
  const crashed = newGroup();
  await crashed.joinAndSync();
  await assert.rejects(crashed.leave());
  const restarted = newGroup();
  await restarted.joinAndSync();
  assert.deepEqual(joinedAs, ["", "member-1"], "the restarted consumer's join names the member id it held");
  state.leaveFails = false;
  await restarted.leave();
  await newGroup().joinAndSync();
  assert.deepEqual(joinedAs, ["", "member-1", ""], "after a leave that went through, a new consumer joins anew");
});

Deno.test("a request to a broker that has never connected fails with a retriable KafkaJSConnectionError, where kafkajs 2.2.4 throws a plain Error the consumer takes for a bug", async () => {
  const connectionPool = {
    connectionTimeout: 1_000,
    host: "localhost",
    port: 9192,
    sasl: null,
    isConnected: () => false,
  };
  const broker = new Broker({ connectionPool, logger: { ...quiet, namespace: () => quiet } });
  await assert.rejects(
    broker.heartbeat({ groupId: "g", groupGenerationId: 1, memberId: "m" }),
    (error: Error & { retriable?: boolean }) =>
      error.name === "KafkaJSConnectionError" && error.retriable === true && /localhost:9192/.test(error.message),
  );
});

Deno.test("an idle RequestQueue arms no timer after a response, where kafkajs 2.2.4 re-arms one every millisecond", () => {
  const queue = idleQueue();
  queue.checkPendingRequests();
  assert.equal(queue.throttleCheckTimeoutId, null);
});

Deno.test("a request queued behind broker throttling is still sent once the throttle ends", async () => {
  const queue = idleQueue();
  queue.maybeThrottle(30);
  let sent = false;
  let answered = false;
  queue.push(request(1, () => (sent = true), () => (answered = true)));
  assert.equal(sent, false, "throttled: the request waits in the queue");
  assert.notEqual(queue.throttleCheckTimeoutId, null, "a timer is armed for the end of the throttle");
  await waitFor("the throttled request to be sent", () => sent, 5_000);
  queue.fulfillRequest({ correlationId: 1, payload: null, size: 0 });
  assert.ok(answered);
  assert.equal(queue.throttleCheckTimeoutId, null, "nothing pending: no timer left behind");
  queue.destroy();
});

Deno.test("a connection sweeps its requests for timeouts once a second, where kafkajs 2.2.4 sweeps every 100 ms", () => {
  const queue = idleQueue(30_000, true);
  const periods: (number | undefined)[] = [];
  const setIntervalBefore = globalThis.setInterval;
  globalThis.setInterval = ((callback: () => void, ms?: number) => {
    periods.push(ms);
    return setIntervalBefore(callback, ms);
  }) as typeof setInterval;
  try {
    queue.scheduleRequestTimeoutCheck();
  } finally {
    globalThis.setInterval = setIntervalBefore;
    queue.destroy();
  }
  assert.deepEqual(periods, [REQUEST_TIMEOUT_SWEEP_MS]);
});

Deno.test("a request that outlives its timeout is still failed by the sweep", async () => {
  const queue = idleQueue(100, true);
  queue.scheduleRequestTimeoutCheck();
  let failure: unknown;
  queue.push({
    entry: {
      correlationId: 7,
      apiName: "Test",
      apiKey: 0,
      apiVersion: 0,
      resolve: () => {},
      reject: (error: unknown) => (failure = error),
    },
    expectResponse: true,
    sendRequest: () => {},
  });
  try {
    await waitFor("the request to time out", () => failure !== undefined, 5_000, 20);
  } finally {
    queue.destroy();
  }
  assert.equal((failure as Error).name, "KafkaJSRequestTimeoutError");
  assert.equal(queue.inflight.size, 0);
});

/** Kafka's varint of a signed 64-bit value: zigzag, then 7 bits a byte, low first. */
function varlong(value: bigint): number[] {
  let zigzag = BigInt.asUintN(64, (value << 1n) ^ (value >> 63n));
  const bytes: number[] = [];
  while (zigzag >= 0x80n) {
    bytes.push(Number(zigzag & 0x7fn) | 0x80);
    zigzag >>= 7n;
  }
  return [...bytes, Number(zigzag)];
}

/** A record in Kafka's v2 record format (KIP-98), built from the spec rather than from kafkajs. */
function recordBytes(r: { key: string; value: string; offsetDelta: number; timestampDelta: number }): string {
  const utf8 = new TextEncoder();
  const key = [...utf8.encode(r.key)];
  const value = [...utf8.encode(r.value)];
  const body = [
    0, // attributes
    ...varlong(BigInt(r.timestampDelta)),
    ...varlong(BigInt(r.offsetDelta)),
    ...varlong(BigInt(key.length)),
    ...key,
    ...varlong(BigInt(value.length)),
    ...value,
    0, // no headers
  ];
  return [...varlong(BigInt(body.length)), ...body].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function run(command: string, args: string[]): Promise<string> {
  const output = await runProgram(command, args);
  assert.equal(output.code, 0, output.stderr);
  return output.stdout;
}

interface Encoded {
  fix: string | null;
  asciiBufferFromCalls: number;
  framedBufferFromCalls: number;
  framedBatchHex: string;
  stringBatchHex: string;
  records: Parameters<typeof recordBytes>[0][];
  hex: string[];
}

function assertEncodedWithoutBuffers(result: Encoded) {
  assert.equal(result.fix, "Buffer-free record encoding");
  assert.equal(result.asciiBufferFromCalls, 0, "kafkajs 2.2.4 makes a Buffer per varint: 4 a record");
  assert.equal(result.framedBufferFromCalls, 0, "a FramedJson value is written by its own method");
  assert.equal(result.hex.length, 9);
  assert.equal(result.framedBatchHex, result.stringBatchHex, "a batch of FramedJson values is the batch of their text");
  assert.deepEqual(result.hex, result.records.map(recordBytes));
}

Deno.test("kafkajs encodes records under Deno with no Buffer per varint, FramedJson values included, in Kafka's record format byte for byte", async () => {
  assertEncodedWithoutBuffers(JSON.parse(await run(Deno.execPath(), ["run", "--allow-read", "--allow-env", FIXTURE])));
});

Deno.test("the record-encoding fix applies in a binary built with bun build --compile like dist/'s", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const binary = `${dir}/record_encoding`;
    const bun = `${ROOT}scripts/bun`;
    await run(bun, ["build", "--compile", "--minify", "--target=bun-linux-x64", FIXTURE, "--outfile", binary]);
    assertEncodedWithoutBuffers(JSON.parse(await run(binary, [])));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
