// Pipeline overhead per evaluation: 1,000 queued runs through the store with an executor that returns at
// once, against a baseline of the same executor called 1,000 times directly (same process, same run).
// Target: under 5 ms of pipeline overhead per run.
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { failedResult, type EvaluationRequest } from "../core/contracts.ts";
import { loadHParams } from "../core/hparams.ts";
import { createLogger } from "../core/log.ts";
import { createPipeline } from "../core/pipeline.ts";
import { defineExecutor, defineSource } from "../core/plugin.ts";
import { Store } from "../core/storage/store.ts";

const SUBMISSIONS = 200;
const RUNS = 5;
const TOTAL = SUBMISSIONS * RUNS;

const instant = defineExecutor("instant", z.object({}), () => ({
  evaluate: async (req) => ({ ...failedResult(req, "crash", ""), success: true, error: null, tps: 1000 + req.run_index }),
}))();

const code = (i: number) => `# ${i}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;
const dir = mkdtempSync(join(tmpdir(), "crusades-bench-"));
try {
  const hparams = { ...loadHParams(), evaluation_runs: RUNS };
  const store = await Store.open(join(dir, "bench.db"));
  const subs = Array.from({ length: SUBMISSIONS }, (_, i) => ({ id: `s${i}`, hotkey: `hk${i}`, uid: i, url: `https://code.example/${i}.py`, revealBlock: i, source: "bench" }));
  const pipeline = createPipeline({
    store,
    hparams,
    profile: "tiny",
    sources: [defineSource("bench", z.object({}), () => ({ poll: async () => subs.splice(0) }))()],
    executor: instant,
    sinks: [],
    log: createLogger({ level: "error" }),
    fetchCode: async (url) => {
      const body = new TextEncoder().encode(code(Number(url.match(/(\d+)\.py/)![1])));
      return { ok: true, url, bytes: body, sha256: createHash("sha256").update(body).digest("hex") };
    },
  });
  await pipeline.poll();
  while (await pipeline.fetchPending());

  // Baseline: the executor alone, same request shape, same count.
  const req = { task_id: "0".repeat(32), submission_id: "s", run_index: 0 } as EvaluationRequest;
  const signal = new AbortController().signal;
  const log = createLogger({ level: "error" });
  let t = performance.now();
  for (let i = 0; i < TOTAL; i++) await instant.evaluate({ ...req, run_index: i % RUNS }, { log, signal });
  const baselineMs = performance.now() - t;

  t = performance.now();
  const evaluated = await pipeline.evaluateQueued();
  const pipelineMs = performance.now() - t;
  if (evaluated !== TOTAL) throw new Error(`expected ${TOTAL} runs, evaluated ${evaluated}`);
  store.close();

  const perRun = (pipelineMs - baselineMs) / TOTAL;
  console.log(`pipeline overhead, ${TOTAL} queued runs (${SUBMISSIONS} submissions × ${RUNS})`);
  console.log(`  baseline (executor alone): ${baselineMs.toFixed(1)} ms total, ${(baselineMs / TOTAL).toFixed(4)} ms/run`);
  console.log(`  pipeline (claim, run, record, score): ${pipelineMs.toFixed(1)} ms total, ${(pipelineMs / TOTAL).toFixed(4)} ms/run`);
  console.log(`  ratio pipeline/baseline: ${(pipelineMs / baselineMs).toFixed(1)}x`);
  console.log(`  overhead per run: ${perRun.toFixed(3)} ms (target < 5 ms): ${perRun < 5 ? "OK" : "OVER TARGET"}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
