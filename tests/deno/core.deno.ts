// The core under Deno 2: the same modules the Bun suite tests, through Deno's own runtime (node:sqlite
// for storage). Run by `npm test` as `deno test --allow-all --no-check tests/deno/core.deno.ts`; named
// *.deno.ts so `bun test` does not collect it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { failedResult } from "../../core/contracts.ts";
import { fetchCode } from "../../core/fetch.ts";
import { loadHParams } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import { createPipeline } from "../../core/pipeline.ts";
import { defineExecutor, defineSource } from "../../core/plugin.ts";
import { normalizeU16 } from "../../core/scoring.ts";
import { lockStore } from "../../core/storage/lock.ts";
import { openDatabase, sqliteErrorCode } from "../../core/storage/sqlite.ts";
import { Store } from "../../core/storage/store.ts";
import { decrypt, encrypt, QUICKNET } from "../../core/timelock/index.ts";
import { z } from "zod";

declare const Deno: { test(name: string, fn: () => Promise<void> | void): void; version: { deno: string } };

Deno.test("runs under Deno, not Bun", () => {
  assert.ok(Deno.version.deno);
  assert.equal(typeof (globalThis as { Bun?: unknown }).Bun, "undefined");
});

Deno.test("store + pipeline on node:sqlite, code fetched from a real loopback server", async () => {
  const code = "def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    return None\n";
  const server = createServer((_, res) => res.end(code));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  const dir = mkdtempSync(join(tmpdir(), "crusades-deno-"));
  const store = await Store.open(join(dir, "v.db"));
  try {
    const url = `http://127.0.0.1:${port}/train.py`;
    const source = defineSource("one", z.object({}), () => {
      let sent = false;
      return { poll: async () => (sent ? [] : ((sent = true), [{ id: "a", hotkey: "hk", uid: 3, url, revealBlock: 1, source: "one" }])) };
    })();
    const executor = defineExecutor("instant", z.object({}), () => ({
      evaluate: async (req) => ({ ...failedResult(req, "crash", ""), success: true, error: null, tps: 100 + req.run_index }),
    }))();
    const p = createPipeline({ store, hparams: { ...loadHParams(), evaluation_runs: 3 }, profile: "tiny", sources: [source], executor, sinks: [], log: memoryLogger(), fetchCode, allowLoopbackCode: true });
    await p.runUntilIdle();
    assert.equal(store.submission("a")?.state, "published");
    assert.equal(store.submission("a")?.score, 101);
  } finally {
    store.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

Deno.test("the fetcher refuses loopback unless allowed", async () => {
  const r = await fetchCode("http://127.0.0.1:9/x.py");
  assert.equal(r.ok, false);
  if (!r.ok) assert.equal(r.code, "blocked_address");
});

Deno.test("u16 weights and timelock behave as on Bun", () => {
  assert.deepEqual(normalizeU16([0, 1, 2], [0.1, 0.3, 0.6]).weights, [10922, 32768, 65535]);
  assert.throws(() => decrypt(encrypt(new TextEncoder().encode("hi"), 1000n, QUICKNET.publicKey), new Uint8Array(48)));
});

Deno.test("one writer per store, a deleted store noticed, and SQLite's codes read from node:sqlite's errors", async () => {
  const dir = mkdtempSync(join(tmpdir(), "crusades-deno-lock-"));
  try {
    const path = join(dir, "v.db");
    const lock = await lockStore(path);
    await assert.rejects(lockStore(path), (e: Error & { code?: string }) => e.code === "store_locked" && e.message.includes(`pid ${process.pid} on `));
    lock.release();
    (await lockStore(path)).release();

    const db = await openDatabase(path);
    const other = await openDatabase(path);
    try {
      other.exec("PRAGMA busy_timeout = 0");
      db.exec("BEGIN IMMEDIATE");
      assert.throws(() => other.exec("BEGIN IMMEDIATE"), (e: unknown) => sqliteErrorCode(e) === 5);
      db.exec("ROLLBACK");
      assert.equal(db.lost(), null);
      rmSync(path);
      assert.equal(db.lost(), `${path} was deleted after it was opened`);
    } finally {
      other.close();
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
