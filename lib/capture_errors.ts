/**
 * The capture's documented stops, as typed errors with the fields an operator needs. Each
 * message is one line naming what happened and what to do; `main_produce.ts capture` prints it
 * and exits 1. {@linkcode isCaptureOutage} says which failures are waited out instead.
 * @module
 */
import { classify, PipelineError } from "./errors.ts";
import { formatLsn, type Lsn } from "./capture_pgoutput.ts";

/** A value that cannot be encoded; the message names table, column, type, value and the row's key. */
export class EncodingError extends PipelineError {}

/** A stop of the capture that waiting will not fix: bad data, a lost slot, a refused setting. */
export class CaptureError extends PipelineError {}

/** The slot this capture streamed from is gone: changes made while there was none may be lost. */
export class SlotLostError extends CaptureError {
  /** Creates the error for `slot`. */
  constructor(readonly slot: string) {
    super(
      `slot ${slot} is missing although this capture streamed from it: changes made while there was no slot may be ` +
        `lost; run with --new-snapshot to create it again and publish every row anew`,
    );
  }
}

/** PostgreSQL invalidated the slot this capture streamed from: the WAL after its confirmed position may be gone. */
export class SlotInvalidatedError extends CaptureError {
  /**
   * Creates the error for `slot`, invalidated for `reason` (PostgreSQL's invalidation_reason) while
   * confirmed at `confirmed`; `setting` is the server setting whose limit it passed, with its value.
   */
  constructor(
    readonly slot: string,
    readonly reason: string,
    readonly confirmed: string | null,
    readonly setting?: { name: string; value: string },
  ) {
    const limit = setting ? `, ${setting.name} = ${setting.value}` : "";
    const cure = setting ? `, and raise ${setting.name} so that it does not happen again` : "";
    super(
      `slot ${slot} was invalidated by PostgreSQL (${reason}${limit}): changes made since its confirmed position ` +
        `${confirmed ?? "(unknown)"} may be lost; run with --new-snapshot to replace it and publish every row anew` +
        cure,
    );
  }
}

/** A configured table is not in the publication of a slot that streams: its changes were not sent. */
export class PublicationGapError extends CaptureError {
  /** Creates the error for `table` (`schema.table`) missing from `publication`. */
  constructor(readonly table: string, readonly publication: string) {
    super(
      `table ${table} is not in publication ${publication}: its changes since it left were not captured, and its ` +
        `deletes meanwhile cannot be recovered; run with --new-snapshot to add it back and publish every table's rows ` +
        `anew, or add it back (ALTER PUBLICATION ${publication} ADD TABLE ${table}) and send an execute-snapshot ` +
        `signal for it to re-send its current rows`,
    );
  }
}

/** One record is larger than its topic accepts (`max.message.bytes`): no retry can send it. */
export class RecordTooLargeError extends CaptureError {
  /** Creates the error naming the table, the key, the record's size and the limit. */
  constructor(readonly table: string, readonly key: string, readonly size: number, readonly limit: number) {
    super(
      `a record of ${table} with key ${key} is ${size} bytes, over its topic's max.message.bytes ${limit}: raise ` +
        `the topic's max.message.bytes (and the broker's replica.fetch.max.bytes) to at least ${size}`,
    );
  }
}

/** A capture topic was deleted while the capture ran. */
export class TopicMissingError extends CaptureError {
  /** Creates the error for `topic`. */
  constructor(readonly topic: string) {
    super(
      `topic ${topic} no longer exists: recreate it (or restart the capture, which creates it) and check its consumers`,
    );
  }
}

/** A change whose value cannot be encoded; `cause` is the encoder's error (table, column, key). */
export class UnencodableChangeError extends CaptureError {
  /** Creates the error from the encoder's `cause`, adding the change's LSN. */
  constructor(cause: Error, readonly lsn: Lsn | null) {
    super(`${cause.message} at LSN ${lsn === null ? "(snapshot)" : formatLsn(lsn)}`, { cause });
  }
}

/** The slot is held by another server process (a capture that just died, or a second one). */
export class SlotInUseError extends CaptureError {
  /** Creates the error for `slot` held by server process `pid`. */
  constructor(readonly slot: string, readonly pid: number) {
    super(`slot ${slot} is in use by server process ${pid}: another capture?`);
  }
}

/** PostgreSQL ended the replication stream without an error (a restart, a terminated walsender). */
export class StreamEndedError extends CaptureError {
  /** Creates the error. */
  constructor() {
    super("PostgreSQL ended the replication stream");
  }
}

/**
 * Whether the capture waits a failure out and resumes from the slot: the taxonomy's outages and
 * transient failures, a slot still held by the walsender of a capture that died (which lets go
 * within seconds, and makes a second capture a standby), and a stream the server ended.
 */
export function isCaptureOutage(error: unknown): boolean {
  if (error instanceof SlotInUseError || error instanceof StreamEndedError) return true;
  const kind = classify(error);
  return kind === "outage" || kind === "transient";
}
