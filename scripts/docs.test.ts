import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { readmePath, renderReadme } from "./docs.ts";

test("README reference tables match the zod schemas (run `bun scripts/docs.ts` when this fails)", () => {
  const current = readFileSync(readmePath, "utf8");
  expect(renderReadme(current)).toBe(current);
});

test("rendering needs the markers and says which are missing", () => {
  expect(() => renderReadme("# no markers")).toThrow("generated:hparams");
});
