/** Unit tests of the failure taxonomy (lib/errors.ts): what is a record's fault, an outage, fatal. */
import assert from "node:assert/strict";
import {
  classify,
  dependencyOf,
  describeError,
  isGroupMembershipLost,
  isKafkaAuthError,
  isKafkaJSError,
  PipelineError,
  TopicRecreatedError,
} from "../../lib/errors.ts";
import {
  CaptureError,
  isCaptureOutage,
  RecordTooLargeError,
  SlotInvalidatedError,
  SlotLostError,
  TopicMissingError,
} from "../../lib/capture_errors.ts";
import { RetryError } from "../../lib/retry.ts";

/** An error shaped like postgres.js's PostgresError or a socket error. */
function dbError(code: string, message = "boom"): Error {
  return Object.assign(new Error(message), { code });
}

// ---- classify: PostgreSQL failures ------------------------------------------------------------

Deno.test("data and integrity violations belong to the record", () => {
  for (const code of ["23505", "23503", "22001", "22003", "23502", "22P02", "22007"]) {
    assert.equal(classify(dbError(code)), "record", code);
    assert.equal(classify({ code }), "record", `${code} on a plain object`);
  }
});

Deno.test("serialization failures and deadlocks are transient", () => {
  assert.equal(classify({ code: "40001" }), "transient");
  assert.equal(classify({ code: "40P01" }), "transient");
  assert.equal(classify(dbError("40P01")), "transient");
});

Deno.test("a lock wait past lock_timeout and a transaction ended for idling are transient: the step is tried again", () => {
  assert.equal(classify(dbError("55P03", "canceling statement due to lock timeout")), "transient");
  assert.equal(
    classify(dbError("25P03", "terminating connection due to idle-in-transaction timeout")),
    "transient",
  );
  assert.equal(classify({ code: "25P02" }), "fatal", "other class 25 states stay fatal");
});

Deno.test("a heartbeat answered with a rebalance, an unknown member or an old generation means the membership is lost", () => {
  for (const type of ["REBALANCE_IN_PROGRESS", "UNKNOWN_MEMBER_ID", "ILLEGAL_GENERATION", "FENCED_INSTANCE_ID"]) {
    assert.equal(isGroupMembershipLost({ name: "KafkaJSProtocolError", type }), true, type);
  }
  for (const error of [{ name: "KafkaJSConnectionError" }, { type: "REQUEST_TIMED_OUT" }, null, new Error("x")]) {
    assert.equal(isGroupMembershipLost(error), false, JSON.stringify(error));
  }
});

Deno.test("connection, resource, shutdown and read-only failures are outages", () => {
  for (const code of ["08006", "08001", "08P01", "53300", "53100", "57P01", "57P03", "25006"]) {
    assert.equal(classify({ code }), "outage", code);
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
    assert.equal(classify(dbError(code)), "outage", code);
  }
});

Deno.test("a dropped table, a refused login, a missing database, an internal error and errors without an SQLSTATE are fatal", () => {
  for (const code of ["42P01", "42703", "42601", "28P01", "28000", "3D000", "XX000", "58030", "25001", "57014"]) {
    assert.equal(classify({ code }), "fatal", code);
  }
  assert.equal(classify(new Error("no code at all")), "fatal");
  assert.equal(classify(new TypeError("x is undefined")), "fatal", "a bug of ours");
  assert.equal(classify({}), "fatal");
  assert.equal(classify(null), "fatal");
  assert.equal(classify(undefined), "fatal");
  assert.equal(classify("text"), "fatal");
  assert.equal(classify({ code: 23505 }), "fatal", "a numeric code is not an SQLSTATE");
  assert.equal(classify({ code: "UNDEFINED_VALUE" }), "fatal", "a postgres.js client error");
});

Deno.test("the classification never reads the message text", () => {
  assert.equal(classify(dbError("08006", "duplicate key value violates unique constraint")), "outage");
  assert.equal(classify(dbError("23505", "connection refused")), "record");
});

// ---- Kafka ----------------------------------------------------------------------------------

Deno.test("Kafka connection errors and retriable errors are outages", () => {
  assert.equal(classify({ name: "KafkaJSConnectionError" }) === "outage", true);
  assert.equal(classify({ name: "KafkaJSRequestTimeoutError" }) === "outage", true);
  assert.equal(classify({ name: "KafkaJSNumberOfRetriesExceeded" }) === "outage", true);
  assert.equal(classify({ name: "KafkaJSError", retriable: true }) === "outage", true);
  assert.equal(classify({ retriable: true }) === "outage", true);
});

Deno.test("a Kafka outage wrapped as the cause of another error is still an outage", () => {
  assert.equal(
    classify({ name: "KafkaJSNonRetriableError", retriable: false, cause: { name: "KafkaJSConnectionError" } }) ===
      "outage",
    true,
  );
});

Deno.test("SASL authentication failures are not outages, even when marked retriable", () => {
  const sasl = { name: "KafkaJSSASLAuthenticationError", retriable: false };
  assert.equal(classify(sasl) === "outage", false);
  assert.equal(isKafkaAuthError(sasl), true);
  assert.equal(classify({ name: "KafkaJSSASLAuthenticationError", retriable: true }) === "outage", false);
  assert.equal(classify({ type: "SASL_AUTHENTICATION_FAILED", retriable: true }) === "outage", false);
  assert.equal(classify({ type: "TOPIC_AUTHORIZATION_FAILED" }) === "outage", false);
  // SASL settings against a plaintext listener: the broker refuses the handshake's state, at every attempt.
  assert.equal(isKafkaAuthError({ type: "ILLEGAL_SASL_STATE", retriable: false }), true);
  assert.equal(isKafkaAuthError({ type: "UNSUPPORTED_SASL_MECHANISM", retriable: false }), true);
  // kafkajs wraps non-retriable errors in KafkaJSNonRetriableError with the SASL error as cause.
  assert.equal(classify({ name: "KafkaJSNonRetriableError", retriable: false, cause: sasl }) === "outage", false);
});

Deno.test("other Kafka errors, and no error, are not outages", () => {
  assert.equal(
    classify({ name: "KafkaJSProtocolError", retriable: false, type: "INVALID_TOPIC_EXCEPTION" }) === "outage",
    false,
  );
  assert.equal(classify(new TypeError("bug")) === "outage", false);
  assert.equal(classify(null) === "outage", false);
  assert.equal(classify(undefined) === "outage", false);
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

Deno.test("a refused server certificate is described with what to check", () => {
  for (const code of ["SELF_SIGNED_CERT_IN_CHAIN", "UNABLE_TO_VERIFY_LEAF_SIGNATURE", "ERR_TLS_CERT_ALTNAME_INVALID"]) {
    assert.match(
      describeError(dbError(code, "bad cert")),
      new RegExp(`^Error ${code}: bad cert \\(the server's TLS certificate is not trusted: check the CA file`),
    );
  }
  assert.equal(describeError(dbError("ECONNREFUSED", "refused")), "Error ECONNREFUSED: refused");
});

Deno.test("classify decides PostgreSQL and Kafka failures alike, by code and Kafka error type", () => {
  assert.equal(classify({ code: "08006" }), "outage");
  assert.equal(classify({ code: "40P01" }), "transient");
  assert.equal(classify({ code: "23505" }), "record");
  assert.equal(classify({ code: "42P01" }), "fatal");
  assert.equal(classify({ name: "KafkaJSConnectionError" }), "outage");
  assert.equal(classify({ name: "KafkaJSProtocolError", type: "REBALANCE_IN_PROGRESS" }), "transient");
  assert.equal(classify({ name: "KafkaJSProtocolError", type: "MESSAGE_TOO_LARGE" }), "record");
  assert.equal(classify({ name: "KafkaJSSASLAuthenticationError", retriable: true }), "fatal");
  assert.equal(
    classify({ name: "KafkaJSProtocolError", type: "UNKNOWN_TOPIC_OR_PARTITION", retriable: false }),
    "fatal",
  );
  assert.equal(classify(new RetryError("x", 3, { name: "KafkaJSConnectionError" })), "outage", "by its cause");
  assert.equal(dependencyOf({ name: "KafkaJSConnectionError" }), "kafka");
  assert.equal(dependencyOf({ code: "ECONNREFUSED" }), "database");
});

Deno.test("typed stops carry their fields and their subclass's name on one base class", () => {
  const recreated = new TopicRecreatedError("orders", 2, 40n, 7n);
  assert.ok(recreated instanceof PipelineError);
  assert.equal(recreated.name, "TopicRecreatedError");
  assert.deepEqual([recreated.topic, recreated.partition, recreated.offset, recreated.logEnd], ["orders", 2, 40n, 7n]);
  assert.match(recreated.message, /^orders:2 is stored in PostgreSQL at offset 40 but the log ends at 7: .*--rebuild/);
  const retry = new RetryError("sending", 3, new Error("down"));
  assert.ok(retry instanceof PipelineError);
  assert.equal(retry.name, "RetryError");
  assert.equal(retry.attempts, 3);
});

Deno.test("the capture's typed stops are PipelineErrors with their fields, and classify waits out none of them", () => {
  const lost = new SlotLostError("cdc_slot");
  assert.ok(lost instanceof CaptureError && lost instanceof PipelineError);
  assert.equal(lost.name, "SlotLostError");
  assert.equal(lost.slot, "cdc_slot");
  const tooLarge = new RecordTooLargeError("public.users", "7", 2_000_000, 1_048_588);
  assert.deepEqual([tooLarge.table, tooLarge.key, tooLarge.size, tooLarge.limit], [
    "public.users",
    "7",
    2_000_000,
    1_048_588,
  ]);
  const missing = new TopicMissingError("cdc.public.users");
  assert.equal(missing.topic, "cdc.public.users");
  for (const stop of [lost, tooLarge, missing]) assert.equal(classify(stop), "fatal", stop.name);
});

Deno.test("an invalidated slot's line says what may be lost since its confirmed position, names --new-snapshot and the setting with its value", () => {
  const walRemoved = new SlotInvalidatedError("cdc_slot", "wal_removed", "0/8B44A1E8", {
    name: "max_slot_wal_keep_size",
    value: "1MB",
  });
  assert.equal(
    walRemoved.message,
    "slot cdc_slot was invalidated by PostgreSQL (wal_removed, max_slot_wal_keep_size = 1MB): changes made since " +
      "its confirmed position 0/8B44A1E8 may be lost; run with --new-snapshot to replace it and publish every row " +
      "anew, and raise max_slot_wal_keep_size so that it does not happen again",
  );
  const noSetting = new SlotInvalidatedError("cdc_slot", "rows_removed", null);
  assert.match(
    noSetting.message,
    /\(rows_removed\): changes made since its confirmed position \(unknown\) may be lost/,
  );
  assert.doesNotMatch(noSetting.message, /raise/, "no setting to raise is named when PostgreSQL gives none");
  for (const stop of [walRemoved, noSetting]) {
    assert.ok(stop instanceof CaptureError && !stop.message.includes("\n"));
    assert.equal(isCaptureOutage(stop), false, "waiting would never bring the slot back");
  }
});
