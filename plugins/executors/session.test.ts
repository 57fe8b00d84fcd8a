import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryLogger } from "../../core/log.ts";
import { tinyRequest } from "../../tests/executors/helpers.ts";
import type { RunEnd } from "./harness.ts";
import { logStream } from "./log-stream.ts";
import { SessionPool, statusEnd, type ServerHandle } from "./session.ts";

// A stand-in for env.py --serve that speaks the same files: the request's code says what to do.
const FAKE_SERVER = `
import json, os, sys, time
i, o = sys.argv[1], sys.argv[2]
n = 0
while True:
    p = f"{i}/request-{n}.json"
    if not os.path.exists(p):
        time.sleep(0.01)
        continue
    req = json.load(open(p))
    if req["code"] == "hang":
        time.sleep(600)
    if req["code"] == "die":
        print("dying", flush=True)
        os._exit(3)
    print("serving", n, flush=True)
    if req["code"] != "nodoc":
        json.dump({"task_id": req["task_id"], "n": n, "pid": os.getpid()}, open(f"{o}/result-{n}.json", "w"))
    open(f"{o}/.s", "w").write("-9" if req["code"] == "killed" else "0")
    os.replace(f"{o}/.s", f"{o}/status-{n}")
    n += 1
`;

const root = mkdtempSync(join(tmpdir(), "crusades-session-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const started: number[] = [];
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function fakeServer(_key: string, _log: unknown, output: (s: "stdout" | "stderr", c: Uint8Array) => void): Promise<ServerHandle> {
  const dir = mkdtempSync(join(root, "s-"));
  const [inDir, outDir] = [join(dir, "in"), join(dir, "out")];
  mkdirSync(inDir);
  mkdirSync(outDir);
  const child = spawn("python3", ["-c", FAKE_SERVER, inDir, outDir], { stdio: ["ignore", "pipe", "pipe"] });
  started.push(child.pid!);
  child.stdout.on("data", (c) => output("stdout", c));
  const exited = new Promise<RunEnd>((resolve) => child.on("exit", (code, signal) => resolve({ kind: "exited", code, signal })));
  return {
    inDir,
    outDir,
    read: (name) => readFile(join(outDir, name), "utf8").catch(() => null),
    exited,
    async kill() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

const run = (pool: SessionPool, key: string, code: string, limitMs = 20_000) => {
  const log = memoryLogger();
  const output = logStream(log, 1 << 20);
  return pool.evaluate(key, tinyRequest(code), limitMs, new AbortController().signal, output, log).then((r) => ({ ...r, output }));
};
const doc = (d: string | null) => JSON.parse(d!) as { n: number; pid: number };

describe("warm server sessions", () => {
  test("runs of one key are numbered in order on one server, with their own output", async () => {
    const pool = new SessionPool({ start: fakeServer, exclusive: false });
    const a = await run(pool, "k", "ok");
    const b = await run(pool, "k", "ok");
    await pool.close();
    expect([doc(a.document).n, doc(b.document).n]).toEqual([0, 1]);
    expect(doc(b.document).pid).toBe(doc(a.document).pid);
    expect(a.end).toEqual({ kind: "exited", code: 0 });
    expect(b.output.tail()).toBe("serving 1");
    expect(alive(doc(a.document).pid)).toBe(false);
  });

  test("a run past its limit kills the server; the next run starts a fresh one at request 0", async () => {
    const pool = new SessionPool({ start: fakeServer, exclusive: false });
    const hung = await run(pool, "k", "hang", 300);
    expect(hung.end).toEqual({ kind: "timeout", limitMs: 300 });
    expect(alive(started.at(-1)!)).toBe(false);
    const next = await run(pool, "k", "ok");
    await pool.close();
    expect(doc(next.document).n).toBe(0);
  });

  test("a server that dies mid-run ends the run with its exit, and its last output", async () => {
    const pool = new SessionPool({ start: fakeServer, exclusive: false });
    const r = await run(pool, "k", "die");
    await pool.close();
    expect(r.end).toEqual({ kind: "exited", code: 3, signal: null });
    expect(r.document).toBeNull();
    expect(r.output.tail()).toBe("dying");
  });

  test("a status without a document, or of a killed supervisor, reaches resultOf as an exit", async () => {
    const pool = new SessionPool({ start: fakeServer, exclusive: false });
    const nodoc = await run(pool, "k", "nodoc");
    const killed = await run(pool, "k", "killed");
    await pool.close();
    expect(nodoc).toMatchObject({ end: { kind: "exited", code: 0 }, document: null });
    expect(killed.end).toEqual({ kind: "exited", code: null, signal: "SIGKILL" });
    expect(statusEnd("garbage").kind).toBe("failed");
  });

  test("exclusive: another key's request kills the idle server; idle servers are killed after idleMs", async () => {
    const pool = new SessionPool({ start: fakeServer, exclusive: true, idleMs: 500 });
    const a = doc((await run(pool, "a", "ok")).document).pid;
    const b = doc((await run(pool, "b", "ok")).document).pid;
    expect(b).not.toBe(a);
    expect(alive(a)).toBe(false);
    expect(alive(b)).toBe(true);
    await Bun.sleep(1500);
    expect(alive(b)).toBe(false);
    await pool.close();
  });
});
