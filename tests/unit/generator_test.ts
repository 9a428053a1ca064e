/**
 * Unit tests of the event generator (lib/generator.ts): repeatable streams, the wire format of
 * every event, the mix of event types, referential order, value ranges, stats and laziness.
 * @module
 */
import assert from "node:assert/strict";
import {
  type Clock,
  entityId,
  formatMicros,
  type GeneratedEvent,
  generateEvents,
  newStats,
  simulatedClock,
} from "../../lib/generator.ts";
import type { OrderEvent, UserEvent } from "../../lib/model.ts";
import { normalizeTimestamp, parseOrderEvent, parseUserEvent, STATUS_OF, toCents } from "../../lib/model.ts";

/** The stream as the bytes a dry run would print, one line per event with its key. */
function streamBytes(users: number, orders: number, seed: number): string {
  const lines: string[] = [];
  for (const event of generateEvents({ users, orders, seed })) {
    lines.push(`${event.entity} ${event.key} ${JSON.stringify(event.value)}`);
  }
  return lines.join("\n");
}

/** The one timestamp an event carries. */
function stampOf(value: UserEvent | OrderEvent): string {
  const v = value as Partial<UserEvent & OrderEvent>;
  const stamp = v.created_at ?? v.placed_at ?? v.modified_at;
  assert.ok(stamp !== undefined, `no timestamp in ${JSON.stringify(value)}`);
  return stamp;
}

// One medium stream shared by the property tests below (generated once, about 0.1 s).
const USERS = 10_000;
const ORDERS = 10_000;
const SEED = 20250703;
const STATS = newStats();
const EVENTS: GeneratedEvent[] = [...generateEvents({ users: USERS, orders: ORDERS, seed: SEED }, STATS)];
const userEvents = EVENTS.filter((e) => e.entity === "user").map((e) => e.value as UserEvent);
const orderEvents = EVENTS.filter((e) => e.entity === "order").map((e) => e.value as OrderEvent);

// ---- repeatability --------------------------------------------------------------------------

Deno.test("the same seed gives identical bytes for the whole stream", () => {
  const a = streamBytes(2000, 4000, 7);
  const b = streamBytes(2000, 4000, 7);
  assert.equal(a.split("\n").length, 6000);
  assert.equal(a, b);
});

Deno.test("different seeds give different streams", () => {
  const a = streamBytes(200, 400, 1);
  const b = streamBytes(200, 400, 2);
  assert.notEqual(a, b);
  const first = (seed: number) => [...generateEvents({ users: 1, orders: 0, seed })][0].value as UserEvent;
  assert.notEqual(first(1).user_id, first(2).user_id);
  assert.notEqual(`${first(1).name} ${first(1).dob}`, `${first(2).name} ${first(2).dob}`);
});

Deno.test("a seeded stream's timestamps come from a simulated clock starting at 2025-01-01", () => {
  const first = userEvents[0];
  assert.equal(first.event_type, "CREATE");
  assert.ok(
    first.created_at! > "2025-01-01T00:00:00.000000Z" && first.created_at! < "2025-01-02T00:00:00.000000Z",
    first.created_at,
  );
});

Deno.test("an injected clock supplies every event's timestamp, in order", () => {
  let now = Date.UTC(2030, 5, 1) * 1000;
  const clock: Clock = { nowMicros: () => (now += 1) };
  const events = [...generateEvents({ users: 5, orders: 5, seed: 3, clock })];
  const stamps = events.map((e) => stampOf(e.value));
  assert.deepEqual(stamps, Array.from({ length: 10 }, (_, i) => formatMicros(Date.UTC(2030, 5, 1) * 1000 + i + 1)));
});

// ---- shape and order ------------------------------------------------------------------------

Deno.test("all users come before all orders, in the numbers asked for", () => {
  assert.equal(EVENTS.length, USERS + ORDERS);
  const lastUser = EVENTS.findLastIndex((e) => e.entity === "user");
  const firstOrder = EVENTS.findIndex((e) => e.entity === "order");
  assert.equal(lastUser, USERS - 1);
  assert.equal(firstOrder, USERS);
  assert.equal(userEvents.length, USERS);
  assert.equal(orderEvents.length, ORDERS);
});

Deno.test("the first event of each entity is a CREATE", () => {
  assert.equal(userEvents[0].event_type, "CREATE");
  assert.equal(orderEvents[0].event_type, "CREATE");
});

Deno.test("every event is keyed by its entity id", () => {
  for (const event of EVENTS) {
    const value = event.value as { user_id?: string; order_id?: string };
    assert.equal(event.key, event.entity === "user" ? value.user_id : value.order_id);
  }
});

Deno.test("every generated event passes the consumer's validation unchanged", () => {
  for (const { entity, value } of EVENTS) {
    const text = JSON.stringify(value);
    if (entity === "user") {
      const change = parseUserEvent(text);
      assert.equal(change.id, value.user_id);
      assert.equal(change.type, value.event_type);
      assert.equal(change.name, value.name);
      assert.equal(change.dob, value.dob);
      assert.equal(change.createdAt, value.created_at);
      assert.equal(change.modifiedAt, value.modified_at);
    } else {
      const change = parseOrderEvent(text);
      assert.equal(change.id, value.order_id);
      assert.equal(change.status, value.order_status);
      assert.equal(change.userId, value.user_id);
      assert.equal(change.quantity, value.quantity);
      assert.equal(change.total, value.order_total === undefined ? undefined : value.order_total.toFixed(2));
      assert.equal(change.placedAt, value.placed_at);
      assert.equal(change.modifiedAt, value.modified_at);
    }
  }
});

Deno.test("every generated event round-trips through JSON.stringify and JSON.parse unchanged", () => {
  for (const { value } of EVENTS) {
    const text = JSON.stringify(value);
    assert.deepEqual(JSON.parse(text), value);
    assert.equal(JSON.stringify(JSON.parse(text)), text);
  }
});

Deno.test("events carry exactly the wire fields of their type, with the status of their type", () => {
  const userFields = {
    CREATE: ["created_at", "dob", "event_type", "name", "user_id"],
    UPDATE: ["event_type", "modified_at", "name", "user_id"],
    DELETE: ["event_type", "modified_at", "user_id"],
  };
  const orderFields = {
    CREATE: ["event_type", "order_id", "order_status", "order_total", "placed_at", "quantity", "user_id"],
    UPDATE: ["event_type", "modified_at", "order_id", "order_status"],
    DELETE: ["event_type", "modified_at", "order_id", "order_status"],
  };
  for (const u of userEvents) assert.deepEqual(Object.keys(u).sort(), userFields[u.event_type]);
  for (const o of orderEvents) {
    assert.deepEqual(Object.keys(o).sort(), orderFields[o.event_type]);
    assert.equal(o.order_status, STATUS_OF[o.event_type]);
  }
});

Deno.test("timestamps are RFC 3339 UTC with six fraction digits and never go backwards", () => {
  let previous = "";
  for (const { value } of EVENTS) {
    const stamp = stampOf(value);
    assert.match(stamp, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/);
    assert.equal(normalizeTimestamp(stamp), stamp);
    assert.ok(stamp > previous, `${stamp} after ${previous}`);
    previous = stamp;
  }
});

// ---- the mix of types -----------------------------------------------------------------------

function shares(events: readonly { event_type: string }[]): Record<string, number> {
  const counts: Record<string, number> = { CREATE: 0, UPDATE: 0, DELETE: 0 };
  for (const e of events) counts[e.event_type]++;
  return Object.fromEntries(Object.entries(counts).map(([k, n]) => [k, (100 * n) / events.length]));
}

Deno.test("about 60% CREATE, 30% UPDATE and 10% DELETE over 20,000 events, for users and for orders", () => {
  const expected: Record<string, number> = { CREATE: 60, UPDATE: 30, DELETE: 10 };
  for (
    const [what, events] of [
      ["all", [...userEvents, ...orderEvents]],
      ["users", userEvents],
      ["orders", orderEvents],
    ] as const
  ) {
    const got = shares(events);
    for (const type of ["CREATE", "UPDATE", "DELETE"]) {
      assert.ok(Math.abs(got[type] - expected[type]) <= 3, `${what} ${type}: ${got[type].toFixed(2)}%`);
    }
  }
});

// ---- referential order ----------------------------------------------------------------------

Deno.test("user UPDATE and DELETE only target users created earlier in the stream", () => {
  const created = new Set<string>();
  for (const u of userEvents) {
    if (u.event_type === "CREATE") {
      assert.ok(!created.has(u.user_id), `user ${u.user_id} created twice`);
      created.add(u.user_id);
    } else {
      assert.ok(created.has(u.user_id), `${u.event_type} of ${u.user_id} before its CREATE`);
    }
  }
  assert.equal(created.size, STATS.usersCreated);
});

Deno.test("order UPDATE and DELETE only target orders created earlier in the stream", () => {
  const created = new Set<string>();
  for (const o of orderEvents) {
    if (o.event_type === "CREATE") {
      assert.ok(!created.has(o.order_id), `order ${o.order_id} created twice`);
      created.add(o.order_id);
    } else {
      assert.ok(created.has(o.order_id), `${o.event_type} of ${o.order_id} before its CREATE`);
    }
  }
});

Deno.test("orders reference only users created earlier in the run", () => {
  const usersCreated = new Set(userEvents.filter((u) => u.event_type === "CREATE").map((u) => u.user_id));
  const creates = orderEvents.filter((o) => o.event_type === "CREATE");
  assert.ok(creates.length > 0);
  for (const o of creates) assert.ok(usersCreated.has(o.user_id!), `order ${o.order_id} of unknown user ${o.user_id}`);
});

// ---- value ranges ---------------------------------------------------------------------------

Deno.test("names are 1..50 characters", () => {
  for (const u of userEvents) {
    if (u.event_type === "DELETE") continue;
    const length = [...u.name!].length;
    assert.ok(length >= 1 && length <= 50, `${JSON.stringify(u.name)} has ${length}`);
  }
});

Deno.test("dates of birth are between 1970-01-01 and 2015-12-31", () => {
  const dobs = userEvents.filter((u) => u.event_type === "CREATE").map((u) => u.dob!);
  for (const dob of dobs) {
    assert.match(dob, /^\d{4}-\d{2}-\d{2}$/);
    assert.ok(dob >= "1970-01-01" && dob <= "2015-12-31", dob);
  }
  // They spread over the range rather than sitting on one day.
  assert.ok(new Set(dobs.map((d) => d.slice(0, 4))).size > 30);
});

Deno.test("quantities are integers 1..100", () => {
  const quantities = orderEvents.filter((o) => o.event_type === "CREATE").map((o) => o.quantity!);
  for (const q of quantities) assert.ok(Number.isInteger(q) && q >= 1 && q <= 100, String(q));
  assert.equal(Math.min(...quantities), 1);
  assert.equal(Math.max(...quantities), 100);
});

Deno.test("order totals are quantity times a unit price of 1..51 at cents precision", () => {
  for (const o of orderEvents) {
    if (o.event_type !== "CREATE") continue;
    const total = o.order_total!;
    const cents = total * 100;
    assert.ok(Math.abs(cents - Math.round(cents)) < 1e-6, `total ${total} is not whole cents`);
    const unit = total / o.quantity!;
    assert.ok(unit >= 1 - 1e-9 && unit <= 51 + 1e-9, `unit price ${unit} of ${total}/${o.quantity}`);
    assert.equal(toCents(total), total.toFixed(2));
  }
});

// ---- stats ----------------------------------------------------------------------------------

Deno.test("stats count exactly the events generated", () => {
  const byType: Record<string, number> = {};
  for (const { entity, value } of EVENTS) {
    const key = `${entity}.${value.event_type}`;
    byType[key] = (byType[key] ?? 0) + 1;
  }
  assert.deepEqual(STATS.byType, byType);
  assert.equal(STATS.usersCreated, userEvents.filter((u) => u.event_type === "CREATE").length);
  const orderedFor = new Set(orderEvents.filter((o) => o.event_type === "CREATE").map((o) => o.user_id));
  assert.equal(STATS.usersOrderedFor, orderedFor.size);
});

Deno.test("stats count only what was iterated so far", () => {
  const stats = newStats();
  const iterator = generateEvents({ users: 100, orders: 100, seed: 5 }, stats)[Symbol.iterator]();
  for (let i = 0; i < 3; i++) iterator.next();
  assert.equal(Object.values(stats.byType).reduce((a, b) => a + b, 0), 3);
  assert.equal(stats.byType["user.CREATE"] >= 1, true);
});

Deno.test("newStats starts empty", () => {
  assert.deepEqual(newStats(), { byType: {}, usersCreated: 0, usersOrderedFor: 0 });
});

// ---- laziness -------------------------------------------------------------------------------

Deno.test("the stream is lazy: taking 10 events of a 10,000,000-event stream generates only those", () => {
  let readings = 0;
  const clock: Clock = { nowMicros: () => Date.UTC(2025, 0, 1) * 1000 + ++readings };
  const stats = newStats();
  const started = performance.now();
  const taken: GeneratedEvent[] = [];
  for (const event of generateEvents({ users: 5_000_000, orders: 5_000_000, seed: 9, clock }, stats)) {
    taken.push(event);
    if (taken.length === 10) break;
  }
  const elapsedMs = performance.now() - started;
  assert.equal(taken.length, 10);
  assert.equal(readings, 10, "one clock reading per generated event");
  assert.equal(Object.values(stats.byType).reduce((a, b) => a + b, 0), 10);
  assert.ok(elapsedMs < 2000, `took ${elapsedMs.toFixed(0)} ms`);
});

Deno.test("orders without users throw a RangeError once the orders are reached", () => {
  const events = generateEvents({ users: 0, orders: 5, seed: 1 });
  assert.throws(() => [...events], (error: unknown) => error instanceof RangeError && /users/.test(error.message));
  assert.deepEqual([...generateEvents({ users: 0, orders: 0, seed: 1 })], []);
});

// ---- clocks, formatting and ids ---------------------------------------------------------------

Deno.test("formatMicros gives RFC 3339 in UTC with six fraction digits", () => {
  assert.equal(formatMicros(0), "1970-01-01T00:00:00.000000Z");
  assert.equal(formatMicros(1), "1970-01-01T00:00:00.000001Z");
  assert.equal(formatMicros(1_751_537_472_123_456), "2025-07-03T10:11:12.123456Z");
  assert.equal(formatMicros(1_751_537_472_999_999), "2025-07-03T10:11:12.999999Z");
  assert.equal(formatMicros(Date.UTC(2025, 0, 1) * 1000 + 5_000_007), "2025-01-01T00:00:05.000007Z");
  assert.equal(formatMicros(-1), "1969-12-31T23:59:59.999999Z");
});

Deno.test("simulatedClock is deterministic per seed and moves forward 1..1000 microseconds per reading", () => {
  const read = (seed: number, n: number) => {
    const clock = simulatedClock(seed);
    return Array.from({ length: n }, () => clock.nowMicros());
  };
  const a = read(42, 1000);
  assert.deepEqual(read(42, 1000), a);
  assert.notDeepEqual(read(43, 1000), a);
  let previous = Date.UTC(2025, 0, 1) * 1000;
  for (const t of a) {
    assert.ok(Number.isInteger(t));
    const step = t - previous;
    assert.ok(step >= 1 && step <= 1000, `step ${step}`);
    previous = t;
  }
});

Deno.test("entity ids are deterministic version-4 UUIDs, distinct per index and kind", () => {
  const ids = new Set<string>();
  for (let i = 0; i < 5000; i++) {
    const id = entityId(7, "user", i);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    ids.add(id);
  }
  assert.equal(ids.size, 5000);
  assert.equal(entityId(7, "user", 3), entityId(7, "user", 3));
  assert.notEqual(entityId(7, "user", 3), entityId(7, "order", 3));
  assert.notEqual(entityId(7, "user", 3), entityId(8, "user", 3));
});
