/**
 * The signal table's rows as the capture reads them, pure: Debezium's signal format (`id`,
 * `type`, `data` as JSON) in; what to do out, or one line naming the signal's id that says why
 * it was ignored. Data collections are Java regular expressions matched against the whole of
 * `schema.table`, as Debezium's `expandDataCollectionIds` matches them; a name that matches no
 * streamed table is kept as written and then ignored, as Debezium skips a table it cannot find.
 * @module
 */
import type { TableName } from "./config.ts";
import { qualified } from "./capture_slot.ts";

/** One row of the signal table (`id varchar(42) primary key, type varchar(32) not null, data varchar(2048)`). */
export interface SignalRow {
  /** The signal's id, named by every line about it. */
  id: string;
  /** `execute-snapshot`, `stop-snapshot`, `pause-snapshot`, `resume-snapshot`, ... */
  type: string;
  /** The signal's JSON document, if any. */
  data: string | null;
}

/** A table to snapshot, with Debezium's `additional-conditions` filter for it ("" when none). */
export interface SnapshotRequest {
  /** The table. */
  table: TableName;
  /** An SQL condition the chunk query adds (`AND (filter)`), as Debezium's `filter`; "" when none. */
  filter: string;
}

/** What a signal asks of the capture. */
export type Signal =
  /** Snapshot these tables incrementally, after those already queued. */
  | { type: "execute-snapshot"; id: string; requests: SnapshotRequest[] }
  /** Stop snapshotting these tables; `tables` null stops every queued table. */
  | { type: "stop-snapshot"; id: string; tables: TableName[] | null }
  /** Read no further chunk until a resume. */
  | { type: "pause-snapshot"; id: string }
  /** Read chunks again after a pause. */
  | { type: "resume-snapshot"; id: string }
  /** Not acted on; `line` says why (empty for rows the capture leaves alone silently: Debezium's own watermarks). */
  | { type: "ignored"; id: string; line: string };

/** The signal types Debezium writes into the signal table as its own watermarks; not signals to act on. */
const WATERMARK_TYPES = new Set(["snapshot-window-open", "snapshot-window-close"]);

/** Reads one signal row against the tables the capture streams. */
export function readSignal(row: SignalRow, streamed: TableName[]): Signal {
  const { id } = row;
  const ignored = (why: string): Signal => ({
    type: "ignored",
    id,
    line: `signal ${id} (${row.type}) ${why}: ignored`,
  });
  if (WATERMARK_TYPES.has(row.type)) return { type: "ignored", id, line: "" };
  if (row.type === "pause-snapshot" || row.type === "resume-snapshot") return { type: row.type, id };
  if (row.type !== "execute-snapshot" && row.type !== "stop-snapshot") {
    return ignored("is not a signal this capture knows");
  }
  let data: unknown;
  try {
    data = JSON.parse(row.data ?? "{}");
  } catch {
    return ignored(`has data that is not JSON: ${JSON.stringify(row.data)}`);
  }
  if (typeof data !== "object" || data === null || Array.isArray(data)) {
    return ignored("has data that is not an object");
  }
  const doc = data as Record<string, unknown>;
  const type = String(doc.type ?? "incremental").toLowerCase();
  if (type !== "incremental") return ignored(`asks for a ${type} snapshot; only incremental is supported`);
  const names = doc["data-collections"];
  if (names !== undefined && !isStringArray(names)) return ignored(`has "data-collections" that is not a string array`);
  if (row.type === "stop-snapshot") {
    if (!names?.length) return { type: "stop-snapshot", id, tables: null };
    const matched = expand(names, streamed);
    return "error" in matched ? ignored(matched.error) : { type: "stop-snapshot", id, tables: matched.tables };
  }
  if (!names?.length) return ignored(`has no "data-collections"`);
  const matched = expand(names, streamed);
  if ("error" in matched) return ignored(matched.error);
  const conditions = readConditions(doc);
  if ("error" in conditions) return ignored(conditions.error);
  const requests = matched.tables.map((table) => ({
    table,
    filter: conditions.list.find((c) => c.pattern.test(qualified(table)))?.filter ?? "",
  }));
  return { type: "execute-snapshot", id, requests };
}

/** Whether `value` is an array of strings. */
function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === "string");
}

/**
 * The streamed tables the data collections name, each once, in the order named. A name that
 * matches none (a table the capture does not stream) makes the whole signal ignored, so that a
 * typo is seen at once rather than half a request being carried out.
 */
function expand(names: string[], streamed: TableName[]): { tables: TableName[] } | { error: string } {
  const tables: TableName[] = [];
  for (const raw of names) {
    const name = raw.trim();
    const pattern = wholeMatch(name, "");
    if (!pattern) return { error: `has data collection ${JSON.stringify(name)}, not a valid regular expression` };
    const found = streamed.filter((t) => pattern.test(qualified(t)));
    if (!found.length) return { error: `names ${JSON.stringify(name)}, which matches no table this capture streams` };
    for (const t of found) if (!tables.includes(t)) tables.push(t);
  }
  return { tables };
}

/** Debezium's `additional-conditions`: a case-insensitive data-collection pattern and a filter each. */
function readConditions(
  doc: Record<string, unknown>,
): { list: { pattern: RegExp; filter: string }[] } | { error: string } {
  const given = doc["additional-conditions"] ?? [];
  if (!Array.isArray(given)) return { error: `has "additional-conditions" that is not an array` };
  const list: { pattern: RegExp; filter: string }[] = [];
  for (const c of given) {
    const collection = c?.["data-collection"];
    const filter = c?.filter;
    if (typeof collection !== "string" || typeof filter !== "string") {
      return { error: `has an additional condition without a string "data-collection" and "filter"` };
    }
    const pattern = wholeMatch(collection, "i");
    if (!pattern) {
      return { error: `has condition data collection ${JSON.stringify(collection)}, not a regular expression` };
    }
    list.push({ pattern, filter });
  }
  return { list };
}

/** `source` as a regular expression that must match a whole name (Java's `Matcher.matches`); null when invalid. */
function wholeMatch(source: string, flags: string): RegExp | null {
  try {
    return new RegExp(`^(?:${source})$`, flags);
  } catch {
    return null;
  }
}
