/**
 * Fixes for kafkajs 2.2.4 bugs that upstream has not released (its last release is from 2023),
 * applied to its classes once, when this module is first imported. lib/kafka_admin.ts imports it
 * where the client is created, so every command, test and binary that talks to Kafka runs with
 * them.
 * @module
 */
import { Buffer } from "node:buffer";
import Broker from "kafkajs/src/broker/index.js";
import ConsumerGroup from "kafkajs/src/consumer/consumerGroup.js";
import { KafkaJSConnectionError } from "kafkajs/src/errors.js";
import OffsetManager from "kafkajs/src/consumer/offsetManager/index.js";
import Encoder from "kafkajs/src/protocol/encoder.js";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { utf8Length } from "./utf8.ts";

/** Set on a patched method, naming what it fixes, so a test can tell that the fix is in place. */
export const KAFKAJS_FIX = Symbol.for("cdc-pipeline.kafkajs-fix");

/** Longest pause between two sweeps of a connection's in-flight requests for timeouts. */
export const REQUEST_TIMEOUT_SWEEP_MS = 1_000;

interface InFlight {
  sentAt: number;
  requestTimeout: number;
  timeoutRequest(): void;
}

/** The part of kafkajs' RequestQueue that the fixes read. */
interface Queue {
  pending: unknown[];
  inflight: Map<number, InFlight>;
  requestTimeout: number;
  enforceRequestTimeout: boolean;
  requestTimeoutIntervalId?: ReturnType<typeof setInterval>;
  isConnected(): boolean;
  destroy(): void;
}

type Method = ((this: Queue) => void) & { [KAFKAJS_FIX]?: string };

function patch(name: "scheduleCheckPendingRequests" | "scheduleRequestTimeoutCheck", fixes: string, method: Method) {
  if (RequestQueue.prototype[name][KAFKAJS_FIX]) return;
  method[KAFKAJS_FIX] = fixes;
  RequestQueue.prototype[name] = method;
}

/**
 * kafkajs' RequestQueue re-arms its pending-request check after every response even when no
 * request is pending, and then with a negative delay, so each broker connection runs the check
 * about once a millisecond for ever: an idle consumer burns CPU (tulios/kafkajs#1556; the fix
 * in the unmerged PR #1667 also skips it). The timer only serves queued requests, and `push()`
 * schedules it whenever it queues one, so skipping it while the queue is empty loses nothing.
 */
function skipIdlePendingCheck(): void {
  const original: Method = RequestQueue.prototype.scheduleCheckPendingRequests;
  patch("scheduleCheckPendingRequests", "tulios/kafkajs#1556", function () {
    if (this.pending.length > 0) original.call(this);
  });
}

/**
 * Each connection also sweeps its in-flight requests for timeouts every 100 ms, idle or not.
 * Requests here time out after 30 s or more (createKafka's requestTimeout), so a sweep once a
 * second times them out as surely and wakes an idle process ten times less. The body is
 * kafkajs 2.2.4's own with the period changed.
 */
function sweepRequestTimeoutsLessOften(): void {
  patch("scheduleRequestTimeoutCheck", "idle request-timeout sweep", function () {
    if (!this.enforceRequestTimeout) return;
    this.destroy();
    this.requestTimeoutIntervalId = setInterval(() => {
      this.inflight.forEach((request) => {
        if (Date.now() - request.sentAt > request.requestTimeout) request.timeoutRequest();
      });
      if (!this.isConnected()) this.destroy();
    }, Math.min(this.requestTimeout, REQUEST_TIMEOUT_SWEEP_MS));
  });
}

/** The part of kafkajs' protocol Encoder that the encoder fix reads and writes. */
interface Encoding {
  buf: Uint8Array;
  offset: number;
  ensureAvailable(length: number): void;
  /** Values not copied into `buf`: each belongs at `at`, before the bytes written after it. */
  deferred?: { at: number; value: SelfWriting }[];
}

/**
 * A record key or value that writes its own UTF-8 bytes (the capture's values, lib/capture_debezium.ts' FramedJson): kafkajs
 * copies them into its batch without a string or Buffer of the whole value.
 */
export interface SelfWriting {
  readonly byteLength: number;
  writeInto(target: Uint8Array, offset: number): void;
}

function isSelfWriting(value: unknown): value is SelfWriting {
  return typeof value === "object" && value !== null && typeof (value as SelfWriting).writeInto === "function";
}

type EncoderMethod = ((this: Encoding, ...args: any[]) => unknown) & { [KAFKAJS_FIX]?: string };

const ENCODER_FIX = "Buffer-free record encoding";
const utf8 = new TextEncoder();

/** Whether `value` is a plain number that zigzag-encodes in 32 bits, as every timestamp delta of one batch does. */
function isInt32(value: unknown): value is number {
  return typeof value === "number" && (value | 0) === value;
}

function uvarintSize(value: number): number {
  let bytes = 1;
  while ((value & 0xffffff80) !== 0) {
    bytes++;
    value >>>= 7;
  }
  return bytes;
}

/** The bytes `encoder` holds, its deferred values included. */
function encodedLength(encoder: Encoding): number {
  let length = encoder.offset;
  for (const { value } of encoder.deferred ?? []) length += value.byteLength;
  return length;
}

/** Appends `source`'s bytes, each deferred value in its place, to `target`, which has room for them. */
function gather(target: Encoding, source: Encoding): void {
  let from = 0;
  for (const { at, value } of source.deferred ?? []) {
    target.buf.set(source.buf.subarray(from, at), target.offset);
    target.offset += at - from;
    value.writeInto(target.buf, target.offset);
    target.offset += value.byteLength;
    from = at;
  }
  target.buf.set(source.buf.subarray(from, source.offset), target.offset);
  target.offset += source.offset - from;
}

/** kafkajs' own encoder methods, which the fixes fall back to for values they do not handle. */
interface EncoderOriginals {
  writeVarLong: EncoderMethod;
  writeVarIntBytes: EncoderMethod;
  sizeOfVarLong: (value: unknown) => number;
  sizeOfVarIntBytes: (value: unknown) => number;
}

/** Writes `value` as an unsigned varint, byte by byte, into the encoder's buffer. */
function writeUVarInt(this: Encoding, value: number): Encoding {
  this.ensureAvailable(5);
  const buf = this.buf;
  let offset = this.offset;
  while ((value & 0xffffff80) !== 0) {
    buf[offset++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  buf[offset++] = value & 0x7f;
  this.offset = offset;
  return this;
}

/** Writes a string as if ASCII, in one native pass; false (the encoder rewound) when it is not ASCII. */
function writeAsciiBytes(encoder: Encoding, value: string): boolean {
  const start = encoder.offset;
  const length = value.length;
  writeUVarInt.call(encoder, (length << 1) ^ (length >> 31));
  encoder.ensureAvailable(length);
  const offset = encoder.offset;
  const { read, written } = utf8.encodeInto(value, encoder.buf.subarray(offset, offset + length));
  if (read !== length || written !== length) {
    encoder.offset = start;
    return false;
  }
  encoder.offset = offset + length;
  return true;
}

/** The encoder's methods that write without Buffers, falling back to `originals`. */
function bufferFreeMethods(originals: EncoderOriginals): Record<string, EncoderMethod> {
  return {
    writeUVarInt,
    writeVarLong(value: unknown) {
      if (!isInt32(value)) return originals.writeVarLong.call(this, value);
      return writeUVarInt.call(this, (value << 1) ^ (value >> 31));
    },
    writeVarIntBytes(value: unknown) {
      if (isSelfWriting(value)) {
        // Copied once, when the record is gathered into its batch: a record's own buffer then stays at
        // kafkajs' first 512 bytes instead of growing to twice the value for every record.
        const length = value.byteLength;
        writeUVarInt.call(this, (length << 1) ^ (length >> 31));
        (this.deferred ??= []).push({ at: this.offset, value });
        return this;
      }
      if (typeof value === "string" && writeAsciiBytes(this, value)) return this;
      return originals.writeVarIntBytes.call(this, value);
    },
    writeEncoderArray(encoders: Encoding[]) {
      // One growth for all the records instead of a doubling and copy every few of them.
      let total = 0;
      for (const encoder of encoders) total += encodedLength(encoder);
      this.ensureAvailable(total);
      for (const encoder of encoders) gather(this, encoder);
      return this;
    },
    writeEncoder(encoder: Encoding) {
      this.ensureAvailable(encodedLength(encoder));
      gather(this, encoder);
      return this;
    },
    writeBufferInternal(buffer: Uint8Array) {
      this.ensureAvailable(buffer.length);
      this.buf.set(buffer, this.offset);
      this.offset += buffer.length;
    },
  };
}

/** The encoder's `buffer`, its deferred values gathered in. */
function gatherDeferredBuffer(proto: object): void {
  const bufferOf = Object.getOwnPropertyDescriptor(proto, "buffer")!.get!;
  Object.defineProperty(proto, "buffer", {
    get(this: Encoding) {
      if (!this.deferred) return bufferOf.call(this);
      const whole = { buf: Buffer.alloc(encodedLength(this)), offset: 0, ensureAvailable() {} };
      gather(whole, this);
      return whole.buf;
    },
  });
}

/** The encoder's size functions for what the methods write themselves, falling back to `originals`. */
function sizeWithoutBuffers(statics: Record<string, (value: unknown) => number>, originals: EncoderOriginals): void {
  statics.sizeOfVarLong = (value) =>
    isInt32(value) ? uvarintSize((value << 1) ^ (value >> 31)) : originals.sizeOfVarLong.call(Encoder, value);
  statics.sizeOfVarIntBytes = (value) => {
    if (typeof value !== "string" && !isSelfWriting(value)) return originals.sizeOfVarIntBytes.call(Encoder, value);
    const length = typeof value === "string" ? utf8Length(value) : value.byteLength;
    return uvarintSize((length << 1) ^ (length >> 31)) + length;
  };
}

/**
 * kafkajs 2.2.4 encodes each record with a Buffer per varint (`Buffer.from([...bytes])`),
 * 64-bit Long objects for its timestamp delta, `Buffer.byteLength` then `buf.write` for key and
 * value, and `Buffer#copy` to gather the records; Deno's Buffer is a JavaScript layer over
 * Uint8Array, so encoding costs far more under Deno than under Bun (docs/PERFORMANCE.md). The
 * methods of {@linkcode bufferFreeMethods} write the same bytes straight into the encoder's buffer: varints byte by
 * byte, timestamp deltas that fit 32 bits without Long, ASCII strings (every key and value we
 * send) with one `TextEncoder#encodeInto`, copies with `Uint8Array#set`, a batch's records
 * gathered with one growth of its buffer, a {@linkcode SelfWriting} value written by its own method straight into
 * its batch; anything else takes kafkajs' own path.
 */
function encodeWithoutBuffers(): void {
  const proto = Encoder.prototype as unknown as Record<string, EncoderMethod>;
  if (proto.writeUVarInt[KAFKAJS_FIX]) return;
  const statics = Encoder as unknown as Record<string, (value: unknown) => number>;
  const originals: EncoderOriginals = {
    writeVarLong: proto.writeVarLong,
    writeVarIntBytes: proto.writeVarIntBytes,
    sizeOfVarLong: statics.sizeOfVarLong,
    sizeOfVarIntBytes: statics.sizeOfVarIntBytes,
  };
  for (const [name, method] of Object.entries(bufferFreeMethods(originals))) {
    method[KAFKAJS_FIX] = ENCODER_FIX;
    proto[name] = method;
  }
  gatherDeferredBuffer(proto);
  sizeWithoutBuffers(statics, originals);
}

/** Pause before asking for metadata again after a fetch from a broker that refuses connections. */
export const REFUSED_FETCH_PAUSE_MS = 1_000;

/** The part of kafkajs' ConsumerGroup that the fetch fix uses. */
interface FetchingGroup {
  cluster: { refreshMetadata(): Promise<void> };
  recoverFromFetch(error: unknown): Promise<void>;
}

/**
 * A fetch from a partition leader that refuses connections (a broker that died) fails with
 * KafkaJSConnectionError, which kafkajs 2.2.4's recoverFromFetch does not handle: the consumer
 * retries the dead leader, on metadata up to 5 minutes old, until its retry budget is spent and it
 * restarts, a minute or more of nothing consumed (tulios/kafkajs#132, #1439; the fix in PR #134 was
 * never merged). The controller moves the partitions to live replicas within its broker session
 * timeout, so the fix asks for metadata again, after a pause that keeps a dead broker from being
 * asked in a tight loop, and fetches from the new leaders.
 */
function refreshMetadataOnRefusedFetch(): void {
  const proto = ConsumerGroup.prototype as unknown as FetchingGroup & { recoverFromFetch: { [KAFKAJS_FIX]?: string } };
  if (proto.recoverFromFetch[KAFKAJS_FIX]) return;
  const original = proto.recoverFromFetch;
  const recoverFromFetch = async function (this: FetchingGroup, error: unknown): Promise<void> {
    if ((error as Error | undefined)?.name !== "KafkaJSConnectionError") return await original.call(this, error);
    await new Promise((resolve) => setTimeout(resolve, REFUSED_FETCH_PAUSE_MS));
    await this.cluster.refreshMetadata();
  };
  proto.recoverFromFetch = Object.assign(recoverFromFetch, { [KAFKAJS_FIX]: "tulios/kafkajs#132" });
}

/** The parts of kafkajs' ConsumerGroup and OffsetManager that the coordinator fix uses. */
interface Coordinated {
  groupId: string;
  coordinator: unknown;
  offsetManager?: Coordinated;
  cluster: {
    refreshMetadata(): Promise<void>;
    findGroupCoordinator(args: { groupId: string }): Promise<unknown>;
  };
}

type CoordinatedMethod = ((this: Coordinated, ...args: unknown[]) => Promise<unknown>) & { [KAFKAJS_FIX]?: string };

/** Whether `error` says the broker a request went to is gone (refused, closed, or no longer in the metadata). */
function isBrokerGone(error: unknown): boolean {
  const name = (error as Error | undefined)?.name;
  return name === "KafkaJSConnectionError" || name === "KafkaJSConnectionClosedError" ||
    name === "KafkaJSBrokerNotFound";
}

/** The group's coordinator as the cluster names it now, asked for after the same pause as a refused fetch. */
async function currentCoordinator(group: Coordinated): Promise<unknown> {
  await new Promise((resolve) => setTimeout(resolve, REFUSED_FETCH_PAUSE_MS));
  await group.cluster.refreshMetadata();
  return await group.cluster.findGroupCoordinator({ groupId: group.groupId });
}

/**
 * kafkajs 2.2.4 finds a group's coordinator when it joins and then sends every heartbeat, offset
 * fetch and offset commit to that broker. When the broker dies, the controller moves the
 * coordinator to a live replica of `__consumer_offsets` within its broker session timeout, but
 * kafkajs keeps asking the dead one until its retry budget is spent and the consumer restarts (a
 * minute or more without heartbeats and commits). The fix asks the cluster for the coordinator
 * again when a request to it finds the broker gone, and sends the request there.
 */
function followMovedCoordinator(): void {
  const group = ConsumerGroup.prototype as unknown as Record<string, CoordinatedMethod>;
  const offsets = OffsetManager.prototype as unknown as Record<string, CoordinatedMethod>;
  if (group.heartbeat[KAFKAJS_FIX]) return;
  const heartbeat = group.heartbeat;
  group.heartbeat = Object.assign(async function (this: Coordinated, ...args: unknown[]) {
    try {
      return await heartbeat.apply(this, args);
    } catch (error) {
      if (!isBrokerGone(error)) throw error;
      this.coordinator = await currentCoordinator(this);
      if (this.offsetManager) this.offsetManager.coordinator = this.coordinator;
      return await heartbeat.apply(this, args);
    }
  }, { [KAFKAJS_FIX]: "moved group coordinator" });
  const getCoordinator = offsets.getCoordinator;
  offsets.getCoordinator = Object.assign(async function (this: Coordinated) {
    try {
      return await getCoordinator.call(this);
    } catch (error) {
      if (!isBrokerGone(error)) throw error;
      return (this.coordinator = await currentCoordinator(this));
    }
  }, { [KAFKAJS_FIX]: "moved group coordinator" });
}

/** The parts of kafkajs' ConsumerGroup that the rejoin fix uses. */
interface Membership {
  memberId: string | null;
  /** One per kafkajs consumer, kept across its restarts. */
  cluster: object;
}

type MembershipMethod = ((this: Membership, ...args: unknown[]) => Promise<unknown>) & { [KAFKAJS_FIX]?: string };

/** Per kafkajs consumer (its cluster), the member id it holds in its group: set by a join, cleared by a leave. */
const heldMemberIds = new WeakMap<object, string>();
/** The ConsumerGroups that have joined once: a later join without a member id is kafkajs' own fresh start. */
const joinedGroups = new WeakSet<object>();

/**
 * kafkajs 2.2.4 restarts a crashed consumer with a new ConsumerGroup, which joins as a new member.
 * Its LeaveGroup on the way down goes to the coordinator it knew; when that broker is the one
 * that died (the crash's cause, often), the leave fails and the group keeps the old member: the
 * new coordinator then holds the rebalance until that member's session expires (the session
 * timeout, 30 s by default) before it assigns anything. The fix makes a restarted consumer's first
 * join use the member id it still holds, as Kafka's own client does; a coordinator that no longer
 * knows it answers UNKNOWN_MEMBER_ID, and kafkajs then joins afresh.
 */
function rejoinAsHeldMember(): void {
  const group = ConsumerGroup.prototype as unknown as Record<string, MembershipMethod>;
  if (group.joinAndSync[KAFKAJS_FIX]) return;
  const joinAndSync = group.joinAndSync;
  group.joinAndSync = Object.assign(async function (this: Membership) {
    if (!joinedGroups.has(this)) this.memberId ??= heldMemberIds.get(this.cluster) ?? null;
    const joined = await joinAndSync.call(this);
    joinedGroups.add(this);
    if (this.memberId) heldMemberIds.set(this.cluster, this.memberId);
    return joined;
  }, { [KAFKAJS_FIX]: "member id kept across a restart" });
  const leave = group.leave;
  group.leave = Object.assign(async function (this: Membership) {
    await leave.call(this);
    heldMemberIds.delete(this.cluster);
  }, { [KAFKAJS_FIX]: "member id kept across a restart" });
}

type Lookup = (...args: unknown[]) => unknown;

/**
 * kafkajs 2.2.4's Broker answers a request made before its first connection succeeded with a plain
 * `Error("Broker not connected")` (its request lookup is not set up yet), not a connection error:
 * nothing retries it, and the consumer took it for a bug and ended the run, once in the
 * single-broker outage fault test right after Kafka came back. The fix makes it the retriable
 * KafkaJSConnectionError it is; the lookup is wrapped as the constructor and `connect` set it.
 */
function notConnectedIsConnectionError(): void {
  const proto = Broker.prototype as object;
  if (Object.getOwnPropertyDescriptor(proto, "lookupRequest")) return;
  const lookups = new WeakMap<object, Lookup>();
  Object.defineProperty(proto, "lookupRequest", {
    configurable: true,
    get(this: object) {
      return lookups.get(this);
    },
    set(this: { brokerAddress?: string }, lookup: Lookup) {
      lookups.set(this, (...args: unknown[]) => {
        try {
          return lookup(...args);
        } catch (error) {
          if ((error as Error).name !== "Error" || (error as Error).message !== "Broker not connected") throw error;
          throw new KafkaJSConnectionError(`Broker not connected: ${this.brokerAddress}`, {
            broker: this.brokerAddress,
          });
        }
      });
    },
  });
}

skipIdlePendingCheck();
sweepRequestTimeoutsLessOften();
encodeWithoutBuffers();
refreshMetadataOnRefusedFetch();
followMovedCoordinator();
rejoinAsHeldMember();
notConnectedIsConnectionError();
