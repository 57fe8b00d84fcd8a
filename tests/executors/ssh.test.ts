// The ssh executor against a private sshd on loopback (tests/fixtures/sshd), tiny profile: direct mode
// runs this checkout's harness as root (the only user here that can reach the system's PyTorch), docker
// mode runs the sandbox container as an unprivileged test user in the docker group.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Docker from "dockerode";
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { repoRoot } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import { dockerExecutor } from "../../plugins/executors/docker.ts";
import { sshExecutor } from "../../plugins/executors/ssh.ts";
import { startSshd, TEST_USER, type Sshd } from "../fixtures/sshd/sshd.ts";
import { BASE_IMAGE, EVAL_IMAGE } from "../fixtures/docker/images.ts";
import { requireService } from "../services.ts";
import { expectProbesFailed, FORBIDDEN_PATHS, forgingCode, hangingCode, listener, marker, pgrep, probingCode, templateCode, tinyRequest, waitForProcess } from "./helpers.ts";

const python = spawnSync("python3", ["-c", "import sys; print(sys.executable)"], { encoding: "utf8" }).stdout.trim();
const sshdReady = await requireService("ssh executor", "sshd");
const dockerReady = sshdReady && (await requireService("ssh executor docker mode", "docker"));

let sshd: Sshd;
const validatorId = `ssh-test-${process.pid}`;
const ctx = () => ({ log: memoryLogger(), signal: new AbortController().signal });
const remoteDirs = () => spawnSync("sh", ["-c", `ls -d /tmp/crusades-ssh-${validatorId}-* 2>/dev/null`], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
/** The remote servers running now, as "dir pid" (the pid their start recorded). */
const servers = () => remoteDirs().map((d) => `${d} ${readFileSync(join(d, "pid"), "utf8").trim()}`);
const running = (pid: string) => spawnSync("kill", ["-0", pid]).status === 0;
const direct = (extra: Record<string, unknown> = {}) =>
  sshExecutor({
    host: sshd.host, port: sshd.port, user: "root", privateKeyPath: sshd.privateKeyPath, knownHostsPath: sshd.knownHostsPath,
    mode: "direct", remoteRepo: repoRoot, python, validatorId, gpus: "none", probe: false, ...extra,
  });

describe.skipIf(!sshdReady)("ssh executor", () => {
  beforeAll(async () => {
    sshd = await startSshd({ users: [TEST_USER, "root"] });
  });
  afterAll(async () => {
    await sshd?.stop();
  });

  test("an unknown host key is refused, with its fingerprint, unless explicitly trusted", async () => {
    const empty = join(sshd.knownHostsPath, "..", "empty_known_hosts");
    writeFileSync(empty, "");
    const result = await direct({ knownHostsPath: empty }).evaluate(tinyRequest(templateCode()), ctx());
    expect(result.error?.code).toBe("executor_error");
    expect(result.error?.message).toMatch(/host key of root@\[127\.0\.0\.1\]:\d+ is not in .*fingerprint SHA256:[A-Za-z0-9+/]{43}/);

    const wrong = join(sshd.knownHostsPath, "..", "wrong_known_hosts");
    writeFileSync(wrong, `[127.0.0.1]:${sshd.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBsN1oMmeGWtL6k1QVW3HmMdOV0UTxRDgD5uw4CyaBxd\n`);
    const mismatch = await direct({ knownHostsPath: wrong }).evaluate(tinyRequest(templateCode()), ctx());
    expect(mismatch.error?.message).toContain("does not match");

    const log = memoryLogger();
    const trusting = direct({ knownHostsPath: empty, trustUnknownHost: true });
    await trusting.init!(log);
    expect(log.lines.some((l) => l.includes("trusting the unknown host key"))).toBe(true);
    await trusting.close!();
  });

  test("direct mode evaluates the template end to end and removes its remote directory", async () => {
    const request = tinyRequest(templateCode());
    const c = ctx();
    const ex = direct();
    const result = await ex.evaluate(request, c);
    await ex.close!();
    expect(result.error).toBeNull();
    expect(result.success).toBe(true);
    expect(result.tps).toBeGreaterThan(0);
    expect(c.log.lines.some((l) => l.includes(`submission=${request.submission_id}`))).toBe(true);
    expect(remoteDirs()).toEqual([]);
  }, 240_000);

  test("a run that never returns is killed at the limit with its whole remote process tree and server; the next run gets a fresh server", async () => {
    const tag = marker();
    const ex = direct({ timeoutSeconds: 45 });
    const request = tinyRequest(hangingCode(tag));
    const hanging = ex.evaluate(request, ctx());
    expect(await waitForProcess(tag, 45_000)).toBe(true);
    const [hung] = servers();
    const result = await hanging;
    expect(result.error?.code).toBe("timeout");
    await Bun.sleep(300);
    expect(await pgrep(tag)).toEqual([]);
    expect(remoteDirs()).toEqual([]);
    expect(running(hung!.split(" ")[1]!)).toBe(false);
    const next = await ex.evaluate({ ...tinyRequest(templateCode()), submission_id: request.submission_id, run_index: 1 }, ctx());
    expect(next.error).toBeNull();
    expect(next.success).toBe(true);
    expect(servers()).not.toContain(hung);
    await ex.close!();
    expect(remoteDirs()).toEqual([]);
  }, 180_000);

  test("one remote server serves every run of a submission; another submission's run replaces it", async () => {
    const ex = direct();
    const submission = tinyRequest("").submission_id;
    try {
      const seen: string[] = [];
      for (let run = 0; run < 3; run++) {
        const request = { ...tinyRequest(templateCode()), submission_id: submission, run_index: run };
        const result = await ex.evaluate(request, ctx());
        expect(result.error).toBeNull();
        expect(result.task_id).toBe(request.task_id);
        seen.push(...servers());
      }
      expect(seen.length).toBe(3);
      expect(new Set(seen).size).toBe(1);
      const [dir, pid] = seen[0]!.split(" ");
      expect(running(pid!)).toBe(true);
      expect((await ex.evaluate(tinyRequest(templateCode()), ctx())).success).toBe(true);
      expect(existsSync(dir!)).toBe(false);
      expect(running(pid!)).toBe(false);
      expect(servers().length).toBe(1);
      expect(servers()).not.toContain(seen[0]);
    } finally {
      await ex.close!();
    }
    expect(remoteDirs()).toEqual([]);
  }, 240_000);

  test("a forged result document printed or planted by the submission does not change the result", async () => {
    const ex = direct();
    const result = await ex.evaluate(tinyRequest(forgingCode(templateCode())), ctx());
    await ex.close!();
    expect(result.tps).toBeLessThan(1e12);
    expect(result.device.name).not.toBe("forged");
    expect(result.total_tokens).not.toBe(10 ** 9);
  }, 240_000);

  test("a dropped connection fails that run cleanly; the slot's device check reconnects (after backoff), removes what it left and keeps the slot", async () => {
    const tag = marker();
    const ex = direct({ backoff: { initialSeconds: 1, maxSeconds: 2 } });
    const c = ctx();
    try {
      const running = ex.evaluate(tinyRequest(hangingCode(tag)), c);
      expect(await waitForProcess(tag, 60_000)).toBe(true);
      sshd.dropConnections();
      const result = await running;
      expect(result.error?.code).toBe("executor_error");
      expect(result.error?.message).toMatch(/connection .* dropped/);
      // A validator-side failure makes the pool ask the host whether the slot's device is still there: that
      // reconnect sweeps the dropped run's server and directory before the next run starts.
      expect(c.log.lines.some((l) => l.includes("waiting 1s before reconnecting"))).toBe(true);
      expect(c.log.lines.some((l) => l.includes("removed 1 stale run"))).toBe(true);
      await Bun.sleep(300);
      expect(await pgrep(tag)).toEqual([]);
      expect(remoteDirs()).toEqual([]);
      expect(ex.slots!()[0]).toMatchObject({ state: "idle", failures: 1, reason: null });
      expect((await ex.evaluate(tinyRequest(templateCode()), ctx())).success).toBe(true);
    } finally {
      await ex.close!();
    }
    expect(remoteDirs()).toEqual([]);
  }, 180_000);

  test("two hosts each offer their own slots, and runs in flight use both, each pinned to its slot's core", async () => {
    const second = await startSshd({ users: [TEST_USER, "root"] });
    try {
      // One client key opens both servers; one known_hosts file knows both.
      appendFileSync(join(dirname(second.privateKeyPath), "authorized_keys"), readFileSync(`${sshd.privateKeyPath}.pub`));
      const known = join(dirname(sshd.knownHostsPath), "two_known_hosts");
      writeFileSync(known, readFileSync(sshd.knownHostsPath, "utf8") + readFileSync(second.knownHostsPath, "utf8"));
      const ex = direct({
        host: undefined,
        hosts: [{ host: sshd.host, port: sshd.port, slots: [{ cpus: "0" }] }, { host: second.host, port: second.port, slots: [{ cpus: "1" }] }],
        knownHostsPath: known,
        probe: true,
      });
      const log = memoryLogger();
      try {
        await ex.init!(log);
        const ids = [`127.0.0.1:${sshd.port}/cpu:0`, `127.0.0.1:${second.port}/cpu:1`];
        expect(ex.slots!().map((s) => s.id)).toEqual(ids);
        expect(log.lines.filter((l) => l.includes("1 slot(s) probed")).length).toBe(2);
        const results = await Promise.all([tinyRequest(templateCode()), tinyRequest(templateCode())].map((r) => ex.evaluate(r, ctx())));
        for (const r of results) expect(r.error).toBeNull();
        expect(new Set(results.map((r) => r.diagnostics.slot))).toEqual(new Set(ids));
        // Each warm server (one per host, waiting for its submission's next run) runs on its slot's core only.
        const affinity = servers().map((s) => spawnSync("taskset", ["-cp", s.split(" ")[1]!], { encoding: "utf8" }).stdout.trim().split(": ")[1]);
        expect(affinity.sort()).toEqual(["0", "1"]);
      } finally {
        await ex.close!();
      }
      expect(remoteDirs()).toEqual([]);
    } finally {
      await second.stop();
    }
  }, 300_000);

  describe.skipIf(!dockerReady)("docker mode (unprivileged user in the docker group)", () => {
    const viaDocker = () =>
      sshExecutor({
        host: sshd.host, port: sshd.port, user: TEST_USER, privateKeyPath: sshd.privateKeyPath, knownHostsPath: sshd.knownHostsPath,
        mode: "docker", image: EVAL_IMAGE, gpus: "none", memory: "4g", shmSize: "1g", validatorId,
      });
    const containersOf = (label: string) => new Docker().listContainers({ all: true, filters: { label: [label] } });
    beforeAll(async () => {
      await dockerExecutor({ image: EVAL_IMAGE, build: { baseImage: BASE_IMAGE }, gpus: "none", probe: false }).init!(memoryLogger());
    }, 900_000);

    test("the template, with probes and a forged result added, is verified in the sandbox while every probe fails", async () => {
      const net = await listener();
      const c = ctx();
      const ex = viaDocker();
      try {
        const result = await ex.evaluate(tinyRequest(probingCode(templateCode(), net, FORBIDDEN_PATHS)), c);
        expect(result.error).toBeNull();
        expect(result.success).toBe(true);
        expect(result.tps).toBeGreaterThan(0);
        expect(result.tps).toBeLessThan(1e12);
        expect(result.diagnostics.worker_uid).not.toBe(0);
        expectProbesFailed(c.log.lines);
        expect(net.connections()).toBe(0);
      } finally {
        await ex.close!();
        net.close();
      }
      expect(remoteDirs()).toEqual([]);
      expect(await containersOf(`crusades.validator=${validatorId}`)).toEqual([]);
    }, 600_000);

    test("one container serves every run of a submission; another submission's run replaces it", async () => {
      const ex = viaDocker();
      const submission = tinyRequest("").submission_id;
      const other = tinyRequest(templateCode());
      try {
        const ids: string[] = [];
        for (let run = 0; run < 2; run++) {
          const request = { ...tinyRequest(templateCode()), submission_id: submission, run_index: run };
          const result = await ex.evaluate(request, ctx());
          expect(result.error).toBeNull();
          expect(result.task_id).toBe(request.task_id);
          expect(result.diagnostics.worker_uid).not.toBe(0);
          ids.push(...(await containersOf(`crusades.submission=${submission}`)).map((c) => c.Id));
        }
        expect(ids.length).toBe(2);
        expect(new Set(ids).size).toBe(1);
        expect((await ex.evaluate(other, ctx())).success).toBe(true);
        expect(await containersOf(`crusades.submission=${submission}`)).toEqual([]);
        expect((await containersOf(`crusades.submission=${other.submission_id}`)).length).toBe(1);
        expect(remoteDirs().length).toBe(1);
      } finally {
        await ex.close!();
      }
      expect(remoteDirs()).toEqual([]);
      expect(await containersOf(`crusades.validator=${validatorId}`)).toEqual([]);
    }, 600_000);
  });
});
