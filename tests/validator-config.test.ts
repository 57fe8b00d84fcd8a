// A careless or hostile config meets scripts/validator.ts: every failure is one line on stderr that names
// the file or the field, and the exit status is 2, before anything runs.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../core/hparams.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function validator(configPath: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["scripts/validator.ts", "--config", configPath, "--once"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c) => (stdout += c));
  child.stderr.on("data", (c) => (stderr += c));
  return new Promise((resolve) => child.on("close", (code) => resolve({ code, stdout, stderr })));
}

const base = { network: "local", database: join(dir, "never.db"), profile: "tiny", sources: [{ use: "gists", options: { gists: ["1234"] } }], executor: { use: "process", options: { unsafe: true } } };
const json = (name: string, body: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(body));
  return p;
};
const ts = (name: string, body: string) => {
  const p = join(dir, name);
  writeFileSync(p, body);
  return p;
};

/** Exit 2, one line, naming the file, containing each of `parts`. */
async function refused(path: string, ...parts: string[]) {
  const r = await validator(path);
  const lines = r.stderr.trim().split("\n");
  expect({ code: r.code, lines: lines.length, stdout: r.stdout }).toEqual({ code: 2, lines: 1, stdout: "" });
  expect(lines[0]).toStartWith(`validator: ${path}`);
  for (const p of parts) expect(lines[0]).toContain(p);
  return lines[0]!;
}

describe("config failures are one line and exit 2", () => {
  test("a plain object posing as a plugin is refused, naming the field", async () => {
    await refused(json("evil.json", { ...base, sources: [{ kind: "source", name: "evil" }] }), "sources.0:", "not a plugin unless a factory built it");
  }, 30_000);

  test("a source where the executor belongs reads as English", async () => {
    const p = ts("swap.config.ts", `import { gistsSource } from ${JSON.stringify(join(repoRoot, "plugins/sources/gists.ts"))};\nexport default { sources: [gistsSource({ gists: ["1"] })], executor: gistsSource({ gists: ["2"] }) };\n`);
    await refused(p, "executor: expected an executor plugin", 'not a source ("gists")');
  }, 30_000);

  test("the process executor without unsafe names the option, not a fragment of its message", async () => {
    const line = await refused(json("unsafe.json", { ...base, executor: { use: "process" } }), 'executor: executor "process": options.unsafe: the process executor runs submitted code with no sandbox');
    expect(line).not.toContain("options.set");
  }, 30_000);

  test("a config that throws a string, or null, says what was thrown", async () => {
    await refused(ts("string.config.ts", `throw "a string";\n`), 'failed to load: threw "a string"');
    await refused(ts("null.config.ts", `throw null;\n`), "failed to load: threw null");
  }, 30_000);

  test("a FIFO as the config is refused instead of read forever", async () => {
    const fifo = join(dir, "fifo.json");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    await refused(fifo, "not a regular file");
  }, 30_000);

  test("a .ts config whose top-level await never settles times out", async () => {
    await refused(ts("hang.config.ts", `await new Promise(() => {});\nexport default {};\n`), "did not finish loading within 15 s");
  }, 60_000);
});

describe("a database path SQLite cannot use is named with what is wrong", () => {
  test("a directory", async () => {
    const db = join(dir, "db-dir");
    mkdirSync(db);
    const r = await validator(json("dbdir.json", { ...base, database: db }));
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`validator: cannot use ${db} as the database: it is a directory; point \`database\` at a file`);
  }, 30_000);

  test("a file that is not a database", async () => {
    const db = join(dir, "notes.txt");
    writeFileSync(db, "these are my notes, not a database\n".repeat(100));
    const r = await validator(json("dbfile.json", { ...base, database: db }));
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toEqual([expect.stringContaining(`validator: ${db} is not a Crusades database (SQLite says: file is not a database)`)]);
  }, 30_000);
});
