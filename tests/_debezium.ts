/**
 * Shared by tests/capture_debezium_compat_test.ts: the real Debezium PostgreSQL connector run as the
 * Debezium Engine (scripts/debezium/), its records read back from its output file, and the
 * leaf-by-leaf comparison of two connectors' records with docs/CAPTURE.md's list of known differences.
 * @module
 */
import { connectorProperties } from "../scripts/debezium/connector.ts";
import type postgres from "postgres";
import { BROKERS, readWholeTopic, ROOT, testKafka, uniqueName, waitFor } from "./_helpers.ts";

/** One record as a connector wrote it: key and value as JSON text (null for a tombstone's value). */
export interface ConnectorRecord {
  topic: string;
  key: string | null;
  value: string | null;
  /** Kafka headers, name to text (JSON for Debezium's `__debezium.*` headers). */
  headers?: Record<string, string>;
}

/** What the Debezium Engine is told: where to read and what to call things. */
export interface DebeziumOptions {
  /** postgres://user:password@host:port/database of the captured database. */
  databaseUrl: string;
  /** Debezium's `topic.prefix`, the capture's topic prefix. */
  prefix: string;
  slot: string;
  publication: string;
  /** `schema.table` names, Debezium's `table.include.list`. */
  tables: string[];
  /** Folder for the properties file and the records file. */
  dir: string;
  /** Further Debezium properties by their own names (`decimal.handling.mode`...). */
  extra?: Record<string, string>;
}

/** A running Debezium Engine. */
export interface RunningDebezium {
  /** The records written so far, in Debezium's order. */
  records: () => Promise<ConnectorRecord[]>;
  /** Everything written to stderr so far (Debezium's log). */
  stderr: () => string;
  /** Whether the JVM has exited, and with which code. */
  exited: () => number | undefined;
  /** SIGTERM, then waits for the engine to close; returns the exit code. */
  stop: () => Promise<number>;
}

const RUN_SCRIPT = `${ROOT}scripts/debezium/run.sh`;

/** Resolves the Debezium jars and compiles the engine program (once; cached in .cache/), progress on stderr. */
export async function resolveDebezium(): Promise<void> {
  const { code } = await new Deno.Command("bash", {
    args: [RUN_SCRIPT, "resolve"],
    stderr: "inherit",
    stdout: "inherit",
  })
    .output();
  if (code !== 0) throw new Error(`scripts/debezium/run.sh resolve exited with ${code}; see the lines above`);
}

/** Starts Debezium on `options`; its records go to `<dir>/debezium.jsonl`. Call {@linkcode resolveDebezium} first. */
export async function startDebezium(options: DebeziumOptions): Promise<RunningDebezium> {
  const propertiesFile = `${options.dir}/debezium.properties`;
  const outputFile = `${options.dir}/debezium.jsonl`;
  await Deno.writeTextFile(
    propertiesFile,
    connectorProperties({ ...options, name: `compat-${options.prefix}`, snapshotMode: "initial" }),
  );
  await Deno.writeTextFile(outputFile, "");
  const child = new Deno.Command("bash", {
    args: [RUN_SCRIPT, propertiesFile, outputFile],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let log = "";
  let exitCode: number | undefined;
  const decoder = new TextDecoder();
  const readLog = Promise.all([child.stdout, child.stderr].map(async (stream) => {
    for await (const chunk of stream) log += decoder.decode(chunk, { stream: true });
  }));
  const done = child.status.then(async (status) => {
    await readLog;
    exitCode = status.code;
    return status.code;
  });
  return {
    records: async () => parseRecordLines(await Deno.readTextFile(outputFile)),
    stderr: () => log,
    exited: () => exitCode,
    stop: async () => {
      if (exitCode === undefined) {
        try {
          child.kill("SIGTERM");
        } catch {
          // it had exited already
        }
      }
      return await done;
    },
  };
}

/**
 * Makes one commit that both connectors stream, before the changes they are compared on. PostgreSQL 14 streams empty
 * transactions too (15 and later leave them out), and a streamed change's `source.sequence` starts with the last commit
 * its connector saw: without this, the capture's own commit that its snapshot is done, made before Debezium's stream
 * starts, would be that commit for the capture alone.
 */
export async function commitBothConnectorsSee(sql: postgres.Sql): Promise<void> {
  await sql`create table ${sql(uniqueName("both_see"))} (x int)`;
}

/** The complete lines of the engine's output file (a line being written has no newline yet). */
function parseRecordLines(text: string): ConnectorRecord[] {
  const lines = text.split("\n").slice(0, -1);
  return lines.map((line) => {
    const { topic, key, value, headers } = JSON.parse(line);
    return { topic, key, value, headers };
  });
}

/** A JSON number kept as its text, so 64-bit integers (`ts_ns`, LSNs) compare exactly. */
class JsonNumber {
  /** Keeps the number's source text. */
  constructor(readonly text: string) {}
}

/** JSON.parse that keeps numbers as {@linkcode JsonNumber}. */
function parseExact(text: string): unknown {
  // deno-lint-ignore no-explicit-any
  const reviver: any = (_key: string, value: unknown, context?: { source?: string }) =>
    typeof value === "number" ? new JsonNumber(context?.source ?? String(value)) : value;
  return JSON.parse(text, reviver);
}

/** A leaf of a flattened record: its JSON type and its value in canonical text. */
interface Leaf {
  type: "null" | "boolean" | "number" | "string" | "object" | "array";
  text: string;
}

/**
 * Flattens a parsed record into leaves keyed by path: `value.payload.after.name`, and, for a
 * Kafka Connect struct schema, `value.schema.fields[after].fields[name].optional`, with the
 * fields' order as the leaf `...fields(order)`, so a difference names the column it is about. The
 * order of each object's names is the leaf `...(names)`.
 */
function flatten(node: unknown, path: string, leaves = new Map<string, Leaf>()): Map<string, Leaf> {
  if (node instanceof JsonNumber) {
    leaves.set(path, { type: "number", text: canonicalNumber(node.text) });
  } else if (node === null || typeof node !== "object") {
    const type = node === null ? "null" : typeof node as "boolean" | "string";
    leaves.set(path, { type, text: JSON.stringify(node) });
  } else if (Array.isArray(node)) {
    const named = node.length > 0 && node.every((e) => e && typeof e === "object" && typeof e.field === "string");
    if (named) leaves.set(`${path}(order)`, { type: "string", text: node.map((e) => e.field).join(",") });
    if (node.length === 0) leaves.set(path, { type: "array", text: "[]" });
    node.forEach((element, i) => flatten(element, named ? `${path}[${element.field}]` : `${path}[${i}]`, leaves));
  } else {
    const entries = Object.entries(node);
    if (entries.length === 0) leaves.set(path, { type: "object", text: "{}" });
    // JsonConverter writes an object's names in a fixed order (a schema's type, fields, optional, name, ...).
    else leaves.set(`${path}(names)`, { type: "string", text: entries.map(([name]) => name).join(",") });
    for (const [name, child] of entries) flatten(child, path ? `${path}.${name}` : name, leaves);
  }
  return leaves;
}

/** One number text for one value: integers as BigInt text, others as the double they denote. */
function canonicalNumber(text: string): string {
  return /^-?\d+$/.test(text) ? BigInt(text).toString() : String(Number(text));
}

/** A record's identity within its topic: the key's payload, canonical. */
function keyIdentity(key: string | null): string {
  if (key === null) return "null";
  const parsed = parseExact(key) as { payload?: unknown };
  return canonicalJson(parsed?.payload ?? parsed);
}

function canonicalJson(node: unknown): string {
  if (node instanceof JsonNumber) return canonicalNumber(node.text);
  if (node === null || typeof node !== "object") return JSON.stringify(node);
  if (Array.isArray(node)) return `[${node.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(node).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0);
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

/** One leaf that differs between our record and Debezium's. */
export interface Difference {
  topic: string;
  key: string;
  /** The pair's position among the key's records, from 0. */
  index: number;
  /** `(record)` when one side has no record at this position. */
  path: string;
  ours: string;
  debezium: string;
}

/**
 * Paths whose values are the moment a connector ran, not a fact of the database: the envelope's
 * processing time always, and for snapshot reads also `source`'s times, LSN, sequence and txId,
 * which belong to each connector's own slot and snapshot transaction. They are compared by
 * presence and type only. Streamed changes' `source` values come from the one WAL, so are exact.
 */
function isCaptureTime(path: string, op: string | undefined): boolean {
  if (/^value\.payload\.ts_(ms|us|ns)$/.test(path)) return true;
  return op === "r" && /^value\.payload\.source\.(ts_ms|ts_us|ts_ns|lsn|sequence|txId)$/.test(path);
}

/** Groups records by topic and key identity, each group in output order. */
function groupByKey(records: ConnectorRecord[]): Map<string, { topic: string; key: string; list: ConnectorRecord[] }> {
  const groups = new Map<string, { topic: string; key: string; list: ConnectorRecord[] }>();
  for (const record of records) {
    const key = keyIdentity(record.key);
    const id = `${record.topic}\u0000${key}`;
    const group = groups.get(id) ?? { topic: record.topic, key, list: [] };
    group.list.push(record);
    groups.set(id, group);
  }
  return groups;
}

/** A short description of a record, for a difference where the other side has none. */
function describeRecord(record: ConnectorRecord | undefined): string {
  if (!record) return "(none)";
  if (record.value === null) return "tombstone";
  const op = (parseExact(record.value) as { payload?: { op?: string } })?.payload?.op;
  return `op=${op}`;
}

function leavesOf(record: ConnectorRecord): Map<string, Leaf> {
  const leaves = flatten(record.key === null ? null : parseExact(record.key), "key");
  for (const [name, text] of Object.entries(record.headers ?? {})) {
    // The engine's context headers name its run (a runId per run); the capture writes none.
    if (!name.startsWith(CONTEXT_HEADERS)) flatten(parseExact(text), `headers.${name}`, leaves);
  }
  return flatten(record.value === null ? null : parseExact(record.value), "value", leaves);
}

const CONTEXT_HEADERS = "__debezium.context.";

/** Per capture-time path in microseconds or nanoseconds: how many values had only millisecond precision. */
type Precision = Map<string, { ours: [number, number]; debezium: [number, number] }>;

/** Tallies whether a `ts_us`/`ts_ns` value is a whole number of milliseconds. */
function tallyPrecision(precision: Precision, path: string, side: "ours" | "debezium", leaf: Leaf | undefined) {
  const unit = path.endsWith("ts_us") ? 1_000n : path.endsWith("ts_ns") ? 1_000_000n : 0n;
  if (!unit || leaf?.type !== "number" || !/^-?\d+$/.test(leaf.text)) return;
  const entry = precision.get(path) ?? { ours: [0, 0], debezium: [0, 0] };
  if (BigInt(leaf.text) % unit === 0n) entry[side][0]++;
  entry[side][1]++;
  precision.set(path, entry);
}

/** Compares two records leaf by leaf; capture-time paths by presence and type, the envelope's precision tallied. */
function compareRecords(ours: ConnectorRecord, theirs: ConnectorRecord, precision: Precision) {
  const a = leavesOf(ours), b = leavesOf(theirs);
  const op = b.get("value.payload.op")?.text.replaceAll('"', "");
  const found = [];
  for (const path of new Set([...b.keys(), ...a.keys()])) {
    const x = a.get(path), y = b.get(path);
    const captureTime = isCaptureTime(path, op);
    // A snapshot read's source times are each connector's clock reading, at whatever precision the
    // clock gave that run (Debezium's were whole milliseconds in all but one of about 50 runs).
    if (captureTime && !path.startsWith("value.payload.source.")) {
      tallyPrecision(precision, path, "ours", x);
      tallyPrecision(precision, path, "debezium", y);
    }
    const same = x && y && x.type === y.type && (captureTime || x.text === y.text);
    if (!same) found.push({ path, ours: x ? x.text : "(missing)", debezium: y ? y.text : "(missing)" });
  }
  return found;
}

/**
 * A capture-time `ts_us`/`ts_ns` path where one side has millisecond precision in every record
 * and the other does not: one value can be a whole millisecond by chance, all of them cannot.
 */
function precisionDifferences(precision: Precision): Difference[] {
  const differences: Difference[] = [];
  for (const [path, { ours, debezium }] of precision) {
    const coarse = ([whole, total]: [number, number]) => total >= 3 && whole === total;
    if (coarse(ours) === coarse(debezium)) continue;
    const describe = ([whole, total]: [number, number]) => `whole milliseconds in ${whole} of ${total} records`;
    differences.push({
      topic: "(all topics)",
      key: "(all keys)",
      index: 0,
      path: `${path}(precision)`,
      ours: describe(ours),
      debezium: describe(debezium),
    });
  }
  return differences;
}

/** Every difference between our records and Debezium's, per topic and key, pairing records in order. */
export function compareOutputs(ours: ConnectorRecord[], theirs: ConnectorRecord[]): Difference[] {
  const a = groupByKey(ours), b = groupByKey(theirs);
  const differences: Difference[] = [];
  const precision: Precision = new Map();
  for (const id of new Set([...b.keys(), ...a.keys()])) {
    const { topic, key } = (b.get(id) ?? a.get(id))!;
    const x = a.get(id)?.list ?? [], y = b.get(id)?.list ?? [];
    for (let index = 0; index < Math.max(x.length, y.length); index++) {
      if (!x[index] || !y[index]) {
        const [ours, debezium] = [describeRecord(x[index]), describeRecord(y[index])];
        differences.push({ topic, key, index, path: "(record)", ours, debezium });
        continue;
      }
      for (const d of compareRecords(x[index], y[index], precision)) differences.push({ topic, key, index, ...d });
    }
  }
  return [...differences, ...precisionDifferences(precision)];
}

/**
 * A known difference and why it remains. Its pattern (`*` matches any run of characters) is
 * matched against the path, or, when it holds ": ", against `path: ours=... debezium=...`, so an
 * item can name the values too.
 */
export interface KnownDifference {
  pattern: string;
  reason: string;
  matches: (difference: Difference) => boolean;
}

/**
 * The known differences listed in docs/CAPTURE.md's "### Differences from Debezium" subsection: each
 * bullet starts with a path pattern in backquotes, then the reason.
 */
export function knownDifferences(readme: string): KnownDifference[] {
  const start = readme.indexOf("\n### Differences from Debezium\n");
  if (start < 0) throw new Error('docs/CAPTURE.md has no "### Differences from Debezium" subsection: restore it');
  const section = readme.slice(start + 1).split(/\n(?=#{2,3} )/)[0];
  const known: KnownDifference[] = [];
  for (const match of section.matchAll(/^- `([^`]+)`:? *(.*)$/gm)) {
    const [, pattern, reason] = match;
    const regex = new RegExp(`^${pattern.split("*").map((p) => p.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
    const withValues = pattern.includes(": ");
    const subject = (d: Difference) => withValues ? `${d.path}: ours=${d.ours} debezium=${d.debezium}` : d.path;
    known.push({ pattern, reason, matches: (d) => regex.test(subject(d)) });
  }
  return known;
}

/** Differences grouped by path, with a count and one example each, sorted by path: the report's form. */
export function groupByPath(differences: Difference[]): string[] {
  const groups = new Map<string, { count: number; example: Difference }>();
  for (const d of differences) {
    const group = groups.get(d.path) ?? { count: 0, example: d };
    group.count++;
    groups.set(d.path, group);
  }
  return [...groups.entries()].sort(([a], [b]) => a < b ? -1 : 1).map(([path, { count, example }]) =>
    `${path} (${count}x), e.g. ${formatDifference(example)}`
  );
}

/** `topic key path: ours=... debezium=...`, values cut to 300 characters. */
export function formatDifference(d: Difference): string {
  const cut = (s: string) => s.length > 300 ? `${s.slice(0, 300)}...` : s;
  return `${d.topic} ${d.key}#${d.index} ${d.path}: ours=${cut(d.ours)} debezium=${cut(d.debezium)}`;
}

/** Records of Kafka topics read as they arrive, from the beginning, by one consumer. */
export interface TopicFollower {
  /** The records read so far, per partition in log order. */
  records: () => ConnectorRecord[];
  stop: () => Promise<void>;
}

/** Follows `topics` (which must exist) from their first offset with a consumer of its own group. */
export async function followTopics(topics: string[], brokers = BROKERS): Promise<TopicFollower> {
  const consumer = testKafka(brokers).consumer({ groupId: uniqueName("compat"), maxWaitTimeInMs: 200 });
  const records: ConnectorRecord[] = [];
  const decoder = new TextDecoder();
  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: true });
  await consumer.run({
    eachMessage: ({ topic, message }) => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(message.headers ?? {})) {
        if (value !== undefined) headers[name] = String(value);
      }
      records.push({
        topic,
        key: message.key ? decoder.decode(message.key) : null,
        value: message.value ? decoder.decode(message.value) : null,
        headers,
      });
      return Promise.resolve();
    },
  });
  return { records: () => records, stop: () => consumer.disconnect() };
}

/**
 * The capture's records of `topic`, read to each partition's end, as the connector records
 * Debezium's are compared with: unlike a follower's, none of a partition read later is missing.
 */
export async function readConnectorTopic(topic: string, brokers = BROKERS): Promise<ConnectorRecord[]> {
  return (await readWholeTopic(topic, 60_000, brokers)).map((r) => ({
    topic,
    key: r.key,
    value: r.value ? new TextDecoder().decode(r.value) : null,
    headers: r.headers,
  }));
}

/** Whether a record is the one with this key payload field value, e.g. `{id: marker}`. */
export function hasKey(record: ConnectorRecord, field: string, value: string): boolean {
  if (record.key === null) return false;
  const key = parseExact(record.key) as { payload?: Record<string, unknown> };
  return key?.payload?.[field] === value;
}

/** Every record of the topics named `<prefix>.*`, but those in `skip`, each topic read whole, topics in name order. */
export async function readPrefixTopics(prefix: string, skip: string[] = []): Promise<ConnectorRecord[]> {
  const admin = testKafka().admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(`${prefix}.`) && !skip.includes(t)).sort();
  await admin.disconnect();
  const records: ConnectorRecord[] = [];
  for (const topic of topics) {
    for (const r of await readWholeTopic(topic)) {
      records.push({ topic, key: r.key, value: r.value && new TextDecoder().decode(r.value), headers: r.headers });
    }
  }
  return records;
}

/** Waits until the stopped connectors have released `slots`, then drops them, so the database can be dropped. */
export async function dropReleasedSlots(sql: postgres.Sql, slots: string[]): Promise<void> {
  await waitFor("the connectors' slots to be released", async () => {
    const [row] = await sql`
      select count(*)::int as active from pg_replication_slots where slot_name in ${sql(slots)} and active`;
    return row.active === 0;
  }, 30_000);
  await sql`select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name in ${sql(slots)}`;
}
