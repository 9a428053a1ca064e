/**
 * Unit tests of the listener check (lib/kafka_listener.ts) with an injected clock: connections
 * closed unanswered for 30 s stop a wait with one line; a restarting broker, an answer or a refused
 * connection ends the run of closes, so an outage is still waited out.
 */
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { classify, describeError, isKafkaAuthError } from "../../lib/errors.ts";
import { isClosedConnection, KafkaListenerError, SILENT_CLOSES_MS, SilentCloses } from "../../lib/kafka_listener.ts";
import { OUTAGE, retry, waitOut } from "../../lib/retry.ts";

/** kafkajs' error for a connection the broker closed, as kafkajs shapes it. */
function closed(): Error {
  return Object.assign(new Error("Closed connection"), { name: "KafkaJSConnectionClosedError", retriable: true });
}

/** kafkajs' error for a socket failure with `code`. */
function connectionError(code: string): Error {
  return Object.assign(new Error(`Connection error: ${code}`), {
    name: "KafkaJSConnectionError",
    code,
    retriable: true,
  });
}

/** A tracker for localhost:9094 whose clock reads `clock.ms`. */
function tracker() {
  const clock = { ms: 1_000_000 };
  return { clock, closes: new SilentCloses(["localhost:9094"], () => clock.ms) };
}

/** Feeds `closes` a close at each of `seconds` (from the clock's start); returns what the last one gave back. */
function closesAt(t: ReturnType<typeof tracker>, seconds: number[]): unknown {
  let thrown: unknown;
  for (const s of seconds) {
    t.clock.ms = 1_000_000 + s * 1000;
    thrown = t.closes.failed(closed());
  }
  return thrown;
}

Deno.test("closes with no answer are waited out for 29 s and stop the wait at 30 s with one line naming KAFKA_SASL_* and KAFKA_TLS", () => {
  const t = tracker();
  const last = closed();
  for (const s of [0, 1, 5, 15, 29.999]) {
    t.clock.ms = 1_000_000 + s * 1000;
    const error = s === 29.999 ? last : closed();
    assert.equal(t.closes.failed(error), error, `at ${s} s the close itself is thrown`);
  }
  t.clock.ms = 1_000_000 + SILENT_CLOSES_MS;
  const stop = t.closes.failed(last);
  assert.ok(stop instanceof KafkaListenerError, String(stop));
  assert.equal(stop.name, "KafkaListenerError");
  assert.equal(stop.cause, last);
  assert.doesNotMatch(stop.message, /\n/);
  assert.match(
    describeError(stop),
    /^KafkaListenerError: Kafka at localhost:9094 accepted the connection and closed it unanswered at 6 attempts over 30 s: likely a SASL or TLS listener; set KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD, or KAFKA_TLS=true/,
  );
  assert.equal(classify(stop), "fatal", "no wait retries it");
  assert.equal(isKafkaAuthError(stop), true, "the producer's budget does not retry it");
});

Deno.test("a restarting broker is waited out: closes, then a refused connection, then closes again never add up to 30 s", () => {
  const t = tracker();
  closesAt(t, [0, 5, 10, 20]);
  t.clock.ms = 1_000_000 + 25_000;
  const refused = connectionError("ECONNREFUSED");
  assert.equal(t.closes.failed(refused), refused);
  assert.ok(!(closesAt(t, [26, 35, 45, 55.9]) instanceof KafkaListenerError), "the run began again at 26 s");
  assert.ok(closesAt(t, [56]) instanceof KafkaListenerError, "30 s of closes since 26 s");
});

Deno.test("a timeout or any failure other than a close ends the run of closes", () => {
  const t = tracker();
  closesAt(t, [0, 10, 20]);
  t.clock.ms = 1_000_000 + 25_000;
  t.closes.failed(Object.assign(new Error("Request Metadata timed out"), { name: "KafkaJSRequestTimeoutError" }));
  assert.ok(!(closesAt(t, [30, 40, 54]) instanceof KafkaListenerError));
});

Deno.test("an answer ends the run, and the close just after it is a broker going down, which starts none", () => {
  const t = tracker();
  closesAt(t, [0, 10, 20]);
  t.closes.answered();
  assert.ok(!(closesAt(t, [21, 22, 51.5]) instanceof KafkaListenerError), "the close at 21 s followed an answer");
  assert.ok(closesAt(t, [52]) instanceof KafkaListenerError, "30 s of closes since 22 s");
});

Deno.test("answers to ApiVersions and SaslHandshake, which a SASL listener gives before authentication, do not end the run; a Metadata answer does", () => {
  const t = tracker();
  const client = Object.assign(new EventEmitter(), { events: { REQUEST: "admin.network.request" } });
  t.closes.hear(client);
  const answer = (apiName: string) => client.emit("admin.network.request", { payload: { apiName } });
  closesAt(t, [0, 10]);
  answer("ApiVersions");
  answer("SaslHandshake");
  assert.ok(closesAt(t, [20, 30]) instanceof KafkaListenerError);
  answer("Metadata");
  assert.ok(!(closesAt(t, [31, 32, 61]) instanceof KafkaListenerError));
});

Deno.test("a close behind kafkajs' retries and a reset connection count as closes; refused, timed out and other errors do not", () => {
  const retried = Object.assign(new Error("Closed connection"), {
    name: "KafkaJSNumberOfRetriesExceeded",
    cause: closed(),
  });
  assert.equal(isClosedConnection(closed()), true);
  assert.equal(isClosedConnection(retried), true);
  assert.equal(isClosedConnection(connectionError("ECONNRESET")), true);
  for (const error of [connectionError("ECONNREFUSED"), connectionError("ETIMEDOUT"), new Error("x"), null, "closed"]) {
    assert.equal(isClosedConnection(error), false, String(error));
  }
});

Deno.test("a wait's budget spent on closes alone names the listener; with a refused connection among them the last close is thrown", async () => {
  const t = tracker();
  const attempt = t.closes.judged(() => Promise.reject(closed()), 3);
  await assert.rejects(attempt(1), { name: "KafkaJSConnectionClosedError" });
  await assert.rejects(attempt(2), { name: "KafkaJSConnectionClosedError" });
  await assert.rejects(attempt(3), (error: Error) => {
    assert.ok(error instanceof KafkaListenerError);
    assert.match(error.message, /at 3 attempts over 0 s/);
    return true;
  });
  const other = tracker();
  const failures = [closed(), connectionError("ECONNREFUSED"), closed()];
  const mixed = other.closes.judged(() => Promise.reject(failures.shift()), 3);
  await assert.rejects(retry(mixed, { what: "x", maxAttempts: 3, sleep: () => Promise.resolve() }), (error: Error) => {
    assert.match(error.message, /failed after 3 attempts: KafkaJSConnectionClosedError/);
    return true;
  });
});

Deno.test("an outage wait judged by the tracker stops with the listener error once 30 s of closes passed, and goes on after an answer", async () => {
  const t = tracker();
  let calls = 0;
  const attempt = () => {
    calls++;
    t.clock.ms += 7_000;
    return Promise.reject(closed());
  };
  const stopped = waitOut(t.closes.judged(attempt), {
    what: "Kafka",
    policy: { ...OUTAGE, baseMs: 1, capMs: 1 },
    isRetriable: (error) => classify(error) === "outage",
  });
  await assert.rejects(stopped, KafkaListenerError);
  assert.equal(calls, 6, "the closes at 7, 14, 21, 28 and 35 s are waited out, the one at 42 s stops");

  const answered = tracker();
  let tries = 0;
  const recovering = () => {
    answered.clock.ms += 7_000;
    if (++tries % 3 === 0) answered.closes.answered(); // a broker that answers now and then is no listener to blame
    return tries < 20 ? Promise.reject(closed()) : Promise.resolve("up");
  };
  const result = await waitOut(answered.closes.judged(recovering), {
    what: "Kafka",
    policy: { ...OUTAGE, baseMs: 1, capMs: 1 },
    isRetriable: (error) => classify(error) === "outage",
  });
  assert.equal(result, "up");
});
