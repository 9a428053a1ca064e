/**
 * Random User and Order events, users first, then orders of users created in the run, as the
 * Go original generated them. Streams in constant memory: ids are derived from (seed, index)
 * rather than remembered, so a million events never hold a million objects.
 * @module
 */
import { en, Faker } from "@faker-js/faker";
import { type GenerationStats, newStats } from "./producer_event_batches.ts";
import type { EventType, OrderEvent, UserEvent } from "./model.ts";
import { STATUS_OF } from "./model.ts";

export { type GenerationStats, newStats };

/** Source of event timestamps, in microseconds since the epoch. */
export interface Clock {
  /** The current time in microseconds since 1970-01-01T00:00:00Z. */
  nowMicros(): number;
}

/** One event ready to publish: its topic kind, key (the entity id) and value. */
export type GeneratedEvent =
  | { entity: "user"; key: string; value: UserEvent }
  | { entity: "order"; key: string; value: OrderEvent };

/** Options of {@linkcode generateEvents}. */
export interface GeneratorOptions {
  /** User events to generate. */
  users: number;
  /** Order events to generate; needs at least one user CREATE. */
  orders: number;
  /** Seed of the stream; the same seed gives the same bytes. */
  seed: number;
  /** Clock of the timestamps. @default a simulated clock derived from the seed */
  clock?: Clock;
}

/** Share of CREATE, then of CREATE + UPDATE; the rest are DELETE. */
const CREATE_SHARE = 0.6;
const CREATE_OR_UPDATE_SHARE = 0.9;
/** Seeded runs start here, so their timestamps repeat too. */
const SIMULATED_EPOCH_US = Date.UTC(2025, 0, 1) * 1000;

/** A clock that reads the system time, with microseconds from the monotonic timer. */
export function systemClock(): Clock {
  const originUs = Math.round((performance.timeOrigin ?? Date.now()) * 1000);
  return { nowMicros: () => originUs + Math.floor(performance.now() * 1000) };
}

/** A clock that starts at 2025-01-01 and moves 1..1000 microseconds per reading, from `seed`. */
export function simulatedClock(seed: number): Clock {
  const random = mulberry32(seed ^ 0x5bd1e995);
  let now = SIMULATED_EPOCH_US;
  return { nowMicros: () => (now += 1 + Math.floor(random() * 1000)) };
}

// Consecutive timestamps share their second: formatting it once per second, not per event, saves
// a share of the generator's time (docs/PERFORMANCE.md).
let cachedSecond = NaN;
let cachedPrefix = "";

/** Formats epoch microseconds as RFC 3339 in UTC with six fraction digits. */
export function formatMicros(micros: number): string {
  const second = Math.floor(micros / 1_000_000);
  if (second !== cachedSecond) {
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, -5); // drop ".sssZ"
    cachedSecond = second;
  }
  const fraction = String(((micros % 1_000_000) + 1_000_000) % 1_000_000).padStart(6, "0");
  return `${cachedPrefix}.${fraction}Z`;
}

/** Small, fast, seedable PRNG (mulberry32) returning floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function mix32(value: number): number {
  let h = value >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

const HEX_BYTE = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

function hex32(word: number): string {
  return HEX_BYTE[word >>> 24] + HEX_BYTE[(word >>> 16) & 0xff] + HEX_BYTE[(word >>> 8) & 0xff] +
    HEX_BYTE[word & 0xff];
}

/** The id of the `index`-th entity of a kind in a run: a version-4 UUID derived from the seed. */
export function entityId(seed: number, kind: "user" | "order", index: number): string {
  const base = mix32(seed ^ (kind === "user" ? 0x75736572 : 0x6f726472));
  // Unrolled (no arrays, table lookups for hex): ids were a fifth of the generator's time.
  const w2 = mix32(base ^ mix32(index + 0x9e3779b9 * 3));
  const hex = hex32(mix32(base ^ mix32(index + 0x9e3779b9))) + hex32(mix32(base ^ mix32(index + 0x9e3779b9 * 2))) +
    hex32(w2) + hex32(mix32(base ^ mix32(index + 0x9e3779b9 * 4)));
  const variant = (((w2 >>> 28) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${
    hex.slice(20, 32)
  }`;
}

/** `name` cut to 50 characters (code points); 50 UTF-16 units or fewer need no cut. */
function clip50(name: string): string {
  return name.length <= 50 ? name : [...name].slice(0, 50).join("");
}

/**
 * A user event of `type` at `now`, `created` users being made so far: a CREATE makes user number
 * `created`; UPDATE and DELETE pick one of them.
 */
function userValue(
  type: EventType,
  { seed, faker, pick, created, now }: {
    seed: number;
    faker: Faker;
    pick: (n: number) => number;
    created: number;
    now: string;
  },
): UserEvent {
  if (type === "CREATE") {
    const id = entityId(seed, "user", created);
    const born = faker.date.between({ from: "1970-01-01T00:00:00Z", to: "2015-12-31T23:59:59Z" });
    return {
      event_type: type,
      user_id: id,
      name: clip50(faker.person.fullName()),
      dob: born.toISOString().slice(0, 10),
      created_at: now,
    };
  }
  const id = entityId(seed, "user", pick(created));
  if (type === "UPDATE") {
    return { event_type: type, user_id: id, name: clip50(faker.person.fullName()), modified_at: now };
  }
  return { event_type: type, user_id: id, modified_at: now };
}

/**
 * Generates `users` user events, then `orders` order events, lazily. About 60% CREATE, 30%
 * UPDATE and 10% DELETE; UPDATE and DELETE only target ids created earlier in the run.
 */
export function generateEvents(options: GeneratorOptions, stats?: GenerationStats): Iterable<GeneratedEvent> {
  const { users, orders, seed } = options;
  const clock = options.clock ?? simulatedClock(seed);
  const counts = stats ?? newStats();
  return {
    *[Symbol.iterator]() {
      const random = mulberry32(seed);
      const faker = new Faker({ locale: [en] });
      faker.seed(seed);
      const pick = (n: number) => Math.floor(random() * n);
      const nextType = (created: number): EventType => {
        if (created === 0) return "CREATE";
        const r = random();
        return r < CREATE_SHARE ? "CREATE" : r < CREATE_OR_UPDATE_SHARE ? "UPDATE" : "DELETE";
      };
      const count = (key: string) => (counts.byType[key] = (counts.byType[key] ?? 0) + 1);
      const userKey = { CREATE: "user.CREATE", UPDATE: "user.UPDATE", DELETE: "user.DELETE" } as const;
      const orderKey = { CREATE: "order.CREATE", UPDATE: "order.UPDATE", DELETE: "order.DELETE" } as const;

      let usersCreated = 0;
      for (let i = 0; i < users; i++) {
        const type = nextType(usersCreated);
        const now = formatMicros(clock.nowMicros());
        const value = userValue(type, { seed, faker, pick, created: usersCreated, now });
        if (type === "CREATE") counts.usersCreated = ++usersCreated;
        count(userKey[type]);
        yield { entity: "user", key: value.user_id, value };
      }

      if (orders > 0 && usersCreated === 0) {
        throw new RangeError("orders need users: at least one user CREATE must come first (raise --users)");
      }
      const orderedFor = new Uint8Array(Math.ceil(usersCreated / 8));
      let ordersCreated = 0;
      for (let i = 0; i < orders; i++) {
        const type = nextType(ordersCreated);
        const now = formatMicros(clock.nowMicros());
        let value: OrderEvent;
        if (type === "CREATE") {
          const userIndex = pick(usersCreated);
          if ((orderedFor[userIndex >> 3] & (1 << (userIndex & 7))) === 0) {
            orderedFor[userIndex >> 3] |= 1 << (userIndex & 7);
            counts.usersOrderedFor++;
          }
          const quantity = 1 + pick(100);
          const unitPriceCents = 100 + pick(5001);
          value = {
            event_type: type,
            order_id: entityId(seed, "order", ordersCreated++),
            order_status: STATUS_OF[type],
            user_id: entityId(seed, "user", userIndex),
            quantity,
            order_total: (quantity * unitPriceCents) / 100,
            placed_at: now,
          };
        } else {
          value = {
            event_type: type,
            order_id: entityId(seed, "order", pick(ordersCreated)),
            order_status: STATUS_OF[type],
            modified_at: now,
          };
        }
        count(orderKey[type]);
        yield { entity: "order", key: value.order_id, value };
      }
    },
  };
}
