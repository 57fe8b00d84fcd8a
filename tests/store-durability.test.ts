// The store as unlucky operators meet it (issue 21, findings 3–5): another connection locking it as a run
// finishes, the disk full, a second validator on the same database, the file deleted under a running
// validator and the API. Real SQLite files, real processes (a lock holder, validators on a localnet, the
// API's app over the same file).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { createApp } from "../api/app.ts";
import { failedResult, type EvaluationRequest, type Submission } from "../core/contracts.ts";
import { loadHParams } from "../core/hparams.ts";
import { createLogger, memoryLogger } from "../core/log.ts";
import { createPipeline } from "../core/pipeline.ts";
import { defineExecutor, defineSource } from "../core/plugin.ts";
import { openDatabase, StoreFailure } from "../core/storage/sqlite.ts";
import { Store } from "../core/storage/store.ts";
import { startLocalnet, type Localnet } from "../local_test/localnet/localnet.ts";
import { spawnValidator, writeValidatorConfig } from "./fixtures/validator-cli.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-durability-"));
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
});

const hparams = { ...loadHParams(), evaluation_runs: 1 };
const code = "SPEED = 100\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n";
const sub: Submission = { id: "a", hotkey: "hk-a", uid: 2, url: "https://code.example/a.py", revealBlock: 1, source: "scripted" };

/** A pipeline over `path` whose single run waits for `finish` before it returns its result. */
async function gatedPipeline(path: string, opts: { diagnostics?: Record<string, unknown>; storeRetryMs?: number } = {}) {
  const store = await Store.open(path);
  const log = memoryLogger();
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  let finish!: () => void;
  const gate = new Promise<void>((r) => (finish = r));
  const executor = defineExecutor("gated", z.object({}), () => ({
    evaluate: async (req: EvaluationRequest) => {
      started();
      await gate;
      return { ...failedResult(req, "crash", ""), success: true, error: null, tps: 12_054, total_tokens: 100, diagnostics: opts.diagnostics ?? {} };
    },
  }))();
  const queue: Submission[] = [sub];
  const source = defineSource("scripted", z.object({}), () => ({ poll: async () => queue.splice(0) }))();
  const pipeline = createPipeline({
    store,
    hparams,
    profile: "tiny",
    sources: [source],
    executor,
    sinks: [],
    log,
    storeRetryMs: opts.storeRetryMs,
    fetchCode: async (url) => ({ ok: true, url, bytes: new TextEncoder().encode(code), sha256: createHash("sha256").update(code).digest("hex") }),
  });
  return { store, log, pipeline, running, finish };
}

/** Another process holding the store's write lock (BEGIN IMMEDIATE) for `ms`; resolves once it holds it, to its exit. */
async function holdWriteLock(path: string, ms: number): Promise<{ exited: Promise<number | null> }> {
  const child = spawn(
    process.execPath,
    ["-e", `const { Database } = require("bun:sqlite"); const d = new Database(${JSON.stringify(path)}); d.exec("BEGIN IMMEDIATE"); console.log("locked"); setTimeout(() => { d.exec("COMMIT"); d.close(); }, ${ms});`],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  children.push(child);
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  await new Promise<void>((resolve) => child.stdout!.on("data", (c) => String(c).includes("locked") && resolve()));
  return { exited };
}

describe("a result that exists is stored", () => {
  test("the store locked by another process as a run finishes: the result is retried until stored and scored", async () => {
    const path = join(dir, "locked.db");
    const { store, log, pipeline, running, finish } = await gatedPipeline(path);
    try {
      const done = pipeline.runUntilIdle();
      await running;
      const holder = await holdWriteLock(path, 7_000);
      finish();
      await done;
      expect(await holder.exited).toBe(0);
      expect(store.runs("a").map((r) => [r.state, r.tps])).toEqual([["done", 12_054]]);
      expect(store.submission("a")).toMatchObject({ state: "published", score: 12_054 });
      expect(log.lines.some((l) => /storing the result of run 1\/1 of a failed \(attempt 1\): database is locked; retrying/.test(l))).toBe(true);
    } finally {
      store.close();
    }
  }, 60_000);

  test("the disk full as a run finishes: SQLite's own error is logged (not 'cannot rollback'), and the result is stored once there is room", async () => {
    const path = join(dir, "full.db");
    // The result needs new pages; SQLite's page limit makes the file full exactly as a full disk does (SQLITE_FULL).
    const { store, log, pipeline, running, finish } = await gatedPipeline(path, { diagnostics: { padding: "x".repeat(200_000) } });
    try {
      const done = pipeline.runUntilIdle();
      await running;
      const pages = store.db.prepare("PRAGMA page_count").get<{ page_count: number }>()!.page_count;
      store.db.exec(`PRAGMA max_page_count = ${pages}`);
      // A transaction that fills it reports the full disk itself, not the failed rollback after it.
      expect(() => store.db.transaction(() => store.setState("filler", "y".repeat(200_000)))).toThrow(/database or disk is full/);
      finish();
      for (let i = 0; i < 100 && !log.lines.some((l) => l.includes("database or disk is full; retrying")); i++) await Bun.sleep(50);
      expect(store.runs("a")[0]!.state).toBe("running");
      store.db.exec("PRAGMA max_page_count = 1073741823");
      await done;
      expect(store.runs("a").map((r) => [r.state, r.tps])).toEqual([["done", 12_054]]);
      expect(store.submission("a")).toMatchObject({ state: "published", score: 12_054 });
      expect(log.lines.join("\n")).not.toContain("cannot rollback");
    } finally {
      store.close();
    }
  }, 60_000);

  test("a store that stays locked past the deadline stops the pipeline loudly; a restart re-runs the run and scores it", async () => {
    const path = join(dir, "stuck.db");
    const first = await gatedPipeline(path, { storeRetryMs: 1_000 });
    const done = first.pipeline.runUntilIdle();
    await first.running;
    const holder = await holdWriteLock(path, 8_000);
    first.finish();
    const failure = await done.then(() => null, (e: Error) => e);
    expect(failure).toBeInstanceOf(StoreFailure);
    expect(failure!.message).toMatch(/could not store the result of run 1\/1 of a after \d+ attempts over \d+ s: database is locked/);
    expect(first.store.runs("a")[0]!.state).toBe("running");
    first.store.close();
    await holder.exited;

    const again = await gatedPipeline(path);
    try {
      const rerun = again.pipeline.runUntilIdle();
      await again.running;
      again.finish();
      await rerun;
      expect(again.store.runs("a").map((r) => [r.state, r.attempts])).toEqual([["done", 2]]);
      expect(again.store.submission("a")).toMatchObject({ state: "published", score: 12_054 });
    } finally {
      again.store.close();
    }
  }, 60_000);
});

describe("the validator's store on a localnet", () => {
  const quiet = createLogger({ level: "error" });
  let net: Localnet;
  beforeAll(async () => {
    net = await startLocalnet({ port: 0, blockMs: 200, netuid: 3, miners: 1, log: quiet });
  }, 30_000);
  afterAll(async () => {
    await net?.stop();
  });

  const config = (name: string) => writeValidatorConfig(dir, name, net.url);
  const validator = (configPath: string, once = false) =>
    spawnValidator(["--config", configPath, ...(once ? ["--once"] : [])], { CRUSADES_HOTKEY_URI: "//Charlie", CRUSADES_LOG_LEVEL: "info" }, children);

  const until = async (what: string, ok: () => boolean, ms = 30_000) => {
    for (const end = Date.now() + ms; !ok(); await Bun.sleep(50)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
  };

  test("a second validator on the same database exits 2 with one line naming the first; the API reads beside it", async () => {
    const cfg = config("two");
    const first = validator(cfg);
    await until("the first validator to run", () => first.stderr().includes("running; polling"));
    const second = validator(cfg, true);
    expect(await second.done).toBe(2);
    const lines = second.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`^validator: another validator is writing .*two\\.db \\(pid ${first.child.pid} on \\S+, since `));
    expect(second.stdout()).toBe("");

    // The API's read-only connection is no writer: it serves beside the running validator.
    const app = await createApp({ dbPath: join(dir, "two.db"), hparams, log: quiet });
    expect((await app.handle(new Request("http://localhost/api/validator/status"))).status).toBe(200);
    expect(first.child.exitCode).toBeNull();
    // The lock goes with its holder, however it dies: the next validator starts.
    first.child.kill("SIGKILL");
    await first.done;
    const next = validator(cfg);
    await until("the validator after a SIGKILLed holder to run", () => next.stderr().includes("running; polling"));
    next.child.kill("SIGTERM");
    expect(await next.done).toBe(0);
  }, 90_000);

  test("the store deleted under a running validator stops it (exit 1, one line) and turns the API's data routes into 503s", async () => {
    const cfg = config("deleted");
    const path = join(dir, "deleted.db");
    const v = validator(cfg);
    await until("the validator to run", () => v.stderr().includes("running; polling"));
    const app = await createApp({ dbPath: path, hparams, log: quiet });
    expect((await app.handle(new Request("http://localhost/api/leaderboard"))).status).toBe(200);
    for (const suffix of ["", "-wal", "-shm"]) rmSync(path + suffix, { force: true });
    expect(await v.done).toBe(1);
    const errors = v.stderr().split("\n").filter((l) => / error /.test(l));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`the store is gone: ${path} was deleted after it was opened`);
    for (const route of ["/api/leaderboard", "/api/submissions", "/api/validator/status", "/health"]) {
      const r = await app.handle(new Request(`http://localhost${route}`));
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: string }).error).toBe("store_unavailable");
    }
  }, 60_000);
});

test("a store replaced under a reader is noticed as well", async () => {
  const path = join(dir, "replaced.db");
  const db = await openDatabase(path);
  try {
    expect(db.lost()).toBeNull();
    unlinkSync(path);
    writeFileSync(path, "");
    expect(db.lost()).toBe(`${path} was replaced by another file after it was opened`);
  } finally {
    db.close();
  }
});
