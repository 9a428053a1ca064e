/** The consumer's PostgreSQL session settings, derived from its configuration. */
import assert from "node:assert/strict";
import { consumerSessionParameters } from "../../lib/consumer.ts";
import { UnansweredError } from "../../lib/consumer_batch.ts";
import { classify } from "../../lib/errors.ts";

Deno.test("the consumer's sessions end a transaction idle for the session timeout and give up a lock wait after a third of it", () => {
  assert.deepEqual(consumerSessionParameters({ sessionTimeoutS: 30 }), {
    idle_in_transaction_session_timeout: "30000",
    lock_timeout: "10000",
  });
  assert.deepEqual(consumerSessionParameters({ sessionTimeoutS: 10 }), {
    idle_in_transaction_session_timeout: "10000",
    lock_timeout: "3333",
  });
});

Deno.test("work PostgreSQL never answered is an outage of PostgreSQL, waited out, naming what it was", () => {
  const error = new UnansweredError("the transaction of orders:3 at offset 120", 60_000);
  assert.equal(classify(error), "outage");
  assert.match(error.message, /orders:3 at offset 120 got no answer from PostgreSQL in 60 s/);
});
