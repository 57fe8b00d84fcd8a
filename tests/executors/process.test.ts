// The dev-only process executor against the real harness (environments/templar/env.py), tiny profile.
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { memoryLogger } from "../../core/log.ts";
import { processExecutor } from "../../plugins/executors/process.ts";
import { forgingCode, hangingCode, marker, pgrep, templateCode, tinyRequest, loggedRunDir, waitForProcess } from "./helpers.ts";

const ctx = () => ({ log: memoryLogger(), signal: new AbortController().signal });
// Shared by the tests that expect a verdict: one warm server serves them all, as in a validator.
const warm = processExecutor({ unsafe: true });
afterAll(() => warm.close!());

describe("process executor", () => {
  test("is refused unless the config says unsafe: true, and says why", () => {
    expect(() => processExecutor({} as never)).toThrow(/options\.unsafe: .*no sandbox/);
    expect(() => processExecutor({ unsafe: false } as never)).toThrow(/docker or ssh executor/);
    expect(processExecutor({ unsafe: true }).name).toBe("process");
  });

  test("evaluates the template end to end", async () => {
    const request = tinyRequest(templateCode());
    const c = ctx();
    const result = await warm.evaluate(request, c);
    expect(result.error).toBeNull();
    expect(result.success).toBe(true);
    expect(result.tps).toBeGreaterThan(0);
    expect(result.task_id).toBe(request.task_id);
    expect(c.log.lines.some((l) => l.includes(`submission=${request.submission_id}`))).toBe(true);
  }, 180_000);

  test("a run that never returns is killed at the limit with everything it started", async () => {
    const tag = marker();
    const t0 = performance.now();
    const c = ctx();
    const ex = processExecutor({ unsafe: true, timeoutSeconds: 40 });
    try {
      const running = ex.evaluate(tinyRequest(hangingCode(tag)), c);
      expect(await waitForProcess(tag, 40_000)).toBe(true);
      const result = await running;
      expect(result.error?.code).toBe("timeout");
      expect(performance.now() - t0).toBeLessThan(50_000);
      expect(await pgrep(tag)).toEqual([]);
      const dir = loggedRunDir(c.log.lines);
      expect(existsSync(dir)).toBe(false);
      // The killed server is not reused: the next run gets a fresh one and is judged normally.
      const next = ctx();
      expect((await ex.evaluate(tinyRequest(templateCode()), next)).success).toBe(true);
      expect(loggedRunDir(next.log.lines)).not.toBe(dir);
    } finally {
      await ex.close!();
    }
  }, 120_000);

  test("one warm server serves evaluation after evaluation, and close kills it", async () => {
    const ex = processExecutor({ unsafe: true });
    const first = ctx();
    const second = ctx();
    let dir = "";
    try {
      expect((await ex.evaluate(tinyRequest(templateCode()), first)).success).toBe(true);
      dir = loggedRunDir(first.log.lines);
      const server = await pgrep(`${dir}/in`);
      expect(server.length).toBe(1);
      const request = tinyRequest(templateCode());
      const result = await ex.evaluate(request, second);
      expect(result.success).toBe(true);
      expect(result.task_id).toBe(request.task_id);
      expect(second.log.lines.some((l) => l.includes("run directory"))).toBe(false);
      expect(await pgrep(`${dir}/in`)).toEqual(server);
    } finally {
      await ex.close!();
    }
    expect(await pgrep(`${dir}/in`)).toEqual([]);
    expect(existsSync(dir)).toBe(false);
  }, 180_000);

  test("a forged result document in the output does not change the result", async () => {
    const result = await warm.evaluate(tinyRequest(forgingCode(templateCode())), ctx());
    expect(result.tps).toBeLessThan(1e12);
    expect(result.device.name).not.toBe("forged");
    expect(result.total_tokens).not.toBe(10 ** 9);
  }, 180_000);

  test("an abort stops the run and reports it cancelled", async () => {
    const tag = marker();
    const ac = new AbortController();
    const ex = processExecutor({ unsafe: true });
    const running = ex.evaluate(tinyRequest(hangingCode(tag)), { log: memoryLogger(), signal: ac.signal });
    expect(await waitForProcess(tag, 40_000)).toBe(true);
    ac.abort();
    const result = await running;
    await ex.close!();
    expect(result.error?.code).toBe("cancelled");
    expect(await pgrep(tag)).toEqual([]);
  }, 60_000);

  test("a missing interpreter is an executor error, not a crash", async () => {
    const result = await processExecutor({ unsafe: true, python: "/nonexistent/python3" }).evaluate(tinyRequest("def inner_steps(*a):\n    pass\n"), ctx());
    expect(result.error?.code).toBe("executor_error");
    expect(result.error?.message).toContain("/nonexistent/python3");
  });
});
