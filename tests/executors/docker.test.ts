// The docker executor on the real engine, with the CPU evaluation image (crusades-eval:cpu built from
// environments/templar/Dockerfile on crusades-base:bookworm, see tests/fixtures/docker/), tiny profile.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Docker from "dockerode";
import { createServer, type Server } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { readdirSync } from "node:fs";
import { memoryLogger } from "../../core/log.ts";
import { dockerExecutor } from "../../plugins/executors/docker.ts";
import { LABEL_TASK, LABEL_VALIDATOR } from "../../plugins/executors/sandbox.ts";
import { BASE_IMAGE, EVAL_IMAGE, forgingCode, hangingCode, marker, networkCode, pgrep, templateCode, tinyRequest, waitForProcess, writeOutsideCode } from "./helpers.ts";

const docker = new Docker();
const reachable = await docker.ping().then(() => true, () => false);
if (!reachable) console.warn("docker executor tests skipped: no docker engine is reachable (start dockerd, or set DOCKER_HOST)");

const validatorId = `test-${process.pid}`;
const options = { image: EVAL_IMAGE, gpus: "none" as const, validatorId, memory: "4g", shmSize: "1g", build: { baseImage: BASE_IMAGE } };
const ctx = () => ({ log: memoryLogger(), signal: new AbortController().signal });
const runDirs = () => readdirSync(tmpdir()).filter((d) => d.startsWith("crusades-docker-"));
const containersOf = (label: string) => docker.listContainers({ all: true, filters: { label: [label] } });

describe.skipIf(!reachable)("docker executor", () => {
  beforeAll(async () => {
    const hasBase = await docker.getImage(BASE_IMAGE).inspect().then(() => true, () => false);
    if (!hasBase) throw new Error(`${BASE_IMAGE} is missing: run tests/fixtures/docker/build-base-image.sh first (as .ci/run does)`);
    // Builds crusades-eval:cpu through the executor's own build path when it is not there yet.
    await dockerExecutor(options).init!(memoryLogger());
  }, 900_000);

  afterAll(async () => {
    for (const c of await containersOf(`${LABEL_VALIDATOR}=${validatorId}`)) await docker.getContainer(c.Id).remove({ force: true });
  });

  test("evaluates the template end to end", async () => {
    const request = tinyRequest(templateCode());
    const c = ctx();
    const result = await dockerExecutor(options).evaluate(request, c);
    expect(result.error).toBeNull();
    expect(result.success).toBe(true);
    expect(result.tps).toBeGreaterThan(0);
    expect(result.device.type).toBe("cpu");
    expect(result.diagnostics.worker_uid).not.toBe(0);
    expect(c.log.lines.some((l) => l.includes(`submission=${request.submission_id}`))).toBe(true);
    expect(await containersOf(`${LABEL_TASK}=${request.task_id}`)).toEqual([]);
  }, 300_000);

  test("a run that never returns is killed at the limit, leaving no container, process or directory", async () => {
    const before = runDirs();
    const tag = marker();
    const request = tinyRequest(hangingCode(tag));
    const running = dockerExecutor({ ...options, timeoutSeconds: 100 }).evaluate(request, ctx());
    expect(await waitForProcess(tag, 100_000)).toBe(true);
    const result = await running;
    expect(result.error?.code).toBe("timeout");
    expect(await containersOf(`${LABEL_TASK}=${request.task_id}`)).toEqual([]);
    expect(await pgrep(tag)).toEqual([]);
    expect(runDirs().filter((d) => !before.includes(d))).toEqual([]);
  }, 200_000);

  test("a submission that opens a socket gets no network", async () => {
    let connections = 0;
    const server: Server = createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => server.listen(0, "0.0.0.0", r));
    const port = (server.address() as { port: number }).port;
    // A non-loopback address of this host when there is one: reachable from any container with a network.
    const host = Object.values(networkInterfaces()).flat().find((i) => i && i.family === "IPv4" && !i.internal)?.address ?? "127.0.0.1";
    try {
      const result = await dockerExecutor(options).evaluate(tinyRequest(networkCode(host, port)), ctx());
      expect(result.error?.code).toBe("crash");
      expect(result.error?.message).toContain("network attempt:");
      expect(result.error?.message).not.toContain("connected");
      expect(connections).toBe(0);
    } finally {
      server.close();
    }
  }, 300_000);

  test("a submission that writes outside its tmp dirs fails", async () => {
    const paths = ["/app/escaped.txt", "/usr/lib/escaped.txt", "/run/crusades/out/escaped.txt", "/run/crusades/in/escaped.txt", "/escaped.txt"];
    const result = await dockerExecutor(options).evaluate(tinyRequest(writeOutsideCode(paths)), ctx());
    expect(result.success).toBe(false);
    expect(result.error?.message).toContain("write attempts:");
    expect(result.error?.message).not.toContain("=written");
    for (const p of paths) expect(result.error?.message).toMatch(new RegExp(`${p}=(EROFS|EACCES|EPERM)`));
  }, 300_000);

  test("a forged result document printed or planted by the submission does not change the result", async () => {
    const result = await dockerExecutor(options).evaluate(tinyRequest(forgingCode(templateCode())), ctx());
    expect(result.success).toBe(true);
    expect(result.tps).toBeLessThan(1e12);
    expect(result.device.name).not.toBe("forged");
  }, 300_000);

  test("containers left by a crashed validator are removed at start", async () => {
    const stale = await docker.createContainer({ Image: BASE_IMAGE, Cmd: ["sleep", "600"], Labels: { [LABEL_VALIDATOR]: validatorId } });
    const log = memoryLogger();
    await dockerExecutor(options).init!(log);
    expect(await docker.getContainer(stale.id).inspect().then(() => "present", () => "gone")).toBe("gone");
    expect(log.lines.some((l) => l.includes("stale evaluation container"))).toBe(true);
  }, 120_000);

  test("a missing image with building disabled fails the run with a clear reason", async () => {
    const result = await dockerExecutor({ ...options, image: "crusades-eval:does-not-exist", build: false }).evaluate(tinyRequest(templateCode()), ctx());
    expect(result.error?.code).toBe("executor_error");
    expect(result.error?.message).toContain("crusades-eval:does-not-exist not found");
  });
});
