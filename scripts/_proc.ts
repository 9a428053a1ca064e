/**
 * Processes as /proc and ps see them, for the bench: CPU and memory of one process, a process
 * tree, the Kafka broker's pids. /proc is read with cat: Deno reads it only with --allow-all.
 * @module
 */
const decode = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
const CLOCK_TICKS =
  Number(decode(new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).outputSync().stdout)) || 100;

/** CPU seconds (the process and its reaped children), resident and peak resident bytes of one process, from /proc. */
export async function procStats(pid: number): Promise<{ cpuS: number; rssBytes: number; hwmBytes: number } | null> {
  const out = await new Deno.Command("cat", {
    args: [`/proc/${pid}/stat`, `/proc/${pid}/status`],
    stdout: "piped",
    stderr: "null",
  }).output();
  if (!out.success) return null;
  const [stat, ...status] = decode(out.stdout).split("\n");
  // Fields after the command name, which may hold spaces: utime is field 14, stime 15, cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const kb = (name: string) => Number(status.find((l) => l.startsWith(`${name}:`))?.match(/(\d+) kB/)?.[1] ?? 0);
  return {
    cpuS: fields.slice(11, 15).reduce((sum, f) => sum + Number(f), 0) / CLOCK_TICKS,
    rssBytes: kb("VmRSS") * 1024,
    hwmBytes: kb("VmHWM") * 1024,
  };
}

/** `root` and every process descending from it. */
export async function processTree(root: number): Promise<number[]> {
  const out = await new Deno.Command("ps", { args: ["-A", "-o", "pid=,ppid="], stdout: "piped" }).output();
  const children = new Map<number, number[]>();
  for (const line of decode(out.stdout).split("\n")) {
    const [pid, ppid] = line.trim().split(/\s+/).map(Number);
    if (pid) children.set(ppid, [...(children.get(ppid) ?? []), pid]);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/**
 * Pids of the processes listening on the brokers' ports on this machine (ss names them to root or
 * their owner); else of every Kafka broker here (another checkout may run its own); none when
 * Kafka runs elsewhere.
 */
export async function brokerPids(brokers: string[]): Promise<number[]> {
  const run = async (cmd: string, args: string[]) =>
    decode(
      (await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output().catch(() => ({
        stdout: new Uint8Array(),
      }))).stdout,
    );
  const local = brokers.filter((b) => /^(localhost|127\.0\.0\.1|\[::1\]):\d+$/.test(b));
  const ports = local.map((b) => b.slice(b.lastIndexOf(":") + 1));
  const listening = await Promise.all(ports.map((port) => run("ss", ["-ltnpH", `sport = :${port}`])));
  const pids = [...new Set(Array.from(listening.join("\n").matchAll(/pid=(\d+)/g), (m) => Number(m[1])))];
  if (pids.length > 0 || local.length === 0) return pids;
  return (await run("pgrep", ["-f", "kafka\\.Kafka"])).split("\n").filter(Boolean).map(Number);
}
