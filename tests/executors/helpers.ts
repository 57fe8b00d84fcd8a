// Shared by the executor suites: tiny-profile requests for arbitrary code, and submissions that
// misbehave in the ways a sandbox must survive.
import { createHash, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { EvaluationRequest } from "../../core/contracts.ts";
import { benchmarkSettings, loadHParams, repoRoot } from "../../core/hparams.ts";

/** The CPU evaluation image for tests: environments/templar/Dockerfile built on tests/fixtures/docker's base. */
export const BASE_IMAGE = "crusades-base:bookworm";
export const EVAL_IMAGE = "crusades-eval:cpu";

/** Where the harness and the template live; another checkout can be tested with CRUSADES_TEST_HARNESS_DIR. */
export const harnessDir = process.env.CRUSADES_TEST_HARNESS_DIR ?? repoRoot;
export const templateCode = () => readFileSync(join(harnessDir, "local_test/train.py"), "utf8");

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
    verification: h.verification,
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

/** Tries to write each path when training starts and raises with what happened to each ("written" or the errno). */
export const writeOutsideCode = (paths: string[]) => `
import errno
def inner_steps(model, data_iterator, optimizer, num_steps, device):
    outcome = []
    for path in ${JSON.stringify(paths)}:
        try:
            with open(path, "w") as f:
                f.write("escaped")
            outcome.append(f"{path}=written")
        except OSError as e:
            outcome.append(f"{path}={errno.errorcode.get(e.errno, e.errno)}")
    raise RuntimeError("write attempts: " + " ".join(outcome))
`;

/** Tries to reach a host on the network from inside the training call and raises with the outcome. */
export const networkCode = (host: string, port: number) => `
import errno, socket
def inner_steps(model, data_iterator, optimizer, num_steps, device):
    try:
        s = socket.create_connection((${JSON.stringify(host)}, ${port}), timeout=3)
        s.sendall(b"leak")
        outcome = "connected"
    except OSError as e:
        outcome = errno.errorcode.get(e.errno, str(e))
    raise RuntimeError("network attempt: " + outcome)
`;

export async function pgrep(pattern: string): Promise<string[]> {
  const p = Bun.spawn(["pgrep", "-af", pattern], { stdout: "pipe" });
  const out = await new Response(p.stdout).text();
  await p.exited;
  return out.split("\n").filter((l) => l && !l.includes("pgrep"));
}
