// The dashboard in headless Chromium against a real API process: load, sort the leaderboard, open a
// submission, check that miner-controlled text stays text, and save screenshots to artifacts/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { Store } from "../core/storage/store.ts";
import { startApi, type RunningApi } from "./fixtures/api-server.ts";
import { seedBulk, seedScenario, type Scenario } from "./fixtures/seed-db.ts";
import { requireService } from "./services.ts";

const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const artifacts = join(import.meta.dir, "..", "artifacts");
const dir = mkdtempSync(join(tmpdir(), "crusades-api-browser-"));
let browser: Browser;
let bulkApi: RunningApi;
let scenarioApi: RunningApi;
let sc: Scenario;
const ready = await requireService("dashboard in Chromium", "chromium");

beforeAll(async () => {
  // Top-level hooks run even when every test is skipped.
  if (!ready) return;
  mkdirSync(artifacts, { recursive: true });
  const now = Date.now();
  await seedBulk(join(dir, "bulk.db"), 1500, now);
  sc = await seedScenario(join(dir, "scenario.db"), now);
  [bulkApi, scenarioApi, browser] = await Promise.all([
    startApi(join(dir, "bulk.db")),
    startApi(join(dir, "scenario.db"), ["--api-key", "browser-key"]),
    chromium.launch({ executablePath: Bun.which("chromium")!, args: CHROMIUM_ARGS }),
  ]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([bulkApi?.stop(), scenarioApi?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

async function open(url: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
  await page.goto(url);
  return { page, errors };
}

const tpsColumn = (page: Page) => page.$$eval("#leaderboard tbody td.tps", (tds) => tds.map((td) => Number(td.textContent!.replace(/,/g, ""))));

describe.skipIf(!ready)("dashboard", () => {
  test("loads, sorts the leaderboard, opens a submission", async () => {
    const { page, errors } = await open(bulkApi.url);
    await page.waitForSelector("#leaderboard tbody tr");
    await page.waitForSelector("#chart svg path.line");
    expect(await page.textContent("#conn")).toBe("live");
    expect(await page.textContent("#c-top")).toMatch(/^[\d,]+\.\d$/);
    expect(await page.textContent("#c-24h")).toMatch(/^\d+$/);
    expect(await page.$$eval("#chart circle.point", (c) => c.length)).toBeGreaterThan(2);
    expect(await page.$$eval("#recent tbody tr", (r) => r.length)).toBe(15);

    // threshold order first: rank 1 is the leader, whose TPS need not be the highest
    const ranks = await page.$$eval("#leaderboard tbody tr td:first-child", (tds) => tds.map((td) => Number(td.textContent!.replace(/\D/g, ""))));
    expect(ranks).toEqual([...ranks].sort((a, b) => a - b));
    expect(ranks[0]).toBe(1);

    await page.click('#leaderboard th[data-key="tps"]');
    expect(await page.getAttribute('#leaderboard th[data-key="tps"]', "aria-sort")).toBe("descending");
    const down = await tpsColumn(page);
    expect(down).toEqual([...down].sort((a, b) => b - a));
    await page.click('#leaderboard th[data-key="tps"]');
    expect(await page.getAttribute('#leaderboard th[data-key="tps"]', "aria-sort")).toBe("ascending");
    const up = await tpsColumn(page);
    expect(up).toEqual([...up].sort((a, b) => a - b));
    await page.click('#leaderboard th[data-key="rank"]');
    expect(await page.getAttribute('#leaderboard th[data-key="rank"]', "aria-sort")).toBe("ascending");

    await page.screenshot({ path: join(artifacts, "dashboard.png"), fullPage: true });

    expect(await page.$$eval("#leaderboard tbody tr", (r) => r.length)).toBe(20);
    await page.click("#lb-more");
    await page.waitForFunction(() => document.querySelectorAll("#leaderboard tbody tr").length === 40);

    const first = await page.getAttribute("#leaderboard tbody tr:first-child", "data-id");
    await page.click("#leaderboard tbody tr:first-child td:nth-child(4)");
    await page.waitForSelector("#detail:not([hidden]) #code .ln");
    expect(await page.textContent("#d-id")).toBe(first);
    expect(await page.$$eval("#runs tbody tr", (r) => r.length)).toBe(5);
    expect(await page.textContent("#d-facts")).toContain("1 · leader");
    await page.click("a.back");
    await page.waitForSelector("#dashboard:not([hidden])");
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  test("asks for the API key, then shows a submission's code as text", async () => {
    const { page, errors } = await open(`${scenarioApi.url}/#/submission/${encodeURIComponent(sc.ids.leader)}`);
    await page.waitForSelector("#keyform:not([hidden])");
    expect(await page.textContent("#conn")).toBe("API key required");
    await page.fill("#keyinput", "browser-key");
    await page.click("#keyform button");
    await page.waitForSelector("#code .ln");
    const code = await page.textContent("#code");
    expect(code).toContain('# </script><script>window.__xss = 1</script> <b>bold</b> & "quotes"');
    expect(code).toContain("def inner_steps(model, data_iterator, optimizer, num_steps, device):");
    expect(await page.evaluate(() => (window as { __xss?: number }).__xss)).toBeUndefined();
    expect(await page.$$eval("#code script, #code b", (n) => n.length)).toBe(0);
    expect(await page.$$eval("#code .k", (n) => n.map((x) => x.textContent))).toContain("def");
    expect(await page.$$eval("#runs tbody tr td:last-child", (n) => n.map((x) => x.textContent))).toContain("✗ timeout");
    await page.screenshot({ path: join(artifacts, "submission.png"), fullPage: true });

    // a submission still under evaluation: no code, and the page says why
    await page.goto(`${scenarioApi.url}/#/submission/${encodeURIComponent(sc.ids.evaluating)}`);
    await page.waitForFunction(() => document.querySelector("#code")?.textContent?.includes("once the evaluation has finished"));
    expect(await page.textContent("#d-facts")).toContain("URL shown after evaluation");
    expect(errors.filter((e) => !e.includes("401"))).toEqual([]);
    await page.close();
  }, 60_000);

  test("the device pool: each slot, what it runs, and the one taken out with why", async () => {
    const store = await Store.open(join(dir, "bulk.db"));
    const now = Date.now();
    const status = store.getState<Record<string, unknown>>("validator:status") ?? {};
    const run = { submissionId: "chain:3:1:5Fslot", runIndex: 1, startedAt: now };
    store.setState("validator:status", {
      ...status,
      state: "evaluating",
      updatedAt: now,
      slots: [
        { id: "gpu:0", host: null, devices: "GPU 0: NVIDIA H100 80GB HBM3", state: "busy", run, failures: 0, reason: null, runs: 12 },
        { id: "gpu:1", host: null, devices: "GPU 1: NVIDIA H100 80GB HBM3", state: "out", run: null, failures: 3, reason: "3 runs in a row failed on the validator's side", runs: 9 },
      ],
    });
    store.close();
    const { page, errors } = await open(bulkApi.url);
    await page.waitForSelector("#slots:not([hidden]) #slots-table tbody tr");
    const rows = await page.$$eval("#slots-table tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
    expect(rows.map((r) => r[0])).toEqual(["gpu:0", "gpu:1"]);
    expect(rows[0]![3]).toBe("5Fslot run 2");
    expect(rows[1]![2]).toBe("out: 3 runs in a row failed on the validator's side");
    expect(await page.textContent("#slots-note")).toBe("· 1 of 1 busy · 1 out of the pool");
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});
