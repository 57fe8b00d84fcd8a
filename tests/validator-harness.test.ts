// The process executor's harness lives and dies with its validator: a validator killed with SIGKILL takes
// its harness with it, and a starting validator kills any harness a killed one left before it evaluates,
// so two evaluations never share the device. A stand-in env.py (it records its pid and sleeps) keeps
// this fast; the real validator, config loading, store and executor run as in production.
import { afterAll, expect, test } from "bun:test";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { repoRoot } from "../core/hparams.ts";
import { procStat } from "../plugins/executors/process-tree.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-validator-harness-"));
const fake = join(dir, "workdir");
const started = join(dir, "started.log");
const children: ChildProcess[] = [];
const strays: number[] = [];
const code = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response("def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n") });
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  for (const p of [...strays, ...startedPids()]) if (!gone(p)) process.kill(p, "SIGKILL");
  code.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

const gone = (pid: number) => ["Z", "X", undefined].includes(procStat(pid)?.state);
const startedPids = () => (existsSync(started) ? readFileSync(started, "utf8").split("\n").filter(Boolean).map(Number) : []);

async function until(what: string, check: () => boolean, ms = 30_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

mkdirSync(join(fake, "environments/templar"), { recursive: true });
writeFileSync(
  join(fake, "environments/templar/env.py"),
  `import os, time\nwith open(os.environ["STARTED_LOG"], "a") as f:\n    f.write(f"{os.getpid()}\\n")\ntime.sleep(600)\n`,
);
const configPath = join(dir, "harness.config.ts");
writeFileSync(
  configPath,
  `import { z } from ${JSON.stringify(import.meta.resolve("zod"))};
import { defineSource } from ${JSON.stringify(join(repoRoot, "core/plugin.ts"))};
import { processExecutor } from ${JSON.stringify(join(repoRoot, "plugins/executors/process.ts"))};
const one = defineSource("one", z.object({}), () => ({
  poll: async () => [{ id: "one:1", hotkey: "hk1", uid: 1, url: "http://127.0.0.1:${code.port}/train.py", revealBlock: 1, source: "one" }],
}));
export default {
  database: ${JSON.stringify(join(dir, "v.db"))},
  profile: "tiny",
  sources: [one()],
  executor: processExecutor({ unsafe: true, workdir: ${JSON.stringify(fake)}, env: { STARTED_LOG: ${JSON.stringify(started)} } }),
  allowLoopbackCode: true,
  pollIntervalSeconds: 1,
};
`,
);

function validator() {
  const child = spawn(process.execPath, ["scripts/validator.ts", "--config", configPath], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let output = "";
  child.stdout!.on("data", (c) => (output += c));
  child.stderr!.on("data", (c) => (output += c));
  const done = new Promise<number | null>((resolve) => child.on("close", (c) => resolve(c)));
  return { child, done, output: () => output };
}

test("a SIGKILLed validator takes its harness with it; a restarted one kills strays before it evaluates", async () => {
  const first = validator();
  await until("the first harness", () => startedPids().length === 1);
  const harness = startedPids()[0]!;
  first.child.kill("SIGKILL");
  await first.done;
  await until(`harness ${harness} to die with its validator`, () => gone(harness), 5_000);

  // A harness a killed validator left (as one without the death signal would): its run dir names a
  // validator pid that no longer runs, and it has been reparented away from it.
  const dead = spawnSync("true").pid!;
  const stray = spawnSync(
    "sh",
    ["-c", `STARTED_LOG=${join(dir, "stray.log")} python3 environments/templar/env.py --request ${join(tmpdir(), `crusades-process-${dead}-stray`, "request.json")} >/dev/null 2>&1 & echo $!`],
    { cwd: fake, encoding: "utf8" },
  );
  const strayPid = Number(stray.stdout.trim());
  strays.push(strayPid);
  await until("the stray to start", () => existsSync(join(dir, "stray.log")));
  expect(gone(strayPid)).toBe(false);

  const second = validator();
  await until("the re-queued run's harness", () => startedPids().length === 2);
  expect(gone(strayPid)).toBe(true);
  expect(second.output()).toContain(`killed 1 harness process(es) left running by a validator that was killed (pids ${strayPid})`);
  const rerun = startedPids()[1]!;
  second.child.kill("SIGTERM");
  expect(await second.done).toBe(0);
  expect(gone(rerun)).toBe(true);
}, 90_000);

test("--once counts a failed submission as failed after it is published", async () => {
  // A stand-in harness that passes every run, except for code that says FAIL, where it writes nothing.
  const judge = join(dir, "judge");
  mkdirSync(join(judge, "environments/templar"), { recursive: true });
  writeFileSync(
    join(judge, "environments/templar/env.py"),
    // It speaks the warm server's protocol (env.py --serve): request-<n>.json in, result-<n>.json then status-<n> out.
    `import json, os, sys, time
a = sys.argv
inbox, outbox, n = a[a.index("--serve") + 1], a[a.index("--results") + 1], 0
while not os.path.exists(os.path.join(inbox, "stop")):
    path = os.path.join(inbox, f"request-{n}.json")
    if not os.path.exists(path):
        time.sleep(0.01)
        continue
    req, status = json.load(open(path)), "0"
    if "FAIL" in req["code"]:
        status = "1"
    else:
        doc = {"schema_version": 1, "task_id": req["task_id"], "submission_id": req["submission_id"], "run_index": req["run_index"],
               "success": True, "tps": 100.0, "mfu": None, "total_tokens": 1, "wall_time_seconds": 1.0, "total_time_seconds": 1.0,
               "error": None, "checks": [], "data_sha256": None, "device": {"type": "cpu", "name": "cpu", "peak_flops": None}, "diagnostics": {}}
        json.dump(doc, open(os.path.join(outbox, f"result-{n}.json"), "w"))
    open(os.path.join(outbox, f"status-{n}"), "w").write(status)
    n += 1
`,
  );
  const files = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: (req) => {
      const path = new URL(req.url).pathname;
      if (path === "/missing.py") return new Response("not found", { status: 404 });
      return new Response(`# ${path}${path === "/fail.py" ? " FAIL" : ""}\ndef inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n`);
    },
  });
  try {
    const url = (name: string) => `http://127.0.0.1:${files.port}/${name}.py`;
    const subs = ["good", "fail", "missing"].map((name, i) => ({ id: `once:${name}`, hotkey: `hk-${name}`, uid: i + 1, url: url(name), revealBlock: i + 1, source: "three" }));
    const path = join(dir, "once.config.ts");
    writeFileSync(
      path,
      `import { z } from ${JSON.stringify(import.meta.resolve("zod"))};
import { defineSource } from ${JSON.stringify(join(repoRoot, "core/plugin.ts"))};
import { processExecutor } from ${JSON.stringify(join(repoRoot, "plugins/executors/process.ts"))};
const three = defineSource("three", z.object({}), () => ({ poll: async () => ${JSON.stringify(subs)} }));
export default { database: ${JSON.stringify(join(dir, "once.db"))}, profile: "tiny", sources: [three()], executor: processExecutor({ unsafe: true, workdir: ${JSON.stringify(judge)} }), allowLoopbackCode: true };
`,
    );
    const v = Bun.spawn([process.execPath, "scripts/validator.ts", "--config", path, "--once"], { cwd: repoRoot, stdout: "pipe", stderr: "pipe" });
    const [stderr, status] = await Promise.all([new Response(v.stderr).text(), v.exited]);
    expect(status).toBe(0);
    expect(stderr).toContain("scored once:good");
    expect(stderr).toMatch(/idle: 1 scored, 2 failed; 0 event deliveries pending/);
  } finally {
    files.stop(true);
  }
}, 150_000);
