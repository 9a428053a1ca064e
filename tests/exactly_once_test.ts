/**
 * Exactly-once effects against real Kafka and PostgreSQL: offsets stored with the rows, replays
 * that change nothing, fencing of a member that lost its partition, culprit isolation inside one
 * transaction, and the errors that end a run instead of being waited out.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { loadConsumeConfig } from "../lib/config.ts";
import { runConsumer } from "../lib/consumer.ts";
import { dlqTopic } from "../lib/consumer_dead_letter.ts";
import { createKafka } from "../lib/kafka_admin.ts";
import { createLogger } from "../lib/log.ts";
import type { EventType } from "../lib/model.ts";
import { connectDatabase } from "../lib/database.ts";
import { ensureSchema } from "../lib/sink.ts";
import {
  BROKERS,
  createTestDatabase,
  diffTables,
  orderEvent,
  pipelineNames,
  produceWorkload,
  publishRaw,
  readTables,
  readTopic,
  referenceState,
  rewindGroup,
  runCommand,
  seededEvents,
  startCommand,
  testKafka,
  topicSize,
  userEvent,
  waitFor,
} from "./_helpers.ts";

const U = "6f1c1b8e-3a57-4d0e-9d0a-2b7f4f1a9c01";
const AT = "2025-07-03T10:11:12.123456Z";
const create = (id: string, name = "Ada Lovelace") =>
  JSON.stringify(userEvent("CREATE", id, { name, dob: "1990-01-02", created_at: AT }));
const update = (id: string) => JSON.stringify(userEvent("UPDATE", id, { modified_at: AT }));
const remove = (id: string) => JSON.stringify(userEvent("DELETE", id, { modified_at: AT }));

async function storedOffsets(
  sql: ReturnType<typeof connectDatabase> | Awaited<ReturnType<typeof createTestDatabase>>["sql"],
) {
  const rows = await sql<{ topic: string; partition: number; next_offset: string }[]>`
    select topic, partition, next_offset::text as next_offset from cdc_offsets order by topic, partition`;
  return rows.map((r) => `${r.topic}:${r.partition}=${r.next_offset}`);
}

for (const [first, name] of [[remove, "DELETE"], [update, "UPDATE"]] as const) {
  Deno.test(`[${name} u, CREATE u] consumed again from the start by another group changes no row and dead-letters nothing again`, async () => {
    const db = await createTestDatabase();
    try {
      const env = pipelineNames(db.url);
      await publishRaw(env.USERS_TOPIC, 1, [{ key: U, value: first(U) }, { key: U, value: create(U) }]);
      const once = await runCommand("consume", ["--idle-timeout", "2"], env);
      assert.equal(once.code, 0, once.stderr);
      const afterOnce = await readTables(db.sql);
      assert.equal(afterOnce.users.get(U)?.is_deleted, false, `the ${name} came before the CREATE: u stays live`);
      assert.equal(await topicSize(dlqTopic(env.USERS_TOPIC)), 1, `the ${name} of a missing row is dead-lettered`);
      const offsetsOnce = await storedOffsets(db.sql);
      assert.deepEqual(offsetsOnce, [`${env.USERS_TOPIC}:0=2`]);

      const again = await runCommand("consume", ["--idle-timeout", "2"], {
        ...env,
        CONSUMER_GROUP: `${env.CONSUMER_GROUP}_2`,
      });
      assert.equal(again.code, 0, again.stderr);
      assert.deepEqual(diffTables(afterOnce, await readTables(db.sql)), [], "the tables are unchanged");
      assert.equal(await topicSize(dlqTopic(env.USERS_TOPIC)), 1, "nothing is dead-lettered twice");
      assert.deepEqual(await storedOffsets(db.sql), offsetsOnce);
    } finally {
      await db.drop();
    }
  });
}

Deno.test("records keyed other than by their entity id (empty, null, non-UTF-8, another id) go to the DLQ naming key and id; the rest apply", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const ids = Array.from({ length: 6 }, (_, i) => `6f1c1b8e-3a57-4d0e-9d0a-${String(i).padStart(12, "0")}`);
    await publishRaw(env.USERS_TOPIC, 1, []);
    const producer = testKafka().producer({ allowAutoTopicCreation: false });
    await producer.connect();
    await producer.send({
      topic: env.USERS_TOPIC,
      acks: -1,
      messages: [
        { key: ids[0], value: create(ids[0]) },
        { key: "", value: create(ids[1]) },
        { key: null, value: create(ids[2]) },
        { key: Buffer.from([0xc3, 0x28]), value: create(ids[3]) },
        { key: ids[0], value: create(ids[4]) },
        { key: ids[5].toUpperCase(), value: create(ids[5]) },
      ],
    });
    await producer.disconnect();
    const run = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(run.code, 0, run.stderr);
    const tables = await readTables(db.sql);
    assert.deepEqual([...tables.users.keys()].sort(), [ids[0], ids[5]]);
    const dlq = await readTopic(dlqTopic(env.USERS_TOPIC), 4);
    const reasons = dlq.sort((a, b) => Number(a.headers["dlq.source.offset"]) - Number(b.headers["dlq.source.offset"]))
      .map((r) => `${r.headers["dlq.source.offset"]} ${r.headers["dlq.reason"]}`);
    assert.deepEqual(reasons, [
      `1 record key must be the event's user_id "${ids[1]}": got an empty key`,
      `2 record key must be the event's user_id "${ids[2]}": got no key (null)`,
      `3 record key must be the event's user_id "${ids[3]}": got a key that is not UTF-8 (hex c328)`,
      `4 record key must be the event's user_id "${ids[4]}": got "${ids[0]}"`,
    ]);
    assert.deepEqual(await storedOffsets(db.sql), [`${env.USERS_TOPIC}:0=6`]);
  } finally {
    await db.drop();
  }
});

Deno.test("re-sent identical events (user and order CREATE, UPDATE, DELETE) rewrite no row: every row keeps its xmin", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const [A, B] = [U, "6f1c1b8e-3a57-4d0e-9d0a-2b7f4f1a9c02"];
    const [X, Y, Z] = [
      "0d9c3f7e-1b2a-4c5d-8e6f-000000000001",
      "0d9c3f7e-1b2a-4c5d-8e6f-000000000002",
      "0d9c3f7e-1b2a-4c5d-8e6f-000000000003",
    ];
    const order = (id: string, type: EventType, user?: string) =>
      JSON.stringify(
        orderEvent(
          type,
          id,
          type === "CREATE" ? { user_id: user, quantity: 2, order_total: 9.99, placed_at: AT } : { modified_at: AT },
        ),
      );
    const users = [{ key: A, value: create(A) }, { key: B, value: create(B) }, { key: A, value: update(A) }];
    const orders = [{ key: X, value: order(X, "CREATE", A) }, { key: Y, value: order(Y, "CREATE", A) }, {
      key: Z,
      value: order(Z, "CREATE", B),
    }, { key: Y, value: order(Y, "UPDATE") }];
    await publishRaw(env.USERS_TOPIC, 1, users);
    await publishRaw(env.ORDERS_TOPIC, 1, orders);
    const first = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(first.code, 0, first.stderr);
    await publishRaw(env.USERS_TOPIC, 1, [{ key: B, value: remove(B) }]);
    const second = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(second.code, 0, second.stderr);
    const xmins = async () =>
      (await db.sql<{ id: string; xmin: string }[]>`
        select id::text as id, xmin::text as xmin from users union all select id::text, xmin::text from orders order by id`)
        .map((r) => `${r.id}@${r.xmin}`);
    const before = await xmins();
    const state = await readTables(db.sql);
    assert.equal(state.orders.get(Z)?.is_deleted, true, "the deleted user's order is deleted");
    // The events whose effect the rows already hold, re-sent as a producer re-run would send them.
    await publishRaw(env.USERS_TOPIC, 1, [{ key: B, value: create(B) }, { key: A, value: update(A) }, {
      key: B,
      value: remove(B),
    }]);
    await publishRaw(env.ORDERS_TOPIC, 1, [{ key: X, value: order(X, "CREATE", A) }, {
      key: Z,
      value: order(Z, "CREATE", B),
    }, { key: Y, value: order(Y, "UPDATE") }]);
    const resent = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(resent.code, 0, resent.stderr);
    assert.match(
      resent.stderr,
      /done .*applied=\{"[^"]+":3,"[^"]+":3\}/,
      "the re-sent events are applied, not skipped",
    );
    assert.deepEqual(diffTables(state, await readTables(db.sql)), []);
    assert.deepEqual(await xmins(), before, "no row was rewritten");
  } finally {
    await db.drop();
  }
});

Deno.test("a crash between the database commit and Kafka's commit re-delivers records that apply nothing and dead-letter nothing twice", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    await produceWorkload(env, { users: 400, orders: 800, seed: 5 });
    await publishRaw(env.USERS_TOPIC, 3, [{ key: U, value: remove(U) }, { key: "bad", value: "{not json" }]);
    const first = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(first.code, 0, first.stderr);
    const tables = await readTables(db.sql);
    const dlqSize = await topicSize(dlqTopic(env.USERS_TOPIC));
    assert.equal(dlqSize, 2);
    // The state such a crash leaves: PostgreSQL committed, Kafka's committed offsets never moved.
    await rewindGroup(env.CONSUMER_GROUP, [env.USERS_TOPIC, env.ORDERS_TOPIC]);
    const redelivered = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(redelivered.code, 0, redelivered.stderr);
    assert.match(redelivered.stderr, /done .*applied=\{\}/, "nothing applied on re-delivery");
    assert.deepEqual(diffTables(tables, await readTables(db.sql)), []);
    assert.equal(await topicSize(dlqTopic(env.USERS_TOPIC)), dlqSize, "nothing dead-lettered twice");
  } finally {
    await db.drop();
  }
});

Deno.test("a record PostgreSQL refuses in a batch of 60 goes alone to the DLQ with the database's reason, an invalid one beside it goes there once; the rest apply and the offset advances once", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    await ensureSchema(db.sql as never);
    // Test-only rule: PostgreSQL refuses this one name; the contract's validation accepts it.
    await db.sql`alter table users add constraint test_refuses_one_name check (name <> 'Refused Name')`;
    const ids = Array.from({ length: 60 }, (_, i) => `6f1c1b8e-3a57-4d0e-9d0a-${String(i).padStart(12, "0")}`);
    await publishRaw(
      env.USERS_TOPIC,
      1,
      // The refused record fails the batch's first transaction, which runs again isolating it: the invalid
      // record (offset 10) is dead-lettered by the run that commits, not by both.
      ids.map((id, i) => ({
        key: id,
        value: i === 10 ? "{not json" : create(id, i === 37 ? "Refused Name" : `User ${i}`),
      })),
    );
    const run = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(run.code, 0, run.stderr);
    const tables = await readTables(db.sql);
    assert.equal(tables.users.size, 58);
    assert.equal(tables.users.has(ids[37]), false);
    const [invalid, dead] = await readTopic(dlqTopic(env.USERS_TOPIC), 2);
    assert.equal(await topicSize(dlqTopic(env.USERS_TOPIC)), 2, "each dead letter written once");
    assert.equal(invalid.headers["dlq.source.offset"], "10");
    assert.equal(dead.offset, "1");
    assert.equal(dead.headers["dlq.source.offset"], "37");
    assert.match(
      dead.headers["dlq.reason"],
      /PostgreSQL rejected the record: PostgresError 23514: .*test_refuses_one_name/,
    );
    assert.match(run.stderr, /done .*batches=1\b/, "one batch, one transaction, one offset advance");
    assert.deepEqual(await storedOffsets(db.sql), [`${env.USERS_TOPIC}:0=60`]);
  } finally {
    await db.drop();
  }
});

Deno.test("a member that lost its partition during a rebalance while holding a batch is fenced: the batch is dropped, nothing applies twice", async () => {
  const db = await createTestDatabase();
  const lines: string[] = [];
  let release = () => {};
  const released = new Promise<void>((resolve) => (release = resolve));
  const stopA = new AbortController();
  const env = pipelineNames(db.url);
  const sql = connectDatabase(db.url, 4);
  let runA: Promise<unknown> | undefined;
  try {
    await produceWorkload(env, { users: 300, orders: 0, seed: 9 });
    const parsed = loadConsumeConfig([], { ...env, KAFKA_BROKERS: BROKERS.join(",") });
    assert.ok(!parsed.help);
    const config = { ...parsed.config, concurrency: 1 };
    const logger = createLogger({ component: "member-a", write: (line) => lines.push(line) });
    let held = false;
    runA = runConsumer(config, {
      kafka: createKafka(config, "member-a", logger),
      sql,
      logger,
      signal: stopA.signal,
      // Member A holds its first batch until member B has applied the whole log.
      beforeApply: async () => {
        if (held) return;
        held = true;
        await released;
      },
    });
    await waitFor("member A holding a batch", () => held, 60_000);
    const b = startCommand("consume", ["--idle-timeout", "3"], env);
    const bDone = await b.done;
    assert.equal(bDone.code, 0, bDone.stderr);
    assert.match(bDone.stderr, /applied=\{"[^"]+_users":300\}/, "member B applied every record after the rebalance");
    release();
    await waitFor(
      "member A fenced",
      () => lines.some((l) => /fenced: .* another member applied it; batch dropped/.test(l)),
      60_000,
    );
    const { userEvents } = seededEvents(9, 300, 0);
    assert.deepEqual(diffTables(referenceState(userEvents, []), await readTables(db.sql)), []);
    assert.equal(await topicSize(dlqTopic(env.USERS_TOPIC)), 0);
    assert.ok(!lines.some((l) => /applied=\{"[^"]+_users":[1-9]/.test(l)), "member A applied nothing");
  } finally {
    release();
    stopA.abort();
    await runA?.catch(() => {});
    await sql.end({ timeout: 5 });
    await db.drop();
  }
});

Deno.test("a table dropped under a running consumer ends the run with exit 1 and one line naming the error", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const consumer = startCommand("consume", [], env);
    await waitFor(
      "the consumer's schema",
      async () => (await db.sql`select to_regclass('cdc_offsets') as t`)[0].t,
      60_000,
    );
    await waitFor("the consumer to join", () => /joined group/.test(consumer.stderr()), 60_000);
    await db.sql`drop table orders`;
    await db.sql`drop table users`;
    await publishRaw(env.USERS_TOPIC, 3, [{ key: U, value: create(U) }]);
    const done = await consumer.done;
    assert.equal(done.code, 1, done.stderr);
    const errors = done.stderr.split("\n").filter((l) => /\bERROR\b|error/.test(l) && /failed/.test(l));
    assert.equal(errors.length, 1, done.stderr);
    assert.match(errors[0], /failed: PostgresError 42P01: relation "users" does not exist/);
    assert.doesNotMatch(done.stderr, /waiting for PostgreSQL/);
  } finally {
    await db.drop();
  }
});

Deno.test("a DLQ write Kafka refuses for good ends the run with exit 1 naming the record's topic, partition and offset", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const admin = testKafka().admin();
    await admin.connect();
    await admin.createTopics({
      topics: [{
        topic: dlqTopic(env.USERS_TOPIC),
        numPartitions: 1,
        configEntries: [{ name: "max.message.bytes", value: "2048" }],
      }],
      waitForLeaders: true,
    });
    await admin.disconnect();
    await publishRaw(env.USERS_TOPIC, 1, [{ key: U, value: create(U) }, { key: "big", value: "x".repeat(8000) }]);
    const run = await runCommand("consume", ["--idle-timeout", "30"], env);
    assert.equal(run.code, 1, run.stderr);
    assert.match(
      run.stderr,
      new RegExp(
        `failed: DeadLetterError: could not write ${env.USERS_TOPIC}:0:1 to ${env.USERS_TOPIC}\\.dlq: .*(too large|larger)`,
        "i",
      ),
    );
    assert.equal(
      (await readTables(db.sql)).users.size,
      0,
      "the batch's transaction rolled back with the failed DLQ write",
    );
  } finally {
    await db.drop();
  }
});

Deno.test("a serialization failure (40001) rolls the batch back and the retry applies it once: no DLQ record, one offset advance", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    await ensureSchema(db.sql as never);
    // Test-only: the first insert into users fails as a serialization failure would. A sequence
    // is not rolled back with the transaction, so the retry goes through.
    await db.sql.unsafe(`
      create sequence test_fail_once;
      create function test_fail_once() returns trigger language plpgsql as $$
      begin
        if nextval('test_fail_once') = 1 then
          raise exception 'forced serialization failure' using errcode = '40001';
        end if;
        return new;
      end $$;
      create trigger test_fail_once before insert on users for each row execute function test_fail_once();`);
    const ids = Array.from({ length: 20 }, (_, i) => `6f1c1b8e-3a57-4d0e-9d0a-${String(i).padStart(12, "0")}`);
    await publishRaw(env.USERS_TOPIC, 1, ids.map((id) => ({ key: id, value: create(id) })));
    const run = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /waiting for PostgreSQL.*40001/);
    assert.match(run.stderr, /done .*batches=1 retries=1\b/);
    assert.equal((await readTables(db.sql)).users.size, 20);
    assert.equal(await topicSize(dlqTopic(env.USERS_TOPIC)), 0);
    assert.deepEqual(await storedOffsets(db.sql), [`${env.USERS_TOPIC}:0=20`]);
  } finally {
    await db.drop();
  }
});
