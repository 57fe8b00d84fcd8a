// The suites that need a service (Docker engine, sshd, Chromium, tmux), run as `npm test` runs them on a
// machine that lacks every one: each is skipped with one line the totals count, and with
// CRUSADES_REQUIRE_SERVICES=1 (as .ci/run sets) each fails naming what is missing. Absence is simulated
// per run (an sshd path that does not exist, an unreachable docker socket, a PATH without chromium and
// tmux), so the real services other suites use stay up.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { skippedSuites, summaryLine } from "../scripts/test-summary.mjs";

const root = fileURLToPath(new URL("..", import.meta.url));
const SUITES = ["tests/executors/ssh.test.ts", "tests/executors/docker.test.ts", "tests/api.browser.test.ts", "tests/tui.test.ts"];

// Only python3 on PATH: the ssh suite asks it for sys.executable at load, and nothing else is findable.
const bin = mkdtempSync(join(tmpdir(), "crusades-no-services-"));
symlinkSync(Bun.which("python3")!, join(bin, "python3"));
afterAll(() => rmSync(bin, { recursive: true, force: true }));

function runWithoutServices(extra: Record<string, string> = {}) {
  const env: Record<string, string | undefined> = {
    ...process.env,
    PATH: bin,
    CRUSADES_SSHD: join(bin, "no-sshd"),
    DOCKER_HOST: `unix://${join(bin, "no-docker.sock")}`,
    ...extra,
  };
  if (!("CRUSADES_REQUIRE_SERVICES" in extra)) delete env.CRUSADES_REQUIRE_SERVICES;
  const r = Bun.spawnSync([process.execPath, "test", ...SUITES], { cwd: root, env, stdout: "pipe", stderr: "pipe", timeout: 120_000 });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

describe("suites that need a missing service", () => {
  test("are skipped, each with one line saying what is missing and how to get it, and the totals count them", () => {
    const { code, out } = runWithoutServices();
    expect(out).toMatch(/\b0 fail\b/);
    expect(code).toBe(0);
    const lines = out.split("\n").filter((l) => l.startsWith("skipped: "));
    expect(lines).toHaveLength(4);
    expect(lines).toEqual(expect.arrayContaining([
      `skipped: ssh executor suite — sshd not found at ${join(bin, "no-sshd")}; .ci/run installs openssh-server and runs the tests as root (CRUSADES_SSHD names another sshd)`,
      expect.stringMatching(/^skipped: docker executor suite — no docker engine reachable at unix:\/\/.*no-docker\.sock \(.+\); \.ci\/run installs docker\.io, starts dockerd and builds the image /),
      "skipped: dashboard in Chromium suite — chromium not found on PATH; .ci/run installs chromium",
      "skipped: tui in tmux suite — tmux not found on PATH; .ci/run installs tmux",
    ]));
    const skipped = skippedSuites(out);
    expect(skipped.map((s) => s.suite).sort()).toEqual(["dashboard in Chromium", "docker executor", "ssh executor", "tui in tmux"]);
    expect(skipped.find((s) => s.suite === "ssh executor")?.reason).toBe(`sshd not found at ${join(bin, "no-sshd")}`);
    expect(summaryLine(7, 0, skipped)).toMatch(/^7 passed, 0 failed, 4 suites skipped \(.*tui in tmux: tmux not found on PATH.*\)$/);
  }, 150_000);

  test("fail under CRUSADES_REQUIRE_SERVICES=1, naming the missing service", () => {
    const { code, out } = runWithoutServices({ CRUSADES_REQUIRE_SERVICES: "1" });
    expect(code).not.toBe(0);
    expect(out).toMatch(/\b4 fail\b/);
    expect(out).not.toMatch(/^skipped: /m);
    for (const [suite, service] of [["ssh executor", "sshd"], ["docker executor", "docker"], ["dashboard in Chromium", "chromium"], ["tui in tmux", "tmux"]]) {
      expect(out).toContain(`(fail) ${suite} suite needs ${service}`);
    }
    expect(out).toContain("CRUSADES_REQUIRE_SERVICES=1: sshd not found at ");
    expect(skippedSuites(out)).toEqual([]);
  }, 150_000);

  test("the totals line counts no skipped suites when every one ran", () => {
    expect(summaryLine(560, 1, [])).toBe("560 passed, 1 failed, 0 suites skipped");
    expect(summaryLine(3, 0, [{ suite: "tui in tmux", reason: "tmux not found on PATH" }])).toBe("3 passed, 0 failed, 1 suite skipped (tui in tmux: tmux not found on PATH)");
  });
});
