/**
 * How the bench measures a command: the command line of a `deno task`, its run sampled from
 * /proc for resident memory and CPU, and the CPU the services and the machine spent meanwhile.
 * @module
 */
import { brokerPids, type MachineCpu, machineCpu, ownCpuSeconds, postgresPids, procStats } from "./_proc.ts";
import type { BenchRun } from "./bench_run.ts";
import { sleep } from "./_util.ts";

/** One measured run of a command. */
export interface Measured {
  seconds: number;
  peakRssMb: number;
  stderr: string;
  /** CPU seconds of the command itself, of PostgreSQL's and Kafka's processes, and of the whole machine. */
  cpu: CpuShares;
}

/** CPU seconds (user + system) spent during a phase, per party. */
export interface CpuShares {
  command: number;
  postgres: number | null;
  kafka: number | null;
  machineBusy: number;
  machineTotal: number;
}

/** CPU seconds of the services so far (null when they run elsewhere), and the machine's. */
interface CpuSnapshot extends MachineCpu {
  postgres: number | null;
  kafka: number | null;
}

/** CPU seconds used so far by the services and the machine's busy and total core-seconds. */
async function cpuSnapshot(brokers: string[]): Promise<CpuSnapshot> {
  const [postgres, kafka] = await Promise.all([postgresPids(), brokerPids(brokers)]);
  return { postgres: await ownCpuSeconds(postgres), kafka: await ownCpuSeconds(kafka), ...await machineCpu() };
}

/**
 * CPU spent between two snapshots; a service counts only if it runs on this machine. A server
 * process that exits between them takes its share along, so phases snapshot before stopping.
 */
function cpuBetween(before: CpuSnapshot, after: CpuSnapshot, command: number): CpuShares {
  const diff = (a: number | null, b: number | null) => (a === null || b === null ? null : Math.max(0, b - a));
  return {
    command,
    postgres: diff(before.postgres, after.postgres),
    kafka: diff(before.kafka, after.kafka),
    machineBusy: after.busyS - before.busyS,
    machineTotal: after.totalS - before.totalS,
  };
}

/** Starts `cmd` in `root` with `environment`; stderr is piped for its log, stdout dropped. */
export function spawnCommand(root: string, cmd: string[], environment: Record<string, string>): Deno.ChildProcess {
  return new Deno.Command(cmd[0], { args: cmd.slice(1), env: environment, stdout: "null", stderr: "piped", cwd: root })
    .spawn();
}

/**
 * The command line of `deno task <task>` (flags and leading `NAME=value` settings included, so the
 * bench measures what users run); settings go through env(1), which execs deno under the same pid.
 */
export async function taskCommand(
  root: string,
  task: "produce" | "consume" | "capture",
  args: string[],
): Promise<string[]> {
  const tasks = JSON.parse(await Deno.readTextFile(`${root}deno.json`)).tasks as Record<string, string>;
  const words = tasks[task].split(/\s+/);
  const settings = words.slice(0, words.findIndex((word) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(word)));
  const [deno, ...rest] = words.slice(settings.length);
  if (deno !== "deno") throw new Error(`deno.json task ${task} does not start with deno: ${tasks[task]}`);
  const command = [Deno.execPath(), ...rest.map((word) => (word.endsWith(".ts") ? `${root}${word}` : word)), ...args];
  return settings.length ? ["env", ...settings, ...command] : command;
}

/** The peak resident memory and the CPU of a running child, sampled every 100 ms until it exits. */
function sampleChild(child: Deno.ChildProcess, exited: () => boolean) {
  const sampled = { peakBytes: 0, cpuSeconds: 0 };
  const sampling = (async () => {
    while (!exited()) {
      const stats = await procStats(child.pid);
      if (stats) {
        sampled.peakBytes = Math.max(sampled.peakBytes, stats.rssBytes);
        sampled.cpuSeconds = stats.ownCpuS;
      }
      await sleep(100);
    }
  })();
  return { sampled, sampling };
}

/**
 * Runs a command with `environment` (the run's by default), sampling its resident memory until it
 * exits (or, with `until`, until the condition holds, then stops it with SIGTERM and waits for its
 * clean exit).
 */
export async function measure(
  run: BenchRun,
  cmd: string[],
  until?: () => Promise<boolean>,
  environment: Record<string, string> = run.env,
): Promise<Measured> {
  const cpuBefore = await cpuSnapshot(run.brokers);
  const started = performance.now();
  const child = spawnCommand(run.root, cmd, environment);
  const deadline = setTimeout(() => child.kill("SIGKILL"), run.phaseTimeoutS * 1000);
  let exited = false;
  let stderr = "";
  const reader = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr = (stderr + decoder.decode(chunk)).slice(-8000);
  })();
  const { sampled, sampling } = sampleChild(child, () => exited);
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });
  let seconds = 0;
  let cpuAfter: CpuSnapshot | undefined;
  if (until) {
    while (!exited && !(await until())) await sleep(100);
    seconds = (performance.now() - started) / 1000;
    // Before the stop: the command's database sessions end with it, and their CPU with them.
    cpuAfter = await cpuSnapshot(run.brokers);
    const stats = await procStats(child.pid);
    if (stats) sampled.cpuSeconds = stats.ownCpuS;
    if (!exited) child.kill("SIGTERM");
  }
  const { success, code } = await status;
  if (!until) {
    seconds = (performance.now() - started) / 1000;
    cpuAfter = await cpuSnapshot(run.brokers);
  }
  clearTimeout(deadline);
  await Promise.all([sampling, reader]);
  if (!success) throw new Error(`${cmd.slice(-3).join(" ")} exited ${code}: ${stderr.slice(-2000)}`);
  return {
    seconds,
    peakRssMb: Math.round(sampled.peakBytes / 2 ** 20),
    stderr,
    cpu: cpuBetween(cpuBefore, cpuAfter!, sampled.cpuSeconds),
  };
}
