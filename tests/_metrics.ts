/**
 * Reading /metrics as the commands serve it, for the metrics tests of both tiers.
 * @module
 */
import type { Registry } from "prom-client";
import { createLogger } from "../lib/log.ts";
import { serveMetrics } from "../lib/metrics.ts";

const quietLogger = createLogger({ component: "test", write: () => {} });

/** Serves `registry` on a free port, as the commands do, and returns the text of one GET /metrics. */
export async function scrape(registry: Registry): Promise<{ text: string; contentType: string | null }> {
  const server = await serveMetrics({ port: 0, host: "127.0.0.1", registry, health: () => ({}), logger: quietLogger });
  try {
    const response = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    return { text: await response.text(), contentType: response.headers.get("content-type") };
  } finally {
    await server.close();
  }
}

/** The value of the first sample in `text` that `line` matches (its group 1), NaN when none does. */
export function sampleValue(text: string, line: RegExp): number {
  const m = line.exec(text);
  return m ? Number(m[1]) : NaN;
}
