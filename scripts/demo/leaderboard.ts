// The demo's final table: every submission, ranked ones first in leaderboard order, the rest with the
// reason they are not ranked. Built from the API's own documents so it shows what API users see.
import type { LeaderboardRow, Run, SubmissionSummary } from "../../api/schemas.ts";

export interface Entry {
  submission: SubmissionSummary;
  /** Its leaderboard row, when it has one. */
  row?: LeaderboardRow;
  /** Its runs, to name why it failed (a submission fails as "none of 3 runs succeeded"; runs say why). */
  runs: Run[];
}

export interface Reason {
  code: string;
  message: string;
  /** How many runs failed with this code. */
  runs: number;
}

/** Why a failed submission failed, from its runs (most common error first) or else its own error. */
export function failureReason(e: Entry): Reason {
  const failed = e.runs.filter((r) => r.success === false && r.error_code);
  if (failed.length === 0) return { code: e.submission.error_code ?? e.submission.state, message: e.submission.error_message ?? "", runs: 0 };
  const counts = new Map<string, number>();
  for (const r of failed) counts.set(r.error_code!, (counts.get(r.error_code!) ?? 0) + 1);
  const [code, runs] = [...counts].sort((a, b) => b[1] - a[1])[0]!;
  return { code, message: failed.find((r) => r.error_code === code)!.error_message ?? "", runs };
}

const short = (hotkey: string) => (hotkey.length > 14 ? `${hotkey.slice(0, 6)}…${hotkey.slice(-6)}` : hotkey);
const tps = (n: number) => n.toLocaleString("en-US", { maximumFractionDigits: 0 });

/**
 * Lines of the table, then one line per rejected submission with the full reason; `label` names a
 * hotkey ("fast", "template").
 */
export function formatLeaderboard(entries: Entry[], label: (hotkey: string) => string): string[] {
  const ranked = entries.filter((e) => e.row).sort((a, b) => a.row!.rank - b.row!.rank);
  const rest = entries.filter((e) => !e.row).sort((a, b) => a.submission.created_at.localeCompare(b.submission.created_at));
  const reasons: string[] = [];
  const rows = [...ranked, ...rest].map((e) => {
    const s = e.submission;
    const ok = s.successful_runs ?? e.runs.filter((r) => r.success).length;
    const planned = s.runs_planned ?? e.runs.length;
    let state: string = s.state;
    if (e.row) state = e.row.is_leader ? "scored, leader" : "scored";
    else if (s.outcome === "failed") {
      const why = failureReason(e);
      state = `REJECTED ${why.code}${why.runs ? ` (${why.runs}/${planned} runs)` : ""}`;
      reasons.push(`${label(s.hotkey)} rejected: ${why.code}: ${why.message}`);
    }
    return [e.row ? String(e.row.rank) : "-", label(s.hotkey), s.uid === null ? "-" : String(s.uid), short(s.hotkey), e.row ? tps(e.row.tps) : "-", `${ok}/${planned}`, state];
  });
  const head = ["rank", "miner", "uid", "hotkey", "median TPS", "runs ok", "state / reason"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const right = new Set([0, 2, 4, 5]);
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("  ");
  return [line(head), ...rows.map(line), ...(reasons.length ? ["", ...reasons] : [])];
}
