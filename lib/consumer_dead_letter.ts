/**
 * The DLQ writer: records that cannot be applied go to `<topic>.dlq` with their key, value and
 * headers, plus headers saying why and where they came from. Delivery: a write is acknowledged
 * by all in-sync replicas before the transaction that advances the partition's offset commits,
 * so a crash between the two can write a record twice (same source coordinates), never lose one.
 * @module
 */
import type { IHeaders, KafkaMessage, Message, Producer } from "kafkajs";
import { classify, describeError, PipelineError } from "./errors.ts";

/** Header names on DLQ records. */
export const DLQ_HEADERS = {
  reason: "dlq.reason",
  topic: "dlq.source.topic",
  partition: "dlq.source.partition",
  offset: "dlq.source.offset",
  failedAt: "dlq.failed.at",
} as const;

/** The DLQ topic of a source topic. */
export function dlqTopic(topic: string): string {
  return `${topic}.dlq`;
}

/** A record bound for the DLQ, with why. */
export interface DeadLetter {
  /** The record as consumed. */
  message: KafkaMessage;
  /** Why it cannot be applied, for a person reading the DLQ. */
  reason: string;
}

/** A DLQ write that waiting will not fix (a record over the broker's size limit, a refused topic). */
export class DeadLetterError extends PipelineError {
  /** The first record's offset in its source partition. */
  readonly offset: string;
  /** Names the first record of the write, its DLQ topic and Kafka's answer. */
  constructor(readonly topic: string, readonly partition: number, letters: DeadLetter[], cause: unknown) {
    const offsets = letters.map((l) => l.message.offset);
    const where = `${topic}:${partition}:${offsets[0]}${offsets.length > 1 ? ` (and ${offsets.length - 1} more)` : ""}`;
    super(`could not write ${where} to ${dlqTopic(topic)}: ${describeError(cause)}`, { cause });
    this.offset = offsets[0];
  }
}

/** The DLQ records of `letters` from `topic`/`partition`: original key, value and headers plus the dlq.* headers. */
export function deadLetterMessages(topic: string, partition: number, letters: DeadLetter[], failedAt: Date): Message[] {
  return letters.map(({ message, reason }) => ({
    key: message.key,
    value: message.value,
    headers: {
      ...(message.headers as IHeaders | undefined),
      [DLQ_HEADERS.reason]: reason,
      [DLQ_HEADERS.topic]: topic,
      [DLQ_HEADERS.partition]: String(partition),
      [DLQ_HEADERS.offset]: message.offset,
      [DLQ_HEADERS.failedAt]: failedAt.toISOString(),
    },
  }));
}

/**
 * Writes `letters` to the DLQ of `topic`, acknowledged by all in-sync replicas. An outage is
 * thrown as Kafka raised it (the caller waits and retries the whole batch); any other failure
 * becomes a {@linkcode DeadLetterError} naming the records, which ends the run.
 */
export async function writeDeadLetters(
  producer: Producer,
  topic: string,
  partition: number,
  letters: DeadLetter[],
  failedAt: Date,
): Promise<void> {
  if (letters.length === 0) return;
  try {
    await producer.send({
      topic: dlqTopic(topic),
      messages: deadLetterMessages(topic, partition, letters, failedAt),
      acks: -1,
    });
  } catch (error) {
    if (classify(error) === "outage") throw error;
    throw new DeadLetterError(topic, partition, letters, error);
  }
}
