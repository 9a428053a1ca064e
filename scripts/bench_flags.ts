/**
 * The bench's command line: `[--quick] [--events N] [--capture-update-rows N]
 * [--capture-snapshot-rows N] [--only capture-peer] [--jdbc-sink | --no-jdbc-sink]`, read and checked.
 * @module
 */
import { parseArgs } from "node:util";

/** What the bench was asked to run, and on how much data. */
export interface BenchFlags {
  /** A short run (20,000 events, smaller Debezium section) that checks the bench works. */
  quick: boolean;
  /** Events the producer generates and the consumer drains. */
  events: number;
  /** Rows of the capture-vs-Debezium section's UPDATE. */
  peerUpdateRows: number;
  /** Rows of its first snapshot (users and orders). */
  peerSnapshotRows: number;
  /** `--only capture-peer`: the capture-vs-Debezium section alone. */
  onlyPeer: boolean;
  /** Runs the consumer's peer, Kafka Connect with Debezium's JDBC sink: on by default, off for `--quick`. */
  jdbcSink: boolean;
}

type IntegerFlag = "events" | "capture-update-rows" | "capture-snapshot-rows";

/** Reads the bench's flags; throws a RangeError naming the flag, the rule and the value it got. */
export function parseBenchFlags(args: string[]): BenchFlags {
  const { values } = parseArgs({
    args: args.filter((a) => a !== "--"),
    options: {
      quick: { type: "boolean" },
      events: { type: "string" },
      "capture-update-rows": { type: "string" },
      "capture-snapshot-rows": { type: "string" },
      only: { type: "string" },
      "jdbc-sink": { type: "boolean" },
      "no-jdbc-sink": { type: "boolean" },
    },
  });
  const quick = Boolean(values.quick);
  const integer = (name: IntegerFlag, fallback: number, min: number) => {
    const value = Number(values[name] ?? fallback);
    if (!Number.isInteger(value) || value < min) {
      throw new RangeError(`--${name} must be an integer of at least ${min}: got ${values[name]}`);
    }
    return value;
  };
  const flags = {
    quick,
    events: integer("events", quick ? 20_000 : 1_000_000, 1000),
    peerUpdateRows: integer("capture-update-rows", quick ? 20_000 : 200_000, 100),
    peerSnapshotRows: integer("capture-snapshot-rows", quick ? 50_000 : 1_000_000, 100),
    onlyPeer: values.only === "capture-peer",
    jdbcSink: values["no-jdbc-sink"] ? false : values["jdbc-sink"] ?? !quick,
  };
  if (values["jdbc-sink"] && values["no-jdbc-sink"]) {
    throw new RangeError("--jdbc-sink and --no-jdbc-sink cannot both be given");
  }
  if (values.only !== undefined && !flags.onlyPeer) {
    throw new RangeError(`--only must be capture-peer (the one section that runs alone): got ${values.only}`);
  }
  if (flags.peerUpdateRows > flags.peerSnapshotRows - Math.round(flags.peerSnapshotRows * 0.2)) {
    throw new RangeError(
      `--capture-update-rows must be at most the orders among --capture-snapshot-rows (80%): got ` +
        `${flags.peerUpdateRows} and ${flags.peerSnapshotRows}`,
    );
  }
  return flags;
}
