/**
 * Worker entry of lib/producer_event_batches.ts' `generateInWorker`: generates a produce run's events
 * and serialises them into batches, at most as many ahead as the main thread has room for.
 * @module
 */
import type { EventBatch, GeneratorMessage, GeneratorRequest } from "./producer_event_batches.ts";
import { generateEvents, newStats, systemClock } from "./generator.ts";

/** The part of a worker's global scope used here (the same under Deno and Bun). */
interface WorkerScope {
  onmessage: ((event: MessageEvent<GeneratorRequest>) => void) | null;
  postMessage(message: GeneratorMessage): void;
}

const scope = globalThis as unknown as WorkerScope;
let credit = 0;
let wake: (() => void) | undefined;

scope.onmessage = ({ data }) => {
  credit += data.batches;
  wake?.();
  if (data.start) {
    generate(data.start).catch((error) => scope.postMessage({ error: String(error?.message ?? error) }));
  }
};

/** Waits until the main thread has room for another batch. */
async function room(): Promise<void> {
  while (credit === 0) await new Promise<void>((resolve) => (wake = resolve));
  credit--;
}

async function generate(start: NonNullable<GeneratorRequest["start"]>): Promise<void> {
  const stats = newStats();
  const clock = start.systemClock ? systemClock() : undefined;
  let values: string[] = [];
  let keys: string[] = [];
  let users = 0;
  const post = async () => {
    await room();
    // Two strings cross to the main thread faster than arrays of a thousand (docs/PERFORMANCE.md).
    const batch: EventBatch = {
      values: values.join("\n"),
      keys: keys.join("\n"),
      count: values.length,
      users,
      stats: { ...stats, byType: { ...stats.byType } },
    };
    scope.postMessage({ batch });
    values = [];
    keys = [];
    users = 0;
  };
  for (const event of generateEvents({ users: start.users, orders: start.orders, seed: start.seed, clock }, stats)) {
    values.push(JSON.stringify(event.value));
    keys.push(event.key);
    if (event.entity === "user") users++;
    if (values.length === start.batchSize) await post();
  }
  if (values.length > 0) await post();
  scope.postMessage({ end: true });
}
