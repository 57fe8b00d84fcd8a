// What every executor shares about the evaluation harness: how it is invoked, how long it may take,
// and how whatever it left behind becomes a result. Executors differ only in where and how isolated
// the command runs.
import { failedResult, parseResult, type EvaluationRequest, type EvaluationResult } from "../../core/contracts.ts";

/** Relative to a directory that holds environments/templar and hparams/models (model_config is relative). */
export const HARNESS_SCRIPT = "environments/templar/env.py";
export const REQUEST_FILE = "request.json";
export const RESULT_FILE = "result.json";

export function harnessArgs(requestPath: string, resultPath: string): string[] {
  return [HARNESS_SCRIPT, "--request", requestPath, "--result", resultPath];
}

/**
 * The hard limit an executor enforces from outside: the harness's own timeout plus a margin for start-up,
 * the reference run and writing the result, unless the operator sets the whole limit.
 */
export function wallClockLimitMs(request: EvaluationRequest, opts: { timeoutSeconds?: number; marginSeconds: number }): number {
  return Math.round((opts.timeoutSeconds ?? request.benchmark.timeout_seconds + opts.marginSeconds) * 1000);
}

export type RunEnd =
  | { kind: "exited"; code: number | null; signal?: string | null }
  | { kind: "timeout"; limitMs: number }
  | { kind: "cancelled" }
  | { kind: "failed"; message: string };

/**
 * Turns the end of a run and the result document it left (null when none) into a result. A document
 * is trusted only through parseResult; a missing one says why, with the last lines of output.
 */
export function resultOf(request: EvaluationRequest, end: RunEnd, document: string | null, tail: string): EvaluationResult {
  const diagnostics = tail ? { output_tail: tail } : {};
  switch (end.kind) {
    case "timeout":
      return failedResult(request, "timeout", `evaluation exceeded the executor's wall-clock limit of ${end.limitMs / 1000}s and was killed`, diagnostics);
    case "cancelled":
      return failedResult(request, "cancelled", "evaluation cancelled: the validator is shutting down", diagnostics);
    case "failed":
      return failedResult(request, "executor_error", end.message, diagnostics);
  }
  if (document === null || document.trim() === "") {
    const how = end.signal ? `was killed by ${end.signal}` : `exited with code ${end.code}`;
    return failedResult(request, "harness_error", `the harness ${how} without writing a result document`, diagnostics);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(document);
  } catch (e) {
    return failedResult(request, "invalid_result", `result document is not JSON: ${(e as Error).message}`, diagnostics);
  }
  return parseResult(request, raw);
}
