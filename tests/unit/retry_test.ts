/** Unit tests of the retry loop (lib/retry.ts). Sleeps are injected, so nothing here waits long. */
import assert from "node:assert/strict";
import {
  backoffDelay,
  FIRST_ATTEMPT_GRACE_MS,
  OUTAGE,
  retry,
  RetryError,
  sleep,
  waitOut,
  withinDeadline,
} from "../../lib/retry.ts";

/** A sleep that records the delays asked for and resolves at once. */
function recordingSleep(): { delays: number[]; sleep: (ms: number) => Promise<void> } {
  const delays: number[] = [];
  return { delays, sleep: (ms: number) => (delays.push(ms), Promise.resolve()) };
}

/** A function failing `failures` times with `error`, then returning "done". */
function failing(failures: number, error: unknown = new Error("not yet")) {
  const attempts: number[] = [];
  return {
    attempts,
    fn: (attempt: number) => {
      attempts.push(attempt);
      return attempts.length <= failures ? Promise.reject(error) : Promise.resolve("done");
    },
  };
}

// ---- backoffDelay ---------------------------------------------------------------------------

Deno.test("backoffDelay stays within [step/2, step] of a doubling step", () => {
  for (let attempt = 1; attempt <= 6; attempt++) {
    const step = 100 * 2 ** (attempt - 1);
    for (const r of [0, 0.25, 0.5, 0.999999]) {
      const delay = backoffDelay(attempt, 100, 1_000_000, () => r);
      assert.ok(
        delay >= step / 2 && delay <= step,
        `attempt ${attempt} r ${r}: ${delay} not in [${step / 2}, ${step}]`,
      );
    }
    assert.equal(backoffDelay(attempt, 100, 1_000_000, () => 0), step / 2);
  }
});

Deno.test("backoffDelay with the default random source stays within bounds", () => {
  for (let i = 0; i < 1000; i++) {
    const delay = backoffDelay(3, 250, 10_000);
    assert.ok(delay >= 500 && delay <= 1000, String(delay));
  }
});

Deno.test("backoffDelay is capped, however many attempts failed", () => {
  for (const attempt of [10, 20, 100, 2000]) {
    const delay = backoffDelay(attempt, 250, 10_000, () => 0.999999);
    assert.ok(delay >= 5_000 && delay <= 10_000, `attempt ${attempt}: ${delay}`);
    assert.ok(Number.isFinite(delay));
  }
  assert.equal(backoffDelay(50, 250, 10_000, () => 0), 5_000);
});

Deno.test("backoffDelay treats attempt 0 like attempt 1", () => {
  assert.equal(backoffDelay(0, 200, 10_000, () => 0), 100);
});

// ---- retry ----------------------------------------------------------------------------------

Deno.test("retry succeeds after N failures, waiting the backoff delay between attempts", async () => {
  const { delays, sleep } = recordingSleep();
  const { attempts, fn } = failing(3);
  const result = await retry(fn, { what: "sending to users", baseMs: 100, capMs: 10_000, random: () => 0, sleep });
  assert.equal(result, "done");
  assert.deepEqual(attempts, [1, 2, 3, 4]);
  assert.deepEqual(delays, [50, 100, 200]);
});

Deno.test("retry calls onRetry with the error, the failed attempt and the delay", async () => {
  const { delays, sleep } = recordingSleep();
  const error = new Error("flaky");
  const seen: [unknown, number, number][] = [];
  await retry(failing(2, error).fn, {
    what: "x",
    baseMs: 10,
    random: () => 0.5,
    sleep,
    onRetry: (e, attempt, delay) => seen.push([e, attempt, delay]),
  });
  assert.deepEqual(seen, [[error, 1, delays[0]], [error, 2, delays[1]]]);
  assert.deepEqual(delays, [8, 15]);
});

Deno.test("retry gives up after maxAttempts with a RetryError naming what, the attempts and the cause", async () => {
  const { delays, sleep } = recordingSleep();
  const cause = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9092"), { code: "ECONNREFUSED" });
  const { attempts, fn } = failing(Infinity, cause);
  const error = await retry(fn, { what: "sending to users", maxAttempts: 4, sleep }).then(
    () => assert.fail("retry should have failed"),
    (e: unknown) => e,
  );
  assert.ok(error instanceof RetryError);
  assert.equal(error.name, "RetryError");
  assert.match(error.message, /^sending to users failed after 4 attempts: /);
  assert.match(error.message, /ECONNREFUSED/);
  assert.equal(error.cause, cause);
  assert.deepEqual(attempts, [1, 2, 3, 4]);
  assert.equal(delays.length, 3, "no wait after the last attempt");
});

Deno.test("retry with maxAttempts 1 tries once and never sleeps", async () => {
  const { delays, sleep } = recordingSleep();
  const { attempts, fn } = failing(1);
  await assert.rejects(retry(fn, { what: "once", maxAttempts: 1, sleep }), /once failed after 1 attempts/);
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(delays, []);
});

Deno.test("retry refuses a maxAttempts below 1", async () => {
  await assert.rejects(retry(() => Promise.resolve(1), { what: "x", maxAttempts: 0 }), RangeError);
  await assert.rejects(retry(() => Promise.resolve(1), { what: "x", maxAttempts: Number.NaN }), RangeError);
});

Deno.test("retry does not retry an error that is not retriable, and throws it as is", async () => {
  const { delays, sleep } = recordingSleep();
  const fatal = new Error("authentication failed");
  const { attempts, fn } = failing(Infinity, fatal);
  const error = await retry(fn, { what: "x", sleep, isRetriable: (e) => e !== fatal }).catch((e: unknown) => e);
  assert.equal(error, fatal);
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(delays, []);
});

Deno.test("retry retries retriable errors and stops at the first one that is not", async () => {
  const { delays, sleep } = recordingSleep();
  const fatal = new Error("fatal");
  let calls = 0;
  const fn = () => Promise.reject(++calls < 3 ? new Error("transient") : fatal);
  const error = await retry(fn, { what: "x", sleep, isRetriable: (e) => e !== fatal }).catch((e: unknown) => e);
  assert.equal(error, fatal);
  assert.equal(calls, 3);
  assert.equal(delays.length, 2);
});

Deno.test("retry stops waiting when its signal aborts during a wait", async () => {
  const shutdown = new AbortController();
  const delays: number[] = [];
  const sleep = (ms: number) => {
    delays.push(ms);
    if (delays.length === 2) shutdown.abort(); // shutdown requested during the second wait
    return Promise.resolve();
  };
  const { attempts, fn } = failing(Infinity);
  const error = await retry(fn, {
    what: "waiting for PostgreSQL",
    maxAttempts: Infinity,
    sleep,
    signal: shutdown.signal,
  })
    .catch((e: unknown) => e);
  assert.ok(error instanceof RetryError);
  assert.match(error.message, /^waiting for PostgreSQL failed after 2 attempts/);
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(delays.length, 2);
});

Deno.test("retry does not wait at all when its signal has already aborted after a failure", async () => {
  const { delays, sleep } = recordingSleep();
  const { attempts, fn } = failing(Infinity);
  await assert.rejects(retry(fn, { what: "x", sleep, signal: AbortSignal.abort() }), RetryError);
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(delays, []);
});

Deno.test("sleep ends with false as soon as its signal aborts, and at once when it already has", async () => {
  const shutdown = new AbortController();
  const started = performance.now();
  const waiting = sleep(60_000, shutdown.signal);
  shutdown.abort();
  assert.equal(await waiting, false);
  assert.equal(await sleep(60_000, shutdown.signal), false);
  assert.ok(performance.now() - started < 1_000);
});

Deno.test("sleep ends with true once its time has passed", async () => {
  assert.equal(await sleep(1, new AbortController().signal), true);
});

Deno.test("waitOut waits as its policy says, and only while the failure is retriable", async () => {
  const attempts: number[] = [];
  const waits: number[] = [];
  const result = await waitOut((attempt) => {
    attempts.push(attempt);
    return attempt < 3 ? Promise.reject(new Error("away")) : Promise.resolve("up");
  }, {
    what: "x",
    policy: { baseMs: 1, capMs: 2, maxAttempts: Infinity },
    isRetriable: () => true,
    onWait: (_error, _attempt, delayMs) => waits.push(delayMs),
  });
  assert.equal(result, "up");
  assert.deepEqual(attempts, [1, 2, 3]);
  assert.ok(waits.every((ms) => ms >= 0 && ms <= 2));
  await assert.rejects(
    waitOut(() => Promise.reject(new TypeError("bug")), { what: "x", policy: OUTAGE, isRetriable: () => false }),
    TypeError,
  );
});

Deno.test("waitOut ends with a RetryError once its signal aborts", async () => {
  const shutdown = new AbortController();
  const waiting = waitOut(() => Promise.reject(new Error("away")), {
    what: "PostgreSQL",
    policy: OUTAGE,
    isRetriable: () => true,
    signal: shutdown.signal,
    onWait: () => shutdown.abort(),
  });
  await assert.rejects(waiting, RetryError);
});

Deno.test("retry returns the first success without sleeping", async () => {
  const { delays, sleep } = recordingSleep();
  assert.equal(await retry(() => Promise.resolve(42), { what: "x", sleep }), 42);
  assert.deepEqual(delays, []);
});

Deno.test("retry caps each wait at capMs", async () => {
  const { delays, sleep } = recordingSleep();
  await retry(failing(6).fn, { what: "x", baseMs: 100, capMs: 400, random: () => 0.999999, sleep });
  assert.deepEqual(delays, [100, 200, 400, 400, 400, 400]);
});

Deno.test("where allowed, a stop abandons at once an attempt that hangs while waiting out a failure, with the last failure as the cause", async () => {
  const stop = new AbortController();
  const hung = Promise.withResolvers<string>();
  const secondStarted = Promise.withResolvers<void>();
  const outage = new Error("ECONNREFUSED");
  const retrying = retry((attempt) => {
    if (attempt === 1) return Promise.reject(outage);
    secondStarted.resolve();
    return hung.promise;
  }, {
    what: "reading offsets",
    maxAttempts: Infinity,
    signal: stop.signal,
    sleep: () => Promise.resolve(),
    firstAttemptGraceMs: FIRST_ATTEMPT_GRACE_MS,
  });
  await secondStarted.promise;
  stop.abort();
  await assert.rejects(retrying, (e) => e instanceof RetryError && e.cause === outage && e.attempts === 2);
  hung.reject(new Error("failed after the stop")); // dropped: no unhandled rejection fails the test
});

Deno.test("a stop abandons a first attempt that hangs once the grace its caller gives the work in hand has passed", async () => {
  const stop = new AbortController();
  const hung = Promise.withResolvers<string>();
  const retrying = retry(() => hung.promise, {
    what: "reading offsets",
    signal: stop.signal,
    firstAttemptGraceMs: FIRST_ATTEMPT_GRACE_MS,
  });
  const stopped = performance.now();
  stop.abort();
  await assert.rejects(retrying, (e) => e instanceof RetryError && e.attempts === 1);
  assert.ok(performance.now() - stopped >= FIRST_ATTEMPT_GRACE_MS - 5, "not before the grace");
  hung.reject(new Error("failed after the stop")); // dropped: no unhandled rejection fails the test
});

Deno.test("without a grace, a stop lets any attempt in flight finish (a capture's stream after an outage publishes what is in hand)", async () => {
  const stop = new AbortController();
  const streaming = Promise.withResolvers<string>();
  const secondStarted = Promise.withResolvers<void>();
  const retrying = retry((attempt) => {
    if (attempt === 1) return Promise.reject(new Error("ECONNREFUSED"));
    secondStarted.resolve();
    return streaming.promise;
  }, { what: "streaming", maxAttempts: Infinity, signal: stop.signal, sleep: () => Promise.resolve() });
  await secondStarted.promise;
  stop.abort();
  streaming.resolve("acknowledged");
  assert.equal(await retrying, "acknowledged");
});

Deno.test("a stop lets the first attempt, the work in hand, finish, however long it takes, unless a grace is given", async () => {
  const stop = new AbortController();
  const inHand = Promise.withResolvers<string>();
  const retrying = retry(() => inHand.promise, { what: "applying a batch", signal: stop.signal });
  stop.abort();
  inHand.resolve("applied");
  assert.equal(await retrying, "applied");
});

Deno.test("withinDeadline gives the work's result in time, late()'s value after, and a late failure stays unobserved", async () => {
  assert.equal(await withinDeadline(Promise.resolve("done"), 1_000, () => "late"), "done");
  let reject: (error: Error) => void = () => {};
  const lost = new Promise<string>((_, r) => (reject = r));
  assert.equal(await withinDeadline(lost, 10, () => "late"), "late");
  reject(new Error("settled after the deadline")); // an unhandled rejection here would fail the test
  await new Promise((resolve) => setTimeout(resolve, 10));
});
