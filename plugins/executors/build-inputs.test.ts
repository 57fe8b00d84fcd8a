import { afterAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildInputsDigest } from "./docker.ts";

const ctx = mkdtempSync(join(tmpdir(), "crusades-build-inputs-"));
afterAll(() => rmSync(ctx, { recursive: true, force: true }));
mkdirSync(join(ctx, "env", "__pycache__"), { recursive: true });
writeFileSync(join(ctx, "Dockerfile"), "FROM x\n");
writeFileSync(join(ctx, "env", "env.py"), "print(1)\n");
const build = { context: ctx, dockerfile: "Dockerfile", include: ["env"], baseImage: "base:1" };

test("the image digest follows the harness files, not their bytecode caches", () => {
  const first = buildInputsDigest(build);
  writeFileSync(join(ctx, "env", "__pycache__", "env.cpython-311.pyc"), "cache");
  expect(buildInputsDigest(build)).toBe(first);
  writeFileSync(join(ctx, "env", "env.py"), "print(2)\n");
  const changed = buildInputsDigest(build);
  expect(changed).not.toBe(first);
  writeFileSync(join(ctx, "env", "extra.py"), "");
  expect(buildInputsDigest(build)).not.toBe(changed);
  expect(buildInputsDigest({ ...build, baseImage: "base:2" })).not.toBe(buildInputsDigest(build));
});
