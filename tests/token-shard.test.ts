// Validators see they score the same tokens: a validator whose token shard is not the one hparams pins
// refuses to start, naming both hashes, before it touches the chain or its store; a missing shard is
// named with how to write it; an unpinned one is a one-line warning. Real files, a shard written from
// local text by the project's own writer, and the executors' own tokenShard (hashing needs no engine).
import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchmarkSettings, loadHParams, repoRoot } from "../core/hparams.ts";
import { memoryLogger } from "../core/log.ts";
import { checkTokenShard } from "../core/token-shard.ts";
import { dockerExecutor } from "../plugins/executors/docker.ts";
import { processExecutor } from "../plugins/executors/process.ts";
import { writeTextShard } from "./fixtures/shard.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-shard-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const shard = join(dir, "tokens.npy");
const sha256 = writeTextShard(shard);
const other = "ab".repeat(32);
const hp = loadHParams();

/** hparams.json with the shard pinned to `pin`, as a validator's `hparams` file. */
function hparamsPinning(pin: string | null): string {
  const path = join(dir, `hparams-${pin ?? "unpinned"}.json`);
  writeFileSync(path, JSON.stringify({ ...JSON.parse(readFileSync(join(repoRoot, "hparams/hparams.json"), "utf8")), benchmark_data_sha256: pin }));
  return path;
}

/** scripts/validator.ts on a config whose chain is unreachable: anything that gets that far hangs, so a quick exit is a refusal at start. */
function validator(name: string, executor: unknown, pin: string | null) {
  const config = join(dir, `${name}.json`);
  writeFileSync(config, JSON.stringify({
    network: "ws://127.0.0.1:9", database: join(dir, `${name}.db`), hparams: hparamsPinning(pin), profile: "benchmark",
    sources: [{ use: "chain-reveals" }], executor, sinks: [{ use: "chain-weights" }],
  }));
  const child = spawn(process.execPath, ["scripts/validator.ts", "--config", config, "--once"], { cwd: repoRoot, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (c) => (stderr += c));
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
  return new Promise<{ code: number | null; stderr: string }>((resolve) => child.on("close", (code) => (clearTimeout(timer), resolve({ code, stderr }))));
}

describe("the token shard at start", () => {
  test("a shard other than the pinned one refuses the validator at start, naming both hashes", async () => {
    const r = await validator("mismatch", { use: "docker", options: { dataPath: shard } }, other);
    expect(r.code).toBe(1);
    const line = r.stderr.trim().split("\n").at(-1)!;
    expect(line).toContain(`validator: the token shard ${shard} has sha256 ${sha256}, but hparams pins ${other}`);
    expect(existsSync(join(dir, "mismatch.db"))).toBe(false);
  }, 60_000);

  test("a missing shard refuses the validator at start, saying how to write it", async () => {
    const r = await validator("missing", { use: "docker", options: { dataPath: join(dir, "absent.npy") } }, sha256);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`profile benchmark reads the token shard ${hp.benchmark_data_path}, which the docker executor does not have`);
    expect(r.stderr).toContain("setup_benchmark.py");
  }, 60_000);

  test("the pinned shard passes; an unpinned one passes with one warning that names its hash", async () => {
    const settings = benchmarkSettings(hp, "benchmark");
    const log = memoryLogger();
    expect(await checkTokenShard({ ...settings, data_sha256: sha256 }, dockerExecutor({ dataPath: shard }), log)).toEqual({ where: shard, sha256 });
    expect(log.lines.filter((l) => / warn /.test(l))).toEqual([]);
    expect(log.lines.some((l) => l.includes("the one hparams pins"))).toBe(true);
    const unpinned = memoryLogger();
    expect((await checkTokenShard({ ...settings, data_sha256: null }, dockerExecutor({ dataPath: shard }), unpinned))?.sha256).toBe(sha256);
    const warnings = unpinned.lines.filter((l) => / warn /.test(l));
    expect(warnings.length).toBe(1);
    expect(warnings[0]).toContain(sha256);
  });

  test("the process executor's shard is the file in its workdir; a profile without a shard asks no executor", async () => {
    const workdir = join(dir, "checkout");
    mkdirSync(join(workdir, "data/benchmark"), { recursive: true });
    writeFileSync(join(workdir, hp.benchmark_data_path!), readFileSync(shard));
    const ex = processExecutor({ unsafe: true, workdir });
    expect(await ex.tokenShard!(hp.benchmark_data_path!, memoryLogger())).toEqual({ where: join(workdir, hp.benchmark_data_path!), sha256 });
    expect(await ex.tokenShard!("data/other.npy", memoryLogger())).toBeNull();
    await expect(checkTokenShard(benchmarkSettings(hp, "tiny"), { kind: "executor", name: "none", options: {}, evaluate: () => Promise.reject(new Error("not called")), tokenShard: () => Promise.reject(new Error("asked")) }, memoryLogger())).resolves.toBeNull();
  });
});
