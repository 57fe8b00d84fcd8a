// Pure scoring: from runs to a submission score, from scores to a leader, from a leader to chain weights.
import type { ErrorCode } from "./contracts.ts";

export interface RunOutcome {
  success: boolean;
  tps: number;
  errorCode?: string | null;
  errorMessage?: string | null;
  runIndex?: number;
}

/**
 * What a failed run says about its submission. `disqualifying`: the loop ran and its evidence failed
 * verification, or it tampered — one such run disqualifies the submission, whatever its other runs did,
 * so a shortcut that passes on some seeds cannot score on them. `unsuccessful`: it proves nothing about
 * honesty (it ran out of time or memory, crashed, or never got to run), and counts against
 * `min_success_rate`. `ours`: the validator's side failed, never a reason to disqualify.
 */
export type FailureKind = "disqualifying" | "unsuccessful" | "ours";

// A Record over every code: a code added to the contract does not compile until it is classified here.
const FAILURE_KIND: Record<ErrorCode, FailureKind> = {
  syntax_error: "unsuccessful",
  import_error: "unsuccessful",
  missing_inner_steps: "unsuccessful",
  bad_signature: "unsuccessful",
  crash: "unsuccessful",
  timeout: "unsuccessful",
  out_of_memory: "unsuccessful",
  bad_return: "disqualifying",
  token_count: "disqualifying",
  logits_shape: "disqualifying",
  logits_mismatch: "disqualifying",
  loss_mismatch: "disqualifying",
  weights_mismatch: "disqualifying",
  frozen_params: "disqualifying",
  optimizer_state: "disqualifying",
  optimizer_mismatch: "disqualifying",
  non_finite: "disqualifying",
  deferred_work: "disqualifying",
  tampering: "disqualifying",
  implausible_mfu: "disqualifying", // a window shorter than the device can train in: the clock was fooled
  harness_error: "ours",
  executor_error: "ours",
  invalid_result: "ours",
  cancelled: "ours",
};

/** A code this build does not know (an older or newer harness, or none at all) is taken as disqualifying: the safe side for the other miners. */
export function failureKind(code: string | null | undefined): FailureKind | "unknown" {
  return code != null && Object.hasOwn(FAILURE_KIND, code) ? FAILURE_KIND[code as ErrorCode] : "unknown";
}

/** "weights_mismatch ×2, timeout": why the failed runs failed, most common first. */
function failureSummary(runs: RunOutcome[]): string {
  const counts = new Map<string, number>();
  for (const r of runs) if (!r.success) counts.set(r.errorCode ?? "unknown", (counts.get(r.errorCode ?? "unknown") ?? 0) + 1);
  return [...counts].sort((a, b) => b[1] - a[1]).map(([code, n]) => (n > 1 ? `${code} ×${n}` : code)).join(", ");
}

export type SubmissionScore =
  | { ok: true; score: number; successfulRuns: number; totalRuns: number }
  | { ok: false; code: "disqualified" | "no_successful_runs" | "low_success_rate"; message: string; successfulRuns: number; totalRuns: number };

export function median(values: number[]): number {
  if (values.length === 0) throw new Error("median of nothing");
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/**
 * A run that failed verification (or any run with a code this build does not know) disqualifies the
 * submission; otherwise the score is the median TPS of the successful runs, provided at least
 * `minSuccessRate` of the runs succeeded.
 */
export function scoreRuns(runs: RunOutcome[], minSuccessRate: number): SubmissionScore {
  const ok = runs.filter((r) => r.success && Number.isFinite(r.tps) && r.tps > 0);
  const base = { successfulRuns: ok.length, totalRuns: runs.length };
  const damning = runs.findIndex((r) => !r.success && ["disqualifying", "unknown"].includes(failureKind(r.errorCode)));
  if (damning >= 0) {
    const r = runs[damning]!;
    const which = `run ${(r.runIndex ?? damning) + 1} of ${runs.length}`;
    const why = failureKind(r.errorCode) === "unknown"
      ? `${which} failed with ${r.errorCode == null ? "no failure code" : `the failure code ${JSON.stringify(r.errorCode)}, which this validator does not know`}; it is treated as a failed verification`
      : `${which} failed verification (${r.errorCode})`;
    return {
      ok: false,
      code: "disqualified",
      message: `${why}${r.errorMessage ? `: ${r.errorMessage}` : ""}. A run that fails verification disqualifies the submission, whatever its other runs did (${ok.length} of ${runs.length} verified)`,
      ...base,
    };
  }
  if (ok.length === 0) return { ok: false, code: "no_successful_runs", message: `none of ${runs.length} runs succeeded: ${failureSummary(runs)}`, ...base };
  const rate = ok.length / runs.length;
  if (rate < minSuccessRate) {
    return {
      ok: false,
      code: "low_success_rate",
      message: `${ok.length} of ${runs.length} runs succeeded (${(rate * 100).toFixed(0)}%), below the minimum ${(minSuccessRate * 100).toFixed(0)}%; failures: ${failureSummary(runs)}`,
      ...base,
    };
  }
  return { ok: true, score: median(ok.map((r) => r.tps)), ...base };
}

export interface Contender {
  id: string;
  score: number;
  /** Chronological order: commit block (reveal block where none is known) first, then arrival. Earlier wins ties. */
  revealBlock: number;
  commitBlock?: number | null;
  createdAt: number;
}

// The commit block, not the reveal: a committer picks its own reveal delay, so a later copy could
// otherwise reveal first and win the tie.
const priorityBlock = (c: Contender) => c.commitBlock ?? c.revealBlock;

export const chronological = (a: Contender, b: Contender) =>
  priorityBlock(a) - priorityBlock(b) || a.createdAt - b.createdAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * The leader: walking submissions in chronological order, a challenger takes the lead only when it beats
 * the incumbent by more than `threshold` (0.01 = 1%). So equal or marginally faster copies never win.
 */
export function findLeader<C extends Contender>(contenders: C[], threshold: number): C | null {
  let leader: C | null = null;
  for (const c of [...contenders].sort(chronological)) {
    if (!leader || c.score > leader.score * (1 + threshold)) leader = c;
  }
  return leader;
}

/** Leaderboard in threshold order: the leader first, then everyone else by score (earlier first on ties). */
export function rankLeaderboard<C extends Contender>(contenders: C[], threshold: number): C[] {
  const leader = findLeader(contenders, threshold);
  const rest = contenders.filter((c) => c !== leader).sort((a, b) => b.score - a.score || chronological(a, b));
  return leader ? [leader, ...rest] : rest;
}

export interface WeightPlan {
  uids: number[];
  weights: number[];
  reason: string;
}

/**
 * Winner takes all, with `burnRate` of the emission to `burnUid`. No leader, or a leader whose hotkey is
 * no longer registered (uid null), sends everything to burn.
 */
export function planWeights(leaderUid: number | null, burnUid: number, burnRate: number, why = ""): WeightPlan {
  if (leaderUid === null) return { uids: [burnUid], weights: [1], reason: why || "no eligible leader: all weight to burn" };
  if (leaderUid === burnUid) return { uids: [burnUid], weights: [1], reason: "leader is the burn uid" };
  if (burnRate >= 1) return { uids: [burnUid], weights: [1], reason: "burn rate is 100%" };
  if (burnRate <= 0) return { uids: [leaderUid], weights: [1], reason: `leader uid ${leaderUid} takes all` };
  return {
    uids: [burnUid, leaderUid],
    weights: [burnRate, 1 - burnRate],
    reason: `leader uid ${leaderUid} gets ${((1 - burnRate) * 100).toFixed(1)}%, burn uid ${burnUid} ${(burnRate * 100).toFixed(1)}%`,
  };
}

/** Python's round(): half to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * The chain's u16 form, exactly as the reference SDK computes it: float32 inputs, scale so the max is
 * 65535, round half to even, drop zeros (and their uids). Negative weights or mismatched lengths throw.
 */
export function normalizeU16(uids: number[], weights: number[]): { uids: number[]; weights: number[] } {
  if (uids.length !== weights.length) throw new Error(`uids (${uids.length}) and weights (${weights.length}) differ in length`);
  const w = weights.map((x) => {
    if (!(x >= 0)) throw new Error(`weight ${x} is negative or not a number`);
    return Math.fround(x);
  });
  const max = Math.max(0, ...w);
  if (max === 0) return { uids: [], weights: [] };
  const out = { uids: [] as number[], weights: [] as number[] };
  w.forEach((x, i) => {
    const v = roundHalfEven(Math.fround(Math.fround(x / max) * 65535));
    if (v > 0) {
      out.uids.push(uids[i]!);
      out.weights.push(v);
    }
  });
  return out;
}
