/**
 * Following the replication stream: each frame is read by the pure change reader, each change
 * encoded with its table's schema (read again from the catalog on every Relation message) and
 * handed to the acking publisher, each commit and quiet keepalive marked as a position that may
 * be confirmed. Sends overlap reading, bounded to the publisher's unacknowledged bytes.
 * @module
 */
import type { AckingPublisher, AcknowledgedPosition } from "./capture_publisher.ts";
import { readTableSpec } from "./capture_catalog.ts";
import type { DebeziumEncoder, TableSpec } from "./capture_debezium.ts";
import { CaptureError, PublicationGapError, StreamEndedError } from "./capture_errors.ts";
import { encodeOrStop } from "./capture_debezium.ts";
import { missingFromPublication, qualified } from "./capture_slot.ts";
import type { TableName } from "./config.ts";
import { ChangeReader, type StreamEvent } from "./capture_reader.ts";
import type { Logger } from "./log.ts";
import type { Relation } from "./capture_pgoutput.ts";
import type { ReplicationSession } from "./capture_replication.ts";
import type { Sql } from "./database.ts";

/** What {@linkcode StreamFollower} works with. */
export interface FollowerOptions {
  config: { tables: TableName[]; publication: string };
  /** Seconds between status updates to PostgreSQL. */
  statusEveryS: number;
  logger: Logger;
  sql: Sql;
  encoder: DebeziumEncoder;
  publisher: AckingPublisher;
  position: AcknowledgedPosition;
  /** Aborted on a stop: the stream is asked for a keepalive and reading ends. */
  signal: AbortSignal;
}

/** Follows one replication stream at a time, with the tables' schemas as the stream described them. */
export class StreamFollower {
  /** The spec of each relation the stream described; null for a table the capture does not capture. */
  readonly specs = new Map<number, TableSpec | null>();
  #session: ReplicationSession | undefined;

  /** Follows with `options`. */
  constructor(readonly options: FollowerOptions) {}

  /** Reads the stream until a stop; publishes changes and confirms what Kafka acknowledged. */
  async follow(session: ReplicationSession): Promise<void> {
    const { publisher, position, signal } = this.options;
    this.#session = session;
    const reader = new ChangeReader();
    const sendStatus = () => session.sendStatus(position.lsn);
    const statusTimer = setInterval(sendStatus, this.options.statusEveryS * 1000);
    // A stop wakes a quiet stream by asking the server for a keepalive; racing every read against
    // the stop instead would keep every message alive in that promise's reactions.
    let wakeTimer: ReturnType<typeof setTimeout> | undefined;
    const onStop = () => {
      session.sendStatus(position.lsn, true);
      wakeTimer = setTimeout(() => session.destroy(new StreamEndedError()), 10_000);
    };
    signal.addEventListener("abort", onStop, { once: true });
    let idleFlush: ReturnType<typeof setTimeout> | undefined;
    const flushInBackground = () => publisher.flush().then(sendStatus, (error) => this.fail(error));
    try {
      while (!signal.aborted) {
        const event = reader.read(await session.next());
        // Only a Relation message waits (on the catalog); a change is handled without a promise of its own.
        if (event.type === "relation") await this.#describe(event.relation);
        else this.#apply(event, sendStatus);
        // Batches are sent while the next are read; reading waits while the publisher is full: its bytes
        // unacknowledged, so memory stays bounded and PostgreSQL holds the rest (the walsender waits).
        if (publisher.sendable) flushInBackground();
        if (publisher.full) {
          await publisher.below();
        } else if (publisher.pending > 0 && !idleFlush) {
          // A quiet stream still gets its changes out (and acknowledged) within 50 ms.
          idleFlush = setTimeout(() => {
            idleFlush = undefined;
            flushInBackground();
          }, 50);
        }
      }
    } finally {
      signal.removeEventListener("abort", onStop);
      clearInterval(statusTimer);
      clearTimeout(idleFlush);
      clearTimeout(wakeTimer);
      this.#session = undefined;
    }
  }

  /** Acts on one event of the stream other than a Relation message. */
  #apply(event: Exclude<StreamEvent, { type: "relation" }>, sendStatus: () => void): void {
    switch (event.type) {
      case "change": {
        const spec = this.specs.get(event.relationId);
        if (spec === undefined) {
          throw new CaptureError(`a change refers to relation ${event.relationId}, which the stream never described`);
        }
        if (spec) {
          this.options.publisher.add(
            encodeOrStop(this.options.encoder, spec, event.change),
            spec.table,
            event.change.op,
          );
        }
        return;
      }
      case "commit":
        return this.options.publisher.confirmableAt(event.endLsn);
      case "keepalive":
        if (event.confirmable !== null) this.options.publisher.confirmableAt(event.confirmable);
        if (event.replyRequested) sendStatus();
        return;
      case "truncate":
        // Debezium's default (skipped.operations=t) publishes no truncate events either.
        this.options.logger.warn("a TRUNCATE of a captured table was skipped, as Debezium does by default");
    }
  }

  /**
   * A Relation message: the table's schema is read again from the catalog, as Debezium does, so
   * ADD COLUMN, DROP COLUMN, a type change or DROP NOT NULL carry on with the new schema. A table
   * the capture was not asked for means the publication changed: it is checked.
   */
  async #describe(relation: Relation): Promise<void> {
    const name = { schema: relation.schema, table: relation.table };
    const configured = this.options.config.tables.some((t) => qualified(t) === qualified(name));
    if (!configured) {
      if (!this.specs.has(relation.relationId)) {
        this.options.logger.warn(
          `publication ${this.options.config.publication} sends ${qualified(name)}, not in --tables: skipped`,
        );
      }
      this.specs.set(relation.relationId, null);
    } else {
      this.specs.set(relation.relationId, await readTableSpec(this.options.sql, name.schema, name.table, relation));
    }
    await this.checkPublication();
  }

  /** Stops the run when a configured table left the publication (PublicationGapError). */
  async checkPublication(): Promise<void> {
    const { sql, config } = this.options;
    const [missing] = await missingFromPublication(sql, config.publication, config.tables);
    if (missing) throw new PublicationGapError(qualified(missing), config.publication);
  }

  /** Ends the run with `error` (a failed send in the background): the stream breaks off with it. */
  fail(error: unknown): void {
    this.#session?.destroy(error instanceof Error ? error : new Error(String(error)));
  }
}
