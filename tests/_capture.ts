/**
 * Shared by the capture's integration and fault tests: an audit trigger that records every
 * committed row change independently of replication, reading the capture topics back, and the
 * check that the topics hold every audited change, in commit order per key, ending on the final
 * row, with duplicates counted; starting the real capture, its stop with one line, and dropping
 * what it leaves.
 * @module
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import type { Sql } from "../lib/database.ts";
import { ensureSchema } from "../lib/sink.ts";
import {
  type PipelineEnv,
  readTables,
  readWholeTopic,
  runCommand,
  type Running,
  startCommand,
  stopProcess,
  uniqueName,
  waitFor,
} from "./_helpers.ts";

/** Names of one capture under test: its topics' prefix, slot and publication. */
export function captureNames(): { CAPTURE_TOPIC_PREFIX: string; CAPTURE_SLOT: string; CAPTURE_PUBLICATION: string } {
  const id = uniqueName("c").toLowerCase();
  return { CAPTURE_TOPIC_PREFIX: id, CAPTURE_SLOT: `${id}_slot`, CAPTURE_PUBLICATION: `${id}_pub` };
}

/** Starts the real capture (`produce capture`, or the binary in `binDir`) and waits until it streams from its slot. */
export async function startCapture(env: PipelineEnv, args: string[] = [], binDir?: string): Promise<Running> {
  const capture = startCommand("produce", ["capture", ...args], env, binDir);
  await waitFor("the capture to stream", () => /streaming from slot/.test(capture.stderr()), 60_000, 100)
    .catch(async (error) => {
      await stopProcess(capture, "SIGKILL");
      throw new Error(`${error.message}\n${capture.stderr().slice(-2000)}`);
    });
  return capture;
}

/** Waits for the run to end; asserts exit 1 with exactly one error line matching `line`. */
export async function assertStopsWithOneLine(running: Running, line: RegExp, timeoutMs = 60_000) {
  const result = await Promise.race([
    running.done,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error("the capture did not stop")), timeoutMs)),
  ]).catch((error) => {
    throw new Error(`${error.message}\n${running.stderr().slice(-3000)}`);
  });
  assert.equal(result.code, 1, result.stderr.slice(-3000));
  const errors = result.stderr.split("\n").filter((l) => /ERROR/.test(l));
  assert.equal(errors.length, 1, result.stderr.slice(-3000));
  assert.match(errors[0], line);
  return result;
}

/** Drops the capture's slot and publication (a database with a slot cannot be dropped), then the database. */
export async function dropCaptureAndDatabase(
  db: { drop: () => Promise<void> },
  env: PipelineEnv,
  binDir?: string,
): Promise<void> {
  const dropped = await runCommand("produce", ["capture", "--drop-slot"], env, binDir)
    .catch((error) => ({ code: -1, stderr: `${error}` }));
  if (dropped.code !== 0) console.error(`dropping the slot failed: ${dropped.stderr}`);
  await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
}

/**
 * Waits until the capture topics hold every audited change and end on the final rows; returns
 * the last check, complete or not when the deadline passed.
 */
export async function settleCapture(
  sql: postgres.Sql,
  prefix: string,
  brokers: string[],
  timeoutMs = 120_000,
): Promise<CaptureCheck> {
  let last: CaptureCheck | undefined;
  await waitFor(
    "the capture topics to hold every audited change",
    async () => {
      last = await checkCaptured(sql, prefix, brokers);
      return last.gaps.length === 0 && last.finalMismatches.length === 0;
    },
    timeoutMs,
    1_000,
  ).catch(() => {});
  if (!last) throw new Error(`the capture topics under ${prefix} could not be checked within ${timeoutMs} ms`);
  return last;
}

/**
 * Creates the tables and an audit trigger on both: each committed insert, update and delete
 * leaves a row in `capture_audit`, in the same transaction, numbered in commit order per key
 * (the row lock serialises a key's changes).
 */
export async function installAudit(sql: postgres.Sql): Promise<void> {
  await ensureSchema(sql as unknown as Sql);
  await sql`create table if not exists capture_audit (seq bigserial primary key, tbl text, id uuid, op text, state text)`;
  await sql`
    create or replace function capture_audit() returns trigger language plpgsql as $$
    declare row jsonb;
    begin
      if tg_op = 'DELETE' then
        insert into capture_audit (tbl, id, op, state) values (tg_table_name, old.id, 'd', 'deleted');
        return old;
      end if;
      row := to_jsonb(new);
      insert into capture_audit (tbl, id, op, state) values (
        tg_table_name, new.id, case tg_op when 'INSERT' then 'c' else 'u' end,
        coalesce(row->>'name', row->>'status') || '|' ||
          coalesce(to_char(new.modified_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), '') || '|' ||
          coalesce(new.is_deleted::text, 'false'));
      return new;
    end $$`;
  for (const table of ["users", "orders"]) {
    await sql`create or replace trigger capture_audit after insert or update or delete on ${sql(table)}
      for each row execute function capture_audit()`;
  }
}

/** One capture event read back: the Debezium payload's parts the checks need. */
export interface CapturedEvent {
  table: "users" | "orders";
  id: string;
  op: "r" | "c" | "u" | "d";
  lsn: number;
  after: Record<string, unknown> | null;
  /** The audit form of the after-row: `name-or-status|modified_at|is_deleted`, or `deleted`. */
  state: string;
}

/** The state string of an event's after-row, in the audit trigger's form. */
function stateOf(op: string, after: Record<string, unknown> | null): string {
  if (op === "d" || !after) return "deleted";
  return `${after.name ?? after.status}|${after.modified_at ?? ""}|${after.is_deleted}`;
}

/** Reads both capture topics; returns each key's events in log order and the tombstones seen. */
export async function readCaptured(prefix: string, brokers: string[]) {
  const byKey = new Map<string, CapturedEvent[]>();
  let tombstones = 0;
  let records = 0;
  for (const table of ["users", "orders"] as const) {
    for (const record of await readWholeTopic(`${prefix}.public.${table}`, 120_000, brokers)) {
      records++;
      const key = JSON.parse(record.key!).payload.id as string;
      if (record.value === null) {
        tombstones++;
        continue;
      }
      const { payload } = JSON.parse(new TextDecoder().decode(record.value));
      const event: CapturedEvent = {
        table,
        id: key,
        op: payload.op,
        lsn: payload.source.lsn,
        after: payload.after,
        state: stateOf(payload.op, payload.after),
      };
      const list = byKey.get(`${table}:${key}`) ?? [];
      list.push(event);
      byKey.set(`${table}:${key}`, list);
    }
  }
  return { byKey, tombstones, records };
}

/** What {@linkcode checkCaptured} found; every list is empty when the capture is right. */
export interface CaptureCheck {
  /** Audited changes in all, and events read. */
  auditedChanges: number;
  events: number;
  /** Events that repeat one already read for the key (same op and LSN). */
  duplicates: number;
  /** Keys whose changes are missing, out of order or not audited, as readable lines. */
  gaps: string[];
  /** Keys whose last event differs from the final row. */
  finalMismatches: string[];
}

/**
 * Checks the topics against the audit: per key, the streamed events (duplicates dropped) are
 * the audited changes after the snapshot's state, in the same order; a key read by the snapshot
 * (`r`) shows the audited state at that point; the last event equals the final row.
 */
export async function checkCaptured(sql: postgres.Sql, prefix: string, brokers: string[]): Promise<CaptureCheck> {
  const audit = await sql<{ tbl: string; id: string; op: string; state: string }[]>`
    select tbl, id::text, op, state from capture_audit order by seq`;
  const audited = new Map<string, { op: string; state: string }[]>();
  for (const row of audit) {
    const key = `${row.tbl}:${row.id}`;
    audited.set(key, [...(audited.get(key) ?? []), { op: row.op, state: row.state }]);
  }
  const { byKey } = await readCaptured(prefix, brokers);
  const final = await readTables(sql);
  let duplicates = 0, events = 0;
  const gaps: string[] = [], finalMismatches: string[] = [];
  const keys = new Set([...audited.keys(), ...byKey.keys()]);
  for (const key of keys) {
    const log = byKey.get(key) ?? [];
    events += log.length;
    const seen = new Set<string>();
    const snapshot: CapturedEvent[] = [];
    const streamed: CapturedEvent[] = [];
    for (const event of log) {
      const identity = `${event.op}@${event.lsn}`;
      if (seen.has(identity)) {
        duplicates++;
        continue;
      }
      seen.add(identity);
      if (event.op === "r") {
        if (streamed.length) gaps.push(`${key}: a snapshot read after streamed changes`);
        snapshot.push(event);
      } else streamed.push(event);
    }
    // A snapshot taken again (the capture died before its first snapshot reached Kafka) reads a key again.
    duplicates += Math.max(0, snapshot.length - 1);
    for (let i = 1; i < streamed.length; i++) {
      if (streamed[i].lsn <= streamed[i - 1].lsn) {
        gaps.push(`${key}: change at LSN ${streamed[i].lsn} after ${streamed[i - 1].lsn}`);
      }
    }
    const changes = audited.get(key) ?? [];
    const start = changes.length - streamed.length;
    const got = streamed.map((e) => `${e.op}:${e.state}`).join(" ");
    const want = changes.slice(Math.max(start, 0)).map((c) => `${c.op}:${c.state}`).join(" ");
    if (start < 0 || got !== want) {
      gaps.push(`${key}: streamed [${got}], audited [${changes.map((c) => `${c.op}:${c.state}`).join(" ")}]`);
    } else if (start > 0) {
      // Changes before the streamed ones were committed before the slot's snapshot: its read shows their result.
      const read = snapshot.at(-1);
      const before = changes[start - 1].state;
      if (read ? read.state !== before : before !== "deleted") {
        gaps.push(`${key}: snapshot read ${read?.state ?? "missing"}, audited ${before} before streaming`);
      }
    }
    const [table, id] = key.split(":") as ["users" | "orders", string];
    const row = final[table].get(id) as unknown as Record<string, unknown> | undefined;
    const last = log.at(-1);
    const lastAfter = last && last.op !== "d" ? last.after : null;
    if (!row && lastAfter) finalMismatches.push(`${key}: deleted, last event ${JSON.stringify(lastAfter)}`);
    if (row && !sameRow(row, lastAfter)) {
      finalMismatches.push(`${key}: row ${JSON.stringify(row)}, last event ${JSON.stringify(lastAfter)}`);
    }
  }
  return {
    auditedChanges: audit.length,
    events,
    duplicates,
    gaps: gaps.slice(0, 20),
    finalMismatches: finalMismatches.slice(0, 20),
  };
}

/** Whether a final row (tests' text form) equals a Debezium after-row, decoded independently. */
function sameRow(row: Record<string, unknown>, after: Record<string, unknown> | null): boolean {
  if (!after) return false;
  for (const [column, value] of Object.entries(row)) {
    let got = after[column];
    if (column === "dob") got = new Date(Number(got) * 86_400_000).toISOString().slice(0, 10);
    if (column === "total_amount") got = decodeDecimal(String(got), 2);
    if (column === "user_id" || column === "status" || column === "name") got = String(got);
    if (got !== value) return false;
  }
  return true;
}

/** Decodes Kafka Connect's Decimal (base64 two's complement, big-endian) to text at `scale`. */
export function decodeDecimal(base64: string, scale: number): string {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  if (bytes[0] & 0x80) value -= 1n << BigInt(8 * bytes.length);
  const digits = (value < 0n ? -value : value).toString().padStart(scale + 1, "0");
  return `${value < 0n ? "-" : ""}${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
}
