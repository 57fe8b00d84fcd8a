// The documents that cross the TS ↔ Python boundary, defined once here and exported as JSON Schema to
// environments/templar/schema/ (scripts/export-schema.ts). Documents use snake_case because the
// Python harness reads and writes them; TS-internal records (Submission) use camelCase.
import { z } from "zod";

export const SCHEMA_VERSION = 1 as const;

const hex = (len: number) => z.string().regex(new RegExp(`^[0-9a-f]{${len}}$`), `${len} lowercase hex characters`);

export const Submission = z.object({
  /** Stable id chosen by the source, e.g. `chain:<revealBlock>:<hotkey>` or `gist:<id>:<revision>`. */
  id: z.string().min(1).max(200),
  hotkey: z.string().min(1),
  uid: z.number().int().nonnegative().nullable(),
  url: z.string().url(),
  /** First 32 hex characters of sha256(code), when the commitment carried one. */
  committedHash: hex(32).optional(),
  revealBlock: z.number().int().nonnegative(),
  /** Block of the on-chain commitment, when the source knows it: priority (first committer, ties) goes by it. */
  commitBlock: z.number().int().nonnegative().optional(),
  source: z.string().min(1),
});
export type Submission = z.infer<typeof Submission>;

/** `deep-bf16` is a lab profile (12 narrow layers on a CPU) for measuring the verdict, not for competing. */
export const Profile = z.enum(["tiny", "tiny-bf16", "deep-bf16", "benchmark"]);
export type Profile = z.infer<typeof Profile>;

export const BenchmarkSettings = z.object({
  profile: Profile,
  /** Path of a transformers config.json, relative to the repository root or absolute. */
  model_config: z.string().min(1),
  /** sha256 of that file as the validator read it (core/hparams.ts): the harness builds no model from other bytes. */
  model_config_sha256: hex(64),
  batch_size: z.number().int().positive(),
  sequence_length: z.number().int().min(2),
  eval_steps: z.number().int().positive(),
  warmup_steps: z.number().int().nonnegative(),
  /** Token shard (.npy/.bin of uint32) for the benchmark profile; null means seeded synthetic tokens. */
  data_path: z.string().nullable(),
  /** sha256 the shard's file must have (hparams pins it); the harness refuses any other. Absent or null: unpinned. */
  data_sha256: hex(64).nullable().optional(),
  timeout_seconds: z.number().positive(),
  /** Train under bf16 autocast over fp32 master weights (GPUs; `tiny-bf16` on a CPU), else plain fp32. */
  autocast: z.boolean(),
});
export type BenchmarkSettings = z.infer<typeof BenchmarkSettings>;

export const OptimizerSettings = z.object({
  lr: z.number().positive(),
  betas: z.tuple([z.number(), z.number()]),
  eps: z.number().positive(),
  weight_decay: z.number().nonnegative(),
});

/** Bounds of one kind of evidence (see environments/templar/checks.py). */
const EvidenceBounds = z.object({
  /** Max |1 − ⟨c, r⟩ / ‖r‖²|: the share of the reference's value the candidate reached. */
  scale: z.number().positive(),
  /** Max ‖c − r‖ / ‖r‖ over all parameters. */
  rel_global: z.number().positive(),
  /** Max ‖c − r‖ / ‖r‖ of the worst tensor that carries signal. */
  rel_layer: z.number().positive(),
}).strict();

export const VerificationSettings = z.object({
  /** Max |loss_candidate − loss_reference|. */
  loss_abs_tolerance: z.number().positive(),
  /** Max ‖logits_cand − logits_ref‖ / ‖logits_ref‖ (on their sketches). */
  logits_rel_tolerance: z.number().positive(),
  /** A tensor below this share of the model's typical magnitude is judged against that magnitude (noise-only gradients). */
  layer_signal_floor: z.number().min(0).max(1),
  /** The update W − W₀ of every tensor. */
  update: EvidenceBounds,
  /** AdamW's exp_avg after the call (the last gradient weighs 1 − β₁). */
  exp_avg: EvidenceBounds,
  /** AdamW's exp_avg_sq after the call (the last gradient weighs 1 − β₂). */
  exp_avg_sq: EvidenceBounds,
}).strict();
export type VerificationSettings = z.infer<typeof VerificationSettings>;

export const EvaluationRequest = z.object({
  schema_version: z.literal(SCHEMA_VERSION),
  /** Random nonce binding the result to this request; the result must echo it. */
  task_id: hex(32),
  submission_id: z.string().min(1),
  run_index: z.number().int().nonnegative(),
  /** 256-bit secret; all initial weights and data order derive from it. Never shown to miner code early. */
  seed: hex(64),
  code: z.string().min(1),
  code_sha256: hex(64),
  benchmark: BenchmarkSettings,
  optimizer: OptimizerSettings,
  verification: VerificationSettings,
});
export type EvaluationRequest = z.infer<typeof EvaluationRequest>;

/** Stable failure codes. Miners and dashboards key on these; add, never rename. */
export const ErrorCode = z.enum([
  // the submission's own fault
  "syntax_error",
  "import_error",
  "missing_inner_steps",
  "bad_signature",
  "crash",
  "timeout",
  "bad_return",
  "token_count",
  "logits_shape",
  "logits_mismatch",
  "loss_mismatch",
  "weights_mismatch",
  "frozen_params",
  "optimizer_state",
  "optimizer_mismatch",
  "non_finite",
  "deferred_work",
  "tampering",
  "out_of_memory",
  /** MFU above the physical ceiling (environments/templar/checks.py MFU_CEILING of the dense bf16 peak). */
  "implausible_mfu",
  // the validator's side
  "harness_error",
  "executor_error",
  "invalid_result",
  "cancelled",
]);
export type ErrorCode = z.infer<typeof ErrorCode>;

export const Check = z.object({
  name: z.string(),
  passed: z.boolean(),
  value: z.number().nullable(),
  bound: z.string().nullable(),
  /** The largest value honest loops reached in the calibration (for a scale: the largest |1 − scale|). */
  honest_max: z.number().optional(),
  detail: z.string().optional(),
});
export type Check = z.infer<typeof Check>;

export const EvaluationResult = z.object({
  schema_version: z.literal(SCHEMA_VERSION),
  task_id: hex(32),
  submission_id: z.string(),
  run_index: z.number().int().nonnegative(),
  success: z.boolean(),
  /** Tokens per second of the timed window; 0 when the run failed. */
  tps: z.number().nonnegative(),
  /** Model FLOP utilisation (0..1) when the device's peak is known. */
  mfu: z.number().nonnegative().nullable(),
  /** Tokens the harness fed (batch × seq_len × steps), never the miner's count. */
  total_tokens: z.number().int().nonnegative(),
  /** Seconds inside the timed window(s). */
  wall_time_seconds: z.number().nonnegative(),
  /** Seconds for the whole evaluation, set-up and reference included. */
  total_time_seconds: z.number().nonnegative(),
  error: z.object({ code: ErrorCode, message: z.string() }).nullable(),
  checks: z.array(Check),
  /** Which measured honest band judged the run (environments/templar/calibration/); absent when no comparison ran. */
  calibration: z.object({
    profile: Profile,
    device_class: z.string(),
    /** false: no calibration of this profile for this device class and settings; the hparams bounds judged. */
    calibrated: z.boolean(),
    file: z.string().nullable(),
    version: z.number().int().nullable(),
    created: z.string().optional(),
    reason: z.string().optional(),
  }).strict().optional(),
  /** sha256 of the token shard's file the run's batches were cut from; null for synthetic tokens, or a run that ended before reading it. */
  data_sha256: hex(64).nullable(),
  device: z.object({ type: z.string(), name: z.string(), peak_flops: z.number().nullable() }),
  diagnostics: z.record(z.string(), z.unknown()),
});
export type EvaluationResult = z.infer<typeof EvaluationResult>;

/** A failed result made on the validator side (executor or transport failure), valid under the schema. */
export function failedResult(
  request: Pick<EvaluationRequest, "task_id" | "submission_id" | "run_index">,
  code: ErrorCode,
  message: string,
  diagnostics: Record<string, unknown> = {},
): EvaluationResult {
  return {
    schema_version: SCHEMA_VERSION,
    task_id: request.task_id,
    submission_id: request.submission_id,
    run_index: request.run_index,
    success: false,
    tps: 0,
    mfu: null,
    total_tokens: 0,
    wall_time_seconds: 0,
    total_time_seconds: 0,
    error: { code, message },
    checks: [],
    data_sha256: null,
    device: { type: "unknown", name: "unknown", peak_flops: null },
    diagnostics,
  };
}

/**
 * Parses a result document from an executor. Anything that is not a valid result for this very request
 * (wrong nonce, wrong run, schema violation) becomes a failed `invalid_result`, never an exception.
 */
export function parseResult(request: EvaluationRequest, raw: unknown): EvaluationResult {
  const parsed = EvaluationResult.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return failedResult(request, "invalid_result", `result document does not match the schema at ${issue?.path.join(".") || "(root)"}: ${issue?.message}`);
  }
  const r = parsed.data;
  if (r.task_id !== request.task_id || r.run_index !== request.run_index || r.submission_id !== request.submission_id) {
    return failedResult(request, "invalid_result", "result document belongs to another request (task_id/run mismatch)");
  }
  if (r.success && (r.error !== null || r.tps <= 0)) {
    return failedResult(request, "invalid_result", "result claims success with an error or a non-positive TPS");
  }
  return r;
}

export const jsonSchemas = () => ({
  "evaluation-request.schema.json": z.toJSONSchema(EvaluationRequest, { target: "draft-2020-12" }),
  "evaluation-result.schema.json": z.toJSONSchema(EvaluationResult, { target: "draft-2020-12" }),
});
