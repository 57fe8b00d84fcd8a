// A warm harness (`env.py --serve IN_DIR --results OUT_DIR`) serving one run after another: torch and
// transformers are imported once per session instead of once per run, while every run still gets a
// fresh supervisor and worker forked by the server. The executors differ only in where the server runs
// (a local process group, a container); numbering, the atomic hand-over of requests, the wait for a
// run's status with its limit, and the kill of a session that overran live here.
import { constants } from "node:os";
import { rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { EvaluationRequest } from "../../core/contracts.ts";
import type { Logger } from "../../core/log.ts";
import { HARNESS_SCRIPT, type RunEnd } from "./harness.ts";
import type { LogStream, StreamName } from "./log-stream.ts";

export function serveArgs(inDir: string, outDir: string, idleSeconds: number): string[] {
  return [HARNESS_SCRIPT, "--serve", inDir, "--results", outDir, "--idle-seconds", String(idleSeconds)];
}

/** A started server, as the executor that started it sees it. */
export interface ServerHandle {
  /** The server's IN_DIR and OUT_DIR as `files` reaches them: this side writes the first, reads the second. */
  inDir: string;
  outDir: string;
  /** One file of OUT_DIR by name, or null when it is missing or unreadable. */
  read(name: string): Promise<string | null>;
  /** Settles once the server is gone, however it ended. */
  exited: Promise<RunEnd>;
  /** Kills the server with everything it started and removes what it used; resolves once it is gone. */
  kill(): Promise<void>;
  /** How inDir and outDir are reached when they are not on this machine (a remote host); default local. */
  files?: ServerFiles;
}

export interface ServerFiles {
  write(path: string, text: string, mode: number): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  exists(path: string): Promise<boolean>;
  /** Removes a file; a missing one is no error. */
  remove(path: string): Promise<void>;
}

const localFiles: ServerFiles = {
  write: (path, text, mode) => writeFile(path, text, { mode }),
  rename,
  exists: (path) => stat(path).then(() => true, () => false),
  remove: (path) => rm(path, { force: true }),
};

export type Output = (stream: StreamName, chunk: Uint8Array) => void;

/** A server outlives its session's idle time by this much: its own idle exit ends one whose validator vanished. */
export const SERVER_IDLE_MARGIN_SECONDS = 60;

const POLL_MS = 20;
// Output written just before a status can still be in the pipe when the status is seen: a run that left
// no document waits this long, so its error message carries the last lines.
const OUTPUT_GRACE_MS = 250;

const signalName = (n: number) => Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;

/** The text of `status-<n>` as a run end: the supervisor's exit code, or minus the signal that killed it. */
export function statusEnd(text: string): RunEnd {
  const code = Number(text.trim());
  if (!Number.isInteger(code) || text.trim() === "") return { kind: "failed", message: `the evaluation server wrote an unreadable status: ${JSON.stringify(text.slice(0, 40))}` };
  return code < 0 ? { kind: "exited", code: null, signal: signalName(-code) } : { kind: "exited", code };
}

export class Session {
  private next = 0;
  private gone: RunEnd | undefined;
  private killing: Promise<void> | undefined;
  idleTimer: ReturnType<typeof setTimeout> | undefined;

  private constructor(
    readonly key: string,
    private readonly server: ServerHandle,
    private readonly sink: { output: LogStream },
  ) {
    server.exited.then((e) => (this.gone ??= e));
  }

  /** Starts a server; its output goes to `output` until the first run names its own. */
  static async start(key: string, start: (output: Output) => Promise<ServerHandle>, output: LogStream): Promise<Session> {
    const sink = { output };
    const server = await start((stream, chunk) => sink.output.write(stream, chunk));
    return new Session(key, server, sink);
  }

  get alive(): boolean {
    return this.gone === undefined && this.killing === undefined;
  }

  kill(): Promise<void> {
    return (this.killing ??= this.server.kill());
  }

  /**
   * Hands the server the next request and waits for its status, at most `limitMs`. Output from now until
   * the next run goes to `output`. A run that overran, was aborted or outlived its server leaves the
   * session dead (killed here); the caller drops it.
   */
  async run(request: EvaluationRequest, limitMs: number, reportedLimitMs: number, signal: AbortSignal, output: LogStream): Promise<{ end: RunEnd; document: string | null }> {
    const n = this.next++;
    this.sink.output = output;
    let stopped: RunEnd | undefined;
    let wake = () => {};
    const stop = (e: RunEnd) => {
      stopped ??= e;
      wake();
    };
    const timer = setTimeout(() => stop({ kind: "timeout", limitMs: reportedLimitMs }), Math.max(0, limitMs));
    const onAbort = () => stop({ kind: "cancelled" });
    signal.addEventListener("abort", onAbort, { once: true });
    this.server.exited.then(stop);
    const status = join(this.server.outDir, `status-${n}`);
    const files = this.server.files ?? localFiles;
    try {
      const tmp = join(this.server.inDir, `.request-${n}.json.tmp`);
      await files.write(tmp, JSON.stringify(request), 0o600);
      await files.rename(tmp, join(this.server.inDir, `request-${n}.json`));
      while (!stopped) {
        if (await files.exists(status)) break;
        await new Promise<void>((r) => {
          wake = r;
          setTimeout(r, POLL_MS);
        });
      }
      const text = await this.server.read(`status-${n}`);
      if (text === null) {
        const end = stopped ?? { kind: "failed", message: "the evaluation server wrote no status" };
        // No status: the run overran, was aborted or its server died. The whole server goes, so nothing
        // the run started outlives it and the next run gets a fresh one.
        await this.kill();
        if (end.kind === "exited") await sleep(OUTPUT_GRACE_MS);
        return { end, document: null };
      }
      const end = statusEnd(text);
      const document = end.kind === "exited" ? await this.server.read(`result-${n}.json`) : null;
      if (document === null) await sleep(OUTPUT_GRACE_MS);
      await Promise.all([`result-${n}.json`, `status-${n}`].map((f) => files.remove(join(this.server.outDir, f))));
      await files.remove(join(this.server.inDir, `request-${n}.json`));
      return { end, document };
    } catch (e) {
      await this.kill();
      return { end: stopped ?? { kind: "failed", message: `evaluation server: ${(e as Error).message}` }, document: null };
    } finally {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
    }
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PoolOptions {
  /** Starts a server for requests of this key. */
  start(key: string, log: Logger, output: Output): Promise<ServerHandle>;
  /** A session unused this long is killed (undefined: kept until close). */
  idleMs?: number;
  /** A request for a new key kills the idle sessions of every other key (one submission per container). */
  exclusive: boolean;
}

/**
 * The sessions of one executor: one per run in flight at most, each serving requests of one key one at a
 * time. A run takes an idle session of its key or starts one; afterwards the session waits for the next.
 */
export class SessionPool {
  private idle: Session[] = [];
  private busy = new Set<Session>();

  constructor(private readonly opts: PoolOptions) {}

  /**
   * One run in a session of `key`, bounded by limitMs from the call (starting a session included).
   * Returns the end and document for `resultOf`.
   */
  async evaluate(key: string, request: EvaluationRequest, limitMs: number, signal: AbortSignal, output: LogStream, log: Logger): Promise<{ end: RunEnd; document: string | null }> {
    const t0 = performance.now();
    let session: Session;
    try {
      session = await this.acquire(key, log, output);
    } catch (e) {
      return { end: { kind: "failed", message: (e as Error).message }, document: null };
    }
    this.busy.add(session);
    try {
      if (signal.aborted) {
        await session.kill();
        return { end: { kind: "cancelled" }, document: null };
      }
      return await session.run(request, limitMs - (performance.now() - t0), limitMs, signal, output);
    } finally {
      this.busy.delete(session);
      if (session.alive) this.release(session);
      else await session.kill();
    }
  }

  private async acquire(key: string, log: Logger, output: LogStream): Promise<Session> {
    for (const s of this.idle) if (!s.alive) void s.kill();
    this.idle = this.idle.filter((s) => s.alive);
    const i = this.idle.findIndex((s) => s.key === key);
    if (i >= 0) {
      const [s] = this.idle.splice(i, 1);
      clearTimeout(s!.idleTimer);
      return s!;
    }
    if (this.opts.exclusive) {
      const others = this.idle;
      this.idle = [];
      await Promise.all(others.map((s) => (clearTimeout(s.idleTimer), s.kill())));
    }
    return Session.start(key, (out) => this.opts.start(key, log, out), output);
  }

  /** Whether an idle session of `key` waits here: a run of it would find its server warm. */
  has(key: string): boolean {
    return this.idle.some((s) => s.key === key && s.alive);
  }

  /** Starts a session for `key` ahead of its first run, so that run does not wait for the imports. */
  async warm(key: string, log: Logger, output: LogStream): Promise<void> {
    this.release(await Session.start(key, (out) => this.opts.start(key, log, out), output));
  }

  private release(session: Session) {
    this.idle.push(session);
    if (this.opts.idleMs === undefined) return;
    session.idleTimer = setTimeout(() => {
      this.idle = this.idle.filter((s) => s !== session);
      void session.kill();
    }, this.opts.idleMs);
    session.idleTimer.unref?.();
  }

  /** Kills every session, idle or busy (a busy run then ends as its server did). */
  async close(): Promise<void> {
    const all = [...this.idle, ...this.busy];
    this.idle = [];
    for (const s of all) clearTimeout(s.idleTimer);
    await Promise.all(all.map((s) => s.kill()));
  }
}
