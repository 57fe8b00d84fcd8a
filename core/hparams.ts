// Competition parameters: one file (hparams/hparams.json) read by the validator, the miner CLI and,
// through the evaluation request, the Python harness. One source of truth, so thresholds cannot drift.
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { BenchmarkSettings, OptimizerSettings, VerificationSettings, type Profile } from "./contracts.ts";
import { formatZodError } from "./errors.ts";

const ProfileSettings = BenchmarkSettings.omit({ profile: true });

export const HParams = z.object({
  netuid: z.number().int().min(0).max(65535),
  evaluation_runs: z.number().int().positive(),
  eval_steps: z.number().int().positive(),
  warmup_steps: z.number().int().nonnegative(),
  benchmark_model_name: z.string().min(1),
  benchmark_model_config: z.string().min(1),
  benchmark_batch_size: z.number().int().positive(),
  benchmark_sequence_length: z.number().int().min(2),
  benchmark_data_path: z.string().nullable(),
  eval_timeout: z.number().positive(),
  reveal_blocks: z.number().int().positive(),
  block_time: z.number().positive(),
  set_weights_interval_blocks: z.number().int().positive(),
  min_blocks_between_commits: z.number().int().nonnegative(),
  burn_uid: z.number().int().min(0).max(65535),
  burn_rate: z.number().min(0).max(1),
  min_success_rate: z.number().min(0).max(1),
  leader_threshold: z.number().min(0),
  weights_version_key: z.number().int().nonnegative(),
  max_code_bytes: z.number().int().positive(),
  code_fetch_timeout: z.number().positive(),
  optimizer: OptimizerSettings,
  verification: VerificationSettings,
  executor: z.object({
    memory: z.string().regex(/^\d+[kmg]?$/i, "a size such as 64g"),
    shm_size: z.string().regex(/^\d+[kmg]?$/i, "a size such as 16g"),
    pids_limit: z.number().int().positive(),
    max_log_bytes: z.number().int().positive(),
  }),
  profiles: z.object({ tiny: ProfileSettings }),
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
      batch_size: h.benchmark_batch_size,
      sequence_length: h.benchmark_sequence_length,
      eval_steps: h.eval_steps,
      warmup_steps: h.warmup_steps,
      data_path: h.benchmark_data_path,
      timeout_seconds: h.eval_timeout,
    };
  }
  return { profile, ...h.profiles[profile] };
}
