// `bun scripts/localnet.ts` as an operator runs it: prints its URL and accounts, answers on the socket,
// stops cleanly on SIGTERM, and refuses bad flags with exit code 2.
import { expect, test } from "bun:test";
import { spawn, spawnSync } from "node:child_process";
import { join } from "node:path";

const script = join(import.meta.dir, "..", "scripts", "localnet.ts");

test("starts, prints URL and dev accounts, serves JSON-RPC, stops on SIGTERM", async () => {
  const t0 = performance.now();
  const child = spawn(process.execPath, [script, "--port", "0", "--block-ms", "200", "--miners", "2", "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        const nl = out.indexOf("\n");
        if (nl >= 0) resolve(out.slice(0, nl));
      });
      child.on("exit", (code) => reject(new Error(`localnet exited with ${code} before printing`)));
    });
    const readyMs = performance.now() - t0;
    const info = JSON.parse(line);
    console.log(`scripts/localnet.ts ready in ${info.startMs} ms (process start to ready), ${readyMs.toFixed(0)} ms as seen by the parent`);
    expect(info.url).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    expect(info.accounts.owner).toMatchObject({ uri: "//Alice", uid: 0, ss58: "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY" });
    expect(info.accounts.burn.uid).toBe(1);
    expect(info.accounts.miners.map((m: { uid: number }) => m.uid)).toEqual([3, 4]);

    const ws = new WebSocket(info.url);
    await new Promise((r, j) => ((ws.onopen = r), (ws.onerror = j)));
    const reply = await new Promise<{ result: unknown }>((resolve) => {
      ws.onmessage = (e) => resolve(JSON.parse(String(e.data)));
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "chain_getBlockHash", params: [0] }));
    });
    ws.close();
    expect(reply.result).toBe(info.genesisHash);

    const exit = new Promise<number | null>((r) => child.on("exit", r));
    child.kill("SIGTERM");
    expect(await exit).toBe(0);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
}, 30_000);

test("--help exits 0; an unknown flag or a bad value exits 2 with a message", () => {
  const help = spawnSync(process.execPath, [script, "--help"], { encoding: "utf8" });
  expect(help.status).toBe(0);
  expect(help.stdout).toContain("--block-ms");
  const unknown = spawnSync(process.execPath, [script, "--nope"], { encoding: "utf8" });
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain("--nope");
  const bad = spawnSync(process.execPath, [script, "--block-ms", "fast"], { encoding: "utf8" });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toContain("--block-ms must be a non-negative integer");
}, 30_000);
