// The demo's child processes: our own scripts (submit, validator, API) run under the same runtime as the
// demo, each in its own process group with its output kept in a log file, so Ctrl-C stops all of them
// and a failure can show what the child said.
import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { join } from "node:path";
import { repoRoot } from "../../core/hparams.ts";

interface DenoLike {
  execPath(): string;
}
const deno = (globalThis as { Deno?: DenoLike }).Deno;

/** `bun scripts/x.ts` on Bun, `deno run -A scripts/x.ts` on Deno. */
export function scriptCommand(script: string): string[] {
  const path = join(repoRoot, script);
  return deno ? [deno.execPath(), "run", "-A", path] : [process.execPath, path];
}

export interface Child {
  name: string;
  pid: number;
  logPath: string;
  /** Resolves with the exit code (-1 when killed by a signal) when the process ends. */
  exited: Promise<number>;
  running(): boolean;
  /** The last lines it printed, for error messages. */
  tail(lines?: number): string;
  /** Resolves with the first match of `re` in its stdout+stderr; rejects if it exits or the time runs out. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGTERM to the whole group, SIGKILL after `graceMs`; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export interface StartOptions {
  env?: Record<string, string>;
  logDir: string;
}

export function startScript(name: string, script: string, args: string[], opts: StartOptions): Child {
  const [cmd, ...pre] = scriptCommand(script);
  const logPath = join(opts.logDir, `${name}.log`);
  const log = createWriteStream(logPath, { flags: "a" });
  const proc: ChildProcess = spawn(cmd!, [...pre, ...args], {
    cwd: repoRoot,
    // Its own group: the validator's evaluations and deno's launcher child must stop with it.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...opts.env },
  });
  let text = "";
  const listeners = new Set<() => void>();
  const onData = (chunk: Buffer) => {
    log.write(chunk);
    text += chunk.toString("utf8");
    // Only the recent output matters for matching and error messages.
    if (text.length > 200_000) text = text.slice(-100_000);
    for (const l of listeners) l();
  };
  proc.stdout!.on("data", onData);
  proc.stderr!.on("data", onData);
  const exited = new Promise<number>((resolve) => {
    proc.on("error", (e) => {
      onData(Buffer.from(`${e.message}\n`));
      resolve(127);
    });
    proc.on("exit", (code) => {
      for (const l of listeners) l();
      resolve(code ?? -1);
    });
  }).finally(() => log.end());
  const alive = () => proc.exitCode === null && proc.signalCode === null;
  const signalGroup = (sig: NodeJS.Signals) => {
    try {
      process.kill(-proc.pid!, sig);
    } catch {
      // the group is already gone
    }
  };

  return {
    name,
    pid: proc.pid ?? -1,
    logPath,
    exited,
    running: alive,
    tail(lines = 15) {
      return text.trimEnd().split("\n").slice(-lines).join("\n");
    },
    waitFor(re, timeoutMs) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = text.match(re);
          if (m) return done(() => resolve(m));
          if (!alive()) return done(() => reject(new Error(`${name} exited before it was ready:\n${this.tail()}`)));
        };
        const timer = setTimeout(() => done(() => reject(new Error(`${name} was not ready after ${timeoutMs / 1000}s:\n${this.tail()}`))), timeoutMs);
        const done = (fn: () => void) => {
          clearTimeout(timer);
          listeners.delete(check);
          fn();
        };
        listeners.add(check);
        check();
      });
    },
    async stop(graceMs = 15_000) {
      if (alive()) {
        signalGroup("SIGTERM");
        const timer = setTimeout(() => signalGroup("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      // Whatever the leader left in its group (a harness worker mid-run) goes too.
      signalGroup("SIGKILL");
    },
  };
}
