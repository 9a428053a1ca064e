/**
 * The bench's standalone phases: the binaries `deno task build` makes (Bun runtime) producing the
 * run's events into topics of their own and draining them into a database of their own.
 * @module
 */
import { measure, type Measured } from "./bench_measure.ts";
import { drain } from "./bench_consumer.ts";
import { produceArgs } from "./bench_producer.ts";
import { type BenchRun, progress, timed } from "./bench_run.ts";
import { decode } from "./_util.ts";

/** The standalone producer's and consumer's runs. */
export interface StandalonePhases {
  produce: Measured;
  consume: Measured;
}

/** Builds `dist/cdc-produce` and `dist/cdc-consume` with `deno task build`. */
async function buildBinaries(root: string): Promise<void> {
  const built = await new Deno.Command("deno", { args: ["task", "build"], cwd: root, stdout: "null", stderr: "piped" })
    .output();
  if (!built.success) throw new Error(`deno task build failed: ${decode(built.stderr)}`);
}

/** Builds the binaries, then measures them producing and draining the run's events. */
export async function standalonePhases(run: BenchRun): Promise<StandalonePhases> {
  await timed("building the standalone binaries (deno task build)", () => buildBinaries(run.root));
  const produce = await timed(`producing ${run.events} events with the standalone binary (Bun)`, () =>
    measure(
      run,
      [`${run.root}dist/cdc-produce`, ...produceArgs(run)],
      undefined,
      { ...run.env, USERS_TOPIC: run.binaryEnv.USERS_TOPIC, ORDERS_TOPIC: run.binaryEnv.ORDERS_TOPIC },
    ));
  progress(
    `standalone producer: ${Math.round(run.events / produce.seconds)} events/s, peak RSS ${produce.peakRssMb} MB`,
  );
  const consume = await timed(
    "draining that backlog into PostgreSQL with the standalone consumer (Bun)",
    () => drain(run, [`${run.root}dist/cdc-consume`], run.binaryEnv),
  );
  progress(
    `standalone consumer: ${Math.round(run.events / consume.seconds)} events/s, peak RSS ${consume.peakRssMb} MB`,
  );
  return { produce, consume };
}
