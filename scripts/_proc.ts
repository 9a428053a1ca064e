/**
 * Processes as /proc and ps see them, for the bench and the capture's measuring scripts: CPU and
 * memory of processes, a process tree, the pids of the PostgreSQL and Kafka servers, the
 * machine's CPU time. /proc is read with cat: Deno reads it only with --allow-all.
 * @module
 */
import { decode } from "./_util.ts";

/** CPU time and memory of one process. */
export interface ProcStats {
  /** CPU seconds (user + system) of the process itself. */
  ownCpuS: number;
  /** CPU seconds of the process and of its children it has reaped. */
  cpuS: number;
  /** Resident bytes now. */
  rssBytes: number;
  /** Peak resident bytes so far. */
  hwmBytes: number;
}

/** The machine's CPU time so far, summed over its cores. */
export interface MachineCpu {
  busyS: number;
  totalS: number;
}

/** Stdout of `cmd`, trimmed; empty when it cannot run. */
async function commandOutput(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output()
    .catch(() => ({ stdout: new Uint8Array() }));
  return decode(out.stdout).trim();
}

let clockTicks: Promise<number> | undefined;
/** Clock ticks per second, the unit of /proc's CPU times; asked once, when first needed. */
function ticksPerSecond(): Promise<number> {
  clockTicks ??= commandOutput("getconf", ["CLK_TCK"]).then((text) => Number(text) || 100);
  return clockTicks;
}

/** CPU seconds of the process itself and with its reaped children, from one /proc/<pid>/stat line. */
function statCpu(line: string, ticks: number): { ownCpuS: number; cpuS: number } {
  // Fields after the command name, which may hold spaces: utime is field 14, stime 15, cutime 16, cstime 17.
  const fields = line.slice(line.lastIndexOf(")") + 2).split(" ").slice(11, 15).map(Number);
  return { ownCpuS: (fields[0] + fields[1]) / ticks, cpuS: fields.reduce((a, b) => a + b, 0) / ticks };
}

/** CPU seconds, resident and peak resident bytes of one process, from /proc; null when it is gone. */
export async function procStats(pid: number): Promise<ProcStats | null> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`, `/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!out.success) return null;
  const [stat, ...status] = decode(out.stdout).split("\n");
  const kb = (name: string) => Number(status.find((l) => l.startsWith(`${name}:`))?.match(/(\d+) kB/)?.[1] ?? 0);
  return { ...statCpu(stat, await ticksPerSecond()), rssBytes: kb("VmRSS") * 1024, hwmBytes: kb("VmHWM") * 1024 };
}

/** CPU seconds of the processes themselves among `pids` that are alive, summed; null for no pids. */
export async function ownCpuSeconds(pids: number[]): Promise<number | null> {
  if (pids.length === 0) return null;
  // One cat for all: a server has many processes, and a gone one is skipped.
  const text = await commandOutput("cat", pids.map((pid) => `/proc/${pid}/stat`));
  const ticks = await ticksPerSecond();
  return text.split("\n").filter(Boolean).reduce((sum, line) => sum + statCpu(line, ticks).ownCpuS, 0);
}

/** The machine's busy and total core-seconds so far, from /proc/stat. */
export async function machineCpu(): Promise<MachineCpu> {
  const [cpuLine] = (await commandOutput("cat", ["/proc/stat"])).split("\n");
  const ticks = cpuLine.split(/\s+/).slice(1).map(Number);
  const idle = ticks[3] + ticks[4];
  const total = ticks.slice(0, 8).reduce((a, b) => a + b, 0);
  const perSecond = await ticksPerSecond();
  return { busyS: (total - idle) / perSecond, totalS: total / perSecond };
}

/** `root` and every process descending from it. */
export async function processTree(root: number): Promise<number[]> {
  const children = new Map<number, number[]>();
  for (const line of (await commandOutput("ps", ["-A", "-o", "pid=,ppid="])).split("\n")) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (pid) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/** Pids of the PostgreSQL server's processes on this machine; none when it runs elsewhere. */
export async function postgresPids(): Promise<number[]> {
  return (await commandOutput("pgrep", ["-x", "postgres"])).split("\n").filter(Boolean).map(Number);
}

/**
 * Pids of the processes listening on the brokers' ports on this machine (ss names them to root or
 * their owner); else of every Kafka broker here (another checkout may run its own); none when
 * Kafka runs elsewhere.
 */
export async function brokerPids(brokers: string[]): Promise<number[]> {
  const local = brokers.filter((b) => /^(localhost|127\.0\.0\.1|\[::1\]):\d+$/.test(b));
  const ports = local.map((b) => b.slice(b.lastIndexOf(":") + 1));
  const listening = await Promise.all(ports.map((port) => commandOutput("ss", ["-ltnpH", `sport = :${port}`])));
  const pids = [...new Set(Array.from(listening.join("\n").matchAll(/pid=(\d+)/g), (m) => Number(m[1])))];
  if (pids.length > 0 || local.length === 0) return pids;
  return (await commandOutput("pgrep", ["-f", "kafka\\.Kafka"])).split("\n").filter(Boolean).map(Number);
}
