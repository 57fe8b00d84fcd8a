#!/usr/bin/env node
// First-run set-up for a machine that has only Node and Python: brings Bun (from npm), the JS
// dependencies and the Python packages, then hands over to the real command. Plain Node on purpose:
// it must run before Bun exists. Usage: node scripts/bootstrap.mjs demo|test|setup [args…]
import { spawn, spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { skippedSuites, summaryLine } from "./test-summary.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const [command = "setup", ...rest] = process.argv.slice(2);
const step = (msg) => console.log(`\x1b[1m==>\x1b[0m ${msg}`);
const die = (msg) => {
  console.error(`\x1b[31merror:\x1b[0m ${msg}`);
  process.exit(1);
};

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: opts.capture ? "pipe" : "inherit", encoding: "utf8", env: { ...process.env, ...opts.env } });
  if (r.error) return { ok: false, out: String(r.error.message) };
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}`, status: r.status };
}

function bunPath() {
  const local = join(root, "node_modules", ".bin", "bun");
  if (existsSync(local)) return local;
  const global = run("bun", ["--version"], { capture: true });
  return global.ok ? "bun" : null;
}

function ensureBun() {
  let bun = bunPath();
  if (!bun) {
    step("installing Bun from the npm registry (one time)");
    if (!run("npm", ["install", "--no-save", "--no-audit", "--no-fund", "bun@1"]).ok) die("could not install bun with npm; install it by hand (npm i -g bun) and retry");
    bun = bunPath();
    if (!bun) die("bun was installed but cannot be found in node_modules/.bin");
  }
  const lock = join(root, "bun.lock");
  const stamp = join(root, "node_modules", ".crusades-installed");
  if (!existsSync(stamp) || readFileSync(stamp, "utf8") !== readFileSync(lock, "utf8")) {
    step("installing JavaScript dependencies (bun install)");
    if (!run(bun, ["install", "--frozen-lockfile"]).ok) die("bun install failed; see the output above");
    run("sh", ["-c", `cp "${lock}" "${stamp}"`]);
  }
  return bun;
}

function ensurePython() {
  const python = process.env.PYTHON ?? "python3";
  const probe = run(python, ["-c", "import sys; assert sys.version_info >= (3, 11), sys.version; import torch, transformers, numpy, jsonschema, safetensors"], { capture: true });
  if (probe.ok) return python;
  if (/No such file|ENOENT/.test(probe.out)) die(`${python} not found: install Python 3.11+ first`);
  if (/AssertionError/.test(probe.out)) die(`Python 3.11+ is needed, found: ${probe.out.trim().split("\n").pop()}`);
  step("installing Python packages (torch CPU build, transformers, …) — a few minutes the first time");
  const pip = run(python, ["-m", "pip", "install", "--progress-bar", "on", "-r", "requirements-dev.txt"]);
  if (!pip.ok) die("pip install -r requirements-dev.txt failed; see the output above (torch==2.13.0 is pinned)");
  return python;
}

/** Streams a command's output while keeping it, so the suite totals can be read afterwards. */
function tee(cmd, args) {
  return new Promise((done) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const keep = (stream) => (chunk) => {
      stream.write(chunk);
      out += chunk;
    };
    child.stdout.on("data", keep(process.stdout));
    child.stderr.on("data", keep(process.stderr));
    child.on("error", (e) => done({ status: 127, out: String(e) }));
    child.on("close", (status) => done({ status, out }));
  });
}

/**
 * Runs the three suites; prints one closing line with the totals, and the suites skipped for a missing
 * service (tests/services.ts), so any CI can read the outcome and a user sees what was not tested.
 */
async function runTests(bun, python) {
  let passed = 0;
  let failed = 0;
  const skipped = [];
  const suites = [
    ["bun", bun, ["test", ...rest], /(\d+) pass\b/g, /(\d+) fail\b/g],
    ["pytest", python, ["-m", "pytest", "-q", "tests/python"], /(\d+) passed/g, /(\d+) failed/g],
    ["deno", join(root, "node_modules", ".bin", "deno"), ["test", "--allow-all", "--no-check", "tests/deno/core.deno.ts"], /(\d+) passed/g, /(\d+) failed/g],
  ];
  for (const [name, cmd, args, passRe, failRe] of suites) {
    step(`${name} suite`);
    const { status, out } = await tee(cmd, args);
    const last = (re) => Number([...out.matchAll(re)].pop()?.[1] ?? 0);
    const f = last(failRe);
    passed += last(passRe);
    failed += f;
    skipped.push(...skippedSuites(out));
    if (status !== 0 && f === 0) failed += 1; // a suite that crashed counts as a failure
  }
  console.log(summaryLine(passed, failed, skipped));
  process.exit(failed ? 1 : 0);
}

const bun = ensureBun();
if (command === "setup") {
  ensurePython();
  step("ready");
} else if (command === "test") {
  await runTests(bun, ensurePython());
} else if (command === "demo") {
  ensurePython();
  const r = spawnSync(bun, ["scripts/demo.ts", ...rest], { cwd: root, stdio: "inherit" });
  process.exit(r.status ?? 1);
} else {
  die(`unknown command "${command}" (expected demo, test or setup)`);
}
