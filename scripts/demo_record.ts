/**
 * The demo's look at one Debezium record: prints the newest record of the capture's users topic
 * (`<prefix>.public.users`; the capture's settings from the environment and the flags), its key
 * and its value's payload, the value's schema left out. Reads with a consumer group of its own,
 * deleted afterwards.
 * Run: deno run --allow-net --allow-env --allow-read --allow-sys scripts/demo_record.ts [capture flags]
 * @module
 */
import type { KafkaMessage } from "kafkajs";
import { loadCaptureConfig } from "../lib/config.ts";
import { createKafka } from "../lib/kafka_admin.ts";
import { commandLogger } from "../lib/log.ts";

const env = Deno.env.toObject();
const parsed = loadCaptureConfig(Deno.args, env);
if (parsed.help) throw new Error("usage: scripts/demo_record.ts [capture flags]");
const config = parsed.config;
const topic = `${config.topicPrefix}.public.users`;
const kafka = createKafka(config, "cdc-demo", commandLogger("demo", config, env));

/** Reads the record at `offset` of `partition`, or throws after `timeoutMs`. */
async function readAt(groupId: string, partition: number, offset: string, timeoutMs = 30_000) {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, allowAutoTopicCreation: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic] });
    return await new Promise<KafkaMessage>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`no record at ${topic}:${partition}:${offset} in time`)), timeoutMs);
      consumer.run({
        autoCommit: false,
        eachMessage: (payload) => {
          if (payload.partition === partition && payload.message.offset === offset) resolve(payload.message);
          return Promise.resolve();
        },
      }).then(() => consumer.seek({ topic, partition, offset })).catch(reject);
    });
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
  }
}

const admin = kafka.admin();
const groupId = `cdc-demo-${crypto.randomUUID()}`;
await admin.connect();
try {
  const newest = (await admin.fetchTopicOffsets(topic)).find((p) => BigInt(p.high) > BigInt(p.low));
  if (!newest) throw new Error(`${topic} holds no record`);
  const offset = (BigInt(newest.high) - 1n).toString();
  const message = await readAt(groupId, newest.partition, offset);
  const value = JSON.parse(message.value?.toString() ?? "null");
  const schemaBytes = value?.schema ? new TextEncoder().encode(JSON.stringify(value.schema)).length : 0;
  console.log(`${topic} partition ${newest.partition} offset ${offset}`);
  console.log(`key:   ${message.key?.toString()}`);
  console.log(
    `value: {"schema": (${schemaBytes} bytes, left out), "payload": ${JSON.stringify(value?.payload, null, 2)}}`,
  );
} finally {
  await admin.deleteGroups([groupId]).catch(() => {});
  await admin.disconnect();
}
