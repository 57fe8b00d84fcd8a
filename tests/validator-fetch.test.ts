// Fetching miners' code against a host that never answers: it holds only its own submission (the others
// are pinned while it hangs), and a validator told to stop drops the hanging fetch at once, leaving that
// submission as it was. Real HTTP servers on loopback, the real fetcher, real SQLite files.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { failedResult, type Submission } from "../core/contracts.ts";
import { loadHParams, repoRoot } from "../core/hparams.ts";
import { memoryLogger } from "../core/log.ts";
import { createPipeline } from "../core/pipeline.ts";
import { defineExecutor, defineSource } from "../core/plugin.ts";
import { Store } from "../core/storage/store.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-fetch-"));
const CODE = "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n";

// /slow.py accepts the request and never answers; everything else is served at once.
const hanging = new Set<ServerResponse>();
let slowRequests = 0;
const server = createServer((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === "/slow.py") {
    slowRequests++;
    hanging.add(res);
    res.on("close", () => hanging.delete(res));
    return;
  }
  res.end(`# ${req.url}\n${CODE}`);
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
afterAll(async () => {
  for (const res of hanging) res.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

async function until(what: string, check: () => boolean, ms = 15_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

const submission = (name: string, revealBlock: number): Submission => ({ id: `t:${name}`, hotkey: `hk-${name}`, uid: revealBlock, url: `${base}/${name}.py`, revealBlock, source: "scripted" });
const idle = defineExecutor("idle", z.object({}), () => ({ evaluate: async (r) => failedResult(r, "executor_error", "not evaluated here") }));

describe("fetching", () => {
  test("a host that never answers holds only its own submission; shutdown leaves it as it was", async () => {
    const store = await Store.open(join(dir, "pipeline.db"));
    const controller = new AbortController();
    try {
      // The hanging one committed first, so a fetcher working in order would reach the others only
      // after its deadline.
      const queue = [submission("slow", 1), submission("fast1", 2), submission("fast2", 3)];
      const source = defineSource("scripted", z.object({}), () => ({ poll: async () => queue.splice(0) }))();
      const pipeline = createPipeline({
        store,
        hparams: { ...loadHParams(), code_fetch_timeout: 600 },
        profile: "tiny",
        sources: [source],
        executor: idle(),
        sinks: [],
        log: memoryLogger(),
        allowLoopbackCode: true,
        signal: controller.signal,
      });
      expect(await pipeline.poll()).toBe(3);
      const fetching = pipeline.fetchPending();
      await until("both fast submissions to be pinned", () => ["t:fast1", "t:fast2"].every((id) => store.submission(id)!.code_sha256 !== null));
      expect(store.runs("t:fast1")).toHaveLength(loadHParams().evaluation_runs);
      expect(store.submission("t:slow")!.state).toBe("received");
      expect(hanging.size).toBe(1);

      controller.abort();
      expect(await fetching).toBe(2);
      expect(store.submission("t:slow")!.state).toBe("received");
      expect(store.getState("fetch_attempts:t:slow")).toBeUndefined();
      await until("the hanging request to be dropped", () => hanging.size === 0);
    } finally {
      store.close();
    }
  }, 30_000);

  test("a running validator takes in new submissions while a fetch hangs; SIGTERM leaves the hanging one untouched", async () => {
    const db = join(dir, "cli.db");
    const configPath = join(dir, "fetch.config.ts");
    // A stand-in harness that waits to be stopped: this test is about intake.
    const workdir = join(dir, "workdir");
    mkdirSync(join(workdir, "environments/templar"), { recursive: true });
    writeFileSync(join(workdir, "environments/templar/env.py"), "import time\ntime.sleep(600)\n");
    // The first poll finds the hanging submission, later polls a second one too.
    writeFileSync(
      configPath,
      `import { z } from ${JSON.stringify(import.meta.resolve("zod"))};
import { defineSource } from ${JSON.stringify(join(repoRoot, "core/plugin.ts"))};
import { processExecutor } from ${JSON.stringify(join(repoRoot, "plugins/executors/process.ts"))};
let polls = 0;
const two = defineSource("two", z.object({}), () => ({
  poll: async () => (polls++ === 0 ? [${JSON.stringify(submission("slow", 1))}] : [${JSON.stringify(submission("slow", 1))}, ${JSON.stringify(submission("later", 2))}]),
}));
export default { database: ${JSON.stringify(db)}, profile: "tiny", sources: [two()], executor: processExecutor({ unsafe: true, workdir: ${JSON.stringify(workdir)} }), allowLoopbackCode: true, pollIntervalSeconds: 1 };
`,
    );
    const before = slowRequests;
    const child = spawn(process.execPath, ["scripts/validator.ts", "--config", configPath], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (c) => (output += c));
    child.stderr.on("data", (c) => (output += c));
    const done = new Promise<number | null>((resolve) => child.on("close", resolve));
    try {
      await until("the validator to fetch the hanging URL", () => slowRequests > before);
      await until("the later submission to be pinned", () => output.includes("pinned t:later"));
      expect(hanging.size).toBe(1);
      child.kill("SIGTERM");
      expect(await done).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
    expect(output).toContain("SIGTERM: stopping");
    expect(output).not.toContain("fetch of t:slow failed");
    const store = await Store.open(db);
    try {
      expect(store.submission("t:slow")!.state).toBe("received");
      expect(store.getState("fetch_attempts:t:slow")).toBeUndefined();
      expect(store.submission("t:later")!.code_sha256).not.toBeNull();
    } finally {
      store.close();
    }
  }, 60_000);
});
