import { describe, expect, test } from "bun:test";
import { ErrorCode } from "./contracts.ts";
import { failureKind, findLeader, median, normalizeU16, planWeights, rankLeaderboard, scoreRuns, type Contender } from "./scoring.ts";

const runs = (...tps: (number | null)[]) => tps.map((t) => (t === null ? { success: false, tps: 0, errorCode: "timeout" } : { success: true, tps: t }));
const failed = (errorCode: string | null, errorMessage?: string) => ({ success: false, tps: 0, errorCode, errorMessage });

describe("scoreRuns", () => {
  test("median of the successful runs", () => {
    expect(scoreRuns(runs(10, 30, 20, 50, 40), 0.5)).toEqual({ ok: true, score: 30, successfulRuns: 5, totalRuns: 5 });
  });
  test("even count takes the middle mean; failures are ignored", () => {
    expect(scoreRuns(runs(10, null, 20, 40, 30), 0.5)).toMatchObject({ ok: true, score: 25, successfulRuns: 4 });
  });
  test("no success at all fails, and the message says why the runs failed", () => {
    const none = [failed("timeout"), failed("out_of_memory"), failed("out_of_memory")];
    expect(scoreRuns(none, 0.5)).toMatchObject({ ok: false, code: "no_successful_runs", message: "none of 3 runs succeeded: out_of_memory ×2, timeout" });
  });
  test("4 verified runs and 1 optimizer_mismatch: disqualified, whatever the other runs did", () => {
    const r = scoreRuns([...runs(100, 101, 102, 103), { ...failed("optimizer_mismatch", "exp_avg_rel_global 0.12 > 0.05"), runIndex: 4 }], 0.5);
    expect(r).toMatchObject({ ok: false, code: "disqualified", successfulRuns: 4, totalRuns: 5 });
    if (!r.ok) expect(r.message).toStartWith("run 5 of 5 failed verification (optimizer_mismatch): exp_avg_rel_global 0.12 > 0.05.");
  });
  test("4 verified runs and 1 timeout: scored on the 4", () => {
    expect(scoreRuns([...runs(100, 101, 102, 103), failed("timeout")], 0.5)).toEqual({ ok: true, score: 101.5, successfulRuns: 4, totalRuns: 5 });
  });
  test("crashes, timeouts and running out of memory count against the success rate only", () => {
    expect(scoreRuns([...runs(100, 200), failed("crash"), failed("out_of_memory")], 0.5)).toMatchObject({ ok: true, score: 150 });
    expect(scoreRuns([...runs(100), failed("crash"), failed("timeout")], 0.5)).toMatchObject({ ok: false, code: "low_success_rate" });
  });
  test("a failure on the validator's side never disqualifies", () => {
    for (const code of ["harness_error", "executor_error", "invalid_result", "cancelled"]) {
      expect(scoreRuns([...runs(100, 200, 300), failed(code)], 0.5)).toMatchObject({ ok: true, score: 200 });
    }
  });
  test("every verification and tampering code disqualifies, even among many verified runs", () => {
    for (const code of ["weights_mismatch", "optimizer_mismatch", "optimizer_state", "loss_mismatch", "logits_mismatch", "logits_shape", "token_count", "frozen_params", "non_finite", "deferred_work", "bad_return", "tampering"]) {
      expect(scoreRuns([failed(code), ...runs(100, 100, 100, 100, 100, 100, 100, 100)], 0.1)).toMatchObject({ ok: false, code: "disqualified" });
    }
  });
  test("an unknown or missing failure code is treated as a failed verification, and the message says so", () => {
    const unknown = scoreRuns([...runs(100, 100, 100), failed("gpu_on_fire")], 0.5);
    expect(unknown).toMatchObject({ ok: false, code: "disqualified" });
    if (!unknown.ok) expect(unknown.message).toContain('the failure code "gpu_on_fire", which this validator does not know; it is treated as a failed verification');
    const none = scoreRuns([...runs(100, 100, 100), failed(null)], 0.5);
    if (!none.ok) expect(none.message).toContain("no failure code");
    expect(none.ok).toBe(false);
  });
  test("every code of the contract is classified", () => {
    for (const code of ErrorCode.options) expect(failureKind(code)).not.toBe("unknown");
    expect(failureKind("toString")).toBe("unknown");
  });
  test("too few successes fail with the rate in the message", () => {
    const r = scoreRuns(runs(100, null, null, null, null), 0.5);
    expect(r).toMatchObject({ ok: false, code: "low_success_rate", successfulRuns: 1, totalRuns: 5 });
    if (!r.ok) expect(r.message).toContain("20%");
  });
  test("exactly the minimum rate passes", () => {
    expect(scoreRuns(runs(100, 200, null, null), 0.5)).toMatchObject({ ok: true, score: 150 });
  });
  test("a 'success' with zero or non-finite TPS does not count", () => {
    expect(scoreRuns([{ success: true, tps: 0 }, { success: true, tps: Number.NaN }], 0)).toMatchObject({ ok: false, code: "no_successful_runs" });
  });
  test("median throws on empty input", () => {
    expect(() => median([])).toThrow();
  });
});

const c = (id: string, score: number, revealBlock: number, createdAt = 0): Contender => ({ id, score, revealBlock, createdAt });

describe("leader threshold", () => {
  test("a challenger within the threshold does not take the lead", () => {
    expect(findLeader([c("a", 100, 1), c("b", 101, 2)], 0.01)?.id).toBe("a");
  });
  test("a challenger beyond the threshold takes the lead", () => {
    expect(findLeader([c("a", 100, 1), c("b", 101.5, 2)], 0.01)?.id).toBe("b");
  });
  test("ties go to the earlier submission, whatever the input order", () => {
    expect(findLeader([c("late", 100, 9), c("early", 100, 3)], 0)?.id).toBe("early");
    expect(findLeader([c("x", 100, 5, 2), c("y", 100, 5, 1)], 0)?.id).toBe("y");
  });
  test("ties go by commit block where it is known: a later commit that revealed first does not win", () => {
    const copy = { ...c("copy", 100, 25, 1), commitBlock: 5 };
    const original = { ...c("original", 100, 32, 1), commitBlock: 2 };
    expect(findLeader([copy, original], 0.01)?.id).toBe("original");
    expect(rankLeaderboard([copy, original], 0.01).map((e) => e.id)).toEqual(["original", "copy"]);
  });
  test("the lead passes along a chain of large improvements", () => {
    expect(findLeader([c("a", 100, 1), c("b", 120, 2), c("c", 121, 3), c("d", 150, 4)], 0.01)?.id).toBe("d");
  });
  test("an earlier, slower submission revealed later in the list still counts first", () => {
    expect(findLeader([c("b", 100.5, 2), c("a", 100, 1)], 0.01)?.id).toBe("a");
  });
  test("no contenders, no leader", () => {
    expect(findLeader([], 0.01)).toBeNull();
  });
  test("leaderboard puts the leader first, then by score", () => {
    const board = rankLeaderboard([c("a", 100, 1), c("b", 100.5, 2), c("c", 50, 3), c("d", 90, 4)], 0.01);
    expect(board.map((e) => e.id)).toEqual(["a", "b", "d", "c"]);
  });
});

describe("planWeights", () => {
  test("winner takes the non-burn share", () => {
    expect(planWeights(7, 1, 0.95)).toMatchObject({ uids: [1, 7], weights: [0.95, 1 - 0.95] });
  });
  test("no leader burns everything", () => {
    expect(planWeights(null, 1, 0.95)).toMatchObject({ uids: [1], weights: [1] });
  });
  test("burn-only rate", () => {
    expect(planWeights(7, 1, 1)).toMatchObject({ uids: [1], weights: [1] });
  });
  test("winner is the burn uid", () => {
    expect(planWeights(1, 1, 0.5)).toMatchObject({ uids: [1], weights: [1], reason: "leader is the burn uid" });
  });
  test("zero burn gives all to the winner", () => {
    expect(planWeights(4, 1, 0)).toMatchObject({ uids: [4], weights: [1] });
  });
});

describe("normalizeU16 (the SDK's vectors, chain-spec §4.2)", () => {
  test("[1, 0] drops the zero", () => {
    expect(normalizeU16([1, 9], [1, 0])).toEqual({ uids: [1], weights: [65535] });
  });
  test("[0.8, 0.2]", () => {
    expect(normalizeU16([1, 2], [0.8, 0.2])).toEqual({ uids: [1, 2], weights: [65535, 16384] });
  });
  test("[0.1, 0.3, 0.6] matches float32 rounding (10922, not 10923)", () => {
    expect(normalizeU16([0, 1, 2], [0.1, 0.3, 0.6])).toEqual({ uids: [0, 1, 2], weights: [10922, 32768, 65535] });
  });
  test("burn 0.95 / winner 0.05", () => {
    const { weights } = normalizeU16([1, 7], [0.95, 0.05]);
    expect(weights[0]).toBe(65535);
    expect(weights[1]).toBe(Math.round((0.05 / 0.95) * 65535));
  });
  test("all zero gives nothing", () => {
    expect(normalizeU16([1, 2], [0, 0])).toEqual({ uids: [], weights: [] });
  });
  test("negative or mismatched input throws", () => {
    expect(() => normalizeU16([1], [-1])).toThrow("negative");
    expect(() => normalizeU16([1, 2], [1])).toThrow("length");
  });
});
