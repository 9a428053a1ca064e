/** The consumer against real Kafka and PostgreSQL, checked against an independent reference model. */
import assert from "node:assert/strict";
import postgres from "postgres";
import { DLQ_HEADERS, dlqTopic } from "../lib/consumer_dead_letter.ts";
import { connectDatabase } from "../lib/database.ts";
import { type OrderChange, parseOrderEvent, parseUserEvent, type UserChange } from "../lib/model.ts";
import { applyChanges, arrayLiteral, ensureSchema } from "../lib/sink.ts";
import {
  ADMIN_DATABASE_URL,
  createTestDatabase,
  diffTables,
  groupLag,
  orderEvent,
  pipelineNames,
  produceWorkload,
  publishRaw,
  readTables,
  readTopic,
  referenceState,
  rewindGroup,
  ROOT,
  runCommand,
  seededEvents,
  startCommand,
  stopWithin,
  userEvent,
  waitFor,
} from "./_helpers.ts";

function appliedOf(stderr: string): number {
  const m = /done .*applied=(\{[^}]*\})/.exec(stderr);
  return m ? Object.values(JSON.parse(m[1]) as Record<string, number>).reduce((a, b) => a + b, 0) : 0;
}

Deno.test("end to end: a seeded workload lands in PostgreSQL exactly as the reference model says, a rewound group changes nothing, and --rebuild rebuilds the same tables", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    await produceWorkload(env, { users: 3000, orders: 6000, seed: 11 });
    const consumed = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(consumed.code, 0, consumed.stderr);
    assert.match(consumed.stderr, /drained and idle/);

    const { userEvents, orderEvents } = seededEvents(11, 3000, 6000);
    const expected = referenceState(userEvents, orderEvents);
    const actual = await readTables(db.sql);
    assert.deepEqual(diffTables(expected, actual), []);
    assert.equal(actual.users.size, expected.users.size);
    assert.equal(actual.orders.size, expected.orders.size);
    assert.ok(actual.orders.size > 3000);
    assert.equal(appliedOf(consumed.stderr), 9000 - expected.rejected);

    // Replay: rewind the group to the beginning. The offsets stored in PostgreSQL say every
    // record is applied already, so nothing is applied or dead-lettered again.
    await rewindGroup(env.CONSUMER_GROUP, [env.USERS_TOPIC, env.ORDERS_TOPIC]);
    const replayed = await runCommand("consume", ["--idle-timeout", "2"], env);
    assert.equal(replayed.code, 0, replayed.stderr);
    assert.equal(appliedOf(replayed.stderr), 0, "a rewound group applies nothing twice");
    assert.deepEqual(diffTables(expected, await readTables(db.sql)), []);

    // --rebuild empties the tables and applies the whole log again: the same tables.
    const rebuilt = await runCommand("consume", ["--idle-timeout", "2", "--rebuild"], env);
    assert.equal(rebuilt.code, 0, rebuilt.stderr);
    assert.match(rebuilt.stderr, /rebuild: emptied users, orders and the stored offsets/);
    assert.equal(appliedOf(rebuilt.stderr), 9000 - expected.rejected, "the rebuild applied every event once");
    assert.deepEqual(diffTables(expected, await readTables(db.sql)), []);
  } finally {
    await db.drop();
  }
});

Deno.test("two consumers in one group share the partitions and reach the same state as one", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const first = startCommand("consume", ["--max-batch-bytes", "16384"], env);
    const second = startCommand("consume", ["--max-batch-bytes", "16384"], env);
    await waitFor(
      "both consumers to join the group",
      () => /joined group/.test(first.stderr()) && /joined group/.test(second.stderr()),
    );
    await produceWorkload(env, { users: 4000, orders: 8000, seed: 12 }, { args: ["--batch-size", "500"] });
    await waitFor(
      "the group to drain both topics",
      async () => (await groupLag(env.CONSUMER_GROUP, [env.USERS_TOPIC, env.ORDERS_TOPIC])) === 0,
    );
    const [a, b] = await Promise.all([stopWithin(first), stopWithin(second)]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(a.stderr, /SIGTERM received/);
    const { userEvents, orderEvents } = seededEvents(12, 4000, 8000);
    const expected = referenceState(userEvents, orderEvents);
    assert.deepEqual(diffTables(expected, await readTables(db.sql)), []);
    assert.ok(appliedOf(a.stderr) > 0 && appliedOf(b.stderr) > 0, "both consumers applied a share");
    assert.ok(appliedOf(a.stderr) + appliedOf(b.stderr) >= 12000 - expected.rejected);
  } finally {
    await db.drop();
  }
});

Deno.test("records in the Go original's shapes apply as documented, and bad records among them change no row", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const lines = (name: string) =>
      Deno.readTextFileSync(`${ROOT}tests/fixtures/wire/${name}.jsonl`).split("\n").filter((l) => l.length > 0);
    const keyOf = (line: string, field: string) => /"(?:user_id|order_id)":"([^"]*)"/.exec(line)?.[1] ?? `${field}-cut`;
    const bad = lines("bad");
    const badUsers = bad.filter((l) => !l.includes("order_id"));
    const badOrders = bad.filter((l) => l.includes("order_id"));
    await publishRaw(
      env.USERS_TOPIC,
      3,
      [...lines("users"), ...badUsers].map((value) => ({ key: keyOf(value, "user"), value })),
    );
    await publishRaw(
      env.ORDERS_TOPIC,
      5,
      [...lines("orders"), ...badOrders].map((value) => ({ key: keyOf(value, "order"), value })),
    );

    const consumed = await runCommand("consume", ["--idle-timeout", "2", "--order-wait", "1"], env);
    assert.equal(consumed.code, 0, consumed.stderr);
    const rows = await readTables(db.sql);
    assert.deepEqual(rows.users.get("8f14e45f-ceea-4e7a-9c1b-2d5f3a6b7c80"), {
      name: "qwjfd renamed",
      dob: "1987-04-12",
      created_at: "2025-07-03T09:11:12.123456Z",
      modified_at: "2025-07-03T09:11:13.000000Z",
      is_deleted: false,
    });
    assert.equal(rows.users.get("c9f0f895-fb98-4b91-8f4c-6a1e2b3c4d5e")?.is_deleted, true);
    assert.equal(rows.users.get("c9f0f895-fb98-4b91-8f4c-6a1e2b3c4d5e")?.modified_at, "2025-07-03T14:11:14.500000Z");
    assert.deepEqual(rows.orders.get("45c48cce-2e2d-4fbd-a3f1-0b9e7d6c5a41"), {
      status: "CANCELLED",
      user_id: "8f14e45f-ceea-4e7a-9c1b-2d5f3a6b7c80",
      quantity: 42,
      total_amount: "1234.57",
      placed_at: "2025-07-03T09:11:15.000000Z",
      modified_at: "2025-07-03T09:11:17.000000Z",
      is_deleted: true,
    });
    const d3 = rows.orders.get("d3d94468-02a4-4d1b-8e6f-7a8b9c0d1e2f");
    assert.equal(d3?.status, "PLACED");
    assert.equal(d3?.total_amount, "3.14");
    assert.equal(d3?.is_deleted, true, "the order of a deleted user is deleted");
    assert.equal(rows.users.size, 2);
    assert.equal(rows.orders.size, 2);
    // Where the bad records went (the DLQ, with reasons and sources) is tests/consumer_dlq_test.ts'.
  } finally {
    await db.drop();
  }
});

Deno.test("an order published before its user waits, then applies once the user arrives", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const userId = "0b7e3c1a-2f4d-4e5b-8c6d-7e8f9a0b1c2d";
    const orderId = "1c8f4d2b-3a5e-4f6c-9d7e-8f9a0b1c2d3e";
    const order = orderEvent("CREATE", orderId, {
      user_id: userId,
      quantity: 2,
      order_total: 9.5,
      placed_at: "2025-07-03T10:00:00Z",
    });
    const update = orderEvent("UPDATE", orderId, { modified_at: "2025-07-03T11:00:00Z" });
    await publishRaw(env.USERS_TOPIC, 3, []);
    await publishRaw(env.ORDERS_TOPIC, 5, [order, update].map((o) => ({ key: orderId, value: JSON.stringify(o) })));
    const consumer = startCommand("consume", ["--idle-timeout", "2", "--order-wait", "60"], env);
    await waitFor("the consumer to report the waiting order", () => /order waits for its user/.test(consumer.stderr()));
    const user = userEvent("CREATE", userId, { name: "late user", created_at: "2025-07-03T09:00:00Z" });
    await publishRaw(env.USERS_TOPIC, 3, [{ key: userId, value: JSON.stringify(user) }]);
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr);
    const rows = await readTables(db.sql);
    assert.equal(rows.orders.get(orderId)?.status, "SHIPPED", "the order and its later update both applied, in order");
    assert.equal(rows.orders.get(orderId)?.user_id, userId);
    assert.doesNotMatch(result.stderr, /dead-lettered/);
  } finally {
    await db.drop();
  }
});

Deno.test("an order that waits for its user amid a partition read in 4 KiB fetches, ahead of the batches applied: every order applies once, in order, and the stored offset ends at the log's end", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const known = "6b3e9c7a-8f0d-4e1b-8c2d-3e4f50617283";
    const late = "7c4f0d8b-9a1e-4f2c-9d3e-4f5061728394";
    const orderOf = (i: number, userId: string) =>
      orderEvent("CREATE", `8d5a1e9c-0b2f-4a3d-8e4f-${String(i).padStart(12, "0")}`, {
        user_id: userId,
        quantity: 1,
        order_total: i,
        placed_at: "2025-07-03T10:00:00Z",
      });
    // One partition: 300 orders, the late user's, then 1,500 more, fetched 4 KiB at a time, so the batches
    // after the waiting one are in hand before it waits.
    const orders = [
      ...Array.from({ length: 300 }, (_, i) => orderOf(i, known)),
      orderOf(300, late),
      ...Array.from({ length: 1500 }, (_, i) => orderOf(301 + i, known)),
    ];
    const userCreate = (id: string) => userEvent("CREATE", id, { name: "u", created_at: "2025-07-03T09:00:00Z" });
    await publishRaw(env.USERS_TOPIC, 3, [{ key: known, value: JSON.stringify(userCreate(known)) }]);
    await publishRaw(env.ORDERS_TOPIC, 1, orders.map((o) => ({ key: o.order_id, value: JSON.stringify(o) })));
    const consumer = startCommand(
      "consume",
      ["--idle-timeout", "2", "--order-wait", "60", "--max-batch-bytes", "4096"],
      env,
    );
    await waitFor("the consumer to report the waiting order", () => /order waits for its user/.test(consumer.stderr()));
    await publishRaw(env.USERS_TOPIC, 3, [{ key: late, value: JSON.stringify(userCreate(late)) }]);
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(appliedOf(result.stderr), orders.length + 2, "each record applied once");
    const rows = await readTables(db.sql);
    const missing = orders.filter((o) => rows.orders.get(o.order_id)?.user_id !== o.user_id).map((o) => o.order_id);
    assert.deepEqual(missing, [], "every order is in the table with its user");
    const [stored] = await db.sql<
      { next_offset: string }[]
    >`select next_offset::text from cdc_offsets where topic = ${env.ORDERS_TOPIC}`;
    assert.equal(stored?.next_offset, String(orders.length));
    assert.doesNotMatch(result.stderr, /dead-lettered|missing from the log|fenced/);
  } finally {
    await db.drop();
  }
});

Deno.test("an order whose user never arrives goes to the DLQ after the deadline, and the partition goes on", async () => {
  const db = await createTestDatabase();
  try {
    const env = pipelineNames(db.url);
    const userId = "2d9a5e3c-4b6f-4a7d-8e8f-9a0b1c2d3e4f";
    const orphanId = "3e0b6f4d-5c7a-4b8e-9f9a-0b1c2d3e4f50";
    const user = userEvent("CREATE", userId, { name: "present", created_at: "2025-07-03T09:00:00Z" });
    const orphan = orderEvent("CREATE", orphanId, {
      user_id: "4f1c7a5e-6d8b-4c9f-8a0b-1c2d3e4f5061",
      quantity: 1,
      order_total: 1,
      placed_at: "2025-07-03T10:00:00Z",
    });
    const fine = { ...orphan, order_id: "5a2d8b6f-7e9c-4d0a-9b1c-2d3e4f506172", user_id: userId };
    await publishRaw(env.USERS_TOPIC, 3, [{ key: userId, value: JSON.stringify(user) }]);
    // One partition, so the good order sits behind the orphan.
    await publishRaw(env.ORDERS_TOPIC, 1, [orphan, fine].map((o) => ({ key: o.order_id, value: JSON.stringify(o) })));
    const started = Date.now();
    const result = await runCommand("consume", ["--idle-timeout", "2", "--order-wait", "3"], env);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(Date.now() - started >= 3000, "the orphan waited for the deadline");
    const dlq = await readTopic(dlqTopic(env.ORDERS_TOPIC), 1);
    assert.equal(dlq[0].key, orphanId);
    assert.match(dlq[0].headers[DLQ_HEADERS.reason], /did not exist after waiting 3s/);
    const rows = await readTables(db.sql);
    assert.equal(rows.orders.has(orphanId), false);
    assert.equal(rows.orders.get(fine.order_id)?.status, "PLACED", "the order behind it applied");
  } finally {
    await db.drop();
  }
});

Deno.test("PostgreSQL reads back every awkward name exactly from the sink's array literals", async () => {
  const names = [
    "Ann Lee",
    "",
    "null",
    "NULL",
    "a,b",
    "{x}",
    'say "hi"',
    "back\\slash",
    " pad ",
    "tab\there",
    "Zoë 😀",
    null,
  ];
  const sql = postgres(ADMIN_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    const rows = await sql<{ name: string | null; n: number }[]>`
      select name, n::int from unnest(${arrayLiteral(names)}::varchar[]) with ordinality as t(name, n) order by n`;
    assert.deepEqual(rows.map((r) => r.name), names);
  } finally {
    await sql.end();
  }
});

Deno.test("the schema step on a current schema takes no lock: it completes while another session holds every table exclusively", async () => {
  const db = await createTestDatabase();
  const sql = connectDatabase(db.url, 2);
  const holder = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    await ensureSchema(sql);
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let locked!: () => void;
    const isLocked = new Promise<void>((resolve) => (locked = resolve));
    // Stronger than any batch transaction, frozen or not: nothing may even read these tables.
    const holding = holder.begin(async (tx) => {
      await tx`lock table users, orders, cdc_offsets in access exclusive mode`;
      locked();
      await released;
    });
    await isLocked;
    const started = performance.now();
    const done = await Promise.race([
      ensureSchema(sql).then(() => "done"),
      new Promise((resolve) => setTimeout(() => resolve("blocked"), 10_000)),
    ]);
    const ms = Math.round(performance.now() - started);
    release();
    await holding;
    assert.equal(done, "done", "the schema step waited on the tables' locks");
    assert.ok(ms < 5_000, `${ms} ms`);
  } finally {
    await holder.end();
    await sql.end();
    await db.drop();
  }
});

Deno.test("the schema step creates only what is missing: a dropped trigger, index or outdated function comes back, a legacy trigger goes", async () => {
  const db = await createTestDatabase();
  const sql = connectDatabase(db.url, 2);
  try {
    await ensureSchema(sql);
    const catalog = async () =>
      (await db.sql<{ name: string }[]>`
        select tgname as name from pg_trigger where tgrelid in ('users'::regclass, 'orders'::regclass) and not tgisinternal
        union all select indexname from pg_indexes where tablename = 'orders' and indexname = 'orders_user_id_idx'
        union all select proname || ':' || md5(prosrc) from pg_proc where proname like 'cdc_%'
        order by 1`).map((r) => r.name);
    const complete = await catalog();
    assert.equal(complete.length, 3, complete.join(", "));
    await db.sql`drop trigger users_cascade_soft_delete on users`;
    await db.sql`drop index orders_user_id_idx`;
    await db.sql`create or replace function cdc_cascade_user_delete() returns trigger language plpgsql as $$
      begin return null; end $$`;
    await db
      .sql`create function cdc_inherit_user_delete() returns trigger language plpgsql as $$ begin return new; end $$`;
    await db.sql`create trigger orders_inherit_soft_delete before insert on orders for each row
      execute function cdc_inherit_user_delete()`;
    await ensureSchema(sql);
    assert.deepEqual(await catalog(), complete);
    // Rows written before stay: tables are never recreated.
    const [{ count }] = await db.sql<{ count: number }[]>`select count(*)::int as count from cdc_offsets`;
    assert.equal(count, 0);
  } finally {
    await sql.end();
    await db.drop();
  }
});

Deno.test("a user's delete and an order batch of that user, applied at once in either order, leave the order deleted; a rename waits for neither", async () => {
  const db = await createTestDatabase();
  const sessions = postgres(db.url, { max: 4, onnotice: () => {} });
  try {
    await ensureSchema(sessions);
    const user = "5d0c2c3e-0a4b-4c1e-8f00-000000000001";
    const order = (n: number) => `5d0c2c3e-0a4b-4c1e-8f00-00000000010${n}`;
    const parseUser = (type: "CREATE" | "UPDATE" | "DELETE") => parseUserEvent(JSON.stringify(userEvent(type, user)));
    const placeOrder = (n: number) =>
      parseOrderEvent(JSON.stringify(orderEvent("CREATE", order(n), { user_id: user })));
    await sessions.begin((tx) => applyChanges(tx, [parseUser("CREATE")]));
    /** Applies `first` in an open transaction, then `second` in another, and commits `first` once `second` waits on a lock (or has ended when `waits` is false). */
    const overlap = async (
      first: UserChange[] | OrderChange[],
      second: UserChange[] | OrderChange[],
      waits: boolean,
    ) => {
      let commitFirst!: () => void;
      const firstHeld = new Promise<void>((resolve) => (commitFirst = resolve));
      let firstApplied!: () => void;
      const applied = new Promise<void>((resolve) => (firstApplied = resolve));
      const firstTx = sessions.begin(async (tx) => {
        await applyChanges(tx, first);
        firstApplied();
        await firstHeld;
      });
      await applied;
      let secondDone = false;
      const secondTx = sessions.begin((tx) => applyChanges(tx, second)).then(() => (secondDone = true));
      try {
        if (waits) {
          await waitFor("the second transaction waits on the first's row lock", async () => {
            const [{ n }] = await sessions`
              select count(*)::int as n from pg_locks l join pg_stat_activity a using (pid)
              where not l.granted and a.datname = current_database()`;
            return n > 0 || undefined;
          });
        } else {
          await waitFor("the second transaction ends while the first is open", () => secondDone || undefined);
        }
      } finally {
        // Also when a wait failed: the second transaction then ends too, and the test fails instead of hanging.
        commitFirst();
        await Promise.all([firstTx, secondTx]);
      }
    };
    // A rename runs while an order batch holds its user: neither waits on the other.
    await overlap([placeOrder(1)], [parseUser("UPDATE")], false);
    // The order batch first: the delete waits for it, then its cascade sees the order.
    await overlap([placeOrder(2)], [parseUser("DELETE")], true);
    const rows = await readTables(db.sql);
    assert.equal(rows.orders.get(order(1))?.is_deleted, true, "the cascade reached the order placed before the rename");
    assert.equal(
      rows.orders.get(order(2))?.is_deleted,
      true,
      "the cascade reached the order committed while it waited",
    );
    // The delete first (its user re-created undeleted for the test): the order batch waits, then sees the delete.
    await sessions`update users set is_deleted = false where id = ${user}`;
    await sessions`update orders set is_deleted = false`;
    await overlap([parseUser("DELETE")], [placeOrder(3)], true);
    assert.equal(
      (await readTables(db.sql)).orders.get(order(3))?.is_deleted,
      true,
      "the order saw the committed delete",
    );
  } finally {
    await sessions.end();
    await db.drop();
  }
});

Deno.test("a batch's claim of its offset is inside its transaction: while its read of a user waits on another session's lock, no other session sees the offset's row unlocked, and the writes commit with the offset's advance", async () => {
  const db = await createTestDatabase();
  const blocker = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const env = pipelineNames(db.url);
    await ensureSchema(db.sql);
    const userId = "3e1a9b7c-5d2f-4a6e-8b0c-1d2e3f405162";
    const orderId = "4f2b0c8d-6e3a-4b7f-9c1d-2e3f40516273";
    await db.sql`insert into users (id, name, dob, created_at) values (${userId}, 'held', '1990-01-01', now())`;
    let releaseUser!: () => void;
    const userReleased = new Promise<void>((resolve) => (releaseUser = resolve));
    let userHeld!: () => void;
    const held = new Promise<void>((resolve) => (userHeld = resolve));
    const holding = blocker.begin(async (tx) => {
      await tx`select from users where id = ${userId} for update`;
      userHeld();
      await userReleased;
    });
    await held;
    await publishRaw(env.USERS_TOPIC, 3, []);
    const order = orderEvent("CREATE", orderId, { user_id: userId, placed_at: "2025-07-03T10:00:00Z" });
    await publishRaw(env.ORDERS_TOPIC, 5, [{ key: orderId, value: JSON.stringify(order) }]);
    const consumer = startCommand("consume", ["--idle-timeout", "2"], env);
    try {
      await waitFor("the order batch's read of its user waits on the held lock", async () => {
        const [{ n }] = await db.sql`
          select count(*)::int as n from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock' and query ilike '%for key share%'`;
        return n > 0 || undefined;
      });
      // The claim went out before the read: in the batch's transaction its row is uncommitted or locked.
      const [{ free }] = await db.sql`
        select count(*)::int as free from (
          select from cdc_offsets where topic = ${env.ORDERS_TOPIC} for update skip locked) as unlocked`;
      assert.equal(free, 0, "the claimed offset's row was committed and unlocked before the batch's writes");
    } finally {
      releaseUser();
      await holding;
    }
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      (await readTables(db.sql)).orders.get(orderId)?.user_id,
      userId,
      "the order applied once the lock went",
    );
    const [{ written, advanced }] = await db.sql`
      select (select xmin::text from orders where id = ${orderId}) as written,
        (select xmin::text from cdc_offsets where topic = ${env.ORDERS_TOPIC} and next_offset > 0) as advanced`;
    assert.equal(written, advanced, "the order's insert and its offset's advance committed in one transaction");
  } finally {
    await blocker.end();
    await db.drop();
  }
});

Deno.test("a session frozen mid-statement while holding claims, silent past the session timeout, is ended by the member its claims block, which then applies the partition and names the session it ended", async () => {
  const db = await createTestDatabase();
  const frozen = postgres(db.url, { max: 1, onnotice: () => {} });
  try {
    const env = pipelineNames(db.url);
    await ensureSchema(db.sql);
    const userId = "5a3c1d9e-7f4b-4c8a-9d2e-3f4051627384";
    await publishRaw(env.ORDERS_TOPIC, 5, []);
    await publishRaw(env.USERS_TOPIC, 3, [{ key: userId, value: JSON.stringify(userEvent("CREATE", userId)) }]);
    // Claims every users partition, then waits in a COPY for data never sent. PostgreSQL then waits
    // on the client mid-statement, as it does on a member frozen between a statement's Parse and its
    // Bind, and neither idle_in_transaction_session_timeout nor any other server timeout ends it.
    let frozenPid!: number;
    let claimed!: () => void;
    const held = new Promise<void>((resolve) => (claimed = resolve));
    let ended!: (error: Error) => void;
    const frozenEnded = new Promise<Error>((resolve) => (ended = resolve));
    // The callback never returns: a COMMIT or ROLLBACK written after the session is gone would throw
    // from postgres.js' write timer (lib/database.ts, isClosedConnectionWrite).
    frozen.begin(async (tx) => {
      [{ pid: frozenPid }] = await tx<{ pid: number }[]>`select pg_backend_pid() as pid`;
      await tx`
        insert into cdc_offsets (topic, partition, next_offset, consumer_group)
        select ${env.USERS_TOPIC}, p, 0, ${env.CONSUMER_GROUP} from generate_series(0, 2) as p`;
      await tx`create temporary table never_sent (x int)`;
      const copy = await tx`copy never_sent from stdin`.writable();
      copy.on("error", ended);
      claimed();
      await new Promise(() => {});
    }).catch(ended);
    await held;
    const consumer = startCommand("consume", ["--session-timeout", "6", "--idle-timeout", "2"], env);
    await waitFor("the user to apply once the frozen session is ended", async () => {
      return (await readTables(db.sql)).users.has(userId) || undefined;
    }, 90_000).catch((error) => {
      throw new Error(`${error.message}\nconsumer log:\n${consumer.stderr().slice(-3000)}`);
    });
    const result = await consumer.done;
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, new RegExp(`ended a PostgreSQL session holding claimed offsets.* pid=${frozenPid}\\b`));
    const [{ alive }] = await db.sql`select count(*)::int as alive from pg_stat_activity where pid = ${frozenPid}`;
    assert.equal(alive, 0, "the frozen session is gone");
    assert.match(String(await frozenEnded), /CONNECTION_CLOSED|terminat/, "the frozen session's connection was ended");
  } finally {
    await frozen.end({ timeout: 1 });
    await db.drop();
  }
});
