/**
 * Prometheus metrics without a metrics library: a tiny registry (counter, gauge, histogram)
 * rendered in text exposition format 0.0.4, the pipeline's metric definitions, and the HTTP
 * endpoint that serves `/metrics` and `/health`.
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { CaptureStats } from "./capture.ts";
import type { ConsumeStats } from "./consumer.ts";
import type { Logger } from "./log.ts";
import type { ProduceStats } from "./producer.ts";

/** Label names and values of one sample. */
export type Labels = Record<string, string>;

/** One value of a metric, with its labels. */
export interface Sample {
  /** Labels of the sample; empty for an unlabelled metric. */
  labels: Labels;
  /** The value. */
  value: number;
}

/** Options of a counter or a gauge. */
export interface MetricOptions {
  /** Metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
  name: string;
  /** One line saying what is measured. */
  help: string;
  /** Reads the samples at scrape time from state kept elsewhere; replaces `inc`/`set` values. */
  collect?: () => Sample[];
}

/** Options of a histogram. */
export interface HistogramOptions {
  /** Metric name, `[a-zA-Z_:][a-zA-Z0-9_:]*`. */
  name: string;
  /** One line saying what is measured. */
  help: string;
  /** Upper bounds of the buckets, ascending; `+Inf` is added. */
  buckets: number[];
}

/** A value that only goes up. */
export interface Counter {
  /** Adds `by` (default 1) to the sample with `labels`. */
  inc(labels?: Labels, by?: number): void;
}

/** A value that goes up and down. */
export interface Gauge {
  /** Sets the sample with `labels` to `value`. */
  set(labels: Labels, value: number): void;
}

/** Observations counted into buckets, with their sum and count. */
export interface Histogram {
  /** Records one observation for the sample with `labels`. */
  observe(value: number, labels?: Labels): void;
}

interface HistogramState {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

type Family =
  | { type: "counter" | "gauge"; name: string; help: string; values: Map<string, Sample>; collect?: () => Sample[] }
  | { type: "histogram"; name: string; help: string; buckets: number[]; states: Map<string, HistogramState> };

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A set of metrics rendered together. */
export class Registry {
  #families: Family[] = [];

  /** Registers a counter. */
  counter(options: MetricOptions): Counter {
    const family = this.#add({ type: "counter", ...options, values: new Map() });
    return {
      inc: (labels = {}, by = 1) => {
        if (!(by >= 0)) throw new RangeError(`counter ${options.name} can only go up: got ${by}`);
        const key = labelKey(labels);
        const sample = family.values.get(key) ?? { labels, value: 0 };
        sample.value += by;
        family.values.set(key, sample);
      },
    };
  }

  /** Registers a gauge. */
  gauge(options: MetricOptions): Gauge {
    const family = this.#add({ type: "gauge", ...options, values: new Map() });
    return {
      set: (labels, value) => {
        const key = labelKey(labels);
        const sample = family.values.get(key) ?? { labels, value };
        sample.value = value;
        family.values.set(key, sample);
      },
    };
  }

  /** Registers a histogram. */
  histogram(options: HistogramOptions): Histogram {
    const { buckets } = options;
    if (buckets.length === 0 || buckets.some((b, i) => !Number.isFinite(b) || (i > 0 && b <= buckets[i - 1]))) {
      throw new RangeError(
        `buckets of ${options.name} must be finite and strictly ascending: got ${JSON.stringify(buckets)}`,
      );
    }
    const family = this.#add({ type: "histogram", ...options, buckets: [...buckets], states: new Map() });
    return {
      observe: (value, labels = {}) => {
        const key = labelKey(labels);
        const state = family.states.get(key) ?? { labels, counts: buckets.map(() => 0), sum: 0, count: 0 };
        const at = buckets.findIndex((b) => value <= b);
        if (at >= 0) state.counts[at]++;
        state.sum += value;
        state.count++;
        family.states.set(key, state);
      },
    };
  }

  /** All metrics in Prometheus text exposition format 0.0.4. */
  render(): string {
    const lines: string[] = [];
    for (const family of this.#families) {
      lines.push(`# HELP ${family.name} ${family.help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n")}`);
      lines.push(`# TYPE ${family.name} ${family.type}`);
      if (family.type === "histogram") {
        for (const state of family.states.values()) {
          let cumulative = 0;
          family.buckets.forEach((bound, i) => {
            cumulative += state.counts[i];
            lines.push(sampleLine(`${family.name}_bucket`, { ...state.labels, le: formatNumber(bound) }, cumulative));
          });
          lines.push(sampleLine(`${family.name}_bucket`, { ...state.labels, le: "+Inf" }, state.count));
          lines.push(sampleLine(`${family.name}_sum`, state.labels, state.sum));
          lines.push(sampleLine(`${family.name}_count`, state.labels, state.count));
        }
        continue;
      }
      const samples = family.collect ? family.collect() : [...family.values.values()];
      for (const sample of samples) lines.push(sampleLine(family.name, sample.labels, sample.value));
    }
    return lines.length ? lines.join("\n") + "\n" : "";
  }

  #add<F extends Family>(family: F): F {
    if (!NAME.test(family.name)) throw new RangeError(`metric name must match ${NAME}: got "${family.name}"`);
    if (this.#families.some((f) => f.name === family.name)) {
      throw new RangeError(`metric ${family.name} is registered twice`);
    }
    this.#families.push(family);
    return family;
  }
}

function labelKey(labels: Labels): string {
  for (const name of Object.keys(labels)) {
    if (!LABEL.test(name) || name.startsWith("__")) {
      throw new RangeError(`label name must match ${LABEL}: got "${name}"`);
    }
  }
  return JSON.stringify(Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function sampleLine(name: string, labels: Labels, value: number): string {
  const pairs = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`
  );
  return `${name}${pairs.length ? `{${pairs.join(",")}}` : ""} ${formatNumber(value)}`;
}

function formatNumber(value: number): string {
  if (value === Infinity) return "+Inf";
  if (value === -Infinity) return "-Inf";
  return Number.isNaN(value) ? "NaN" : String(value);
}

/** Bucket bounds of batch sizes, in records. */
export const BATCH_SIZE_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
/** Bucket bounds of durations, in seconds. */
export const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const perTopic = (counts: Record<string, number>): Sample[] =>
  Object.entries(counts).map(([topic, value]) => ({ labels: { topic }, value }));

const connectedSamples = (connected: Record<string, boolean>): Sample[] =>
  Object.entries(connected).map(([dependency, up]) => ({ labels: { dependency }, value: up ? 1 : 0 }));

/** The consumer's metrics, read from `stats` at scrape time; hooks `stats.onBatch` for the histograms. */
export function consumeMetrics(stats: ConsumeStats): Registry {
  const registry = new Registry();
  registry.counter({
    name: "cdc_records_applied_total",
    help: "Records applied to PostgreSQL, per source topic.",
    collect: () => perTopic(stats.applied),
  });
  registry.counter({
    name: "cdc_records_dead_lettered_total",
    help: "Records written to the DLQ, per source topic.",
    collect: () => perTopic(stats.deadLettered),
  });
  registry.counter({
    name: "cdc_batches_total",
    help: "Partition batches applied and committed.",
    collect: () => [{ labels: {}, value: stats.batches }],
  });
  registry.counter({
    name: "cdc_retries_total",
    help: "Waits for an outage (Kafka, PostgreSQL) or for an order's missing user.",
    collect: () => [{ labels: {}, value: stats.retries }],
  });
  registry.gauge({
    name: "cdc_consumer_lag",
    help: "Records not yet committed by the consumer group, per partition.",
    collect: () =>
      Object.entries(stats.lag).map(([key, value]) => {
        const at = key.lastIndexOf(":");
        return { labels: { topic: key.slice(0, at), partition: key.slice(at + 1) }, value };
      }),
  });
  registry.gauge({
    name: "cdc_connected",
    help: "Whether the consumer is connected to a dependency (1) or not (0).",
    collect: () => connectedSamples(stats.connected),
  });
  const batchSize = registry.histogram({
    name: "cdc_batch_size_records",
    help: "Records per committed partition batch.",
    buckets: BATCH_SIZE_BUCKETS,
  });
  const applyDuration = registry.histogram({
    name: "cdc_apply_duration_seconds",
    help: "Time to apply one partition batch in PostgreSQL.",
    buckets: DURATION_BUCKETS,
  });
  const previous = stats.onBatch;
  stats.onBatch = (size, applyMs) => {
    previous?.(size, applyMs);
    batchSize.observe(size);
    applyDuration.observe(applyMs / 1000);
  };
  return registry;
}

/** The producer's metrics, read from `stats` at scrape time; hooks `stats.onSend` for the histogram. */
export function produceMetrics(stats: ProduceStats): Registry {
  const registry = new Registry();
  registry.counter({
    name: "cdc_records_published_total",
    help: "Records published and acknowledged by Kafka, per topic.",
    collect: () => perTopic(stats.published),
  });
  registry.counter({
    name: "cdc_send_retries_total",
    help: "Sends to Kafka attempted again after a failure.",
    collect: () => [{ labels: {}, value: stats.sendRetries }],
  });
  registry.gauge({
    name: "cdc_connected",
    help: "Whether the producer is connected to a dependency (1) or not (0).",
    collect: () => connectedSamples(stats.connected),
  });
  const sendDuration = registry.histogram({
    name: "cdc_send_duration_seconds",
    help: "Time for one batch send to be acknowledged, retries included.",
    buckets: DURATION_BUCKETS,
  });
  const previous = stats.onSend;
  stats.onSend = (sendMs) => {
    previous?.(sendMs);
    sendDuration.observe(sendMs / 1000);
  };
  return registry;
}

/** The capture's metrics, read from `stats` at scrape time; hooks `stats.onSend` for the histogram. */
export function captureMetrics(stats: CaptureStats): Registry {
  const registry = produceMetrics(stats);
  registry.counter({
    name: "cdc_capture_changes_total",
    help: "Row changes captured and acknowledged by Kafka, per table and Debezium op (r, c, u, d).",
    collect: () =>
      Object.entries(stats.captured).map(([key, value]) => {
        const [table, op] = key.split(".");
        return { labels: { table, op }, value };
      }),
  });
  registry.gauge({
    name: "cdc_capture_acknowledged_lsn",
    help: "The slot position acknowledged to PostgreSQL (every change before it is in Kafka), as a byte offset.",
    collect: () => [{ labels: {}, value: Number(stats.acknowledgedLsn) }],
  });
  registry.gauge({
    name: "cdc_capture_slot_retained_wal_bytes",
    help: "WAL the replication slot keeps on the server (current WAL position minus the slot's restart_lsn).",
    collect: () => (stats.retainedWalBytes === null ? [] : [{ labels: {}, value: stats.retainedWalBytes }]),
  });
  return registry;
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
export function healthResponse(dependencies: Record<string, boolean>): { status: number; body: string } {
  const down = Object.keys(dependencies).filter((name) => !dependencies[name]);
  const states = Object.fromEntries(Object.entries(dependencies).map(([name, up]) => [name, up ? "up" : "down"]));
  return {
    status: down.length ? 503 : 200,
    body: JSON.stringify({ status: down.length ? "unavailable" : "ok", ...(down.length ? { down } : {}), ...states }),
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
      send(200, "text/plain; version=0.0.4; charset=utf-8", registry.render());
    } else if (path === "/health") {
      const { status, body } = healthResponse(health());
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
