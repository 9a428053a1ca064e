/**
 * How kafkajs' log lines map to ours (lib/kafka_admin.ts' kafkaLogLevel): a new cluster's
 * coordinator still starting is expected until a group of the client has joined, and nothing
 * else is hidden; the last test joins a group on the running Kafka.
 * @module
 */
import assert from "node:assert/strict";
import { logLevel } from "kafkajs";
import { loadConsumeConfig } from "../lib/config.ts";
import { createKafka, isCoordinatorStarting, kafkaLogLevel, type KafkaLogLine } from "../lib/kafka_admin.ts";
import { createLogger } from "../lib/log.ts";
import { uniqueName, waitFor } from "./_helpers.ts";

/** The lines kafkajs 2.2.4 wrote on a new cluster's first group join (captured from a fresh broker). */
const START_UP: KafkaLogLine[] = [
  {
    namespace: "Connection",
    level: logLevel.ERROR,
    message: "Response GroupCoordinator(key: 10, version: 2)",
    error: "The group coordinator is not available",
  },
  {
    namespace: "Consumer",
    level: logLevel.ERROR,
    message: "Crash: KafkaJSProtocolError: The coordinator is loading and hence can't process requests for this group",
  },
  { namespace: "Consumer", level: logLevel.ERROR, message: "Restarting the consumer in 300ms" },
];

Deno.test("a new cluster's coordinator still starting is debug while the client starts up, a warning after", () => {
  assert.deepEqual(START_UP.map((line) => kafkaLogLevel(line, true)), ["debug", "debug", "debug"]);
  assert.deepEqual(START_UP.map((line) => kafkaLogLevel(line, false)), ["warn", "warn", "warn"]);
});

Deno.test("other kafkajs errors stay warnings during start-up; refused logins and kafkajs' warnings are debug", () => {
  const [lookup, crash] = START_UP;
  const others: KafkaLogLine[] = [
    { ...lookup, error: "This is not the correct coordinator for this group" },
    { ...lookup, message: "Response JoinGroup(key: 11, version: 5)" },
    { ...crash, message: "Crash: KafkaJSNumberOfRetriesExceeded: The group coordinator is not available" },
    { ...crash, message: "Crash: KafkaJSProtocolError: Not authorized to access topics: [Topic authorization failed]" },
    { namespace: "BrokerPool", level: logLevel.ERROR, message: "Failed to connect to broker, reconnecting" },
  ];
  assert.deepEqual(others.map((line) => kafkaLogLevel(line, true)), others.map(() => "warn"));
  const login = {
    ...lookup,
    message: "Response SaslAuthenticate(key: 36, version: 1)",
    error: "Authentication failed",
  };
  assert.equal(kafkaLogLevel(login, false), "debug");
  const rebalancing = { namespace: "ConsumerGroup", level: logLevel.WARN, message: "The group is rebalancing" };
  assert.equal(kafkaLogLevel(rebalancing, false), "debug");
});

Deno.test("a coordinator still starting is told by kafkajs' error type", () => {
  assert.ok(isCoordinatorStarting({ type: "GROUP_LOAD_IN_PROGRESS" }));
  assert.ok(isCoordinatorStarting({ type: "GROUP_COORDINATOR_NOT_AVAILABLE" }));
  assert.ok(!isCoordinatorStarting({ type: "NOT_COORDINATOR_FOR_GROUP" }));
  assert.ok(!isCoordinatorStarting(new Error("The coordinator is loading")));
  assert.ok(!isCoordinatorStarting(undefined));
});

Deno.test("createKafka logs the coordinator lines as debug until a consumer of the client joins its group", async () => {
  const parsed = loadConsumeConfig([], Deno.env.toObject());
  assert.ok(!parsed.help);
  const lines: string[] = [];
  const logger = createLogger({ component: "test", level: "debug", write: (line) => lines.push(line) });
  const kafka = createKafka(parsed.config, "cdc-tests", logger);
  const coordinatorLine = () => {
    kafka.logger().namespace("Connection").error("Response GroupCoordinator(key: 10, version: 2)", {
      error: "The group coordinator is not available",
    });
    return lines.at(-1) ?? "";
  };
  assert.match(coordinatorLine(), /^\S+ DEBUG test: kafkajs Connection: Response GroupCoordinator/);

  const topic = uniqueName("coordinator");
  const admin = kafka.admin();
  const consumer = kafka.consumer({ groupId: uniqueName("coordinator"), maxWaitTimeInMs: 200 });
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => (joined = true));
  await admin.connect();
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic] });
    await consumer.run({ eachMessage: () => Promise.resolve() });
    await waitFor("the consumer's group join", () => joined, 30_000);
    assert.match(coordinatorLine(), /^\S+ WARN {2}test: kafkajs Connection: Response GroupCoordinator/);
  } finally {
    await consumer.disconnect();
    await admin.deleteTopics({ topics: [topic] }).catch(() => {});
    await admin.disconnect();
  }
});
