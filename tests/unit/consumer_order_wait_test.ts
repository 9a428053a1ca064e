/** The order-waits-for-its-user policy, with an injected clock and positions. */
import assert from "node:assert/strict";
import { OrderWaits, type UsersPositions } from "../../lib/consumer_order_wait.ts";

/** A policy whose clock, users log ends and applied positions the test sets. */
function policy(waitS: number) {
  const state = {
    nowMs: 1_000_000,
    ends: new Map([[0, 10n], [1, 5n]]) as UsersPositions,
    applied: new Map([[0, 10n], [1, 5n]]) as UsersPositions,
    kafkaDown: false,
  };
  const waits = new OrderWaits({
    waitS,
    now: () => state.nowMs,
    random: () => 0.5,
    usersLogEnds: () => state.kafkaDown ? Promise.reject(new Error("broker down")) : Promise.resolve(state.ends),
    usersApplied: () => Promise.resolve(state.applied),
  });
  return { waits, state };
}

Deno.test("an order whose users topic has caught up expires exactly when --order-wait seconds have passed", async () => {
  const { waits, state } = policy(30);
  const first = await waits.decide("orders:0", "7");
  assert.equal(first.expired, false);
  assert.equal(first.deadlineCounting, true);
  state.nowMs += 29_999;
  assert.equal((await waits.decide("orders:0", "7")).expired, false);
  state.nowMs += 1;
  assert.equal((await waits.decide("orders:0", "7")).expired, true);
});

Deno.test("the deadline does not start while the group has not applied every user that was in the users topic", async () => {
  const { waits, state } = policy(30);
  state.applied = new Map([[0, 10n], [1, 3n]]);
  const first = await waits.decide("orders:0", "7");
  assert.equal(first.deadlineCounting, false);
  state.nowMs += 3_600_000;
  const later = await waits.decide("orders:0", "7");
  assert.equal(later.expired, false, "an hour behind is still not the order's fault");
  // Users that arrive after the order blocked do not move the goal: the ends are those at the first block.
  state.ends = new Map([[0, 50n], [1, 50n]]);
  state.applied = new Map([[0, 10n], [1, 5n]]);
  const caughtUp = await waits.decide("orders:0", "7");
  assert.equal(caughtUp.deadlineCounting, true);
  state.nowMs += 30_000;
  assert.equal((await waits.decide("orders:0", "7")).expired, true);
});

Deno.test("while Kafka cannot say where the users topic ends, the deadline does not start", async () => {
  const { waits, state } = policy(0);
  state.kafkaDown = true;
  const decision = await waits.decide("orders:0", "7");
  assert.equal(decision.expired, false);
  assert.equal(decision.deadlineCounting, false);
  state.kafkaDown = false;
  assert.equal((await waits.decide("orders:0", "7")).expired, true, "--order-wait 0 expires once caught up");
});

Deno.test("retries back off from 200 ms, doubling to at most 5 s, and wake just after the deadline", async () => {
  const { waits, state } = policy(3600);
  state.applied = new Map();
  const delays = [];
  for (let i = 0; i < 8; i++) delays.push((await waits.decide("orders:1", "4")).retryInMs);
  assert.deepEqual(delays, [150, 300, 600, 1200, 2400, 3750, 3750, 3750]);
  const { waits: soon, state: s2 } = policy(1);
  await soon.decide("orders:1", "4");
  s2.nowMs += 900;
  assert.equal((await soon.decide("orders:1", "4")).retryInMs, 110, "100 ms left, plus 10");
});

Deno.test("a new order in the partition, a forgotten wait, or a partition moved away starts the count afresh", async () => {
  const { waits, state } = policy(30);
  await waits.decide("orders:0", "7");
  await waits.decide("orders:2", "9");
  assert.equal(waits.size, 2);
  state.nowMs += 20_000;
  assert.equal((await waits.decide("orders:0", "8")).attempt, 1, "another offset is another order");
  state.nowMs += 29_000;
  assert.equal((await waits.decide("orders:0", "8")).expired, false, "its 30 s count from its own first block");
  state.nowMs += 1_000;
  assert.equal((await waits.decide("orders:0", "8")).expired, true);
  waits.forget("orders:0");
  assert.equal(waits.size, 1);
  waits.keepOnly(new Set(["orders:0"]));
  assert.equal(waits.size, 0);
});
