/**
 * Unit tests of the wire format (lib/model.ts): the Go original's example records, timestamp
 * normalisation, money rounding and every validation rule. No Kafka, no PostgreSQL.
 * @module
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  checkRecordKey,
  InvalidEventError,
  normalizeTimestamp,
  type OrderChange,
  parseOrderEvent,
  parseUserEvent,
  STATUS_OF,
  toCents,
  type UserChange,
} from "../../lib/model.ts";
import { oneLineError, orderEvent, userEvent } from "../_helpers.ts";

const WIRE = new URL("../fixtures/wire/", import.meta.url);

function fixtureLines(name: string): string[] {
  const text = Deno.readTextFileSync(new URL(name, WIRE));
  return text.split("\n").filter((line) => line.trim() !== "");
}

const USER_ID = "8f14e45f-ceea-4e7a-9c1b-2d5f3a6b7c80";
const ORDER_ID = "45c48cce-2e2d-4fbd-a3f1-0b9e7d6c5a41";

/** A user CREATE as wire text, `fields` replacing or adding fields. */
function userCreate(fields: Record<string, unknown> = {}): string {
  return JSON.stringify(userEvent("CREATE", USER_ID, fields));
}

/** An order CREATE of the user as wire text, `fields` replacing or adding fields. */
function orderCreate(fields: Record<string, unknown> = {}): string {
  return JSON.stringify(orderEvent("CREATE", ORDER_ID, { user_id: USER_ID, ...fields }));
}

/** Runs `fn`, asserts it throws a one-line InvalidEventError, and returns the message. */
function rejection(fn: () => unknown): string {
  return oneLineError(fn, InvalidEventError);
}

// ---- fixtures -------------------------------------------------------------------------------

Deno.test("every line of users.jsonl parses into the normalised user change the Go original meant", () => {
  const changes = fixtureLines("users.jsonl").map((line) => parseUserEvent(line));
  const expected: UserChange[] = [
    {
      entity: "user",
      type: "CREATE",
      id: "8f14e45f-ceea-4e7a-9c1b-2d5f3a6b7c80",
      name: "qwjfd mzkoap",
      dob: "1987-04-12",
      createdAt: "2025-07-03T09:11:12.123456Z",
    },
    {
      entity: "user",
      type: "CREATE",
      id: "c9f0f895-fb98-4b91-8f4c-6a1e2b3c4d5e",
      name: "lkeuryt bnv",
      dob: "2001-11-28",
      createdAt: "2025-07-03T09:11:12.123400Z",
    },
    {
      entity: "user",
      type: "UPDATE",
      id: "8f14e45f-ceea-4e7a-9c1b-2d5f3a6b7c80",
      name: "qwjfd renamed",
      modifiedAt: "2025-07-03T09:11:13.000000Z",
    },
    {
      entity: "user",
      type: "DELETE",
      id: "c9f0f895-fb98-4b91-8f4c-6a1e2b3c4d5e",
      modifiedAt: "2025-07-03T14:11:14.500000Z",
    },
  ];
  assert.equal(changes.length, 4);
  assert.deepEqual(changes, expected);
});

Deno.test("every line of orders.jsonl parses, with totals rounded to cents and timestamps in UTC microseconds", () => {
  const changes = fixtureLines("orders.jsonl").map((line) => parseOrderEvent(line));
  const expected: OrderChange[] = [
    {
      entity: "order",
      type: "CREATE",
      id: "45c48cce-2e2d-4fbd-a3f1-0b9e7d6c5a41",
      status: "PLACED",
      userId: "8f14e45f-ceea-4e7a-9c1b-2d5f3a6b7c80",
      quantity: 42,
      total: "1234.57",
      placedAt: "2025-07-03T09:11:15.000000Z",
    },
    {
      entity: "order",
      type: "CREATE",
      id: "d3d94468-02a4-4d1b-8e6f-7a8b9c0d1e2f",
      status: "PLACED",
      userId: "c9f0f895-fb98-4b91-8f4c-6a1e2b3c4d5e",
      quantity: 1,
      total: "3.14",
      placedAt: "2025-07-03T09:11:15.000000Z",
    },
    {
      entity: "order",
      type: "UPDATE",
      id: "45c48cce-2e2d-4fbd-a3f1-0b9e7d6c5a41",
      status: "SHIPPED",
      modifiedAt: "2025-07-03T09:11:16.250000Z",
    },
    {
      entity: "order",
      type: "DELETE",
      id: "45c48cce-2e2d-4fbd-a3f1-0b9e7d6c5a41",
      status: "CANCELLED",
      modifiedAt: "2025-07-03T09:11:17.000000Z",
    },
  ];
  assert.equal(changes.length, 4);
  assert.deepEqual(changes, expected);
});

Deno.test("fixture records parse the same from UTF-8 bytes as from text", () => {
  const encoder = new TextEncoder();
  for (const line of fixtureLines("users.jsonl")) {
    assert.deepEqual(parseUserEvent(encoder.encode(line)), parseUserEvent(line));
  }
  for (const line of fixtureLines("orders.jsonl")) {
    assert.deepEqual(parseOrderEvent(encoder.encode(line)), parseOrderEvent(line));
  }
});

Deno.test("every line of bad.jsonl is rejected with a reason naming the field and the rule", () => {
  const lines = fixtureLines("bad.jsonl");
  assert.equal(lines.length, 5, "bad.jsonl holds five records");
  // The order-shaped lines carry order_id; the rest are user-shaped. The last one is cut short.
  const parse = (line: string) => (line.includes('"order_id"') ? parseOrderEvent(line) : parseUserEvent(line));
  const reasons = lines.map((line) => rejection(() => parse(line)));

  assert.match(reasons[0], /^user_id must be a UUID string: got "not-a-uuid"$/);
  assert.match(reasons[1], /^event_type must be CREATE, UPDATE or DELETE: got "UPSERT"$/);
  assert.match(reasons[2], /^dob must be a calendar date YYYY-MM-DD: got "1990-02-30"$/);
  assert.match(reasons[3], /^quantity must be an integer in 1\.\.2147483647: got "3"$/);
  assert.match(reasons[4], /^value must be valid JSON: /);
});

Deno.test("the truncated last line of bad.jsonl fails as JSON whichever parser reads it", () => {
  const last = fixtureLines("bad.jsonl").at(-1)!;
  assert.match(rejection(() => parseUserEvent(last)), /valid JSON/);
  assert.match(rejection(() => parseOrderEvent(last)), /valid JSON/);
});

// ---- normalizeTimestamp --------------------------------------------------------------------

Deno.test("normalizeTimestamp truncates nanosecond fractions to microseconds without rounding up", () => {
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.123456789Z"), "2025-07-03T10:11:12.123456Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.999999999Z"), "2025-07-03T10:11:12.999999Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.000000001Z"), "2025-07-03T10:11:12.000000Z");
});

Deno.test("normalizeTimestamp pads short fractions and adds a zero fraction when there is none", () => {
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.5Z"), "2025-07-03T10:11:12.500000Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.1234Z"), "2025-07-03T10:11:12.123400Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12Z"), "2025-07-03T10:11:12.000000Z");
});

Deno.test("normalizeTimestamp converts any UTC offset to UTC, across day, month and year boundaries", () => {
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.123456789+01:00"), "2025-07-03T09:11:12.123456Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:14.5-04:00"), "2025-07-03T14:11:14.500000Z");
  assert.equal(normalizeTimestamp("2025-01-01T00:30:00+05:30"), "2024-12-31T19:00:00.000000Z");
  assert.equal(normalizeTimestamp("2024-12-31T23:00:00-02:00"), "2025-01-01T01:00:00.000000Z");
  assert.equal(normalizeTimestamp("2024-02-28T23:00:00-01:00"), "2024-02-29T00:00:00.000000Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12+00:00"), "2025-07-03T10:11:12.000000Z");
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12-00:00"), "2025-07-03T10:11:12.000000Z");
});

Deno.test("normalizeTimestamp accepts lower-case z and t and a space separator", () => {
  assert.equal(normalizeTimestamp("2025-07-03t10:11:12z"), "2025-07-03T10:11:12.000000Z");
  assert.equal(normalizeTimestamp("2025-07-03 10:11:12Z"), "2025-07-03T10:11:12.000000Z");
});

Deno.test("normalizeTimestamp returns null for dates that do not exist", () => {
  assert.equal(normalizeTimestamp("2025-02-30T10:11:12Z"), null);
  assert.equal(normalizeTimestamp("2025-02-29T10:11:12Z"), null, "2025 is not a leap year");
  assert.equal(normalizeTimestamp("1900-02-29T10:11:12Z"), null, "1900 is not a leap year");
  assert.equal(normalizeTimestamp("2000-02-29T10:11:12Z"), "2000-02-29T10:11:12.000000Z");
  assert.equal(normalizeTimestamp("2025-04-31T10:11:12Z"), null);
  assert.equal(normalizeTimestamp("2025-13-01T10:11:12Z"), null);
  assert.equal(normalizeTimestamp("2025-00-01T10:11:12Z"), null);
  assert.equal(normalizeTimestamp("2025-01-00T10:11:12Z"), null);
});

Deno.test("normalizeTimestamp returns null for out-of-range times and offsets", () => {
  assert.equal(normalizeTimestamp("2025-07-03T24:00:00Z"), null);
  assert.equal(normalizeTimestamp("2025-07-03T23:60:00Z"), null);
  assert.equal(normalizeTimestamp("2025-07-03T23:59:60Z"), null);
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12+24:00"), null);
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12+01:60"), null);
});

Deno.test("normalizeTimestamp keeps a timestamp already in UTC with six fraction digits, and still checks its ranges", () => {
  assert.equal(normalizeTimestamp("2025-07-03T10:11:12.123456Z"), "2025-07-03T10:11:12.123456Z");
  assert.equal(normalizeTimestamp("2000-02-29T23:59:59.999999Z"), "2000-02-29T23:59:59.999999Z");
  for (
    const text of [
      "2025-02-29T10:11:12.000000Z",
      "2025-07-03T24:00:00.000000Z",
      "2025-07-03T23:60:00.000000Z",
      "2025-07-03T23:59:60.000000Z",
      "0000-01-01T00:00:00.000000Z",
    ]
  ) assert.equal(normalizeTimestamp(text), null, text);
});

Deno.test("normalizeTimestamp returns null for text that is not an RFC 3339 timestamp", () => {
  for (
    const text of [
      "",
      "2025-07-03",
      "2025-07-03T10:11:12", // no offset
      "2025-07-03T10:11:12+0100",
      "2025-07-03T10:11:12.Z",
      "2025-07-03T10:11:12.1234567890Z", // ten fraction digits
      "25-07-03T10:11:12Z",
      " 2025-07-03T10:11:12Z",
      "2025-07-03T10:11:12Z\n",
      "1751537472",
    ]
  ) {
    assert.equal(normalizeTimestamp(text), null, JSON.stringify(text));
  }
});

Deno.test("normalizeTimestamp returns null when the instant leaves years 0001..9999 in UTC", () => {
  assert.equal(normalizeTimestamp("0001-01-01T00:30:00+01:00"), null);
  assert.equal(normalizeTimestamp("9999-12-31T23:30:00-01:00"), null);
  assert.equal(normalizeTimestamp("0001-01-01T00:00:00Z"), "0001-01-01T00:00:00.000000Z");
  assert.equal(normalizeTimestamp("9999-12-31T23:59:59.999999999Z"), "9999-12-31T23:59:59.999999Z");
});

Deno.test("normalizeTimestamp keeps two-digit years as years, not as 19xx", () => {
  assert.equal(normalizeTimestamp("0050-06-15T12:00:00Z"), "0050-06-15T12:00:00.000000Z");
});

// ---- toCents -------------------------------------------------------------------------------

Deno.test("toCents rounds half away from zero on the decimal form of the number", () => {
  assert.equal(toCents(1234.5678901234), "1234.57");
  assert.equal(toCents(3.14), "3.14");
  assert.equal(toCents(1.005), "1.01");
  assert.equal(toCents(0.004), "0.00");
  assert.equal(toCents(0.005), "0.01");
  assert.equal(toCents(0.995), "1.00");
  assert.equal(toCents(0.1 + 0.2), "0.30");
  assert.equal(toCents(10), "10.00");
  assert.equal(toCents(0), "0.00");
  assert.equal(toCents(-0), "0.00");
});

Deno.test("toCents accepts the largest DECIMAL(10,2) amount and refuses anything that rounds above it", () => {
  assert.equal(toCents(99999999.99), "99999999.99");
  assert.equal(toCents(99999999.994), "99999999.99");
  assert.equal(toCents(99999999.995), null);
  assert.equal(toCents(100000000), null);
  assert.equal(toCents(1e20), null);
  assert.equal(toCents(1e21), null);
  assert.equal(toCents(Number.MAX_VALUE), null);
});

Deno.test("toCents refuses negative and non-finite amounts", () => {
  assert.equal(toCents(-0.01), null);
  assert.equal(toCents(-1), null);
  assert.equal(toCents(Number.NaN), null);
  assert.equal(toCents(Number.POSITIVE_INFINITY), null);
  assert.equal(toCents(Number.NEGATIVE_INFINITY), null);
});

Deno.test("toCents rounds tiny amounts written in exponent form to zero cents", () => {
  assert.equal(toCents(1e-7), "0.00");
  assert.equal(toCents(5e-7), "0.00");
  assert.equal(toCents(Number.MIN_VALUE), "0.00");
  assert.equal(toCents(0.000001), "0.00");
});

// ---- user validation rules -----------------------------------------------------------------

Deno.test("a name of 50 code points is accepted even when each is an astral emoji", () => {
  const fifty = "\u{1F600}".repeat(50);
  assert.equal(fifty.length, 100, "100 UTF-16 units");
  assert.equal(parseUserEvent(userCreate({ name: fifty })).name, fifty);
  assert.equal(parseUserEvent(userCreate({ name: "a".repeat(50) })).name, "a".repeat(50));
});

Deno.test("a name of 51 code points is rejected with the rule and the length", () => {
  const emoji = rejection(() => parseUserEvent(userCreate({ name: "\u{1F600}".repeat(51) })));
  assert.match(emoji, /^name must be a string of 1\.\.50 characters \(it has 51\)/);
  const ascii = rejection(() => parseUserEvent(userCreate({ name: "a".repeat(51) })));
  assert.match(ascii, /^name must be a string of 1\.\.50 characters \(it has 51\)/);
  const update = rejection(() =>
    parseUserEvent(JSON.stringify({ event_type: "UPDATE", user_id: USER_ID, name: "b".repeat(51) }))
  );
  assert.match(update, /^name must be .*\(it has 51\)/);
});

Deno.test("long values are shortened in the reason so a DLQ header stays readable", () => {
  const message = rejection(() => parseUserEvent(userCreate({ name: "a".repeat(500) })));
  assert.ok(message.length < 200, `reason is ${message.length} characters`);
  assert.ok(message.endsWith("..."), message);
});

Deno.test("an empty, missing or non-string name is rejected", () => {
  assert.match(rejection(() => parseUserEvent(userCreate({ name: "" }))), /^name must be .*\(it has 0\)/);
  assert.match(rejection(() => parseUserEvent(userCreate({ name: undefined }))), /^name must be a string/);
  assert.match(rejection(() => parseUserEvent(userCreate({ name: 42 }))), /^name must be a string.*got 42$/);
  assert.match(
    rejection(() => parseUserEvent(JSON.stringify({ event_type: "UPDATE", user_id: USER_ID }))),
    /^name must be a string/,
  );
});

Deno.test("a name containing NUL is rejected", () => {
  const message = rejection(() => parseUserEvent(userCreate({ name: "Ada\u0000Lovelace" })));
  assert.match(message, /^name must be free of NUL characters/);
});

Deno.test("a user CREATE needs a calendar dob", () => {
  assert.match(rejection(() => parseUserEvent(userCreate({ dob: undefined }))), /^dob must be a calendar date/);
  assert.match(rejection(() => parseUserEvent(userCreate({ dob: "1990-1-1" }))), /^dob must be a calendar date/);
  assert.match(rejection(() => parseUserEvent(userCreate({ dob: "1990-01-01T00:00:00Z" }))), /^dob/);
  assert.match(rejection(() => parseUserEvent(userCreate({ dob: 19900101 }))), /^dob .*got 19900101$/);
  assert.equal(parseUserEvent(userCreate({ dob: "2000-02-29" })).dob, "2000-02-29");
});

Deno.test("user ids are matched case-insensitively and stored lower-case", () => {
  const change = parseUserEvent(userCreate({ user_id: USER_ID.toUpperCase() }));
  assert.equal(change.id, USER_ID);
});

Deno.test("a malformed or non-string user_id is rejected", () => {
  for (const id of ["", "8f14e45fceea4e7a9c1b2d5f3a6b7c80", `{${USER_ID}}`, `${USER_ID}0`, 7, null]) {
    assert.match(rejection(() => parseUserEvent(userCreate({ user_id: id }))), /^user_id must be a UUID string/);
  }
});

Deno.test("a timestamp that is not RFC 3339 is rejected naming its field", () => {
  assert.match(
    rejection(() => parseUserEvent(userCreate({ created_at: "2025-02-30T00:00:00Z" }))),
    /^created_at must be an RFC 3339 timestamp: got "2025-02-30T00:00:00Z"$/,
  );
  assert.match(
    rejection(() => parseUserEvent(userCreate({ created_at: 1751537472 }))),
    /^created_at must be an RFC 3339 timestamp: got 1751537472$/,
  );
  assert.match(
    rejection(() =>
      parseUserEvent(JSON.stringify({ event_type: "DELETE", user_id: USER_ID, modified_at: "2025-07-03T24:00:00Z" }))
    ),
    /^modified_at must be an RFC 3339 timestamp/,
  );
});

Deno.test("absent or null optional timestamps are accepted and left undefined", () => {
  assert.equal(parseUserEvent(userCreate({ created_at: undefined })).createdAt, undefined);
  assert.equal(parseUserEvent(userCreate({ created_at: null })).createdAt, undefined);
  const deleted = parseUserEvent(JSON.stringify({ event_type: "DELETE", user_id: USER_ID }));
  assert.deepEqual(deleted, { entity: "user", type: "DELETE", id: USER_ID, modifiedAt: undefined });
});

Deno.test("unknown extra fields are ignored", () => {
  const user = parseUserEvent(userCreate({ extra: "x", nested: { a: [1, 2] }, created_at: "2025-07-03T10:11:12Z" }));
  assert.deepEqual(user, {
    entity: "user",
    type: "CREATE",
    id: USER_ID,
    name: "Ada Lovelace",
    dob: "1990-01-01",
    createdAt: "2025-07-03T10:11:12.000000Z",
  });
  const order = parseOrderEvent(orderCreate({ currency: "EUR", discount: 0.5 }));
  assert.equal(order.total, "10.00");
  assert.equal(Object.hasOwn(order, "currency"), false);
});

Deno.test("a DELETE of a user needs no name, and fields it does not use are ignored", () => {
  const change = parseUserEvent(
    JSON.stringify({
      event_type: "DELETE",
      user_id: USER_ID,
      name: 12,
      dob: "bad",
      modified_at: "2025-07-03T10:11:12Z",
    }),
  );
  assert.deepEqual(change, { entity: "user", type: "DELETE", id: USER_ID, modifiedAt: "2025-07-03T10:11:12.000000Z" });
});

Deno.test("an unknown or missing event_type is rejected", () => {
  assert.match(
    rejection(() => parseUserEvent(userCreate({ event_type: "create" }))),
    /^event_type must be CREATE, UPDATE or DELETE: got "create"$/,
  );
  assert.match(rejection(() => parseUserEvent(userCreate({ event_type: undefined }))), /^event_type must be/);
  assert.match(rejection(() => parseOrderEvent(orderCreate({ event_type: 1 }))), /^event_type must be .*got 1$/);
});

// ---- order validation rules ----------------------------------------------------------------

Deno.test("quantity given as a string is rejected", () => {
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ quantity: "3" }))),
    /^quantity must be an integer in 1\.\.2147483647: got "3"$/,
  );
});

Deno.test("quantity outside 1..2147483647 or not an integer is rejected", () => {
  for (const quantity of [0, -1, 2147483648, 1.5, null]) {
    assert.match(
      rejection(() => parseOrderEvent(orderCreate({ quantity }))),
      /^quantity must be an integer in 1\.\.2147483647/,
      `quantity ${quantity}`,
    );
  }
  assert.match(rejection(() => parseOrderEvent(orderCreate({ quantity: undefined }))), /^quantity must be/);
  assert.equal(parseOrderEvent(orderCreate({ quantity: 1 })).quantity, 1);
  assert.equal(parseOrderEvent(orderCreate({ quantity: 2147483647 })).quantity, 2147483647);
});

Deno.test("order_total that is not a JSON number is rejected", () => {
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ order_total: "10.00" }))),
    /^order_total must be a JSON number: got "10.00"$/,
  );
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ order_total: undefined }))),
    /^order_total must be a JSON number/,
  );
});

Deno.test("order_total that is negative or does not fit DECIMAL(10,2) is rejected", () => {
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ order_total: -1 }))),
    /^order_total must be a non-negative amount that fits DECIMAL\(10,2\): got -1$/,
  );
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ order_total: 99999999.995 }))),
    /^order_total must be a non-negative amount that fits DECIMAL\(10,2\)/,
  );
  // 1e400 in JSON text parses to Infinity.
  const huge = orderCreate().replace('"order_total":10', '"order_total":1e400');
  assert.match(rejection(() => parseOrderEvent(huge)), /^order_total must be a non-negative amount/);
  assert.equal(parseOrderEvent(orderCreate({ order_total: 99999999.99 })).total, "99999999.99");
});

Deno.test("an order CREATE needs a UUID user_id; UPDATE and DELETE need none", () => {
  assert.match(rejection(() => parseOrderEvent(orderCreate({ user_id: undefined }))), /^user_id must be a UUID string/);
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ user_id: "nope" }))),
    /^user_id must be a UUID string: got "nope"$/,
  );
  const update = parseOrderEvent(JSON.stringify({ event_type: "UPDATE", order_id: ORDER_ID, order_status: "SHIPPED" }));
  assert.deepEqual(update, { entity: "order", type: "UPDATE", id: ORDER_ID, status: "SHIPPED", modifiedAt: undefined });
});

Deno.test("an unknown or missing order_status is rejected", () => {
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ order_status: "LOST" }))),
    /^order_status must be PLACED, SHIPPED or CANCELLED: got "LOST"$/,
  );
  assert.match(rejection(() => parseOrderEvent(orderCreate({ order_status: undefined }))), /^order_status must be/);
});

Deno.test("a malformed order_id is rejected naming order_id", () => {
  assert.match(
    rejection(() => parseOrderEvent(orderCreate({ order_id: "x" }))),
    /^order_id must be a UUID string: got "x"$/,
  );
});

Deno.test("STATUS_OF maps each event type to the status the Go original sent with it", () => {
  assert.deepEqual(STATUS_OF, { CREATE: "PLACED", UPDATE: "SHIPPED", DELETE: "CANCELLED" });
});

// ---- the envelope ---------------------------------------------------------------------------

Deno.test("invalid UTF-8 bytes are rejected with a UTF-8 reason", () => {
  const bytes = new Uint8Array([0xff, 0xfe]);
  assert.match(rejection(() => parseUserEvent(bytes)), /UTF-8/);
  assert.match(rejection(() => parseOrderEvent(bytes)), /UTF-8/);
  // Valid JSON around an invalid byte fails the same way.
  const record = new TextEncoder().encode(userCreate({ name: "Ada X" }));
  const x = record.indexOf("X".charCodeAt(0));
  record[x] = 0xc3; // a two-byte lead followed by '"' is not UTF-8
  assert.match(rejection(() => parseUserEvent(record)), /^value must be UTF-8/);
});

Deno.test("a JSON array, null, string or number is rejected as not an object", () => {
  assert.match(rejection(() => parseUserEvent("[]")), /^value must be a JSON object: got \[\]$/);
  assert.match(rejection(() => parseOrderEvent(`[${orderCreate()}]`)), /^value must be a JSON object/);
  assert.match(rejection(() => parseUserEvent("null")), /^value must be a JSON object: got null$/);
  assert.match(rejection(() => parseUserEvent('"CREATE"')), /^value must be a JSON object: got "CREATE"$/);
  assert.match(rejection(() => parseOrderEvent("42")), /^value must be a JSON object: got 42$/);
});

Deno.test("an empty record (tombstone) or empty text is rejected", () => {
  assert.match(rejection(() => parseUserEvent(null)), /^value must be a JSON object: got an empty record$/);
  assert.match(rejection(() => parseOrderEvent(undefined)), /^value must be a JSON object: got an empty record$/);
  assert.match(rejection(() => parseUserEvent("")), /^value must be valid JSON/);
  assert.match(rejection(() => parseUserEvent(new Uint8Array())), /^value must be valid JSON/);
});

Deno.test("a UTF-8 byte order mark before the JSON is tolerated", () => {
  const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode(userCreate())]);
  assert.equal(parseUserEvent(bytes).name, "Ada Lovelace");
});

Deno.test("multi-byte UTF-8 names decode to the same code points", () => {
  const name = "Zoë Ångström 李小龙 \u{1F600}";
  const change = parseUserEvent(new TextEncoder().encode(userCreate({ name })));
  assert.equal(change.name, name);
});

Deno.test("values in Buffers, as kafkajs gives them, decode and are refused as the same bytes in a Uint8Array are", () => {
  const encode = (text: string) => Buffer.from(new TextEncoder().encode(text));
  const name = "Zoë \uFFFD 李小龙 \u{1F600}"; // a real U+FFFD is text, not an invalid byte
  assert.equal(parseUserEvent(encode(userCreate({ name }))).name, name);
  assert.equal(
    parseUserEvent(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), encode(userCreate())])).name,
    "Ada Lovelace",
  );
  const record = encode(userCreate({ name: "Ada X" }));
  record[record.indexOf("X".charCodeAt(0))] = 0xc3;
  assert.match(rejection(() => parseUserEvent(record)), /^value must be UTF-8/);
  assert.match(rejection(() => parseOrderEvent(Buffer.from([0xff, 0xfe]))), /^value must be UTF-8/);
  assert.equal(parseUserEvent(userCreate({ name })).name, name); // text is never decoded
});

// ---- record keys ------------------------------------------------------------------------------

Deno.test("a record key that is not its event's entity id is refused with a reason naming both", () => {
  const user = parseUserEvent(
    JSON.stringify({ event_type: "DELETE", user_id: "6F1C1B8E-3A57-4D0E-9D0A-2B7F4F1A9C01" }),
  );
  const order = parseOrderEvent(
    JSON.stringify({
      event_type: "DELETE",
      order_id: "0d9c3f7e-1b2a-4c5d-8e6f-7a8b9c0d1e2f",
      order_status: "CANCELLED",
    }),
  );
  const id = user.id;
  const other = "0d9c3f7e-1b2a-4c5d-8e6f-7a8b9c0d1e2f";
  const keyOf = (text: string) => new TextEncoder().encode(text);
  const reason = (key: Uint8Array | null, change: typeof user | typeof order = user) => {
    try {
      checkRecordKey(key, change);
      return "accepted";
    } catch (error) {
      assert.ok(error instanceof InvalidEventError);
      return error.message;
    }
  };
  assert.equal(reason(keyOf(id)), "accepted");
  assert.equal(reason(keyOf(id.toUpperCase())), "accepted", "ids are compared as UUIDs, whatever their case");
  assert.equal(reason(keyOf(other), order), "accepted");
  assert.equal(reason(null), `record key must be the event's user_id "${id}": got no key (null)`);
  assert.equal(reason(new Uint8Array()), `record key must be the event's user_id "${id}": got an empty key`);
  assert.equal(
    reason(new Uint8Array([0x36, 0xff, 0xfe])),
    `record key must be the event's user_id "${id}": got a key that is not UTF-8 (hex 36fffe)`,
  );
  assert.equal(reason(keyOf(other)), `record key must be the event's user_id "${id}": got "${other}"`);
  assert.equal(reason(keyOf(id), order), `record key must be the event's order_id "${other}": got "${id}"`);
  assert.equal(reason(keyOf(` ${id}`)), `record key must be the event's user_id "${id}": got " ${id}"`);
});
