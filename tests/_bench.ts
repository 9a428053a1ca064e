/**
 * Runs scripts/bench.ts as `deno task bench` does, for the bench's tests of both tiers.
 * @module
 */
import { runProgram, type RunResult } from "./_helpers.ts";

/** Runs scripts/bench.ts with `args` and the permissions `deno task bench` gives it. */
export function bench(...args: string[]): Promise<RunResult> {
  const permissions = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-run", "--allow-sys"];
  return runProgram(Deno.execPath(), ["run", ...permissions, "scripts/bench.ts", ...args]);
}
