/**
 * Following the replication stream: each frame is read by the pure change reader, each change
 * encoded with its table's schema (read again from the catalog on every Relation message) and
 * handed to the acking publisher, each commit and quiet keepalive marked as a position that may
 * be confirmed. Sends overlap reading, bounded to the publisher's unacknowledged bytes.
 * @module
 */
import type { AckingPublisher } from "./capture_publisher.ts";
import type { DebeziumEncoder, TableSpec } from "./capture_debezium.ts";
import { CaptureError, PublicationGapError } from "./capture_errors.ts";
import { encodeOrStop, nowNs } from "./capture_debezium.ts";
import { qualified } from "./capture_slot.ts";
import type { TableName } from "./config.ts";
import { ChangeReader, type StreamEvent } from "./capture_reader.ts";
import type { Logger } from "./log.ts";
import type { Lsn, Relation } from "./capture_pgoutput.ts";
import type { SnapshotObserver } from "./capture_chunks.ts";

/** The replication stream as the follower reads it (lib/capture_replication.ts' ReplicationSession). */
export interface ReplicationStream {
  /** The stream's next CopyData payload; rejects once the stream ended or broke. */
  next(): Promise<Uint8Array>;
  /** Tells the server that everything before `lsn` is safe; `replyRequested` asks for a keepalive back. */
  sendStatus(lsn: Lsn, replyRequested?: boolean): void;
  /** Ends the stream; a read waiting on it settles. */
  end(): Promise<void>;
}

/** What the follower asks the database (lib/capture_database.ts reads the catalog). */
export interface FollowerCatalog {
  /** The spec of the table a Relation message describes, as the catalog describes it now. */
  tableSpec(relation: Relation): Promise<TableSpec>;
  /** The configured tables missing from the publication. */
  missingFromPublication(): Promise<TableName[]>;
  /** The configured partitioned table above the relation, which its changes belong to; null without one. */
  configuredAncestor(relation: Relation): Promise<TableName | null>;
}

/** What {@linkcode StreamFollower} works with. */
export interface FollowerOptions {
  config: { tables: TableName[]; publication: string };
  /** Seconds between status updates to PostgreSQL. */
  statusEveryS: number;
  logger: Logger;
  catalog: FollowerCatalog;
  encoder: DebeziumEncoder;
  publisher: AckingPublisher;
  /** Aborted on a stop: the stream is asked for a keepalive and reading ends. */
  signal: AbortSignal;
  /** The incremental snapshots (lib/capture_chunks.ts), told of signals, changes, watermarks and commits. */
  snapshots?: SnapshotObserver;
}

/** How long a change waits for more before it is sent anyway: a quiet stream still gets its changes out. */
const IDLE_FLUSH_MS = 50;

/** How long a server gets to answer a wake (a stop, a failure) before the stream is ended. */
const WAKE_ANSWER_MS = 10_000;

/**
 * The following of one stream: its timers, the background sends, and the failure that ends it.
 * A failure (a send, a publication check) is kept here for the loop, which throws it once the
 * next frame comes: the stream is asked for a keepalive so that one comes at once, and ended
 * only when the server does not answer.
 */
class Following {
  #failure: { error: unknown } | undefined;
  #idleFlush: ReturnType<typeof setTimeout> | undefined;
  #wakeTimer: ReturnType<typeof setTimeout> | undefined;
  readonly #statusTimer: ReturnType<typeof setInterval>;
  #closed = false;

  /** Starts the status updates of `stream`. */
  constructor(readonly stream: ReplicationStream, readonly options: FollowerOptions) {
    this.#statusTimer = setInterval(() => this.sendStatus(), options.statusEveryS * 1000);
  }

  /** Tells the server the acknowledged position, held back before a snapshot queue not kept yet. */
  sendStatus(): void {
    this.stream.sendStatus(this.#confirmable());
  }

  #confirmable(): Lsn {
    const acknowledged = this.options.publisher.acknowledgedLsn;
    return this.options.snapshots?.confirmable(acknowledged) ?? acknowledged;
  }

  /**
   * Wakes a quiet stream by asking the server for a keepalive; racing every read against a stop
   * or a failure instead would keep every message alive in that promise's reactions. A server
   * that does not answer has its stream ended. Once the following is over, there is nothing to wake.
   */
  wake(): void {
    if (this.#closed) return;
    this.stream.sendStatus(this.#confirmable(), true);
    this.#wakeTimer ??= setTimeout(() => this.stream.end().catch(() => {}), WAKE_ANSWER_MS);
  }

  /** Ends the following with `error`, the first one kept. */
  fail(error: unknown): void {
    this.#failure ??= { error };
    this.wake();
  }

  /** What the loop throws for a read that failed with `error`: the failure that ended the stream, if any. */
  failureOr(error: unknown): unknown {
    return this.#failure ? this.#failure.error : error;
  }

  /** Throws the failure, if any. */
  throwIfFailed(): void {
    if (this.#failure) throw this.#failure.error;
  }

  /** Sends what is pending without waiting; a failed send ends the following. */
  flushInBackground(): void {
    this.options.publisher.flush().then(() => this.sendStatus(), (error) => this.fail(error));
  }

  /** Sends what is pending once the stream has been quiet for {@linkcode IDLE_FLUSH_MS}. */
  flushWhenIdle(): void {
    this.#idleFlush ??= setTimeout(() => {
      this.#idleFlush = undefined;
      this.flushInBackground();
    }, IDLE_FLUSH_MS);
  }

  /** Stops the timers; a send that fails later is the run's to see (its flush throws it). */
  close(): void {
    this.#closed = true;
    clearInterval(this.#statusTimer);
    clearTimeout(this.#idleFlush);
    clearTimeout(this.#wakeTimer);
  }
}

/** Follows one replication stream at a time, with the tables' schemas as the stream described them. */
export class StreamFollower {
  /** The spec of each relation the stream described; null for a table the capture does not capture. */
  readonly specs = new Map<number, TableSpec | null>();
  /** The relation id of the signal table, whose inserts are signals. */
  #signalRelation: number | null = null;
  #following: Following | undefined;

  /** Follows with `options`. */
  constructor(readonly options: FollowerOptions) {}

  /**
   * Reads the stream until a stop; publishes changes and confirms what Kafka acknowledged.
   * Rejects with the failure that ended it: a failed send, a table gone from the publication.
   */
  async follow(stream: ReplicationStream): Promise<void> {
    const { publisher, signal } = this.options;
    const following = this.#following = new Following(stream, this.options);
    const reader = new ChangeReader();
    this.options.snapshots?.streamStarting();
    const onStop = () => following.wake();
    signal.addEventListener("abort", onStop, { once: true });
    try {
      while (!signal.aborted) {
        let frame: Uint8Array;
        try {
          frame = await stream.next();
        } catch (error) {
          throw following.failureOr(error);
        }
        following.throwIfFailed();
        const event = reader.read(frame);
        // Only a Relation message waits (on the catalog); a change is handled without a promise of its own.
        if (event.type === "relation") await this.#describe(event.relation);
        else this.#apply(event, following);
        // Batches are sent while the next are read; reading waits while the publisher is full: its bytes
        // unacknowledged, so memory stays bounded and PostgreSQL holds the rest (the walsender waits).
        if (publisher.sendable) following.flushInBackground();
        if (publisher.full) await publisher.below();
        else if (publisher.pending > 0) following.flushWhenIdle();
      }
      following.throwIfFailed();
    } finally {
      signal.removeEventListener("abort", onStop);
      following.close();
      this.#following = undefined;
    }
  }

  /** Acts on one event of the stream other than a Relation message. */
  #apply(event: Exclude<StreamEvent, { type: "relation" }>, following: Following): void {
    switch (event.type) {
      case "change": {
        const spec = this.specs.get(event.relationId);
        if (spec === undefined) {
          throw new CaptureError(`a change refers to relation ${event.relationId}, which the stream never described`);
        }
        if (spec) {
          this.options.snapshots?.changed(spec, event.change);
          // A change of a skipped operation (skipped.operations) has no records, and is not counted as published.
          const records = encodeOrStop(this.options.encoder, spec, event.change);
          if (records.length) this.options.publisher.add(records, spec, event.change.op);
        } else if (event.relationId === this.#signalRelation && event.change.op === "c") {
          this.options.snapshots?.signal(event.change.after!);
        }
        return;
      }
      case "message":
        return this.options.snapshots?.message(event.prefix, event.content, event.source);
      case "commit":
        this.options.snapshots?.committed(event.endLsn);
        return this.options.publisher.confirmableAt(event.endLsn);
      case "keepalive":
        if (event.confirmable !== null) this.options.publisher.confirmableAt(event.confirmable);
        if (event.replyRequested) following.sendStatus();
        return;
      case "truncate":
        return this.#truncate(event);
    }
  }

  /** A TRUNCATE: one record per captured table, unless skipped.operations skips `t`, as Debezium's default does. */
  #truncate(event: Extract<StreamEvent, { type: "truncate" }>): void {
    const { encoder, publisher, logger } = this.options;
    for (const relationId of event.relationIds) {
      const spec = this.specs.get(relationId);
      if (!spec) continue;
      const records = encoder.truncate(spec, event.source, nowNs());
      if (records.length) publisher.add(records, spec, "t");
      else {logger.warn(
          `a TRUNCATE of ${qualified(spec)} was skipped (skipped.operations), as Debezium does by default`,
        );}
    }
  }

  /**
   * A Relation message: the table's schema is read again from the catalog, as Debezium does, so
   * ADD COLUMN, DROP COLUMN, a type change or DROP NOT NULL carry on with the new schema. A table
   * the capture was not asked for means the publication changed: it is checked.
   */
  async #describe(relation: Relation): Promise<void> {
    const { config, catalog, logger } = this.options;
    const own = { schema: relation.schema, table: relation.table };
    const signal = this.options.snapshots?.isSignalTable(own) ?? false;
    const name = signal
      ? null
      : config.tables.some((t) => qualified(t) === qualified(own))
      ? own
      : await catalog.configuredAncestor(relation);
    if (signal) {
      this.#signalRelation = relation.relationId;
      this.specs.set(relation.relationId, null);
    } else if (!name) {
      if (!this.specs.has(relation.relationId)) {
        logger.warn(`publication ${config.publication} sends ${qualified(own)}, not in --tables: skipped`);
      }
      this.specs.set(relation.relationId, null);
    } else {
      // A partition's changes go to its configured partitioned table's topic, read with the partition's columns.
      this.specs.set(relation.relationId, await catalog.tableSpec({ ...relation, ...name }));
    }
    await this.checkPublication();
  }

  /** Stops the run when a configured table left the publication (PublicationGapError). */
  async checkPublication(): Promise<void> {
    const [missing] = await this.options.catalog.missingFromPublication();
    if (missing) throw new PublicationGapError(qualified(missing), this.options.config.publication);
  }

  /** Ends the stream being followed with `error`: {@linkcode follow} rejects with it. */
  fail(error: unknown): void {
    this.#following?.fail(error);
  }
}
