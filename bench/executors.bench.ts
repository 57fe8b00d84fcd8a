// Executor overhead, per run and per evaluation. Each executor runs one tiny-profile evaluation of the
// template (--runs runs of one submission, as the validator sends them), after a warm-up evaluation of
// another submission (a validator that has been running). Baselines come from the same runs: the
// harness's own total_time_seconds (measured inside env.py) and the timed windows (wall_time_seconds).
// What remains is transport and isolation: process start, imports, container creation, SFTP, copy-out.
// Every executor keeps one warm server per submission (docker and ssh docker: one container; process and
// ssh direct: one process), so run 1 pays the server's start and imports and runs 2..N only a fresh
// supervisor and worker (over ssh: plus the SFTP hand-over and the status poll).
//     bun bench/executors.bench.ts [--runs 5] [--warmup 1] [--only process,docker,ssh-direct,ssh-docker]
// With --slots N (and --submissions M), the process and docker executors get a pool of N CPU slots of
// equal core sets instead: M submissions' runs go through the pool N at a time, as the pipeline sends
// them, and every run prints its slot and start/end; the same runs through one slot of the same size
// give the baseline for the pool's throughput.
//     bun bench/executors.bench.ts --only docker --slots 2 --submissions 2 [--runs 2]
// Docker parts need a reachable engine and the CPU image (tests/fixtures/docker/build-base-image.sh);
// ssh parts need root (a private sshd on loopback is started for the run).
import Docker from "dockerode";
import { spawnSync } from "node:child_process";
import { availableParallelism } from "node:os";
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

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    only: { type: "string", default: "process,docker,ssh-direct,ssh-docker" },
    slots: { type: "string", default: "1" },
    submissions: { type: "string", default: "1" },
  },
});
const RUNS = Number(values.runs);
const SLOTS = Number(values.slots);
const SUBMISSIONS = Number(values.submissions);
const WARMUP = Number(values.warmup);
const only = new Set(values.only.split(","));
const log = createLogger({ level: "warn" });

const dockerOk = await new Docker()
  .getImage(BASE_IMAGE)
  .inspect()
  .then(() => true, () => false);
const isRoot = process.getuid?.() === 0;
const python = spawnSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).stdout.trim();

interface Run {
  endToEnd: number;
  harness: number;
  window: number;
}

interface Row {
  name: string;
  runs: Run[];
  evaluationSeconds: number;
  failures: string[];
}

async function evaluation(executor: Executor, runs: number, row?: Row) {
  const submission = tinyRequest("").submission_id;
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) {
    const request: EvaluationRequest = { ...tinyRequest(templateCode()), submission_id: submission, run_index: i };
    const t = performance.now();
    const result: EvaluationResult = await executor.evaluate(request, { log, signal: new AbortController().signal });
    const endToEnd = (performance.now() - t) / 1000;
    if (!row) continue;
    if (!result.success) row.failures.push(`run ${i + 1}: ${result.error?.code}: ${result.error?.message}`);
    row.runs.push({ endToEnd, harness: result.total_time_seconds, window: result.wall_time_seconds });
  }
  if (row) row.evaluationSeconds = (performance.now() - t0) / 1000;
}

async function measure(name: string, executor: Executor): Promise<Row> {
  const row: Row = { name, runs: [], evaluationSeconds: 0, failures: [] };
  try {
    await executor.init?.(log);
    for (let w = 0; w < WARMUP; w++) await evaluation(executor, 1);
    await evaluation(executor, RUNS, row);
  } finally {
    await executor.close?.();
  }
  return row;
}

interface PoolRun {
  submission: number;
  run: number;
  slot: string;
  start: number;
  end: number;
  ok: boolean;
}

/**
 * SUBMISSIONS × RUNS runs through the executor's pool, as many at once as it has slots, in the order the
 * store hands them out (run 1 of every submission, then run 2, …). Returns each run and the wall time.
 */
async function throughPool(executor: Executor): Promise<{ runs: PoolRun[]; seconds: number; failures: string[] }> {
  await executor.init?.(log);
  try {
    const slots = executor.slots!().length;
    // Warm-up: one run per slot, so each slot has paid its first container and compile caches.
    await Promise.all(Array.from({ length: slots }, () => executor.evaluate(tinyRequest(templateCode()), { log, signal: new AbortController().signal })));
    const ids = Array.from({ length: SUBMISSIONS }, () => tinyRequest("").submission_id);
    const queue = Array.from({ length: RUNS }, (_, run) => ids.map((id, submission) => ({ id, submission, run }))).flat();
    const runs: PoolRun[] = [];
    const failures: string[] = [];
    const t0 = performance.now();
    const worker = async () => {
      for (let next = queue.shift(); next; next = queue.shift()) {
        const request = { ...tinyRequest(templateCode()), submission_id: next.id, run_index: next.run };
        const start = (performance.now() - t0) / 1000;
        const result = await executor.evaluate(request, { log, signal: new AbortController().signal });
        const end = (performance.now() - t0) / 1000;
        if (!result.success) failures.push(`${next.id} run ${next.run + 1}: ${result.error?.code}: ${result.error?.message}`);
        runs.push({ submission: next.submission, run: next.run, slot: String(result.diagnostics.slot), start, end, ok: result.success });
      }
    };
    await Promise.all(Array.from({ length: slots }, worker));
    return { runs, seconds: (performance.now() - t0) / 1000, failures };
  } finally {
    await executor.close?.();
  }
}

/** Pairs of runs on one slot whose times overlap (there must be none). */
function overlaps(runs: PoolRun[]): string[] {
  const bad: string[] = [];
  for (const [i, a] of runs.entries()) {
    for (const b of runs.slice(i + 1)) {
      if (a.slot === b.slot && a.start < b.end && b.start < a.end) bad.push(`s${a.submission + 1} run ${a.run + 1} and s${b.submission + 1} run ${b.run + 1} on ${a.slot}`);
    }
  }
  return bad;
}

async function poolBench(name: string, make: (slots: number | { cpus: string }[]) => Executor) {
  const cores = availableParallelism();
  const per = Math.floor(cores / SLOTS);
  if (per < 1) throw new Error(`--slots ${SLOTS} needs at least ${SLOTS} cores; this machine has ${cores}`);
  const pool = await throughPool(make(SLOTS));
  const one = await throughPool(make([{ cpus: per === 1 ? "0" : `0-${per - 1}` }]));
  const f = (x: number) => x.toFixed(1).padStart(7);
  console.log(`\n${name}: ${SLOTS} CPU slots of ${per} core(s), ${SUBMISSIONS} submission(s) × ${RUNS} run(s), tiny profile, template train.py; seconds from the first run's start`);
  console.log(`${"submission".padEnd(11)} ${"run".padStart(4)} ${"slot".padEnd(10)} ${"start".padStart(7)} ${"end".padStart(7)}  ok`);
  for (const r of [...pool.runs].sort((a, b) => a.start - b.start)) {
    console.log(`${`s${r.submission + 1}`.padEnd(11)} ${String(r.run + 1).padStart(4)} ${r.slot.padEnd(10)} ${f(r.start)} ${f(r.end)}  ${r.ok ? "✓" : "✗"}`);
  }
  const bad = overlaps(pool.runs);
  console.log(bad.length ? `OVERLAP: ${bad.length} pair(s) of runs shared a slot at once: ${bad.join("; ")}` : `no two overlapping runs share a slot (${new Set(pool.runs.map((r) => r.slot)).size} slot(s) used)`);
  const rate = (p: { runs: PoolRun[]; seconds: number }) => (p.runs.length / p.seconds) * 60;
  console.log(`throughput: ${SLOTS} slots ${rate(pool).toFixed(2)} runs/min (${pool.seconds.toFixed(1)} s) against 1 slot of the same size ${rate(one).toFixed(2)} runs/min (${one.seconds.toFixed(1)} s): ${(rate(pool) / rate(one)).toFixed(2)}×`);
  for (const p of [pool, one]) if (p.failures.length) console.log(`  ${p.failures.length} run(s) failed: ${p.failures[0]}`);
}

if (SLOTS > 1 || SUBMISSIONS > 1) {
  if (only.has("process")) await poolBench("process", (slots) => processExecutor({ unsafe: true, gpus: "none", slots }));
  if (only.has("docker")) {
    if (dockerOk) await poolBench("docker", (slots) => dockerExecutor({ image: EVAL_IMAGE, gpus: "none", slots, memory: "4g", shmSize: "1g", build: { baseImage: BASE_IMAGE }, validatorId: "bench" }));
    else console.log(`docker: skipped (no engine, or ${BASE_IMAGE} missing)`);
  }
  process.exit(0);
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
      const base = { host: sshd.host, port: sshd.port, privateKeyPath: sshd.privateKeyPath, knownHostsPath: sshd.knownHostsPath, validatorId: "bench", gpus: "none" as const };
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

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const f = (x: number, w = 8) => x.toFixed(2).padStart(w);
console.log(`\ntiny profile, template train.py: ${WARMUP} warm-up evaluation(s), then one evaluation of ${RUNS} runs per executor; seconds`);
console.log(`python start-up with torch + transformers imported, on this host: ${importSeconds.toFixed(2)} s (paid once per server, or per run where there is none)`);
console.log("overhead = request→result − the harness's own total_time_seconds; eval/windows = the evaluation's wall time ÷ the sum of its timed windows");
console.log(`${"executor".padEnd(12)} ${"run 1".padStart(8)} ${"harness".padStart(8)} ${"overhead".padStart(8)} │ ${"runs 2..".padStart(8)} ${"harness".padStart(8)} ${"overhead".padStart(8)} ${"×run 1".padStart(7)} │ ${"eval".padStart(8)} ${"windows".padStart(8)} ${"ratio".padStart(7)}`);
for (const r of rows) {
  if (r.runs.length === 0) {
    console.log(`${r.name.padEnd(12)} no runs: ${r.failures[0]}`);
    continue;
  }
  const [first, ...rest] = r.runs;
  const restOverhead = rest.length ? mean(rest.map((x) => x.endToEnd - x.harness)) : NaN;
  const firstOverhead = first!.endToEnd - first!.harness;
  const windows = sum(r.runs.map((x) => x.window));
  console.log(
    `${r.name.padEnd(12)} ${f(first!.endToEnd)} ${f(first!.harness)} ${f(firstOverhead)} │ ${f(mean(rest.map((x) => x.endToEnd)))} ${f(mean(rest.map((x) => x.harness)))} ${f(restOverhead)} ${(restOverhead / firstOverhead).toFixed(2).padStart(6)}× │ ${f(r.evaluationSeconds)} ${f(windows)} ${(r.evaluationSeconds / windows).toFixed(2).padStart(6)}×` +
      (r.failures.length ? `  (${r.failures.length} failed: ${r.failures[0]})` : ""),
  );
}
