/**
 * The DLQ tool (`cdc-consume dlq list|replay`): read `<topic>.dlq` from its start (or from the
 * replay group's position) up to the end it had when the command started, print each record, or
 * republish it to its source topic. Delivery semantics of replay, decided here: a record is
 * republished and acknowledged by Kafka before the replay group commits past it, so a crash
 * republishes at most a suffix again and a second run replays only what arrived since.
 * @module
 */
import { Buffer } from "node:buffer";
import type { IHeaders, Kafka, KafkaMessage, Message } from "kafkajs";
import type { CommandDefinition } from "./command.ts";
import { ConfigError, type DlqConfig, loadDlqConfig } from "./config.ts";
import { DLQ_HEADERS, dlqTopic } from "./consumer_dead_letter.ts";
import { createKafka } from "./kafka_admin.ts";
import { createPublisher, type TopicMessages, writeWithRetry } from "./kafka_producer.ts";
import type { Logger } from "./log.ts";
import { classify } from "./errors.ts";
import { SEND, waitOut } from "./retry.ts";
import { parsePartitionKey, type PartitionKey, partitionKey } from "./partition_key.ts";

/** Header added to a replayed record: `dlq-topic:partition:offset` of the DLQ record it came from. */
export const REPLAYED_FROM_HEADER = "dlq.replayed.from";

/** One record read from a DLQ topic, with the context its headers carry. */
export interface DlqRecord {
  /** The DLQ topic it was read from. */
  dlqTopic: string;
  /** Its partition in the DLQ topic. */
  partition: number;
  /** Its offset in the DLQ topic. */
  offset: string;
  /** The record as Kafka delivered it (key, value and headers untouched). */
  message: KafkaMessage;
}

/** A header's value as text; undefined when absent. */
export function headerText(headers: IHeaders | undefined, name: string): string | undefined {
  const value = headers?.[name];
  const first = Array.isArray(value) ? value[0] : value;
  return first === undefined ? undefined : first.toString();
}

/** A value shortened to `max` characters for one line, with its size when cut. */
export function shortValue(value: Buffer | null, max = 80): string {
  if (value === null) return "(null)";
  // Invalid UTF-8 shows as U+FFFD; line breaks and control characters must not break the line.
  const text = new TextDecoder().decode(value).replace(/\s+/g, " ").trim().replace(/\p{Cc}/gu, "\ufffd");
  return text.length <= max ? text : `${text.slice(0, max - 3)}... (${value.length} bytes)`;
}

/** One line describing a DLQ record: source coordinates, failed-at, reason, key, short value. */
export function formatDlqRecord(record: DlqRecord): string {
  const { headers, key, value } = record.message;
  const text = (name: string) => headerText(headers, name) ?? "?";
  return [
    `source=${text(DLQ_HEADERS.topic)}:${text(DLQ_HEADERS.partition)}:${text(DLQ_HEADERS.offset)}`,
    `failed_at=${text(DLQ_HEADERS.failedAt)}`,
    `reason=${JSON.stringify(text(DLQ_HEADERS.reason))}`,
    `key=${key === null ? "(null)" : JSON.stringify(key.toString())}`,
    `value=${shortValue(value)}`,
    `dlq=${record.dlqTopic}:${record.partition}:${record.offset}`,
  ].join(" ");
}

/** The record to republish: key and value unchanged, DLQ headers dropped, where it came from added. */
export function replayMessage(record: DlqRecord): Message {
  const dropped = new Set<string>([...Object.values(DLQ_HEADERS), REPLAYED_FROM_HEADER]);
  const headers: IHeaders = {};
  for (const [name, value] of Object.entries(record.message.headers ?? {})) {
    if (!dropped.has(name) && value !== undefined) headers[name] = value;
  }
  headers[REPLAYED_FROM_HEADER] = `${record.dlqTopic}:${record.partition}:${record.offset}`;
  return { key: record.message.key, value: record.message.value, headers };
}

/** Options of {@linkcode readDlq}. */
export interface ReadDlqOptions {
  /** DLQ topics to read; those that do not exist are empty. */
  topics: string[];
  /** Consumer group that reads; its committed position is where reading starts. */
  groupId: string;
  /** Called with each partition batch, in offset order; resolve once the batch is handled. */
  onRecords: (records: DlqRecord[]) => Promise<void>;
  /** Commit the group's position after each handled batch. @default false */
  commit?: boolean;
  /** Stop reading once this many records were handled. @default no limit */
  limit?: number;
  /** Give up reading after this long. @default 60000 */
  timeoutMs?: number;
  /** Aborted on a stop (SIGINT/SIGTERM): reading ends after the batch in hand. */
  signal?: AbortSignal;
}

/** Where the group is on each partition of `topics` (or the log's start) and where the log ends, for partitions with records left. */
async function unreadRanges(
  kafka: Kafka,
  topics: string[],
  groupId: string,
): Promise<Map<PartitionKey, { next: bigint; end: bigint }>> {
  const admin = kafka.admin();
  const ends = new Map<PartitionKey, { next: bigint; end: bigint }>();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const present = topics.filter((t) => existing.has(t));
    const committed = present.length ? await admin.fetchOffsets({ groupId, topics: present }) : [];
    for (const topic of present) {
      const at = new Map(
        (committed.find((c) => c.topic === topic)?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]),
      );
      for (const { partition, low, high } of await admin.fetchTopicOffsets(topic)) {
        const from = at.get(partition) ?? -1n;
        const next = from > BigInt(low) ? from : BigInt(low);
        if (next < BigInt(high)) ends.set(partitionKey(topic, partition), { next, end: BigInt(high) });
      }
    }
  } finally {
    await admin.disconnect();
  }
  return ends;
}

/**
 * Reads `topics` from the group's committed position (or the start) up to the end offsets they
 * had when the call started, then returns the number of records handled; never waits for more.
 */
export async function readDlq(kafka: Kafka, options: ReadDlqOptions): Promise<number> {
  const { topics, groupId, onRecords, commit = false, limit = Infinity, timeoutMs = 60_000, signal } = options;
  const ends = await unreadRanges(kafka, topics, groupId);
  if (ends.size === 0 || limit <= 0 || signal?.aborted) return 0;

  let handled = 0;
  let finish = () => {};
  let fail = (_error: unknown) => {};
  const finished = new Promise<void>((resolve, reject) => ((finish = resolve), (fail = reject)));
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, allowAutoTopicCreation: false });
  const pendingTopics = [...new Set([...ends.keys()].map((k) => parsePartitionKey(k).topic))];
  const timer = setTimeout(
    () => fail(new Error(`timed out after ${timeoutMs / 1000}s reading ${pendingTopics.join(", ")}`)),
    timeoutMs,
  );
  signal?.addEventListener("abort", () => finish(), { once: true });
  consumer.on(consumer.events.CRASH, (event) => {
    if (!event.payload.restart) fail(event.payload.error);
  });
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: pendingTopics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, commitOffsetsIfNecessary }) => {
        const key = partitionKey(batch.topic, batch.partition);
        const position = ends.get(key);
        if (!position || handled >= limit) return;
        const messages = batch.messages
          .filter((m) => BigInt(m.offset) >= position.next && BigInt(m.offset) < position.end)
          .slice(0, limit - handled);
        if (messages.length > 0) {
          try {
            await onRecords(messages.map((message) => ({
              dlqTopic: batch.topic,
              partition: batch.partition,
              offset: message.offset,
              message,
            })));
          } catch (error) {
            // Thrown back to kafkajs it would restart the consumer in a loop until the timeout.
            fail(error);
            return;
          }
          handled += messages.length;
          const last = messages[messages.length - 1].offset;
          position.next = BigInt(last) + 1n;
          // Commit after the effect: the caller has handled (for replay: Kafka acked) these records.
          if (commit) {
            await commitOffsetsIfNecessary({
              topics: [{
                topic: batch.topic,
                partitions: [{ partition: batch.partition, offset: String(position.next) }],
              }],
            });
          }
          resolveOffset(last);
        }
        // Offsets can have gaps (compaction, control records): the batch's end counts too.
        if (BigInt(batch.lastOffset()) + 1n >= position.end && messages.length === batch.messages.length) {
          position.next = position.end > position.next ? position.end : position.next;
        }
        if (position.next >= position.end) ends.delete(key);
        if (ends.size === 0 || handled >= limit) finish();
      },
    });
    await finished;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect().catch(() => {});
  }
  return handled;
}

/** What a replay did. */
export interface ReplaySummary {
  /** Records republished (or, in a dry run, that would be), per source topic. */
  replayed: Record<string, number>;
  /** DLQ records without a source topic header, passed over. */
  skipped: number;
}

/** The replay consumer group of a consumer group. */
export function replayGroup(consumerGroup: string): string {
  return `${consumerGroup}.dlq-replay`;
}

const SUMMARY = `Inspects and replays the dead-letter topics <topic>.dlq that the consumer writes.

  list      prints one line per DLQ record to stdout (source topic:partition:offset, failed-at,
            reason, key, a shortened value, and the record's own dlq topic:partition:offset),
            reading from the beginning up to the current end, then exits.
  replay    republishes DLQ records to their source topic (the dlq.source.topic header): key and
            value unchanged, the dlq.* headers removed, a dlq.replayed.from header
            "dlq-topic:partition:offset" added. Its position is committed in the consumer group
            <group>.dlq-replay after Kafka acknowledged the records, so re-running replay
            replays only DLQ records that arrived since the last run. Fix the cause first
            (e.g. create the missing user): a record that fails again goes back to the DLQ.`;

/** The DLQ topics `--topic` names: `users`, `orders`, a configured topic or its DLQ; both when absent. */
export function dlqTopicsOf(
  config: Pick<DlqConfig, "usersTopic" | "ordersTopic">,
  topic: string | undefined,
): string[] {
  const sources = [config.usersTopic, config.ordersTopic];
  if (topic === undefined) return sources.map(dlqTopic);
  const byRole: Record<string, string> = { users: config.usersTopic, orders: config.ordersTopic };
  const source = byRole[topic] ?? sources.find((s) => s === topic || dlqTopic(s) === topic);
  if (!source) {
    throw new ConfigError(`--topic must be users or orders (or ${sources.join(" or ")}): got ${JSON.stringify(topic)}`);
  }
  return [dlqTopic(source)];
}

/** Prints the DLQ records of `topics`; returns how many. */
export async function listDlq(
  kafka: Kafka,
  config: Pick<DlqConfig, "consumerGroup">,
  topics: string[],
  out: (line: string) => void,
  options: { limit?: number; signal?: AbortSignal } = {},
): Promise<number> {
  // A group of its own that never commits: listing moves no one's position.
  const groupId = `${config.consumerGroup}.dlq-list.${Date.now().toString(36)}${Math.random().toString(36).slice(2)}`;
  return await readDlq(kafka, {
    topics,
    groupId,
    ...options,
    onRecords: (records) => {
      for (const record of records) out(formatDlqRecord(record));
      return Promise.resolve();
    },
  });
}

/** Republishes (or with `dryRun` prints) the DLQ records the replay group has not replayed yet. */
export async function replayDlq(
  kafka: Kafka,
  config: Pick<DlqConfig, "consumerGroup">,
  topics: string[],
  options: { dryRun: boolean; out: (line: string) => void; logger: Logger; signal?: AbortSignal },
): Promise<ReplaySummary> {
  const { dryRun, out, logger, signal } = options;
  const summary: ReplaySummary = { replayed: {}, skipped: 0 };
  const producer = createPublisher(kafka);
  if (!dryRun) {
    await waitOut(() => producer.connect(), {
      what: "connecting to Kafka",
      policy: SEND,
      isRetriable: (error) => classify(error) === "outage",
      signal,
    });
  }
  try {
    await readDlq(kafka, {
      topics,
      groupId: replayGroup(config.consumerGroup),
      commit: !dryRun,
      signal,
      onRecords: async (records) => {
        const bySource = new Map<string, Message[]>();
        for (const record of records) {
          const source = headerText(record.message.headers, DLQ_HEADERS.topic);
          if (!source) {
            summary.skipped++;
            logger.warn(`no ${DLQ_HEADERS.topic} header; not replayed`, {
              dlq: `${record.dlqTopic}:${record.partition}:${record.offset}`,
            });
            continue;
          }
          bySource.set(source, [...(bySource.get(source) ?? []), replayMessage(record)]);
          out(`${dryRun ? "would replay" : "replaying"} to ${source}: ${formatDlqRecord(record)}`);
        }
        const topicMessages: TopicMessages[] = [...bySource].map(([topic, messages]) => ({ topic, messages }));
        if (!dryRun && topicMessages.length > 0) {
          await writeWithRetry(producer, topicMessages, {
            maxAttempts: SEND.maxAttempts,
            backoffMs: SEND.baseMs,
            logger,
            signal,
          });
        }
        for (const { topic, messages } of topicMessages) {
          summary.replayed[topic] = (summary.replayed[topic] ?? 0) + messages.length;
        }
      },
    });
  } finally {
    await producer.disconnect().catch(() => {});
  }
  return summary;
}

/** What a dlq command did, logged at exit. */
export type DlqSummary =
  | { action: "list"; listed: number; topics: string }
  | ({ action: "replay"; dryRun: boolean; group: string } & ReplaySummary);

/** `cdc-consume dlq list|replay`, run by lib/command.ts' skeleton. */
export const dlqCommand: CommandDefinition<DlqConfig, DlqSummary> = {
  name: "consume dlq",
  component: "dlq",
  summary: SUMMARY,
  load: loadDlqConfig,
  onStop: "ending after the batch in hand",
  run: async (config, { logger, signal, out }) => {
    const topics = dlqTopicsOf(config, config.topic);
    const kafka = createKafka(config, "cdc-dlq", logger);
    if (config.action === "list") {
      const listed = await listDlq(kafka, config, topics, out, { limit: config.limit, signal });
      return { action: "list", listed, topics: topics.join(",") };
    }
    const summary = await replayDlq(kafka, config, topics, { dryRun: config.dryRun, out, logger, signal });
    const total = Object.values(summary.replayed).reduce((a, b) => a + b, 0);
    const perTopic = Object.entries(summary.replayed).map(([t, n]) => `${t}: ${n}`).join(", ");
    out(
      config.dryRun
        ? `dry run: would replay ${total} DLQ records${perTopic ? ` (${perTopic})` : ""}; published nothing`
        : `replayed ${total} DLQ records${perTopic ? ` (${perTopic})` : ""}` +
          (total === 0 ? ": nothing arrived since the last replay" : ""),
    );
    return { action: "replay", dryRun: config.dryRun, group: replayGroup(config.consumerGroup), ...summary };
  },
  outcome: (summary) => ({
    message: summary.action === "list"
      ? `listed ${summary.listed} DLQ records`
      : summary.dryRun
      ? "dry run done"
      : "replay done",
    exitCode: 0,
  }),
};
