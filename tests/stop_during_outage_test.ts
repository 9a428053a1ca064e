/**
 * A stop while PostgreSQL is away ends the run within moments (issue 28 item 3): consume and
 * capture are SIGTERMed while their database connections are cut and refused, once each has said
 * it is waiting for PostgreSQL. postgres.js alone would hold the stop behind its own reconnect
 * backoff (up to 20 s) and a 5 s pool shutdown; the runs now abandon the attempt in flight.
 */
import assert from "node:assert/strict";
import { captureNames, dropCaptureAndDatabase } from "./_capture.ts";
import { ConnectionCutter } from "./_cutter.ts";
import {
  createTestDatabase,
  killLeftovers,
  pipelineNames,
  produceWorkload,
  type Running,
  startCommand,
  stopProcess,
  waitFor,
} from "./_helpers.ts";

/** How long PostgreSQL is away before the stop. */
const OUTAGE_MS = 6_000;

/** Generous for a busy machine, and still below what postgres.js' backoff and pool shutdown took. */
const STOP_WITHIN_MS = 8_000;

/** The database URL through `cutter`. */
function relayed(url: string, cutter: ConnectionCutter): string {
  const through = new URL(url);
  through.hostname = "127.0.0.1";
  through.port = String(cutter.port);
  return through.href;
}

/** Cuts the database away once `run` is busy, waits for its wait line, SIGTERMs it; returns the stop's duration. */
async function stopWhileAway(run: Running, cutter: ConnectionCutter, busy: RegExp): Promise<number> {
  await waitFor(`the run to be busy (${busy})`, () => busy.test(run.stderr()), 60_000);
  cutter.cutNow("outage", 600_000);
  const cutAt = performance.now();
  await waitFor("a wait for PostgreSQL", () => /waiting for PostgreSQL/.test(run.stderr()), 60_000).catch((error) => {
    throw new Error(`${error.message}\n${run.stderr().slice(-4000)}`);
  });
  // The outage lasts OUTAGE_MS before the stop, so postgres.js' own reconnect backoff has grown.
  await waitFor(`${OUTAGE_MS} ms of outage`, () => performance.now() - cutAt >= OUTAGE_MS, OUTAGE_MS + 5_000, 100);
  const stopped = performance.now();
  const result = await stopProcess(run, "SIGTERM");
  const ms = performance.now() - stopped;
  assert.equal(result.code, 0, result.stderr.slice(-2000));
  assert.match(result.stderr, /done /, "the run prints its summary");
  return ms;
}

Deno.test("consume and capture SIGTERMed while PostgreSQL is away exit 0 within seconds, not behind postgres.js' reconnect backoff", async () => {
  const db = await createTestDatabase();
  const target = new URL(db.url);
  const cutters = [0, 1].map(() => ConnectionCutter.start({ hostname: target.hostname, port: Number(target.port) }));
  const names = captureNames();
  const env = { ...pipelineNames(db.url), ...names, CAPTURE_TABLES: "public.users,public.orders" };
  const runs: Running[] = [];
  try {
    await produceWorkload(env, { users: 3_000, orders: 6_000, seed: 7 });
    const consumer = startCommand("consume", [], { ...env, DATABASE_URL: relayed(db.url, cutters[0]) });
    const capture = startCommand("produce", ["capture"], { ...env, DATABASE_URL: relayed(db.url, cutters[1]) });
    runs.push(consumer, capture);
    const [consumeMs, captureMs] = await Promise.all([
      stopWhileAway(consumer, cutters[0], /joined group/),
      stopWhileAway(capture, cutters[1], /streaming from slot/),
    ]);
    console.log(
      `    stop while PostgreSQL is away: consume ${Math.round(consumeMs)} ms, capture ${Math.round(captureMs)} ms`,
    );
    assert.ok(consumeMs < STOP_WITHIN_MS, `consume stopped in ${Math.round(consumeMs)} ms`);
    assert.ok(captureMs < STOP_WITHIN_MS, `capture stopped in ${Math.round(captureMs)} ms`);
  } finally {
    await killLeftovers(...runs);
    for (const cutter of cutters) cutter.close();
    await dropCaptureAndDatabase(db, env);
  }
});
