/**
 * Unit tests of the failure taxonomy and the retry loop (lib/retry.ts). Sleeps are injected,
 * so nothing here waits.
 * @module
 */
import assert from "node:assert/strict";
import {
  backoffDelay,
  classifyDatabaseError,
  describeError,
  isKafkaAuthError,
  isKafkaJSError,
  isKafkaOutage,
  retry,
  RetryError,
} from "../lib/retry.ts";

/** An error shaped like postgres.js's PostgresError or a socket error. */
function dbError(code: string, message = "boom"): Error {
  return Object.assign(new Error(message), { code });
}

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

// ---- classifyDatabaseError ------------------------------------------------------------------

Deno.test("data and integrity violations belong to the record", () => {
  for (const code of ["23505", "23503", "22001", "22003", "23502", "22P02", "22007"]) {
    assert.equal(classifyDatabaseError(dbError(code)), "record", code);
    assert.equal(classifyDatabaseError({ code }), "record", `${code} on a plain object`);
  }
});

Deno.test("serialization failures and deadlocks are transient", () => {
  assert.equal(classifyDatabaseError({ code: "40001" }), "transient");
  assert.equal(classifyDatabaseError({ code: "40P01" }), "transient");
  assert.equal(classifyDatabaseError(dbError("40P01")), "transient");
});

Deno.test("connection, resource, shutdown and read-only failures are outages", () => {
  for (const code of ["08006", "08001", "08P01", "53300", "53100", "57P01", "57P03", "25006"]) {
    assert.equal(classifyDatabaseError({ code }), "outage", code);
  }
});

Deno.test("socket errors are outages", () => {
  for (
    const code of [
      "ECONNREFUSED",
      "ECONNRESET",
      "ETIMEDOUT",
      "CONNECTION_CLOSED",
      "CONNECTION_ENDED",
      "CONNECT_TIMEOUT",
    ]
  ) {
    assert.equal(classifyDatabaseError(dbError(code)), "outage", code);
  }
});

Deno.test("a dropped table, a refused login, a missing database, an internal error and errors without an SQLSTATE are fatal", () => {
  for (const code of ["42P01", "42703", "42601", "28P01", "28000", "3D000", "XX000", "58030", "25001", "57014"]) {
    assert.equal(classifyDatabaseError({ code }), "fatal", code);
  }
  assert.equal(classifyDatabaseError(new Error("no code at all")), "fatal");
  assert.equal(classifyDatabaseError(new TypeError("x is undefined")), "fatal", "a bug of ours");
  assert.equal(classifyDatabaseError({}), "fatal");
  assert.equal(classifyDatabaseError(null), "fatal");
  assert.equal(classifyDatabaseError(undefined), "fatal");
  assert.equal(classifyDatabaseError("text"), "fatal");
  assert.equal(classifyDatabaseError({ code: 23505 }), "fatal", "a numeric code is not an SQLSTATE");
  assert.equal(classifyDatabaseError({ code: "UNDEFINED_VALUE" }), "fatal", "a postgres.js client error");
});

Deno.test("the classification never reads the message text", () => {
  assert.equal(classifyDatabaseError(dbError("08006", "duplicate key value violates unique constraint")), "outage");
  assert.equal(classifyDatabaseError(dbError("23505", "connection refused")), "record");
});

// ---- Kafka ----------------------------------------------------------------------------------

Deno.test("Kafka connection errors and retriable errors are outages", () => {
  assert.equal(isKafkaOutage({ name: "KafkaJSConnectionError" }), true);
  assert.equal(isKafkaOutage({ name: "KafkaJSRequestTimeoutError" }), true);
  assert.equal(isKafkaOutage({ name: "KafkaJSNumberOfRetriesExceeded" }), true);
  assert.equal(isKafkaOutage({ name: "KafkaJSError", retriable: true }), true);
  assert.equal(isKafkaOutage({ retriable: true }), true);
});

Deno.test("a Kafka outage wrapped as the cause of another error is still an outage", () => {
  assert.equal(
    isKafkaOutage({ name: "KafkaJSNonRetriableError", retriable: false, cause: { name: "KafkaJSConnectionError" } }),
    true,
  );
});

Deno.test("SASL authentication failures are not outages, even when marked retriable", () => {
  const sasl = { name: "KafkaJSSASLAuthenticationError", retriable: false };
  assert.equal(isKafkaOutage(sasl), false);
  assert.equal(isKafkaAuthError(sasl), true);
  assert.equal(isKafkaOutage({ name: "KafkaJSSASLAuthenticationError", retriable: true }), false);
  assert.equal(isKafkaOutage({ type: "SASL_AUTHENTICATION_FAILED", retriable: true }), false);
  assert.equal(isKafkaOutage({ type: "TOPIC_AUTHORIZATION_FAILED" }), false);
  // kafkajs wraps non-retriable errors in KafkaJSNonRetriableError with the SASL error as cause.
  assert.equal(isKafkaOutage({ name: "KafkaJSNonRetriableError", retriable: false, cause: sasl }), false);
});

Deno.test("other Kafka errors, and no error, are not outages", () => {
  assert.equal(
    isKafkaOutage({ name: "KafkaJSProtocolError", retriable: false, type: "INVALID_TOPIC_EXCEPTION" }),
    false,
  );
  assert.equal(isKafkaOutage(new TypeError("bug")), false);
  assert.equal(isKafkaOutage(null), false);
  assert.equal(isKafkaOutage(undefined), false);
});

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

Deno.test("retry stops waiting when keepGoing turns false during a wait", async () => {
  let stop = false;
  const delays: number[] = [];
  const sleep = (ms: number) => {
    delays.push(ms);
    if (delays.length === 2) stop = true; // shutdown requested during the second wait
    return Promise.resolve();
  };
  const { attempts, fn } = failing(Infinity);
  const error = await retry(fn, {
    what: "waiting for PostgreSQL",
    maxAttempts: Infinity,
    sleep,
    keepGoing: () => !stop,
  })
    .catch((e: unknown) => e);
  assert.ok(error instanceof RetryError);
  assert.match(error.message, /^waiting for PostgreSQL failed after 2 attempts/);
  assert.deepEqual(attempts, [1, 2]);
  assert.equal(delays.length, 2);
});

Deno.test("retry does not wait at all when keepGoing is already false after a failure", async () => {
  const { delays, sleep } = recordingSleep();
  const { attempts, fn } = failing(Infinity);
  await assert.rejects(retry(fn, { what: "x", sleep, keepGoing: () => false }), RetryError);
  assert.deepEqual(attempts, [1]);
  assert.deepEqual(delays, []);
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

// ---- describeError --------------------------------------------------------------------------

Deno.test("describeError gives the name, the code and the first message line", () => {
  assert.equal(describeError(dbError("23505", "duplicate key\nDETAIL: Key (id)=(x)")), "Error 23505: duplicate key");
  assert.equal(describeError(new TypeError("bad")), "TypeError: bad");
  assert.equal(describeError("plain text"), "plain text");
  const wrapped = Object.assign(new Error("retries exceeded"), { name: "KafkaJSNumberOfRetriesExceeded" });
  (wrapped as { cause?: unknown }).cause = Object.assign(new Error("Connection error: refused"), {
    name: "KafkaJSConnectionError",
  });
  assert.equal(
    describeError(wrapped),
    "KafkaJSNumberOfRetriesExceeded: retries exceeded: KafkaJSConnectionError: Connection error: refused",
  );
});

Deno.test("kafkajs' own errors are told apart from ours by their KafkaJS name", () => {
  assert.equal(isKafkaJSError({ name: "KafkaJSProtocolError", type: "REBALANCE_IN_PROGRESS" }), true);
  assert.equal(isKafkaJSError({ name: "KafkaJSConnectionError" }), true);
  assert.equal(isKafkaJSError(new Error("x")), false);
  assert.equal(isKafkaJSError({ name: "DeadLetterError" }), false);
  assert.equal(isKafkaJSError(null), false);
});
