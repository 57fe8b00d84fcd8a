// The dashboard in headless Chromium against a real API process: load, sort the leaderboard, open a
// submission, check that miner-controlled text stays text, and save screenshots to artifacts/.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { createHash } from "node:crypto";
import { scoreEvent } from "../core/pipeline.ts";
import { Store } from "../core/storage/store.ts";
import { startApi, type RunningApi } from "./fixtures/api-server.ts";
import { result, seedBulk, seedScenario, THRESHOLD, trainPy, type Scenario } from "./fixtures/seed-db.ts";
import { requireService } from "./services.ts";

const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const artifacts = join(import.meta.dir, "..", "artifacts");
const dir = mkdtempSync(join(tmpdir(), "crusades-api-browser-"));
let browser: Browser;
let bulkApi: RunningApi;
let scenarioApi: RunningApi;
let minerApi: RunningApi;
let sc: Scenario;
const ready = await requireService("dashboard in Chromium", "chromium");

beforeAll(async () => {
  // Top-level hooks run even when every test is skipped.
  if (!ready) return;
  mkdirSync(artifacts, { recursive: true });
  const now = Date.now();
  await seedBulk(join(dir, "bulk.db"), 1500, now);
  sc = await seedScenario(join(dir, "scenario.db"), now);
  await seedMinerView(join(dir, "miner.db"), now);
  [bulkApi, scenarioApi, minerApi, browser] = await Promise.all([
    startApi(join(dir, "bulk.db")),
    startApi(join(dir, "scenario.db"), ["--api-key", "browser-key"]),
    startApi(join(dir, "miner.db")),
    chromium.launch({ executablePath: Bun.which("chromium")!, args: CHROMIUM_ARGS }),
  ]);
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await Promise.all([bulkApi?.stop(), scenarioApi?.stop(), minerApi?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

// What a rejected miner sees (issue 21, finding 9): a gists competition (no UID, a revision time instead
// of a reveal block) whose miner has a 100 KB login as hotkey, code with a bidi override, a run rejected
// with an actionable reason, and a validator that has stopped.
const HUGE_KEY = "a".repeat(100 * 1024);
const GIST_TIME = Date.UTC(2026, 11, 7, 9, 30, 0) / 1000; // the gists source's revealBlock: unix seconds
const REASON = "update_scale failed (value 0.738, bound 1 ± 0.02): every step must run forward, backward and optimizer.step on every parameter";
const miner = { scored: "gist:0123456789abcdef0123:1111111111111111111111111111111111111111", rejected: "gist:0123456789abcdef0123:2222222222222222222222222222222222222222" };

async function seedMinerView(path: string, now: number) {
  let t = now - 3_600_000;
  const store = await Store.open(path, () => t);
  const payload = (id: string) => (row: Parameters<typeof scoreEvent>[0], leader: string | null) => scoreEvent(row, store.runs(id), leader);
  const evaluate = (id: string, hotkey: string, revealBlock: number, code: string, error: string | null) => {
    store.addSubmission({ id, hotkey, uid: null, url: `https://gist.githubusercontent.com/x/${id.split(":")[1]}/raw/${id.split(":")[2]}/train.py`, revealBlock, source: "gists" });
    const bytes = new TextEncoder().encode(code);
    store.pinAndQueue(id, bytes, createHash("sha256").update(bytes).digest("hex"), 2);
    for (let i = 0; i < 2; i++) {
      t += 60_000;
      const task = `${i}${id.slice(-31)}`;
      store.claimRun(task, "0".repeat(64));
      store.finishRun(id, i, task, result(id, i, task, 1000 + i, error === null ? null : { code: "weights_mismatch", message: error }));
    }
    t += 60_000;
    const outcome = error === null ? { ok: true as const, score: 1000.5, successfulRuns: 2 } : { ok: false as const, code: "no_successful_runs", message: "none of 2 runs succeeded", successfulRuns: 0 };
    store.settle(id, outcome, THRESHOLD, [], payload(id));
  };
  evaluate(miner.scored, HUGE_KEY, GIST_TIME, trainPy("scored"), null);
  evaluate(miner.rejected, HUGE_KEY, GIST_TIME + 60, trainPy("rejected", 'open("\u202egnp.exe")  # a trojan-source file name'), REASON);
  store.setState("validator:status", { state: "stopped", startedAt: now - 7_200_000, pid: 1, hotkey: null, uid: null, network: null, netuid: null, current: null, lastWeightsBlock: null, updatedAt: now });
  store.close();
}

async function open(url: string, viewport = { width: 1440, height: 1000 }): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport });
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

describe.skipIf(!ready)("what a rejected miner sees (issue 21, finding 9)", () => {
  const PHONE = { width: 390, height: 844 };
  /** How far the page reaches past the viewport's right edge, in CSS pixels (0: no sideways scrolling). */
  const overflow = (page: Page) => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);

  test("on a 390 px phone: each run's reason is on the page, and a 100 KB hotkey does not widen it", async () => {
    const { page, errors } = await open(`${minerApi.url}/#/submission/${encodeURIComponent(miner.rejected)}`, PHONE);
    await page.waitForSelector("#runs tbody tr");
    await page.waitForSelector("#code .ln");
    expect(await overflow(page)).toBe(0);
    // The reason is text on the page for both runs, inside the viewport, not a tooltip.
    const reasons = page.locator("#runs tbody", { hasText: REASON }).getByText(REASON, { exact: false });
    expect(await reasons.count()).toBe(2);
    for (let i = 0; i < 2; i++) {
      const box = (await reasons.nth(i).boundingBox())!;
      expect(await reasons.nth(i).isVisible()).toBe(true);
      expect(box.x).toBeGreaterThanOrEqual(0);
      expect(box.x + box.width).toBeLessThanOrEqual(PHONE.width);
    }
    // The hotkey stays findable (both ends and its length) without 100 KB of text on the page.
    const facts = (await page.textContent("#d-facts"))!;
    expect(facts).toContain(`aaaaaaaa`);
    expect(facts).toContain(`${(100 * 1024).toLocaleString("en-US")} characters`);
    expect(facts.length).toBeLessThan(2000);
    await page.screenshot({ path: join(artifacts, "submission-phone.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  test("a gists submission shows its revision time, not a unix time as a reveal block", async () => {
    const { page, errors } = await open(`${minerApi.url}/#/submission/${encodeURIComponent(miner.scored)}`);
    await page.waitForSelector("#runs tbody tr");
    expect(await overflow(page)).toBe(0); // the 100 KB hotkey on a desktop screen too
    const facts = (await page.textContent("#d-facts"))!;
    expect(facts.length).toBeLessThan(2000);
    expect(facts).not.toContain("Reveal block");
    expect(facts).not.toContain(String(GIST_TIME));
    expect(facts).toContain("Revision2026-12-07 09:30:00 UTC");
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  test("bidi overrides in miner code are shown as escapes, not applied", async () => {
    const { page, errors } = await open(`${minerApi.url}/#/submission/${encodeURIComponent(miner.rejected)}`);
    await page.waitForSelector("#code .ln");
    const code = (await page.textContent("#code"))!;
    expect(code).not.toContain("\u202e");
    expect(code).toContain('open("⟨U+202E⟩gnp.exe")');
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);

  test("on a 390 px phone the dashboard: the badge is not green beside a stopped validator, recent entries name their hotkey, nothing overflows", async () => {
    const { page, errors } = await open(minerApi.url, PHONE);
    await page.waitForSelector("#leaderboard tbody tr");
    expect(await page.textContent("#v-state")).toBe("STOPPED");
    expect(await page.textContent("#conn")).not.toBe("live");
    const green = await page.evaluate(() => {
      const probe = document.createElement("span");
      probe.style.color = "var(--green)";
      document.body.append(probe);
      const c = getComputedStyle(probe).color;
      probe.remove();
      return c;
    });
    expect(await page.$eval("#conn", (e) => getComputedStyle(e).color)).not.toBe(green);

    // A gists miner has no UID: its hotkey is what it looks for.
    const recent = await page.$$eval("#recent tbody tr", (trs) => trs.map((tr) => tr.textContent!));
    expect(recent).toHaveLength(2);
    for (const row of recent) expect(row).toMatch(/aaaaaa…aaaaaa/);

    expect(await overflow(page)).toBe(0);
    for (const table of ["#leaderboard", "#recent"]) {
      const [inner, outer] = await page.$eval(table, (t) => [t.getBoundingClientRect().right, t.closest(".panel")!.getBoundingClientRect().right]);
      expect(inner).toBeLessThanOrEqual(outer!);
    }
    await page.screenshot({ path: join(artifacts, "dashboard-phone.png"), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 60_000);
});
