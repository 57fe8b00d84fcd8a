// kill -9 at random instants, restart, repeat: the store must end exactly where an uninterrupted run
// ends — same scores, every run finished once, every event delivered once to the (idempotent) sink.
import { afterAll, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Store } from "../core/storage/store.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-kill-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const program = (speed: number) => `SPEED = ${speed}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`;
const submissions = Array.from({ length: 6 }, (_, i) => ({ id: `s${i}`, hotkey: `hk${i}`, uid: i + 2, url: `https://code.example/s${i}.py`, revealBlock: 10 + i, source: "script" }));
const script = { submissions, code: Object.fromEntries(submissions.map((s, i) => [s.url, program(100 + i * 7)])) };

function runChild(db: string, work: string, killAfterMs: number | null): Promise<{ code: number | null; killed: boolean }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(import.meta.dir, "fixtures/pipeline/child.ts"), db, join(dir, "script.json"), work], { stdio: ["ignore", "ignore", "inherit"] });
    let killed = false;
    const timer = killAfterMs === null ? null : setTimeout(() => {
      killed = true;
      child.kill("SIGKILL");
    }, killAfterMs);
    child.on("close", (code) => {
      if (timer) clearTimeout(timer);
      resolve({ code, killed });
    });
  });
}

const lines = (p: string) => (existsSync(p) ? readFileSync(p, "utf8").split("\n").filter(Boolean) : []);

test(
  "a validator killed with SIGKILL at random points loses nothing, repeats no finished run, publishes once",
  async () => {
    writeFileSync(join(dir, "script.json"), JSON.stringify(script));

    // Reference: one uninterrupted run.
    const refWork = mkdtempSync(join(dir, "ref-"));
    expect((await runChild(join(refWork, "v.db"), refWork, null)).code).toBe(0);
    const ref = await Store.open(join(refWork, "v.db"));
    const expected = submissions.map((s) => [s.id, ref.submission(s.id)!.score]);
    const refEvents = ref.db.prepare("SELECT id FROM events ORDER BY id").all<{ id: string }>().map((r) => r.id);
    ref.close();

    // Chaos: restart after each kill until a run completes by itself.
    const work = mkdtempSync(join(dir, "chaos-"));
    const db = join(work, "v.db");
    let kills = 0;
    for (let i = 0; i < 80; i++) {
      const r = await runChild(db, work, 40 + Math.floor(Math.random() * (300 + i * 40)));
      if (r.killed) kills++;
      else if (r.code === 0) break;
      else throw new Error(`child exited ${r.code}`);
    }
    expect(kills).toBeGreaterThan(0);
    expect((await runChild(db, work, null)).code).toBe(0); // a final clean pass finds nothing to do

    const store = await Store.open(db);
    try {
      expect(submissions.map((s) => [s.id, store.submission(s.id)!.score])).toEqual(expected);
      expect(store.counts()).toMatchObject({ published: submissions.length, received: 0, evaluating: 0, scored: 0 });
      const runs = store.db.prepare("SELECT submission_id, run_index, state, task_id FROM runs").all<{ state: string; task_id: string }>();
      expect(runs).toHaveLength(submissions.length * 3);
      expect(runs.every((r) => r.state === "done")).toBe(true);

      // Each recorded result belongs to exactly one execution; executions without a recorded result are
      // only those cut short by a kill (at most one per kill).
      const started = lines(join(work, "executions.log")).map((l) => l.split(" ")[3]);
      const recorded = new Set(runs.map((r) => r.task_id));
      expect(recorded.size).toBe(runs.length);
      for (const t of recorded) expect(started.filter((s) => s === t)).toHaveLength(1);
      expect(started.length - recorded.size).toBeLessThanOrEqual(kills);

      // Every event exactly once at the receiver, in the same set as the uninterrupted run.
      const received = lines(join(work, "sink.log"));
      expect([...received].sort()).toEqual(refEvents);
      expect(new Set(received).size).toBe(received.length);
      expect(lines(join(work, "deliveries.log")).length - received.length).toBeLessThanOrEqual(kills);
      console.log(`kill test: ${kills} kills, ${started.length} executions for ${runs.length} runs`);
    } finally {
      store.close();
    }
  },
  240_000,
);
