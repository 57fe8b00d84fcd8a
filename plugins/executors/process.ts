// Dev-only executor: runs the harness as a local warm server (session.ts). The worker sits behind the
// harness's namespace wall (environments/templar/contain.py: read-only filesystem, the server's in/ and out/
// covered, its own PID/IPC/mount namespaces, uid 65534 when the validator is root), but nothing bounds its
// memory or CPU and the network is open, so it is refused unless the config says `unsafe: true`. The demo
// and quick local tries use it.
import { spawn } from "node:child_process";
import { chmod, mkdtemp, mkdir, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { z } from "zod";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { repoRoot } from "../../core/hparams.ts";
import type { Logger } from "../../core/log.ts";
import { defineExecutor } from "../../core/plugin.ts";
import { fileSha256, HARNESS_SCRIPT, limitOptions, resultOf, wallClockLimitMs, type RunEnd } from "./harness.ts";
import { logStream } from "./log-stream.ts";
import { killTree, procStat } from "./process-tree.ts";
import { serveArgs, SessionPool, type Output, type ServerHandle } from "./session.ts";
import { buildSlots, cpuList, localDevices, poolOptions, probeAll, probeArgs, slotPresent, SlotPool, type Slot } from "./slots.ts";

export const ProcessExecutorOptions = z.object({
  unsafe: z.literal(true, {
    error: "the process executor runs submitted code with no sandbox around the harness (no memory or CPU limits, the network open; only the harness's namespace wall); set `unsafe: true` only for local development, use the docker or ssh executor otherwise",
  }).describe("Must be true: submitted code runs behind the harness's namespace wall only, without memory, CPU or network limits. Development and demos only."),
  python: z.string().min(1).default("python3").describe("Interpreter with the harness's Python stack."),
  workdir: z.string().min(1).default(repoRoot).describe("Directory holding environments/templar and hparams/models; the harness's cwd."),
  ...(({ marginSeconds, timeoutSeconds, maxLogBytes }) => ({ marginSeconds, timeoutSeconds, maxLogBytes }))(limitOptions()),
  env: z.record(z.string(), z.string()).default({}).describe("Extra environment for the harness; nothing else of the validator's environment is passed on."),
  ...poolOptions("none"),
  probe: z.boolean().default(false).describe("At start, run a tiny matmul on each slot's devices and check the process sees exactly them."),
});
type ProcessExecutorOptions = z.infer<typeof ProcessExecutorOptions>;

// Only what Python needs: the validator's environment may hold wallet secrets.
const PASSED_ENV = ["PATH", "HOME", "LANG", "LC_ALL"];

// The harness is started through this, so that it dies with the validator even when the validator is
// SIGKILLed: PR_SET_PDEATHSIG (kept across exec) fires when the thread that forked us exits — Bun
// spawns from its main thread, so when the validator exits. Checking the parent after setting it closes
// the race with a validator that died first. Elsewhere than Linux the startup sweep below is the guard.
const DIE_WITH_PARENT = [
  "import ctypes, os, signal, sys",
  "prctl = getattr(ctypes.CDLL(None), 'prctl', None)",
  "prctl and prctl(1, signal.SIGKILL)",
  "os.getppid() == int(sys.argv[1]) or os._exit(70)",
  // The slot's cores (a comma list, or empty): inherited by everything the harness forks.
  "sys.argv[2] and hasattr(os, 'sched_setaffinity') and os.sched_setaffinity(0, [int(c) for c in sys.argv[2].split(',')])",
  "os.execv(sys.executable, [sys.executable, *sys.argv[3:]])",
].join("\n");

// Run dirs carry the validator's pid, so a restarted validator can tell which ones a killed one left.
const RUN_DIR = /^crusades-process-(\d+)-/;

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
};

/** The ancestors of a process, nearest first; empty where /proc is unreadable. */
function ancestors(pid: number): number[] {
  const chain: number[] = [];
  for (let p = pid; p > 1 && chain.length < 64; ) {
    const ppid = procStat(p)?.ppid;
    if (!ppid) break;
    chain.push(ppid);
    p = ppid;
  }
  return chain;
}

const gone = (pid: number) => {
  const s = procStat(pid);
  return s === null || s.state === "Z" || s.state === "X";
};

/**
 * Kills harnesses (and everything under them) that a killed validator left running: a process whose
 * command line names a run dir of validator P, with P not among its ancestors, lost its validator.
 * A restarted validator runs this before evaluating, so no stray run competes with the new one for the
 * device. Returns once they are gone.
 */
export async function sweepOrphanHarnesses(log: Logger, root = tmpdir()): Promise<number> {
  const escaped = join(root, "crusades-process-").replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const marker = new RegExp(`${escaped}(\\d+)-`);
  const orphans: number[] = [];
  for (const entry of await readdir("/proc").catch(() => [] as string[])) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
    if (!cmdline.includes(HARNESS_SCRIPT)) continue;
    const owner = Number(marker.exec(cmdline)?.[1]);
    if (!owner || owner === process.pid || ancestors(pid).includes(owner)) continue;
    orphans.push(pid);
  }
  if (!orphans.length) return 0;
  for (const pid of orphans) killTree(pid);
  for (let i = 0; i < 100 && !orphans.every(gone); i++) await new Promise((r) => setTimeout(r, 50));
  const left = orphans.filter((p) => !gone(p));
  log.warn(`killed ${orphans.length} harness process(es) left running by a validator that was killed (pids ${orphans.join(", ")})${left.length ? `; still there: ${left.join(", ")}` : ""}`);
  return orphans.length;
}

/** Removes run dirs whose validator process is gone (it was killed before its own clean-up ran). */
export async function sweepOrphanRunDirs(log: Logger, root = tmpdir()): Promise<number> {
  let removed = 0;
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const pid = Number(RUN_DIR.exec(name)?.[1]);
    if (!pid || pid === process.pid || alive(pid)) continue;
    await rm(join(root, name), { recursive: true, force: true });
    removed++;
  }
  if (removed) log.info(`removed ${removed} run dir(s) left by a validator that was killed`);
  return removed;
}

export const processExecutor = defineExecutor("process", ProcessExecutorOptions, (opts) => {
  // Per slot, one warm server kept for the validator's lifetime, its process pinned to the slot's
  // devices: the server never reads a request itself, so nothing of one run is in the memory the next
  // run's processes are forked from.
  const sessions = new Map<string, SessionPool>();
  let slots: SlotPool | undefined;
  let ready: Promise<void> | undefined;
  const prepare = (log: Logger) =>
    (ready ??= (async () => {
      await sweepOrphanHarnesses(log);
      await sweepOrphanRunDirs(log);
      const pool = buildSlots(opts, await localDevices());
      if (opts.probe) await probeAll(pool, (slot) => probeProcess(opts, slot), log);
      for (const slot of pool) sessions.set(slot.id, new SessionPool({ start: (_key, l, output) => startServer(opts, slot, l, output), exclusive: false }));
      slots = new SlotPool(pool, { maxFailures: opts.maxSlotFailures, log, present: async (slot) => slotPresent(slot, await localDevices()) });
      // The servers import while the validator gets ready: the first evaluations find them warm.
      await Promise.all([...sessions.values()].map((p) => p.warm("", log, logStream(log, opts.maxLogBytes))));
    })().catch((e) => {
      ready = undefined;
      throw e;
    }));
  return {
    init: (log) => prepare(log),
    slots: () => slots?.status() ?? [],

    async tokenShard(dataPath) {
      // The harness resolves a relative data_path against its checkout, the workdir.
      const path = resolve(opts.workdir, dataPath);
      const sha256 = await fileSha256(path);
      return sha256 ? { where: path, sha256 } : null;
    },

    async evaluate(request: EvaluationRequest, ctx) {
      const log = ctx.log.child({ executor: "process", submission: request.submission_id, run: request.run_index });
      if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
      try {
        await prepare(log);
      } catch (e) {
        return resultOf(request, { kind: "failed", message: `process executor not ready: ${(e as Error).message}` }, null, "");
      }
      return slots!.evaluate(request, ctx, () => false, async (slot) => {
        const slog = log.child({ slot: slot.id });
        const output = logStream(slog, opts.maxLogBytes);
        const { end, document } = await sessions.get(slot.id)!.evaluate("", request, wallClockLimitMs(request, opts), ctx.signal, output, slog);
        output.end();
        const result = resultOf(request, end, document, output.tail());
        slog.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
        return result;
      });
    },

    close: async () => {
      await Promise.all([...sessions.values()].map((p) => p.close()));
    },
  };
});

/** The harness's environment (only what Python needs: the validator's may hold wallet secrets) and the slot's devices. */
function harnessEnv(opts: ProcessExecutorOptions, slot: Slot, tmp: string): Record<string, string> {
  const env: Record<string, string> = { PYTHONUNBUFFERED: "1", HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1" };
  for (const k of PASSED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
  // PCI order, so an index means what nvidia-smi says it means; no GPU at all for a CPU slot.
  return Object.assign(env, opts.env, { TMPDIR: tmp, CUDA_DEVICE_ORDER: "PCI_BUS_ID", CUDA_VISIBLE_DEVICES: slot.gpus?.join(",") ?? "", CRUSADES_WORKER_UID: String(slot.workerUid) });
}

/** The interpreter's arguments: the parent-death and affinity wrapper, then `args`. */
const wrapped = (slot: Slot, args: string[]) => ["-c", DIE_WITH_PARENT, String(process.pid), slot.cpus ? cpuList(slot.cpus).join(",") : "", ...args];

/** The start-up probe with the slot's devices, as a server of the slot would see them. */
function probeProcess(opts: ProcessExecutorOptions, slot: Slot): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(opts.python, wrapped(slot, probeArgs(slot)), { cwd: opts.workdir, env: harnessEnv(opts, slot, tmpdir()), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c));
    child.stderr.on("data", (c: Buffer) => (out += c));
    child.on("error", reject);
    child.on("close", () => resolve(out));
  });
}

// A server outlives idle spells of any length; PR_SET_PDEATHSIG and the startup sweep are what end one
// whose validator is gone.
const SERVER_IDLE_SECONDS = 365 * 24 * 3600;

/**
 * Starts `env.py --serve` in a process group of its own, in a fresh session dir of ours alone (0700): in/
 * and out/, which the harness covers in its worker's mount namespace, and tmp/ (the server's TMPDIR; the
 * worker's home is in its own private /tmp).
 */
async function startServer(opts: ProcessExecutorOptions, slot: Slot, log: Logger, output: Output): Promise<ServerHandle> {
  const dir = await mkdtemp(join(tmpdir(), `crusades-process-${process.pid}-`));
  log.debug("run directory", { dir });
  const inDir = join(dir, "in");
  const outDir = join(dir, "out");
  const tmp = join(dir, "tmp");
  for (const d of [inDir, outDir, tmp]) await mkdir(d);
  for (const d of [inDir, outDir, tmp, dir]) await chmod(d, 0o700);
  const args = wrapped(slot, serveArgs(inDir, outDir, SERVER_IDLE_SECONDS));
  const child = spawn(opts.python, args, { cwd: opts.workdir, env: harnessEnv(opts, slot, tmp), detached: true, stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.on("data", (c: Uint8Array) => output("stdout", c));
  child.stderr.on("data", (c: Uint8Array) => output("stderr", c));
  const exited = new Promise<RunEnd>((resolve) => {
    child.on("error", (e) => resolve({ kind: "failed", message: `cannot start ${opts.python}: ${e.message}` }));
    child.on("exit", (code, sig) => {
      // Strays of a dead server (its group) must not keep running or hold its pipes.
      if (child.pid) killTree(child.pid);
      resolve({ kind: "exited", code, signal: sig });
    });
  });
  // An idle server must not keep the validator's event loop alive; it dies with the validator anyway.
  child.unref();
  return {
    inDir,
    outDir,
    read: (name) => readFile(join(outDir, name), "utf8").catch(() => null),
    exited,
    async kill() {
      if (child.pid) killTree(child.pid);
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
