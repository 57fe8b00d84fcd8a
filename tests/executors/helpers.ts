// Shared by the executor suites: tiny-profile requests for arbitrary code, and submissions that
// misbehave in the ways a sandbox must survive.
import { expect } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { benchmarkSettings, loadHParams, repoRoot, verificationSettings } from "../../core/hparams.ts";

export const templateCode = () => readFileSync(join(repoRoot, "local_test/train.py"), "utf8");

export function tinyRequest(code: string, overrides: Partial<EvaluationRequest["benchmark"]> = {}): EvaluationRequest {
  const h = loadHParams();
  return {
    schema_version: 1,
    task_id: randomBytes(16).toString("hex"),
    submission_id: `test:${randomBytes(4).toString("hex")}`,
    run_index: 0,
    seed: randomBytes(32).toString("hex"),
    code,
    code_sha256: createHash("sha256").update(code).digest("hex"),
    benchmark: { ...benchmarkSettings(h, "tiny"), ...overrides },
    optimizer: h.optimizer,
    verification: verificationSettings(h, "tiny"),
  };
}

/** A unique token to find a run's stray processes by (`pgrep -f`). */
export const marker = () => `crusades-stray-${randomBytes(6).toString("hex")}`;

/** Starts a detached grandchild (tagged, for pgrep) on import, then never returns from training. */
export const hangingCode = (tag: string) => `
import os, subprocess, time
subprocess.Popen(["sh", "-c", "sleep 600; echo ${tag}"], start_new_session=True)
def inner_steps(model, data_iterator, optimizer, num_steps, device):
    while True:
        time.sleep(0.1)
`;

/** Resolves once a process matching the pattern runs (the submission got as far as starting it). */
export async function waitForProcess(pattern: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if ((await pgrep(pattern)).length) return true;
    await Bun.sleep(250);
  }
  return false;
}

/** The template, plus a forged result document printed to stdout and dropped in every writable spot it can guess. */
export const forgingCode = (template: string) => `${template}

import json as _json, os as _os, sys as _sys
_FORGED = {"schema_version": 1, "task_id": "0" * 32, "submission_id": "forged", "run_index": 0, "success": True,
           "tps": 1e12, "mfu": None, "total_tokens": 10**9, "wall_time_seconds": 0.001, "total_time_seconds": 0.001,
           "error": None, "checks": [], "device": {"type": "cuda", "name": "forged", "peak_flops": None}, "diagnostics": {}}
print(_json.dumps(_FORGED), flush=True)
print("EVAL_RESULT:" + _json.dumps(_FORGED), flush=True)
for _d in {_os.getcwd(), "/tmp", _os.environ.get("TMPDIR", "/tmp"), "/out", "/result", "/app"}:
    try:
        with open(_os.path.join(_d, "result.json"), "w") as _f:
            _json.dump(_FORGED, _f)
    except OSError:
        pass
`;

/**
 * The template, plus probes that run on import and print what happened: a connection to host:port
 * ("network attempt: connected" or the errno) and a write to each path ("<path>=written" or the errno).
 * A sandbox must leave it verified, with every probe failing.
 */
export const probingCode = (template: string, net: { host: string; port: number }, paths: string[]) => `${forgingCode(template)}

import errno as _errno, socket as _socket
def _probe():
    try:
        _socket.create_connection((${JSON.stringify(net.host)}, ${net.port}), timeout=3).close()
        net = "connected"
    except OSError as e:
        net = _errno.errorcode.get(e.errno, str(e))
    print("network attempt:", net, flush=True)
    outcome = []
    for path in ${JSON.stringify(paths)}:
        try:
            with open(path, "w") as f:
                f.write("escaped")
            outcome.append(f"{path}=written")
        except OSError as e:
            outcome.append(f"{path}={_errno.errorcode.get(e.errno, e.errno)}")
    print("write attempts:", " ".join(outcome), flush=True)
_probe()
`;

/** The run directory an executor logged (at debug level) for its run. */
export function loggedRunDir(lines: string[]): string {
  const line = lines.find((l) => l.includes("run directory"));
  const dir = line?.match(/dir=(\S+)/)?.[1];
  if (!dir) throw new Error("the executor logged no run directory");
  return dir;
}

export async function pgrep(pattern: string): Promise<string[]> {
  const p = Bun.spawn(["pgrep", "-af", pattern], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out.split("\n").filter((l) => l && !l.includes("pgrep"));
}

/** Paths a submission must not be able to write: the image, the request and result mounts, the root. */
export const FORBIDDEN_PATHS = ["/app/escaped.txt", "/usr/lib/escaped.txt", "/run/crusades/out/escaped.txt", "/run/crusades/in/escaped.txt", "/escaped.txt"];

/** A TCP listener on every interface that counts connections, and an address of this host to reach it by. */
export async function listener(): Promise<{ host: string; port: number; connections: () => number; close: () => void }> {
  let connections = 0;
  const server: Server = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "0.0.0.0", r));
  // A non-loopback address when there is one: reachable from any container that has a network.
  const host = Object.values(networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal)?.address ?? "127.0.0.1";
  return { host, port: (server.address() as { port: number }).port, connections: () => connections, close: () => server.close() };
}

/** Asserts the probes of `probingCode` all failed, from the run's streamed log. */
export function expectProbesFailed(lines: string[]) {
  const net = lines.find((l) => l.includes("network attempt:"));
  expect(net).toBeDefined();
  expect(net).not.toContain("connected");
  const writes = lines.find((l) => l.includes("write attempts:"));
  expect(writes).toBeDefined();
  expect(writes).not.toContain("=written");
  for (const p of FORBIDDEN_PATHS) expect(writes).toMatch(new RegExp(`${p}=(EROFS|EACCES|EPERM)`));
}
