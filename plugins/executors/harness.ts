// What every executor shares about the evaluation harness: how it is invoked, how long it may take,
// and how whatever it left behind becomes a result. Executors differ only in where and how isolated
// the command runs.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { z } from "zod";
import { failedResult, parseResult, type EvaluationRequest, type EvaluationResult } from "../../core/contracts.ts";
import { loadHParams } from "../../core/hparams.ts";

/** Relative to a directory that holds environments/templar and hparams/models (model_config is relative). */
export const HARNESS_SCRIPT = "environments/templar/env.py";

export const size = (example: string) => z.string().regex(/^\d+[kmg]?$/i, `a size such as ${example}`);

/** Limit options every executor shares; container sizes default to hparams.json's `executor` block. */
export function limitOptions() {
  const hp = () => loadHParams().executor;
  return {
    memory: size("64g").default(() => hp().memory).describe("Container memory limit (docker sizes: 512m, 64g); default hparams executor.memory."),
    shmSize: size("16g").default(() => hp().shm_size).describe("Size of /dev/shm; default hparams executor.shm_size."),
    pidsLimit: z.number().int().positive().default(() => hp().pids_limit).describe("Most processes in the container; default hparams executor.pids_limit."),
    maxLogBytes: z.number().int().positive().default(() => hp().max_log_bytes).describe("Run output forwarded to the log, per run; default hparams executor.max_log_bytes."),
    marginSeconds: z.number().nonnegative().default(60).describe("Added to the request's timeout_seconds to form the hard wall-clock limit."),
    timeoutSeconds: z.number().positive().optional().describe("The whole hard limit in seconds, replacing timeout_seconds + marginSeconds."),
  };
}

/**
 * The hard limit an executor enforces from outside: the harness's own timeout plus a margin for start-up,
 * the reference run and writing the result, unless the operator sets the whole limit.
 */
export function wallClockLimitMs(request: EvaluationRequest, opts: { timeoutSeconds?: number; marginSeconds: number }): number {
  return Math.round((opts.timeoutSeconds ?? request.benchmark.timeout_seconds + opts.marginSeconds) * 1000);
}

/** sha256 of a file on this machine (a token shard), or null when there is no regular file at the path. */
export async function fileSha256(path: string): Promise<string | null> {
  if (!(await stat(path).catch(() => null))?.isFile()) return null;
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest("hex");
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
