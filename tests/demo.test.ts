// The demo end to end, as `npm start` runs it but non-interactive: localnet, three hosted train.py
// files, the miner CLI, the validator on the CPU, weights, the API. Checks the final leaderboard, the
// cheat's rejection, and that nothing it started outlives it (processes, ports, the work dir).
// Every process the demo starts carries this test's temp dir in its environment or arguments (TMPDIR),
// which is how strays are found.
import { afterAll, describe, expect, test } from "bun:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), "crusades-demo-test-"));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

interface Ran {
  code: number | null;
  signal: string | null;
  out: string;
}

/** Runs the demo with its temp files under `dir`; `onOutput` may signal it. */
function demo(args: string[], dir: string, onOutput?: (out: string, pid: number) => void): Promise<Ran> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [join(root, "scripts/demo.ts"), ...args], {
      cwd: root,
      env: { ...process.env, TMPDIR: dir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    const add = (d: Buffer) => {
      out += d.toString();
      onOutput?.(out, proc.pid!);
    };
    proc.stdout.on("data", add);
    proc.stderr.on("data", add);
    proc.on("exit", (code, signal) => resolve({ code, signal, out }));
  });
}

/** Processes (other than ours) whose environment or command line mentions `dir`. */
function processesUsing(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p) && Number(p) !== process.pid)) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      const env = readFileSync(`/proc/${pid}/environ`, "utf8");
      if (cmd.includes(dir) || env.includes(dir)) found.push(`${pid}: ${cmd.replaceAll("\0", " ").trim()}`);
    } catch {
      // it exited while we looked, or is not ours to read
    }
  }
  return found;
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Every loopback port the demo printed: localnet, code host, API. */
const portsIn = (out: string) => [...new Set([...out.matchAll(/(?:ws|http):\/\/127\.0\.0\.1:(\d+)/g)].map((m) => Number(m[1])))];

async function expectNothingLeft(dir: string, out: string) {
  expect(processesUsing(dir)).toEqual([]);
  const ports = portsIn(out);
  expect(ports.length).toBeGreaterThanOrEqual(3);
  for (const p of ports) expect(await listening(p)).toBe(false);
  const workDir = out.match(/removed (\S+crusades-demo-\S+)/)?.[1];
  expect(workDir).toBeDefined();
  expect(workDir!.startsWith(dir)).toBe(true);
  expect(existsSync(workDir!)).toBe(false);
}

describe("demo", () => {
  test(
    "--once: faster honest loop first, template second, the cheat rejected with its reason; nothing left behind",
    async () => {
      const dir = mkdtempSync(join(scratch, "once-"));
      // Five runs each: on a shared CPU a median of five keeps a passing load spike from deciding the order.
      const r = await demo(["--once", "--port", "0", "--runs", "5"], dir);
      if (r.code !== 0 || !/^ {2}\s*1\s+fast\s/m.test(r.out)) console.error(r.out);
      expect(r.code).toBe(0);

      const board = r.out.slice(r.out.indexOf("Leaderboard ("));
      const rows = [...board.matchAll(/^ {2}\s*(\d+|-)\s+(template|fast|cheat)\s+(\d+)\s+\S+\s+([\d,]+|-)\s+(\d+)\/(\d+)\s+(.+)$/gm)].map((m) => ({
        rank: m[1],
        miner: m[2],
        tps: m[4] === "-" ? null : Number(m[4]!.replaceAll(",", "")),
        ok: Number(m[5]),
        planned: Number(m[6]),
        state: m[7]!,
      }));
      expect(rows.map((x) => [x.rank, x.miner])).toEqual([
        ["1", "fast"],
        ["2", "template"],
        ["-", "cheat"],
      ]);
      const [fast, template, cheat] = rows;
      expect(fast!.state).toBe("scored, leader");
      expect(fast!.tps!).toBeGreaterThan(template!.tps!);
      expect(template!.ok).toBe(template!.planned);
      // Every run of the cheat fails verification against the reference, and the reason is printed.
      expect(cheat!.ok).toBe(0);
      expect(cheat!.state).toMatch(/^REJECTED (weights|optimizer|loss|logits)_mismatch \(\d+\/\d+ runs\)$/);
      const reason = board.match(/^ {2}cheat rejected: (\w+): (.+)$/m);
      expect(reason?.[1]).toMatch(/^(weights|optimizer|loss|logits)_mismatch$/);
      expect(reason![2]!.length).toBeGreaterThan(10);

      // Weights reached the chain, with the leader's share going to the fast miner.
      expect(r.out).toMatch(/weights set by uid \d+ at block \d+: .*\(burn\) 95\.0%.*\(fast\) 5\.0%/);
      expect(r.out).toMatch(/dashboard +http:\/\/127\.0\.0\.1:\d+\//);
      expect(r.out).toMatch(/OpenAPI +http:\/\/127\.0\.0\.1:\d+\/openapi/);
      const scoredIn = r.out.match(/scored ([\d.]+)s after start/)?.[1];
      console.log(`demo reached a scored leaderboard in ${scoredIn}s`);

      await expectNothingLeft(dir, r.out);
    },
    1_200_000,
  );

  test(
    "Ctrl-C while it runs stops everything it started and exits 130",
    async () => {
      const dir = mkdtempSync(join(scratch, "sigint-"));
      let sent = false;
      let running: string[] = [];
      const r = await demo(["--port", "0"], dir, (out, pid) => {
        // Mid-way: the API, localnet and code host are up and the miners are submitting.
        if (!sent && out.includes("[5/7]")) {
          sent = true;
          running = processesUsing(dir);
          process.kill(pid, "SIGINT");
        }
      });
      expect(sent).toBe(true);
      // The stray check below sees the demo and its children while they run (it is not vacuous).
      expect(running.length).toBeGreaterThanOrEqual(2);
      expect(r.out).toContain("stopping everything the demo started");
      expect(r.code).toBe(130);
      await expectNothingLeft(dir, r.out);
    },
    120_000,
  );
});
