/** The kafkajs fixes are in place where the client is created, on connections to a real broker. */
import assert from "node:assert/strict";
import RequestQueue from "kafkajs/src/network/requestQueue/index.js";
import { createKafka } from "../lib/kafka_admin.ts";
import { createLogger } from "../lib/log.ts";
import { loadProduceConfig } from "../lib/config.ts";
import { BROKERS } from "./_helpers.ts";

Deno.test("the connections of a client made by createKafka leave no pending-request timer after a real broker answers", async () => {
  const queues = new Set<InstanceType<typeof RequestQueue>>();
  const original = RequestQueue.prototype.fulfillRequest;
  RequestQueue.prototype.fulfillRequest = function (this: InstanceType<typeof RequestQueue>, response: unknown) {
    queues.add(this);
    return original.call(this, response);
  };
  const config = loadProduceConfig(["--brokers", BROKERS.join(",")], {});
  assert.ok(!config.help);
  const admin = createKafka(config.config, "fix-test", createLogger({ component: "test", write: () => {} })).admin();
  try {
    await admin.connect();
    await admin.listTopics();
    assert.ok(queues.size > 0, "kafkajs' connections use the RequestQueue class that was patched");
    for (const queue of queues) assert.equal(queue.throttleCheckTimeoutId, null);
  } finally {
    RequestQueue.prototype.fulfillRequest = original;
    await admin.disconnect();
  }
});
