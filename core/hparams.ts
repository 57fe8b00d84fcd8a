// Competition parameters: one file (hparams/hparams.json) read by the validator, the miner CLI and,
// through the evaluation request, the Python harness. One source of truth, so thresholds cannot drift.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { BenchmarkSettings, OptimizerSettings, VerificationSettings, type Profile } from "./contracts.ts";
import { formatZodError } from "./errors.ts";

const ProfileSettings = BenchmarkSettings.omit({ profile: true, model_config_sha256: true }).extend({
  verification: VerificationSettings.optional(),
});

export const HParams = z.object({
  netuid: z.number().int().min(0).max(65535).describe("Subnet id for commitments, reveals and weights."),
  evaluation_runs: z.number().int().positive().describe("Runs per submission; the score is the median TPS of the successful ones."),
  eval_steps: z.number().int().positive().describe("`num_steps` of the timed call to `inner_steps` (benchmark profile)."),
  warmup_steps: z.number().int().nonnegative().describe("Steps of the untimed warm-up call (fresh weights and data; warms compile caches)."),
  benchmark_model_name: z.string().min(1).describe("The benchmark model (for people; the harness builds it from `benchmark_model_config`)."),
  benchmark_model_config: z.string().min(1).describe("transformers config.json the model is built from (random init from the run seed, no download)."),
  benchmark_batch_size: z.number().int().positive().describe("Rows per batch."),
  benchmark_sequence_length: z.number().int().min(2).describe("Tokens per row; expected tokens = batch × sequence × steps."),
  benchmark_data_path: z.string().nullable().describe("Token shard written by `local_test/setup_benchmark.py`; null = seeded synthetic tokens."),
  benchmark_data_sha256: z.string().regex(/^[0-9a-f]{64}$/, "64 lowercase hex characters").nullable().describe("sha256 of the token shard's file (`sha256sum`): a validator whose shard differs refuses to start, and the harness refuses to run on another; null = unpinned (a warning at start)."),
  eval_timeout: z.number().positive().describe("Hard wall-clock limit of one evaluation in seconds (benchmark profile); the executor kills the run after it."),
  reveal_blocks: z.number().int().positive().describe("Blocks until a commitment’s timelock opens (about 20 minutes at 12 s)."),
  block_time: z.number().positive().describe("Seconds per block, for the drand round of a reveal."),
  set_weights_interval_blocks: z.number().int().positive().describe("Blocks between weight settings."),
  min_blocks_between_commits: z.number().int().nonnegative().describe("One accepted submission per hotkey per this many blocks (by reveal block)."),
  burn_uid: z.number().int().min(0).max(65535).describe("UID receiving the burn share, and everything when there is no eligible leader."),
  burn_rate: z.number().min(0).max(1).describe("Share of weight burned; the leader gets the rest (winner takes all)."),
  min_success_rate: z.number().min(0).max(1).describe("Share of runs that must verify for a score; only failures that prove nothing about honesty (timeout, crash, out of memory) count against it, a failed verification disqualifies."),
  leader_threshold: z.number().min(0).describe("A challenger must beat the leader’s TPS by more than this fraction (0.01 = 1%); ties go to the earlier submission."),
  weights_version_key: z.number().int().nonnegative().describe("`version_key` sent with set_weights."),
  max_code_bytes: z.number().int().positive().describe("Largest train.py accepted (bytes, streamed cap)."),
  code_fetch_timeout: z.number().positive().describe("Seconds for fetching a train.py, redirects included."),
  optimizer: OptimizerSettings.describe("AdamW settings the harness gives `inner_steps` (lr, betas, eps, weight_decay)."),
  verification: VerificationSettings.describe("Tolerances of the comparison against the reference run (see environments/templar/README.md)."),
  executor: z.object({
    memory: z.string().regex(/^\d+[kmg]?$/i, "a size such as 64g"),
    shm_size: z.string().regex(/^\d+[kmg]?$/i, "a size such as 16g"),
    pids_limit: z.number().int().positive(),
    max_log_bytes: z.number().int().positive(),
  }).describe("Container limits: memory, shm_size, pids_limit, max_log_bytes (log cap per run)."),
  profiles: z.object({ tiny: ProfileSettings, "tiny-bf16": ProfileSettings, "deep-bf16": ProfileSettings }).describe("Other benchmark profiles; `tiny` is a 2-layer model that runs on a CPU in fp32 (demo, tests), `tiny-bf16` the same shapes under bf16 autocast, `deep-bf16` a 12-layer narrow lab profile for measuring the verdict. Each is judged with its calibration (environments/templar/calibration/<profile>.<device class>.json, bench/calibrate.py) where one exists; otherwise with its own `verification`, else the top-level tolerances, and the result says it was uncalibrated."),
}).strict();
export type HParams = z.infer<typeof HParams>;

export const repoRoot = fileURLToPath(new URL("..", import.meta.url));
export const defaultHParamsPath = fileURLToPath(new URL("../hparams/hparams.json", import.meta.url));

export function parseHParams(raw: unknown, origin = "hparams"): HParams {
  const parsed = HParams.safeParse(raw);
  if (!parsed.success) throw new Error(`${origin}: ${formatZodError(parsed.error)}`);
  return parsed.data;
}

export function loadHParams(path = defaultHParamsPath): HParams {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`cannot read hparams from ${path}: ${(e as Error).message}`);
  }
  return parseHParams(raw, path);
}

/** The benchmark settings for a profile: `benchmark` comes from the top-level keys, others from `profiles`. */
export function benchmarkSettings(h: HParams, profile: Profile): BenchmarkSettings {
  if (profile === "benchmark") {
    return {
      profile,
      model_config: h.benchmark_model_config,
      model_config_sha256: modelConfigSha256(h.benchmark_model_config),
      batch_size: h.benchmark_batch_size,
      sequence_length: h.benchmark_sequence_length,
      eval_steps: h.eval_steps,
      warmup_steps: h.warmup_steps,
      data_path: h.benchmark_data_path,
      data_sha256: h.benchmark_data_sha256,
      timeout_seconds: h.eval_timeout,
      autocast: true,
    };
  }
  const { verification: _, ...settings } = h.profiles[profile];
  return { profile, ...settings, model_config_sha256: modelConfigSha256(settings.model_config) };
}

/**
 * sha256 of a model config (relative to the repository root, or absolute) as this checkout holds it. The
 * request carries it, and the harness refuses a file with other bytes: no run is built from a config that
 * changed after the validator read hparams, and a sandbox whose copy differs says so instead of scoring
 * another model.
 */
export function modelConfigSha256(path: string): string {
  try {
    return createHash("sha256").update(readFileSync(resolve(repoRoot, path))).digest("hex");
  } catch (e) {
    throw new Error(`cannot read the model config ${path}: ${(e as Error).message}`);
  }
}

/** The tolerances a profile is verified with: its own where it sets them, else the top-level ones. */
export function verificationSettings(h: HParams, profile: Profile): VerificationSettings {
  return profile === "benchmark" ? h.verification : (h.profiles[profile].verification ?? h.verification);
}
