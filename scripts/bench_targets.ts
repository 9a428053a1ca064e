/**
 * The bench's targets as data: which figure of its report each one bounds, how, and which issue
 * set it; and their generic evaluation into the report's `targets`.
 * @module
 */

/** One target of the bench. */
export interface Target {
  /** Its key in the report's `targets`. */
  name: string;
  /** Dotted paths of the figures it bounds in the report; the worst of them is compared. */
  figures: string[];
  /** `atLeast`: the figure must reach the threshold; `atMost`: it must not exceed it. */
  comparison: "atLeast" | "atMost";
  threshold: number;
  /** The issue that set it; "the brief" for the project's first targets. */
  issue: string;
  /**
   * The part of the bench that measures it: `pipeline`; `capture-peer`, which also runs alone;
   * `jdbc-sink`, which `--quick` skips.
   */
  section: "pipeline" | "capture-peer" | "jdbc-sink";
}

/** A target evaluated: the figure, its bound under the name the comparison gives it, and whether it is met. */
export type TargetResult = { value: number; min: number; met: boolean } | { value: number; max: number; met: boolean };

/** A row maker for one section's targets: one figure's path, or several (the worst is compared). */
const rowsOf =
  (section: Target["section"]) =>
  (name: string, figures: string | string[], comparison: Target["comparison"], threshold: number, issue: string) =>
    ({ name, figures: [figures].flat(), comparison, threshold, issue, section }) satisfies Target;
const pipeline = rowsOf("pipeline");
const capturePeer = rowsOf("capture-peer");
const jdbcSink = rowsOf("jdbc-sink");
const captureRun = (figure: string) =>
  ["streaming", "snapshot"].map((run) => `captureVsDebezium.capture.${run}.${figure}`);

/** Every target, in the order the report lists them. */
export const TARGETS: readonly Target[] = [
  pipeline("producerEventsPerS", "figures.producerEventsPerS", "atLeast", 100_000, "the brief"),
  pipeline("standaloneProducerEventsPerS", "figures.standaloneProducerEventsPerS", "atLeast", 100_000, "issue 14"),
  pipeline("consumerEventsPerS", "figures.consumerEventsPerS", "atLeast", 60_000, "issue 30"),
  pipeline("standaloneConsumerEventsPerS", "figures.standaloneConsumerEventsPerS", "atLeast", 50_000, "issue 14"),
  pipeline("consumerVsOneEventPerTx", "ratios.consumerVsOneEventPerTx", "atLeast", 30, "the brief"),
  pipeline("producerVsJavaPerfTool", "ratios.producerVsJavaPerfTool", "atLeast", 0.5, "the brief"),
  pipeline("consumerVsCopy", "ratios.consumerVsCopy", "atLeast", 0.4, "issue 14"),
  pipeline("consumerVsCeiling", "profile.consumerVsCeiling", "atLeast", 0.85, "issue 30"),
  pipeline("consumerMachineBusyShare", "profile.consumer.machineBusyShare", "atLeast", 0.9, "issue 30"),
  pipeline("consumerMicrosPerEvent", "profile.consumer.cpuMicrosPerEvent.consumer", "atMost", 8, "issue 30"),
  pipeline("consumerPostgresMicrosPerEvent", "profile.consumer.cpuMicrosPerEvent.postgres", "atMost", 12, "issue 30"),
  pipeline("idleConsumerCpuPercent", "figures.idleConsumerCpuPercent", "atMost", 1, "issue 14"),
  pipeline("idleStandaloneConsumerCpuPercent", "figures.idleStandaloneConsumerCpuPercent", "atMost", 1, "issue 14"),
  pipeline("producerPeakRssMb", "figures.producerPeakRssMb", "atMost", 300, "issue 14"),
  pipeline("standaloneProducerPeakRssMb", "figures.standaloneProducerPeakRssMb", "atMost", 300, "issue 14"),
  pipeline("consumerPeakRssMb", "figures.consumerPeakRssMb", "atMost", 300, "issue 14"),
  pipeline("standaloneConsumerPeakRssMb", "figures.standaloneConsumerPeakRssMb", "atMost", 300, "issue 14"),
  capturePeer("captureStreamingVsDebezium", "ratios.captureVsDebeziumStreamingRecordsPerS", "atLeast", 2, "issue 22"),
  capturePeer("captureSnapshotVsDebezium", "ratios.captureVsDebeziumSnapshotRecordsPerS", "atLeast", 2, "issue 22"),
  capturePeer(
    "captureIncrementalVsDebezium",
    "ratios.captureVsDebeziumIncrementalRecordsPerS",
    "atLeast",
    2,
    "issue 27",
  ),
  capturePeer("captureCpuSPer1000Changes", captureRun("cpuSPer1000.process"), "atMost", 0.05, "issue 22"),
  capturePeer("capturePeakRssMb", captureRun("peakRssMb"), "atMost", 150, "issue 22"),
  jdbcSink("consumerVsJdbcSinkRate", "ratios.consumerVsJdbcSinkRate", "atLeast", 4, "issue 30"),
  jdbcSink("consumerVsJdbcSinkCpuPerRecord", "ratios.consumerVsJdbcSinkCpuPerRecord", "atMost", 0.2, "issue 30"),
];

/** The number at dotted `path` in `report`; throws naming the path when there is none. */
function figureAt(report: Record<string, unknown>, path: string): number {
  const value = path.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown>)?.[key], report);
  if (typeof value !== "number") {
    throw new TypeError(`target figure ${path} must be a number in the report: got ${value}`);
  }
  return value;
}

/** Evaluates `targets` on `report`'s figures: each one's worst figure against its threshold. */
export function evaluateTargets(
  report: Record<string, unknown>,
  targets: readonly Target[] = TARGETS,
): Record<string, TargetResult> {
  return Object.fromEntries(targets.map(({ name, figures, comparison, threshold }) => {
    const values = figures.map((path) => figureAt(report, path));
    if (comparison === "atLeast") {
      const value = Math.min(...values);
      return [name, { value, min: threshold, met: value >= threshold }];
    }
    const value = Math.max(...values);
    return [name, { value, max: threshold, met: value <= threshold }];
  }));
}
