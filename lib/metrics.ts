/**
 * Prometheus metrics through prom-client: the pipeline's metrics, read from a run's stats
 * (lib/stats.ts) at scrape time, durations told through the observer the run is given, the
 * library's default process metrics, and the HTTP endpoint that serves `/metrics` and `/health`.
 * @module
 */
import { readFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import process from "node:process";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { Logger } from "./log.ts";
import type { CaptureStats, ConsumeObserver, ConsumeStats, ProduceStats, PublishStats, SendObserver } from "./stats.ts";
import { describeError } from "./errors.ts";
import { parsePartitionKey } from "./partition_key.ts";

/** Bucket bounds of batch sizes, in records. */
export const BATCH_SIZE_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/** Bucket bounds of durations, in seconds. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type Sample = [labels: Record<string, string>, value: number];

interface ScrapedOptions {
  /** Metric name. */
  name: string;
  /** One line saying what is measured. */
  help: string;
  /** Names of the labels of every sample. */
  labelNames: string[];
  /** The samples now, read from the run's stats. */
  read: () => Sample[];
}

/** Registers a counter or gauge whose values are kept in the run's stats and read at scrape time. */
function scraped(Metric: typeof Counter | typeof Gauge, registry: Registry, options: ScrapedOptions): void {
  const { read, ...definition } = options;
  new Metric({
    ...definition,
    registers: [registry],
    collect(this: Counter | Gauge) {
      this.reset();
      for (const [labels, value] of read()) this.inc(labels, value);
    },
  });
}

const perTopic = (counts: Readonly<Record<string, number>>): Sample[] =>
  Object.entries(counts).map(([topic, value]) => [{ topic }, value]);

const connectedSamples = (connected: Record<string, boolean>): Sample[] =>
  Object.entries(connected).map(([dependency, up]) => [{ dependency }, up ? 1 : 0]);

/**
 * Event-loop delay sampling period of the default metrics, in milliseconds. prom-client's 10 ms
 * keeps an idle process measurably busy (docs/PERFORMANCE.md), and a lag worth reporting is
 * longer than 100 ms.
 */
const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * A registry with prom-client's default process metrics (CPU seconds, resident memory,
 * event-loop lag, heap). prom-client reads resident memory and open descriptors from
 * /proc/self, which Deno refuses without --allow-all: where that read fails, resident memory
 * comes from process.memoryUsage() and the values that would read 0 are left out.
 */
function processRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  try {
    readFileSync("/proc/self/status");
  } catch {
    const fromProc = ["process_resident_memory_bytes", "process_virtual_memory_bytes", "process_heap_bytes"];
    for (const name of [...fromProc, "process_open_fds"]) registry.removeSingleMetric(name);
    new Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      registers: [registry],
      collect() {
        this.set(process.memoryUsage().rss);
      },
    });
  }
  return registry;
}

/** A command's metrics: the registry to serve, and the observer the run tells its durations. */
export interface RunMetrics<O> {
  /** Served at `/metrics`. */
  registry: Registry;
  /** Passed to the run: fills the histograms. */
  observer: O;
}

/** The consumer's metrics, read from `stats` at scrape time; the observer fills the histograms. */
export function consumeMetrics(stats: ConsumeStats): RunMetrics<ConsumeObserver> {
  const registry = processRegistry();
  scraped(Counter, registry, {
    name: "cdc_records_applied_total",
    help: "Records applied to PostgreSQL, per source topic.",
    labelNames: ["topic"],
    read: () => perTopic(stats.applied),
  });
  scraped(Counter, registry, {
    name: "cdc_records_dead_lettered_total",
    help: "Records written to the DLQ, per source topic.",
    labelNames: ["topic"],
    read: () => perTopic(stats.deadLettered),
  });
  scraped(Counter, registry, {
    name: "cdc_batches_total",
    help: "Partition batches applied and committed.",
    labelNames: [],
    read: () => [[{}, stats.batches]],
  });
  scraped(Counter, registry, {
    name: "cdc_retries_total",
    help: "Waits for an outage (Kafka, PostgreSQL) or for an order's missing user.",
    labelNames: [],
    read: () => [[{}, stats.retries]],
  });
  scraped(Gauge, registry, {
    name: "cdc_consumer_lag",
    help: "Records not yet committed by the consumer group, per partition.",
    labelNames: ["topic", "partition"],
    read: () =>
      Object.entries(stats.lag).map(([key, value]) => {
        const { topic, partition } = parsePartitionKey(key);
        return [{ topic, partition: String(partition) }, value];
      }),
  });
  scraped(Gauge, registry, {
    name: "cdc_connected",
    help: "Whether the consumer is connected to a dependency (1) or not (0).",
    labelNames: ["dependency"],
    read: () => connectedSamples(stats.health()),
  });
  const batchSize = new Histogram({
    name: "cdc_batch_size_records",
    help: "Records per committed partition batch.",
    buckets: BATCH_SIZE_BUCKETS,
    registers: [registry],
  });
  const applyDuration = new Histogram({
    name: "cdc_apply_duration_seconds",
    help: "Time to apply one partition batch in PostgreSQL.",
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  const observer: ConsumeObserver = {
    batchCommitted(size, applyMs) {
      batchSize.observe(size);
      applyDuration.observe(applyMs / 1000);
    },
  };
  return { registry, observer };
}

/**
 * The metrics of a run that publishes to Kafka (produce, capture) into `registry`: records
 * acknowledged, retries, health, and the send-duration histogram its observer fills.
 */
function publishMetrics(
  registry: Registry,
  stats: PublishStats,
  who: string,
): SendObserver {
  scraped(Counter, registry, {
    name: "cdc_records_published_total",
    help: "Records published and acknowledged by Kafka, per topic.",
    labelNames: ["topic"],
    read: () => perTopic(stats.published),
  });
  scraped(Counter, registry, {
    name: "cdc_send_retries_total",
    help: "Sends to Kafka attempted again after a failure.",
    labelNames: [],
    read: () => [[{}, stats.sendRetries]],
  });
  scraped(Gauge, registry, {
    name: "cdc_connected",
    help: `Whether the ${who} is connected to a dependency (1) or not (0).`,
    labelNames: ["dependency"],
    read: () => connectedSamples(stats.health()),
  });
  const sendDuration = new Histogram({
    name: "cdc_send_duration_seconds",
    help: "Time for one batch send to be acknowledged, retries included.",
    buckets: DURATION_BUCKETS,
    registers: [registry],
  });
  return { batchSent: (sendMs) => sendDuration.observe(sendMs / 1000) };
}

/** The producer's metrics, read from `stats` at scrape time; the observer fills the send histogram. */
export function produceMetrics(stats: ProduceStats): RunMetrics<SendObserver> {
  const registry = processRegistry();
  const observer = publishMetrics(registry, stats, "producer");
  return { registry, observer };
}

/** The capture's metrics, read from `stats` at scrape time; the observer fills the send histogram. */
export function captureMetrics(stats: CaptureStats): RunMetrics<SendObserver> {
  const registry = processRegistry();
  const observer = publishMetrics(registry, stats, "capture");
  scraped(Counter, registry, {
    name: "cdc_capture_changes_total",
    help: "Row changes captured and acknowledged by Kafka, per table and Debezium op (r, c, u, d).",
    labelNames: ["table", "op"],
    read: () =>
      Object.entries(stats.captured).map(([key, value]) => {
        const [table, op] = key.split(".");
        return [{ table, op }, value];
      }),
  });
  scraped(Gauge, registry, {
    name: "cdc_capture_acknowledged_lsn",
    help: "The slot position acknowledged to PostgreSQL (every change before it is in Kafka), as a byte offset.",
    labelNames: [],
    read: () => [[{}, Number(stats.acknowledgedLsn)]],
  });
  scraped(Gauge, registry, {
    name: "cdc_capture_slot_retained_wal_bytes",
    help: "WAL the replication slot keeps on the server (current WAL position minus the slot's restart_lsn).",
    labelNames: [],
    read: () => (stats.retainedWalBytes === null ? [] : [[{}, stats.retainedWalBytes]]),
  });
  scraped(Counter, registry, {
    name: "cdc_snapshot_rows_total",
    help: "Rows published by the snapshots (first and incremental) of each table in this run.",
    labelNames: ["table"],
    read: () => stats.snapshots.figures().map((f) => [{ table: f.table }, f.total]),
  });
  scraped(Gauge, registry, {
    name: "cdc_snapshot_remaining_rows",
    help: "Rows a table's running snapshot has left against its count or estimate (pg_class.reltuples); 0 once done.",
    labelNames: ["table"],
    read: () => stats.snapshots.figures().map((f) => [{ table: f.table }, f.remaining]),
  });
  return { registry, observer };
}

/** Options of {@linkcode serveMetrics}. */
export interface MetricsServerOptions {
  /** TCP port; 0 picks a free one. */
  port: number;
  /** Address to listen on. @default "0.0.0.0" (Prometheus scrapes from elsewhere) */
  host?: string;
  /** Metrics served at `/metrics`. */
  registry: Registry;
  /** Whether each dependency is reachable; `/health` is 200 only when all are. */
  health: () => Record<string, boolean>;
  /** Figures `/health` adds to its body (the capture's snapshots), besides the dependencies. */
  details?: () => Record<string, unknown>;
  /** Where the listening address is logged. */
  logger: Logger;
}

/** A running metrics endpoint. */
export interface MetricsServer {
  /** The port actually listened on. */
  port: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/** The `/health` answer: HTTP status and JSON body naming each dependency up or down. */
export function healthResponse(
  dependencies: Record<string, boolean>,
  details: Record<string, unknown> = {},
): { status: number; body: string } {
  const down = Object.keys(dependencies).filter((name) => !dependencies[name]);
  const states = Object.fromEntries(Object.entries(dependencies).map(([name, up]) => [name, up ? "up" : "down"]));
  return {
    status: down.length ? 503 : 200,
    body: JSON.stringify({
      status: down.length ? "unavailable" : "ok",
      ...(down.length ? { down } : {}),
      ...states,
      ...details,
    }),
  };
}

/** Serves `GET /metrics` and `GET /health`; resolves once listening, after logging the address. */
export function serveMetrics(options: MetricsServerOptions): Promise<MetricsServer> {
  const { port, host = "0.0.0.0", registry, health, logger } = options;
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const path = (request.url ?? "/").split("?")[0];
    const send = (status: number, type: string, body: string) => {
      response.writeHead(status, { "content-type": type, "connection": "close" });
      response.end(request.method === "HEAD" ? undefined : body);
    };
    if (request.method !== "GET" && request.method !== "HEAD") {
      send(405, "text/plain; charset=utf-8", "only GET\n");
    } else if (path === "/metrics") {
      registry.metrics().then(
        (text) => send(200, registry.contentType, text),
        (error) => send(500, "text/plain; charset=utf-8", `metrics failed: ${describeError(error)}\n`),
      );
    } else if (path === "/health") {
      const { status, body } = healthResponse(health(), options.details?.());
      send(status, "application/json", body + "\n");
    } else {
      send(404, "text/plain; charset=utf-8", "not found: try /metrics or /health\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", (error: Error & { code?: string }) => {
      reject(new Error(`cannot serve metrics on ${host}:${port}: ${error.code ?? error.message}`));
    });
    server.listen(port, host, () => {
      const actual = (server.address() as AddressInfo).port;
      logger.info(`metrics on http://127.0.0.1:${actual}`, { listening: `${host}:${actual}` });
      resolve({
        port: actual,
        close: () =>
          new Promise<void>((done) => {
            (server as { closeAllConnections?: () => void }).closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
  });
}

/**
 * Runs `work` with the run's observer while `/metrics` and `/health` are served on `port`, and
 * stops serving when it ends; without a port nothing is served and the observer is undefined.
 */
export async function withMetrics<O, T>(
  options: Omit<MetricsServerOptions, "port" | "registry"> & { port?: number; metrics: () => RunMetrics<O> },
  work: (observer: O | undefined) => Promise<T>,
): Promise<T> {
  if (options.port === undefined) return await work(undefined);
  const { registry, observer } = options.metrics();
  const server = await serveMetrics({ ...options, port: options.port, registry });
  try {
    return await work(observer);
  } finally {
    await server.close();
  }
}
