/**
 * The key of one partition of one topic, `topic:partition`: how maps, log lines and metrics
 * labels name a partition. Made and read back only here.
 * @module
 */

/** `topic:partition`; a topic name may itself hold `:`, the partition is after the last one. */
export type PartitionKey = `${string}:${number}`;

/** The key of `partition` of `topic`. */
export function partitionKey(topic: string, partition: number): PartitionKey {
  return `${topic}:${partition}`;
}

/** The topic and partition a key names; a RangeError when `key` is not `topic:partition`. */
export function parsePartitionKey(key: string): { topic: string; partition: number } {
  const at = key.lastIndexOf(":");
  const partition = Number(key.slice(at + 1));
  if (at < 1 || !/^\d+$/.test(key.slice(at + 1)) || !Number.isSafeInteger(partition)) {
    throw new RangeError(`a partition key must be topic:partition: current value is ${JSON.stringify(key)}`);
  }
  return { topic: key.slice(0, at), partition };
}
