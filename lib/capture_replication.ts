/**
 * One replication connection to PostgreSQL: postgres.js in `replication: "database"` mode, as its
 * own subscribe() does, but with a durable slot, its exported snapshot and our own
 * acknowledgements. It creates the slot, opens the CopyBoth stream, yields its CopyData payloads,
 * and sends Standby Status Updates carrying the position it is given, never one of its own.
 * @module
 */
import type { Duplex } from "node:stream";
import type postgres from "postgres";
import { StreamEndedError } from "./capture_errors.ts";
import { formatLsn, type Lsn, parseLsn, standbyStatusUpdate } from "./capture_pgoutput.ts";
import { sleep } from "./retry.ts";
import { connectDatabase } from "./database.ts";
import type { ReplicationStream } from "./capture_stream.ts";

/** How a new slot is made: `failover` (PostgreSQL 17 and later) keeps it on standbys that sync slots. */
export interface SlotOptions {
  failover?: boolean;
}

/** A replication connection as a capture run uses it: the slot's creation, then its stream. */
export interface ReplicationConnection extends ReplicationStream {
  /**
   * Creates the logical slot with pgoutput and exports its snapshot, which lives until the
   * connection's next command: read it before {@linkcode start}.
   */
  createSlot(slot: string, options?: SlotOptions): Promise<{ consistentPoint: Lsn; snapshotName: string }>;
  /** Starts streaming the slot's changes after `from`, for the publication's tables. */
  start(slot: string, publication: string, from: Lsn): Promise<void>;
}

const nowMicros = () => BigInt(Date.now()) * 1000n;

/** A replication connection and, once started, its stream. */
export class ReplicationSession implements ReplicationConnection {
  readonly #connection: postgres.Sql<Record<string, unknown>>;
  #stream: Duplex | undefined;
  #payloads: AsyncIterator<unknown> | undefined;
  /** The error the stream was destroyed with, kept for the next read. */
  #broken: { error: unknown } | undefined;

  /** Opens (lazily) a replication connection to `databaseUrl`. */
  constructor(databaseUrl: string) {
    // Through connectDatabase, so that DATABASE_URL's TLS settings (sslrootcert, sslcert, sslkey) hold here too.
    this.#connection = connectDatabase(databaseUrl, 1, {
      fetch_types: false,
      idle_timeout: 0,
      max_lifetime: 0,
      connection: { application_name: "cdc-capture", replication: "database", DateStyle: "ISO", TimeZone: "UTC" },
    }) as unknown as postgres.Sql<Record<string, unknown>>;
  }

  /**
   * Creates the logical slot with pgoutput and exports its snapshot, which lives until this
   * connection's next command: read it before {@linkcode start}.
   */
  async createSlot(slot: string, options: SlotOptions = {}): Promise<{ consistentPoint: Lsn; snapshotName: string }> {
    // A slot name cannot be a parameter of a replication command; loadCaptureConfig checks it against /^[a-z0-9_]{1,63}$/.
    // FAILOVER exists only in the option list of PostgreSQL 15 and later; the bare form keeps 14 working.
    const how = options.failover ? "(SNAPSHOT 'export', FAILOVER true)" : "EXPORT_SNAPSHOT";
    const [created] = await this.#connection.unsafe(`CREATE_REPLICATION_SLOT ${slot} LOGICAL pgoutput ${how}`)
      .simple();
    return { consistentPoint: parseLsn(String(created.consistent_point)), snapshotName: String(created.snapshot_name) };
  }

  /** Starts streaming the slot's changes after `from`, for the publication's tables. */
  async start(slot: string, publication: string, from: Lsn): Promise<void> {
    // Names checked as in createSlot; the publication name likewise.
    this.#stream = await this.#connection.unsafe(
      `START_REPLICATION SLOT ${slot} LOGICAL ${
        formatLsn(from)
      } (proto_version '1', publication_names '${publication}', messages 'true')`,
    ).writable() as unknown as Duplex;
    // postgres.js destroys the stream with CONNECTION_CLOSED when the connection drops; until the first read
    // listens (the run reads its kept state first), that 'error' event would have no listener and end the process.
    this.#stream.on("error", (error) => (this.#broken ??= { error }));
  }

  /**
   * The stream's next CopyData payload; StreamEndedError once the server ended it. Read through
   * one iterator that is never returned: returning it would destroy the stream before CopyDone.
   */
  async next(): Promise<Uint8Array> {
    if (this.#broken && !this.#payloads) throw this.#broken.error;
    this.#payloads ??= this.#stream![Symbol.asyncIterator]();
    const next = await this.#payloads.next();
    if (next.done) throw this.#broken ? this.#broken.error : new StreamEndedError();
    return next.value as Uint8Array;
  }

  /** Tells the server that everything before `lsn` is safe; `replyRequested` asks for a keepalive back. */
  sendStatus(lsn: Lsn, replyRequested = false): void {
    const stream = this.#stream;
    if (stream && !stream.writableEnded && !stream.destroyed) {
      stream.write(standbyStatusUpdate(lsn, nowMicros(), replyRequested));
    }
  }

  /** Ends the stream (CopyDone), waiting at most 5 s for the server's answer, then the connection. */
  async end(): Promise<void> {
    const stream = this.#stream;
    if (stream && !stream.writableEnded && !stream.destroyed) {
      await Promise.race([new Promise<void>((resolve) => stream.end(resolve)), sleep(5_000)]);
    }
    await this.#connection.end({ timeout: 2 }).catch(() => {});
  }
}
