// The benchmark profile's token shard in the sandboxes, through the real engine and the CPU image: a
// request that reads hparams' benchmark_data_path (tiny model, a shard written from local text) is
// verified in the docker executor and over ssh in docker mode, each result names the sha256 of the bytes
// the harness read, the worker cannot write the shard, and a request pinning another shard is refused;
// ssh direct mode finds the file the request names on the host.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import Docker from "dockerode";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadHParams, repoRoot } from "../../core/hparams.ts";
import { memoryLogger } from "../../core/log.ts";
import { dockerExecutor } from "../../plugins/executors/docker.ts";
import { LABEL_VALIDATOR } from "../../plugins/executors/sandbox.ts";
import { sshExecutor } from "../../plugins/executors/ssh.ts";
import { BASE_IMAGE, EVAL_IMAGE } from "../fixtures/docker/images.ts";
import { writeTextShard } from "../fixtures/shard.ts";
import { startSshd, TEST_USER, type Sshd } from "../fixtures/sshd/sshd.ts";
import { requireService } from "../services.ts";
import { templateCode, tinyRequest } from "./helpers.ts";

const ready = await requireService("token shard in the sandboxes", "docker");
const sshdReady = ready && (await requireService("token shard over ssh", "sshd"));
const docker = new Docker();
const validatorId = `shard-test-${process.pid}`;
// One CPU slot; the start-up probe is the device pool's test, not this one's.
const sandbox = { image: EVAL_IMAGE, gpus: "none" as const, validatorId, memory: "4g", shmSize: "1g", probe: false };
const ctx = () => ({ log: memoryLogger(), signal: new AbortController().signal });
const dataPath = loadHParams().benchmark_data_path!;
// Where the harness reads it in the container: relative to the image's /app.
const target = `/app/${dataPath}`;

// World-readable, so the ssh test user (the "remote host" login) can find it too.
const dir = mkdtempSync(join(tmpdir(), "crusades-shard-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
chmodSync(dir, 0o755);
const shard = join(dir, "tokens.npy");
const sha256 = ready ? writeTextShard(shard) : "";
if (ready) chmodSync(shard, 0o644);

/** The template, trying on import to overwrite the shard where the harness reads it. */
const writingCode = () => `${templateCode()}

import errno as _errno
try:
    with open(${JSON.stringify(target)}, "r+b") as _f:
        _f.write(b"x")
    print("shard write: written", flush=True)
except OSError as _e:
    print("shard write:", _errno.errorcode.get(_e.errno, _e.errno), flush=True)
`;

/** A run on the shard, then one that pins another, for the same submission (its container serves both). */
async function runBoth(ex: { evaluate: ReturnType<typeof dockerExecutor>["evaluate"] }) {
  const c = ctx();
  const request = tinyRequest(writingCode(), { data_path: dataPath });
  const result = await ex.evaluate(request, c);
  const pinned = { ...tinyRequest(templateCode(), { data_path: dataPath, data_sha256: "0".repeat(64) }), submission_id: request.submission_id, run_index: 1 };
  return { result, write: c.log.lines.find((l) => l.includes("shard write:")), refused: await ex.evaluate(pinned, ctx()) };
}

function expectBoth({ result, write, refused }: Awaited<ReturnType<typeof runBoth>>) {
  expect(result.error).toBeNull();
  expect(result.success).toBe(true);
  expect(result.data_sha256).toBe(sha256);
  expect(write).toMatch(/shard write: (EROFS|EACCES|EPERM)/);
  expect(refused.error?.code).toBe("harness_error");
  expect(refused.error?.message).toContain(`has sha256 ${sha256}, not the ${"0".repeat(64)} hparams pins`);
  expect(refused.data_sha256).toBe(sha256);
}

describe.skipIf(!ready)("token shard in the sandboxes", () => {
  beforeAll(async () => {
    await dockerExecutor({ ...sandbox, build: { baseImage: BASE_IMAGE } }).init!(memoryLogger());
  }, 1_200_000);

  afterAll(async () => {
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABEL_VALIDATOR}=${validatorId}`] } })) await docker.getContainer(c.Id).remove({ force: true });
  });

  test("docker: verified on the mounted shard, its sha256 in the result, read-only to the worker; another pin is refused", async () => {
    const ex = dockerExecutor({ ...sandbox, build: false, dataPath: shard });
    try {
      expect(await ex.tokenShard!(dataPath, memoryLogger())).toEqual({ where: shard, sha256 });
      expectBoth(await runBoth(ex));
    } finally {
      await ex.close!();
    }
  }, 600_000);

  describe.skipIf(!sshdReady)("over ssh", () => {
    let sshd: Sshd;
    beforeAll(async () => {
      sshd = await startSshd({ users: [TEST_USER] });
    });
    afterAll(async () => {
      await sshd?.stop();
    });

    test("ssh, docker mode: the shard on the host is mounted the same way", async () => {
      const ex = sshExecutor({
        ...sandbox, host: sshd.host, port: sshd.port, user: TEST_USER, privateKeyPath: sshd.privateKeyPath, knownHostsPath: sshd.knownHostsPath,
        mode: "docker", dataPath: shard,
      });
      try {
        const found = await ex.tokenShard!(dataPath, memoryLogger());
        expect(found?.sha256).toBe(sha256);
        expect(found?.where).toEndWith(`:${shard}`);
        expectBoth(await runBoth(ex));
      } finally {
        await ex.close!();
      }
    }, 900_000);

    test("ssh, direct mode: the shard is the file the request names on the host (in remoteRepo when relative)", async () => {
      const login = { host: sshd.host, port: sshd.port, user: TEST_USER, privateKeyPath: sshd.privateKeyPath, knownHostsPath: sshd.knownHostsPath };
      const ex = sshExecutor({ ...sandbox, ...login, mode: "direct", remoteRepo: repoRoot });
      try {
        expect((await ex.tokenShard!(shard, memoryLogger()))?.sha256).toBe(sha256);
        await expect(ex.tokenShard!("data/absent.npy", memoryLogger())).rejects.toThrow(`has no token shard at data/absent.npy (in ${repoRoot})`);
      } finally {
        await ex.close!();
      }
      expect(() => sshExecutor({ ...sandbox, ...login, mode: "direct", remoteRepo: repoRoot, dataPath: shard })).toThrow("dataPath");
    }, 60_000);
  });
});
