/**
 * The incremental snapshot's pure parts: a chunk's window between watermarks (rows a streamed
 * change newer than the read touched are dropped), the queue of tables and its position, stop, pause and
 * resume, and the chunk positions kept only once Kafka acknowledged them.
 */
import assert from "node:assert/strict";
import {
  ChunkCheckpoints,
  ChunkWindow,
  type KeyValues,
  readSaw,
  type ReadSnapshot,
  SnapshotQueue,
} from "../../lib/capture_incremental.ts";

const ITEMS = { schema: "public", table: "items" };
const USERS = { schema: "public", table: "users" };
const ORDERS = { schema: "public", table: "orders" };
type Row = { id: string; name: string };
const rows = (...ids: number[]): Row[] => ids.map((id) => ({ id: String(id), name: `n${id}` }));
const keyOf = (row: Row): KeyValues => [row.id];

/** A read that saw every transaction before 100 but 97, which was still running. */
const READ: ReadSnapshot = { xmax: 100, running: new Set([97]) };

Deno.test("a window publishes the chunk's rows at its high watermark when the stream touched none", () => {
  const window = new ChunkWindow<Row>("c1", ITEMS);
  window.openWindow();
  window.fill(rows(1, 2, 3), keyOf, READ);
  assert.deepEqual(window.close().map((r) => r.id), ["1", "2", "3"]);
});

Deno.test("a key a streamed change touches inside the window leaves the chunk, whether before or after the read", () => {
  const window = new ChunkWindow<Row>("c1", ITEMS);
  window.openWindow();
  window.touched(ITEMS, ["2"], 96); // committed after the low watermark, before the chunk's select saw it
  window.fill(rows(1, 2, 3, 4), keyOf, READ);
  window.touched(ITEMS, ["4"], 101); // committed after the select, before the high watermark
  assert.deepEqual(window.close().map((r) => r.id), ["1", "3"]);
});

Deno.test("a change streamed before the low watermark leaves the chunk only when the read did not see its transaction", () => {
  const window = new ChunkWindow<Row>("c1", ITEMS);
  window.touched(ITEMS, ["1"], 95); // seen by the read: the read is newer
  window.touched(ITEMS, ["2"], 97); // committed before the low watermark, still invisible when the read began
  window.touched(ITEMS, ["3"], 100); // at the read's xmax: not seen
  window.touched(ITEMS, ["4"], null); // no xid: counted as not seen
  window.openWindow();
  window.touched(USERS, ["5"], 101); // another table's key 5
  window.fill(rows(1, 2, 3, 4, 5), keyOf, READ);
  assert.deepEqual(window.close().map((r) => r.id), ["1", "5"]);
});

Deno.test("whether a read saw a transaction holds across the wrap of 32-bit xids", () => {
  const wrapped: ReadSnapshot = { xmax: 5, running: new Set([0xfffffff0]) };
  assert.equal(readSaw(wrapped, 0xffffffe0), true, "before the wrap, finished");
  assert.equal(readSaw(wrapped, 0xfffffff0), false, "before the wrap, running");
  assert.equal(readSaw(wrapped, 4), true, "after the wrap, before xmax");
  assert.equal(readSaw(wrapped, 5), false, "xmax itself");
  assert.equal(readSaw(wrapped, 6), false, "after xmax");
});

Deno.test("a NULL in a key is told from the text 'null'", () => {
  const window = new ChunkWindow<{ k: KeyValues }>("c1", ITEMS);
  window.openWindow();
  window.fill([{ k: ["a", null] }, { k: ["a", "null"] }], (r) => r.k, READ);
  window.touched(ITEMS, ["a", null], 101);
  assert.deepEqual(window.close(), [{ k: ["a", "null"] }]);
});

Deno.test("a high watermark before the low one, or before the rows, is a bug that says which chunk", () => {
  const early = new ChunkWindow<Row>("c7", ITEMS);
  assert.throws(() => early.close(), /chunk c7: its high watermark came before its low one/);
  const unread = new ChunkWindow<Row>("c8", ITEMS);
  unread.openWindow();
  assert.throws(() => unread.close(), /chunk c8: .* before its rows were read/);
});

Deno.test("the queue reads tables one after another, each bounded by its largest key at its start", () => {
  const queue = new SnapshotQueue();
  assert.equal(queue.reading, false);
  queue.add([{ table: ITEMS, filter: "" }, { table: USERS, filter: "id > 3" }]);
  assert.deepEqual(queue.add([{ table: ITEMS, filter: "" }]), [], "a queued table is not queued twice");
  assert.equal(queue.reading, true);
  assert.deepEqual(queue.startNext(), { table: ITEMS, filter: "" });
  assert.equal(queue.startNext(), null, "no second table starts while one is read");
  queue.bounded(ITEMS, ["250"]);
  assert.deepEqual(queue.current, { request: { table: ITEMS, filter: "" }, after: null, until: ["250"] });
  queue.chunkRead(ITEMS, ["100"]);
  assert.deepEqual(queue.current?.after, ["100"]);
  queue.chunkRead(ITEMS, ["250"]); // the largest key: done without reading an empty chunk
  assert.equal(queue.current, null);
  assert.deepEqual(queue.startNext(), { table: USERS, filter: "id > 3" });
  queue.bounded(USERS, null); // empty
  assert.equal(queue.current, null);
  assert.equal(queue.reading, false);
});

Deno.test("a chunk with no row ends its table; a chunk of a table stopped meanwhile changes nothing", () => {
  const queue = new SnapshotQueue();
  queue.add([{ table: ITEMS, filter: "" }, { table: USERS, filter: "" }]);
  queue.startNext();
  queue.bounded(ITEMS, ["9"]);
  queue.chunkRead(ITEMS, null);
  assert.equal(queue.current, null);
  queue.startNext();
  queue.bounded(USERS, ["9"]);
  queue.chunkRead(ITEMS, ["5"]); // a late chunk of items
  assert.deepEqual(queue.current, { request: { table: USERS, filter: "" }, after: null, until: ["9"] });
});

Deno.test("stop-snapshot stops the tables named, or all; pause holds the reading until resume", () => {
  const queue = new SnapshotQueue();
  queue.add([ITEMS, USERS, ORDERS].map((table) => ({ table, filter: "" })));
  queue.startNext();
  assert.deepEqual(queue.stop([USERS]), [USERS]);
  assert.deepEqual(queue.tables, [ITEMS, ORDERS]);
  assert.equal(queue.pause(), true);
  assert.equal(queue.pause(), false, "already paused");
  assert.equal(queue.reading, false);
  assert.equal(queue.unpause(), true);
  assert.equal(queue.reading, true);
  assert.deepEqual(queue.stop([ITEMS]), [ITEMS], "stopping the current table");
  assert.equal(queue.current, null);
  assert.deepEqual(queue.startNext()?.table, ORDERS);
  queue.pause();
  assert.deepEqual(queue.stop(null), [ORDERS]);
  assert.equal(queue.paused, false, "nothing left to pause");
  assert.equal(queue.pause(), false, "no snapshot to pause");
});

Deno.test("a queue's state survives a restart as JSON", () => {
  const queue = new SnapshotQueue();
  queue.add([{ table: ITEMS, filter: "" }, { table: USERS, filter: "x = 'y'" }]);
  queue.startNext();
  queue.bounded(ITEMS, ["1000"]);
  queue.chunkRead(ITEMS, ["500"]);
  queue.pause();
  const kept = JSON.parse(JSON.stringify(queue.state()));
  const again = new SnapshotQueue();
  again.restore(kept);
  assert.deepEqual(again.state(), queue.state());
  assert.equal(again.paused, true);
  assert.deepEqual(again.current?.after, ["500"]);
});

Deno.test("a chunk's position is kept only once Kafka acknowledged its high watermark's commit, the latest winning", () => {
  const checkpoints = new ChunkCheckpoints<string>();
  checkpoints.add(100n, "after chunk 1");
  checkpoints.add(200n, "after chunk 2");
  checkpoints.add(300n, "after chunk 3");
  assert.equal(checkpoints.acknowledged(99n), null);
  assert.deepEqual(checkpoints.acknowledged(250n), { position: "after chunk 2" });
  assert.equal(checkpoints.pending, 1);
  assert.equal(checkpoints.acknowledged(250n), null);
  assert.deepEqual(checkpoints.acknowledged(300n), { position: "after chunk 3" });
  assert.equal(checkpoints.pending, 0);
});
