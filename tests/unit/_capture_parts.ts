/**
 * The capture's parts without services, for the follower's and the run's unit tests: a replication
 * stream that hands out frames built byte by byte (tests/unit/_frames.ts) and answers keepalive requests
 * as the server does, a catalog of one users table, a Kafka whose sends are acknowledged when the
 * test says, and PostgreSQL's side of a slot that resumes.
 * @module
 */
import { buildTableSpec, type CatalogTable, type CatalogType } from "../../lib/capture_catalog.ts";
import type { ColumnSpec } from "../../lib/capture_debezium.ts";
import type { CaptureDatabase } from "../../lib/capture_database.ts";
import type { ChunkDatabase } from "../../lib/capture_chunk_store.ts";
import type { CaptureSink } from "../../lib/capture_kafka.ts";
import type { Lsn, Relation } from "../../lib/capture_pgoutput.ts";
import type { ReplicationConnection } from "../../lib/capture_replication.ts";
import type { FollowerCatalog } from "../../lib/capture_stream.ts";
import { StreamEndedError } from "../../lib/capture_errors.ts";
import type { TopicMessages } from "../../lib/kafka_producer.ts";
import { begin, commit, insert, keepalive, relation, type RelationColumnSpec, xlog } from "./_frames.ts";

/** A nullable, non-key column of a TableSpec, without typmod unless `extra` says otherwise. */
export function col(name: string, typeOid: number, typeName: string, extra: Partial<ColumnSpec> = {}): ColumnSpec {
  return { name, typeOid, typeName, typmod: -1, optional: true, key: false, ...extra };
}

/** A catalog type that is its own base type, without typmod or labels. */
export function catalogType(oid: number, name: string, extra: Partial<CatalogType> = {}): CatalogType {
  return { oid, name, baseOid: oid, baseName: name, typmod: -1, enumValues: null, ...extra };
}

/** The users table's relation id in the frames. */
export const USERS_ID = 7;
const USERS_COLUMNS: RelationColumnSpec[] = [["id", 23, -1, true], ["name", 25, -1, false]];

/** A transaction `xid` inserting users `ids` into `public.users` at `at`, committed with end LSN `at + 0x20`. */
export function usersInserted(xid: number, at: bigint, ids: number[]): Uint8Array[] {
  return [
    xlog(at, begin(xid, 0n)),
    ...ids.map((id, i) => xlog(at + BigInt(i + 1), insert(USERS_ID, [String(id), `user ${id}`]))),
    xlog(at + 0x10n, commit(at + 0x10n, at + 0x20n)),
  ];
}

/** The Relation message of `public.users`. */
export function usersRelation(at: bigint): Uint8Array {
  return xlog(at, relation(USERS_ID, "public", "users", USERS_COLUMNS));
}

const USERS_CATALOG: CatalogTable = {
  columns: [
    { name: "id", typeOid: 23, typmod: -1, notNull: true, defaultExpression: null },
    { name: "name", typeOid: 25, typmod: -1, notNull: false, defaultExpression: null },
  ],
  types: [
    { oid: 23, name: "int4", baseOid: 23, baseName: "int4", typmod: -1, enumValues: null },
    { oid: 25, name: "text", baseOid: 25, baseName: "text", typmod: -1, enumValues: null },
  ],
  keyColumns: ["id"],
};

/** A catalog that knows `public.users`, and a publication that holds every configured table. */
export const usersCatalog: FollowerCatalog = {
  tableSpec: (r: Relation) => Promise.resolve(buildTableSpec(r.schema, r.table, USERS_CATALOG, r)),
  missingFromPublication: () => Promise.resolve([]),
  configuredAncestor: () => Promise.resolve(null),
};

/**
 * A replication stream of frames the test pushes. Like the server, it answers a status update
 * that asks for a reply with a keepalive at `serverLsn`, unless told to be silent.
 */
export class ScriptedStream implements ReplicationConnection {
  readonly #queued: Uint8Array[] = [];
  #waiting: { resolve: (frame: Uint8Array) => void; reject: (error: Error) => void } | undefined;
  /** Frames handed to the reader. */
  delivered = 0;
  /** Status updates received, in order. */
  readonly statuses: { lsn: Lsn; replyRequested: boolean }[] = [];
  /** Where the stream was started from; undefined before start(). */
  startedFrom: Lsn | undefined;
  /** Whether end() was called. */
  ended = false;

  /** A stream whose server is at `serverLsn`; `silent` leaves keepalive requests unanswered. */
  constructor(public serverLsn: Lsn = 0n, readonly silent = false) {}

  /** Frames pushed and not yet read. */
  get queued(): number {
    return this.#queued.length;
  }

  /** Makes `frames` arrive, in order. */
  push(...frames: Uint8Array[]): void {
    for (const frame of frames) {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      if (waiting) {
        this.delivered++;
        waiting.resolve(frame);
      } else this.#queued.push(frame);
    }
  }

  /** The next frame pushed; StreamEndedError once ended. */
  next(): Promise<Uint8Array> {
    if (this.ended) return Promise.reject(new StreamEndedError());
    const frame = this.#queued.shift();
    if (frame) {
      this.delivered++;
      return Promise.resolve(frame);
    }
    return new Promise((resolve, reject) => (this.#waiting = { resolve, reject }));
  }

  /** Records the update; a request for a reply is answered with a keepalive, as the server does. */
  sendStatus(lsn: Lsn, replyRequested = false): void {
    this.statuses.push({ lsn, replyRequested });
    if (replyRequested && !this.silent) this.push(keepalive(this.serverLsn));
  }

  /** Ends the stream: a read waiting on it fails as when the server ends it. */
  end(): Promise<void> {
    this.ended = true;
    this.#waiting?.reject(new StreamEndedError());
    this.#waiting = undefined;
    return Promise.resolve();
  }

  /** Not used by a slot that resumes. */
  createSlot(): Promise<{ consistentPoint: Lsn; snapshotName: string }> {
    return Promise.reject(new Error("this test's slot exists: no snapshot"));
  }

  /** Records where the stream starts. */
  start(_slot: string, _publication: string, from: Lsn): Promise<void> {
    this.startedFrom = from;
    return Promise.resolve();
  }
}

/** Kafka whose sends wait until the test acknowledges them, or fail with `failure`. */
export class HeldKafka implements CaptureSink {
  /** Every send, in order. */
  readonly sent: TopicMessages[][] = [];
  readonly #held: (() => void)[] = [];
  /** Sends acknowledged so far. */
  acknowledged = 0;
  connected = false;
  disconnected = false;

  /** A Kafka whose sends fail with `failure` when given. */
  constructor(readonly failure?: Error) {}

  /** Sends waiting for their acknowledgement. */
  get held(): number {
    return this.#held.length;
  }

  /** Records the topics. */
  connect(): Promise<void> {
    this.connected = true;
    return Promise.resolve();
  }

  /** A limit no test record reaches. */
  maxBytes(): number {
    return 1_000_000;
  }

  /** Holds the send until {@linkcode acknowledge}; rejects at once with the failure, if any. */
  send(messages: TopicMessages[]): Promise<void> {
    this.sent.push(messages);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve) => this.#held.push(resolve));
  }

  /** Acknowledges every send held. */
  acknowledge(): void {
    for (const resolve of this.#held.splice(0)) {
      this.acknowledged++;
      resolve();
    }
  }

  /** Records the disconnect. */
  disconnect(): Promise<void> {
    this.disconnected = true;
    return Promise.resolve();
  }
}

/** The records of every send, flattened, as `key` payload ids. */
export function sentIds(kafka: HeldKafka): number[] {
  return kafka.sent.flat().flatMap((t) => t.messages).map((m) => JSON.parse(String(m.key)).payload.id);
}

/** PostgreSQL's side of the incremental snapshots when none was kept or asked for: anything else is a test's bug. */
const NO_CHUNKS: ChunkDatabase = {
  tableSpec: () => Promise.reject(new Error("no incremental snapshot in this test")),
  largestKey: () => Promise.reject(new Error("no incremental snapshot in this test")),
  readChunk: () => Promise.reject(new Error("no incremental snapshot in this test")),
  emitWatermark: () => Promise.reject(new Error("no incremental snapshot in this test")),
  estimateRows: () => Promise.reject(new Error("no incremental snapshot in this test")),
  loadState: () => Promise.resolve(null),
  keepState: () => Promise.reject(new Error("no incremental snapshot in this test")),
};

/** PostgreSQL's side of a run whose slot exists, confirmed at `confirmed`, streaming `stream`. */
export class ResumingDatabase implements CaptureDatabase {
  ended = false;

  /** A slot confirmed at `confirmed` whose replication connection is `stream`. */
  constructor(readonly stream: ScriptedStream, readonly confirmed: Lsn) {}

  prepare = () => Promise.resolve();
  decideStart = () => Promise.resolve({ start: "resume" as const });
  checkSlot = () => Promise.resolve();
  confirmedLsn = () => Promise.resolve(this.confirmed);
  retainedWal = () => Promise.resolve(0);
  replication = () => this.stream;
  readSnapshot = () => Promise.reject(new Error("this test's slot exists: no snapshot"));
  recordSnapshotDone = () => Promise.resolve();
  /** No incremental snapshot was kept, and none is asked for. */
  chunks = () => ({ ...NO_CHUNKS });
  tableSpec = usersCatalog.tableSpec;
  missingFromPublication = usersCatalog.missingFromPublication;
  configuredAncestor = usersCatalog.configuredAncestor;

  /** Records the end. */
  end(): Promise<void> {
    this.ended = true;
    return Promise.resolve();
  }
}
