/**
 * Unit tests of the sink's pure planning step (planUserBatch / planOrderBatch in lib/sink.ts):
 * how a partition's batch folds, per key and in log order, into one patch per row. No database.
 * @module
 */
import assert from "node:assert/strict";
import type { OrderChange, UserChange } from "../../lib/model.ts";
import { parseOrderEvent, parseUserEvent } from "../../lib/model.ts";
import { isClosedConnectionWrite } from "../../lib/database.ts";
import { arrayLiteral, listOf, planOrderBatch, planUserBatch } from "../../lib/sink.ts";

const U1 = "11111111-1111-4111-8111-111111111111";
const U2 = "22222222-2222-4222-8222-222222222222";
const U3 = "33333333-3333-4333-8333-333333333333";
const O1 = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa";
const O2 = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb";
const O3 = "cccccccc-cccc-4ccc-8ccc-cccccccccccc";

const t = (second: number) => `2025-07-03T10:11:${String(second).padStart(2, "0")}.000000Z`;

function userCreate(id: string, name: string, second = 0): UserChange {
  return { entity: "user", type: "CREATE", id, name, dob: "1990-01-01", createdAt: t(second) };
}
function userUpdate(id: string, name: string, second?: number): UserChange {
  return { entity: "user", type: "UPDATE", id, name, modifiedAt: second === undefined ? undefined : t(second) };
}
function userDelete(id: string, second?: number): UserChange {
  return { entity: "user", type: "DELETE", id, modifiedAt: second === undefined ? undefined : t(second) };
}
function orderCreate(id: string, userId: string, second = 0): OrderChange {
  return {
    entity: "order",
    type: "CREATE",
    id,
    status: "PLACED",
    userId,
    quantity: 2,
    total: "20.00",
    placedAt: t(second),
  };
}
function orderStatusChange(type: "UPDATE" | "DELETE", id: string, second?: number): OrderChange {
  const status = type === "UPDATE" ? "SHIPPED" : "CANCELLED";
  return { entity: "order", type, id, status, modifiedAt: second === undefined ? undefined : t(second) };
}
function orderUpdate(id: string, second?: number): OrderChange {
  return orderStatusChange("UPDATE", id, second);
}
function orderDelete(id: string, second?: number): OrderChange {
  return orderStatusChange("DELETE", id, second);
}

// ---- users ----------------------------------------------------------------------------------

Deno.test("a user UPDATE or DELETE of a row that does not exist is rejected with a reason naming the id", () => {
  const { patches, rejected } = planUserBatch([userUpdate(U1, "x", 1), userDelete(U2, 2)], new Set());
  assert.deepEqual(patches, []);
  assert.equal(rejected.length, 2);
  assert.equal(rejected[0].index, 0);
  assert.ok(rejected[0].reason.includes(U1), rejected[0].reason);
  assert.match(rejected[0].reason, /UPDATE/);
  assert.match(rejected[0].reason, /does not exist/);
  assert.equal(rejected[1].index, 1);
  assert.ok(rejected[1].reason.includes(U2), rejected[1].reason);
  assert.match(rejected[1].reason, /DELETE/);
});

Deno.test("CREATE, UPDATE and DELETE of one user in a batch fold into one patch with the final name, deleted and the last modified_at", () => {
  const { patches, rejected } = planUserBatch(
    [userCreate(U1, "First", 1), userUpdate(U1, "Second", 2), userUpdate(U1, "Final", 3), userDelete(U1, 4)],
    new Set(),
  );
  assert.deepEqual(rejected, []);
  assert.equal(patches.length, 1);
  const [patch] = patches;
  assert.equal(patch.id, U1);
  assert.deepEqual(patch.create, { name: "First", dob: "1990-01-01", createdAt: t(1) });
  assert.equal(patch.name ?? patch.create!.name, "Final", "the name written is the last one");
  assert.equal(patch.deleted, true);
  assert.equal(patch.modifiedAt, t(4));
});

Deno.test("an UPDATE without modified_at keeps the modified_at of the change before it", () => {
  const { patches } = planUserBatch([userUpdate(U1, "a", 5), userUpdate(U1, "b")], new Set([U1]));
  assert.equal(patches[0].modifiedAt, t(5));
  assert.equal(patches[0].name, "b");
});

Deno.test("changes to an existing user fold into a patch without a create", () => {
  const { patches, rejected } = planUserBatch([userUpdate(U1, "Renamed", 7)], new Set([U1]));
  assert.deepEqual(rejected, []);
  assert.deepEqual(patches, [{ id: U1, name: "Renamed", modifiedAt: t(7), deleted: false }]);
});

Deno.test("a DELETE of an existing user keeps its name and marks it deleted", () => {
  const { patches } = planUserBatch([userDelete(U1, 9)], new Set([U1]));
  assert.deepEqual(patches, [{ id: U1, modifiedAt: t(9), deleted: true }]);
});

Deno.test("an UPDATE before the CREATE of a new user in the same batch is rejected; the CREATE applies", () => {
  const { patches, rejected } = planUserBatch([userUpdate(U1, "early", 1), userCreate(U1, "Created", 2)], new Set());
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0].index, 0);
  assert.equal(patches.length, 1);
  assert.equal(patches[0].create!.name, "Created");
  assert.equal(patches[0].name, undefined);
});

Deno.test("a replayed CREATE after an UPDATE of the same existing user leaves the CREATE's name, as the log says", () => {
  const { patches } = planUserBatch([userUpdate(U1, "Updated", 3), userCreate(U1, "Created", 4)], new Set([U1]));
  assert.equal(patches.length, 1);
  assert.equal(patches[0].name ?? patches[0].create!.name, "Created");
});

Deno.test("user patches are sorted by id whatever the log order", () => {
  const { patches } = planUserBatch(
    [userCreate(U3, "c"), userCreate(U1, "a"), userUpdate(U2, "b", 1), userUpdate(U3, "c2", 2)],
    new Set([U2]),
  );
  assert.deepEqual(patches.map((p) => p.id), [U1, U2, U3]);
});

Deno.test("planning does not change the set of existing users passed in", () => {
  const existing = new Set([U2]);
  planUserBatch([userCreate(U1, "a")], existing);
  assert.deepEqual([...existing], [U2]);
});

Deno.test("rejections keep the batch index of each refused change among good ones", () => {
  const { patches, rejected } = planUserBatch(
    [userCreate(U1, "a"), userDelete(U3, 1), userUpdate(U1, "b", 2), userUpdate(U2, "x", 3)],
    new Set(),
  );
  assert.deepEqual(rejected.map((r) => r.index), [1, 3]);
  assert.ok(rejected[0].reason.includes(U3));
  assert.ok(rejected[1].reason.includes(U2));
  assert.equal(patches.length, 1);
  assert.equal(patches[0].name, "b");
});

// ---- orders ---------------------------------------------------------------------------------

Deno.test("an order UPDATE or DELETE of a row that does not exist is rejected with a reason naming the id", () => {
  const { patches, rejected, blocked } = planOrderBatch(
    [orderUpdate(O1, 1), orderDelete(O2, 2)],
    new Set(),
    new Set([U1]),
  );
  assert.deepEqual(patches, []);
  assert.equal(blocked, undefined);
  assert.deepEqual(rejected.map((r) => r.index), [0, 1]);
  assert.ok(rejected[0].reason.includes(O1) && /UPDATE/.test(rejected[0].reason), rejected[0].reason);
  assert.ok(rejected[1].reason.includes(O2) && /DELETE/.test(rejected[1].reason), rejected[1].reason);
});

Deno.test("an UPDATE of an order created earlier in the same batch is fine", () => {
  const { patches, rejected, blocked } = planOrderBatch(
    [orderCreate(O1, U1, 1), orderUpdate(O1, 2)],
    new Set(),
    new Set([U1]),
  );
  assert.deepEqual(rejected, []);
  assert.equal(blocked, undefined);
  assert.equal(patches.length, 1);
  assert.deepEqual(patches[0].create, { status: "PLACED", userId: U1, quantity: 2, total: "20.00", placedAt: t(1) });
  assert.equal(patches[0].status, "SHIPPED");
  assert.equal(patches[0].modifiedAt, t(2));
  assert.equal(patches[0].deleted, false);
});

Deno.test("CREATE, UPDATE and DELETE of one order fold into one CANCELLED, deleted patch with the last modified_at", () => {
  const { patches, rejected } = planOrderBatch(
    [orderCreate(O1, U1, 1), orderUpdate(O1, 2), orderDelete(O1, 3)],
    new Set(),
    new Set([U1]),
  );
  assert.deepEqual(rejected, []);
  assert.equal(patches.length, 1);
  assert.equal(patches[0].status, "CANCELLED");
  assert.equal(patches[0].deleted, true);
  assert.equal(patches[0].modifiedAt, t(3));
  assert.equal(patches[0].create!.status, "PLACED");
});

Deno.test("changes to an existing order fold into a patch without a create", () => {
  const { patches } = planOrderBatch([orderUpdate(O1, 4), orderDelete(O1)], new Set([O1]), new Set());
  assert.deepEqual(patches, [{ id: O1, status: "CANCELLED", modifiedAt: t(4), deleted: true }]);
});

Deno.test("planning stops at the first order CREATE whose user does not exist; nothing after it is planned or rejected", () => {
  const changes = [
    orderCreate(O1, U1, 1), // planned
    orderUpdate(O3, 2), // rejected: O3 does not exist
    orderCreate(O2, U2, 3), // blocked: U2 is not in existingUsers
    orderUpdate(O1, 4), // after the block: not planned
    orderDelete(O3, 5), // after the block: not rejected either
    orderCreate(O3, U1, 6), // after the block: not planned although its user exists
  ];
  const { patches, rejected, blocked } = planOrderBatch(changes, new Set(), new Set([U1]));
  assert.deepEqual(blocked, { index: 2, userId: U2 });
  assert.deepEqual(rejected.map((r) => r.index), [1]);
  assert.deepEqual(patches.map((p) => p.id), [O1]);
  assert.equal(patches[0].status, undefined, "the UPDATE after the block is not folded in");
  assert.equal(patches[0].modifiedAt, undefined);
});

Deno.test("a batch whose first change is a blocked CREATE plans nothing", () => {
  const { patches, rejected, blocked } = planOrderBatch(
    [orderCreate(O1, U2), orderUpdate(O1, 1)],
    new Set(),
    new Set([U1]),
  );
  assert.deepEqual(blocked, { index: 0, userId: U2 });
  assert.deepEqual(patches, []);
  assert.deepEqual(rejected, []);
});

Deno.test("UPDATE and DELETE of existing orders never wait for users", () => {
  const { blocked, patches } = planOrderBatch([orderUpdate(O1, 1), orderDelete(O2, 2)], new Set([O1, O2]), new Set());
  assert.equal(blocked, undefined);
  assert.equal(patches.length, 2);
});

Deno.test("order patches are sorted by id whatever the log order", () => {
  const { patches } = planOrderBatch(
    [orderCreate(O3, U1), orderUpdate(O2, 1), orderCreate(O1, U1)],
    new Set([O2]),
    new Set([U1]),
  );
  assert.deepEqual(patches.map((p) => p.id), [O1, O2, O3]);
});

Deno.test("planning does not change the set of existing orders passed in", () => {
  const existing = new Set([O2]);
  planOrderBatch([orderCreate(O1, U1)], existing, new Set([U1]));
  assert.deepEqual([...existing], [O2]);
});

// ---- the wire fixtures, folded --------------------------------------------------------------

function fixture(name: string): string[] {
  return Deno.readTextFileSync(new URL(`../fixtures/wire/${name}`, import.meta.url)).split("\n").filter((l) =>
    l.trim()
  );
}

Deno.test("array literals leave ids, timestamps and numbers bare and write missing values as NULL", () => {
  assert.equal(
    arrayLiteral([U1, null, undefined, "2025-07-03T10:11:00.000000Z", "12.50", "true"]),
    `{${U1},NULL,NULL,2025-07-03T10:11:00.000000Z,12.50,true}`,
  );
  assert.equal(arrayLiteral([]), "{}");
});

Deno.test("array literals quote what PostgreSQL would otherwise split, trim or read as NULL, and escape quotes and backslashes", () => {
  assert.equal(
    arrayLiteral(["Ann Lee", "", "null", "NULL", "a,b", "{x}", 'say "hi"', "back\\slash", " pad", "Zoë"]),
    '{"Ann Lee","","null","NULL","a,b","{x}","say \\"hi\\"","back\\\\slash"," pad",Zoë}',
  );
});

Deno.test("lists join ids, numbers and booleans by commas and leave missing values empty, which string_to_array reads as NULL", () => {
  assert.equal(
    listOf([U1, null, undefined, "2025-07-03T10:11:00.000000Z", 12, true]),
    `${U1},,,2025-07-03T10:11:00.000000Z,12,true`,
  );
  assert.equal(listOf([]), "");
});

Deno.test("the wire fixtures fold into the patches their README describes", () => {
  const users = fixture("users.jsonl").map((l) => parseUserEvent(l));
  const userPlan = planUserBatch(users, new Set());
  assert.deepEqual(userPlan.rejected, []);
  const renamed = userPlan.patches.find((p) => p.id.startsWith("8f14"))!;
  const deleted = userPlan.patches.find((p) => p.id.startsWith("c9f0"))!;
  assert.equal(renamed.name ?? renamed.create!.name, "qwjfd renamed");
  assert.equal(renamed.deleted, false);
  assert.equal(deleted.deleted, true);

  const orders = fixture("orders.jsonl").map((l) => parseOrderEvent(l));
  const orderPlan = planOrderBatch(orders, new Set(), new Set(users.map((u) => u.id)));
  assert.deepEqual(orderPlan.rejected, []);
  assert.equal(orderPlan.blocked, undefined);
  const cancelled = orderPlan.patches.find((p) => p.id.startsWith("45c4"))!;
  const placed = orderPlan.patches.find((p) => p.id.startsWith("d3d9"))!;
  assert.equal(cancelled.status, "CANCELLED");
  assert.equal(cancelled.deleted, true);
  assert.equal(cancelled.create!.total, "1234.57");
  assert.equal(placed.status ?? placed.create!.status, "PLACED");
  assert.equal(placed.create!.total, "3.14");
  // Its is_deleted comes from the database trigger (its user is deleted), not from the plan.
  assert.equal(placed.deleted, false);
});

Deno.test("postgres.js' write to a just-closed connection (a dropped socket, or EPIPE after the server's FIN) is recognised by its signature, and nothing else is", () => {
  const bug = new TypeError("Cannot read properties of null (reading 'write')");
  bug.stack = `${bug.message}\n    at nextWrite (file:///x/node_modules/postgres/src/connection.js:255:22)`;
  assert.ok(isClosedConnectionWrite(bug));
  const bunSpelling = new TypeError("null is not an object (evaluating 'socket.write')");
  bunSpelling.stack = `${bunSpelling.message}\n    at nextWrite (/x/node_modules/postgres/src/connection.js:255:15)`;
  assert.ok(isClosedConnectionWrite(bunSpelling));
  const elsewhere = new TypeError("Cannot read properties of null (reading 'write')");
  elsewhere.stack = `${elsewhere.message}\n    at flush (file:///app/lib/producer.ts:10:1)`;
  assert.equal(isClosedConnectionWrite(elsewhere), false);
  const afterFin = Object.assign(new Error("This socket has been ended by the other party"), { code: "EPIPE" });
  afterFin.stack = `Error: ${afterFin.message}\n    at writeAfterFIN (ext:deno_node/net.ts:1:1)\n` +
    `    at nextWrite (file:///x/node_modules/postgres/src/connection.js:255:22)`;
  assert.ok(isClosedConnectionWrite(afterFin));
  const kafkaAfterFin = Object.assign(new Error(afterFin.message), { code: "EPIPE" });
  kafkaAfterFin.stack =
    `Error: ${afterFin.message}\n    at sendRequest (file:///x/node_modules/kafkajs/src/network/connection.js:1:1)`;
  assert.equal(isClosedConnectionWrite(kafkaAfterFin), false);
  assert.equal(isClosedConnectionWrite(new Error("write failed")), false);
  assert.equal(isClosedConnectionWrite("nextWrite postgres write"), false);
});
