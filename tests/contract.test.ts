// The one place TS and Python meet: a request built by the TS side (hparams → benchmarkSettings → zod)
// is accepted by the Python harness's JSON Schema, and the documents the harness writes parse on the TS
// side with parseResult, for a rejected submission and for a verified one (a real tiny run on CPU).
import { afterAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { EvaluationRequest, parseResult, SCHEMA_VERSION } from "../core/contracts.ts";
import { benchmarkSettings, loadHParams, repoRoot, verificationSettings } from "../core/hparams.ts";

const dir = mkdtempSync(join(tmpdir(), "crusades-contract-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function request(code: string): EvaluationRequest {
  const h = loadHParams();
  return EvaluationRequest.parse({
    schema_version: SCHEMA_VERSION,
    task_id: randomBytes(16).toString("hex"),
    submission_id: "contract:1",
    run_index: 2,
    seed: randomBytes(32).toString("hex"),
    code,
    code_sha256: createHash("sha256").update(code).digest("hex"),
    benchmark: benchmarkSettings(h, "tiny"),
    optimizer: h.optimizer,
    verification: verificationSettings(h, "tiny"),
  });
}

function python(args: string[], input?: string) {
  return spawnSync("python3", args, { cwd: repoRoot, input, encoding: "utf8", timeout: 600_000 });
}

function harness(req: EvaluationRequest) {
  const reqPath = join(dir, `${req.task_id}.request.json`);
  const resPath = join(dir, `${req.task_id}.result.json`);
  writeFileSync(reqPath, JSON.stringify(req));
  const run = python(["environments/templar/env.py", "--request", reqPath, "--result", resPath]);
  expect(run.status).toBe(0);
  return JSON.parse(readFileSync(resPath, "utf8"));
}

const checkSchema = `
import json, sys
sys.path.insert(0, "environments/templar")
import env
doc = json.load(sys.stdin)
print(json.dumps(env.schema_errors(doc, sys.argv[1])))
`;
const checkSchemas = checkSchema.replace("print(json.dumps(env.schema_errors(doc, sys.argv[1])))", "print(json.dumps([env.schema_errors(d, sys.argv[1]) for d in doc]))");

describe("evaluation documents across TS and Python", () => {
  test("a TS-built request validates against the Python side's schema; a broken one does not", () => {
    const req = request("def inner_steps(model, data_iterator, optimizer, num_steps, device):\n    pass\n");
    const ok = python(["-c", checkSchema, "evaluation-request.schema.json"], JSON.stringify(req));
    expect(ok.status).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual([]);
    const broken = python(["-c", checkSchema, "evaluation-request.schema.json"], JSON.stringify({ ...req, run_index: -1 }));
    expect(JSON.parse(broken.stdout).join(" ")).toContain("run_index");
    // The shard pin crosses too: a sha256, or null; anything else is refused on both sides.
    const pinned = { ...req, benchmark: { ...req.benchmark, data_path: "data/benchmark/tokens.npy", data_sha256: "0".repeat(64) } };
    const badPin = { ...req, benchmark: { ...req.benchmark, data_sha256: "not-a-hash" } };
    expect([EvaluationRequest.safeParse(pinned).success, EvaluationRequest.safeParse(badPin).success]).toEqual([true, false]);
    const [pinnedErrors, badPinErrors] = JSON.parse(python(["-c", checkSchemas, "evaluation-request.schema.json"], JSON.stringify([pinned, badPin])).stdout);
    expect(pinnedErrors).toEqual([]);
    expect(badPinErrors.join(" ")).toContain("data_sha256");
  }, 180_000);

  test("a rejected submission's result parses in TS with its code and echoes the request", () => {
    const req = request("def inner_steps(model, data_iterator, optimizer, num_steps, device)\n    pass\n");
    const result = parseResult(req, harness(req));
    expect(result.error?.code).toBe("syntax_error");
    expect(result.success).toBe(false);
    expect([result.task_id, result.submission_id, result.run_index]).toEqual([req.task_id, req.submission_id, 2]);
  }, 120_000);

  test("a verified run of the template parses in TS as a success with TPS and checks", () => {
    const req = request(readFileSync(join(repoRoot, "local_test/train.py"), "utf8"));
    const raw = harness(req);
    const result = parseResult(req, raw);
    expect(result.error).toBeNull();
    expect(result.success).toBe(true);
    expect(result.tps).toBeGreaterThan(0);
    expect(result.total_tokens).toBe(req.benchmark.batch_size * req.benchmark.sequence_length * req.benchmark.eval_steps);
    expect(result.checks.every((c) => c.passed)).toBe(true);
    // Synthetic tokens (the tiny profile): no shard, and the result says so.
    expect(result.data_sha256).toBeNull();
    // The same document presented for another request is refused, not trusted.
    expect(parseResult(request("x = 1\n"), raw).error?.code).toBe("invalid_result");
    // Every result names its shard: a document without data_sha256, or with something else than a sha256, is refused.
    const { data_sha256: _, ...unnamed } = raw;
    expect(parseResult(req, unnamed).error?.code).toBe("invalid_result");
    expect(parseResult(req, { ...raw, data_sha256: "tokens.npy" }).error?.code).toBe("invalid_result");
    expect(parseResult(req, { ...raw, data_sha256: "a".repeat(64) }).data_sha256).toBe("a".repeat(64));
  }, 300_000);
});
