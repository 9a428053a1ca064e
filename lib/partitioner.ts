/**
 * Key-hash partitioning, the same partition for every key as Kafka's Java client and kafkajs'
 * DefaultPartitioner (murmur2 of the key's UTF-8 bytes, made positive, modulo the partitions),
 * computed with 32-bit integer arithmetic. kafkajs computes it with 64-bit Long objects and a
 * Buffer per key, which was an eighth of the producer's CPU time.
 * @module
 */
import type { ICustomPartitioner } from "kafkajs";

const M = 0x5bd1e995;
const utf8 = new TextEncoder();

/**
 * Kafka's murmur2 hash (the Java client's `Utils.murmur2`) of the first `length` bytes of
 * `data`, as a signed 32-bit int.
 */
export function murmur2(data: Uint8Array, length: number = data.length): number {
  const length4 = length & ~3;
  let h = 0x9747b28c ^ length;
  for (let i = 0; i < length4; i += 4) {
    let k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M) ^ k;
  }
  switch (length & 3) {
    case 3:
      h ^= data[length4 + 2] << 16;
    // falls through
    case 2:
      h ^= data[length4 + 1] << 8;
    // falls through
    case 1:
      h ^= data[length4];
      h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

// Keys are copied into this buffer, reused: a Uint8Array per key was a tenth of the producer's main thread under Deno.
let scratch = new Uint8Array(64);

/** murmur2 of a key's UTF-8 bytes; ASCII keys (ids) skip the encoder. */
function keyHash(key: string | Uint8Array): number {
  if (typeof key !== "string") return murmur2(key);
  if (key.length > scratch.length) scratch = new Uint8Array(key.length * 2);
  for (let i = 0; i < key.length; i++) {
    const code = key.charCodeAt(i);
    if (code > 0x7f) return murmur2(utf8.encode(key));
    scratch[i] = code;
  }
  return murmur2(scratch, key.length);
}

/** The partition of `key` among `partitions`: `murmur2(key) & 0x7fffffff` modulo the partitions, as Java's client. */
export function partitionOf(key: string | Uint8Array, partitions: number): number {
  return (keyHash(key) & 0x7fffffff) % partitions;
}

/**
 * kafkajs partitioner: an explicit partition wins, a key picks `murmur2(key) & 0x7fffffff`
 * modulo the partitions, and a record without a key goes round robin.
 */
export const keyHashPartitioner: ICustomPartitioner = () => {
  let next = 0;
  return ({ partitionMetadata, message }) => {
    if (message.partition !== null && message.partition !== undefined) return message.partition;
    const partitions = partitionMetadata.length;
    if (message.key === null || message.key === undefined) return next++ % partitions;
    return partitionOf(message.key, partitions);
  };
};
