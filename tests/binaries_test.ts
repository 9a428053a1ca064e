/**
 * The standalone binaries built with `bun build --compile`: same flags, same stream as Deno,
 * the whole pipeline end to end run without Deno, and the same metrics.
 */
import assert from "node:assert/strict";
import { VERSION } from "../lib/version.ts";
import { captureNames, checkCaptured, dropCaptureAndDatabase, installAudit } from "./_capture.ts";
import {
  BROKERS,
  createTestDatabase,
  diffTables,
  freePort,
  metricsAddress,
  pipelineNames,
  produceWorkload,
  readTables,
  referenceState,
  ROOT,
  runCommand,
  runProgram,
  seededEvents,
  startCommand,
  stopProcess,
  stopWithin,
  waitFor,
} from "./_helpers.ts";

const DIST = `${ROOT}dist`;

async function buildOnce(): Promise<void> {
  const build = await runProgram(Deno.execPath(), ["task", "-q", "build"]);
  assert.equal(build.code, 0, build.stderr);
}
const built = buildOnce();

Deno.test("the Bun-built binaries print the version from deno.json and their help", async () => {
  await built;
  for (const name of ["produce", "consume"] as const) {
    const version = await runCommand(name, ["--version"], {}, DIST);
    assert.equal(version.code, 0);
    assert.equal(version.stdout.trim(), `cdc-${name} ${VERSION}`);
    const help = await runCommand(name, ["--help"], {}, DIST);
    assert.equal(help.code, 0);
    assert.match(help.stdout, new RegExp(`^usage: cdc-${name}`));
    assert.match(help.stdout, /--brokers VALUE .*\[KAFKA_BROKERS\]/);
    const bad = await runCommand(name, ["--brokers", "no-port"], {}, DIST);
    assert.equal(bad.code, 2);
    assert.equal(
      bad.stderr.trim(),
      `cdc-${name}: --brokers (or KAFKA_BROKERS) must be host:port[,host:port...] with a port in 1..65535: got "no-port"`,
    );
  }
});

Deno.test("--dry-run --seed 42 gives the same bytes under Deno and as the Bun-built binary", async () => {
  await built;
  const args = ["--dry-run", "--seed", "42", "--users", "2000", "--orders", "4000"];
  const underDeno = await runCommand("produce", args, {});
  const asBinary = await runCommand("produce", args, {}, DIST);
  assert.equal(underDeno.code, 0, underDeno.stderr);
  assert.equal(asBinary.code, 0, asBinary.stderr);
  assert.equal(underDeno.stdout.split("\n").length, 6001);
  assert.equal(asBinary.stdout, underDeno.stdout);
});

Deno.test("end to end through the binaries: produce, consume, and the tables equal the reference model", async () => {
  await built;
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const produced = await produceWorkload(env, { users: 2000, orders: 4000, seed: 21 }, { binDir: DIST });
    const consumed = await runCommand("consume", ["--idle-timeout", "2"], env, DIST);
    assert.equal(consumed.code, 0, consumed.stderr);
    for (const { stderr } of [produced, consumed]) {
      assert.doesNotMatch(stderr, /TimeoutNegativeWarning/, "kafkajs' idle timer loop is fixed in the binaries");
    }
    const { userEvents, orderEvents } = seededEvents(21, 2000, 4000);
    const expected = referenceState(userEvents, orderEvents);
    const actual = await readTables(db.sql);
    assert.deepEqual(diffTables(expected, actual), []);
    assert.equal(actual.users.size, expected.users.size);
  } finally {
    await db.drop();
  }
});

Deno.test("the Bun-built consumer serves the default process metrics, read from /proc, beside its own at /metrics", async () => {
  await built;
  const closedPort = freePort();
  const env = pipelineNames(`postgres://postgres:postgres@127.0.0.1:${closedPort}/cdc_db`);
  const consumer = startCommand("consume", ["--metrics-port", "0"], env, DIST);
  try {
    const url = await metricsAddress(consumer);
    const text = await (await fetch(`${url}/metrics`)).text();
    const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1]);
    assert.ok(value("process_cpu_seconds_total") > 0);
    assert.ok(value("process_resident_memory_bytes") > 10_000_000);
    assert.ok(value("process_open_fds") > 0);
    assert.ok(value("nodejs_heap_size_used_bytes") > 0);
    assert.match(text, /^nodejs_eventloop_lag_seconds \S+$/m);
    assert.match(text, /^cdc_connected\{dependency="database"\} 0$/m);
  } finally {
    await stopWithin(consumer);
  }
  const result = await consumer.done;
  assert.equal(result.code, 0, result.stderr);
});

Deno.test("the Bun-built binary captures: the first snapshot and streamed changes, exit 0 on SIGTERM", async () => {
  await built;
  const db = await createTestDatabase();
  const env = { ...pipelineNames(db.url), ...captureNames() };
  try {
    await installAudit(db.sql);
    await produceWorkload(env, { users: 300, orders: 600, seed: 8 }, { binDir: DIST });
    assert.equal((await runCommand("consume", ["--idle-timeout", "2"], env, DIST)).code, 0);
    const capture = startCommand("produce", ["capture"], env, DIST);
    await waitFor("the first snapshot in the topics", async () => {
      const check = await checkCaptured(db.sql, env.CAPTURE_TOPIC_PREFIX, BROKERS).catch(() => undefined);
      return check !== undefined && check.events > 0;
    });
    await db.sql`update users set name = ${"renamed"} where id = (select id from users order by id limit 1)`;
    const check = await waitFor("every change captured", async () => {
      const result = await checkCaptured(db.sql, env.CAPTURE_TOPIC_PREFIX, BROKERS);
      return result.gaps.length === 0 && result.finalMismatches.length === 0 && result.auditedChanges > 0
        ? result
        : undefined;
    });
    const stopped = await stopProcess(capture);
    assert.equal(stopped.code, 0);
    assert.match(stopped.stderr, /first snapshot published: \d+ rows/);
    assert.equal(check!.duplicates, 0);
  } finally {
    await dropCaptureAndDatabase(db, env, DIST);
  }
});
