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

Deno.test("a seek once the run is stopping is skipped, where kafkajs' stopped consumer throws (a rebalance during SIGTERM)", () => {
  const stopping = new AbortController();
  stopping.abort();
  unstartedMember(stopping.signal).seek("t", 0, 5n);
  // Without the stop, the same seek reaches kafkajs, which refuses it: the skip is what keeps a stopping run at exit 0.
  assert.throws(
    () => unstartedMember(new AbortController().signal).seek("t", 0, 5n),
    /Consumer group was not initialized/,
  );
});
