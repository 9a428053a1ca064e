/** The consumer's PostgreSQL session settings, derived from its configuration. */
import assert from "node:assert/strict";
import { consumerSessionParameters } from "../../lib/consumer.ts";

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
