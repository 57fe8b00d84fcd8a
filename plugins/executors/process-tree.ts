// Killing a run means killing everything it started. The harness puts the miner's worker in a session of
// its own (so a process-group kill misses it) and is the subreaper of whatever the worker spawns (so
// double forks stay below it). The run is therefore exactly the process tree under the harness: freeze
// it top-down while it is still whole, then kill every member.
import { readdirSync, readFileSync } from "node:fs";

/** A process's state letter and parent from /proc; null once it has exited (or without /proc). */
export function procStat(pid: number | string): { state: string; ppid: number } | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null;
  }
  // The command name may contain spaces and parentheses; the fields after its last ")" do not.
  const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return { state: state!, ppid: Number(ppid) };
}

function childrenByParent(): Map<number, number[]> {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = procStat(entry);
    if (!stat) continue; // exited while we looked
    const list = children.get(stat.ppid) ?? children.set(stat.ppid, []).get(stat.ppid)!;
    list.push(Number(entry));
  }
  return children;
}

export function descendants(pid: number): number[] {
  const children = childrenByParent();
  const found: number[] = [];
  const todo = [pid];
  while (todo.length) {
    for (const kid of children.get(todo.pop()!) ?? []) {
      found.push(kid);
      todo.push(kid);
    }
  }
  return found;
}

function signal(pid: number, sig: NodeJS.Signals) {
  try {
    process.kill(pid, sig);
  } catch {
    // ESRCH: already gone
  }
}

/** SIGKILLs `pid`, its process group and every descendant, including those that left the group. */
export function killTree(pid: number): void {
  const hasProc = (() => {
    try {
      readdirSync("/proc/self");
      return true;
    } catch {
      return false;
    }
  })();
  const members = new Set<number>();
  if (hasProc) {
    signal(pid, "SIGSTOP");
    // Stopped processes cannot fork; a few rounds catch children born while we were reading /proc.
    for (let round = 0; round < 20; round++) {
      const fresh = descendants(pid).filter((p) => !members.has(p));
      if (fresh.length === 0) break;
      for (const p of fresh) {
        signal(p, "SIGSTOP");
        members.add(p);
      }
    }
  }
  signal(-pid, "SIGKILL");
  signal(pid, "SIGKILL");
  for (const p of members) signal(p, "SIGKILL");
}
