/**
 * Kafka 3.9 stays supported: the producer and consumer end to end against a 3.9.1 broker that
 * this test starts on its own ports (29092, controller 29093, SASL 29094) and stops afterwards.
 */
import assert from "node:assert/strict";
import {
  createTestDatabase,
  diffTables,
  dlqSize,
  pipelineNames,
  produceWorkload,
  publishRaw,
  readTables,
  referenceState,
  ROOT,
  runCommand,
  runServices,
  seededEvents,
} from "./_helpers.ts";

const KAFKA_39 = "3.9.1";
const PORT = 29092;
const BROKERS = [`localhost:${PORT}`];
const SERVICES_ENV = { KAFKA_VERSION: KAFKA_39, KAFKA_PORT: String(PORT), CDC_DATA_DIR: `${ROOT}.data/kafka39` };

Deno.test(`end to end on Kafka ${KAFKA_39}: a seeded workload lands in PostgreSQL as the reference model says, a bad record in its DLQ`, async () => {
  // A broker left by an interrupted run is stopped first, so the one under test is surely 3.9.
  await runServices(["down", "kafka"], SERVICES_ENV);
  await Deno.remove(SERVICES_ENV.CDC_DATA_DIR, { recursive: true }).catch(() => {});
  const db = await createTestDatabase();
  try {
    const up = await runServices(["up", "kafka"], SERVICES_ENV);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stderr, new RegExp(`starting Kafka ${KAFKA_39.replaceAll(".", "\\.")} on localhost:${PORT}`));

    const env = pipelineNames(db.url, BROKERS);
    await produceWorkload(env, { users: 1500, orders: 3000, seed: 39 });
    // One record that is not JSON, so the dead-letter path runs on 3.9 too.
    await publishRaw(env.USERS_TOPIC, 1, [{ key: "not-json", value: "{not json" }], BROKERS);
    const consumed = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.match(consumed.stderr, /drained and idle/);

    const { userEvents, orderEvents } = seededEvents(39, 1500, 3000);
    const expected = referenceState(userEvents, orderEvents);
    assert.deepEqual(diffTables(expected, await readTables(db.sql)), []);
    assert.equal(await dlqSize(env, BROKERS), expected.rejected + 1);
  } finally {
    await db.drop();
    const down = await runServices(["down", "kafka"], SERVICES_ENV);
    await Deno.remove(SERVICES_ENV.CDC_DATA_DIR, { recursive: true }).catch(() => {});
    assert.equal(down.code, 0, down.stderr);
  }
});
