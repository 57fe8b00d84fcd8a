import { describe, expect, test } from "bun:test";
import type { Run, SubmissionSummary } from "../../api/schemas.ts";
import { failureReason, formatLeaderboard, type Entry } from "./leaderboard.ts";

const sub = (hotkey: string, over: Partial<SubmissionSummary> = {}): SubmissionSummary => ({
  id: `chain:3:10:${hotkey}`,
  hotkey,
  uid: 3,
  source: "chain-reveals",
  state: "scored",
  outcome: "scored",
  score: 100,
  runs_planned: 3,
  runs_done: 3,
  successful_runs: 3,
  error_code: null,
  error_message: null,
  reveal_block: 10,
  created_at: "2026-01-01T00:00:00.000Z",
  updated_at: "2026-01-01T00:00:00.000Z",
  scored_at: null,
  code_available: true,
  ...over,
});

const run = (i: number, error: [string, string] | null): Run => ({
  run_index: i,
  state: "done",
  attempts: 1,
  success: error === null,
  tps: error ? null : 10,
  mfu: null,
  total_tokens: null,
  wall_time_seconds: null,
  total_time_seconds: null,
  error_code: error?.[0] ?? null,
  error_message: error?.[1] ?? null,
  checks: [],
  device: "cpu",
  slot: null,
  data_sha256: null,
  started_at: null,
  finished_at: null,
});

const failed = (hotkey: string, runs: Run[]): Entry => ({
  submission: sub(hotkey, { state: "failed", outcome: "failed", score: null, successful_runs: 0, error_code: "no_successful_runs", error_message: "none of 3 runs succeeded", created_at: "2026-01-01T00:00:05.000Z" }),
  runs,
});

const ranked = (hotkey: string, rank: number, tps: number, uid: number): Entry => ({
  submission: sub(hotkey, { uid, score: tps }),
  row: { rank, submission_id: `chain:3:10:${hotkey}`, hotkey, uid, tps, successful_runs: 3, runs_planned: 3, reveal_block: 10, created_at: "2026-01-01T00:00:00.000Z", is_leader: rank === 1 },
  runs: [],
});

describe("failureReason", () => {
  test("names the most common run error, not the submission's summary", () => {
    const e = failed("5Cheat", [run(0, ["timeout", "ran 181 s"]), run(1, ["weights_mismatch", "update off by 0.49"]), run(2, ["weights_mismatch", "update off by 0.50"])]);
    expect(failureReason(e)).toEqual({ code: "weights_mismatch", message: "update off by 0.49", runs: 2 });
  });

  test("falls back to the submission's error when no run failed (a fetch failure)", () => {
    const e = failed("5Gone", []);
    e.submission.error_code = "fetch_http_status";
    e.submission.error_message = "HTTP 404";
    expect(failureReason(e)).toEqual({ code: "fetch_http_status", message: "HTTP 404", runs: 0 });
  });
});

describe("formatLeaderboard", () => {
  const names: Record<string, string> = { "5FastFastFastFastFast": "fast", "5TemplateTemplateTmpl": "template", "5CheatCheatCheatCheat": "cheat" };
  const lines = formatLeaderboard(
    [
      failed("5CheatCheatCheatCheat", [run(0, ["weights_mismatch", "final weights differ"]), run(1, ["weights_mismatch", "x"]), run(2, ["weights_mismatch", "y"])]),
      ranked("5TemplateTemplateTmpl", 2, 1459.4, 3),
      ranked("5FastFastFastFastFast", 1, 3924.2, 4),
    ],
    (hk) => names[hk]!,
  );

  test("ranked rows in rank order, then the rejected ones with their reason", () => {
    expect(lines[0]).toMatch(/^rank\s+miner\s+uid\s+hotkey\s+median TPS\s+runs ok\s+state \/ reason$/);
    expect(lines[1]).toMatch(/^\s*1\s+fast\s+4\s+5FastF…stFast\s+3,924\s+3\/3\s+scored, leader$/);
    expect(lines[2]).toMatch(/^\s*2\s+template\s+3\s+5Templ…teTmpl\s+1,459\s+3\/3\s+scored$/);
    expect(lines[3]).toMatch(/^\s*-\s+cheat\s+3\s+5Cheat…tCheat\s+-\s+0\/3\s+REJECTED weights_mismatch \(3\/3 runs\)$/);
    expect(lines.slice(4)).toEqual(["", "cheat rejected: weights_mismatch: final weights differ"]);
  });

  test("columns line up: every row's runs cell ends under the header's", () => {
    const end = lines[0]!.indexOf("runs ok") + "runs ok".length;
    for (const l of lines.slice(1, 4)) expect(l.slice(0, end)).toMatch(/ \d+\/\d+$/);
  });
});
