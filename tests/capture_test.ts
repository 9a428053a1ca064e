/**
 * The capture against real Kafka and PostgreSQL: the first snapshot and the stream meet with no
 * gap and no overlap while a writer keeps changing rows, a restart resumes from the slot, the
 * metrics show the slot's WAL, and --drop-slot removes slot and publication.
 */
import assert from "node:assert/strict";
import {
  BROKERS,
  createTestDatabase,
  type PipelineEnv,
  pipelineNames,
  runCommand,
  type Running,
  startCommand,
  waitFor,
} from "./_helpers.ts";
import { type CaptureCheck, captureNames, checkCaptured, installAudit } from "./_capture.ts";

async function stop(running: Running, signal: Deno.Signal = "SIGTERM") {
  try {
    running.process.kill(signal);
  } catch {
    // it had exited already
  }
  return await running.done;
}

/** Waits until the topics hold every audited change and end on the final rows. */
async function waitForCapture(
  db: { sql: Parameters<typeof checkCaptured>[0] },
  prefix: string,
  capture: Running,
): Promise<CaptureCheck> {
  let last: CaptureCheck | undefined;
  return (await waitFor(
    "the capture topics to hold every audited change",
    async () => {
      last = await checkCaptured(db.sql, prefix, BROKERS);
      return last.gaps.length === 0 && last.finalMismatches.length === 0 ? last : undefined;
    },
    90_000,
    1_000,
  ).catch((error) => {
    throw new Error(
      `${error.message}\n${JSON.stringify(last, null, 1)}\ncapture log:\n${capture.stderr().slice(-3000)}`,
    );
  })) as CaptureCheck;
}

Deno.test("capture: a snapshot then the stream with no gap or overlap, a restart resumes, --drop-slot cleans up", async () => {
  const db = await createTestDatabase();
  const names = captureNames();
  const env: PipelineEnv = { ...pipelineNames(db.url), ...names };
  const runs: Running[] = [];
  let writing = true;
  try {
    await installAudit(db.sql);
    const produce = await runCommand("produce", ["--users", "300", "--orders", "600", "--seed", "5"], env);
    assert.equal(produce.code, 0, produce.stderr);
    const consume = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(consume.code, 0, consume.stderr);
    const [probe] = await db.sql<{ id: string }[]>`select id::text from users order by id limit 1`;

    // One row changes in its own transaction every few milliseconds while the slot and its snapshot are made.
    let probeWrites = 0;
    const writer = (async () => {
      while (writing) {
        await db.sql`update users set name = ${`probe-${++probeWrites}`}, modified_at = now() where id = ${probe.id}`;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const capture = startCommand("produce", ["capture", "--metrics-port", "0"], env);
    runs.push(capture);
    await waitFor("the capture to stream", () => /streaming from slot/.test(capture.stderr()), 60_000);
    const atStream = probeWrites;
    await waitFor("50 more probe writes", () => probeWrites > atStream + 50, 30_000, 50);
    writing = false;
    await writer;
    const first = await waitForCapture(db, names.CAPTURE_TOPIC_PREFIX, capture);
    assert.match(capture.stderr(), /first snapshot published: \d+ rows/);
    assert.equal(first.duplicates, 0, "no change is both read by the snapshot and streamed");

    const metricsUrl = /metrics on (http:\/\/127\.0\.0\.1:\d+)/.exec(capture.stderr())![1];
    const metrics = await (await fetch(`${metricsUrl}/metrics`)).text();
    assert.match(metrics, /^cdc_capture_slot_retained_wal_bytes \d+/m);
    assert.match(metrics, /^cdc_capture_changes_total\{table="users",op="r"\} [1-9]/m);
    const health = await fetch(`${metricsUrl}/health`);
    assert.equal(health.status, 200, await health.text());

    const stopped = await stop(capture);
    assert.equal(stopped.code, 0, stopped.stderr);
    assert.match(stopped.stderr, /INFO {2}capture: done .*snapshotRows=\d+/);

    // Changes made while the capture is down come when it returns, from the slot, without a new snapshot.
    const more = await runCommand("produce", ["--users", "200", "--orders", "400", "--seed", "6"], env);
    assert.equal(more.code, 0, more.stderr);
    assert.equal((await runCommand("consume", ["--idle-timeout", "2"], env)).code, 0);
    const again = startCommand("produce", ["capture"], env);
    runs.push(again);
    const second = await waitForCapture(db, names.CAPTURE_TOPIC_PREFIX, again);
    const resumed = await stop(again);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.doesNotMatch(resumed.stderr, /created slot/, "the restart resumes from the slot");
    assert.match(resumed.stderr, /snapshotRows=0/);
    assert.equal(second.duplicates, 0, "a SIGTERM acknowledged everything it published");
    assert.ok(second.auditedChanges > first.auditedChanges);
    console.log(
      `    audited ${second.auditedChanges} changes, ${second.events} events, ${probeWrites} probe writes, ` +
        `duplicates ${second.duplicates}`,
    );

    const dropped = await runCommand("produce", ["capture", "--drop-slot"], env);
    assert.equal(dropped.code, 0, dropped.stderr);
    assert.match(dropped.stderr, /slotDropped=true publicationDropped=true/);
    const [left] = await db.sql`
      select (select count(*) from pg_replication_slots where slot_name = ${names.CAPTURE_SLOT})::int as slots,
             (select count(*) from pg_publication where pubname = ${names.CAPTURE_PUBLICATION})::int as publications`;
    assert.deepEqual({ ...left }, { slots: 0, publications: 0 });
  } finally {
    writing = false;
    for (const run of runs) await stop(run, "SIGKILL");
    await runCommand("produce", ["capture", "--drop-slot"], env).catch(() => {});
    await db.drop().catch((error) => console.error(`dropping the test database failed: ${error}`));
  }
});

Deno.test("capture refuses a slot name a replication command cannot carry, in one line", async () => {
  const run = await runCommand("produce", ["capture", "--slot", "Bad-Slot; drop"], {});
  assert.equal(run.code, 2);
  assert.equal(run.stderr.trim().split("\n").length, 1);
  assert.match(run.stderr, /--slot \(or CAPTURE_SLOT\) must be 1\.\.63 lower-case letters, digits or underscores/);
});
