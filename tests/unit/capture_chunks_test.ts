/**
 * The incremental snapshots of a run without services: a table in memory read in chunks, the
 * stream played by the test as each watermark is written; keys touched inside a window are not
 * read, a stop drops the chunk in flight, and chunk positions are kept once acknowledged.
 */
import assert from "node:assert/strict";
import { type ChunkDatabase, WATERMARK_PREFIX } from "../../lib/capture_chunk_store.ts";
import { IncrementalSnapshots } from "../../lib/capture_chunks.ts";
import { DebeziumEncoder, type TableSpec } from "../../lib/capture_debezium.ts";
import type { QueueState } from "../../lib/capture_incremental.ts";
import type { ChangeSource } from "../../lib/capture_reader.ts";
import { AckingPublisher, AcknowledgedPosition } from "../../lib/capture_publisher.ts";
import type { TopicMessages } from "../../lib/kafka_producer.ts";
import { createLogger } from "../../lib/log.ts";
import { SnapshotProgress } from "../../lib/stats.ts";
import { waitFor } from "../_helpers.ts";
import { usersCatalog } from "./_capture_parts.ts";

const USERS = { schema: "public", table: "users" };
const SOURCE: ChangeSource = { tsUs: 0n, txId: 9, lsn: 0x100n, lastCommitLsn: null };

/** The users table's spec, as the catalog gives it. */
function usersSpec(): Promise<TableSpec> {
  return usersCatalog.tableSpec({
    relationId: 7,
    ...USERS,
    replicaIdentity: "f",
    columns: [{ name: "id", typeOid: 23, typeMod: -1, key: true }, {
      name: "name",
      typeOid: 25,
      typeMod: -1,
      key: false,
    }],
  });
}

/**
 * A run's incremental snapshots over `ids` in memory, chunks of `chunkSize`; `onWatermark` plays
 * the stream when a watermark is written (by default: it comes through, a close with its commit).
 */
async function setUp(ids: number[], chunkSize: number) {
  const spec = await usersSpec();
  const sent: TopicMessages[] = [];
  const kept: (QueueState | null)[] = [];
  const logs: string[] = [];
  const publisher = new AckingPublisher(new AcknowledgedPosition(), {
    send: (messages) => (sent.push(...messages), Promise.resolve()),
    maxBytes: () => 1_000_000,
    maxRecords: 1000,
  });
  let lsn = 0x1000n;
  const hooks: {
    onWatermark: (content: string) => void;
    beforeSpec: () => Promise<void>;
    unseenReads: number;
    keepFails: boolean;
  } = {
    onWatermark: () => {},
    beforeSpec: () => Promise.resolve(),
    unseenReads: 0,
    keepFails: false,
  };
  const database: ChunkDatabase = {
    tableSpec: () => hooks.beforeSpec().then(() => spec),
    largestKey: () => Promise.resolve(ids.length ? [String(Math.max(...ids))] : null),
    readChunk: (_spec, _key, range) => {
      if (hooks.unseenReads > 0) return Promise.resolve((hooks.unseenReads--, null));
      const after = range.after ? Number(range.after[0]) : -Infinity;
      const rows = ids.filter((id) => id > after && id <= Number(range.until[0])).sort((a, b) => a - b);
      const read = rows.slice(0, range.limit).map((id) => [String(id), `user ${id}`]);
      return Promise.resolve({ rows: read, snapshot: { xmax: 9, running: new Set<number>() } });
    },
    estimateRows: () => Promise.resolve(ids.length),
    emitWatermark: (content) => Promise.resolve(hooks.onWatermark(content)),
    loadState: () => Promise.resolve(null),
    keepState: (state) =>
      hooks.keepFails ? Promise.reject(new Error("PostgreSQL is away")) : Promise.resolve(void kept.push(state)),
  };
  const snapshots = new IncrementalSnapshots({
    tables: [USERS],
    signalTable: { schema: "public", table: "signals" },
    chunkSize,
    database,
    encoder: new DebeziumEncoder({ prefix: "cdc", database: "db", version: "test" }),
    publisher,
    logger: createLogger({ component: "test", write: (line) => logs.push(line) }),
    progress: new SnapshotProgress(),
    fail: (error) => {
      throw error;
    },
  });
  /** The stream as the follower reads it: the watermark, and after a close its transaction's commit. */
  const stream = (content: string) => {
    snapshots.message(WATERMARK_PREFIX, new TextEncoder().encode(content), SOURCE);
    if (content.endsWith("-close")) {
      snapshots.committed(lsn += 0x10n);
      publisher.confirmableAt(lsn);
    }
  };
  hooks.onWatermark = stream;
  const reads = () =>
    sent.flatMap((t) => t.messages).filter((m) => m.value !== null).map((m) => JSON.parse(String(m.value)).payload)
      .filter((p) => p.source.snapshot === "incremental").map((p) => p.after.id);
  return { spec, snapshots, publisher, hooks, stream, reads, kept, logs };
}

Deno.test("a table is read in chunks in key order; a key a streamed change touched inside its window is not read", async () => {
  const { spec, snapshots, publisher, hooks, stream, reads, kept, logs } = await setUp([5, 1, 4, 2, 3], 2);
  let windows = 0;
  hooks.onWatermark = (content) => {
    // Inside the first chunk's window the stream carries an update of key 2: that read is dropped.
    if (content.endsWith("-open") && windows++ === 0) {
      stream(content);
      snapshots.changed(spec, { op: "u", before: ["2", "old"], after: ["2", "new"], source: SOURCE });
      return;
    }
    stream(content);
  };
  snapshots.request([USERS]);
  const stop = new AbortController();
  const running = snapshots.run(stop.signal);
  await waitFor(
    "the snapshot to end",
    () => logs.some((l) => /incremental snapshot of public\.users done/.test(l)),
    5_000,
    5,
  );
  await publisher.flush();
  assert.deepEqual(reads(), [1, 3, 4, 5]);
  assert.equal(snapshots.queue.tables.length, 0);
  await waitFor(
    "the last position to be kept",
    async () => (await snapshots.keepAcknowledged(), kept.at(-1) === null),
    5_000,
    5,
  );
  // Only the latest acknowledged position is kept: at the end, no snapshot is left.
  stop.abort();
  await running;
});

Deno.test("a stop-snapshot while a chunk's window is open drops that chunk unpublished, and its close is ignored", async () => {
  const { snapshots, publisher, stream, hooks, reads, logs } = await setUp([1, 2, 3], 10);
  hooks.onWatermark = (content) => {
    stream(content);
    if (content.endsWith("-open")) snapshots.signal(["s1", "stop-snapshot", '{"data-collections": ["public.users"]}']);
  };
  snapshots.request([USERS]);
  const stop = new AbortController();
  const running = snapshots.run(stop.signal);
  await waitFor(
    "the stop",
    () => logs.some((l) => /signal s1: stopped the snapshot of public\.users/.test(l)),
    5_000,
    5,
  );
  await waitFor("the queue to empty", () => !snapshots.queue.reading, 5_000, 5);
  await publisher.flush();
  assert.deepEqual(reads(), []);
  assert.ok(!logs.some((l) => /done/.test(l)));
  stop.abort();
  await running;
});

Deno.test("a stop-snapshot while the reader reads the table's spec reads no chunk, publishes nothing and keeps no position of it", async () => {
  const { snapshots, publisher, hooks, reads, kept, logs } = await setUp([1, 2, 3], 2);
  const specAsked = Promise.withResolvers<void>();
  const specGate = Promise.withResolvers<void>();
  let watermarks = 0;
  const stream = hooks.onWatermark;
  hooks.onWatermark = (content) => (watermarks++, stream(content));
  let specs = 0;
  // The first spec is the one bounding the table, the second its first chunk's: the stop comes during that one.
  hooks.beforeSpec = () => ++specs === 2 ? (specAsked.resolve(), specGate.promise) : Promise.resolve();
  snapshots.request([USERS]);
  const stop = new AbortController();
  const running = snapshots.run(stop.signal);
  await specAsked.promise;
  const watermarksBefore = watermarks;
  snapshots.signal(["s1", "stop-snapshot", '{"data-collections": ["public.users"]}']);
  snapshots.committed(0x5000n);
  publisher.confirmableAt(0x5000n);
  specGate.resolve();
  await waitFor("the queue to empty", () => !snapshots.queue.reading, 5_000, 5);
  await waitFor(
    "the stop to be kept",
    async () => (await snapshots.keepAcknowledged(), kept.at(-1) === null),
    5_000,
    5,
  );
  await publisher.flush();
  assert.equal(watermarks, watermarksBefore, "no watermark after the stop");
  assert.ok(!logs.some((l) => /done/.test(l)), logs.join("\n"));
  assert.deepEqual(reads(), []);
  stop.abort();
  await running;
});

Deno.test("a chunk whose read missed a transaction already committed is read again, and published once", async () => {
  const { snapshots, publisher, hooks, reads, logs } = await setUp([1, 2, 3], 10);
  hooks.unseenReads = 3;
  snapshots.request([USERS]);
  const stop = new AbortController();
  const running = snapshots.run(stop.signal);
  await waitFor("the snapshot to end", () => logs.some((l) => /public\.users done/.test(l)), 5_000, 5);
  await publisher.flush();
  assert.equal(hooks.unseenReads, 0, "every read given up was made again");
  assert.deepEqual(reads(), [1, 2, 3]);
  stop.abort();
  await running;
});

Deno.test("a run stopped at once, with no table queued, ends instead of waiting for work forever", async () => {
  const { snapshots } = await setUp([1], 10);
  const stop = new AbortController();
  const running = snapshots.run(stop.signal);
  stop.abort(); // while its first step awaits: the capture stopped right after its stream began
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), 5_000));
  const ended = await Promise.race([running.then(() => "ended" as const), late]);
  clearTimeout(timer);
  assert.equal(ended, "ended");
});

Deno.test("the slot is not confirmed past a signal's transaction until the queue it moved is kept", async () => {
  const { snapshots, publisher, hooks, kept } = await setUp([1, 2, 3], 10);
  publisher.confirmableAt(0x500n);
  snapshots.signal(["s1", "execute-snapshot", '{"data-collections": ["public.users"]}']);
  assert.equal(snapshots.confirmable(publisher.acknowledgedLsn), 0x500n, "inside the transaction");
  snapshots.committed(0x600n);
  publisher.confirmableAt(0x600n);
  assert.equal(publisher.acknowledgedLsn, 0x600n, "Kafka acknowledged the signal's transaction");
  assert.equal(snapshots.confirmable(publisher.acknowledgedLsn), 0x500n, "acknowledged, not kept");
  hooks.keepFails = true;
  await assert.rejects(snapshots.keepAcknowledged(), /PostgreSQL is away/);
  assert.equal(snapshots.confirmable(publisher.acknowledgedLsn), 0x500n, "keeping it failed");
  hooks.keepFails = false;
  await snapshots.keepAcknowledged();
  assert.deepEqual(kept.at(-1)?.waiting.map((r) => r.table.table), ["users"]);
  assert.equal(snapshots.confirmable(publisher.acknowledgedLsn), 0x600n, "kept: the hold is gone");
});

Deno.test("watermarks of another prefix or an unknown chunk change nothing", async () => {
  const { snapshots, publisher, reads } = await setUp([1], 10);
  snapshots.message("other.app", new TextEncoder().encode("x-close"), SOURCE);
  snapshots.message(WATERMARK_PREFIX, new TextEncoder().encode("not-a-chunk-close"), SOURCE);
  snapshots.committed(0x2000n);
  await publisher.flush();
  assert.deepEqual(reads(), []);
});
