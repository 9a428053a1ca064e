import assert from "node:assert/strict";
import { type ConsumeConfig, loadConsumeConfig } from "../../lib/config.ts";
import { ConsumerGroup, type ConsumerGroupDeps } from "../../lib/consumer_group.ts";
import { createKafka } from "../../lib/kafka_admin.ts";
import { createLogger } from "../../lib/log.ts";
import { newConsumeStats } from "../../lib/stats.ts";

/** A group member that was never started, as kafkajs leaves one once it has stopped: no consumer group inside. */
function unstartedMember(signal: AbortSignal): ConsumerGroup {
  const parsed = loadConsumeConfig([], {});
  if (parsed.help) throw new Error("loadConsumeConfig asked for help");
  const config: ConsumeConfig = parsed.config;
  const logger = createLogger({ component: "test", level: "error" });
  const deps = { config, kafka: createKafka(config, "consumer-group-test", logger), logger, signal };
  return new ConsumerGroup({ ...deps, stats: newConsumeStats(), fail: () => {} } as unknown as ConsumerGroupDeps);
}

Deno.test("a seek while kafkajs has no consumer group (the run stopping, or kafkajs restarting after a crash) is skipped, where kafkajs itself throws", () => {
  const stopping = new AbortController();
  stopping.abort();
  unstartedMember(stopping.signal).seek("t", 0, 5n);
  const restarting = unstartedMember(new AbortController().signal);
  restarting.seek("t", 0, 5n);
  // The same seek made on kafkajs' consumer is refused: the skip is what keeps the run going (or at exit 0).
  assert.throws(
    () => restarting.consumer.seek({ topic: "t", partition: 0, offset: "5" }),
    /Consumer group was not initialized/,
  );
});
