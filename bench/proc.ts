/** What the bench reads from /proc about processes and the machine (Linux). */
import { readdirSync, readFileSync } from "node:fs";

export function safeRead(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

/** utime + stime of a process (all its threads), in clock ticks. */
/** Resident memory of a process, MiB. */
export function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+) kB/.exec(safeRead(`/proc/${pid}/status`))?.[1];
  return kb === undefined ? 0 : Math.round(Number(kb) / 1024);
}

export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // fields[0] is field 3 (state)
  return Number(fields[11]) + Number(fields[12]); // fields 14 (utime) and 15 (stime)
}

/** `pid` and its descendants (a supervisor's workers), from /proc. */
export function processTree(pid: number): number[] {
  const parents = new Map<number, number[]>();
  for (const entry of safeList("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = safeRead(`/proc/${entry}/stat`);
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (!parents.has(ppid)) parents.set(ppid, []);
    parents.get(ppid)!.push(Number(entry));
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const c of parents.get(p) ?? []) walk(c);
  };
  walk(pid);
  return out;
}

export function safeList(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** CPU ticks of a process and its descendants (a process that exits takes its ticks along). */
export function treeTicks(pid: number): number {
  return processTree(pid).reduce((n, p) => n + (safeCall(() => cpuTicks(p)) ?? 0), 0);
}

/** Resident memory of a process tree, MiB. */
export function treeRssMiB(pid: number): number {
  return processTree(pid).reduce((n, p) => n + rssMiB(p), 0);
}

/** Bytes a process tree caused to be written to storage (/proc/<pid>/io write_bytes: the page cache dirtied). */
export function treeWriteBytes(pid: number): number {
  return processTree(pid).reduce(
    (n, p) => n + Number(/^write_bytes: (\d+)$/m.exec(safeRead(`/proc/${p}/io`))?.[1] ?? 0),
    0,
  );
}

export function safeCall<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

/** Busy and total ticks of the whole machine (/proc/stat, all CPUs). */
export function machineTicks(): { busy: number; total: number } {
  const fields = (/^cpu\s+(.+)$/m.exec(safeRead("/proc/stat"))?.[1] ?? "").split(/\s+/).map(Number);
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { busy: total - idle, total };
}
