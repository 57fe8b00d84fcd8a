import { describe, expect, test } from "bun:test";
import { staleSchemas } from "../scripts/export-schema.ts";
import { EvaluationRequest, failedResult, parseResult, type EvaluationResult } from "./contracts.ts";

const request: EvaluationRequest = {
  schema_version: 1,
  task_id: "a".repeat(32),
  submission_id: "s1",
  run_index: 2,
  seed: "b".repeat(64),
  code: "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n",
  code_sha256: "c".repeat(64),
  benchmark: { profile: "tiny", model_config: "hparams/models/tiny-qwen2.json", model_config_sha256: "0".repeat(64), batch_size: 2, sequence_length: 64, eval_steps: 3, warmup_steps: 1, data_path: null, timeout_seconds: 60, autocast: false },
  optimizer: { lr: 1e-4, betas: [0.9, 0.95], eps: 1e-8, weight_decay: 0.1 },
  verification: {
    loss_abs_tolerance: 0.02,
    logits_rel_tolerance: 0.1,
    layer_signal_floor: 0.05,
    update: { scale: 0.05, rel_global: 0.15, rel_layer: 0.5 },
    exp_avg: { scale: 0.05, rel_global: 0.1, rel_layer: 0.25 },
    exp_avg_sq: { scale: 0.05, rel_global: 0.1, rel_layer: 0.25 },
  },
};

const good = (): EvaluationResult => ({
  ...failedResult(request, "crash", "x"),
  success: true,
  tps: 1234.5,
  error: null,
  total_tokens: 384,
});

describe("evaluation documents", () => {
  test("exported JSON Schemas match core/contracts.ts (run `bun scripts/export-schema.ts` when this fails)", () => {
    expect(staleSchemas()).toEqual([]);
  });

  test("a valid result for this request passes through", () => {
    expect(parseResult(request, good())).toEqual(good());
  });

  test("a result for another task is refused as invalid_result", () => {
    const r = parseResult(request, { ...good(), task_id: "d".repeat(32) });
    expect(r.success).toBe(false);
    expect(r.error?.code).toBe("invalid_result");
    expect(r.tps).toBe(0);
  });

  test("schema violations name the field", () => {
    const r = parseResult(request, { ...good(), tps: "fast" });
    expect(r.error?.code).toBe("invalid_result");
    expect(r.error?.message).toContain("tps");
  });

  test("success with an error attached is refused", () => {
    const r = parseResult(request, { ...good(), error: { code: "crash", message: "boom" } });
    expect(r.error?.code).toBe("invalid_result");
  });

  test("garbage is refused, not thrown", () => {
    for (const raw of [null, 42, "{}", [], { schema_version: 2 }]) expect(parseResult(request, raw).error?.code).toBe("invalid_result");
  });

  test("request schema rejects a short seed", () => {
    expect(EvaluationRequest.safeParse({ ...request, seed: "ab" }).success).toBe(false);
  });
});
