import { afterAll, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { memoryLogger } from "../../core/log.ts";
import { sweepOrphanRunDirs } from "./process.ts";

const root = mkdtempSync(join(tmpdir(), "crusades-sweep-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

test("run dirs of a killed validator are removed; those of live processes and unrelated dirs stay", async () => {
  const dead = spawnSync("true").pid!; // exited by the time spawnSync returns
  const mine = join(root, `crusades-process-${process.pid}-aaaa`);
  const orphan = join(root, `crusades-process-${dead}-bbbb`);
  const live = join(root, `crusades-process-1-cccc`); // pid 1 is always alive
  const other = join(root, "crusades-run-dddd");
  for (const d of [mine, orphan, live, other]) mkdirSync(d);
  const log = memoryLogger();
  expect(await sweepOrphanRunDirs(log, root)).toBe(1);
  expect([mine, orphan, live, other].map(existsSync)).toEqual([true, false, true, true]);
  expect(log.lines.join("\n")).toContain("removed 1 run dir(s)");
});
