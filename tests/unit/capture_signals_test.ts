/**
 * Signal rows in Debezium's format read against the streamed tables: execute-snapshot with names
 * and regular expressions, additional conditions, stop, pause and resume, and the signals that are
 * ignored with one line naming their id.
 */
import assert from "node:assert/strict";
import { readSignal, type SignalRow } from "../../lib/capture_signals.ts";

const ITEMS = { schema: "public", table: "items" };
const ITEM_TAGS = { schema: "public", table: "item_tags" };
const USERS = { schema: "public", table: "users" };
const STREAMED = [USERS, ITEMS, ITEM_TAGS];

const row = (type: string, data: unknown, id = "sig-1"): SignalRow => ({
  id,
  type,
  data: typeof data === "string" || data === null ? data : JSON.stringify(data),
});

Deno.test("execute-snapshot names a table: an incremental request for it, without a filter", () => {
  const signal = readSignal(
    row("execute-snapshot", { "data-collections": ["public.items"], type: "incremental" }),
    STREAMED,
  );
  assert.deepEqual(signal, { type: "execute-snapshot", id: "sig-1", requests: [{ table: ITEMS, filter: "" }] });
});

Deno.test("execute-snapshot without a type is incremental, as in Debezium", () => {
  const signal = readSignal(row("execute-snapshot", { "data-collections": [" public.users "] }), STREAMED);
  assert.deepEqual(signal, { type: "execute-snapshot", id: "sig-1", requests: [{ table: USERS, filter: "" }] });
});

Deno.test("data collections are regular expressions matched against the whole schema.table", () => {
  const signal = readSignal(
    row("execute-snapshot", { "data-collections": ["public\\.item.*", "public.users"] }),
    STREAMED,
  );
  assert.equal(signal.type, "execute-snapshot");
  assert.deepEqual(signal.type === "execute-snapshot" && signal.requests.map((r) => r.table), [
    ITEMS,
    ITEM_TAGS,
    USERS,
  ]);
  // A partial match is no match: "items" alone does not match "public.items".
  const partial = readSignal(row("execute-snapshot", { "data-collections": ["items"] }), STREAMED);
  assert.equal(partial.type, "ignored");
});

Deno.test("a table named twice is snapshotted once", () => {
  const signal = readSignal(
    row("execute-snapshot", { "data-collections": ["public.items", "public\\.it.*s"] }),
    STREAMED,
  );
  assert.deepEqual(signal.type === "execute-snapshot" && signal.requests.map((r) => r.table), [ITEMS, ITEM_TAGS]);
});

Deno.test("additional conditions go to the tables their case-insensitive pattern matches, the first one winning", () => {
  const signal = readSignal(
    row("execute-snapshot", {
      "data-collections": ["public.items", "public.users"],
      "additional-conditions": [
        { "data-collection": "PUBLIC.ITEMS", filter: "color = 'blue'" },
        { "data-collection": "public\\..*", filter: "id > 10" },
      ],
    }),
    STREAMED,
  );
  assert.deepEqual(signal, {
    type: "execute-snapshot",
    id: "sig-1",
    requests: [{ table: ITEMS, filter: "color = 'blue'" }, { table: USERS, filter: "id > 10" }],
  });
});

Deno.test("stop-snapshot with data collections stops those; without, it stops every table", () => {
  assert.deepEqual(readSignal(row("stop-snapshot", { "data-collections": ["public.items"] }), STREAMED), {
    type: "stop-snapshot",
    id: "sig-1",
    tables: [ITEMS],
  });
  assert.deepEqual(readSignal(row("stop-snapshot", { type: "incremental" }), STREAMED), {
    type: "stop-snapshot",
    id: "sig-1",
    tables: null,
  });
  assert.deepEqual(readSignal(row("stop-snapshot", null), STREAMED), {
    type: "stop-snapshot",
    id: "sig-1",
    tables: null,
  });
});

Deno.test("pause-snapshot and resume-snapshot need no data", () => {
  assert.deepEqual(readSignal(row("pause-snapshot", null), STREAMED), { type: "pause-snapshot", id: "sig-1" });
  assert.deepEqual(readSignal(row("resume-snapshot", "{}"), STREAMED), { type: "resume-snapshot", id: "sig-1" });
});

Deno.test("malformed JSON is ignored with one line naming the signal id", () => {
  const signal = readSignal(row("execute-snapshot", '{"data-collections": [', "ad-hoc-7"), STREAMED);
  assert.equal(signal.type, "ignored");
  assert.match(
    signal.type === "ignored" ? signal.line : "",
    /^signal ad-hoc-7 \(execute-snapshot\) .*not JSON.*: ignored$/,
  );
});

Deno.test("a table the capture does not stream is ignored with one line naming the signal id and the name", () => {
  const signal = readSignal(row("execute-snapshot", { "data-collections": ["public.ghosts"] }, "s-9"), STREAMED);
  assert.equal(signal.type, "ignored");
  const line = signal.type === "ignored" ? signal.line : "";
  assert.match(line, /^signal s-9 /);
  assert.match(line, /public\.ghosts/);
  assert.ok(!line.includes("\n"));
});

Deno.test("signals that cannot be carried out are ignored with a line: blocking, no collections, bad regex, bad types", () => {
  const cases: unknown[] = [
    { "data-collections": ["public.items"], type: "blocking" },
    { "data-collections": [] },
    { "data-collections": ["public.(items"] },
    { "data-collections": "public.items" },
    { "data-collections": ["public.items"], "additional-conditions": [{ filter: "x" }] },
    [1, 2],
  ];
  for (const data of cases) {
    const signal = readSignal(row("execute-snapshot", data), STREAMED);
    assert.equal(signal.type, "ignored", JSON.stringify(data));
    assert.match(signal.type === "ignored" ? signal.line : "", /^signal sig-1 \(execute-snapshot\) .+: ignored$/);
  }
  const unknown = readSignal(row("log", { message: "hi" }), STREAMED);
  assert.match(unknown.type === "ignored" ? unknown.line : "", /^signal sig-1 \(log\) is not a signal/);
});

Deno.test("Debezium's own watermark rows are left alone without a line", () => {
  for (const type of ["snapshot-window-open", "snapshot-window-close"]) {
    assert.deepEqual(readSignal(row(type, '{"openWindowTimestamp": "x"}', "a-open"), STREAMED), {
      type: "ignored",
      id: "a-open",
      line: "",
    });
  }
});
