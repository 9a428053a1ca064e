/**
 * The capture command's run (CONTRACT.md section 7): PostgreSQL logical replication of `users`
 * and `orders` through a durable `pgoutput` slot, published to Kafka as Debezium records.
 *
 * Delivery: at-least-once, no gap. The slot's confirmed position is only ever the end LSN of a
 * commit whose changes Kafka acknowledged from all in-sync replicas (`acks: -1`); keepalives and
 * the periodic status updates carry that position, never the latest one received. A restart
 * resumes from the slot, so PostgreSQL re-sends every commit after it: duplicates, no gaps.
 *
 * The replication connection is postgres.js in `replication: "database"` mode, as its own
 * subscribe() does, but with a durable slot, its exported snapshot and our own acknowledgements.
 * @module
 */
import type { Duplex } from "node:stream";
import type { Producer } from "kafkajs";
import postgres from "postgres";
import type { CaptureConfig } from "./config.ts";
import {
  CAPTURED_TABLES,
  type CaptureRecord,
  DebeziumEncoder,
  type RowChange,
  type SnapshotMarker,
  type TableSpec,
  TYPE_OIDS,
} from "./debezium.ts";
import { classifyDatabaseError, describeError, isKafkaAuthError } from "./errors.ts";
import { createKafka, createTopic } from "./kafka_admin.ts";
import type { Logger } from "./log.ts";
import {
  decodeFrame,
  decodePgOutput,
  formatLsn,
  type Lsn,
  parseLsn,
  type PgOutputMessage,
  pgTimeToUnixMicros,
  type Relation,
  standbyStatusUpdate,
} from "./pgoutput.ts";
import type { ProduceStats } from "./producer.ts";
import { createPublisher, type TopicMessages, writeWithRetry } from "./publisher.ts";
import { backoffDelay, retry, RetryError, sleep } from "./retry.ts";
import { connectDatabase, ensureSchema, type Sql } from "./sink.ts";
import { VERSION } from "./version.ts";

/** Counters of a capture run, for metrics, health and the summary. */
export interface CaptureStats extends ProduceStats {
  /** Changes acknowledged by Kafka, per `table.op`. */
  captured: Record<string, number>;
  /** Whether the capture is connected to Kafka and streaming from PostgreSQL. */
  connected: { kafka: boolean; database: boolean };
  /** The slot position last acknowledged to PostgreSQL. */
  acknowledgedLsn: Lsn;
  /** WAL the slot retains on the server, in bytes; null until measured. */
  retainedWalBytes: number | null;
}

/** Fresh counters for a capture run. */
export function newCaptureStats(): CaptureStats {
  return {
    published: {},
    sendRetries: 0,
    captured: {},
    connected: { kafka: false, database: false },
    acknowledgedLsn: 0n,
    retainedWalBytes: null,
  };
}

/** What a capture run did, printed at exit. */
export interface CaptureSummary {
  /** Changes published and acknowledged, per `table.op`. */
  captured: Record<string, number>;
  /** Changes in all. */
  total: number;
  /** Rows of the first snapshot published in this run (0 when resuming). */
  snapshotRows: number;
  /** The slot position acknowledged at exit. */
  acknowledgedLsn: string;
  /** WAL the slot retained at the last measurement, in bytes. */
  retainedWalBytes: number | null;
  /** Times the replication stream was opened again after an outage. */
  reconnects: number;
  /** Wall time in seconds. */
  elapsedS: number;
  /** Changes per second over the run. */
  changesPerS: number;
}

/** Options of {@linkcode runCapture}. */
export interface CaptureRunOptions {
  /** Where progress and errors go. */
  logger: Logger;
  /** Counters to fill. */
  stats: CaptureStats;
  /** Resolves once a stop was requested (SIGINT/SIGTERM). */
  stopRequested: Promise<void>;
  /** Seconds between progress lines (and slot measurements). @default 5 */
  progressEveryS?: number;
  /** Seconds between status updates to PostgreSQL. @default 10 */
  statusEveryS?: number;
}

/** Stops the run with one line: bad data or a protocol the capture does not understand. */
export class CaptureError extends Error {
  /** Creates the error with a one-line message. */
  constructor(message: string) {
    super(message);
    this.name = "CaptureError";
  }
}

/** The capture's own bookkeeping: whether a slot's first snapshot reached Kafka. */
async function ensureStateTable(sql: Sql): Promise<void> {
  await sql`
    create table if not exists cdc_capture_state (
      slot_name text primary key,
      snapshot_lsn pg_lsn not null,
      snapshot_done_at timestamptz not null default now()
    )`;
}

/**
 * Creates the tables (the consumer's schema step), the publication of `users` and `orders`, and
 * sets REPLICA IDENTITY FULL so updates and deletes carry the whole old row as `before`.
 */
export async function preparePublication(sql: Sql, publication: string): Promise<void> {
  await ensureSchema(sql);
  await ensureStateTable(sql);
  await sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(hashtext(${publication}))`;
    const [found] = await tx`select 1 from pg_publication where pubname = ${publication}`;
    if (!found) await tx`create publication ${tx(publication)} for table users, orders`;
    // ALTER TABLE locks the table against the consumer: only when the identity is not FULL yet.
    const tables = await tx<{ name: string }[]>`
      select relname as name from pg_class
      where oid in ('public.users'::regclass, 'public.orders'::regclass) and relreplident <> 'f'`;
    for (const { name } of tables) await tx`alter table ${tx(name)} replica identity full`;
  });
}

/** Drops the slot, the publication and the capture's state row; returns what existed. */
export async function dropCapture(sql: Sql, config: Pick<CaptureConfig, "slot" | "publication">) {
  const [slot] = await sql<{ active_pid: number | null }[]>`
    select active_pid from pg_replication_slots where slot_name = ${config.slot}`;
  if (slot?.active_pid) {
    throw new CaptureError(
      `slot ${config.slot} is in use by server process ${slot.active_pid}: stop the capture first`,
    );
  }
  if (slot) await sql`select pg_drop_replication_slot(${config.slot})`;
  const [publication] = await sql`select 1 from pg_publication where pubname = ${config.publication}`;
  if (publication) await sql`drop publication ${sql(config.publication)}`;
  const [state] = await sql<{ table: string | null }[]>`select to_regclass('cdc_capture_state')::text as table`;
  if (state.table) await sql`delete from cdc_capture_state where slot_name = ${config.slot}`;
  return { slotDropped: slot !== undefined, publicationDropped: publication !== undefined };
}

/** Publishes records in order and tracks the slot position whose changes Kafka acknowledged. */
class AckingPublisher {
  #pending: CaptureRecord[] = [];
  #pendingChanges: Record<string, number> = {};
  #completeLsn: Lsn | null = null;
  #chain: Promise<void> = Promise.resolve();
  #failure: { error: unknown } | undefined;
  #inFlight = 0;
  #inFlightRecords = 0;

  constructor(
    readonly producer: Producer,
    readonly stats: CaptureStats,
    readonly send: (producer: Producer, messages: TopicMessages[]) => Promise<void>,
  ) {}

  /** Records waiting to be sent. */
  get pending(): number {
    return this.#pending.length;
  }

  /** Records added and not yet acknowledged by Kafka: pending and in flight. */
  get unacknowledged(): number {
    return this.#pending.length + this.#inFlightRecords;
  }

  /** Whether every record added so far is acknowledged by Kafka (nothing pending, nothing in flight). */
  get settled(): boolean {
    return this.#pending.length === 0 && this.#inFlight === 0;
  }

  /** Adds one change's records. */
  add(records: CaptureRecord[], table: string, op: string): void {
    for (const record of records) this.#pending.push(record);
    const key = `${table}.${op}`;
    this.#pendingChanges[key] = (this.#pendingChanges[key] ?? 0) + 1;
  }

  /** Marks every record added so far as belonging to commits up to `endLsn`. */
  commit(endLsn: Lsn): void {
    this.#completeLsn = endLsn;
  }

  /** Sends what is pending after the sends before it; resolves once Kafka acknowledged it. */
  flush(): Promise<void> {
    const records = this.#pending;
    const changes = this.#pendingChanges;
    const lsn = this.#completeLsn;
    this.#pending = [];
    this.#pendingChanges = {};
    this.#completeLsn = null;
    this.#inFlight++;
    this.#inFlightRecords += records.length;
    this.#chain = this.#chain.then(async () => {
      if (this.#failure) return;
      try {
        if (records.length) {
          const sendStarted = performance.now();
          await this.send(this.producer, byTopic(records));
          this.stats.onSend?.(performance.now() - sendStarted);
        }
        for (const [key, n] of Object.entries(changes)) this.stats.captured[key] = (this.stats.captured[key] ?? 0) + n;
        for (const r of records) this.stats.published[r.topic] = (this.stats.published[r.topic] ?? 0) + 1;
        if (lsn !== null && lsn > this.stats.acknowledgedLsn) this.stats.acknowledgedLsn = lsn;
      } catch (error) {
        this.#failure = { error };
      } finally {
        this.#inFlight--;
        this.#inFlightRecords -= records.length;
      }
    });
    return this.#chain.then(() => {
      if (this.#failure) throw this.#failure.error;
    });
  }

  /** Drops records received but not sent: the server sends them again from the acknowledged position. */
  discard(): void {
    this.#pending = [];
    this.#pendingChanges = {};
    this.#completeLsn = null;
  }
}

function byTopic(records: CaptureRecord[]): TopicMessages[] {
  const topics = new Map<string, TopicMessages>();
  for (const { topic, key, value } of records) {
    let entry = topics.get(topic);
    if (!entry) topics.set(topic, entry = { topic, messages: [] });
    entry.messages.push({ key, value });
  }
  return [...topics.values()];
}

/** Checks a Relation message against the table the capture knows; a mismatch stops the run. */
export function checkRelation(relation: Relation): TableSpec {
  const spec = CAPTURED_TABLES[relation.table as "users" | "orders"];
  if (relation.schema !== "public" || !spec) {
    throw new CaptureError(
      `the publication sends ${relation.schema}.${relation.table}, which the capture does not know`,
    );
  }
  const have = relation.columns.map((c) => `${c.name}:${c.typeOid}`).join(",");
  const want = spec.columns.map((c) => `${c.name}:${TYPE_OIDS[c.kind]}`).join(",");
  if (have !== want) {
    throw new CaptureError(
      `table ${relation.table} has columns (name:type oid) ${have}; the capture encodes ${want}`,
    );
  }
  return spec;
}

/** A postgres.js connection in replication mode. */
type Replication = postgres.Sql<Record<string, unknown>>;

const utf8 = new TextDecoder();
const nowMicros = () => BigInt(Date.now()) * 1000n;

/** The slot's state: whether it exists, is in use, its confirmed position, and whether its snapshot is done. */
async function slotState(sql: Sql, slot: string) {
  const [row] = await sql<{ confirmed: string | null; active_pid: number | null; snapshot_done: boolean }[]>`
    select s.confirmed_flush_lsn::text as confirmed, s.active_pid,
           exists (select 1 from cdc_capture_state c where c.slot_name = s.slot_name) as snapshot_done
    from pg_replication_slots s where s.slot_name = ${slot}`;
  return row;
}

/** Reads the slot's WAL retention (current WAL position minus restart_lsn), in bytes. */
async function retainedWal(sql: Sql, slot: string): Promise<number | null> {
  const [row] = await sql<{ bytes: number | null }[]>`
    select (pg_current_wal_lsn() - restart_lsn)::float8 as bytes from pg_replication_slots where slot_name = ${slot}`;
  return row?.bytes ?? null;
}

/** The whole capture: prepare, snapshot once, then stream until stopped, riding out outages. */
export async function runCapture(config: CaptureConfig, options: CaptureRunOptions): Promise<CaptureSummary> {
  const { logger, stats, progressEveryS = 5, statusEveryS = 10 } = options;
  let stopping = false;
  /** Aborted on a stop: waits for PostgreSQL or Kafka end at once. */
  const shutdown = new AbortController();
  /** Aborted 30 s after a stop: sends of what is in hand get that long to be acknowledged. */
  const sendsShutdown = new AbortController();
  let sendsDeadline: ReturnType<typeof setTimeout> | undefined;
  options.stopRequested.then(() => {
    stopping = true;
    shutdown.abort();
    sendsDeadline = setTimeout(() => sendsShutdown.abort(), 30_000);
  });
  const started = performance.now();
  const database = new URL(config.databaseUrl).pathname.slice(1) || "postgres";
  const encoder = new DebeziumEncoder({ prefix: config.topicPrefix, database, version: `${VERSION}-cdc-pipeline` });
  const sql = connectDatabase(config.databaseUrl, 2);
  const kafka = createKafka(config, "cdc-capture", logger);
  const admin = kafka.admin();
  const producer = createPublisher(kafka);
  producer.on(producer.events.CONNECT, () => (stats.connected.kafka = true));
  producer.on(producer.events.DISCONNECT, () => (stats.connected.kafka = false));
  const waitOut = <T>(what: string, fn: () => Promise<T>, isOutage: (error: unknown) => boolean) =>
    retry(fn, {
      what,
      maxAttempts: Infinity,
      baseMs: 250,
      capMs: 5_000,
      isRetriable: isOutage,
      signal: shutdown.signal,
      onRetry: (error, attempt, delayMs) =>
        logger.warn(`waiting for ${what}, retrying in ${delayMs} ms`, { attempt, error: describeError(error) }),
    });
  // The project's one taxonomy (lib/errors.ts), plus a slot still held by the walsender of a
  // capture that just died (55006, object in use), which lets go of it within seconds.
  const databaseOutage = (error: unknown) => {
    const kind = classifyDatabaseError(error);
    return kind === "outage" || kind === "transient" || (error as { code?: unknown } | null)?.code === "55006";
  };
  const send = (p: Producer, messages: TopicMessages[]) =>
    writeWithRetry(p, messages, {
      maxAttempts: Infinity,
      backoffMs: 250,
      logger,
      signal: sendsShutdown.signal,
      onRetry: () => stats.sendRetries++,
    });
  const publisher = new AckingPublisher(producer, stats, send);
  const topics = { users: encoder.topic(CAPTURED_TABLES.users), orders: encoder.topic(CAPTURED_TABLES.orders) };
  let snapshotRows = 0;
  let streamsOpened = 0;
  let failures = 0;
  const progress = async () => {
    stats.retainedWalBytes = await retainedWal(sql, config.slot).catch(() => stats.retainedWalBytes);
    const total = Object.values(stats.captured).reduce((a, b) => a + b, 0);
    logger.info(`captured ${total} changes`, {
      changesPerS: Math.round(total / ((performance.now() - started) / 1000)),
      acknowledgedLsn: formatLsn(stats.acknowledgedLsn),
      retainedWalBytes: stats.retainedWalBytes,
    });
  };
  const progressTimer = setInterval(() => progress().catch(() => {}), progressEveryS * 1000);

  try {
    await waitOut("PostgreSQL", () => preparePublication(sql, config.publication), databaseOutage);
    await waitOut("Kafka", async () => {
      await admin.connect();
      await createTopic(admin, topics.users, config.usersPartitions, config.replicationFactor, logger);
      await createTopic(admin, topics.orders, config.ordersPartitions, config.replicationFactor, logger);
      await producer.connect();
    }, (error) => !isKafkaAuthError(error));
    await admin.disconnect();
    while (!stopping) {
      try {
        snapshotRows += await streamSession();
        break;
      } catch (error) {
        if (!databaseOutage(error)) throw error;
        publisher.discard();
        if (stopping) {
          logger.warn("stopping while PostgreSQL is unreachable: changes after the last acknowledgement come again", {
            error: describeError(error),
          });
          break;
        }
        failures = stats.connected.database ? 1 : failures + 1;
        logger.warn("waiting for PostgreSQL: the replication stream failed; resuming from the slot", {
          error: describeError(error),
          acknowledgedLsn: formatLsn(stats.acknowledgedLsn),
        });
        stats.connected.database = false;
        await sleep(backoffDelay(failures, 500, 10_000), shutdown.signal);
      }
    }
  } catch (error) {
    // A stop during a wait for Kafka or PostgreSQL ends the wait: what is not acknowledged comes again.
    if (!(stopping && error instanceof RetryError)) throw error;
    logger.warn("stopped while waiting: changes after the last acknowledgement come again at the next start", {
      error: describeError(error),
    });
  } finally {
    clearInterval(progressTimer);
    clearTimeout(sendsDeadline);
    await progress().catch(() => {});
    await producer.disconnect().catch(() => {});
    await admin.disconnect().catch(() => {});
    await sql.end({ timeout: 5 }).catch(() => {});
  }
  const elapsedS = (performance.now() - started) / 1000;
  const total = Object.values(stats.captured).reduce((a, b) => a + b, 0);
  return {
    captured: stats.captured,
    total,
    snapshotRows,
    acknowledgedLsn: formatLsn(stats.acknowledgedLsn),
    retainedWalBytes: stats.retainedWalBytes,
    reconnects: Math.max(0, streamsOpened - 1),
    elapsedS: Math.round(elapsedS * 1000) / 1000,
    changesPerS: Math.round(total / Math.max(elapsedS, 1e-6)),
  };

  /** One replication connection: snapshot if the slot is new, then stream until stopped or failed. */
  async function streamSession(): Promise<number> {
    const repl: Replication = postgres(config.databaseUrl, {
      max: 1,
      fetch_types: false,
      idle_timeout: 0,
      max_lifetime: 0,
      connect_timeout: 5,
      onnotice: () => {},
      connection: { application_name: "cdc-capture", replication: "database", DateStyle: "ISO", TimeZone: "UTC" },
    });
    let statusTimer: ReturnType<typeof setInterval> | undefined;
    try {
      let rows = 0;
      let state: Awaited<ReturnType<typeof slotState>> | undefined = await slotState(sql, config.slot);
      if (state?.active_pid) {
        // SQLSTATE 55006 (object in use): waited out, as the server process of a capture that
        // died may take a while to notice, and a second capture becomes a standby.
        throw Object.assign(
          new Error(`slot ${config.slot} is in use by server process ${state.active_pid}: another capture?`),
          { code: "55006" },
        );
      }
      if (state && !state.snapshot_done) {
        logger.warn(`slot ${config.slot} exists but its first snapshot never reached Kafka: dropping it to start over`);
        await sql`select pg_drop_replication_slot(${config.slot})`;
        state = undefined;
      }
      if (!state) {
        const snapshot = await createSlotAndSnapshot(repl);
        if (!snapshot.complete) return snapshot.rows;
        rows = snapshot.rows;
        state = await slotState(sql, config.slot);
      }
      const confirmed = parseLsn(state!.confirmed ?? "0/0");
      if (confirmed > stats.acknowledgedLsn) stats.acknowledgedLsn = confirmed;
      // Neither the slot name nor the publication name can be a parameter of a replication
      // command; both are checked against /^[a-z0-9_]{1,63}$/ by loadCaptureConfig.
      const stream = await repl.unsafe(
        `START_REPLICATION SLOT ${config.slot} LOGICAL ${formatLsn(stats.acknowledgedLsn)} ` +
          `(proto_version '1', publication_names '${config.publication}')`,
      ).writable() as unknown as Duplex;
      stats.connected.database = true;
      streamsOpened++;
      stats.retainedWalBytes = await retainedWal(sql, config.slot);
      logger.info(`streaming from slot ${config.slot}`, {
        from: formatLsn(stats.acknowledgedLsn),
        retainedWalBytes: stats.retainedWalBytes,
      });
      const sendStatus = () => {
        if (!stream.writableEnded && !stream.destroyed) {
          stream.write(standbyStatusUpdate(stats.acknowledgedLsn, nowMicros()));
        }
      };
      statusTimer = setInterval(sendStatus, statusEveryS * 1000);
      await readStream(stream, sendStatus);
      await publisher.flush();
      sendStatus();
      // CopyDone; the server's answer ends the stream (bounded: a server that is going away may not answer).
      await Promise.race([new Promise<void>((resolve) => stream.end(resolve)), sleep(5_000)]);
      return rows;
    } finally {
      clearInterval(statusTimer);
      await repl.end({ timeout: 2 }).catch(() => {});
    }
  }

  /** Reads the stream until a stop; publishes changes, acknowledges what Kafka acknowledged. */
  async function readStream(stream: Duplex, sendStatus: () => void) {
    const relations = new Map<number, TableSpec>();
    let tx = { xid: 0, commitUs: 0n };
    let lastCommitLsn: Lsn | null = null;
    let inTransaction = false;
    const iterator = stream[Symbol.asyncIterator]();
    // A stop wakes a quiet stream by asking the server for a keepalive; racing every read against
    // a stop promise instead would keep every message alive in that promise's reactions.
    let wakeTimer: ReturnType<typeof setTimeout> | undefined;
    options.stopRequested.then(() => {
      if (stream.writableEnded || stream.destroyed) return;
      stream.write(standbyStatusUpdate(stats.acknowledgedLsn, nowMicros(), true));
      wakeTimer = setTimeout(() => stream.destroy(new Error("PostgreSQL did not answer the stop")), 10_000);
    });
    let idleFlush: ReturnType<typeof setTimeout> | undefined;
    try {
      while (!stopping) {
        const next = await iterator.next();
        if (next.done) {
          throw Object.assign(new Error("PostgreSQL ended the replication stream"), { code: "CONNECTION_ENDED" });
        }
        const frame = decodeFrame(next.value);
        if (frame.type === "keepalive") {
          // Between transactions, with every change received so far acknowledged by Kafka, there is
          // nothing unpublished before the server's position: confirming it keeps the slot from
          // holding WAL while the tables are quiet, and lets PostgreSQL 15 shut down (a walsender
          // waits at shutdown until the client confirms everything sent).
          if (!inTransaction && publisher.settled && frame.walEnd > stats.acknowledgedLsn) {
            stats.acknowledgedLsn = frame.walEnd;
          }
          if (frame.replyRequested) sendStatus();
          continue;
        }
        const message: PgOutputMessage = decodePgOutput(frame.data);
        switch (message.tag) {
          case "begin":
            tx = { xid: message.xid, commitUs: pgTimeToUnixMicros(message.commitTime) };
            inTransaction = true;
            break;
          case "relation":
            relations.set(message.relation.relationId, checkRelation(message.relation));
            break;
          case "insert":
          case "update":
          case "delete": {
            const spec = relations.get(message.relationId);
            if (!spec) throw new CaptureError(`a change refers to relation ${message.relationId}, never described`);
            const change: RowChange = {
              op: message.tag === "insert" ? "c" : message.tag === "update" ? "u" : "d",
              before: message.tag === "insert" ? null : message.before,
              after: message.tag === "delete" ? null : message.after,
              source: { tsUs: tx.commitUs, txId: tx.xid, lsn: frame.walStart, lastCommitLsn },
            };
            publisher.add(encoder.encode(spec, change, nowMicros()), spec.table, change.op);
            break;
          }
          case "commit":
            inTransaction = false;
            lastCommitLsn = message.endLsn;
            publisher.commit(message.endLsn);
            break;
          case "truncate":
            // Debezium's default (skipped.operations=t) publishes no truncate events either.
            logger.warn("a TRUNCATE of a captured table was skipped, as Debezium does by default");
            break;
        }
        // One batch is sent while the next is read; reading waits while two batches' worth is
        // unacknowledged, so memory stays bounded and PostgreSQL holds the rest (the walsender waits).
        if (publisher.pending >= config.batchSize) publisher.flush().then(sendStatus, () => {});
        if (publisher.unacknowledged >= 2 * config.batchSize) {
          await publisher.flush();
          sendStatus();
        } else if (publisher.pending > 0 && !idleFlush) {
          // A quiet stream still gets its changes out (and acknowledged) within 50 ms.
          idleFlush = setTimeout(() => {
            idleFlush = undefined;
            publisher.flush().then(sendStatus, () => {});
          }, 50);
        }
      }
    } finally {
      clearTimeout(idleFlush);
      clearTimeout(wakeTimer);
    }
  }

  /** Creates the slot and publishes the rows of its exported snapshot; returns how many. */
  async function createSlotAndSnapshot(repl: Replication): Promise<{ rows: number; complete: boolean }> {
    const [slot] = await repl.unsafe(`CREATE_REPLICATION_SLOT ${config.slot} LOGICAL pgoutput EXPORT_SNAPSHOT`)
      .simple();
    const consistentPoint = parseLsn(slot.consistent_point);
    const snapshotName = String(slot.snapshot_name);
    if (!/^[0-9A-F-]+$/.test(snapshotName)) throw new CaptureError(`unexpected snapshot name ${snapshotName}`);
    logger.info(`created slot ${config.slot}: reading the first snapshot`, { consistentPoint: slot.consistent_point });
    const readUs = nowMicros();
    let rows = 0;
    let complete = true;
    // The exported snapshot lives until the replication connection's next command, so it is read
    // in full, and its rows acknowledged by Kafka, before START_REPLICATION.
    await sql.begin("isolation level repeatable read read only", async (tx) => {
      // SET TRANSACTION SNAPSHOT takes no parameter; the name was checked above.
      await tx.unsafe(`set transaction snapshot '${snapshotName}'`);
      await tx`set local datestyle to iso`;
      await tx`set local timezone to 'UTC'`;
      const counts = await tx<{ users: number; orders: number }[]>`
        select (select count(*) from users)::int as users, (select count(*) from orders)::int as orders`;
      const total = counts[0].users + counts[0].orders;
      tables: for (const spec of [CAPTURED_TABLES.users, CAPTURED_TABLES.orders]) {
        const inTable = counts[0][spec.table];
        let index = 0;
        const cursor = tx`select * from ${tx(spec.table)}`.raw().cursor(1000);
        for await (const batch of cursor) {
          for (const raw of batch as unknown as (Uint8Array | null)[][]) {
            const values = raw.map((v) => (v === null ? null : utf8.decode(v)));
            const marker = snapshotMarker(rows, total, index, inTable);
            const change: RowChange = {
              op: "r",
              before: null,
              after: values,
              source: { tsUs: readUs, snapshot: marker, txId: null, lsn: consistentPoint, lastCommitLsn: null },
            };
            publisher.add(encoder.encode(spec, change, nowMicros()), spec.table, "r");
            rows++;
            index++;
          }
          if (publisher.unacknowledged >= config.batchSize) await publisher.flush();
          if (stopping) {
            complete = false;
            break tables;
          }
        }
      }
    });
    await publisher.flush();
    if (!complete) {
      logger.warn(`stopped during the first snapshot after ${rows} rows: the next start takes it again`);
      return { rows, complete };
    }
    await sql`
      insert into cdc_capture_state (slot_name, snapshot_lsn) values (${config.slot}, ${slot.consistent_point})
      on conflict (slot_name) do update set snapshot_lsn = excluded.snapshot_lsn, snapshot_done_at = now()`;
    stats.acknowledgedLsn = consistentPoint;
    logger.info(`first snapshot published: ${rows} rows`);
    return { rows, complete };
  }
}

/** Debezium's `source.snapshot` of the `index`-th row of a table among `total` snapshot rows. */
export function snapshotMarker(overall: number, total: number, index: number, inTable: number): SnapshotMarker {
  if (overall === 0) return "first";
  if (overall === total - 1) return "last";
  if (index === 0) return "first_in_data_collection";
  if (index === inTable - 1) return "last_in_data_collection";
  return "true";
}
