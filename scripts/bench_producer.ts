/**
 * The bench's producer phases: `deno task produce` on the run's events, and its references in the
 * same run: Kafka's Java ProducerPerformance on as many records of the same size, and kafkajs'
 * encoding alone (no network).
 * @module
 */
import { createRequire } from "node:module";
import { DEFAULTS } from "../lib/config.ts";
import { generateEvents } from "../lib/generator.ts";
import { murmur2 } from "../lib/partitioner.ts";
import { measure, type Measured, taskCommand } from "./bench_measure.ts";
import { type BenchRun, progress, timed } from "./bench_run.ts";
import { decode } from "./_util.ts";

/** The producer's flags for the run's events: its users and orders, batch size and seed. */
export function produceArgs({ users, orders, produceBatch, seed }: BenchRun): string[] {
  return Object.entries({ users, orders, "batch-size": produceBatch, seed })
    .flatMap(([flag, value]) => [`--${flag}`, String(value)]);
}

/** `deno task produce` publishing the run's events into its topics. */
export async function producePhase(run: BenchRun): Promise<Measured> {
  const produce = await timed(
    `producing ${run.events} events (${run.users} users, ${run.orders} orders)`,
    async () => measure(run, await taskCommand(run.root, "produce", produceArgs(run))),
  );
  progress(`producer: ${Math.round(run.events / produce.seconds)} events/s, peak RSS ${produce.peakRssMb} MB`);
  return produce;
}

/** Mean bytes (key + value) of the run's records, from a 1% sample of the same seeded stream shape. */
export function meanRecordBytes({ events, seed }: BenchRun): number {
  const scale = Math.max(1, Math.round(events / 100));
  const sample = generateEvents({ users: Math.round(scale * 0.4), orders: scale - Math.round(scale * 0.4), seed });
  let bytes = 0;
  let count = 0;
  for (const event of sample) {
    bytes += event.key.length + JSON.stringify(event.value).length;
    count++;
  }
  return Math.round(bytes / count);
}

type Outgoing = { key: string; value: string };

/** kafkajs' produce request encoding (grouping by partition, records, batches, CRC), no network; ms spent. */
function produceRequestEncoder(run: BenchRun) {
  const require = createRequire(import.meta.url);
  const groupMessagesPerPartition = require("kafkajs/src/producer/groupMessagesPerPartition.js");
  const createTopicData = require("kafkajs/src/producer/createTopicData.js");
  const produceRequest = require("kafkajs/src/protocol/requests/produce/v7/request.js");
  const encoder = new TextEncoder();
  const partitioner = ({ partitionMetadata, message }: { partitionMetadata: unknown[]; message: { key: string } }) =>
    (murmur2(encoder.encode(message.key)) & 0x7fffffff) % partitionMetadata.length;
  const metadata = {
    [run.env.USERS_TOPIC]: Array.from({ length: DEFAULTS.usersPartitions }, (_, partitionId) => ({ partitionId })),
    [run.env.ORDERS_TOPIC]: Array.from({ length: DEFAULTS.ordersPartitions }, (_, partitionId) => ({ partitionId })),
  };
  const state = { encodingMs: 0 };
  const encode = async (batch: { topic: string; messages: Outgoing[] }[]) => {
    const started = performance.now();
    const topicData = createTopicData(batch.map(({ topic, messages }) => {
      const messagesPerPartition = groupMessagesPerPartition({
        topic,
        partitionMetadata: metadata[topic],
        messages,
        partitioner,
      });
      return { topic, partitions: Object.keys(messagesPerPartition).map(Number), messagesPerPartition };
    }));
    await produceRequest({ acks: -1, timeout: 30_000, topicData }).encode();
    state.encodingMs += performance.now() - started;
  };
  return { encode, state };
}

/**
 * What kafkajs alone costs the producer: grouping by partition and encoding produce requests
 * (records, batches, CRC) for `events` of the run's stream, in sends of the run's batch size, with
 * no network and the events already generated and serialised. No producer on kafkajs can beat
 * this rate on one core of this machine.
 */
export async function kafkajsEncodeOnly(run: BenchRun, events: number): Promise<number> {
  const { encode, state } = produceRequestEncoder(run);
  const users = Math.round(events * 0.4);
  let batch = { user: [] as Outgoing[], order: [] as Outgoing[] };
  let inBatch = 0;
  const flush = async () => {
    await encode([
      { topic: run.env.USERS_TOPIC, messages: batch.user },
      { topic: run.env.ORDERS_TOPIC, messages: batch.order },
    ].filter((t) => t.messages.length > 0));
    batch = { user: [], order: [] };
    inBatch = 0;
  };
  for (const event of generateEvents({ users, orders: events - users, seed: run.seed })) {
    batch[event.entity].push({ key: event.key, value: JSON.stringify(event.value) });
    if (++inBatch === run.produceBatch) await flush();
  }
  if (inBatch > 0) await flush();
  return events / (state.encodingMs / 1000);
}

/** Kafka's own Java producer with its default settings plus acks=all, same record count and size. */
export async function javaProducerPerf(run: BenchRun, records: number, recordSize: number): Promise<number> {
  const admin = run.kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic: run.javaTopic, numPartitions: 8 }], waitForLeaders: true });
  await admin.disconnect();
  const services = `${run.root}scripts/services.sh`;
  // The broker may have been started elsewhere (another checkout, docker compose), so the
  // tools' jars are resolved here, outside the phase's time limit.
  const resolved = await new Deno.Command("bash", { args: [services, "tools"], stdout: "null", stderr: "inherit" })
    .output();
  if (!resolved.success) {
    throw new Error(`scripts/services.sh tools could not resolve Kafka ${run.kafkaVersion}'s tools`);
  }
  const out = await new Deno.Command("timeout", {
    args: [
      String(run.phaseTimeoutS),
      "bash",
      services,
      "tool",
      "org.apache.kafka.tools.ProducerPerformance",
      "--topic",
      run.javaTopic,
      "--num-records",
      String(records),
      "--record-size",
      String(recordSize),
      "--throughput",
      "-1",
      "--producer-props",
      `bootstrap.servers=${run.brokers.join(",")}`,
      "acks=all",
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = decode(out.stdout);
  const m = /([\d.]+) records\/sec/.exec(text.trim().split("\n").at(-1) ?? "");
  if (!m) throw new Error(`ProducerPerformance printed no rate: ${text}${decode(out.stderr)}`);
  return Number(m[1]);
}
