// Executor overhead: for one tiny-profile evaluation of the template, the time from handing the request
// to an executor to holding its result, minus the harness's own total_time_seconds (measured inside
// env.py in the same run, so it is the baseline). What remains is transport and isolation: process
// start, container creation, SFTP, result copy-out, clean-up.
//     bun bench/executors.bench.ts [--runs 2] [--only process,docker,ssh-direct,ssh-docker]
// Docker parts need a reachable engine and the CPU image (tests/fixtures/docker/build-base-image.sh);
// ssh parts need root (a private sshd on loopback is started for the run).
import Docker from "dockerode";
import { spawnSync } from "node:child_process";
import { parseArgs } from "node:util";
import type { EvaluationRequest, EvaluationResult } from "../core/contracts.ts";
import { repoRoot } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";
import type { Executor } from "../core/plugin.ts";
import { dockerExecutor } from "../plugins/executors/docker.ts";
import { processExecutor } from "../plugins/executors/process.ts";
import { sshExecutor } from "../plugins/executors/ssh.ts";
import { BASE_IMAGE, EVAL_IMAGE } from "../tests/fixtures/docker/images.ts";
import { templateCode, tinyRequest } from "../tests/executors/helpers.ts";
import { startSshd, TEST_USER, type Sshd } from "../tests/fixtures/sshd/sshd.ts";

const { values } = parseArgs({ options: { runs: { type: "string", default: "2" }, only: { type: "string", default: "process,docker,ssh-direct,ssh-docker" } } });
const RUNS = Number(values.runs);
const only = new Set(values.only.split(","));
const log = createLogger({ level: "warn" });

const dockerOk = await new Docker()
  .getImage(BASE_IMAGE)
  .inspect()
  .then(() => true, () => false);
const isRoot = process.getuid?.() === 0;
const python = spawnSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).stdout.trim();

interface Row {
  name: string;
  endToEnd: number[];
  harness: number[];
  failures: string[];
}

async function measure(name: string, executor: Executor): Promise<Row> {
  const row: Row = { name, endToEnd: [], harness: [], failures: [] };
  await executor.init?.(log);
  for (let i = 0; i < RUNS; i++) {
    const request: EvaluationRequest = tinyRequest(templateCode());
    const t = performance.now();
    const result: EvaluationResult = await executor.evaluate(request, { log, signal: new AbortController().signal });
    const seconds = (performance.now() - t) / 1000;
    if (!result.success) {
      row.failures.push(`${result.error?.code}: ${result.error?.message}`);
      continue;
    }
    row.endToEnd.push(seconds);
    row.harness.push(result.total_time_seconds);
  }
  await executor.close?.();
  return row;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const rows: Row[] = [];
let sshd: Sshd | undefined;
try {
  if (only.has("process")) rows.push(await measure("process", processExecutor({ unsafe: true })));
  const dockerOptions = { image: EVAL_IMAGE, gpus: "none" as const, memory: "4g", shmSize: "1g", build: { baseImage: BASE_IMAGE }, validatorId: "bench" };
  if (only.has("docker")) {
    if (dockerOk) rows.push(await measure("docker", dockerExecutor(dockerOptions)));
    else console.log(`docker: skipped (no engine, or ${BASE_IMAGE} missing)`);
  }
  if (only.has("ssh-direct") || only.has("ssh-docker")) {
    if (!isRoot) console.log("ssh: skipped (the private sshd needs root)");
    else {
      sshd = await startSshd({ users: [TEST_USER, "root"] });
      const base = { host: sshd.host, port: sshd.port, privateKeyPath: sshd.privateKeyPath, knownHostsPath: sshd.knownHostsPath, validatorId: "bench" };
      if (only.has("ssh-direct")) rows.push(await measure("ssh direct", sshExecutor({ ...base, user: "root", mode: "direct", remoteRepo: repoRoot, python })));
      if (only.has("ssh-docker") && dockerOk) rows.push(await measure("ssh docker", sshExecutor({ ...base, ...dockerOptions, user: TEST_USER, mode: "docker" })));
    }
  }
} finally {
  await sshd?.stop();
}

// The harness clocks itself from main(), after Python has imported torch: that start-up is part of every
// executor's overhead, so it is measured here on its own for reference.
const t0 = performance.now();
spawnSync(python, ["-c", "import torch, transformers, jsonschema, safetensors"]);
const importSeconds = (performance.now() - t0) / 1000;

console.log(`\ntiny profile, template train.py, ${RUNS} run(s) per executor; times are means in seconds`);
console.log(`python start-up with torch + transformers imported, on this host: ${importSeconds.toFixed(2)} s (inside every overhead below)`);
console.log(`${"executor".padEnd(12)} ${"request→result".padStart(15)} ${"harness".padStart(9)} ${"overhead".padStart(9)} ${"ratio".padStart(7)}`);
for (const r of rows) {
  if (r.endToEnd.length === 0) {
    console.log(`${r.name.padEnd(12)} every run failed: ${r.failures[0]}`);
    continue;
  }
  const e = mean(r.endToEnd);
  const h = mean(r.harness);
  console.log(`${r.name.padEnd(12)} ${e.toFixed(2).padStart(15)} ${h.toFixed(2).padStart(9)} ${(e - h).toFixed(2).padStart(9)} ${(e / h).toFixed(2).padStart(6)}×${r.failures.length ? `  (${r.failures.length} failed: ${r.failures[0]})` : ""}`);
}
