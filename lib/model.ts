/**
 * The wire format of docs/CONTRACT.md section 2: event types, validation of what arrives, and the
 * normalised changes the sink applies. Validation errors name the field, the rule and the
 * value, and become DLQ reasons verbatim.
 * @module
 */
import { Buffer } from "node:buffer";
import { PipelineError } from "./errors.ts";

/** What happened to an entity. */
export type EventType = "CREATE" | "UPDATE" | "DELETE";

/** Status of an order, one per event type. */
export type OrderStatus = "PLACED" | "SHIPPED" | "CANCELLED";

/** A user event as it travels on the wire (field names fixed by the Go original). */
export interface UserEvent {
  event_type: EventType;
  user_id: string;
  name?: string;
  dob?: string;
  created_at?: string;
  modified_at?: string;
}

/** An order event as it travels on the wire. */
export interface OrderEvent {
  event_type: EventType;
  order_id: string;
  order_status: OrderStatus;
  user_id?: string;
  quantity?: number;
  order_total?: number;
  placed_at?: string;
  modified_at?: string;
}

/** A validated user event, timestamps normalised to UTC with microseconds. */
export interface UserChange {
  entity: "user";
  type: EventType;
  id: string;
  name?: string;
  dob?: string;
  createdAt?: string;
  modifiedAt?: string;
}

/** A validated order event; `total` is a decimal string rounded to cents. */
export interface OrderChange {
  entity: "order";
  type: EventType;
  id: string;
  status: OrderStatus;
  userId?: string;
  quantity?: number;
  total?: string;
  placedAt?: string;
  modifiedAt?: string;
}

/** Status an order event of each type carries. */
export const STATUS_OF: Record<EventType, OrderStatus> = {
  CREATE: "PLACED",
  UPDATE: "SHIPPED",
  DELETE: "CANCELLED",
};

/** An event that breaks the wire format; `message` is the reason a person reads in the DLQ. */
export class InvalidEventError extends PipelineError {}

const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const CANONICAL_TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.\d{6}Z$/;
const EVENT_TYPES: readonly string[] = ["CREATE", "UPDATE", "DELETE"];
const ORDER_STATUSES: readonly string[] = ["PLACED", "SHIPPED", "CANCELLED"];
const MAX_NAME = 50;
const MAX_INT32 = 2_147_483_647;
/** DECIMAL(10,2) holds at most 99999999.99, that is 9,999,999,999 cents. */
const MAX_CENTS = 9_999_999_999;
const utf8 = new TextDecoder("utf-8", { fatal: true });
const lenient = new TextDecoder("utf-8", { ignoreBOM: true });

function shown(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

function fail(field: string, rule: string, value: unknown): never {
  throw new InvalidEventError(`${field} must be ${rule}: got ${shown(value)}`);
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  return month === 2 && isLeap(year) ? 29 : DAYS_IN_MONTH[month - 1];
}

function isLeap(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

function validDate(year: number, month: number, day: number): boolean {
  return year >= 1 && month >= 1 && month <= 12 && day >= 1 && day <= daysInMonth(year, month);
}

/**
 * Parses an RFC 3339 timestamp with any offset and up to nanoseconds, and returns it in UTC at
 * microsecond precision (`2025-07-03T09:11:12.123456Z`), the database's precision; null when
 * the text is not such a timestamp.
 */
export function normalizeTimestamp(text: string): string | null {
  // Already UTC with six fraction digits (what our producer writes): only the ranges need checking.
  const utc = CANONICAL_TIMESTAMP.exec(text);
  if (utc) {
    // Fields read one by one: no array per timestamp, as every record of the backlog has one.
    const ok = validDate(Number(utc[1]), Number(utc[2]), Number(utc[3])) && Number(utc[4]) <= 23 &&
      Number(utc[5]) <= 59 && Number(utc[6]) <= 59;
    return ok ? text : null;
  }
  const m = TIMESTAMP.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number);
  if (!validDate(year, month, day) || hour > 23 || minute > 59 || second > 59) return null;
  let offsetMinutes = 0;
  if (!m[8]) {
    const offsetHours = Number(m[10]);
    const offsetMins = Number(m[11]);
    if (offsetHours > 23 || offsetMins > 59) return null;
    offsetMinutes = (m[9] === "-" ? -1 : 1) * (offsetHours * 60 + offsetMins);
  }
  const instant = new Date(0);
  instant.setUTCFullYear(year, month - 1, day);
  instant.setUTCHours(hour, minute - offsetMinutes, second, 0);
  const utcYear = instant.getUTCFullYear();
  if (utcYear < 1 || utcYear > 9999) return null;
  const micros = ((m[7] ?? "") + "000000").slice(0, 6);
  const pad = (n: number, width = 2) => String(n).padStart(width, "0");
  return `${pad(utcYear, 4)}-${pad(instant.getUTCMonth() + 1)}-${pad(instant.getUTCDate())}T` +
    `${pad(instant.getUTCHours())}:${pad(instant.getUTCMinutes())}:${pad(instant.getUTCSeconds())}.${micros}Z`;
}

/**
 * Rounds a JSON number to cents, half away from zero on its decimal form (so 1.005 is 1.01,
 * as PostgreSQL's numeric would round the same text); null when it does not fit DECIMAL(10,2)
 * or is negative.
 */
export function toCents(value: number): string | null {
  if (!Number.isFinite(value) || value < 0) return null;
  let text = String(value);
  if (/e/i.test(text)) {
    if (value >= 1) return null; // 1e21 and above: far beyond DECIMAL(10,2)
    text = value.toFixed(20); // below 1e-6: exact enough to round at the third decimal
  }
  const [whole, fraction = ""] = text.split(".");
  // Nine digits or more before the point is 100,000,000 or more: beyond DECIMAL(10,2). Fewer
  // keep every cent count below 2^53, so plain numbers are exact.
  if (whole.length > 8) return null;
  let cents = Number(whole) * 100 + Number((fraction + "00").slice(0, 2));
  if ((fraction[2] ?? "0") >= "5") cents += 1;
  if (cents > MAX_CENTS) return null;
  return `${Math.floor(cents / 100)}.${String(cents % 100).padStart(2, "0")}`;
}

/** U+FEFF, a byte order mark. */
const BOM = 0xfeff;

/**
 * `bytes` as text, or InvalidEventError when they are not UTF-8. A Buffer (kafkajs gives each value
 * as one) decodes leniently at a third of the strict TextDecoder's CPU; only a value showing U+FFFD
 * (an invalid sequence, or a real U+FFFD) or starting with a byte order mark (which the strict
 * decoder drops) is decoded again by the strict one, which decides.
 */
function utf8Text(bytes: Uint8Array): string {
  const text = Buffer.isBuffer(bytes) ? bytes.toString("utf8") : lenient.decode(bytes);
  if (!text.includes("\uFFFD") && text.charCodeAt(0) !== BOM) return text;
  try {
    return utf8.decode(bytes);
  } catch {
    throw new InvalidEventError("value must be UTF-8: got invalid byte sequences");
  }
}

function decode(value: Uint8Array | string | null | undefined): Record<string, unknown> {
  if (value === null || value === undefined) {
    throw new InvalidEventError("value must be a JSON object: got an empty record");
  }
  const text = typeof value === "string" ? value : utf8Text(value);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new InvalidEventError(`value must be valid JSON: ${(error as Error).message.split("\n")[0]}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    fail("value", "a JSON object", parsed);
  }
  return parsed as Record<string, unknown>;
}

function eventType(record: Record<string, unknown>): EventType {
  const type = record.event_type;
  if (typeof type !== "string" || !EVENT_TYPES.includes(type)) fail("event_type", "CREATE, UPDATE or DELETE", type);
  return type as EventType;
}

function uuid(record: Record<string, unknown>, field: string): string {
  const value = record[field];
  if (typeof value !== "string" || !UUID.test(value)) fail(field, "a UUID string", value);
  return (value as string).toLowerCase();
}

function timestamp(record: Record<string, unknown>, field: string): string | undefined {
  const value = record[field];
  if (value === undefined || value === null) return undefined;
  const normalized = typeof value === "string" ? normalizeTimestamp(value) : null;
  if (normalized === null) fail(field, "an RFC 3339 timestamp", value);
  return normalized;
}

function name(record: Record<string, unknown>): string {
  const value = record.name;
  if (typeof value !== "string") fail("name", `a string of 1..${MAX_NAME} characters`, value);
  // Code points, not UTF-16 units; a string of at most 50 units has at most 50 code points.
  const length = (value as string).length <= MAX_NAME ? (value as string).length : [...(value as string)].length;
  if (length < 1 || length > MAX_NAME) {
    fail("name", `a string of 1..${MAX_NAME} characters (it has ${length})`, value);
  }
  if ((value as string).includes("\u0000")) fail("name", "free of NUL characters", value);
  return value as string;
}

function dob(record: Record<string, unknown>): string {
  const value = record.dob;
  const m = typeof value === "string" ? DATE.exec(value) : null;
  if (!m || !validDate(Number(m[1]), Number(m[2]), Number(m[3]))) fail("dob", "a calendar date YYYY-MM-DD", value);
  return value as string;
}

/** Validates the bytes of a user record; throws InvalidEventError with a readable reason. */
export function parseUserEvent(value: Uint8Array | string | null | undefined): UserChange {
  const record = decode(value);
  const type = eventType(record);
  const change: UserChange = { entity: "user", type, id: uuid(record, "user_id") };
  if (type === "CREATE") {
    change.name = name(record);
    change.dob = dob(record);
    change.createdAt = timestamp(record, "created_at");
  } else {
    if (type === "UPDATE") change.name = name(record);
    change.modifiedAt = timestamp(record, "modified_at");
  }
  return change;
}

/** Validates the bytes of an order record; throws InvalidEventError with a readable reason. */
export function parseOrderEvent(value: Uint8Array | string | null | undefined): OrderChange {
  const record = decode(value);
  const type = eventType(record);
  const status = record.order_status;
  if (typeof status !== "string" || !ORDER_STATUSES.includes(status)) {
    fail("order_status", "PLACED, SHIPPED or CANCELLED", status);
  }
  const change: OrderChange = { entity: "order", type, id: uuid(record, "order_id"), status: status as OrderStatus };
  if (type === "CREATE") {
    change.userId = uuid(record, "user_id");
    const quantity = record.quantity;
    if (typeof quantity !== "number" || !Number.isInteger(quantity) || quantity < 1 || quantity > MAX_INT32) {
      fail("quantity", `an integer in 1..${MAX_INT32}`, quantity);
    }
    change.quantity = quantity as number;
    const total = record.order_total;
    if (typeof total !== "number") fail("order_total", "a JSON number", total);
    const cents = toCents(total as number);
    if (cents === null) fail("order_total", "a non-negative amount that fits DECIMAL(10,2)", total);
    change.total = cents;
    change.placedAt = timestamp(record, "placed_at");
  } else {
    change.modifiedAt = timestamp(record, "modified_at");
  }
  return change;
}

/**
 * Whether the key's bytes are `id` (lowercase ASCII, as {@linkcode uuid} returns it) in any case,
 * compared without decoding: the check every record takes, at no allocation.
 */
function keyIsId(key: Uint8Array, id: string): boolean {
  if (key.length !== id.length) return false;
  for (let i = 0; i < key.length; i++) {
    const byte = key[i];
    // ASCII A-Z (65-90) folds to a-z; every other byte must equal the id's as it is.
    if ((byte >= 65 && byte <= 90 ? byte + 32 : byte) !== id.charCodeAt(i)) return false;
  }
  return true;
}

/**
 * Checks that a record's key is its event's entity id (`user_id` or `order_id`) as UTF-8, as
 * docs/CONTRACT.md section 2 says: per-key order holds only when every event of an entity carries its
 * id as the key, so one with another key (or none) could be applied out of order. Throws
 * InvalidEventError naming the key and the id. The comparison ignores case, as the ids do.
 */
export function checkRecordKey(key: Uint8Array | null | undefined, change: UserChange | OrderChange): void {
  if (key && keyIsId(key, change.id)) return;
  const field = change.entity === "user" ? "user_id" : "order_id";
  const expected = `record key must be the event's ${field} ${shown(change.id)}`;
  if (key === null || key === undefined) throw new InvalidEventError(`${expected}: got no key (null)`);
  if (key.length === 0) throw new InvalidEventError(`${expected}: got an empty key`);
  let text: string;
  try {
    text = utf8.decode(key);
  } catch {
    const hex = [...key.subarray(0, 32)].map((b) => b.toString(16).padStart(2, "0")).join("");
    throw new InvalidEventError(`${expected}: got a key that is not UTF-8 (hex ${hex}${key.length > 32 ? "..." : ""})`);
  }
  if (text.toLowerCase() !== change.id) throw new InvalidEventError(`${expected}: got ${shown(text)}`);
}
