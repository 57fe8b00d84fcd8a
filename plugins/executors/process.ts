// Dev-only executor: runs the harness as a local subprocess with no isolation at all. Miner code runs
// as the validator's own user, can read the request (seed included) and write anywhere that user can,
// so it is refused unless the config says `unsafe: true`. The demo and quick local tries use it.
import { spawn } from "node:child_process";
import { chmod, mkdtemp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { repoRoot } from "../../core/hparams.ts";
import type { Logger } from "../../core/log.ts";
import { defineExecutor } from "../../core/plugin.ts";
import { HARNESS_SCRIPT, harnessArgs, limitOptions, REQUEST_FILE, RESULT_FILE, resultOf, wallClockLimitMs, type RunEnd } from "./harness.ts";
import { logStream } from "./log-stream.ts";
import { killTree, procStat } from "./process-tree.ts";

export const ProcessExecutorOptions = z.object({
  unsafe: z.literal(true, {
    error: "the process executor runs submitted code with no sandbox (it can read the seed, the network and your files); set `unsafe: true` only for local development, use the docker or ssh executor otherwise",
  }).describe("Must be true: submitted code runs with no isolation. Development and demos only."),
  python: z.string().min(1).default("python3").describe("Interpreter with the harness's Python stack."),
  workdir: z.string().min(1).default(repoRoot).describe("Directory holding environments/templar and hparams/models; the harness's cwd."),
  ...(({ marginSeconds, timeoutSeconds, maxLogBytes }) => ({ marginSeconds, timeoutSeconds, maxLogBytes }))(limitOptions()),
  env: z.record(z.string(), z.string()).default({}).describe("Extra environment for the harness; nothing else of the validator's environment is passed on."),
});

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
  "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])",
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

export const processExecutor = defineExecutor("process", ProcessExecutorOptions, (opts) => ({
  init: async (log) => {
    await sweepOrphanHarnesses(log);
    await sweepOrphanRunDirs(log);
  },

  async evaluate(request: EvaluationRequest, ctx) {
    const log = ctx.log.child({ executor: "process", submission: request.submission_id, run: request.run_index });
    if (ctx.signal.aborted) return resultOf(request, { kind: "cancelled" }, null, "");
    const dir = await mkdtemp(join(tmpdir(), `crusades-process-${process.pid}-`));
    log.debug("run directory", { dir });
    const output = logStream(log, opts.maxLogBytes);
    try {
      const requestPath = join(dir, REQUEST_FILE);
      const resultPath = join(dir, RESULT_FILE);
      await writeFile(requestPath, JSON.stringify(request), { mode: 0o600 });
      // Run as root, env.py moves the worker to an unprivileged uid: it must reach its home under tmp/
      // (dir traversable, tmp/ sticky and open) but neither list the dir nor read the request.
      await chmod(dir, 0o711);
      await mkdir(join(dir, "tmp"));
      await chmod(join(dir, "tmp"), 0o1777);
      const env: Record<string, string> = { PYTHONUNBUFFERED: "1", HF_HUB_OFFLINE: "1", TRANSFORMERS_OFFLINE: "1" };
      for (const k of PASSED_ENV) if (process.env[k] !== undefined) env[k] = process.env[k]!;
      Object.assign(env, opts.env, { TMPDIR: join(dir, "tmp") });

      const limitMs = wallClockLimitMs(request, opts);
      const end = await runGroup(opts.python, ["-c", DIE_WITH_PARENT, String(process.pid), ...harnessArgs(requestPath, resultPath)], { cwd: opts.workdir, env }, limitMs, ctx.signal, output.write);
      output.end();
      const document = end.kind === "exited" ? await readFile(resultPath, "utf8").catch(() => null) : null;
      const result = resultOf(request, end, document, output.tail());
      log.info("evaluation finished", { success: result.success, tps: result.tps, error: result.error?.code ?? null });
      return result;
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  },
}));

/**
 * Runs a command in its own process group and resolves once its output is closed: on a normal exit, a
 * timeout or an abort everything the run started is killed (see process-tree.ts), so nothing outlives it.
 */
function runGroup(
  cmd: string,
  args: string[],
  options: { cwd: string; env: Record<string, string> },
  limitMs: number,
  signal: AbortSignal,
  onOutput: (stream: "stdout" | "stderr", chunk: Uint8Array) => void,
): Promise<RunEnd> {
  return new Promise((resolve) => {
    let end: RunEnd | undefined;
    const child = spawn(cmd, args, { ...options, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    const finish = (e: RunEnd) => {
      end ??= e;
      if (child.pid) killTree(child.pid);
    };
    const timer = setTimeout(() => finish({ kind: "timeout", limitMs }), limitMs);
    const onAbort = () => finish({ kind: "cancelled" });
    signal.addEventListener("abort", onAbort, { once: true });
    child.stdout.on("data", (c: Uint8Array) => onOutput("stdout", c));
    child.stderr.on("data", (c: Uint8Array) => onOutput("stderr", c));
    child.on("error", (e) => finish({ kind: "failed", message: `cannot start ${cmd}: ${e.message}` }));
    // Strays that inherited the pipes would hold "close" back forever; killing the tree on exit ends them.
    child.on("exit", (code, sig) => finish({ kind: "exited", code, signal: sig }));
    child.on("close", () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(end ?? { kind: "failed", message: "the harness ended without an exit status" });
    });
  });
}
