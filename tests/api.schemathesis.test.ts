// The OpenAPI document against outside tools: it validates as OpenAPI 3.1 (openapi-spec-validator), and
// bounded property-based runs (schemathesis, from PyPI) against live loopback servers, with and without an
// API key and with every path spelled with a trailing slash, find no 5xx, no response that breaks its
// declared schema, status code or content type, and no route that answers without the key.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startApi, type RunningApi } from "./fixtures/api-server.ts";
import { seedScenario } from "./fixtures/seed-db.ts";

const KEY = "schemathesis-key";
const dir = mkdtempSync(join(tmpdir(), "crusades-api-st-"));
let api: RunningApi;
let open: RunningApi;

beforeAll(async () => {
  await seedScenario(join(dir, "scenario.db"), Date.now());
  [api, open] = await Promise.all([startApi(join(dir, "scenario.db"), ["--api-key", KEY]), startApi(join(dir, "scenario.db"))]);
}, 60_000);

afterAll(async () => {
  await Promise.all([api?.stop(), open?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

/** One bounded, seeded schemathesis run (repeatable and short in CI; raise --max-examples locally). */
function schemathesis(schema: string, extra: string[]) {
  const r = spawnSync(
    "schemathesis",
    ["run", schema, "--checks", "all", "--max-examples", "15", "--workers", "1", "--seed", "20250601", "--generation-database", "none", "--no-color", ...extra],
    { cwd: dir, encoding: "utf8", timeout: 240_000 },
  );
  if (r.error) throw new Error(`could not run schemathesis (pip install -r requirements-dev.txt): ${r.error.message}`);
  const out = `${r.stdout}\n${r.stderr}`;
  if (r.status !== 0) console.error(out.slice(-6000));
  expect(out).toContain("Tested: 13");
  expect(out).not.toMatch(/Server error|not_a_server_error|Response violates schema|Undocumented|API accepts requests without authentication|ignored_auth/);
  expect(r.status).toBe(0);
}

describe("OpenAPI document", () => {
  test("validates as OpenAPI 3.1 and documents every route", async () => {
    const doc = (await (await fetch(`${api.url}/openapi/json`)).json()) as { openapi: string; paths: Record<string, Record<string, { responses: Record<string, unknown> }>> };
    expect(doc.openapi).toStartWith("3.1");
    const file = join(dir, "openapi.json");
    writeFileSync(file, JSON.stringify(doc));
    const r = spawnSync("python3", ["-c", "import json,sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')", file], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("valid");
    expect(Object.keys(doc.paths).sort()).toEqual(
      [
        "/health",
        "/leaderboard",
        "/api/leaderboard",
        "/api/stats/overview",
        "/api/stats/history",
        "/api/validator/status",
        "/api/queue",
        "/api/submissions",
        "/api/submissions/{id}",
        "/api/submissions/{id}/runs",
        "/api/submissions/{id}/code",
        "/api/weights",
        "/api/rejections",
      ].sort(),
    );
    for (const [path, ops] of Object.entries(doc.paths)) {
      expect({ path, has200: "200" in ops.get!.responses }).toEqual({ path, has200: true });
    }
  }, 60_000);

  test("schemathesis finds nothing against a server with an API key", () => {
    schemathesis(`${api.url}/openapi/json`, ["--header", `X-API-Key: ${KEY}`]);
  }, 300_000);

  test("schemathesis finds nothing against a server without one", () => {
    schemathesis(`${open.url}/openapi/json`, []);
  }, 300_000);

  test("schemathesis finds nothing with every path spelled with a trailing slash, key checks included", async () => {
    const doc = (await (await fetch(`${api.url}/openapi/json`)).json()) as { paths: Record<string, unknown> };
    const slashed = { ...doc, paths: Object.fromEntries(Object.entries(doc.paths).map(([p, ops]) => [`${p}/`, ops])) };
    const file = join(dir, "openapi-slashed.json");
    writeFileSync(file, JSON.stringify(slashed));
    schemathesis(file, ["--url", api.url, "--header", `X-API-Key: ${KEY}`]);
    // Nothing the runs sent made either server log an error.
    for (const server of [api, open]) expect(server.stderr()).not.toMatch(/error|\n\s+at /);
  }, 300_000);
});
