/**
 * Replication frames built byte by byte as PostgreSQL 15 writes them, for the decoder's and the
 * change reader's unit tests.
 * @module
 */

/** Builds a message the way the server writes it: big-endian integers, NUL-terminated strings. */
export class Bytes {
  parts: number[] = [];
  char(c: string) {
    this.parts.push(c.charCodeAt(0));
    return this;
  }
  int8(n: number) {
    this.parts.push(n & 0xff);
    return this;
  }
  int16(n: number) {
    this.parts.push((n >> 8) & 0xff, n & 0xff);
    return this;
  }
  int32(n: number) {
    for (let s = 24; s >= 0; s -= 8) this.parts.push((n >>> s) & 0xff);
    return this;
  }
  int64(n: bigint) {
    for (let s = 56n; s >= 0n; s -= 8n) this.parts.push(Number((n >> s) & 0xffn));
    return this;
  }
  cstring(s: string) {
    this.parts.push(...new TextEncoder().encode(s), 0);
    return this;
  }
  text(s: string) {
    const bytes = new TextEncoder().encode(s);
    this.int32(bytes.length);
    this.parts.push(...bytes);
    return this;
  }
  done(): Uint8Array {
    return new Uint8Array(this.parts);
  }
}

/** A column of a Relation message: name, type OID, typmod, key flag. */
export type RelationColumnSpec = [name: string, typeOid: number, typeMod: number, key: boolean];

/** An XLogData frame at `walStart` carrying the pgoutput message `message`. */
export function xlog(walStart: bigint, message: Uint8Array): Uint8Array {
  const head = new Bytes().char("w").int64(walStart).int64(walStart).int64(0n).done();
  const frame = new Uint8Array(head.length + message.length);
  frame.set(head);
  frame.set(message, head.length);
  return frame;
}

/** A primary keepalive at the server's position `walEnd`. */
export function keepalive(walEnd: bigint, replyRequested = false): Uint8Array {
  return new Bytes().char("k").int64(walEnd).int64(0n).int8(replyRequested ? 1 : 0).done();
}

/** Begin of transaction `xid`, committed at `commitTimePg` (microseconds since 2000). */
export function begin(xid: number, commitTimePg: bigint, finalLsn = 0n): Uint8Array {
  return new Bytes().char("B").int64(finalLsn).int64(commitTimePg).int32(xid).done();
}

/** Commit whose end LSN is `endLsn`. */
export function commit(commitLsn: bigint, endLsn: bigint): Uint8Array {
  return new Bytes().char("C").int8(0).int64(commitLsn).int64(endLsn).int64(0n).done();
}

/** A Relation message describing `schema.table` with `columns`. */
export function relation(id: number, schema: string, table: string, columns: RelationColumnSpec[]): Uint8Array {
  const b = new Bytes().char("R").int32(id).cstring(schema).cstring(table).char("d").int16(columns.length);
  for (const [name, oid, mod, key] of columns) b.int8(key ? 1 : 0).cstring(name).int32(oid).int32(mod);
  return b.done();
}

function tuple(b: Bytes, values: (string | null)[]): Bytes {
  b.int16(values.length);
  for (const v of values) v === null ? b.char("n") : b.char("t").text(v);
  return b;
}

/** An Insert of `values` into relation `id`. */
export function insert(id: number, values: (string | null)[]): Uint8Array {
  return tuple(new Bytes().char("I").int32(id).char("N"), values).done();
}

/** An Update of relation `id`; `oldKey` is the old key tuple pgoutput sends when the key changed. */
export function update(id: number, values: (string | null)[], oldKey?: (string | null)[]): Uint8Array {
  const b = new Bytes().char("U").int32(id);
  if (oldKey) tuple(b.char("K"), oldKey);
  return tuple(b.char("N"), values).done();
}

/** A Delete from relation `id`, with the old key tuple. */
export function del(id: number, oldKey: (string | null)[]): Uint8Array {
  return tuple(new Bytes().char("D").int32(id).char("K"), oldKey).done();
}

/** A logical decoding Message (`pg_logical_emit_message`) with `prefix` and text `content`. */
export function message(prefix: string, content: string, transactional = true, lsn = 0n): Uint8Array {
  return new Bytes().char("M").int8(transactional ? 1 : 0).int64(lsn).cstring(prefix).text(content).done();
}
